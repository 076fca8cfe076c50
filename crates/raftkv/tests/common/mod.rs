//! A real cluster of `raftkv server` processes on loopback, for tests.
//! [`Cluster`] kills every node it started when dropped (also on panic) and
//! its temporary data directory goes with it.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use raftkv_client::{pb, Client, ClientOptions};

pub const BIN: &str = env!("CARGO_BIN_EXE_raftkv");

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Runs one test body alone (clusters of one test binary never overlap) on
/// its own runtime.
pub fn run_serial(body: impl std::future::Future<Output = ()>) {
    let _serial = serial();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(body);
}

/// Short timings so every test runs in seconds.
pub const HEARTBEAT_MS: u64 = 20;
pub const ELECTION_MIN_MS: u64 = 200;
pub const ELECTION_MAX_MS: u64 = 400;
pub const LEASE_MS: u64 = 150;

pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local addr").port()
}

pub struct Node {
    pub id: u64,
    pub addr: String,
    pub child: Option<Child>,
    pub stopped: bool,
    /// Started with `--join` (added at run time, not a bootstrap voter).
    pub join: bool,
    /// Started with this RLIMIT_NOFILE (soft and hard), if set.
    pub nofile: Option<u64>,
    /// Its `--http-listen` address, if it has one.
    pub http: Option<String>,
}

/// A cluster's timing flags, in milliseconds.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    pub heartbeat_ms: u64,
    pub election_min_ms: u64,
    pub election_max_ms: u64,
    pub lease_ms: u64,
}

pub const FAST: Timing = Timing {
    heartbeat_ms: HEARTBEAT_MS,
    election_min_ms: ELECTION_MIN_MS,
    election_max_ms: ELECTION_MAX_MS,
    lease_ms: LEASE_MS,
};

pub struct Cluster {
    pub nodes: Vec<Node>,
    pub dir: tempfile::TempDir,
    pub cluster_id: String,
    pub timing: Timing,
    /// More `raftkv server` flags for every node.
    pub extra_args: Vec<String>,
}

impl Cluster {
    pub fn start(n: usize) -> Cluster {
        Cluster::start_with(n, FAST)
    }

    pub fn start_with(n: usize, timing: Timing) -> Cluster {
        Cluster::start_with_args(n, timing, &[])
    }

    /// `n` bootstrap nodes with `extra_args` added to every command line.
    pub fn start_with_args(n: usize, timing: Timing, extra_args: &[&str]) -> Cluster {
        Cluster::start_with_limits(n, timing, extra_args, &[])
    }

    /// Like [`Cluster::start_with_args`], node `id` of each `(id, limit)`
    /// running with RLIMIT_NOFILE `limit` (soft and hard).
    pub fn start_with_limits(
        n: usize,
        timing: Timing,
        extra_args: &[&str],
        nofile: &[(u64, u64)],
    ) -> Cluster {
        Cluster::start_inner(n, timing, extra_args, nofile, false)
    }

    /// `n` bootstrap nodes, each with an HTTP listener (`--http-listen`) on
    /// a free loopback port of its own ([`Node::http`]).
    pub fn start_with_http(n: usize, timing: Timing) -> Cluster {
        Cluster::start_inner(n, timing, &[], &[], true)
    }

    fn start_inner(
        n: usize,
        timing: Timing,
        extra_args: &[&str],
        nofile: &[(u64, u64)],
        http: bool,
    ) -> Cluster {
        let dir = tempfile::Builder::new()
            .prefix("raftkv-test-")
            .tempdir()
            .expect("temp dir");
        // Pick all ports while holding every listener, so none repeats.
        let ports = if http { 2 * n } else { n };
        let listeners: Vec<TcpListener> = (0..ports)
            .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
            .collect();
        let mut nodes = listeners
            .iter()
            .enumerate()
            .map(|(i, l)| Node {
                id: i as u64 + 1,
                addr: l.local_addr().unwrap().to_string(),
                child: None,
                stopped: false,
                join: false,
                nofile: nofile
                    .iter()
                    .find(|(id, _)| *id == i as u64 + 1)
                    .map(|(_, limit)| *limit),
                http: None,
            })
            .take(n)
            .collect::<Vec<_>>();
        for (node, l) in nodes.iter_mut().zip(listeners.iter().skip(n)) {
            node.http = Some(l.local_addr().unwrap().to_string());
        }
        drop(listeners);
        let mut cluster = Cluster {
            nodes,
            dir,
            cluster_id: "test".into(),
            timing,
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
        };
        for id in 1..=n as u64 {
            cluster.spawn(id);
        }
        cluster
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// `--peers` of a bootstrap node: the bootstrap nodes only.
    pub fn peers_arg(&self) -> String {
        self.nodes
            .iter()
            .filter(|n| !n.join)
            .map(|n| format!("{}={}", n.id, n.addr))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Reserves the next node id and a free port for a node that will join
    /// the running cluster (`raftkv server --join`); not started yet.
    pub fn reserve_joining_node(&mut self) -> u64 {
        let id = self.nodes.len() as u64 + 1;
        let addr = loop {
            let port = free_port();
            let addr = format!("127.0.0.1:{port}");
            if self.nodes.iter().all(|n| n.addr != addr) {
                break addr;
            }
        };
        self.nodes.push(Node {
            id,
            addr,
            child: None,
            stopped: false,
            join: true,
            nofile: None,
            http: None,
        });
        id
    }

    /// The folder where node `id` keeps its files.
    pub fn node_dir(&self, id: u64) -> PathBuf {
        self.data_dir().join(format!("logs_node_{id}"))
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.addr.clone()).collect()
    }

    pub fn addr(&self, id: u64) -> String {
        self.node(id).addr.clone()
    }

    fn node(&self, id: u64) -> &Node {
        &self.nodes[(id - 1) as usize]
    }

    fn node_mut(&mut self, id: u64) -> &mut Node {
        &mut self.nodes[(id - 1) as usize]
    }

    /// The command line of node `id`.
    pub fn server_command(&self, id: u64) -> Command {
        self.server_command_with(id, true)
    }

    /// The command line of node `id`, without `--peers` when `with_peers` is
    /// false (an operator who forgot them).
    pub fn server_command_with(&self, id: u64, with_peers: bool) -> Command {
        let mut cmd = Command::new(BIN);
        // A joining node knows every address (--peers are only addresses
        // for it); a bootstrap node lists the bootstrap voters.
        let peers = if self.node(id).join {
            self.nodes
                .iter()
                .map(|n| format!("{}={}", n.id, n.addr))
                .collect::<Vec<_>>()
                .join(",")
        } else {
            self.peers_arg()
        };
        cmd.arg("server")
            .args(["--id", &id.to_string(), "--listen", &self.addr(id)])
            .args(if with_peers {
                vec!["--peers", &peers]
            } else {
                vec![]
            })
            .arg("--data-dir")
            .arg(self.data_dir())
            .args(["--cluster-id", &self.cluster_id])
            .args(["--heartbeat-ms", &self.timing.heartbeat_ms.to_string()])
            .args([
                "--election-timeout-min-ms",
                &self.timing.election_min_ms.to_string(),
            ])
            .args([
                "--election-timeout-max-ms",
                &self.timing.election_max_ms.to_string(),
            ])
            .args(["--lease-ms", &self.timing.lease_ms.to_string()])
            .args(["--log-level", "warn"])
            // `{id}` in an extra argument becomes the node's id.
            .args(
                self.extra_args
                    .iter()
                    .map(|a| a.replace("{id}", &id.to_string())),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        if let Some(http) = &self.node(id).http {
            cmd.args(["--http-listen", http]);
        }
        if self.node(id).join {
            cmd.arg("--join");
        }
        // Odd ids run on a one-thread runtime (followers persist in line),
        // even ids on the default one: every cluster test covers both.
        if id % 2 == 1 && !self.extra_args.iter().any(|a| a == "--runtime-threads") {
            cmd.args(["--runtime-threads", "1"]);
        }
        cmd
    }

    pub fn spawn(&mut self, id: u64) {
        self.spawn_with(id, true)
    }

    /// Starts node `id`, with or without `--peers`.
    pub fn spawn_with(&mut self, id: u64, with_peers: bool) {
        let log = std::fs::File::create(self.data_dir().join(format!("node-{id}.stderr")))
            .expect("log file");
        let mut cmd = self.server_command_with(id, with_peers);
        if let Some(limit) = self.node(id).nofile {
            use std::os::unix::process::CommandExt;
            // SAFETY: setrlimit(2) is async-signal-safe; the closure touches
            // nothing else between fork and exec.
            unsafe {
                cmd.pre_exec(move || {
                    let lim = libc::rlimit {
                        rlim_cur: limit as libc::rlim_t,
                        rlim_max: limit as libc::rlim_t,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let child = cmd.stderr(log).spawn().expect("spawn raftkv server");
        let node = self.node_mut(id);
        assert!(node.child.is_none(), "node {id} is already running");
        node.child = Some(child);
        node.stopped = false;
    }

    fn signal(&self, id: u64, signal: libc::c_int) {
        let child = self
            .node(id)
            .child
            .as_ref()
            .unwrap_or_else(|| panic!("node {id} is not running"));
        // SAFETY: kill(2) on our own child.
        let rc = unsafe { libc::kill(child.id() as libc::pid_t, signal) };
        assert_eq!(rc, 0, "kill({signal}) on node {id}");
    }

    /// `kill -9`.
    pub fn kill(&mut self, id: u64) {
        self.signal(id, libc::SIGKILL);
        let mut child = self.node_mut(id).child.take().expect("running");
        child.wait().expect("wait for killed node");
    }

    /// SIGTERM and wait: the clean shutdown path. Returns the exit status.
    pub fn stop(&mut self, id: u64) -> ExitStatus {
        self.signal(id, libc::SIGTERM);
        let mut child = self.node_mut(id).child.take().expect("running");
        wait_exit(
            &mut child,
            Duration::from_secs(10),
            &format!("node {id}, sent SIGTERM,"),
        )
    }

    pub fn pause(&mut self, id: u64) {
        self.signal(id, libc::SIGSTOP);
        self.node_mut(id).stopped = true;
    }

    pub fn resume(&mut self, id: u64) {
        self.signal(id, libc::SIGCONT);
        self.node_mut(id).stopped = false;
    }

    pub fn client(&self) -> Client {
        client_for(&self.endpoints())
    }

    pub fn stderr_of(&self, id: u64) -> String {
        std::fs::read_to_string(self.data_dir().join(format!("node-{id}.stderr")))
            .unwrap_or_default()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                // A stopped process still dies from SIGKILL; SIGCONT anyway so
                // nothing lingers in a stopped state.
                unsafe {
                    libc::kill(child.id() as libc::pid_t, libc::SIGCONT);
                }
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

pub fn client_options() -> ClientOptions {
    ClientOptions {
        deadline: Duration::from_secs(10),
        rpc_timeout: Duration::from_millis(300),
        connect_timeout: Duration::from_millis(200),
        backoff_min: Duration::from_millis(5),
        backoff_max: Duration::from_millis(50),
        suspect_for: Duration::from_millis(600),
        give_up_unreachable_after: Duration::from_millis(2000),
    }
}

pub fn client_for(endpoints: &[String]) -> Client {
    Client::new(endpoints, client_options()).expect("client")
}

pub async fn status(client: &Client, addr: &str) -> Option<pb::StatusReply> {
    client.status_at(addr).await.ok()
}

/// Waits until the reachable nodes agree on one leader that holds its lease;
/// returns its id.
pub async fn wait_for_leader(cluster: &Cluster, timeout: Duration) -> u64 {
    let client = cluster.client();
    let deadline = Instant::now() + timeout;
    loop {
        let mut leaders = Vec::new();
        for node in cluster
            .nodes
            .iter()
            .filter(|n| n.child.is_some() && !n.stopped)
        {
            if let Some(s) = status(&client, &node.addr).await {
                if s.role == "leader" && s.lease.as_ref().is_some_and(|l| l.holds) {
                    leaders.push(s.id);
                }
            }
        }
        if leaders.len() == 1 {
            return leaders[0];
        }
        assert!(
            Instant::now() < deadline,
            "no single leader with a lease within {timeout:?} (saw {leaders:?})"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until node `id` has applied at least `index`.
pub async fn wait_applied(cluster: &Cluster, id: u64, index: u64, timeout: Duration) {
    let client = cluster.client();
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(s) = status(&client, &cluster.addr(id)).await {
            if s.applied_index >= index {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "node {id} applied only {} of {index} within {timeout:?}",
                s.applied_index
            );
        } else {
            assert!(
                Instant::now() < deadline,
                "node {id} unreachable for {timeout:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn counter(s: &pb::StatusReply, name: &str) -> u64 {
    s.counters
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no counter {name}"))
        .value
}

pub fn workspace_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// A one-node cluster (`--single-node`, it elects itself), killed on drop.
pub struct SingleNode {
    pub child: Child,
    pub addr: String,
    pub dir: tempfile::TempDir,
}

impl Drop for SingleNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The command line of a one-node cluster in `dir` (node 1 of `cluster`).
pub fn single_node_args(addr: &str, dir: &Path, cluster: &str) -> Vec<String> {
    [
        "server",
        "--id",
        "1",
        "--listen",
        addr,
        "--data-dir",
        &dir.display().to_string(),
        "--cluster-id",
        cluster,
        "--log-level",
        "warn",
        "--single-node",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Starts a one-node cluster of `cluster` with `extra` flags, in a fresh
/// temporary folder; does not wait for it to serve.
pub fn spawn_single(cluster: &str, extra: &[&str]) -> SingleNode {
    let dir = tempfile::tempdir().expect("temp dir");
    let addr = format!("127.0.0.1:{}", free_port());
    let child = Command::new(BIN)
        .args(single_node_args(&addr, dir.path(), cluster))
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn server");
    SingleNode { child, addr, dir }
}

/// Waits for `child` to exit within `within`; kills it and panics if not.
pub fn wait_exit(child: &mut Child, within: Duration, what: &str) -> ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not exit within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A multi-thread runtime for tests that are not `run_serial`.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// `raftkv local` with three nodes on free ports in `data`, quiet.
pub fn local_command(data: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args([
        "local",
        "--nodes",
        "3",
        "--base-port",
        "0",
        "--log-level",
        "warn",
    ])
    .arg("--data-dir")
    .arg(data)
    .stdin(Stdio::null())
    .stdout(Stdio::null());
    cmd
}

/// Runs `cmd` (a `raftkv server`) expecting it to refuse to start within
/// 10 s; returns its stderr.
pub fn refused_start(mut cmd: Command) -> String {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let status = wait_exit(&mut child, Duration::from_secs(10), "the refused node");
    assert!(!status.success(), "the node started");
    let out = child.wait_with_output().expect("output");
    String::from_utf8_lossy(&out.stderr).into_owned()
}
