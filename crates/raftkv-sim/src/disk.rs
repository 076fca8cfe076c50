//! A node's simulated disk: a snapshot, the log after it, and the hard
//! state, with a durable copy so that a crash loses exactly what was not
//! synced. Stand-in until `raftkv_storage::MemStorage` keeps snapshots.

use raftkv_core::{
    Entry, HardState, LogIndex, Restored, Snapshot, SnapshotOrigin, SnapshotWrite, Term,
};

#[derive(Clone, Debug, Default)]
pub(crate) struct SimDisk {
    /// What the node sees (appended, maybe not synced).
    log: Vec<Entry>,
    /// The durable log (as of the last sync), after the durable snapshot.
    synced: Vec<Entry>,
    /// Saved snapshots are durable at once (an atomic file replace), and
    /// drop the entries they cover from both copies of the log.
    snapshot: Option<Snapshot>,
    /// The first index changed since the last sync: the two logs agree
    /// below it.
    dirty_from: Option<u64>,
    hard_state: HardState,
}

impl SimDisk {
    pub(crate) fn new() -> SimDisk {
        SimDisk::default()
    }

    fn offset(&self) -> u64 {
        self.snapshot.as_ref().map_or(0, |s| s.meta.index.0)
    }

    pub(crate) fn last_index(&self) -> LogIndex {
        LogIndex(self.offset() + self.log.len() as u64)
    }

    pub(crate) fn append(&mut self, entries: &[Entry]) -> Result<(), String> {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        let off = self.offset();
        if first.index.0 <= off || first.index > self.last_index().next() {
            return Err(format!(
                "append at {} to a log holding {}..={}",
                first.index,
                off + 1,
                self.last_index()
            ));
        }
        self.log.truncate((first.index.0 - off - 1) as usize);
        self.log.extend_from_slice(entries);
        let d = first.index.0;
        self.dirty_from = Some(self.dirty_from.map_or(d, |x| x.min(d)));
        Ok(())
    }

    pub(crate) fn sync(&mut self) {
        if let Some(d) = self.dirty_from.take() {
            let p = ((d - self.offset() - 1) as usize).min(self.synced.len());
            self.synced.truncate(p);
            self.synced
                .extend_from_slice(&self.log[p.min(self.log.len())..]);
        }
    }

    pub(crate) fn crash(&mut self) {
        if let Some(d) = self.dirty_from.take() {
            let p = ((d - self.offset() - 1) as usize).min(self.log.len());
            self.log.truncate(p);
            self.log
                .extend_from_slice(&self.synced[p.min(self.synced.len())..]);
        }
        debug_assert_eq!(self.log, self.synced);
    }

    pub(crate) fn has_unsynced(&self) -> bool {
        self.dirty_from.is_some()
    }

    pub(crate) fn save_hard_state(&mut self, hs: &HardState) {
        self.hard_state = *hs;
    }

    pub(crate) fn hard_state(&self) -> HardState {
        self.hard_state
    }

    pub(crate) fn save_snapshot(&mut self, w: &SnapshotWrite) -> Result<(), String> {
        let index = w.snapshot.meta.index;
        if self.snapshot.as_ref().is_some_and(|s| s.meta.index > index) {
            return Err(format!(
                "snapshot at {index} would replace a later one at {}",
                self.offset()
            ));
        }
        let keep = match w.origin {
            SnapshotOrigin::Compaction => true,
            SnapshotOrigin::Installed { keep_log_suffix } => keep_log_suffix,
        };
        let off = self.offset();
        let drop_to = |log: &mut Vec<Entry>| {
            if keep {
                let n = (index.0.saturating_sub(off) as usize).min(log.len());
                log.drain(..n);
            } else {
                log.clear();
            }
        };
        drop_to(&mut self.log);
        drop_to(&mut self.synced);
        if !keep {
            self.dirty_from = None;
        } else if let Some(d) = self.dirty_from.as_mut() {
            *d = (*d).max(index.0 + 1);
        }
        self.snapshot = Some(w.snapshot.clone());
        Ok(())
    }

    /// The entry at `index` as the node sees it (synced or not), if held.
    pub(crate) fn entry(&self, index: LogIndex) -> Option<&Entry> {
        let off = self.offset();
        if index.0 <= off {
            return None;
        }
        self.log.get((index.0 - off - 1) as usize)
    }

    /// What a restart recovers.
    pub(crate) fn restored(&self) -> Restored {
        let last_term = self
            .synced
            .last()
            .map(|e| e.term)
            .or(self.snapshot.as_ref().map(|s| s.meta.term))
            .unwrap_or_default();
        let mut hs = self.hard_state;
        if last_term > hs.term {
            hs = HardState {
                term: last_term,
                voted_for: None,
                commit: hs.commit,
            };
        }
        Restored {
            hard_state: hs,
            snapshot: self.snapshot.clone(),
            entries: self.synced.clone(),
        }
    }

    /// The last index a crash would leave (snapshot and synced log).
    pub(crate) fn durable_last(&self) -> LogIndex {
        LogIndex(self.offset() + self.synced.len() as u64)
    }

    /// Whether the durable state holds `(index, term)` (or a snapshot
    /// covering it).
    pub(crate) fn holds(&self, index: LogIndex, term: Term) -> bool {
        let off = self.offset();
        index.0 <= off
            || self
                .synced
                .get((index.0 - off - 1) as usize)
                .is_some_and(|e| e.term == term)
    }
}
