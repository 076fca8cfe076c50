//! `raftkv local`: an N-node cluster on this machine as child processes of
//! this one. Ctrl-C (or SIGTERM) stops every node with SIGTERM, then SIGKILL
//! after a grace period; if this process dies, the kernel sends the children
//! SIGTERM (PR_SET_PDEATHSIG), so no node is left behind.

use std::fs::File;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;

#[derive(Args, Debug)]
pub struct LocalArgs {
    /// Number of nodes.
    #[arg(long, default_value_t = 3)]
    pub nodes: u64,
    /// Node i listens on 127.0.0.1:(BASE_PORT + i - 1); 0 picks free ports.
    #[arg(long, default_value_t = 7001)]
    pub base_port: u16,
    /// Data directory shared by the nodes (each has its own logs_node_ID
    /// folder in it); created if missing. Node stderr goes to
    /// DATA_DIR/node-ID.log.
    #[arg(long, default_value = "raftkv-data")]
    pub data_dir: PathBuf,
    #[arg(long, default_value = "local")]
    pub cluster_id: String,
    /// Extra flags passed to every `raftkv server` (e.g. "--lease-ms 300").
    #[arg(long, allow_hyphen_values = true, default_value = "")]
    pub server_args: String,
    /// Log level of the nodes.
    #[arg(long, default_value = "info", value_parser = crate::parse_log_level)]
    pub log_level: String,
    /// Do not open the interactive prompt even on a terminal; just wait for
    /// Ctrl-C.
    #[arg(long)]
    pub no_prompt: bool,
}

pub fn run(args: LocalArgs) -> anyhow::Result<ExitCode> {
    if args.nodes == 0 || args.nodes > 99 {
        bail!("--nodes must be between 1 and 99");
    }
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create data directory {}", args.data_dir.display()))?;
    // Before anything in the folder is touched: a second `raftkv local`
    // there would rewrite endpoints.txt and truncate the nodes' logs.
    let _lock = lock_data_dir(&args.data_dir)?;
    let ports = choose_ports(args.nodes, args.base_port)?;
    let endpoints: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    // Each node's HTTP listener (/metrics, /livez, /readyz) on a free
    // loopback port, unless --server-args sets one.
    let http: Vec<Option<String>> = if args.server_args.contains("--http-listen") {
        vec![None; endpoints.len()]
    } else {
        free_ports(args.nodes, &ports)?
            .into_iter()
            .map(|p| Some(format!("127.0.0.1:{p}")))
            .collect()
    };
    let peers: Vec<String> = endpoints
        .iter()
        .enumerate()
        .map(|(i, e)| format!("{}={e}", i + 1))
        .collect();
    let peers = peers.join(",");

    let stop = Arc::new(AtomicBool::new(false));
    for signal in [libc::SIGINT, libc::SIGTERM] {
        signal_hook_flag(signal, stop.clone())?;
    }
    let exe = std::env::current_exe().context("cannot find the raftkv executable")?;
    let mut children = Vec::new();
    for (i, endpoint) in endpoints.iter().enumerate() {
        let id = i as u64 + 1;
        let log_path = args.data_dir.join(format!("node-{id}.log"));
        let log = File::create(&log_path)
            .with_context(|| format!("cannot create {}", log_path.display()))?;
        let mut cmd = Command::new(&exe);
        cmd.arg("server")
            .args([
                "--id",
                &id.to_string(),
                "--listen",
                endpoint,
                "--peers",
                &peers,
            ])
            .arg("--data-dir")
            .arg(&args.data_dir)
            .args([
                "--cluster-id",
                &args.cluster_id,
                "--log-level",
                &args.log_level,
            ])
            .args(args.server_args.split_whitespace());
        // The nodes share this machine's cores (docs/operations.md), unless
        // --server-args says otherwise.
        if !args.server_args.contains("--runtime-threads") {
            cmd.args(["--runtime-threads", "1"]);
        }
        if let Some(addr) = &http[i] {
            cmd.args(["--http-listen", addr]);
        }
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(log);
        die_with_parent(&mut cmd);
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start node {id}"))?;
        children.push((id, child));
    }
    let endpoints_file = args.data_dir.join("endpoints.txt");
    std::fs::write(&endpoints_file, endpoints.join(",") + "\n")?;
    println!(
        "raftkv local cluster {:?}: {} nodes",
        args.cluster_id, args.nodes
    );
    for (i, e) in endpoints.iter().enumerate() {
        let http = http[i]
            .as_ref()
            .map_or(String::new(), |h| format!("   http {h}"));
        println!(
            "  node {}  {e}{http}   log {}",
            i + 1,
            args.data_dir.join(format!("node-{}.log", i + 1)).display()
        );
    }
    if let Some(Some(h)) = http.first() {
        println!("(metrics: curl http://{h}/metrics; health: /livez, /readyz?verbose)");
    }
    println!("endpoints: {}", endpoints.join(","));
    if args.data_dir == std::path::Path::new(crate::client_cmd::DEFAULT_DATA_DIR) {
        println!("(`raftkv set/get/status/client` started in this folder find them by themselves)");
    } else {
        println!(
            "(use --endpoints {} with raftkv set/get/status/client)",
            endpoints.join(",")
        );
    }
    use std::io::IsTerminal;
    if !args.no_prompt && std::io::stdin().is_terminal() {
        println!("leave the prompt (QUIT, Ctrl-D or Ctrl-C) to stop the cluster");
        let conn = crate::client_cmd::ConnArgs {
            endpoints: Some(endpoints.join(",")),
            timeout_ms: 10_000,
        };
        if let Err(e) = crate::client_cmd::prompt(&conn) {
            eprintln!("raftkv local: prompt failed: {e:#}");
        }
        stop.store(true, Ordering::SeqCst);
    } else {
        println!("press Ctrl-C to stop the cluster");
    }

    let mut exited = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(100));
        for (id, child) in &mut children {
            if let Ok(Some(status)) = child.try_wait() {
                if !exited.contains(id) {
                    eprintln!("raftkv local: node {id} exited ({status}); see its log");
                    exited.push(*id);
                }
            }
        }
        if exited.len() == children.len() {
            eprintln!("raftkv local: every node has exited");
            return Ok(ExitCode::FAILURE);
        }
    }
    println!("stopping {} nodes...", children.len());
    stop_children(&mut children, Duration::from_secs(5));
    println!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// The lock file `raftkv local` holds in its data directory while it runs.
pub const LOCK_FILE: &str = "local.lock";

/// Takes an exclusive flock on DATA_DIR/local.lock and writes this pid in
/// it; the lock goes when the returned file is closed, or when this process
/// dies however it dies. Refuses, naming the folder and the pid, when
/// another `raftkv local` holds it.
fn lock_data_dir(dir: &Path) -> anyhow::Result<File> {
    use std::io::{Read, Seek, Write};
    use std::os::unix::io::AsRawFd;
    let path = dir.join(LOCK_FILE);
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    // SAFETY: flock(2) on a descriptor this function owns.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            let holder = match text.trim() {
                "" => "pid unknown".to_owned(),
                pid => format!("pid {pid}"),
            };
            bail!(
                "{} is in use by another `raftkv local` ({holder}); stop it, or give another --data-dir",
                dir.display()
            );
        }
        return Err(err).with_context(|| format!("cannot lock {}", path.display()));
    }
    file.set_len(0)?;
    file.rewind()?;
    writeln!(file, "{}", std::process::id())?;
    file.flush()?;
    Ok(file)
}

fn choose_ports(nodes: u64, base_port: u16) -> anyhow::Result<Vec<u16>> {
    if base_port == 0 {
        // Hold every listener until all ports are chosen so none repeats.
        let listeners: Vec<TcpListener> = (0..nodes)
            .map(|_| TcpListener::bind("127.0.0.1:0"))
            .collect::<Result<_, _>>()?;
        return Ok(listeners
            .iter()
            .map(|l| l.local_addr().map(|a| a.port()))
            .collect::<Result<_, _>>()?);
    }
    let last = u64::from(base_port) + nodes - 1;
    if last > u64::from(u16::MAX) {
        bail!("--base-port {base_port} leaves no room for {nodes} nodes");
    }
    Ok((0..nodes).map(|i| base_port + i as u16).collect())
}

/// `n` free loopback ports, none of them in `taken`: chosen while every
/// listener is held, so none repeats.
fn free_ports(n: u64, taken: &[u16]) -> anyhow::Result<Vec<u16>> {
    let mut held = Vec::new();
    let mut ports = Vec::new();
    while (ports.len() as u64) < n {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        if !taken.contains(&port) {
            ports.push(port);
        }
        held.push(listener);
    }
    Ok(ports)
}

/// SIGTERM to the child when this process dies, however it dies.
fn die_with_parent(cmd: &mut Command) {
    // SAFETY: prctl is async-signal-safe and touches only the child's state.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

fn stop_children(children: &mut [(u64, Child)], grace: Duration) {
    for (_, child) in children.iter() {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
        }
    }
    let deadline = Instant::now() + grace;
    for (id, child) in children.iter_mut() {
        loop {
            match child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => {
                    eprintln!("raftkv local: node {id} did not stop in {grace:?}; killing it");
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
            }
        }
    }
}

static STOP_FLAG: std::sync::OnceLock<Arc<AtomicBool>> = std::sync::OnceLock::new();

extern "C" fn on_signal(_: libc::c_int) {
    if let Some(flag) = STOP_FLAG.get() {
        flag.store(true, Ordering::SeqCst);
    }
}

/// Sets `flag` when `signal` arrives (a minimal, async-signal-safe handler).
fn signal_hook_flag(signal: libc::c_int, flag: Arc<AtomicBool>) -> anyhow::Result<()> {
    let _ = STOP_FLAG.set(flag);
    // SAFETY: the handler only stores to an atomic.
    let previous = unsafe { libc::signal(signal, on_signal as *const () as libc::sighandler_t) };
    if previous == libc::SIG_ERR {
        bail!("cannot install a handler for signal {signal}");
    }
    Ok(())
}
