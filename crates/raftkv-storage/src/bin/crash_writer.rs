//! The crash test's writer (tests/crash.rs). Opens a node folder and appends
//! batches forever, each one synced, printing on stdout:
//!
//! ```text
//! OPENED <last_index> <last_term>
//! INTENT <from> <to> <term>          before an append (may truncate from <from>)
//! SYNCED <from> <to> <term> <bytes>  after its sync; <bytes> = logs.txt length
//! ```
//!
//! so the test, which SIGKILLs it at a random moment, knows what must have
//! survived. With a fourth argument `snapshots` it also takes compaction
//! snapshots of synced entries now and then (`conformance::snapshot` of up to
//! 2,000 keys, so a kill often lands while `snapshot.txt` is written or the
//! log is cut), printing
//!
//! ```text
//! SNAP <index> <term> <keys>         before save_snapshot
//! SNAPPED <index>                    after it returned
//! ```
//!
//! Usage: `raftkv-storage-crash-writer <data_dir> <node_id> <seed> [snapshots]`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use raftkv_core::{LogIndex, NodeId, SnapshotOrigin, SnapshotWrite};
use raftkv_storage::conformance::{entries, snapshot, SplitMix64};
use raftkv_storage::{FileStorage, FileStorageOptions, Storage};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (data_dir, node_id, seed, snapshots) = match &args[..] {
        [_, d, n, s] => (d, n, s, false),
        [_, d, n, s, mode] if mode == "snapshots" => (d, n, s, true),
        _ => {
            eprintln!("usage: raftkv-storage-crash-writer <data_dir> <node_id> <seed> [snapshots]");
            return ExitCode::from(2);
        }
    };
    let (Ok(node_id), Ok(seed)) = (node_id.parse(), seed.parse()) else {
        eprintln!("node_id and seed must be numbers");
        return ExitCode::from(2);
    };
    let (mut store, _, _) = match FileStorage::open(
        &PathBuf::from(data_dir),
        NodeId(node_id),
        FileStorageOptions::default(),
    ) {
        Ok(opened) => opened,
        Err(e) => {
            eprintln!("open failed: {e}");
            return ExitCode::from(3);
        }
    };
    let mut out = std::io::stdout().lock();
    let mut rng = SplitMix64(seed);
    let mut term = store.last_term().0.max(1);
    writeln!(out, "OPENED {} {}", store.last_index(), store.last_term()).unwrap();
    loop {
        let last = store.last_index().0;
        let from = if last > 5 && rng.range(0, 8) == 0 {
            term += 1; // a new leader overwrites a suffix
            (last + 1 - rng.range(1, 6)).max(store.first_index().0)
        } else {
            last + 1
        };
        let to = from + rng.range(0, 64);
        writeln!(out, "INTENT {from} {to} {term}").unwrap();
        let step = store
            .append(&entries(from, to, term))
            .and_then(|_| store.sync());
        if let Err(e) = step {
            eprintln!("write failed: {e}");
            return ExitCode::from(4);
        }
        writeln!(out, "SYNCED {from} {to} {term} {}", store.log_bytes()).unwrap();
        let (first, last) = (store.first_index().0, store.last_index().0);
        if snapshots && last >= first && rng.range(0, 6) == 0 {
            let index = rng.range(first, last + 1);
            let t = store
                .entries(LogIndex(index), LogIndex(index))
                .expect("read back")[0]
                .term;
            let keys = rng.range(0, 2_000);
            writeln!(out, "SNAP {index} {t} {keys}").unwrap();
            let write = SnapshotWrite {
                snapshot: snapshot(index, t.0, keys),
                origin: SnapshotOrigin::Compaction,
            };
            if let Err(e) = store.save_snapshot(&write) {
                eprintln!("snapshot failed: {e}");
                return ExitCode::from(4);
            }
            writeln!(out, "SNAPPED {index}").unwrap();
        }
    }
}
