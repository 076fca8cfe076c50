//! What goes out of the core: the [`Ready`] batch, results, errors, events and
//! status. What goes in is the method list of [`crate::RaftNode`].

use std::fmt;
use std::time::Duration;

use crate::message::Message;
use crate::snapshot::SnapshotWrite;
use crate::types::{
    ClientId, ConfChange, Entry, HardState, LogIndex, Membership, MonoTime, NodeId, OpResult,
    Placement, Term, VoteFloor,
};

/// Everything the driver must do after feeding inputs to the core, in this
/// order:
/// 1. send `messages` (they may go at once, even before step 2 finishes:
///    the leader's own AppendEntries do not depend on its local fsync, and
///    pre-vote replies, granted or not, promise nothing);
/// 2. save `snapshots`, in order (see [`SnapshotWrite`] for what each does to
///    the log), then append `entries` to the log (an entry whose index is
///    already in the log replaces it and everything after it) and write
///    `hard_state`; when `must_sync`, make all of it durable (fsync). A
///    snapshot of origin `Compaction` may be written later, in the
///    background; report it with [`crate::RaftNode::on_snapshot_saved`];
/// 3. send `persisted_messages` (votes and acknowledgements that promise
///    durability) once this `Ready`'s writes *and those of every earlier
///    `Ready`* are durable — a driver that syncs in the background must keep
///    them in order behind pending syncs, even when this `Ready` itself has
///    nothing to persist;
/// 4. call [`crate::RaftNode::on_persisted`] with [`Ready::persist_mark`];
/// 5. hand `write_results`, `read_results` and `conf_change_results` to the
///    waiting clients.
///
/// A `Ready` with nothing to persist (`must_sync` false, so any
/// `hard_state` only moves the commit index; no `entries`, no `snapshots`)
/// and no `persisted_messages` may go through steps 3–5 at once, ahead of
/// earlier Readies still syncing: its results rest on commits, and the core
/// counts a copy of an entry, its own included, only once it is durable.
#[derive(Debug, Default)]
pub struct Ready {
    pub hard_state: Option<HardState>,
    /// True when `entries` is non-empty or the term or vote changed.
    pub must_sync: bool,
    pub snapshots: Vec<SnapshotWrite>,
    pub entries: Vec<Entry>,
    pub messages: Vec<Message>,
    pub persisted_messages: Vec<Message>,
    pub write_results: Vec<WriteResult>,
    pub read_results: Vec<ReadResult>,
    pub conf_change_results: Vec<ConfChangeResult>,
    /// Things a person wants in `dump.txt`.
    pub events: Vec<Event>,
}

impl Ready {
    pub fn is_empty(&self) -> bool {
        self.hard_state.is_none()
            && self.snapshots.is_empty()
            && self.entries.is_empty()
            && self.messages.is_empty()
            && self.persisted_messages.is_empty()
            && self.write_results.is_empty()
            && self.read_results.is_empty()
            && self.conf_change_results.is_empty()
            && self.events.is_empty()
    }

    /// The last entry to persist, to pass back to `on_persisted`.
    pub fn persist_mark(&self) -> Option<(LogIndex, Term)> {
        self.entries.last().map(|e| (e.index, e.term))
    }
}

/// The one refusal every leader-only input shares: this node does not lead.
/// `leader_hint` is the leader it follows, when it knows one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not the leader (leader hint: {leader_hint:?})")]
pub struct NotLeader {
    pub leader_hint: Option<NodeId>,
}

/// The outcome of a proposed write, reported once it is applied (or once the
/// proposer can no longer know).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriteResult {
    pub client_id: ClientId,
    pub seq: u64,
    pub index: LogIndex,
    pub outcome: Result<OpResult, WriteError>,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// This node lost leadership before the entry applied: the write may or
    /// may not take effect. Retry at the leader with the same session and
    /// sequence number; the session makes the retry safe.
    #[error("not the leader any more (leader hint: {:?}); outcome unknown", .0.leader_hint)]
    NotLeader(#[from] NotLeader),
    /// The sequence number is older than the last one applied for the session.
    #[error("session sequence number is stale")]
    StaleSequence,
}

/// The outcome of a proposed membership change: `Ok` with the new
/// configuration once the change has committed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfChangeResult {
    pub index: LogIndex,
    pub outcome: Result<Membership, WriteError>,
}

/// Why a membership change was refused before it reached the log.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfChangeError {
    #[error(transparent)]
    NotLeader(#[from] NotLeader),
    /// One change at a time: the previous one (at this index) has not
    /// committed yet.
    #[error("the membership change at index {0} has not committed yet; retry when it has")]
    InProgress(LogIndex),
    /// The new leader has not yet committed an entry of its own term (the
    /// fix for the single-server change bug); retry in a moment.
    #[error("the leader has not committed an entry of its term yet; retry in a moment")]
    LeaderNotReady,
    #[error("a leadership transfer is in progress")]
    TransferInProgress,
    /// A learner must be caught up before it votes, or promoting it would
    /// stall commits.
    #[error("learner {id} is behind (has up to {match_index}, the log ends at {last_index}); retry when it has caught up")]
    LearnerBehind {
        id: NodeId,
        match_index: LogIndex,
        last_index: LogIndex,
    },
    #[error("{change} is not allowed: {reason}")]
    Invalid { change: ConfChange, reason: String },
}

/// Why a leadership transfer could not start.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TransferError {
    #[error(transparent)]
    NotLeader(#[from] NotLeader),
    #[error("node {0} is not a voter")]
    NotAVoter(NodeId),
    #[error("node {0} is already the leader")]
    AlreadyLeader(NodeId),
    #[error("a transfer to node {0} is already in progress")]
    InProgress(NodeId),
}

/// Identifies a read request; chosen by the driver.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReadId(pub u64);

/// How a linearizable read was (or will be) served.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadNow {
    /// Served under the lease, from memory, with no message sent.
    Served(Option<String>),
    /// Needs a ReadIndex round (or the new leader's lease wait); the result
    /// arrives in [`Ready::read_results`].
    Pending,
}

/// When a leader may serve lease reads without stepping the core: what a
/// driver publishes so that other threads answer `GET`s from memory (see
/// [`crate::RaftNode::lease_read_view`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseReadView {
    pub term: Term,
    /// The state machine's applied index, equal to the commit index.
    pub applied: LogIndex,
    /// Lease reads of this state are linearizable at any local time before
    /// this, as long as no input has been stepped since.
    pub until: MonoTime,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadResult {
    pub id: ReadId,
    pub outcome: Result<Option<String>, ReadError>,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    NotLeader(#[from] NotLeader),
    #[error("too many reads waiting (limit {limit})")]
    TooManyPendingReads { limit: usize },
    #[error("key of {len} bytes exceeds the limit of {limit}")]
    KeyTooLarge { len: usize, limit: usize },
    /// A bounded-staleness read this node cannot prove fresh enough.
    #[error(
        "this node cannot prove its state is within {bound:?} of the leader's{}",
        hint_text(*leader_hint)
    )]
    TooStale {
        bound: Duration,
        leader_hint: Option<NodeId>,
    },
}

fn hint_text(leader: Option<NodeId>) -> String {
    match leader {
        Some(l) => format!(" (leader: node {l})"),
        None => String::new(),
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProposeError {
    #[error(transparent)]
    NotLeader(#[from] NotLeader),
    #[error("too many writes waiting to commit (limit {limit})")]
    TooManyPending { limit: usize },
    #[error("key of {len} bytes exceeds the limit of {limit}")]
    KeyTooLarge { len: usize, limit: usize },
    #[error("value of {len} bytes exceeds the limit of {limit}")]
    ValueTooLarge { len: usize, limit: usize },
    /// Leadership is moving to `target`; writes resume there (or here, if
    /// the transfer times out).
    #[error("leadership is being transferred to node {target}; retry there")]
    TransferInProgress { target: NodeId },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    Follower,
    PreCandidate,
    Candidate,
    Leader,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Follower => "follower",
            Role::PreCandidate => "pre-candidate",
            Role::Candidate => "candidate",
            Role::Leader => "leader",
        })
    }
}

/// Why a vote was denied (for `dump.txt`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DenyReason {
    StaleTerm,
    AlreadyVoted(NodeId),
    LogBehind,
    /// Vote stickiness: this node heard from a live leader within the minimum
    /// election timeout (lease rule 9).
    LeaderAlive,
    /// This node started empty to join a cluster and no leader has reached
    /// it yet.
    NotJoined,
    /// This node's log was damaged and the candidate is less up to date
    /// than what it may have acknowledged (or that is unknown): see
    /// `node/repair.rs`.
    Repairing,
    /// The candidate is a voter of neither this node's configuration nor,
    /// while that is uncommitted, the one before.
    NotAVoter,
}

/// Why a leader stepped down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepDownReason {
    HigherTerm(Term),
    /// lease rule 8: no word from a majority for an election timeout.
    LostQuorum,
    /// A configuration without this node as a voter committed.
    RemovedFromConfig,
}

/// A notable happening, for the human-readable trace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    ElectionStarted {
        term: Term,
        pre_vote: bool,
    },
    VoteGranted {
        to: NodeId,
        term: Term,
        pre_vote: bool,
    },
    VoteDenied {
        to: NodeId,
        term: Term,
        pre_vote: bool,
        reason: DenyReason,
    },
    BecameLeader {
        term: Term,
        wait_until: MonoTime,
        noop_index: LogIndex,
    },
    WaitingForOldLease {
        until: MonoTime,
    },
    LeaseAcquired {
        term: Term,
    },
    LeaseLost {
        term: Term,
    },
    SteppedDown {
        term: Term,
        reason: StepDownReason,
    },
    BecameFollower {
        term: Term,
        leader: Option<NodeId>,
    },
    EntriesReceived {
        from: NodeId,
        first: LogIndex,
        last: LogIndex,
    },
    Truncated {
        from: LogIndex,
    },
    Committed {
        index: LogIndex,
    },
    MessageRejected {
        from: NodeId,
        reason: RejectReason,
    },
    ConfigChanged {
        index: LogIndex,
        membership: Membership,
    },
    /// A configuration change was truncated away; the earlier one is back.
    ConfigReverted {
        index: LogIndex,
        membership: Membership,
    },
    SnapshotTaken {
        index: LogIndex,
        term: Term,
    },
    SnapshotSending {
        to: NodeId,
        index: LogIndex,
    },
    SnapshotInstalled {
        index: LogIndex,
        term: Term,
        keys: usize,
    },
    TransferStarted {
        to: NodeId,
    },
    TransferTimeoutNowSent {
        to: NodeId,
    },
    TransferAborted {
        to: NodeId,
    },
    /// A damaged log is whole again; the node votes and campaigns as usual.
    RepairFinished {
        floor: VoteFloor,
    },
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use Event::*;
        match self {
            ElectionStarted { term, pre_vote: true } => write!(f, "pre-vote started for term {term}"),
            ElectionStarted { term, pre_vote: false } => write!(f, "election started, term {term}"),
            VoteGranted { to, term, pre_vote } => {
                write!(f, "{}vote granted to node {to} for term {term}", if *pre_vote { "pre-" } else { "" })
            }
            VoteDenied { to, term, pre_vote, reason } => write!(
                f,
                "{}vote denied to node {to} for term {term}: {reason:?}",
                if *pre_vote { "pre-" } else { "" }
            ),
            BecameLeader { term, wait_until, noop_index } => write!(
                f,
                "became leader of term {term}; no-op at index {noop_index}; serving clients from {wait_until}"
            ),
            WaitingForOldLease { until } => write!(f, "new leader waiting for the old leader's lease until {until}"),
            LeaseAcquired { term } => write!(f, "lease acquired in term {term}"),
            LeaseLost { term } => write!(f, "lease renewal failed in term {term}; lease reads stop"),
            SteppedDown { term, reason } => write!(f, "stepped down in term {term}: {reason:?}"),
            BecameFollower { term, leader: Some(l) } => write!(f, "follower of node {l} in term {term}"),
            BecameFollower { term, leader: None } => write!(f, "follower in term {term}, leader unknown"),
            EntriesReceived { from, first, last } => write!(f, "entries {first}..={last} received from node {from}"),
            Truncated { from } => write!(f, "log truncated from index {from} (conflict with leader)"),
            Committed { index } => write!(f, "committed up to index {index}"),
            MessageRejected { from, reason } => write!(f, "message from node {from} rejected: {reason:?}"),
            ConfigChanged { index, membership } => write!(f, "configuration at index {index}: {membership}"),
            ConfigReverted { index, membership } => {
                write!(f, "configuration change truncated; back to the one at index {index}: {membership}")
            }
            SnapshotTaken { index, term } => write!(f, "snapshot taken at index {index} (term {term})"),
            SnapshotSending { to, index } => write!(f, "sending snapshot at index {index} to node {to}"),
            SnapshotInstalled { index, term, keys } => {
                write!(f, "snapshot installed at index {index} (term {term}, {keys} keys)")
            }
            TransferStarted { to } => write!(f, "leadership transfer to node {to} started; lease reads stop"),
            TransferTimeoutNowSent { to } => write!(f, "node {to} caught up; told it to campaign now"),
            TransferAborted { to } => write!(f, "leadership transfer to node {to} timed out; resuming"),
            RepairFinished { floor } => write!(
                f,
                "log repaired (it may have held {floor}): voting and campaigning again"
            ),
        }
    }
}

/// Why an incoming message was dropped without effect. Counted in
/// [`Status::rejected_messages`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// A sender id of 0 or this node's own. (Any other id may be a member
    /// this node has not heard of yet, so it is not refused here.)
    UnknownSender,
    /// A term or log index so large no honest cluster reaches it (≥ 2⁶²);
    /// accepting it would risk overflow.
    AbsurdNumber,
    NotForMe,
    /// Entries that are not consecutive, do not follow `prev_log_index`, or
    /// carry a term above the message's.
    MalformedEntries,
    /// An AppendEntries that would overwrite a committed entry.
    ConflictsWithCommitted,
    /// A response to a request this node never made in this term / role.
    UnexpectedResponse,
    /// A match index past what the leader ever sent.
    ImpossibleMatch,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseStatus {
    /// The leader may serve reads from memory right now.
    pub holds: bool,
    /// Time left on the leader's lease (zero when it does not hold).
    pub remaining: Duration,
    /// Time until a new leader may serve (lease rule 5), if still waiting.
    pub wait_remaining: Duration,
    /// What this node protects for whoever leads (rule 1): `lease_until - now`.
    pub protecting: Duration,
    /// Follower read leases (rules F1–F7).
    pub read_lease: ReadLeaseStatus,
}

/// Follower read leases as one node sees them (docs/protocol.md, F1–F7).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReadLeaseStatus {
    /// This node asks for read leases (F7).
    pub enabled: bool,
    /// A follower: what remains of the read lease it holds (zero: none).
    pub remaining: Duration,
    /// A leader: the nodes whose guard has not passed, with the time left
    /// on each (F3: commits wait for them).
    pub holders: Vec<(NodeId, Duration)>,
    /// A leader: how long, in all, commits this node could have made waited
    /// for read lease holders (since it started).
    pub write_wait: Duration,
    /// The staleness bound this node can prove right now (None: it cannot
    /// prove any; zero on a leader serving under its lease).
    pub staleness: Option<Duration>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerStatus {
    pub id: NodeId,
    pub learner: bool,
    /// A snapshot transfer to this peer is under way: (snapshot index,
    /// chunks acknowledged).
    pub snapshot: Option<(LogIndex, u64)>,
    pub match_index: LogIndex,
    pub next_index: LogIndex,
    /// Time since the leader last heard from this peer; `None` when not leader
    /// or never heard.
    pub last_contact_ago: Option<Duration>,
    /// At the leader: the round trip of this peer's latest reply to an
    /// append or heartbeat (send to answer, on the leader's clock).
    pub round_trip: Option<Duration>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    pub id: NodeId,
    pub role: Role,
    pub term: Term,
    pub leader: Option<NodeId>,
    pub voted_for: Option<NodeId>,
    pub commit_index: LogIndex,
    pub applied_index: LogIndex,
    pub last_log_index: LogIndex,
    pub persisted_index: LogIndex,
    pub lease: LeaseStatus,
    /// The configuration in force (the latest in the log) and its index.
    pub membership: Membership,
    pub membership_index: LogIndex,
    /// The last index of the latest durable snapshot (0: none).
    pub snapshot_index: LogIndex,
    /// The log's first index still held in memory.
    pub first_log_index: LogIndex,
    /// The target of a leadership transfer in progress.
    pub transfer_to: Option<NodeId>,
    /// Leader placement in force here (`node/placement.rs`), and whether it
    /// comes from the log (`raftkv placement`) rather than this node's flags.
    pub placement: Placement,
    pub placement_from_log: bool,
    /// The voters it prefers, resolved with the zones this node knows.
    pub preferred_voters: Vec<NodeId>,
    pub peers: Vec<PeerStatus>,
    pub rejected_messages: u64,
    pub pending_proposals: usize,
    pub pending_reads: usize,
    /// The leader's commit index as far as this node knows: its own at the
    /// leader; elsewhere the highest a leader has sent it (at least its own
    /// commit index).
    pub leader_commit: LogIndex,
    /// Client sessions the state machine holds (exactly-once writes).
    pub client_sessions: usize,
}
