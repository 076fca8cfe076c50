//! The boundary between protobuf and core types. Everything that comes off
//! the wire passes through here and is checked: a malformed message becomes a
//! [`ConvertError`] (counted by the caller), never a panic.

use std::time::Duration;

use raftkv_client::pb;
use raftkv_client::pb::{command, entry, peer_message};
use raftkv_core::{
    AppendEntries, AppendEntriesResponse, ClientCommand, ClientId, Entry, EntryPayload, LogIndex,
    Message, MessageBody, MonoTime, NodeId, Op, RequestVote, RequestVoteResponse, Term,
};

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
    #[error("{what} of {len} bytes exceeds the limit of {limit}")]
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
        }),
        MessageBody::AppendEntriesResponse(r) => {
            peer_message::Body::AppendEntriesResponse(pb::AppendEntriesResponse {
                success: r.success,
                match_index: r.match_index.0,
                conflict_index: r.conflict_index.0,
                conflict_term: r.conflict_term.map(|t| t.0),
                last_log_index: r.last_log_index.0,
                send_time_ns: r.send_time.as_nanos(),
            })
        }
        MessageBody::RequestVote(v) => peer_message::Body::RequestVote(pb::RequestVote {
            pre_vote: v.pre_vote,
            last_log_index: v.last_log_index.0,
            last_log_term: v.last_log_term.0,
        }),
        MessageBody::RequestVoteResponse(v) => {
            peer_message::Body::RequestVoteResponse(pb::RequestVoteResponse {
                pre_vote: v.pre_vote,
                granted: v.granted,
                lease_remaining_us: duration_to_us(v.lease_remaining),
            })
        }
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
        }),
        peer_message::Body::AppendEntriesResponse(r) => {
            MessageBody::AppendEntriesResponse(AppendEntriesResponse {
                success: r.success,
                match_index: LogIndex(r.match_index),
                conflict_index: LogIndex(r.conflict_index),
                conflict_term: r.conflict_term.map(Term),
                last_log_index: LogIndex(r.last_log_index),
                send_time: MonoTime::from_nanos(r.send_time_ns),
            })
        }
        peer_message::Body::RequestVote(v) => MessageBody::RequestVote(RequestVote {
            pre_vote: v.pre_vote,
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
    };
    Ok(Entry {
        index: LogIndex(e.index),
        term: Term(e.term),
        payload,
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
        ];
        let bodies = vec![
            MessageBody::AppendEntries(AppendEntries {
                prev_log_index: LogIndex(3),
                prev_log_term: Term(1),
                entries,
                leader_commit: LogIndex(3),
                lease_duration: Duration::from_millis(150),
                send_time: MonoTime(123_456_789),
            }),
            MessageBody::AppendEntriesResponse(AppendEntriesResponse {
                success: false,
                match_index: LogIndex(0),
                conflict_index: LogIndex(2),
                conflict_term: Some(Term(1)),
                last_log_index: LogIndex(7),
                send_time: MonoTime(42),
            }),
            MessageBody::RequestVote(RequestVote {
                pre_vote: true,
                last_log_index: LogIndex(8),
                last_log_term: Term(3),
            }),
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
