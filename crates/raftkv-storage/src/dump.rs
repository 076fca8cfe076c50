//! `dump.txt`: the human-readable event trace.
//!
//! Cheap on the hot path: [`DumpLog::record`] formats one line and hands it to
//! a background thread through a bounded queue; when the queue is full the
//! line is dropped and counted (the count is written to the file later). The
//! thread writes through a `BufWriter`, flushes every `flush_interval_ms`,
//! never fsyncs, and rotates `dump.txt` to `dump.txt.1` past `max_bytes`.
//!
//! Line format: `2026-11-27T06:10:00.123Z node=2 term=5 <event text>`.

use std::fmt::{self, Write as _};
use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use raftkv_core::{Event, NodeId, Term};

use crate::error::StorageError;

pub const DUMP_FILE: &str = "dump.txt";
pub const DUMP_ROTATED_FILE: &str = "dump.txt.1";

/// How much goes into `dump.txt`. A line is written when its level is at or
/// below the configured one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DumpLevel {
    /// Nothing.
    Off,
    /// Failures: RPC errors, storage trouble.
    Error,
    /// Elections, votes, leader changes, leases, truncations.
    Info,
    /// Also every batch of entries received and every commit advance.
    Debug,
}

impl std::str::FromStr for DumpLevel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "off" => Ok(DumpLevel::Off),
            "error" => Ok(DumpLevel::Error),
            "info" => Ok(DumpLevel::Info),
            "debug" => Ok(DumpLevel::Debug),
            _ => Err(format!(
                "unknown dump level {s:?} (off, error, info, debug)"
            )),
        }
    }
}

/// The level an event is recorded at.
pub fn event_level(event: &Event) -> DumpLevel {
    match event {
        Event::EntriesReceived { .. } | Event::Committed { .. } => DumpLevel::Debug,
        Event::MessageRejected { .. } => DumpLevel::Error,
        _ => DumpLevel::Info,
    }
}

#[derive(Clone, Debug)]
pub struct DumpOptions {
    pub node_id: NodeId,
    pub level: DumpLevel,
    /// Rotate once `dump.txt` reaches this size; at most about twice this is
    /// kept on disk (`dump.txt` and `dump.txt.1`).
    pub max_bytes: u64,
    /// Lines waiting for the writer thread; beyond this they are dropped.
    pub queue_lines: usize,
    pub flush_interval_ms: u64,
}

impl DumpOptions {
    pub fn new(node_id: NodeId) -> DumpOptions {
        DumpOptions {
            node_id,
            level: DumpLevel::Info,
            max_bytes: 64 << 20,
            queue_lines: 8192,
            flush_interval_ms: 200,
        }
    }
}

enum Msg {
    Line(String),
    Flush(SyncSender<()>),
}

pub struct DumpLog {
    tx: Option<SyncSender<Msg>>,
    node_id: NodeId,
    level: DumpLevel,
    dropped: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl DumpLog {
    /// Opens `node_dir/dump.txt` for appending and starts the writer thread.
    pub fn open(node_dir: &Path, opts: DumpOptions) -> Result<DumpLog, StorageError> {
        assert!(opts.queue_lines > 0 && opts.max_bytes > 0 && opts.flush_interval_ms > 0);
        let path = node_dir.join(DUMP_FILE);
        let file = open_append(&path)?;
        let written_bytes = file
            .metadata()
            .map_err(|e| StorageError::io(&path, "stat", e))?
            .len();
        let (tx, rx) = mpsc::sync_channel(opts.queue_lines);
        let dropped = Arc::new(AtomicU64::new(0));
        let mut writer = Writer {
            dir: node_dir.to_owned(),
            out: BufWriter::with_capacity(64 << 10, file),
            written_bytes,
            max_bytes: opts.max_bytes,
            dropped: dropped.clone(),
            failed: false,
        };
        let interval = Duration::from_millis(opts.flush_interval_ms);
        let thread = std::thread::Builder::new()
            .name(format!("dump-node-{}", opts.node_id))
            .spawn(move || writer.run(rx, interval))
            .map_err(|e| StorageError::io(&path, "spawn dump writer thread", e))?;
        Ok(DumpLog {
            tx: Some(tx),
            node_id: opts.node_id,
            level: opts.level,
            dropped,
            thread: Some(thread),
        })
    }

    pub fn enabled(&self, level: DumpLevel) -> bool {
        level != DumpLevel::Off && level <= self.level
    }

    /// Queues one line; never blocks, never fails (a full queue drops it).
    pub fn record(&self, level: DumpLevel, term: Term, text: &dyn fmt::Display) {
        if !self.enabled(level) {
            return;
        }
        let line = format_line(SystemTime::now(), self.node_id, term, text);
        let tx = self.tx.as_ref().expect("sender lives until drop");
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) =
            tx.try_send(Msg::Line(line))
        {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Records a core event at its level ([`event_level`]).
    pub fn record_event(&self, term: Term, event: &Event) {
        self.record(event_level(event), term, event);
    }

    /// Waits until every line recorded so far is written to the file (not
    /// fsynced).
    pub fn flush(&self) {
        let (ack_tx, ack_rx) = mpsc::sync_channel(1);
        let tx = self.tx.as_ref().expect("sender lives until drop");
        if tx.send(Msg::Flush(ack_tx)).is_ok() {
            let _ = ack_rx.recv();
        }
    }

    /// Lines dropped because the queue was full, since the last report.
    pub fn dropped_lines(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl Drop for DumpLog {
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Writer {
    dir: PathBuf,
    out: BufWriter<File>,
    written_bytes: u64,
    max_bytes: u64,
    dropped: Arc<AtomicU64>,
    /// After a write error the dump goes quiet; it must never stop the node.
    failed: bool,
}

impl Writer {
    fn run(&mut self, rx: Receiver<Msg>, interval: Duration) {
        loop {
            match rx.recv_timeout(interval) {
                Ok(Msg::Line(line)) => self.write(line.as_bytes()),
                Ok(Msg::Flush(ack)) => {
                    self.flush();
                    let _ = ack.send(());
                }
                Err(RecvTimeoutError::Timeout) => self.flush(),
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        self.flush();
    }

    fn write(&mut self, bytes: &[u8]) {
        if self.failed {
            return;
        }
        if let Err(e) = self.out.write_all(bytes) {
            self.fail("write", e);
            return;
        }
        self.written_bytes += bytes.len() as u64;
        if self.written_bytes >= self.max_bytes {
            self.rotate();
        }
    }

    fn flush(&mut self) {
        let dropped = self.dropped.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            let note = format!(
                "{} dump: {dropped} lines dropped (queue full)\n",
                format_time(SystemTime::now())
            );
            self.write(note.as_bytes());
        }
        if !self.failed {
            if let Err(e) = self.out.flush() {
                self.fail("flush", e);
            }
        }
    }

    fn rotate(&mut self) {
        let path = self.dir.join(DUMP_FILE);
        let result = self
            .out
            .flush()
            .and_then(|_| fs::rename(&path, self.dir.join(DUMP_ROTATED_FILE)))
            .and_then(|_| OpenOptions::new().create(true).append(true).open(&path));
        match result {
            Ok(file) => {
                self.out = BufWriter::with_capacity(64 << 10, file);
                self.written_bytes = 0;
            }
            Err(e) => self.fail("rotate", e),
        }
    }

    fn fail(&mut self, op: &str, e: std::io::Error) {
        tracing::warn!(dir = %self.dir.display(), "dump.txt {op} failed, dump stops: {e}");
        self.failed = true;
    }
}

fn open_append(path: &Path) -> Result<File, StorageError> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| StorageError::io(path, "open", e))
}

/// Appends one line to `dump.txt` right away (for rare events outside a
/// running [`DumpLog`], like a torn tail cut at open).
pub fn append_now(
    node_dir: &Path,
    node_id: NodeId,
    term: Term,
    text: &dyn fmt::Display,
) -> Result<(), StorageError> {
    let path = node_dir.join(DUMP_FILE);
    let line = format_line(SystemTime::now(), node_id, term, text);
    open_append(&path)?
        .write_all(line.as_bytes())
        .map_err(|e| StorageError::io(&path, "write", e))
}

pub fn format_line(at: SystemTime, node_id: NodeId, term: Term, text: &dyn fmt::Display) -> String {
    let mut line = String::with_capacity(96);
    let _ = write!(
        line,
        "{} node={node_id} term={term} {text}",
        format_time(at)
    );
    if line.contains('\n') {
        line = line.replace('\n', "\\n");
    }
    line.push('\n');
    line
}

/// RFC 3339 UTC with milliseconds, e.g. `2026-11-27T06:10:00.123Z`.
pub fn format_time(at: SystemTime) -> String {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        since.subsec_millis()
    )
}

/// Days since 1970-01-01 to (year, month, day); H. Hinnant's algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_format() {
        let t = UNIX_EPOCH + Duration::from_millis(1_795_760_600_123);
        assert_eq!(format_time(t), "2026-11-27T06:23:20.123Z");
        assert_eq!(format_time(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            format_time(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00.000Z"
        );
    }

    #[test]
    fn line_format() {
        let line = format_line(UNIX_EPOCH, NodeId(2), Term(5), &"election started\nx");
        assert_eq!(
            line,
            "1970-01-01T00:00:00.000Z node=2 term=5 election started\\nx\n"
        );
    }
}
