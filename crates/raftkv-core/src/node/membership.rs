//! Membership: which configuration is in force, how it changes, and which
//! nodes count toward which quorum.
//!
//! We use one-server-at-a-time changes (Raft thesis §4.2), not joint
//! consensus: every change adds a learner, promotes one learner, or removes
//! one member, so any majority of the voters before a change and any
//! majority after it share at least one node. A configuration takes effect
//! on a node as soon as it is in that node's log, committed or not, and a
//! truncation brings back the one before. Two rules close the known holes:
//! - one change at a time: a leader refuses a change while the previous one
//!   is uncommitted;
//! - the single-server bug (Ongaro, raft-dev 2015): a new leader starts no
//!   change before an entry of its own term (its no-op) has committed.
//!
//! Quorums (lease rule 10):
//! - votes and commits count voters of the configuration in force only;
//!   acknowledgements and votes of learners and non-members never count;
//! - the leader's lease needs a quorum of acknowledgements in the
//!   configuration in force *and*, while it is uncommitted, in the one
//!   before it. Adjacent configurations have intersecting majorities, so a
//!   node that protects the old lease (rule 1) is in every vote quorum a
//!   candidate of either configuration can gather, and reports the lease in
//!   its vote (rule 2); the new leader waits it out (rule 5).

use super::replication::Progress;
use super::{RaftNode, RoleState};
use crate::api::{ConfChangeError, ConfChangeResult, Event, StepDownReason};
use crate::types::{ConfChange, Entry, EntryPayload, LogIndex, Membership, NodeId};

impl RaftNode {
    /// The configuration in force: the latest in the log.
    pub fn membership(&self) -> &Membership {
        &self
            .configs
            .last()
            .expect("there is always a base configuration")
            .1
    }

    pub(super) fn membership_index(&self) -> LogIndex {
        self.configs.last().expect("base configuration").0
    }

    /// The configurations whose majorities the lease must have: the one in
    /// force, and the previous one while the newest is uncommitted.
    pub(super) fn lease_configs(&self) -> Vec<&Membership> {
        let n = self.configs.len();
        let (index, latest) = &self.configs[n - 1];
        if *index > self.log.commit() && n >= 2 {
            vec![latest, &self.configs[n - 2].1]
        } else {
            vec![latest]
        }
    }

    /// Whether this node may stand for election: a voter of the
    /// configuration in force, or of the previous one while the newest is
    /// uncommitted. A server removed by an uncommitted configuration may
    /// still be needed to commit it (Raft thesis §4.2.2: the newest log may
    /// be its alone); it then counts votes in the newest configuration,
    /// where its own does not count.
    pub fn may_campaign(&self) -> bool {
        let me = self.cfg.id;
        self.lease_configs().iter().any(|m| m.is_voter(me))
    }

    /// Recompute the peer list after a configuration change; a leader starts
    /// or stops tracking progress to match.
    pub(super) fn refresh_peers(&mut self) {
        let me = self.cfg.id;
        let peers: Vec<NodeId> = self.membership().members().filter(|&p| p != me).collect();
        let (now, next) = (self.now, self.log.last_index().next());
        if let RoleState::Leader(ls) = &mut self.role {
            ls.progress.retain(|id, _| peers.contains(id));
            for &p in &peers {
                ls.progress
                    .entry(p)
                    .or_insert_with(|| Progress::new(next, now));
            }
        }
        self.peers = peers;
    }

    /// Record the configuration entries among `entries`, just appended.
    pub(super) fn note_appended_configs(&mut self, entries: &[Entry]) {
        let mut changed = false;
        for e in entries {
            let EntryPayload::Config(m) = &e.payload else {
                continue;
            };
            if e.index > self.membership_index() && self.log.matches(e.index, e.term) {
                if m.placement != self.membership().placement {
                    // A new placement may be acted on at the next tick.
                    if let RoleState::Leader(ls) = &mut self.role {
                        ls.placement_not_before = self.now;
                    }
                }
                self.configs.push((e.index, m.clone()));
                self.events.push(Event::ConfigChanged {
                    index: e.index,
                    membership: m.clone(),
                });
                changed = true;
            }
        }
        if changed {
            self.refresh_peers();
        }
    }

    /// The log was truncated from `from`: configurations there are gone.
    pub(super) fn note_truncated(&mut self, from: LogIndex) {
        let before = self.configs.len();
        while self.configs.len() > 1 && self.membership_index() >= from {
            self.configs.pop();
        }
        if self.configs.len() != before {
            let (index, membership) = self.configs.last().cloned().expect("base");
            self.events
                .push(Event::ConfigReverted { index, membership });
            self.refresh_peers();
        }
    }

    /// The log now starts after `offset`: the latest configuration at or
    /// before it becomes the base.
    pub(super) fn note_compacted(&mut self, offset: LogIndex) {
        let keep_from = self
            .configs
            .iter()
            .rposition(|(i, _)| *i <= offset)
            .unwrap_or(0);
        self.configs.drain(..keep_from);
    }

    /// The configuration at or before `index` (for a snapshot's meta data).
    pub(super) fn membership_at(&self, index: LogIndex) -> Membership {
        config_at(&self.configs, index)
    }

    /// A configuration entry at `index` applied (so it committed).
    pub(super) fn config_committed(&mut self, index: LogIndex) {
        let RoleState::Leader(ls) = &mut self.role else {
            return;
        };
        if ls.pending_conf == Some(index) {
            ls.pending_conf = None;
            let membership = self.membership_at(index);
            self.conf_change_results.push(ConfChangeResult {
                index,
                outcome: Ok(membership),
            });
        }
        // A leader removed (or demoted) by a committed configuration steps
        // down, once it has told the others the change committed.
        if !self.membership_at(index).is_voter(self.cfg.id) {
            self.broadcast_append(true);
            self.step_down(StepDownReason::RemovedFromConfig, None);
        }
    }

    /// Propose a membership change; its outcome arrives in
    /// `Ready::conf_change_results` once it commits (or is lost).
    pub fn propose_conf_change(
        &mut self,
        now: crate::types::MonoTime,
        change: ConfChange,
    ) -> Result<LogIndex, ConfChangeError> {
        self.advance_time(now);
        let refusal = self.not_leader();
        let (commit, last) = (self.log.commit(), self.log.last_index());
        let in_force_index = self.membership_index();
        let next = self
            .membership()
            .apply_change(&change)
            .and_then(|m| m.validate().map(|_| m));
        let RoleState::Leader(ls) = &mut self.role else {
            return Err(refusal.into());
        };
        if ls.transfer.is_some() {
            return Err(ConfChangeError::TransferInProgress);
        }
        if commit < ls.noop_index {
            return Err(ConfChangeError::LeaderNotReady);
        }
        if in_force_index > commit {
            return Err(ConfChangeError::InProgress(in_force_index));
        }
        let next = next.map_err(|reason| ConfChangeError::Invalid {
            change: change.clone(),
            reason,
        })?;
        if let ConfChange::Promote { id } = change {
            // Caught up means it answered this leader (a learner never
            // reached has match 0, which a short log would let pass) and is
            // within one append batch of the commit index.
            let p = ls.progress.get(&id);
            let answered = p.is_some_and(|p| p.acked_send_time.is_some());
            let match_index = p.map(|p| p.match_index).unwrap_or_default();
            let lag_allowed = self.cfg.max_entries_per_append as u64;
            if !answered || match_index.0 + lag_allowed < commit.0 {
                return Err(ConfChangeError::LearnerBehind {
                    id,
                    match_index,
                    last_index: last,
                });
            }
        }
        let index = last.next();
        ls.pending_conf = Some(index);
        ls.replicate_pending = true;
        let entry = Entry {
            index,
            term: self.term,
            payload: EntryPayload::Config(next),
        };
        self.log.push(entry.clone());
        self.note_appended_configs(std::slice::from_ref(&entry));
        self.maybe_commit();
        Ok(index)
    }
}

/// The configuration at or before `index` among `configs` (oldest first).
pub(super) fn config_at(configs: &[(LogIndex, Membership)], index: LogIndex) -> Membership {
    configs
        .iter()
        .rev()
        .find(|(i, _)| *i <= index)
        .map(|(_, m)| m.clone())
        .unwrap_or_else(|| configs[0].1.clone())
}
