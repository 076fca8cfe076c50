//! Leader-lease scenarios (lease rules in docs/protocol.md; docs/simulator.md, "What the tests cover"): timing of
//! the old and new leader's service, the restart rule, quick successions of
//! leaders, clock drift within and beyond the bound, and negative controls
//! with rule 3 or rule 5 switched off that the checker must catch.

mod common;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use common::*;
use raftkv_checker::Verdict;
use raftkv_core::{MessageBody, NodeId, ReadNow, Term, UnsafeTestKnobs};
use raftkv_sim::{Clock, Cluster, ClusterConfig, Fate, ServedKind};

/// No lease read by a leader of term `t` comes after any answer served by a
/// leader of a later term (rule 5: the new leader waits out the old lease).
fn assert_old_reads_precede_new_leaders(c: &Cluster) {
    if let Some(overlap) = c.lease_overlap() {
        panic!("{overlap}");
    }
    // And the check is not vacuous: some lease read was served.
    assert!(c.served().iter().any(|s| s.what == ServedKind::LeaseRead));
}

/// Real time at which node `id`'s leader lease ends, seen from now.
fn lease_end_real_ns(c: &Cluster, id: NodeId) -> u64 {
    let st = c.status(id).expect("up");
    assert!(st.lease.holds, "the leader holds its lease: {st:?}");
    let clock = c.clock(id);
    clock.real_at(c.local_now(id) + st.lease.remaining)
}

fn elected_after(c: &Cluster, since_ns: u64) -> Option<(u64, NodeId, Term)> {
    c.elections()
        .iter()
        .copied()
        .find(|&(t, _, _)| t >= since_ns)
}

#[test]
fn cut_off_leader_stops_reading_at_lease_end_and_new_leader_serves_after() {
    let cfg = ClusterConfig::new(5, 21);
    let (d, e_max) = (cfg.lease_duration, cfg.election_timeout_max);
    let mut c = Cluster::new(cfg);
    c.client_config_mut().attempt_timeout = ms(100);
    let old = wait_stable_leader(&mut c, ms(5000));
    let w = c.add_client(None);
    call(&mut c, w, set("k", "v1"), ms(2000));
    c.run_for(ms(300));

    // The old leader is cut off from every other node; clients still reach it.
    let cut = c.now_ns();
    let lease_end = lease_end_real_ns(&c, old);
    assert!(
        lease_end <= cut + d.as_nanos() as u64,
        "a lease cannot outlast D after the last ack"
    );
    c.isolate(old);
    c.client_call(w, set("k", "v2"));
    let mut last_old_read = None;
    let mut writes_done = 0;
    while c.now_ns() < cut + 3_000_000_000 {
        if c.raft(old)
            .is_some_and(|r| r.role() == raftkv_core::Role::Leader)
        {
            if let Ok(ReadNow::Served(v)) = c.read_at(old, "k") {
                assert_eq!(v.as_deref(), Some("v1"));
                last_old_read = Some(c.now_ns());
            }
        }
        if c.client_idle(w) && writes_done < 3 {
            writes_done += 1;
            c.client_call(w, set("k", &format!("v{}", writes_done + 2)));
        }
        c.run_for(ms(1));
    }
    let last_old_read = last_old_read.expect("the old leader served lease reads after the cut");
    // It served right up to its lease end, and not past it.
    assert!(
        last_old_read < lease_end,
        "read at {last_old_read} past lease end {lease_end}"
    );
    assert!(
        last_old_read + 2_000_000 >= lease_end,
        "the old leader stopped at {last_old_read}, well before its lease end {lease_end}"
    );
    // The new leader's first answer: not before the old lease ends, and
    // within about E_max + D of the cut.
    let (_, new, _) = elected_after(&c, cut).expect("a new leader");
    assert_ne!(new, old);
    let first = c
        .first_served_by(new, cut)
        .expect("the new leader served")
        .real_ns;
    assert!(
        first >= lease_end,
        "new leader served at {first}, before the old lease end {lease_end}"
    );
    let bound = cut + (e_max + d + ms(100)).as_nanos() as u64;
    assert!(
        first <= bound,
        "new leader first served {}ms after the cut",
        (first - cut) / 1_000_000
    );
    assert_old_reads_precede_new_leaders(&c);
    assert_linearizable(&mut c);
}

#[test]
fn after_leader_crash_new_leader_serves_after_old_lease_within_emax_plus_d() {
    for seed in 30..36 {
        let cfg = ClusterConfig::new(3 + 2 * (seed as usize % 3), seed);
        let (d, e_max) = (cfg.lease_duration, cfg.election_timeout_max);
        let mut c = Cluster::new(cfg);
        c.client_config_mut().attempt_timeout = ms(50);
        let old = wait_stable_leader(&mut c, ms(5000));
        let w = c.add_client(None);
        call(&mut c, w, set("k", "v1"), ms(2000));
        c.run_for(ms(200));
        let cut = c.now_ns();
        let lease_end = lease_end_real_ns(&c, old);
        c.crash(old);
        c.client_call(w, set("k", "v2"));
        assert!(
            c.run_until(ms(5000), |c| c.client_idle(w)),
            "seed {seed}: write never completed"
        );
        let (_, new, _) = elected_after(&c, cut).expect("a new leader");
        let first = c
            .first_served_by(new, cut)
            .expect("new leader served")
            .real_ns;
        assert!(
            first >= lease_end,
            "seed {seed}: served at {first} before the old lease end {lease_end}"
        );
        let after_ms = (first - cut) / 1_000_000;
        assert!(
            first <= cut + (e_max + d + ms(100)).as_nanos() as u64,
            "seed {seed}: first served {after_ms}ms after the crash"
        );
        assert_linearizable(&mut c);
    }
}

/// Watches the vote replies of node `voter` and holds back the pre-votes it
/// is sent, so that one reaches it just after it restarts.
fn restarted_voter_lease_remaining(knobs: UnsafeTestKnobs) -> (Duration, Duration) {
    let mut cfg = ClusterConfig::new(3, 40);
    cfg.unsafe_test_knobs = knobs;
    let d = cfg.lease_duration;
    let mut c = Cluster::new(cfg);
    let leader = wait_stable_leader(&mut c, ms(5000));
    let others: Vec<NodeId> = c.node_ids().into_iter().filter(|&i| i != leader).collect();
    let (voter, candidate) = (others[0], others[1]);
    c.crash(leader);
    c.crash(voter);
    let held = Duration::from_millis(30);
    let seen: Rc<RefCell<Vec<(u64, bool, Duration)>>> = Rc::default();
    let sent_prevote = Rc::new(RefCell::new(false));
    {
        let (seen, sent) = (seen.clone(), sent_prevote.clone());
        c.set_filter(Some(Box::new(move |now, m| match &m.body {
            MessageBody::RequestVote(_) if m.from == candidate && m.to == voter => {
                *sent.borrow_mut() = true;
                Fate::Delay(held)
            }
            MessageBody::RequestVoteResponse(r) if m.from == voter => {
                seen.borrow_mut().push((now, r.pre_vote, r.lease_remaining));
                Fate::Deliver
            }
            _ => Fate::Deliver,
        })));
    }
    // The moment the lone candidate asks, the voter comes back; the request
    // reaches it `held` later.
    assert!(c.run_until(ms(5000), |_| *sent_prevote.borrow()));
    c.restart(voter);
    let restarted = c.now_ns();
    assert!(
        c.run_until(ms(500), |_| !seen.borrow().is_empty()),
        "no vote reply"
    );
    let (at, _, remaining) = seen.borrow()[0];
    let elapsed = Duration::from_nanos(at - restarted);
    assert!(
        elapsed >= held && elapsed < held + ms(5),
        "reply {elapsed:?} after restart"
    );
    (remaining, d.saturating_sub(elapsed))
}

#[test]
fn restarted_voter_reports_a_full_lease() {
    let (remaining, expected) = restarted_voter_lease_remaining(UnsafeTestKnobs::default());
    // Rule 3: lease_until = restart + D, so the reply carries D minus the
    // time since the restart.
    assert!(
        remaining + ms(1) >= expected && remaining <= expected + ms(1),
        "remaining {remaining:?}, expected about {expected:?}"
    );
}

#[test]
fn restarted_voter_without_rule_3_reports_nothing() {
    // The control: the knob really removes the restart lease.
    let knobs = UnsafeTestKnobs {
        disable_restart_lease: true,
        ..UnsafeTestKnobs::default()
    };
    let (remaining, _) = restarted_voter_lease_remaining(knobs);
    assert_eq!(remaining, Duration::ZERO);
}

/// The crafted scenario for rules 3 and 5. Five nodes; C and D lost the
/// leader L long ago (their pre-votes fail: A and B still hear L), and only
/// C campaigns. Just before C's next pre-vote, L is cut off (clients still
/// reach it) and A and B crash and restart at once: they forgot hearing L,
/// so they grant C's votes, and C leads while L's lease (acknowledged by A
/// and B) still runs.
/// Only the restart lease (rule 3) reported in the votes and the new
/// leader's wait (rule 5) keep C from acknowledging a write that L's lease
/// reads then miss.
fn restart_scenario(knobs: UnsafeTestKnobs, seed: u64) -> Cluster {
    restart_scenario_with(knobs, seed, false)
}

/// `lease_check`: keep the simulator's lease-protection invariant on (it
/// stops the run at the first unprotected lease read, before the checker
/// can see the stale read these negative controls are about).
fn restart_scenario_with(knobs: UnsafeTestKnobs, seed: u64, lease_check: bool) -> Cluster {
    let mut cfg = ClusterConfig::new(5, seed);
    cfg.check_lease_protection = lease_check;
    cfg.election_timeout_min = ms(500);
    cfg.election_timeout_max = ms(550);
    cfg.lease_duration = ms(450);
    cfg.unsafe_test_knobs = knobs;
    let mut c = Cluster::new(cfg);
    c.client_config_mut().attempt_timeout = ms(40);
    let l = wait_stable_leader(&mut c, ms(5000));
    let w = c.add_client(None);
    call(&mut c, w, set("k", "v1"), ms(2000));
    c.run_for(ms(100));
    let others: Vec<NodeId> = c.node_ids().into_iter().filter(|&i| i != l).collect();
    let (a, b, cc, dd) = (others[0], others[1], others[2], others[3]);
    for x in [cc, dd] {
        c.cut_link(l, x);
        c.cut_link(x, l);
    }
    let prevotes: Rc<RefCell<Vec<u64>>> = Rc::default();
    {
        let p = prevotes.clone();
        // C is the only candidate: D's vote requests are dropped (D timing
        // out with C would split the vote and push C's election past L's
        // lease, with nothing left to catch).
        c.set_filter(Some(Box::new(move |now, m| {
            if !matches!(&m.body, MessageBody::RequestVote(_)) {
                return Fate::Deliver;
            }
            if m.from == dd {
                return Fate::Drop;
            }
            if m.from == cc && matches!(&m.body, MessageBody::RequestVote(r) if r.pre_vote) {
                p.borrow_mut().push(now);
            }
            Fate::Deliver
        })));
    }
    // Let C fail a pre-vote or two, then wait, a millisecond at a time, for
    // its next one and strike 450 ms after it: its next pre-vote after that
    // is one election timeout (500 to 550 ms) away, whatever the seed.
    c.run_for(ms(1000));
    let failed = prevotes.borrow().len();
    assert!(failed > 0, "C campaigned and failed");
    let deadline = c.now_ns() + 1_000_000_000;
    while prevotes.borrow().len() == failed {
        assert!(c.now_ns() < deadline, "C stopped campaigning");
        c.run_for(ms(1));
    }
    let p = *prevotes.borrow().last().unwrap();
    let strike = p + 450_000_000;
    assert!(strike > c.now_ns(), "C's latest pre-vote was too long ago");
    c.run_for(Duration::from_nanos(strike - c.now_ns()));
    c.isolate(l);
    for x in [a, b] {
        c.crash(x);
        c.restart(x);
    }
    let reader = c.add_client(Some(l));
    c.client_call(w, set("k", "v2"));
    for _ in 0..1500 {
        if c.client_idle(reader) {
            c.client_call(reader, get("k"));
        }
        c.run_for(ms(1));
    }
    c.finish_history();
    c
}

#[test]
fn restart_scenario_is_safe_with_all_rules() {
    for seed in 50..53 {
        let mut c = restart_scenario(UnsafeTestKnobs::default(), seed);
        assert!(c.elections().len() >= 2, "seed {seed}: no second leader");
        assert_old_reads_precede_new_leaders(&c);
        assert_linearizable(&mut c);
    }
}

#[test]
fn rule_3_disabled_is_caught_by_the_checker() {
    let knobs = UnsafeTestKnobs {
        disable_restart_lease: true,
        ..UnsafeTestKnobs::default()
    };
    for seed in 50..53 {
        let c = restart_scenario(knobs, seed);
        assert_safe(&c);
        let v = c.check_history();
        assert!(v.is_violation(), "seed {seed}: rule 3 off, yet {v:?}");
    }
}

#[test]
fn rule_3_disabled_is_caught_by_the_lease_protection_invariant() {
    let knobs = UnsafeTestKnobs {
        disable_restart_lease: true,
        ..UnsafeTestKnobs::default()
    };
    let c = restart_scenario_with(knobs, 50, true);
    let v = c.violation().unwrap_or("none");
    assert!(v.starts_with("lease protection"), "rule 3 off, yet: {v}");
}

#[test]
fn rule_5_disabled_is_caught_by_the_checker() {
    let knobs = UnsafeTestKnobs {
        disable_new_leader_wait: true,
        ..UnsafeTestKnobs::default()
    };
    for seed in 50..53 {
        let c = restart_scenario(knobs, seed);
        let v = c.check_history();
        assert!(v.is_violation(), "seed {seed}: rule 5 off, yet {v:?}");
    }
}

/// Node 1 leads with a slow clock while the others run fast; then node 1 is
/// cut off from its peers and a pinned client keeps reading from it while
/// another writes through whoever leads next.
fn slow_leader_cut_off(slow_ppm: u64, fast_ppm: u64, seed: u64) -> Cluster {
    let mut cfg = ClusterConfig::new(3, seed);
    cfg.check_lease_protection = false;
    cfg.clocks = vec![
        Clock::new(7_000_000_000, slow_ppm),
        Clock::new(0, fast_ppm),
        Clock::new(123_456_789, fast_ppm),
    ];
    cfg.client.attempt_timeout = ms(100);
    let mut c = Cluster::new(cfg);
    // Only node 1 may campaign until it leads.
    c.set_filter(Some(Box::new(|_, m| {
        if m.from != n(1) && matches!(m.body, MessageBody::RequestVote(_)) {
            Fate::Drop
        } else {
            Fate::Deliver
        }
    })));
    assert_eq!(wait_stable_leader(&mut c, ms(5000)), n(1));
    c.set_filter(None);
    let w = c.add_client(None);
    call(&mut c, w, set("k", "v1"), ms(2000));
    c.run_for(ms(200));
    let r = c.add_client(Some(n(1)));
    c.isolate(n(1));
    c.client_call(w, set("k", "v2"));
    for _ in 0..400 {
        if c.client_idle(r) {
            c.client_call(r, get("k"));
        }
        c.run_for(ms(5));
    }
    c.finish_history();
    c
}

#[test]
fn drift_within_bound_is_safe_even_slow_leader_fast_followers() {
    let rho = ClusterConfig::new(3, 0).clock_drift_bound_ppm;
    for seed in 60..65 {
        let mut c = slow_leader_cut_off(1_000_000 - rho, 1_000_000 + rho, seed);
        assert_old_reads_precede_new_leaders(&c);
        assert_linearizable(&mut c);
    }
}

#[test]
fn drift_beyond_bound_gives_a_stale_read_the_checker_catches() {
    let c = slow_leader_cut_off(500_000, 2_000_000, 61);
    match c.check_history() {
        Verdict::NotLinearizable(v) => {
            assert_eq!(v.key, "k");
            assert!(
                v.operations.iter().any(
                    |o| matches!(&o.output, raftkv_checker::Output::Value(Some(x)) if x == "v1")
                ),
                "the witness holds the stale read: {v:?}"
            );
        }
        other => panic!("a slow cut-off leader should have served a stale read: {other:?}"),
    }
}

#[test]
fn two_leader_changes_in_quick_succession() {
    for seed in 70..76 {
        let mut c = cluster(5, seed);
        c.client_config_mut().attempt_timeout = ms(60);
        let l1 = wait_stable_leader(&mut c, ms(5000));
        let w = c.add_client(None);
        call(&mut c, w, set("k", "v0"), ms(2000));
        let readers: Vec<_> = c
            .node_ids()
            .into_iter()
            .map(|id| c.add_client(Some(id)))
            .collect();
        let mut value = 0;
        let mut step = |c: &mut Cluster| {
            for &r in &readers {
                if c.client_idle(r) {
                    c.client_call(r, get("k"));
                }
            }
            if c.client_idle(w) {
                value += 1;
                let v = format!("v{value}");
                c.client_call(w, set("k", &v));
            }
            c.run_for(ms(2));
        };
        // First change: l1 cut off.
        c.isolate(l1);
        let cut1 = c.now_ns();
        while elected_after(&c, cut1).is_none() {
            assert!(
                c.now_ns() < cut1 + 5_000_000_000,
                "seed {seed}: no second leader"
            );
            step(&mut c);
        }
        // Second change at once: the new leader cut off too, l1 back.
        let (_, l2, _) = elected_after(&c, cut1).unwrap();
        c.heal();
        c.isolate(l2);
        let cut2 = c.now_ns();
        while elected_after(&c, cut2).is_none() {
            assert!(
                c.now_ns() < cut2 + 5_000_000_000,
                "seed {seed}: no third leader"
            );
            step(&mut c);
        }
        for _ in 0..500 {
            step(&mut c);
        }
        c.heal();
        for _ in 0..200 {
            step(&mut c);
        }
        assert_old_reads_precede_new_leaders(&c);
        assert_linearizable(&mut c);
    }
}
