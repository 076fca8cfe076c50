//! Bad input never crashes a node: oversized keys and values, request floods,
//! hostile peer messages; and a node that cannot start says why and exits.

mod common;

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use std::io::{Read, Write};

use raftkv_client::{pb, ClientError, Consistency};
use raftkv_server::peer_wire::{encode_frame, PEER_MAGIC};

fn server_args(addr: &str, dir: &std::path::Path, cluster: &str) -> Vec<String> {
    single_node_args(addr, dir, cluster)
}

fn start_single(extra: &[&str]) -> SingleNode {
    spawn_single("bad-input", extra)
}

/// Runs `raftkv server` expecting it to refuse to start within 10 s.
fn expect_start_failure(args: &[String]) -> String {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn server");
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("server {args:?} should have refused to start");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("output");
    assert!(!out.status.success(), "server {args:?} exited with success");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn cli(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("run raftkv")
}

#[test]
fn oversized_keys_and_values_are_invalid_arguments() {
    let node = start_single(&["--max-key-bytes", "16", "--max-value-bytes", "64"]);
    runtime().block_on(async {
        let client = client_for(std::slice::from_ref(&node.addr));
        client
            .set("ok", "fine")
            .await
            .expect("a normal write works");
        let long_key = "k".repeat(17);
        assert!(matches!(
            client.set(&long_key, "v").await,
            Err(ClientError::InvalidArgument(_))
        ));
        assert!(matches!(
            client.set("k", &"v".repeat(65)).await,
            Err(ClientError::InvalidArgument(_))
        ));
        assert!(matches!(
            client.get(&long_key).await,
            Err(ClientError::InvalidArgument(_))
        ));
        assert!(matches!(
            client.set("", "v").await,
            Err(ClientError::InvalidArgument(_))
        ));
        let reply = client
            .serve_client_at(&node.addr, "FROB x")
            .await
            .expect("text call answers");
        assert!(
            !reply.success && reply.data.contains("cannot parse"),
            "{reply:?}"
        );
        let reply = client
            .serve_client_at(&node.addr, "GET ok")
            .await
            .expect("text call answers");
        assert!(
            reply.success && reply.data == "fine" && reply.leader_id == 1,
            "{reply:?}"
        );
        let status = client.status_at(&node.addr).await.expect("node still up");
        assert!(counter(&status, "client_invalid") >= 4);
    });
    let out = cli(&["set", &"k".repeat(17), "v", "--endpoints", &node.addr]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid argument"));
}

#[test]
fn request_floods_get_resource_exhausted() {
    let node = start_single(&["--rate-limit", "20"]);
    runtime().block_on(async {
        let client = client_for(std::slice::from_ref(&node.addr));
        client.set("k", "v").await.expect("write");
        let mut exhausted = 0;
        for _ in 0..200 {
            match client.get_at(&node.addr, "k", Consistency::Stale).await {
                Ok(_) => {}
                Err(ClientError::ResourceExhausted(_)) => exhausted += 1,
                Err(e) => panic!("unexpected error {e}"),
            }
        }
        assert!(
            exhausted > 100,
            "only {exhausted} of 200 requests were limited"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        client
            .get_at(&node.addr, "k", Consistency::Stale)
            .await
            .expect("the bucket refills");
    });
}

/// A raw peer connection (docs/server.md, "Peer connections").
fn peer_connection(addr: &str) -> std::net::TcpStream {
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(PEER_MAGIC).expect("preface");
    s
}

fn send_batch(s: &mut std::net::TcpStream, batch: &pb::PeerBatch) {
    let mut frame = Vec::new();
    encode_frame(batch, &mut frame);
    s.write_all(&frame).expect("frame");
}

/// Reads until the node closes the connection (true) or the read times
/// out (false); acknowledgements on the way are skipped.
fn closed_by_node(s: &mut std::net::TcpStream) -> bool {
    let mut buf = [0u8; 64];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

#[test]
fn hostile_peer_messages_are_dropped_and_counted() {
    let node = start_single(&[]);
    runtime().block_on(async {
        let client = client_for(std::slice::from_ref(&node.addr));
        client.set("k", "v").await.expect("write");
        let batch = |cluster: &str, from: u64, from_addr: &str| pb::PeerBatch {
            cluster_id: cluster.into(),
            from,
            to: 1,
            messages: vec![],
            from_addr: from_addr.into(),
            from_zone: String::new(),
        };
        // Another cluster is refused: the node closes the connection.
        let mut peer = peer_connection(&node.addr);
        send_batch(&mut peer, &batch("other", 2, ""));
        assert!(closed_by_node(&mut peer), "another cluster is refused");
        // A node may not claim to be the receiver itself (any other id may
        // write: nodes added at run time are new to everyone).
        let mut peer = peer_connection(&node.addr);
        send_batch(&mut peer, &batch("bad-input", 1, ""));
        assert!(closed_by_node(&mut peer), "a batch from itself is refused");
        // A sender address that is not host:port is ignored and counted; the
        // batch itself is taken and acknowledged (a count of 1).
        let mut peer = peer_connection(&node.addr);
        send_batch(&mut peer, &batch("bad-input", 9, "no port here\n"));
        let mut ack = [0u8; 8];
        peer.read_exact(&mut ack).expect("an acknowledgement");
        assert_eq!(u64::from_be_bytes(ack), 1);
        // Garbage after a good preface, and a bad preface, close the connection.
        let mut peer = peer_connection(&node.addr);
        peer.write_all(&[0, 0, 0, 3, 0xff, 0xff, 0xff]).unwrap();
        assert!(closed_by_node(&mut peer), "an undecodable frame");
        let mut peer = std::net::TcpStream::connect(&node.addr).unwrap();
        peer.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        peer.write_all(b"RUBBISH!").unwrap();
        assert!(closed_by_node(&mut peer), "a bad preface");
        let status = client.status_at(&node.addr).await.expect("node up");
        assert_eq!(counter(&status, "peer_batches_rejected_cluster"), 2);
        assert_eq!(counter(&status, "peer_messages_malformed"), 3);
        assert_eq!(
            client
                .get("k")
                .await
                .expect("still serving")
                .value
                .as_deref(),
            Some("v")
        );
    });
}

#[test]
fn get_of_a_missing_key_exits_non_zero() {
    let node = start_single(&[]);
    let out = cli(&["set", "present", "yes", "--endpoints", &node.addr]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = cli(&["get", "present", "--endpoints", &node.addr]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "yes\n",
        "the value alone on stdout"
    );
    let out = cli(&[
        "get",
        "present",
        "--consistency",
        "stale",
        "--endpoints",
        &node.addr,
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "yes\n");
    assert!(String::from_utf8_lossy(&out.stderr).contains("stale read from node 1"));
    let out = cli(&["get", "absent", "--endpoints", &node.addr]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("key not found"));
    let out = cli(&["delete", "present", "--endpoints", &node.addr]);
    assert!(out.status.success());
    assert_eq!(
        cli(&["get", "present", "--endpoints", &node.addr])
            .status
            .code(),
        Some(1)
    );
}

#[test]
fn start_on_a_port_in_use_fails_clearly() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let stderr = expect_start_failure(&server_args(&addr, dir.path(), "c"));
    assert!(stderr.contains("cannot listen on"), "{stderr}");
}

#[test]
fn start_on_another_clusters_data_fails_clearly() {
    let mut node = start_single(&[]);
    runtime().block_on(async {
        client_for(std::slice::from_ref(&node.addr))
            .set("k", "v")
            .await
            .expect("node is up");
    });
    let dir = node.dir.path().to_owned();
    let addr = node.addr.clone();
    node.child.kill().expect("kill");
    node.child.wait().expect("wait");
    let stderr = expect_start_failure(&server_args(&addr, &dir, "another-cluster"));
    assert!(stderr.contains("belongs to another cluster"), "{stderr}");
}

#[test]
fn inconsistent_configuration_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let mut args = server_args(&addr, dir.path(), "c");
    args.extend(["--peers".into(), "1=127.0.0.1:1,2=127.0.0.1:2".into()]);
    assert!(expect_start_failure(&args).contains("inconsistent peers"));

    let mut args = server_args(&addr, dir.path(), "c");
    args.extend(["--peers".into(), "2=127.0.0.1:2,3=127.0.0.1:2".into()]);
    assert!(expect_start_failure(&args).contains("share an address"));

    let mut args = server_args(&addr, dir.path(), "c");
    args.extend([
        "--lease-ms".into(),
        "600".into(),
        "--election-timeout-min-ms".into(),
        "500".into(),
    ]);
    let stderr = expect_start_failure(&args);
    assert!(
        stderr.contains("lease duration") && stderr.contains("minimum election timeout"),
        "{stderr}"
    );

    let missing = dir.path().join("does-not-exist");
    let stderr = expect_start_failure(&server_args(&addr, &missing, "c"));
    assert!(stderr.contains("does not exist"), "{stderr}");
}
