//! The simulator's side of the shared driver (`raftkv_driver`): each node's
//! simulated disk (the server's storage worker on simulated time), and the
//! [`Host`] through which the driver reaches the simulated network, trace
//! and clients.
//!
//! A driver call runs with a [`SimHost`] that borrows only the node's disk:
//! what the driver sends, records or answers is buffered ([`Out`], and the
//! answers' outbox) and handed to the cluster when the call returns, in
//! order. What must be judged at the moment it happens is judged then: a
//! message that promises durability is checked against the disk as it is
//! sent ([`durable_promise_broken`]).

use std::cell::RefCell;
use std::rc::Rc;

use raftkv_core::{
    ConfChangeResult, Entry, EntryPayload, Event, LogIndex, Membership, Message, MessageBody,
    MonoTime, NodeId, RaftNode, Ready, Snapshot, Term,
};
use raftkv_driver::{Host, Job, Reply, Step, StorageWorker, Waiters};
use raftkv_storage::{MemStorage, Storage};

use crate::client::{Resp, ServedKind};

/// A node's disk: the storage worker and the step it is running (written,
/// waiting for its fsync).
pub(crate) struct SimDisk {
    pub(crate) worker: StorageWorker<MemStorage>,
    /// A wake-up of the storage thread is scheduled or a step runs.
    pub(crate) busy: bool,
    pub(crate) step: Option<Step>,
}

impl SimDisk {
    pub(crate) fn new(storage: MemStorage) -> SimDisk {
        SimDisk {
            worker: StorageWorker::new(storage),
            busy: false,
            step: None,
        }
    }

    pub(crate) fn storage(&self) -> &MemStorage {
        self.worker.storage()
    }

    pub(crate) fn storage_mut(&mut self) -> &mut MemStorage {
        self.worker.storage_mut()
    }

    /// A crash: unsynced writes are lost, queued jobs and the running step
    /// with them.
    pub(crate) fn crash(&mut self) {
        self.worker.storage_mut().crash();
        self.worker.clear();
        self.step = None;
        self.busy = false;
    }
}

/// An answer to a simulated client, from a driver waiter.
pub(crate) struct Answered {
    pub(crate) node: usize,
    pub(crate) client: usize,
    pub(crate) attempt: u64,
    pub(crate) resp: Resp,
    /// What served it (for the lease checks), if it was served.
    pub(crate) served: Option<ServedKind>,
    /// A refusal a valid request must never get.
    pub(crate) wrong: Option<String>,
}

pub(crate) type Outbox = Rc<RefCell<Vec<Answered>>>;

/// A simulated client's waiter.
pub(crate) struct SimReply<A>(Box<dyn FnOnce(A)>);

impl<A> Reply<A> for SimReply<A> {
    fn reply(self, answer: A) {
        (self.0)(answer)
    }
}

impl<A: 'static> SimReply<A> {
    pub(crate) fn new(f: impl FnOnce(A) + 'static) -> SimReply<A> {
        SimReply(Box::new(f))
    }
}

pub(crate) struct SimWaiters;

impl Waiters for SimWaiters {
    type Reply<A: 'static> = SimReply<A>;
}

pub(crate) type SimDriver = raftkv_driver::Driver<SimWaiters>;

/// What a driver call produced, for the cluster to carry out in order.
pub(crate) enum Out {
    Send(Message),
    Event(Event),
    Note(String),
    /// A Ready was taken: what the invariant checks need of it.
    Observed(Observed),
    /// A job was queued on the disk: wake the storage thread if idle.
    Kick,
    /// A Ready was persisted in line: the node's thread is blocked for the
    /// fsync.
    Stall,
    StorageFailed(String),
    /// A broken promise (see [`durable_promise_broken`]).
    Violation(String),
}

pub(crate) struct Observed {
    /// Configuration entries appended (for "one change at a time").
    pub(crate) config_entries: Vec<Entry>,
    /// Snapshots handed out, for the check against the committed history.
    pub(crate) snapshots: Vec<Snapshot>,
    /// Commits to record first, reading compacted entries from storage up
    /// to this index (set when the Ready holds snapshots).
    pub(crate) record_commits_upto: Option<LogIndex>,
    pub(crate) conf_results: Vec<ConfChangeResult>,
}

pub(crate) struct SimHost<'a> {
    pub(crate) id: NodeId,
    pub(crate) now: MonoTime,
    /// See `ClusterConfig::check_durable_promises`.
    pub(crate) check_promises: bool,
    pub(crate) disk: &'a mut SimDisk,
    pub(crate) out: Vec<Out>,
}

impl Host for SimHost<'_> {
    fn now(&self) -> MonoTime {
        self.now
    }
    fn send(&mut self, msg: Message) {
        let broken = || durable_promise_broken(self.disk.storage(), &msg);
        if let Some(p) = self.check_promises.then(broken).flatten() {
            self.out.push(Out::Violation(format!(
                "persist before send: node {} sent {p}",
                self.id
            )));
        }
        self.out.push(Out::Send(msg));
    }
    fn submit(&mut self, ready: Ready) -> Result<(), String> {
        self.disk.worker.push(Job::Persist(ready));
        self.out.push(Out::Kick);
        Ok(())
    }
    fn persist_inline(&mut self, ready: &Ready) -> Result<(), String> {
        let result = self.disk.worker.persist_inline(ready);
        self.out.push(Out::Stall);
        result
    }
    fn event(&mut self, _term: Term, event: &Event) {
        self.out.push(Out::Event(event.clone()));
    }
    fn note(&mut self, _term: Term, what: &str) {
        self.out.push(Out::Note(what.to_owned()));
    }
    fn observe(&mut self, _node: &RaftNode, ready: &Ready) {
        let record_commits_upto = (!ready.snapshots.is_empty()).then(|| {
            // The core may commit and compact in one step: record its
            // commits while storage still holds the entries. Entries the
            // core dropped from memory were durable, so storage holds them
            // as committed, beyond the compaction's index too. (An
            // installed snapshot may cover stale ones: read none.)
            if ready
                .snapshots
                .iter()
                .all(|w| w.origin == raftkv_core::SnapshotOrigin::Compaction)
            {
                self.disk.storage().last_index()
            } else {
                LogIndex::ZERO
            }
        });
        self.out.push(Out::Observed(Observed {
            config_entries: ready
                .entries
                .iter()
                .filter(|e| config_of(e).is_some())
                .cloned()
                .collect(),
            snapshots: ready.snapshots.iter().map(|w| w.snapshot.clone()).collect(),
            record_commits_upto,
            conf_results: ready.conf_change_results.clone(),
        }));
    }
    fn storage_failed(&mut self, _term: Term, error: &str) {
        self.out.push(Out::StorageFailed(error.to_owned()));
    }
}

/// A granted vote or a successful append acknowledgement promises durable
/// state: it may leave only once that state survives a crash.
pub(crate) fn durable_promise_broken(st: &MemStorage, m: &Message) -> Option<String> {
    match &m.body {
        MessageBody::RequestVoteResponse(r) if r.granted && !r.pre_vote => {
            // A later durable term covers the vote too: the node can never
            // vote in the vote's term again. (A driver turn may grant a vote
            // and move to a higher term before its Ready.)
            let hs = st.hard_state();
            let covered = hs.term > m.term || (hs.term == m.term && hs.voted_for == Some(m.to));
            (!covered).then(|| {
                format!(
                    "a vote for node {} in term {} while its durable hard state is {hs:?}",
                    m.to, m.term
                )
            })
        }
        MessageBody::AppendEntriesResponse(r) if r.success && r.match_index > LogIndex::ZERO => {
            // Cheap when nothing is waiting for a sync; otherwise look at
            // what a crash would leave.
            (st.has_unsynced() && durable_last(st) < r.match_index).then(|| {
                format!(
                    "an acknowledgement of index {} that is not durable",
                    r.match_index
                )
            })
        }
        MessageBody::InstallSnapshotResponse(r) if r.installed => {
            (durable_last(st) < r.snapshot_index).then(|| {
                format!(
                    "an acknowledgement of snapshot {} that is not durable",
                    r.snapshot_index
                )
            })
        }
        _ => None,
    }
}

/// The last index a crash would leave in `st` (snapshot and synced log).
pub(crate) fn durable_last(st: &MemStorage) -> LogIndex {
    st.durable_last_index()
}

/// The entry at `index` in `st`'s log as the node sees it, if held.
pub(crate) fn stored_entry(st: &MemStorage, index: LogIndex) -> Option<Entry> {
    if index < st.first_index() || index > st.last_index() {
        return None;
    }
    st.entries(index, index).ok()?.pop()
}

/// Entries of `e`'s payload that are configurations.
pub(crate) fn config_of(e: &Entry) -> Option<&Membership> {
    match &e.payload {
        EntryPayload::Config(m) => Some(m),
        _ => None,
    }
}
