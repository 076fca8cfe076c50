//! The HTTP listener (`--http-listen`) of real nodes: `/metrics` parses as
//! Prometheus text and its values move with the workload; `/readyz` is
//! ready once a leader exists and turns unready on a node left alone;
//! `/livez` stays up; `raftkv health` reports both.

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use prometheus_parse::{Sample, Scrape, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One HTTP/1.1 GET; the status code and the body, or `None` when nothing
/// answers (within 5 s).
async fn try_http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    let ask = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.ok()?;
        let answer = String::from_utf8(answer).ok()?;
        let code = answer.get(9..12)?.parse().ok()?;
        let body = answer.split_once("\r\n\r\n")?.1.to_owned();
        Some((code, body))
    };
    tokio::time::timeout(Duration::from_secs(5), ask)
        .await
        .ok()
        .flatten()
}

/// One HTTP/1.1 GET that must be answered.
async fn http_get(addr: &str, path: &str) -> (u16, String) {
    try_http_get(addr, path)
        .await
        .unwrap_or_else(|| panic!("no HTTP answer from {addr}{path}"))
}

/// A node's `/metrics`, parsed.
async fn scrape(addr: &str) -> Vec<Sample> {
    let (code, body) = http_get(addr, "/metrics").await;
    assert_eq!(code, 200, "/metrics of {addr}: {body}");
    assert!(body.ends_with("# EOF\n"), "the exposition is complete");
    Scrape::parse(body.lines().map(|l| Ok(l.to_owned())))
        .expect("the exposition parses")
        .samples
}

fn number(v: &Value) -> f64 {
    match v {
        Value::Counter(x) | Value::Gauge(x) | Value::Untyped(x) => *x,
        other => panic!("not a single number: {other:?}"),
    }
}

/// The value of `name` with the label `label` (or none: `("", "")`).
fn value(samples: &[Sample], name: &str, label: (&str, &str)) -> f64 {
    let found = samples
        .iter()
        .find(|s| {
            s.metric == name && (label.0.is_empty() || s.labels.get(label.0) == Some(label.1))
        })
        .unwrap_or_else(|| panic!("no sample {name}{label:?}"));
    number(&found.value)
}

fn http_of(cluster: &Cluster, id: u64) -> String {
    cluster.nodes[(id - 1) as usize]
        .http
        .clone()
        .expect("the node has --http-listen")
}

/// Polls `/readyz` of `addr` until it answers `want`; returns the body.
async fn wait_ready_code(addr: &str, want: u16, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        // A node just (re)started may not listen yet.
        let (code, body) = try_http_get(addr, "/readyz?verbose")
            .await
            .unwrap_or((0, "no answer".into()));
        if code == want {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "{addr}/readyz still {code}, not {want}, after {within:?}:\n{body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every metric the docs promise, by the name a sample carries.
const PROMISED: [&str; 24] = [
    "raftkv_has_leader",
    "raftkv_is_leader",
    "raftkv_term",
    "raftkv_leader_changes_total",
    "raftkv_proposals_committed_total",
    "raftkv_proposals_applied_total",
    "raftkv_proposals_failed_total",
    "raftkv_proposals_pending",
    "raftkv_storage_fsync_duration_seconds",
    "raftkv_apply_duration_seconds",
    "raftkv_lease_held",
    "raftkv_lease_remaining_seconds",
    "raftkv_reads_total",
    "raftkv_snapshots_saved_total",
    "raftkv_snapshot_size_bytes",
    "raftkv_data_dir_size_bytes",
    "raftkv_client_sessions",
    "raftkv_requests_refused_total",
    "raftkv_client_requests_total",
    "raftkv_peer_messages_sent_total",
    "raftkv_peer_messages_received_total",
    "raftkv_client_connections",
    "raftkv_leader_commit_index",
    "raftkv_status_available",
];

#[test]
fn metrics_and_readiness_follow_the_cluster() {
    run_serial(async {
        let mut cluster = Cluster::start_with_http(3, FAST);
        let leader = wait_for_leader(&cluster, Duration::from_secs(10)).await;
        let ids = [1u64, 2, 3];
        for id in ids {
            let body = wait_ready_code(&http_of(&cluster, id), 200, Duration::from_secs(5)).await;
            assert!(body.contains("[+]leader ok"), "{body}");
        }

        // Every promised metric on every node; one leader; one term.
        let deadline = Instant::now() + Duration::from_secs(5);
        let by_node = loop {
            let mut by_node = BTreeMap::new();
            for id in ids {
                by_node.insert(id, scrape(&http_of(&cluster, id)).await);
            }
            let terms: Vec<f64> = by_node
                .values()
                .map(|s| value(s, "raftkv_term", ("", "")))
                .collect();
            if terms.iter().all(|t| *t == terms[0]) || Instant::now() > deadline {
                break by_node;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let mut terms = Vec::new();
        for (id, samples) in &by_node {
            for name in PROMISED {
                assert!(
                    samples.iter().any(|s| s.metric == name),
                    "node {id}: no {name} in /metrics"
                );
            }
            assert_eq!(
                value(samples, "raftkv_has_leader", ("", "")),
                1.0,
                "node {id}"
            );
            let is_leader = value(samples, "raftkv_is_leader", ("", ""));
            assert_eq!(
                is_leader == 1.0,
                *id == leader,
                "node {id}: is_leader {is_leader}"
            );
            assert!(value(samples, "raftkv_leader_changes_total", ("", "")) >= 1.0);
            terms.push(value(samples, "raftkv_term", ("", "")));
        }
        assert!(
            terms.iter().all(|t| *t == terms[0] && *t >= 1.0),
            "terms {terms:?}"
        );
        let leader_http = http_of(&cluster, leader);
        let before = scrape(&leader_http).await;
        let peers: Vec<&Sample> = before
            .iter()
            .filter(|s| s.metric == "raftkv_peer_last_contact_seconds")
            .collect();
        assert_eq!(peers.len(), 2, "the leader has a last contact per peer");
        assert!(peers.iter().all(|s| number(&s.value) < 1.0));
        let round_trips: Vec<f64> = before
            .iter()
            .filter(|s| s.metric == "raftkv_peer_round_trip_seconds")
            .map(|s| number(&s.value))
            .collect();
        assert_eq!(
            round_trips.len(),
            2,
            "a round trip per peer: {round_trips:?}"
        );
        assert!(
            round_trips.iter().all(|rt| *rt > 0.0 && *rt < 1.0),
            "{round_trips:?}"
        );
        assert!(matches!(
            before
                .iter()
                .find(|s| s.metric == "raftkv_storage_fsync_duration_seconds")
                .map(|s| &s.value),
            Some(Value::Histogram(_))
        ));

        // Writes move the commit index; lease reads the lease path.
        let client = cluster.client();
        for i in 0..50 {
            client.set(&format!("k{i}"), "v").await.expect("set");
        }
        for i in 0..50 {
            client.get(&format!("k{i}")).await.expect("get");
        }
        let after = scrape(&leader_http).await;
        let grew = |name: &str, label: (&str, &str)| {
            value(&after, name, label) - value(&before, name, label)
        };
        assert!(grew("raftkv_proposals_committed_total", ("", "")) >= 50.0);
        assert!(grew("raftkv_proposals_applied_total", ("", "")) >= 50.0);
        assert!(grew("raftkv_client_requests_total", ("", "")) >= 100.0);
        let lease = grew("raftkv_reads_total", ("path", "lease"));
        let readindex = grew("raftkv_reads_total", ("path", "readindex"));
        assert!(
            lease >= 1.0 && lease + readindex >= 50.0,
            "lease {lease}, readindex {readindex}"
        );
        assert!(value(&after, "raftkv_client_sessions", ("", "")) >= 1.0);
        assert!(value(&after, "raftkv_data_dir_size_bytes", ("", "")) > 0.0);
        let fsyncs = after
            .iter()
            .find(|s| s.metric == "raftkv_storage_fsync_duration_seconds")
            .map(|s| match &s.value {
                Value::Histogram(buckets) => buckets.iter().map(|b| b.count).fold(0.0, f64::max),
                other => panic!("fsync is not a histogram: {other:?}"),
            });
        assert!(fsyncs.unwrap_or(0.0) >= 1.0, "the leader timed its fsyncs");

        // Unknown paths are 404.
        assert_eq!(http_get(&leader_http, "/nope").await.0, 404);

        // Alone, the leader loses its leadership: unready, still alive.
        for id in ids.into_iter().filter(|id| *id != leader) {
            cluster.kill(id);
        }
        let killed = Instant::now();
        let within = Duration::from_millis(10 * ELECTION_MAX_MS);
        let body = wait_ready_code(&leader_http, 503, within).await;
        println!("unready {:?} after the kills", killed.elapsed());
        assert!(body.contains("[-]leader failed: no leader known"), "{body}");
        assert!(body.contains("[+]storage ok"), "{body}");
        assert!(body.ends_with("readyz check failed\n"), "{body}");
        let (code, healthz) = http_get(&leader_http, "/healthz").await;
        assert_eq!(code, 503, "{healthz}");
        let (code, live) = http_get(&leader_http, "/livez?verbose").await;
        assert_eq!(
            (code, live.as_str()),
            (200, "[+]ping ok\nlivez check passed\n")
        );
        let alone = scrape(&leader_http).await;
        assert_eq!(value(&alone, "raftkv_has_leader", ("", "")), 0.0);
        assert_eq!(value(&alone, "raftkv_is_leader", ("", "")), 0.0);

        // `raftkv health`, as the container's health check runs it.
        let health = |ready: bool| {
            let mut cmd = Command::new(BIN);
            cmd.args(["health", "--http", &leader_http]);
            if ready {
                cmd.arg("--ready");
            }
            cmd.output().expect("run raftkv health")
        };
        let live = health(false);
        assert!(live.status.success(), "{live:?}");
        let ready = health(true);
        assert_eq!(ready.status.code(), Some(1), "{ready:?}");
        assert!(String::from_utf8_lossy(&ready.stdout).contains("[-]leader failed"));

        // Healed: the others come back, a leader is elected, and every node
        // is ready again.
        for id in ids.into_iter().filter(|id| *id != leader) {
            cluster.spawn(id);
        }
        let healed = Instant::now();
        for id in ids {
            let body = wait_ready_code(&http_of(&cluster, id), 200, Duration::from_secs(15)).await;
            assert!(body.contains("[+]leader ok"), "node {id}: {body}");
        }
        println!("all ready {:?} after the restarts", healed.elapsed());
        assert!(health(true).status.success());
    });
}

#[test]
fn a_taken_http_port_is_a_clear_startup_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut cmd = Command::new(BIN);
    cmd.args(single_node_args(
        &format!("127.0.0.1:{}", free_port()),
        dir.path(),
        "test",
    ))
    .args(["--http-listen", &addr]);
    let stderr = refused_start(cmd);
    assert!(
        stderr.contains(&format!("cannot listen on {addr} (--http-listen)")),
        "{stderr}"
    );
    // Refused before the disk: the data directory is untouched.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    let health = Command::new(BIN)
        .args(["health", "--http", &addr, "--timeout-ms", "500"])
        .output()
        .expect("run raftkv health");
    assert!(!health.status.success(), "nothing serves HTTP there");
}
