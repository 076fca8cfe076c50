//! No acknowledged write lost at the edges (issue 8), on real processes:
//! a member restarted without `--peers` (the stored configuration is the
//! authority), and a flipped byte in a synced log line plus a crash
//! (protocol-aware recovery). Every node's applied state is compared after
//! healing.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use raftkv_client::Consistency;

const LEADER_WAIT: Duration = Duration::from_secs(15);

/// Waits until every running node has applied what the leader has, then
/// reads `keys` from each one's own state (stale reads): they must agree
/// with `want`.
async fn every_node_holds(cluster: &Cluster, ids: &[u64], want: &[(&str, Option<&str>)]) {
    let leader = wait_for_leader(cluster, LEADER_WAIT).await;
    let client = cluster.client();
    let applied = status(&client, &cluster.addr(leader))
        .await
        .expect("leader status")
        .commit_index;
    for &id in ids {
        wait_applied(cluster, id, applied, LEADER_WAIT).await;
        for (k, v) in want {
            let (got, _) = client
                .get_at(&cluster.addr(id), k, Consistency::Stale)
                .await
                .unwrap_or_else(|e| panic!("stale read of {k} at node {id}: {e}"));
            assert_eq!(got.as_deref(), *v, "key {k} at node {id}");
        }
    }
}

/// No node among `ids` leads for `d`.
async fn no_leader_for(cluster: &Cluster, ids: &[u64], d: Duration) {
    let client = cluster.client();
    let end = Instant::now() + d;
    while Instant::now() < end {
        for &id in ids {
            if let Some(s) = status(&client, &cluster.addr(id)).await {
                assert_ne!(
                    s.role, "leader",
                    "node {id} became leader (term {})",
                    s.term
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Case 1: all nodes stopped; node 1 restarted without `--peers`. Before,
/// it made itself the leader of a one-node cluster, acknowledged a write
/// and later overwrote a committed one. Now it takes its configuration from
/// its folder: alone it is one voter of three and acknowledges nothing.
#[test]
fn a_member_restarted_without_peers_keeps_its_stored_configuration() {
    run_serial(async {
        let mut cluster = Cluster::start(3);
        wait_for_leader(&cluster, LEADER_WAIT).await;
        cluster.client().set("a", "1").await.expect("set a");
        for id in 1..=3 {
            assert!(cluster.stop(id).success(), "{}", cluster.stderr_of(id));
        }
        cluster.spawn_with(1, false);
        let alone = client_for(&[cluster.addr(1)]);
        let mut opts = client_options();
        opts.deadline = Duration::from_secs(2);
        let alone = raftkv_client::Client::new(&alone.endpoints(), opts).unwrap();
        assert!(
            alone.set("x", "split-brain").await.is_err(),
            "node 1 alone acknowledged a write"
        );
        no_leader_for(&cluster, &[1], Duration::from_millis(500)).await;
        let stderr = cluster.stderr_of(1);
        assert!(!stderr.contains("single-node"), "{stderr}");

        cluster.spawn(2);
        cluster.spawn(3);
        let client = cluster.client();
        client
            .set("k", "majority")
            .await
            .expect("set through the majority");
        // Node 1 back with the right flags; then the leader dies.
        assert!(cluster.stop(1).success());
        cluster.spawn(1);
        let leader = wait_for_leader(&cluster, LEADER_WAIT).await;
        cluster.kill(leader);
        wait_for_leader(&cluster, LEADER_WAIT).await;
        cluster.spawn(leader);
        every_node_holds(
            &cluster,
            &[1, 2, 3],
            &[("a", Some("1")), ("k", Some("majority")), ("x", None)],
        )
        .await;
    });
}

#[test]
fn flags_that_contradict_the_stored_configuration_are_refused_start() {
    run_serial(async {
        let mut cluster = Cluster::start(3);
        wait_for_leader(&cluster, LEADER_WAIT).await;
        cluster.client().set("a", "1").await.expect("set");
        assert!(cluster.stop(1).success());
        // --peers naming a node the configuration does not have.
        let mut cmd = cluster.server_command_with(1, false);
        cmd.args(["--peers", &format!("{},5=127.0.0.1:1", cluster.peers_arg())]);
        let err = refused_start(cmd);
        assert!(
            err.contains("--peers names node(s) 5 that the stored configuration does not have (voters 1,2,3, learners none) and that were not bootstrap voters"),
            "{err}"
        );
        // --single-node for a member of a three-node cluster.
        let mut cmd = cluster.server_command_with(1, false);
        cmd.arg("--single-node");
        let err = refused_start(cmd);
        assert!(
            err.contains("--single-node contradicts the stored configuration (voters 1,2,3)"),
            "{err}"
        );
        // A new node with no membership flag at all.
        let empty = tempfile::tempdir().unwrap();
        let err = refused_start({
            let mut c = Command::new(env!("CARGO_BIN_EXE_raftkv"));
            c.args([
                "server",
                "--id",
                "1",
                "--listen",
                &format!("127.0.0.1:{}", free_port()),
            ])
            .arg("--data-dir")
            .arg(empty.path());
            c
        });
        assert!(err.contains("no --peers given for a new node"), "{err}");
        // The folder is untouched by the refusals: node 1 starts and serves.
        cluster.spawn(1);
        every_node_holds(&cluster, &[1, 2, 3], &[("a", Some("1"))]).await;
    });
}

/// Case 2: W acknowledged by nodes 1 and 2 (3 stopped); 1 and 2 killed;
/// one byte of W's line flipped in node 2's `logs.txt` (the line is whole:
/// it may have been synced). Before, node 2 cut it as a torn line and
/// elected node 3 without W. Now node 2 keeps a vote floor: no leader
/// without W is elected, and W survives once node 1 is back.
#[test]
fn a_flipped_byte_in_a_synced_line_loses_no_acknowledged_write() {
    run_serial(async {
        let mut cluster = Cluster::start(3);
        wait_for_leader(&cluster, LEADER_WAIT).await;
        let client = cluster.client();
        client.set("base", "0").await.expect("set base");
        assert!(cluster.stop(3).success());
        let w = "W-acknowledged-value";
        client
            .set("w", w)
            .await
            .expect("W acknowledged by nodes 1 and 2");
        cluster.kill(1);
        cluster.kill(2);
        let log = cluster.node_dir(2).join("logs.txt");
        let mut bytes = std::fs::read(&log).unwrap();
        let at = bytes
            .windows(w.len())
            .rposition(|x| x == w.as_bytes())
            .expect("W's line in node 2's log");
        bytes[at + 3] ^= 0x01;
        std::fs::write(&log, &bytes).unwrap();

        cluster.spawn(2);
        cluster.spawn(3);
        no_leader_for(&cluster, &[2, 3], Duration::from_secs(3)).await;
        let dump = std::fs::read_to_string(cluster.node_dir(2).join("dump.txt")).unwrap();
        assert!(dump.contains("may have been synced"), "{dump}");
        assert!(dump.contains("does not campaign"), "{dump}");

        cluster.spawn(1);
        every_node_holds(&cluster, &[1, 2, 3], &[("base", Some("0")), ("w", Some(w))]).await;
        // The repair finished and was saved.
        let deadline = Instant::now() + LEADER_WAIT;
        loop {
            let meta = std::fs::read_to_string(cluster.node_dir(2).join("metadata.txt")).unwrap();
            if meta.contains("repair none") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "node 2 never finished its repair: {meta}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
}
