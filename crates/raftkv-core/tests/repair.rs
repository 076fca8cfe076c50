//! A node whose log was damaged (`node/repair.rs`): it never lets a
//! candidate lacking an entry it may have acknowledged win with its vote,
//! never campaigns, and repairs itself from the leader. The unsafe knob
//! `ignore_vote_floor` is the negative control: the same schedule then loses
//! an acknowledged write.

use std::time::Duration;

use raftkv_core::testkit::{set_cmd, InstantCluster};
use raftkv_core::*;

fn leader(c: &mut InstantCluster) -> usize {
    c.leader_with_lease()
}

/// Restart node `i` as recovery would after finding its last `lost` entries
/// damaged: the intact prefix, and a floor at the last index with the
/// current term as the upper bound of its term.
fn restart_damaged(c: &mut InstantCluster, i: usize, lost: u64, floor_index_known: bool) {
    let n = &c.nodes[i];
    let last = n.log().last_index();
    let keep = last.0 - lost;
    let entries: Vec<Entry> = (1..=keep)
        .map(|x| n.log().get(LogIndex(x)).unwrap().clone())
        .collect();
    let hs = HardState {
        term: n.term(),
        voted_for: None,
        commit: LogIndex(0),
        repair: Some(VoteFloor {
            index: floor_index_known.then_some(last),
            term: n.term(),
            exact: false,
        }),
    };
    let cfg = n.config().clone();
    c.nodes[i] = RaftNode::new(
        cfg,
        Restored {
            hard_state: hs,
            snapshot: None,
            entries,
        },
        c.now,
        99,
    )
    .unwrap();
}

/// Case 2 of the tryout: W on the leader A and follower B (C was down);
/// A goes down and B's copy of W is damaged. Returns (cluster, A, B, C, W's
/// index).
fn damaged_scenario(
    tweak: impl Fn(&mut Config),
) -> (InstantCluster, usize, usize, usize, LogIndex) {
    let mut c = InstantCluster::with_config(3, tweak);
    let a = leader(&mut c);
    let now = c.now;
    c.nodes[a].propose(now, set_cmd(1, 1, "k", "old")).unwrap();
    c.run(Duration::from_millis(100));
    let b = (a + 1) % 3;
    let cc = (a + 2) % 3;
    c.down[cc] = true;
    let now = c.now;
    let w = c.nodes[a].propose(now, set_cmd(1, 2, "k", "W")).unwrap();
    c.run(Duration::from_millis(100));
    assert!(c.writes.iter().any(|r| r.index == w), "W acknowledged");
    assert_eq!(c.nodes[b].log().last_index(), w);
    c.down[a] = true;
    restart_damaged(&mut c, b, 1, true);
    c.down[cc] = false;
    (c, a, b, cc, w)
}

#[test]
fn damaged_node_does_not_elect_a_leader_without_the_write() {
    let (mut c, a, b, cc, w) = damaged_scenario(|_| {});
    assert!(c.nodes[b].repairing().is_some());
    c.run(Duration::from_secs(5));
    assert_eq!(c.leader(), None, "no leader may be elected without W");
    assert_eq!(
        c.nodes[b].role(),
        Role::Follower,
        "a damaged node never campaigns"
    );
    // A comes back: it leads, and B and C get W.
    c.down[a] = false;
    let l = leader(&mut c);
    assert_eq!(l, a, "only A holds W and can win");
    c.run(Duration::from_secs(1));
    for i in [a, b, cc] {
        assert_eq!(
            c.nodes[i].read_stale("k").as_deref(),
            Some("W"),
            "node {}",
            i + 1
        );
        assert!(c.nodes[i].log().last_index() >= w);
    }
    assert_eq!(c.nodes[b].repairing(), None, "B repaired from the leader");
    // The cleared floor reaches the hard state the driver persists.
    let rd = c.nodes[b].ready();
    assert!(rd.hard_state.is_none_or(|hs| hs.repair.is_none()));
}

#[test]
fn negative_control_ignoring_the_floor_loses_the_write() {
    let (mut c, a, b, cc, _w) =
        damaged_scenario(|cfg| cfg.unsafe_test_knobs.ignore_vote_floor = true);
    c.run(Duration::from_secs(5));
    let l = c.leader().expect("C wins with B's vote");
    assert_eq!(l, cc);
    c.down[a] = false;
    c.run(Duration::from_secs(2));
    assert_eq!(c.nodes[b].read_stale("k").as_deref(), Some("old"), "W lost");
}

#[test]
fn unknown_floor_means_no_vote_until_a_later_leader_commits() {
    let (mut c, a, b, cc, _w) = damaged_scenario(|_| {});
    restart_damaged(&mut c, b, 0, false);
    c.run(Duration::from_secs(3));
    assert_eq!(c.leader(), None);
    assert!(c.nodes[b].repairing().is_some());
    c.down[a] = false;
    let _ = leader(&mut c);
    c.run(Duration::from_secs(1));
    assert_eq!(c.nodes[b].repairing(), None);
    assert_eq!(c.nodes[cc].read_stale("k").as_deref(), Some("W"));
}
