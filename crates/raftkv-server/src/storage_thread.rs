//! The storage thread: the only place that writes the log and hard state.
//! It takes Readies in order, persists them with `raftkv_storage` (fsync
//! included) and hands each back to the core task, so the tokio runtime never
//! blocks on the disk. The Readies queued when it starts a job share one
//! fsync (group commit, `persist_readies_with`): while one fsync runs, the
//! core's next Readies pile up behind it and go to disk together.
//!
//! A follower on a one-thread runtime may persist a Ready in line instead
//! ([`StorageThread::persist_inline`], when no job is in flight): the two
//! thread hand-offs cost more than the fsync blocks it (docs/server.md).
//!
//! Compaction snapshots are written in the background: a helper thread
//! writes and fsyncs `snapshot.txt.<index>.tmp` (`FileStorage::prepare_snapshot`,
//! up to a second for a million keys) while this thread keeps appending and
//! syncing the log; then this thread renames it into place and cuts the log
//! (`commit_snapshot`), in order with everything else, and reports it.
//!
//! Running out of file descriptors must not stop the store (which
//! fail-stops on any I/O error): the network's share is capped
//! ([`crate::fds::conn_budget`]); every file the store opens waits for a
//! descriptor instead of failing (`raftkv_storage::fd_retry`), and the first
//! open that finds none frees the storage's reserve descriptors (the
//! shortage hook registered in [`StorageThread::start`]), which are topped up
//! again after each job (no system call while the reserve is full).

use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use raftkv_core::{HardState, LogIndex, Ready, SnapshotOrigin};
use raftkv_storage::{
    persist_readies_with, persist_ready_with, FileStorage, PersistOptions, PreparedSnapshot,
    StorageError,
};
use tokio::sync::{mpsc, oneshot};

use crate::fds::FdReserve;
use crate::metrics::{bump, Metrics};

pub enum Job {
    Persist(Ready),
    /// Save this hard state with its commit index, then stop (releasing the
    /// node folder's lock).
    Close(HardState, oneshot::Sender<Result<(), String>>),
    /// A compaction snapshot prepared in the background, to put in place.
    CommitSnapshot(LogIndex, Result<PreparedSnapshot, StorageError>),
}

pub struct Done {
    pub ready: Ready,
    pub result: Result<(), String>,
    /// Set for a compaction snapshot saved in the background (not the
    /// completion of a submitted job): report it with `on_snapshot_saved`.
    pub compaction_saved: Option<LogIndex>,
}

pub struct StorageThread {
    jobs: Option<std_mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
    /// The store, locked by the thread for each job and by
    /// [`StorageThread::persist_inline`]; dropped at `close`.
    storage: Option<Arc<Mutex<FileStorage>>>,
    metrics: Arc<Metrics>,
    reserve: Arc<FdReserve>,
}

impl StorageThread {
    pub fn start(
        storage: FileStorage,
        metrics: Arc<Metrics>,
        reserve: Arc<FdReserve>,
    ) -> std::io::Result<(StorageThread, mpsc::UnboundedReceiver<Done>)> {
        // Unbounded on purpose: the core task keeps at most a few jobs in
        // flight (MAX_INFLIGHT_JOBS), which bounds this queue.
        let (job_tx, job_rx) = std_mpsc::channel();
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let storage = Arc::new(Mutex::new(storage));
        // A storage open that finds no descriptor frees the reserve first
        // (`raftkv_storage::fd_retry`).
        raftkv_storage::fd_retry::set_shortage_hook({
            let reserve = reserve.clone();
            let metrics = metrics.clone();
            move || {
                reserve.release();
                bump(&metrics.storage_fd_waits);
            }
        });
        let thread = std::thread::Builder::new()
            .name("raftkv-storage".into())
            .spawn({
                let job_tx = job_tx.clone();
                let storage = storage.clone();
                let metrics = metrics.clone();
                let reserve = reserve.clone();
                move || run(storage, job_rx, job_tx, done_tx, metrics, reserve)
            })?;
        Ok((
            StorageThread {
                jobs: Some(job_tx),
                thread: Some(thread),
                storage: Some(storage),
                metrics,
                reserve,
            },
            done_rx,
        ))
    }

    /// Persists `ready` on the calling thread (blocking it for the fsync).
    /// The caller must have no job in flight, so that Readies reach the disk
    /// in order, and `ready` must hold no snapshot (those take the thread).
    pub fn persist_inline(&self, ready: &Ready) -> Result<(), String> {
        debug_assert!(ready.snapshots.is_empty());
        let storage = self.storage.as_ref().ok_or("storage closed")?;
        let mut storage = storage.lock().expect("storage lock poisoned");
        count_persist(&self.metrics, std::slice::from_ref(ready));
        let result = persist_ready_with(&mut *storage, ready, PersistOptions::default());
        self.reserve.refill();
        result.map_err(|e| e.to_string())
    }

    pub fn submit(&self, job: Job) -> Result<(), String> {
        let jobs = self.jobs.as_ref().ok_or("storage thread stopped")?;
        jobs.send(job)
            .map_err(|_| "storage thread stopped".to_owned())
    }

    /// Saves the final hard state and waits for the thread to end.
    pub async fn close(&mut self, hs: HardState) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        self.submit(Job::Close(hs, tx))?;
        let result = rx
            .await
            .unwrap_or_else(|_| Err("storage thread died".into()));
        self.jobs = None;
        self.storage = None;
        if let Some(thread) = self.thread.take() {
            tokio::task::spawn_blocking(move || thread.join())
                .await
                .ok();
        }
        result
    }
}

/// Counts a group of Readies persisted together: one job each, one fsync
/// for the group if any of them needs it.
fn count_persist(metrics: &Metrics, group: &[Ready]) {
    for _ in group {
        bump(&metrics.persist_jobs);
    }
    if group.iter().any(|r| r.must_sync || !r.entries.is_empty()) {
        bump(&metrics.persist_syncs);
    }
}

/// Readies persisted with one fsync at most (group commit): bounded so
/// that the first of them is not held back for long.
const MAX_GROUP: usize = 16;

fn run(
    storage: Arc<Mutex<FileStorage>>,
    jobs: std_mpsc::Receiver<Job>,
    jobs_tx: std_mpsc::Sender<Job>,
    done: mpsc::UnboundedSender<Done>,
    metrics: Arc<Metrics>,
    reserve: Arc<FdReserve>,
) {
    // The reserve is freed by `fd_retry`'s shortage hook only when an open
    // finds no descriptor; after a job it is topped up again (no system call
    // while it is full).
    let with_fds = |job: &mut dyn FnMut()| {
        job();
        reserve.refill();
    };
    let mut failed = false;
    // A job taken while gathering a group, to handle next.
    let mut next: Option<Job> = None;
    loop {
        let job = match next.take() {
            Some(job) => job,
            None => match jobs.recv() {
                Ok(job) => job,
                Err(_) => return,
            },
        };
        match job {
            Job::Persist(first) => {
                // Group commit: the Readies already queued behind this one
                // share its fsync.
                let mut group = vec![first];
                while group.len() < MAX_GROUP {
                    match jobs.try_recv() {
                        Ok(Job::Persist(ready)) => group.push(ready),
                        Ok(other) => {
                            next = Some(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                let mut storage = storage.lock().expect("storage lock poisoned");
                for ready in &mut group {
                    // Compaction snapshots go to a helper thread; the core
                    // allows it (the log still holds their entries) and
                    // takes no new one before this one is reported.
                    let (background, rest) = std::mem::take(&mut ready.snapshots)
                        .into_iter()
                        .partition(|w| w.origin == SnapshotOrigin::Compaction);
                    ready.snapshots = rest;
                    for write in background {
                        if let Err(e) = write_in_background(&storage, write, &jobs_tx, &reserve) {
                            failed = true;
                            let _ = done.send(Done {
                                ready: Ready::default(),
                                result: Err(format!("cannot start the snapshot writer: {e}")),
                                compaction_saved: None,
                            });
                        }
                    }
                }
                count_persist(&metrics, &group);
                let result = if failed {
                    Err("storage failed earlier".to_owned())
                } else {
                    let mut result = Ok(());
                    with_fds(&mut || {
                        result =
                            persist_readies_with(&mut *storage, &group, PersistOptions::default())
                    });
                    result.map_err(|e| e.to_string())
                };
                failed |= result.is_err();
                drop(storage);
                for ready in group {
                    let reply = Done {
                        ready,
                        result: result.clone(),
                        compaction_saved: None,
                    };
                    if done.send(reply).is_err() {
                        return;
                    }
                }
            }
            Job::CommitSnapshot(index, prepared) => {
                if failed {
                    continue;
                }
                let result = prepared
                    .and_then(|p| {
                        let mut storage = storage.lock().expect("storage lock poisoned");
                        let mut p = Some(p);
                        let mut result = Ok(());
                        with_fds(&mut || {
                            result = storage.commit_snapshot(p.take().expect("runs once"))
                        });
                        result
                    })
                    .map_err(|e| e.to_string());
                failed |= result.is_err();
                let reply = Done {
                    ready: Ready::default(),
                    result,
                    compaction_saved: Some(index),
                };
                if done.send(reply).is_err() {
                    return;
                }
            }
            Job::Close(hs, reply) => {
                let result = if failed {
                    Ok(())
                } else {
                    let ready = Ready {
                        hard_state: Some(hs),
                        ..Ready::default()
                    };
                    let opts = PersistOptions {
                        force_commit_save: true,
                        ..PersistOptions::default()
                    };
                    let mut storage = storage.lock().expect("storage lock poisoned");
                    let mut result = Ok(());
                    with_fds(&mut || result = persist_ready_with(&mut *storage, &ready, opts));
                    result.map_err(|e| e.to_string())
                };
                // The folder's lock is released when the last holder of the
                // store (this thread or the `StorageThread`) drops it.
                drop(storage);
                let _ = reply.send(result);
                return;
            }
        }
    }
}

/// Writes a compaction snapshot on a helper thread, which queues its
/// `CommitSnapshot` when done. Writing the `.tmp` file changes nothing the
/// store reads; its files wait for free descriptors
/// (`raftkv_storage::fd_retry`).
fn write_in_background(
    storage: &FileStorage,
    write: raftkv_core::SnapshotWrite,
    jobs_tx: &std_mpsc::Sender<Job>,
    reserve: &Arc<FdReserve>,
) -> std::io::Result<()> {
    let dir = storage.dir().to_path_buf();
    let tx = jobs_tx.clone();
    let reserve = reserve.clone();
    std::thread::Builder::new()
        .name("raftkv-snapshot".into())
        .spawn(move || {
            let index = write.snapshot.meta.index;
            // Every file the store creates waits for a descriptor itself
            // (`raftkv_storage::fd_retry`).
            let prepared = FileStorage::prepare_snapshot(&dir, &write);
            reserve.refill();
            drop(write);
            let _ = tx.send(Job::CommitSnapshot(index, prepared));
        })
        .map(|_| ())
}
