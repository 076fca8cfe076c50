//! Messages exchanged between nodes. Wire encodings convert to and from these
//! at the edge (see `raftkv-server`); the core only ever sees these types.

use std::time::Duration;

use crate::types::{Entry, LogIndex, MonoTime, NodeId, Term};

#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Message {
    pub from: NodeId,
    pub to: NodeId,
    /// The sender's current term (for a pre-vote request: the term it would
    /// campaign in).
    pub term: Term,
    pub body: MessageBody,
}

#[derive(Clone, PartialEq, Eq, Debug)]
pub enum MessageBody {
    AppendEntries(AppendEntries),
    AppendEntriesResponse(AppendEntriesResponse),
    RequestVote(RequestVote),
    RequestVoteResponse(RequestVoteResponse),
}

/// Leader → follower: replicate entries, or just renew the lease (heartbeat).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct AppendEntries {
    pub prev_log_index: LogIndex,
    pub prev_log_term: Term,
    pub entries: Vec<Entry>,
    pub leader_commit: LogIndex,
    /// LEASES.md rule 1: how long the follower must protect this leader's
    /// lease from the moment it accepts this message.
    pub lease_duration: Duration,
    /// LEASES.md rule 4: the leader's clock when it sent this message; echoed
    /// back in the response. Only ever compared with the leader's own clock.
    pub send_time: MonoTime,
}

/// Follower → leader.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct AppendEntriesResponse {
    pub success: bool,
    /// On success: the follower's log matches the leader's up to here.
    pub match_index: LogIndex,
    /// On a log mismatch: where the leader should retry from (fast back-off).
    /// With `conflict_term` set, the follower's entry at `prev_log_index` had
    /// that term and `conflict_index` is the first index of that term in the
    /// follower's log; without it, the follower's log is too short and
    /// `conflict_index` is its last index + 1.
    pub conflict_index: LogIndex,
    pub conflict_term: Option<Term>,
    pub last_log_index: LogIndex,
    /// Echo of `AppendEntries::send_time`.
    pub send_time: MonoTime,
}

/// Candidate (or pre-candidate) → voter.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct RequestVote {
    pub pre_vote: bool,
    pub last_log_index: LogIndex,
    pub last_log_term: Term,
}

/// Voter → candidate.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct RequestVoteResponse {
    pub pre_vote: bool,
    pub granted: bool,
    /// LEASES.md rule 2: what remains of the lease this voter protects,
    /// `max(0, lease_until - now)`, carried by every reply.
    pub lease_remaining: Duration,
}

impl MessageBody {
    pub fn kind(&self) -> &'static str {
        match self {
            MessageBody::AppendEntries(a) if a.entries.is_empty() => "Heartbeat",
            MessageBody::AppendEntries(_) => "AppendEntries",
            MessageBody::AppendEntriesResponse(_) => "AppendEntriesResponse",
            MessageBody::RequestVote(r) if r.pre_vote => "PreVote",
            MessageBody::RequestVote(_) => "RequestVote",
            MessageBody::RequestVoteResponse(r) if r.pre_vote => "PreVoteResponse",
            MessageBody::RequestVoteResponse(_) => "RequestVoteResponse",
        }
    }
}
