//! Log replication: the leader's side (progress, sending, commit) and the
//! follower's side (accepting entries, renewing the lease it protects).

use std::collections::VecDeque;
use std::time::Duration;

use super::snapshot::SnapshotSend;
use super::{LeaderState, RaftNode, RoleState};
use crate::api::{Event, RejectReason};
use crate::config::Config;
use crate::message::{AppendEntries, AppendEntriesResponse, FollowerEcho, Message, MessageBody};
use crate::types::{LogIndex, MonoTime, NodeId, Term};

/// Never protect a lease longer than this, whatever a message claims.
const LEASE_DURATION_MAX: Duration = Duration::from_secs(60);

/// The leader's view of one follower.
///
/// Invariants (`assert_invariants`, checked after every input in debug
/// builds): `match_index < next_index`; appends in flight lie strictly
/// between the two, in order, and their bytes add up; `match_index` never
/// decreases within a term (it moves only through `advance_match`).
#[derive(Debug, Clone)]
pub(super) struct Progress {
    pub(super) match_index: LogIndex,
    pub(super) next_index: LogIndex,
    pub(super) state: Replication,
    /// lease rule 4: the latest send time echoed by a successful reply
    /// in this term.
    pub(super) acked_send_time: Option<MonoTime>,
    /// When the leader last heard anything from this peer in this term
    /// (check quorum, rule 8).
    pub(super) last_contact: Option<MonoTime>,
    /// The round trip of the latest reply that echoed a send time (for
    /// operators: `PeerStatus::round_trip`).
    pub(super) round_trip: Option<Duration>,
    /// F2: the peer's latest stamp, echoed in every append to it, and when
    /// it was recorded.
    pub(super) echo: Option<FollowerEcho>,
    pub(super) echo_at: Option<MonoTime>,
}

/// How the leader sends to one follower.
#[derive(Debug, Clone)]
pub(super) enum Replication {
    /// At most one AppendEntries in flight (sent at `sent_at`), looking for
    /// the point where the logs agree.
    Probe { sent_at: Option<MonoTime> },
    /// Entries stream, pipelined: the appends in flight as (last index,
    /// bytes, send time), and their bytes in all.
    Stream {
        inflight: VecDeque<(LogIndex, usize, MonoTime)>,
        inflight_bytes: usize,
    },
    /// The follower needs entries the leader has compacted away: a snapshot
    /// transfer is under way. Streaming resumes once it is installed.
    Snapshot(Box<SnapshotSend>),
}

impl Replication {
    fn stream() -> Replication {
        Replication::Stream {
            inflight: VecDeque::new(),
            inflight_bytes: 0,
        }
    }
}

impl Progress {
    pub(super) fn new(next_index: LogIndex, now: MonoTime) -> Progress {
        Progress {
            match_index: LogIndex::ZERO,
            next_index,
            state: Replication::Probe { sent_at: None },
            acked_send_time: None,
            round_trip: None,
            // Counting everyone as just heard gives a new leader one full
            // election timeout before check quorum can depose it.
            last_contact: Some(now),
            echo: None,
            echo_at: None,
        }
    }

    /// The snapshot transfer under way, if any.
    pub(super) fn snapshot(&self) -> Option<&SnapshotSend> {
        match &self.state {
            Replication::Snapshot(ss) => Some(ss),
            _ => None,
        }
    }

    /// The follower holds the leader's log up to `index`: the match never
    /// moves back, and appends it covers leave the window.
    pub(super) fn advance_match(&mut self, index: LogIndex) {
        self.match_index = self.match_index.max(index);
        self.next_index = self.next_index.max(self.match_index.next());
        if let Replication::Stream {
            inflight,
            inflight_bytes,
        } = &mut self.state
        {
            while let Some(&(i, bytes, _)) = inflight.front() {
                if i > self.match_index {
                    break;
                }
                inflight.pop_front();
                *inflight_bytes -= bytes;
            }
        }
    }

    /// An append lost on the way leaves a streaming follower waiting for
    /// entries that never come: after `timeout`, probe again from its match.
    fn expire_stalled_stream(&mut self, now: MonoTime, timeout: Duration) {
        let Replication::Stream { inflight, .. } = &self.state else {
            return;
        };
        let stalled = inflight
            .front()
            .is_some_and(|&(_, _, sent)| now.saturating_since(sent) >= timeout);
        if stalled {
            let next = self.match_index.next();
            self.start_probing(next);
        }
    }

    /// Look for the point where the logs agree, from `next` (never at or
    /// below the match). A snapshot transfer is never abandoned this way.
    fn start_probing(&mut self, next: LogIndex) {
        debug_assert!(
            !matches!(self.state, Replication::Snapshot(_)),
            "probing would drop a snapshot transfer"
        );
        self.state = Replication::Probe { sent_at: None };
        self.next_index = next.max(self.match_index.next());
    }

    /// Stream from `next_index` with an empty window (after a probe matched,
    /// or once a snapshot is installed).
    pub(super) fn start_streaming(&mut self) {
        self.state = Replication::stream();
    }

    /// Panics if an invariant of the type doc does not hold. `last` is the
    /// leader's last log index.
    pub(super) fn assert_invariants(&self, peer: NodeId, last: LogIndex) {
        assert!(
            self.match_index < self.next_index,
            "peer {peer}: match {} not below next {}",
            self.match_index,
            self.next_index
        );
        assert!(
            self.match_index <= last,
            "peer {peer}: match {} past the leader's log ({last})",
            self.match_index
        );
        match &self.state {
            Replication::Probe { .. } => {}
            Replication::Stream {
                inflight,
                inflight_bytes,
            } => {
                let mut after = self.match_index;
                for &(index, _, _) in inflight {
                    assert!(
                        after < index && index < self.next_index,
                        "peer {peer}: append in flight up to {index} out of order \
                         (match {}, next {})",
                        self.match_index,
                        self.next_index
                    );
                    after = index;
                }
                let bytes: usize = inflight.iter().map(|&(_, b, _)| b).sum();
                assert_eq!(bytes, *inflight_bytes, "peer {peer}: bytes in flight");
            }
            Replication::Snapshot(ss) => ss.assert_invariants(peer),
        }
    }
}

/// What a leader's tick leaves to do once its own state is updated.
pub(super) struct LeaderTick {
    /// Snapshot transfers rewound after a stall: send to these peers again.
    stalled_snapshots: Vec<NodeId>,
    /// A leadership transfer given up (its target).
    transfer_aborted: Option<NodeId>,
    heartbeat: bool,
}

impl LeaderState {
    /// A leader's tick, once check quorum passed: probe again where a stream
    /// stalled, rewind stalled snapshot transfers, give up a late transfer,
    /// and see whether a heartbeat is due.
    pub(super) fn on_tick(&mut self, now: MonoTime, cfg: &Config) -> LeaderTick {
        let stall_timeout = cfg.election_timeout_min / 2;
        for p in self.progress.values_mut() {
            p.expire_stalled_stream(now, stall_timeout);
        }
        let stalled_snapshots = self.rewind_stalled_snapshots(now, stall_timeout);
        let transfer_aborted = self.take_expired_transfer(now);
        let heartbeat = now >= self.next_heartbeat;
        if heartbeat {
            self.next_heartbeat = now + cfg.heartbeat_interval;
        }
        LeaderTick {
            stalled_snapshots,
            transfer_aborted,
            heartbeat,
        }
    }
}

impl RaftNode {
    /// The sends and reports a leader's tick decided on (`on_tick`).
    pub(super) fn tick_leader(&mut self, work: LeaderTick) {
        for id in work.stalled_snapshots {
            self.send_snapshot_chunks(id);
        }
        if let Some(to) = work.transfer_aborted {
            self.events.push(Event::TransferAborted { to });
            self.leader_progress_checks();
        }
        if work.heartbeat {
            self.broadcast_append(true);
        }
        // F3: a guard that passed may release commits.
        self.maybe_commit();
        self.leader_progress_checks();
        self.maybe_move_leadership();
    }

    /// Send whatever each follower needs: new entries where the window
    /// allows, and when `heartbeat` is set, at least a heartbeat to everyone.
    pub(super) fn broadcast_append(&mut self, heartbeat: bool) {
        for i in 0..self.peers.len() {
            let peer = self.peers[i];
            self.send_append(peer, heartbeat);
        }
        let now = self.now;
        if let (true, RoleState::Leader(ls)) = (heartbeat, &mut self.role) {
            ls.heartbeat_batched_at = Some(now);
        }
    }

    /// Called by `ready()`: replicate what proposals added, and heartbeat
    /// for pending ReadIndex rounds, once per batch and at most once per
    /// peer.
    ///
    /// The round a read waits for is a majority acknowledging a heartbeat
    /// sent at or after its `requested_at` (`complete_reads`). A heartbeat
    /// already in this batch (a tick's) sent at or after the latest read
    /// that asked is such a heartbeat for every read that asked since the
    /// last `ready()`, and it leaves with this `Ready`, after those reads
    /// arrived: sending another beside it would only double the acks.
    pub(super) fn flush_leader_sends(&mut self) {
        let RoleState::Leader(ls) = &mut self.role else {
            return;
        };
        let asked_at = ls.heartbeat_pending.take();
        let batched_at = ls.heartbeat_batched_at.take();
        let heartbeat = asked_at.is_some_and(|asked| batched_at.is_none_or(|sent| sent < asked));
        let replicate = std::mem::take(&mut ls.replicate_pending);
        let notify = std::mem::take(&mut ls.notify_holders);
        if heartbeat || replicate {
            self.broadcast_append(heartbeat);
        }
        if notify && !heartbeat {
            self.notify_read_lease_holders();
        }
        // The next batch starts with no heartbeat in it.
        if let RoleState::Leader(ls) = &mut self.role {
            ls.heartbeat_batched_at = None;
        }
    }

    /// F4's wait at a holder ends when it learns the new commit index: tell
    /// every streaming holder at once rather than at the next heartbeat.
    fn notify_read_lease_holders(&mut self) {
        let offset = self.log.offset();
        for peer in self.guarded_peers() {
            let anchor = self.leader_state().and_then(|ls| {
                let p = ls.progress.get(&peer)?;
                matches!(p.state, Replication::Stream { .. }).then_some(p.match_index.max(offset))
            });
            if let Some(prev) = anchor {
                self.send_entries(peer, prev, Vec::new());
            }
        }
    }

    pub(super) fn send_append(&mut self, peer: NodeId, heartbeat: bool) {
        let now = self.now;
        let last = self.log.last_index();
        let offset = self.log.offset();
        let RoleState::Leader(ls) = &mut self.role else {
            return;
        };
        let Some(p) = ls.progress.get_mut(&peer) else {
            return; // no longer a member
        };
        let next = p.next_index;
        match &mut p.state {
            Replication::Probe { sent_at } if next > offset => {
                let probe_due =
                    sent_at.is_none_or(|t| now.saturating_since(t) >= self.cfg.heartbeat_interval);
                if !heartbeat && !probe_due {
                    return;
                }
                *sent_at = Some(now);
                let entries = self.log.slice(
                    next,
                    self.cfg.max_entries_per_append,
                    self.cfg.max_bytes_per_append,
                );
                self.send_entries(peer, next.prev(), entries);
            }
            Replication::Stream {
                inflight,
                inflight_bytes,
            } if next > offset => {
                // Fill the window, then send the (prev index, entries)
                // appends it took.
                let mut sends = Vec::new();
                loop {
                    let window_full = inflight.len() >= self.cfg.max_inflight_appends
                        || *inflight_bytes >= self.cfg.max_inflight_bytes;
                    if p.next_index > last || window_full {
                        break;
                    }
                    let next = p.next_index;
                    let entries = self.log.slice(
                        next,
                        self.cfg.max_entries_per_append,
                        self.cfg.max_bytes_per_append,
                    );
                    let last_sent = entries.last().expect("next <= last").index;
                    let bytes: usize = entries.iter().map(|e| e.size_bytes()).sum();
                    p.next_index = last_sent.next();
                    inflight.push_back((last_sent, bytes, now));
                    *inflight_bytes += bytes;
                    sends.push((next.prev(), entries));
                }
                if heartbeat && sends.is_empty() {
                    // A heartbeat anchors at the match index, which the
                    // follower certainly has, so it succeeds even while
                    // appends are in flight (or at the log's start, if
                    // compaction passed the match index).
                    sends.push((p.match_index.max(offset), Vec::new()));
                }
                for (prev, entries) in sends {
                    self.send_entries(peer, prev, entries);
                }
            }
            _ => {
                // A transfer is under way, or the entries it needs are
                // compacted: stream a snapshot. A heartbeat anchored at the
                // log's start keeps the lease renewed (rule 1) between
                // chunks; its failure reply is ignored.
                self.send_snapshot_chunks(peer);
                if heartbeat {
                    self.send_entries(peer, offset, Vec::new());
                }
            }
        }
    }

    fn send_entries(&mut self, to: NodeId, prev: LogIndex, entries: Vec<crate::types::Entry>) {
        let prev_log_term = self
            .log
            .term(prev)
            .expect("the leader has every index it sends from");
        let echo = self
            .leader_state()
            .and_then(|ls| ls.progress.get(&to))
            .and_then(|p| p.echo);
        let body = AppendEntries {
            prev_log_index: prev,
            prev_log_term,
            entries,
            leader_commit: self.log.commit(),
            lease_duration: self.cfg.lease_duration,
            send_time: self.now,
            echo,
        };
        self.send(to, MessageBody::AppendEntries(body));
    }

    /// Follower side of AppendEntries (the term is already reconciled).
    pub(super) fn handle_append(&mut self, msg: Message) {
        let MessageBody::AppendEntries(req) = msg.body else {
            unreachable!()
        };
        let from = msg.from;
        if msg.term < self.term {
            // A deposed leader: tell it the current term so it steps down.
            return self.reply_append(from, false, &req, LogIndex::ZERO, None);
        }
        if matches!(self.role, RoleState::Leader(_)) {
            // Two leaders in one term cannot happen with honest peers.
            return self.reject(from, RejectReason::UnexpectedResponse);
        }
        if !entries_well_formed(&req, msg.term) {
            return self.reject(from, RejectReason::MalformedEntries);
        }
        self.accept_leader_contact(from, req.lease_duration);
        self.leader_commit_seen = self.leader_commit_seen.max(req.leader_commit);

        let prev = req.prev_log_index;
        if prev > self.log.last_index() {
            let hint = self.log.last_index().next();
            return self.reply_append(from, false, &req, hint, None);
        }
        match self.log.term(prev) {
            Some(t) if t == req.prev_log_term => {}
            Some(t) => {
                let hint = self
                    .log
                    .first_index_of_term_at(prev)
                    .max(self.log.commit().next());
                return self.reply_append(from, false, &req, hint, Some(t));
            }
            // Before our first index (after compaction): let the leader retry
            // from just past our commit.
            None => return self.reply_append(from, false, &req, self.log.commit().next(), None),
        }
        if let Some(conflict) = self.log.first_conflict(&req.entries) {
            if conflict <= self.log.commit() {
                return self.reject(from, RejectReason::ConflictsWithCommitted);
            }
        }
        let last_new = LogIndex(prev.0 + req.entries.len() as u64);
        if let (Some(first), Some(last)) = (req.entries.first(), req.entries.last()) {
            self.events.push(Event::EntriesReceived {
                from,
                first: first.index,
                last: last.index,
            });
        }
        if let Some(from_index) = self.log.merge(&req.entries) {
            self.events.push(Event::Truncated { from: from_index });
            self.note_truncated(from_index);
        }
        self.note_appended_configs(&req.entries);
        let commit = req.leader_commit.min(last_new);
        if commit > self.log.commit() {
            self.log.set_commit(commit);
            self.events.push(Event::Committed { index: commit });
            self.apply_committed();
        }
        self.take_echo(from, &req);
        self.reply_append(from, true, &req, last_new, None);
    }

    /// A message from the leader of this term: follow it, and (lease
    /// rule 1) protect its lease before replying.
    pub(super) fn accept_leader_contact(&mut self, from: NodeId, lease_duration: Duration) {
        if !matches!(self.role, RoleState::Follower { leader: Some(l) } if l == from) {
            self.become_follower(self.term, Some(from));
        }
        self.last_leader_contact = Some(self.now);
        // The leader of this term already won it, so recording a vote for it
        // changes nothing for an honest node; but it makes a node that lost
        // its state (a wiped node added back) refuse a second vote in this
        // term to a late candidate.
        if self.voted_for.is_none() {
            self.voted_for = Some(from);
        }
        self.reset_election_deadline();
        let lease = lease_duration
            .min(LEASE_DURATION_MAX)
            .max(self.cfg.lease_duration);
        self.lease_until = self.lease_until.max(self.now + lease);
    }

    fn reply_append(
        &mut self,
        to: NodeId,
        success: bool,
        req: &AppendEntries,
        index: LogIndex,
        term: Option<Term>,
    ) {
        let mut body = AppendEntriesResponse {
            success,
            match_index: if success { index } else { LogIndex::ZERO },
            conflict_index: if success { LogIndex::ZERO } else { index },
            conflict_term: term,
            last_log_index: self.log.last_index(),
            send_time: req.send_time,
            follower_time: MonoTime::ZERO,
            follower_epoch: 0,
            wants_read_lease: false,
        };
        self.stamp_reply(&mut body);
        self.respond(to, self.term, MessageBody::AppendEntriesResponse(body));
    }

    /// Leader side of an AppendEntries reply (the term is already reconciled).
    pub(super) fn handle_append_response(&mut self, msg: Message) {
        let MessageBody::AppendEntriesResponse(resp) = msg.body else {
            unreachable!()
        };
        let (now, last) = (self.now, self.log.last_index());
        let RoleState::Leader(ls) = &mut self.role else {
            return; // stale: this node no longer leads
        };
        if msg.term < self.term {
            return; // stale
        }
        let since = ls.since;
        let Some(p) = ls.progress.get_mut(&msg.from) else {
            return; // not (or no longer) a member
        };
        if resp.success && resp.match_index > last {
            return self.reject(msg.from, RejectReason::ImpossibleMatch);
        }
        p.last_contact = Some(now);
        // Rule 4: a reply of this term means the follower applied rule 1
        // before replying, whether or not its log matched; only a send time
        // from this term, not from the future, may extend the lease.
        if resp.send_time >= since && resp.send_time <= now {
            p.acked_send_time = p.acked_send_time.max(Some(resp.send_time));
            p.round_trip = Some(now.saturating_since(resp.send_time));
        }
        if !resp.success && p.snapshot().is_some() {
            // The heartbeat that keeps the lease alive during a snapshot
            // transfer is expected to fail.
            return self.leader_progress_checks();
        }
        if !resp.success {
            let next = match resp.conflict_term {
                Some(t) => match self.log.last_index_of_term(t) {
                    Some(i) if i >= resp.conflict_index => i.next(),
                    _ => resp.conflict_index,
                },
                None => resp.conflict_index,
            };
            p.start_probing(next.min(last.next()).max(LogIndex(1)));
            self.send_append(msg.from, false);
            return self.leader_progress_checks();
        }
        p.advance_match(resp.match_index);
        if let Replication::Probe { .. } = p.state {
            p.start_streaming();
        }
        self.maybe_commit();
        self.leader_progress_checks();
        self.maybe_send_timeout_now(msg.from);
        // Committing may have removed this node from the configuration, and
        // so from leadership: look again.
        let behind = self.leader_state().is_some_and(|ls| {
            ls.progress
                .get(&msg.from)
                .is_some_and(|p| self.log.last_index() >= p.next_index)
        });
        if behind {
            self.send_append(msg.from, false);
        }
    }

    /// Commit by counting replicas, only for entries of this term (Raft
    /// §5.4.2; the Figure 8 rule).
    pub(super) fn maybe_commit(&mut self) {
        let Some(ls) = self.leader_state() else {
            return;
        };
        // Only voters of the configuration in force count; the leader
        // itself only while it is one of them.
        let m = self.membership();
        let mut matches: Vec<LogIndex> = m
            .voters
            .iter()
            .map(|&id| {
                if id == self.cfg.id {
                    self.log.persisted()
                } else {
                    ls.progress
                        .get(&id)
                        .map(|p| p.match_index)
                        .unwrap_or_default()
                }
            })
            .collect();
        matches.sort_unstable_by(|a, b| b.cmp(a));
        let quorum_index = matches[m.quorum() - 1];
        // A quorum holding an entry of this term commits it and everything
        // before it; F3 may make less of that visible for now.
        if quorum_index <= self.log.commit() || self.log.term(quorum_index) != Some(self.term) {
            return;
        }
        let visible = self.visible_commit(quorum_index);
        if visible > self.log.commit() {
            self.log.set_commit(visible);
            self.events.push(Event::Committed { index: visible });
            self.apply_committed();
            // Applying may have removed this node (see `config_committed`).
            let holders = self.has_guards();
            if let RoleState::Leader(ls) = &mut self.role {
                ls.replicate_pending = true;
                ls.notify_holders |= holders;
            }
            self.complete_reads();
        }
    }
}

/// Entries must follow `prev_log_index` one by one, with terms that never
/// decrease, start no lower than `prev_log_term`, and stay within the
/// message's term.
fn entries_well_formed(req: &AppendEntries, msg_term: Term) -> bool {
    if req.prev_log_term > msg_term {
        return false;
    }
    let mut expected = req.prev_log_index.next();
    let mut term = req.prev_log_term;
    for e in &req.entries {
        if e.index != expected || e.term < term || e.term > msg_term {
            return false;
        }
        expected = expected.next();
        term = e.term;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::Snapshot;

    const PEER: NodeId = NodeId(2);
    const LAST: LogIndex = LogIndex(10);

    fn streaming(match_index: u64, next_index: u64) -> Progress {
        let mut p = Progress::new(LogIndex(next_index), MonoTime::ZERO);
        p.match_index = LogIndex(match_index);
        p.start_streaming();
        p
    }

    fn send(p: &mut Progress, last_sent: u64, bytes: usize) {
        let Replication::Stream {
            inflight,
            inflight_bytes,
        } = &mut p.state
        else {
            panic!("not streaming");
        };
        inflight.push_back((LogIndex(last_sent), bytes, MonoTime::ZERO));
        *inflight_bytes += bytes;
        p.next_index = LogIndex(last_sent + 1);
    }

    #[test]
    fn a_healthy_stream_passes() {
        let mut p = streaming(3, 4);
        send(&mut p, 5, 10);
        send(&mut p, 7, 20);
        p.assert_invariants(PEER, LAST);
        p.advance_match(LogIndex(5));
        p.assert_invariants(PEER, LAST);
    }

    #[test]
    #[should_panic(expected = "not below next")]
    fn match_at_next_panics() {
        streaming(4, 4).assert_invariants(PEER, LAST);
    }

    #[test]
    #[should_panic(expected = "past the leader's log")]
    fn match_past_the_log_panics() {
        streaming(11, 12).assert_invariants(PEER, LAST);
    }

    #[test]
    #[should_panic(expected = "out of order")]
    fn inflight_at_or_below_match_panics() {
        let mut p = streaming(3, 4);
        send(&mut p, 5, 10);
        p.match_index = LogIndex(5); // acknowledged but not popped
        p.assert_invariants(PEER, LAST);
    }

    #[test]
    #[should_panic(expected = "out of order")]
    fn inflight_out_of_order_panics() {
        let mut p = streaming(3, 4);
        send(&mut p, 7, 10);
        send(&mut p, 5, 10);
        p.next_index = LogIndex(8);
        p.assert_invariants(PEER, LAST);
    }

    #[test]
    #[should_panic(expected = "bytes in flight")]
    fn inflight_bytes_that_do_not_add_up_panic() {
        let mut p = streaming(3, 4);
        send(&mut p, 5, 10);
        if let Replication::Stream { inflight_bytes, .. } = &mut p.state {
            *inflight_bytes = 3;
        }
        p.assert_invariants(PEER, LAST);
    }

    #[test]
    fn match_never_moves_back() {
        let mut p = streaming(6, 7);
        p.advance_match(LogIndex(4));
        assert_eq!(p.match_index, LogIndex(6));
        assert_eq!(p.next_index, LogIndex(7));
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "would drop a snapshot transfer")]
    fn probing_during_a_snapshot_transfer_panics() {
        let mut p = streaming(3, 4);
        let snap = Snapshot {
            meta: Default::default(),
            data: Default::default(),
            sessions: Vec::new(),
        };
        p.state = Replication::Snapshot(Box::new(SnapshotSend::new(snap)));
        p.start_probing(LogIndex(4));
    }
}
