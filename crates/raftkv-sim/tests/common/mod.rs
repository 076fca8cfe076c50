//! Helpers shared by the scenario tests.
#![allow(dead_code)]

use std::time::Duration;

use raftkv_checker::{Input, Verdict};
use raftkv_core::{ClientCommand, ClientId, Entry, EntryPayload, LogIndex, NodeId, Op};
use raftkv_sim::{ClientHandle, Cluster, ClusterConfig};

pub fn n(id: u64) -> NodeId {
    NodeId(id)
}

pub fn ms(x: u64) -> Duration {
    Duration::from_millis(x)
}

/// A cluster of `nodes` with exact clocks and a reliable network, recording
/// its trace (printed when an invariant breaks).
pub fn cluster(nodes: usize, seed: u64) -> Cluster {
    let mut cfg = ClusterConfig::new(nodes, seed);
    cfg.trace = true;
    Cluster::new(cfg)
}

/// The last `lines` lines of the trace, without message deliveries.
pub fn transcript_tail(c: &Cluster, lines: usize) -> String {
    let events: Vec<&String> = c
        .trace()
        .iter()
        .filter(|l| !l.contains(" deliver ") && !l.contains(" drop ("))
        .collect();
    let from = events.len().saturating_sub(lines);
    events[from..]
        .iter()
        .map(|l| l.as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Run until some running node leads; returns it.
pub fn wait_leader(c: &mut Cluster, limit: Duration) -> NodeId {
    assert!(
        c.run_until(limit, |c| c.leader().is_some()),
        "no leader within {limit:?}"
    );
    c.leader().unwrap()
}

/// Run until a leader has committed its no-op (it can take commands).
pub fn wait_stable_leader(c: &mut Cluster, limit: Duration) -> NodeId {
    let ok = c.run_until(limit, |c| {
        c.leader()
            .and_then(|l| c.raft(l))
            .is_some_and(|r| r.log().term(r.log().commit()) == Some(r.term()))
    });
    assert!(ok, "no leader with a committed no-op within {limit:?}");
    c.leader().unwrap()
}

pub fn cmd(value: &str) -> ClientCommand {
    ClientCommand {
        client_id: ClientId(0),
        seq: 0,
        op: Op::Set {
            key: "x".into(),
            value: value.into(),
        },
    }
}

fn carries(e: &Entry, value: &str) -> bool {
    matches!(&e.payload, EntryPayload::Command(c) if matches!(&c.op, Op::Set { value: v, .. } if v == value))
}

/// The 6.824 `one()`: submit `value` at whoever leads until `expected`
/// nodes have committed it; returns its index. Panics after 10 s.
pub fn one(c: &mut Cluster, value: &str, expected: usize) -> LogIndex {
    let deadline = c.now() + Duration::from_secs(10);
    while c.now() < deadline {
        if let Some(l) = c.leader() {
            if let Ok(index) = c.propose_at(l, cmd(value)) {
                let until = c.now() + Duration::from_secs(2);
                while c.now() < until {
                    let count = committed_with(c, index, value);
                    if count >= expected {
                        return index;
                    }
                    c.run_for(ms(10));
                }
            }
        }
        c.run_for(ms(50));
        assert_safe(c);
    }
    panic!(
        "one({value}) failed to reach agreement on {expected} nodes\ntranscript tail:\n{}",
        transcript_tail(c, 80)
    );
}

/// How many nodes committed an entry carrying `value` at `index`.
pub fn committed_with(c: &Cluster, index: LogIndex, value: &str) -> usize {
    c.node_ids()
        .into_iter()
        .filter(|&id| {
            c.committed_entry(id, index)
                .is_some_and(|e| carries(&e, value))
        })
        .count()
}

/// How many nodes committed index `index`, and whether they agree.
pub fn n_committed(c: &Cluster, index: LogIndex) -> usize {
    let entries: Vec<Entry> = c
        .node_ids()
        .into_iter()
        .filter_map(|id| c.committed_entry(id, index))
        .collect();
    for w in entries.windows(2) {
        assert_eq!(w[0], w[1], "nodes disagree at committed index {index}");
    }
    entries.len()
}

pub fn assert_safe(c: &Cluster) {
    if let Some(v) = c.violation() {
        panic!(
            "invariant violated: {v}\ntranscript tail:\n{}",
            transcript_tail(c, 80)
        );
    }
}

pub fn assert_linearizable(c: &mut Cluster) {
    assert_safe(c);
    c.finish_history();
    match c.check_history() {
        Verdict::Linearizable => {}
        v => panic!(
            "history not linearizable: {v:?}\ntranscript tail:\n{}",
            transcript_tail(c, 80)
        ),
    }
}

/// Run one client operation to completion (panics after `limit`).
pub fn call(c: &mut Cluster, client: ClientHandle, input: Input, limit: Duration) {
    c.client_call(client, input);
    assert!(
        c.run_until(limit, |c| c.client_idle(client)),
        "client op did not finish within {limit:?}"
    );
}

pub fn set(key: &str, value: &str) -> Input {
    Input::Set {
        key: key.into(),
        value: value.into(),
    }
}

pub fn get(key: &str) -> Input {
    Input::Get { key: key.into() }
}

/// 6.824-style connectivity: a disconnected node talks to nobody; clients
/// still reach it. Applies the whole picture at once.
pub fn apply_connectivity(c: &mut Cluster, connected: &[bool]) {
    c.heal();
    for (i, &up) in connected.iter().enumerate() {
        if !up {
            c.isolate(n(i as u64 + 1));
        }
    }
}

/// The leaders among `ids` (running, believing they lead), with terms.
pub fn leaders_among(c: &Cluster, ids: &[NodeId]) -> Vec<NodeId> {
    c.leaders()
        .into_iter()
        .filter(|(id, _)| ids.contains(id))
        .map(|(id, _)| id)
        .collect()
}

/// Run until exactly one node among `ids` leads in the highest term seen
/// among them; 6.824's `checkOneLeader`.
pub fn check_one_leader(c: &mut Cluster, ids: &[NodeId]) -> NodeId {
    let ids = ids.to_vec();
    let ok = c.run_until(Duration::from_secs(5), |c| {
        let top = ids
            .iter()
            .filter_map(|&i| c.raft(i))
            .map(|r| r.term())
            .max();
        let ls: Vec<_> = c
            .leaders()
            .into_iter()
            .filter(|(id, t)| ids.contains(id) && Some(*t) == top)
            .collect();
        ls.len() == 1
    });
    assert!(
        ok,
        "expected one leader among {ids:?}, have {:?}",
        c.leaders()
    );
    let top = ids
        .iter()
        .filter_map(|&i| c.raft(i))
        .map(|r| r.term())
        .max();
    c.leaders()
        .into_iter()
        .find(|(id, t)| ids.contains(id) && Some(*t) == top)
        .unwrap()
        .0
}

pub fn ids(list: &[u64]) -> Vec<NodeId> {
    list.iter().map(|&i| NodeId(i)).collect()
}

pub fn all_ids(c: &Cluster) -> Vec<NodeId> {
    c.node_ids()
}

/// `check_one_leader` over the whole cluster.
pub fn one_leader(c: &mut Cluster) -> NodeId {
    let all = c.node_ids();
    check_one_leader(c, &all)
}
