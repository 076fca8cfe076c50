//! Outgoing peer messages: per peer, two sender tasks (lanes), each with its
//! own TCP connection ([`crate::peer_wire`]), a bounded queue, a time-out and
//! reconnect back-off: the main lane for Raft messages, and one for
//! `InstallSnapshot` chunks so heartbeats never queue behind them. Peers
//! follow the configuration in force: see [`Transport::set_membership`] and
//! [`AddressBook`]. A full queue drops the message (counted): Raft retransmits, and
//! a stale message is worth less than a fresh one.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use raftkv_client::pb;
use raftkv_core::{Membership, Message, MessageBody, NodeId, Term};
use raftkv_storage::{DumpLevel, DumpLog};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::convert::message_to_pb;
use crate::metrics::{bump, Metrics};
use crate::peer_wire::{encode_frame, PEER_MAGIC};

/// The least time-out of one snapshot batch (up to `max_batch_bytes` of
/// chunks) on the snapshot lane.
const SNAPSHOT_RPC_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone, Debug)]
pub struct TransportOptions {
    pub cluster_id: String,
    pub self_id: NodeId,
    /// This node's address as the others reach it (sent in every batch).
    pub advertise: String,
    /// Messages waiting for one peer; beyond this they are dropped.
    pub queue_len: usize,
    /// One batch's time-out; a paused peer costs this much per attempt.
    pub rpc_timeout: Duration,
    pub connect_timeout: Duration,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    pub max_batch_messages: usize,
    pub max_batch_bytes: usize,
    /// This node's zone (empty: none), told to peers in every batch.
    pub zone: String,
}

/// Where each other node can be reached. Three sources, by priority: the
/// configuration in force (`Membership::addrs`, for nodes added at run
/// time), the `--peers` flags (bootstrap nodes), and addresses learned from
/// incoming batches (`PeerBatch.from_addr`, so a joining node can answer a
/// leader it has never heard of).
#[derive(Debug, Default)]
pub struct AddressBook {
    inner: RwLock<Book>,
}

#[derive(Debug, Default)]
struct Book {
    membership: BTreeMap<NodeId, String>,
    flags: BTreeMap<NodeId, String>,
    learned: BTreeMap<NodeId, String>,
    /// Peers' zones, as their batches say (`PeerBatch.from_zone`).
    zones: BTreeMap<NodeId, String>,
}

impl AddressBook {
    pub fn new(flags: BTreeMap<NodeId, String>) -> AddressBook {
        AddressBook {
            inner: RwLock::new(Book {
                flags,
                ..Book::default()
            }),
        }
    }

    pub fn get(&self, id: NodeId) -> Option<String> {
        let book = self.inner.read().expect("poisoned");
        book.membership
            .get(&id)
            .or_else(|| book.flags.get(&id))
            .or_else(|| book.learned.get(&id))
            .cloned()
    }

    /// Every address known, by id.
    pub fn all(&self) -> BTreeMap<NodeId, String> {
        let book = self.inner.read().expect("poisoned");
        let mut all = book.learned.clone();
        all.extend(book.flags.clone());
        all.extend(book.membership.clone());
        all
    }

    pub fn set_membership(&self, addrs: &BTreeMap<NodeId, String>) {
        self.inner.write().expect("poisoned").membership = addrs.clone();
    }

    /// Remembers the address a sender advertised, unless one is known.
    pub fn learn(&self, id: NodeId, addr: &str) {
        if self.get(id).is_some() {
            return;
        }
        self.inner
            .write()
            .expect("poisoned")
            .learned
            .insert(id, addr.to_owned());
    }

    /// Whether `zone` is news for node `id` (an empty zone: none given).
    pub fn zone_is_new(&self, id: NodeId, zone: &str) -> bool {
        let book = self.inner.read().expect("poisoned");
        book.zones.get(&id).map_or("", String::as_str) != zone
    }

    pub fn set_zone(&self, id: NodeId, zone: &str) {
        self.inner
            .write()
            .expect("poisoned")
            .zones
            .insert(id, zone.to_owned());
    }
}

/// One peer's sender tasks: the main lane (AppendEntries, heartbeats, votes,
/// responses) and a lane of its own for snapshot chunks, so that heartbeats
/// never wait behind megabytes of snapshot.
struct PeerLanes {
    addr: String,
    main: mpsc::Sender<Message>,
    snapshot: mpsc::Sender<Message>,
}

/// The handles of the per-peer sender tasks. Senders start when the core
/// first addresses a node whose address is known, and stop when the node
/// leaves the configuration (or its address changes).
pub struct Transport {
    peers: BTreeMap<NodeId, PeerLanes>,
    book: Arc<AddressBook>,
    opts: TransportOptions,
    metrics: Arc<Metrics>,
    dump: Arc<DumpLog>,
    /// The node's current term, for the lines the senders write to dump.txt.
    term: Arc<AtomicU64>,
    /// The members of the configuration last seen.
    members: BTreeSet<NodeId>,
}

impl Transport {
    /// Starts one sender per node in `book` that is not this one. Must run
    /// inside a tokio runtime.
    pub fn start(
        book: Arc<AddressBook>,
        opts: TransportOptions,
        metrics: Arc<Metrics>,
        dump: Arc<DumpLog>,
    ) -> Transport {
        let mut transport = Transport {
            peers: BTreeMap::new(),
            book,
            opts,
            metrics,
            dump,
            term: Arc::new(AtomicU64::new(0)),
            members: BTreeSet::new(),
        };
        for (id, _) in transport.book.all() {
            if id != transport.opts.self_id {
                transport.ensure(id);
            }
        }
        transport
    }

    /// The term written on dump.txt lines by the senders.
    pub fn set_term(&self, term: Term) {
        self.term.store(term.0, Ordering::Relaxed);
    }

    /// The configuration changed: publish its addresses, stop the senders
    /// of nodes that left it and restart those whose address changed.
    pub fn set_membership(&mut self, membership: &Membership) {
        self.book.set_membership(&membership.addrs);
        let members: BTreeSet<NodeId> = membership.members().collect();
        for gone in self.members.difference(&members) {
            if self.peers.remove(gone).is_some() {
                tracing::info!(peer = %gone, "left the configuration; sender stopped");
            }
        }
        let moved: Vec<NodeId> = self
            .peers
            .iter()
            .filter(|(id, lanes)| self.book.get(**id).is_some_and(|a| a != lanes.addr))
            .map(|(id, _)| *id)
            .collect();
        for id in moved {
            self.peers.remove(&id);
        }
        for &id in &members {
            if id != self.opts.self_id {
                self.ensure(id);
            }
        }
        self.members = members;
    }

    /// The nodes with a running sender.
    pub fn peer_ids(&self) -> Vec<NodeId> {
        self.peers.keys().copied().collect()
    }

    fn ensure(&mut self, id: NodeId) -> bool {
        if self.peers.contains_key(&id) {
            return true;
        }
        let Some(addr) = self.book.get(id) else {
            return false;
        };
        let lane = |opts: TransportOptions| {
            let (tx, rx) = mpsc::channel(opts.queue_len);
            let mut sender = PeerSender::new(id, &addr, opts, self.metrics.clone());
            sender.dump = Some((self.dump.clone(), self.term.clone()));
            tokio::spawn(sender.run(rx));
            tx
        };
        let main = lane(self.opts.clone());
        // Chunks go on a connection of their own, batched up to
        // `max_batch_bytes`, with a time-out long enough for megabytes.
        let snapshot_opts = TransportOptions {
            rpc_timeout: self.opts.rpc_timeout.max(SNAPSHOT_RPC_TIMEOUT),
            queue_len: self.opts.queue_len.min(64),
            ..self.opts.clone()
        };
        let snapshot = lane(snapshot_opts);
        tracing::debug!(peer = %id, %addr, "peer sender started");
        self.peers.insert(
            id,
            PeerLanes {
                addr,
                main,
                snapshot,
            },
        );
        true
    }

    /// Queues a message for its peer; never blocks.
    pub fn send(&mut self, msg: Message) {
        self.metrics.count_sent(&msg.body);
        if !self.ensure(msg.to) {
            bump(&self.metrics.peer_messages_dropped_no_address);
            tracing::debug!(to = %msg.to, "no address known for this node; message dropped");
            return;
        }
        let lanes = &self.peers[&msg.to];
        let queue = match msg.body {
            MessageBody::InstallSnapshot(_) => &lanes.snapshot,
            _ => &lanes.main,
        };
        if queue.try_send(msg).is_err() {
            bump(&self.metrics.peer_messages_dropped_queue_full);
        }
    }
}

struct PeerSender {
    to: NodeId,
    addr: String,
    opts: TransportOptions,
    metrics: Arc<Metrics>,
    dump: Option<(Arc<DumpLog>, Arc<AtomicU64>)>,
    /// Whether the last batch got through; a change is written to dump.txt.
    reachable: bool,
}

/// One open connection to the peer (see [`crate::peer_wire`]).
struct Conn {
    read: OwnedReadHalf,
    write: OwnedWriteHalf,
    /// Acknowledgement bytes read but not yet parsed (a count is 8 bytes).
    acks: BytesMut,
    /// Frames written, and the count the peer last acknowledged.
    sent: u64,
    acked: u64,
    /// Since when frames are written but unacknowledged with no progress.
    waiting_since: Option<Instant>,
}

impl PeerSender {
    fn new(to: NodeId, addr: &str, opts: TransportOptions, metrics: Arc<Metrics>) -> PeerSender {
        PeerSender {
            to,
            addr: addr.to_owned(),
            opts,
            metrics,
            dump: None,
            reachable: true,
        }
    }

    /// Writes each batch as one frame on one TCP connection, in order, with
    /// no wait for a reply: TCP's own flow control is the only limit, so a
    /// new entry or a ReadIndex heartbeat never waits a round trip behind the
    /// previous batch. A write that blocks, or frames the peer does not
    /// acknowledge, for `rpc_timeout` (a paused or cut-off peer), or a closed
    /// connection, count as a failure: the connection is dropped, the stale
    /// queue emptied (the core resends), and the next batch reconnects after
    /// an exponential back-off.
    async fn run(mut self, mut rx: mpsc::Receiver<Message>) {
        let mut backoff = self.opts.backoff_min;
        let mut conn: Option<Conn> = None;
        let mut frame = BytesMut::new();
        let far = Instant::now() + Duration::from_secs(86_400);
        loop {
            let ack_deadline = conn
                .as_ref()
                .and_then(|c| c.waiting_since)
                .map(|t| t + self.opts.rpc_timeout);
            let failure = tokio::select! {
                next = rx.recv() => {
                    let Some(first) = next else { break };
                    let batch = self.batch(first, &mut rx);
                    // Reused: its capacity settles at the usual frame size.
                    frame.clear();
                    if conn.is_none() {
                        frame.extend_from_slice(PEER_MAGIC);
                    }
                    encode_frame(&batch, &mut frame);
                    match self.write(&mut conn, &frame).await {
                        Ok(()) => {
                            backoff = self.opts.backoff_min;
                            self.mark_reachable();
                            None
                        }
                        Err(e) => Some((e, batch.messages.len())),
                    }
                }
                read = read_acks(&mut conn), if conn.is_some() => read.err().map(|e| (e, 0)),
                _ = tokio::time::sleep_until(ack_deadline.unwrap_or(far)), if ack_deadline.is_some() => {
                    Some((format!("no acknowledgement within {:?}", self.opts.rpc_timeout), 0))
                }
            };
            if let Some((error, count)) = failure {
                conn = None;
                self.mark_unreachable(&error, count);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(self.opts.backoff_max);
                // What queued up meanwhile is stale; the core resends.
                while rx.try_recv().is_ok() {
                    bump(&self.metrics.peer_messages_dropped_queue_full);
                }
            }
        }
    }

    /// Writes one frame, connecting first if needed (then `frame` starts
    /// with the preface).
    async fn write(&self, conn: &mut Option<Conn>, frame: &[u8]) -> Result<(), String> {
        if conn.is_none() {
            *conn = Some(self.connect().await?);
        }
        let c = conn.as_mut().expect("connected above");
        match tokio::time::timeout(self.opts.rpc_timeout, c.write.write_all(frame)).await {
            Ok(Ok(())) => {
                c.sent += 1;
                c.waiting_since.get_or_insert_with(Instant::now);
                Ok(())
            }
            Ok(Err(e)) => Err(format!("write: {e}")),
            Err(_) => Err(format!(
                "write blocked for {:?} (the peer does not read)",
                self.opts.rpc_timeout
            )),
        }
    }

    async fn connect(&self) -> Result<Conn, String> {
        let stream = tokio::time::timeout(
            self.opts.connect_timeout,
            TcpStream::connect(self.addr.as_str()),
        )
        .await
        .map_err(|_| format!("no connection within {:?}", self.opts.connect_timeout))?
        .map_err(|e| format!("connect: {e}"))?;
        // Nagle would hold small frames for the peer's delayed ACK (~40 ms).
        stream
            .set_nodelay(true)
            .map_err(|e| format!("set TCP_NODELAY: {e}"))?;
        let (read, write) = stream.into_split();
        Ok(Conn {
            read,
            write,
            acks: BytesMut::with_capacity(64),
            sent: 0,
            acked: 0,
            waiting_since: None,
        })
    }

    fn mark_reachable(&mut self) {
        if !self.reachable {
            self.reachable = true;
            let text = format!("node {} at {} reachable again", self.to, self.addr);
            self.record(DumpLevel::Info, text);
        }
    }

    fn mark_unreachable(&mut self, error: &str, count: usize) {
        bump(&self.metrics.peer_batches_failed);
        if self.reachable {
            self.reachable = false;
            let text = format!("cannot send to node {} at {}: {error}", self.to, self.addr);
            self.record(DumpLevel::Error, text);
        }
        tracing::debug!(peer = %self.to, addr = %self.addr, count, "peer send failed: {error}");
    }

    fn record(&self, level: DumpLevel, text: String) {
        if let Some((dump, term)) = &self.dump {
            dump.record(level, Term(term.load(Ordering::Relaxed)), &text);
        }
    }

    fn batch(&self, first: Message, rx: &mut mpsc::Receiver<Message>) -> pb::PeerBatch {
        let mut messages = vec![message_to_pb(&first)];
        let mut bytes = approx_bytes(&first);
        while messages.len() < self.opts.max_batch_messages && bytes < self.opts.max_batch_bytes {
            let Ok(next) = rx.try_recv() else { break };
            bytes += approx_bytes(&next);
            messages.push(message_to_pb(&next));
        }
        pb::PeerBatch {
            cluster_id: self.opts.cluster_id.clone(),
            from: self.opts.self_id.0,
            to: self.to.0,
            messages,
            from_addr: self.opts.advertise.clone(),
            from_zone: self.opts.zone.clone(),
        }
    }
}

/// Reads what the peer acknowledged (cancel-safe: bytes read stay in
/// `acks`). A closed connection is an error: the peer never closes a
/// healthy one.
async fn read_acks(conn: &mut Option<Conn>) -> Result<(), String> {
    let c = conn.as_mut().expect("only polled with a connection");
    match c.read.read_buf(&mut c.acks).await {
        Ok(0) => return Err("connection closed by the peer".into()),
        Ok(_) => {}
        Err(e) => return Err(format!("read: {e}")),
    }
    while c.acks.len() >= 8 {
        let count = c.acks.get_u64();
        if count > c.acked {
            c.acked = count;
            c.waiting_since = (c.acked < c.sent).then(Instant::now);
        }
    }
    Ok(())
}

fn approx_bytes(msg: &Message) -> usize {
    match &msg.body {
        MessageBody::AppendEntries(a) => {
            64 + a.entries.iter().map(|e| e.size_bytes()).sum::<usize>()
        }
        MessageBody::InstallSnapshot(i) => {
            128 + i.meta.membership.size_bytes()
                + i.data
                    .iter()
                    .map(|(k, v)| 8 + k.len() + v.len())
                    .sum::<usize>()
                + 48 * i.sessions.len()
        }
        _ => 64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(items: &[(u64, &str)]) -> BTreeMap<NodeId, String> {
        items
            .iter()
            .map(|(id, a)| (NodeId(*id), a.to_string()))
            .collect()
    }

    #[test]
    fn the_configuration_wins_over_flags_and_flags_over_learned() {
        let book = AddressBook::new(map(&[(2, "flag:2")]));
        book.learn(NodeId(2), "learned:2");
        book.learn(NodeId(3), "learned:3");
        assert_eq!(book.get(NodeId(2)).as_deref(), Some("flag:2"));
        assert_eq!(book.get(NodeId(3)).as_deref(), Some("learned:3"));
        book.set_membership(&map(&[(3, "config:3"), (4, "config:4")]));
        assert_eq!(book.get(NodeId(3)).as_deref(), Some("config:3"));
        // Once known, an address is not overwritten by what a sender claims.
        book.learn(NodeId(4), "evil:4");
        assert_eq!(book.get(NodeId(4)).as_deref(), Some("config:4"));
        assert_eq!(book.get(NodeId(9)), None);
        assert_eq!(book.all().len(), 3);
    }

    fn options() -> TransportOptions {
        TransportOptions {
            cluster_id: "t".into(),
            self_id: NodeId(1),
            advertise: "127.0.0.1:1".into(),
            queue_len: 8,
            rpc_timeout: Duration::from_millis(50),
            connect_timeout: Duration::from_millis(50),
            backoff_min: Duration::from_millis(10),
            backoff_max: Duration::from_millis(40),
            max_batch_messages: 64,
            max_batch_bytes: 4 << 20,
            zone: String::new(),
        }
    }

    /// A dump.txt for node 1 in a folder of its own (removed by the test).
    fn test_dump(name: &str) -> (std::path::PathBuf, Arc<DumpLog>) {
        let dir =
            std::env::temp_dir().join(format!("raftkv-transport-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let dump = DumpLog::open(&dir, raftkv_storage::DumpOptions::new(NodeId(1))).unwrap();
        (dir, Arc::new(dump))
    }

    /// A peer that takes frames but never acknowledges them (a paused or
    /// cut-off node behind a live socket) costs the sender its connection;
    /// the next batch reconnects with the preface, and acknowledged frames
    /// keep the new connection.
    #[tokio::test]
    async fn a_peer_that_never_acknowledges_is_dropped_and_reconnected() {
        use prost::Message as _;
        use tokio::net::TcpListener;
        use tokio_util::codec::FramedRead;

        let (dir, dump) = test_dump("ack");
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let book = Arc::new(AddressBook::new(map(&[(2, &addr)])));
        let metrics = Arc::new(Metrics::default());
        let opts = TransportOptions {
            rpc_timeout: Duration::from_millis(300),
            ..options()
        };
        let mut t = Transport::start(book, opts, metrics.clone(), dump);
        let msg = Message {
            from: NodeId(1),
            to: NodeId(2),
            term: Term(3),
            body: MessageBody::TimeoutNow,
        };
        // Reads the preface and one frame from a new connection.
        async fn accept_one(listener: &TcpListener) -> FramedRead<TcpStream, LengthDelimitedCodec> {
            let (mut stream, _) = tokio::time::timeout(Duration::from_secs(10), listener.accept())
                .await
                .expect("the sender connects")
                .unwrap();
            let mut magic = [0u8; 8];
            stream.read_exact(&mut magic).await.unwrap();
            assert_eq!(&magic, PEER_MAGIC);
            FramedRead::new(stream, crate::peer_wire::frame_codec())
        }
        use futures_util::StreamExt;
        use tokio_util::codec::LengthDelimitedCodec;

        t.send(msg.clone());
        let mut first = accept_one(&listener).await;
        let frame = first.next().await.unwrap().unwrap();
        let batch = pb::PeerBatch::decode(frame).unwrap();
        assert_eq!((batch.from, batch.to, batch.messages.len()), (1, 2, 1));
        // No acknowledgement: within the time-out the sender gives up.
        let give_up = std::time::Instant::now() + Duration::from_secs(10);
        while metrics.peer_batches_failed.load(Ordering::Relaxed) == 0 {
            assert!(
                std::time::Instant::now() < give_up,
                "the sender never gave up"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // The next batch comes on a new connection, which acknowledges it.
        // (What is queued during the back-off is dropped as stale: resend
        // until the sender connects.)
        let connected = async {
            loop {
                t.send(msg.clone());
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        let mut second = tokio::select! {
            s = accept_one(&listener) => s,
            _ = connected => unreachable!(),
        };
        second.next().await.unwrap().unwrap();
        second
            .get_mut()
            .write_all(&1u64.to_be_bytes())
            .await
            .unwrap();
        t.send(msg);
        second.next().await.unwrap().unwrap();
        second
            .get_mut()
            .write_all(&2u64.to_be_bytes())
            .await
            .unwrap();
        // The old connection was closed by the sender.
        assert!(
            first.next().await.is_none(),
            "the first connection is closed"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn senders_follow_the_configuration() {
        let (dir, dump) = test_dump("config");
        let book = Arc::new(AddressBook::new(map(&[
            (2, "127.0.0.1:2"),
            (3, "127.0.0.1:3"),
        ])));
        let metrics = Arc::new(Metrics::default());
        let mut t = Transport::start(book.clone(), options(), metrics.clone(), dump);
        assert_eq!(t.peer_ids(), vec![NodeId(2), NodeId(3)]);
        // Node 4 joins with its address in the configuration; node 3 leaves.
        let m = Membership {
            voters: [NodeId(1), NodeId(2)].into(),
            learners: [NodeId(4)].into(),
            addrs: map(&[(4, "127.0.0.1:4")]),
            placement: None,
        };
        t.set_membership(&Membership::with_voters([NodeId(1), NodeId(2), NodeId(3)]));
        t.set_membership(&m);
        assert_eq!(t.peer_ids(), vec![NodeId(2), NodeId(4)]);
        // A message to a node nobody knows is dropped and counted; one to a
        // node known only from its batches starts a sender.
        let msg = |to: u64| Message {
            from: NodeId(1),
            to: NodeId(to),
            term: Term(1),
            body: MessageBody::TimeoutNow,
        };
        t.send(msg(7));
        assert_eq!(
            metrics
                .peer_messages_dropped_no_address
                .load(Ordering::Relaxed),
            1
        );
        book.learn(NodeId(7), "127.0.0.1:7");
        t.send(msg(7));
        assert_eq!(t.peer_ids(), vec![NodeId(2), NodeId(4), NodeId(7)]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
