//! File descriptors: the process limit (raised to the hard limit at start),
//! the share of it that inbound connections may use, reserve descriptors
//! for storage and the listener, and telling "out of descriptors" errors
//! apart. The network must never use up the descriptors the storage needs:
//! docs/operations.md, "File descriptors".

use std::fs::File;
use std::io;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The soft and hard `RLIMIT_NOFILE` after [`raise_nofile_limit`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NofileLimit {
    pub soft: u64,
    pub hard: u64,
    /// The soft limit before it was raised.
    pub was: u64,
}

/// Raises the soft descriptor limit to the hard one (nothing to do when they
/// are equal). An error leaves the limit as it was.
pub fn raise_nofile_limit() -> io::Result<NofileLimit> {
    let (was, hard) = rlimit::Resource::NOFILE.get()?;
    let soft = if was < hard {
        rlimit::increase_nofile_limit(hard)?
    } else {
        was
    };
    Ok(NofileLimit { soft, hard, was })
}

/// Descriptors open in this process now (`/proc/self/fd`), if known.
pub fn open_descriptors() -> Option<usize> {
    // The listing's own descriptor is counted too.
    let n = std::fs::read_dir("/proc/self/fd").ok()?.count();
    Some(n.saturating_sub(1))
}

/// True for EMFILE (this process is at its limit) and ENFILE (the system is).
pub use raftkv_storage::fd_retry::out_of_descriptors as is_fd_exhaustion;

/// Descriptors kept free beyond those open at start: storage's short-lived
/// files (`metadata.txt.tmp`, `logs.txt.tmp` beside `logs.txt`, a snapshot
/// `.tmp`, folder fsyncs, snapshot reads), `dump.txt` rotation, the runtime.
pub fn headroom(limit: u64) -> usize {
    usize::try_from(limit / 16)
        .unwrap_or(usize::MAX)
        .clamp(32, 1024)
}

/// Outgoing peer connections: two per other node (the main and snapshot
/// lanes), with room for nodes added at run time and reconnects.
pub fn outgoing(peers: usize) -> usize {
    2 * peers + 8
}

/// How many inbound connections of each kind a node accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnBudget {
    pub max_client: usize,
    pub max_peer: usize,
    /// Descriptors the two caps could use together without eating into
    /// the headroom.
    pub available: usize,
}

/// The connection caps for a soft limit `limit` with `in_use` descriptors
/// open and `peers` other nodes known: what is left after the headroom and
/// the outgoing connections, one eighth of it (8 to 256) for peers and the
/// rest for clients. A cap given by the operator is kept unless it does not
/// fit, then it is lowered (the second value says so).
pub fn conn_budget(
    limit: u64,
    in_use: usize,
    peers: usize,
    client: Option<usize>,
    peer: Option<usize>,
) -> (ConnBudget, bool) {
    let limit_us = usize::try_from(limit).unwrap_or(usize::MAX);
    let available = limit_us
        .saturating_sub(in_use)
        .saturating_sub(headroom(limit))
        .saturating_sub(outgoing(peers))
        // Always some room, however low the limit: EMFILE on accept is then
        // handled as back-pressure.
        .max(2);
    let default_peer = (available / 8).clamp(8, 256).min(available / 2).max(1);
    let mut max_peer = peer.unwrap_or(default_peer);
    let mut max_client = client.unwrap_or(available.saturating_sub(max_peer));
    let mut lowered = false;
    if max_peer + max_client > available {
        lowered = true;
        max_peer = max_peer.min(available / 2).max(1);
        max_client = max_client.min(available - max_peer).max(1);
    }
    (
        ConnBudget {
            max_client: max_client.max(1),
            max_peer: max_peer.max(1),
            available,
        },
        lowered,
    )
}

/// Descriptors held open on `/dev/null` to be given back when descriptors
/// run out (the "reserve descriptor" trick): the listener frees one to
/// accept and close a connection it cannot serve; the storage's is freed by
/// `raftkv_storage::fd_retry`'s shortage hook when one of its opens finds
/// no descriptor, and topped up after each job.
pub struct FdReserve {
    name: &'static str,
    size: usize,
    files: Mutex<Vec<File>>,
}

impl FdReserve {
    /// Opens up to `size` descriptors (fewer if they run out).
    pub fn new(name: &'static str, size: usize) -> FdReserve {
        let reserve = FdReserve {
            name,
            size,
            files: Mutex::new(Vec::with_capacity(size)),
        };
        reserve.refill();
        reserve
    }

    /// Closes every reserve descriptor; returns how many there were.
    pub fn release(&self) -> usize {
        let mut files = self.files.lock().expect("poisoned");
        let n = files.len();
        files.clear();
        n
    }

    /// Reopens the reserve up to its size; returns how many are held.
    pub fn refill(&self) -> usize {
        let mut files = self.files.lock().expect("poisoned");
        while files.len() < self.size {
            match File::open("/dev/null") {
                Ok(f) => files.push(f),
                Err(e) => {
                    tracing::debug!(reserve = self.name, "cannot refill: {e}");
                    break;
                }
            }
        }
        files.len()
    }

    pub fn held(&self) -> usize {
        self.files.lock().expect("poisoned").len()
    }

    pub fn size(&self) -> usize {
        self.size
    }
}

/// Lets a repeated event through to the log at most once per interval, and
/// tells how many were held back meanwhile.
pub struct LogEvery {
    interval: Duration,
    state: Mutex<(Option<Instant>, u64)>,
}

impl LogEvery {
    pub fn new(interval: Duration) -> LogEvery {
        LogEvery {
            interval,
            state: Mutex::new((None, 0)),
        }
    }

    /// `Some(n)` when this event should be logged, `n` being how many were
    /// held back since the last one logged; `None` to stay quiet.
    pub fn tick(&self) -> Option<u64> {
        self.tick_at(Instant::now())
    }

    fn tick_at(&self, now: Instant) -> Option<u64> {
        let mut state = self.state.lock().expect("poisoned");
        let (last, held) = &mut *state;
        match last {
            Some(t) if now.duration_since(*t) < self.interval => {
                *held += 1;
                None
            }
            _ => {
                *last = Some(now);
                Some(std::mem::take(held))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_leaves_headroom_and_outgoing_connections() {
        // The limit of the bug report: 256 descriptors, ~20 open at start.
        let (b, lowered) = conn_budget(256, 20, 2, None, None);
        assert!(!lowered);
        assert_eq!(b.available, 256 - 20 - 32 - 12);
        assert_eq!(b.max_peer, 24);
        assert_eq!(b.max_client + b.max_peer, b.available);
        // The usual soft limit.
        let (b, _) = conn_budget(1024, 20, 2, None, None);
        assert_eq!(b.available, 1024 - 20 - 64 - 12);
        assert_eq!(b.max_peer, 116);
        // A large limit: the peer share stops growing, headroom too.
        let (b, _) = conn_budget(1 << 20, 30, 4, None, None);
        assert_eq!(b.max_peer, 256);
        assert_eq!(b.max_client, (1 << 20) - 30 - 1024 - 16 - 256);
    }

    #[test]
    fn operator_caps_are_kept_when_they_fit_and_lowered_when_not() {
        let (b, lowered) = conn_budget(1024, 20, 2, Some(100), Some(10));
        assert!(!lowered);
        assert_eq!((b.max_client, b.max_peer), (100, 10));
        let (b, lowered) = conn_budget(256, 20, 2, Some(10_000), None);
        assert!(lowered);
        assert_eq!(b.max_client + b.max_peer, b.available);
        // A limit too low for anything still leaves one of each.
        let (b, _) = conn_budget(16, 20, 2, None, None);
        assert_eq!((b.max_client, b.max_peer), (1, 1));
    }

    #[test]
    fn log_every_lets_one_through_per_interval_and_counts_the_rest() {
        let log = LogEvery::new(Duration::from_secs(1));
        let t0 = Instant::now();
        assert_eq!(log.tick_at(t0), Some(0));
        assert_eq!(log.tick_at(t0 + Duration::from_millis(10)), None);
        assert_eq!(log.tick_at(t0 + Duration::from_millis(900)), None);
        assert_eq!(log.tick_at(t0 + Duration::from_millis(1001)), Some(2));
    }

    #[test]
    fn the_reserve_gives_back_and_reopens_its_descriptors() {
        let reserve = FdReserve::new("test", 3);
        assert_eq!(reserve.held(), 3);
        assert_eq!(reserve.release(), 3);
        assert_eq!(reserve.held(), 0, "released");
        assert_eq!(reserve.refill(), 3, "refilled");
        assert_eq!(reserve.refill(), 3, "a full reserve opens nothing");
    }

    #[test]
    fn emfile_and_enfile_are_exhaustion() {
        assert!(is_fd_exhaustion(&io::Error::from_raw_os_error(
            libc::EMFILE
        )));
        assert!(is_fd_exhaustion(&io::Error::from_raw_os_error(
            libc::ENFILE
        )));
        assert!(!is_fd_exhaustion(&io::Error::from_raw_os_error(
            libc::ENOSPC
        )));
    }
}
