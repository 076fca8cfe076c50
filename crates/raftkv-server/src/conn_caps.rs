//! Caps on inbound connections, so that they never use up the descriptors
//! the node needs for itself ([`crate::fds`]): at most `max_client` client
//! connections and `max_peer` peer connections are open at once; the rest
//! are closed as soon as they are accepted.
//!
//! A connection is accepted before anyone knows what it is: until its first
//! byte tells, it holds a client slot if one is free, else a peer slot, so
//! that connections that never identify themselves (held by the preface
//! deadline) cannot lock peers out unless the peer slots are full too. Once
//! identified it must hold a slot of its own kind, or it is closed.
//!
//! Also here: [`ClientConn`], the gRPC connection handed to tonic with the
//! bytes read from it while it was being identified, and its slot.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tonic::transport::server::{Connected, TcpConnectInfo};

use crate::metrics::{bump, Metrics};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Client,
    Peer,
}

/// The caps; the counts of open connections are the metrics gauges
/// `connections_open_client` and `connections_open_peer`.
pub struct ConnCaps {
    pub max_client: usize,
    pub max_peer: usize,
    metrics: Arc<Metrics>,
}

/// One open connection's place under its cap, given back when dropped.
pub struct Slot {
    caps: Arc<ConnCaps>,
    kind: Kind,
}

impl ConnCaps {
    pub fn new(max_client: usize, max_peer: usize, metrics: Arc<Metrics>) -> Arc<ConnCaps> {
        Arc::new(ConnCaps {
            max_client,
            max_peer,
            metrics,
        })
    }

    fn gauge(&self, kind: Kind) -> (&AtomicU64, usize) {
        match kind {
            Kind::Client => (&self.metrics.connections_open_client, self.max_client),
            Kind::Peer => (&self.metrics.connections_open_peer, self.max_peer),
        }
    }

    /// Open connections of each kind (clients, peers).
    pub fn open(&self) -> (u64, u64) {
        (
            self.metrics.connections_open_client.load(Ordering::Relaxed),
            self.metrics.connections_open_peer.load(Ordering::Relaxed),
        )
    }

    fn take(self: &Arc<Self>, kind: Kind) -> Option<Slot> {
        let (gauge, max) = self.gauge(kind);
        gauge
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max as u64).then_some(n + 1)
            })
            .ok()?;
        Some(Slot {
            caps: self.clone(),
            kind,
        })
    }

    /// A slot for a connection just accepted, of unknown kind: a client
    /// slot if one is free, else a peer slot; `None` when both caps are
    /// reached (counted: close the connection).
    pub fn admit(self: &Arc<Self>) -> Option<Slot> {
        let slot = self.take(Kind::Client).or_else(|| self.take(Kind::Peer));
        if slot.is_none() {
            bump(&self.metrics.connections_refused_cap);
        }
        slot
    }
}

impl Slot {
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The connection turned out to be of `kind`: keeps this slot if it is
    /// of that kind, else swaps it for one of that kind; `None` (counted)
    /// when that cap is reached.
    pub fn identify(self, kind: Kind) -> Option<Slot> {
        if self.kind == kind {
            return Some(self);
        }
        let other = self.caps.take(kind);
        if other.is_none() {
            bump(&self.caps.metrics.connections_refused_cap);
        }
        other
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.caps.gauge(self.kind).0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A gRPC connection for tonic: the bytes already read (the HTTP/2 preface
/// and first frame, checked while the connection was identified) come
/// first, then the socket. It holds its client slot until tonic drops it.
pub struct ClientConn {
    stream: TcpStream,
    read_ahead: Bytes,
    _slot: Slot,
}

impl ClientConn {
    pub fn new(stream: TcpStream, read_ahead: Bytes, slot: Slot) -> ClientConn {
        debug_assert_eq!(slot.kind(), Kind::Client);
        ClientConn {
            stream,
            read_ahead,
            _slot: slot,
        }
    }
}

impl Connected for ClientConn {
    type ConnectInfo = TcpConnectInfo;

    /// The socket's addresses: the rate limiter keys on the remote one.
    fn connect_info(&self) -> TcpConnectInfo {
        self.stream.connect_info()
    }
}

impl AsyncRead for ClientConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.read_ahead.is_empty() {
            let n = self.read_ahead.len().min(buf.remaining());
            buf.put_slice(&self.read_ahead[..n]);
            self.read_ahead.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for ClientConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(client: usize, peer: usize) -> (Arc<ConnCaps>, Arc<Metrics>) {
        let metrics = Arc::new(Metrics::default());
        (ConnCaps::new(client, peer, metrics.clone()), metrics)
    }

    #[test]
    fn unidentified_connections_fill_client_slots_then_peer_slots() {
        let (caps, metrics) = caps(2, 1);
        let a = caps.admit().unwrap();
        let b = caps.admit().unwrap();
        assert_eq!((a.kind(), b.kind()), (Kind::Client, Kind::Client));
        let c = caps.admit().unwrap();
        assert_eq!(c.kind(), Kind::Peer);
        assert_eq!(caps.open(), (2, 1));
        assert!(caps.admit().is_none(), "both caps reached");
        assert_eq!(metrics.connections_refused_cap.load(Ordering::Relaxed), 1);
        drop(a);
        assert_eq!(caps.open(), (1, 1));
        assert_eq!(caps.admit().unwrap().kind(), Kind::Client);
        // The temporary slot above is dropped at once.
        assert_eq!(caps.open(), (1, 1));
        drop((b, c));
        assert_eq!(caps.open(), (0, 0));
    }

    #[test]
    fn an_identified_connection_needs_a_slot_of_its_kind() {
        let (caps, metrics) = caps(1, 1);
        // A peer arrives while the client slot is free: it moves over.
        let peer = caps.admit().unwrap().identify(Kind::Peer).unwrap();
        assert_eq!(peer.kind(), Kind::Peer);
        assert_eq!(caps.open(), (0, 1));
        // Another peer arrives: it gets the client slot first, and cannot
        // move to a peer slot (full): closed, and counted.
        let second = caps.admit().unwrap();
        assert_eq!(second.kind(), Kind::Client);
        assert!(second.identify(Kind::Peer).is_none());
        assert_eq!(caps.open(), (0, 1));
        assert_eq!(metrics.connections_refused_cap.load(Ordering::Relaxed), 1);
        // A client keeps its client slot.
        let client = caps.admit().unwrap().identify(Kind::Client).unwrap();
        assert_eq!(caps.open(), (1, 1));
        drop((client, peer));
        assert_eq!(caps.open(), (0, 0));
    }

    #[test]
    fn silent_connections_cannot_take_more_than_both_caps() {
        let (caps, _) = caps(3, 2);
        let held: Vec<Slot> = (0..10).filter_map(|_| caps.admit()).collect();
        assert_eq!(held.len(), 5);
        assert_eq!(caps.open(), (3, 2));
    }
}
