//! Storage errors. Each one names the file (and line, where there is one) and
//! says what is wrong, so an operator can act on the message alone.

use std::io;
use std::path::PathBuf;

use raftkv_core::{LogIndex, Term};

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A system call failed.
    #[error("{path}: {op} failed: {source}")]
    Io {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: io::Error,
    },
    /// A line of `logs.txt` or `metadata.txt` that cannot be trusted. The node
    /// refuses to start: see docs/storage.md, "Recovery", for what to do.
    #[error("{file}:{line}: {reason}")]
    Corrupt {
        file: PathBuf,
        line: u64,
        reason: String,
    },
    /// The stored state contradicts itself across files.
    #[error("{file}: {reason}")]
    Inconsistent { file: PathBuf, reason: String },
    /// Another process (or another handle in this process) holds the node
    /// folder.
    #[error("{dir}: node folder is locked by another process or handle ({holder})")]
    Locked { dir: PathBuf, holder: String },
    /// The data directory does not exist. It is not created on purpose: a
    /// mistyped flag must not start an empty node somewhere else.
    #[error("{path}: data directory does not exist")]
    DataDirMissing { path: PathBuf },
    /// An append that would leave a hole in the log.
    #[error("append starting at index {first} would leave a gap: the last index is {last}")]
    Gap { first: LogIndex, last: LogIndex },
    /// An append whose entries are not consecutive or whose terms decrease.
    #[error("entry at index {index} (term {term}) does not follow index {prev_index} (term {prev_term})")]
    BadSequence {
        index: LogIndex,
        term: Term,
        prev_index: LogIndex,
        prev_term: Term,
    },
    /// An append at or below the snapshot index: those entries are
    /// compacted into the snapshot.
    #[error(
        "append starting at index {first} is covered by the snapshot at index {snapshot_index}"
    )]
    Compacted {
        first: LogIndex,
        snapshot_index: LogIndex,
    },
    /// A read outside the stored log.
    #[error("entries {lo}..={hi} requested but the log holds {first}..={last}")]
    OutOfRange {
        lo: LogIndex,
        hi: LogIndex,
        first: LogIndex,
        last: LogIndex,
    },
    /// A snapshot that contradicts the log (see `Storage::save_snapshot`).
    #[error("snapshot at index {index} refused: {reason}")]
    SnapshotRejected { index: LogIndex, reason: String },
    /// A value that cannot be encoded (for example a key or value too large).
    #[error("cannot store entry {index}: {reason}")]
    Unencodable { index: LogIndex, reason: String },
    /// An earlier write or sync failed; what reached the disk is unknown, so
    /// the store accepts nothing more (fail-stop, as etcd after an fsync
    /// error). Restart the process: recovery will find out what is durable.
    #[error("{dir}: storage stopped after an earlier failure ({cause}); restart the node")]
    FailStopped { dir: PathBuf, cause: String },
}

impl StorageError {
    pub(crate) fn io(
        path: impl Into<PathBuf>,
        op: &'static str,
        source: io::Error,
    ) -> StorageError {
        StorageError::Io {
            path: path.into(),
            op,
            source,
        }
    }
}
