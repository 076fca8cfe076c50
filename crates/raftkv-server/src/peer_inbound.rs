//! Incoming connections: the listener's first byte tells a peer connection
//! ([`crate::peer_wire`]) from a gRPC one; peer batches are checked here and
//! their messages handed to the core task's inbox, gRPC connections go on
//! to tonic.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::BufMut;
use futures_util::StreamExt;
use prost::Message as _;
use raftkv_client::pb;
use raftkv_core::NodeId;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::codec::FramedRead;

use crate::convert::{check_addr, message_from_pb};
use crate::metrics::bump;
use crate::peer_wire::{frame_codec, ACK_DELAY, PEER_MAGIC};
use crate::service::Shared;

/// How long a new connection may stay silent before it is dropped (clients
/// and peers both speak first).
const FIRST_BYTES_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts connections until `stop`, serves the peer ones and returns the
/// others as a stream for tonic.
pub fn accept(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) -> ReceiverStream<io::Result<TcpStream>> {
    let (grpc_tx, grpc_rx) = mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        // Nagle would hold small replies for the peer's
                        // delayed ACK (~40 ms).
                        let _ = stream.set_nodelay(true);
                        tokio::spawn(route(stream, grpc_tx.clone(), shared.clone(), stop.clone()));
                    }
                    Err(e) => {
                        // Out of file descriptors, typically: wait, retry.
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                _ = stopped(&mut stop) => break,
            }
        }
    });
    ReceiverStream::new(grpc_rx)
}

async fn route(
    stream: TcpStream,
    grpc: mpsc::Sender<io::Result<TcpStream>>,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
) {
    let mut first = [0u8; 1];
    match tokio::time::timeout(FIRST_BYTES_TIMEOUT, stream.peek(&mut first)).await {
        Ok(Ok(1)) if first[0] == PEER_MAGIC[0] => serve_peer(stream, shared, stop).await,
        Ok(Ok(1)) => {
            let _ = grpc.send(Ok(stream)).await;
        }
        // Closed, failed or silent.
        _ => {}
    }
}

/// Why a batch closes its connection.
#[derive(Debug)]
pub enum Rejected {
    /// From another cluster.
    Cluster(String),
    /// Not from a valid sender to this node.
    Addressing(String),
}

/// Checks one batch and queues its messages for the core task. Malformed
/// messages and a bad sender address are dropped and counted; a batch from
/// another cluster, or not from another node to this one, is refused whole.
pub fn take_batch(shared: &Shared, batch: pb::PeerBatch) -> Result<(), Rejected> {
    if batch.cluster_id != shared.config.cluster_id {
        bump(&shared.metrics.peer_batches_rejected_cluster);
        return Err(Rejected::Cluster(format!(
            "this node belongs to cluster {:?}, not {:?}",
            shared.config.cluster_id, batch.cluster_id
        )));
    }
    let (from, to) = (NodeId(batch.from), NodeId(batch.to));
    // Any node of the cluster may write: one added at run time is known
    // to nobody at first. The core counts only members' votes and acks.
    let me = shared.config.core.id;
    if to != me || from == me || from.0 == 0 {
        bump(&shared.metrics.peer_batches_rejected_cluster);
        return Err(Rejected::Addressing(format!(
            "batch from node {from} to node {to} reached node {me} (bad sender or not addressed here)"
        )));
    }
    if !batch.from_addr.is_empty() {
        match check_addr(&batch.from_addr) {
            Ok(()) => shared.book.learn(from, &batch.from_addr),
            Err(e) => {
                bump(&shared.metrics.peer_messages_malformed);
                tracing::warn!(%from, "ignored a bad sender address: {e}");
            }
        }
    }
    for msg in batch.messages {
        match message_from_pb(from, to, msg, shared.limits()) {
            Ok(msg) => {
                bump(&shared.metrics.peer_messages_received);
                if shared.handle.peer_inbox.try_send(msg).is_err() {
                    bump(&shared.metrics.peer_messages_dropped_inbox_full);
                }
            }
            Err(e) => {
                bump(&shared.metrics.peer_messages_malformed);
                tracing::warn!(%from, "malformed peer message dropped: {e}");
            }
        }
    }
    Ok(())
}

/// Reads one peer connection's frames until it closes, fails, sends a batch
/// that is refused, or the node stops; acknowledges the frames taken.
async fn serve_peer(mut stream: TcpStream, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let peer = stream
        .peer_addr()
        .map_or_else(|_| "?".to_owned(), |a| a.to_string());
    let mut magic = [0u8; PEER_MAGIC.len()];
    let preface = tokio::time::timeout(FIRST_BYTES_TIMEOUT, stream.read_exact(&mut magic)).await;
    if !matches!(preface, Ok(Ok(_))) || &magic != PEER_MAGIC {
        bump(&shared.metrics.peer_messages_malformed);
        tracing::warn!(%peer, "dropped a connection with a bad peer preface");
        return;
    }
    let (read, mut write) = stream.into_split();
    let mut frames = FramedRead::new(read, frame_codec());
    let mut taken = 0u64;
    let mut ack_due: Option<Instant> = None;
    let far = Instant::now() + Duration::from_secs(86_400);
    loop {
        tokio::select! {
            frame = frames.next() => {
                let frame = match frame {
                    Some(Ok(frame)) => frame,
                    None => return,
                    Some(Err(e)) => {
                        tracing::debug!(%peer, "peer connection ended: {e}");
                        return;
                    }
                };
                let batch = match pb::PeerBatch::decode(frame) {
                    Ok(batch) => batch,
                    Err(e) => {
                        bump(&shared.metrics.peer_messages_malformed);
                        tracing::warn!(%peer, "undecodable peer batch; connection closed: {e}");
                        return;
                    }
                };
                if let Err(why) = take_batch(&shared, batch) {
                    tracing::warn!(%peer, "refused a peer batch; connection closed: {why:?}");
                    return;
                }
                taken += 1;
                ack_due.get_or_insert_with(|| Instant::now() + ACK_DELAY);
            }
            _ = tokio::time::sleep_until(ack_due.unwrap_or(far)), if ack_due.is_some() => {
                let mut ack = [0u8; 8];
                (&mut ack[..]).put_u64(taken);
                if write.write_all(&ack).await.is_err() {
                    return;
                }
                ack_due = None;
            }
            _ = stopped(&mut stop) => return,
        }
    }
}

/// Resolves once the node stops.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}
