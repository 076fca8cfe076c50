//! Messages exchanged between nodes. Wire encodings convert to and from these
//! at the edge (see `raftkv-server`); the core only ever sees these types.

use std::time::Duration;

use crate::snapshot::{SessionRecord, SnapshotMeta};
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
    InstallSnapshot(InstallSnapshot),
    InstallSnapshotResponse(InstallSnapshotResponse),
    TimeoutNow,
}

/// Leader → follower: replicate entries, or just renew the lease (heartbeat).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct AppendEntries {
    pub prev_log_index: LogIndex,
    pub prev_log_term: Term,
    pub entries: Vec<Entry>,
    pub leader_commit: LogIndex,
    /// lease rule 1: how long the follower must protect this leader's
    /// lease from the moment it accepts this message.
    pub lease_duration: Duration,
    /// lease rule 4: the leader's clock when it sent this message; echoed
    /// back in the response. Only ever compared with the leader's own clock.
    pub send_time: MonoTime,
    /// F1/F2: the latest stamp this follower sent, echoed by a leader that
    /// held its lease when it received it, with the read lease granted on
    /// it (zero: none). Repeated in every append until a newer stamp comes.
    pub echo: Option<FollowerEcho>,
}

/// F2: a follower's stamp, echoed by the leader (docs/protocol.md).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct FollowerEcho {
    /// `s_F`: the follower's clock when it sent the stamped response.
    pub follower_time: MonoTime,
    /// The follower's incarnation (drawn at start): a stamp from before a
    /// restart is on another clock and is ignored.
    pub follower_epoch: u64,
    /// `g`: the read lease granted, measured from `follower_time` on the
    /// follower's clock after the drift shrink. Zero: no read lease, the
    /// echo only proves freshness (bounded-staleness reads).
    pub read_lease: Duration,
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
    /// F1: the follower's clock when it sent this, and its incarnation.
    pub follower_time: MonoTime,
    pub follower_epoch: u64,
    /// F7: the follower is configured to hold read leases, and (F6) no
    /// configuration in its log removes it.
    pub wants_read_lease: bool,
}

/// Candidate (or pre-candidate) → voter.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct RequestVote {
    pub pre_vote: bool,
    /// Sent by the target of a leadership transfer (after `TimeoutNow`):
    /// voters set vote stickiness (rule 9) aside, since the leader itself
    /// asked for the election. The new leader still waits out the old lease
    /// (rule 5).
    pub transfer: bool,
    pub last_log_index: LogIndex,
    pub last_log_term: Term,
}

/// Voter → candidate.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct RequestVoteResponse {
    pub pre_vote: bool,
    pub granted: bool,
    /// lease rule 2: what remains of the lease this voter protects,
    /// `max(0, lease_until - now)`, carried by every reply.
    pub lease_remaining: Duration,
}

/// Leader → follower: one chunk of a snapshot, for a follower that needs
/// entries the leader has compacted away. Chunks are numbered from 0 within
/// one transfer (identified by `meta.index` and `meta.term`); the follower
/// accepts only the next one in order. A chunk is also a heartbeat: the
/// follower renews the lease it protects (rule 1) before it replies.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct InstallSnapshot {
    pub meta: SnapshotMeta,
    pub seq: u64,
    /// Key-value pairs, in key order, continuing where the previous chunk
    /// ended.
    pub data: Vec<(String, String)>,
    /// The client sessions; only in the last chunk.
    pub sessions: Vec<SessionRecord>,
    /// The last chunk: the follower installs the snapshot.
    pub done: bool,
    pub lease_duration: Duration,
    pub send_time: MonoTime,
}

/// Follower → leader.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct InstallSnapshotResponse {
    /// `meta.index` of the transfer this answers.
    pub snapshot_index: LogIndex,
    /// The chunk the follower expects next (0: start over). After the last
    /// chunk, one past it.
    pub next_seq: u64,
    /// The snapshot is installed and durable: the follower's log matches the
    /// leader's up to `snapshot_index`.
    pub installed: bool,
    /// Echo of `InstallSnapshot::send_time`.
    pub send_time: MonoTime,
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
            MessageBody::InstallSnapshot(_) => "InstallSnapshot",
            MessageBody::InstallSnapshotResponse(_) => "InstallSnapshotResponse",
            MessageBody::TimeoutNow => "TimeoutNow",
        }
    }
}
