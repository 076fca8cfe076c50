//! Outgoing peer messages: one sender task per peer, each with one reused
//! tonic channel, a bounded queue, a per-batch time-out and reconnect
//! back-off. A full queue drops the message (counted): Raft retransmits, and
//! a stale message is worth less than a fresh one.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use raftkv_client::pb;
use raftkv_client::pb::peer_client::PeerClient;
use raftkv_core::{Message, NodeId, Term};
use raftkv_storage::{DumpLevel, DumpLog};
use tokio::sync::mpsc;
use tonic::transport::{Channel, Endpoint};

use crate::convert::message_to_pb;
use crate::metrics::{bump, Metrics};

/// Batch RPCs outstanding to one peer at once.
const MAX_INFLIGHT_BATCHES: usize = 4;

#[derive(Clone, Debug)]
pub struct TransportOptions {
    pub cluster_id: String,
    pub self_id: NodeId,
    /// Messages waiting for one peer; beyond this they are dropped.
    pub queue_len: usize,
    /// One batch's time-out; a paused peer costs this much per attempt.
    pub rpc_timeout: Duration,
    pub connect_timeout: Duration,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    pub max_batch_messages: usize,
    pub max_batch_bytes: usize,
}

/// The handles of the per-peer sender tasks.
pub struct Transport {
    queues: BTreeMap<NodeId, mpsc::Sender<Message>>,
    metrics: Arc<Metrics>,
    /// The node's current term, for the lines the senders write to dump.txt.
    term: Arc<AtomicU64>,
}

impl Transport {
    /// Starts one sender task per peer. Must run inside a tokio runtime.
    pub fn start(
        peers: &BTreeMap<NodeId, String>,
        opts: TransportOptions,
        metrics: Arc<Metrics>,
        dump: Arc<DumpLog>,
    ) -> Transport {
        let mut queues = BTreeMap::new();
        let term = Arc::new(AtomicU64::new(0));
        for (&id, addr) in peers {
            let (tx, rx) = mpsc::channel(opts.queue_len);
            let mut sender = PeerSender::new(id, addr, opts.clone(), metrics.clone());
            sender.dump = Some((dump.clone(), term.clone()));
            tokio::spawn(sender.run(rx));
            queues.insert(id, tx);
        }
        Transport {
            queues,
            metrics,
            term,
        }
    }

    /// The term written on dump.txt lines by the senders.
    pub fn set_term(&self, term: Term) {
        self.term.store(term.0, Ordering::Relaxed);
    }

    /// Queues a message for its peer; never blocks.
    pub fn send(&self, msg: Message) {
        self.metrics.count_sent(&msg.body);
        let Some(queue) = self.queues.get(&msg.to) else {
            tracing::error!(to = %msg.to, "core addressed a message to an unknown peer");
            return;
        };
        if queue.try_send(msg).is_err() {
            bump(&self.metrics.peer_messages_dropped_queue_full);
        }
    }
}

struct PeerSender {
    to: NodeId,
    addr: String,
    client: Option<PeerClient<Channel>>,
    opts: TransportOptions,
    metrics: Arc<Metrics>,
    dump: Option<(Arc<DumpLog>, Arc<AtomicU64>)>,
    /// Whether the last batch got through; a change is written to dump.txt.
    reachable: bool,
}

impl PeerSender {
    fn new(to: NodeId, addr: &str, opts: TransportOptions, metrics: Arc<Metrics>) -> PeerSender {
        let client = Endpoint::from_shared(format!("http://{addr}"))
            .map(|e| {
                let channel = e
                    .connect_timeout(opts.connect_timeout)
                    .tcp_nodelay(true)
                    .connect_lazy();
                PeerClient::new(channel)
                    .max_decoding_message_size(usize::MAX)
                    .max_encoding_message_size(usize::MAX)
            })
            .map_err(|e| tracing::error!(peer = %to, %addr, "bad peer address: {e}"))
            .ok();
        PeerSender {
            to,
            addr: addr.to_owned(),
            client,
            opts,
            metrics,
            dump: None,
            reachable: true,
        }
    }

    /// Sends batches with up to `MAX_INFLIGHT_BATCHES` RPCs outstanding, so a
    /// new entry or a ReadIndex heartbeat never waits a round trip behind the
    /// previous batch's acknowledgement (on one HTTP/2 connection, in order
    /// of sending in the common case; Raft tolerates the rare reordering).
    async fn run(mut self, mut rx: mpsc::Receiver<Message>) {
        let mut backoff = self.opts.backoff_min;
        let mut inflight = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                Some(joined) = inflight.join_next(), if !inflight.is_empty() => {
                    let (result, count): (Result<(), String>, usize) =
                        joined.unwrap_or_else(|e| (Err(format!("send task failed: {e}")), 0));
                    match result {
                        Ok(()) => {
                            backoff = self.opts.backoff_min;
                            self.mark_reachable();
                        }
                        Err(error) => {
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
                next = rx.recv(), if inflight.len() < MAX_INFLIGHT_BATCHES => {
                    let Some(first) = next else { break };
                    let batch = self.batch(first, &mut rx);
                    let count = batch.messages.len();
                    let client = self.client.clone();
                    let timeout = self.opts.rpc_timeout;
                    inflight.spawn(async move { (send(client, batch, timeout).await, count) });
                }
            }
        }
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
        }
    }
}

/// One batch, one RPC, bounded by `timeout`.
async fn send(
    client: Option<PeerClient<Channel>>,
    batch: pb::PeerBatch,
    timeout: Duration,
) -> Result<(), String> {
    let Some(mut client) = client else {
        return Err("no valid address".into());
    };
    match tokio::time::timeout(timeout, client.send(batch)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(status)) => Err(format!("{:?}: {}", status.code(), status.message())),
        Err(_) => Err(format!("no answer within {timeout:?}")),
    }
}

fn approx_bytes(msg: &Message) -> usize {
    match &msg.body {
        raftkv_core::MessageBody::AppendEntries(a) => {
            64 + a.entries.iter().map(|e| e.size_bytes()).sum::<usize>()
        }
        _ => 64,
    }
}
