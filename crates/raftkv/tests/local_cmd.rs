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
