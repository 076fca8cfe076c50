//! Follower read leases (rules F1–F7 of docs/protocol.md) and
//! bounded-staleness reads.
//!
//! A follower that holds a read lease answers linearizable reads from its
//! own state, with no message:
//! - F1: every AppendEntries reply carries the follower's clock `s_F` (and
//!   its incarnation);
//! - F2: a leader holding its lease echoes the stamp with a grant
//!   `g = min(D_read, lease end - now)`, and records a guard `now + g`; the
//!   follower's lease runs to `s_F + g·(1-ρ)/(1+ρ)` on its own clock, so it
//!   ends before the guard and before the leader's lease;
//! - F3: the leader's commit index (what it applies, answers and sends) is
//!   also capped by the match index of every node whose guard has not passed
//!   (`visible_commit`);
//! - F4: the holder serves a key only once it has applied the commit index
//!   the grant carried, and while no entry above its commit index writes
//!   that key; otherwise the read waits (for a commit or a truncation) or,
//!   once the lease is gone, is refused with a leader hint;
//! - F5: a holder drops its lease when it sees a higher term;
//! - F6: no grant to a node outside the latest configuration; a node that
//!   a configuration in its log removes stops local reads;
//! - F7: only nodes configured with `read_lease` ask.
//!
//! The echo also proves freshness on any node (bounded-staleness reads):
//! once a node has applied the commit index of a message that echoed `s_F`,
//! every write visible anywhere before `s_F` is in its state.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use super::{RaftNode, RoleState};
use crate::api::{NotLeader, ReadError, ReadId, ReadLeaseStatus, ReadNow, ReadResult};
use crate::message::{AppendEntries, AppendEntriesResponse, FollowerEcho};
use crate::types::{EntryPayload, LogIndex, MonoTime, NodeId, Term};

/// A follower's side: its incarnation, the read lease it holds, what it can
/// prove about freshness, and the reads waiting under F4.
#[derive(Debug)]
pub(super) struct FollowerLease {
    /// Drawn at start: stamps of an earlier incarnation are ignored.
    pub(super) epoch: u64,
    held: Option<HeldLease>,
    /// The latest stamp `s` such that this node has applied everything the
    /// leader had committed when it echoed `s`.
    fresh_at: Option<MonoTime>,
    /// An echoed stamp whose commit index has not applied yet.
    fresh_pending: Option<(MonoTime, LogIndex)>,
    waiting: VecDeque<WaitingRead>,
}

#[derive(Debug, Clone, Copy)]
struct HeldLease {
    term: Term,
    leader: NodeId,
    stamp: MonoTime,
    until: MonoTime,
    /// F4: the commit index the grant carried; no read before it applies.
    floor: LogIndex,
}

#[derive(Debug)]
struct WaitingRead {
    id: ReadId,
    key: String,
}

/// The leader's side: the guard of every node it granted a lease (F3).
#[derive(Debug, Default)]
pub(super) struct Guards {
    until: BTreeMap<NodeId, MonoTime>,
    /// Since when commits have been held back by a guard.
    blocked_since: Option<MonoTime>,
}

/// What a follower can do with a linearizable read now.
enum Local {
    Serve,
    Wait,
    Refuse,
}

/// The fields of a reply the leader needs for F2, taken before the reply
/// is handled.
pub(super) struct Stamp {
    from: NodeId,
    term: Term,
    success: bool,
    echo: FollowerEcho,
    wants: bool,
}

impl Stamp {
    pub(super) fn of(from: NodeId, term: Term, r: &AppendEntriesResponse) -> Stamp {
        Stamp {
            from,
            term,
            success: r.success,
            echo: FollowerEcho {
                follower_time: r.follower_time,
                follower_epoch: r.follower_epoch,
                read_lease: Duration::ZERO,
            },
            wants: r.wants_read_lease,
        }
    }
}

impl FollowerLease {
    pub(super) fn waiting_is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    pub(super) fn new(epoch: u64) -> FollowerLease {
        FollowerLease {
            epoch,
            held: None,
            fresh_at: None,
            fresh_pending: None,
            waiting: VecDeque::new(),
        }
    }
}

impl RaftNode {
    /// F6/F7: this node asks for read leases.
    pub(super) fn wants_read_lease(&self) -> bool {
        self.cfg.read_lease && !self.removed_in_log()
    }

    /// F6: the configuration in force leaves this node out, or one in its
    /// log removes it (leaves it out after one that had it; a node that
    /// joined is not a member of the configurations before it was added).
    fn removed_in_log(&self) -> bool {
        let me = self.cfg.id;
        if !self.membership().is_member(me) {
            return true;
        }
        let mut was_member = false;
        for (_, m) in &self.configs {
            if m.is_member(me) {
                was_member = true;
            } else if was_member {
                return true;
            }
        }
        false
    }

    // ----- leader -----------------------------------------------------------

    /// F2, on a reply of this term (after it was handled): echo the stamp,
    /// granting a read lease to a member that asks and has every committed
    /// entry.
    pub(super) fn grant_read_lease(&mut self, stamp: Stamp) {
        if stamp.term != self.term {
            return;
        }
        // Echo at most a few times per heartbeat interval per peer: under
        // load replies come much faster, and each echo costs a lease
        // computation on the write path. Leases and freshness proofs renew
        // with every heartbeat anyway.
        let refresh = self.cfg.heartbeat_interval / 4;
        let now = self.now;
        let fresh_echo = self
            .leader_state()
            .and_then(|ls| ls.progress.get(&stamp.from))
            .is_some_and(|p| p.echo_at.is_some_and(|t| now.saturating_since(t) < refresh));
        if fresh_echo {
            return;
        }
        let knobs = self.cfg.unsafe_test_knobs;
        // The control grants whenever this node leads, lease or not.
        let lease_end = match self.lease_read_until() {
            Some(end) => end,
            None if knobs.grant_beyond_leader_lease && self.leader_state().is_some() => self.now,
            None => return, // no lease (or a transfer, or the wait): no echo
        };
        let commit = self.log.commit();
        let member = self.membership().is_member(stamp.from);
        let d_read = self.cfg.read_lease_duration;
        let RoleState::Leader(ls) = &mut self.role else {
            return;
        };
        let Some(p) = ls.progress.get_mut(&stamp.from) else {
            return;
        };
        let caught_up = stamp.success && p.match_index >= commit;
        let g = if stamp.wants && member && caught_up {
            if knobs.grant_beyond_leader_lease {
                d_read
            } else {
                d_read.min(lease_end.saturating_since(now))
            }
        } else {
            Duration::ZERO
        };
        p.echo = Some(FollowerEcho {
            read_lease: g,
            ..stamp.echo
        });
        p.echo_at = Some(now);
        if !g.is_zero() {
            let guard = ls.guards.until.entry(stamp.from).or_insert(now);
            *guard = (*guard).max(now + g);
        }
    }

    /// F3: the highest index the leader may make visible, given that a
    /// quorum holds `quorum_index`: no higher than the match of any node
    /// whose guard has not passed (the current commit for a holder no longer
    /// tracked). Records how long commits wait for holders.
    pub(super) fn visible_commit(&mut self, quorum_index: LogIndex) -> LogIndex {
        let (now, commit) = (self.now, self.log.commit());
        let ignore = self.cfg.unsafe_test_knobs.ignore_read_lease_guards;
        let RoleState::Leader(ls) = &mut self.role else {
            return commit;
        };
        ls.guards.until.retain(|_, &mut until| until > now);
        let mut cap = quorum_index;
        if !ignore {
            for id in ls.guards.until.keys() {
                let held = ls.progress.get(id).map_or(commit, |p| p.match_index);
                cap = cap.min(held);
            }
        }
        let blocked = cap < quorum_index && quorum_index > commit;
        match (blocked, ls.guards.blocked_since) {
            (true, None) => ls.guards.blocked_since = Some(now),
            (false, Some(since)) => {
                ls.guards.blocked_since = None;
                self.read_lease_write_wait += now.saturating_since(since);
            }
            _ => {}
        }
        cap
    }

    /// Some holder's guard has not passed.
    pub(super) fn has_guards(&self) -> bool {
        self.active_guards(self.now).next().is_some()
    }

    /// The holders whose guard has not passed (commit notifications go to
    /// them at once, so that reads waiting under F4 are answered).
    pub(super) fn guarded_peers(&self) -> Vec<NodeId> {
        self.active_guards(self.now).map(|(id, _)| id).collect()
    }

    /// On a leader, each holder whose guard has not passed at `now`, with
    /// the guard's end.
    fn active_guards(&self, now: MonoTime) -> impl Iterator<Item = (NodeId, MonoTime)> + '_ {
        self.leader_state()
            .into_iter()
            .flat_map(|ls| ls.guards.until.iter())
            .filter(move |&(_, &until)| until > now)
            .map(|(&id, &until)| (id, until))
    }

    // ----- follower ---------------------------------------------------------

    /// F1: the stamp for a reply.
    pub(super) fn stamp_reply(&self, r: &mut AppendEntriesResponse) {
        r.follower_time = self.now;
        r.follower_epoch = self.read_lease.epoch;
        r.wants_read_lease = self.wants_read_lease();
    }

    /// F2 on the follower: take the echo an AppendEntries of the leader of
    /// this term carries (called once the message is handled, so the commit
    /// index is the one it carried, where the log allowed).
    pub(super) fn take_echo(&mut self, from: NodeId, req: &AppendEntries) {
        let Some(echo) = req.echo else {
            return;
        };
        if echo.follower_epoch != self.read_lease.epoch || echo.follower_time > self.now {
            return; // another incarnation's stamp, or a hostile one
        }
        if !matches!(self.role, RoleState::Follower { leader: Some(l) } if l == from) {
            return;
        }
        let s = echo.follower_time;
        // Freshness: everything visible before `s` is at or below the
        // commit index this message carries.
        if self.kv.applied() >= req.leader_commit {
            self.note_fresh(s);
        } else if self.read_lease.fresh_pending.is_none() {
            self.read_lease.fresh_pending = Some((s, req.leader_commit));
        }
        if echo.read_lease.is_zero() || !self.wants_read_lease() {
            return;
        }
        let until = s + self.cfg.drift_shrunk(echo.read_lease);
        let term = self.term;
        let lease = &mut self.read_lease.held;
        match lease {
            Some(l) if l.term == term && l.leader == from && l.stamp == s => {
                // The same grant, repeated: its floor stands.
            }
            Some(l) if l.term == term && l.leader == from && l.stamp > s => {}
            _ => {
                *lease = Some(HeldLease {
                    term,
                    leader: from,
                    stamp: s,
                    until,
                    floor: req.leader_commit,
                });
            }
        }
    }

    fn note_fresh(&mut self, s: MonoTime) {
        let f = &mut self.read_lease.fresh_at;
        *f = Some(f.map_or(s, |t| t.max(s)));
    }

    /// Entries applied: a pending freshness proof may now hold.
    pub(super) fn note_applied_for_freshness(&mut self) {
        if let Some((s, commit)) = self.read_lease.fresh_pending {
            if self.kv.applied() >= commit {
                self.read_lease.fresh_pending = None;
                self.note_fresh(s);
            }
        }
    }

    /// F5: a higher term ends the read lease (and with it the reads
    /// waiting on it, at the end of this input).
    pub(super) fn drop_read_lease_for_term(&mut self) {
        if !self.cfg.unsafe_test_knobs.keep_read_lease_across_terms {
            self.read_lease.held = None;
        }
    }

    /// The read lease, if it lets this node answer at `now`.
    fn live_read_lease(&self) -> Option<HeldLease> {
        let l = self.read_lease.held?;
        let keep_across_terms = self.cfg.unsafe_test_knobs.keep_read_lease_across_terms;
        let same_term = l.term == self.term || keep_across_terms;
        let following = match self.role {
            RoleState::Follower { leader: Some(f) } => f == l.leader || keep_across_terms,
            _ => false,
        };
        (same_term && following && self.now < l.until && self.wants_read_lease()).then_some(l)
    }

    fn local_read(&self, key: &str) -> Local {
        let Some(l) = self.live_read_lease() else {
            return Local::Refuse;
        };
        if self.kv.applied() < l.floor {
            return Local::Wait;
        }
        if !self.cfg.unsafe_test_knobs.serve_pending_keys && self.key_pending(key) {
            return Local::Wait;
        }
        Local::Serve
    }

    /// F4: an entry above the commit index writes `key`.
    fn key_pending(&self, key: &str) -> bool {
        let mut i = self.log.commit().next();
        while i <= self.log.last_index() {
            if let Some(e) = self.log.get(i) {
                if let EntryPayload::Command(cmd) = &e.payload {
                    if cmd.op.key() == key {
                        return true;
                    }
                }
            }
            i = i.next();
        }
        false
    }

    /// A linearizable read at a node that does not lead (F4).
    pub(super) fn follower_read(&mut self, id: ReadId, key: String) -> Result<ReadNow, ReadError> {
        match self.local_read(&key) {
            Local::Serve => Ok(ReadNow::Served(self.kv.get(&key).cloned())),
            Local::Refuse => Err(self.not_leader().into()),
            Local::Wait => {
                if self.read_lease.waiting.len() >= self.cfg.max_pending_reads {
                    return Err(ReadError::TooManyPendingReads {
                        limit: self.cfg.max_pending_reads,
                    });
                }
                self.read_lease.waiting.push_back(WaitingRead { id, key });
                Ok(ReadNow::Pending)
            }
        }
    }

    /// Answer the reads waiting under F4 whose key is now settled, and
    /// refuse them all once the lease is gone. Runs at the end of every
    /// message and tick.
    pub(super) fn complete_follower_reads(&mut self) {
        if self.read_lease.waiting.is_empty() {
            return;
        }
        let refusal = NotLeader {
            leader_hint: self.leader(),
        };
        let mut waiting = std::mem::take(&mut self.read_lease.waiting);
        waiting.retain(|r| {
            let outcome = match self.local_read(&r.key) {
                Local::Wait => return true,
                Local::Serve => Ok(self.kv.get(&r.key).cloned()),
                Local::Refuse => Err(ReadError::NotLeader(refusal)),
            };
            self.read_results.push(ReadResult { id: r.id, outcome });
            false
        });
        self.read_lease.waiting = waiting;
    }

    /// A read that may be stale by at most `bound`: linearizable where this
    /// node can serve those, else from its state when it can prove it is
    /// no staler than `bound`, else refused.
    pub fn read_bounded(
        &mut self,
        now: MonoTime,
        id: ReadId,
        key: String,
        bound: Duration,
    ) -> Result<ReadNow, ReadError> {
        self.advance_time(now);
        let leading = matches!(self.role, RoleState::Leader(_));
        if leading || matches!(self.local_read(&key), Local::Serve) {
            return self.read(now, id, key);
        }
        match self.staleness() {
            Some(s) if s <= bound => {
                if key.len() > self.cfg.max_key_bytes {
                    return Err(ReadError::KeyTooLarge {
                        len: key.len(),
                        limit: self.cfg.max_key_bytes,
                    });
                }
                Ok(ReadNow::Served(self.kv.get(&key).cloned()))
            }
            _ => Err(ReadError::TooStale {
                bound,
                leader_hint: self.leader(),
            }),
        }
    }

    /// How stale this node's state may be, at most, right now: zero for a
    /// leader that may serve from its lease; else the time since its
    /// freshest proof, stretched for drift. (A read lease holder's state may
    /// lack a visible write it holds above its commit index, so its lease
    /// proves nothing here; its proofs come with every echo.)
    fn staleness(&self) -> Option<Duration> {
        if self.lease_read_until().is_some() {
            return Some(Duration::ZERO);
        }
        let t = self.read_lease.fresh_at?;
        Some(self.cfg.drift_stretched(self.now.saturating_since(t)))
    }

    pub(super) fn read_lease_status(&self, now: MonoTime) -> ReadLeaseStatus {
        let holders = self
            .active_guards(now)
            .map(|(id, until)| (id, until.saturating_since(now)))
            .collect();
        let blocked = self
            .leader_state()
            .and_then(|ls| ls.guards.blocked_since)
            .map(|since| now.saturating_since(since))
            .unwrap_or_default();
        ReadLeaseStatus {
            enabled: self.wants_read_lease(),
            remaining: self
                .live_read_lease()
                .map(|l| l.until.saturating_since(now))
                .unwrap_or_default(),
            holders,
            write_wait: self.read_lease_write_wait + blocked,
            staleness: self.staleness(),
        }
    }
}
