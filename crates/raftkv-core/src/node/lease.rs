//! The leader lease (lease rules (docs/protocol.md) 4–7) and linearizable reads.
//!
//! A read is served from memory, with no message, when the lease holds
//! (rule 7). Otherwise it waits for a ReadIndex round: the leader notes the
//! commit index and the time the read arrived, heartbeats (or lets the read
//! ride on a tick's heartbeat of the same batch, sent at or after it), and
//! serves once a majority has acknowledged a heartbeat sent at or after that
//! time. Either way nothing is served before the new leader's wait ends
//! (rule 5) or before its no-op commits (rule 6). Entries apply
//! synchronously at commit, so "applied reaches the read's commit index" is
//! "commit reaches it".

use std::time::Duration;

use super::{LeaderState, PendingRead, RaftNode, RoleState};
use crate::api::{Event, LeaseReadView, LeaseStatus, ReadError, ReadId, ReadNow, ReadResult};
use crate::snapshot::KvData;
use crate::types::MonoTime;

impl RaftNode {
    /// `T_q` of rule 4: the latest time `t` such that a majority (this node
    /// counting as `now`) acknowledged an AppendEntries sent at or after `t`.
    ///
    /// Only voters count, and (rule 10) the quorum must hold in every
    /// configuration in force: `T_q` is the earliest of the per-configuration
    /// quorum times.
    fn quorum_ack_time(&self, ls: &LeaderState) -> Option<MonoTime> {
        let mut earliest: Option<MonoTime> = None;
        for m in self.lease_configs() {
            let mut times: Vec<MonoTime> = m
                .voters
                .iter()
                .filter_map(|&id| {
                    if id == self.cfg.id {
                        Some(self.now)
                    } else {
                        ls.progress.get(&id).and_then(|p| p.acked_send_time)
                    }
                })
                .collect();
            let quorum = m.quorum();
            if times.len() < quorum {
                return None;
            }
            times.sort_unstable_by(|a, b| b.cmp(a));
            let t = times[quorum - 1];
            earliest = Some(earliest.map_or(t, |e| e.min(t)));
        }
        earliest
    }

    /// Rule 4: the lease holds while `now < T_q + D·(1-ρ)/(1+ρ)`.
    fn lease_end(&self, ls: &LeaderState) -> Option<MonoTime> {
        self.quorum_ack_time(ls)
            .map(|t| t + self.cfg.leader_lease())
    }

    fn lease_holds(&self, ls: &LeaderState) -> bool {
        self.cfg.lease_reads && self.lease_end(ls).is_some_and(|end| self.now < end)
    }

    /// Rules 5 and 6: the new leader has waited out the old lease and its
    /// no-op has committed, so its state is current.
    fn may_serve(&self, ls: &LeaderState) -> bool {
        self.now >= ls.wait_until && self.log.commit() >= ls.noop_index
    }

    /// Rule 7: a read served from memory needs all three. A leader that is
    /// handing over leadership stops lease reads first (rule 10); they
    /// resume if the transfer times out. `Some(lease end)` when a read at
    /// `now` may be served from memory (the lease end computed once).
    pub(super) fn lease_read_until(&self) -> Option<MonoTime> {
        let ls = self.leader_state()?;
        if ls.transfer_target().is_some() || !self.may_serve(ls) || !self.cfg.lease_reads {
            return None;
        }
        self.lease_end(ls).filter(|&end| self.now < end)
    }

    pub(super) fn lease_read_ok(&self) -> bool {
        self.lease_read_until().is_some()
    }

    /// A linearizable read: served at once under the lease, or pending.
    pub fn read(&mut self, now: MonoTime, id: ReadId, key: String) -> Result<ReadNow, ReadError> {
        self.advance_time(now);
        if key.len() > self.cfg.max_key_bytes {
            return Err(ReadError::KeyTooLarge {
                len: key.len(),
                limit: self.cfg.max_key_bytes,
            });
        }
        let lease_read = self.lease_read_ok();
        let RoleState::Leader(ls) = &mut self.role else {
            // A follower answers under a read lease (F4), or refuses.
            return self.follower_read(id, key);
        };
        if lease_read {
            assert_eq!(
                self.kv.applied(),
                self.log.commit(),
                "lease read on a lagging state machine"
            );
            return Ok(ReadNow::Served(self.kv.get(&key).cloned()));
        }
        if self.pending_reads.len() >= self.cfg.max_pending_reads {
            return Err(ReadError::TooManyPendingReads {
                limit: self.cfg.max_pending_reads,
            });
        }
        let read_index = self.log.commit().max(ls.noop_index);
        ls.heartbeat_pending = Some(self.now);
        self.pending_reads.push_back(PendingRead {
            id,
            key,
            read_index,
            requested_at: self.now,
        });
        Ok(ReadNow::Pending)
    }

    /// Rule 7 for a driver that answers lease reads on other threads, with
    /// no step of the core: `Some` when a lease read at this node's `now`
    /// would be served, with the time until which it still would be.
    ///
    /// Every condition of `lease_read_ok` but the lease end is
    /// monotone in time (the wait, once over, stays over; the no-op stays
    /// committed), and the leader's own entry in `T_q` only grows with
    /// `now`, so while nothing is stepped a read at any local time in
    /// `[now, until)` is one the core would serve. A driver must publish a
    /// new view (or withdraw it) after every step and before it sends that
    /// step's messages or answers its clients; then a read served from the
    /// view it loaded is linearized at the load.
    pub fn lease_read_view(&self) -> Option<LeaseReadView> {
        let until = self.lease_read_until()?;
        assert_eq!(
            self.kv.applied(),
            self.log.commit(),
            "lease read view of a lagging state machine"
        );
        Some(LeaseReadView {
            term: self.term,
            applied: self.kv.applied(),
            until,
        })
    }

    /// The applied key-value map, an O(1) clone, for a [`LeaseReadView`].
    /// Holding it makes the next writes copy the paths they touch.
    pub fn kv_data(&self) -> KvData {
        self.kv.data().clone()
    }

    /// Serve every pending read whose conditions now hold.
    pub(super) fn complete_reads(&mut self) {
        let Some(ls) = self.leader_state() else {
            return;
        };
        if self.pending_reads.is_empty() || !self.may_serve(ls) {
            return;
        }
        let confirmed_since = self.quorum_ack_time(ls);
        let lease = self.lease_holds(ls) && ls.transfer_target().is_none();
        let commit = self.log.commit();
        let mut waiting = std::mem::take(&mut self.pending_reads);
        waiting.retain(|r| {
            let confirmed = lease || confirmed_since.is_some_and(|t| t >= r.requested_at);
            if !confirmed || commit < r.read_index {
                return true;
            }
            let outcome = Ok(self.kv.get(&r.key).cloned());
            self.read_results.push(ReadResult { id: r.id, outcome });
            false
        });
        self.pending_reads = waiting;
    }

    /// After anything that may change the lease or the wait: release held
    /// results, report lease changes, serve reads.
    pub(super) fn leader_progress_checks(&mut self) {
        let holds = self.lease_read_ok();
        let (now, term) = (self.now, self.term);
        let RoleState::Leader(ls) = &mut self.role else {
            return;
        };
        if now >= ls.wait_until && !self.held_writes.is_empty() {
            self.write_results.append(&mut self.held_writes);
        }
        if holds != ls.lease_held {
            ls.lease_held = holds;
            self.events.push(if holds {
                Event::LeaseAcquired { term }
            } else {
                Event::LeaseLost { term }
            });
        }
        self.complete_reads();
    }

    pub(super) fn lease_status(&self, now: MonoTime) -> LeaseStatus {
        let end = self.lease_read_until();
        let holds = end.is_some_and(|end| now < end);
        let remaining = end
            .map(|end| end.saturating_since(now))
            .unwrap_or(Duration::ZERO);
        let wait_remaining = self
            .leader_state()
            .map(|ls| ls.wait_until.saturating_since(now))
            .unwrap_or_default();
        LeaseStatus {
            holds,
            remaining,
            wait_remaining,
            protecting: self.lease_until.saturating_since(now),
            read_lease: self.read_lease_status(now),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use super::*;
    use crate::api::Ready;
    use crate::message::MessageBody;
    use crate::testkit::InstantCluster;
    use crate::types::NodeId;

    /// A leader of three with lease reads off (every read takes a ReadIndex
    /// round), past its wait and its no-op; its index and next heartbeat.
    fn leader_without_lease_reads() -> (InstantCluster, usize, MonoTime) {
        let mut c = InstantCluster::with_config(3, |cfg| cfg.lease_reads = false);
        c.run(Duration::from_secs(3));
        let l = c.leader().expect("a leader");
        let RoleState::Leader(ls) = &c.nodes[l].role else {
            unreachable!()
        };
        assert!(c.now >= ls.wait_until && c.nodes[l].log.commit() >= ls.noop_index);
        let due = ls.next_heartbeat;
        (c, l, due)
    }

    /// The send times of the heartbeats in `rd`, by peer.
    fn heartbeats(rd: &Ready) -> BTreeMap<NodeId, Vec<MonoTime>> {
        let mut by_peer: BTreeMap<NodeId, Vec<MonoTime>> = BTreeMap::new();
        for m in &rd.messages {
            if let MessageBody::AppendEntries(a) = &m.body {
                if a.entries.is_empty() {
                    by_peer.entry(m.to).or_default().push(a.send_time);
                }
            }
        }
        by_peer
    }

    /// Hand the leader's Ready to the others, then let the cluster settle:
    /// whether read `id` was served.
    fn deliver_and_serve(c: &mut InstantCluster, rd: Ready, id: ReadId) -> bool {
        let now = c.now;
        for m in rd.messages {
            let to = (m.to.0 - 1) as usize;
            c.nodes[to].step(now, m);
        }
        c.drain();
        c.reads.iter().any(|r| r.id == id && r.outcome.is_ok())
    }

    #[test]
    fn a_read_at_a_due_heartbeat_rides_on_it() {
        for read_first in [false, true] {
            let (mut c, l, due) = leader_without_lease_reads();
            c.now = due;
            if read_first {
                let pending = c.nodes[l].read(due, ReadId(1), "k".into());
                assert_eq!(pending, Ok(ReadNow::Pending));
                c.nodes[l].tick(due);
            } else {
                c.nodes[l].tick(due);
                let pending = c.nodes[l].read(due, ReadId(1), "k".into());
                assert_eq!(pending, Ok(ReadNow::Pending));
            }
            let rd = c.nodes[l].ready();
            let sent = heartbeats(&rd);
            assert_eq!(sent.len(), 2, "read first: {read_first}");
            assert!(sent.values().all(|t| t == &[due]), "{sent:?}");
            assert!(deliver_and_serve(&mut c, rd, ReadId(1)));
        }
    }

    /// A heartbeat of the batch sent before the read arrived cannot confirm
    /// it: the read's round gets a heartbeat of its own.
    #[test]
    fn a_read_after_the_batched_heartbeat_gets_its_own() {
        let (mut c, l, due) = leader_without_lease_reads();
        let later = due + Duration::from_millis(1);
        c.nodes[l].tick(due);
        c.now = later;
        let pending = c.nodes[l].read(later, ReadId(1), "k".into());
        assert_eq!(pending, Ok(ReadNow::Pending));
        let rd = c.nodes[l].ready();
        let sent = heartbeats(&rd);
        assert_eq!(sent.len(), 2);
        assert!(sent.values().all(|t| t == &[due, later]), "{sent:?}");
        assert!(deliver_and_serve(&mut c, rd, ReadId(1)));
    }
}
