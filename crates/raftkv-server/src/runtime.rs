//! The node runtime: one tokio task owns the [`RaftNode`] and drives it by
//! the contract of `raftkv_core::Ready`.
//!
//! Inputs (peer messages, client requests, timer ticks, storage completions)
//! arrive over bounded channels. Each turn drains what is available, then
//! takes one `Ready`: its `messages` go to the transport at once; the rest
//! (entries, hard state, `persisted_messages`, client results) goes to the
//! storage thread, which persists and hands it back; only then are the
//! persisted messages sent, `on_persisted` called and clients answered.
//! Storage jobs are processed in order (those queued together share one
//! fsync). A Ready with nothing to persist and no `persisted_messages` (say,
//! the answers of writes that just committed) skips the queue and is
//! finished at once: its answers rest on commits, which count only durable
//! copies. Client proposals that arrive while a job is being fsynced pile up
//! in the core and leave in the next Ready: that is the batching.
//!
//! Lease reads mostly never reach this task: the gRPC handlers answer them
//! from the view it publishes (`lease_reads.rs`) before anything it does
//! can be seen outside. Those that do reach it (no valid view was out) are
//! answered by `RaftNode::read` from memory, straight back, never through
//! the storage thread.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use raftkv_core::{
    ClientCommand, ConfChange, ConfChangeError, Event, HardState, LogIndex, Membership, Message,
    MessageBody, MonoTime, NodeId, NotLeader, OpResult, ProposeError, RaftNode, ReadError, ReadId,
    ReadNow, Ready, Role, Status, Term, TransferError, WriteError,
};
use raftkv_storage::DumpLog;
use tokio::sync::{mpsc, oneshot};

use crate::lease_reads::{LeaseReads, Publisher};
use crate::metrics::{bump, Metrics};
use crate::storage_thread::{Done, Job, StorageThread};
use crate::transport::Transport;

/// Storage jobs in flight before the core task stops taking new Readies
/// (back-pressure: inputs then wait in their channels).
const MAX_INFLIGHT_JOBS: usize = 4;
/// Inputs handled per turn before a Ready is taken, so one busy source
/// cannot starve the timers.
const MAX_DRAIN_PER_TURN: usize = 1024;

/// The node's monotonic clock: nanoseconds since the process started.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    start: Instant,
}

impl Clock {
    pub fn start() -> Clock {
        Clock {
            start: Instant::now(),
        }
    }
    /// A clock whose zero lies `ago` in the past (for tests).
    #[cfg(test)]
    pub fn started_ago(ago: Duration) -> Clock {
        Clock {
            start: Instant::now()
                .checked_sub(ago)
                .expect("the machine has been up that long"),
        }
    }
    pub fn now(&self) -> MonoTime {
        MonoTime::from_nanos(u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX))
    }
}

/// Why a client request could not be served.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Not the leader. `outcome_unknown`: a write was proposed here but this
    /// node lost leadership before it applied.
    NotLeader {
        leader: Option<NodeId>,
        outcome_unknown: bool,
    },
    /// Too many writes or reads pending.
    Busy(String),
    /// Key or value too large; a membership change that is not allowed.
    Invalid(String),
    StaleSequence,
    /// A membership change or transfer that cannot happen in the present
    /// state (another change in progress, a learner behind, a transfer that
    /// timed out). Retrying later may succeed; retrying at once will not.
    Conflict(String),
    /// Retry in a moment (a new leader not ready yet, a transfer under way).
    RetryLater(String),
    /// The node is shutting down.
    Stopping,
}

pub type WriteAnswer = Result<(LogIndex, OpResult), Refusal>;
/// A committed configuration and its index (0: the change was already in
/// force).
pub type ConfAnswer = Result<(LogIndex, Membership), Refusal>;
/// The new leader.
pub type TransferAnswer = Result<NodeId, Refusal>;
pub type ReadAnswer = Result<Option<String>, Refusal>;

#[derive(Clone, Debug)]
pub struct StaleAnswer {
    pub value: Option<String>,
    pub applied: LogIndex,
    pub commit: LogIndex,
    pub since_leader_contact: Option<Duration>,
}

pub enum Request {
    Propose {
        cmd: ClientCommand,
        reply: oneshot::Sender<WriteAnswer>,
    },
    Read {
        key: String,
        reply: oneshot::Sender<ReadAnswer>,
    },
    ReadStale {
        key: String,
        reply: oneshot::Sender<StaleAnswer>,
    },
    Status {
        reply: oneshot::Sender<(Status, u64)>,
    },
    ConfChange {
        change: ConfChange,
        reply: oneshot::Sender<ConfAnswer>,
    },
    Transfer {
        to: NodeId,
        reply: oneshot::Sender<TransferAnswer>,
    },
}

/// A transfer call waiting for the target to lead.
struct TransferWaiter {
    to: NodeId,
    deadline: MonoTime,
    reply: oneshot::Sender<TransferAnswer>,
}

/// What the rest of the server holds to talk to the core task.
#[derive(Clone)]
pub struct NodeHandle {
    pub requests: mpsc::Sender<Request>,
    pub peer_inbox: mpsc::Sender<Message>,
}

pub struct CoreTask {
    node: RaftNode,
    id: NodeId,
    clock: Clock,
    transport: Transport,
    dump: Arc<DumpLog>,
    storage: StorageThread,
    done_rx: mpsc::UnboundedReceiver<Done>,
    requests: mpsc::Receiver<Request>,
    peer_inbox: mpsc::Receiver<Message>,
    shutdown: tokio::sync::watch::Receiver<bool>,
    tick_interval: Duration,
    inflight_jobs: usize,
    /// Proposals waiting for their entry to apply, by log index.
    write_waiters: HashMap<LogIndex, oneshot::Sender<WriteAnswer>>,
    read_waiters: HashMap<ReadId, oneshot::Sender<ReadAnswer>>,
    /// Membership changes waiting to commit, by log index.
    conf_waiters: HashMap<LogIndex, oneshot::Sender<ConfAnswer>>,
    transfer_waiters: Vec<TransferWaiter>,
    /// The configuration the transport was last told about.
    membership: Membership,
    next_read_id: u64,
    /// When an AppendEntries last arrived (for stale-read staleness).
    last_leader_contact: Option<MonoTime>,
    term: Term,
    metrics: Arc<Metrics>,
    failed: Option<String>,
    /// The lease-read view for the gRPC handlers.
    publisher: Publisher,
    /// A commit index not yet handed to storage (see `advance`).
    unsaved_commit: Option<HardState>,
    /// Followers persist in line (see `persist_in_line`): set on a
    /// one-thread runtime.
    inline_persist: bool,
}

pub struct CoreParts {
    pub node: RaftNode,
    pub clock: Clock,
    pub transport: Transport,
    pub dump: Arc<DumpLog>,
    pub storage: StorageThread,
    pub done_rx: mpsc::UnboundedReceiver<Done>,
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
        let status = parts.node.status(parts.clock.now());
        parts.transport.set_membership(&status.membership);
        let task = CoreTask {
            membership: status.membership.clone(),
            conf_waiters: HashMap::new(),
            transfer_waiters: Vec::new(),
            id: status.id,
            term: status.term,
            node: parts.node,
            clock: parts.clock,
            transport: parts.transport,
            dump: parts.dump,
            storage: parts.storage,
            done_rx: parts.done_rx,
            requests: req_rx,
            peer_inbox: peer_rx,
            shutdown: parts.shutdown,
            tick_interval: parts.tick_interval,
            inflight_jobs: 0,
            write_waiters: HashMap::new(),
            read_waiters: HashMap::new(),
            next_read_id: 1,
            last_leader_contact: None,
            metrics: parts.metrics,
            failed: None,
            publisher: Publisher::new(parts.lease_reads),
            unsaved_commit: None,
            inline_persist: tokio::runtime::Handle::try_current()
                .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread),
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
        while self.failed.is_none() && !*self.shutdown.borrow() {
            tokio::select! {
                biased;
                _ = self.shutdown.changed() => break,
                Some(done) = self.done_rx.recv() => self.on_done(done),
                _ = ticker.tick() => self.node.tick(self.clock.now()),
                Some(msg) = self.peer_inbox.recv() => self.on_peer_message(msg),
                Some(req) = self.requests.recv() => self.on_request(req),
            }
            self.drain_inputs();
            self.advance();
            self.check_transfers();
            // Also after steps that left no Ready (or none taken yet).
            self.publisher.publish(&self.node);
        }
        self.publisher.withdraw();
        self.stop().await
    }

    fn drain_inputs(&mut self) {
        while let Ok(done) = self.done_rx.try_recv() {
            self.on_done(done);
        }
        for _ in 0..MAX_DRAIN_PER_TURN {
            match self.peer_inbox.try_recv() {
                Ok(msg) => self.on_peer_message(msg),
                Err(_) => break,
            }
        }
        for _ in 0..MAX_DRAIN_PER_TURN {
            match self.requests.try_recv() {
                Ok(req) => self.on_request(req),
                Err(_) => break,
            }
        }
    }

    fn on_peer_message(&mut self, msg: Message) {
        let now = self.clock.now();
        if matches!(
            msg.body,
            MessageBody::AppendEntries(_) | MessageBody::InstallSnapshot(_)
        ) {
            self.last_leader_contact = Some(now);
        }
        self.node.step(now, msg);
    }

    fn on_request(&mut self, req: Request) {
        let now = self.clock.now();
        match req {
            Request::Propose { cmd, reply } => match self.node.propose(now, cmd) {
                Ok(index) => {
                    bump(&self.metrics.writes_proposed);
                    if let Some(old) = self.write_waiters.insert(index, reply) {
                        // The entry at this index was replaced without a
                        // result: its fate is unknown to this node.
                        let _ = old.send(Err(Refusal::NotLeader {
                            leader: None,
                            outcome_unknown: true,
                        }));
                    }
                }
                Err(e) => {
                    let _ = reply.send(Err(propose_refusal(e)));
                }
            },
            Request::Read { key, reply } => {
                let id = ReadId(self.next_read_id);
                self.next_read_id += 1;
                match self.node.read(now, id, key) {
                    Ok(ReadNow::Served(value)) => {
                        bump(&self.metrics.reads_lease);
                        // The core may have applied writes this turn that
                        // the handlers' view lacks: publish before this
                        // answer shows them, or a later read in a handler
                        // could return an older value than this one.
                        self.publisher.publish(&self.node);
                        let _ = reply.send(Ok(value));
                    }
                    Ok(ReadNow::Pending) => {
                        bump(&self.metrics.reads_pending);
                        self.read_waiters.insert(id, reply);
                    }
                    Err(e) => {
                        let _ = reply.send(Err(read_refusal(e)));
                    }
                }
            }
            Request::ReadStale { key, reply } => {
                bump(&self.metrics.reads_stale);
                // Not needed for linearizability (a stale read promises
                // nothing), but a client that saw a value here should not
                // then get an older one from a linearizable read.
                self.publisher.publish(&self.node);
                let _ = reply.send(self.stale_answer(now, &key));
            }
            Request::Status { reply } => {
                let keys = self.node.kv().len() as u64;
                let _ = reply.send((self.node.status(now), keys));
            }
            Request::ConfChange { change, reply } => self.on_conf_change(now, change, reply),
            Request::Transfer { to, reply } => match self.node.transfer_leadership(now, to) {
                Ok(()) => {
                    let wait = self.node.config().election_timeout_max * 3;
                    self.transfer_waiters.push(TransferWaiter {
                        to,
                        deadline: now + wait,
                        reply,
                    });
                }
                Err(TransferError::AlreadyLeader(id)) => {
                    let _ = reply.send(Ok(id));
                }
                Err(e) => {
                    let _ = reply.send(Err(transfer_refusal(e)));
                }
            },
        }
    }

    fn on_conf_change(
        &mut self,
        now: MonoTime,
        change: ConfChange,
        reply: oneshot::Sender<ConfAnswer>,
    ) {
        if self.node.role() != Role::Leader {
            let _ = reply.send(Err(Refusal::NotLeader {
                leader: self.node.leader(),
                outcome_unknown: false,
            }));
            return;
        }
        let m = self.node.membership();
        // Removing a node that is not a member is a mistake (a mistyped id)
        // far more often than a retry: say so, with the configuration.
        // (A removal retried after an unknown outcome also lands here: then
        // the first attempt took effect.)
        if let ConfChange::Remove { id } = &change {
            if !m.is_member(*id) {
                let list = |ids: &std::collections::BTreeSet<NodeId>| {
                    if ids.is_empty() {
                        "none".to_owned()
                    } else {
                        ids.iter()
                            .map(|n| n.0.to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    }
                };
                let _ = reply.send(Err(Refusal::Conflict(format!(
                    "node {id} is not a member (voters: {}; learners: {})",
                    list(&m.voters),
                    list(&m.learners)
                ))));
                return;
            }
        }
        // A change already in force answers at once: a retried call (after
        // an unknown outcome) must not fail for having succeeded.
        let in_force = match &change {
            ConfChange::AddLearner { id, addr } => {
                m.is_learner(*id) && (addr.is_empty() || m.addrs.get(id) == Some(addr))
            }
            ConfChange::Promote { id } => m.is_voter(*id),
            ConfChange::Remove { id } => !m.is_member(*id),
        };
        if in_force {
            let status = self.node.status(now);
            let answer = if status.membership_index <= status.commit_index {
                Ok((LogIndex(0), status.membership))
            } else {
                Err(Refusal::RetryLater(format!(
                    "{change} is in force but its entry (index {}) has not committed yet",
                    status.membership_index
                )))
            };
            let _ = reply.send(answer);
            return;
        }
        match self.node.propose_conf_change(now, change.clone()) {
            Ok(index) => {
                bump(&self.metrics.conf_changes_proposed);
                self.dump.record(
                    raftkv_storage::DumpLevel::Info,
                    self.term,
                    &format!("membership change proposed at index {index}: {change}"),
                );
                if let Some(old) = self.conf_waiters.insert(index, reply) {
                    let _ = old.send(Err(Refusal::NotLeader {
                        leader: None,
                        outcome_unknown: true,
                    }));
                }
            }
            Err(e) => {
                let _ = reply.send(Err(conf_refusal(e)));
            }
        }
    }

    /// Answers transfer calls whose outcome is known.
    fn check_transfers(&mut self) {
        if self.transfer_waiters.is_empty() {
            return;
        }
        let now = self.clock.now();
        let (role, leader, target) = (
            self.node.role(),
            self.node.leader(),
            self.node.transfer_target(),
        );
        let waiters = std::mem::take(&mut self.transfer_waiters);
        for w in waiters {
            let outcome = if role != Role::Leader {
                match leader {
                    Some(l) if l == w.to => Some(Ok(l)),
                    Some(l) => Some(Err(Refusal::Conflict(format!(
                        "leadership went to node {l}, not node {}",
                        w.to
                    )))),
                    None => None,
                }
            } else if target != Some(w.to) {
                Some(Err(Refusal::Conflict(format!(
                    "node {} did not take over in time; node {} still leads",
                    w.to, self.id
                ))))
            } else {
                None
            };
            let outcome = outcome.or_else(|| {
                (now >= w.deadline).then(|| {
                    Err(Refusal::Conflict(format!(
                        "no outcome of the transfer to node {} yet",
                        w.to
                    )))
                })
            });
            match outcome {
                Some(answer) => {
                    let _ = w.reply.send(answer);
                }
                None => self.transfer_waiters.push(w),
            }
        }
    }

    fn stale_answer(&self, now: MonoTime, key: &str) -> StaleAnswer {
        let status = self.node.status(now);
        let since_leader_contact = match status.role {
            raftkv_core::Role::Leader => None,
            _ => self.last_leader_contact.map(|t| now.saturating_since(t)),
        };
        StaleAnswer {
            value: self.node.read_stale(key),
            applied: status.applied_index,
            commit: status.commit_index,
            since_leader_contact,
        }
    }

    /// Takes Readies while there is work and room in the storage pipeline.
    fn advance(&mut self) {
        while self.inflight_jobs < MAX_INFLIGHT_JOBS
            && self.failed.is_none()
            && self.node.has_ready()
        {
            let mut ready = self.node.ready();
            // Before anything this Ready holds leaves: its messages now,
            // its client answers after the fsync.
            self.publisher.publish(&self.node);
            if self.node.membership() != &self.membership {
                self.membership = self.node.membership().clone();
                self.transport.set_membership(&self.membership);
            }
            for msg in ready.messages.drain(..) {
                self.transport.send(msg);
            }
            if let Some(hs) = ready.hard_state {
                self.term = hs.term;
                self.transport.set_term(hs.term);
            }
            for event in ready.events.drain(..) {
                self.record_event(&event);
            }
            // Client answers depend on commits, and the core counts a copy
            // (its own included) only once durable: a Ready with nothing to
            // persist and no message promising durability need not queue
            // behind this node's pending fsyncs. Its hard state can only be
            // a new commit index, which is saved lazily anyway: it rides
            // with the next Ready that goes to disk.
            let needs_disk = ready.must_sync
                || !ready.entries.is_empty()
                || !ready.snapshots.is_empty()
                || !ready.persisted_messages.is_empty();
            if !needs_disk {
                if let Some(hs) = ready.hard_state.take() {
                    self.unsaved_commit = Some(hs);
                }
                self.finish(ready);
            } else {
                match ready.hard_state {
                    Some(_) => self.unsaved_commit = None,
                    None => ready.hard_state = self.unsaved_commit.take(),
                }
                if self.persist_in_line(&ready) {
                    match self.storage.persist_inline(&ready) {
                        Ok(()) => self.finish(ready),
                        Err(e) => self.storage_failed(e),
                    }
                } else {
                    self.inflight_jobs += 1;
                    if let Err(e) = self.storage.submit(Job::Persist(ready)) {
                        self.failed = Some(e);
                    }
                }
            }
        }
    }

    /// Whether to persist `ready` on this thread rather than the storage
    /// thread: on a one-thread runtime, when this node is not the leader,
    /// no job is in flight (order) and `ready` holds no snapshot. A
    /// follower's append waits for its fsync anyway (its acknowledgement
    /// goes out after it), and the hand-off to the storage thread and back
    /// costs two thread wake-ups on a write's critical path; blocking the
    /// runtime for the fsync delays only what this follower would do
    /// meanwhile, and what arrives meanwhile shares the next fsync. A
    /// leader keeps the storage thread: it sends AppendEntries while its
    /// own fsync runs.
    fn persist_in_line(&self, ready: &Ready) -> bool {
        self.inline_persist
            && self.inflight_jobs == 0
            && ready.snapshots.is_empty()
            && self.node.role() != Role::Leader
    }

    fn on_done(&mut self, done: Done) {
        if done.compaction_saved.is_none() {
            assert!(
                self.inflight_jobs > 0,
                "storage completion without a job in flight"
            );
            self.inflight_jobs -= 1;
        }
        match done.result {
            Ok(()) => match done.compaction_saved {
                Some(index) => {
                    bump(&self.metrics.snapshots_saved);
                    self.node.on_snapshot_saved(self.clock.now(), index);
                }
                None => self.finish(done.ready),
            },
            Err(e) => self.storage_failed(e),
        }
    }

    fn storage_failed(&mut self, e: String) {
        tracing::error!(node = %self.id, "storage failed, stopping: {e}");
        self.dump.record(
            raftkv_storage::DumpLevel::Error,
            self.term,
            &format!("storage failed: {e}"),
        );
        self.failed = Some(e);
    }

    /// Steps 3-5 of the Ready contract, once the Ready is durable.
    fn finish(&mut self, mut ready: Ready) {
        let mark = ready.persist_mark();
        let compactions = raftkv_storage::saved_compactions(&ready);
        for msg in ready.persisted_messages.drain(..) {
            self.transport.send(msg);
        }
        if let Some((index, term)) = mark {
            self.node.on_persisted(self.clock.now(), index, term);
        }
        for _ in &ready.snapshots {
            bump(&self.metrics.snapshots_saved);
        }
        // Compactions are saved in the background and reported on their own
        // (`Done::compaction_saved`); any left in a Ready were saved inline.
        for index in compactions {
            self.node.on_snapshot_saved(self.clock.now(), index);
        }
        for result in ready.conf_change_results {
            let Some(waiter) = self.conf_waiters.remove(&result.index) else {
                continue;
            };
            let answer = match result.outcome {
                Ok(m) => Ok((result.index, m)),
                Err(WriteError::NotLeader(NotLeader { leader_hint })) => Err(Refusal::NotLeader {
                    leader: leader_hint,
                    outcome_unknown: true,
                }),
                Err(e) => Err(Refusal::Conflict(e.to_string())),
            };
            let _ = waiter.send(answer);
        }
        for result in ready.write_results {
            let Some(waiter) = self.write_waiters.remove(&result.index) else {
                continue;
            };
            let answer = match result.outcome {
                Ok(op) => Ok((result.index, op)),
                Err(WriteError::NotLeader(NotLeader { leader_hint })) => Err(Refusal::NotLeader {
                    leader: leader_hint,
                    outcome_unknown: true,
                }),
                Err(WriteError::StaleSequence) => Err(Refusal::StaleSequence),
            };
            let _ = waiter.send(answer);
        }
        for result in ready.read_results {
            let Some(waiter) = self.read_waiters.remove(&result.id) else {
                continue;
            };
            let _ = waiter.send(result.outcome.map_err(read_refusal));
        }
    }

    fn record_event(&self, event: &Event) {
        tracing::debug!(node = %self.id, term = %self.term, "{event}");
        self.dump.record_event(self.term, event);
    }

    /// Clean shutdown: let the storage thread finish every job, save the
    /// latest hard state with the commit index, and stop it.
    async fn stop(mut self) -> Result<(), String> {
        while self.inflight_jobs > 0 && self.failed.is_none() {
            match self.done_rx.recv().await {
                Some(done) => self.on_done(done),
                None => break,
            }
        }
        for (_, w) in self.write_waiters.drain() {
            let _ = w.send(Err(Refusal::Stopping));
        }
        for (_, w) in self.read_waiters.drain() {
            let _ = w.send(Err(Refusal::Stopping));
        }
        for (_, w) in self.conf_waiters.drain() {
            let _ = w.send(Err(Refusal::Stopping));
        }
        for w in self.transfer_waiters.drain(..) {
            let _ = w.reply.send(Err(Refusal::Stopping));
        }
        let status = self.node.status(self.clock.now());
        let hs = HardState {
            term: status.term,
            voted_for: status.voted_for,
            commit: status.commit_index,
            repair: self.node.repairing(),
        };
        let result = match self.failed.take() {
            Some(e) => Err(e),
            None => self.storage.close(hs).await,
        };
        self.dump
            .record(raftkv_storage::DumpLevel::Info, self.term, &"node stopped");
        self.dump.flush();
        result
    }
}

fn propose_refusal(e: ProposeError) -> Refusal {
    match e {
        ProposeError::NotLeader(NotLeader { leader_hint }) => Refusal::NotLeader {
            leader: leader_hint,
            outcome_unknown: false,
        },
        ProposeError::TooManyPending { .. } => Refusal::Busy(e.to_string()),
        ProposeError::KeyTooLarge { .. } | ProposeError::ValueTooLarge { .. } => {
            Refusal::Invalid(e.to_string())
        }
        ProposeError::TransferInProgress { .. } => Refusal::RetryLater(e.to_string()),
    }
}

fn conf_refusal(e: ConfChangeError) -> Refusal {
    match e {
        ConfChangeError::NotLeader(NotLeader { leader_hint }) => Refusal::NotLeader {
            leader: leader_hint,
            outcome_unknown: false,
        },
        ConfChangeError::LeaderNotReady => Refusal::RetryLater(e.to_string()),
        ConfChangeError::InProgress(_)
        | ConfChangeError::TransferInProgress
        | ConfChangeError::LearnerBehind { .. } => Refusal::Conflict(e.to_string()),
        ConfChangeError::Invalid { .. } => Refusal::Invalid(e.to_string()),
    }
}

fn transfer_refusal(e: TransferError) -> Refusal {
    match e {
        TransferError::NotLeader(NotLeader { leader_hint }) => Refusal::NotLeader {
            leader: leader_hint,
            outcome_unknown: false,
        },
        TransferError::NotAVoter(_) => Refusal::Invalid(e.to_string()),
        TransferError::AlreadyLeader(_) | TransferError::InProgress(_) => {
            Refusal::Conflict(e.to_string())
        }
    }
}

fn read_refusal(e: ReadError) -> Refusal {
    match e {
        ReadError::NotLeader(NotLeader { leader_hint }) => Refusal::NotLeader {
            leader: leader_hint,
            outcome_unknown: false,
        },
        ReadError::TooManyPendingReads { .. } => Refusal::Busy(e.to_string()),
        ReadError::KeyTooLarge { .. } => Refusal::Invalid(e.to_string()),
    }
}
