//! The simulator's storage model: all in memory, with an explicit durable
//! copy so that [`MemStorage::crash`] loses exactly what was not synced.

use raftkv_core::{Entry, HardState, LogIndex, Restored, Term};

use crate::error::StorageError;
use crate::storage::{check_append, recovered_hard_state, Storage};

#[derive(Clone, Debug, Default)]
pub struct MemStorage {
    /// The log as the node sees it (appended, maybe not synced).
    log: Vec<Entry>,
    /// The log as the disk holds it (as of the last sync).
    synced: Vec<Entry>,
    /// Position (0-based) of the first entry changed since the last sync;
    /// `log[..p] == synced[..p]` always holds.
    dirty_from: Option<usize>,
    hard_state: HardState,
    syncs: u64,
}

impl MemStorage {
    pub fn new() -> Self {
        MemStorage::default()
    }

    /// Simulates a crash or power loss: everything appended but not synced is
    /// lost; the durable log and hard state stay.
    pub fn crash(&mut self) {
        if let Some(p) = self.dirty_from.take() {
            self.log.truncate(p);
            self.log
                .extend_from_slice(&self.synced[p.min(self.synced.len())..]);
        }
        debug_assert_eq!(self.log, self.synced);
    }

    /// What a restart would recover (the durable state), with the term rule
    /// of [`recovered_hard_state`].
    pub fn restored(&self) -> Restored {
        let last_term = self.synced.last().map_or(Term(0), |e| e.term);
        Restored {
            hard_state: recovered_hard_state(self.hard_state, last_term),
            snapshot: None,
            entries: self.synced.clone(),
        }
    }

    /// Number of successful syncs that had something to sync.
    pub fn sync_count(&self) -> u64 {
        self.syncs
    }

    /// True when appends are waiting for a sync.
    pub fn has_unsynced(&self) -> bool {
        self.dirty_from.is_some()
    }
}

impl Storage for MemStorage {
    fn append(&mut self, entries: &[Entry]) -> Result<(), StorageError> {
        check_append(entries, self.last_index(), |i| {
            self.log[i.0 as usize - 1].term
        })?;
        let Some(first) = entries.first() else {
            return Ok(());
        };
        let p = first.index.0 as usize - 1;
        self.dirty_from = Some(self.dirty_from.map_or(p, |d| d.min(p)));
        self.log.truncate(p);
        self.log.extend_from_slice(entries);
        Ok(())
    }

    fn sync(&mut self) -> Result<(), StorageError> {
        if let Some(p) = self.dirty_from.take() {
            self.synced.truncate(p);
            self.synced.extend_from_slice(&self.log[p..]);
            self.syncs += 1;
        }
        Ok(())
    }

    fn save_hard_state(&mut self, hs: &HardState) -> Result<(), StorageError> {
        self.hard_state = *hs;
        Ok(())
    }

    fn hard_state(&self) -> HardState {
        self.hard_state
    }

    fn last_index(&self) -> LogIndex {
        LogIndex(self.log.len() as u64)
    }

    fn last_term(&self) -> Term {
        self.log.last().map_or(Term(0), |e| e.term)
    }

    fn entries(&self, lo: LogIndex, hi: LogIndex) -> Result<Vec<Entry>, StorageError> {
        if lo.0 == 0 || hi > self.last_index() || lo > hi.next() {
            return Err(StorageError::OutOfRange {
                lo,
                hi,
                last: self.last_index(),
            });
        }
        Ok(self.log[lo.0 as usize - 1..hi.0 as usize].to_vec())
    }
}
