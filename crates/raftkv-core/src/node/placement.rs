//! Leader placement: a leader outside the preferred set hands leadership to
//! a caught-up preferred voter, with the leadership transfer that exists
//! (`transfer.rs`), so that after a failover leadership comes back to where
//! the clients and the read lease holders expect it (for example the region
//! with most writers).
//!
//! The preference is per node (`Config::preferred_leaders`, changed at run
//! time by `set_preferred_leaders`); only the leader's counts. A leader moves
//! leadership only when it is settled (its wait over, its no-op committed,
//! its lease held, no transfer or membership change under way) and no more
//! often than once per two maximum election timeouts, so a preferred node
//! that cannot win does not make leadership bounce.

use super::{RaftNode, RoleState};
use crate::types::{MonoTime, NodeId};

impl RaftNode {
    /// The voters this node, when it leads, hands leadership to (in order of
    /// preference); empty: no preference.
    pub fn preferred_leaders(&self) -> &[NodeId] {
        &self.cfg.preferred_leaders
    }

    /// Change the preference (an admin command; the flag sets it at start).
    pub fn set_preferred_leaders(&mut self, now: MonoTime, ids: Vec<NodeId>) {
        self.advance_time(now);
        self.cfg.preferred_leaders = ids;
        if let RoleState::Leader(ls) = &mut self.role {
            // A new preference may be acted on at the next tick.
            ls.placement_not_before = self.now;
        }
    }

    /// On a leader's tick: start a transfer to the first caught-up preferred
    /// voter when this node is not preferred.
    pub(super) fn maybe_move_leadership(&mut self) {
        let me = self.cfg.id;
        let preferred = &self.cfg.preferred_leaders;
        if preferred.is_empty() || preferred.contains(&me) {
            return;
        }
        let settled = self.lease_read_ok();
        let last = self.log.last_index();
        let retry_after = self.cfg.election_timeout_max * 2;
        let voters = &self.configs.last().expect("base configuration").1.voters;
        let now = self.now;
        let RoleState::Leader(ls) = &mut self.role else {
            return;
        };
        if !settled || ls.pending_conf.is_some() || now < ls.placement_not_before {
            return;
        }
        let target = preferred.iter().copied().find(|id| {
            voters.contains(id) && ls.progress.get(id).is_some_and(|p| p.match_index == last)
        });
        let Some(target) = target else {
            return;
        };
        ls.placement_not_before = now + retry_after;
        // Refused only if a transfer started meanwhile, which `settled`
        // rules out.
        let _ = self.transfer_leadership(now, target);
    }
}
