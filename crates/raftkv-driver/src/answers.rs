//! What a client request gets back, and how answers reach their waiters.
//!
//! The driver keeps the waiters of requests it passed to the core (by log
//! index for writes and membership changes, by read id for reads) and
//! answers them from the Ready results, once the Ready that carries them is
//! durable. A waiter is whatever the host makes of it ([`Waiters`]): a
//! oneshot channel in the server, a simulated client's response in the
//! simulator.

use std::time::Duration;

use raftkv_core::{
    ClientCommand, ConfChange, ConfChangeError, LogIndex, Membership, NodeId, NotLeader, OpResult,
    ProposeError, ReadError, Status, TransferError, WriteError,
};

/// Why a client request could not be served.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Not the leader. `outcome_unknown`: a write was proposed here but this
    /// node lost leadership before it applied.
    NotLeader {
        leader: Option<NodeId>,
        outcome_unknown: bool,
    },
    /// Too many writes or reads pending.
    Busy(String),
    /// Key or value too large; a membership change that is not allowed.
    Invalid(String),
    StaleSequence,
    /// A membership change or transfer that cannot happen in the present
    /// state (another change in progress, a learner behind, a transfer that
    /// timed out). Retrying later may succeed; retrying at once will not.
    Conflict(String),
    /// Retry in a moment (a new leader not ready yet, a transfer under way).
    RetryLater(String),
    /// The node is shutting down.
    Stopping,
    /// A bounded-staleness read this node cannot prove fresh enough: try
    /// the leader (when known) or a linearizable read.
    TooStale {
        leader: Option<NodeId>,
        message: String,
    },
}

pub type WriteAnswer = Result<(LogIndex, OpResult), Refusal>;
/// A committed configuration and its index (0: the change was already in
/// force).
pub type ConfAnswer = Result<(LogIndex, Membership), Refusal>;
/// The new leader.
pub type TransferAnswer = Result<NodeId, Refusal>;
pub type ReadAnswer = Result<Option<String>, Refusal>;

/// What a read of "whatever this node has" returns.
#[derive(Clone, Debug)]
pub struct StaleAnswer {
    pub value: Option<String>,
    pub applied: LogIndex,
    pub commit: LogIndex,
    pub since_leader_contact: Option<Duration>,
}

/// One waiter: takes its answer once.
pub trait Reply<A> {
    fn reply(self, answer: A);
}

/// How a host's waiters look (see the module docs).
pub trait Waiters {
    type Reply<A: 'static>: Reply<A>;
}

/// A client request for the core, with its waiter.
pub enum Request<W: Waiters> {
    Propose {
        cmd: ClientCommand,
        reply: W::Reply<WriteAnswer>,
    },
    /// A linearizable read, or with `max_staleness` a read that may miss
    /// writes made visible less than that long ago.
    Read {
        key: String,
        max_staleness: Option<Duration>,
        reply: W::Reply<ReadAnswer>,
    },
    ReadStale {
        key: String,
        reply: W::Reply<StaleAnswer>,
    },
    /// The node's status and its number of keys.
    Status { reply: W::Reply<(Status, u64)> },
    ConfChange {
        change: ConfChange,
        reply: W::Reply<ConfAnswer>,
    },
    Transfer {
        to: NodeId,
        reply: W::Reply<TransferAnswer>,
    },
    /// The host learned peer `id`'s zone (leader placement by zone); no
    /// answer.
    LearnZone { id: NodeId, zone: String },
}

/// How a request went into the core (for counters and the simulator's
/// record of who served what).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accepted {
    /// Answered at once from memory: a lease read (or a stale read, a
    /// status).
    Served,
    /// Waiting for the log or a ReadIndex round; answered later.
    Pending,
    /// Refused at once.
    Refused,
}

/// The one refusal of a node that does not lead. `outcome_unknown`: a
/// write was proposed here and lost with the leadership.
fn not_leader(n: NotLeader, outcome_unknown: bool) -> Refusal {
    Refusal::NotLeader {
        leader: n.leader_hint,
        outcome_unknown,
    }
}

pub(crate) fn propose_refusal(e: ProposeError) -> Refusal {
    match e {
        ProposeError::NotLeader(n) => not_leader(n, false),
        ProposeError::TooManyPending { .. } => Refusal::Busy(e.to_string()),
        ProposeError::KeyTooLarge { .. } | ProposeError::ValueTooLarge { .. } => {
            Refusal::Invalid(e.to_string())
        }
        ProposeError::TransferInProgress { .. } => Refusal::RetryLater(e.to_string()),
    }
}

pub(crate) fn conf_refusal(e: ConfChangeError) -> Refusal {
    match e {
        ConfChangeError::NotLeader(n) => not_leader(n, false),
        ConfChangeError::LeaderNotReady => Refusal::RetryLater(e.to_string()),
        ConfChangeError::InProgress(_)
        | ConfChangeError::TransferInProgress
        | ConfChangeError::LearnerBehind { .. } => Refusal::Conflict(e.to_string()),
        ConfChangeError::Invalid { .. } => Refusal::Invalid(e.to_string()),
    }
}

pub(crate) fn transfer_refusal(e: TransferError) -> Refusal {
    match e {
        TransferError::NotLeader(n) => not_leader(n, false),
        TransferError::NotAVoter(_) => Refusal::Invalid(e.to_string()),
        TransferError::AlreadyLeader(_) | TransferError::InProgress(_) => {
            Refusal::Conflict(e.to_string())
        }
    }
}

pub(crate) fn read_refusal(e: ReadError) -> Refusal {
    match e {
        ReadError::NotLeader(n) => not_leader(n, false),
        ReadError::TooManyPendingReads { .. } => Refusal::Busy(e.to_string()),
        ReadError::KeyTooLarge { .. } => Refusal::Invalid(e.to_string()),
        ReadError::TooStale { leader_hint, .. } => Refusal::TooStale {
            leader: leader_hint,
            message: e.to_string(),
        },
    }
}

pub(crate) fn write_refusal(e: WriteError) -> Refusal {
    match e {
        WriteError::NotLeader(n) => not_leader(n, true),
        WriteError::StaleSequence => Refusal::StaleSequence,
    }
}
