//! `InstantCluster`: several nodes in one process with an instant, lossless
//! network and instant storage. It is the smallest possible driver of the
//! core, used by the core's smoke tests and its throughput benchmark. The
//! fault-injecting simulator lives in `raftkv-sim`. [`script`] is the
//! transcript format of the core's per-input tests (`tests/transcripts.rs`).
//!
//! Compiled only with the `testkit` feature: dependents enable it in their
//! `[dev-dependencies]`.

pub mod script;

use std::time::Duration;

use crate::api::{ConfChangeResult, ReadResult, Ready, Role, WriteResult};
use crate::config::Config;
use crate::message::Message;
use crate::node::{RaftNode, Restored};
use crate::snapshot::{Snapshot, SnapshotOrigin};
use crate::types::{ClientCommand, ClientId, MonoTime, NodeId, Op};

pub struct InstantCluster {
    pub nodes: Vec<RaftNode>,
    pub now: MonoTime,
    /// Nodes that are down neither tick nor receive.
    pub down: Vec<bool>,
    pub writes: Vec<WriteResult>,
    pub reads: Vec<ReadResult>,
    pub conf_results: Vec<ConfChangeResult>,
    /// The latest snapshot each node saved.
    pub snapshots: Vec<Option<Snapshot>>,
    /// Messages delivered so far, for tests that count traffic.
    pub delivered: u64,
    inbox: Vec<Message>,
}

impl InstantCluster {
    /// `n` nodes with ids 1..=n and default timing.
    pub fn new(n: u64) -> InstantCluster {
        Self::with_config(n, |_| {})
    }

    /// `n` nodes with ids 1..=n, each config adjusted by `tweak`.
    pub fn with_config(n: u64, tweak: impl Fn(&mut Config)) -> InstantCluster {
        let voters: Vec<NodeId> = (1..=n).map(NodeId).collect();
        let nodes = voters
            .iter()
            .map(|&id| {
                let mut cfg = Config::new(id, voters.clone());
                tweak(&mut cfg);
                RaftNode::new(cfg, Restored::default(), MonoTime::ZERO, id.0).expect("valid config")
            })
            .collect();
        InstantCluster {
            nodes,
            now: MonoTime::ZERO,
            down: vec![false; n as usize],
            writes: Vec::new(),
            reads: Vec::new(),
            conf_results: Vec::new(),
            snapshots: vec![None; n as usize],
            delivered: 0,
            inbox: Vec::new(),
        }
    }

    /// Start node `id` (the next id) in join mode: no bootstrap voters, it
    /// waits for a leader to add it.
    pub fn add_joining_node(&mut self, tweak: impl Fn(&mut Config)) -> usize {
        let id = NodeId(self.nodes.len() as u64 + 1);
        let mut cfg = Config::new(id, Vec::new());
        tweak(&mut cfg);
        let node = RaftNode::new(cfg, Restored::default(), self.now, id.0).expect("valid config");
        self.nodes.push(node);
        self.down.push(false);
        self.snapshots.push(None);
        self.nodes.len() - 1
    }

    fn index(id: NodeId) -> usize {
        (id.0 - 1) as usize
    }

    fn collect(&mut self, i: usize, rd: Ready) {
        for w in &rd.snapshots {
            self.snapshots[i] = Some(w.snapshot.clone());
            if w.origin == SnapshotOrigin::Compaction {
                self.nodes[i].on_snapshot_saved(self.now, w.snapshot.meta.index);
            }
        }
        if let Some((index, term)) = rd.persist_mark() {
            self.nodes[i].on_persisted(self.now, index, term);
        }
        self.inbox.extend(rd.messages);
        self.inbox.extend(rd.persisted_messages);
        self.writes.extend(rd.write_results);
        self.reads.extend(rd.read_results);
        self.conf_results.extend(rd.conf_change_results);
    }

    /// Deliver messages until none are left (at the current instant).
    pub fn drain(&mut self) {
        for _round in 0..100_000 {
            for i in 0..self.nodes.len() {
                if !self.down[i] && self.nodes[i].has_ready() {
                    let rd = self.nodes[i].ready();
                    self.collect(i, rd);
                }
            }
            if self.inbox.is_empty() {
                return;
            }
            for m in std::mem::take(&mut self.inbox) {
                let (to, from) = (Self::index(m.to), Self::index(m.from));
                if to < self.nodes.len() && !self.down[to] && !self.down[from] {
                    self.delivered += 1;
                    self.nodes[to].step(self.now, m);
                }
            }
        }
        panic!("the cluster never went quiet");
    }

    /// Advance time to `now`, ticking every node, then drain.
    pub fn tick_to(&mut self, now: MonoTime) {
        self.now = self.now.max(now);
        for i in 0..self.nodes.len() {
            if !self.down[i] {
                self.nodes[i].tick(self.now);
            }
        }
        self.drain();
    }

    /// Run for `d` in 5 ms steps.
    pub fn run(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.tick_to(self.now + Duration::from_millis(5));
        }
    }

    /// The up node that leads in the highest term, if any.
    pub fn leader(&self) -> Option<usize> {
        (0..self.nodes.len())
            .filter(|&i| !self.down[i] && self.nodes[i].role() == Role::Leader)
            .max_by_key(|&i| self.nodes[i].term())
    }
}

/// `SET key value` as the `seq`-th command of client session `client`.
pub fn set_cmd(client: u64, seq: u64, key: &str, value: &str) -> ClientCommand {
    ClientCommand {
        client_id: ClientId(client),
        seq,
        op: Op::Set {
            key: key.into(),
            value: value.into(),
        },
    }
}

impl InstantCluster {
    /// Runs (up to 6 s) until one node leads and holds its lease; its index.
    pub fn leader_with_lease(&mut self) -> usize {
        for _ in 0..600 {
            if let Some(l) = self.leader() {
                if self.nodes[l].status(self.now).lease.holds {
                    return l;
                }
            }
            self.run(Duration::from_millis(10));
        }
        panic!("no leader with a lease");
    }
}
