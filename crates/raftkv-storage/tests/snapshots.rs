//! `snapshot.txt` and the log cut on disk: what the files look like, what a
//! crash between the two steps leaves, and what recovery refuses. The
//! generic cases are in the conformance suite (src/conformance.rs).

use std::fs;
use std::path::Path;

use raftkv_core::{Config, HardState, LogIndex, MonoTime, NodeId, RaftNode, Restored, Term};
use raftkv_storage::conformance::{compaction, entries, installed};
use raftkv_storage::{
    persist_ready, saved_compactions, snapfile, FileStorage, FileStorageOptions, OpenReport,
    Storage, StorageError, LOG_FILE, LOG_TMP_FILE, SNAPSHOT_FILE, SNAPSHOT_TMP_FILE,
};

const NODE: NodeId = NodeId(1);

fn open(data: &Path) -> Result<(FileStorage, Restored, OpenReport), StorageError> {
    FileStorage::open(data, NODE, FileStorageOptions::default())
}

fn refused(data: &Path) -> StorageError {
    match open(data) {
        Err(e) => e,
        Ok(_) => panic!("opened a store that must be refused"),
    }
}

/// A store with `n` synced entries of term 1 and a matching hard state.
fn store_with(data: &Path, n: u64) -> FileStorage {
    let (mut s, _, _) = open(data).unwrap();
    s.append(&entries(1, n, 1)).unwrap();
    s.sync().unwrap();
    s.save_hard_state(&HardState {
        term: Term(1),
        voted_for: Some(NodeId(1)),
        commit: LogIndex(n),
        repair: None,
    })
    .unwrap();
    s
}

fn first_words(path: &Path) -> Vec<String> {
    fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| l.split(' ').next().unwrap().to_owned())
        .collect()
}

#[test]
fn compaction_leaves_readable_files() {
    let data = tempfile::tempdir().unwrap();
    let mut s = store_with(data.path(), 60);
    s.save_snapshot(&compaction(50, 1)).unwrap();
    let dir = s.dir().to_owned();
    let log_first: Vec<String> = first_words(&dir.join(LOG_FILE));
    assert_eq!(
        log_first,
        (51..=60).map(|i| i.to_string()).collect::<Vec<_>>()
    );
    let snap_text = fs::read_to_string(dir.join(SNAPSHOT_FILE)).unwrap();
    assert!(
        snap_text.starts_with("raftkv-snapshot 1 crc="),
        "{snap_text}"
    );
    assert!(snap_text.contains("\nindex 50 crc="));
    assert!(snap_text.contains("\nkeys 50 crc="));
    assert!(snap_text.contains("\nend crc="));
    assert!(!dir.join(SNAPSHOT_TMP_FILE).exists() && !dir.join(LOG_TMP_FILE).exists());
    println!("{}", &snap_text[..snap_text.find("key\\s00001").unwrap()]);
}

#[test]
fn crash_before_the_log_cut_is_finished_on_open() {
    let data = tempfile::tempdir().unwrap();
    let s = store_with(data.path(), 60);
    let dir = s.dir().to_owned();
    // The rename of snapshot.txt happened; the cut of logs.txt did not.
    let snap = compaction(50, 1).snapshot;
    snapfile::write(&dir, &snap).unwrap();
    drop(s);
    let (s, r, report) = open(data.path()).unwrap();
    let cut = report
        .finished_cut
        .expect("the interrupted cut is reported");
    assert_eq!(
        (cut.snapshot_index, cut.dropped, cut.kept),
        (LogIndex(50), 50, 10)
    );
    assert_eq!(r.snapshot.as_ref(), Some(&snap));
    assert_eq!(r.entries, entries(51, 60, 1));
    assert_eq!(
        first_words(&dir.join(LOG_FILE))[0],
        "51",
        "the cut is on disk"
    );
    let dump = fs::read_to_string(dir.join("dump.txt")).unwrap();
    assert!(dump.contains("a crash came before the log cut"), "{dump}");
    drop(s);
    let (_, r, report) = open(data.path()).unwrap();
    assert_eq!(report.finished_cut, None, "nothing left to finish");
    assert_eq!(report.snapshot_index, LogIndex(50));
    assert_eq!(report.snapshot_keys, 50);
    assert_eq!(r.entries, entries(51, 60, 1));
}

#[test]
fn leftover_tmp_files_are_ignored_and_removed() {
    let data = tempfile::tempdir().unwrap();
    let mut s = store_with(data.path(), 30);
    s.save_snapshot(&compaction(20, 1)).unwrap();
    let dir = s.dir().to_owned();
    drop(s);
    fs::write(
        dir.join(SNAPSHOT_TMP_FILE),
        "raftkv-snapshot 1 crc=garbage\nindex",
    )
    .unwrap();
    fs::write(dir.join(LOG_TMP_FILE), "25 1 NO-OP crc=00000000\n").unwrap();
    let (_, r, _) = open(data.path()).unwrap();
    assert_eq!(r.snapshot.unwrap().meta.index, LogIndex(20));
    assert_eq!(r.entries, entries(21, 30, 1));
    assert!(!dir.join(SNAPSHOT_TMP_FILE).exists());
    assert!(!dir.join(LOG_TMP_FILE).exists());
}

#[test]
fn a_gap_between_snapshot_and_log_is_refused() {
    let data = tempfile::tempdir().unwrap();
    let mut s = store_with(data.path(), 30);
    s.save_snapshot(&compaction(10, 1)).unwrap();
    let dir = s.dir().to_owned();
    drop(s);
    // Drop logs.txt lines 11..=14: the log now starts at 15.
    let log = dir.join(LOG_FILE);
    let text = fs::read_to_string(&log).unwrap();
    let kept: String = text.split_inclusive('\n').skip(4).collect();
    fs::write(&log, kept).unwrap();
    match open(data.path()) {
        Err(e @ StorageError::Inconsistent { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("logs.txt") && msg.contains("11..=14"), "{msg}");
            println!("refused as expected: {msg}");
        }
        other => panic!("a gap must be refused: {:?}", other.map(|_| ())),
    }
}

#[test]
fn a_log_not_starting_at_one_without_snapshot_is_refused() {
    let data = tempfile::tempdir().unwrap();
    let s = store_with(data.path(), 10);
    let log = s.dir().join(LOG_FILE);
    drop(s);
    let text = fs::read_to_string(&log).unwrap();
    fs::write(&log, text.split_inclusive('\n').skip(2).collect::<String>()).unwrap();
    let err = refused(data.path());
    assert!(err.to_string().contains("1..=2"), "{err}");
}

#[test]
fn corrupt_or_cut_short_snapshots_are_refused_by_file_and_line() {
    let data = tempfile::tempdir().unwrap();
    let mut s = store_with(data.path(), 30);
    s.save_snapshot(&compaction(20, 1)).unwrap();
    let path = s.dir().join(SNAPSHOT_FILE);
    drop(s);
    let good = fs::read(&path).unwrap();
    let n_lines = good.iter().filter(|&&b| b == b'\n').count() as u64;
    // Cut short in the middle of a key line.
    let end_line = good.len() - "end crc=12345678\n".len();
    fs::write(&path, &good[..end_line - 5]).unwrap();
    let err = refused(data.path());
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("snapshot.txt:{}:", n_lines - 1)) && msg.contains("cut short"),
        "{msg}"
    );
    // A bad session line.
    let text = String::from_utf8(good.clone()).unwrap();
    let damaged = text.replacen("session 9 seq=2", "session 9 seq=3", 1);
    fs::write(&path, damaged).unwrap();
    let msg = refused(data.path()).to_string();
    assert!(
        msg.contains("snapshot.txt:7:") && msg.contains("checksum"),
        "{msg}"
    );
    // Restored, it opens again.
    fs::write(&path, &good).unwrap();
    open(data.path()).unwrap();
}

/// The full driver path: a Ready with an installed snapshot and entries
/// after it, then compactions, then a restart that a `RaftNode` accepts.
#[test]
fn restored_state_starts_a_node() {
    let data = tempfile::tempdir().unwrap();
    let mut s = store_with(data.path(), 10);
    let ready = raftkv_core::Ready {
        hard_state: Some(HardState {
            term: Term(2),
            voted_for: None,
            commit: LogIndex(40),
            repair: None,
        }),
        must_sync: true,
        snapshots: vec![installed(40, 2, false)],
        entries: entries(41, 50, 2),
        ..Default::default()
    };
    persist_ready(&mut s, &ready).unwrap();
    assert!(saved_compactions(&ready).is_empty());
    let ready = raftkv_core::Ready {
        snapshots: vec![compaction(45, 2)],
        ..Default::default()
    };
    persist_ready(&mut s, &ready).unwrap();
    assert_eq!(saved_compactions(&ready), vec![LogIndex(45)]);
    drop(s);
    let (_, restored, _) = open(data.path()).unwrap();
    assert_eq!(restored.snapshot.as_ref().unwrap().meta.index, LogIndex(45));
    assert_eq!(restored.entries, entries(46, 50, 2));
    let want = compaction(45, 2).snapshot;
    let mut cfg = Config::new(NodeId(1), vec![NodeId(1), NodeId(2), NodeId(3)]);
    cfg.snapshot_threshold = 1_000;
    let node = RaftNode::new(cfg, restored, MonoTime::ZERO, 7).expect("the core accepts it");
    let status = node.status(MonoTime::ZERO);
    assert_eq!(status.snapshot_index, LogIndex(45));
    assert_eq!(status.last_log_index, LogIndex(50));
    assert_eq!(status.membership, want.meta.membership);
    // The snapshot's keys are in the state machine.
    let (k, v) = want.data.iter().next().unwrap();
    assert_eq!(node.kv().get(k), Some(v));
    // Entries 46..=50 were committed (hard state commit 40 < 45, so only
    // the snapshot is applied until the leader says more).
    assert_eq!(node.applied_index(), LogIndex(45));
}

/// The background path: prepare on another thread while the store keeps
/// appending and syncing, then commit on the store.
#[test]
fn prepared_snapshot_written_in_the_background() {
    let data = tempfile::tempdir().unwrap();
    let mut s = store_with(data.path(), 100);
    let dir = s.dir().to_owned();
    let write = compaction(80, 1);
    let writer = {
        let (dir, write) = (dir.clone(), write.clone());
        std::thread::spawn(move || FileStorage::prepare_snapshot(&dir, &write))
    };
    s.append(&entries(101, 150, 1)).unwrap();
    s.sync().unwrap();
    let prepared = writer.join().unwrap().unwrap();
    assert_eq!(prepared.meta().index, LogIndex(80));
    assert!(prepared.stats().bytes > 0);
    assert!(dir.join("snapshot.txt.80.tmp").exists());
    assert_eq!(s.snapshot_meta(), None, "nothing changes before the commit");
    s.commit_snapshot(prepared).unwrap();
    assert!(!dir.join("snapshot.txt.80.tmp").exists());
    assert_eq!(s.first_index(), LogIndex(81));
    assert_eq!(
        s.entries(LogIndex(81), LogIndex(150)).unwrap(),
        entries(81, 150, 1)
    );
    drop(s);
    let (_, r, _) = open(data.path()).unwrap();
    assert_eq!(r.snapshot.as_ref(), Some(&write.snapshot));
    assert_eq!(r.entries, entries(81, 150, 1));
}

#[test]
fn a_prepared_snapshot_overtaken_is_dropped_and_leftovers_removed() {
    let data = tempfile::tempdir().unwrap();
    let mut s = store_with(data.path(), 100);
    let dir = s.dir().to_owned();
    let old = FileStorage::prepare_snapshot(&dir, &compaction(50, 1)).unwrap();
    // An installed snapshot overtakes it.
    s.save_snapshot(&installed(120, 2, false)).unwrap();
    s.commit_snapshot(old).unwrap();
    assert_eq!(s.snapshot_meta().unwrap().index, LogIndex(120));
    assert!(!dir.join("snapshot.txt.50.tmp").exists());
    // A prepared snapshot never committed (a crash) is removed at open.
    let _never = FileStorage::prepare_snapshot(&dir, &compaction(95, 2)).unwrap();
    assert!(dir.join("snapshot.txt.95.tmp").exists());
    drop(s);
    let (_, r, _) = open(data.path()).unwrap();
    assert_eq!(r.snapshot.unwrap().meta.index, LogIndex(120));
    assert!(!dir.join("snapshot.txt.95.tmp").exists());
}
