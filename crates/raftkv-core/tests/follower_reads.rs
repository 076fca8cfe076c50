//! Follower read leases (rules F1–F7 of docs/protocol.md) and
//! bounded-staleness reads, input by input. Each rule has its negative
//! control: the unsafe knob that breaks it makes the test's stale answer
//! appear.

use std::time::Duration;

use raftkv_core::testkit::{set_cmd, InstantCluster};
use raftkv_core::*;

/// `n` (three) nodes that all ask for read leases (`knobs` on every node), with a
/// leader holding its lease, `k = v1` committed everywhere, and every
/// follower holding a read lease.
fn cluster(knobs: UnsafeTestKnobs) -> (InstantCluster, usize) {
    cluster_of(3, knobs)
}

fn cluster_of(n: u64, knobs: UnsafeTestKnobs) -> (InstantCluster, usize) {
    let mut c = InstantCluster::with_config(n, |cfg| {
        cfg.read_lease = true;
        cfg.unsafe_test_knobs = knobs;
    });
    let l = c.leader_with_lease();
    let now = c.now;
    c.nodes[l].propose(now, set_cmd(1, 1, "k", "v1")).unwrap();
    c.drain();
    c.run(Duration::from_millis(200));
    for f in followers(&c, l) {
        let st = c.nodes[f].status(c.now).lease.read_lease;
        assert!(st.enabled && !st.remaining.is_zero(), "node {f}: {st:?}");
    }
    (c, l)
}

fn followers(c: &InstantCluster, l: usize) -> Vec<usize> {
    (0..c.nodes.len()).filter(|&i| i != l).collect()
}

fn served(r: Result<ReadNow, ReadError>) -> Option<String> {
    match r {
        Ok(ReadNow::Served(v)) => v,
        other => panic!("expected a read served at once, got {other:?}"),
    }
}

#[test]
fn a_holder_answers_linearizable_reads_with_no_message() {
    let (mut c, l) = cluster(UnsafeTestKnobs::default());
    let f = followers(&c, l)[0];
    let before = c.delivered;
    let now = c.now;
    assert_eq!(
        served(c.nodes[f].read(now, ReadId(1), "k".into())),
        Some("v1".into())
    );
    c.drain();
    assert_eq!(c.delivered, before, "a follower read sent a message");
    let holders = c.nodes[l].status(now).lease.read_lease.holders;
    assert_eq!(holders.len(), 2, "{holders:?}");
}

#[test]
fn a_node_not_configured_for_read_leases_refuses_with_a_hint() {
    let mut c = InstantCluster::new(3);
    let l = c.leader_with_lease();
    c.run(Duration::from_millis(200));
    let f = (l + 1) % 3;
    let now = c.now;
    let leader = c.nodes[l].id();
    assert_eq!(
        c.nodes[f].read(now, ReadId(1), "k".into()),
        Err(ReadError::NotLeader(NotLeader {
            leader_hint: Some(leader)
        }))
    );
    assert!(c.nodes[l].status(now).lease.read_lease.holders.is_empty());
}

/// F3: a holder that stops answering holds commits back until its guard
/// passes, then writes go on without it; off, the write is acknowledged
/// while the holder still serves the old value.
#[test]
fn a_silent_holder_stalls_commits_until_its_guard_passes() {
    for ignore_guards in [false, true] {
        let knobs = UnsafeTestKnobs {
            ignore_read_lease_guards: ignore_guards,
            ..Default::default()
        };
        let (mut c, l) = cluster(knobs);
        let f = followers(&c, l)[0];
        c.down[f] = true;
        let now = c.now;
        c.nodes[l].propose(now, set_cmd(1, 2, "k", "v2")).unwrap();
        c.drain();
        let acked = |c: &InstantCluster| c.writes.iter().any(|w| w.seq == 2 && w.outcome.is_ok());
        // The holder, cut off, still serves from its lease.
        let held = served(c.nodes[f].read(now, ReadId(1), "k".into()));
        assert_eq!(held, Some("v1".into()));
        if ignore_guards {
            assert!(acked(&c), "the control commits at once");
            continue; // ... and the holder's v1 above is a stale read
        }
        assert!(!acked(&c), "a write became visible without a holder");
        let d_read = c.nodes[l].config().read_lease_duration;
        c.run(d_read + Duration::from_millis(20));
        assert!(acked(&c), "the write never went on without the holder");
        let st = c.nodes[l].status(c.now).lease.read_lease;
        let tick = Duration::from_millis(5);
        assert!(
            st.write_wait > Duration::ZERO && st.write_wait <= d_read + 2 * tick,
            "{st:?}"
        );
        // By then the holder's own lease is over: it refuses.
        let later = c.now;
        assert!(matches!(
            c.nodes[f].read(later, ReadId(2), "k".into()),
            Err(ReadError::NotLeader(_))
        ));
    }
}

/// F4: a holder with a write of unknown fate to `k` in its log waits for the
/// commit index before answering `k` (other keys are served); off, it
/// answers the old value of a write that is already acknowledged.
#[test]
fn a_pending_key_waits_for_the_commit_index() {
    for serve_pending in [false, true] {
        let knobs = UnsafeTestKnobs {
            serve_pending_keys: serve_pending,
            ..Default::default()
        };
        let (mut c, l) = cluster(knobs);
        let f = followers(&c, l)[0];
        let now = c.now;
        c.nodes[l].propose(now, set_cmd(1, 2, "k", "v2")).unwrap();
        // Entries out, acknowledgements back: the leader commits and
        // acknowledges the write; its commit notices stay undelivered.
        let rd = c.nodes[l].ready();
        if let Some((index, term)) = rd.persist_mark() {
            c.nodes[l].on_persisted(now, index, term);
        }
        for m in rd.messages.into_iter().chain(rd.persisted_messages) {
            let to = (m.to.0 - 1) as usize;
            c.nodes[to].step(now, m);
        }
        for i in followers(&c, l) {
            let rd = c.nodes[i].ready();
            if let Some((index, term)) = rd.persist_mark() {
                c.nodes[i].on_persisted(now, index, term);
            }
            for m in rd.persisted_messages.into_iter().chain(rd.messages) {
                c.nodes[l].step(now, m);
            }
        }
        let rd = c.nodes[l].ready();
        assert!(rd
            .write_results
            .iter()
            .any(|w| w.seq == 2 && w.outcome.is_ok()));
        let notices = rd.messages;
        let answer = c.nodes[f].read(now, ReadId(7), "k".into());
        if serve_pending {
            assert_eq!(
                answer,
                Ok(ReadNow::Served(Some("v1".into()))),
                "the stale read"
            );
            continue;
        }
        assert_eq!(answer, Ok(ReadNow::Pending));
        assert_eq!(
            served(c.nodes[f].read(now, ReadId(8), "other".into())),
            None
        );
        let f_id = c.nodes[f].id();
        for m in notices.into_iter().filter(|m| m.to == f_id) {
            c.nodes[f].step(now, m);
        }
        let rd = c.nodes[f].ready();
        let result = rd.read_results.iter().find(|r| r.id == ReadId(7));
        assert_eq!(
            result.map(|r| r.outcome.clone()),
            Some(Ok(Some("v2".into())))
        );
    }
}

/// F5: a higher term ends the read lease at once; off, the holder keeps
/// answering from the old term's lease.
#[test]
fn a_higher_term_ends_the_read_lease() {
    for keep in [false, true] {
        let knobs = UnsafeTestKnobs {
            keep_read_lease_across_terms: keep,
            ..Default::default()
        };
        let (mut c, l) = cluster(knobs);
        let f = followers(&c, l)[0];
        let now = c.now;
        let higher = c.nodes[f].term().next();
        let leader = c.nodes[l].id();
        // The same node, as leader of a newer term (as after it stood again).
        let log = c.nodes[f].log();
        let heartbeat = AppendEntries {
            prev_log_index: log.last_index(),
            prev_log_term: log.last_term(),
            entries: Vec::new(),
            leader_commit: log.commit(),
            lease_duration: Duration::from_millis(400),
            send_time: now,
            echo: None,
        };
        let f_id = c.nodes[f].id();
        c.nodes[f].step(
            now,
            Message {
                from: leader,
                to: f_id,
                term: higher,
                body: MessageBody::AppendEntries(heartbeat),
            },
        );
        assert_eq!(c.nodes[f].term(), higher);
        let answer = c.nodes[f].read(now, ReadId(1), "k".into());
        if keep {
            assert_eq!(answer, Ok(ReadNow::Served(Some("v1".into()))));
        } else {
            assert!(matches!(answer, Err(ReadError::NotLeader(_))), "{answer:?}");
        }
    }
}

/// F2: the grant ends before the leader's own lease, and a leader without a
/// lease grants nothing (the control grants `D_read` whatever it holds).
#[test]
fn a_grant_stays_inside_the_leader_lease() {
    for beyond in [false, true] {
        let knobs = UnsafeTestKnobs {
            grant_beyond_leader_lease: beyond,
            ..Default::default()
        };
        let (mut c, l) = cluster_of(5, knobs);
        let fs = followers(&c, l);
        // The leader hears only from `fs[0]`, no majority: its lease runs
        // out while it still leads (check quorum waits an election timeout).
        for &f in &fs[1..] {
            c.down[f] = true;
        }
        c.run(c.nodes[l].config().lease_duration);
        let now = c.now;
        let st = c.nodes[l].status(now);
        assert!(!st.lease.holds, "the leader still holds its lease");
        let held = c.nodes[fs[0]].status(now).lease.read_lease.remaining;
        if beyond {
            assert!(!held.is_zero(), "the control granted past the lease");
        } else {
            assert!(
                held.is_zero(),
                "a read lease outlived the leader's: {held:?}"
            );
        }
    }
}

#[test]
fn a_bounded_read_is_served_within_its_bound_and_refused_beyond() {
    let mut c = InstantCluster::new(3);
    let l = c.leader_with_lease();
    let now = c.now;
    c.nodes[l].propose(now, set_cmd(1, 1, "k", "v1")).unwrap();
    c.drain();
    c.run(Duration::from_millis(200));
    let f = (l + 1) % 3;
    let leader = c.nodes[l].id();
    // Time passes with no message: the proof ages.
    let later = c.now + Duration::from_millis(30);
    let staleness = c.nodes[f].status(later).lease.read_lease.staleness;
    let s = staleness.expect("a follower of a leasing leader has a proof");
    assert!(
        s >= Duration::from_millis(30) && s < Duration::from_millis(100),
        "{s:?}"
    );
    let ok = c.nodes[f].read_bounded(later, ReadId(1), "k".into(), Duration::from_secs(1));
    assert_eq!(ok, Ok(ReadNow::Served(Some("v1".into()))));
    let refused = c.nodes[f].read_bounded(later, ReadId(2), "k".into(), Duration::from_millis(5));
    assert_eq!(
        refused,
        Err(ReadError::TooStale {
            bound: Duration::from_millis(5),
            leader_hint: Some(leader)
        })
    );
    // The leader serves any bound under its lease.
    let at_leader = c.nodes[l].read_bounded(later, ReadId(3), "k".into(), Duration::ZERO);
    assert_eq!(at_leader, Ok(ReadNow::Served(Some("v1".into()))));
}

/// F1: a stamp echoed to a restarted node (another incarnation, whose clock
/// may read anything) grants it nothing.
#[test]
fn an_echo_of_an_earlier_incarnation_is_ignored() {
    let (mut c, l) = cluster(UnsafeTestKnobs::default());
    let f = followers(&c, l)[0];
    let id = c.nodes[f].id();
    let cfg = c.nodes[f].config().clone();
    let now = c.now;
    // The same durable state, a new incarnation (seed).
    let old = &c.nodes[f];
    let restored = Restored {
        hard_state: HardState {
            term: old.term(),
            voted_for: old.status(now).voted_for,
            commit: old.commit_index(),
            repair: None,
        },
        snapshot: None,
        entries: old.log().slice(LogIndex(1), usize::MAX, usize::MAX),
    };
    let mut restarted = RaftNode::new(cfg, restored, now, 999).unwrap();
    let l_id = c.nodes[l].id();
    c.nodes[l].tick(now + Duration::from_millis(60));
    let rd = c.nodes[l].ready();
    let to_f: Vec<Message> = rd.messages.into_iter().filter(|m| m.to == id).collect();
    assert!(to_f
        .iter()
        .any(|m| matches!(&m.body, MessageBody::AppendEntries(a) if a.echo.is_some())));
    for m in to_f {
        restarted.step(now + Duration::from_millis(60), m);
    }
    assert_eq!(restarted.leader(), Some(l_id));
    assert_eq!(restarted.commit_index(), c.nodes[f].commit_index());
    let st = restarted
        .status(now + Duration::from_millis(60))
        .lease
        .read_lease;
    assert!(st.remaining.is_zero() && st.staleness.is_none(), "{st:?}");
    // The stamp the restarted node sends now is the one that counts.
    let rd = restarted.ready();
    let stamped = rd.persisted_messages.iter().chain(&rd.messages).any(|m| {
        matches!(&m.body, MessageBody::AppendEntriesResponse(r) if r.success && r.wants_read_lease)
    });
    assert!(stamped);
}

/// F6: a learner added at run time holds read leases like any member; a
/// holder removed from the configuration stops answering (it saw its
/// removal, or its lease ran out), and the leader stops guarding it once
/// its guard passes.
#[test]
fn a_joined_learner_holds_a_read_lease_and_a_removed_holder_stops() {
    let (mut c, l) = cluster(UnsafeTestKnobs::default());
    let joined = c.add_joining_node(|cfg| cfg.read_lease = true);
    let joined_id = c.nodes[joined].id();
    let now = c.now;
    let change = ConfChange::AddLearner {
        id: joined_id,
        addr: String::new(),
    };
    c.nodes[l].propose_conf_change(now, change).unwrap();
    c.run(Duration::from_millis(500));
    let st = c.nodes[joined].status(c.now).lease.read_lease;
    assert!(st.enabled && !st.remaining.is_zero(), "{st:?}");
    let now = c.now;
    assert_eq!(
        served(c.nodes[joined].read(now, ReadId(1), "k".into())),
        Some("v1".into())
    );

    let removed = followers(&c, l)[0];
    let removed_id = c.nodes[removed].id();
    let now = c.now;
    c.nodes[l]
        .propose_conf_change(now, ConfChange::Remove { id: removed_id })
        .unwrap();
    c.run(Duration::from_millis(500));
    let now = c.now;
    assert!(matches!(
        c.nodes[removed].read(now, ReadId(2), "k".into()),
        Err(ReadError::NotLeader(_))
    ));
    // It may never see its removal (the leader stops sending to it as soon
    // as the change is in its log): then its lease has run out instead.
    let st = c.nodes[removed].status(now).lease.read_lease;
    assert!(!st.enabled || st.remaining.is_zero(), "{st:?}");
    let holders = c.nodes[l].status(now).lease.read_lease.holders;
    assert!(
        holders.iter().all(|&(id, _)| id != removed_id),
        "{holders:?}"
    );
}
