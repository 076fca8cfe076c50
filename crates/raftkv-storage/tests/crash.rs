//! kill -9 crash test: a writer process appends and syncs; it is SIGKILLed at
//! a random moment; the folder is reopened and checked. Every entry reported
//! synced must be there and intact (unless the writer had already begun to
//! overwrite it), and the log must pass validation. Half the time the test
//! also chops the file at a random byte past the synced length, as a power
//! loss of unsynced data would, so the torn-tail cut is exercised.
//!
//! Seed: `CRASH_SEED` (default: from the clock); printed either way.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use raftkv_core::{Entry, NodeId};
use raftkv_storage::conformance::{entry, SplitMix64};
use raftkv_storage::{FileStorage, FileStorageOptions, LOG_FILE};

const ITERATIONS: usize = 20;

/// Kills and reaps the child even when the test fails.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[derive(Debug)]
enum Report {
    Intent { from: u64, to: u64, term: u64 },
    Synced { bytes: u64 },
    Snap { index: u64, term: u64, keys: u64 },
    Snapped { index: u64 },
}

fn parse(line: &str) -> Option<Report> {
    let f: Vec<&str> = line.split(' ').collect();
    let n = |i: usize| f.get(i).and_then(|s| s.parse::<u64>().ok());
    match f[0] {
        "INTENT" => Some(Report::Intent {
            from: n(1)?,
            to: n(2)?,
            term: n(3)?,
        }),
        "SYNCED" => Some(Report::Synced { bytes: n(4)? }),
        "SNAP" => Some(Report::Snap {
            index: n(1)?,
            term: n(2)?,
            keys: n(3)?,
        }),
        "SNAPPED" => Some(Report::Snapped { index: n(1)? }),
        _ => None,
    }
}

/// Terms by index (position 0 is index 1).
type Model = Vec<u64>;

fn apply(model: &mut Model, from: u64, to: u64, term: u64) {
    model.truncate(from as usize - 1);
    model.resize(to as usize, term);
}

/// What recovery gave back is the synced log, or the synced log with a
/// prefix of the pending write `(from, to, term)` on top.
fn recovered_ok(got: &Model, synced: &Model, pending: Option<(u64, u64, u64)>) -> bool {
    match pending {
        None => got == synced,
        Some((from, to, term)) => {
            let mut written = synced.clone();
            apply(&mut written, from, to, term);
            got == synced || (written.starts_with(got) && got.len() as u64 >= from - 1)
        }
    }
}

fn terms_of(entries: &[Entry]) -> Model {
    entries.iter().map(|e| e.term.0).collect()
}

/// `CRASH_SEED` when set, else a fresh seed; printed so a failure reruns.
fn crash_seed() -> u64 {
    let seed = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    println!("crash test seed: {seed} (rerun with CRASH_SEED={seed})");
    seed
}

#[test]
fn kill_9_at_random_moments_loses_nothing_synced() {
    let seed = crash_seed();
    let mut rng = SplitMix64(seed);
    let data = tempfile::tempdir().unwrap();
    let node = NodeId(1);
    let log_path = data.path().join("logs_node_1").join(LOG_FILE);
    let started = Instant::now();
    let mut synced = Model::new();
    let (mut torn_cuts, mut chops) = (0, 0);
    for iteration in 0..ITERATIONS {
        let (reports, stderr) =
            run_and_kill(data.path(), node, rng.next_u64(), rng.range(2, 60), false);
        assert!(
            stderr.is_empty() || stderr.contains("Killed"),
            "writer failed: {stderr}"
        );
        // Replay the writer's reports over the model.
        let mut pending = None;
        let mut synced_bytes = None;
        for r in reports {
            match r {
                Report::Intent { from, to, term } => pending = Some((from, to, term)),
                Report::Synced { bytes } => {
                    let (from, to, term) = pending.take().expect("SYNCED without INTENT");
                    apply(&mut synced, from, to, term);
                    synced_bytes = Some(bytes);
                }
                Report::Snap { .. } | Report::Snapped { .. } => unreachable!("no snapshots"),
            }
        }
        // Power loss: unsynced bytes may be lost, so cut at a random point
        // past the synced length (only when the pending write is a pure append).
        let file_len = std::fs::metadata(&log_path).unwrap().len();
        let pure_append = pending.is_none_or(|(from, _, _)| from as usize == synced.len() + 1);
        if let Some(bytes) = synced_bytes {
            if pure_append && file_len > bytes && rng.range(0, 2) == 0 {
                let cut = rng.range(bytes, file_len);
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(&log_path)
                    .unwrap()
                    .set_len(cut)
                    .unwrap();
                chops += 1;
            }
        }
        let (store, restored, report) =
            FileStorage::open(data.path(), node, FileStorageOptions::default()).unwrap_or_else(
                |e| panic!("seed {seed} iteration {iteration}: reopen failed: {e}"),
            );
        drop(store);
        torn_cuts += usize::from(report.torn_tail.is_some());
        // Every entry is intact: its content is a function of (index, term).
        for e in &restored.entries {
            assert_eq!(
                *e,
                entry(e.index.0, e.term.0),
                "seed {seed}: entry {} damaged",
                e.index
            );
        }
        let got = terms_of(&restored.entries);
        let ok = recovered_ok(&got, &synced, pending);
        assert!(
            ok,
            "seed {seed} iteration {iteration}: recovered {} entries, synced {}, pending {pending:?}",
            got.len(),
            synced.len()
        );
        // What was recovered is now the durable state the next writer continues from.
        synced = got;
    }
    println!(
        "{ITERATIONS} kills, {} entries at the end, {chops} power-loss chops, {torn_cuts} torn tails cut, {:?}",
        synced.len(),
        started.elapsed()
    );
    assert!(
        synced.len() > 100,
        "the writer made too little progress to test anything"
    );
    assert!(started.elapsed() < Duration::from_secs(60));
}

/// The same with compaction snapshots: the writer also saves snapshots of
/// synced entries (up to 2,000 keys) and is killed at random moments,
/// often while writing `snapshot.txt` or cutting `logs.txt`. After each kill
/// the folder must open; the snapshot must be the last one reported saved or
/// the one being saved (never older, never damaged, its content exactly the
/// one written); the entries after it must be the synced ones (plus maybe a
/// prefix of the pending write), consecutive from the snapshot.
#[test]
fn kill_9_during_snapshots_loses_nothing_synced() {
    let seed = crash_seed();
    let mut rng = SplitMix64(seed);
    let data = tempfile::tempdir().unwrap();
    let node = NodeId(1);
    let started = Instant::now();
    // Terms by index from 1 (covered entries included), and the snapshot.
    let mut synced = Model::new();
    let mut snap: Option<(u64, u64, u64)> = None;
    let (mut saved, mut interrupted, mut cuts_finished) = (0, 0, 0);
    for iteration in 0..ITERATIONS {
        let what = format!("seed {seed} iteration {iteration}");
        let (reports, stderr) =
            run_and_kill(data.path(), node, rng.next_u64(), rng.range(5, 80), true);
        assert!(
            stderr.is_empty() || stderr.contains("Killed"),
            "writer failed: {stderr}"
        );
        let mut pending = None;
        let mut pending_snap = None;
        for r in reports {
            match r {
                Report::Intent { from, to, term } => pending = Some((from, to, term)),
                Report::Synced { .. } => {
                    let (from, to, term) = pending.take().expect("SYNCED without INTENT");
                    apply(&mut synced, from, to, term);
                }
                Report::Snap { index, term, keys } => pending_snap = Some((index, term, keys)),
                Report::Snapped { index } => {
                    let s = pending_snap.take().expect("SNAPPED without SNAP");
                    assert_eq!(s.0, index);
                    snap = Some(s);
                    saved += 1;
                }
            }
        }
        interrupted += usize::from(pending_snap.is_some());
        let (store, restored, report) =
            FileStorage::open(data.path(), node, FileStorageOptions::default())
                .unwrap_or_else(|e| panic!("{what}: reopen failed: {e}"));
        drop(store);
        cuts_finished += usize::from(report.finished_cut.is_some());
        let got_snap = restored
            .snapshot
            .as_ref()
            .map(|s| (s.meta.index.0, s.meta.term.0, s.data.len() as u64));
        assert!(
            got_snap == snap || (pending_snap.is_some() && got_snap == pending_snap),
            "{what}: restored snapshot {got_snap:?}, saved {snap:?}, being saved {pending_snap:?}"
        );
        if let Some(s) = &restored.snapshot {
            let want = raftkv_storage::conformance::snapshot(
                s.meta.index.0,
                s.meta.term.0,
                s.data.len() as u64,
            );
            assert!(
                *s == want,
                "{what}: snapshot content differs from the one written"
            );
            assert_eq!(
                synced.get(s.meta.index.0 as usize - 1).copied(),
                Some(s.meta.term.0),
                "{what}: the snapshot covers a synced entry"
            );
        }
        snap = got_snap;
        for e in &restored.entries {
            assert_eq!(
                *e,
                entry(e.index.0, e.term.0),
                "{what}: entry {} damaged",
                e.index
            );
        }
        let base = snap.map_or(0, |s| s.0) as usize;
        let mut got: Model = synced[..base].to_vec();
        for (i, e) in restored.entries.iter().enumerate() {
            assert_eq!(
                e.index.0 as usize,
                base + 1 + i,
                "{what}: entries not consecutive after the snapshot"
            );
        }
        got.extend(terms_of(&restored.entries));
        let ok = recovered_ok(&got, &synced, pending);
        assert!(
            ok,
            "{what}: recovered up to {}, synced up to {}, pending {pending:?}",
            got.len(),
            synced.len()
        );
        synced = got;
    }
    println!(
        "{ITERATIONS} kills, {} entries at the end, {saved} snapshots saved, {interrupted} kills during a snapshot save, {cuts_finished} log cuts finished at open, {:?}",
        synced.len(),
        started.elapsed()
    );
    assert!(saved > 0, "the writer saved no snapshot");
    assert!(started.elapsed() < Duration::from_secs(120));
}

/// Starts the writer, lets it run `run_ms` after it opened, SIGKILLs it and
/// returns its complete stdout lines.
fn run_and_kill(
    data_dir: &Path,
    node: NodeId,
    seed: u64,
    run_ms: u64,
    snapshots: bool,
) -> (Vec<Report>, String) {
    let child = Command::new(env!("CARGO_BIN_EXE_raftkv-storage-crash-writer"))
        .arg(data_dir)
        .arg(node.0.to_string())
        .arg(seed.to_string())
        .args(snapshots.then_some("snapshots"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the writer");
    let mut child = ChildGuard(child);
    let mut stdout = BufReader::new(child.0.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    if !first.starts_with("OPENED ") {
        let mut err = String::new();
        child
            .0
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        panic!("writer did not open: {first:?} {err}");
    }
    std::thread::sleep(Duration::from_millis(run_ms));
    child.0.kill().expect("SIGKILL the writer"); // std's kill is SIGKILL
    child.0.wait().unwrap();
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    // Only whole lines count: a line cut by the kill was never a promise.
    let complete = match rest.rfind('\n') {
        Some(end) => &rest[..=end],
        None => "",
    };
    let reports = complete.lines().filter_map(parse).collect();
    let mut err = String::new();
    child
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (reports, err)
}
