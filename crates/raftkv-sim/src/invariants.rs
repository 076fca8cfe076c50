//! The Raft safety properties (Raft paper, Figure 3), asserted as the run
//! goes:
//! - election safety: at most one leader per term, over the whole run;
//! - log matching: two logs with the same (index, term) agree on every entry
//!   up to there (checked across all pairs every `log_check_interval`);
//! - leader completeness: a new leader of term T holds every entry committed
//!   in a term below T (checked when a node is first seen leading a term).
//!   Only those: a candidate paused with its votes in hand may become leader
//!   of a stale term long after later terms committed entries it lacks —
//!   legal, since it can never commit anything. The term an entry was
//!   committed in is the term of the first node seen committing it (the
//!   committing leader: followers learn commits from it).
//! - lease exclusion (checked at the end of a run): no lease read by the
//!   leader of term `t` comes after any answer by the leader of a later
//!   term — lease rule 5 made visible without relying on the workload
//!   to expose it. (ReadIndex reads may legally *return* later: they are
//!   linearized when their quorum acknowledged.)
//! - state machines (checked at the end of a run): each node's key-value
//!   state equals a reference model — plain map plus exactly-once sessions —
//!   fed the committed entries up to that node's applied index.
//! - state machine safety: every node commits (and so applies — the core
//!   applies at commit) the same entry at each index.
//!
//! With log compaction, an index a node holds only in its snapshot (at or
//! below its log's offset) is not compared entry by entry; instead every
//! snapshot a node takes or installs is compared with the reference model
//! fed the committed history up to the snapshot's index (data and session
//! sequence numbers), so nothing committed can be lost inside a snapshot.
//!
//! Membership (lease rule 10 and the one-server-at-a-time rules):
//! - vote counting: a node that wins term `t` has granted votes delivered to
//!   it (plus its own) from a majority of the *voters* of its configuration;
//!   votes of learners and non-members never make the count;
//! - commit counting: when a leader's commit index moves to `k`, a majority
//!   of the voters of its configuration (or of the one before, which it may
//!   have just replaced) hold entry `k` durably; a learner's acknowledgement
//!   never makes the count;
//! - lease protection: whenever a leader serves a lease read, a majority of
//!   the voters of each configuration its lease needs (the one in force, and
//!   the one before while the newest is uncommitted) protect a lease at that
//!   instant (lease rule 1: `lease_until` ahead of their own clock), or
//!   are down (rule 3 makes them protect one when they restart). Otherwise a
//!   new leader could be elected without waiting, inside the lease;
//! - a node that is not a voter of its own configuration (a learner, a
//!   spare, a removed node that knows it) never campaigns, and a leader
//!   transferring leadership serves no lease read (lease rule 10);
//! - one change at a time: a leader accepts a change only when the previous
//!   one has committed, never holds two uncommitted configurations, and
//!   every committed configuration differs from the one before in at most
//!   one voter.

use std::collections::{BTreeMap, BTreeSet};

use raftkv_core::{Entry, EntryPayload, LogIndex, Membership, NodeId, Role, Snapshot, Term};

use raftkv_storage::Storage;

use crate::client::ServedKind;
use crate::cluster::Cluster;
use crate::driver_host::{config_of, stored_entry};
use crate::rng::Fnv64;

impl Cluster {
    /// Record (and check) the entries node `i` committed since last seen.
    /// Compacted entries up to `storage_upto` are read from storage.
    pub(crate) fn record_commits(&mut self, i: usize, storage_upto: LogIndex) {
        let Some(raft) = self.nodes[i].raft.as_ref() else {
            return;
        };
        let role = raft.role();
        let commit = raft.log().commit();
        let seen = self.nodes[i].commit_seen;
        if commit > seen {
            self.check_commits(i, seen, commit, storage_upto);
            self.nodes[i].commit_seen = commit;
            if role == Role::Leader {
                self.check_commit_quorum(i, commit);
            }
        }
    }

    pub(crate) fn check_node(&mut self, i: usize) {
        // The core drops applied, durable entries from memory as it goes
        // (`snapshot_keep_entries`): storage still holds those.
        let durable = raftkv_storage::Storage::last_index(self.nodes[i].disk.storage());
        self.record_commits(i, durable);
        let Some(raft) = self.nodes[i].raft.as_ref() else {
            return;
        };
        let (id, term, role) = (raft.id(), raft.term(), raft.role());
        let rogue = (matches!(role, Role::Candidate | Role::PreCandidate) && !raft.may_campaign())
            .then(|| raft.membership().to_string());
        if let Some(m) = rogue {
            self.fail(format!(
                "vote counting: node {id}, a voter of neither its configuration {m} nor (while it is uncommitted) the one before, campaigns in term {term}"
            ));
            return;
        }
        if !self.snapshot_checks.is_empty() {
            self.check_snapshots(false);
        }
        if role == Role::Leader {
            match self.leaders_by_term.get(&term) {
                Some(&other) if other != id => {
                    self.fail(format!(
                        "election safety: nodes {other} and {id} both led term {term}"
                    ));
                }
                Some(_) => {}
                None => {
                    self.leaders_by_term.insert(term, id);
                    self.elections.push((self.now_ns, id, term));
                    self.check_leader_completeness(i);
                    self.check_vote_count(i);
                }
            }
        }
    }

    /// State machine safety: entries `seen+1..=commit` of node `i` match what
    /// any other node committed at those indexes.
    fn check_commits(
        &mut self,
        i: usize,
        seen: LogIndex,
        commit: LogIndex,
        storage_upto: LogIndex,
    ) {
        let raft = self.nodes[i].raft.as_ref().expect("up");
        let (id, term) = (raft.id(), raft.term());
        let offset = raft.log().offset();
        let mut problem = None;
        let mut configs = Vec::new();
        let storage = self.nodes[i].disk.storage();
        // Storage may lag the core (its jobs wait for the storage thread):
        // after a snapshot installed in memory and not yet saved, storage
        // still holds the entries the snapshot replaced. It speaks for the
        // compacted entries only when it agrees with the core at the
        // compaction point (log matching then covers every index below).
        let storage_upto = match (stored_entry(storage, offset), raft.log().term(offset)) {
            (Some(e), Some(t)) if e.term == t => storage_upto,
            _ => LogIndex::ZERO,
        };
        for k in seen.0 + 1..=commit.0 {
            // Compacted away: the entry may still be in storage (the core
            // compacts as it commits); otherwise only a snapshot holds it,
            // and snapshots are checked on their own.
            let compacted = k <= offset.0;
            let stored = (compacted && k <= storage_upto.0)
                .then(|| stored_entry(storage, LogIndex(k)))
                .flatten();
            if compacted && stored.is_none() {
                continue;
            }
            if self.committed.len() < k as usize - 1 {
                problem = Some(format!(
                    "committed history: node {id} committed index {k}, but nobody was seen committing index {} (a snapshot covered it everywhere)",
                    self.committed.len() + 1
                ));
                break;
            }
            let e = if compacted {
                stored.as_ref()
            } else {
                raft.log().get(LogIndex(k))
            };
            let Some(e) = e else {
                problem = Some(format!(
                    "log: node {id} committed index {k} that is not in its log"
                ));
                break;
            };
            match self.committed.get(k as usize - 1) {
                Some(c) if c != e => {
                    problem = Some(format!(
                        "state machine safety: node {id} committed {e:?} at index {k}, another node committed {c:?}"
                    ));
                    break;
                }
                Some(_) => {}
                None => {
                    debug_assert_eq!(self.committed.len(), k as usize - 1);
                    if let Some(m) = config_of(e) {
                        configs.push((e.index, m.clone()));
                    }
                    self.committed.push(e.clone());
                    self.committed_in.push(term);
                }
            }
        }
        if let Some(p) = problem {
            return self.fail(p);
        }
        for (index, m) in configs {
            let prev = self.committed_membership().clone();
            let moved: BTreeSet<_> = prev.voters.symmetric_difference(&m.voters).collect();
            if moved.len() > 1 {
                return self.fail(format!(
                    "one change at a time: the configuration committed at index {index} ({m}) moves voters {moved:?} at once (before: {prev})"
                ));
            }
            self.committed_configs.insert(index, m);
        }
    }

    /// Commit counting (see the module docs), at leader `i` whose commit
    /// index just moved to `commit`.
    pub(crate) fn check_commit_quorum(&mut self, i: usize, commit: LogIndex) {
        if !self.cfg.check_durable_promises {
            return;
        }
        let raft = self.nodes[i].raft.as_ref().expect("up");
        let Some(term) = raft.log().term(commit) else {
            return;
        };
        let me = raft.id();
        let current = raft.membership().clone();
        let previous = self.config_before(&current, raft);
        let holders: BTreeSet<NodeId> = (0..self.nodes.len())
            .filter(|&j| self.holds_durably(j, commit, term))
            .map(|j| self.nodes[j].id)
            .collect();
        let ok = |m: &Membership| m.has_quorum(holders.iter());
        if !ok(&current) && !previous.as_ref().is_some_and(ok) {
            self.fail(format!(
                "commit counting: node {me} committed index {commit} (term {term}) held durably only by {holders:?}, no majority of the voters of {current}"
            ));
        }
    }

    /// The configuration before `current` in `raft`'s log, as committed.
    fn config_before(
        &self,
        current: &Membership,
        raft: &raftkv_core::RaftNode,
    ) -> Option<Membership> {
        // The latest committed configuration that is not `current` itself.
        let _ = raft;
        self.committed_configs
            .values()
            .rev()
            .find(|m| *m != current)
            .cloned()
    }

    /// Whether node `j` holds entry `(index, term)` durably (or in its
    /// snapshot).
    fn holds_durably(&self, j: usize, index: LogIndex, term: Term) -> bool {
        let n = &self.nodes[j];
        // A node repairing a damaged log holds what its vote floor covers:
        // it votes only for candidates at least that up to date, which is
        // what its copy of the entry stood for (`node/repair.rs`).
        let floor = match n.raft.as_ref() {
            Some(r) => r.repairing(),
            None => n.disk.storage().hard_state().repair,
        };
        if floor.is_some_and(|f| f.term >= term && f.index.is_none_or(|i| i >= index)) {
            return true;
        }
        match n.raft.as_ref() {
            Some(r) => {
                let log = r.log();
                index <= log.offset() || (log.persisted() >= index && log.term(index) == Some(term))
            }
            // A crashed node's live view is its durable state.
            None => {
                index < n.disk.storage().first_index()
                    || stored_entry(n.disk.storage(), index).is_some_and(|e| e.term == term)
            }
        }
    }

    /// Vote counting (see the module docs), for the new leader `i`.
    pub(crate) fn check_vote_count(&mut self, i: usize) {
        let raft = self.nodes[i].raft.as_ref().expect("up");
        let (id, term) = (raft.id(), raft.term());
        let m = raft.membership();
        let mut votes = self
            .votes_seen
            .get(&(id, term))
            .cloned()
            .unwrap_or_default();
        votes.insert(id);
        if !m.has_quorum(votes.iter()) {
            let m = m.clone();
            self.fail(format!(
                "vote counting: node {id} won term {term} with votes from {votes:?}, no majority of the voters of {m}"
            ));
        }
        // Old terms' votes are of no further use.
        self.votes_seen = self.votes_seen.split_off(&(NodeId(0), term));
    }

    /// Lease protection (see the module docs), as leader `i` serves a lease
    /// read.
    pub(crate) fn check_lease_protection(&mut self, i: usize) {
        let local = self.local_now_at(i);
        let Some(raft) = self.nodes[i].raft.as_ref() else {
            return;
        };
        let st = raft.status(local);
        if let Some(t) = st.transfer_to {
            return self.fail(format!(
                "transfer: node {} (leader of term {}) served a lease read while transferring leadership to node {t}",
                st.id, st.term
            ));
        }
        let mut configs = vec![st.membership.clone()];
        if st.membership_index > st.commit_index {
            if let Some(prev) = self.config_before(&st.membership, raft) {
                configs.push(prev);
            }
        }
        let protecting: BTreeSet<NodeId> = (0..self.nodes.len())
            .filter(|&j| {
                j == i
                    || match self.nodes[j].raft.as_ref() {
                        None => true,
                        Some(r) => !r.status(self.local_now_at(j)).lease.protecting.is_zero(),
                    }
            })
            .map(|j| self.nodes[j].id)
            .collect();
        for m in configs {
            if !m.has_quorum(protecting.iter()) {
                return self.fail(format!(
                    "lease protection: node {} (leader of term {}) served a lease read while only {protecting:?} protect a lease, no majority of the voters of {m}",
                    st.id, st.term
                ));
            }
        }
    }

    /// Live lease exclusion: as leader `i` answers a client, no leader of an
    /// older term holds a lease (lease rule 5, checked at the instant
    /// rather than only when the old leader next serves a lease read).
    pub(crate) fn check_no_older_lease(&mut self, i: usize) {
        let Some(raft) = self.nodes[i].raft.as_ref() else {
            return;
        };
        let (id, term) = (raft.id(), raft.term());
        for j in 0..self.nodes.len() {
            let Some(r) = self.nodes[j].raft.as_ref() else {
                continue;
            };
            if j == i || r.role() != Role::Leader || r.term() >= term {
                continue;
            }
            let st = r.status(self.local_now_at(j));
            if st.lease.holds {
                return self.fail(format!(
                    "lease exclusion: node {id} (leader of term {term}) answered a client while node {} (leader of term {}) still holds its lease ({:?} left)",
                    st.id, st.term, st.lease.remaining
                ));
            }
        }
    }

    /// One change at a time, as leader `i` hands out `entries` to persist.
    pub(crate) fn check_config_append(&mut self, i: usize, entries: &[Entry]) {
        let Some(raft) = self.nodes[i].raft.as_ref() else {
            return;
        };
        if raft.role() != Role::Leader {
            return;
        }
        let log = raft.log();
        for e in entries.iter().filter(|e| config_of(e).is_some()) {
            let from = log.commit().max(log.offset()).next();
            let mut k = from;
            while k < e.index {
                if log.get(k).and_then(config_of).is_some() {
                    let id = raft.id();
                    return self.fail(format!(
                        "one change at a time: leader {id} appended a configuration at index {} while the one at {k} is uncommitted",
                        e.index
                    ));
                }
                k = k.next();
            }
        }
    }

    /// Compare the snapshots seen with the committed history; `at_end`:
    /// every snapshot must be checkable by now.
    pub(crate) fn check_snapshots(&mut self, at_end: bool) {
        let known = self.committed.len() as u64;
        let (ready, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.snapshot_checks)
            .into_iter()
            .partition(|(_, s)| s.meta.index.0 <= known);
        self.snapshot_checks = later;
        for (id, snap) in ready {
            let index = snap.meta.index;
            let want = match self.snapshot_digests.get(&index) {
                Some(&d) => d,
                None => {
                    let mut model = ReferenceKv::default();
                    for e in &self.committed[..index.0 as usize] {
                        model.apply(e);
                    }
                    let d = model.digest();
                    self.snapshot_digests.insert(index, d);
                    d
                }
            };
            if snapshot_digest(&snap) != want {
                return self.fail(format!(
                    "snapshot: node {id}'s snapshot at index {index} differs from the committed history up to there"
                ));
            }
            if let Some(e) = self
                .committed
                .get(index.0 as usize - 1)
                .filter(|_| index.0 > 0)
            {
                if e.term != snap.meta.term {
                    return self.fail(format!(
                        "snapshot: node {id}'s snapshot at index {index} says term {}, the committed entry has term {}",
                        snap.meta.term, e.term
                    ));
                }
            }
        }
        if at_end {
            if let Some((id, s)) = self.snapshot_checks.first() {
                let (id, index) = (*id, s.meta.index);
                self.fail(format!(
                    "snapshot: node {id} has a snapshot at index {index}, past every recorded commit ({known})"
                ));
            }
        }
    }

    fn check_leader_completeness(&mut self, i: usize) {
        let raft = self.nodes[i].raft.as_ref().expect("up");
        let term = raft.term();
        let missing = self
            .committed
            .iter()
            .zip(&self.committed_in)
            .find(|(c, &t)| {
                t < term && c.index > raft.log().offset() && raft.log().get(c.index) != Some(*c)
            })
            .map(|(c, _)| c.index);
        if let Some(index) = missing {
            let (id, term) = (raft.id(), raft.term());
            self.fail(format!(
                "leader completeness: node {id}, leader of term {term}, lacks committed entry {index}"
            ));
        }
    }

    /// Log matching across every pair of up nodes.
    pub(crate) fn check_log_matching(&mut self) {
        let up: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| self.nodes[i].raft.is_some())
            .collect();
        for (x, &a) in up.iter().enumerate() {
            for &b in &up[x + 1..] {
                if let Some(p) = self.log_matching_problem(a, b) {
                    self.fail(p);
                    return;
                }
            }
        }
    }

    fn log_matching_problem(&self, a: usize, b: usize) -> Option<String> {
        let la = self.nodes[a].raft.as_ref()?.log();
        let lb = self.nodes[b].raft.as_ref()?.log();
        let top = la.last_index().min(lb.last_index());
        // Only the range both logs still hold (or hold as their snapshot's
        // last entry) can be compared.
        let low = la.offset().max(lb.offset());
        if top < low {
            return None;
        }
        // The highest index where both logs hold an entry of the same term.
        let mut k = top;
        while k > low && la.term(k) != lb.term(k) {
            k = k.prev();
        }
        if la.term(k) != lb.term(k) {
            return None;
        }
        let mut j = k;
        while j > low {
            if la.get(j) != lb.get(j) {
                return Some(format!(
                    "log matching: nodes {} and {} agree on the term at index {k} but differ at {j}",
                    self.nodes[a].id, self.nodes[b].id
                ));
            }
            j = j.prev();
        }
        None
    }

    /// Lease exclusion; see the module docs. Returns the first overlap.
    pub fn lease_overlap(&self) -> Option<String> {
        let mut first_by_term: BTreeMap<Term, (u64, raftkv_core::NodeId)> = BTreeMap::new();
        for s in &self.served {
            first_by_term.entry(s.term).or_insert((s.real_ns, s.node));
        }
        for s in self
            .served
            .iter()
            .filter(|s| s.what == ServedKind::LeaseRead)
        {
            if let Some((t, (first, node))) = first_by_term
                .range(s.term.next()..)
                .find(|(_, (first, _))| *first < s.real_ns)
            {
                return Some(format!(
                    "lease exclusion: node {} (leader of term {}) served a lease read at {}ns, after node {node}, leader of term {t}, first answered a client at {first}ns",
                    s.node, s.term, s.real_ns
                ));
            }
        }
        None
    }

    /// Compare every live node's key-value state with the reference model
    /// at that node's applied index; see the module docs.
    pub fn check_state_machines(&mut self) {
        self.check_snapshots(true);
        if self.violation.is_some() {
            return;
        }
        let mut nodes: Vec<(LogIndex, usize)> = (0..self.nodes.len())
            .filter_map(|i| self.nodes[i].raft.as_ref().map(|r| (r.kv().applied(), i)))
            .collect();
        nodes.sort();
        let mut model = ReferenceKv::default();
        let mut next = 0usize;
        for (applied, i) in nodes {
            while (next as u64) < applied.0 {
                let Some(e) = self.committed.get(next) else {
                    let id = self.nodes[i].id;
                    return self.fail(format!(
                        "state machine: node {id} applied {applied}, past every recorded commit"
                    ));
                };
                model.apply(e);
                next += 1;
            }
            let raft = self.nodes[i].raft.as_ref().expect("up");
            let got: Vec<(String, String)> = raft
                .kv()
                .sorted_pairs()
                .into_iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            let want: Vec<(String, String)> = model
                .data
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            if got != want {
                let id = raft.id();
                return self.fail(format!(
                    "state machine: node {id} at applied index {applied} holds {got:?}, the reference model {want:?}"
                ));
            }
        }
    }
}

/// The key-value semantics, written out independently of the core: SET and
/// DELETE on a map; a command of a session applies only if its sequence
/// number is above the last applied one (client 0 has no session).
#[derive(Default)]
struct ReferenceKv {
    data: BTreeMap<String, String>,
    last_seq: BTreeMap<u64, u64>,
}

/// The state a snapshot must hold: its data and each session's last
/// sequence number.
fn snapshot_digest(s: &Snapshot) -> u64 {
    let mut h = Fnv64::default();
    for (k, v) in s.data.iter() {
        h.write(k.as_bytes());
        h.write(&[0]);
        h.write(v.as_bytes());
        h.write(&[1]);
    }
    h.write(&[2]);
    for r in &s.sessions {
        h.write(&r.client_id.0.to_le_bytes());
        h.write(&r.last_seq.to_le_bytes());
    }
    h.finish()
}

impl ReferenceKv {
    fn digest(&self) -> u64 {
        let mut h = Fnv64::default();
        for (k, v) in &self.data {
            h.write(k.as_bytes());
            h.write(&[0]);
            h.write(v.as_bytes());
            h.write(&[1]);
        }
        h.write(&[2]);
        for (c, seq) in &self.last_seq {
            h.write(&c.to_le_bytes());
            h.write(&seq.to_le_bytes());
        }
        h.finish()
    }

    fn apply(&mut self, e: &raftkv_core::Entry) {
        let EntryPayload::Command(cmd) = &e.payload else {
            return;
        };
        if cmd.client_id.0 != 0 {
            let last = self.last_seq.entry(cmd.client_id.0).or_insert(0);
            if cmd.seq <= *last {
                return;
            }
            *last = cmd.seq;
        }
        match &cmd.op {
            raftkv_core::Op::Set { key, value } => {
                self.data.insert(key.clone(), value.clone());
            }
            raftkv_core::Op::Delete { key } => {
                self.data.remove(key);
            }
        }
    }
}

/// The checks can fail: each is fed a state that breaks it (the core never
/// produces these, so they are made by hand).
#[cfg(test)]
mod teeth {
    use std::time::Duration;

    use raftkv_core::{
        ConfChange, Entry, EntryPayload, Membership, NodeId, Role, Snapshot, SnapshotMeta,
    };

    use crate::cluster::{Cluster, ClusterConfig};

    fn stable(spares: usize) -> (Cluster, usize) {
        let mut cfg = ClusterConfig::new(3, 9);
        cfg.spares = spares;
        let mut c = Cluster::new(cfg);
        let ok = c.run_until(Duration::from_secs(5), |c| {
            c.leader()
                .and_then(|l| c.raft(l))
                .is_some_and(|r| r.log().term(r.log().commit()) == Some(r.term()))
        });
        assert!(ok);
        c.run_for(Duration::from_millis(100));
        let l = c.leader().unwrap();
        assert!(c.violation().is_none());
        (c, l.0 as usize - 1)
    }

    #[test]
    fn votes_from_non_voters_do_not_elect() {
        let (mut c, i) = stable(2);
        let r = c.nodes[i].raft.as_ref().unwrap();
        let key = (r.id(), r.term());
        c.votes_seen
            .insert(key, [NodeId(4), NodeId(5)].into_iter().collect());
        c.check_vote_count(i);
        assert!(c.violation().unwrap().starts_with("vote counting"));
    }

    #[test]
    fn a_commit_held_by_the_leader_alone_fails() {
        let (mut c, i) = stable(0);
        let id = c.nodes[i].id;
        let index = c.propose_at(
            id,
            raftkv_core::ClientCommand {
                client_id: raftkv_core::ClientId(0),
                seq: 0,
                op: raftkv_core::Op::Set {
                    key: "k".into(),
                    value: "v".into(),
                },
            },
        );
        let index = index.unwrap();
        assert_eq!(c.nodes[i].raft.as_ref().unwrap().role(), Role::Leader);
        c.check_commit_quorum(i, index);
        assert!(c.violation().unwrap().starts_with("commit counting"));
    }

    #[test]
    fn two_uncommitted_configurations_fail() {
        let (mut c, i) = stable(2);
        let id = c.nodes[i].id;
        let k = c
            .propose_conf_change(
                id,
                ConfChange::AddLearner {
                    id: NodeId(4),
                    addr: String::new(),
                },
            )
            .unwrap();
        let r = c.nodes[i].raft.as_ref().unwrap();
        assert!(r.log().commit() < k);
        let second = Entry {
            index: k.next(),
            term: r.term(),
            payload: EntryPayload::Config(Membership::with_voters([NodeId(1)])),
        };
        c.check_config_append(i, &[second]);
        assert!(c.violation().unwrap().starts_with("one change at a time"));
    }

    #[test]
    fn a_snapshot_missing_a_write_fails() {
        let (mut c, i) = stable(0);
        let id = c.nodes[i].id;
        for v in ["a", "b"] {
            c.propose_at(
                id,
                raftkv_core::ClientCommand {
                    client_id: raftkv_core::ClientId(0),
                    seq: 0,
                    op: raftkv_core::Op::Set {
                        key: v.into(),
                        value: v.into(),
                    },
                },
            )
            .unwrap();
        }
        c.run_for(Duration::from_millis(200));
        let r = c.nodes[i].raft.as_ref().unwrap();
        let index = r.log().commit();
        let (mut data, sessions) = r.kv().snapshot_parts();
        let good = Snapshot {
            meta: SnapshotMeta {
                index,
                term: r.log().term(index).unwrap(),
                membership: r.membership().clone(),
            },
            data: data.clone(),
            sessions: sessions.clone(),
        };
        data.remove("a");
        let bad = Snapshot {
            data,
            ..good.clone()
        };
        c.snapshot_checks.push((id, good));
        c.check_snapshots(true);
        assert!(c.violation().is_none(), "{:?}", c.violation());
        c.snapshot_checks.push((id, bad));
        c.check_snapshots(true);
        assert!(c.violation().unwrap().starts_with("snapshot"));
    }
}
