//! Newtypes and plain data shared by every part of raftkv.
//!
//! Times are readings of a node's *monotonic* clock in nanoseconds. The core
//! never reads a clock: callers pass `now` in.

use std::fmt;
use std::ops::{Add, Sub};
use std::time::Duration;

/// A node's identity inside one cluster. `NodeId(0)` is never a valid node.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub struct NodeId(pub u64);

/// A Raft term. Terms only grow.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub struct Term(pub u64);

/// A position in the replicated log. Index 0 is the empty prefix; the first
/// entry has index 1.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub struct LogIndex(pub u64);

/// A reading of a node's monotonic clock, in nanoseconds since an arbitrary
/// origin local to that node. Never compare readings of two different nodes.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub struct MonoTime(pub u64);

/// A client session: commands of one session apply exactly once, in the order
/// of their sequence numbers (Raft thesis §6.3). `ClientId(0)` means "no
/// session": such commands are applied every time they are committed.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub struct ClientId(pub u64);

macro_rules! display_inner {
    ($($t:ty),*) => {$(
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }
    )*};
}
display_inner!(NodeId, Term, LogIndex, ClientId);

impl LogIndex {
    pub const ZERO: LogIndex = LogIndex(0);
    pub fn next(self) -> LogIndex {
        LogIndex(self.0 + 1)
    }
    /// The previous index; `LogIndex(0).prev()` is `LogIndex(0)`.
    pub fn prev(self) -> LogIndex {
        LogIndex(self.0.saturating_sub(1))
    }
}

impl Term {
    pub const ZERO: Term = Term(0);
    pub fn next(self) -> Term {
        Term(self.0 + 1)
    }
}

impl MonoTime {
    pub const ZERO: MonoTime = MonoTime(0);
    pub fn from_nanos(nanos: u64) -> MonoTime {
        MonoTime(nanos)
    }
    pub fn as_nanos(self) -> u64 {
        self.0
    }
    /// `self - earlier`, or zero when `earlier` is later.
    pub fn saturating_since(self, earlier: MonoTime) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

impl Add<Duration> for MonoTime {
    type Output = MonoTime;
    fn add(self, rhs: Duration) -> MonoTime {
        let nanos = u64::try_from(rhs.as_nanos()).unwrap_or(u64::MAX);
        MonoTime(self.0.saturating_add(nanos))
    }
}

impl Sub<Duration> for MonoTime {
    type Output = MonoTime;
    fn sub(self, rhs: Duration) -> MonoTime {
        let nanos = u64::try_from(rhs.as_nanos()).unwrap_or(u64::MAX);
        MonoTime(self.0.saturating_sub(nanos))
    }
}

impl fmt::Display for MonoTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{:06}s",
            self.0 / 1_000_000_000,
            (self.0 % 1_000_000_000) / 1_000
        )
    }
}

/// A change to the key-value state machine.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Op {
    Set { key: String, value: String },
    Delete { key: String },
}

impl Op {
    pub fn key(&self) -> &str {
        match self {
            Op::Set { key, .. } | Op::Delete { key } => key,
        }
    }
    /// Bytes of user data carried, for flow control.
    pub fn size_bytes(&self) -> usize {
        match self {
            Op::Set { key, value } => key.len() + value.len(),
            Op::Delete { key } => key.len(),
        }
    }
}

/// A command proposed by a client, tagged with its session.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ClientCommand {
    pub client_id: ClientId,
    /// Sequence number within the session, starting at 1 and increasing by
    /// one per command. Ignored when `client_id` is `ClientId(0)`.
    pub seq: u64,
    pub op: Op,
}

/// What a log entry carries.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum EntryPayload {
    /// Appended by every new leader at the start of its term (Raft §8); it
    /// lets the leader learn its commit index.
    Noop,
    Command(ClientCommand),
    // Room for later: `Config(Configuration)` for membership changes.
}

/// One entry of the replicated log.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Entry {
    pub index: LogIndex,
    pub term: Term,
    pub payload: EntryPayload,
}

impl Entry {
    /// Approximate bytes on the wire, for flow control.
    pub fn size_bytes(&self) -> usize {
        24 + match &self.payload {
            EntryPayload::Noop => 0,
            EntryPayload::Command(c) => 16 + c.op.size_bytes(),
        }
    }
}

/// The state that must be durable before any reply that depends on it.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct HardState {
    pub term: Term,
    pub voted_for: Option<NodeId>,
    /// A commit index this node has seen. Persisted lazily: on restart the
    /// node re-applies the log up to here, which is safe because it was
    /// committed; the true commit index is relearned from the leader.
    pub commit: LogIndex,
}

/// The result of applying one command.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum OpResult {
    Set,
    Deleted { existed: bool },
}
