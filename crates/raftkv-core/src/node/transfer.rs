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

use super::RaftNode;
use crate::api::{Event, Role, TransferError};
use crate::message::{Message, MessageBody};
use crate::types::{MonoTime, NodeId};

#[derive(Debug, Clone)]
pub(super) struct Transfer {
    target: NodeId,
    deadline: MonoTime,
    timeout_now_sent: bool,
}

impl RaftNode {
    /// Start moving leadership to `target`.
    pub fn transfer_leadership(
        &mut self,
        now: MonoTime,
        target: NodeId,
    ) -> Result<(), TransferError> {
        self.advance_time(now);
        if self.role != Role::Leader {
            return Err(TransferError::NotLeader {
                leader_hint: self.leader,
            });
        }
        if target == self.cfg.id {
            return Err(TransferError::AlreadyLeader(target));
        }
        if !self.membership().is_voter(target) {
            return Err(TransferError::NotAVoter(target));
        }
        let deadline = self.now + self.cfg.election_timeout_min;
        let ls = self.leader_state.as_mut().expect("leader");
        if let Some(t) = &ls.transfer {
            return Err(TransferError::InProgress(t.target));
        }
        ls.transfer = Some(Transfer {
            target,
            deadline,
            timeout_now_sent: false,
        });
        self.events.push(Event::TransferStarted { to: target });
        // Lease reads stop now (rule 10): report it like any lease change.
        self.leader_progress_checks();
        self.maybe_send_timeout_now(target);
        if self.role == Role::Leader {
            self.send_append(target, false);
        }
        Ok(())
    }

    /// The node leadership is moving to, while a transfer is in progress.
    pub fn transfer_target(&self) -> Option<NodeId> {
        self.leader_state
            .as_ref()
            .and_then(|ls| ls.transfer.as_ref())
            .map(|t| t.target)
    }

    /// Once the target's log matches ours, tell it to campaign.
    pub(super) fn maybe_send_timeout_now(&mut self, peer: NodeId) {
        let last = self.log.last_index();
        let Some(ls) = self.leader_state.as_mut() else {
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

    /// Give up a transfer that has not succeeded in time. Returns whether
    /// this node is still the leader.
    pub(super) fn check_transfer_timeout(&mut self) -> bool {
        let now = self.now;
        let ls = self.leader_state.as_mut().expect("leader");
        let expired = ls.transfer.as_ref().is_some_and(|t| now >= t.deadline);
        let gone = ls
            .transfer
            .as_ref()
            .is_some_and(|t| !ls.progress.contains_key(&t.target));
        if expired || gone {
            let t = ls.transfer.take().expect("checked");
            self.events.push(Event::TransferAborted { to: t.target });
            self.leader_progress_checks();
        }
        self.role == Role::Leader
    }

    /// The leader asks this node to campaign now.
    pub(super) fn handle_timeout_now(&mut self, msg: Message) {
        if msg.term != self.term || self.leader != Some(msg.from) || self.role == Role::Leader {
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
