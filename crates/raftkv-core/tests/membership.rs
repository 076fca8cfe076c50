//! Membership changes and snapshots on the instant network: the quorum
//! rules and the cases that need many writes. The happy paths of adding,
//! promoting and removing a member, and leadership transfer, are the
//! transcripts `testdata/membership.txt` and `testdata/transfer.txt`. Fault
//! schedules live in `raftkv-sim`.

use std::time::Duration;

use raftkv_core::testkit::{set_cmd, InstantCluster};
use raftkv_core::*;

fn leader(c: &mut InstantCluster) -> usize {
    c.leader_with_lease()
}

/// Propose a change at the leader and run until it commits.
fn change(c: &mut InstantCluster, change: ConfChange) -> Membership {
    let l = leader(c);
    let now = c.now;
    let index = c.nodes[l]
        .propose_conf_change(now, change.clone())
        .unwrap_or_else(|e| panic!("{change}: {e}"));
    for _ in 0..200 {
        c.run(Duration::from_millis(10));
        if let Some(r) = c.conf_results.iter().find(|r| r.index == index) {
            return r.outcome.clone().expect("change committed");
        }
    }
    panic!("{change} did not commit");
}

fn write_keys(c: &mut InstantCluster, client: u64, n: u64) {
    for seq in 1..=n {
        let l = leader(c);
        let now = c.now;
        c.nodes[l]
            .propose(
                now,
                set_cmd(client, seq, &format!("k{seq}"), &format!("v{client}-{seq}")),
            )
            .unwrap();
        c.drain();
    }
    c.run(Duration::from_millis(100));
}

#[test]
fn learner_acks_and_votes_do_not_count() {
    let mut c = InstantCluster::new(3);
    c.add_joining_node(|_| {});
    change(
        &mut c,
        ConfChange::AddLearner {
            id: NodeId(4),
            addr: String::new(),
        },
    );
    c.run(Duration::from_millis(200));
    let l = leader(&mut c);
    // Cut the two other voters: leader + learner are 2 of 4 nodes, but only
    // 1 of 3 voters.
    for i in 0..3 {
        if i != l {
            c.down[i] = true;
        }
    }
    let now = c.now;
    let index = c.nodes[l].propose(now, set_cmd(1, 1, "x", "1")).unwrap();
    // Longer than the lease, shorter than check quorum's election timeout.
    c.run(Duration::from_millis(450));
    assert_eq!(c.nodes[l].role(), Role::Leader);
    assert!(
        c.nodes[l].commit_index() < index,
        "a learner's ack committed an entry"
    );
    assert!(
        !c.nodes[l].status(c.now).lease.holds,
        "a learner's ack kept the lease"
    );
    c.run(Duration::from_secs(2));
    assert_ne!(
        c.nodes[l].role(),
        Role::Leader,
        "check quorum ignores the learner"
    );
    assert_ne!(c.nodes[3].role(), Role::Leader, "a learner never campaigns");
}

#[test]
fn one_change_at_a_time_and_no_promotion_of_a_laggard() {
    let mut c = InstantCluster::new(3);
    c.add_joining_node(|_| {});
    let l = leader(&mut c);
    let now = c.now;
    c.nodes[l]
        .propose_conf_change(
            now,
            ConfChange::AddLearner {
                id: NodeId(4),
                addr: String::new(),
            },
        )
        .unwrap();
    let second = c.nodes[l].propose_conf_change(now, ConfChange::Remove { id: NodeId(3) });
    assert!(
        matches!(second, Err(ConfChangeError::InProgress(_))),
        "{second:?}"
    );
    c.run(Duration::from_millis(100));
    // Node 4 is down: it cannot catch up, so promoting it is refused.
    c.down[3] = true;
    write_keys(&mut c, 1, 600);
    let l = leader(&mut c);
    let now = c.now;
    let r = c.nodes[l].propose_conf_change(now, ConfChange::Promote { id: NodeId(4) });
    assert!(
        matches!(r, Err(ConfChangeError::LearnerBehind { .. })),
        "{r:?}"
    );
    let r = c.nodes[l].propose_conf_change(now, ConfChange::Promote { id: NodeId(2) });
    assert!(matches!(r, Err(ConfChangeError::Invalid { .. })), "{r:?}");
}

#[test]
fn a_learner_that_never_answered_is_not_promoted() {
    // One voter, so a promotion of a dead learner would stall every commit.
    let mut c = InstantCluster::new(1);
    c.run(Duration::from_secs(2));
    let l = c.leader().unwrap();
    let now = c.now;
    c.nodes[l]
        .propose_conf_change(
            now,
            ConfChange::AddLearner {
                id: NodeId(2),
                addr: String::new(),
            },
        )
        .unwrap();
    c.run(Duration::from_millis(100));
    let now = c.now;
    let r = c.nodes[l].propose_conf_change(now, ConfChange::Promote { id: NodeId(2) });
    assert!(
        matches!(
            r,
            Err(ConfChangeError::LearnerBehind {
                match_index: LogIndex(0),
                ..
            })
        ),
        "{r:?}"
    );
    let index = c.nodes[l].propose(now, set_cmd(1, 1, "k", "v")).unwrap();
    c.run(Duration::from_millis(100));
    assert_eq!(c.nodes[l].commit_index(), index, "writes still commit");
}

#[test]
fn lagging_follower_catches_up_from_a_chunked_snapshot() {
    let tweak = |cfg: &mut Config| {
        cfg.snapshot_threshold = 50;
        cfg.snapshot_keep_entries = 0;
        cfg.snapshot_chunk_bytes = 200;
        cfg.max_inflight_snapshot_chunks = 2;
    };
    let mut c = InstantCluster::with_config(3, tweak);
    let l = leader(&mut c);
    let lagger = (l + 1) % 3;
    c.down[lagger] = true;
    write_keys(&mut c, 1, 300);
    let l = leader(&mut c);
    let st = c.nodes[l].status(c.now);
    assert!(st.snapshot_index >= LogIndex(250), "{st:?}");
    assert!(st.first_log_index > LogIndex(250), "{st:?}");
    c.down[lagger] = false;
    c.run(Duration::from_secs(1));
    let snap = c.snapshots[lagger]
        .as_ref()
        .expect("the lagger installed a snapshot");
    assert!(snap.meta.index >= LogIndex(250));
    assert_eq!(
        c.nodes[lagger].read_stale("k300").as_deref(),
        Some("v1-300")
    );
    assert_eq!(c.nodes[lagger].kv().len(), 300);
    assert_eq!(
        c.nodes[lagger].kv().duplicate_of(ClientId(1), 300),
        Some(Ok(OpResult::Set)),
        "sessions travel with the snapshot"
    );
    // And it keeps up from the log afterwards.
    write_keys(&mut c, 2, 3);
    assert_eq!(c.nodes[lagger].read_stale("k3").as_deref(), Some("v2-3"));
}

#[test]
fn restart_from_snapshot_and_log_tail() {
    let mut c = InstantCluster::with_config(3, |cfg| {
        cfg.snapshot_threshold = 40;
        // Keep every entry in memory: the test rebuilds the log file's tail
        // from it.
        cfg.snapshot_keep_entries = 1000;
    });
    write_keys(&mut c, 1, 100);
    let l = leader(&mut c);
    let snap = c.snapshots[l].clone().expect("snapshot taken");
    let tail: Vec<Entry> = (snap.meta.index.0 + 1..=c.nodes[l].log().last_index().0)
        .map(|i| c.nodes[l].log().get(LogIndex(i)).unwrap().clone())
        .collect();
    let hs = HardState {
        term: c.nodes[l].term(),
        voted_for: Some(c.nodes[l].id()),
        commit: c.nodes[l].commit_index(),
        repair: None,
    };
    let cfg = c.nodes[l].config().clone();
    let restarted = RaftNode::new(
        cfg,
        Restored {
            hard_state: hs,
            snapshot: Some(snap),
            entries: tail,
        },
        c.now,
        7,
    )
    .unwrap();
    assert_eq!(restarted.read_stale("k100").as_deref(), Some("v1-100"));
    assert_eq!(restarted.applied_index(), c.nodes[l].applied_index());
}
