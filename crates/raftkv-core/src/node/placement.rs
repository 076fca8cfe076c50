//! Leader placement: a leader outside the preferred set hands leadership to
//! a caught-up preferred voter, with the leadership transfer that exists
//! (`transfer.rs`), so that after a failover leadership comes back to where
//! the clients and the read lease holders expect it (for example the region
//! with most writers).
//!
//! The preference is a list of voter ids, then of zones. It lives in the
//! log once an operator sets it (`ConfChange::Place`, from `raftkv
//! placement`): then every node, a new leader after a failover included,
//! and every restarted or added node has the same one. Until then each node
//! follows its own flags (`Config::placement`); only the leader's counts.
//! Zones: a node knows its own (`Config::zone`) and learns its peers' from
//! the host (`learn_zone`; the server reads them off the peer batches). A
//! voter whose zone is not known yet is not taken for one in a preferred
//! zone. A leader moves
//! leadership only when it is settled (its wait over, its no-op committed,
//! its lease held, no transfer or membership change under way) and no more
//! often than once per two maximum election timeouts, so a preferred node
//! that cannot win does not make leadership bounce.

use super::{RaftNode, RoleState};
use crate::types::{NodeId, Placement};

impl RaftNode {
    /// The placement in force on this node: the log's, else its flags'.
    pub fn placement(&self) -> &Placement {
        self.membership()
            .placement
            .as_ref()
            .unwrap_or(&self.cfg.placement)
    }

    /// The zone of node `id` as far as this node knows (its own from its
    /// configuration, a peer's as learned).
    pub fn zone_of(&self, id: NodeId) -> Option<&str> {
        if id == self.cfg.id {
            self.cfg.zone.as_deref()
        } else {
            self.zones.get(&id).map(String::as_str)
        }
    }

    /// The host learned that peer `id` runs in `zone` (an empty zone: none
    /// given). Takes effect at the leader's next tick.
    pub fn learn_zone(&mut self, id: NodeId, zone: &str) {
        if id == self.cfg.id {
            return;
        }
        if zone.is_empty() {
            self.zones.remove(&id);
        } else if self.zones.get(&id).map(String::as_str) != Some(zone) {
            self.zones.insert(id, zone.to_owned());
        }
    }

    /// The voters the placement prefers, most preferred first: the listed
    /// ids, then the voters of each listed zone (in id order within one).
    pub fn preferred_voters(&self) -> Vec<NodeId> {
        let p = self.placement();
        let voters = &self.membership().voters;
        let mut out: Vec<NodeId> = p
            .leaders
            .iter()
            .copied()
            .filter(|id| voters.contains(id))
            .collect();
        for zone in &p.zones {
            for &id in voters {
                if self.zone_of(id) == Some(zone.as_str()) && !out.contains(&id) {
                    out.push(id);
                }
            }
        }
        out
    }

    /// On a leader's tick: start a transfer to the first caught-up preferred
    /// voter when this node is not preferred.
    pub(super) fn maybe_move_leadership(&mut self) {
        let me = self.cfg.id;
        let p = self.placement();
        if p.is_empty() || p.prefers(me, self.zone_of(me)) {
            return;
        }
        let settled = self.lease_read_ok();
        let last = self.log.last_index();
        let retry_after = self.cfg.election_timeout_max * 2;
        let now = self.now;
        let in_place = match &self.role {
            RoleState::Leader(ls) => {
                !settled || ls.pending_conf.is_some() || now < ls.placement_not_before
            }
            _ => true,
        };
        if in_place {
            return;
        }
        let preferred = self.preferred_voters();
        let RoleState::Leader(ls) = &mut self.role else {
            return;
        };
        let target = preferred
            .into_iter()
            .find(|id| ls.progress.get(id).is_some_and(|p| p.match_index == last));
        let Some(target) = target else {
            return;
        };
        ls.placement_not_before = now + retry_after;
        // Refused only if a transfer started meanwhile, which `settled`
        // rules out.
        let _ = self.transfer_leadership(now, target);
    }
}
