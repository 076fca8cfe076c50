//! A tiny in-process cluster with an instant network and instant storage:
//! a smoke test of the core's happy paths. The full fault-injecting
//! simulator lives in `raftkv-sim`.

use std::time::Duration;

use raftkv_core::*;

struct Mini {
    nodes: Vec<RaftNode>,
    now: MonoTime,
    inbox: Vec<Message>,
    writes: Vec<WriteResult>,
    reads: Vec<ReadResult>,
    down: Vec<bool>,
}

impl Mini {
    fn new(n: u64) -> Mini {
        let voters: Vec<NodeId> = (1..=n).map(NodeId).collect();
        let nodes = voters
            .iter()
            .map(|&id| {
                RaftNode::new(
                    Config::new(id, voters.clone()),
                    Restored::default(),
                    MonoTime::ZERO,
                    id.0,
                )
                .unwrap()
            })
            .collect();
        Mini {
            nodes,
            now: MonoTime::ZERO,
            inbox: vec![],
            writes: vec![],
            reads: vec![],
            down: vec![false; n as usize],
        }
    }

    fn drain(&mut self) {
        for _ in 0..1000 {
            for i in 0..self.nodes.len() {
                if self.down[i] {
                    continue;
                }
                let n = &mut self.nodes[i];
                let rd = n.ready();
                if let Some((idx, t)) = rd.persist_mark() {
                    n.on_persisted(self.now, idx, t);
                }
                self.inbox.extend(rd.messages);
                self.inbox.extend(rd.persisted_messages);
                self.writes.extend(rd.write_results);
                self.reads.extend(rd.read_results);
            }
            if self.inbox.is_empty() {
                return;
            }
            for m in std::mem::take(&mut self.inbox) {
                let to = (m.to.0 - 1) as usize;
                if !self.down[to] && !self.down[(m.from.0 - 1) as usize] {
                    self.nodes[to].step(self.now, m);
                }
            }
        }
        panic!("no quiescence");
    }

    fn run(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.now = self.now + Duration::from_millis(5);
            for i in 0..self.nodes.len() {
                if !self.down[i] {
                    self.nodes[i].tick(self.now);
                }
            }
            self.drain();
        }
    }

    fn leader(&self) -> Option<usize> {
        let leaders: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| !self.down[i] && self.nodes[i].role() == Role::Leader)
            .collect();
        assert!(
            leaders.len() <= 1 || self.nodes[leaders[0]].term() != self.nodes[leaders[1]].term()
        );
        leaders.into_iter().max_by_key(|&i| self.nodes[i].term())
    }
}

fn set(client: u64, seq: u64, k: &str, v: &str) -> ClientCommand {
    ClientCommand {
        client_id: ClientId(client),
        seq,
        op: Op::Set {
            key: k.into(),
            value: v.into(),
        },
    }
}

#[test]
fn elects_replicates_and_serves_lease_reads() {
    let mut c = Mini::new(3);
    c.run(Duration::from_secs(3));
    let l = c.leader().expect("a leader is elected");
    let now = c.now;
    c.nodes[l].propose(now, set(1, 1, "k", "v1")).unwrap();
    c.drain();
    c.run(Duration::from_millis(100));
    assert_eq!(c.writes.len(), 1, "{:?}", c.writes);
    assert_eq!(c.writes[0].outcome, Ok(OpResult::Set));
    // Under the lease the read is served at once, with no message.
    let r = c.nodes[l].read(c.now, ReadId(1), "k".into()).unwrap();
    assert_eq!(r, ReadNow::Served(Some("v1".into())));
    assert!(!c.nodes[l].has_ready() || c.nodes[l].ready().messages.is_empty());
    for n in &c.nodes {
        assert_eq!(n.read_stale("k").as_deref(), Some("v1"));
    }
    let st = c.nodes[l].status(c.now);
    assert!(st.lease.holds, "{st:?}");
}

#[test]
fn new_leader_waits_out_old_lease_and_old_leader_loses_it() {
    let mut c = Mini::new(3);
    c.run(Duration::from_secs(3));
    let old = c.leader().unwrap();
    c.down[old] = true;
    let cut = c.now;
    // The old leader's last lease ends at most D after the cut.
    let mut first_leader_at = None;
    for _ in 0..400 {
        c.run(Duration::from_millis(5));
        if let Some(l) = c.leader() {
            if l != old {
                first_leader_at.get_or_insert(c.now);
                let now = c.now;
                if let Ok(ReadNow::Served(_)) = c.nodes[l].read(now, ReadId(9), "x".into()) {
                    let served_after = now.saturating_since(cut);
                    let d = c.nodes[l].config().lease_duration;
                    let e_max = c.nodes[l].config().election_timeout_max;
                    assert!(
                        served_after >= d.mul_f64(0.9),
                        "served {served_after:?} after cut, lease {d:?}"
                    );
                    assert!(
                        served_after <= e_max + d + Duration::from_millis(300),
                        "{served_after:?}"
                    );
                    return;
                }
            }
        }
    }
    panic!("no new leader served a read; first leader at {first_leader_at:?}");
}

#[test]
fn single_node_cluster_commits() {
    let mut c = Mini::new(1);
    c.run(Duration::from_secs(2));
    assert_eq!(c.leader(), Some(0));
    let now = c.now;
    c.nodes[0].propose(now, set(1, 1, "a", "b")).unwrap();
    c.drain();
    c.run(Duration::from_millis(600));
    assert_eq!(c.writes.len(), 1);
    assert_eq!(
        c.nodes[0].read(c.now, ReadId(1), "a".into()),
        Ok(ReadNow::Served(Some("b".into())))
    );
}
