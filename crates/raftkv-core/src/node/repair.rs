//! Protocol-aware recovery of a damaged log (Alagappan et al., FAST 2018,
//! "Protocol-Aware Recovery for Consensus-Based Storage").
//!
//! When recovery finds that this node's log may be shorter than what it
//! acknowledged (a damaged line that may have been synced, a lost or
//! shortened `logs.txt`), the storage keeps the intact prefix and hands the
//! core a [`VoteFloor`] in the hard state: what the lost part may have held.
//! Until the log is whole again the node
//!
//! - never campaigns (nor answers `TimeoutNow`): it cannot serve a log it
//!   does not have;
//! - votes only for a candidate whose last entry is at least as up to date
//!   as the floor, so it never lets a candidate lacking an entry it
//!   acknowledged win with its vote (with an unknown index, only for one
//!   whose last term is above the floor's);
//! - answers AppendEntries from its intact prefix, so the leader sends it
//!   the rest.
//!
//! Why the floor is enough: Raft's safety argument needs a voter's vote to
//! respect every entry it acknowledged. The floor is at least as up to date
//! as the lost log (its index is the last one the file ever held, its term
//! that entry's or an upper bound), so a candidate that passes it is at
//! least as up to date as the lost log was.
//!
//! The repair is finished, and the floor cleared, when the log provably
//! holds everything the node may have acknowledged:
//!
//! 1. the log holds the floor's entry (same index, exact term): by log
//!    matching it holds the same prefix it had, and it acknowledged nothing
//!    past the floor's index;
//! 2. or a snapshot from the leader covers the floor's index: every entry up
//!    to it is committed and in the snapshot;
//! 3. or this node follows a leader of a term above the floor's and its
//!    commit index is at an entry of that term: every entry the node
//!    acknowledged had a term at most the floor's, so any of them that
//!    committed precedes that entry in the leader's log, which this node now
//!    holds up to there.
//!
//! The clearing reaches `metadata.txt` only after the entries that made the
//! log whole are synced (`raftkv_storage::persist_readies_with`).

use super::RaftNode;
use super::RoleState;
use crate::api::Event;
use crate::types::{LogIndex, Term, VoteFloor};

impl RaftNode {
    /// Whether the node's log is being repaired (see the module docs).
    pub fn repairing(&self) -> Option<VoteFloor> {
        self.repair
    }

    /// Whether a candidate with this last entry passes the floor.
    pub(super) fn passes_vote_floor(&self, last_index: LogIndex, last_term: Term) -> bool {
        match self.repair {
            None => true,
            // The lost log held no entry of a term above the floor's: a
            // candidate whose last term is higher is more up to date than
            // it was, whatever its length.
            Some(VoteFloor {
                index: None, term, ..
            }) => self.cfg.unsafe_test_knobs.ignore_vote_floor || last_term > term,
            Some(VoteFloor {
                index: Some(i),
                term,
                ..
            }) => {
                self.cfg.unsafe_test_knobs.ignore_vote_floor
                    || last_term > term
                    || (last_term == term && last_index >= i)
            }
        }
    }

    /// Clear the floor once the log is whole again (rules 1–3 above).
    pub(super) fn maybe_finish_repair(&mut self) {
        let Some(floor) = self.repair else {
            return;
        };
        let holds_floor_entry = floor.exact
            && floor
                .index
                .is_some_and(|i| i > self.log.offset() && self.log.term(i) == Some(floor.term));
        let snapshot_covers = floor
            .index
            .is_some_and(|i| self.log.offset() >= i && self.log.offset() > LogIndex::ZERO);
        let leader_committed_past = matches!(self.role, RoleState::Follower { leader: Some(_) })
            && self.term > floor.term
            && self.log.term(self.log.commit()) == Some(self.term);
        if holds_floor_entry || snapshot_covers || leader_committed_past {
            self.repair = None;
            self.events.push(Event::RepairFinished { floor });
        }
    }
}
