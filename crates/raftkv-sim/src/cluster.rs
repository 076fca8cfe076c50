//! The simulated cluster: real [`RaftNode`]s, each with a [`MemStorage`] and
//! its own clock, joined by a faulty network, driven by one event queue.
//!
//! Everything happens on one thread in the order of `(real time, sequence
//! number)`, and every random choice comes from one [`SimRng`], so a seed and
//! the same calls replay a run exactly.
//!
//! Each node is driven by the server's own driver (`raftkv_driver`): the
//! same code orders its publish, send, persist and answer steps, with the
//! simulator's [`Host`](raftkv_driver::Host) (`driver_host.rs`) in place of
//! sockets and files. Its storage worker runs on simulated time: a job
//! queued by the driver waits for the storage thread to wake, a group is
//! written (term and vote durable, entries appended but not synced), and
//! its fsync completes a latency later, while the node keeps stepping
//! inputs and queueing more. A crash in between loses the unsynced entries
//! ([`MemStorage::crash`]). Compaction snapshots are prepared in the
//! background and put in place later, in order with the other jobs; a
//! follower may persist in line (the server's one-thread runtime), blocking
//! its inputs for the fsync.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use std::sync::Arc;

use raftkv_core::{
    ClientCommand, ConfChange, ConfChangeError, ConfChangeResult, Config, Entry, Event, LogIndex,
    Membership, Message, MessageBody, MonoTime, NodeId, Placement, RaftNode, ReadId, Role,
    SnapshotWrite, Status, StepDownReason, Term, TransferError, UnsafeTestKnobs,
};
use raftkv_driver::{DriverKnobs, DriverOptions, Job, LeaseReads};

use raftkv_storage::identity::{self, start_voters, MembershipFlags};
use raftkv_storage::recovery::RecoveryOptions;
use raftkv_storage::{DiskFault, MemStorage, Storage};

use crate::client::{Req, Resp, Served, ServedKind, SimClient, Workload};
use crate::clock::Clock;
use crate::driver_host::{config_of, durable_last, Out, Outbox, SimDisk, SimDriver, SimHost};
use crate::rng::SimRng;
use crate::trace::{fmt_msg, fmt_real};

/// Message loss, duplication and delay. Delays are drawn per message in
/// `[delay_min, delay_max]`, so messages reorder whenever the range is wide.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetConfig {
    pub loss_ppm: u32,
    pub dup_ppm: u32,
    pub delay_min: Duration,
    pub delay_max: Duration,
}

impl NetConfig {
    /// A LAN: 0.5–2 ms, nothing lost.
    pub fn reliable() -> NetConfig {
        NetConfig {
            loss_ppm: 0,
            dup_ppm: 0,
            delay_min: Duration::from_micros(500),
            delay_max: Duration::from_millis(2),
        }
    }

    /// The 6.824 "unreliable" network: 10 % loss, long random delays.
    pub fn unreliable() -> NetConfig {
        NetConfig {
            loss_ppm: 100_000,
            dup_ppm: 20_000,
            delay_min: Duration::from_millis(1),
            delay_max: Duration::from_millis(27),
        }
    }
}

/// How simulated clients behave.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// One-way latency between a client and any node (clients reach every
    /// live node, whatever the partition between nodes).
    pub latency: Duration,
    /// An attempt with no answer by then is retried (same session and seq).
    pub attempt_timeout: Duration,
    /// Pause before retrying when no leader hint is known.
    pub retry_backoff: Duration,
    /// Give up on an operation after this long (its outcome is then unknown);
    /// `None` retries for ever.
    pub give_up_after: Option<Duration>,
    /// Chance (ppm) that an operation's first attempt goes to a random node
    /// rather than the presumed leader.
    pub wander_ppm: u32,
    /// Chance (ppm) that a GET's first attempt goes to the client's home
    /// node (a read lease holder when there are any), as a client in a
    /// region reads from the replica there.
    pub home_read_ppm: u32,
    /// Chance (ppm) that a GET is a bounded-staleness read, and its largest
    /// bound.
    pub bounded_read_ppm: u32,
    pub max_staleness_max: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            latency: Duration::from_micros(300),
            attempt_timeout: Duration::from_millis(1500),
            retry_backoff: Duration::from_millis(30),
            give_up_after: Some(Duration::from_secs(6)),
            wander_ppm: 0,
            home_read_ppm: 0,
            bounded_read_ppm: 0,
            max_staleness_max: Duration::from_millis(500),
        }
    }
}

/// Everything that defines a cluster, before any fault.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// The bootstrap voters: nodes `1..=nodes`.
    pub nodes: usize,
    /// Spare nodes `nodes+1..=nodes+spares`, started in join mode (no
    /// bootstrap voters): they wait as non-members until a leader adds them.
    pub spares: usize,
    pub seed: u64,
    pub heartbeat_interval: Duration,
    pub election_timeout_min: Duration,
    pub election_timeout_max: Duration,
    pub lease_duration: Duration,
    pub clock_drift_bound_ppm: u64,
    pub unsafe_test_knobs: UnsafeTestKnobs,
    /// F7: the nodes configured to hold follower read leases, and `D_read`.
    pub read_lease_nodes: BTreeSet<NodeId>,
    pub read_lease_duration: Duration,
    /// Leader placement by flags: the voters (by id, then zone) every node
    /// prefers as leader. `raftkv placement` changes (`ConfChange::Place`)
    /// join the membership mix on top.
    pub placement: Placement,
    /// Nodes run in zones (`zone_of`) and know each other's.
    pub zones: bool,
    /// Flow-control limits of the core (small values exercise back-pressure).
    pub max_entries_per_append: usize,
    pub max_inflight_appends: usize,
    pub max_pending_proposals: usize,
    pub max_pending_reads: usize,
    /// Snapshot settings of the core (small values: compaction and
    /// InstallSnapshot in every run).
    pub snapshot_threshold: u64,
    pub snapshot_keep_entries: u64,
    pub snapshot_chunk_bytes: usize,
    pub max_inflight_snapshot_chunks: usize,
    /// One clock per node; missing ones run exactly at real speed from 0.
    pub clocks: Vec<Clock>,
    /// How often each node's `tick` is called (real time).
    pub tick_interval: Duration,
    pub net: NetConfig,
    pub fsync_latency_min: Duration,
    pub fsync_latency_max: Duration,
    pub client: ClientConfig,
    /// Record a human-readable trace (costs time; the sweep leaves it off).
    pub trace: bool,
    /// Check log matching across all pairs of nodes this often.
    pub log_check_interval: Duration,
    /// Check at every lease read that a majority of voters protect the
    /// lease (see `invariants`). Negative-control tests that want the
    /// linearizability checker itself to see the stale read turn it off.
    pub check_lease_protection: bool,
    /// Negative control: a published lease-read view is never withdrawn
    /// and is served past its end.
    pub unsafe_stale_view: bool,
    /// Driver turns: when non-zero, a node that takes a peer message or a
    /// client request may hold its Readies (and so its published view) for
    /// up to this long, taking more inputs meanwhile, as the server's core
    /// task does within one turn; a lease read the core answers goes out at
    /// once, mid-turn.
    pub turn_hold_max: Duration,
    /// Negative control: a lease read answered by the core mid-turn does
    /// not republish the view first.
    pub unsafe_late_publish: bool,
    /// Followers persist in line when nothing is in flight (the server on a
    /// one-thread runtime): the node takes no input during the fsync.
    pub inline_follower_persist: bool,
    /// Negative control: the driver sends append acknowledgements before
    /// the fsync that covers them.
    pub unsafe_ack_before_sync: bool,
    /// Negative control: the driver sends granted votes before the term and
    /// vote are saved.
    pub unsafe_vote_before_save: bool,
    /// Chance (ppm) that a node crashes right after it sends a granted vote
    /// (before its storage thread wakes), and restarts 1–30 ms later: the
    /// schedule where a vote sent before it is saved is given twice.
    pub crash_after_vote_ppm: u32,
    /// Check durability promises as they are made: a message promising
    /// durable state against what a crash would leave when it is sent, and
    /// a leader's commit against the durable copies. Off, a broken promise
    /// runs on until it shows as lost writes or two leaders in a term.
    pub check_durable_promises: bool,
    /// Negative control: recovery cuts damaged lines that may have been
    /// synced as if they were a torn tail (no vote floor).
    pub unsafe_cut_damaged_tail: bool,
    /// Negative control: a restarted node takes its membership from its
    /// flags, not from its stored configuration.
    pub unsafe_config_from_flags: bool,
}

impl ClusterConfig {
    /// `nodes` nodes with the core's default timing, exact clocks, a
    /// reliable network and a fast disk.
    pub fn new(nodes: usize, seed: u64) -> ClusterConfig {
        let d = Config::new(NodeId(1), vec![NodeId(1)]);
        ClusterConfig {
            nodes,
            spares: 0,
            seed,
            heartbeat_interval: d.heartbeat_interval,
            election_timeout_min: d.election_timeout_min,
            election_timeout_max: d.election_timeout_max,
            lease_duration: d.lease_duration,
            clock_drift_bound_ppm: d.clock_drift_bound_ppm,
            unsafe_test_knobs: UnsafeTestKnobs::default(),
            read_lease_nodes: BTreeSet::new(),
            read_lease_duration: d.read_lease_duration,
            placement: Placement::default(),
            zones: false,
            max_entries_per_append: d.max_entries_per_append,
            max_inflight_appends: d.max_inflight_appends,
            max_pending_proposals: d.max_pending_proposals,
            max_pending_reads: d.max_pending_reads,
            snapshot_threshold: d.snapshot_threshold,
            snapshot_keep_entries: d.snapshot_keep_entries,
            snapshot_chunk_bytes: d.snapshot_chunk_bytes,
            max_inflight_snapshot_chunks: d.max_inflight_snapshot_chunks,
            clocks: Vec::new(),
            tick_interval: Duration::from_millis(5),
            net: NetConfig::reliable(),
            fsync_latency_min: Duration::from_micros(200),
            fsync_latency_max: Duration::from_millis(2),
            client: ClientConfig::default(),
            trace: false,
            log_check_interval: Duration::from_millis(250),
            check_lease_protection: true,
            unsafe_stale_view: false,
            turn_hold_max: Duration::ZERO,
            unsafe_late_publish: false,
            inline_follower_persist: false,
            unsafe_ack_before_sync: false,
            unsafe_vote_before_save: false,
            crash_after_vote_ppm: 0,
            check_durable_promises: true,
            unsafe_cut_damaged_tail: false,
            unsafe_config_from_flags: false,
        }
    }

    /// Every node id of the cluster: voters first, then spares.
    pub fn pool(&self) -> usize {
        self.nodes + self.spares
    }

    /// The core config of a bootstrap voter, or (for a spare) of a node in
    /// join mode.
    pub fn core_config(&self, id: NodeId) -> Config {
        self.core_config_for(id, id.0 > self.nodes as u64)
    }

    /// `joining`: start with no bootstrap voters (a spare, or a node wiped
    /// and re-added as a fresh one).
    pub fn core_config_for(&self, id: NodeId, joining: bool) -> Config {
        let voters = if joining {
            Vec::new()
        } else {
            (1..=self.nodes as u64).map(NodeId).collect()
        };
        let mut c = Config::new(id, voters);
        c.heartbeat_interval = self.heartbeat_interval;
        c.election_timeout_min = self.election_timeout_min;
        c.election_timeout_max = self.election_timeout_max;
        c.lease_duration = self.lease_duration;
        c.clock_drift_bound_ppm = self.clock_drift_bound_ppm;
        c.unsafe_test_knobs = self.unsafe_test_knobs;
        c.read_lease = self.read_lease_nodes.contains(&id);
        c.read_lease_duration = self.read_lease_duration;
        c.placement = self.placement.clone();
        c.zone = self.zones.then(|| zone_of(id));
        c.max_entries_per_append = self.max_entries_per_append;
        c.max_inflight_appends = self.max_inflight_appends;
        c.max_pending_proposals = self.max_pending_proposals;
        c.max_pending_reads = self.max_pending_reads;
        c.snapshot_threshold = self.snapshot_threshold;
        c.snapshot_keep_entries = self.snapshot_keep_entries;
        c.snapshot_chunk_bytes = self.snapshot_chunk_bytes;
        c.max_inflight_snapshot_chunks = self.max_inflight_snapshot_chunks;
        c
    }
}

/// The zone of node `id` in runs with zones: three zones, round robin.
pub fn zone_of(id: NodeId) -> String {
    format!("z{}", id.0 % 3)
}

/// What a test's message filter decides for one message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    /// The network's usual treatment (loss, delay, duplication).
    Deliver,
    Drop,
    /// Deliver exactly once after this delay, bypassing loss.
    Delay(Duration),
}

/// Sees every message a node sends (real time in ns, message).
pub type MessageFilter = Box<dyn FnMut(u64, &Message) -> Fate>;

/// An election won: (real ns, node, term).
pub type Election = (u64, NodeId, Term);

pub(crate) enum Ev {
    Deliver(Message),
    Tick(usize),
    /// The storage thread wakes: it begins the next step (writes a group).
    StorageWake {
        node: usize,
        incarnation: u64,
    },
    /// The running step's fsync completes: its Readies go back to the
    /// driver.
    SyncDone {
        node: usize,
        incarnation: u64,
    },
    ClientReq {
        node: usize,
        client: usize,
        attempt: u64,
        req: Req,
    },
    ClientResp {
        client: usize,
        attempt: u64,
        resp: Resp,
    },
    ClientTimeout {
        client: usize,
        attempt: u64,
    },
    ClientRetry {
        client: usize,
        attempt: u64,
    },
    ClientThink {
        client: usize,
    },
    LogCheck,
    /// A crash right after a granted vote (`crash_after_vote_ppm`).
    CrashNow {
        node: usize,
        incarnation: u64,
    },
    RestartNow {
        node: usize,
        incarnation: u64,
    },
    /// The end of a held driver turn: take the node's Readies.
    TurnEnd {
        node: usize,
        incarnation: u64,
    },
    /// A compaction snapshot prepared in the background: queued on the
    /// disk to be put in place. Lost if the node crashes first.
    SnapshotPrepared {
        node: usize,
        incarnation: u64,
        job: Job<SnapshotWrite>,
    },
}

/// What the membership and snapshot machinery did during a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MixCounts {
    /// Membership changes committed (reported `Ok` to the proposer).
    pub conf_committed: u64,
    /// Compaction snapshots taken, and snapshots installed from a leader.
    pub snapshots_taken: u64,
    pub snapshots_installed: u64,
    /// Leadership transfers started, and those whose target won.
    pub transfers_started: u64,
    pub transfers_done: u64,
    /// Nodes wiped and re-added as fresh ones.
    pub wipes: u64,
    /// Leaders that stepped down because a committed change removed them.
    pub leaders_removed: u64,
    /// Lease reads served from the published view, off the core.
    pub lease_reads_from_view: u64,
    /// Reads served by a node that did not lead (follower read leases and
    /// bounded-staleness reads), and bounded-staleness reads served.
    pub follower_reads: u64,
    pub bounded_reads: u64,
    /// Runs with a preferred leader, and those that ended with a preferred
    /// node leading.
    pub placement_runs: u64,
    pub placement_ended_preferred: u64,
    /// Restarts after a fault of the disk on synced data, and those whose
    /// recovery planned a repair (a vote floor).
    pub disk_faults: u64,
    pub repairs_planned: u64,
    /// Repairs finished (the floor cleared by the core).
    pub repairs_finished: u64,
    /// Restarts with wrong membership flags, and those the stored
    /// configuration refused (the node then restarted with the right ones).
    pub wrong_flag_restarts: u64,
    pub wrong_flags_refused: u64,
    /// Readies a follower persisted in line (blocking its inputs).
    pub inline_persists: u64,
    /// Storage steps that wrote a group of Readies, and the Readies in
    /// them (group commit).
    pub storage_groups: u64,
    pub grouped_readies: u64,
    /// Readies queued while the node's storage thread was busy (a step in
    /// flight): the core moved on while an fsync ran.
    pub queued_behind_fsync: u64,
}

pub(crate) struct SimNode {
    pub(crate) id: NodeId,
    pub(crate) raft: Option<RaftNode>,
    /// The shared driver of `raft` (see `raftkv_driver`).
    pub(crate) driver: Option<SimDriver>,
    pub(crate) disk: SimDisk,
    pub(crate) clock: Clock,
    pub(crate) paused: bool,
    /// Started (or wiped and restarted) with no bootstrap voters.
    pub(crate) joining: bool,
    /// The bootstrap voters its `identity.txt` records (`None`: a fresh
    /// folder, before its first start).
    pub(crate) bootstrap: Option<BTreeSet<NodeId>>,
    backlog: Vec<Ev>,
    pub(crate) incarnation: u64,
    /// Commit index already checked against the committed record.
    pub(crate) commit_seen: LogIndex,
    /// The lease-read view the driver publishes, as the server's gRPC
    /// handlers read it.
    pub(crate) lease_reads: Arc<LeaseReads>,
    /// The node's thread is blocked in an in-line fsync until then: its
    /// inputs wait (lease reads from the view do not).
    pub(crate) stalled_until_ns: u64,
    /// A turn is open: inputs were stepped and their Readies not taken yet
    /// (see `ClusterConfig::turn_hold_max`).
    pub(crate) turn_open: bool,
}

/// The simulated cluster. See the module docs.
pub struct Cluster {
    pub(crate) cfg: ClusterConfig,
    pub(crate) now_ns: u64,
    seq: u64,
    queue: BTreeMap<(u64, u64), Ev>,
    pub(crate) rng: SimRng,
    pub(crate) nodes: Vec<SimNode>,
    /// Directed links that are down: (from, to) as node positions.
    cut: BTreeSet<(usize, usize)>,
    net: NetConfig,
    filter: Option<MessageFilter>,
    pub(crate) clients: Vec<SimClient>,
    pub(crate) workload: Option<Workload>,
    pub(crate) history: Vec<raftkv_checker::Operation>,
    pub(crate) next_read_id: u64,
    pub(crate) served: Vec<Served>,
    pub(crate) elections: Vec<Election>,
    pub(crate) leaders_by_term: BTreeMap<Term, NodeId>,
    /// Every entry some node has committed, by index (from 1).
    pub(crate) committed: Vec<Entry>,
    /// The term of the node first seen committing each entry of `committed`.
    pub(crate) committed_in: Vec<Term>,
    pub(crate) violation: Option<String>,
    trace: Option<Vec<String>>,
    pub(crate) messages_delivered: u64,
    recovery_ns: Option<u64>,
    /// Every membership change outcome a leader reported: (leader, result).
    pub(crate) conf_results: Vec<(NodeId, ConfChangeResult)>,
    pub(crate) counts: MixCounts,
    /// Transfers in progress: target → term when it started.
    transfers: BTreeMap<NodeId, Term>,
    /// Granted real votes delivered: (candidate, term) → voters.
    pub(crate) votes_seen: BTreeMap<(NodeId, Term), BTreeSet<NodeId>>,
    /// Granted real votes sent: (voter, term) → candidate.
    pub(crate) votes_granted: BTreeMap<(NodeId, Term), NodeId>,
    /// Committed configurations by index (index 0: the bootstrap one).
    pub(crate) committed_configs: BTreeMap<LogIndex, Membership>,
    /// Snapshots seen (taken or installed) whose contents still have to be
    /// compared with the committed history: (node, snapshot).
    pub(crate) snapshot_checks: Vec<(NodeId, raftkv_core::Snapshot)>,
    /// Reference state at snapshot indexes already checked (digest).
    pub(crate) snapshot_digests: BTreeMap<LogIndex, u64>,
    /// Answers the driver's waiters gave to simulated clients, to deliver.
    pub(crate) answers: Outbox,
}

impl Cluster {
    pub fn new(cfg: ClusterConfig) -> Cluster {
        assert!(
            matches!(cfg.nodes, 1..=9) && cfg.pool() <= 9,
            "{} nodes and {} spares is not a cluster size the simulator supports",
            cfg.nodes,
            cfg.spares
        );
        let bootstrap = Membership::with_voters((1..=cfg.nodes as u64).map(NodeId));
        let mut rng = SimRng::new(cfg.seed);
        let mut c = Cluster {
            now_ns: 0,
            seq: 0,
            queue: BTreeMap::new(),
            nodes: Vec::new(),
            cut: BTreeSet::new(),
            net: cfg.net.clone(),
            filter: None,
            clients: Vec::new(),
            workload: None,
            history: Vec::new(),
            next_read_id: 1,
            served: Vec::new(),
            elections: Vec::new(),
            leaders_by_term: BTreeMap::new(),
            committed: Vec::new(),
            committed_in: Vec::new(),
            violation: None,
            trace: cfg.trace.then(Vec::new),
            messages_delivered: 0,
            recovery_ns: None,
            conf_results: Vec::new(),
            counts: MixCounts::default(),
            transfers: BTreeMap::new(),
            votes_seen: BTreeMap::new(),
            votes_granted: BTreeMap::new(),
            committed_configs: BTreeMap::from([(LogIndex::ZERO, bootstrap)]),
            snapshot_checks: Vec::new(),
            snapshot_digests: BTreeMap::new(),
            answers: Outbox::default(),
            rng: rng.fork(),
            cfg,
        };
        for i in 0..c.cfg.pool() {
            let id = NodeId(i as u64 + 1);
            let joining = i >= c.cfg.nodes;
            let clock = c.cfg.clocks.get(i).copied().unwrap_or_else(Clock::exact);
            let storage = MemStorage::new();
            let core = c.cfg.core_config_for(id, joining);
            let bootstrap = Some(core.voters.iter().copied().collect());
            let mut raft = RaftNode::new(core, storage.restored(), clock.local(0), rng.next_u64())
                .expect("the simulator builds valid configs");
            c.learn_zones(&mut raft);
            let lease_reads = c.fresh_lease_reads();
            let driver = SimDriver::new(
                &raft,
                clock.local(0),
                lease_reads.clone(),
                c.driver_options(),
            );
            c.nodes.push(SimNode {
                id,
                raft: Some(raft),
                driver: Some(driver),
                disk: SimDisk::new(storage),
                clock,
                paused: false,
                joining,
                bootstrap,
                backlog: Vec::new(),
                incarnation: 0,
                commit_seen: LogIndex::ZERO,
                lease_reads,
                stalled_until_ns: 0,
                turn_open: false,
            });
            let phase = rng.below(c.cfg.tick_interval.as_nanos() as u64);
            c.schedule(phase, Ev::Tick(i));
        }
        let check = c.cfg.log_check_interval.as_nanos() as u64;
        c.schedule(check, Ev::LogCheck);
        c
    }

    // ----- time and the event loop -------------------------------------

    pub(crate) fn schedule(&mut self, at_ns: u64, ev: Ev) {
        self.seq += 1;
        self.queue.insert((at_ns.max(self.now_ns), self.seq), ev);
    }

    pub(crate) fn schedule_in(&mut self, after: Duration, ev: Ev) {
        self.schedule(self.now_ns + after.as_nanos() as u64, ev);
    }

    /// Real simulated time since the start.
    pub fn now(&self) -> Duration {
        Duration::from_nanos(self.now_ns)
    }

    pub fn now_ns(&self) -> u64 {
        self.now_ns
    }

    /// Run until `d` of simulated time has passed (or a violation is found).
    pub fn run_for(&mut self, d: Duration) {
        let end = self.now_ns + d.as_nanos() as u64;
        self.run_until_ns(end, |_| false);
    }

    /// Run until `pred` holds (checked after every event) or `limit` passes.
    /// Returns whether `pred` held.
    pub fn run_until(&mut self, limit: Duration, mut pred: impl FnMut(&Cluster) -> bool) -> bool {
        if pred(self) {
            return true;
        }
        let end = self.now_ns + limit.as_nanos() as u64;
        self.run_until_ns(end, |c| pred(c))
    }

    fn run_until_ns(&mut self, end_ns: u64, mut pred: impl FnMut(&Cluster) -> bool) -> bool {
        while self.violation.is_none() {
            let Some((&(at, _), _)) = self.queue.first_key_value() else {
                break;
            };
            if at > end_ns {
                break;
            }
            let (_, ev) = self.queue.pop_first().expect("peeked");
            self.now_ns = at;
            self.handle(ev);
            if pred(self) {
                return true;
            }
        }
        if self.violation.is_none() {
            self.now_ns = self.now_ns.max(end_ns);
        }
        false
    }

    fn handle(&mut self, ev: Ev) {
        let target = match &ev {
            Ev::Deliver(m) => self.position(m.to),
            Ev::SyncDone { node, .. }
            | Ev::StorageWake { node, .. }
            | Ev::ClientReq { node, .. }
            | Ev::TurnEnd { node, .. }
            | Ev::SnapshotPrepared { node, .. } => Some(*node),
            _ => None,
        };
        if let Some(i) = target {
            if self.nodes[i].paused {
                self.nodes[i].backlog.push(ev);
                return;
            }
            // A node blocked in an in-line fsync takes no input until it
            // returns (its storage thread runs on; client requests see the
            // published view first, in `on_client_request`).
            let stalled = self.nodes[i].stalled_until_ns;
            if self.now_ns < stalled
                && matches!(
                    ev,
                    Ev::Deliver(_) | Ev::SyncDone { .. } | Ev::TurnEnd { .. }
                )
            {
                self.schedule(stalled, ev);
                return;
            }
        }
        match ev {
            Ev::Deliver(m) => self.deliver(m),
            Ev::Tick(i) => self.on_tick(i),
            Ev::StorageWake { node, incarnation } => self.on_storage_wake(node, incarnation),
            Ev::SyncDone { node, incarnation } => self.on_sync_done(node, incarnation),
            Ev::ClientReq {
                node,
                client,
                attempt,
                req,
            } => self.on_client_request(node, client, attempt, req),
            Ev::ClientResp {
                client,
                attempt,
                resp,
            } => self.on_client_response(client, attempt, resp),
            Ev::ClientTimeout { client, attempt } => self.on_client_timeout(client, attempt),
            Ev::ClientRetry { client, attempt } => self.on_client_retry(client, attempt),
            Ev::ClientThink { client } => self.on_client_think(client),
            Ev::SnapshotPrepared {
                node,
                incarnation,
                job,
            } => self.on_snapshot_prepared(node, incarnation, job),
            Ev::TurnEnd { node, incarnation } => {
                let n = &self.nodes[node];
                if n.incarnation == incarnation && n.turn_open && n.raft.is_some() {
                    self.pump(node);
                }
            }
            Ev::CrashNow { node, incarnation } => {
                if self.nodes[node].incarnation == incarnation {
                    let id = self.nodes[node].id;
                    self.crash(id);
                    let back = self.now_ns + self.rng.range(1_000_000, 30_000_000);
                    let incarnation = self.nodes[node].incarnation;
                    self.schedule(back, Ev::RestartNow { node, incarnation });
                }
            }
            Ev::RestartNow { node, incarnation } => {
                // Unless another fault took the node meanwhile.
                if self.nodes[node].incarnation == incarnation {
                    let id = self.nodes[node].id;
                    self.restart(id);
                }
            }
            Ev::LogCheck => {
                self.check_log_matching();
                self.schedule_in(self.cfg.log_check_interval, Ev::LogCheck);
            }
        }
    }

    fn on_tick(&mut self, i: usize) {
        let n = &self.nodes[i];
        // A tick that finds the node paused or blocked is skipped (tokio's
        // `MissedTickBehavior::Skip`).
        if !n.paused
            && self.now_ns >= n.stalled_until_ns
            && self.drive(i, |d, raft, host| d.tick(raft, host)).is_some()
        {
            self.pump(i);
        }
        self.schedule_in(self.cfg.tick_interval, Ev::Tick(i));
    }

    // ----- nodes ------------------------------------------------------------

    pub(crate) fn position(&self, id: NodeId) -> Option<usize> {
        let i = usize::try_from(id.0).ok()?.checked_sub(1)?;
        (i < self.nodes.len()).then_some(i)
    }

    fn pos(&self, id: NodeId) -> usize {
        self.position(id)
            .unwrap_or_else(|| panic!("no node {id} in this cluster"))
    }

    pub(crate) fn local_now_at(&self, i: usize) -> MonoTime {
        self.nodes[i].clock.local(self.now_ns)
    }

    /// End node `i`'s turn: the driver takes its Readies (see
    /// `raftkv_driver::Driver::end_turn`); then check the invariants that
    /// node may have touched.
    pub(crate) fn pump(&mut self, i: usize) {
        self.nodes[i].turn_open = false;
        self.drive(i, |d, raft, host| d.end_turn(raft, host));
        self.check_node(i);
    }

    /// Runs `f` on node `i`'s driver and core with a host over its disk,
    /// then carries out what the call produced, in order, and delivers the
    /// answers it gave. `None` when the node is down.
    pub(crate) fn drive<R>(
        &mut self,
        i: usize,
        f: impl FnOnce(&mut SimDriver, &mut RaftNode, &mut SimHost<'_>) -> R,
    ) -> Option<R> {
        let r = self.drive_undelivered(i, f);
        self.deliver_answers();
        r
    }

    /// [`Cluster::drive`] leaving the answers in the outbox.
    pub(crate) fn drive_undelivered<R>(
        &mut self,
        i: usize,
        f: impl FnOnce(&mut SimDriver, &mut RaftNode, &mut SimHost<'_>) -> R,
    ) -> Option<R> {
        let now = self.local_now_at(i);
        let n = &mut self.nodes[i];
        let (Some(raft), Some(driver)) = (n.raft.as_mut(), n.driver.as_mut()) else {
            return None;
        };
        let mut host = SimHost {
            id: n.id,
            now,
            check_promises: self.cfg.check_durable_promises,
            disk: &mut n.disk,
            out: Vec::new(),
        };
        let r = f(driver, raft, &mut host);
        let out = std::mem::take(&mut host.out);
        self.carry_out(i, out);
        Some(r)
    }

    fn carry_out(&mut self, i: usize, out: Vec<Out>) {
        let id = self.nodes[i].id;
        for o in out {
            match o {
                Out::Send(m) => {
                    if let MessageBody::RequestVoteResponse(r) = &m.body {
                        if r.granted && !r.pre_vote {
                            self.check_one_vote(m.from, m.term, m.to);
                            self.maybe_crash_after_vote(i);
                        }
                    }
                    self.send(m)
                }
                Out::Event(e) => {
                    self.tr(|| format!("n{id} {e}"));
                    self.count_events(i, std::slice::from_ref(&e));
                }
                Out::Note(what) => self.tr(|| format!("n{id} {what}")),
                Out::Observed(o) => {
                    if let Some(upto) = o.record_commits_upto {
                        self.record_commits(i, upto);
                    }
                    for s in o.snapshots {
                        self.snapshot_checks.push((id, s));
                    }
                    self.check_config_append(i, &o.config_entries);
                    for r in o.conf_results {
                        if r.outcome.is_ok() {
                            self.counts.conf_committed += 1;
                        }
                        let what = format!("{:?}", r.outcome);
                        self.tr(|| format!("n{id} conf change at {} -> {what}", r.index));
                        self.conf_results.push((id, r));
                    }
                }
                Out::Kick => {
                    if self.nodes[i].disk.busy {
                        self.counts.queued_behind_fsync += 1;
                    }
                    self.kick(i)
                }
                Out::Stall => {
                    let latency = self.fsync_latency();
                    self.nodes[i].stalled_until_ns = self.now_ns + latency;
                    self.counts.inline_persists += 1;
                }
                Out::StorageFailed(e) => self.fail(format!("storage: node {id}: {e}")),
                Out::Violation(p) => self.fail(p),
            }
        }
    }

    /// Answers the driver's waiters gave: to their clients, over the
    /// simulated client network.
    pub(crate) fn deliver_answers(&mut self) {
        let answers = std::mem::take(&mut *self.answers.borrow_mut());
        for a in answers {
            if let Some(w) = a.wrong {
                self.fail(w);
                continue;
            }
            if let Some(kind) = a.served {
                self.record_served(a.node, kind);
            }
            self.respond(a.client, a.attempt, a.resp);
        }
    }

    fn fsync_latency(&mut self) -> u64 {
        self.rng.range(
            self.cfg.fsync_latency_min.as_nanos() as u64,
            self.cfg.fsync_latency_max.as_nanos() as u64,
        )
    }

    /// With `crash_after_vote_ppm`, crash node `i` at this instant, before
    /// its storage thread can wake.
    fn maybe_crash_after_vote(&mut self, i: usize) {
        let ppm = self.cfg.crash_after_vote_ppm;
        if ppm > 0 && self.rng.chance_ppm(ppm) {
            let incarnation = self.nodes[i].incarnation;
            let id = self.nodes[i].id;
            self.tr(|| format!("fault: n{id} crashes right after voting"));
            self.schedule(
                self.now_ns,
                Ev::CrashNow {
                    node: i,
                    incarnation,
                },
            );
        }
    }

    /// Wake node `i`'s storage thread, unless it is awake.
    fn kick(&mut self, i: usize) {
        if self.nodes[i].disk.busy {
            return;
        }
        self.nodes[i].disk.busy = true;
        let incarnation = self.nodes[i].incarnation;
        // A thread wake-up.
        let at = self.now_ns + self.rng.range(1_000, 50_000);
        self.schedule(
            at,
            Ev::StorageWake {
                node: i,
                incarnation,
            },
        );
    }

    /// The storage thread begins a step: writes a group (or puts a
    /// prepared snapshot in place); its fsync completes a latency later.
    fn on_storage_wake(&mut self, i: usize, incarnation: u64) {
        if self.nodes[i].incarnation != incarnation || self.nodes[i].raft.is_none() {
            return;
        }
        let Some((step, background)) = self.nodes[i].disk.worker.begin() else {
            self.nodes[i].disk.busy = false;
            return;
        };
        if step.readies() > 0 {
            self.counts.storage_groups += 1;
            self.counts.grouped_readies += step.readies() as u64;
        }
        for bg in background {
            let job = bg.prepare::<MemStorage>();
            let delay = self.rng.range(0, 20_000_000);
            self.schedule(
                self.now_ns + delay,
                Ev::SnapshotPrepared {
                    node: i,
                    incarnation,
                    job,
                },
            );
        }
        let latency = if step.syncs() {
            self.fsync_latency()
        } else {
            0
        };
        self.nodes[i].disk.step = Some(step);
        self.schedule(
            self.now_ns + latency,
            Ev::SyncDone {
                node: i,
                incarnation,
            },
        );
    }

    /// The running step's fsync completed: its Readies go back to the
    /// driver, and the storage thread takes the next step if there is one.
    fn on_sync_done(&mut self, i: usize, incarnation: u64) {
        if self.nodes[i].incarnation != incarnation || self.nodes[i].raft.is_none() {
            return;
        }
        let disk = &mut self.nodes[i].disk;
        let step = disk.step.take().expect("a step was running");
        let dones = disk.worker.finish(step);
        disk.busy = false;
        if disk.worker.has_work() {
            self.kick(i);
        }
        self.drive(i, |d, raft, host| {
            for done in dones {
                d.on_done(raft, host, done);
            }
        });
        self.pump(i);
    }

    fn on_snapshot_prepared(&mut self, i: usize, incarnation: u64, job: Job<SnapshotWrite>) {
        if self.nodes[i].incarnation != incarnation || self.nodes[i].raft.is_none() {
            return; // the crash lost it; the log still holds its entries
        }
        if let Job::CommitSnapshot(index, _) = &job {
            let id = self.nodes[i].id;
            let index = *index;
            self.tr(|| format!("n{id} compaction snapshot at {index} prepared"));
        }
        self.nodes[i].disk.worker.push(job);
        self.kick(i);
    }

    /// A fresh lease-read view for a node (the control's kind when
    /// `unsafe_stale_view`).
    fn fresh_lease_reads(&self) -> Arc<LeaseReads> {
        Arc::new(if self.cfg.unsafe_stale_view {
            LeaseReads::new_unsafe_stale()
        } else {
            LeaseReads::new()
        })
    }

    fn driver_options(&self) -> DriverOptions {
        DriverOptions {
            inline_follower_persist: self.cfg.inline_follower_persist,
            knobs: DriverKnobs {
                unsafe_ack_before_sync: self.cfg.unsafe_ack_before_sync,
                unsafe_vote_before_save: self.cfg.unsafe_vote_before_save,
                unsafe_late_publish: self.cfg.unsafe_late_publish,
            },
            ..DriverOptions::default()
        }
    }

    /// Count what the fault mix made happen (for the run's summary line).
    fn count_events(&mut self, i: usize, events: &[Event]) {
        let id = self.nodes[i].id;
        for e in events {
            match e {
                Event::SnapshotTaken { .. } => self.counts.snapshots_taken += 1,
                Event::RepairFinished { .. } => self.counts.repairs_finished += 1,
                Event::SnapshotInstalled { .. } => self.counts.snapshots_installed += 1,
                Event::SteppedDown {
                    reason: StepDownReason::RemovedFromConfig,
                    ..
                } => self.counts.leaders_removed += 1,
                Event::TransferStarted { to } => {
                    self.counts.transfers_started += 1;
                    let term = self.nodes[i].raft.as_ref().map(|r| r.term());
                    if let Some(t) = term {
                        self.transfers.insert(*to, t);
                    }
                }
                Event::BecameLeader { term, .. } => {
                    if let Some(t0) = self.transfers.remove(&id) {
                        if *term > t0 {
                            self.counts.transfers_done += 1;
                        }
                    }
                }
                _ => {}
            }
        }
    }

    // ----- network ----------------------------------------------------------

    fn send(&mut self, m: Message) {
        let (Some(from), Some(to)) = (self.position(m.from), self.position(m.to)) else {
            self.fail(format!("network: a node sent to an unknown node: {m:?}"));
            return;
        };
        if self.cut.contains(&(from, to)) {
            self.tr(|| format!("drop (partition) {}", fmt_msg(&m)));
            return;
        }
        let fate = match self.filter.as_mut() {
            Some(f) => f(self.now_ns, &m),
            None => Fate::Deliver,
        };
        match fate {
            Fate::Drop => {
                self.tr(|| format!("drop (filter) {}", fmt_msg(&m)));
            }
            Fate::Delay(d) => self.schedule_in(d, Ev::Deliver(m)),
            Fate::Deliver => {
                if self.rng.chance_ppm(self.net.loss_ppm) {
                    self.tr(|| format!("drop (loss) {}", fmt_msg(&m)));
                    return;
                }
                if self.rng.chance_ppm(self.net.dup_ppm) {
                    let d = self.net_delay();
                    self.schedule_in(d, Ev::Deliver(m.clone()));
                }
                let d = self.net_delay();
                self.schedule_in(d, Ev::Deliver(m));
            }
        }
    }

    fn net_delay(&mut self) -> Duration {
        let lo = self.net.delay_min.as_nanos() as u64;
        let hi = self.net.delay_max.as_nanos() as u64;
        Duration::from_nanos(self.rng.range(lo, hi.max(lo)))
    }

    fn deliver(&mut self, m: Message) {
        let (from, to) = (self.pos(m.from), self.pos(m.to));
        if self.cut.contains(&(from, to)) {
            self.tr(|| format!("drop (partition, in flight) {}", fmt_msg(&m)));
            return;
        }
        if self.nodes[to].raft.is_none() {
            return;
        }
        self.messages_delivered += 1;
        self.tr(|| format!("deliver {}", fmt_msg(&m)));
        if let MessageBody::RequestVoteResponse(r) = &m.body {
            if r.granted && !r.pre_vote {
                self.votes_seen
                    .entry((m.to, m.term))
                    .or_default()
                    .insert(m.from);
            }
        }
        self.drive(to, |d, raft, host| d.step(raft, host, m));
        self.end_input(to);
    }

    /// After a peer message or client request: take the node's Readies now,
    /// or (with `turn_hold_max`) sometimes leave the turn open a while.
    pub(crate) fn end_input(&mut self, i: usize) {
        let hold = self.cfg.turn_hold_max.as_nanos() as u64;
        if hold > 0 && (self.nodes[i].turn_open || self.rng.below(3) == 0) {
            if !self.nodes[i].turn_open {
                self.nodes[i].turn_open = true;
                let incarnation = self.nodes[i].incarnation;
                let at = self.now_ns + self.rng.range(1, hold);
                self.schedule(
                    at,
                    Ev::TurnEnd {
                        node: i,
                        incarnation,
                    },
                );
            }
            return;
        }
        self.pump(i);
    }

    // ----- faults -----------------------------------------------------------

    /// Cut the cluster into groups: links between groups go down both ways;
    /// nodes left out of every group form one more group.
    pub fn partition(&mut self, groups: &[&[u64]]) {
        let n = self.nodes.len();
        let mut group_of = vec![usize::MAX; n];
        for (g, members) in groups.iter().enumerate() {
            for &id in *members {
                group_of[self.pos(NodeId(id))] = g;
            }
        }
        self.cut.clear();
        for a in 0..n {
            for b in 0..n {
                if a != b && group_of[a] != group_of[b] {
                    self.cut.insert((a, b));
                }
            }
        }
        self.tr(|| format!("fault: partition {groups:?}"));
    }

    /// Cut node `id` off from every other node (both ways). Clients still
    /// reach it.
    pub fn isolate(&mut self, id: NodeId) {
        let i = self.pos(id);
        for j in 0..self.nodes.len() {
            if j != i {
                self.cut.insert((i, j));
                self.cut.insert((j, i));
            }
        }
        self.tr(|| format!("fault: isolate n{id}"));
    }

    /// Take down the one-way link `from → to`.
    pub fn cut_link(&mut self, from: NodeId, to: NodeId) {
        let (a, b) = (self.pos(from), self.pos(to));
        self.cut.insert((a, b));
        self.tr(|| format!("fault: cut link n{from}->n{to}"));
    }

    pub fn restore_link(&mut self, from: NodeId, to: NodeId) {
        let (a, b) = (self.pos(from), self.pos(to));
        self.cut.remove(&(a, b));
        self.tr(|| format!("fault: restore link n{from}->n{to}"));
    }

    /// Bring every link back up.
    pub fn heal(&mut self) {
        self.cut.clear();
        self.tr(|| "fault: heal all partitions".to_string());
    }

    pub fn link_up(&self, from: NodeId, to: NodeId) -> bool {
        !self.cut.contains(&(self.pos(from), self.pos(to)))
    }

    pub fn set_net(&mut self, net: NetConfig) {
        self.tr(|| format!("fault: network {net:?}"));
        self.net = net;
    }

    pub fn net(&self) -> &NetConfig {
        &self.net
    }

    /// Let a test drop or delay chosen messages (or just watch them).
    pub fn set_filter(&mut self, filter: Option<MessageFilter>) {
        self.filter = filter;
    }

    /// Crash a node: it loses everything not yet synced, and every message,
    /// fsync and client request on its way to it.
    pub fn crash(&mut self, id: NodeId) {
        let i = self.pos(id);
        let fresh_view = self.fresh_lease_reads();
        let n = &mut self.nodes[i];
        if n.raft.is_none() {
            return;
        }
        n.raft = None;
        // The driver's waiters go with it: their clients time out.
        n.driver = None;
        n.disk.crash();
        n.backlog.clear();
        n.paused = false;
        n.incarnation += 1;
        n.stalled_until_ns = 0;
        n.turn_open = false;
        n.lease_reads = fresh_view;
        self.tr(|| format!("fault: crash n{id}"));
    }

    /// Restart a crashed node from its durable state.
    pub fn restart(&mut self, id: NodeId) {
        self.restart_with(id, None, None);
    }

    /// The membership flags a careful operator gives node `i`.
    fn right_flags(&self, i: usize) -> MembershipFlags {
        let n = &self.nodes[i];
        MembershipFlags {
            peers: (!n.joining).then(|| (1..=self.cfg.nodes as u64).map(NodeId).collect()),
            join: n.joining,
            single_node: false,
        }
    }

    /// Restart a crashed node after a fault of its disk on synced data
    /// (`disk`), recovered by the storage's own rules
    /// (`raftkv_storage::recovery`), and with the membership flags `flags`
    /// (`None`: the right ones), resolved against its stored configuration
    /// by the server's rule (`raftkv_storage::identity::start_voters`). A
    /// start the rule refuses is retried with the right flags, as an
    /// operator would after reading the error.
    pub fn restart_with(
        &mut self,
        id: NodeId,
        disk: Option<DiskFault>,
        flags: Option<MembershipFlags>,
    ) {
        let i = self.pos(id);
        if self.nodes[i].raft.is_some() {
            return;
        }
        let local = self.local_now_at(i);
        let seed = self.rng.next_u64();
        let opts = RecoveryOptions {
            unsafe_cut_damaged_tail: self.cfg.unsafe_cut_damaged_tail,
        };
        let (restored, plan) = self.nodes[i].disk.storage_mut().restart_after(disk, opts);
        if let Some(d) = disk {
            self.counts.disk_faults += 1;
            self.tr(|| format!("fault: disk of n{id}: {d:?}"));
        }
        if let Some(p) = &plan {
            self.counts.repairs_planned += 1;
            self.tr(|| format!("n{id} {p}"));
        }
        let last = restored.entries.len();
        let snap = restored.snapshot.as_ref().map(|s| s.meta.index);
        let in_force = restored
            .entries
            .iter()
            .rev()
            .find_map(|e| config_of(e).cloned())
            .or_else(|| {
                restored
                    .snapshot
                    .as_ref()
                    .map(|s| s.meta.membership.clone())
            });
        let right = self.right_flags(i);
        if flags.as_ref().is_some_and(|f| *f != right) {
            self.counts.wrong_flag_restarts += 1;
        }
        let unsafe_flags = self.cfg.unsafe_config_from_flags;
        let stored = self.nodes[i].bootstrap.clone();
        let resolve = |f: &MembershipFlags| {
            start_voters(id, stored.as_ref(), in_force.as_ref(), f, unsafe_flags)
        };
        let voters = match resolve(flags.as_ref().unwrap_or(&right)) {
            Ok(v) => v,
            Err(e) => {
                self.counts.wrong_flags_refused += 1;
                self.tr(|| format!("n{id} restart refused ({e}); restarted with the right flags"));
                match resolve(&right) {
                    Ok(v) => v,
                    Err(e) => {
                        return self.fail(format!(
                            "restart: node {id} refused with the right flags: {e}"
                        ))
                    }
                }
            }
        };
        if flags.is_some() {
            let v = identity::ids_text(&voters);
            self.tr(|| format!("fault: restart n{id} with flags {flags:?}: bootstrap voters {v}"));
        }
        self.nodes[i]
            .bootstrap
            .get_or_insert_with(|| voters.clone());
        let mut cfg = self.cfg.core_config_for(id, self.nodes[i].joining);
        cfg.voters = voters.into_iter().collect();
        match RaftNode::new(cfg, restored, local, seed) {
            Ok(mut raft) => {
                self.learn_zones(&mut raft);
                let opts = self.driver_options();
                let n = &mut self.nodes[i];
                n.driver = Some(SimDriver::new(&raft, local, n.lease_reads.clone(), opts));
                n.raft = Some(raft);
                n.commit_seen = LogIndex::ZERO;
                self.tr(|| {
                    format!("fault: restart n{id} ({last} durable entries after snapshot {snap:?})")
                });
                self.pump(i);
            }
            Err(e) => self.fail(format!(
                "restart: node {id} cannot restart from its own storage: {e}"
            )),
        }
    }

    /// Whether node `id`'s storage thread is in the middle of a step that
    /// syncs (written, fsync not yet complete): a crash now loses what it
    /// appended.
    pub fn fsync_in_flight(&self, id: NodeId) -> bool {
        let n = &self.nodes[self.pos(id)];
        n.raft.is_some() && n.disk.step.as_ref().is_some_and(|s| s.syncs())
    }

    /// Node `id`'s durable log (after a crash: what a restart finds): the
    /// entries after the snapshot, the snapshot index and the saved commit
    /// index.
    pub fn durable_summary(&self, id: NodeId) -> (usize, LogIndex, LogIndex) {
        let st = self.nodes[self.pos(id)].disk.storage();
        let snap = st.first_index().prev();
        let entries = (durable_last(st).0 - snap.0) as usize;
        (entries, snap, st.hard_state().commit)
    }

    /// Whether some node's log is being repaired (up: the core's floor;
    /// down: the stored one).
    pub fn any_repairing(&self) -> bool {
        self.nodes.iter().any(|n| match &n.raft {
            Some(r) => r.repairing().is_some(),
            None => n.disk.storage().hard_state().repair.is_some(),
        })
    }

    /// Crash a node and throw its storage away: when it restarts it is a
    /// fresh node in join mode (no bootstrap voters), with the same id. Only
    /// safe for a node whose removal has committed.
    pub fn wipe(&mut self, id: NodeId) {
        self.crash(id);
        let i = self.pos(id);
        self.nodes[i].disk = SimDisk::new(MemStorage::new());
        self.nodes[i].joining = true;
        self.nodes[i].bootstrap = None;
        self.counts.wipes += 1;
        self.tr(|| format!("fault: wipe n{id} (fresh storage, join mode)"));
    }

    /// Propose a membership change at node `id` (it must be up). Checks
    /// first that the core keeps changes one at a time.
    pub fn propose_conf_change(
        &mut self,
        id: NodeId,
        change: ConfChange,
    ) -> Result<LogIndex, ConfChangeError> {
        let i = self.pos(id);
        let local = self.local_now_at(i);
        let raft = self.nodes[i]
            .raft
            .as_mut()
            .expect("propose_conf_change at a node that is down");
        let before = raft.status(local);
        let r = raft.propose_conf_change(local, change.clone());
        self.tr(|| format!("n{id} propose {change}: {r:?}"));
        if let Ok(index) = r {
            if before.membership_index > before.commit_index {
                self.fail(format!(
                    "one change at a time: node {id} accepted {change} at index {index} while the change at {} was uncommitted (commit {})",
                    before.membership_index, before.commit_index
                ));
            }
        }
        self.pump(i);
        r
    }

    /// Ask node `id` (it must be up) to hand leadership to `target`.
    pub fn transfer_leadership(&mut self, id: NodeId, target: NodeId) -> Result<(), TransferError> {
        let i = self.pos(id);
        let local = self.local_now_at(i);
        let raft = self.nodes[i]
            .raft
            .as_mut()
            .expect("transfer_leadership at a node that is down");
        let r = raft.transfer_leadership(local, target);
        self.tr(|| format!("n{id} transfer leadership to n{target}: {r:?}"));
        self.pump(i);
        r
    }

    /// Every membership change outcome reported so far: (leader, result).
    pub fn conf_results(&self) -> &[(NodeId, ConfChangeResult)] {
        &self.conf_results
    }

    /// What the membership and snapshot machinery did so far.
    pub fn counts(&self) -> MixCounts {
        self.counts
    }

    /// The configuration in force at node `id`, if it is up.
    pub fn membership(&self, id: NodeId) -> Option<Membership> {
        self.raft(id).map(|r| r.membership().clone())
    }

    /// The latest committed configuration the simulator has seen.
    pub fn committed_membership(&self) -> &Membership {
        self.committed_configs
            .values()
            .next_back()
            .expect("the bootstrap configuration")
    }

    /// Freeze a node: it processes nothing, its clock keeps running, and
    /// what arrives for it waits until [`Cluster::resume`].
    pub fn pause(&mut self, id: NodeId) {
        let i = self.pos(id);
        if self.nodes[i].raft.is_some() {
            self.nodes[i].paused = true;
            self.tr(|| format!("fault: pause n{id}"));
        }
    }

    pub fn resume(&mut self, id: NodeId) {
        let i = self.pos(id);
        if !self.nodes[i].paused {
            return;
        }
        self.nodes[i].paused = false;
        self.tr(|| format!("fault: resume n{id}"));
        for ev in std::mem::take(&mut self.nodes[i].backlog) {
            self.handle(ev);
        }
    }

    // ----- queries ----------------------------------------------------------

    pub fn node_ids(&self) -> Vec<NodeId> {
        self.nodes.iter().map(|n| n.id).collect()
    }

    pub fn config(&self) -> &ClusterConfig {
        &self.cfg
    }

    pub fn is_up(&self, id: NodeId) -> bool {
        self.nodes[self.pos(id)].raft.is_some()
    }

    pub fn is_paused(&self, id: NodeId) -> bool {
        self.nodes[self.pos(id)].paused
    }

    /// The node's core, if it is up.
    pub fn raft(&self, id: NodeId) -> Option<&RaftNode> {
        self.nodes[self.pos(id)].raft.as_ref()
    }

    pub fn status(&self, id: NodeId) -> Option<Status> {
        let i = self.pos(id);
        let local = self.local_now_at(i);
        self.nodes[i].raft.as_ref().map(|r| r.status(local))
    }

    /// Change a node's clock rate from now on (the clock stays continuous).
    pub fn set_clock_rate(&mut self, id: NodeId, rate_ppm: u64) {
        let i = self.pos(id);
        let now = self.now_ns;
        self.nodes[i].clock = self.nodes[i].clock.with_rate_from(now, rate_ppm);
        self.tr(|| format!("fault: clock of n{id} now runs at {rate_ppm} ppm of real time"));
    }

    pub fn clock(&self, id: NodeId) -> Clock {
        self.nodes[self.pos(id)].clock
    }

    pub fn local_now(&self, id: NodeId) -> MonoTime {
        self.local_now_at(self.pos(id))
    }

    /// Up, running nodes that believe they lead, with their terms.
    pub fn leaders(&self) -> Vec<(NodeId, Term)> {
        self.nodes
            .iter()
            .filter(|n| !n.paused)
            .filter_map(|n| n.raft.as_ref())
            .filter(|r| r.role() == Role::Leader)
            .map(|r| (r.id(), r.term()))
            .collect()
    }

    /// The running leader of the highest term, if any.
    /// Count whether a run with a preferred leader ended with one leading
    /// (as the leader itself resolves its placement).
    pub fn note_placement_outcome(&mut self) {
        let Some(leader) = self.leader() else {
            return;
        };
        let Some(raft) = self.nodes[self.pos(leader)].raft.as_ref() else {
            return;
        };
        let preferred = raft.preferred_voters();
        if raft.placement().is_empty() || preferred.is_empty() {
            return;
        }
        self.counts.placement_runs += 1;
        if preferred.contains(&leader) {
            self.counts.placement_ended_preferred += 1;
        }
    }

    /// What a node learns of its peers' zones (the server reads them off
    /// peer batches; here every node knows them from the start).
    fn learn_zones(&self, raft: &mut RaftNode) {
        if self.cfg.zones {
            for i in 0..self.cfg.pool() {
                let id = NodeId(i as u64 + 1);
                raft.learn_zone(id, &zone_of(id));
            }
        }
    }

    pub fn leader(&self) -> Option<NodeId> {
        self.leaders()
            .into_iter()
            .max_by_key(|&(_, t)| t)
            .map(|(id, _)| id)
    }

    /// Every election won so far: (real ns, node, term).
    pub fn elections(&self) -> &[Election] {
        &self.elections
    }

    /// Every successful client answer, in order.
    pub fn served(&self) -> &[Served] {
        &self.served
    }

    /// The first successful client answer by `node` at or after `since_ns`.
    pub fn first_served_by(&self, node: NodeId, since_ns: u64) -> Option<&Served> {
        self.served
            .iter()
            .find(|s| s.node == node && s.real_ns >= since_ns)
    }

    /// The entry at `index` on node `id`, if the node is up and has
    /// committed that far.
    pub fn committed_entry(&self, id: NodeId, index: LogIndex) -> Option<Entry> {
        let raft = self.raft(id)?;
        (raft.log().commit() >= index).then(|| raft.log().get(index).cloned())?
    }

    /// How many up nodes have committed exactly `entry`.
    pub fn committed_count(&self, entry: &Entry) -> usize {
        self.node_ids()
            .into_iter()
            .filter(|&id| self.committed_entry(id, entry.index).as_ref() == Some(entry))
            .count()
    }

    /// The highest commit index any node reached.
    pub fn committed_len(&self) -> usize {
        self.committed.len()
    }

    /// The first broken invariant, if any.
    pub fn violation(&self) -> Option<&str> {
        self.violation.as_deref()
    }

    pub fn client_config_mut(&mut self) -> &mut ClientConfig {
        &mut self.cfg.client
    }

    /// Check log matching across all pairs now (it also runs periodically).
    pub fn check_log_matching_now(&mut self) {
        self.check_log_matching();
    }

    /// Set by a run's liveness phase: healing to every client answered.
    pub fn set_recovery_ns(&mut self, ns: u64) {
        self.recovery_ns = Some(ns);
    }

    pub fn recovery_ns(&self) -> Option<u64> {
        self.recovery_ns
    }

    pub fn messages_delivered(&self) -> u64 {
        self.messages_delivered
    }

    /// Propose a write directly at a node, with no client and no session.
    pub fn propose_at(
        &mut self,
        id: NodeId,
        cmd: ClientCommand,
    ) -> Result<LogIndex, raftkv_core::ProposeError> {
        let i = self.pos(id);
        let local = self.local_now_at(i);
        let raft = self.nodes[i]
            .raft
            .as_mut()
            .expect("propose_at a node that is down");
        let r = raft.propose(local, cmd);
        self.pump(i);
        r
    }

    /// A linearizable read directly at a node. A pending read's later
    /// result is dropped; a lease read is recorded in [`Cluster::served`].
    pub fn read_at(
        &mut self,
        id: NodeId,
        key: &str,
    ) -> Result<raftkv_core::ReadNow, raftkv_core::ReadError> {
        let i = self.pos(id);
        let local = self.local_now_at(i);
        let rid = ReadId(self.next_read_id);
        self.next_read_id += 1;
        let raft = self.nodes[i]
            .raft
            .as_mut()
            .expect("read_at a node that is down");
        let r = raft.read(local, rid, key.to_string());
        if let Ok(raftkv_core::ReadNow::Served(_)) = r {
            self.record_served(i, ServedKind::LeaseRead);
        }
        self.pump(i);
        r
    }

    pub(crate) fn record_served(&mut self, i: usize, what: ServedKind) {
        let Some(role) = self.nodes[i].raft.as_ref().map(|r| r.role()) else {
            return;
        };
        let what = match what {
            // A bounded-staleness read promises no order with leases.
            ServedKind::BoundedRead => {
                self.counts.bounded_reads += 1;
                return;
            }
            ServedKind::LeaseRead | ServedKind::ReadIndex if role != Role::Leader => {
                self.counts.follower_reads += 1;
                ServedKind::FollowerRead
            }
            w => w,
        };
        if self.cfg.check_lease_protection {
            if what == ServedKind::LeaseRead {
                self.check_lease_protection(i);
            }
            self.check_no_older_lease(i);
        }
        let Some(raft) = self.nodes[i].raft.as_ref() else {
            return;
        };
        let s = Served {
            real_ns: self.now_ns,
            node: raft.id(),
            term: raft.term(),
            what,
        };
        self.served.push(s);
    }

    // ----- trace and failures -----------------------------------------------

    pub(crate) fn tr(&mut self, line: impl FnOnce() -> String) {
        if let Some(t) = self.trace.as_mut() {
            t.push(format!("{} {}", fmt_real(self.now_ns), line()));
        }
    }

    /// Record a trace line from a test or the fault schedule.
    pub fn note(&mut self, line: &str) {
        self.tr(|| line.to_string());
    }

    pub fn trace(&self) -> &[String] {
        self.trace.as_deref().unwrap_or(&[])
    }

    pub(crate) fn fail(&mut self, what: String) {
        self.tr(|| format!("VIOLATION {what}"));
        if self.violation.is_none() {
            self.violation = Some(what);
        }
    }
}
