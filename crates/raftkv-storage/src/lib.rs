//! # raftkv-storage
//!
//! Each node keeps its state in a folder a person can read:
//! `<data_dir>/logs_node_<id>/` with `logs.txt` (the Raft log after the
//! snapshot, one checksummed line per entry), `snapshot.txt` (the latest
//! snapshot, one checksummed line per item; replaced atomically),
//! `metadata.txt` (term, vote, commit; replaced atomically), `dump.txt` (the
//! event trace) and `LOCK`. See docs/storage.md.
//!
//! - [`Storage`]: the contract, implemented by [`FileStorage`] and by the
//!   simulator's [`MemStorage`]; `conformance` (with the `conformance`
//!   feature, for tests) is the one suite both pass.
//! - [`persist_ready`]: writes a core `Ready` in a crash-safe order.
//! - [`DumpLog`]: the buffered, rotated `dump.txt` writer.
//! - [`escape`], [`line`](mod@line) and [`snapfile`]: the text formats.

#[cfg(feature = "conformance")]
pub mod conformance;
pub mod dump;
mod error;
pub mod escape;
pub mod fd_retry;
mod file;
pub mod identity;
pub mod line;
mod lock;
mod mem;
pub mod metadata;
pub mod recovery;
pub mod snapfile;
mod storage;

pub use dump::{event_level, DumpLevel, DumpLog, DumpOptions};
pub use error::StorageError;
pub use file::{
    node_dir_name, FileStorage, FileStorageOptions, FinishedCut, OpenReport, PreparedSnapshot,
    TornTail, LOG_FILE, LOG_TMP_FILE,
};
pub use lock::LOCK_FILE;
pub use mem::{DiskFault, MemStorage};
pub use snapfile::{SNAPSHOT_FILE, SNAPSHOT_TMP_FILE};
pub use storage::{
    persist_readies_with, persist_ready, persist_ready_with, recovered_hard_state,
    saved_compactions, sync_readies, write_readies, BackgroundSnapshots, PersistOptions, Storage,
    Written, DEFAULT_COMMIT_SAVE_INTERVAL,
};
