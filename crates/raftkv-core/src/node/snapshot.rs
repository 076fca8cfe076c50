//! Snapshots: taking them to compact the log, streaming them to a follower
//! that needs compacted entries (`InstallSnapshot`), and installing them.
//!
//! Taking a snapshot is an O(1) clone of the state machine (see
//! `crate::snapshot`). A node takes a durable snapshot once
//! `snapshot_threshold` entries (and at least a quarter as many as there are
//! keys) have applied since its last one, at its applied index, and only when
//! every entry up to there is durable locally (so the driver can drop them
//! from the log file as soon as the snapshot is saved).
//!
//! The in-memory log is compacted separately and continuously: it keeps
//! `snapshot_keep_entries` applied entries, so a follower a little behind
//! catches up from the log, and drops older durable ones at once. A follower further behind gets a fresh snapshot of the leader's
//! state, which costs nothing to take; the durable snapshot only bounds the
//! log file and the restart.
//!
//! A transfer to a follower sends a fresh snapshot of the leader's applied
//! state, in chunks of about `snapshot_chunk_bytes`, at most
//! `max_inflight_snapshot_chunks` unacknowledged. The follower takes chunks
//! strictly in order and says which one it wants next; a lost or reordered
//! chunk makes the leader resend from the chunk the follower asks for, and a
//! stalled transfer resends after half an election timeout. Chunks are
//! heartbeats too: the follower renews the lease it protects (rule 1) before
//! it answers, and the leader counts the answer toward its lease (rule 4).
//! The follower installs the snapshot only after the last chunk, and
//! acknowledges it only once it is durable.

use std::collections::VecDeque;
use std::ops::Bound;

use super::replication::Replication;
use super::{LeaderState, RaftNode, RoleState};
use crate::api::{Event, RejectReason};
use crate::kv::KvStore;
use crate::message::{InstallSnapshot, InstallSnapshotResponse, Message, MessageBody};
use crate::snapshot::{KvData, Snapshot, SnapshotMeta, SnapshotOrigin, SnapshotWrite};
use crate::types::{LogIndex, MonoTime, NodeId, Term};

/// The leader's side of one transfer.
///
/// Chunking is deterministic (same snapshot, same chunk size), and the leader
/// remembers where every chunk it built starts, so it can resend from
/// whichever chunk the follower asks for: a follower whose staging restarted
/// (a late duplicate of chunk 0) or that is further along than the leader
/// thought is met where it is, never ignored.
#[derive(Debug, Clone)]
pub(super) struct SnapshotSend {
    pub(super) snap: Snapshot,
    /// `starts[i]`: the key chunk `i` starts after (`None`: the first key).
    /// Holds one more entry than chunks built: where the next one starts.
    starts: Vec<Option<String>>,
    /// Chunks in the whole snapshot, once the last one is built.
    total: Option<u64>,
    /// The next chunk to send.
    next_seq: u64,
    /// Chunks the follower has acknowledged (it wants `acked` next).
    pub(super) acked: u64,
    /// Unacknowledged chunks: (seq, sent at).
    inflight: VecDeque<(u64, MonoTime)>,
}

impl SnapshotSend {
    pub(super) fn new(snap: Snapshot) -> SnapshotSend {
        SnapshotSend {
            snap,
            starts: vec![None],
            total: None,
            next_seq: 0,
            acked: 0,
            inflight: VecDeque::new(),
        }
    }

    fn all_sent(&self) -> bool {
        self.total == Some(self.next_seq)
    }

    /// Send again from chunk `seq` (from the start when we never built the
    /// chunk before it).
    fn rewind_to(&mut self, seq: u64) {
        let seq = if (seq as usize) < self.starts.len() {
            seq
        } else {
            0
        };
        self.next_seq = seq;
        self.acked = seq;
        self.inflight.clear();
    }

    /// Panics unless: the follower acknowledged no chunk not yet sent; the
    /// chunks in flight are the unacknowledged ones, in order; the next
    /// chunk's start is known; nothing is sent past the last chunk.
    pub(super) fn assert_invariants(&self, peer: NodeId) {
        assert!(
            self.acked <= self.next_seq,
            "peer {peer}: snapshot chunk {} acknowledged, {} sent",
            self.acked,
            self.next_seq
        );
        let mut expected = self.acked;
        for &(seq, _) in &self.inflight {
            assert!(
                expected <= seq && seq < self.next_seq,
                "peer {peer}: snapshot chunk {seq} in flight out of order"
            );
            expected = seq + 1;
        }
        assert!(
            (self.next_seq as usize) < self.starts.len(),
            "peer {peer}: snapshot chunk {} has no known start",
            self.next_seq
        );
        assert!(
            self.total.is_none_or(|t| self.next_seq <= t),
            "peer {peer}: snapshot sent past its last chunk"
        );
    }

    /// The follower has chunks `0..next`.
    fn on_reply(&mut self, next: u64) {
        if next > self.acked && next <= self.next_seq {
            self.acked = next;
            while self.inflight.front().is_some_and(|(s, _)| *s < next) {
                self.inflight.pop_front();
            }
        } else {
            // Behind what we thought (its staging restarted, or a chunk was
            // lost), a duplicate answer, or ahead of what we sent since we
            // rewound: resume from what it asks for.
            self.rewind_to(next);
        }
    }
}

impl LeaderState {
    /// Snapshot transfers whose oldest chunk went unanswered for `timeout`
    /// rewind to what their follower acknowledged: the peers to resend to.
    pub(super) fn rewind_stalled_snapshots(
        &mut self,
        now: MonoTime,
        timeout: std::time::Duration,
    ) -> Vec<NodeId> {
        let mut stalled = Vec::new();
        for (&id, p) in self.progress.iter_mut() {
            if let Replication::Snapshot(ss) = &mut p.state {
                let late = ss
                    .inflight
                    .front()
                    .is_some_and(|&(_, sent)| now.saturating_since(sent) >= timeout);
                if late {
                    let acked = ss.acked;
                    ss.rewind_to(acked);
                    stalled.push(id);
                }
            }
        }
        stalled
    }
}

/// The follower's side: chunks received so far.
#[derive(Debug)]
pub(super) struct IncomingSnapshot {
    meta: SnapshotMeta,
    leader_term: Term,
    next_seq: u64,
    data: KvData,
    last_key: Option<String>,
}

impl RaftNode {
    /// After entries apply or become durable: take a compaction snapshot
    /// when enough has applied since the last one.
    pub(super) fn maybe_take_snapshot(&mut self) {
        self.compact_memory();
        let applied = self.kv.applied();
        let since = applied.0.saturating_sub(self.snapshot_meta.index.0);
        let due = self.cfg.snapshot_threshold.max(self.kv.len() as u64 / 4);
        if since < due || self.snapshot_unsaved.is_some() || applied > self.log.persisted() {
            return;
        }
        let snapshot = snapshot_of_applied(&self.kv, &self.log, &self.configs);
        let (index, term) = (snapshot.meta.index, snapshot.meta.term);
        self.snapshot_unsaved = Some(snapshot.meta.clone());
        self.snapshots_out.push(SnapshotWrite {
            snapshot,
            origin: SnapshotOrigin::Compaction,
        });
        self.events.push(Event::SnapshotTaken { index, term });
    }

    /// Drop applied entries from memory beyond `snapshot_keep_entries`
    /// (only durable ones: storage can serve them), in steps so the log is not
    /// shifted on every apply.
    fn compact_memory(&mut self) {
        let keep = self.cfg.snapshot_keep_entries;
        let target = LogIndex(self.kv.applied().0.saturating_sub(keep)).min(self.log.persisted());
        if target.0 > self.log.offset().0 + keep / 2 {
            self.log.compact_to(target);
            self.note_compacted(target);
        }
    }

    /// The driver saved the compaction snapshot at `index`.
    pub fn on_snapshot_saved(&mut self, now: MonoTime, index: LogIndex) {
        self.advance_time(now);
        let Some(meta) = self.snapshot_unsaved.take_if(|m| m.index == index) else {
            return;
        };
        if meta.index > self.snapshot_meta.index {
            self.snapshot_meta = meta;
        }
    }

    /// The latest snapshot this node has (or is saving), for status.
    pub fn snapshot_index(&self) -> LogIndex {
        self.snapshot_unsaved
            .as_ref()
            .map_or(LogIndex::ZERO, |m| m.index)
            .max(self.snapshot_meta.index)
    }

    /// Leader: start or continue a transfer to `peer`, within the window.
    pub(super) fn send_snapshot_chunks(&mut self, peer: NodeId) {
        let now = self.now;
        let RoleState::Leader(ls) = &mut self.role else {
            return;
        };
        let Some(p) = ls.progress.get_mut(&peer) else {
            return;
        };
        if p.snapshot().is_none() {
            let snap = snapshot_of_applied(&self.kv, &self.log, &self.configs);
            self.events.push(Event::SnapshotSending {
                to: peer,
                index: snap.meta.index,
            });
            p.state = Replication::Snapshot(Box::new(SnapshotSend::new(snap)));
        }
        let (window, chunk_bytes) = (
            self.cfg.max_inflight_snapshot_chunks,
            self.cfg.snapshot_chunk_bytes,
        );
        let mut out = Vec::new();
        {
            let Replication::Snapshot(ss) = &mut p.state else {
                return;
            };
            while !ss.all_sent() && ss.inflight.len() < window {
                let seq = ss.next_seq;
                let start = match &ss.starts[seq as usize] {
                    Some(k) => Bound::Excluded(k.clone()),
                    None => Bound::Unbounded,
                };
                let mut data = Vec::new();
                let mut bytes = 0;
                let mut iter = ss.snap.data.range((start, Bound::Unbounded));
                let mut done = true;
                for (k, v) in iter.by_ref() {
                    data.push((k.clone(), v.clone()));
                    bytes += k.len() + v.len() + 16;
                    if bytes >= chunk_bytes {
                        done = false;
                        break;
                    }
                }
                if !done && iter.next().is_none() {
                    done = true;
                }
                if ss.starts.len() == seq as usize + 1 {
                    let end = data
                        .last()
                        .map(|(k, _)| k.clone())
                        .or_else(|| ss.starts[seq as usize].clone());
                    ss.starts.push(end);
                }
                if done {
                    ss.total = Some(seq + 1);
                }
                ss.inflight.push_back((seq, now));
                ss.next_seq += 1;
                out.push(InstallSnapshot {
                    meta: ss.snap.meta.clone(),
                    seq,
                    data,
                    sessions: if done {
                        ss.snap.sessions.clone()
                    } else {
                        Vec::new()
                    },
                    done,
                    lease_duration: self.cfg.lease_duration,
                    send_time: now,
                });
            }
        }
        for chunk in out {
            self.send(peer, MessageBody::InstallSnapshot(chunk));
        }
    }

    pub(super) fn handle_install_snapshot_response(&mut self, msg: Message) {
        let MessageBody::InstallSnapshotResponse(resp) = msg.body else {
            unreachable!()
        };
        let now = self.now;
        let RoleState::Leader(ls) = &mut self.role else {
            return; // stale: this node no longer leads
        };
        if msg.term < self.term {
            return;
        }
        let since = ls.since;
        let Some(p) = ls.progress.get_mut(&msg.from) else {
            return;
        };
        p.last_contact = Some(now);
        if resp.send_time >= since && resp.send_time <= now {
            p.acked_send_time = p.acked_send_time.max(Some(resp.send_time));
        }
        let Replication::Snapshot(ss) = &mut p.state else {
            return self.leader_progress_checks();
        };
        if resp.snapshot_index != ss.snap.meta.index {
            return self.leader_progress_checks();
        }
        if resp.installed {
            let index = ss.snap.meta.index;
            p.advance_match(index);
            p.next_index = p.match_index.next();
            p.start_streaming();
            self.maybe_commit();
            self.leader_progress_checks();
            self.maybe_send_timeout_now(msg.from);
            return self.send_append(msg.from, false);
        }
        ss.on_reply(resp.next_seq);
        self.leader_progress_checks();
        self.send_snapshot_chunks(msg.from);
    }

    /// Follower side of a snapshot chunk (the term is already reconciled).
    pub(super) fn handle_install_snapshot(&mut self, msg: Message) {
        let MessageBody::InstallSnapshot(req) = msg.body else {
            unreachable!()
        };
        let from = msg.from;
        let index = req.meta.index;
        let reply = |node: &mut RaftNode, next_seq: u64, installed: bool| {
            let body = InstallSnapshotResponse {
                snapshot_index: index,
                next_seq,
                installed,
                send_time: req.send_time,
            };
            node.respond(from, node.term, MessageBody::InstallSnapshotResponse(body));
        };
        if msg.term < self.term {
            return reply(self, 0, false);
        }
        if matches!(self.role, RoleState::Leader(_)) {
            return self.reject(from, RejectReason::UnexpectedResponse);
        }
        if req.meta.membership.validate().is_err() || req.meta.term > msg.term {
            return self.reject(from, RejectReason::MalformedEntries);
        }
        self.accept_leader_contact(from, req.lease_duration);
        if index <= self.log.commit() {
            // Everything it holds is committed here already.
            self.incoming_snapshot = None;
            return reply(self, req.seq + 1, true);
        }
        if req.seq == 0 {
            self.incoming_snapshot = Some(IncomingSnapshot {
                meta: req.meta.clone(),
                leader_term: msg.term,
                next_seq: 0,
                data: KvData::new(),
                last_key: None,
            });
        }
        let expected = match &self.incoming_snapshot {
            Some(inc) if inc.meta == req.meta && inc.leader_term == msg.term => inc.next_seq,
            _ => 0,
        };
        if req.seq != expected {
            return reply(self, expected, false);
        }
        let inc = self.incoming_snapshot.as_mut().expect("matched above");
        for (k, v) in req.data {
            if inc.last_key.as_ref().is_some_and(|last| &k <= last) {
                self.incoming_snapshot = None;
                return self.reject(from, RejectReason::MalformedEntries);
            }
            inc.last_key = Some(k.clone());
            inc.data.insert(k, v);
        }
        inc.next_seq += 1;
        let next_seq = inc.next_seq;
        if !req.done {
            return reply(self, next_seq, false);
        }
        let inc = self.incoming_snapshot.take().expect("matched above");
        let snapshot = Snapshot {
            meta: inc.meta,
            data: inc.data,
            sessions: req.sessions,
        };
        self.install_snapshot(snapshot);
        reply(self, next_seq, true);
    }

    /// Replace the state machine (and as much of the log as the snapshot
    /// covers) with `snap`.
    fn install_snapshot(&mut self, snap: Snapshot) {
        let meta = snap.meta.clone();
        let keep_log_suffix = self.log.install_snapshot(meta.index, meta.term);
        self.kv = KvStore::from_snapshot(self.cfg.max_sessions, &snap);
        let later: Vec<_> = self
            .configs
            .iter()
            .filter(|(i, _)| keep_log_suffix && *i > meta.index)
            .cloned()
            .collect();
        self.configs = vec![(meta.index, meta.membership.clone())];
        self.configs.extend(later);
        self.refresh_peers();
        self.events.push(Event::SnapshotInstalled {
            index: meta.index,
            term: meta.term,
            keys: snap.data.len(),
        });
        self.events.push(Event::Committed { index: meta.index });
        self.snapshot_meta = meta;
        self.snapshot_unsaved = None;
        self.snapshots_out.push(SnapshotWrite {
            snapshot: snap,
            origin: SnapshotOrigin::Installed { keep_log_suffix },
        });
        self.apply_committed();
    }
}

/// A snapshot of the applied state, an O(1) clone (a function of the parts
/// it reads, so a leader can take one while it holds its own state).
fn snapshot_of_applied(
    kv: &KvStore,
    log: &crate::log::RaftLog,
    configs: &[(LogIndex, crate::types::Membership)],
) -> Snapshot {
    let index = kv.applied();
    let (data, sessions) = kv.snapshot_parts();
    Snapshot {
        meta: SnapshotMeta {
            index,
            term: log
                .term(index)
                .expect("applied entries are in the log or the snapshot"),
            membership: super::membership::config_at(configs, index),
        },
        data,
        sessions,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send() -> SnapshotSend {
        SnapshotSend::new(Snapshot {
            meta: SnapshotMeta::default(),
            data: KvData::new(),
            sessions: Vec::new(),
        })
    }

    #[test]
    fn a_fresh_transfer_passes() {
        send().assert_invariants(NodeId(2));
    }

    #[test]
    #[should_panic(expected = "acknowledged")]
    fn an_acknowledgement_past_what_was_sent_panics() {
        let mut ss = send();
        ss.acked = 1;
        ss.assert_invariants(NodeId(2));
    }

    #[test]
    #[should_panic(expected = "has no known start")]
    fn a_chunk_with_no_start_panics() {
        let mut ss = send();
        ss.next_seq = 1;
        ss.assert_invariants(NodeId(2));
    }
}
