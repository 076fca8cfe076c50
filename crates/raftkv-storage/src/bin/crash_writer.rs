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
//! survived. Usage: `raftkv-storage-crash-writer <data_dir> <node_id> <seed>`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use raftkv_core::NodeId;
use raftkv_storage::conformance::{entries, SplitMix64};
use raftkv_storage::{FileStorage, FileStorageOptions, Storage};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let [_, data_dir, node_id, seed] = &args[..] else {
        eprintln!("usage: raftkv-storage-crash-writer <data_dir> <node_id> <seed>");
        return ExitCode::from(2);
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
            last + 1 - rng.range(1, 6)
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
    }
}
