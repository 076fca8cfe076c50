//! Smoke tests of the core's happy paths on an instant network and storage,
//! the ones that check a bound or an API rather than an exact exchange
//! (those are the transcripts in `testdata/`). The fault-injecting
//! simulator and its scenarios live in `raftkv-sim`.

use std::time::Duration;

use raftkv_core::testkit::{set_cmd, InstantCluster};
use raftkv_core::*;

#[test]
fn new_leader_waits_out_old_lease_and_old_leader_loses_it() {
    let mut c = InstantCluster::new(3);
    c.run(Duration::from_secs(3));
    let old = c.leader().unwrap();
    c.down[old] = true;
    let cut = c.now;
    // The old leader's last lease ends at most D after the cut.
    let mut first_leader_at = None;
    for _ in 0..400 {
        c.run(Duration::from_millis(5));
        if let Some(l) = c.leader() {
            if l != old {
                first_leader_at.get_or_insert(c.now);
                let now = c.now;
                if let Ok(ReadNow::Served(_)) = c.nodes[l].read(now, ReadId(9), "x".into()) {
                    let served_after = now.saturating_since(cut);
                    let d = c.nodes[l].config().lease_duration;
                    let e_max = c.nodes[l].config().election_timeout_max;
                    assert!(
                        served_after >= d.mul_f64(0.9),
                        "served {served_after:?} after cut, lease {d:?}"
                    );
                    assert!(
                        served_after <= e_max + d + Duration::from_millis(300),
                        "{served_after:?}"
                    );
                    return;
                }
            }
        }
    }
    panic!("no new leader served a read; first leader at {first_leader_at:?}");
}

#[test]
fn single_node_cluster_commits() {
    let mut c = InstantCluster::new(1);
    c.run(Duration::from_secs(2));
    assert_eq!(c.leader(), Some(0));
    let now = c.now;
    c.nodes[0].propose(now, set_cmd(1, 1, "a", "b")).unwrap();
    c.drain();
    c.run(Duration::from_millis(600));
    assert_eq!(c.writes.len(), 1);
    assert_eq!(
        c.nodes[0].read(c.now, ReadId(1), "a".into()),
        Ok(ReadNow::Served(Some("b".into())))
    );
}

#[test]
fn lease_read_view_tells_until_when_the_core_would_serve() {
    let mut c = InstantCluster::new(3);
    c.run(Duration::from_secs(3));
    let l = c.leader().unwrap();
    let now = c.now;
    c.nodes[l].propose(now, set_cmd(1, 1, "k", "v1")).unwrap();
    c.drain();
    c.run(Duration::from_millis(20));
    for (i, n) in c.nodes.iter().enumerate() {
        assert_eq!(n.lease_read_view().is_some(), i == l, "only the leader");
    }
    let view = c.nodes[l].lease_read_view().unwrap();
    assert_eq!(view.term, c.nodes[l].term());
    assert_eq!(view.applied, c.nodes[l].commit_index());
    assert!(view.until > c.now);
    assert_eq!(
        c.nodes[l].kv_data().get("k").map(String::as_str),
        Some("v1")
    );
    // Nothing stepped since: the core serves at any time before `until`...
    c.down = vec![true; 3];
    let just_before = MonoTime::from_nanos(view.until.as_nanos() - 1);
    let r = c.nodes[l].read(just_before, ReadId(1), "k".into()).unwrap();
    assert_eq!(r, ReadNow::Served(Some("v1".into())));
    // ...and not from `until` on.
    let r = c.nodes[l].read(view.until, ReadId(2), "k".into()).unwrap();
    assert_eq!(r, ReadNow::Pending);
    assert_eq!(c.nodes[l].lease_read_view(), None);
}

#[test]
fn lease_read_view_is_withdrawn_when_a_transfer_starts() {
    let mut c = InstantCluster::new(3);
    c.run(Duration::from_secs(3));
    let l = c.leader().unwrap();
    assert!(c.nodes[l].lease_read_view().is_some());
    let target = c.nodes[(l + 1) % 3].id();
    let now = c.now;
    c.nodes[l].transfer_leadership(now, target).unwrap();
    assert_eq!(c.nodes[l].lease_read_view(), None);
}
