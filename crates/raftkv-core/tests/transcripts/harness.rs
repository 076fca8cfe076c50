//! The driver behind the transcripts: nodes in one process on one clock,
//! storage that is durable at once, and a network that delivers only when
//! told to (`stabilize`, `deliver-msgs`) and drops what a partition cuts. It
//! uses nothing but `RaftNode`'s public inputs and outputs.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::Duration;

use raftkv_core::testkit::script::Command;
use raftkv_core::*;

use super::print;

/// Steps of `campaign`: the clock moves by this until the node's election
/// timer fires.
const CAMPAIGN_STEP: Duration = Duration::from_millis(1);
/// Rounds of `stabilize` before it gives up (a livelock is a finding).
const STABILIZE_ROUNDS_MAX: usize = 1000;

#[derive(Default)]
pub struct Harness {
    nodes: BTreeMap<NodeId, RaftNode>,
    now: MonoTime,
    /// Sent and not yet delivered, in the order sent.
    in_flight: Vec<Message>,
    /// Groups that hear only each other; empty when healed.
    partition: Vec<BTreeSet<NodeId>>,
    /// The last sequence number of each client session.
    seqs: BTreeMap<u64, u64>,
    reads: u64,
}

type Outcome = Result<String, String>;

impl Harness {
    pub fn run(&mut self, cmd: &Command) -> String {
        match self.exec(cmd) {
            Ok(out) => out,
            Err(e) => format!("error: {e}"),
        }
    }

    fn exec(&mut self, cmd: &Command) -> Outcome {
        let a = &cmd.args;
        match cmd.name.as_str() {
            "add-nodes" => self.add_nodes(a),
            "advance" => self.advance(a),
            "campaign" => self.campaign(id(a, 0)?),
            "stabilize" => Ok(self.stabilize(&ids(a)?)),
            "process-ready" => Ok(self.process_ready(&ids(a)?)),
            "deliver-msgs" => Ok(self.deliver(&ids(a)?)),
            "propose" => self.propose(a),
            "read" => self.read(a),
            "transfer" => {
                let (from, to) = (id(a, 0)?, id(a, 1)?);
                let now = self.now;
                self.node(from)?
                    .transfer_leadership(now, to)
                    .map_err(|e| e.to_string())?;
                Ok("ok".into())
            }
            "add-learner" => {
                let (id, addr) = (id(a, 1)?, format!("n{}:7000", arg(a, 1)?));
                self.conf_change(a, ConfChange::AddLearner { id, addr })
            }
            "promote" => self.conf_change(a, ConfChange::Promote { id: id(a, 1)? }),
            "remove" => self.conf_change(a, ConfChange::Remove { id: id(a, 1)? }),
            "partition" => self.cut(a),
            "heal" => {
                self.partition.clear();
                Ok("ok".into())
            }
            "status" => {
                let now = self.now;
                Ok(print::status(&self.node(id(a, 0)?)?.status(now)))
            }
            "log" => self.log(id(a, 0)?),
            other => Err(format!("unknown command {other}")),
        }
    }

    fn node(&mut self, id: NodeId) -> Result<&mut RaftNode, String> {
        self.nodes
            .get_mut(&id)
            .ok_or_else(|| format!("no node {id}"))
    }

    /// `add-nodes N [join] [lease-reads=false]`: nodes with the next N ids;
    /// they boot as the voters of a new cluster, or with `join` wait for a
    /// leader to add them. Each node's seed is its id.
    fn add_nodes(&mut self, a: &[String]) -> Outcome {
        let n: u64 = arg(a, 0)?.parse().map_err(|_| "add-nodes N")?;
        let join = a.iter().any(|w| w == "join");
        let lease_reads = !a.iter().any(|w| w == "lease-reads=false");
        let first = self.nodes.keys().last().map_or(1, |l| l.0 + 1);
        let new: Vec<NodeId> = (first..first + n).map(NodeId).collect();
        let mut out = String::new();
        for &id in &new {
            let mut cfg = Config::new(id, if join { Vec::new() } else { new.clone() });
            cfg.lease_reads = lease_reads;
            let node = RaftNode::new(cfg, Restored::default(), self.now, id.0)
                .map_err(|e| e.to_string())?;
            let _ = writeln!(
                out,
                "{id}: {} in term {}, {}",
                node.role(),
                node.term(),
                node.membership()
            );
            self.nodes.insert(id, node);
        }
        Ok(out)
    }

    /// `advance DURATION [only=1,2]`: the clock moves on; every node (or
    /// those listed) sees it in one tick.
    fn advance(&mut self, a: &[String]) -> Outcome {
        let d = duration(arg(a, 0)?)?;
        let only = a.iter().find_map(|w| w.strip_prefix("only="));
        let which: Vec<NodeId> = match only {
            Some(list) => list.split(',').map(parse_id).collect::<Result<_, _>>()?,
            None => self.nodes.keys().copied().collect(),
        };
        self.now = self.now + d;
        for id in which {
            let now = self.now;
            self.node(id)?.tick(now);
        }
        Ok(format!("now {}", self.now))
    }

    /// `campaign ID`: the clock moves on, ticking only that node, until its
    /// election timer fires (the others are ticked by the next `advance`).
    fn campaign(&mut self, id: NodeId) -> Outcome {
        let start = self.now;
        let timeout_max = self.node(id)?.config().election_timeout_max;
        while self.node(id)?.role() == Role::Follower {
            if self.now.saturating_since(start) > timeout_max {
                return Err(format!("node {id} did not campaign within {timeout_max:?}"));
            }
            self.now = self.now + CAMPAIGN_STEP;
            let now = self.now;
            self.node(id)?.tick(now);
        }
        Ok(format!("node {id} timed out at {}", self.now))
    }

    /// The nodes named, or every node when none is.
    fn pick(&self, which: &[NodeId]) -> Vec<NodeId> {
        if which.is_empty() {
            self.nodes.keys().copied().collect()
        } else {
            which.to_vec()
        }
    }

    /// `process-ready [IDS]`: each node's Ready, handled as an instant
    /// driver would: persist everything, report it, send everything.
    fn process_ready(&mut self, which: &[NodeId]) -> String {
        let mut out = String::new();
        for id in self.pick(which) {
            let Some(n) = self.nodes.get_mut(&id) else {
                let _ = writeln!(out, "error: no node {id}");
                continue;
            };
            if !n.has_ready() {
                continue;
            }
            let rd = n.ready();
            out.push_str(&print::ready(id, &rd));
            for w in &rd.snapshots {
                if w.origin == SnapshotOrigin::Compaction {
                    n.on_snapshot_saved(self.now, w.snapshot.meta.index);
                }
            }
            if let Some((index, term)) = rd.persist_mark() {
                n.on_persisted(self.now, index, term);
            }
            self.in_flight.extend(rd.messages);
            self.in_flight.extend(rd.persisted_messages);
        }
        out
    }

    fn connected(&self, a: NodeId, b: NodeId) -> bool {
        self.partition.is_empty()
            || self
                .partition
                .iter()
                .any(|g| g.contains(&a) && g.contains(&b))
    }

    /// `deliver-msgs [IDS]`: messages in flight to those nodes, in the
    /// order sent; a partition drops (and names) what it cuts.
    fn deliver(&mut self, which: &[NodeId]) -> String {
        let mut out = String::new();
        for id in self.pick(which) {
            let (mine, rest): (Vec<Message>, Vec<Message>) = std::mem::take(&mut self.in_flight)
                .into_iter()
                .partition(|m| m.to == id);
            self.in_flight = rest;
            if mine.is_empty() {
                continue;
            }
            let _ = writeln!(out, "> {id} receiving messages");
            for m in mine {
                if !self.connected(m.from, m.to) {
                    let _ = writeln!(out, "  {} (dropped: partition)", print::message(&m));
                    continue;
                }
                let _ = writeln!(out, "  {}", print::message(&m));
                let now = self.now;
                match self.nodes.get_mut(&id) {
                    Some(n) => n.step(now, m),
                    None => {
                        let _ = writeln!(out, "  (dropped: no node {id})");
                    }
                }
            }
        }
        out
    }

    /// `stabilize [IDS]`: Readies and deliveries in turn until nothing is
    /// left to do (at the current instant).
    fn stabilize(&mut self, which: &[NodeId]) -> String {
        let mut out = String::new();
        for _ in 0..STABILIZE_ROUNDS_MAX {
            let ready = self.process_ready(which);
            let delivered = self.deliver(which);
            if ready.is_empty() && delivered.is_empty() {
                return out;
            }
            out.push_str(&ready);
            out.push_str(&delivered);
        }
        out.push_str("error: still busy after the round limit\n");
        out
    }

    /// `propose ID SET key value | DEL key [client=N]`: the next command of
    /// the client's session (client 1 unless named).
    fn propose(&mut self, a: &[String]) -> Outcome {
        let id = id(a, 0)?;
        let client = a
            .iter()
            .find_map(|w| w.strip_prefix("client="))
            .map_or(Ok(1), str::parse)
            .map_err(|_| "client=N")?;
        let op = match (arg(a, 1)?, a.get(2), a.get(3)) {
            ("SET", Some(key), Some(value)) => Op::Set {
                key: key.clone(),
                value: value.clone(),
            },
            ("DEL", Some(key), _) => Op::Delete { key: key.clone() },
            _ => return Err("propose ID SET key value | DEL key".into()),
        };
        let seq = self.seqs.entry(client).or_default();
        *seq += 1;
        let cmd = ClientCommand {
            client_id: ClientId(client),
            seq: *seq,
            op,
        };
        let now = self.now;
        let index = self
            .node(id)?
            .propose(now, cmd)
            .map_err(|e| e.to_string())?;
        Ok(format!("index {index}"))
    }

    /// `read ID key`: a linearizable read, numbered in order.
    fn read(&mut self, a: &[String]) -> Outcome {
        let (id, key) = (id(a, 0)?, arg(a, 1)?.to_string());
        self.reads += 1;
        let rid = ReadId(self.reads);
        let now = self.now;
        match self
            .node(id)?
            .read(now, rid, key)
            .map_err(|e| e.to_string())?
        {
            ReadNow::Served(v) => Ok(format!("read {}: served {}", rid.0, print::value(&v))),
            ReadNow::Pending => Ok(format!("read {}: pending", rid.0)),
        }
    }

    /// `add-learner|promote|remove LEADER ID`.
    fn conf_change(&mut self, a: &[String], change: ConfChange) -> Outcome {
        let leader = id(a, 0)?;
        let now = self.now;
        let index = self
            .node(leader)?
            .propose_conf_change(now, change)
            .map_err(|e| e.to_string())?;
        Ok(format!("index {index}"))
    }

    /// `partition 1 / 2 3`: groups separated by `/`.
    fn cut(&mut self, a: &[String]) -> Outcome {
        let mut groups = vec![BTreeSet::new()];
        for w in a {
            if w == "/" {
                groups.push(BTreeSet::new());
            } else {
                groups.last_mut().expect("one group").insert(parse_id(w)?);
            }
        }
        self.partition = groups;
        Ok("ok".into())
    }

    /// `log ID`: the entries held in memory, and the commit index.
    fn log(&mut self, id: NodeId) -> Outcome {
        let n = self.node(id)?;
        let log = n.log();
        let mut out = String::new();
        let mut i = log.first_index();
        while i <= log.last_index() {
            match log.get(i) {
                Some(e) => {
                    let _ = writeln!(out, "{}", print::entry(e));
                }
                None => {
                    let _ = writeln!(out, "{i}: (not held)");
                }
            }
            i = i.next();
        }
        let _ = writeln!(
            out,
            "commit {} applied {}",
            n.commit_index(),
            n.applied_index()
        );
        Ok(out)
    }
}

fn arg(a: &[String], i: usize) -> Result<&str, String> {
    a.get(i)
        .map(String::as_str)
        .ok_or_else(|| format!("argument {} missing", i + 1))
}

fn parse_id(w: &str) -> Result<NodeId, String> {
    w.parse()
        .map(NodeId)
        .map_err(|_| format!("{w} is not a node id"))
}

fn id(a: &[String], i: usize) -> Result<NodeId, String> {
    parse_id(arg(a, i)?)
}

fn ids(a: &[String]) -> Result<Vec<NodeId>, String> {
    a.iter().map(|w| parse_id(w)).collect()
}

/// `250ms`, `2s`.
fn duration(w: &str) -> Result<Duration, String> {
    let bad = || format!("{w} is not a duration like 250ms or 2s");
    if let Some(ms) = w.strip_suffix("ms") {
        return ms.parse().map(Duration::from_millis).map_err(|_| bad());
    }
    if let Some(s) = w.strip_suffix('s') {
        return s.parse().map(Duration::from_secs).map_err(|_| bad());
    }
    Err(bad())
}
