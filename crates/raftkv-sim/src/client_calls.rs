//! What simulated clients do: operations started, requests at nodes (the
//! lease-read view first, as the server's gRPC handlers do; then the
//! server's driver), answers from the driver's waiters, redirects, attempt
//! timeouts, retries, give-ups, and the history for the checker.

use std::time::Duration;

use raftkv_checker::{Input, Operation, Output};
use raftkv_core::{ClientCommand, ClientId, NodeId, Op};
use raftkv_driver::{Accepted, ReadAnswer, Refusal, Request, WriteAnswer};

use crate::client::{ClientHandle, PendingOp, Req, Resp, ServedKind, SimClient, Workload};
use crate::cluster::{Cluster, Ev};
use crate::driver_host::{Answered, SimReply};

/// A refusal a simulated client follows (to the leader it names, or to
/// another node), or one a valid request must never get.
fn redirect_or_fail(
    r: Refusal,
    what: &str,
    answered: impl FnOnce(Resp, Option<ServedKind>, Option<String>),
) {
    match r {
        Refusal::NotLeader { leader, .. } | Refusal::TooStale { leader, .. } => {
            answered(Resp::Redirect(leader), None, None)
        }
        Refusal::Busy(_) | Refusal::RetryLater(_) | Refusal::Conflict(_) => {
            answered(Resp::Redirect(None), None, None)
        }
        // The node stops: no answer, the client times out.
        Refusal::Stopping => {}
        Refusal::Invalid(e) => answered(
            Resp::Redirect(None),
            None,
            Some(format!("client: a valid {what} was refused: {e}")),
        ),
        Refusal::StaleSequence => answered(Resp::Stale, None, None),
    }
}

impl Cluster {
    /// A new client (session ids start at 1). `pinned` keeps it on one node.
    pub fn add_client(&mut self, pinned: Option<NodeId>) -> ClientHandle {
        let pinned = pinned.map(|id| self.position(id).expect("pinned to a node of this cluster"));
        let c = self.clients.len();
        self.clients.push(SimClient {
            id: ClientId(c as u64 + 1),
            next_seq: 1,
            leader_guess: None,
            pinned,
            op: None,
            attempt_counter: 0,
            values_written: 0,
            ops_done: 0,
        });
        ClientHandle(c)
    }

    pub fn client_idle(&self, c: ClientHandle) -> bool {
        self.clients[c.0].op.is_none()
    }

    pub fn clients_idle(&self) -> bool {
        self.clients.iter().all(|c| c.op.is_none())
    }

    /// Start an operation; the client retries it until it completes or the
    /// client gives up.
    pub fn client_call(&mut self, c: ClientHandle, input: Input) {
        let bounded = self.rng.chance_ppm(self.cfg.client.bounded_read_ppm);
        let max_ns = self.cfg.client.max_staleness_max.as_nanos() as u64;
        let bound = bounded.then(|| Duration::from_nanos(self.rng.range(0, max_ns + 1)));
        let cl = &mut self.clients[c.0];
        assert!(
            cl.op.is_none(),
            "client {} already has an operation in flight",
            cl.id
        );
        let req = match &input {
            Input::Get { key } => Req::Read(key.clone(), bound),
            Input::Set { key, value } => Req::Write(ClientCommand {
                client_id: cl.id,
                seq: cl.next_seq,
                op: Op::Set {
                    key: key.clone(),
                    value: value.clone(),
                },
            }),
            Input::Delete { key } => Req::Write(ClientCommand {
                client_id: cl.id,
                seq: cl.next_seq,
                op: Op::Delete { key: key.clone() },
            }),
        };
        if matches!(req, Req::Write(_)) {
            cl.next_seq += 1;
        }
        let id = cl.id;
        self.tr(|| format!("client {id} call {input}"));
        self.clients[c.0].op = Some(PendingOp {
            input,
            req,
            call_ns: self.now_ns,
            attempt: 0,
            node: 0,
        });
        self.send_attempt(c.0);
    }

    /// A unique value for a SET by this client.
    pub fn unique_value(&mut self, c: ClientHandle) -> String {
        let cl = &mut self.clients[c.0];
        cl.values_written += 1;
        format!("c{}v{}", cl.id, cl.values_written)
    }

    /// Idle clients start random operations until [`Cluster::stop_workload`].
    pub fn start_workload(&mut self, w: Workload) {
        self.workload = Some(w);
        for c in 0..self.clients.len() {
            if self.clients[c].op.is_none() {
                self.schedule_in(Duration::ZERO, Ev::ClientThink { client: c });
            }
        }
    }

    pub fn workload_mut(&mut self) -> Option<&mut Workload> {
        self.workload.as_mut()
    }

    /// Clients finish what they are doing and start nothing new.
    pub fn stop_workload(&mut self) {
        self.workload = None;
    }

    fn pick_node(&mut self, c: usize) -> usize {
        let n = self.nodes.len();
        let cl = &self.clients[c];
        if let Some(p) = cl.pinned {
            return p;
        }
        let first_attempt = cl.op.as_ref().is_some_and(|o| o.attempt == 0);
        let read = cl
            .op
            .as_ref()
            .is_some_and(|o| matches!(o.req, Req::Read(..)));
        if first_attempt && read && self.rng.chance_ppm(self.cfg.client.home_read_ppm) {
            return self.home_node(c);
        }
        let cl = &self.clients[c];
        let guess = cl.leader_guess.and_then(|id| self.position(id));
        // Like clients behind a load balancer, a first attempt sometimes
        // goes to any node, whatever the client believes.
        let wander = first_attempt && self.rng.chance_ppm(self.cfg.client.wander_ppm);
        if let (Some(i), false) = (guess, wander) {
            return i;
        }
        let cl = &self.clients[c];
        let retry_from = cl.op.as_ref().filter(|o| o.attempt > 0).map(|o| o.node);
        match retry_from {
            // Somewhere other than the node that just failed us.
            Some(last) if n > 1 => (last + 1 + self.rng.below(n as u64 - 1) as usize) % n,
            _ => self.rng.below(n as u64) as usize,
        }
    }

    /// The node a client reads from when it reads locally: one of the read
    /// lease holders (spread over clients), else a node by client number.
    fn home_node(&self, c: usize) -> usize {
        let holders: Vec<usize> = self
            .cfg
            .read_lease_nodes
            .iter()
            .filter_map(|&id| self.position(id))
            .collect();
        if holders.is_empty() {
            c % self.nodes.len()
        } else {
            holders[c % holders.len()]
        }
    }

    fn send_attempt(&mut self, c: usize) {
        let node = self.pick_node(c);
        self.clients[c].attempt_counter += 1;
        let attempt = self.clients[c].attempt_counter;
        let op = self.clients[c].op.as_mut().expect("an op to attempt");
        op.attempt = attempt;
        op.node = node;
        let req = op.req.clone();
        let latency = self.cfg.client.latency;
        let timeout = self.cfg.client.attempt_timeout;
        self.schedule_in(
            latency,
            Ev::ClientReq {
                node,
                client: c,
                attempt,
                req,
            },
        );
        self.schedule_in(timeout, Ev::ClientTimeout { client: c, attempt });
    }

    pub(crate) fn respond(&mut self, client: usize, attempt: u64, resp: Resp) {
        let latency = self.cfg.client.latency;
        self.schedule_in(
            latency,
            Ev::ClientResp {
                client,
                attempt,
                resp,
            },
        );
    }

    pub(crate) fn on_client_request(&mut self, i: usize, client: usize, attempt: u64, req: Req) {
        let local = self.local_now_at(i);
        if self.nodes[i].raft.is_none() {
            return; // the client times out
        }
        if let Req::Read(key, _) = &req {
            self.next_read_id += 1;
            // Every other read is served as the server's gRPC handlers
            // serve it: from the view the driver published, while the local
            // clock is before its end (the same code: `LeaseReads`).
            if self.next_read_id.is_multiple_of(2) {
                if let Some(v) = self.nodes[i].lease_reads.try_read(local, key) {
                    self.counts.lease_reads_from_view += 1;
                    self.record_served(i, ServedKind::LeaseRead);
                    self.respond(client, attempt, Resp::Value(v));
                    self.end_input(i);
                    return;
                }
            }
        }
        // A node blocked in an in-line fsync takes the request when it
        // returns.
        let stalled = self.nodes[i].stalled_until_ns;
        if self.now_ns < stalled {
            let ev = Ev::ClientReq {
                node: i,
                client,
                attempt,
                req,
            };
            self.schedule(stalled, ev);
            return;
        }
        let outbox = self.answers.clone();
        let answered = move |resp: Resp, served: Option<ServedKind>, wrong: Option<String>| {
            outbox.borrow_mut().push(Answered {
                node: i,
                client,
                attempt,
                resp,
                served,
                wrong,
            })
        };
        let request = match req {
            Req::Write(cmd) => Request::Propose {
                cmd,
                reply: SimReply::new(move |a: WriteAnswer| match a {
                    Ok(_) => answered(Resp::Done, Some(ServedKind::Write), None),
                    Err(Refusal::StaleSequence) => answered(Resp::Stale, None, None),
                    Err(r) => redirect_or_fail(r, "write", answered),
                }),
            },
            Req::Read(key, max_staleness) => Request::Read {
                key,
                max_staleness,
                reply: SimReply::new(move |a: ReadAnswer| match a {
                    // Served at once is a lease read, later a ReadIndex one
                    // (see below); either at a follower, a follower read.
                    Ok(v) if max_staleness.is_some() => {
                        answered(Resp::Value(v), Some(ServedKind::BoundedRead), None)
                    }
                    Ok(v) => answered(Resp::Value(v), Some(ServedKind::ReadIndex), None),
                    Err(r) => redirect_or_fail(r, "read", answered),
                }),
            },
        };
        let accepted = self.drive_undelivered(i, |d, raft, host| d.request(raft, host, request));
        if accepted == Some(Accepted::Served) {
            // Answered by the core from its lease, before the turn's end.
            if let Some(a) = self.answers.borrow_mut().last_mut() {
                if a.served == Some(ServedKind::ReadIndex) {
                    a.served = Some(ServedKind::LeaseRead);
                }
            }
        }
        self.deliver_answers();
        self.end_input(i);
    }

    fn current_attempt(&self, c: usize, attempt: u64) -> bool {
        self.clients[c]
            .op
            .as_ref()
            .is_some_and(|o| o.attempt == attempt)
    }

    pub(crate) fn on_client_response(&mut self, c: usize, attempt: u64, resp: Resp) {
        if !self.current_attempt(c, attempt) {
            return; // the answer to an attempt already given up on
        }
        match resp {
            Resp::Value(v) => self.finish(c, Output::Value(v)),
            Resp::Done => self.finish(c, Output::Ok),
            Resp::Redirect(hint) => {
                let tried = self.clients[c].op.as_ref().map(|o| o.node);
                let hint_new = hint
                    .and_then(|h| self.position(h))
                    .filter(|&h| Some(h) != tried);
                self.clients[c].leader_guess = hint_new.map(|h| self.nodes[h].id);
                let wait = if hint_new.is_some() {
                    Duration::ZERO
                } else {
                    self.cfg.client.retry_backoff
                };
                self.schedule_in(wait, Ev::ClientRetry { client: c, attempt });
            }
            Resp::Stale => {
                let id = self.clients[c].id;
                self.fail(format!(
                    "session: client {id}'s current write was answered StaleSequence"
                ));
            }
        }
    }

    pub(crate) fn on_client_timeout(&mut self, c: usize, attempt: u64) {
        if !self.current_attempt(c, attempt) {
            return;
        }
        let op = self.clients[c].op.as_ref().expect("current");
        let waited = Duration::from_nanos(self.now_ns - op.call_ns);
        if self.cfg.client.give_up_after.is_some_and(|g| waited >= g) {
            return self.give_up(c);
        }
        self.clients[c].leader_guess = None;
        self.send_attempt(c);
    }

    pub(crate) fn on_client_retry(&mut self, c: usize, attempt: u64) {
        if self.current_attempt(c, attempt) {
            self.send_attempt(c);
        }
    }

    pub(crate) fn on_client_think(&mut self, c: usize) {
        let Some(w) = self.workload.as_ref() else {
            return;
        };
        if self.clients[c].op.is_some() {
            return;
        }
        let key = self.rng.pick(&w.keys).clone();
        let (get, del) = (w.get_ppm, w.delete_ppm);
        let roll = self.rng.below(1_000_000) as u32;
        let input = if roll < get {
            Input::Get { key }
        } else if roll < get + del {
            Input::Delete { key }
        } else {
            let value = self.unique_value(crate::ClientHandle(c));
            Input::Set { key, value }
        };
        self.client_call(crate::ClientHandle(c), input);
    }

    fn finish(&mut self, c: usize, output: Output) {
        let op = self.clients[c].op.take().expect("finishing an op");
        let node = self.nodes[op.node].id;
        self.clients[c].leader_guess = Some(node);
        self.clients[c].ops_done += 1;
        let id = self.clients[c].id;
        self.tr(|| format!("client {id} return {} -> {output} (from n{node})", op.input));
        let hid = self.history.len() as u64;
        let operation = match (op.req, op.input, output) {
            // Checked as what it promises (see the checker).
            (Req::Read(key, Some(bound)), _, Output::Value(v)) => Operation::bounded_read(
                hid,
                id.0,
                key,
                v,
                op.call_ns,
                self.now_ns,
                bound.as_nanos() as u64,
            ),
            (_, input, output) => Operation {
                id: hid,
                client: id.0,
                input,
                output,
                call_ns: op.call_ns,
                return_ns: self.now_ns,
            },
        };
        self.history.push(operation);
        self.think(c);
    }

    /// Abandon the op: a write's outcome is unknown; a read had no effect.
    fn give_up(&mut self, c: usize) {
        let op = self.clients[c].op.take().expect("giving up an op");
        let id = self.clients[c].id;
        self.tr(|| format!("client {id} gave up on {}", op.input));
        self.record_unknown(id, op);
        self.think(c);
    }

    fn record_unknown(&mut self, id: ClientId, op: PendingOp) {
        if matches!(op.req, Req::Write(_)) {
            self.history.push(Operation {
                id: self.history.len() as u64,
                client: id.0,
                input: op.input,
                output: Output::Unknown,
                call_ns: op.call_ns,
                return_ns: u64::MAX,
            });
        }
    }

    fn think(&mut self, c: usize) {
        if let Some(w) = self.workload.as_ref() {
            let (lo, hi) = (w.think_min.as_nanos() as u64, w.think_max.as_nanos() as u64);
            let d = Duration::from_nanos(self.rng.range(lo, hi));
            self.schedule_in(d, Ev::ClientThink { client: c });
        }
    }

    /// The history so far. Operations still in flight are not in it; see
    /// [`Cluster::finish_history`].
    pub fn history(&self) -> &[Operation] {
        &self.history
    }

    /// End the run for the clients: writes still in flight become unknown.
    pub fn finish_history(&mut self) -> &[Operation] {
        for c in 0..self.clients.len() {
            if let Some(op) = self.clients[c].op.take() {
                let id = self.clients[c].id;
                self.record_unknown(id, op);
            }
        }
        &self.history
    }

    /// Check the history with the linearizability checker.
    pub fn check_history(&self) -> raftkv_checker::Verdict {
        raftkv_checker::check(&self.history, raftkv_checker::Budget::default())
    }

    pub fn clients_ops_done(&self) -> u64 {
        self.clients.iter().map(|c| c.ops_done).sum()
    }
}
