//! Incoming connections: the listener's first byte tells a peer connection
//! ([`crate::peer_wire`]) from a gRPC one; peer batches are checked here and
//! their messages handed to the core task's inbox, gRPC connections go on
//! to tonic.
//!
//! Every connection holds a slot under the connection caps
//! ([`crate::conn_caps`]) while open, and must identify itself within the
//! preface time-out: a peer by its preface and first frame, a client by the
//! HTTP/2 preface and its first (SETTINGS) frame. Out of descriptors on
//! accept (EMFILE, ENFILE) is back-pressure: wait and retry, never exit.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes};
use futures_util::{FutureExt, StreamExt};
use prost::Message as _;
use raftkv_client::pb;
use raftkv_core::{check_zone, NodeId};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::{timeout_at, Instant};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::codec::FramedRead;

use crate::conn_caps::{ClientConn, ConnCaps, Kind, Slot};
use crate::convert::{check_addr, message_from_pb};
use crate::fds::{is_fd_exhaustion, FdReserve, LogEvery};
use crate::metrics::bump;
use crate::peer_wire::{frame_codec, ACK_DELAY, MAX_FRAME_BYTES, PEER_MAGIC};
use crate::runtime::Request as CoreRequest;
use crate::service::Shared;

/// HTTP/2's client connection preface (RFC 9113, section 3.4); a SETTINGS
/// frame follows it.
pub const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Largest first SETTINGS frame accepted (6 bytes per setting).
const MAX_FIRST_SETTINGS_BYTES: usize = 16 << 10;

/// A peer's first frame may be a batch of snapshot chunks (megabytes): its
/// deadline is the preface time-out plus its size at this rate.
const MIN_FIRST_FRAME_BYTES_PER_SEC: u64 = 1 << 20;

/// Repeated warnings (connections refused, out of descriptors, prefaces
/// timed out) are logged at most once per this interval.
pub const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// The wait before accepting again after an accept failed.
const ACCEPT_RETRY: Duration = Duration::from_millis(50);

/// What the listener needs besides [`Shared`]: the caps, the preface
/// time-out, its reserve descriptor and its log throttles.
pub struct Inbound {
    pub caps: Arc<ConnCaps>,
    pub preface_timeout: Duration,
    reserve: FdReserve,
    refused_log: LogEvery,
    no_fds_log: LogEvery,
    accept_log: LogEvery,
    preface_log: LogEvery,
}

impl Inbound {
    pub fn new(caps: Arc<ConnCaps>, preface_timeout: Duration) -> Arc<Inbound> {
        Arc::new(Inbound {
            caps,
            preface_timeout,
            reserve: FdReserve::new("listener", 1),
            refused_log: LogEvery::new(LOG_INTERVAL),
            no_fds_log: LogEvery::new(LOG_INTERVAL),
            accept_log: LogEvery::new(LOG_INTERVAL),
            preface_log: LogEvery::new(LOG_INTERVAL),
        })
    }

    fn log_refused(&self, from: Option<SocketAddr>) {
        if let Some(held_back) = self.refused_log.tick() {
            let (clients, peers) = self.caps.open();
            tracing::warn!(
                from = ?from, clients, peers,
                max_client = self.caps.max_client, max_peer = self.caps.max_peer,
                "connection closed: at the connection cap ({held_back} more since the last \
                 such warning; see connections_refused_cap)"
            );
        }
    }

    fn log_preface(&self, shared: &Shared, from: Option<SocketAddr>, why: &str, timed_out: bool) {
        if timed_out {
            bump(&shared.metrics.connections_preface_timeout);
        } else {
            bump(&shared.metrics.connections_bad_preface);
        }
        if let Some(held_back) = self.preface_log.tick() {
            tracing::info!(
                from = ?from,
                "connection closed: {why} ({held_back} more since the last such message; \
                 see connections_preface_timeout, connections_bad_preface)"
            );
        }
    }
}

/// Accepts connections until `stop`, serves the peer ones and returns the
/// others as a stream for tonic.
pub fn accept(
    listener: TcpListener,
    shared: Arc<Shared>,
    inbound: Arc<Inbound>,
    mut stop: watch::Receiver<bool>,
) -> ReceiverStream<io::Result<ClientConn>> {
    let (grpc_tx, grpc_rx) = mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, from)) => {
                        let Some(slot) = inbound.caps.admit() else {
                            inbound.log_refused(Some(from));
                            continue;
                        };
                        // Nagle would hold small replies for the peer's
                        // delayed ACK (~40 ms).
                        let _ = stream.set_nodelay(true);
                        tokio::spawn(route(
                            stream, slot, grpc_tx.clone(), shared.clone(), inbound.clone(), stop.clone(),
                        ));
                    }
                    Err(e) if is_fd_exhaustion(&e) => {
                        bump(&shared.metrics.accept_out_of_fds);
                        if let Some(held_back) = inbound.no_fds_log.tick() {
                            tracing::warn!(
                                "accept failed, out of file descriptors: {e}; waiting \
                                 ({held_back} more since the last such warning; see accept_out_of_fds)"
                            );
                        }
                        // The connection at the head of the backlog would
                        // fail the same way at once: free the reserve
                        // descriptor to take it and close it.
                        if inbound.reserve.release() > 0 {
                            if let Some(Ok((stream, _))) = listener.accept().now_or_never() {
                                bump(&shared.metrics.connections_refused_cap);
                                drop(stream);
                            }
                            inbound.reserve.refill();
                        }
                        tokio::time::sleep(ACCEPT_RETRY).await;
                    }
                    Err(e) => {
                        if let Some(held_back) = inbound.accept_log.tick() {
                            tracing::warn!("accept failed: {e} ({held_back} more since the last such warning)");
                        }
                        tokio::time::sleep(ACCEPT_RETRY).await;
                    }
                },
                _ = stopped(&mut stop) => break,
            }
        }
    });
    ReceiverStream::new(grpc_rx)
}

/// Identifies a new connection by its first byte, within the preface
/// time-out, and serves it as a peer or hands it to tonic.
async fn route(
    mut stream: TcpStream,
    slot: Slot,
    grpc: mpsc::Sender<io::Result<ClientConn>>,
    shared: Arc<Shared>,
    inbound: Arc<Inbound>,
    stop: watch::Receiver<bool>,
) {
    let deadline = Instant::now() + inbound.preface_timeout;
    let from = stream.peer_addr().ok();
    let mut first = [0u8; 1];
    let kind = match timeout_at(deadline, stream.peek(&mut first)).await {
        Ok(Ok(1)) if first[0] == PEER_MAGIC[0] => Kind::Peer,
        Ok(Ok(1)) if first[0] == H2_PREFACE[0] => Kind::Client,
        Ok(Ok(1)) => {
            inbound.log_preface(&shared, from, "neither a peer nor an HTTP/2 preface", false);
            return;
        }
        // Closed or failed.
        Ok(_) => return,
        Err(_) => {
            inbound.log_preface(&shared, from, "silent for the preface time-out", true);
            return;
        }
    };
    let Some(slot) = slot.identify(kind) else {
        inbound.log_refused(from);
        return;
    };
    match kind {
        Kind::Peer => serve_peer(stream, slot, deadline, shared, inbound, stop).await,
        Kind::Client => match timeout_at(deadline, read_client_preface(&mut stream)).await {
            Ok(Ok(read_ahead)) => {
                let _ = grpc
                    .send(Ok(ClientConn::new(stream, read_ahead, slot)))
                    .await;
            }
            Ok(Err(PrefaceError::Bad(why))) => inbound.log_preface(&shared, from, why, false),
            Ok(Err(PrefaceError::Io(e))) => {
                tracing::debug!(from = ?from, "connection ended in its preface: {e}");
            }
            Err(_) => inbound.log_preface(
                &shared,
                from,
                "no complete HTTP/2 preface within the preface time-out",
                true,
            ),
        },
    }
}

#[derive(Debug)]
enum PrefaceError {
    Io(io::Error),
    Bad(&'static str),
}

impl From<io::Error> for PrefaceError {
    fn from(e: io::Error) -> PrefaceError {
        PrefaceError::Io(e)
    }
}

/// Reads and checks the HTTP/2 client preface and the SETTINGS frame that
/// must follow it; returns the bytes read, for tonic.
async fn read_client_preface(stream: &mut TcpStream) -> Result<Bytes, PrefaceError> {
    let head = H2_PREFACE.len();
    let mut buf = vec![0u8; head + 9];
    stream.read_exact(&mut buf).await?;
    check_client_preface(&buf)?;
    let len = u32::from_be_bytes([0, buf[head], buf[head + 1], buf[head + 2]]) as usize;
    buf.resize(head + 9 + len, 0);
    stream.read_exact(&mut buf[head + 9..]).await?;
    Ok(Bytes::from(buf))
}

/// Checks the preface and the first frame's header (33 bytes).
fn check_client_preface(buf: &[u8]) -> Result<(), PrefaceError> {
    let head = H2_PREFACE.len();
    if &buf[..head] != H2_PREFACE {
        return Err(PrefaceError::Bad("not the HTTP/2 preface"));
    }
    let frame = &buf[head..head + 9];
    let len = u32::from_be_bytes([0, frame[0], frame[1], frame[2]]) as usize;
    // Type 4 is SETTINGS; not an acknowledgement (flag 1); stream 0.
    if frame[3] != 4 || frame[4] & 1 != 0 || frame[5..9] != [0; 4] {
        return Err(PrefaceError::Bad(
            "the HTTP/2 preface is not followed by SETTINGS",
        ));
    }
    if len > MAX_FIRST_SETTINGS_BYTES {
        return Err(PrefaceError::Bad("oversized first SETTINGS frame"));
    }
    Ok(())
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
    if shared.book.zone_is_new(from, &batch.from_zone) {
        match check_zone(&batch.from_zone) {
            Err(e) if !batch.from_zone.is_empty() => {
                bump(&shared.metrics.peer_messages_malformed);
                tracing::warn!(%from, "ignored a bad sender zone: {e}");
            }
            _ => {
                let zone = batch.from_zone.clone();
                // Recorded once the core has it; retried with a later batch
                // when its queue is full.
                if shared
                    .handle
                    .requests
                    .try_send(CoreRequest::LearnZone { id: from, zone })
                    .is_ok()
                {
                    shared.book.set_zone(from, &batch.from_zone);
                }
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
/// that is refused, or the node stops; acknowledges the frames taken. The
/// preface and the first frame must arrive by `deadline` (later for a large
/// first frame).
async fn serve_peer(
    mut stream: TcpStream,
    _slot: Slot,
    deadline: Instant,
    shared: Arc<Shared>,
    inbound: Arc<Inbound>,
    mut stop: watch::Receiver<bool>,
) {
    let from = stream.peer_addr().ok();
    let peer = from.map_or_else(|| "?".to_owned(), |a| a.to_string());
    let mut magic = [0u8; PEER_MAGIC.len()];
    let mut len = [0u8; 4];
    let why = "no complete peer preface within the preface time-out";
    match timeout_at(deadline, stream.read_exact(&mut magic)).await {
        Ok(Ok(_)) => {}
        Ok(Err(_)) => return,
        Err(_) => return inbound.log_preface(&shared, from, why, true),
    }
    if &magic != PEER_MAGIC {
        bump(&shared.metrics.peer_messages_malformed);
        return inbound.log_preface(&shared, from, "bad peer preface", false);
    }
    match timeout_at(deadline, stream.read_exact(&mut len)).await {
        Ok(Ok(_)) => {}
        Ok(Err(_)) => return,
        Err(_) => return inbound.log_preface(&shared, from, why, true),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME_BYTES {
        bump(&shared.metrics.peer_messages_malformed);
        return inbound.log_preface(&shared, from, "oversized first peer frame", false);
    }
    let mut first = vec![0u8; len];
    let body_deadline = deadline + Duration::from_secs(len as u64 / MIN_FIRST_FRAME_BYTES_PER_SEC);
    match timeout_at(body_deadline, stream.read_exact(&mut first)).await {
        Ok(Ok(_)) => {}
        Ok(Err(_)) => return,
        Err(_) => {
            let why = "no complete first peer frame within the preface time-out";
            return inbound.log_preface(&shared, from, why, true);
        }
    }
    if !take_frame(&shared, &peer, &first[..]) {
        return;
    }
    let (read, mut write) = stream.into_split();
    let mut frames = FramedRead::new(read, frame_codec());
    let mut taken = 1u64;
    let mut ack_due: Option<Instant> = Some(Instant::now() + ACK_DELAY);
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
                if !take_frame(&shared, &peer, frame) {
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

/// Decodes one frame and takes its batch; false when the connection must
/// close.
fn take_frame(shared: &Shared, peer: &str, frame: impl Buf) -> bool {
    let batch = match pb::PeerBatch::decode(frame) {
        Ok(batch) => batch,
        Err(e) => {
            bump(&shared.metrics.peer_messages_malformed);
            tracing::warn!(%peer, "undecodable peer batch; connection closed: {e}");
            return false;
        }
    };
    if let Err(why) = take_batch(shared, batch) {
        tracing::warn!(%peer, "refused a peer batch; connection closed: {why:?}");
        return false;
    }
    true
}

/// Resolves once the node stops.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Clock;
    use crate::limits::RateLimiter;
    use crate::metrics::Metrics;
    use crate::runtime::NodeHandle;
    use crate::transport::AddressBook;
    use raftkv_driver::LeaseReads;
    use std::sync::atomic::Ordering;
    use tokio::io::AsyncReadExt;

    struct Listening {
        addr: SocketAddr,
        shared: Arc<Shared>,
        grpc: ReceiverStream<io::Result<ClientConn>>,
        _stop: watch::Sender<bool>,
        _inbox: mpsc::Receiver<raftkv_core::Message>,
    }

    /// A listener of node 1 of cluster `test` with these caps and preface
    /// time-out, and no core behind it.
    async fn listen(max_client: usize, max_peer: usize, preface: Duration) -> Listening {
        let config = Arc::new(crate::config::sample());
        let (requests, _) = mpsc::channel(1);
        let (peer_inbox, inbox) = mpsc::channel(64);
        let metrics = Arc::new(Metrics::default());
        let shared = Arc::new(Shared {
            limiter: RateLimiter::new(100),
            book: Arc::new(AddressBook::new(config.peers.clone())),
            config,
            handle: NodeHandle {
                requests,
                peer_inbox,
            },
            metrics: metrics.clone(),
            started: std::time::Instant::now(),
            lease_reads: Arc::new(LeaseReads::new()),
            clock: Clock::start(),
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let inbound = Inbound::new(ConnCaps::new(max_client, max_peer, metrics), preface);
        let (stop_tx, stop) = watch::channel(false);
        let grpc = accept(listener, shared.clone(), inbound, stop);
        Listening {
            addr,
            shared,
            grpc,
            _stop: stop_tx,
            _inbox: inbox,
        }
    }

    fn count(l: &Listening, f: impl Fn(&Metrics) -> &std::sync::atomic::AtomicU64) -> u64 {
        f(&l.shared.metrics).load(Ordering::Relaxed)
    }

    /// Connects and sends `bytes`.
    async fn open(addr: SocketAddr, bytes: &[u8]) -> TcpStream {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(bytes).await.unwrap();
        s
    }

    /// How long until the server closes `s` (it sends nothing before).
    async fn closed_after(s: &mut TcpStream, limit: Duration) -> Option<Duration> {
        let t0 = Instant::now();
        let mut buf = [0u8; 64];
        match tokio::time::timeout(limit, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => Some(t0.elapsed()),
            Ok(Ok(n)) => panic!("unexpected {n} bytes from the server"),
            Err(_) => None,
        }
    }

    fn peer_frame(from: u64) -> Vec<u8> {
        let mut out = bytes::BytesMut::new();
        crate::peer_wire::encode_frame(
            &pb::PeerBatch {
                cluster_id: "test".into(),
                from,
                to: 1,
                messages: vec![],
                from_addr: String::new(),
                from_zone: String::new(),
            },
            &mut out,
        );
        out.to_vec()
    }

    #[tokio::test]
    async fn incomplete_prefaces_are_closed_at_the_deadline() {
        let preface = Duration::from_millis(300);
        let l = listen(16, 4, preface).await;
        let mut partial = H2_PREFACE[..10].to_vec();
        let mut h2_no_settings = H2_PREFACE.to_vec();
        let mut peer_no_frame = PEER_MAGIC.to_vec();
        let mut peer_half_frame = PEER_MAGIC.to_vec();
        peer_half_frame.extend_from_slice(&peer_frame(2)[..6]);
        let mut conns = Vec::new();
        for bytes in [
            &b""[..],
            b"P",
            b"R",
            &partial,
            &h2_no_settings,
            &peer_no_frame,
            &peer_half_frame,
        ] {
            conns.push(open(l.addr, bytes).await);
        }
        partial.clear();
        h2_no_settings.clear();
        peer_no_frame.clear();
        for s in &mut conns {
            let after = closed_after(s, Duration::from_secs(3)).await;
            let after = after.expect("closed within 3 s");
            assert!(after <= preface + Duration::from_millis(500), "{after:?}");
        }
        assert_eq!(
            count(&l, |m| &m.connections_preface_timeout),
            conns.len() as u64
        );
        // Their slots are given back.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(count(&l, |m| &m.connections_open_client), 0);
        assert_eq!(count(&l, |m| &m.connections_open_peer), 0);
    }

    #[tokio::test]
    async fn complete_prefaces_stay_past_the_deadline() {
        let preface = Duration::from_millis(200);
        let mut l = listen(16, 4, preface).await;
        // A peer: preface and first frame; it is acknowledged.
        let mut hello = PEER_MAGIC.to_vec();
        hello.extend_from_slice(&peer_frame(2));
        let mut peer = open(l.addr, &hello).await;
        let mut ack = [0u8; 8];
        peer.read_exact(&mut ack).await.unwrap();
        assert_eq!(u64::from_be_bytes(ack), 1);
        // A client: HTTP/2 preface and an empty SETTINGS frame; tonic gets
        // the connection with those bytes first.
        let mut h2 = H2_PREFACE.to_vec();
        h2.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
        let _client = open(l.addr, &h2).await;
        let mut conn = l.grpc.next().await.unwrap().unwrap();
        let mut replayed = vec![0u8; h2.len()];
        conn.read_exact(&mut replayed).await.unwrap();
        assert_eq!(replayed, h2);
        assert!(closed_after(&mut peer, preface * 3).await.is_none());
        assert_eq!(count(&l, |m| &m.connections_preface_timeout), 0);
        assert_eq!(count(&l, |m| &m.connections_open_peer), 1);
        assert_eq!(count(&l, |m| &m.connections_open_client), 1);
        drop(conn);
        assert_eq!(count(&l, |m| &m.connections_open_client), 0);
    }

    #[tokio::test]
    async fn connections_over_the_caps_are_closed_at_once() {
        let l = listen(3, 2, Duration::from_secs(30)).await;
        // Five silent connections: three on client slots, two on peer ones.
        let mut held = Vec::new();
        for _ in 0..5 {
            held.push(open(l.addr, b"").await);
        }
        let open_now = |l: &Listening| {
            count(l, |m| &m.connections_open_client) + count(l, |m| &m.connections_open_peer)
        };
        while open_now(&l) < 5 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let mut extra = open(l.addr, b"P").await;
        let after = closed_after(&mut extra, Duration::from_secs(2)).await;
        assert!(after.expect("refused") < Duration::from_secs(1));
        assert_eq!(count(&l, |m| &m.connections_refused_cap), 1);
        // A client on a peer slot cannot become a client: the client slots
        // are full. Closing one lets it through.
        held[4].write_all(b"P").await.unwrap();
        let after = closed_after(&mut held[4], Duration::from_secs(2)).await;
        assert!(after.expect("refused") < Duration::from_secs(1));
        assert_eq!(count(&l, |m| &m.connections_refused_cap), 2);
        drop(held.remove(0));
        while open_now(&l) > 3 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let mut again = open(l.addr, b"P").await;
        assert!(closed_after(&mut again, Duration::from_millis(300))
            .await
            .is_none());
        assert_eq!(count(&l, |m| &m.connections_open_client), 3);
    }
    fn settings_frame(len: usize, ty: u8, flags: u8) -> Vec<u8> {
        let mut buf = H2_PREFACE.to_vec();
        buf.extend_from_slice(&(len as u32).to_be_bytes()[1..]);
        buf.extend_from_slice(&[ty, flags, 0, 0, 0, 0]);
        buf
    }

    #[test]
    fn the_client_preface_must_be_http2_then_settings() {
        assert!(check_client_preface(&settings_frame(18, 4, 0)).is_ok());
        assert!(check_client_preface(&settings_frame(0, 4, 0)).is_ok());
        // A SETTINGS acknowledgement, another frame type, an oversized frame.
        for bad in [
            settings_frame(0, 4, 1),
            settings_frame(8, 6, 0),
            settings_frame(MAX_FIRST_SETTINGS_BYTES + 1, 4, 0),
        ] {
            assert!(matches!(
                check_client_preface(&bad),
                Err(PrefaceError::Bad(_))
            ));
        }
        let mut http1 = settings_frame(0, 4, 0);
        http1[..4].copy_from_slice(b"GET ");
        assert!(check_client_preface(&http1).is_err());
    }
}
