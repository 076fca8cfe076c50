//! Property test of the core's input functions: arbitrary and hostile
//! message sequences (absurd terms, indexes past the log, unknown senders,
//! malformed entries, time going backwards, bogus persistence reports) must
//! never make a node panic, and the node's own log must stay well formed.
//! `PROPTEST_CASES` widens the run.

use std::time::Duration;

use proptest::prelude::*;
use raftkv_core::*;

fn arb_node() -> impl Strategy<Value = NodeId> {
    prop_oneof![4 => (1u64..=3).prop_map(NodeId), 1 => any::<u64>().prop_map(NodeId)]
}

fn arb_term() -> impl Strategy<Value = Term> {
    prop_oneof![
        6 => (0u64..6).prop_map(Term),
        1 => Just(Term(u64::MAX)),
        1 => Just(Term(u64::MAX / 2)),
        1 => Just(Term(u64::MAX / 2 - 1)),
        1 => any::<u64>().prop_map(Term),
    ]
}

fn arb_index() -> impl Strategy<Value = LogIndex> {
    prop_oneof![6 => (0u64..12).prop_map(LogIndex), 1 => Just(LogIndex(u64::MAX)), 1 => any::<u64>().prop_map(LogIndex)]
}

fn arb_duration() -> impl Strategy<Value = Duration> {
    prop_oneof![
        4 => (0u64..2_000).prop_map(Duration::from_millis),
        1 => Just(Duration::MAX),
        1 => any::<u64>().prop_map(Duration::from_nanos),
    ]
}

fn arb_time() -> impl Strategy<Value = MonoTime> {
    prop_oneof![4 => (0u64..20_000_000_000).prop_map(MonoTime), 1 => any::<u64>().prop_map(MonoTime)]
}

fn arb_payload() -> impl Strategy<Value = EntryPayload> {
    prop_oneof![
        Just(EntryPayload::Noop),
        (0u64..3, 0u64..4, "[a-c]{0,3}", "[x-z]{0,3}").prop_map(|(c, seq, key, value)| {
            EntryPayload::Command(ClientCommand {
                client_id: ClientId(c),
                seq,
                op: Op::Set { key, value },
            })
        }),
    ]
}

/// Entries that are usually consecutive from `start`, sometimes not at all.
fn arb_entries() -> impl Strategy<Value = Vec<Entry>> {
    prop_oneof![
        3 => (0u64..10, 0u64..5, prop::collection::vec(arb_payload(), 0..5)).prop_map(|(start, term, ps)| {
            ps.into_iter()
                .enumerate()
                .map(|(k, payload)| Entry { index: LogIndex(start + 1 + k as u64), term: Term(term), payload })
                .collect()
        }),
        1 => prop::collection::vec((arb_index(), arb_term(), arb_payload()), 0..4).prop_map(|v| {
            v.into_iter().map(|(index, term, payload)| Entry { index, term, payload }).collect()
        }),
    ]
}

fn arb_body() -> impl Strategy<Value = MessageBody> {
    prop_oneof![
        (
            arb_index(),
            arb_term(),
            arb_entries(),
            arb_index(),
            arb_duration(),
            arb_time()
        )
            .prop_map(
                |(
                    prev_log_index,
                    prev_log_term,
                    entries,
                    leader_commit,
                    lease_duration,
                    send_time,
                )| {
                    // A hostile echo too: any stamp, incarnation and grant.
                    let echo = (entries.len() % 2 == 1).then_some(FollowerEcho {
                        follower_time: send_time,
                        follower_epoch: leader_commit.0,
                        read_lease: lease_duration,
                    });
                    MessageBody::AppendEntries(AppendEntries {
                        prev_log_index,
                        prev_log_term,
                        entries,
                        leader_commit,
                        lease_duration,
                        send_time,
                        echo,
                    })
                }
            ),
        (
            any::<bool>(),
            arb_index(),
            arb_index(),
            prop::option::of(arb_term()),
            arb_index(),
            arb_time()
        )
            .prop_map(
                |(
                    success,
                    match_index,
                    conflict_index,
                    conflict_term,
                    last_log_index,
                    send_time,
                )| {
                    MessageBody::AppendEntriesResponse(AppendEntriesResponse {
                        success,
                        match_index,
                        conflict_index,
                        conflict_term,
                        last_log_index,
                        send_time,
                        follower_time: send_time,
                        follower_epoch: match_index.0,
                        wants_read_lease: success,
                    })
                }
            ),
        (any::<bool>(), any::<bool>(), arb_index(), arb_term()).prop_map(
            |(pre_vote, transfer, last_log_index, last_log_term)| {
                MessageBody::RequestVote(RequestVote {
                    pre_vote,
                    transfer,
                    last_log_index,
                    last_log_term,
                })
            }
        ),
        (
            arb_index(),
            arb_term(),
            0u64..4,
            prop::collection::vec(("[a-c]{1,2}", "[x-z]{0,2}"), 0..3),
            any::<bool>(),
            arb_time()
        )
            .prop_map(|(index, term, seq, data, done, send_time)| {
                MessageBody::InstallSnapshot(InstallSnapshot {
                    meta: SnapshotMeta {
                        index,
                        term,
                        membership: Membership::with_voters([NodeId(1), NodeId(2), NodeId(3)]),
                    },
                    seq,
                    data,
                    sessions: Vec::new(),
                    done,
                    lease_duration: Duration::from_millis(400),
                    send_time,
                })
            }),
        (arb_index(), 0u64..4, any::<bool>(), arb_time()).prop_map(
            |(snapshot_index, next_seq, installed, send_time)| {
                MessageBody::InstallSnapshotResponse(InstallSnapshotResponse {
                    snapshot_index,
                    next_seq,
                    installed,
                    send_time,
                })
            }
        ),
        Just(MessageBody::TimeoutNow),
        (any::<bool>(), any::<bool>(), arb_duration()).prop_map(
            |(pre_vote, granted, lease_remaining)| {
                MessageBody::RequestVoteResponse(RequestVoteResponse {
                    pre_vote,
                    granted,
                    lease_remaining,
                })
            }
        ),
    ]
}

#[derive(Debug, Clone)]
enum Input {
    Step(Box<Message>),
    Tick(u64),
    Propose(u64, String),
    Read(String),
    /// Hand out the Ready and report it persisted (honestly or not).
    Ready {
        honest: bool,
        index: LogIndex,
        term: Term,
    },
    Restart,
}

fn arb_input() -> impl Strategy<Value = Input> {
    prop_oneof![
        8 => (arb_node(), prop_oneof![9 => Just(NodeId(1)), 1 => arb_node()], arb_term(), arb_body())
            .prop_map(|(from, to, term, body)| Input::Step(Box::new(Message { from, to, term, body }))),
        4 => prop_oneof![5 => 0u64..1_500_000_000, 1 => any::<u64>()].prop_map(Input::Tick),
        2 => (0u64..3, "[a-c]{1,2}").prop_map(|(c, k)| Input::Propose(c, k)),
        2 => "[a-c]{1,2}".prop_map(Input::Read),
        4 => (any::<bool>(), arb_index(), arb_term()).prop_map(|(honest, index, term)| Input::Ready { honest, index, term }),
        1 => Just(Input::Restart),
    ]
}

/// The last index the durable snapshot covers.
fn offset(r: &Restored) -> u64 {
    r.snapshot.as_ref().map_or(0, |s| s.meta.index.0)
}

fn check_log(node: &RaftNode) {
    let log = node.log();
    assert!(log.commit() <= log.last_index(), "commit past the log end");
    let mut prev = Term(0);
    let mut i = log.first_index();
    while i <= log.last_index() {
        let e = log.get(i).expect("entries up to last_index exist");
        assert_eq!(e.index, i);
        assert!(e.term >= prev, "terms decrease at {i}");
        assert!(e.term <= node.term(), "an entry from a future term at {i}");
        prev = e.term;
        i = i.next();
    }
    assert!(node.kv().applied() <= log.commit(), "applied past commit");
}

fn run(inputs: Vec<Input>) {
    let voters = vec![NodeId(1), NodeId(2), NodeId(3)];
    let mut durable = Restored::default();
    let mut node = RaftNode::new(
        Config::new(NodeId(1), voters.clone()),
        Restored::default(),
        MonoTime(0),
        7,
    )
    .unwrap();
    let mut now = MonoTime(0);
    let mut read_id = 0;
    for (seq, input) in inputs.into_iter().enumerate() {
        match input {
            Input::Step(m) => node.step(now, *m),
            Input::Tick(dt) => {
                now = MonoTime(now.0.saturating_add(dt));
                node.tick(now);
            }
            Input::Propose(c, key) => {
                let cmd = ClientCommand {
                    client_id: ClientId(c),
                    seq: seq as u64,
                    op: Op::Set {
                        key,
                        value: "v".into(),
                    },
                };
                let _ = node.propose(now, cmd);
            }
            Input::Read(key) => {
                read_id += 1;
                let _ = node.read(now, ReadId(read_id), key);
            }
            Input::Ready {
                honest,
                index,
                term,
            } => {
                if node.has_ready() {
                    let rd = node.ready();
                    if let Some(hs) = rd.hard_state {
                        durable.hard_state = hs;
                    }
                    for w in &rd.snapshots {
                        let off = offset(&durable);
                        let index = w.snapshot.meta.index.0;
                        match w.origin {
                            SnapshotOrigin::Installed {
                                keep_log_suffix: false,
                            } => durable.entries.clear(),
                            _ => {
                                let n =
                                    (index.saturating_sub(off) as usize).min(durable.entries.len());
                                durable.entries.drain(..n);
                            }
                        }
                        durable.snapshot = Some(w.snapshot.clone());
                        if w.origin == SnapshotOrigin::Compaction {
                            node.on_snapshot_saved(now, w.snapshot.meta.index);
                        }
                    }
                    if let Some(first) = rd.entries.first() {
                        let off = offset(&durable);
                        durable
                            .entries
                            .truncate(first.index.0.saturating_sub(off + 1) as usize);
                        durable.entries.extend(rd.entries.iter().cloned());
                    }
                    if honest {
                        if let Some((i, t)) = rd.persist_mark() {
                            node.on_persisted(now, i, t);
                        }
                    }
                }
                if !honest {
                    node.on_persisted(now, index, term);
                }
            }
            Input::Restart => {
                durable.hard_state.commit = durable
                    .hard_state
                    .commit
                    .min(LogIndex(offset(&durable) + durable.entries.len() as u64));
                node = RaftNode::new(
                    Config::new(NodeId(1), voters.clone()),
                    durable.clone(),
                    now,
                    seq as u64,
                )
                .expect("a node restarts from what it persisted");
            }
        }
        check_log(&node);
        let _ = node.status(now);
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(300),
        ..ProptestConfig::default()
    })]

    #[test]
    fn hostile_inputs_never_panic_the_core(inputs in prop::collection::vec(arb_input(), 1..80)) {
        run(inputs);
    }
}
