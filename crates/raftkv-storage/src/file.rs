//! [`FileStorage`]: the node's log and hard state as text files in
//! `<data_dir>/logs_node_<id>/`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, ErrorKind};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use raftkv_core::{
    Entry, HardState, LogIndex, NodeId, Restored, Snapshot, SnapshotMeta, SnapshotWrite, Term,
};

use crate::error::StorageError;
use crate::lock::DirLock;
use crate::storage::{check_append, recovered_hard_state, Storage};
use crate::{dump, line, metadata};

pub const LOG_FILE: &str = "logs.txt";

/// The name of a node's folder under the data directory.
pub fn node_dir_name(node_id: NodeId) -> String {
    format!("logs_node_{node_id}")
}

#[derive(Clone, Debug, Default)]
pub struct FileStorageOptions {
    /// Test hook: the log file behaves as if the disk filled up after this
    /// many more bytes (the write that crosses it writes a part, then fails
    /// with ENOSPC). Used where a small tmpfs cannot be mounted.
    #[doc(hidden)]
    pub inject_enospc_after_bytes: Option<u64>,
}

/// What recovery found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OpenReport {
    /// The node folder was created by this open.
    pub created: bool,
    pub entries: u64,
    pub log_bytes: u64,
    /// A torn final line that was cut off.
    pub torn_tail: Option<TornTail>,
    /// Set when the log's last term was above `metadata.txt`'s term and the
    /// reported current term was raised to it (from this value).
    pub term_raised_from: Option<Term>,
    pub open_time: Duration,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornTail {
    /// 1-based line number of the cut line.
    pub line: u64,
    /// Byte offset the file was truncated to.
    pub offset: u64,
    pub bytes_cut: u64,
    pub reason: String,
}

impl std::fmt::Display for TornTail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "recovery: cut torn final line {} of {LOG_FILE} ({} bytes from offset {}): {}",
            self.line, self.bytes_cut, self.offset, self.reason
        )
    }
}

pub struct FileStorage {
    dir: PathBuf,
    log_path: PathBuf,
    log: File,
    /// `offsets[i]` is the byte offset of the line of index `i + 1`.
    offsets: Vec<u64>,
    /// `terms[i]` is the term of index `i + 1`.
    terms: Vec<Term>,
    /// Bytes of whole lines written; the file is exactly this long.
    log_bytes: u64,
    unsynced: bool,
    hard_state: HardState,
    /// Reused encode buffer: one `pwrite` per append batch.
    buf: Vec<u8>,
    /// Why the store stopped; once set, nothing more is written.
    failed: Option<String>,
    enospc_after_bytes: Option<u64>,
    _lock: DirLock,
}

impl std::fmt::Debug for FileStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileStorage")
            .field("dir", &self.dir)
            .field("last_index", &self.offsets.len())
            .field("log_bytes", &self.log_bytes)
            .field("hard_state", &self.hard_state)
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

impl FileStorage {
    /// Opens (creating if missing) `<data_dir>/logs_node_<id>/`, takes its lock,
    /// validates and recovers. `data_dir` itself must exist.
    pub fn open(
        data_dir: &Path,
        node_id: NodeId,
        opts: FileStorageOptions,
    ) -> Result<(FileStorage, Restored, OpenReport), StorageError> {
        let started = Instant::now();
        let mut report = OpenReport::default();
        let dir = data_dir.join(node_dir_name(node_id));
        report.created = create_node_dir(data_dir, &dir)?;
        let lock = DirLock::acquire(&dir)?;
        remove_if_exists(&dir.join(metadata::METADATA_TMP_FILE))?;
        let stored_hs = metadata::read(&dir)?;

        let log_path = dir.join(LOG_FILE);
        let log_existed = log_path.exists();
        let log = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&log_path)
            .map_err(|e| StorageError::io(&log_path, "open", e))?;
        if !log_existed {
            // The new name must be durable before any entry synced into it is.
            metadata::sync_dir(&dir)?;
        }
        let scan = scan_log(&log, &log_path)?;
        let last_index = LogIndex(scan.entries.len() as u64);
        let last_term = scan.entries.last().map_or(Term(0), |e| e.term);

        let hard_state = match stored_hs {
            Some(hs) => hs,
            None if scan.entries.is_empty() && scan.torn.is_none() => {
                metadata::write(&dir, &HardState::default())?;
                HardState::default()
            }
            None => {
                return Err(StorageError::Inconsistent {
                    file: dir.join(metadata::METADATA_FILE),
                    reason: format!(
                        "missing, but {LOG_FILE} holds {} entries",
                        scan.entries.len()
                    ),
                })
            }
        };
        if hard_state.commit > last_index {
            return Err(StorageError::Inconsistent {
                file: log_path,
                reason: format!(
                    "{} says commit {} but the log ends at index {last_index}: committed entries are missing",
                    metadata::METADATA_FILE,
                    hard_state.commit
                ),
            });
        }
        if let Some(torn) = &scan.torn {
            cut_torn_tail(&log, &log_path, torn)?;
            tracing::warn!(dir = %dir.display(), "{torn}");
            // Best effort: the cut is also in the report, and a full disk
            // must not keep the node from starting.
            if let Err(e) = dump::append_now(&dir, node_id, hard_state.term, torn) {
                tracing::warn!("could not record the cut in dump.txt: {e}");
            }
        }
        let restored_hs = recovered_hard_state(hard_state, last_term);
        if restored_hs.term != hard_state.term {
            report.term_raised_from = Some(hard_state.term);
        }
        report.entries = last_index.0;
        report.log_bytes = scan.log_bytes;
        report.torn_tail = scan.torn;
        report.open_time = started.elapsed();
        let storage = FileStorage {
            dir,
            log_path,
            log,
            offsets: scan.offsets,
            terms: scan.entries.iter().map(|e| e.term).collect(),
            log_bytes: scan.log_bytes,
            unsynced: false,
            hard_state,
            buf: Vec::with_capacity(64 << 10),
            failed: None,
            enospc_after_bytes: opts.inject_enospc_after_bytes,
            _lock: lock,
        };
        Ok((
            storage,
            Restored {
                hard_state: restored_hs,
                snapshot: None,
                entries: scan.entries,
            },
            report,
        ))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Bytes of `logs.txt` (whole lines written, synced or not).
    pub fn log_bytes(&self) -> u64 {
        self.log_bytes
    }

    /// Why the store stopped, if it did.
    pub fn failure(&self) -> Option<&str> {
        self.failed.as_deref()
    }

    fn check_running(&self) -> Result<(), StorageError> {
        match &self.failed {
            Some(cause) => Err(StorageError::FailStopped {
                dir: self.dir.clone(),
                cause: cause.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Records the failure (fail-stop) and passes the error on.
    fn stop(&mut self, err: StorageError) -> StorageError {
        tracing::error!(dir = %self.dir.display(), "storage stops: {err}");
        self.failed = Some(err.to_string());
        err
    }

    fn truncate_from(&mut self, from: LogIndex) -> Result<(), StorageError> {
        let keep = from.0 as usize - 1;
        let offset = self.offsets[keep];
        if let Err(e) = self.log.set_len(offset) {
            return Err(self.stop(StorageError::io(&self.log_path, "truncate", e)));
        }
        self.offsets.truncate(keep);
        self.terms.truncate(keep);
        self.log_bytes = offset;
        self.unsynced = true;
        Ok(())
    }

    fn write_at_end(&mut self) -> Result<(), StorageError> {
        let result = match self.enospc_after_bytes {
            Some(room) if room < self.buf.len() as u64 => {
                let part = &self.buf[..room as usize];
                self.enospc_after_bytes = Some(0);
                self.log
                    .write_all_at(part, self.log_bytes)
                    .and(Err(io::Error::from_raw_os_error(28 /* ENOSPC */)))
            }
            Some(room) => {
                self.enospc_after_bytes = Some(room - self.buf.len() as u64);
                self.log.write_all_at(&self.buf, self.log_bytes)
            }
            None => self.log.write_all_at(&self.buf, self.log_bytes),
        };
        result.map_err(|e| self.stop(StorageError::io(&self.log_path, "write", e)))
    }
}

impl Storage for FileStorage {
    fn append(&mut self, entries: &[Entry]) -> Result<(), StorageError> {
        self.check_running()?;
        check_append(entries, (LogIndex(0), Term(0)), self.last_index(), |i| {
            self.terms[i.0 as usize - 1]
        })?;
        let Some(first) = entries.first() else {
            return Ok(());
        };
        if first.index <= self.last_index() {
            self.truncate_from(first.index)?;
        }
        self.buf.clear();
        let first_new = self.offsets.len();
        for e in entries {
            self.offsets.push(self.log_bytes + self.buf.len() as u64);
            self.terms.push(e.term);
            line::encode_into(e, &mut self.buf);
        }
        if let Err(e) = self.write_at_end() {
            self.offsets.truncate(first_new);
            self.terms.truncate(first_new);
            return Err(e);
        }
        self.log_bytes += self.buf.len() as u64;
        self.unsynced = true;
        if self.buf.capacity() > 16 << 20 {
            self.buf = Vec::with_capacity(64 << 10);
        }
        Ok(())
    }

    fn sync(&mut self) -> Result<(), StorageError> {
        self.check_running()?;
        if self.unsynced {
            // fdatasync: the data and the file size, not the timestamps.
            if let Err(e) = self.log.sync_data() {
                return Err(self.stop(StorageError::io(&self.log_path, "fdatasync", e)));
            }
            self.unsynced = false;
        }
        Ok(())
    }

    fn save_hard_state(&mut self, hs: &HardState) -> Result<(), StorageError> {
        self.check_running()?;
        if let Err(e) = metadata::write(&self.dir, hs) {
            return Err(self.stop(e));
        }
        self.hard_state = *hs;
        Ok(())
    }

    fn hard_state(&self) -> HardState {
        self.hard_state
    }

    fn save_snapshot(&mut self, write: &SnapshotWrite) -> Result<(), StorageError> {
        self.check_running()?;
        // snapshot.txt comes in the next commit; until then refuse rather
        // than pretend (fail-stop).
        Err(self.stop(StorageError::SnapshotRejected {
            index: write.snapshot.meta.index,
            reason: "this build of FileStorage cannot store snapshots yet".into(),
        }))
    }

    fn snapshot_meta(&self) -> Option<&SnapshotMeta> {
        None
    }

    fn snapshot(&self) -> Result<Option<Snapshot>, StorageError> {
        Ok(None)
    }

    fn last_index(&self) -> LogIndex {
        LogIndex(self.offsets.len() as u64)
    }

    fn last_term(&self) -> Term {
        self.terms.last().copied().unwrap_or(Term(0))
    }

    fn entries(&self, lo: LogIndex, hi: LogIndex) -> Result<Vec<Entry>, StorageError> {
        let last = self.last_index();
        if lo.0 == 0 || hi > last || lo > hi.next() {
            return Err(StorageError::OutOfRange {
                lo,
                hi,
                first: LogIndex(1),
                last,
            });
        }
        if lo > hi {
            return Ok(Vec::new());
        }
        let start = self.offsets[lo.0 as usize - 1];
        let end = self
            .offsets
            .get(hi.0 as usize)
            .copied()
            .unwrap_or(self.log_bytes);
        let mut bytes = vec![0u8; (end - start) as usize];
        self.log
            .read_exact_at(&mut bytes, start)
            .map_err(|e| StorageError::io(&self.log_path, "read", e))?;
        let mut out = Vec::with_capacity((hi.0 - lo.0 + 1) as usize);
        for (i, text) in bytes
            .split(|&b| b == b'\n')
            .take((hi.0 - lo.0 + 1) as usize)
            .enumerate()
        {
            let index = LogIndex(lo.0 + i as u64);
            let corrupt = |reason: String| StorageError::Corrupt {
                file: self.log_path.clone(),
                line: index.0,
                reason,
            };
            let entry = line::decode(text).map_err(corrupt)?;
            if entry.index != index {
                return Err(corrupt(format!(
                    "expected index {index}, found {}",
                    entry.index
                )));
            }
            out.push(entry);
        }
        assert_eq!(
            out.len() as u64,
            hi.0 - lo.0 + 1,
            "offset map out of step with {}",
            self.log_path.display()
        );
        Ok(out)
    }
}

/// Creates the node folder if missing (and makes that durable). Returns
/// whether it was created.
fn create_node_dir(data_dir: &Path, dir: &Path) -> Result<bool, StorageError> {
    match fs::metadata(data_dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(StorageError::io(
                data_dir,
                "open data directory",
                io::Error::from_raw_os_error(20 /* ENOTDIR */),
            ));
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {
            return Err(StorageError::DataDirMissing {
                path: data_dir.to_owned(),
            })
        }
        Err(e) => return Err(StorageError::io(data_dir, "stat data directory", e)),
    }
    match fs::create_dir(dir) {
        Ok(()) => {
            metadata::sync_dir(data_dir)?;
            Ok(true)
        }
        Err(e) if e.kind() == ErrorKind::AlreadyExists && dir.is_dir() => Ok(false),
        Err(e) => Err(StorageError::io(dir, "create node folder", e)),
    }
}

fn remove_if_exists(path: &Path) -> Result<(), StorageError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StorageError::io(path, "remove", e)),
    }
}

struct Scan {
    entries: Vec<Entry>,
    offsets: Vec<u64>,
    /// Length of the valid prefix.
    log_bytes: u64,
    torn: Option<TornTail>,
}

/// Reads and validates the whole log: every line's checksum, consecutive
/// indexes from 1, non-decreasing terms. Only the final line may be bad (a
/// torn append); anything else is an error naming the line.
fn scan_log(log: &File, path: &Path) -> Result<Scan, StorageError> {
    let file_len = log
        .metadata()
        .map_err(|e| StorageError::io(path, "stat", e))?
        .len();
    let mut reader = BufReader::with_capacity(1 << 20, log);
    let mut scan = Scan {
        entries: Vec::new(),
        offsets: Vec::new(),
        log_bytes: 0,
        torn: None,
    };
    let mut text = Vec::with_capacity(256);
    let mut prev_term = Term(0);
    loop {
        text.clear();
        let n = reader
            .read_until(b'\n', &mut text)
            .map_err(|e| StorageError::io(path, "read", e))? as u64;
        if n == 0 {
            break;
        }
        let line_no = scan.entries.len() as u64 + 1;
        let at_end = scan.log_bytes + n == file_len;
        let torn = |reason: String| TornTail {
            line: line_no,
            offset: scan.log_bytes,
            bytes_cut: file_len - scan.log_bytes,
            reason,
        };
        if text.last() != Some(&b'\n') {
            scan.torn = Some(torn("no trailing newline".into()));
            break;
        }
        let entry = match line::decode(&text[..text.len() - 1]) {
            Ok(e) => e,
            Err(reason) if at_end => {
                scan.torn = Some(torn(reason));
                break;
            }
            Err(reason) => {
                return Err(StorageError::Corrupt {
                    file: path.to_owned(),
                    line: line_no,
                    reason,
                })
            }
        };
        if entry.index.0 != line_no || entry.term < prev_term {
            let reason = format!(
                "entry index {} term {} does not follow index {} term {prev_term} (expected consecutive indexes from 1, non-decreasing terms)",
                entry.index,
                entry.term,
                line_no - 1
            );
            return Err(StorageError::Corrupt {
                file: path.to_owned(),
                line: line_no,
                reason,
            });
        }
        prev_term = entry.term;
        scan.offsets.push(scan.log_bytes);
        scan.entries.push(entry);
        scan.log_bytes += n;
    }
    Ok(scan)
}

fn cut_torn_tail(log: &File, path: &Path, torn: &TornTail) -> Result<(), StorageError> {
    log.set_len(torn.offset)
        .map_err(|e| StorageError::io(path, "truncate torn tail", e))?;
    log.sync_data()
        .map_err(|e| StorageError::io(path, "fdatasync", e))
}
