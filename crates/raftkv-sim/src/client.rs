//! Simulated clients: what they ask and are answered, their workload, and
//! each one's state (session, current operation, leader guess). What they
//! do with it (requests at nodes, answers, retries, the history) is in
//! `client_calls.rs`.

use std::time::Duration;

use raftkv_checker::Input;
use raftkv_core::{ClientCommand, ClientId, NodeId, Term};

/// What a client asks one node.
#[derive(Clone, Debug)]
pub(crate) enum Req {
    Write(ClientCommand),
    /// A GET: linearizable, or with a bound a bounded-staleness read.
    Read(String, Option<Duration>),
}

/// What a node answers.
#[derive(Clone, Debug)]
pub(crate) enum Resp {
    Value(Option<String>),
    Done,
    /// Not the leader (or lost leadership): try elsewhere.
    Redirect(Option<NodeId>),
    /// The write's session sequence number was already passed.
    Stale,
}

/// A random mix of operations that idle clients keep issuing.
#[derive(Clone, Debug)]
pub struct Workload {
    pub keys: Vec<String>,
    pub think_min: Duration,
    pub think_max: Duration,
    /// Share of GETs and DELETEs, in parts per million; the rest are SETs.
    pub get_ppm: u32,
    pub delete_ppm: u32,
}

impl Workload {
    pub fn small(keys: usize) -> Workload {
        Workload {
            keys: (0..keys).map(|k| format!("k{k}")).collect(),
            think_min: Duration::from_millis(5),
            think_max: Duration::from_millis(120),
            get_ppm: 450_000,
            delete_ppm: 80_000,
        }
    }
}

#[derive(Debug)]
pub(crate) struct PendingOp {
    pub(crate) input: Input,
    pub(crate) req: Req,
    pub(crate) call_ns: u64,
    pub(crate) attempt: u64,
    pub(crate) node: usize,
}

#[derive(Debug)]
pub(crate) struct SimClient {
    pub(crate) id: ClientId,
    pub(crate) next_seq: u64,
    pub(crate) leader_guess: Option<NodeId>,
    /// Only ever talk to this node (tests that probe one node).
    pub(crate) pinned: Option<usize>,
    pub(crate) op: Option<PendingOp>,
    pub(crate) attempt_counter: u64,
    pub(crate) values_written: u64,
    pub(crate) ops_done: u64,
}

/// A client handle, as returned by [`Cluster::add_client`](crate::Cluster::add_client).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ClientHandle(pub usize);

/// A successful answer a node gave a client: a read served or a write
/// acknowledged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Served {
    pub real_ns: u64,
    pub node: NodeId,
    pub term: Term,
    pub what: ServedKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServedKind {
    /// Read answered from the lease at once.
    LeaseRead,
    /// Read answered after a ReadIndex round or the new leader's wait.
    ReadIndex,
    /// Read answered by a node that does not lead: under a follower read
    /// lease, or (bounded-staleness reads) from a freshness proof.
    FollowerRead,
    /// A bounded-staleness read, wherever served (never in
    /// [`Cluster::served`](crate::Cluster::served): it promises no order
    /// with leases).
    BoundedRead,
    Write,
}
