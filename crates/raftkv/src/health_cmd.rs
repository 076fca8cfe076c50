//! `raftkv health`: asks a node's HTTP listener (`--http-listen`) whether
//! it is alive (`/livez`) or ready (`/readyz`) and exits 0 or 1. A plain
//! HTTP/1.1 GET over a TCP socket, so that the container image (FROM
//! scratch, no curl) can run it as its health check.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;

#[derive(Args, Debug)]
pub struct HealthArgs {
    /// The node's HTTP address (what it was given as --http-listen), host:port.
    #[arg(long)]
    pub http: String,
    /// Ask /readyz (knows a leader, caught up, storage writable) instead of
    /// /livez (the process serves).
    #[arg(long)]
    pub ready: bool,
    /// Give up after this many milliseconds.
    #[arg(long, default_value_t = 2000)]
    pub timeout_ms: u64,
}

/// Largest answer read (the verbose check list is a few hundred bytes).
const MAX_ANSWER_BYTES: u64 = 64 << 10;

pub fn run(args: HealthArgs) -> anyhow::Result<ExitCode> {
    let path = if args.ready { "/readyz" } else { "/livez" };
    let timeout = Duration::from_millis(args.timeout_ms.max(1));
    let (status, body) = get(&args.http, &format!("{path}?verbose"), timeout)?;
    print!("{body}");
    if status == 200 {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "raftkv health: {} answered {path} with HTTP {status}",
            args.http
        );
        Ok(ExitCode::FAILURE)
    }
}

/// One GET; returns the status code and the body.
fn get(addr: &str, path: &str, timeout: Duration) -> anyhow::Result<(u16, String)> {
    let deadline = Instant::now() + timeout;
    let target = addr
        .to_socket_addrs()
        .with_context(|| format!("--http {addr:?} is not host:port"))?
        .next()
        .with_context(|| format!("--http {addr:?}: no address"))?;
    let mut stream = TcpStream::connect_timeout(&target, timeout)
        .with_context(|| format!("cannot connect to {addr}"))?;
    let left = || {
        deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1))
    };
    stream.set_write_timeout(Some(left()))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .with_context(|| format!("cannot send to {addr}"))?;
    stream.set_read_timeout(Some(left()))?;
    let mut answer = Vec::new();
    stream
        .take(MAX_ANSWER_BYTES)
        .read_to_end(&mut answer)
        .with_context(|| format!("no answer from {addr} within {timeout:?}"))?;
    parse_answer(&String::from_utf8_lossy(&answer))
}

fn parse_answer(answer: &str) -> anyhow::Result<(u16, String)> {
    let status_line = answer.lines().next().unwrap_or_default();
    let status = status_line
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.get(2..5))
        .and_then(|code| code.parse::<u16>().ok());
    let Some(status) = status else {
        bail!("not an HTTP answer: {status_line:?}");
    };
    let body = answer
        .split_once("\r\n\r\n")
        .map_or("", |(_, body)| body)
        .to_owned();
    Ok((status, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_and_body() {
        let (status, body) =
            parse_answer("HTTP/1.1 503 Service Unavailable\r\ncontent-length: 3\r\n\r\nno\n")
                .unwrap();
        assert_eq!((status, body.as_str()), (503, "no\n"));
        assert_eq!(parse_answer("HTTP/1.1 200 OK\r\n\r\n").unwrap().0, 200);
        assert!(parse_answer("SSH-2.0-OpenSSH").is_err());
        assert!(parse_answer("").is_err());
    }
}
