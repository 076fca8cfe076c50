//! `raftkv local`: the README's "run it" command. It starts a cluster that
//! the CLI can use, and leaves no node behind when stopped by Ctrl-C or
//! killed outright.

mod common;

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{local_command, BIN};

struct Local {
    child: Child,
    dir: tempfile::TempDir,
}

impl Drop for Local {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_local() -> (Local, Vec<String>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let child = local_command(&data)
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn raftkv local");
    let local = Local { child, dir };
    let file = data.join("endpoints.txt");
    let deadline = Instant::now() + Duration::from_secs(10);
    let endpoints = loop {
        if let Ok(text) = std::fs::read_to_string(&file) {
            if text.ends_with('\n') {
                break text
                    .trim()
                    .split(',')
                    .map(str::to_owned)
                    .collect::<Vec<_>>();
            }
        }
        assert!(
            Instant::now() < deadline,
            "raftkv local wrote no endpoints file"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    (local, endpoints)
}

fn cli(args: &[&str]) -> std::process::Output {
    Command::new(BIN).args(args).output().expect("run raftkv")
}

fn all_ports_closed(endpoints: &[String], within: Duration) -> bool {
    let deadline = Instant::now() + within;
    loop {
        let open = endpoints
            .iter()
            .filter(|e| {
                TcpStream::connect_timeout(&e.parse().unwrap(), Duration::from_millis(100)).is_ok()
            })
            .count();
        if open == 0 {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn local_cluster_serves_the_cli_and_stops_cleanly_on_ctrl_c() {
    let (mut local, endpoints) = start_local();
    let eps = endpoints.join(",");
    let out = cli(&["set", "greeting", "hello world", "--endpoints", &eps]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = cli(&["get", "greeting", "--endpoints", &eps]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello world\n");
    let out = cli(&["status", "--endpoints", &eps]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("leader"));

    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(local.child.id() as libc::pid_t, libc::SIGINT) };
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = local.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "raftkv local did not stop on SIGINT"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "raftkv local exited with {status}");
    assert!(
        all_ports_closed(&endpoints, Duration::from_secs(5)),
        "a node outlived raftkv local"
    );
    let _ = local.dir.path();
}

#[test]
fn nodes_die_with_a_killed_local() {
    let (mut local, endpoints) = start_local();
    let out = cli(&["set", "k", "v", "--endpoints", &endpoints.join(",")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    local.child.kill().unwrap();
    local.child.wait().unwrap();
    assert!(
        all_ports_closed(&endpoints, Duration::from_secs(10)),
        "nodes outlived a killed raftkv local"
    );
}

#[test]
fn local_prints_each_nodes_http_address_and_the_nodes_serve_health() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut child = local_command(&dir.path().join("data"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn raftkv local");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut local = Local { child, dir };
    // The banner: "  node 1  127.0.0.1:P   http 127.0.0.1:Q   log ...".
    let mut http = Vec::new();
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line.expect("banner line");
        if let Some((_, rest)) = line.split_once(" http ") {
            http.push(rest.split_whitespace().next().unwrap().to_owned());
        }
        if line.starts_with("endpoints:") {
            break;
        }
    }
    assert_eq!(http.len(), 3, "one HTTP address per node: {http:?}");
    let deadline = Instant::now() + Duration::from_secs(10);
    for addr in &http {
        loop {
            let out = cli(&["health", "--http", addr, "--ready"]);
            if out.status.success() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{addr} not ready: {}",
                String::from_utf8_lossy(&out.stdout)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    // SAFETY: kill(2) on our own child.
    unsafe {
        libc::kill(local.child.id() as libc::pid_t, libc::SIGINT);
    }
    let _ = local.child.wait();
}
