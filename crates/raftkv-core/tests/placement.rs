//! Leader placement (`node/placement.rs`): leadership goes to the preferred
//! voter (by id or by zone), comes back to it after a failover, and a
//! placement set through the log (`ConfChange::Place`) reaches every node.

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

/// Node `i`'s failure and return: some other node leads meanwhile.
fn fail_and_return(c: &mut InstantCluster, i: usize) {
    let id = c.nodes[i].id();
    c.down[i] = true;
    let end = c.now + Duration::from_secs(10);
    while leader_id(c).is_none_or(|l| l == id) && c.now < end {
        c.run(Duration::from_millis(20));
    }
    let interim = leader_id(c).expect("a leader while the preferred node is down");
    assert_ne!(interim, id);
    c.down[i] = false;
}

fn by_ids(ids: &[u64]) -> Placement {
    Placement {
        leaders: ids.iter().copied().map(NodeId).collect(),
        zones: vec![],
    }
}

#[test]
fn leadership_moves_to_the_preferred_voter_and_returns_after_a_failover() {
    let preferred = NodeId(3);
    let mut c = InstantCluster::with_config(3, |cfg| cfg.placement = by_ids(&[3]));
    assert!(run_until_leader(&mut c, preferred, Duration::from_secs(10)));
    fail_and_return(&mut c, 2);
    assert!(run_until_leader(&mut c, preferred, Duration::from_secs(10)));
}

#[test]
fn no_preference_or_a_preferred_leader_moves_nothing() {
    for preference in [vec![], vec![1, 2, 3]] {
        let mut c = InstantCluster::with_config(3, |cfg| cfg.placement = by_ids(&preference));
        let l = c.leader_with_lease();
        let first = c.nodes[l].id();
        c.run(Duration::from_secs(5));
        assert_eq!(leader_id(&c), Some(first), "preference {preference:?}");
    }
}

/// Zones as the server sets them: its own from `--zone`, the peers' learned.
fn zoned(c: &mut InstantCluster, zones: &[&str]) {
    for n in &mut c.nodes {
        for (i, z) in zones.iter().enumerate() {
            n.learn_zone(NodeId(i as u64 + 1), z);
        }
    }
}

#[test]
fn a_preferred_zone_draws_leadership_once_its_nodes_zones_are_known() {
    let zones = ["us", "eu", "ap"];
    let mut c = InstantCluster::with_config(3, |cfg| {
        cfg.zone = Some(zones[cfg.id.0 as usize - 1].into());
        cfg.placement = Placement {
            leaders: vec![],
            zones: vec!["ap".into()],
        };
    });
    let l = c.leader_with_lease();
    if c.nodes[l].id() != NodeId(3) {
        // Peers' zones unknown: nobody is known to be in "ap".
        c.run(Duration::from_secs(3));
        assert_ne!(
            leader_id(&c),
            Some(NodeId(3)),
            "moved without knowing zones"
        );
    }
    zoned(&mut c, &zones);
    assert!(run_until_leader(&mut c, NodeId(3), Duration::from_secs(10)));
    assert_eq!(c.nodes[0].preferred_voters(), vec![NodeId(3)]);
    fail_and_return(&mut c, 2);
    assert!(run_until_leader(&mut c, NodeId(3), Duration::from_secs(10)));
}

/// Proposes `change` at the leader and runs until it commits everywhere.
fn place(c: &mut InstantCluster, p: Placement) -> LogIndex {
    let l = c.leader_with_lease();
    let now = c.now;
    let index = c.nodes[l]
        .propose_conf_change(now, ConfChange::Place(p.clone()))
        .expect("placement proposed");
    let end = c.now + Duration::from_secs(5);
    while c.nodes.iter().any(|n| n.commit_index() < index) && c.now < end {
        c.run(Duration::from_millis(20));
    }
    for n in &c.nodes {
        assert_eq!(
            n.membership().placement.as_ref(),
            Some(&p),
            "node {}",
            n.id()
        );
        assert_eq!(n.placement(), &p);
    }
    index
}

#[test]
fn a_placement_in_the_log_wins_over_flags_on_every_node_and_survives_failover() {
    // Every node's flag prefers node 1; the log then says node 2.
    let mut c = InstantCluster::with_config(3, |cfg| cfg.placement = by_ids(&[1]));
    assert!(run_until_leader(&mut c, NodeId(1), Duration::from_secs(10)));
    place(&mut c, by_ids(&[2]));
    assert!(run_until_leader(&mut c, NodeId(2), Duration::from_secs(10)));
    let st = c.nodes[2].status(c.now);
    assert!(st.placement_from_log);
    assert_eq!(st.placement, by_ids(&[2]));
    // Node 2 fails and returns: the new leader (1 or 3, whose flags say 1)
    // follows the log and hands leadership back to node 2.
    fail_and_return(&mut c, 1);
    assert!(run_until_leader(&mut c, NodeId(2), Duration::from_secs(10)));
    // An empty placement in the log overrides the flags: nothing moves.
    place(&mut c, Placement::default());
    c.run(Duration::from_secs(5));
    assert_eq!(leader_id(&c), Some(NodeId(2)));
}

#[test]
fn a_placement_naming_a_non_member_is_refused() {
    let mut c = InstantCluster::new(3);
    let l = c.leader_with_lease();
    let now = c.now;
    let err = c.nodes[l]
        .propose_conf_change(now, ConfChange::Place(by_ids(&[7])))
        .expect_err("node 7 is no member");
    assert!(err.to_string().contains("node 7 is not a member"), "{err}");
    let bad_zone = Placement {
        leaders: vec![],
        zones: vec!["two words".into()],
    };
    let err = c.nodes[l]
        .propose_conf_change(now, ConfChange::Place(bad_zone))
        .expect_err("a zone with a space");
    assert!(err.to_string().contains("zone"), "{err}");
}
