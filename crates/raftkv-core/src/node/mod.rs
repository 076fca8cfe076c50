//! The Raft node: state, inputs, and the `Ready` it hands back.
//!
//! Role handlers live beside this file: `election.rs` (pre-vote, votes,
//! becoming leader), `replication.rs` (AppendEntries on both sides, commit),
//! `lease.rs` (the leader lease and both kinds of linearizable read),
//! `read_lease.rs` (follower read leases and bounded-staleness reads),
//! `placement.rs` (handing leadership to a preferred node),
//! `membership.rs` (configurations and their changes), `snapshot.rs`
//! (compaction and InstallSnapshot), `transfer.rs` (leadership transfer) and
//! `repair.rs` (a node whose log was damaged: the vote floor).

mod election;
mod lease;
mod membership;
mod placement;
mod read_lease;
mod repair;
mod replication;
mod snapshot;
mod transfer;

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use crate::api::*;
use crate::config::{Config, ConfigError};
use crate::kv::KvStore;
use crate::log::RaftLog;
use crate::message::{Message, MessageBody};
use crate::rng::Rng;
use crate::snapshot::{Snapshot, SnapshotMeta, SnapshotWrite};
use crate::types::*;

use read_lease::{FollowerLease, Guards, Stamp};
use replication::Progress;
use snapshot::IncomingSnapshot;
use transfer::Transfer;

/// What a node recovered from its storage at start-up.
#[derive(Clone, Debug, Default)]
pub struct Restored {
    pub hard_state: HardState,
    /// The latest durable snapshot, if any.
    pub snapshot: Option<Snapshot>,
    /// The durable log after the snapshot (from index 1 without one),
    /// consecutive.
    pub entries: Vec<Entry>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RestoreError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("restored log is inconsistent: {0}")]
    BadLog(String),
}

/// Terms and indexes at or above this are treated as hostile: no honest
/// cluster gets there, and accepting them would risk overflow.
const NUMBER_ABSURD: u64 = 1 << 62;

/// What this node is doing in its term, with the state only that role has:
/// the votes live in the candidacies, the leader's bookkeeping in `Leader`,
/// so none of it can outlive the role.
#[derive(Debug)]
enum RoleState {
    /// Follows `leader` when it knows one. A candidate that lost its
    /// election also waits here, with no leader, for its next timeout.
    Follower {
        leader: Option<NodeId>,
    },
    /// Asking whether it could win (pre-vote, Raft thesis §9.6) without
    /// moving anyone's term: voter → granted, for the term after ours.
    PreCandidate {
        votes: BTreeMap<NodeId, bool>,
    },
    /// Campaigning in its own term, having voted for itself.
    Candidate {
        /// voter → granted, for this term.
        votes: BTreeMap<NodeId, bool>,
        /// lease rule 5: the largest `lease_remaining` among vote replies.
        max_vote_lease_remaining: Duration,
    },
    Leader(LeaderState),
}

impl RoleState {
    fn kind(&self) -> Role {
        match self {
            RoleState::Follower { .. } => Role::Follower,
            RoleState::PreCandidate { .. } => Role::PreCandidate,
            RoleState::Candidate { .. } => Role::Candidate,
            RoleState::Leader(_) => Role::Leader,
        }
    }
}

/// The leader's bookkeeping, alive only while this node leads.
#[derive(Debug)]
struct LeaderState {
    progress: BTreeMap<NodeId, Progress>,
    /// The no-op appended on election (lease rule 6).
    noop_index: LogIndex,
    /// lease rule 5: no client-visible read or write before this.
    wait_until: MonoTime,
    /// When this node became leader; echoed send times before it are stale.
    since: MonoTime,
    next_heartbeat: MonoTime,
    /// Whether the lease held at the last check (for events only).
    lease_held: bool,
    /// New entries to replicate at the next `ready()`.
    replicate_pending: bool,
    /// A ReadIndex round asked for a heartbeat at the next `ready()`: when
    /// the latest read that asked arrived.
    heartbeat_pending: Option<MonoTime>,
    /// When a heartbeat last went to every peer since the last `ready()`
    /// (its messages still wait in this batch). One sent at or after a
    /// read arrived serves that read's round (see `flush_leader_sends`).
    heartbeat_batched_at: Option<MonoTime>,
    /// A leadership transfer in progress (lease reads and writes paused).
    transfer: Option<Transfer>,
    /// The membership change proposed here and not yet committed.
    pending_conf: Option<LogIndex>,
    /// F3: the read lease holders whose guard has not passed.
    guards: Guards,
    /// Commits advanced while holders were guarded: tell them at once.
    notify_holders: bool,
    /// Leader placement acts no earlier than this (`placement.rs`).
    placement_not_before: MonoTime,
}

/// A linearizable read waiting for its conditions (see `lease.rs`).
#[derive(Debug)]
struct PendingRead {
    id: ReadId,
    key: String,
    read_index: LogIndex,
    requested_at: MonoTime,
}

/// The Raft node. See the crate docs for the driving contract.
pub struct RaftNode {
    cfg: Config,
    /// Every member of the configuration in force but this node.
    peers: Vec<NodeId>,
    /// The configurations in the log, oldest first: the first is the base
    /// (the snapshot's, or the bootstrap voters at index 0), the last is the
    /// one in force. See `membership.rs`.
    configs: Vec<(LogIndex, Membership)>,
    /// Peers' zones, as the host learned them (`placement.rs`).
    zones: BTreeMap<NodeId, String>,
    /// The latest snapshot known durable (or being installed from the
    /// leader, which is durable before this node acknowledges it).
    snapshot_meta: SnapshotMeta,
    /// A compaction snapshot handed out and not yet reported saved.
    snapshot_unsaved: Option<SnapshotMeta>,
    /// A snapshot arriving from the leader, chunk by chunk.
    incoming_snapshot: Option<IncomingSnapshot>,
    rng: Rng,
    /// The latest time given as input; inputs never move it backwards.
    now: MonoTime,

    // Persistent state (durable through `Ready::hard_state` / `entries`).
    term: Term,
    voted_for: Option<NodeId>,
    /// Set while a damaged log is being repaired (see `repair.rs`).
    repair: Option<VoteFloor>,
    log: RaftLog,
    /// The hard state last handed out in a `Ready`.
    emitted_hard_state: HardState,

    role: RoleState,
    election_deadline: MonoTime,
    /// When this node last heard from a leader of its term (vote stickiness).
    last_leader_contact: Option<MonoTime>,
    /// The highest commit index a leader has told this node (in
    /// AppendEntries); for status only (readiness: how far behind is this
    /// node's state machine). Monotone: commit indexes never go back.
    leader_commit_seen: LogIndex,
    /// lease rule 1: the lease this node protects. Never decreases.
    lease_until: MonoTime,

    kv: KvStore,
    /// Writes proposed here, by log index, awaiting application.
    pending_writes: BTreeMap<LogIndex, (ClientId, u64)>,
    /// Results held back until the new leader's wait ends (rule 5).
    held_writes: Vec<WriteResult>,
    pending_reads: VecDeque<PendingRead>,
    /// Follower read leases and freshness proofs (`read_lease.rs`).
    read_lease: FollowerLease,
    /// How long commits waited for read lease holders (F7), in all.
    read_lease_write_wait: Duration,

    // Outputs gathered for the next `Ready`.
    requests_out: Vec<Message>,
    /// Replies that promise durability (a vote, an acknowledged entry).
    responses_out: Vec<Message>,
    /// Pre-vote replies, granted or not: they promise nothing (granting one
    /// records no vote and moves no term), so they never wait for a sync.
    pre_vote_replies_out: Vec<Message>,
    write_results: Vec<WriteResult>,
    read_results: Vec<ReadResult>,
    conf_change_results: Vec<ConfChangeResult>,
    snapshots_out: Vec<SnapshotWrite>,
    events: Vec<Event>,

    rejected_messages: u64,
}

impl RaftNode {
    /// Start a node from what storage recovered. `now` is the node's monotonic
    /// clock; `seed` drives its election timeouts.
    pub fn new(
        cfg: Config,
        restored: Restored,
        now: MonoTime,
        seed: u64,
    ) -> Result<RaftNode, RestoreError> {
        cfg.validate()?;
        let snap_meta = restored
            .snapshot
            .as_ref()
            .map(|s| s.meta.clone())
            .unwrap_or_else(|| SnapshotMeta {
                membership: Membership::with_voters(cfg.voters.iter().copied()),
                ..SnapshotMeta::default()
            });
        check_restored_log(&snap_meta, &restored.entries)?;
        let hs = restored.hard_state;
        let log_last_term = restored
            .entries
            .last()
            .map(|e| e.term)
            .unwrap_or(snap_meta.term);
        // A log entry of a later term than the metadata means the metadata
        // write was lost; the term can only be at least the log's.
        let term = hs.term.max(log_last_term);
        let voted_for = if term == hs.term { hs.voted_for } else { None };
        // lease rule 3: this node may have acknowledged a leader just
        // before it crashed, so it protects a full lease from now.
        let lease_until = if cfg.unsafe_test_knobs.disable_restart_lease {
            MonoTime::ZERO
        } else {
            now + cfg.lease_duration
        };
        let kv = match &restored.snapshot {
            Some(snap) => KvStore::from_snapshot(cfg.max_sessions, snap),
            None => KvStore::new(cfg.max_sessions),
        };
        let mut configs = vec![(snap_meta.index, snap_meta.membership.clone())];
        for e in &restored.entries {
            if let EntryPayload::Config(m) = &e.payload {
                configs.push((e.index, m.clone()));
            }
        }
        let log = RaftLog::restored(snap_meta.index, snap_meta.term, restored.entries, hs.commit);
        let mut node = RaftNode {
            peers: Vec::new(),
            configs,
            zones: BTreeMap::new(),
            snapshot_meta: snap_meta,
            snapshot_unsaved: None,
            incoming_snapshot: None,
            rng: Rng::new(seed),
            now,
            term,
            voted_for,
            repair: hs.repair,
            log,
            emitted_hard_state: HardState {
                term,
                voted_for,
                commit: hs.commit,
                repair: hs.repair,
            },
            role: RoleState::Follower { leader: None },
            election_deadline: now,
            last_leader_contact: None,
            leader_commit_seen: LogIndex::ZERO,
            lease_until,
            kv,
            pending_writes: BTreeMap::new(),
            held_writes: Vec::new(),
            pending_reads: VecDeque::new(),
            read_lease: FollowerLease::new(incarnation(seed)),
            read_lease_write_wait: Duration::ZERO,
            requests_out: Vec::new(),
            responses_out: Vec::new(),
            pre_vote_replies_out: Vec::new(),
            write_results: Vec::new(),
            read_results: Vec::new(),
            conf_change_results: Vec::new(),
            snapshots_out: Vec::new(),
            events: Vec::new(),
            rejected_messages: 0,
            cfg,
        };
        node.refresh_peers();
        node.emitted_hard_state.commit = node.log.commit();
        node.reset_election_deadline();
        node.apply_committed();
        Ok(node)
    }

    fn advance_time(&mut self, now: MonoTime) {
        if now > self.now {
            self.now = now;
        }
        self.debug_check();
    }

    /// In debug builds (tests, and the simulator's `sim` profile), check the
    /// invariants at every input, before it acts: a broken one is caught on
    /// the input after the one that broke it.
    fn debug_check(&self) {
        if cfg!(debug_assertions) {
            self.assert_invariants();
        }
    }

    /// Panics if an invariant stated on the node's fields or role does not
    /// hold (see `RoleState`, `LeaderState`, `Progress`).
    fn assert_invariants(&self) {
        let me = self.cfg.id;
        let (commit, last) = (self.log.commit(), self.log.last_index());
        // Entries apply synchronously at commit (see `lease.rs`).
        assert_eq!(self.kv.applied(), commit, "node {me}: applied lags commit");
        assert!(
            self.snapshot_meta.index <= commit,
            "node {me}: a snapshot past the commit index"
        );
        let leading = matches!(self.role, RoleState::Leader(_));
        assert!(
            leading || self.pending_writes.is_empty() && self.held_writes.is_empty(),
            "node {me}: writes wait on a node that does not lead"
        );
        assert!(
            leading || self.pending_reads.is_empty(),
            "node {me}: reads wait on a node that does not lead"
        );
        assert!(
            !leading || self.read_lease.waiting_is_empty(),
            "node {me}: follower reads wait on a leader"
        );
        match &self.role {
            RoleState::Follower { leader } => {
                assert_ne!(*leader, Some(me), "node {me}: follows itself");
            }
            RoleState::PreCandidate { votes } => {
                assert_eq!(
                    votes.get(&me),
                    Some(&true),
                    "node {me}: pre-vote without its own"
                );
            }
            RoleState::Candidate { votes, .. } => {
                assert_eq!(
                    votes.get(&me),
                    Some(&true),
                    "node {me}: candidate without its own vote"
                );
                assert_eq!(
                    self.voted_for,
                    Some(me),
                    "node {me}: candidate voted for another"
                );
            }
            RoleState::Leader(ls) => {
                assert_eq!(
                    self.voted_for,
                    Some(me),
                    "node {me}: leader voted for another"
                );
                assert!(ls.noop_index <= last, "node {me}: no-op past the log");
                assert!(
                    ls.progress
                        .keys()
                        .eq(self.peers.iter().collect::<std::collections::BTreeSet<_>>()),
                    "node {me}: progress tracked for {:?}, peers {:?}",
                    ls.progress.keys().collect::<Vec<_>>(),
                    self.peers
                );
                assert!(
                    ls.pending_conf.is_none_or(|i| commit < i && i <= last),
                    "node {me}: a pending configuration change outside the uncommitted log"
                );
                for (&id, p) in &ls.progress {
                    p.assert_invariants(id, last);
                }
            }
        }
    }

    /// A message from a peer. Malformed or hostile messages are counted and
    /// dropped; nothing a peer sends can make this panic.
    pub fn step(&mut self, now: MonoTime, msg: Message) {
        self.advance_time(now);
        self.step_message(msg);
        self.after_input();
    }

    /// What every input that may move the term, the role or the commit
    /// index ends with: reads waiting at a follower (F4) settle.
    fn after_input(&mut self) {
        self.note_applied_for_freshness();
        self.complete_follower_reads();
    }

    fn step_message(&mut self, msg: Message) {
        if msg.to != self.cfg.id {
            return self.reject(msg.from, RejectReason::NotForMe);
        }
        // Any other node may be a member this node has not heard of yet (a
        // leader added after it fell behind, say), so senders are not checked
        // against the configuration here; votes and acknowledgements count
        // only from members (see `membership.rs`).
        if msg.from == NodeId(0) || msg.from == self.cfg.id {
            return self.reject(msg.from, RejectReason::UnknownSender);
        }
        if msg.term.0 >= NUMBER_ABSURD || has_absurd_index(&msg.body) {
            return self.reject(msg.from, RejectReason::AbsurdNumber);
        }
        match &msg.body {
            MessageBody::RequestVote(_) => return self.handle_vote_request(msg),
            MessageBody::RequestVoteResponse(r) if r.pre_vote && r.granted => {
                return self.handle_vote_response(msg);
            }
            _ => {}
        }
        if msg.term > self.term {
            let from_leader = matches!(
                msg.body,
                MessageBody::AppendEntries(_)
                    | MessageBody::InstallSnapshot(_)
                    | MessageBody::TimeoutNow
            );
            self.become_follower(msg.term, from_leader.then_some(msg.from));
        }
        match msg.body {
            MessageBody::AppendEntries(_) => {
                self.handle_append(msg);
                self.maybe_finish_repair();
            }
            MessageBody::AppendEntriesResponse(ref r) => {
                let stamp = Stamp::of(msg.from, msg.term, r);
                self.handle_append_response(msg);
                self.grant_read_lease(stamp);
            }
            MessageBody::RequestVoteResponse(_) => self.handle_vote_response(msg),
            MessageBody::InstallSnapshot(_) => {
                self.handle_install_snapshot(msg);
                self.maybe_finish_repair();
            }
            MessageBody::InstallSnapshotResponse(_) => self.handle_install_snapshot_response(msg),
            MessageBody::TimeoutNow => self.handle_timeout_now(msg),
            MessageBody::RequestVote(_) => unreachable!("handled above"),
        }
    }

    fn reject(&mut self, from: NodeId, reason: RejectReason) {
        self.rejected_messages += 1;
        self.events.push(Event::MessageRejected { from, reason });
    }

    /// Advance timers: elections, heartbeats, check-quorum, lease expiry,
    /// held results and pending reads.
    pub fn tick(&mut self, now: MonoTime) {
        self.advance_time(now);
        let heard_from_quorum = self.leader_state().map(|ls| self.heard_from_quorum(ls));
        if heard_from_quorum == Some(false) {
            // lease rule 8: its lease ended long before.
            self.step_down(StepDownReason::LostQuorum, None);
        } else if let RoleState::Leader(ls) = &mut self.role {
            let work = ls.on_tick(self.now, &self.cfg);
            self.tick_leader(work);
        } else if self.now >= self.election_deadline {
            if self.may_campaign() && self.repair.is_none() {
                self.start_pre_vote();
            } else {
                // Learners, removed nodes, nodes waiting to join and nodes
                // repairing a damaged log (`repair.rs`) never campaign.
                self.reset_election_deadline();
            }
        }
        self.after_input();
    }

    /// Propose a client write; its outcome arrives in `Ready::write_results`.
    pub fn propose(&mut self, now: MonoTime, cmd: ClientCommand) -> Result<LogIndex, ProposeError> {
        self.advance_time(now);
        self.check_sizes(&cmd.op)?;
        let refusal = self.not_leader();
        let RoleState::Leader(ls) = &mut self.role else {
            return Err(refusal.into());
        };
        if let Some(target) = ls.transfer_target() {
            return Err(ProposeError::TransferInProgress { target });
        }
        let unapplied = (self.log.last_index().0 - self.kv.applied().0) as usize;
        if unapplied >= self.cfg.max_pending_proposals {
            return Err(ProposeError::TooManyPending {
                limit: self.cfg.max_pending_proposals,
            });
        }
        let index = self.log.last_index().next();
        self.pending_writes.insert(index, (cmd.client_id, cmd.seq));
        self.log.push(Entry {
            index,
            term: self.term,
            payload: EntryPayload::Command(cmd),
        });
        ls.replicate_pending = true;
        self.maybe_commit();
        Ok(index)
    }

    fn check_sizes(&self, op: &Op) -> Result<(), ProposeError> {
        let key_len = op.key().len();
        if key_len > self.cfg.max_key_bytes {
            return Err(ProposeError::KeyTooLarge {
                len: key_len,
                limit: self.cfg.max_key_bytes,
            });
        }
        if let Op::Set { value, .. } = op {
            if value.len() > self.cfg.max_value_bytes {
                return Err(ProposeError::ValueTooLarge {
                    len: value.len(),
                    limit: self.cfg.max_value_bytes,
                });
            }
        }
        Ok(())
    }

    /// A possibly stale read from this node's applied state, on any role.
    pub fn read_stale(&self, key: &str) -> Option<String> {
        self.kv.get(key).cloned()
    }

    pub fn has_ready(&self) -> bool {
        self.log.has_unstable()
            || !self.snapshots_out.is_empty()
            || !self.conf_change_results.is_empty()
            || self.current_hard_state() != self.emitted_hard_state
            || !self.requests_out.is_empty()
            || !self.responses_out.is_empty()
            || !self.pre_vote_replies_out.is_empty()
            || !self.write_results.is_empty()
            || !self.read_results.is_empty()
            || !self.events.is_empty()
            || matches!(&self.role, RoleState::Leader(ls)
                if ls.replicate_pending || ls.heartbeat_pending.is_some())
    }

    /// Everything to do now; see [`Ready`] for the order.
    pub fn ready(&mut self) -> Ready {
        self.debug_check();
        self.flush_leader_sends();
        let hs = self.current_hard_state();
        let term_or_vote_changed = hs.term != self.emitted_hard_state.term
            || hs.voted_for != self.emitted_hard_state.voted_for;
        let hard_state = (hs != self.emitted_hard_state).then_some(hs);
        self.emitted_hard_state = hs;
        let snapshots = std::mem::take(&mut self.snapshots_out);
        let entries = self.log.take_unstable();
        let must_sync = term_or_vote_changed || !entries.is_empty() || !snapshots.is_empty();
        // Responses promise durability (a vote, an acknowledged entry), so
        // they always wait for the driver's sync; requests wait only when
        // this node's own term or vote is not yet durable. Pre-vote replies
        // promise nothing and never wait.
        let mut persisted_messages = std::mem::take(&mut self.responses_out);
        let mut messages = if term_or_vote_changed {
            persisted_messages.append(&mut self.requests_out);
            Vec::new()
        } else {
            std::mem::take(&mut self.requests_out)
        };
        messages.append(&mut self.pre_vote_replies_out);
        Ready {
            hard_state,
            must_sync,
            snapshots,
            entries,
            messages,
            persisted_messages,
            write_results: std::mem::take(&mut self.write_results),
            read_results: std::mem::take(&mut self.read_results),
            conf_change_results: std::mem::take(&mut self.conf_change_results),
            events: std::mem::take(&mut self.events),
        }
    }

    /// Storage made entries up to `(index, term)` durable.
    pub fn on_persisted(&mut self, now: MonoTime, index: LogIndex, term: Term) {
        self.advance_time(now);
        self.log.persisted_to(index, term);
        self.maybe_commit();
        // A snapshot waits until everything it covers is durable here.
        self.maybe_take_snapshot();
    }

    fn current_hard_state(&self) -> HardState {
        HardState {
            term: self.term,
            voted_for: self.voted_for,
            commit: self.log.commit(),
            repair: self.repair,
        }
    }

    pub fn status(&self, now: MonoTime) -> Status {
        let now = now.max(self.now);
        let peers = self
            .peers
            .iter()
            .map(|&id| {
                let p = self.leader_state().and_then(|ls| ls.progress.get(&id));
                PeerStatus {
                    id,
                    learner: self.membership().is_learner(id),
                    snapshot: p
                        .and_then(|p| p.snapshot())
                        .map(|s| (s.snap.meta.index, s.acked)),
                    match_index: p.map(|p| p.match_index).unwrap_or_default(),
                    next_index: p.map(|p| p.next_index).unwrap_or_default(),
                    last_contact_ago: p
                        .and_then(|p| p.last_contact)
                        .map(|t| now.saturating_since(t)),
                    round_trip: p.and_then(|p| p.round_trip),
                }
            })
            .collect();
        Status {
            id: self.cfg.id,
            role: self.role(),
            term: self.term,
            leader: self.leader(),
            voted_for: self.voted_for,
            commit_index: self.log.commit(),
            applied_index: self.kv.applied(),
            last_log_index: self.log.last_index(),
            persisted_index: self.log.persisted(),
            lease: self.lease_status(now),
            membership: self.membership().clone(),
            membership_index: self.membership_index(),
            snapshot_index: self.snapshot_meta.index,
            first_log_index: self.log.first_index(),
            transfer_to: self.transfer_target(),
            placement: self.placement().clone(),
            placement_from_log: self.membership().placement.is_some(),
            preferred_voters: self.preferred_voters(),
            peers,
            rejected_messages: self.rejected_messages,
            pending_proposals: self.pending_writes.len(),
            pending_reads: self.pending_reads.len(),
            leader_commit: match self.role {
                RoleState::Leader(_) => self.log.commit(),
                _ => self.leader_commit_seen.max(self.log.commit()),
            },
            client_sessions: self.kv.session_count(),
        }
    }

    /// The commit index, without building a whole `Status`.
    pub fn commit_index(&self) -> LogIndex {
        self.log.commit()
    }

    /// The index of the last entry applied to the state machine.
    pub fn applied_index(&self) -> LogIndex {
        self.kv.applied()
    }

    pub fn kv(&self) -> &KvStore {
        &self.kv
    }

    /// The in-memory log, read-only (for invariant checks and status).
    pub fn log(&self) -> &RaftLog {
        &self.log
    }

    pub fn id(&self) -> NodeId {
        self.cfg.id
    }

    pub fn role(&self) -> Role {
        self.role.kind()
    }

    pub fn term(&self) -> Term {
        self.term
    }

    pub fn leader(&self) -> Option<NodeId> {
        match self.role {
            RoleState::Follower { leader } => leader,
            RoleState::PreCandidate { .. } | RoleState::Candidate { .. } => None,
            RoleState::Leader(_) => Some(self.cfg.id),
        }
    }

    /// The leader's bookkeeping, while this node leads (for queries; the
    /// leader's handlers match on `role` themselves).
    fn leader_state(&self) -> Option<&LeaderState> {
        match &self.role {
            RoleState::Leader(ls) => Some(ls),
            _ => None,
        }
    }

    /// The refusal a leader-only input gets here, with the leader to try.
    fn not_leader(&self) -> NotLeader {
        NotLeader {
            leader_hint: self.leader(),
        }
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    fn reset_election_deadline(&mut self) {
        let lo = self.cfg.election_timeout_min.as_nanos() as u64;
        let hi = self.cfg.election_timeout_max.as_nanos() as u64;
        let timeout = self.rng.range_inclusive(lo, hi);
        self.election_deadline = self.now + Duration::from_nanos(timeout);
    }

    fn send(&mut self, to: NodeId, body: MessageBody) {
        let msg = Message {
            from: self.cfg.id,
            to,
            term: self.term,
            body,
        };
        self.requests_out.push(msg);
    }

    fn respond(&mut self, to: NodeId, term: Term, body: MessageBody) {
        self.responses_out.push(Message {
            from: self.cfg.id,
            to,
            term,
            body,
        });
    }

    /// A pre-vote reply: it goes out with the next `Ready::messages`, never
    /// behind a sync (see `handle_vote_request`).
    fn reply_to_pre_vote(&mut self, to: NodeId, term: Term, body: MessageBody) {
        self.pre_vote_replies_out.push(Message {
            from: self.cfg.id,
            to,
            term,
            body,
        });
    }

    /// Apply every committed entry not yet applied, in order, and report the
    /// writes proposed here.
    fn apply_committed(&mut self) {
        while self.kv.applied() < self.log.commit() {
            let index = self.kv.applied().next();
            let entry = self
                .log
                .get(index)
                .expect("committed entries are in the log");
            let result = match &entry.payload {
                EntryPayload::Noop => {
                    self.kv.apply_noop(index);
                    None
                }
                EntryPayload::Command(cmd) => {
                    let outcome = self.kv.apply(index, cmd);
                    Some((cmd.client_id, cmd.seq, outcome))
                }
                EntryPayload::Config(_) => {
                    self.kv.apply_noop(index);
                    self.config_committed(index);
                    None
                }
            };
            let Some((client_id, seq, outcome)) = result else {
                continue;
            };
            if self.pending_writes.get(&index) == Some(&(client_id, seq)) {
                self.pending_writes.remove(&index);
                self.deliver_write(WriteResult {
                    client_id,
                    seq,
                    index,
                    outcome,
                });
            }
        }
        debug_assert!(self.kv.applied() == self.log.commit());
        self.maybe_take_snapshot();
    }

    /// Leaders hold results back until the old lease is over (rule 5).
    fn deliver_write(&mut self, result: WriteResult) {
        if self.is_waiting_for_old_lease() {
            self.held_writes.push(result);
        } else {
            self.write_results.push(result);
        }
    }

    fn is_waiting_for_old_lease(&self) -> bool {
        self.leader_state()
            .is_some_and(|ls| self.now < ls.wait_until)
    }

    /// Follow `leader` (when known) in `term`, moving to it when it is
    /// higher; a leader steps down on the way.
    fn become_follower(&mut self, term: Term, leader: Option<NodeId>) {
        if term > self.term {
            self.term = term;
            self.voted_for = None;
            self.drop_read_lease_for_term();
        }
        if matches!(self.role, RoleState::Leader(_)) {
            self.step_down(StepDownReason::HigherTerm(term), leader);
        } else {
            self.role = RoleState::Follower { leader };
            self.reset_election_deadline();
        }
        if leader.is_some() {
            self.last_leader_contact = Some(self.now);
        }
        self.events.push(Event::BecameFollower {
            term: self.term,
            leader,
        });
    }

    /// The one way out of leadership, whatever the reason: the leader state
    /// goes, pending writes and reads learn they may need a retry, and the
    /// node follows `leader` with a fresh election timeout.
    fn step_down(&mut self, reason: StepDownReason, leader: Option<NodeId>) {
        let follower = RoleState::Follower { leader };
        let RoleState::Leader(ls) = std::mem::replace(&mut self.role, follower) else {
            unreachable!("only a leader steps down");
        };
        self.events.push(Event::SteppedDown {
            term: self.term,
            reason,
        });
        // The hint stays empty: a deposed leader does not know who leads.
        let refusal = NotLeader { leader_hint: None };
        for (index, (client_id, seq)) in std::mem::take(&mut self.pending_writes) {
            let outcome = Err(WriteError::NotLeader(refusal));
            self.write_results.push(WriteResult {
                client_id,
                seq,
                index,
                outcome,
            });
        }
        // Held results were applied, but a deposed leader cannot promise the
        // old lease is over: report them as unknown rather than acknowledge.
        for mut w in std::mem::take(&mut self.held_writes) {
            w.outcome = Err(WriteError::NotLeader(refusal));
            self.write_results.push(w);
        }
        for r in std::mem::take(&mut self.pending_reads) {
            let outcome = Err(ReadError::NotLeader(refusal));
            self.read_results.push(ReadResult { id: r.id, outcome });
        }
        if let Some(index) = ls.pending_conf {
            self.conf_change_results.push(ConfChangeResult {
                index,
                outcome: Err(WriteError::NotLeader(refusal)),
            });
        }
        self.reset_election_deadline();
    }
}

/// A node's incarnation for read lease stamps (F1), from its seed (a new
/// one at every start) without drawing from its generator.
fn incarnation(seed: u64) -> u64 {
    Rng::new(seed ^ 0x5EAD_1EA5_E000_0001).next_u64()
}

fn has_absurd_index(body: &MessageBody) -> bool {
    let absurd = |i: LogIndex| i.0 >= NUMBER_ABSURD;
    match body {
        MessageBody::AppendEntries(a) => {
            absurd(a.prev_log_index)
                || absurd(a.leader_commit)
                || a.prev_log_term.0 >= NUMBER_ABSURD
        }
        MessageBody::AppendEntriesResponse(ref r) => {
            absurd(r.match_index) || absurd(r.conflict_index) || absurd(r.last_log_index)
        }
        MessageBody::RequestVote(r) => {
            absurd(r.last_log_index) || r.last_log_term.0 >= NUMBER_ABSURD
        }
        MessageBody::RequestVoteResponse(_) | MessageBody::TimeoutNow => false,
        MessageBody::InstallSnapshot(s) => absurd(s.meta.index) || s.meta.term.0 >= NUMBER_ABSURD,
        MessageBody::InstallSnapshotResponse(r) => absurd(r.snapshot_index),
    }
}

fn check_restored_log(snap: &SnapshotMeta, entries: &[Entry]) -> Result<(), RestoreError> {
    if snap.membership.validate().is_err() {
        return Err(RestoreError::BadLog(format!(
            "snapshot configuration is invalid: {:?}",
            snap.membership.validate()
        )));
    }
    if let Some(first) = entries.first() {
        if first.term < snap.term {
            return Err(RestoreError::BadLog(format!(
                "entry {} has a term below the snapshot's",
                first.index
            )));
        }
    }
    for (i, e) in entries.iter().enumerate() {
        if e.index.0 != snap.index.0 + i as u64 + 1 {
            return Err(RestoreError::BadLog(format!(
                "entry {} found at position {}",
                e.index,
                i + 1
            )));
        }
        if i > 0 && e.term < entries[i - 1].term {
            return Err(RestoreError::BadLog(format!(
                "term decreases at index {}",
                e.index
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::InstantCluster;

    fn leader_of_three() -> (InstantCluster, usize) {
        let mut c = InstantCluster::new(3);
        let l = c.leader_with_lease();
        (c, l)
    }

    #[test]
    fn a_running_cluster_keeps_its_invariants() {
        let (c, l) = leader_of_three();
        for node in &c.nodes {
            node.assert_invariants();
        }
        assert_eq!(c.nodes[l].role(), Role::Leader);
    }

    /// The check runs on every input in debug builds: a progress broken by
    /// hand is caught at the leader's next tick.
    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "not below next")]
    fn a_broken_progress_is_caught_at_the_next_input() {
        let (mut c, l) = leader_of_three();
        let RoleState::Leader(ls) = &mut c.nodes[l].role else {
            unreachable!()
        };
        let p = ls.progress.values_mut().next().unwrap();
        p.match_index = p.next_index;
        let now = c.now;
        c.nodes[l].tick(now);
    }

    #[test]
    #[should_panic(expected = "writes wait on a node that does not lead")]
    fn a_write_waiting_on_a_follower_panics() {
        let (mut c, l) = leader_of_three();
        let f = (l + 1) % 3;
        let cmd = crate::testkit::set_cmd(1, 1, "k", "v");
        c.nodes[f]
            .pending_writes
            .insert(LogIndex(99), (cmd.client_id, cmd.seq));
        c.nodes[f].assert_invariants();
    }

    #[test]
    #[should_panic(expected = "follows itself")]
    fn a_follower_of_itself_panics() {
        let (mut c, l) = leader_of_three();
        let f = (l + 1) % 3;
        let me = c.nodes[f].id();
        c.nodes[f].role = RoleState::Follower { leader: Some(me) };
        c.nodes[f].assert_invariants();
    }
}
