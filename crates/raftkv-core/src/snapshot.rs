//! Snapshots of the state machine: what a node writes to `snapshot.txt`,
//! what `InstallSnapshot` carries, and what a restart loads.
//!
//! The key-value data is a persistent (structurally shared) ordered map, so
//! taking a snapshot is an O(1) clone: the live state machine keeps
//! changing while a snapshot is written to disk or streamed to a follower,
//! and only the parts that change are copied.

use std::fmt;

use crate::types::{ClientId, LogIndex, Membership, OpResult, Term};

/// The key-value pairs of a state machine, sorted by key.
pub type KvData = imbl::OrdMap<String, String>;

/// Where a snapshot sits in the log, and the configuration in force there.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct SnapshotMeta {
    /// The last log index the snapshot includes.
    pub index: LogIndex,
    /// The term of the entry at `index`.
    pub term: Term,
    /// The latest configuration at or before `index`.
    pub membership: Membership,
}

/// One client session, as the state machine remembers it (exactly-once
/// writes must survive snapshots, or a retried write could apply twice).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct SessionRecord {
    pub client_id: ClientId,
    pub last_seq: u64,
    pub last_result: OpResult,
    /// The log index at which `last_seq` applied (for least-recently-used
    /// eviction).
    pub last_index: LogIndex,
}

/// A whole state machine at `meta.index`.
#[derive(Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub meta: SnapshotMeta,
    pub data: KvData,
    /// Sorted by client id.
    pub sessions: Vec<SessionRecord>,
}

impl fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Snapshot")
            .field("meta", &self.meta)
            .field("keys", &self.data.len())
            .field("sessions", &self.sessions.len())
            .finish()
    }
}

/// A snapshot the driver must make durable, and what it means for the log.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct SnapshotWrite {
    pub snapshot: Snapshot,
    pub origin: SnapshotOrigin,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum SnapshotOrigin {
    /// Taken by this node of its own applied state. Every entry up to
    /// `meta.index` is already durable in the log; after the snapshot is
    /// durable the driver drops them from the log and keeps the rest.
    /// Writing it may be deferred (the log still holds everything), but a
    /// later snapshot must never be replaced by an earlier one.
    Compaction,
    /// Received from the leader with `InstallSnapshot`. It must be durable
    /// before the messages of the same `Ready` that need persistence go out.
    /// The driver drops every log entry up to `meta.index`; when
    /// `keep_log_suffix` is false it drops the whole log (the entries of the
    /// same `Ready` are then appended to the empty log).
    Installed { keep_log_suffix: bool },
}
