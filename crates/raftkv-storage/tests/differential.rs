//! `FileStorage` against `MemStorage`, driven by the same seeded random
//! operations (appends with conflicts, syncs, compactions, installed
//! snapshots with and without suffix, crashes after a sync, crashes between
//! `snapshot.txt` and the log cut, hard state saves): after every operation
//! both must show the same log and snapshot, and after every crash both must
//! restore the same state, one the core accepts (entries strictly after the
//! snapshot, consecutive). Rerun one seed with `DIFF_SEED=<seed>`.

use raftkv_core::{HardState, LogIndex, NodeId, Restored, SnapshotOrigin, SnapshotWrite, Term};
use raftkv_storage::conformance::{check_restored, entries, snapshot, SplitMix64};
use raftkv_storage::{snapfile, FileStorage, FileStorageOptions, MemStorage, Storage};

fn open(data: &std::path::Path) -> (FileStorage, Restored) {
    let (s, r, _) = FileStorage::open(data, NodeId(1), FileStorageOptions::default()).unwrap();
    (s, r)
}

fn same_view(file: &FileStorage, mem: &MemStorage, what: &str) {
    assert_eq!(
        file.snapshot_meta(),
        mem.snapshot_meta(),
        "{what}: snapshot"
    );
    assert_eq!(
        (file.first_index(), file.last_index(), file.last_term()),
        (mem.first_index(), mem.last_index(), mem.last_term()),
        "{what}: bounds"
    );
    assert_eq!(
        file.entries(file.first_index(), file.last_index()).unwrap(),
        mem.entries(mem.first_index(), mem.last_index()).unwrap(),
        "{what}: entries"
    );
}

fn same_restored(f: &Restored, m: &Restored, what: &str) {
    assert_eq!(f.hard_state, m.hard_state, "{what}: restored hard state");
    assert_eq!(f.snapshot, m.snapshot, "{what}: restored snapshot");
    assert_eq!(f.entries, m.entries, "{what}: restored entries");
    check_restored(f, what);
}

fn run(seed: u64, steps: usize) -> [u32; 8] {
    let mut rng = SplitMix64(seed);
    let dir = tempfile::tempdir().unwrap();
    let (mut file, _) = open(dir.path());
    let mut mem = MemStorage::new();
    let mut term = 1;
    let mut counts = [0u32; 8];
    for step in 0..steps {
        let what = format!("seed {seed} step {step}");
        let (first, last) = (mem.first_index().0, mem.last_index().0);
        let op = rng.range(0, 100);
        match op {
            0..=39 => {
                counts[0] += 1;
                let lo = rng.range(first, last + 2);
                let n = rng.range(1, 6);
                if rng.range(0, 4) == 0 {
                    term += 1;
                }
                let batch = entries(lo, lo + n - 1, term);
                file.append(&batch).unwrap();
                mem.append(&batch).unwrap();
            }
            40..=54 => {
                counts[1] += 1;
                file.sync().unwrap();
                mem.sync().unwrap();
            }
            55..=64 if last >= first => {
                counts[2] += 1;
                file.sync().unwrap();
                mem.sync().unwrap();
                let index = rng.range(first, last + 1);
                let t = mem.entries(LogIndex(index), LogIndex(index)).unwrap()[0].term;
                let w = SnapshotWrite {
                    snapshot: snapshot(index, t.0, rng.range(0, 20)),
                    origin: SnapshotOrigin::Compaction,
                };
                file.save_snapshot(&w).unwrap();
                mem.save_snapshot(&w).unwrap();
            }
            65..=76 => {
                counts[3] += 1;
                let index = rng.range(first, last + 8);
                let in_log = index <= last;
                let t = if in_log && rng.range(0, 2) == 0 {
                    mem.entries(LogIndex(index), LogIndex(index)).unwrap()[0]
                        .term
                        .0
                } else {
                    term += 1;
                    term
                };
                let w = SnapshotWrite {
                    snapshot: snapshot(index, t, rng.range(0, 20)),
                    origin: SnapshotOrigin::Installed {
                        keep_log_suffix: rng.range(0, 2) == 0,
                    },
                };
                file.save_snapshot(&w).unwrap();
                mem.save_snapshot(&w).unwrap();
            }
            77..=86 => {
                counts[4] += 1;
                file.sync().unwrap();
                mem.sync().unwrap();
                drop(file);
                let (f, fr) = open(dir.path());
                file = f;
                mem.crash();
                same_restored(&fr, &mem.restored(), &what);
            }
            87..=92 if last >= first => {
                // A crash between snapshot.txt's rename and the log cut.
                counts[5] += 1;
                file.sync().unwrap();
                mem.sync().unwrap();
                let index = rng.range(first, last + 1);
                let t = mem.entries(LogIndex(index), LogIndex(index)).unwrap()[0].term;
                let w = SnapshotWrite {
                    snapshot: snapshot(index, t.0, rng.range(0, 20)),
                    origin: SnapshotOrigin::Compaction,
                };
                snapfile::write(file.dir(), &w.snapshot).unwrap();
                drop(file);
                let (f, fr) = open(dir.path());
                file = f;
                mem.save_snapshot(&w).unwrap();
                mem.crash();
                same_restored(&fr, &mem.restored(), &what);
            }
            93..=99 => {
                counts[6] += 1;
                // A commit index at or below the snapshot is always in range.
                let hs = HardState {
                    term: Term(term),
                    voted_for: Some(NodeId(rng.range(1, 4))),
                    commit: mem.first_index().prev(),
                    repair: None,
                };
                file.save_hard_state(&hs).unwrap();
                mem.save_hard_state(&hs).unwrap();
            }
            _ => counts[7] += 1,
        }
        same_view(&file, &mem, &what);
    }
    counts
}

#[test]
fn file_and_mem_agree_under_random_operations() {
    let seeds: Vec<u64> = match std::env::var("DIFF_SEED") {
        Ok(s) => vec![s.parse().expect("DIFF_SEED is a number")],
        Err(_) => (1..=40).collect(),
    };
    let mut total = [0u32; 8];
    for &seed in &seeds {
        println!("seed {seed}");
        for (t, c) in total.iter_mut().zip(run(seed, 120)) {
            *t += c;
        }
    }
    println!(
        "{} seeds: appends {}, syncs {}, compactions {}, installs {}, crashes {}, crashes before the log cut {}, hard states {}",
        seeds.len(),
        total[0],
        total[1],
        total[2],
        total[3],
        total[4],
        total[5],
        total[6]
    );
    assert!(total[5] > 0 && total[3] > 0 && total[2] > 0);
}
