//! Follower read leases and bounded-staleness reads on real `raftkv server`
//! processes over loopback (docs/protocol.md, "Follower read leases").

mod common;

use std::time::{Duration, Instant};

use common::*;
use raftkv_client::Consistency;

const LEADER_WAIT: Duration = Duration::from_secs(10);

/// Until `node`'s status shows a read lease (or `timeout`).
async fn wait_read_lease(cluster: &Cluster, node: u64, timeout: Duration) {
    let client = cluster.client();
    let deadline = Instant::now() + timeout;
    loop {
        let rl = status(&client, &cluster.addr(node))
            .await
            .and_then(|s| s.lease)
            .and_then(|l| l.read_lease);
        if rl.is_some_and(|r| r.remaining_us > 0) {
            return;
        }
        assert!(Instant::now() < deadline, "node {node} holds no read lease");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Holders answer linearizable GETs themselves; the leader's status lists
/// them; a paused holder stalls writes only until its guard passes, and
/// once resumed never answers the value it held before the pause.
#[test]
fn holders_serve_reads_and_a_paused_holder_stalls_writes_then_serves_nothing_stale() {
    run_serial(async {
        let mut cluster = Cluster::start_with_args(3, FAST, &["--read-lease"]);
        let leader = wait_for_leader(&cluster, LEADER_WAIT).await;
        let writer = cluster.client();
        writer.set("k", "v1").await.expect("set");
        let followers: Vec<u64> = (1..=3).filter(|&n| n != leader).collect();
        for &f in &followers {
            wait_read_lease(&cluster, f, Duration::from_secs(5)).await;
            let local = client_for(&[cluster.addr(f)]);
            let a = local.get("k").await.expect("get at a holder");
            assert_eq!(a.value.as_deref(), Some("v1"));
            assert_eq!(a.served_by, f, "a holder answers its own reads");
        }
        let s = status(&writer, &cluster.addr(leader))
            .await
            .expect("status");
        let rl = s.lease.and_then(|l| l.read_lease).expect("read lease info");
        let mut holders: Vec<u64> = rl.holders.iter().map(|h| h.id).collect();
        holders.sort();
        assert_eq!(holders, followers, "the leader guards both holders");

        // Pause one holder: the next write waits for its guard to pass.
        let paused = followers[0];
        cluster.pause(paused);
        let started = Instant::now();
        writer
            .set("k", "v2")
            .await
            .expect("set while a holder is paused");
        let stall = started.elapsed();
        println!("write stall with a paused holder: {stall:?} (D_read 400 ms capped by a {LEASE_MS} ms lease, heartbeat {HEARTBEAT_MS} ms)");
        assert!(
            stall < Duration::from_secs(5),
            "the write stalled {stall:?}"
        );
        writer.set("k", "v3").await.expect("set");

        // Resumed, the holder's lease is long over: it refuses (and the
        // client follows the hint) or answers after a new grant, never v1.
        cluster.resume(paused);
        let local = client_for(&[cluster.addr(paused)]);
        for _ in 0..50 {
            let a = local.get("k").await.expect("get after resume");
            assert_eq!(
                a.value.as_deref(),
                Some("v3"),
                "served by node {}",
                a.served_by
            );
        }
        let s = status(&writer, &cluster.addr(leader))
            .await
            .expect("status");
        let rl = s.lease.and_then(|l| l.read_lease).expect("read lease info");
        assert!(rl.write_wait_us > 0, "the stall is in the leader's status");
    });
}

/// A bounded-staleness read at a follower without a read lease: served
/// there (heartbeats every 20 ms keep its proof fresh) and never missing a
/// write older than the bound; with a zero bound, redirected to the leader.
#[test]
fn a_bounded_read_is_served_locally_within_its_bound() {
    run_serial(async {
        let cluster = Cluster::start(3);
        let leader = wait_for_leader(&cluster, LEADER_WAIT).await;
        let writer = cluster.client();
        writer.set("b", "1").await.expect("set");
        // The write is older than the bound: every answer must show it.
        let bound = Duration::from_millis(100);
        tokio::time::sleep(2 * bound).await;
        let f = (1..=3).find(|&n| n != leader).expect("a follower");
        let local = client_for(&[cluster.addr(f)]);
        let deadline = Instant::now() + Duration::from_secs(5);
        let served_locally = loop {
            let a = local
                .get_with("b", Consistency::Bounded(bound))
                .await
                .expect("bounded get");
            assert_eq!(a.value.0.as_deref(), Some("1"));
            if a.served_by == f {
                break true;
            }
            if Instant::now() > deadline {
                break false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert!(served_locally, "node {f} never served a bounded read");
        // A zero bound cannot be proven by a follower: the leader answers.
        let a = local
            .get_with("b", Consistency::Bounded(Duration::ZERO))
            .await
            .expect("bounded get, zero bound");
        assert_eq!(a.value.0.as_deref(), Some("1"));
        assert_eq!(a.served_by, leader);
    });
}

/// Until node `want` leads with its lease (or `timeout`); how long it took.
async fn wait_leader_is(cluster: &Cluster, want: u64, timeout: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let leader = wait_for_leader(cluster, timeout).await;
        if leader == want {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < timeout,
            "node {leader} leads, not the preferred node {want}, after {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Until `addr`'s status satisfies `want` (or `timeout`).
async fn wait_status(
    client: &raftkv_client::Client,
    addr: &str,
    timeout: Duration,
    want: impl Fn(&raftkv_client::pb::StatusReply) -> bool,
) -> raftkv_client::pb::StatusReply {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(s) = status(client, addr).await {
            if want(&s) {
                return s;
            }
        }
        assert!(Instant::now() < deadline, "{addr}: status not as wanted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Zones and leader placement: leadership goes to the preferred node and
/// comes back to it after a failover; a client that names its zone reads
/// from the node there (a read lease holder); a placement set at run time
/// (by id, by zone) goes through the log, so it holds on a restarted node
/// and after a failover.
#[test]
fn leadership_returns_to_the_preferred_node_and_clients_read_in_their_zone() {
    run_serial(async {
        let mut cluster = Cluster::start_with_args(
            3,
            FAST,
            &[
                "--read-lease",
                "--zone",
                "zone-{id}",
                "--preferred-leaders",
                "3",
            ],
        );
        let took = wait_leader_is(&cluster, 3, Duration::from_secs(10)).await;
        println!("node 3 leads {took:?} after start");
        let writer = cluster.client();
        writer.set("z", "1").await.expect("set");

        let reader = cluster.client();
        let order = reader.prefer_nearest(Some("zone-2")).await;
        assert_eq!(order[0].endpoint, cluster.addr(2), "{order:?}");
        assert_eq!(order[0].zone, "zone-2");
        wait_read_lease(&cluster, 2, Duration::from_secs(5)).await;
        let a = reader.get("z").await.expect("get in zone 2");
        assert_eq!((a.value.as_deref(), a.served_by), (Some("1"), 2));

        cluster.kill(3);
        let interim = wait_for_leader(&cluster, LEADER_WAIT).await;
        assert_ne!(interim, 3);
        cluster.spawn(3);
        let back = wait_leader_is(&cluster, 3, Duration::from_secs(15)).await;
        println!("leadership back at node 3 {back:?} after it restarted");

        // At run time, for the whole cluster through the log: node 1.
        let r = writer
            .set_placement(&[1], &[])
            .await
            .expect("set placement");
        let m = r.value.membership.expect("the configuration");
        assert!(m.placement_set && m.preferred_leaders == vec![1], "{m:?}");
        wait_leader_is(&cluster, 1, Duration::from_secs(10)).await;
        // Node 2 restarts with its old flags (--preferred-leaders 3): the
        // log's placement wins there too.
        cluster.kill(2);
        cluster.spawn(2);
        let s = wait_status(&writer, &cluster.addr(2), Duration::from_secs(10), |s| {
            s.placement_from_log
        })
        .await;
        assert_eq!(
            (s.zone.as_str(), s.preferred_leaders.as_slice()),
            ("zone-2", &[1u64][..])
        );
        // Node 1 fails: 2 or 3 leads (3 by its flags), and hands leadership
        // back to node 1 once it returns, as the log says.
        cluster.kill(1);
        let interim = wait_for_leader(&cluster, LEADER_WAIT).await;
        assert_ne!(interim, 1);
        cluster.spawn(1);
        let back = wait_leader_is(&cluster, 1, Duration::from_secs(15)).await;
        println!("leadership back at node 1 {back:?} after it restarted");
        let a = writer.get("z").await.expect("get after the move");
        assert_eq!(a.value.as_deref(), Some("1"));

        // The admin command, by zone: the leader resolves zone-2 with the
        // zones its peers tell it.
        let placement = |args: &[&str]| {
            let out = std::process::Command::new(BIN)
                .arg("placement")
                .args(args)
                .arg("-e")
                .arg(cluster.endpoints().join(","))
                .output()
                .expect("raftkv placement");
            (
                out.status.success(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        };
        let (ok, said) = placement(&["--prefer-zone", "zone-2"]);
        assert!(ok && said.contains(r#"zones ["zone-2"]"#), "{said}");
        wait_leader_is(&cluster, 2, Duration::from_secs(10)).await;
        let s = status(&writer, &cluster.addr(2)).await.expect("status");
        assert_eq!(s.preferred_voters, vec![2]);
        // A zone nobody is in: accepted with a warning; leadership stays.
        let (ok, said) = placement(&["--prefer-zone", "nowhere"]);
        assert!(
            ok && said.contains(r#"says it runs in zone "nowhere""#),
            "{said}"
        );
        let (ok, said) = placement(&["--clear"]);
        assert!(ok && said.contains("no preferred leader"), "{said}");
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(wait_for_leader(&cluster, LEADER_WAIT).await, 2);
        let (ok, said) = placement(&["--prefer", "9"]);
        assert!(!ok && said.contains("node 9 is not a member"), "{said}");
    });
}
