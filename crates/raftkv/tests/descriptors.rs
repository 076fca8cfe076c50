//! A node under a low file descriptor limit survives a flood of connections
//! that never finish their preface: it caps them, closes the rest at once
//! and the silent ones at the preface deadline, keeps serving, keeps taking
//! snapshots, and loses no acknowledged write (docs/operations.md, "File
//! descriptors").

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use raftkv_client::Consistency;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The limited node and its limit: the bug report's (371 idle connections
/// made a node with this limit exit).
const LIMITED: u64 = 3;
const NOFILE: u64 = 256;
const PREFACE_MS: u64 = 2000;
/// Idle connections opened at once, then more while writes go on.
const FIRST_WAVE: usize = 600;
const LATER: usize = 400;

/// What each idle connection sends: one byte of a client or a peer, a
/// partial HTTP/2 preface, the whole peer preface without a frame, nothing.
const OPENINGS: [&[u8]; 5] = [b"P", b"R", b"PRI * HTTP/2", b"RKVPEER1", b""];

/// Opens one idle connection and watches it from then on: resolves to how
/// long after it was opened the server closed it, or `None` if it is still
/// open `patience` after opening.
async fn open_idle(
    addr: &str,
    i: usize,
    patience: Duration,
) -> Option<tokio::task::JoinHandle<Option<Duration>>> {
    let opened = Instant::now();
    let mut stream = TcpStream::connect(addr).await.ok()?;
    let bytes = OPENINGS[i % OPENINGS.len()];
    if !bytes.is_empty() {
        // A refused connection may be reset before this.
        let _ = stream.write_all(bytes).await;
    }
    Some(tokio::spawn(async move {
        let mut buf = [0u8; 16];
        loop {
            match tokio::time::timeout_at((opened + patience).into(), stream.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return Some(opened.elapsed()),
                Ok(Ok(_)) => continue,
                Err(_) => return None,
            }
        }
    }))
}

#[test]
fn a_node_under_a_low_descriptor_limit_survives_idle_connection_floods() {
    run_serial(async {
        let preface = PREFACE_MS.to_string();
        let mut cluster = Cluster::start_with_limits(
            3,
            FAST,
            &[
                "--preface-timeout-ms",
                &preface,
                // Snapshots (and their .tmp files) during the flood.
                "--snapshot-threshold",
                "40",
                "--snapshot-keep-entries",
                "10",
            ],
            &[(LIMITED, NOFILE)],
        );
        wait_for_leader(&cluster, Duration::from_secs(10)).await;
        let client = cluster.client();
        // Connections to every node before the flood, as a running
        // application would have.
        client.set("warm-up", "1").await.expect("warm-up write");
        for addr in cluster.endpoints() {
            status(&client, &addr)
                .await
                .expect("status before the flood");
        }
        let limited = cluster.addr(LIMITED);

        // Writes through the cluster while the flood goes on.
        let flooding = Arc::new(AtomicBool::new(true));
        let writer = tokio::spawn({
            let client = client.with_new_session();
            let flooding = flooding.clone();
            async move {
                let (mut acked, mut failed, mut during) = (Vec::new(), 0usize, 0usize);
                let mut i = 0;
                while flooding.load(Ordering::Relaxed) {
                    let (key, value) = (format!("k{i}"), format!("v{i}"));
                    match client.set(&key, &value).await {
                        Ok(_) => {
                            acked.push((key, value));
                            during += 1;
                        }
                        Err(e) => {
                            failed += 1;
                            eprintln!("write {i} failed during the flood: {e}");
                        }
                    }
                    i += 1;
                }
                (acked, failed, during)
            }
        });

        // Every idle connection must be closed: at once (over the caps) or
        // at the preface deadline; none may stay open long past it.
        let patience = Duration::from_millis(PREFACE_MS + 3000);
        let flood_start = Instant::now();
        let mut idle = Vec::new();
        for i in 0..FIRST_WAVE {
            idle.extend(open_idle(&limited, i, patience).await);
        }
        let first_wave_ms = flood_start.elapsed().as_millis();
        for i in 0..LATER {
            idle.extend(open_idle(&limited, FIRST_WAVE + i, patience).await);
            if i % 50 == 49 {
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
        }
        let opened = idle.len();
        // Keep writing for a while past the first deadline.
        tokio::time::sleep(Duration::from_millis(PREFACE_MS)).await;
        flooding.store(false, Ordering::Relaxed);
        let (mut acked, failed, during) = writer.await.expect("writer");

        let mut closed = Vec::new();
        for w in idle {
            closed.push(w.await.expect("join"));
        }
        let still_open = closed.iter().filter(|c| c.is_none()).count();
        let times: Vec<Duration> = closed.iter().flatten().copied().collect();
        let at_once = times
            .iter()
            .filter(|t| **t < Duration::from_millis(PREFACE_MS / 2))
            .count();
        let at_deadline: Vec<&Duration> = times
            .iter()
            .filter(|t| **t >= Duration::from_millis(PREFACE_MS / 2))
            .collect();
        let latest = times.iter().max().copied().unwrap_or_default();
        eprintln!(
            "{opened} idle connections to node {LIMITED} (RLIMIT_NOFILE {NOFILE}), first {FIRST_WAVE} \
             in {first_wave_ms} ms; closed at once: {at_once}; closed at the deadline: {}; \
             latest close {latest:?} after opening; still open: {still_open}; \
             writes acknowledged during the flood: {during}, failed: {failed}",
            at_deadline.len()
        );
        assert_eq!(opened, FIRST_WAVE + LATER, "every connect succeeded");
        assert_eq!(still_open, 0, "connections left open past the deadline");
        assert!(at_once > 0, "the caps refused none of {opened}");
        assert!(!at_deadline.is_empty(), "none was held to the deadline");
        assert!(
            latest < Duration::from_millis(PREFACE_MS + 2000),
            "closed too late: {latest:?}"
        );
        assert!(during > 0, "no write got through during the flood");

        // The node is alive and its storage did not stop.
        let child = cluster.nodes[(LIMITED - 1) as usize]
            .child
            .as_mut()
            .expect("started");
        assert!(
            child.try_wait().expect("try_wait").is_none(),
            "node {LIMITED} exited: {}",
            cluster.stderr_of(LIMITED)
        );
        let stderr = cluster.stderr_of(LIMITED);
        assert!(!stderr.contains("storage failed"), "{stderr}");

        // More writes after the flood, all acknowledged.
        for i in 0..20 {
            let (key, value) = (format!("after{i}"), format!("a{i}"));
            client
                .set(&key, &value)
                .await
                .expect("write after the flood");
            acked.push((key, value));
        }
        let leader = wait_for_leader(&cluster, Duration::from_secs(10)).await;
        let commit = status(&client, &cluster.addr(leader))
            .await
            .expect("leader status")
            .commit_index;
        wait_applied(&cluster, LIMITED, commit, Duration::from_secs(20)).await;
        for (key, value) in &acked {
            let (got, _) = client
                .get_at(&limited, key, Consistency::Stale)
                .await
                .unwrap_or_else(|e| panic!("read {key} at node {LIMITED}: {e}"));
            assert_eq!(
                got.as_deref(),
                Some(value.as_str()),
                "{key} at node {LIMITED}"
            );
        }
        let s = status(&client, &limited).await.expect("status");
        let snapshots = counter(&s, "snapshots_saved");
        eprintln!(
            "node {LIMITED}: {} acknowledged writes all readable; connections_refused_cap {}, \
             connections_preface_timeout {}, connections_bad_preface {}, accept_out_of_fds {}, \
             storage_fd_waits {}, snapshots_saved {snapshots}",
            acked.len(),
            counter(&s, "connections_refused_cap"),
            counter(&s, "connections_preface_timeout"),
            counter(&s, "connections_bad_preface"),
            counter(&s, "accept_out_of_fds"),
            counter(&s, "storage_fd_waits"),
        );
        assert!(counter(&s, "connections_refused_cap") > 0);
        assert!(counter(&s, "connections_preface_timeout") > 0);
        assert!(snapshots > 0, "node {LIMITED} took no snapshot");
        assert!(
            counter(&s, "connections_open_client") < 10,
            "idle client slots not given back"
        );
    });
}
