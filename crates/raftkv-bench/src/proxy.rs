//! A TCP proxy that adds a one-way delay to each direction, for geo mode on
//! a kernel without netem. Each direction is a reader that stamps every chunk
//! with `arrival + delay` and a writer that releases the chunks in order at
//! their stamps, so the delay does not limit throughput (a chunk does not
//! wait for the one before it beyond its own stamp).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

#[derive(Args, Debug)]
pub struct ProxyArgs {
    /// Address to accept on; repeat (with --to) for several routes in one process.
    #[arg(long, required = true)]
    pub listen: Vec<String>,
    /// Address to forward to, paired with the --listen of the same position.
    #[arg(long, required = true)]
    pub to: Vec<String>,
    /// Delay added to each direction (one way), in milliseconds.
    #[arg(long, default_value_t = 10.0)]
    pub delay_ms: f64,
}

/// Chunks queued per direction before the reader waits (bounds memory).
const QUEUE_CHUNKS: usize = 4096;
const CHUNK_BYTES: usize = 64 << 10;

pub async fn run(a: ProxyArgs) -> anyhow::Result<ExitCode> {
    if a.listen.len() != a.to.len() {
        bail!("give one --to for each --listen");
    }
    if !(a.delay_ms.is_finite() && a.delay_ms >= 0.0) {
        bail!("--delay-ms must be zero or positive");
    }
    let delay = Duration::from_secs_f64(a.delay_ms / 1000.0);
    let mut routes = tokio::task::JoinSet::new();
    for (listen, to) in a.listen.iter().zip(&a.to) {
        let listener = TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        eprintln!("proxy {listen} -> {to}, {} ms each way", a.delay_ms);
        routes.spawn(serve(listener, to.clone(), delay));
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
        r = routes.join_next() => {
            if let Some(r) = r {
                r.context("proxy route panicked")?.context("proxy route failed")?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Accepts connections forever, forwarding each to `to` with `delay` added
/// each way.
pub async fn serve(listener: TcpListener, to: String, delay: Duration) -> std::io::Result<()> {
    loop {
        let (inbound, _) = listener.accept().await?;
        let to = to.clone();
        tokio::spawn(async move {
            let Ok(outbound) = TcpStream::connect(&to).await else {
                return; // Dropping `inbound` tells the caller, as a dead peer would.
            };
            // Without NODELAY, Nagle and delayed ACKs add their own 40 ms.
            inbound.set_nodelay(true).ok();
            outbound.set_nodelay(true).ok();
            let (in_r, in_w) = inbound.into_split();
            let (out_r, out_w) = outbound.into_split();
            tokio::join!(pipe(in_r, out_w, delay), pipe(out_r, in_w, delay));
        });
    }
}

/// Starts a proxy on a free loopback port; returns its address.
pub async fn spawn_local(to: String, delay: Duration) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(serve(listener, to, delay));
    Ok(addr)
}

/// One direction: `None` in the queue is end-of-stream.
async fn pipe(mut src: OwnedReadHalf, mut dst: OwnedWriteHalf, delay: Duration) {
    let (tx, mut rx) = mpsc::channel::<(Instant, Option<Vec<u8>>)>(QUEUE_CHUNKS);
    let reader = async move {
        let mut buf = vec![0u8; CHUNK_BYTES];
        loop {
            let chunk = match src.read(&mut buf).await {
                Ok(0) | Err(_) => None,
                Ok(n) => Some(buf[..n].to_vec()),
            };
            let end = chunk.is_none();
            if tx.send((Instant::now() + delay, chunk)).await.is_err() || end {
                break;
            }
        }
    };
    let writer = async move {
        while let Some((due, chunk)) = rx.recv().await {
            tokio::time::sleep_until(due.into()).await;
            match chunk {
                Some(bytes) => {
                    if dst.write_all(&bytes).await.is_err() {
                        break;
                    }
                }
                None => {
                    dst.shutdown().await.ok();
                    break;
                }
            }
        }
    };
    tokio::join!(reader, writer);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An echo server on a free port.
    async fn echo_server() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    tokio::io::copy(&mut r, &mut w).await.ok();
                });
            }
        });
        addr
    }

    #[tokio::test]
    async fn round_trip_takes_twice_the_delay_and_keeps_order() {
        let echo = echo_server().await;
        let delay = Duration::from_millis(40);
        let proxy = spawn_local(echo.to_string(), delay).await.unwrap();
        let mut s = TcpStream::connect(proxy).await.unwrap();
        s.set_nodelay(true).unwrap();
        let t0 = Instant::now();
        let mut sent = Vec::new();
        for i in 0..200u32 {
            let msg = i.to_be_bytes();
            s.write_all(&msg).await.unwrap();
            sent.extend_from_slice(&msg);
        }
        let mut got = vec![0u8; sent.len()];
        s.read_exact(&mut got).await.unwrap();
        let rtt = t0.elapsed();
        assert_eq!(got, sent, "bytes reordered or changed");
        assert!(
            rtt >= 2 * delay,
            "round trip {rtt:?} shorter than 2 x {delay:?}"
        );
        // 200 writes must be pipelined, not 200 round trips (16 s); the bound
        // is loose so that a loaded machine does not trip it.
        assert!(
            rtt < 50 * delay,
            "round trip {rtt:?}: the delay is serialising"
        );
    }

    #[tokio::test]
    async fn end_of_stream_is_forwarded() {
        let echo = echo_server().await;
        let proxy = spawn_local(echo.to_string(), Duration::from_millis(5))
            .await
            .unwrap();
        let mut s = TcpStream::connect(proxy).await.unwrap();
        s.write_all(b"bye").await.unwrap();
        s.shutdown().await.unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"bye");
    }
}
