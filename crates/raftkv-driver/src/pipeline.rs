//! The Ready pipeline: [`Driver::advance`] is the one function that orders
//! what leaves a node — publish, send, persist, acknowledge, answer.
//!
//! For each `Ready` the core hands out:
//! 1. **publish** the lease-read view (`lease_view.rs`), before anything the
//!    Ready holds can be seen outside;
//! 2. the host learns of a new configuration or term (its transport) and
//!    records the Ready's events;
//! 3. **send** `messages` at once: they promise nothing durable;
//! 4. **persist**: a Ready with entries, snapshots, a term or vote to save
//!    (`must_sync`) or `persisted_messages` goes to the storage worker
//!    (`storage_worker.rs`, in order, group commit), or on a follower is
//!    persisted in line ([`DriverOptions::inline_follower_persist`]); a
//!    Ready with none of these is finished at once, its commit index
//!    carried to the next Ready that goes to disk (the lazy commit save:
//!    client answers rest on commits, which count only durable copies);
//! 5. once durable ([`Driver::on_done`]): send `persisted_messages`, call
//!    `on_persisted` and `on_snapshot_saved`, answer the clients.
//!
//! At most [`DriverOptions::max_inflight_jobs`] Readies wait for the disk;
//! beyond that the driver takes no new Ready and inputs wait in the host
//! (back-pressure), piling up in the core to leave together.
//!
//! The server (`raftkv-server`'s `runtime.rs`) and the simulator
//! (`raftkv-sim`'s `cluster.rs`) both drive their nodes through this type;
//! they differ only in their [`Host`].

use std::collections::HashMap;
use std::time::Duration;

use raftkv_core::{
    ConfChange, Event, HardState, LogIndex, Membership, Message, MessageBody, MonoTime, NodeId,
    RaftNode, ReadId, ReadNow, Ready, Role, Term, TransferError, WriteError,
};

use crate::answers::*;
use crate::lease_view::{LeaseReads, Publisher};
use std::sync::Arc;

/// What differs between a real node and a simulated one.
pub trait Host {
    /// The node's monotonic clock.
    fn now(&self) -> MonoTime;
    /// Hand a message to the network.
    fn send(&mut self, msg: Message);
    /// Hand a Ready to the storage worker; its completion comes back through
    /// [`Driver::on_done`], in order.
    fn submit(&mut self, ready: Ready) -> Result<(), String>;
    /// Persist a Ready now, blocking the caller for the fsync.
    fn persist_inline(&mut self, ready: &Ready) -> Result<(), String>;
    /// A core event, with the term it happened in (for the trace).
    fn event(&mut self, term: Term, event: &Event);
    /// Something the driver did worth a line in the trace.
    fn note(&mut self, _term: Term, _what: &str) {}
    /// The configuration in force changed (the transport's peer set).
    fn membership_changed(&mut self, _membership: &Membership) {}
    /// The node's term changed.
    fn term_changed(&mut self, _term: Term) {}
    /// A counter moved.
    fn count(&mut self, _what: Count) {}
    /// Looks at each Ready as it is taken, before anything else (the
    /// simulator's checks).
    fn observe(&mut self, _node: &RaftNode, _ready: &Ready) {}
    /// Storage failed: the node stops (fail-stop).
    fn storage_failed(&mut self, _term: Term, _error: &str) {}
}

/// The driver's counters, for the host's metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Count {
    WriteProposed,
    ReadServed,
    ReadPending,
    ReadStale,
    ConfChangeProposed,
    SnapshotSaved,
    /// A linearizable or bounded read the core took, by the path it takes
    /// (counted besides `ReadServed` / `ReadPending`).
    Read(ReadPath),
}

/// How the core serves a read it is given (stale reads are
/// `Count::ReadStale`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadPath {
    /// At the leader, from memory under its lease.
    Lease,
    /// At the leader, after a ReadIndex round (no lease to serve it on).
    ReadIndex,
    /// At a follower: under its follower read lease, or refused.
    FollowerLease,
    /// A bounded-staleness read (`--max-staleness`), at any node.
    Bounded,
}

/// Ways to break the pipeline on purpose: negative controls for the
/// simulator's sweeps. All off in a real node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DriverKnobs {
    /// Send a Ready's append acknowledgements (`persisted_messages`) when
    /// it is taken, before the fsync that covers them.
    pub unsafe_ack_before_sync: bool,
    /// Send a Ready's granted votes when it is taken, before the term and
    /// vote they depend on are saved.
    pub unsafe_vote_before_save: bool,
    /// Answer a lease read the core served without republishing the view
    /// first.
    pub unsafe_late_publish: bool,
}

#[derive(Clone, Copy, Debug)]
pub struct DriverOptions {
    /// Readies waiting for the disk before the driver takes no more.
    pub max_inflight_jobs: usize,
    /// A follower persists a Ready on the caller's thread when nothing is
    /// in flight and it holds no snapshot: its acknowledgement waits for the
    /// fsync anyway, and the hand-off to the storage thread and back costs
    /// two thread wake-ups on a write's critical path (docs/server.md). A
    /// leader keeps the worker: it sends AppendEntries while its own fsync
    /// runs.
    pub inline_follower_persist: bool,
    pub knobs: DriverKnobs,
}

impl Default for DriverOptions {
    fn default() -> Self {
        DriverOptions {
            max_inflight_jobs: 4,
            inline_follower_persist: false,
            knobs: DriverKnobs::default(),
        }
    }
}

/// A waiter whose log index another proposal took: the entry it waited
/// for was replaced without a result, so its fate is unknown to this node.
fn replaced<A>(old: Option<impl Reply<Result<A, Refusal>>>) {
    if let Some(old) = old {
        old.reply(Err(Refusal::NotLeader {
            leader: None,
            outcome_unknown: true,
        }));
    }
}

/// A transfer call waiting for the target to lead.
struct TransferWaiter<R> {
    to: NodeId,
    deadline: MonoTime,
    reply: R,
}

/// The driver of one node. See the module docs.
pub struct Driver<W: Waiters> {
    opts: DriverOptions,
    id: NodeId,
    publisher: Publisher,
    inflight_jobs: usize,
    /// A commit index not yet handed to storage (see [`Driver::advance`]).
    unsaved_commit: Option<HardState>,
    /// The configuration the host was last told about.
    membership: Membership,
    term: Term,
    failed: Option<String>,
    /// Proposals waiting for their entry to apply, by log index.
    write_waiters: HashMap<LogIndex, W::Reply<WriteAnswer>>,
    read_waiters: HashMap<ReadId, W::Reply<ReadAnswer>>,
    /// Membership changes waiting to commit, by log index.
    conf_waiters: HashMap<LogIndex, W::Reply<ConfAnswer>>,
    transfer_waiters: Vec<TransferWaiter<W::Reply<TransferAnswer>>>,
    next_read_id: u64,
    /// When an AppendEntries last arrived (for stale-read staleness).
    last_leader_contact: Option<MonoTime>,
}

impl<W: Waiters> Driver<W> {
    /// A driver for `node`, publishing its lease-read view to `lease_reads`.
    pub fn new(
        node: &RaftNode,
        now: MonoTime,
        lease_reads: Arc<LeaseReads>,
        opts: DriverOptions,
    ) -> Driver<W> {
        let status = node.status(now);
        Driver {
            opts,
            id: status.id,
            publisher: Publisher::new(lease_reads),
            inflight_jobs: 0,
            unsaved_commit: None,
            membership: status.membership,
            term: status.term,
            failed: None,
            write_waiters: HashMap::new(),
            read_waiters: HashMap::new(),
            conf_waiters: HashMap::new(),
            transfer_waiters: Vec::new(),
            next_read_id: 1,
            last_leader_contact: None,
        }
    }

    /// The storage failure that stopped this node, if any.
    pub fn failed(&self) -> Option<&str> {
        self.failed.as_deref()
    }

    /// Readies handed to the storage worker and not back yet.
    pub fn inflight_jobs(&self) -> usize {
        self.inflight_jobs
    }

    pub fn membership(&self) -> &Membership {
        &self.membership
    }

    pub fn lease_reads(&self) -> &Arc<LeaseReads> {
        self.publisher.shared()
    }

    // ----- inputs -----------------------------------------------------------

    /// A message from a peer.
    pub fn step(&mut self, node: &mut RaftNode, host: &mut impl Host, msg: Message) {
        let now = host.now();
        if matches!(
            msg.body,
            MessageBody::AppendEntries(_) | MessageBody::InstallSnapshot(_)
        ) {
            self.last_leader_contact = Some(now);
        }
        node.step(now, msg);
    }

    /// A timer tick.
    pub fn tick(&mut self, node: &mut RaftNode, host: &mut impl Host) {
        node.tick(host.now());
    }

    /// The end of a turn (inputs stepped): take the Readies, answer
    /// transfers whose outcome is known, publish the view.
    pub fn end_turn(&mut self, node: &mut RaftNode, host: &mut impl Host) {
        self.advance(node, host);
        if !self.transfer_waiters.is_empty() {
            self.check_transfers(node, host.now());
        }
        // Also after steps that left no Ready (or none taken yet).
        self.publisher.publish(node);
    }

    /// A client request.
    pub fn request(
        &mut self,
        node: &mut RaftNode,
        host: &mut impl Host,
        req: Request<W>,
    ) -> Accepted {
        let now = host.now();
        match req {
            Request::Propose { cmd, reply } => match node.propose(now, cmd) {
                Ok(index) => {
                    host.count(Count::WriteProposed);
                    replaced(self.write_waiters.insert(index, reply));
                    Accepted::Pending
                }
                Err(e) => {
                    reply.reply(Err(propose_refusal(e)));
                    Accepted::Refused
                }
            },
            Request::Read {
                key,
                max_staleness,
                reply,
            } => {
                let id = ReadId(self.next_read_id);
                self.next_read_id += 1;
                let leading = node.role() == raftkv_core::Role::Leader;
                let asked = match max_staleness {
                    None => node.read(now, id, key),
                    Some(bound) => node.read_bounded(now, id, key, bound),
                };
                if let Ok(taken) = &asked {
                    let path = match (max_staleness, leading, taken) {
                        (Some(_), _, _) => ReadPath::Bounded,
                        (None, false, _) => ReadPath::FollowerLease,
                        (None, true, ReadNow::Served(_)) => ReadPath::Lease,
                        (None, true, ReadNow::Pending) => ReadPath::ReadIndex,
                    };
                    host.count(Count::Read(path));
                }
                match asked {
                    Ok(ReadNow::Served(value)) => {
                        host.count(Count::ReadServed);
                        // The core may have applied writes this turn that
                        // the published view lacks: publish before this
                        // answer shows them, or a later read of the view
                        // could return an older value than this one.
                        if !self.opts.knobs.unsafe_late_publish {
                            self.publisher.publish(node);
                        }
                        reply.reply(Ok(value));
                        Accepted::Served
                    }
                    Ok(ReadNow::Pending) => {
                        host.count(Count::ReadPending);
                        self.read_waiters.insert(id, reply);
                        Accepted::Pending
                    }
                    Err(e) => {
                        reply.reply(Err(read_refusal(e)));
                        Accepted::Refused
                    }
                }
            }
            Request::ReadStale { key, reply } => {
                host.count(Count::ReadStale);
                // Not needed for linearizability (a stale read promises
                // nothing), but a client that saw a value here should not
                // then get an older one from a linearizable read.
                self.publisher.publish(node);
                reply.reply(self.stale_answer(node, now, &key));
                Accepted::Served
            }
            Request::Status { reply } => {
                let keys = node.kv().len() as u64;
                reply.reply((node.status(now), keys));
                Accepted::Served
            }
            Request::ConfChange { change, reply } => {
                self.conf_change(node, host, now, change, reply)
            }
            Request::Transfer { to, reply } => match node.transfer_leadership(now, to) {
                Ok(()) => {
                    let wait = node.config().election_timeout_max * 3;
                    self.transfer_waiters.push(TransferWaiter {
                        to,
                        deadline: now + wait,
                        reply,
                    });
                    Accepted::Pending
                }
                Err(TransferError::AlreadyLeader(id)) => {
                    reply.reply(Ok(id));
                    Accepted::Served
                }
                Err(e) => {
                    reply.reply(Err(transfer_refusal(e)));
                    Accepted::Refused
                }
            },
            Request::LearnZone { id, zone } => {
                node.learn_zone(id, &zone);
                Accepted::Served
            }
        }
    }

    fn conf_change(
        &mut self,
        node: &mut RaftNode,
        host: &mut impl Host,
        now: MonoTime,
        change: ConfChange,
        reply: W::Reply<ConfAnswer>,
    ) -> Accepted {
        if node.role() != Role::Leader {
            reply.reply(Err(Refusal::NotLeader {
                leader: node.leader(),
                outcome_unknown: false,
            }));
            return Accepted::Refused;
        }
        let m = node.membership();
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
                reply.reply(Err(Refusal::Conflict(format!(
                    "node {id} is not a member (voters: {}; learners: {})",
                    list(&m.voters),
                    list(&m.learners)
                ))));
                return Accepted::Refused;
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
            ConfChange::Place(p) => m.placement.as_ref() == Some(p),
        };
        if in_force {
            let status = node.status(now);
            let answer = if status.membership_index <= status.commit_index {
                Ok((LogIndex(0), status.membership))
            } else {
                Err(Refusal::RetryLater(format!(
                    "{change} is in force but its entry (index {}) has not committed yet",
                    status.membership_index
                )))
            };
            reply.reply(answer);
            return Accepted::Served;
        }
        match node.propose_conf_change(now, change.clone()) {
            Ok(index) => {
                host.count(Count::ConfChangeProposed);
                host.note(
                    self.term,
                    &format!("membership change proposed at index {index}: {change}"),
                );
                replaced(self.conf_waiters.insert(index, reply));
                Accepted::Pending
            }
            Err(e) => {
                reply.reply(Err(conf_refusal(e)));
                Accepted::Refused
            }
        }
    }

    /// Answers transfer calls whose outcome is known.
    fn check_transfers(&mut self, node: &RaftNode, now: MonoTime) {
        if self.transfer_waiters.is_empty() {
            return;
        }
        let (role, leader, target) = (node.role(), node.leader(), node.transfer_target());
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
                Some(answer) => w.reply.reply(answer),
                None => self.transfer_waiters.push(w),
            }
        }
    }

    fn stale_answer(&self, node: &RaftNode, now: MonoTime, key: &str) -> StaleAnswer {
        let status = node.status(now);
        let since_leader_contact: Option<Duration> = match status.role {
            Role::Leader => None,
            _ => self.last_leader_contact.map(|t| now.saturating_since(t)),
        };
        StaleAnswer {
            value: node.read_stale(key),
            applied: status.applied_index,
            commit: status.commit_index,
            since_leader_contact,
        }
    }

    // ----- the pipeline -----------------------------------------------------

    /// Takes Readies while there is work and room in the storage pipeline,
    /// and orders what each holds (see the module docs).
    pub fn advance(&mut self, node: &mut RaftNode, host: &mut impl Host) {
        while self.inflight_jobs < self.opts.max_inflight_jobs
            && self.failed.is_none()
            && node.has_ready()
        {
            let mut ready = node.ready();
            host.observe(node, &ready);
            // 1. Before anything this Ready holds leaves: its messages now,
            //    its client answers after the fsync.
            self.publisher.publish(node);
            // 2. The host's view of the node, and the trace.
            if node.membership() != &self.membership {
                self.membership = node.membership().clone();
                host.membership_changed(&self.membership);
            }
            if let Some(hs) = ready.hard_state {
                if hs.term != self.term {
                    self.term = hs.term;
                    host.term_changed(hs.term);
                }
            }
            for event in ready.events.drain(..) {
                host.event(self.term, &event);
            }
            // 3. Messages that promise nothing durable.
            for msg in ready.messages.drain(..) {
                host.send(msg);
            }
            self.break_rules_on_purpose(host, &mut ready);
            // 4. Persist. A Ready with nothing to persist and no message
            //    promising durability need not queue behind this node's
            //    pending fsyncs: its answers depend on commits, and the core
            //    counts a copy (its own included) only once durable. Its hard
            //    state can only be a new commit index, which is saved lazily
            //    anyway: it rides with the next Ready that goes to disk.
            let needs_disk = ready.must_sync
                || !ready.entries.is_empty()
                || !ready.snapshots.is_empty()
                || !ready.persisted_messages.is_empty();
            if !needs_disk {
                if let Some(hs) = ready.hard_state.take() {
                    self.unsaved_commit = Some(hs);
                }
                self.finish(node, host, ready);
                continue;
            }
            match ready.hard_state {
                Some(_) => self.unsaved_commit = None,
                None => ready.hard_state = self.unsaved_commit.take(),
            }
            if self.persist_in_line(node, &ready) {
                match host.persist_inline(&ready) {
                    Ok(()) => self.finish(node, host, ready),
                    Err(e) => self.storage_failed(host, e),
                }
            } else {
                self.inflight_jobs += 1;
                if let Err(e) = host.submit(ready) {
                    self.storage_failed(host, e);
                }
            }
        }
    }

    fn persist_in_line(&self, node: &RaftNode, ready: &Ready) -> bool {
        self.opts.inline_follower_persist
            && self.inflight_jobs == 0
            && ready.snapshots.is_empty()
            && node.role() != Role::Leader
    }

    /// The negative controls of [`DriverKnobs`]: promises sent before the
    /// disk holds what they promise.
    fn break_rules_on_purpose(&self, host: &mut impl Host, ready: &mut Ready) {
        let knobs = self.opts.knobs;
        if !knobs.unsafe_ack_before_sync && !knobs.unsafe_vote_before_save {
            return;
        }
        let (early, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut ready.persisted_messages)
            .into_iter()
            .partition(|m| match &m.body {
                MessageBody::AppendEntriesResponse(_) | MessageBody::InstallSnapshotResponse(_) => {
                    knobs.unsafe_ack_before_sync
                }
                MessageBody::RequestVoteResponse(_) => knobs.unsafe_vote_before_save,
                _ => false,
            });
        ready.persisted_messages = keep;
        for m in early {
            host.send(m);
        }
    }

    /// A storage completion.
    pub fn on_done(
        &mut self,
        node: &mut RaftNode,
        host: &mut impl Host,
        done: crate::storage_worker::Done,
    ) {
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
                    host.count(Count::SnapshotSaved);
                    node.on_snapshot_saved(host.now(), index);
                }
                None => self.finish(node, host, done.ready),
            },
            Err(e) => self.storage_failed(host, e),
        }
    }

    fn storage_failed(&mut self, host: &mut impl Host, e: String) {
        host.storage_failed(self.term, &e);
        self.failed.get_or_insert(e);
    }

    /// Step 5, once the Ready is durable.
    fn finish(&mut self, node: &mut RaftNode, host: &mut impl Host, mut ready: Ready) {
        let mark = ready.persist_mark();
        let compactions = raftkv_storage::saved_compactions(&ready);
        for msg in ready.persisted_messages.drain(..) {
            host.send(msg);
        }
        if let Some((index, term)) = mark {
            node.on_persisted(host.now(), index, term);
        }
        for _ in &ready.snapshots {
            host.count(Count::SnapshotSaved);
        }
        // Compactions are saved in the background and reported on their own
        // (`Done::compaction_saved`); any left in a Ready were saved inline.
        for index in compactions {
            node.on_snapshot_saved(host.now(), index);
        }
        for result in ready.conf_change_results {
            let Some(waiter) = self.conf_waiters.remove(&result.index) else {
                continue;
            };
            let answer = match result.outcome {
                Ok(m) => Ok((result.index, m)),
                Err(e @ WriteError::NotLeader { .. }) => Err(write_refusal(e)),
                Err(e) => Err(Refusal::Conflict(e.to_string())),
            };
            waiter.reply(answer);
        }
        for result in ready.write_results {
            let Some(waiter) = self.write_waiters.remove(&result.index) else {
                continue;
            };
            waiter.reply(
                result
                    .outcome
                    .map(|op| (result.index, op))
                    .map_err(write_refusal),
            );
        }
        for result in ready.read_results {
            let Some(waiter) = self.read_waiters.remove(&result.id) else {
                continue;
            };
            waiter.reply(result.outcome.map_err(read_refusal));
        }
    }

    /// Stopping: withdraws the view and answers every waiter. Returns the
    /// hard state to save last (with the commit index); call once no job
    /// is in flight.
    pub fn stop(&mut self, node: &RaftNode, now: MonoTime) -> HardState {
        self.publisher.withdraw();
        for (_, w) in self.write_waiters.drain() {
            w.reply(Err(Refusal::Stopping));
        }
        for (_, w) in self.read_waiters.drain() {
            w.reply(Err(Refusal::Stopping));
        }
        for (_, w) in self.conf_waiters.drain() {
            w.reply(Err(Refusal::Stopping));
        }
        for w in self.transfer_waiters.drain(..) {
            w.reply.reply(Err(Refusal::Stopping));
        }
        let status = node.status(now);
        HardState {
            term: status.term,
            voted_for: status.voted_for,
            commit: status.commit_index,
            repair: node.repairing(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;

    use raftkv_core::testkit::set_cmd;
    use raftkv_core::{Config, Restored};

    use super::*;
    use crate::storage_worker::Done;

    /// Records what the driver hands out; answers land in `answers`.
    #[derive(Default)]
    struct TestHost {
        now: u64,
        sent: Vec<Message>,
        submitted: Vec<Ready>,
        inline: usize,
    }

    impl Host for TestHost {
        fn now(&self) -> MonoTime {
            MonoTime::from_nanos(self.now)
        }
        fn send(&mut self, msg: Message) {
            self.sent.push(msg);
        }
        fn submit(&mut self, ready: Ready) -> Result<(), String> {
            self.submitted.push(ready);
            Ok(())
        }
        fn persist_inline(&mut self, _: &Ready) -> Result<(), String> {
            self.inline += 1;
            Ok(())
        }
        fn event(&mut self, _: Term, _: &Event) {}
    }

    type Answers = Rc<RefCell<Vec<String>>>;

    struct Recorded<A>(Box<dyn FnOnce(A)>);

    impl<A> Reply<A> for Recorded<A> {
        fn reply(self, answer: A) {
            (self.0)(answer)
        }
    }

    struct TestWaiters;

    impl Waiters for TestWaiters {
        type Reply<A: 'static> = Recorded<A>;
    }

    fn recorded<A: std::fmt::Debug + 'static>(answers: &Answers) -> Recorded<A> {
        let answers = answers.clone();
        Recorded(Box::new(move |a: A| {
            answers.borrow_mut().push(format!("{a:?}"))
        }))
    }

    /// A one-node cluster whose node leads, its driver and host, with
    /// every Ready so far made durable.
    fn single_leader(opts: DriverOptions) -> (RaftNode, Driver<TestWaiters>, TestHost) {
        let cfg = Config::new(NodeId(1), vec![NodeId(1)]);
        let mut host = TestHost::default();
        let mut node = RaftNode::new(cfg, Restored::default(), host.now(), 7).unwrap();
        let mut driver: Driver<TestWaiters> =
            Driver::new(&node, host.now(), Arc::new(LeaseReads::new()), opts);
        for _ in 0..400 {
            host.now += 10_000_000;
            driver.tick(&mut node, &mut host);
            driver.end_turn(&mut node, &mut host);
            complete_all(&mut node, &mut driver, &mut host);
            if node.role() == Role::Leader && node.lease_read_view().is_some() {
                return (node, driver, host);
            }
        }
        panic!("no leader");
    }

    fn complete_all(node: &mut RaftNode, driver: &mut Driver<TestWaiters>, host: &mut TestHost) {
        while !host.submitted.is_empty() {
            for ready in std::mem::take(&mut host.submitted) {
                let done = Done {
                    ready,
                    result: Ok(()),
                    compaction_saved: None,
                };
                driver.on_done(node, host, done);
            }
            driver.end_turn(node, host);
        }
    }

    #[test]
    fn a_write_is_answered_only_once_its_ready_is_durable() {
        let (mut node, mut driver, mut host) = single_leader(DriverOptions::default());
        let answers = Answers::default();
        let req = Request::Propose {
            cmd: set_cmd(1, 1, "k", "v"),
            reply: recorded(&answers),
        };
        assert_eq!(driver.request(&mut node, &mut host, req), Accepted::Pending);
        driver.end_turn(&mut node, &mut host);
        assert_eq!(host.submitted.len(), 1, "the entry goes to the disk");
        assert!(answers.borrow().is_empty(), "no answer before the fsync");
        assert_eq!(driver.inflight_jobs(), 1);
        complete_all(&mut node, &mut driver, &mut host);
        assert_eq!(answers.borrow().len(), 1);
        assert!(
            answers.borrow()[0].starts_with("Ok("),
            "{:?}",
            answers.borrow()
        );
        assert_eq!(driver.inflight_jobs(), 0);
    }

    #[test]
    fn no_new_ready_is_taken_beyond_the_inflight_bound() {
        let opts = DriverOptions {
            max_inflight_jobs: 1,
            ..DriverOptions::default()
        };
        let (mut node, mut driver, mut host) = single_leader(opts);
        let answers = Answers::default();
        for seq in 1..=2 {
            let req = Request::Propose {
                cmd: set_cmd(1, seq, "k", "v"),
                reply: recorded(&answers),
            };
            driver.request(&mut node, &mut host, req);
            driver.end_turn(&mut node, &mut host);
        }
        assert_eq!(host.submitted.len(), 1, "the second waits in the core");
        assert!(node.has_ready());
        complete_all(&mut node, &mut driver, &mut host);
        assert_eq!(answers.borrow().len(), 2);
    }

    #[test]
    fn a_lease_read_served_by_the_core_is_published_before_its_answer() {
        for late in [false, true] {
            let opts = DriverOptions {
                knobs: DriverKnobs {
                    unsafe_late_publish: late,
                    ..DriverKnobs::default()
                },
                ..DriverOptions::default()
            };
            let (mut node, mut driver, mut host) = single_leader(opts);
            let view = driver.lease_reads().clone();
            let now = host.now();
            // A reader asked (so maps are published), then a write applies.
            assert_eq!(view.try_read(now, "k"), None);
            let answers = Answers::default();
            let req = Request::Propose {
                cmd: set_cmd(1, 1, "k", "v1"),
                reply: recorded(&answers),
            };
            driver.request(&mut node, &mut host, req);
            driver.end_turn(&mut node, &mut host);
            // Durable, but the turn that applies it has not ended: the core
            // answers the next read itself.
            for ready in std::mem::take(&mut host.submitted) {
                let done = Done {
                    ready,
                    result: Ok(()),
                    compaction_saved: None,
                };
                driver.on_done(&mut node, &mut host, done);
            }
            view.try_read(now, "k");
            let req = Request::Read {
                max_staleness: None,
                key: "k".into(),
                reply: recorded(&answers),
            };
            assert_eq!(driver.request(&mut node, &mut host, req), Accepted::Served);
            let from_view = view.try_read(host.now(), "k");
            if late {
                assert_ne!(from_view, Some(Some("v1".into())), "the control breaks it");
            } else {
                assert_eq!(from_view, Some(Some("v1".into())));
            }
        }
    }
}
