//! Append benchmark: FileStorage appends of entries with 100-byte values at
//! 1, 16 and 256 entries per sync, beside a raw `write` + `fdatasync` loop
//! writing the same bytes on the same file system in the same run; then the
//! time to open a log of 1,000,000 entries.
//!
//! `cargo bench -p raftkv-storage --bench append`
//! Environment: `RAFTKV_BENCH_DIR` (default: the system temp dir),
//! `RAFTKV_BENCH_SECS` per measurement, split evenly between the raw loop
//! and the store (default 4), `RAFTKV_BENCH_OPEN_ENTRIES`
//! (default 1000000).

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use raftkv_core::{ClientCommand, ClientId, Entry, EntryPayload, LogIndex, NodeId, Op, Term};
use raftkv_storage::{line, FileStorage, FileStorageOptions, Storage};

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn entry(index: u64) -> Entry {
    Entry {
        index: LogIndex(index),
        term: Term(1),
        payload: EntryPayload::Command(ClientCommand {
            client_id: ClientId(42),
            seq: index,
            op: Op::Set {
                key: format!("key{:08}", index % 100_000_000),
                value: "v".repeat(100),
            },
        }),
    }
}

struct Rate {
    entries: u64,
    bytes: u64,
    elapsed: Duration,
}

impl Rate {
    fn per_sec(&self) -> f64 {
        self.entries as f64 / self.elapsed.as_secs_f64()
    }
    fn mb_per_sec(&self) -> f64 {
        self.bytes as f64 / self.elapsed.as_secs_f64() / 1e6
    }
}

/// `write` + `fdatasync` of `batch` pre-encoded lines per round.
struct RawLoop {
    file: std::fs::File,
    bytes: Vec<u8>,
    batch: u64,
}

impl RawLoop {
    fn new(dir: &Path, batch: usize) -> RawLoop {
        let path = dir.join(format!("raw-{batch}.txt"));
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(path)
            .unwrap();
        let mut bytes = Vec::new();
        for i in 1..=batch as u64 {
            line::encode_into(&entry(i), &mut bytes);
        }
        RawLoop {
            file,
            bytes,
            batch: batch as u64,
        }
    }

    fn run(&mut self, rate: &mut Rate, slice: Duration) {
        let start = Instant::now();
        while start.elapsed() < slice {
            self.file.write_all(&self.bytes).unwrap();
            self.file.sync_data().unwrap();
            rate.entries += self.batch;
            rate.bytes += self.bytes.len() as u64;
        }
        rate.elapsed += start.elapsed();
    }
}

/// `FileStorage::append` of `batch` entries, then `sync`, per round.
struct StoreLoop {
    store: FileStorage,
    entries: Vec<Entry>,
    next: u64,
}

impl StoreLoop {
    fn new(dir: &Path, node: u64, batch: usize) -> StoreLoop {
        let (store, _, _) =
            FileStorage::open(dir, NodeId(node), FileStorageOptions::default()).unwrap();
        StoreLoop {
            store,
            entries: (1..=batch as u64).map(entry).collect(),
            next: 1,
        }
    }

    fn run(&mut self, rate: &mut Rate, slice: Duration) {
        let start = Instant::now();
        let bytes_before = self.store.log_bytes();
        while start.elapsed() < slice {
            for (i, e) in self.entries.iter_mut().enumerate() {
                e.index = LogIndex(self.next + i as u64);
            }
            self.store.append(&self.entries).unwrap();
            self.store.sync().unwrap();
            self.next += self.entries.len() as u64;
            rate.entries += self.entries.len() as u64;
        }
        rate.elapsed += start.elapsed();
        rate.bytes += self.store.log_bytes() - bytes_before;
    }
}

/// Raw and store runs alternate in short slices so that load from other
/// processes on a shared machine hits both alike.
fn measure(dir: &Path, node: u64, batch: usize, total: Duration) -> (Rate, Rate) {
    const SLICES: u32 = 10;
    let zero = || Rate {
        entries: 0,
        bytes: 0,
        elapsed: Duration::ZERO,
    };
    let (mut raw_rate, mut store_rate) = (zero(), zero());
    let mut raw = RawLoop::new(dir, batch);
    let mut store = StoreLoop::new(dir, node, batch);
    for _ in 0..SLICES {
        raw.run(&mut raw_rate, total / SLICES);
        store.run(&mut store_rate, total / SLICES);
    }
    std::fs::remove_file(dir.join(format!("raw-{batch}.txt"))).unwrap();
    let node_dir = store.store.dir().to_owned();
    drop(store);
    std::fs::remove_dir_all(node_dir).unwrap();
    (raw_rate, store_rate)
}

fn open_million(dir: &Path, n: u64) {
    let node = NodeId(999);
    let (mut store, _, _) = FileStorage::open(dir, node, FileStorageOptions::default()).unwrap();
    let mut lo = 1;
    while lo <= n {
        let hi = (lo + 4095).min(n);
        let batch: Vec<Entry> = (lo..=hi).map(entry).collect();
        store.append(&batch).unwrap();
        lo = hi + 1;
    }
    store.sync().unwrap();
    let bytes = store.log_bytes();
    drop(store);
    for attempt in 1..=2 {
        let start = Instant::now();
        let (store, restored, report) =
            FileStorage::open(dir, node, FileStorageOptions::default()).unwrap();
        let elapsed = start.elapsed();
        assert_eq!(restored.entries.len() as u64, n);
        println!(
            "open: {n} entries, {:.1} MB, validated and restored in {:.3} s (open {attempt}, page cache warm)",
            bytes as f64 / 1e6,
            elapsed.as_secs_f64()
        );
        assert!(report.torn_tail.is_none());
        if attempt == 2 {
            std::fs::remove_dir_all(store.dir()).unwrap();
        }
    }
}

/// The cost `DumpLog::record` adds to the caller (the hot path).
fn dump_cost(dir: &Path, lines: u64) {
    use raftkv_storage::{DumpLevel, DumpLog, DumpOptions};
    let event = raftkv_core::Event::EntriesReceived {
        from: NodeId(1),
        first: LogIndex(10),
        last: LogIndex(20),
    };
    let dump = DumpLog::open(
        dir,
        DumpOptions {
            level: DumpLevel::Debug,
            ..DumpOptions::new(NodeId(1))
        },
    )
    .unwrap();
    let start = Instant::now();
    for _ in 0..lines {
        dump.record(DumpLevel::Debug, Term(3), &event);
    }
    let recorded = start.elapsed();
    let dropped = dump.dropped_lines();
    drop(dump);
    let quiet = DumpLog::open(
        dir,
        DumpOptions {
            level: DumpLevel::Info,
            ..DumpOptions::new(NodeId(1))
        },
    )
    .unwrap();
    let start = Instant::now();
    for _ in 0..lines {
        quiet.record(DumpLevel::Debug, Term(3), &event);
    }
    let filtered = start.elapsed();
    println!(
        "dump.txt: record() {:.0} ns per line written ({dropped} of {lines} dropped by a full queue), {:.1} ns per line filtered out by level",
        recorded.as_nanos() as f64 / lines as f64,
        filtered.as_nanos() as f64 / lines as f64
    );
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing
    // else useful. Run a tiny version under `cargo test`.
    let quick = !std::env::args().any(|a| a == "--bench");
    let base = std::env::var("RAFTKV_BENCH_DIR")
        .map(Into::into)
        .unwrap_or_else(|_| std::env::temp_dir());
    let dir = tempfile::tempdir_in(&base).unwrap();
    let secs = Duration::from_secs_f64(if quick {
        0.05
    } else {
        env_or("RAFTKV_BENCH_SECS", 4.0)
    });
    let open_entries = if quick {
        10_000
    } else {
        env_or("RAFTKV_BENCH_OPEN_ENTRIES", 1_000_000)
    };
    let line_len = line::encode(&entry(1)).len();
    println!(
        "append benchmark in {} ({secs:?} per measurement, {line_len}-byte lines, 100-byte values)",
        base.display()
    );
    println!(
        "{:>9} | {:>12} {:>8} | {:>12} {:>8} | {:>6}",
        "per sync", "raw e/s", "raw MB/s", "store e/s", "MB/s", "ratio"
    );
    for (i, batch) in [1usize, 16, 256].into_iter().enumerate() {
        let (raw, store) = measure(dir.path(), i as u64 + 1, batch, secs);
        println!(
            "{batch:>9} | {:>12.0} {:>8.2} | {:>12.0} {:>8.2} | {:>6.2}",
            raw.per_sec(),
            raw.mb_per_sec(),
            store.per_sec(),
            store.mb_per_sec(),
            store.per_sec() / raw.per_sec()
        );
    }
    open_million(dir.path(), open_entries);
    dump_cost(dir.path(), if quick { 10_000 } else { 1_000_000 });
    std::io::stdout().flush().unwrap();
}
