//! The storage thread: runs the node's [`StorageWorker`] (the only writer of
//! the log and hard state: group commit, background compaction snapshots;
//! see `raftkv_driver::storage_worker`) off the tokio runtime, and hands
//! each completion back to the core task.
//!
//! A follower on a one-thread runtime may persist a Ready in line instead
//! ([`StorageThread::persist_inline`], when no job is in flight): the two
//! thread hand-offs cost more than the fsync blocks it (docs/server.md).
//!
//! A compaction snapshot is prepared on a helper thread
//! (`snapshot.txt.<index>.tmp`, up to a second for a million keys) while
//! this thread keeps appending and syncing the log; it comes back as a job
//! and is put in place in order with everything else.
//!
//! Running out of file descriptors must not stop the store (which
//! fail-stops on any I/O error): the network's share is capped
//! ([`crate::fds::conn_budget`]); every file the store opens waits for a
//! descriptor instead of failing (`raftkv_storage::fd_retry`), and the first
//! open that finds none frees the storage's reserve descriptors (the
//! shortage hook registered in [`StorageThread::start`]), which are topped up
//! again after each step (no system call while the reserve is full).

use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use raftkv_core::{HardState, Ready};
use raftkv_driver::{Background, Done, Job, StorageWorker};
use raftkv_storage::{FileStorage, PreparedSnapshot};
use tokio::sync::{mpsc, oneshot};

use crate::clock::Clock;
use crate::fds::FdReserve;
use crate::metrics::{bump, Metrics};

type Worker = StorageWorker<FileStorage>;

enum Msg {
    Job(Job<PreparedSnapshot>),
    /// Save this hard state with its commit index, then stop (releasing the
    /// node folder's lock).
    Close(HardState, oneshot::Sender<Result<(), String>>),
}

pub struct StorageThread {
    jobs: Option<std_mpsc::Sender<Msg>>,
    thread: Option<JoinHandle<()>>,
    /// The worker, locked by the thread for each step and by
    /// [`StorageThread::persist_inline`]; dropped at `close`.
    worker: Option<Arc<Mutex<Worker>>>,
    metrics: Arc<Metrics>,
    reserve: Arc<FdReserve>,
    clock: Clock,
}

/// Marks a storage step as under way (`storage_busy_since_ns`, read by
/// `/readyz` to tell a stalled disk) until dropped.
struct Busy<'a>(&'a Metrics);

impl<'a> Busy<'a> {
    fn start(metrics: &'a Metrics, clock: Clock) -> Busy<'a> {
        let since = clock.now().as_nanos().saturating_add(1);
        metrics
            .storage_busy_since_ns
            .store(since, std::sync::atomic::Ordering::Relaxed);
        Busy(metrics)
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0
            .storage_busy_since_ns
            .store(0, std::sync::atomic::Ordering::Relaxed);
    }
}

impl StorageThread {
    pub fn start(
        storage: FileStorage,
        metrics: Arc<Metrics>,
        reserve: Arc<FdReserve>,
        clock: Clock,
    ) -> std::io::Result<(StorageThread, mpsc::UnboundedReceiver<Done>)> {
        // Unbounded on purpose: the driver keeps at most a few jobs in
        // flight (`DriverOptions::max_inflight_jobs`), which bounds this
        // queue.
        let (job_tx, job_rx) = std_mpsc::channel();
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let worker = Arc::new(Mutex::new(StorageWorker::new(storage)));
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
                let worker = worker.clone();
                let metrics = metrics.clone();
                let reserve = reserve.clone();
                move || run(worker, job_rx, job_tx, done_tx, metrics, reserve, clock)
            })?;
        Ok((
            StorageThread {
                jobs: Some(job_tx),
                thread: Some(thread),
                worker: Some(worker),
                metrics,
                reserve,
                clock,
            },
            done_rx,
        ))
    }

    /// Persists `ready` on the calling thread (blocking it for the fsync).
    /// The caller must have no job in flight, so that Readies reach the disk
    /// in order, and `ready` must hold no snapshot (those take the thread).
    pub fn persist_inline(&self, ready: &Ready) -> Result<(), String> {
        let worker = self.worker.as_ref().ok_or("storage closed")?;
        let mut worker = worker.lock().expect("storage lock poisoned");
        bump(&self.metrics.persist_jobs);
        let syncs = ready.must_sync || !ready.entries.is_empty();
        if syncs {
            bump(&self.metrics.persist_syncs);
        }
        let busy = Busy::start(&self.metrics, self.clock);
        let started = std::time::Instant::now();
        let result = worker.persist_inline(ready);
        if syncs {
            self.metrics.fsync.observe(started.elapsed());
        }
        drop(busy);
        self.reserve.refill();
        result
    }

    pub fn submit(&self, ready: Ready) -> Result<(), String> {
        self.send(Msg::Job(Job::Persist(ready)))
    }

    fn send(&self, msg: Msg) -> Result<(), String> {
        let jobs = self.jobs.as_ref().ok_or("storage thread stopped")?;
        jobs.send(msg)
            .map_err(|_| "storage thread stopped".to_owned())
    }

    /// Saves the final hard state and waits for the thread to end.
    pub async fn close(&mut self, hs: HardState) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        self.send(Msg::Close(hs, tx))?;
        let result = rx
            .await
            .unwrap_or_else(|_| Err("storage thread died".into()));
        self.jobs = None;
        self.worker = None;
        if let Some(thread) = self.thread.take() {
            tokio::task::spawn_blocking(move || thread.join())
                .await
                .ok();
        }
        result
    }
}

fn run(
    worker: Arc<Mutex<Worker>>,
    jobs: std_mpsc::Receiver<Msg>,
    jobs_tx: std_mpsc::Sender<Msg>,
    done: mpsc::UnboundedSender<Done>,
    metrics: Arc<Metrics>,
    reserve: Arc<FdReserve>,
    clock: Clock,
) {
    let mut close: Option<(HardState, oneshot::Sender<Result<(), String>>)> = None;
    loop {
        let mut w = worker.lock().expect("storage lock poisoned");
        // Everything queued now may join the next group.
        let take = |msg: Msg, w: &mut Worker, close: &mut Option<_>| match msg {
            Msg::Job(job) => w.push(job),
            Msg::Close(hs, reply) => *close = Some((hs, reply)),
        };
        if !w.has_work() && close.is_none() {
            drop(w);
            match jobs.recv() {
                Ok(msg) => {
                    w = worker.lock().expect("storage lock poisoned");
                    take(msg, &mut w, &mut close);
                }
                Err(_) => return,
            }
        }
        while let Ok(msg) = jobs.try_recv() {
            take(msg, &mut w, &mut close);
        }
        let busy = Busy::start(&metrics, clock);
        if let Some((step, background)) = w.begin() {
            bump_persist(&metrics, &step);
            for bg in background {
                if let Err((index, e)) = prepare_in_background(bg, &jobs_tx, &reserve) {
                    // Reported to the driver as the snapshot's failure.
                    let e = raftkv_storage::StorageError::Io {
                        path: "snapshot writer thread".into(),
                        op: "spawn",
                        source: e,
                    };
                    w.push(Job::CommitSnapshot(index, Err(e)));
                }
            }
            let syncs = step.syncs();
            let started = std::time::Instant::now();
            let dones = w.finish(step);
            if syncs {
                metrics.fsync.observe(started.elapsed());
            }
            drop(busy);
            drop(w);
            reserve.refill();
            for d in dones {
                if done.send(d).is_err() {
                    return;
                }
            }
            continue;
        }
        drop(busy);
        if let Some((hs, reply)) = close.take() {
            let result = w.close(hs);
            reserve.refill();
            drop(w);
            // The folder's lock is released when the last holder of the
            // worker (this thread or the `StorageThread`) drops it.
            drop(worker);
            let _ = reply.send(result);
            return;
        }
    }
}

fn bump_persist(metrics: &Metrics, step: &raftkv_driver::Step) {
    for _ in 0..step.readies() {
        bump(&metrics.persist_jobs);
    }
    if step.syncs() {
        bump(&metrics.persist_syncs);
    }
}

/// Prepares a compaction snapshot on a helper thread, which queues its
/// `CommitSnapshot` when done. Writing the `.tmp` file changes nothing the
/// store reads; its files wait for free descriptors
/// (`raftkv_storage::fd_retry`).
fn prepare_in_background(
    bg: Background<std::path::PathBuf>,
    jobs_tx: &std_mpsc::Sender<Msg>,
    reserve: &Arc<FdReserve>,
) -> Result<(), (raftkv_core::LogIndex, std::io::Error)> {
    let tx = jobs_tx.clone();
    let reserve = reserve.clone();
    let index = bg.index;
    std::thread::Builder::new()
        .name("raftkv-snapshot".into())
        .spawn(move || {
            let job = bg.prepare::<FileStorage>();
            reserve.refill();
            let _ = tx.send(Msg::Job(job));
        })
        .map(|_| ())
        .map_err(|e| (index, e))
}
