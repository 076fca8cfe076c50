//! The one conformance suite, run against both implementations.

use std::path::PathBuf;

use raftkv_core::{NodeId, Restored, SnapshotWrite};
use raftkv_storage::conformance::{run_all, StorageFactory};
use raftkv_storage::{
    snapfile, FileStorage, FileStorageOptions, MemStorage, StorageError, SNAPSHOT_FILE,
};

struct MemFactory;

impl StorageFactory for MemFactory {
    type S = MemStorage;
    fn create(&mut self) -> MemStorage {
        MemStorage::new()
    }
    fn reopen(&mut self, mut s: MemStorage) -> (MemStorage, Restored) {
        // A clean restart of the model is a crash after everything was synced.
        s.crash();
        let r = s.restored();
        (s, r)
    }
    fn crash(&mut self, mut s: MemStorage) -> (MemStorage, Restored) {
        s.crash();
        let r = s.restored();
        (s, r)
    }
    fn crash_loses_unsynced(&self) -> bool {
        true
    }
}

struct FileFactory {
    root: tempfile::TempDir,
    made: u32,
}

impl FileFactory {
    fn open(data_dir: PathBuf) -> (FileStorage, Restored) {
        let (s, r, _) =
            FileStorage::open(&data_dir, NodeId(1), FileStorageOptions::default()).expect("open");
        (s, r)
    }
}

impl StorageFactory for FileFactory {
    type S = FileStorage;
    fn create(&mut self) -> FileStorage {
        self.made += 1;
        let data_dir = self.root.path().join(format!("store{}", self.made));
        std::fs::create_dir(&data_dir).unwrap();
        Self::open(data_dir).0
    }
    fn reopen(&mut self, s: FileStorage) -> (FileStorage, Restored) {
        let data_dir = s.dir().parent().unwrap().to_owned();
        drop(s);
        Self::open(data_dir)
    }
    fn crash(&mut self, s: FileStorage) -> (FileStorage, Restored) {
        // Dropping without sync is what a killed process leaves behind.
        self.reopen(s)
    }
    fn crash_loses_unsynced(&self) -> bool {
        false
    }
    fn crash_during_snapshot(
        &mut self,
        s: FileStorage,
        write: &SnapshotWrite,
    ) -> (FileStorage, Restored) {
        // The snapshot's rename happened, the log cut did not.
        snapfile::write(s.dir(), &write.snapshot).unwrap();
        self.crash(s)
    }
    fn damage_snapshot(&mut self, s: FileStorage, line: u64) -> Option<StorageError> {
        let data_dir = s.dir().parent().unwrap().to_owned();
        let path = s.dir().join(SNAPSHOT_FILE);
        drop(s);
        let mut bytes = std::fs::read(&path).unwrap();
        let start = bytes
            .split_inclusive(|&b| b == b'\n')
            .take(line as usize - 1)
            .map(|l| l.len())
            .sum::<usize>();
        bytes[start + 2] ^= 0x20;
        std::fs::write(&path, bytes).unwrap();
        let err = FileStorage::open(&data_dir, NodeId(1), FileStorageOptions::default()).err();
        Some(err.expect("a damaged snapshot.txt was accepted"))
    }
}

#[test]
fn mem_storage_conforms() {
    run_all(&mut MemFactory);
}

#[test]
fn file_storage_conforms() {
    run_all(&mut FileFactory {
        root: tempfile::tempdir().unwrap(),
        made: 0,
    });
}

#[test]
fn mem_crash_loses_exactly_the_unsynced() {
    use raftkv_storage::conformance::entries;
    use raftkv_storage::Storage;
    let mut s = MemStorage::new();
    s.append(&entries(1, 5, 1)).unwrap();
    s.sync().unwrap();
    s.append(&entries(6, 8, 1)).unwrap();
    s.append(&entries(3, 4, 2)).unwrap();
    assert!(s.has_unsynced());
    s.crash();
    assert_eq!(s.restored().entries, entries(1, 5, 1));
    assert_eq!(
        s.entries(raftkv_core::LogIndex(1), s.last_index()).unwrap(),
        entries(1, 5, 1)
    );
    s.append(&entries(6, 6, 1)).unwrap();
    s.sync().unwrap();
    s.crash();
    assert_eq!(s.restored().entries, entries(1, 6, 1));
    assert_eq!(s.sync_count(), 2);
}
