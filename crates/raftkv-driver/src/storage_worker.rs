//! The storage worker: the only writer of a node's log and hard state. The
//! server runs it on its storage thread; the simulator runs it on simulated
//! time, with a crash possible between a group's write and its fsync.
//!
//! Jobs are taken in order. The Readies queued when a step begins share one
//! fsync (group commit): while one fsync runs, the core's next Readies pile
//! up behind it and go to disk together. A step is two halves:
//! [`StorageWorker::begin`] writes (a changed term or vote saved, snapshots
//! saved, entries appended: `raftkv_storage::write_readies`) and
//! [`StorageWorker::finish`] syncs and saves the commit lazily
//! (`raftkv_storage::sync_readies`), then hands each Ready back as a
//! [`Done`] for `Driver::on_done`.
//!
//! Compaction snapshots are written in the background: `begin` hands them
//! out, a helper prepares each aside
//! ([`BackgroundSnapshots::prepare_snapshot`]) while the worker keeps
//! appending and syncing, and the prepared snapshot comes back as a
//! [`Job::CommitSnapshot`], put in place in order with everything else and
//! reported (`Done::compaction_saved`). The core allows this (the log still
//! holds their entries) and takes no new compaction before it is reported.

use std::collections::VecDeque;

use raftkv_core::{HardState, LogIndex, Ready, SnapshotOrigin, SnapshotWrite};
use raftkv_storage::{
    persist_ready_with, sync_readies, write_readies, BackgroundSnapshots, PersistOptions,
    StorageError, Written,
};

/// Readies persisted with one fsync at most (group commit): bounded so
/// that the first of them is not held back for long.
pub const MAX_GROUP: usize = 16;

pub enum Job<P> {
    Persist(Ready),
    /// A compaction snapshot prepared in the background, to put in place.
    CommitSnapshot(LogIndex, Result<P, StorageError>),
}

/// A step's result for the driver.
pub struct Done {
    pub ready: Ready,
    pub result: Result<(), String>,
    /// Set for a compaction snapshot saved in the background (not the
    /// completion of a submitted Ready): report it with `on_snapshot_saved`.
    pub compaction_saved: Option<LogIndex>,
}

/// A step begun by [`StorageWorker::begin`], to pass to
/// [`StorageWorker::finish`] once its fsync may run.
pub enum Step {
    Group {
        readies: Vec<Ready>,
        written: Result<Written, String>,
    },
    Commit {
        index: LogIndex,
        result: Result<(), String>,
    },
}

impl Step {
    /// Whether finishing it syncs the disk (the simulator charges an fsync
    /// latency for it).
    pub fn syncs(&self) -> bool {
        matches!(self, Step::Group { written: Ok(w), .. } if w.must_sync)
    }
    /// The Readies of a group (for counters).
    pub fn readies(&self) -> usize {
        match self {
            Step::Group { readies, .. } => readies.len(),
            Step::Commit { .. } => 0,
        }
    }
}

/// A compaction snapshot to prepare in the background, then to queue back as
/// [`Job::CommitSnapshot`].
pub struct Background<W> {
    pub index: LogIndex,
    pub writer: W,
    pub write: SnapshotWrite,
}

impl<W> Background<W> {
    /// Runs on the helper (thread or simulated delay).
    pub fn prepare<S: BackgroundSnapshots<Writer = W>>(self) -> Job<S::Prepared> {
        let prepared = S::prepare_snapshot(&self.writer, &self.write);
        Job::CommitSnapshot(self.index, prepared)
    }
}

pub struct StorageWorker<S: BackgroundSnapshots> {
    storage: S,
    queue: VecDeque<Job<S::Prepared>>,
    failed: Option<String>,
}

impl<S: BackgroundSnapshots> StorageWorker<S> {
    pub fn new(storage: S) -> StorageWorker<S> {
        StorageWorker {
            storage,
            queue: VecDeque::new(),
            failed: None,
        }
    }

    pub fn storage(&self) -> &S {
        &self.storage
    }

    pub fn storage_mut(&mut self) -> &mut S {
        &mut self.storage
    }

    pub fn into_storage(self) -> S {
        self.storage
    }

    pub fn push(&mut self, job: Job<S::Prepared>) {
        self.queue.push_back(job);
    }

    pub fn has_work(&self) -> bool {
        !self.queue.is_empty()
    }

    /// Forget every queued job (the simulator's crash).
    pub fn clear(&mut self) {
        self.queue.clear();
        self.failed = None;
    }

    /// Begins the next step: the Persist jobs at the front of the queue (up
    /// to [`MAX_GROUP`]) written together, not yet synced; or one snapshot
    /// commit. Returns the compaction snapshots of the group, to prepare in
    /// the background.
    pub fn begin(&mut self) -> Option<(Step, Vec<Background<S::Writer>>)> {
        match self.queue.pop_front()? {
            Job::CommitSnapshot(index, prepared) => {
                let result = match (&self.failed, prepared) {
                    (Some(e), _) => Err(format!("storage failed earlier: {e}")),
                    (None, Ok(p)) => self.storage.commit_snapshot(p).map_err(|e| e.to_string()),
                    (None, Err(e)) => Err(format!("the background snapshot failed: {e}")),
                };
                self.note_failure(&result);
                Some((Step::Commit { index, result }, Vec::new()))
            }
            Job::Persist(first) => {
                let mut readies = vec![first];
                while readies.len() < MAX_GROUP {
                    match self.queue.front() {
                        Some(Job::Persist(_)) => match self.queue.pop_front() {
                            Some(Job::Persist(r)) => readies.push(r),
                            _ => unreachable!("front was a Persist job"),
                        },
                        _ => break,
                    }
                }
                let mut background = Vec::new();
                for ready in &mut readies {
                    // Compaction snapshots go to a helper; installed ones
                    // are saved in line, before the entries.
                    let (bg, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut ready.snapshots)
                        .into_iter()
                        .partition(|w| w.origin == SnapshotOrigin::Compaction);
                    ready.snapshots = rest;
                    background.extend(bg.into_iter().map(|write| Background {
                        index: write.snapshot.meta.index,
                        writer: self.storage.snapshot_writer(),
                        write,
                    }));
                }
                let written = match &self.failed {
                    Some(e) => Err(format!("storage failed earlier: {e}")),
                    None => write_readies(&mut self.storage, &readies).map_err(|e| e.to_string()),
                };
                if let Err(e) = &written {
                    self.failed.get_or_insert_with(|| e.clone());
                }
                Some((Step::Group { readies, written }, background))
            }
        }
    }

    /// Finishes a step: the group's fsync and lazy commit save. Returns the
    /// completions, in order.
    pub fn finish(&mut self, step: Step) -> Vec<Done> {
        match step {
            Step::Commit { index, result } => vec![Done {
                ready: Ready::default(),
                result,
                compaction_saved: Some(index),
            }],
            Step::Group { readies, written } => {
                let result = written.and_then(|w| {
                    if let Some(e) = &self.failed {
                        return Err(format!("storage failed earlier: {e}"));
                    }
                    sync_readies(&mut self.storage, w, PersistOptions::default())
                        .map_err(|e| e.to_string())
                });
                self.note_failure(&result);
                readies
                    .into_iter()
                    .map(|ready| Done {
                        ready,
                        result: result.clone(),
                        compaction_saved: None,
                    })
                    .collect()
            }
        }
    }

    /// Persists `ready` at once, write and fsync (the driver's in-line
    /// follower persistence). Only with no Ready queued, and with no
    /// snapshot in `ready`. A compaction snapshot waiting to be put in place
    /// may be passed: it cuts only entries that are durable and committed,
    /// which a later append cannot change.
    pub fn persist_inline(&mut self, ready: &Ready) -> Result<(), String> {
        debug_assert!(ready.snapshots.is_empty());
        debug_assert!(
            !self.queue.iter().any(|j| matches!(j, Job::Persist(_))),
            "an in-line persist would overtake a queued Ready"
        );
        if let Some(e) = &self.failed {
            return Err(format!("storage failed earlier: {e}"));
        }
        let result = persist_ready_with(&mut self.storage, ready, PersistOptions::default())
            .map_err(|e| e.to_string());
        self.note_failure(&result);
        result
    }

    /// Saves the final hard state with its commit index (clean shutdown).
    pub fn close(&mut self, hs: HardState) -> Result<(), String> {
        if self.failed.is_some() {
            return Ok(());
        }
        let ready = Ready {
            hard_state: Some(hs),
            ..Ready::default()
        };
        let opts = PersistOptions {
            force_commit_save: true,
            ..PersistOptions::default()
        };
        persist_ready_with(&mut self.storage, &ready, opts).map_err(|e| e.to_string())
    }

    fn note_failure(&mut self, result: &Result<(), String>) {
        if let Err(e) = result {
            self.failed.get_or_insert_with(|| e.clone());
        }
    }
}
