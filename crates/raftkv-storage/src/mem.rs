//! The simulator's storage model: all in memory, with an explicit durable
//! copy so that [`MemStorage::crash`] loses exactly what was not synced.
//!
//! A snapshot is durable as soon as [`Storage::save_snapshot`] returns, and
//! so is the log cut that goes with it, applied to the durable copy of the
//! log by the same rule as to the live one: a crash right after leaves the
//! new snapshot and the *synced* entries after it (unsynced ones are lost,
//! as always), never a snapshot with a log that does not follow it.

use raftkv_core::{
    Entry, HardState, LogIndex, Restored, Snapshot, SnapshotMeta, SnapshotOrigin, SnapshotWrite,
    Term,
};

use crate::error::StorageError;
use crate::recovery::{plan_repair, Damage, LogFindings, RecoveryOptions, RepairPlan};
use crate::storage::{
    check_append, plan_snapshot, recovered_hard_state, BackgroundSnapshots, SnapshotPlan, Storage,
};

#[derive(Clone, Debug, Default)]
pub struct MemStorage {
    /// The latest saved snapshot (always durable).
    snapshot: Option<Snapshot>,
    /// The log after the snapshot as the node sees it (appended, maybe not
    /// synced).
    log: Vec<Entry>,
    /// The log after the snapshot as the disk holds it (as of the last sync).
    synced: Vec<Entry>,
    /// The first index changed since the last sync; `log` and `synced`
    /// agree on every index below it. `None`: they are equal.
    dirty_from: Option<LogIndex>,
    hard_state: HardState,
    syncs: u64,
    snapshots_saved: u64,
}

impl MemStorage {
    pub fn new() -> Self {
        MemStorage::default()
    }

    fn snap_index(&self) -> LogIndex {
        self.snapshot.as_ref().map_or(LogIndex(0), |s| s.meta.index)
    }

    fn snap_term(&self) -> Term {
        self.snapshot.as_ref().map_or(Term(0), |s| s.meta.term)
    }

    /// Position of `index` in `log` / `synced`.
    fn pos(&self, index: LogIndex) -> usize {
        (index.0 - self.snap_index().0 - 1) as usize
    }

    /// Simulates a crash or power loss: everything appended but not synced is
    /// lost; the durable log, snapshot and hard state stay.
    pub fn crash(&mut self) {
        if let Some(d) = self.dirty_from.take() {
            let p = self.pos(d);
            self.log.truncate(p);
            self.log
                .extend_from_slice(&self.synced[p.min(self.synced.len())..]);
        }
        debug_assert_eq!(self.log, self.synced);
    }

    /// What a restart would recover (the durable state): the snapshot, the
    /// synced entries after it, and the hard state with the term rule of
    /// [`recovered_hard_state`].
    pub fn restored(&self) -> Restored {
        let last_term = self.synced.last().map_or(self.snap_term(), |e| e.term);
        Restored {
            hard_state: recovered_hard_state(self.hard_state, last_term),
            snapshot: self.snapshot.clone(),
            entries: self.synced.clone(),
        }
    }

    /// A restart after a fault of the disk on *synced* data (the simulator's
    /// storage faults), recovered by the same rules as
    /// [`crate::FileStorage::open`] ([`crate::recovery`]): the store keeps
    /// the intact prefix and the planned vote floor, as the file store does.
    /// Call after [`MemStorage::crash`]. Returns what a restart recovers and
    /// the repair planned.
    pub fn restart_after(
        &mut self,
        fault: Option<DiskFault>,
        opts: RecoveryOptions,
    ) -> (Restored, Option<RepairPlan>) {
        debug_assert!(self.dirty_from.is_none(), "crash() first");
        let n = self.synced.len();
        let mut found = LogFindings {
            file_present: true,
            file_empty: false,
            intact_last: self.durable_last_index(),
            damage: None,
        };
        let keep = match fault {
            Some(DiskFault::Flip { back }) if n > 0 => {
                let at = n - 1 - back.min(n - 1);
                let last = &self.synced[n - 1];
                found.damage = Some(Damage {
                    first_line: at as u64 + 1,
                    first_index: self.synced[at].index,
                    last_index: last.index,
                    last_term: (at + 1 < n).then_some(last.term),
                    reason: "a flipped byte (simulated)".into(),
                });
                at
            }
            Some(DiskFault::LoseLog) => {
                found.file_present = false;
                0
            }
            Some(DiskFault::Shorten { keep }) => keep.min(n),
            _ => n,
        };
        found.intact_last = if keep == 0 {
            self.snap_index()
        } else {
            self.synced[keep - 1].index
        };
        let last_term = self.synced[..keep]
            .last()
            .map_or(self.snap_term(), |e| e.term);
        let hs = recovered_hard_state(self.hard_state, last_term);
        let plan = plan_repair(&hs, self.snapshot.is_some(), &found, opts);
        self.synced.truncate(keep);
        self.log.truncate(keep);
        if let Some(p) = &plan {
            self.hard_state.repair = Some(p.floor);
        }
        (self.restored(), plan)
    }

    /// The last index a crash would keep (log or snapshot): what a node may
    /// promise as durable.
    pub fn durable_last_index(&self) -> LogIndex {
        self.synced.last().map_or(self.snap_index(), |e| e.index)
    }

    /// Number of successful syncs that had something to sync.
    pub fn sync_count(&self) -> u64 {
        self.syncs
    }

    /// Number of snapshots saved (ignored older ones not counted).
    pub fn snapshot_count(&self) -> u64 {
        self.snapshots_saved
    }

    /// True when appends are waiting for a sync.
    pub fn has_unsynced(&self) -> bool {
        self.dirty_from.is_some()
    }
}

/// Term of `index` in a log that starts right after `snap_index`.
fn term_in(log: &[Entry], snap_index: LogIndex, index: LogIndex) -> Option<Term> {
    let p = index.0.checked_sub(snap_index.0 + 1)?;
    log.get(p as usize).map(|e| e.term)
}

/// Preparing is a copy; the commit is [`Storage::save_snapshot`], so a
/// crash before it loses the snapshot and keeps the log, as on disk.
impl BackgroundSnapshots for MemStorage {
    type Prepared = SnapshotWrite;
    type Writer = ();
    fn snapshot_writer(&self) {}
    fn prepare_snapshot(_: &(), write: &SnapshotWrite) -> Result<SnapshotWrite, StorageError> {
        Ok(write.clone())
    }
    fn commit_snapshot(&mut self, prepared: SnapshotWrite) -> Result<(), StorageError> {
        self.save_snapshot(&prepared)
    }
}

impl Storage for MemStorage {
    fn append(&mut self, entries: &[Entry]) -> Result<(), StorageError> {
        let snap = (self.snap_index(), self.snap_term());
        check_append(entries, snap, self.last_index(), |i| {
            self.log[self.pos(i)].term
        })?;
        let Some(first) = entries.first() else {
            return Ok(());
        };
        self.dirty_from = Some(self.dirty_from.map_or(first.index, |d| d.min(first.index)));
        let p = self.pos(first.index);
        self.log.truncate(p);
        self.log.extend_from_slice(entries);
        Ok(())
    }

    fn sync(&mut self) -> Result<(), StorageError> {
        if let Some(d) = self.dirty_from.take() {
            let p = self.pos(d);
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

    fn save_snapshot(&mut self, write: &SnapshotWrite) -> Result<(), StorageError> {
        let stored = self.snap_index();
        let SnapshotPlan::Apply { keep_suffix } =
            plan_snapshot(&write.snapshot.meta, write.origin, stored, |i| {
                term_in(&self.log, stored, i)
            })?
        else {
            return Ok(());
        };
        let meta = &write.snapshot.meta;
        // The durable copy gets the same rule. A compaction snapshot covers
        // entries that are durable: check it, the model is here to catch
        // drivers (and cores) that break that promise.
        let durable_term = term_in(&self.synced, stored, meta.index);
        let durable_keep = match write.origin {
            SnapshotOrigin::Compaction if durable_term != Some(meta.term) => {
                return Err(StorageError::SnapshotRejected {
                    index: meta.index,
                    reason: "a compaction snapshot covers entries that are not durable yet".into(),
                })
            }
            SnapshotOrigin::Compaction => true,
            SnapshotOrigin::Installed { keep_log_suffix } => {
                keep_log_suffix && durable_term == Some(meta.term)
            }
        };
        let cut = |log: &mut Vec<Entry>, keep: bool| {
            if keep {
                log.drain(..(meta.index.0 - stored.0) as usize);
            } else {
                log.clear();
            }
        };
        cut(&mut self.log, keep_suffix);
        cut(&mut self.synced, durable_keep);
        let after = meta.index.next();
        self.dirty_from = if self.log.is_empty() && self.synced.is_empty() {
            None
        } else if keep_suffix != durable_keep {
            Some(after)
        } else {
            self.dirty_from.map(|d| d.max(after))
        };
        self.snapshot = Some(write.snapshot.clone());
        self.snapshots_saved += 1;
        Ok(())
    }

    fn snapshot_meta(&self) -> Option<&SnapshotMeta> {
        self.snapshot.as_ref().map(|s| &s.meta)
    }

    fn snapshot(&self) -> Result<Option<Snapshot>, StorageError> {
        Ok(self.snapshot.clone())
    }

    fn last_index(&self) -> LogIndex {
        self.log.last().map_or(self.snap_index(), |e| e.index)
    }

    fn last_term(&self) -> Term {
        self.log.last().map_or(self.snap_term(), |e| e.term)
    }

    fn entries(&self, lo: LogIndex, hi: LogIndex) -> Result<Vec<Entry>, StorageError> {
        let first = self.first_index();
        if lo < first || hi > self.last_index() || lo > hi.next() {
            return Err(StorageError::OutOfRange {
                lo,
                hi,
                first,
                last: self.last_index(),
            });
        }
        Ok(self.log[self.pos(lo)..self.pos(hi.next())].to_vec())
    }
}

/// A fault of the disk on synced data, for [`MemStorage::restart_after`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiskFault {
    /// A flipped byte in the synced entry `back` places before the last
    /// (0: the last).
    Flip { back: usize },
    /// `logs.txt` lost (deleted or never found).
    LoseLog,
    /// `logs.txt` cut to its first `keep` entries at a line boundary.
    Shorten { keep: usize },
}
