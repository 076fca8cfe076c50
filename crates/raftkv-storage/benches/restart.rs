//! Restart benchmark: the time from "process starts" to "node ready" for a
//! node folder holding a long history, as a real node leaves it.
//!
//! The history: `RAFTKV_RESTART_ENTRIES` (default 1,000,000) entries, each a
//! SET of a 16-byte key (`key:000000123456`) to a 100-byte value, from 64
//! client sessions, over a key space of `RAFTKV_RESTART_KEY_SPACE` keys
//! (default 1,000,000), visited in a fixed permutation so that no key repeats
//! until all were written: the snapshot holds as many keys as SETs it covers
//! (the worst case for a key space of that size). The node appended the
//! history to `logs.txt` in synced batches, then took a `Compaction` snapshot
//! at index entries - tail, where tail = `RAFTKV_RESTART_TAIL` (default
//! 49,999: the core's default `snapshot_threshold` of 50,000 takes the next
//! snapshot one entry later), which wrote `snapshot.txt` and cut `logs.txt`
//! to the tail. Its `metadata.txt` commit lags the log by 500 entries.
//!
//! Measured: writing that snapshot (`save_snapshot`: snapshot.txt + the log
//! cut, and `snapfile::write` alone, split into writing and syncing), then
//! `RAFTKV_RESTART_RUNS` (default 5) restarts, each `FileStorage::open` +
//! `RaftNode::new` (which applies the committed tail), reporting the median.
//! Also: building the 1M-entry `KvData` with `from_iter` versus `insert`.
//!
//! `cargo bench -p raftkv-storage --bench restart`
//! Environment: `RAFTKV_BENCH_DIR` (default: the system temp dir) and the
//! variables above.

use std::time::{Duration, Instant};

use raftkv_core::{
    ClientCommand, ClientId, Config, Entry, EntryPayload, HardState, KvData, LogIndex, Membership,
    MonoTime, NodeId, Op, OpResult, RaftNode, SessionRecord, Snapshot, SnapshotMeta,
    SnapshotOrigin, SnapshotWrite, Term,
};
use raftkv_storage::{snapfile, FileStorage, FileStorageOptions, Storage};

const CLIENTS: u64 = 64;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct History {
    key_space: u64,
}

impl History {
    /// The key SET at `index` (1-based): a permutation of the key space.
    fn key(&self, index: u64) -> String {
        let k = ((index - 1) % self.key_space).wrapping_mul(7919) % self.key_space;
        format!("key:{k:012}")
    }

    /// 100 printable bytes that depend on the index.
    fn value(index: u64) -> String {
        let mut x = index.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let mut v = String::with_capacity(100);
        while v.len() < 100 {
            x ^= x >> 29;
            x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
            const ALPHABET: &[u8; 64] =
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
            v.push(char::from(ALPHABET[(x >> 58) as usize]));
        }
        v
    }

    fn client(index: u64) -> (ClientId, u64) {
        (ClientId(1 + index % CLIENTS), index / CLIENTS + 1)
    }

    fn entry(&self, index: u64) -> Entry {
        let (client_id, seq) = Self::client(index);
        Entry {
            index: LogIndex(index),
            term: Term(1),
            payload: EntryPayload::Command(ClientCommand {
                client_id,
                seq,
                op: Op::Set {
                    key: self.key(index),
                    value: Self::value(index),
                },
            }),
        }
    }

    /// The state machine after applying entries `1..=index`.
    fn snapshot(&self, index: u64, membership: Membership) -> Snapshot {
        let mut data = KvData::new();
        for i in 1..=index {
            data.insert(self.key(i), Self::value(i));
        }
        let sessions = (1..=CLIENTS.min(index))
            .map(|c| {
                // The last index <= `index` of client c (client(i) = 1 + i % 64).
                let r = (c - 1) % CLIENTS;
                let last = index - (index % CLIENTS + CLIENTS - r) % CLIENTS;
                let (client_id, seq) = Self::client(last);
                SessionRecord {
                    client_id,
                    last_seq: seq,
                    last_result: OpResult::Set,
                    last_index: LogIndex(last),
                }
            })
            .collect::<Vec<_>>();
        let mut sessions = sessions;
        sessions.sort_by_key(|s| s.client_id);
        Snapshot {
            meta: SnapshotMeta {
                index: LogIndex(index),
                term: Term(1),
                membership,
            },
            data,
            sessions,
        }
    }
}

fn membership() -> Membership {
    let mut m = Membership::with_voters([NodeId(1), NodeId(2), NodeId(3)]);
    for id in 1..=3 {
        m.addrs.insert(NodeId(id), format!("10.0.0.{id}:7001"));
    }
    m
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let entries: u64 = env_or("RAFTKV_RESTART_ENTRIES", 1_000_000);
    let key_space: u64 = env_or("RAFTKV_RESTART_KEY_SPACE", 1_000_000);
    let tail: u64 = env_or("RAFTKV_RESTART_TAIL", 49_999).min(entries - 1);
    let runs: usize = env_or("RAFTKV_RESTART_RUNS", 5);
    let base = std::env::var_os("RAFTKV_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let tmp = tempfile::tempdir_in(&base).expect("bench dir");
    let data_dir = tmp.path();
    let node = NodeId(1);
    let history = History { key_space };
    let snap_index = entries - tail;
    println!(
        "history: {entries} SETs (16-byte keys, 100-byte values, key space {key_space}), snapshot at {snap_index}, log tail {tail}; folder in {}",
        base.display()
    );

    // 1. The node appends its history in synced batches.
    let started = Instant::now();
    let (mut s, _, _) = FileStorage::open(data_dir, node, FileStorageOptions::default()).unwrap();
    s.save_hard_state(&HardState {
        term: Term(1),
        voted_for: Some(node),
        commit: LogIndex(0),
        repair: None,
    })
    .unwrap();
    let mut batch = Vec::with_capacity(10_000);
    for i in 1..=entries {
        batch.push(history.entry(i));
        if batch.len() == 10_000 || i == entries {
            s.append(&batch).unwrap();
            s.sync().unwrap();
            batch.clear();
        }
    }
    s.save_hard_state(&HardState {
        term: Term(1),
        voted_for: Some(node),
        commit: LogIndex(entries.saturating_sub(500)),
        repair: None,
    })
    .unwrap();
    println!(
        "appended {entries} entries ({:.0} MB) in {:.1} s",
        s.log_bytes() as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );

    // 2. It takes a compaction snapshot and saves it.
    let started = Instant::now();
    let snap = history.snapshot(snap_index, membership());
    let keys = snap.data.len();
    println!(
        "state machine at {snap_index}: {keys} keys (built in {:.0} ms)",
        ms(started.elapsed())
    );
    let write = SnapshotWrite {
        snapshot: snap,
        origin: SnapshotOrigin::Compaction,
    };
    let started = Instant::now();
    s.save_snapshot(&write).unwrap();
    let save = started.elapsed();
    let scratch = tempfile::tempdir_in(&base).unwrap();
    let stats = snapfile::write(scratch.path(), &write.snapshot).unwrap();
    drop(scratch);
    println!(
        "snapshot write: save_snapshot (snapshot.txt + log cut to {tail} entries) {:.0} ms; snapshot.txt alone: {:.1} MB, {:.0} ms writing + {:.0} ms fsync/rename",
        ms(save),
        stats.bytes as f64 / 1e6,
        ms(stats.write_time),
        ms(stats.sync_time)
    );

    // KvData from sorted pairs: from_iter versus insert (both as the loader
    // would use them: owned Strings, in key order).
    let pairs: Vec<(String, String)> = write
        .snapshot
        .data
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let n_pairs = pairs.len();
    let copy = pairs.clone();
    let started = Instant::now();
    let a: KvData = pairs.into_iter().collect();
    let from_iter = started.elapsed();
    let started = Instant::now();
    let mut b = KvData::new();
    for (k, v) in copy {
        b.insert(k, v);
    }
    let insert = started.elapsed();
    assert_eq!(a.len(), b.len());
    println!(
        "KvData of {n_pairs} sorted pairs: from_iter {:.0} ms, insert loop {:.0} ms",
        ms(from_iter),
        ms(insert)
    );
    drop((a, b, write));
    drop(s);

    // 3. Restarts.
    let mut totals = Vec::new();
    let mut opens = Vec::new();
    let mut loads = Vec::new();
    let mut news = Vec::new();
    for run in 0..runs {
        let started = Instant::now();
        let (s, restored, report) =
            FileStorage::open(data_dir, node, FileStorageOptions::default()).unwrap();
        let opened = started.elapsed();
        let cfg = Config::new(node, vec![NodeId(1), NodeId(2), NodeId(3)]);
        let raft = RaftNode::new(cfg, restored, MonoTime::ZERO, 1).unwrap();
        let total = started.elapsed();
        assert_eq!(
            raft.applied_index(),
            LogIndex(entries.saturating_sub(500).max(snap_index))
        );
        println!(
            "restart {run}: {:.0} ms (open {:.0} ms, of which snapshot.txt {:.0} ms for {} keys / {:.0} MB and logs.txt {} entries; RaftNode::new {:.0} ms)",
            ms(total),
            ms(opened),
            ms(report.snapshot_load_time),
            report.snapshot_keys,
            report.snapshot_bytes as f64 / 1e6,
            report.entries,
            ms(total - opened),
        );
        totals.push(total);
        opens.push(opened);
        loads.push(report.snapshot_load_time);
        news.push(total - opened);
        let dropping = Instant::now();
        drop((raft, s));
        if run == 0 {
            println!(
                "(dropping the node and store: {:.0} ms)",
                ms(dropping.elapsed())
            );
        }
    }
    println!(
        "RESTART median of {runs}: {:.2} s (FileStorage::open {:.2} s, of which snapshot.txt {:.2} s; RaftNode::new {:.2} s)",
        median(totals).as_secs_f64(),
        median(opens).as_secs_f64(),
        median(loads).as_secs_f64(),
        median(news).as_secs_f64(),
    );
}
