//! The node runtime: one tokio task owns the [`RaftNode`] and feeds it to
//! the shared driver (`raftkv_driver`), which orders everything a `Ready`
//! holds (publish, send, persist, acknowledge, answer). This file is the
//! tokio shell around it: channels, the ticker, the storage thread, the
//! transport and the dump file.
//!
//! Inputs (peer messages, client requests, timer ticks, storage completions)
//! arrive over bounded channels. Each turn drains what is available, then
//! ends with `Driver::end_turn`. Client proposals that arrive while a job
//! is being fsynced pile up in the core and leave in the next Ready: that
//! is the batching.
//!
//! Lease reads mostly never reach this task: the gRPC handlers answer them
//! from the view the driver publishes (`raftkv_driver::lease_view`) before
//! anything it does can be seen outside. Those that do reach it (no valid
//! view was out) are answered by `RaftNode::read` from memory, straight
//! back, never through the storage thread.

use std::sync::Arc;
use std::time::{Duration, Instant};

use raftkv_core::{Event, Membership, Message, MonoTime, NodeId, RaftNode, Ready, Term};
use raftkv_driver::{Count, Driver, DriverOptions, Host, LeaseReads, ReadPath, Reply, Waiters};
use raftkv_storage::DumpLog;
use tokio::sync::{mpsc, oneshot};

pub use crate::clock::Clock;
use crate::metrics::{bump, Metrics};
use crate::storage_thread::StorageThread;
use crate::transport::Transport;
pub use raftkv_driver::{
    ConfAnswer, ReadAnswer, Refusal, StaleAnswer, TransferAnswer, WriteAnswer,
};

/// Inputs handled per turn before a Ready is taken, so one busy source
/// cannot starve the timers.
const MAX_DRAIN_PER_TURN: usize = 1024;

/// A waiter of the core task: a oneshot channel to the gRPC handler.
pub struct Answer<A>(pub oneshot::Sender<A>);

impl<A> Reply<A> for Answer<A> {
    fn reply(self, answer: A) {
        let _ = self.0.send(answer);
    }
}

/// The server's waiters: oneshot channels.
pub struct Oneshots;

impl Waiters for Oneshots {
    type Reply<A: 'static> = Answer<A>;
}

pub type Request = raftkv_driver::Request<Oneshots>;

/// What the rest of the server holds to talk to the core task.
#[derive(Clone)]
pub struct NodeHandle {
    pub requests: mpsc::Sender<Request>,
    pub peer_inbox: mpsc::Sender<Message>,
}

/// The driver's view of a real node: the clock, the transport, the storage
/// thread, the dump file and the metrics.
struct ServerHost {
    id: NodeId,
    clock: Clock,
    transport: Transport,
    dump: Arc<DumpLog>,
    storage: StorageThread,
    metrics: Arc<Metrics>,
}

impl Host for ServerHost {
    fn now(&self) -> MonoTime {
        self.clock.now()
    }
    fn send(&mut self, msg: Message) {
        self.transport.send(msg);
    }
    fn submit(&mut self, ready: Ready) -> Result<(), String> {
        self.storage.submit(ready)
    }
    fn persist_inline(&mut self, ready: &Ready) -> Result<(), String> {
        self.storage.persist_inline(ready)
    }
    fn event(&mut self, term: Term, event: &Event) {
        tracing::debug!(node = %self.id, term = %term, "{event}");
        self.dump.record_event(term, event);
    }
    fn note(&mut self, term: Term, what: &str) {
        self.dump
            .record(raftkv_storage::DumpLevel::Info, term, &what);
    }
    fn membership_changed(&mut self, membership: &Membership) {
        self.transport.set_membership(membership);
    }
    fn term_changed(&mut self, term: Term) {
        self.transport.set_term(term);
    }
    fn count(&mut self, what: Count) {
        let m = &self.metrics;
        bump(match what {
            Count::WriteProposed => &m.writes_proposed,
            Count::ReadServed => &m.reads_lease,
            Count::ReadPending => &m.reads_pending,
            Count::ReadStale => &m.reads_stale,
            Count::ConfChangeProposed => &m.conf_changes_proposed,
            Count::SnapshotSaved => &m.snapshots_saved,
            Count::Read(ReadPath::Lease) => &m.reads_lease_core,
            Count::Read(ReadPath::ReadIndex) => &m.reads_readindex,
            Count::Read(ReadPath::FollowerLease) => &m.reads_follower_lease,
            Count::Read(ReadPath::Bounded) => &m.reads_bounded,
        });
    }
    fn storage_failed(&mut self, term: Term, error: &str) {
        self.metrics
            .storage_failed
            .store(1, std::sync::atomic::Ordering::Relaxed);
        tracing::error!(node = %self.id, "storage failed, stopping: {error}");
        self.dump.record(
            raftkv_storage::DumpLevel::Error,
            term,
            &format!("storage failed: {error}"),
        );
    }
}

/// Runs one core input; when it applied committed entries, its time goes
/// to the apply histogram. Two clock reads per input, no lock.
fn timed_apply(
    node: &mut RaftNode,
    host: &mut ServerHost,
    input: impl FnOnce(&mut RaftNode, &mut ServerHost),
) {
    let applied = node.applied_index();
    let started = Instant::now();
    input(node, host);
    if node.applied_index() > applied {
        host.metrics.apply.observe(started.elapsed());
    }
}

pub struct CoreTask {
    node: RaftNode,
    driver: Driver<Oneshots>,
    host: ServerHost,
    done_rx: mpsc::UnboundedReceiver<raftkv_driver::Done>,
    requests: mpsc::Receiver<Request>,
    peer_inbox: mpsc::Receiver<Message>,
    shutdown: tokio::sync::watch::Receiver<bool>,
    tick_interval: Duration,
}

pub struct CoreParts {
    pub node: RaftNode,
    pub clock: Clock,
    pub transport: Transport,
    pub dump: Arc<DumpLog>,
    pub storage: StorageThread,
    pub done_rx: mpsc::UnboundedReceiver<raftkv_driver::Done>,
    pub tick_interval: Duration,
    pub metrics: Arc<Metrics>,
    pub shutdown: tokio::sync::watch::Receiver<bool>,
    pub queue_len: usize,
    pub lease_reads: Arc<LeaseReads>,
}

impl CoreTask {
    pub fn new(mut parts: CoreParts) -> (CoreTask, NodeHandle) {
        let (req_tx, req_rx) = mpsc::channel(parts.queue_len);
        let (peer_tx, peer_rx) = mpsc::channel(parts.queue_len);
        let now = parts.clock.now();
        let opts = DriverOptions {
            // Followers persist in line on a one-thread runtime (see
            // `DriverOptions::inline_follower_persist`).
            inline_follower_persist: tokio::runtime::Handle::try_current()
                .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread),
            ..DriverOptions::default()
        };
        let driver = Driver::new(&parts.node, now, parts.lease_reads, opts);
        parts.transport.set_membership(driver.membership());
        let task = CoreTask {
            host: ServerHost {
                id: parts.node.id(),
                clock: parts.clock,
                transport: parts.transport,
                dump: parts.dump,
                storage: parts.storage,
                metrics: parts.metrics,
            },
            node: parts.node,
            driver,
            done_rx: parts.done_rx,
            requests: req_rx,
            peer_inbox: peer_rx,
            shutdown: parts.shutdown,
            tick_interval: parts.tick_interval,
        };
        (
            task,
            NodeHandle {
                requests: req_tx,
                peer_inbox: peer_tx,
            },
        )
    }

    /// Runs until shutdown is signalled or storage fails; then flushes and
    /// stops the storage thread. Returns the storage failure, if any.
    pub async fn run(mut self) -> Result<(), String> {
        let mut ticker = tokio::time::interval(self.tick_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let (node, driver, host) = (&mut self.node, &mut self.driver, &mut self.host);
        // For `leader_changes`: the last leader this node knew of.
        let mut last_leader = None;
        while driver.failed().is_none() && !*self.shutdown.borrow() {
            tokio::select! {
                biased;
                _ = self.shutdown.changed() => break,
                Some(done) = self.done_rx.recv() => {
                    timed_apply(node, host, |node, host| driver.on_done(node, host, done));
                }
                _ = ticker.tick() => driver.tick(node, host),
                Some(msg) = self.peer_inbox.recv() => {
                    timed_apply(node, host, |node, host| driver.step(node, host, msg));
                }
                Some(req) = self.requests.recv() => { driver.request(node, host, req); }
            }
            // Drain what else is there, then end the turn.
            while let Ok(done) = self.done_rx.try_recv() {
                timed_apply(node, host, |node, host| driver.on_done(node, host, done));
            }
            for _ in 0..MAX_DRAIN_PER_TURN {
                match self.peer_inbox.try_recv() {
                    Ok(msg) => timed_apply(node, host, |node, host| driver.step(node, host, msg)),
                    Err(_) => break,
                }
            }
            for _ in 0..MAX_DRAIN_PER_TURN {
                match self.requests.try_recv() {
                    Ok(req) => {
                        driver.request(node, host, req);
                    }
                    Err(_) => break,
                }
            }
            driver.end_turn(node, host);
            let leader = node.leader();
            if leader.is_some() && leader != last_leader {
                bump(&host.metrics.leader_changes);
            }
            last_leader = leader.or(last_leader);
        }
        self.stop().await
    }

    /// Clean shutdown: let the storage thread finish every job, answer every
    /// waiter, save the latest hard state with the commit index, and stop
    /// the thread.
    async fn stop(mut self) -> Result<(), String> {
        while self.driver.inflight_jobs() > 0 && self.driver.failed().is_none() {
            match self.done_rx.recv().await {
                Some(done) => self.driver.on_done(&mut self.node, &mut self.host, done),
                None => break,
            }
        }
        let hs = self.driver.stop(&self.node, self.host.clock.now());
        let term = hs.term;
        let result = match self.driver.failed() {
            Some(e) => Err(e.to_owned()),
            None => self.host.storage.close(hs).await,
        };
        self.host
            .dump
            .record(raftkv_storage::DumpLevel::Info, term, &"node stopped");
        self.host.dump.flush();
        result
    }
}
