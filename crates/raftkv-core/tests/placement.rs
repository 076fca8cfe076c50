//! Leader placement (`node/placement.rs`): leadership goes to the preferred
//! voter, and comes back to it after a failover.

use std::time::Duration;

use raftkv_core::testkit::InstantCluster;
use raftkv_core::*;

fn leader_id(c: &InstantCluster) -> Option<NodeId> {
    c.leader().map(|l| c.nodes[l].id())
}

/// Runs until `want` leads (with its lease) or `limit` passes.
fn run_until_leader(c: &mut InstantCluster, want: NodeId, limit: Duration) -> bool {
    let end = c.now + limit;
    while c.now < end {
        c.run(Duration::from_millis(20));
        if let Some(l) = c.leader() {
            if c.nodes[l].id() == want && c.nodes[l].status(c.now).lease.holds {
                return true;
            }
        }
    }
    false
}

#[test]
fn leadership_moves_to_the_preferred_voter_and_returns_after_a_failover() {
    let preferred = NodeId(3);
    let mut c = InstantCluster::with_config(3, |cfg| cfg.preferred_leaders = vec![preferred]);
    assert!(run_until_leader(&mut c, preferred, Duration::from_secs(10)));
    // Node 3 fails: another leads; it returns: leadership comes back.
    c.down[2] = true;
    let end = c.now + Duration::from_secs(10);
    while leader_id(&c).is_none_or(|l| l == preferred) && c.now < end {
        c.run(Duration::from_millis(20));
    }
    let interim = leader_id(&c).expect("a leader while node 3 is down");
    assert_ne!(interim, preferred);
    c.down[2] = false;
    assert!(run_until_leader(&mut c, preferred, Duration::from_secs(10)));
}

#[test]
fn no_preference_or_a_preferred_leader_moves_nothing() {
    for preference in [vec![], vec![NodeId(1), NodeId(2), NodeId(3)]] {
        let mut c =
            InstantCluster::with_config(3, |cfg| cfg.preferred_leaders = preference.clone());
        let l = c.leader_with_lease();
        let first = c.nodes[l].id();
        c.run(Duration::from_secs(5));
        assert_eq!(leader_id(&c), Some(first), "preference {preference:?}");
    }
}

#[test]
fn a_preference_set_at_run_time_takes_effect() {
    let mut c = InstantCluster::new(3);
    let l = c.leader_with_lease();
    let other = c.nodes[(l + 1) % 3].id();
    let now = c.now;
    for n in &mut c.nodes {
        n.set_preferred_leaders(now, vec![other]);
    }
    assert!(run_until_leader(&mut c, other, Duration::from_secs(5)));
}
