//! The Raft paper's §5.1–5.4 behaviour, in the shape of the well-known MIT
//! 6.824 / 6.5840 Raft lab tests (2A election, 2B agreement, 2C
//! persistence), ported to the simulator: our code, their scenarios.
//!
//! Every scenario runs on the real core under the simulator, which asserts
//! election safety, log matching, leader completeness and state machine
//! safety after every step; `assert_safe` surfaces the first violation.
//! Note: each new leader appends a no-op (Raft §8), so command indexes skip
//! one slot per term.

mod common;

use std::time::Duration;

use common::*;
use raftkv_core::{LogIndex, NodeId};
use raftkv_sim::{Cluster, ClusterConfig, NetConfig, Workload};

const E_MAX: Duration = Duration::from_millis(1000);

// ----- 2A: election (§5.2) ---------------------------------------------------

#[test]
fn initial_election() {
    let mut c = cluster(3, 1);
    let leader = one_leader(&mut c);
    let term = c.raft(leader).unwrap().term();
    assert!(term.0 >= 1);
    // With no failure, the term stays put and the leader stays.
    c.run_for(E_MAX * 3);
    assert_eq!(
        c.raft(leader).unwrap().term(),
        term,
        "term changed with no failure"
    );
    assert_eq!(one_leader(&mut c), leader);
    assert_safe(&c);
}

#[test]
fn reelection() {
    let mut c = cluster(3, 2);
    let mut connected = vec![true; 3];
    let leader1 = one_leader(&mut c);

    // The leader leaves: a new one is elected among the rest.
    connected[leader1.0 as usize - 1] = false;
    apply_connectivity(&mut c, &connected);
    let rest: Vec<NodeId> = all_ids(&c).into_iter().filter(|&i| i != leader1).collect();
    let leader2 = check_one_leader(&mut c, &rest);
    assert_ne!(leader2, leader1);

    // The old leader rejoins: still one leader, and it is not disturbed.
    connected[leader1.0 as usize - 1] = true;
    apply_connectivity(&mut c, &connected);
    let leader = one_leader(&mut c);

    // No quorum: nobody may lead for long (check quorum steps leaders down).
    let other = rest
        .iter()
        .copied()
        .find(|&i| i != leader)
        .unwrap_or(leader1);
    connected[leader.0 as usize - 1] = false;
    connected[other.0 as usize - 1] = false;
    apply_connectivity(&mut c, &connected);
    c.run_for(E_MAX * 2);
    assert_eq!(c.leaders(), vec![], "a leader without a quorum");

    // A quorum again: a leader again.
    connected[other.0 as usize - 1] = true;
    apply_connectivity(&mut c, &connected);
    let with_quorum: Vec<NodeId> = all_ids(&c).into_iter().filter(|&i| i != leader).collect();
    check_one_leader(&mut c, &with_quorum);
    connected[leader.0 as usize - 1] = true;
    apply_connectivity(&mut c, &connected);
    one_leader(&mut c);
    assert_safe(&c);
}

#[test]
fn many_elections() {
    let mut c = cluster(7, 3);
    one_leader(&mut c);
    for round in 0..10u64 {
        // Disconnect three nodes chosen by the round (a majority of four
        // stays): it must still have exactly one leader.
        let mut connected = vec![true; 7];
        for k in 0..3 {
            connected[((round * 3 + k * 2) % 7) as usize] = false;
        }
        apply_connectivity(&mut c, &connected);
        let up: Vec<NodeId> = (0..7)
            .filter(|&i| connected[i])
            .map(|i| NodeId(i as u64 + 1))
            .collect();
        check_one_leader(&mut c, &up);
        apply_connectivity(&mut c, &[true; 7]);
    }
    one_leader(&mut c);
    assert_safe(&c);
}

// ----- 2B: agreement (§5.3) -------------------------------------------------

#[test]
fn basic_agree() {
    let mut c = cluster(3, 4);
    wait_stable_leader(&mut c, Duration::from_secs(5));
    let mut last = LogIndex(0);
    for i in 1..=3 {
        let value = format!("v{i}");
        let index = one(&mut c, &value, 3);
        assert!(index > last, "index {index} after {last}");
        if last.0 > 0 {
            assert_eq!(index, last.next(), "commands of one term are consecutive");
        }
        last = index;
    }
    assert_safe(&c);
}

#[test]
fn follower_failure() {
    let mut c = cluster(3, 5);
    one(&mut c, "101", 3);
    // One follower leaves: two nodes still agree.
    let leader = c.leader().unwrap();
    let follower = all_ids(&c).into_iter().find(|&i| i != leader).unwrap();
    c.crash(follower);
    one(&mut c, "102", 2);
    one(&mut c, "103", 2);
    // The other follower leaves too: the leader alone commits nothing.
    let leader = c.leader().unwrap();
    let other = all_ids(&c)
        .into_iter()
        .find(|&i| i != leader && i != follower)
        .unwrap();
    c.crash(other);
    let index = c.propose_at(leader, cmd("104")).expect("still leader");
    c.run_for(E_MAX * 2);
    assert_eq!(n_committed(&c, index), 0, "committed without a majority");
    assert_safe(&c);
}

#[test]
fn leader_failure() {
    let mut c = cluster(3, 6);
    one(&mut c, "101", 3);
    let leader1 = c.leader().unwrap();
    c.crash(leader1);
    one(&mut c, "102", 2);
    one(&mut c, "103", 2);
    let leader2 = c.leader().unwrap();
    c.crash(leader2);
    // The one node left cannot commit.
    let left = all_ids(&c).into_iter().find(|&i| c.is_up(i)).unwrap();
    c.run_for(E_MAX * 2);
    let before = c.raft(left).unwrap().log().commit();
    let _ = c.propose_at(left, cmd("104"));
    c.run_for(E_MAX * 2);
    assert_eq!(
        c.raft(left).unwrap().log().commit(),
        before,
        "a lone node committed"
    );
    assert_safe(&c);
}

#[test]
fn fail_agree() {
    let mut c = cluster(3, 7);
    let mut connected = vec![true; 3];
    one(&mut c, "101", 3);
    let leader = c.leader().unwrap();
    let f = (leader.0 % 3) as usize; // position of the next node
    connected[f] = false;
    apply_connectivity(&mut c, &connected);
    for v in ["102", "103", "104", "105"] {
        one(&mut c, v, 2);
    }
    // It rejoins and catches up.
    connected[f] = true;
    apply_connectivity(&mut c, &connected);
    one(&mut c, "106", 3);
    one(&mut c, "107", 3);
    assert_safe(&c);
}

#[test]
fn fail_no_agree() {
    let mut c = cluster(5, 8);
    one(&mut c, "10", 5);
    let leader = c.leader().unwrap();
    let l = leader.0 as usize - 1;
    let mut connected = vec![true; 5];
    for k in 1..=3 {
        connected[(l + k) % 5] = false;
    }
    apply_connectivity(&mut c, &connected);
    let index = c.propose_at(leader, cmd("20")).expect("still leader");
    c.run_for(E_MAX * 2);
    assert_eq!(n_committed(&c, index), 0, "committed with only two of five");
    // Repair: the majority may elect someone else; the cluster agrees again.
    apply_connectivity(&mut c, &[true; 5]);
    one(&mut c, "30", 5);
    one(&mut c, "1000", 5);
    assert_safe(&c);
}

#[test]
fn concurrent_starts() {
    let mut c = cluster(3, 9);
    let leader = wait_stable_leader(&mut c, Duration::from_secs(5));
    let indexes: Vec<LogIndex> = (0..5)
        .map(|i| {
            c.propose_at(leader, cmd(&format!("c{i}")))
                .expect("leader accepts")
        })
        .collect();
    for w in indexes.windows(2) {
        assert_eq!(w[1], w[0].next(), "distinct consecutive indexes");
    }
    assert!(c.run_until(Duration::from_secs(2), |c| indexes
        .iter()
        .all(|&i| n_committed(c, i) == 3)));
    for (i, &index) in indexes.iter().enumerate() {
        assert_eq!(committed_with(&c, index, &format!("c{i}")), 3);
    }
    assert_safe(&c);
}

#[test]
fn rejoin_of_partitioned_leader() {
    let mut c = cluster(3, 10);
    let mut connected = vec![true; 3];
    one(&mut c, "101", 3);
    // The leader is cut off and takes commands it can never commit.
    let leader1 = c.leader().unwrap();
    connected[leader1.0 as usize - 1] = false;
    apply_connectivity(&mut c, &connected);
    for v in ["102", "103", "104"] {
        let _ = c.propose_at(leader1, cmd(v));
    }
    // A new leader commits index 2 (and more) differently.
    one(&mut c, "103", 2);
    // The new leader is cut off; the old one comes back.
    let leader2 = c.leader().unwrap();
    assert_ne!(leader2, leader1);
    connected[leader2.0 as usize - 1] = false;
    connected[leader1.0 as usize - 1] = true;
    apply_connectivity(&mut c, &connected);
    one(&mut c, "104", 2);
    apply_connectivity(&mut c, &[true; 3]);
    one(&mut c, "105", 3);
    assert_safe(&c);
}

#[test]
fn backup_over_50_conflicting_entries() {
    let mut c = cluster(5, 11);
    one(&mut c, "start", 5);
    let leader1 = c.leader().unwrap();
    let l = leader1.0 as usize - 1;
    // Leader and one follower in a minority take 50 entries that never commit.
    c.partition(&[&[leader1.0, ((l + 1) % 5) as u64 + 1]]);
    for i in 0..50 {
        let _ = c.propose_at(leader1, cmd(&format!("lost-a{i}")));
    }
    c.run_for(E_MAX / 2);
    // The other three elect a leader and commit 50 of their own.
    let others: Vec<u64> = (0..5)
        .filter(|&i| i != l && i != (l + 1) % 5)
        .map(|i| i as u64 + 1)
        .collect();
    c.partition(&[&others]);
    for i in 0..50 {
        one(&mut c, &format!("b{i}"), 3);
    }
    // Their leader and one follower split off and take 50 more, uncommitted.
    let leader2 = c.leader().unwrap();
    let other = *others.iter().find(|&&i| i != leader2.0).unwrap();
    c.partition(&[&[leader2.0, other]]);
    for i in 0..50 {
        let _ = c.propose_at(leader2, cmd(&format!("lost-c{i}")));
    }
    c.run_for(E_MAX / 2);
    // The first pair plus the third node of the majority: they must back up
    // over the conflicting suffix and commit 50 new entries.
    let third = *others
        .iter()
        .find(|&&i| i != leader2.0 && i != other)
        .unwrap();
    c.partition(&[&[leader1.0, ((l + 1) % 5) as u64 + 1, third]]);
    for i in 0..50 {
        one(&mut c, &format!("d{i}"), 3);
    }
    // Everyone together.
    c.heal();
    let end = one(&mut c, "end", 5);
    assert_safe(&c);
    // None of the 100 entries taken by cut-off leaders survived, and every
    // node backed up over them to the same log.
    for id in all_ids(&c) {
        for i in 1..=end.0 {
            let e = c
                .committed_entry(id, LogIndex(i))
                .expect("committed everywhere");
            assert!(
                !format!("{e:?}").contains("lost-"),
                "index {i} kept an uncommitted entry: {e:?}"
            );
        }
    }
}

// ----- 2C: persistence (§5.4 with crashes) ----------------------------------

#[test]
fn persist1() {
    let mut c = cluster(3, 12);
    one(&mut c, "11", 3);
    // Crash and restart everyone.
    for id in all_ids(&c) {
        c.crash(id);
    }
    for id in all_ids(&c) {
        c.restart(id);
    }
    one(&mut c, "12", 3);
    let leader1 = c.leader().unwrap();
    c.crash(leader1);
    c.restart(leader1);
    one(&mut c, "13", 3);
    let leader2 = c.leader().unwrap();
    c.crash(leader2);
    one(&mut c, "14", 2);
    c.restart(leader2);
    // Wait for the restarted node to catch up on 14.
    let index = one(&mut c, "15", 3);
    let i3 = c.leader().unwrap();
    let follower = all_ids(&c).into_iter().find(|&i| i != i3).unwrap();
    c.crash(follower);
    one(&mut c, "16", 2);
    c.restart(follower);
    one(&mut c, "17", 3);
    assert!(index.0 > 0);
    assert_safe(&c);
}

#[test]
fn persist2() {
    let mut c = cluster(5, 13);
    let mut index = 1;
    for _iter in 0..5 {
        one(&mut c, &format!("{}", 10 + index), 5);
        index += 1;
        let leader1 = c.leader().unwrap().0 as usize - 1;
        let (a, b) = ((leader1 + 1) % 5, (leader1 + 2) % 5);
        c.crash(NodeId(a as u64 + 1));
        c.crash(NodeId(b as u64 + 1));
        one(&mut c, &format!("{}", 10 + index), 3);
        index += 1;
        let (x, y, z) = (leader1, (leader1 + 3) % 5, (leader1 + 4) % 5);
        for k in [x, y, z] {
            c.crash(NodeId(k as u64 + 1));
        }
        c.restart(NodeId(a as u64 + 1));
        c.restart(NodeId(b as u64 + 1));
        c.run_for(E_MAX);
        c.restart(NodeId(y as u64 + 1));
        one(&mut c, &format!("{}", 10 + index), 3);
        index += 1;
        c.restart(NodeId(x as u64 + 1));
        c.restart(NodeId(z as u64 + 1));
    }
    one(&mut c, "1000", 5);
    assert_safe(&c);
}

#[test]
fn persist3() {
    let mut c = cluster(3, 14);
    one(&mut c, "101", 3);
    let leader = c.leader().unwrap().0 as usize - 1;
    let third = NodeId(((leader + 2) % 3) as u64 + 1);
    let mut connected = vec![true; 3];
    connected[third.0 as usize - 1] = false;
    apply_connectivity(&mut c, &connected);
    one(&mut c, "102", 2);
    // The two that hold 102 crash; the third (without it) returns.
    c.crash(NodeId(leader as u64 + 1));
    c.crash(NodeId(((leader + 1) % 3) as u64 + 1));
    apply_connectivity(&mut c, &[true; 3]);
    c.restart(NodeId(leader as u64 + 1));
    one(&mut c, "103", 2);
    c.restart(NodeId(((leader + 1) % 3) as u64 + 1));
    one(&mut c, "104", 3);
    assert_safe(&c);
}

/// 6.824's Figure 8 test: leaders crash at random moments with entries
/// half-replicated; §5.4.2's rule (commit only entries of the leader's own
/// term by counting) keeps committed entries safe.
fn figure8(seed: u64, unreliable: bool) {
    let mut cfg = ClusterConfig::new(5, seed);
    if unreliable {
        cfg.net = NetConfig::unreliable();
    }
    let mut c = Cluster::new(cfg);
    let mut rng = raftkv_sim::rng::SimRng::new(seed);
    one(&mut c, "first", 1);
    let mut up = 5;
    let mut connected = vec![true; 5];
    for iter in 0..120 {
        if let Some(l) = c.leader() {
            let _ = c.propose_at(l, cmd(&format!("f{iter}")));
            if !unreliable {
                for _ in 0..rng.below(3) {
                    let _ = c.propose_at(l, cmd(&format!("f{iter}x")));
                }
            }
        }
        let pause = if rng.below(10) == 0 {
            rng.range(0, 500)
        } else {
            rng.range(0, 13)
        };
        c.run_for(Duration::from_millis(pause));
        if let Some(l) = c.leader() {
            if unreliable {
                if rng.below(2) == 0 {
                    connected[l.0 as usize - 1] = false;
                    apply_connectivity(&mut c, &connected);
                }
            } else {
                c.crash(l);
                up -= 1;
            }
        }
        if unreliable {
            if connected.iter().filter(|&&x| x).count() < 3 {
                let s = rng.below(5) as usize;
                connected[s] = true;
                apply_connectivity(&mut c, &connected);
            }
        } else if up < 3 {
            let s = NodeId(rng.range(1, 5));
            if !c.is_up(s) {
                c.restart(s);
                up += 1;
            }
        }
        assert_safe(&c);
    }
    for id in all_ids(&c) {
        c.restart(id);
    }
    c.set_net(NetConfig::reliable());
    apply_connectivity(&mut c, &[true; 5]);
    one(&mut c, "last", 5);
    assert_safe(&c);
}

#[test]
fn figure8_reliable() {
    figure8(15, false);
}

#[test]
fn figure8_unreliable() {
    figure8(16, true);
}

/// 6.824's churn tests: clients write through whoever leads while nodes
/// crash, restart and (unreliable) drop messages; afterwards every
/// acknowledged write is in the one agreed log and the history is
/// linearizable.
fn churn(seed: u64, unreliable: bool) {
    let mut cfg = ClusterConfig::new(5, seed);
    if unreliable {
        cfg.net = NetConfig::unreliable();
    }
    cfg.client.attempt_timeout = Duration::from_millis(300);
    let mut c = Cluster::new(cfg);
    let mut rng = raftkv_sim::rng::SimRng::new(seed ^ 0xC4);
    for _ in 0..3 {
        c.add_client(None);
    }
    c.start_workload(Workload::small(4));
    for _ in 0..40 {
        let victim = NodeId(rng.range(1, 5));
        let up = all_ids(&c).into_iter().filter(|&i| c.is_up(i)).count();
        match rng.below(4) {
            0 if up > 3 => c.crash(victim),
            1 => c.restart(victim),
            2 => {
                c.heal();
                c.isolate(victim);
            }
            _ => c.heal(),
        }
        c.run_for(Duration::from_millis(rng.range(10, 700)));
        assert_safe(&c);
    }
    c.stop_workload();
    c.heal();
    c.set_net(NetConfig::reliable());
    for id in all_ids(&c) {
        c.restart(id);
    }
    assert!(
        c.run_until(Duration::from_secs(20), |c| c.clients_idle()),
        "clients stuck after healing"
    );
    one(&mut c, "settle", 5);
    assert!(
        c.history().len() > 50,
        "too little happened: {} ops",
        c.history().len()
    );
    assert_linearizable(&mut c);
}

#[test]
fn reliable_churn() {
    churn(17, false);
}

#[test]
fn unreliable_churn() {
    churn(18, true);
}
