//! The boundary between protobuf and core types. Everything that comes off
//! the wire passes through here and is checked: a malformed message becomes a
//! [`ConvertError`] (counted by the caller), never a panic.

use std::time::Duration;

use raftkv_client::pb;
use raftkv_client::pb::{command, entry, peer_message};
use raftkv_core::{
    AppendEntries, AppendEntriesResponse, ClientCommand, ClientId, Entry, EntryPayload,
    FollowerEcho, InstallSnapshot, InstallSnapshotResponse, LogIndex, Membership, Message,
    MessageBody, MonoTime, NodeId, Op, OpResult, Placement, RequestVote, RequestVoteResponse,
    SessionRecord, SnapshotMeta, Term,
};

/// Members one configuration may hold, and the longest address accepted.
pub const MAX_MEMBERS: usize = 1024;
pub const MAX_ADDR_BYTES: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConvertError {
    #[error("message has no body")]
    MissingBody,
    #[error("entry {0} has no payload")]
    MissingPayload(u64),
    #[error("command in entry {0} has no operation")]
    MissingOp(u64),
    #[error("entry index 0 is invalid")]
    ZeroIndex,
    #[error("node id 0 is invalid")]
    ZeroNode,
    #[error("bad configuration: {0}")]
    BadMembership(String),
    #[error("unknown session result {0}")]
    BadSessionResult(i32),
    #[error("snapshot chunk has no meta")]
    MissingMeta,
    #[error("{what} of {len} bytes exceeds the limit of {limit} bytes (--max-{what}-bytes)")]
    TooLarge {
        what: &'static str,
        len: usize,
        limit: usize,
    },
}

/// Limits applied to data coming off the wire, beyond what protobuf checks.
#[derive(Clone, Copy, Debug)]
pub struct WireLimits {
    pub max_key_bytes: usize,
    pub max_value_bytes: usize,
}

pub fn message_to_pb(msg: &Message) -> pb::PeerMessage {
    let body = match &msg.body {
        MessageBody::AppendEntries(a) => peer_message::Body::AppendEntries(pb::AppendEntries {
            prev_log_index: a.prev_log_index.0,
            prev_log_term: a.prev_log_term.0,
            entries: a.entries.iter().map(entry_to_pb).collect(),
            leader_commit: a.leader_commit.0,
            lease_duration_us: duration_to_us(a.lease_duration),
            send_time_ns: a.send_time.as_nanos(),
            echo: a.echo.map(|e| pb::FollowerEcho {
                follower_time_ns: e.follower_time.as_nanos(),
                follower_epoch: e.follower_epoch,
                read_lease_us: duration_to_us(e.read_lease),
            }),
        }),
        MessageBody::AppendEntriesResponse(r) => {
            peer_message::Body::AppendEntriesResponse(pb::AppendEntriesResponse {
                success: r.success,
                match_index: r.match_index.0,
                conflict_index: r.conflict_index.0,
                conflict_term: r.conflict_term.map(|t| t.0),
                last_log_index: r.last_log_index.0,
                send_time_ns: r.send_time.as_nanos(),
                follower_time_ns: r.follower_time.as_nanos(),
                follower_epoch: r.follower_epoch,
                wants_read_lease: r.wants_read_lease,
            })
        }
        MessageBody::RequestVote(v) => peer_message::Body::RequestVote(pb::RequestVote {
            pre_vote: v.pre_vote,
            last_log_index: v.last_log_index.0,
            last_log_term: v.last_log_term.0,
            transfer: v.transfer,
        }),
        MessageBody::RequestVoteResponse(v) => {
            peer_message::Body::RequestVoteResponse(pb::RequestVoteResponse {
                pre_vote: v.pre_vote,
                granted: v.granted,
                lease_remaining_us: duration_to_us(v.lease_remaining),
            })
        }
        MessageBody::InstallSnapshot(i) => {
            peer_message::Body::InstallSnapshot(pb::InstallSnapshot {
                meta: Some(meta_to_pb(&i.meta)),
                seq: i.seq,
                data: i
                    .data
                    .iter()
                    .map(|(k, v)| pb::KvPair {
                        key: k.clone(),
                        value: v.clone(),
                    })
                    .collect(),
                sessions: i.sessions.iter().map(session_to_pb).collect(),
                done: i.done,
                lease_duration_us: duration_to_us(i.lease_duration),
                send_time_ns: i.send_time.as_nanos(),
            })
        }
        MessageBody::InstallSnapshotResponse(r) => {
            peer_message::Body::InstallSnapshotResponse(pb::InstallSnapshotResponse {
                snapshot_index: r.snapshot_index.0,
                next_seq: r.next_seq,
                installed: r.installed,
                send_time_ns: r.send_time.as_nanos(),
            })
        }
        MessageBody::TimeoutNow => peer_message::Body::TimeoutNow(pb::TimeoutNow {}),
    };
    pb::PeerMessage {
        term: msg.term.0,
        body: Some(body),
    }
}

pub fn message_from_pb(
    from: NodeId,
    to: NodeId,
    msg: pb::PeerMessage,
    limits: WireLimits,
) -> Result<Message, ConvertError> {
    if from.0 == 0 || to.0 == 0 {
        return Err(ConvertError::ZeroNode);
    }
    let body = match msg.body.ok_or(ConvertError::MissingBody)? {
        peer_message::Body::AppendEntries(a) => MessageBody::AppendEntries(AppendEntries {
            prev_log_index: LogIndex(a.prev_log_index),
            prev_log_term: Term(a.prev_log_term),
            entries: a
                .entries
                .into_iter()
                .map(|e| entry_from_pb(e, limits))
                .collect::<Result<_, _>>()?,
            leader_commit: LogIndex(a.leader_commit),
            lease_duration: Duration::from_micros(a.lease_duration_us),
            send_time: MonoTime::from_nanos(a.send_time_ns),
            echo: a.echo.map(|e| FollowerEcho {
                follower_time: MonoTime::from_nanos(e.follower_time_ns),
                follower_epoch: e.follower_epoch,
                read_lease: Duration::from_micros(e.read_lease_us),
            }),
        }),
        peer_message::Body::AppendEntriesResponse(r) => {
            MessageBody::AppendEntriesResponse(AppendEntriesResponse {
                success: r.success,
                match_index: LogIndex(r.match_index),
                conflict_index: LogIndex(r.conflict_index),
                conflict_term: r.conflict_term.map(Term),
                last_log_index: LogIndex(r.last_log_index),
                send_time: MonoTime::from_nanos(r.send_time_ns),
                follower_time: MonoTime::from_nanos(r.follower_time_ns),
                follower_epoch: r.follower_epoch,
                wants_read_lease: r.wants_read_lease,
            })
        }
        peer_message::Body::RequestVote(v) => MessageBody::RequestVote(RequestVote {
            pre_vote: v.pre_vote,
            transfer: v.transfer,
            last_log_index: LogIndex(v.last_log_index),
            last_log_term: Term(v.last_log_term),
        }),
        peer_message::Body::RequestVoteResponse(v) => {
            MessageBody::RequestVoteResponse(RequestVoteResponse {
                pre_vote: v.pre_vote,
                granted: v.granted,
                lease_remaining: Duration::from_micros(v.lease_remaining_us),
            })
        }
        peer_message::Body::InstallSnapshot(i) => {
            let meta = meta_from_pb(i.meta.ok_or(ConvertError::MissingMeta)?)?;
            let mut data = Vec::with_capacity(i.data.len());
            for pair in i.data {
                check_key(&pair.key, limits)?;
                check_value(&pair.value, limits)?;
                data.push((pair.key, pair.value));
            }
            let sessions = i
                .sessions
                .into_iter()
                .map(session_from_pb)
                .collect::<Result<_, _>>()?;
            MessageBody::InstallSnapshot(InstallSnapshot {
                meta,
                seq: i.seq,
                data,
                sessions,
                done: i.done,
                lease_duration: Duration::from_micros(i.lease_duration_us),
                send_time: MonoTime::from_nanos(i.send_time_ns),
            })
        }
        peer_message::Body::InstallSnapshotResponse(r) => {
            MessageBody::InstallSnapshotResponse(InstallSnapshotResponse {
                snapshot_index: LogIndex(r.snapshot_index),
                next_seq: r.next_seq,
                installed: r.installed,
                send_time: MonoTime::from_nanos(r.send_time_ns),
            })
        }
        peer_message::Body::TimeoutNow(_) => MessageBody::TimeoutNow,
    };
    Ok(Message {
        from,
        to,
        term: Term(msg.term),
        body,
    })
}

fn entry_to_pb(e: &Entry) -> pb::Entry {
    let payload = match &e.payload {
        EntryPayload::Noop => entry::Payload::Noop(pb::Noop {}),
        EntryPayload::Command(c) => {
            let op = match &c.op {
                Op::Set { key, value } => command::Op::Set(pb::SetOp {
                    key: key.clone(),
                    value: value.clone(),
                }),
                Op::Delete { key } => command::Op::Delete(pb::DeleteOp { key: key.clone() }),
            };
            entry::Payload::Command(pb::Command {
                client_id: c.client_id.0,
                seq: c.seq,
                op: Some(op),
            })
        }
        EntryPayload::Config(m) => entry::Payload::Config(membership_to_pb(m)),
    };
    pb::Entry {
        index: e.index.0,
        term: e.term.0,
        payload: Some(payload),
    }
}

fn entry_from_pb(e: pb::Entry, limits: WireLimits) -> Result<Entry, ConvertError> {
    if e.index == 0 {
        return Err(ConvertError::ZeroIndex);
    }
    let payload = match e.payload.ok_or(ConvertError::MissingPayload(e.index))? {
        entry::Payload::Noop(_) => EntryPayload::Noop,
        entry::Payload::Command(c) => {
            let op = match c.op.ok_or(ConvertError::MissingOp(e.index))? {
                command::Op::Set(s) => {
                    check_key(&s.key, limits)?;
                    check_value(&s.value, limits)?;
                    Op::Set {
                        key: s.key,
                        value: s.value,
                    }
                }
                command::Op::Delete(d) => {
                    check_key(&d.key, limits)?;
                    Op::Delete { key: d.key }
                }
            };
            EntryPayload::Command(ClientCommand {
                client_id: ClientId(c.client_id),
                seq: c.seq,
                op,
            })
        }
        entry::Payload::Config(m) => EntryPayload::Config(membership_from_pb(m)?),
    };
    Ok(Entry {
        index: LogIndex(e.index),
        term: Term(e.term),
        payload,
    })
}

pub fn membership_to_pb(m: &Membership) -> pb::Membership {
    pb::Membership {
        voters: m.voters.iter().map(|n| n.0).collect(),
        learners: m.learners.iter().map(|n| n.0).collect(),
        addrs: m.addrs.iter().map(|(n, a)| (n.0, a.clone())).collect(),
        preferred_leaders: m
            .placement
            .iter()
            .flat_map(|p| p.leaders.iter().map(|n| n.0))
            .collect(),
        preferred_zones: m
            .placement
            .iter()
            .flat_map(|p| p.zones.iter().cloned())
            .collect(),
        placement_set: m.placement.is_some(),
    }
}

/// A configuration off the wire: bounded in size, ids non-zero, voters and
/// learners disjoint, every address a member's and shaped like host:port.
pub fn membership_from_pb(m: pb::Membership) -> Result<Membership, ConvertError> {
    let total = m.voters.len() + m.learners.len();
    if total > MAX_MEMBERS || m.addrs.len() > MAX_MEMBERS {
        return Err(ConvertError::BadMembership(format!(
            "{total} members exceed the limit of {MAX_MEMBERS}"
        )));
    }
    if m.preferred_leaders.len() > MAX_MEMBERS || m.preferred_zones.len() > MAX_MEMBERS {
        return Err(ConvertError::BadMembership(format!(
            "a placement longer than {MAX_MEMBERS} ids or zones"
        )));
    }
    let membership = Membership {
        voters: m.voters.into_iter().map(NodeId).collect(),
        learners: m.learners.into_iter().map(NodeId).collect(),
        addrs: m.addrs.into_iter().map(|(n, a)| (NodeId(n), a)).collect(),
        placement: m.placement_set.then(|| Placement {
            leaders: m.preferred_leaders.into_iter().map(NodeId).collect(),
            zones: m.preferred_zones,
        }),
    };
    membership.validate().map_err(ConvertError::BadMembership)?;
    for (id, addr) in &membership.addrs {
        check_addr(addr).map_err(|e| ConvertError::BadMembership(format!("node {id}: {e}")))?;
    }
    Ok(membership)
}

/// A peer address: `host:port`, printable, at most [`MAX_ADDR_BYTES`].
pub fn check_addr(addr: &str) -> Result<(), String> {
    if addr.len() > MAX_ADDR_BYTES {
        return Err(format!(
            "address of {} bytes exceeds {MAX_ADDR_BYTES}",
            addr.len()
        ));
    }
    let shaped = addr
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p != 0));
    if !shaped || addr.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("{addr:?} is not host:port"));
    }
    Ok(())
}

fn meta_to_pb(meta: &SnapshotMeta) -> pb::SnapshotMeta {
    pb::SnapshotMeta {
        index: meta.index.0,
        term: meta.term.0,
        membership: Some(membership_to_pb(&meta.membership)),
    }
}

fn meta_from_pb(meta: pb::SnapshotMeta) -> Result<SnapshotMeta, ConvertError> {
    if meta.index == 0 {
        return Err(ConvertError::ZeroIndex);
    }
    Ok(SnapshotMeta {
        index: LogIndex(meta.index),
        term: Term(meta.term),
        membership: membership_from_pb(meta.membership.unwrap_or_default())?,
    })
}

fn session_to_pb(s: &SessionRecord) -> pb::SessionRecord {
    let result = match s.last_result {
        OpResult::Set => pb::SessionResult::Set,
        OpResult::Deleted { existed: true } => pb::SessionResult::DeletedExisted,
        OpResult::Deleted { existed: false } => pb::SessionResult::DeletedMissing,
    };
    pb::SessionRecord {
        client_id: s.client_id.0,
        last_seq: s.last_seq,
        last_result: result as i32,
        last_index: s.last_index.0,
    }
}

fn session_from_pb(s: pb::SessionRecord) -> Result<SessionRecord, ConvertError> {
    let last_result = match pb::SessionResult::try_from(s.last_result) {
        Ok(pb::SessionResult::Set) => OpResult::Set,
        Ok(pb::SessionResult::DeletedExisted) => OpResult::Deleted { existed: true },
        Ok(pb::SessionResult::DeletedMissing) => OpResult::Deleted { existed: false },
        Err(_) => return Err(ConvertError::BadSessionResult(s.last_result)),
    };
    Ok(SessionRecord {
        client_id: ClientId(s.client_id),
        last_seq: s.last_seq,
        last_result,
        last_index: LogIndex(s.last_index),
    })
}

pub fn check_key(key: &str, limits: WireLimits) -> Result<(), ConvertError> {
    if key.len() > limits.max_key_bytes {
        return Err(ConvertError::TooLarge {
            what: "key",
            len: key.len(),
            limit: limits.max_key_bytes,
        });
    }
    Ok(())
}

pub fn check_value(value: &str, limits: WireLimits) -> Result<(), ConvertError> {
    if value.len() > limits.max_value_bytes {
        return Err(ConvertError::TooLarge {
            what: "value",
            len: value.len(),
            limit: limits.max_value_bytes,
        });
    }
    Ok(())
}

fn duration_to_us(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: WireLimits = WireLimits {
        max_key_bytes: 16,
        max_value_bytes: 64,
    };

    fn membership() -> Membership {
        Membership {
            voters: [NodeId(1), NodeId(2), NodeId(4)].into(),
            learners: [NodeId(5)].into(),
            addrs: [
                (NodeId(4), "10.0.0.4:7004".to_owned()),
                (NodeId(5), "node-5:7005".to_owned()),
            ]
            .into(),
            placement: Some(Placement {
                leaders: vec![NodeId(4), NodeId(1)],
                zones: vec!["eu-west".into()],
            }),
        }
    }

    fn snapshot_chunk(meta: Option<pb::SnapshotMeta>, data: Vec<pb::KvPair>) -> pb::PeerMessage {
        pb::PeerMessage {
            term: 3,
            body: Some(peer_message::Body::InstallSnapshot(pb::InstallSnapshot {
                meta,
                data,
                ..Default::default()
            })),
        }
    }

    #[test]
    fn hostile_snapshots_and_configurations_are_rejected() {
        let good_meta = || pb::SnapshotMeta {
            index: 5,
            term: 1,
            membership: Some(membership_to_pb(&membership())),
        };
        let ok = snapshot_chunk(Some(good_meta()), vec![]);
        assert!(message_from_pb(NodeId(1), NodeId(2), ok, LIMITS).is_ok());
        let no_meta = snapshot_chunk(None, vec![]);
        assert_eq!(
            message_from_pb(NodeId(1), NodeId(2), no_meta, LIMITS),
            Err(ConvertError::MissingMeta)
        );
        let big_value = snapshot_chunk(
            Some(good_meta()),
            vec![pb::KvPair {
                key: "k".into(),
                value: "v".repeat(65),
            }],
        );
        assert!(matches!(
            message_from_pb(NodeId(1), NodeId(2), big_value, LIMITS),
            Err(ConvertError::TooLarge { what: "value", .. })
        ));
        let mut both = membership_to_pb(&membership());
        both.learners.push(1);
        assert!(matches!(
            membership_from_pb(both),
            Err(ConvertError::BadMembership(_))
        ));
        let mut zero = membership_to_pb(&membership());
        zero.voters.push(0);
        assert!(membership_from_pb(zero).is_err());
        let mut stray_addr = membership_to_pb(&membership());
        stray_addr.addrs.insert(9, "h:1".into());
        assert!(membership_from_pb(stray_addr).is_err());
        let mut bad_addr = membership_to_pb(&membership());
        bad_addr.addrs.insert(4, "no port".into());
        assert!(membership_from_pb(bad_addr).is_err());
        let huge = pb::Membership {
            voters: (1..=MAX_MEMBERS as u64 + 1).collect(),
            ..Default::default()
        };
        assert!(membership_from_pb(huge).is_err());
        let mut bad_zone = membership_to_pb(&membership());
        bad_zone.preferred_zones.push("a b".into());
        assert!(membership_from_pb(bad_zone).is_err());
        let mut zero = membership_to_pb(&membership());
        zero.preferred_leaders.push(0);
        assert!(membership_from_pb(zero).is_err());
        let mut unset = membership_to_pb(&membership());
        unset.placement_set = false;
        assert_eq!(membership_from_pb(unset).unwrap().placement, None);
        let bad_session = pb::PeerMessage {
            term: 3,
            body: Some(peer_message::Body::InstallSnapshot(pb::InstallSnapshot {
                meta: Some(good_meta()),
                sessions: vec![pb::SessionRecord {
                    client_id: 1,
                    last_result: 17,
                    ..Default::default()
                }],
                ..Default::default()
            })),
        };
        assert_eq!(
            message_from_pb(NodeId(1), NodeId(2), bad_session, LIMITS),
            Err(ConvertError::BadSessionResult(17))
        );
        assert!(check_addr("127.0.0.1:7001").is_ok());
        assert!(check_addr("[::1]:7001").is_ok());
        assert!(check_addr("host:0").is_err());
        assert!(check_addr(&format!("{}:1", "h".repeat(300))).is_err());
    }

    fn round_trip(msg: Message) {
        let pb = message_to_pb(&msg);
        let back = message_from_pb(msg.from, msg.to, pb, LIMITS).expect("valid message");
        assert_eq!(back, msg);
    }

    #[test]
    fn every_message_kind_round_trips() {
        let entries = vec![
            Entry {
                index: LogIndex(4),
                term: Term(2),
                payload: EntryPayload::Noop,
            },
            Entry {
                index: LogIndex(5),
                term: Term(2),
                payload: EntryPayload::Command(ClientCommand {
                    client_id: ClientId(9),
                    seq: 3,
                    op: Op::Set {
                        key: "k".into(),
                        value: "v w\n".into(),
                    },
                }),
            },
            Entry {
                index: LogIndex(6),
                term: Term(2),
                payload: EntryPayload::Command(ClientCommand {
                    client_id: ClientId(0),
                    seq: 0,
                    op: Op::Delete { key: "k".into() },
                }),
            },
            Entry {
                index: LogIndex(7),
                term: Term(2),
                payload: EntryPayload::Config(membership()),
            },
        ];
        let bodies = vec![
            MessageBody::AppendEntries(AppendEntries {
                prev_log_index: LogIndex(3),
                prev_log_term: Term(1),
                entries,
                leader_commit: LogIndex(3),
                lease_duration: Duration::from_millis(150),
                send_time: MonoTime(123_456_789),
                echo: Some(FollowerEcho {
                    follower_time: MonoTime(55),
                    follower_epoch: 0xDEAD_BEEF_0000_0001,
                    read_lease: Duration::from_micros(120_000),
                }),
            }),
            MessageBody::AppendEntriesResponse(AppendEntriesResponse {
                success: false,
                match_index: LogIndex(0),
                conflict_index: LogIndex(2),
                conflict_term: Some(Term(1)),
                last_log_index: LogIndex(7),
                send_time: MonoTime(42),
                follower_time: MonoTime(31),
                follower_epoch: 77,
                wants_read_lease: true,
            }),
            MessageBody::RequestVote(RequestVote {
                pre_vote: true,
                transfer: true,
                last_log_index: LogIndex(8),
                last_log_term: Term(3),
            }),
            MessageBody::InstallSnapshot(InstallSnapshot {
                meta: SnapshotMeta {
                    index: LogIndex(40),
                    term: Term(3),
                    membership: membership(),
                },
                seq: 2,
                data: vec![("a".into(), "1".into()), ("b".into(), "x y\n".into())],
                sessions: vec![
                    SessionRecord {
                        client_id: ClientId(7),
                        last_seq: 3,
                        last_result: OpResult::Set,
                        last_index: LogIndex(39),
                    },
                    SessionRecord {
                        client_id: ClientId(8),
                        last_seq: 1,
                        last_result: OpResult::Deleted { existed: false },
                        last_index: LogIndex(12),
                    },
                ],
                done: true,
                lease_duration: Duration::from_millis(150),
                send_time: MonoTime(99),
            }),
            MessageBody::InstallSnapshotResponse(InstallSnapshotResponse {
                snapshot_index: LogIndex(40),
                next_seq: 3,
                installed: true,
                send_time: MonoTime(99),
            }),
            MessageBody::TimeoutNow,
            MessageBody::RequestVoteResponse(RequestVoteResponse {
                pre_vote: false,
                granted: true,
                lease_remaining: Duration::from_micros(77),
            }),
        ];
        for body in bodies {
            round_trip(Message {
                from: NodeId(1),
                to: NodeId(2),
                term: Term(2),
                body,
            });
        }
    }

    #[test]
    fn malformed_messages_are_rejected() {
        let empty = pb::PeerMessage {
            term: 1,
            body: None,
        };
        assert_eq!(
            message_from_pb(NodeId(1), NodeId(2), empty, LIMITS),
            Err(ConvertError::MissingBody)
        );
        let no_payload = pb::PeerMessage {
            term: 1,
            body: Some(peer_message::Body::AppendEntries(pb::AppendEntries {
                entries: vec![pb::Entry {
                    index: 1,
                    term: 1,
                    payload: None,
                }],
                ..Default::default()
            })),
        };
        assert_eq!(
            message_from_pb(NodeId(1), NodeId(2), no_payload, LIMITS),
            Err(ConvertError::MissingPayload(1))
        );
        let big_key = pb::PeerMessage {
            term: 1,
            body: Some(peer_message::Body::AppendEntries(pb::AppendEntries {
                entries: vec![pb::Entry {
                    index: 1,
                    term: 1,
                    payload: Some(entry::Payload::Command(pb::Command {
                        client_id: 1,
                        seq: 1,
                        op: Some(command::Op::Delete(pb::DeleteOp {
                            key: "x".repeat(17),
                        })),
                    })),
                }],
                ..Default::default()
            })),
        };
        assert!(matches!(
            message_from_pb(NodeId(1), NodeId(2), big_key, LIMITS),
            Err(ConvertError::TooLarge { what: "key", .. })
        ));
        let ok = pb::PeerMessage {
            term: 1,
            body: Some(peer_message::Body::RequestVote(Default::default())),
        };
        assert_eq!(
            message_from_pb(NodeId(0), NodeId(2), ok, LIMITS),
            Err(ConvertError::ZeroNode)
        );
    }
}
