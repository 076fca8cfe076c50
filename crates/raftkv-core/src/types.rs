//! Newtypes and plain data shared by every part of raftkv.
//!
//! Times are readings of a node's *monotonic* clock in nanoseconds. The core
//! never reads a clock: callers pass `now` in.

use std::collections::{BTreeMap, BTreeSet};
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
    /// A membership change: the whole new configuration. It takes effect on
    /// every node as soon as the node has it in its log, committed or not
    /// (Raft thesis §4.1); see `node/membership.rs`.
    Config(Membership),
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
            EntryPayload::Config(m) => m.size_bytes(),
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
    /// Set when recovery found that this node's log may be shorter than
    /// what it acknowledged (a damaged synced entry, a lost or shortened
    /// `logs.txt`): until repaired the node does not campaign and votes only
    /// for a candidate at least as up to date as the floor. Cleared (and the
    /// clearing saved) once the log is provably whole again; see
    /// `node/repair.rs`.
    pub repair: Option<VoteFloor>,
}

/// What a node whose log was damaged may have acknowledged: its log held
/// entries up to `index` (unknown when `None`), none of a term above
/// `term`. `exact` says `term` is the term of the entry at `index` (read
/// from an intact line), not only an upper bound (the current term).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct VoteFloor {
    pub index: Option<LogIndex>,
    pub term: Term,
    pub exact: bool,
}

impl std::fmt::Display for VoteFloor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.index {
            Some(i) if self.exact => write!(f, "index {i} term {}", self.term),
            Some(i) => write!(f, "index {i}, term at most {}", self.term),
            None => write!(f, "index unknown, term at most {}", self.term),
        }
    }
}

/// The result of applying one command.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum OpResult {
    Set,
    Deleted { existed: bool },
}

/// The cluster's configuration: who votes, who only listens, and where each
/// member can be reached.
///
/// Invariants (checked by [`Membership::validate`]): voters and learners are
/// disjoint, no id is zero, and every member may have an address. The core
/// never reads `addrs`; it travels in the log so that every node learns how
/// to reach a member that joined after it started.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct Membership {
    pub voters: BTreeSet<NodeId>,
    /// Non-voting members: they receive the log and protect leases (rule 1)
    /// but their votes and acknowledgements never count.
    pub learners: BTreeSet<NodeId>,
    pub addrs: BTreeMap<NodeId, String>,
    /// Leader placement set with `raftkv placement` (a [`ConfChange::Place`]
    /// in the log). `None`: never set that way, and each node's own flags
    /// (`Config::placement`) decide.
    pub placement: Option<Placement>,
}

/// Where leadership should be (`node/placement.rs`): these voters by id,
/// then the voters of these zones, in order of preference. Empty: anywhere.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct Placement {
    pub leaders: Vec<NodeId>,
    pub zones: Vec<String>,
}

/// Longest zone name accepted (`--zone`, placement zones).
pub const MAX_ZONE_BYTES: usize = 64;

/// Checks a zone name: 1 to [`MAX_ZONE_BYTES`] bytes of letters, digits and
/// `-`, `_`, `.`, `:` or `/` (so that it fits a flag's comma list and a log
/// line unescaped).
pub fn check_zone(zone: &str) -> Result<(), String> {
    let ok = |c: char| c.is_ascii_alphanumeric() || "-_.:/".contains(c);
    if zone.is_empty() || zone.len() > MAX_ZONE_BYTES || !zone.chars().all(ok) {
        return Err(format!(
            "zone {zone:?}: give 1 to {MAX_ZONE_BYTES} letters, digits or -_.:/"
        ));
    }
    Ok(())
}

impl Placement {
    pub fn is_empty(&self) -> bool {
        self.leaders.is_empty() && self.zones.is_empty()
    }

    /// Whether node `id`, in zone `zone` (if known), is preferred.
    pub fn prefers(&self, id: NodeId, zone: Option<&str>) -> bool {
        self.leaders.contains(&id) || zone.is_some_and(|z| self.zones.iter().any(|p| p == z))
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.leaders.contains(&NodeId(0)) {
            return Err("node id 0 is reserved; ids start at 1".into());
        }
        for (i, id) in self.leaders.iter().enumerate() {
            if self.leaders[..i].contains(id) {
                return Err(format!("node {id} is listed twice"));
            }
        }
        for (i, z) in self.zones.iter().enumerate() {
            check_zone(z)?;
            if self.zones[..i].contains(z) {
                return Err(format!("zone {z:?} is listed twice"));
            }
        }
        Ok(())
    }

    pub fn size_bytes(&self) -> usize {
        8 * self.leaders.len() + self.zones.iter().map(|z| 8 + z.len()).sum::<usize>()
    }
}

impl fmt::Display for Placement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return write!(f, "no preferred leader");
        }
        let ids: Vec<String> = self.leaders.iter().map(|i| i.to_string()).collect();
        write!(
            f,
            "preferred leaders [{}] zones [{}]",
            ids.join(","),
            self.zones.join(",")
        )
    }
}

impl Membership {
    /// A configuration of voters only, without addresses.
    pub fn with_voters(voters: impl IntoIterator<Item = NodeId>) -> Membership {
        Membership {
            voters: voters.into_iter().collect(),
            ..Membership::default()
        }
    }

    pub fn is_voter(&self, id: NodeId) -> bool {
        self.voters.contains(&id)
    }

    pub fn is_learner(&self, id: NodeId) -> bool {
        self.learners.contains(&id)
    }

    pub fn is_member(&self, id: NodeId) -> bool {
        self.is_voter(id) || self.is_learner(id)
    }

    /// Voters and learners, in id order.
    pub fn members(&self) -> impl Iterator<Item = NodeId> + '_ {
        let mut all: Vec<NodeId> = self.voters.iter().chain(&self.learners).copied().collect();
        all.sort_unstable();
        all.into_iter()
    }

    /// The size of a majority of the voters.
    pub fn quorum(&self) -> usize {
        self.voters.len() / 2 + 1
    }

    /// Whether `ids` holds a majority of the voters (non-voters ignored).
    pub fn has_quorum<'a>(&self, ids: impl IntoIterator<Item = &'a NodeId>) -> bool {
        let n = ids.into_iter().filter(|id| self.is_voter(**id)).count();
        n >= self.quorum()
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.voters.contains(&NodeId(0)) || self.learners.contains(&NodeId(0)) {
            return Err("node id 0 is reserved".into());
        }
        if let Some(id) = self.voters.intersection(&self.learners).next() {
            return Err(format!("node {id} is both a voter and a learner"));
        }
        if let Some(id) = self.addrs.keys().find(|id| !self.is_member(**id)) {
            return Err(format!(
                "address given for node {id}, which is not a member"
            ));
        }
        if let Some(p) = &self.placement {
            p.validate().map_err(|e| format!("placement: {e}"))?;
        }
        Ok(())
    }

    /// The configuration after `change`, or why the change is not allowed.
    /// Every change moves at most one voter (one-server-at-a-time changes,
    /// Raft thesis §4.2), so any majority of the old voters and any majority
    /// of the new ones share a node.
    pub fn apply_change(&self, change: &ConfChange) -> Result<Membership, String> {
        let mut next = self.clone();
        match change {
            ConfChange::AddLearner { id, addr } => {
                if *id == NodeId(0) {
                    return Err("node id 0 is reserved".into());
                }
                if self.is_member(*id) {
                    return Err(format!("node {id} is already a member"));
                }
                next.learners.insert(*id);
                if !addr.is_empty() {
                    next.addrs.insert(*id, addr.clone());
                }
            }
            ConfChange::Promote { id } => {
                if !self.is_learner(*id) {
                    return Err(format!("node {id} is not a learner"));
                }
                next.learners.remove(id);
                next.voters.insert(*id);
            }
            ConfChange::Remove { id } => {
                if !self.is_member(*id) {
                    return Err(format!("node {id} is not a member"));
                }
                if self.voters.len() == 1 && self.is_voter(*id) {
                    return Err(format!("node {id} is the last voter"));
                }
                next.voters.remove(id);
                next.learners.remove(id);
                next.addrs.remove(id);
            }
            ConfChange::Place(p) => {
                p.validate()?;
                if let Some(id) = p.leaders.iter().find(|id| !self.is_member(**id)) {
                    return Err(format!("node {id} is not a member"));
                }
                next.placement = Some(p.clone());
            }
        }
        Ok(next)
    }

    pub fn size_bytes(&self) -> usize {
        16 * (self.voters.len() + self.learners.len())
            + self.addrs.values().map(|a| 8 + a.len()).sum::<usize>()
            + self.placement.as_ref().map_or(0, Placement::size_bytes)
    }
}

impl fmt::Display for Membership {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ids = |s: &BTreeSet<NodeId>| {
            s.iter()
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join(",")
        };
        write!(
            f,
            "voters [{}] learners [{}]",
            ids(&self.voters),
            ids(&self.learners)
        )?;
        match &self.placement {
            Some(p) => write!(f, ", {p}"),
            None => Ok(()),
        }
    }
}

/// One membership change, as an operator asks for it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum ConfChange {
    /// Add a non-voting member; it catches up from a snapshot and the log.
    AddLearner { id: NodeId, addr: String },
    /// Make a learner a voter (refused while it lags far behind).
    Promote { id: NodeId },
    /// Remove a voter or a learner. Removing the leader makes it step down
    /// once the change commits.
    Remove { id: NodeId },
    /// Set leader placement for the whole cluster (voters and quorums stay
    /// as they are). An empty placement means "no preference" and, unlike
    /// no placement at all, overrides the nodes' flags.
    Place(Placement),
}

impl fmt::Display for ConfChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfChange::AddLearner { id, addr } => write!(f, "add learner {id} at {addr:?}"),
            ConfChange::Promote { id } => write!(f, "promote {id}"),
            ConfChange::Remove { id } => write!(f, "remove {id}"),
            ConfChange::Place(p) => write!(f, "place leadership: {p}"),
        }
    }
}
