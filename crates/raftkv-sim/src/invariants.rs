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
//!   term — LEASES.md rule 5 made visible without relying on the workload
//!   to expose it. (ReadIndex reads may legally *return* later: they are
//!   linearized when their quorum acknowledged.)
//! - state machines (checked at the end of a run): each node's key-value
//!   state equals a reference model — plain map plus exactly-once sessions —
//!   fed the committed entries up to that node's applied index.
//! - state machine safety: every node commits (and so applies — the core
//!   applies at commit) the same entry at each index.

use std::collections::BTreeMap;

use raftkv_core::{LogIndex, Role, Term};

use crate::cluster::ServedKind;

use crate::cluster::Cluster;

impl Cluster {
    pub(crate) fn check_node(&mut self, i: usize) {
        let Some(raft) = self.nodes[i].raft.as_ref() else {
            return;
        };
        let (id, term, role) = (raft.id(), raft.term(), raft.role());
        let commit = raft.log().commit();
        let seen = self.nodes[i].commit_seen;
        if commit > seen {
            self.check_commits(i, seen, commit);
            self.nodes[i].commit_seen = commit;
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
                }
            }
        }
    }

    /// State machine safety: entries `seen+1..=commit` of node `i` match what
    /// any other node committed at those indexes.
    fn check_commits(&mut self, i: usize, seen: LogIndex, commit: LogIndex) {
        let raft = self.nodes[i].raft.as_ref().expect("up");
        let (id, term) = (raft.id(), raft.term());
        let mut problem = None;
        for k in seen.0 + 1..=commit.0 {
            let Some(e) = raft.log().get(LogIndex(k)) else {
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
                    self.committed.push(e.clone());
                    self.committed_in.push(term);
                }
            }
        }
        if let Some(p) = problem {
            self.fail(p);
        }
    }

    fn check_leader_completeness(&mut self, i: usize) {
        let raft = self.nodes[i].raft.as_ref().expect("up");
        let term = raft.term();
        let missing = self
            .committed
            .iter()
            .zip(&self.committed_in)
            .find(|(c, &t)| t < term && raft.log().get(c.index) != Some(*c))
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
        // The highest index where both logs hold an entry of the same term.
        let mut k = top;
        while k > LogIndex::ZERO && la.term(k) != lb.term(k) {
            k = k.prev();
        }
        let mut j = k;
        while j > LogIndex::ZERO {
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

impl ReferenceKv {
    fn apply(&mut self, e: &raftkv_core::Entry) {
        let raftkv_core::EntryPayload::Command(cmd) = &e.payload else {
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
