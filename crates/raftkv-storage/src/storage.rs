//! The storage contract shared by the file store and the simulator's model,
//! and [`persist_ready`], which writes one core `Ready` in a crash-safe order.

use raftkv_core::{Entry, HardState, LogIndex, Ready, Term};

use crate::error::StorageError;

/// The storage contract. Implemented by [`crate::FileStorage`] (text files) and
/// [`crate::MemStorage`] (the simulator's model); both pass the one
/// conformance suite in [`crate::conformance`].
///
/// - **No holes.** The log always holds indexes `1..=last_index()`,
///   consecutive, with non-decreasing terms.
/// - **Writes apply in order.** After a crash, the log is the one as of the
///   last successful [`Storage::sync`], with nothing from later appends
///   (the file store may keep some unsynced appends that reached the disk,
///   but only whole entries, in order, never a hole).
/// - **Hard state is durable when [`Storage::save_hard_state`] returns.**
/// - **Fail-stop.** After a failed write or sync, every later mutating call
///   returns an error; the store never acknowledges what it cannot promise.
pub trait Storage {
    /// Appends entries. If `entries[0].index <= last_index()`, the log is
    /// first truncated from `entries[0].index` (a conflicting suffix).
    /// Entries must be consecutive with non-decreasing terms (also against
    /// the entry before them), and `entries[0].index <= last_index() + 1`,
    /// otherwise [`StorageError::Gap`] / [`StorageError::BadSequence`].
    /// Not durable until [`Storage::sync`]. An empty slice is a no-op.
    fn append(&mut self, entries: &[Entry]) -> Result<(), StorageError>;
    /// Makes every append so far durable (one fdatasync for many appends:
    /// group commit).
    fn sync(&mut self) -> Result<(), StorageError>;
    /// Atomically replaces the hard state; durable before it returns.
    fn save_hard_state(&mut self, hs: &HardState) -> Result<(), StorageError>;
    /// The hard state as last saved (not raised by recovery).
    fn hard_state(&self) -> HardState;
    fn last_index(&self) -> LogIndex;
    /// Term of the last entry, `Term(0)` when the log is empty.
    fn last_term(&self) -> Term;
    /// Entries `lo..=hi`; all must be present (`1 <= lo`, `hi <= last_index()`).
    /// `lo == hi + 1` gives an empty vector.
    fn entries(&self, lo: LogIndex, hi: LogIndex) -> Result<Vec<Entry>, StorageError>;
}

/// Checks an append batch against the log it goes into. `term_at(i)` is the
/// term of stored entry `i` (only asked for `1 <= i <= last`).
pub(crate) fn check_append(
    entries: &[Entry],
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
    let prev_index = first.index.prev();
    let mut prev = (
        prev_index,
        if prev_index.0 == 0 {
            Term(0)
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

/// Persists one core `Ready`. Returns `Ok` once everything that must be
/// durable is. The order:
/// 1. a changed term or vote is saved first (durable), with the *stored*
///    commit index: the Ready's commit may point at its own entries, which
///    are not durable yet. Saving term and vote before the entries means a
///    crash can never leave entries of a term the node does not remember.
/// 2. the entries are appended and, when `must_sync` (or entries exist),
///    synced with one fdatasync.
/// 3. a commit index that moved on is saved lazily: when it is at least
///    `commit_save_interval` past the stored one, or when forced, or together
///    with a term or vote change. It is clamped to the last durable index.
pub fn persist_ready_with(
    storage: &mut impl Storage,
    ready: &Ready,
    opts: PersistOptions,
) -> Result<(), StorageError> {
    let stored = storage.hard_state();
    let new_hs = ready.hard_state;
    let mut vote_changed = false;
    if let Some(hs) = new_hs {
        assert!(
            hs.term >= stored.term,
            "core lowered its term from {} to {}",
            stored.term,
            hs.term
        );
        if hs.term != stored.term || hs.voted_for != stored.voted_for {
            storage.save_hard_state(&HardState {
                commit: stored.commit,
                ..hs
            })?;
            vote_changed = true;
        }
    }
    if !ready.entries.is_empty() {
        storage.append(&ready.entries)?;
    }
    if ready.must_sync || !ready.entries.is_empty() {
        storage.sync()?;
    }
    if let Some(hs) = new_hs {
        let stored = storage.hard_state();
        let commit = hs.commit.min(storage.last_index());
        let gap = commit.0.saturating_sub(stored.commit.0);
        if gap > 0 && (vote_changed || opts.force_commit_save || gap >= opts.commit_save_interval) {
            storage.save_hard_state(&HardState { commit, ..stored })?;
        }
    }
    Ok(())
}
