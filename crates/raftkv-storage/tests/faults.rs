//! Fault tests: a full disk, a read-only folder, an unwritable parent. Each
//! must give a clear error, acknowledge nothing it did not persist, and stop
//! accepting writes after a failed one (fail-stop).
//!
//! They mount small tmpfs file systems (the tests run as root). Where mount
//! is not permitted they fall back to an injected error and say so.

use std::path::{Path, PathBuf};
use std::process::Command;

use raftkv_core::{HardState, LogIndex, NodeId, Term};
use raftkv_storage::conformance::entry;
use raftkv_storage::{FileStorage, FileStorageOptions, Storage, StorageError};

/// A tmpfs mounted for one test; unmounted on drop, even when the test fails.
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    fn mount(path: &Path, options: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(path).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(path)
            .output()
            .ok()?;
        if !out.status.success() {
            println!(
                "mount -t tmpfs -o {options} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            return None;
        }
        Some(Tmpfs {
            path: path.to_owned(),
        })
    }

    fn remount(&self, options: &str) -> bool {
        Command::new("mount")
            .args(["-o", options])
            .arg(&self.path)
            .status()
            .is_ok_and(|s| s.success())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.path)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.path).status();
        }
    }
}

fn big_entry(index: u64) -> raftkv_core::Entry {
    let mut e = entry(index, 1);
    if let raftkv_core::EntryPayload::Command(c) = &mut e.payload {
        c.op = raftkv_core::Op::Set {
            key: format!("k{index}"),
            value: "x".repeat(900),
        };
    }
    e
}

/// Appends 8-entry batches, each synced, until something fails. Returns the
/// last index whose sync succeeded and the error.
fn fill(store: &mut FileStorage) -> (u64, StorageError) {
    let mut acked = 0;
    for batch in 0u64.. {
        let lo = batch * 8 + 1;
        let batch: Vec<_> = (lo..lo + 8).map(big_entry).collect();
        match store.append(&batch).and_then(|_| store.sync()) {
            Ok(()) => acked = lo + 7,
            Err(e) => return (acked, e),
        }
        assert!(lo < 1_000_000, "the disk never filled up");
    }
    unreachable!()
}

fn assert_fail_stopped(store: &mut FileStorage, next: u64) {
    let e = store.append(&[big_entry(next)]).unwrap_err();
    assert!(
        matches!(e, StorageError::FailStopped { .. }),
        "append after a failure: {e}"
    );
    assert!(
        matches!(store.sync().unwrap_err(), StorageError::FailStopped { .. }),
        "sync after a failure"
    );
    let e = store.save_hard_state(&HardState::default()).unwrap_err();
    assert!(
        matches!(e, StorageError::FailStopped { .. }),
        "save_hard_state after a failure: {e}"
    );
    assert!(e.to_string().contains("restart the node"), "{e}");
}

#[test]
fn full_disk_gives_a_clear_error_and_acknowledges_nothing_unsaved() {
    let tmp = tempfile::tempdir().unwrap();
    let mnt = tmp.path().join("small");
    let (_mount, data, opts) = match Tmpfs::mount(&mnt, "size=256k") {
        Some(m) => {
            println!("full disk: real 256 KiB tmpfs at {}", mnt.display());
            (Some(m), mnt.clone(), FileStorageOptions::default())
        }
        None => {
            println!("FALLBACK: mount not permitted; full disk simulated by an injected ENOSPC");
            let opts = FileStorageOptions {
                inject_enospc_after_bytes: Some(200_000),
                ..Default::default()
            };
            (None, tmp.path().to_owned(), opts)
        }
    };
    full_disk_scenario(&data, opts);
}

/// The fallback path, run always so it stays tested.
#[test]
fn injected_enospc_behaves_like_a_full_disk() {
    let tmp = tempfile::tempdir().unwrap();
    full_disk_scenario(
        tmp.path(),
        FileStorageOptions {
            inject_enospc_after_bytes: Some(100_000),
            ..Default::default()
        },
    );
}

fn full_disk_scenario(data: &Path, opts: FileStorageOptions) {
    let (mut store, _, _) = FileStorage::open(data, NodeId(1), opts).unwrap();
    let (acked, err) = fill(&mut store);
    println!("disk full after {acked} acknowledged entries: {err}");
    assert!(acked > 8, "some batches must fit");
    let msg = err.to_string();
    assert!(
        msg.contains("logs.txt") && msg.contains("No space left on device"),
        "unclear error: {msg}"
    );
    assert!(store.failure().is_some());
    assert_fail_stopped(&mut store, acked + 1);
    drop(store);

    // A restart (on the still-full disk) recovers every acknowledged entry,
    // intact, and cuts the half-written batch.
    let (_, restored, report) =
        FileStorage::open(data, NodeId(1), FileStorageOptions::default()).unwrap();
    println!(
        "reopened: {} entries, torn tail: {:?}",
        restored.entries.len(),
        report.torn_tail
    );
    assert!(restored.entries.len() as u64 >= acked);
    for e in &restored.entries {
        assert_eq!(*e, big_entry(e.index.0));
    }
}

#[test]
fn full_disk_while_saving_metadata_keeps_the_old_hard_state() {
    let tmp = tempfile::tempdir().unwrap();
    let mnt = tmp.path().join("small");
    let Some(_mount) = Tmpfs::mount(&mnt, "size=64k") else {
        println!("FALLBACK: mount not permitted; metadata ENOSPC not testable without it (covered by the log test's injection)");
        return;
    };
    let (mut store, _, _) =
        FileStorage::open(&mnt, NodeId(1), FileStorageOptions::default()).unwrap();
    let old = HardState {
        term: Term(3),
        voted_for: Some(NodeId(2)),
        commit: LogIndex(0),
        repair: None,
    };
    store.save_hard_state(&old).unwrap();
    // Fill the rest of the file system with something else.
    let filler = mnt.join("filler");
    let _ = std::fs::write(&filler, vec![b'x'; 128 << 10]);
    let err = store
        .save_hard_state(&HardState {
            term: Term(4),
            voted_for: None,
            commit: LogIndex(0),
            repair: None,
        })
        .unwrap_err();
    let msg = err.to_string();
    println!("metadata on a full disk: {msg}");
    assert!(
        msg.contains("metadata.txt.tmp") && msg.contains("No space left on device"),
        "{msg}"
    );
    assert_eq!(
        store.hard_state(),
        old,
        "a failed save must not be reported as the hard state"
    );
    assert_fail_stopped(&mut store, 1);
    drop(store);
    std::fs::remove_file(&filler).unwrap();
    let (_, restored, _) =
        FileStorage::open(&mnt, NodeId(1), FileStorageOptions::default()).unwrap();
    assert_eq!(
        restored.hard_state, old,
        "the old metadata.txt must survive a failed replace"
    );
}

#[test]
fn read_only_folder_gives_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let mnt = tmp.path().join("ro");
    let Some(mount) = Tmpfs::mount(&mnt, "size=1m") else {
        println!("FALLBACK: mount not permitted; using /proc as a folder nobody can write");
        let err = FileStorage::open(Path::new("/proc"), NodeId(1), FileStorageOptions::default())
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("/proc/logs_node_1: create node folder failed"),
            "{err}"
        );
        return;
    };
    // A node folder that exists, then the file system turns read-only.
    let (mut store, _, _) =
        FileStorage::open(&mnt, NodeId(1), FileStorageOptions::default()).unwrap();
    store.append(&[entry(1, 1)]).unwrap();
    store.sync().unwrap();
    drop(store);
    assert!(mount.remount("remount,ro"), "remount read-only");
    let err = FileStorage::open(&mnt, NodeId(1), FileStorageOptions::default()).unwrap_err();
    let msg = err.to_string();
    println!("read-only node folder: {msg}");
    assert!(
        msg.contains("logs_node_1/LOCK: open failed") && msg.contains("Read-only file system"),
        "{msg}"
    );

    // An unwritable parent: the node folder cannot even be created.
    let err = FileStorage::open(&mnt, NodeId(2), FileStorageOptions::default()).unwrap_err();
    let msg = err.to_string();
    println!("read-only data dir: {msg}");
    assert!(
        msg.contains("logs_node_2: create node folder failed")
            && msg.contains("Read-only file system"),
        "{msg}"
    );
}
