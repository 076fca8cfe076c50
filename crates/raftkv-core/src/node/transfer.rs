//! Leadership transfer (Raft thesis §3.10): hand leadership to a chosen
//! voter, for maintenance.
//!
//! The leader first stops serving lease reads and accepting writes (lease
//! rule 10; reads still complete through ReadIndex), brings the target's log
//! up to its own, then sends it `TimeoutNow`. The target campaigns at once,
//! and voters set vote stickiness aside for it. The new leader still waits
//! out the old lease (rule 5), so the handover is safe even if the old leader
//! resumes: when the target has not won within the minimum election timeout
//! the transfer is abandoned and the old leader carries on.

use super::{LeaderState, RaftNode, RoleState};
use crate::api::{Event, TransferError};
use crate::message::{Message, MessageBody};
use crate::types::{MonoTime, NodeId};

#[derive(Debug, Clone)]
pub(super) struct Transfer {
    target: NodeId,
    deadline: MonoTime,
    timeout_now_sent: bool,
}

impl LeaderState {
    /// The node leadership is moving to, while a transfer is in progress.
    pub(super) fn transfer_target(&self) -> Option<NodeId> {
        self.transfer.as_ref().map(|t| t.target)
    }

    /// Give up a transfer that has not succeeded in time, or whose target
    /// left the configuration: its target, when one was given up.
    pub(super) fn take_expired_transfer(&mut self, now: MonoTime) -> Option<NodeId> {
        let t = self.transfer.as_ref()?;
        let expired = now >= t.deadline;
        let gone = !self.progress.contains_key(&t.target);
        if !(expired || gone) {
            return None;
        }
        self.transfer.take().map(|t| t.target)
    }
}

impl RaftNode {
    /// Start moving leadership to `target`.
    pub fn transfer_leadership(
        &mut self,
        now: MonoTime,
        target: NodeId,
    ) -> Result<(), TransferError> {
        self.advance_time(now);
        let refusal = self.not_leader();
        let target_votes = self.membership().is_voter(target);
        let deadline = self.now + self.cfg.election_timeout_min;
        let RoleState::Leader(ls) = &mut self.role else {
            return Err(refusal.into());
        };
        if target == self.cfg.id {
            return Err(TransferError::AlreadyLeader(target));
        }
        if !target_votes {
            return Err(TransferError::NotAVoter(target));
        }
        if let Some(t) = &ls.transfer {
            return Err(TransferError::InProgress(t.target));
        }
        ls.transfer = Some(Transfer {
            target,
            deadline,
            timeout_now_sent: false,
        });
        // Lease reads stop now (rule 10), and `TransferStarted` says so: the
        // lease is marked not held here, so the checks below do not also
        // report a renewal failure that did not happen. If the transfer is
        // abandoned, the next check reports the lease acquired again.
        ls.lease_held = false;
        self.events.push(Event::TransferStarted { to: target });
        self.leader_progress_checks();
        self.maybe_send_timeout_now(target);
        self.send_append(target, false);
        Ok(())
    }

    /// The node leadership is moving to, while a transfer is in progress.
    pub fn transfer_target(&self) -> Option<NodeId> {
        self.leader_state().and_then(LeaderState::transfer_target)
    }

    /// Once the target's log matches ours, tell it to campaign.
    pub(super) fn maybe_send_timeout_now(&mut self, peer: NodeId) {
        let last = self.log.last_index();
        let RoleState::Leader(ls) = &mut self.role else {
            return;
        };
        let caught_up = ls
            .progress
            .get(&peer)
            .is_some_and(|p| p.match_index == last);
        let Some(t) = ls.transfer.as_mut() else {
            return;
        };
        if t.target != peer || t.timeout_now_sent || !caught_up {
            return;
        }
        t.timeout_now_sent = true;
        self.events.push(Event::TransferTimeoutNowSent { to: peer });
        self.send(peer, MessageBody::TimeoutNow);
    }

    /// The leader asks this node to campaign now.
    pub(super) fn handle_timeout_now(&mut self, msg: Message) {
        let from_my_leader =
            matches!(self.role, RoleState::Follower { leader: Some(l) } if l == msg.from);
        if msg.term != self.term || !from_my_leader {
            return;
        }
        if self.repair.is_some() {
            // A log under repair cannot be served (`repair.rs`).
            return;
        }
        if !self.membership().is_voter(self.cfg.id) {
            return;
        }
        self.start_election(true);
    }
}
