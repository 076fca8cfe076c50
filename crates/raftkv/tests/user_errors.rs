//! The errors users meet: each test asserts the exact message (or gRPC
//! status) a user gets for one mistake, with real processes on loopback.

mod common;

use std::io::Write;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use raftkv_client::codec::RaftkvCodec;
use raftkv_client::{pb, ClientError, Consistency};

fn server_args(addr: &str, dir: &std::path::Path) -> Vec<String> {
    single_node_args(addr, dir, "user-errors")
}

fn start_single(extra: &[&str]) -> SingleNode {
    let node = spawn_single("user-errors", extra);
    runtime().block_on(async {
        client_for(std::slice::from_ref(&node.addr))
            .set("ready", "yes")
            .await
            .expect("the node serves");
    });
    node
}

fn cli(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run raftkv")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

// ---------------------------------------------------------------------------
// 1. Values above gRPC's default 4 MiB
// ---------------------------------------------------------------------------

#[test]
fn values_above_4_mib_work_up_to_max_value_bytes_and_beyond_it_name_the_setting() {
    let node = start_single(&["--max-value-bytes", "8388608"]);
    runtime().block_on(async {
        let client = client_for(std::slice::from_ref(&node.addr));
        let five_mib = "v".repeat(5 << 20);
        client.set("big", &five_mib).await.expect("a 5 MiB value");
        let got = client.get("big").await.expect("get").value;
        assert_eq!(got.map(|v| v.len()), Some(5 << 20));

        // Just above the limit: the handler's refusal.
        let started = Instant::now();
        match client.set("big", &"v".repeat((8 << 20) + 1)).await {
            Err(ClientError::InvalidArgument(m)) => assert_eq!(
                m,
                "value of 8388609 bytes exceeds the limit of 8388608 bytes (--max-value-bytes)"
            ),
            other => panic!("{other:?}"),
        }
        // Far above it: gRPC's own size limit, rewritten to name the setting.
        match client.set("big", &"v".repeat(12 << 20)).await {
            Err(ClientError::InvalidArgument(m)) => {
                assert!(
                    m.starts_with("request of 125829") && m.contains("--max-value-bytes"),
                    "{m}"
                )
            }
            other => panic!("{other:?}"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "refusals are not retried"
        );
    });
    // The command line says the same.
    let file = node.dir.path().join("nine-mib");
    std::fs::write(&file, "v".repeat(9 << 20)).unwrap();
    let out = cli(&[
        "set",
        "k",
        "--value-file",
        file.to_str().unwrap(),
        "--endpoints",
        &node.addr,
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.starts_with("raftkv: error: invalid argument: request of 94")
            && err.contains("(--max-value-bytes)"),
        "{err}"
    );
}

#[test]
fn max_value_bytes_above_16_mib_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let mut cmd = Command::new(BIN);
    cmd.args(server_args(&addr, dir.path()))
        .args(["--max-value-bytes", "33554432"]);
    let err = refused_start(cmd);
    assert!(
        err.contains(
            "--max-value-bytes 33554432 is above the largest supported, 16777216 (16 MiB)"
        ),
        "{err}"
    );
}

// ---------------------------------------------------------------------------
// 2. Invalid UTF-8 is INVALID_ARGUMENT, naming key or value
// ---------------------------------------------------------------------------

/// `SetRequest` with bytes where the proto says string.
#[derive(Clone, PartialEq, prost::Message)]
struct RawSet {
    #[prost(bytes = "vec", tag = "1")]
    key: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    value: Vec<u8>,
}

async fn raw_set(addr: &str, key: &[u8], value: &[u8]) -> tonic::Status {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .expect("connect");
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.expect("ready");
    let request = RawSet {
        key: key.to_vec(),
        value: value.to_vec(),
    };
    grpc.unary(
        tonic::Request::new(request),
        tonic::codegen::http::uri::PathAndQuery::from_static("/raftkv.v1.Kv/Set"),
        RaftkvCodec::<RawSet, pb::WriteReply>::default(),
    )
    .await
    .expect_err("invalid UTF-8 must be refused")
}

#[test]
fn invalid_utf8_is_an_invalid_argument_naming_the_field() {
    let node = start_single(&[]);
    runtime().block_on(async {
        let status = raw_set(&node.addr, b"k\xff", b"v").await;
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert_eq!(status.message(), "key is not valid UTF-8 (SetRequest.key)");
        let status = raw_set(&node.addr, b"k", b"\xc3\x28").await;
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert_eq!(
            status.message(),
            "value is not valid UTF-8 (SetRequest.value)"
        );
        // The node still serves.
        let client = client_for(std::slice::from_ref(&node.addr));
        assert_eq!(
            client.get("ready").await.unwrap().value.as_deref(),
            Some("yes")
        );
    });
}

// ---------------------------------------------------------------------------
// 3. `set --value-file`, and an empty key for get/delete
// ---------------------------------------------------------------------------

#[test]
fn set_takes_a_1_mib_value_from_a_file_or_stdin_and_empty_keys_say_so() {
    let node = start_single(&[]);
    let value: String = (0..(1 << 20))
        .map(|i| (b'a' + (i % 26) as u8) as char)
        .collect();
    let file = node.dir.path().join("value.txt");
    std::fs::write(&file, &value).unwrap();
    let out = cli(&[
        "set",
        "from-file",
        "--value-file",
        file.to_str().unwrap(),
        "--endpoints",
        &node.addr,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = cli(&["get", "from-file", "--endpoints", &node.addr]);
    assert_eq!(out.stdout.len(), (1 << 20) + 1);
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("abcdefg"));

    let mut child = Command::new(BIN)
        .args([
            "set",
            "from-stdin",
            "--value-file",
            "-",
            "--endpoints",
            &node.addr,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"line one\nline\ttwo\n")
        .unwrap();
    let status = wait_exit(&mut child, Duration::from_secs(15), "raftkv set");
    assert!(status.success());
    let out = cli(&["get", "from-stdin", "--endpoints", &node.addr]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "line one\nline\ttwo\n\n"
    );

    let out = cli(&[
        "set",
        "k",
        "v",
        "--value-file",
        "-",
        "--endpoints",
        &node.addr,
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("cannot be used with"),
        "{}",
        stderr(&out)
    );

    // The library (and so any client) meets the same refusal for a read.
    runtime().block_on(async {
        let client = client_for(std::slice::from_ref(&node.addr));
        for consistency in [Consistency::Linearizable, Consistency::Stale] {
            match client.get_with("", consistency).await {
                Err(ClientError::InvalidArgument(m)) => assert_eq!(m, "empty key"),
                other => panic!("{other:?}"),
            }
        }
    });
    for args in [vec!["get", ""], vec!["delete", ""], vec!["set", "", "v"]] {
        let mut args = args.clone();
        args.extend(["--endpoints", &node.addr]);
        let out = cli(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert_eq!(
            stderr(&out),
            "raftkv: error: invalid argument: empty key\n",
            "{args:?}"
        );
    }
}

// ---------------------------------------------------------------------------
// 5. A storage refusal: once on stderr, and in dump.txt
// ---------------------------------------------------------------------------

#[test]
fn a_damaged_folder_is_refused_once_on_stderr_and_in_dump_txt() {
    let mut node = start_single(&[]);
    node.child.kill().unwrap();
    node.child.wait().unwrap();
    let node_dir = node.dir.path().join("logs_node_1");
    std::fs::write(node_dir.join("metadata.txt"), "garbage here\n").unwrap();
    let mut cmd = Command::new(BIN);
    cmd.args(server_args(&node.addr, node.dir.path()));
    let err = refused_start(cmd);
    let reason =
        "metadata.txt:1: unknown name \"garbage\" (expected term, voted_for, commit, repair)";
    assert_eq!(err.matches(reason).count(), 1, "{err}");
    assert_eq!(err.matches("raftkv: error:").count(), 1, "{err}");
    let dump = std::fs::read_to_string(node_dir.join("dump.txt")).unwrap();
    let last = dump.lines().last().unwrap_or_default();
    assert!(
        last.contains("refused to start: storage: ") && last.ends_with(reason),
        "{dump}"
    );
}

// ---------------------------------------------------------------------------
// 6. `--log-level` is checked
// ---------------------------------------------------------------------------

#[test]
fn a_misspelt_log_level_is_refused_naming_the_flag_and_the_levels() {
    let expected = "--log-level \"debg\": \"debg\" is not a level; accepted: error, warn, info, \
                    debug, trace, off, or target=level directives such as raftkv_server=debug \
                    (comma-separated)";
    let out = cli(&["server", "--id", "1", "--log-level", "debg"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains(expected), "{}", stderr(&out));
    let dir = tempfile::tempdir().unwrap();
    let out = cli(&[
        "local",
        "--log-level",
        "debg",
        "--data-dir",
        dir.path().to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains(expected), "{}", stderr(&out));
    // In a config file too.
    let config = dir.path().join("node.toml");
    std::fs::write(&config, "id = 1\nlog-level = \"debg\"\n").unwrap();
    let out = cli(&["server", "--config", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains(expected), "{}", stderr(&out));
}

// ---------------------------------------------------------------------------
// 7. No leader: the error names every endpoint tried
// ---------------------------------------------------------------------------

#[test]
fn get_with_no_cluster_fails_fast_naming_the_endpoints() {
    let a = format!("127.0.0.1:{}", free_port());
    let b = format!("127.0.0.1:{}", free_port());
    let started = Instant::now();
    let out = cli(&["get", "k", "--endpoints", &format!("{a},{b}")]);
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.starts_with(&format!(
            "raftkv: error: no leader reachable (tried {a}, {b}): "
        )) && err.contains("tcp connect error"),
        "{err}"
    );
}

#[test]
fn with_one_node_of_three_set_says_no_leader_reachable_and_status_fails() {
    run_serial(async {
        let mut cluster = Cluster::start(3);
        wait_for_leader(&cluster, Duration::from_secs(10)).await;
        let eps = cluster.endpoints().join(",");
        // `member remove` of a non-member is an error naming the members.
        let out = cli(&["member", "remove", "9", "--endpoints", &eps]);
        assert_eq!(out.status.code(), Some(1));
        assert_eq!(
            stderr(&out),
            "raftkv: error: rejected by the server: node 9 is not a member \
             (voters: 1, 2, 3; learners: none)\n"
        );
        let out = cli(&["status", "--endpoints", &eps]);
        assert!(out.status.success(), "{}", stderr(&out));

        cluster.kill(2);
        cluster.kill(3);
        let out = cli(&["set", "k", "v", "--timeout-ms", "3000", "--endpoints", &eps]);
        assert_eq!(out.status.code(), Some(1));
        let err = stderr(&out);
        assert!(
            err.starts_with("raftkv: error: no leader reachable (tried "),
            "{err}"
        );
        for ep in cluster.endpoints() {
            assert!(err.contains(&ep), "{ep} not named: {err}");
        }
        let out = cli(&["status", "--endpoints", &eps]);
        assert_eq!(out.status.code(), Some(1));
        assert!(
            stderr(&out).contains("no quorum: only 1 of 3 nodes answered (a majority is 2)"),
            "{}",
            stderr(&out)
        );
        // One node asked, and it answers: a health check passes.
        let out = cli(&["status", "--endpoints", &cluster.addr(1)]);
        assert!(out.status.success(), "{}", stderr(&out));
    });
}

// ---------------------------------------------------------------------------
// 9. A second `raftkv local` in the same folder
// ---------------------------------------------------------------------------

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        // SIGINT first so it stops its nodes; then make sure.
        unsafe { libc::kill(self.0.id() as libc::pid_t, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_second_local_in_the_same_folder_is_refused_before_touching_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let local = |stderr: Stdio| {
        local_command(&data)
            .stderr(stderr)
            .spawn()
            .expect("spawn raftkv local")
    };
    let first = Killed(local(Stdio::null()));
    let endpoints_file = data.join("endpoints.txt");
    let deadline = Instant::now() + Duration::from_secs(10);
    let endpoints = loop {
        if let Ok(text) = std::fs::read_to_string(&endpoints_file) {
            if text.ends_with('\n') {
                break text;
            }
        }
        assert!(Instant::now() < deadline, "no endpoints file");
        std::thread::sleep(Duration::from_millis(20));
    };
    let eps = endpoints.trim().to_owned();
    let out = cli(&["set", "k", "v", "--endpoints", &eps]);
    assert!(out.status.success(), "{}", stderr(&out));
    let log1 = std::fs::read(data.join("node-1.log")).unwrap();

    let mut second = Killed(local(Stdio::piped()));
    let status = wait_exit(
        &mut second.0,
        Duration::from_secs(10),
        "second raftkv local",
    );
    assert_eq!(status.code(), Some(1));
    let mut err = String::new();
    std::io::Read::read_to_string(&mut second.0.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(
        err,
        format!(
            "raftkv: error: {} is in use by another `raftkv local` (pid {}); stop it, or give \
             another --data-dir\n",
            data.display(),
            first.0.id()
        )
    );
    // Nothing of the running cluster was touched.
    assert_eq!(std::fs::read_to_string(&endpoints_file).unwrap(), endpoints);
    assert!(std::fs::read(data.join("node-1.log")).unwrap().len() >= log1.len());
    let out = cli(&["get", "k", "--endpoints", &eps]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "v\n");
}
