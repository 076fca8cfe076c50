//! The storage contract shared by the file store and the simulator's model,
//! and [`persist_ready`], which writes one core `Ready` in a crash-safe order.

use raftkv_core::{
    Entry, HardState, LogIndex, Ready, Snapshot, SnapshotMeta, SnapshotOrigin, SnapshotWrite, Term,
};

use crate::error::StorageError;

/// The storage contract. Implemented by [`crate::FileStorage`] (text files) and
/// [`crate::MemStorage`] (the simulator's model); both pass the one
/// conformance suite in `crate::conformance` (the `conformance` feature).
///
/// - **A snapshot, then a log after it, no holes.** The store holds at most
///   one snapshot (the latest saved, at `snapshot index` =
///   [`Storage::first_index`]` - 1`, 0 without one) and the log entries
///   `first_index()..=last_index()`, consecutive, with non-decreasing terms
///   (the first one's term at least the snapshot's).
/// - **Writes apply in order.** After a crash, the log is the one as of the
///   last successful [`Storage::sync`], with nothing from later appends
///   (the file store may keep some unsynced appends that reached the disk,
///   but only whole entries, in order, never a hole).
/// - **Hard state and snapshots are durable when [`Storage::save_hard_state`]
///   / [`Storage::save_snapshot`] return**; a snapshot together with the log
///   cut that goes with it: a crash at any point leaves either the old
///   snapshot and log or the new snapshot and the log after it.
/// - **Fail-stop.** After a failed write or sync, every later mutating call
///   returns an error; the store never acknowledges what it cannot promise.
pub trait Storage {
    /// Appends entries. If `entries[0].index <= last_index()`, the log is
    /// first truncated from `entries[0].index` (a conflicting suffix).
    /// Entries must be consecutive with non-decreasing terms (also against
    /// the entry before them, or the snapshot), and
    /// `first_index() <= entries[0].index <= last_index() + 1`, otherwise
    /// [`StorageError::Gap`] / [`StorageError::BadSequence`] /
    /// [`StorageError::Compacted`]. Not durable until [`Storage::sync`]. An
    /// empty slice is a no-op.
    fn append(&mut self, entries: &[Entry]) -> Result<(), StorageError>;
    /// Makes every append so far durable (one fdatasync for many appends:
    /// group commit).
    fn sync(&mut self) -> Result<(), StorageError>;
    /// Atomically replaces the hard state; durable before it returns.
    fn save_hard_state(&mut self, hs: &HardState) -> Result<(), StorageError>;
    /// The hard state as last saved (not raised by recovery).
    fn hard_state(&self) -> HardState;
    /// Saves a snapshot and cuts the log as its origin says
    /// ([`SnapshotOrigin`]); both durable when it returns:
    /// - the entries up to the snapshot index go;
    /// - the entries after it stay for a `Compaction`, and for an
    ///   `Installed { keep_log_suffix: true }` when the log holds the
    ///   snapshot's last entry with the snapshot's term (Raft §7); otherwise
    ///   the whole log goes (the next append starts at the snapshot index + 1).
    ///
    /// A snapshot not newer than the stored one is ignored (a later snapshot
    /// is never replaced by an earlier one). A `Compaction` snapshot must
    /// describe durable entries: one whose last entry is not in the log with
    /// its term is refused ([`StorageError::SnapshotRejected`]).
    fn save_snapshot(&mut self, write: &SnapshotWrite) -> Result<(), StorageError>;
    /// Index, term and configuration of the stored snapshot.
    fn snapshot_meta(&self) -> Option<&SnapshotMeta>;
    /// The stored snapshot, whole (the file store reads it back from disk).
    fn snapshot(&self) -> Result<Option<Snapshot>, StorageError>;
    /// The first index the log can hold: the snapshot index + 1 (1 without a
    /// snapshot).
    fn first_index(&self) -> LogIndex {
        self.snapshot_meta().map_or(LogIndex(1), |m| m.index.next())
    }
    /// The last entry's index; the snapshot index when the log after the
    /// snapshot is empty; 0 when there is neither.
    fn last_index(&self) -> LogIndex;
    /// Term of [`Storage::last_index`] (the snapshot's term when the log is
    /// empty), `Term(0)` when there is neither.
    fn last_term(&self) -> Term;
    /// Entries `lo..=hi`; all must be present
    /// (`first_index() <= lo`, `hi <= last_index()`).
    /// `lo == hi + 1` gives an empty vector.
    fn entries(&self, lo: LogIndex, hi: LogIndex) -> Result<Vec<Entry>, StorageError>;
}

/// Checks an append batch against the log it goes into: `snap` is the
/// snapshot's (index, term) ((0, 0) without one), `last` the last index,
/// `term_at(i)` the term of stored entry `i` (only asked for
/// `snap.0 < i <= last`).
pub(crate) fn check_append(
    entries: &[Entry],
    snap: (LogIndex, Term),
    last: LogIndex,
    term_at: impl Fn(LogIndex) -> Term,
) -> Result<(), StorageError> {
    let Some(first) = entries.first() else {
        return Ok(());
    };
    if first.index.0 == 0 || first.index > last.next() {
        return Err(StorageError::Gap {
            first: first.index,
            last,
        });
    }
    if first.index <= snap.0 {
        return Err(StorageError::Compacted {
            first: first.index,
            snapshot_index: snap.0,
        });
    }
    let prev_index = first.index.prev();
    let mut prev = (
        prev_index,
        if prev_index == snap.0 {
            snap.1
        } else {
            term_at(prev_index)
        },
    );
    for e in entries {
        if e.index != prev.0.next() || e.term < prev.1 {
            return Err(StorageError::BadSequence {
                index: e.index,
                term: e.term,
                prev_index: prev.0,
                prev_term: prev.1,
            });
        }
        prev = (e.index, e.term);
    }
    Ok(())
}

/// What saving a snapshot does to a store's log (see
/// [`Storage::save_snapshot`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SnapshotPlan {
    /// Not newer than the stored snapshot: nothing to do.
    Skip,
    /// Store it; keep the log entries after its index, or drop the whole log.
    Apply { keep_suffix: bool },
}

/// Decides what [`Storage::save_snapshot`] does. `stored` is the stored
/// snapshot's index, `term_at(i)` the term of log entry `i` if the log
/// holds it.
pub(crate) fn plan_snapshot(
    meta: &SnapshotMeta,
    origin: SnapshotOrigin,
    stored: LogIndex,
    term_at: impl Fn(LogIndex) -> Option<Term>,
) -> Result<SnapshotPlan, StorageError> {
    if meta.index <= stored {
        tracing::debug!(
            index = %meta.index,
            stored = %stored,
            "snapshot not newer than the stored one: ignored"
        );
        return Ok(SnapshotPlan::Skip);
    }
    let matches = term_at(meta.index) == Some(meta.term);
    let keep_suffix = match origin {
        SnapshotOrigin::Compaction if !matches => {
            return Err(StorageError::SnapshotRejected {
                index: meta.index,
                reason: format!(
                    "a compaction snapshot (term {}) must cover durable log entries, but the log {}",
                    meta.term,
                    match term_at(meta.index) {
                        Some(t) => format!("has term {t} there"),
                        None => "does not hold that index".into(),
                    }
                ),
            });
        }
        SnapshotOrigin::Compaction => true,
        SnapshotOrigin::Installed { keep_log_suffix } => keep_log_suffix && matches,
    };
    Ok(SnapshotPlan::Apply { keep_suffix })
}

/// The hard state a restart reports: if the log's last term is above the
/// stored term (entries of a newer term became durable but the new term did
/// not), the current term is raised to it and the vote, which belonged to an
/// older term, is dropped. With [`persist_ready`] this cannot happen (term and
/// vote are saved before the entries); the rule protects older or foreign
/// files.
pub fn recovered_hard_state(stored: HardState, last_log_term: Term) -> HardState {
    if last_log_term > stored.term {
        HardState {
            term: last_log_term,
            voted_for: None,
            commit: stored.commit,
            repair: stored.repair,
        }
    } else {
        stored
    }
}

/// Save the commit index when it moved at least this many entries past the
/// stored one. A commit index is a hint (it may lag): a restarted node
/// re-applies up to it and relearns the rest from the leader.
pub const DEFAULT_COMMIT_SAVE_INTERVAL: u64 = 1024;

#[derive(Clone, Copy, Debug)]
pub struct PersistOptions {
    /// See [`DEFAULT_COMMIT_SAVE_INTERVAL`].
    pub commit_save_interval: u64,
    /// Save the commit index now whatever the interval (e.g. at shutdown).
    pub force_commit_save: bool,
}

impl Default for PersistOptions {
    fn default() -> Self {
        PersistOptions {
            commit_save_interval: DEFAULT_COMMIT_SAVE_INTERVAL,
            force_commit_save: false,
        }
    }
}

/// [`persist_ready_with`] with the default options.
pub fn persist_ready(storage: &mut impl Storage, ready: &Ready) -> Result<(), StorageError> {
    persist_ready_with(storage, ready, PersistOptions::default())
}

/// The indexes of the `Compaction` snapshots of `ready`, in order: after
/// [`persist_ready`] returns `Ok`, the driver reports each with
/// `RaftNode::on_snapshot_saved(now, index)` (`persist_ready` has no node to
/// call). Installed snapshots need no report.
///
/// ```ignore
/// persist_ready(&mut storage, &ready)?;
/// for index in saved_compactions(&ready) {
///     node.on_snapshot_saved(now, index);
/// }
/// ```
pub fn saved_compactions(ready: &Ready) -> Vec<LogIndex> {
    ready
        .snapshots
        .iter()
        .filter(|w| w.origin == SnapshotOrigin::Compaction)
        .map(|w| w.snapshot.meta.index)
        .collect()
}

/// Persists one core `Ready`. Returns `Ok` once everything that must be
/// durable is. The order:
/// 1. a changed term or vote is saved first (durable), with the *stored*
///    commit index: the Ready's commit may point at its own entries, which
///    are not durable yet. Saving term and vote before the entries means a
///    crash can never leave entries of a term the node does not remember.
/// 2. the snapshots, in order, each durable with its log cut
///    ([`Storage::save_snapshot`]), before the entries: an `Installed`
///    snapshot may empty the log that the entries then go into. The driver
///    then reports the `Compaction` ones to the node
///    ([`saved_compactions`]).
/// 3. the entries are appended and, when `must_sync` (or entries exist),
///    synced with one fdatasync.
/// 4. a commit index that moved on is saved lazily: when it is at least
///    `commit_save_interval` past the stored one, or when forced, or together
///    with a term or vote change. It is clamped to the last durable index.
pub fn persist_ready_with(
    storage: &mut impl Storage,
    ready: &Ready,
    opts: PersistOptions,
) -> Result<(), StorageError> {
    persist_readies_with(storage, std::slice::from_ref(ready), opts)
}

/// Persists several Readies, taken in this order, with one fdatasync for
/// all of them (group commit). Each Ready keeps the order of
/// [`persist_ready_with`] (its term or vote before its snapshots and
/// entries); the one sync and the lazy commit save (with the last hard
/// state) come after all of them. Nothing of any of them may be
/// acknowledged before this returns `Ok`.
///
/// It is [`write_readies`] then [`sync_readies`]: a simulation runs the two
/// halves at different times, so that a crash can fall between them.
pub fn persist_readies_with(
    storage: &mut impl Storage,
    readies: &[Ready],
    opts: PersistOptions,
) -> Result<(), StorageError> {
    let written = write_readies(storage, readies)?;
    sync_readies(storage, written, opts)
}

/// What [`write_readies`] wrote and [`sync_readies`] must finish.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[must_use = "the written Readies are not durable before sync_readies"]
pub struct Written {
    /// Entries were appended (or a Ready asked for a sync).
    pub must_sync: bool,
    vote_changed: bool,
    last_hs: Option<HardState>,
}

/// The first half of [`persist_readies_with`]: a changed term or vote is
/// saved (durable), snapshots are saved, entries are appended. The entries
/// are not durable until [`sync_readies`] returns.
pub fn write_readies(
    storage: &mut impl Storage,
    readies: &[Ready],
) -> Result<Written, StorageError> {
    let mut written = Written::default();
    for ready in readies {
        let stored = storage.hard_state();
        if let Some(hs) = ready.hard_state {
            assert!(
                hs.term >= stored.term,
                "core lowered its term from {} to {}",
                stored.term,
                hs.term
            );
            if hs.term != stored.term || hs.voted_for != stored.voted_for {
                // The commit index and a cleared repair floor wait for the
                // sync below: both speak of entries that may not be durable
                // yet.
                storage.save_hard_state(&HardState {
                    commit: stored.commit,
                    repair: stored.repair,
                    ..hs
                })?;
                written.vote_changed = true;
            }
            written.last_hs = Some(hs);
        }
        for write in &ready.snapshots {
            storage.save_snapshot(write)?;
        }
        if !ready.entries.is_empty() {
            storage.append(&ready.entries)?;
        }
        written.must_sync |= ready.must_sync || !ready.entries.is_empty();
    }
    Ok(written)
}

/// The second half of [`persist_readies_with`]: one fdatasync for what
/// [`write_readies`] appended, then the lazy commit save.
pub fn sync_readies(
    storage: &mut impl Storage,
    written: Written,
    opts: PersistOptions,
) -> Result<(), StorageError> {
    if written.must_sync {
        storage.sync()?;
    }
    if let Some(hs) = written.last_hs {
        let stored = storage.hard_state();
        let commit = hs.commit.min(storage.last_index());
        let gap = commit.0.saturating_sub(stored.commit.0);
        let commit_due = gap > 0
            && (written.vote_changed || opts.force_commit_save || gap >= opts.commit_save_interval);
        // A repair floor the core cleared (its log is whole again, and the
        // entries that made it so are synced now).
        let repair_changed = hs.repair != stored.repair;
        if commit_due || repair_changed {
            storage.save_hard_state(&HardState {
                commit: if commit_due { commit } else { stored.commit },
                repair: hs.repair,
                ..stored
            })?;
        }
    }
    Ok(())
}

/// A store that can write a compaction snapshot off its own thread: a
/// helper prepares it with a [`BackgroundSnapshots::Writer`] (which needs
/// nothing of the store), then the store puts it in place, in order with its
/// other writes ([`BackgroundSnapshots::commit_snapshot`]). Preparing
/// changes nothing the store reads: a crash before the commit leaves the
/// previous snapshot and the full log.
pub trait BackgroundSnapshots: Storage {
    /// A snapshot written and synced aside, not yet in place.
    type Prepared: Send + 'static;
    /// What a helper thread needs to prepare a snapshot.
    type Writer: Send + 'static;
    fn snapshot_writer(&self) -> Self::Writer;
    fn prepare_snapshot(
        writer: &Self::Writer,
        write: &SnapshotWrite,
    ) -> Result<Self::Prepared, StorageError>;
    fn commit_snapshot(&mut self, prepared: Self::Prepared) -> Result<(), StorageError>;
}
