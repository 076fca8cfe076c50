//! [`FileStorage`]: the node's log and hard state as text files in
//! `<data_dir>/logs_node_<id>/`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, ErrorKind};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use raftkv_core::{
    Entry, HardState, LogIndex, NodeId, Restored, Snapshot, SnapshotMeta, SnapshotOrigin,
    SnapshotWrite, Term,
};

use crate::error::StorageError;
use crate::lock::DirLock;
use crate::recovery::{self, Damage, LogFindings, RecoveryOptions, RepairPlan};
use crate::snapfile::{self, SNAPSHOT_FILE, SNAPSHOT_TMP_FILE};
use crate::storage::{
    check_append, plan_snapshot, recovered_hard_state, BackgroundSnapshots, SnapshotPlan, Storage,
};
use crate::{dump, fd_retry, line, metadata};

pub const LOG_FILE: &str = "logs.txt";
/// The kept tail of `logs.txt` while a log cut writes it.
pub const LOG_TMP_FILE: &str = "logs.txt.tmp";

/// The byte that pads `logs.txt` past its last entry: the padding reads as
/// empty lines, and an entry line is never empty.
const PADDING: u8 = b'\n';

/// How far past the last entry `logs.txt` is padded when it has to grow. An
/// `fdatasync` that does not change the file's size need not commit the
/// size to the file system's journal: on this project's test machine 120
/// against 190 us (docs/storage.md, "Preallocation").
const PREALLOC_BYTES: u64 = 4 << 20;

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
    /// Negative controls (see [`RecoveryOptions`]); never set in a server.
    #[doc(hidden)]
    pub recovery: RecoveryOptions,
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
    /// The log may be shorter than what this node acknowledged: the repair
    /// planned (the floor is also in the restored hard state).
    pub repair: Option<RepairPlan>,
    /// Set when the log's last term was above `metadata.txt`'s term and the
    /// reported current term was raised to it (from this value).
    pub term_raised_from: Option<Term>,
    /// The snapshot loaded from `snapshot.txt` (index 0: none).
    pub snapshot_index: LogIndex,
    pub snapshot_keys: u64,
    pub snapshot_bytes: u64,
    pub snapshot_load_time: Duration,
    /// A crash came between writing `snapshot.txt` and cutting `logs.txt`;
    /// the cut was finished by this open.
    pub finished_cut: Option<FinishedCut>,
    pub open_time: Duration,
}

/// What an open did to finish a log cut a crash interrupted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FinishedCut {
    pub snapshot_index: LogIndex,
    /// Entries of `logs.txt` dropped: those the snapshot covers, and the
    /// ones after it when the log's entry at the snapshot index had another
    /// term (an installed snapshot that replaced a conflicting log).
    pub dropped: u64,
    /// Entries kept after the snapshot.
    pub kept: u64,
}

impl std::fmt::Display for FinishedCut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "recovery: {LOG_FILE} still held entries covered by {SNAPSHOT_FILE} (index {}): a crash came before the log cut; finished it ({} entries dropped, {} kept)",
            self.snapshot_index, self.dropped, self.kept
        )
    }
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

/// A snapshot written and fsynced under a temporary name by
/// [`FileStorage::prepare_snapshot`], waiting for
/// [`FileStorage::commit_snapshot`].
#[derive(Debug)]
pub struct PreparedSnapshot {
    meta: SnapshotMeta,
    origin: SnapshotOrigin,
    tmp_name: String,
    stats: snapfile::WriteStats,
}

impl PreparedSnapshot {
    pub fn meta(&self) -> &SnapshotMeta {
        &self.meta
    }
    /// Bytes, keys, and the time writing and fsyncing took.
    pub fn stats(&self) -> snapfile::WriteStats {
        self.stats
    }
}

pub struct FileStorage {
    dir: PathBuf,
    log_path: PathBuf,
    log: File,
    /// The stored snapshot's meta (`snapshot.txt`); the data stays on disk.
    snapshot: Option<SnapshotMeta>,
    /// `offsets[i]` is the byte offset of the line of index
    /// `snapshot index + 1 + i`; `logs.txt` starts right after the snapshot.
    offsets: Vec<u64>,
    /// `terms[i]` is the term of index `snapshot index + 1 + i`.
    terms: Vec<Term>,
    /// Bytes of whole lines written. The file may be longer: after them
    /// comes preallocated padding (empty lines) up to `file_len`.
    log_bytes: u64,
    /// The file's length: `log_bytes` plus padding.
    file_len: u64,
    /// Set when preallocation failed (a nearly full disk).
    prealloc_off: bool,
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
            .field("snapshot_index", &self.snap_index())
            .field("last_index", &self.last_index())
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

        // Plan first: read and check everything, change nothing. A refusal
        // leaves the folder exactly as it was.
        let stored_hs = metadata::read(&dir)?;
        let snap_started = Instant::now();
        let snapshot = snapfile::read(&dir)?;
        if let Some(snap) = &snapshot {
            report.snapshot_index = snap.meta.index;
            report.snapshot_keys = snap.data.len() as u64;
            report.snapshot_bytes = fs::metadata(dir.join(SNAPSHOT_FILE))
                .map(|m| m.len())
                .unwrap_or(0);
            report.snapshot_load_time = snap_started.elapsed();
        }
        let (snap_index, snap_term) = snapshot
            .as_ref()
            .map_or((LogIndex(0), Term(0)), |s| (s.meta.index, s.meta.term));

        let log_path = dir.join(LOG_FILE);
        let log_existed = log_path.exists();
        let mut scan = if log_existed {
            let log = File::open(&log_path).map_err(|e| StorageError::io(&log_path, "open", e))?;
            scan_log(&log, &log_path, snap_index)?
        } else {
            Scan::default()
        };

        let fresh = stored_hs.is_none()
            && scan.entries.is_empty()
            && scan.torn.is_none()
            && scan.damage.is_none()
            && snapshot.is_none();
        let hard_state = match stored_hs {
            Some(hs) => hs,
            None if fresh => HardState::default(),
            None => {
                return Err(StorageError::Inconsistent {
                    file: dir.join(metadata::METADATA_FILE),
                    reason: format!(
                        "missing, but {LOG_FILE} holds {} entries{}",
                        scan.entries.len(),
                        if snapshot.is_some() {
                            format!(" and {SNAPSHOT_FILE} exists")
                        } else {
                            String::new()
                        }
                    ),
                })
            }
        };
        if let (Some(d), true) = (&scan.damage, opts.recovery.unsafe_cut_damaged_tail) {
            // Negative control: the damaged lines go as if torn.
            scan.torn = Some(TornTail {
                line: d.first_line,
                offset: scan.log_bytes,
                bytes_cut: scan.file_len - scan.log_bytes,
                reason: format!("(unsafe) {}", d.reason),
            });
        }

        // The log must start right after the snapshot. If it starts at or
        // before it, a crash came between the snapshot's rename and the log
        // cut: finish the cut (see docs/storage.md, "Compaction").
        let mut cut_from: Option<usize> = None;
        if let Some(first) = scan.entries.first().map(|e| e.index) {
            if first > snap_index.next() {
                return Err(StorageError::Inconsistent {
                    file: log_path,
                    reason: format!(
                        "starts at index {first}, but {} ends at index {snap_index}: entries {}..={} are missing",
                        if snapshot.is_some() { SNAPSHOT_FILE } else { "the log (no snapshot.txt)" },
                        snap_index.next(),
                        first.prev()
                    ),
                });
            }
            if first <= snap_index {
                let at = (snap_index.0 - first.0) as usize;
                let keep = scan.entries.get(at).is_some_and(|e| e.term == snap_term);
                let p = if keep { at + 1 } else { scan.entries.len() };
                report.finished_cut = Some(FinishedCut {
                    snapshot_index: snap_index,
                    dropped: p as u64,
                    kept: (scan.entries.len() - p) as u64,
                });
                cut_from = Some(p);
            }
        }
        if let Some(e) = scan.entries.get(cut_from.unwrap_or(0)) {
            if e.term < snap_term {
                return Err(StorageError::Inconsistent {
                    file: log_path,
                    reason: format!(
                        "entry {} has term {}, below the term {snap_term} of {SNAPSHOT_FILE} (index {snap_index})",
                        e.index, e.term
                    ),
                });
            }
        }
        let intact_last = match cut_from {
            Some(p) if p == scan.entries.len() => snap_index,
            _ => scan.entries.last().map_or(snap_index, |e| e.index),
        };
        let last_term = match cut_from {
            Some(p) if p == scan.entries.len() => snap_term,
            _ => scan.entries.last().map_or(snap_term, |e| e.term),
        };
        let findings = LogFindings {
            file_present: log_existed,
            file_empty: log_existed && scan.file_len == 0,
            intact_last,
            damage: scan.damage.clone(),
        };
        let repair = if fresh {
            None
        } else {
            // With the term raised to the intact log's last term (the
            // restart rule), so a floor's term bounds every entry's.
            let hs = recovered_hard_state(hard_state, last_term);
            recovery::plan_repair(&hs, snapshot.is_some(), &findings, opts.recovery)
        };

        // Act: nothing below refuses.
        // Leftovers of a crash during an atomic replace: the real file is
        // the old or the new version, whole.
        for tmp in [metadata::METADATA_TMP_FILE, SNAPSHOT_TMP_FILE, LOG_TMP_FILE] {
            remove_if_exists(&dir.join(tmp))?;
        }
        // Prepared snapshots (`snapshot.txt.<index>.tmp`) never committed.
        for e in fs::read_dir(&dir).map_err(|e| StorageError::io(&dir, "list", e))? {
            let e = e.map_err(|e| StorageError::io(&dir, "list", e))?;
            if e.file_name().to_str().is_some_and(snapfile::is_tmp_name) {
                remove_if_exists(&e.path())?;
            }
        }
        let mut hard_state = hard_state;
        if fresh {
            metadata::write(&dir, &hard_state)?;
        }
        // The floor is durable before any evidence of the damage goes: a
        // crash from here on finds it and plans the same repair.
        if let Some(plan) = &repair {
            if hard_state.repair != Some(plan.floor) {
                hard_state.repair = Some(plan.floor);
                metadata::write(&dir, &hard_state)?;
            }
            tracing::warn!(dir = %dir.display(), "{plan}");
            if let Err(e) = dump::append_now(&dir, node_id, hard_state.term, plan) {
                tracing::warn!("could not record the repair in dump.txt: {e}");
            }
        }
        let log = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&log_path)
            .map_err(|e| StorageError::io(&log_path, "open", e))?;
        if !log_existed {
            // A new log starts with one byte of padding, so that an emptied
            // file (zero bytes) is told from a new one. The name must be
            // durable before any entry synced into it is.
            log.write_all_at(&[PADDING], 0)
                .and_then(|()| log.sync_data())
                .map_err(|e| StorageError::io(&log_path, "write", e))?;
            metadata::sync_dir(&dir)?;
            scan.file_len = 1;
        }
        if let Some(d) = &scan.damage {
            // Damaged lines that may have been synced: the floor above
            // remembers them; the lines go so that appends follow the
            // intact prefix.
            if !opts.recovery.unsafe_cut_damaged_tail {
                cut_tail(&log, &log_path, scan.log_bytes)?;
                tracing::warn!(dir = %dir.display(), "recovery: cut {LOG_FILE} after line {} (index {}): damaged lines from there are held by the vote floor", d.first_line - 1, d.first_index.prev());
            }
        }
        if let Some(torn) = &scan.torn {
            cut_tail(&log, &log_path, torn.offset)?;
            tracing::warn!(dir = %dir.display(), "{torn}");
            // Best effort: the cut is also in the report, and a full disk
            // must not keep the node from starting.
            if let Err(e) = dump::append_now(&dir, node_id, hard_state.term, torn) {
                tracing::warn!("could not record the cut in dump.txt: {e}");
            }
        }
        if let Some(cut) = &report.finished_cut {
            tracing::warn!(dir = %dir.display(), "{cut}");
            if let Err(e) = dump::append_now(&dir, node_id, hard_state.term, cut) {
                tracing::warn!("could not record the cut in dump.txt: {e}");
            }
        }
        // `offsets` and `terms` describe the whole file until `cut_log`.
        let terms: Vec<Term> = scan.entries.iter().map(|e| e.term).collect();
        if let Some(p) = cut_from {
            scan.entries.drain(..p);
        }
        let restored_hs = recovered_hard_state(hard_state, last_term);
        if restored_hs.term != hard_state.term {
            report.term_raised_from = Some(hard_state.term);
        }
        // A torn tail or damage was cut, padding and all.
        let file_len = if scan.torn.is_some() || scan.damage.is_some() {
            scan.log_bytes
        } else {
            scan.file_len
        };
        report.entries = scan.entries.len() as u64;
        report.log_bytes = scan.log_bytes;
        report.torn_tail = scan.torn;
        report.repair = repair;
        let mut storage = FileStorage {
            dir,
            log_path,
            log,
            snapshot: snapshot.as_ref().map(|s| s.meta.clone()),
            terms,
            offsets: scan.offsets,
            log_bytes: scan.log_bytes,
            file_len,
            prealloc_off: false,
            unsynced: false,
            hard_state,
            buf: Vec::with_capacity(64 << 10),
            failed: None,
            enospc_after_bytes: opts.inject_enospc_after_bytes,
            _lock: lock,
        };
        if let Some(p) = cut_from {
            storage.cut_log(p)?;
            report.log_bytes = storage.log_bytes;
        }
        report.open_time = started.elapsed();
        Ok((
            storage,
            Restored {
                hard_state: restored_hs,
                snapshot,
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

    /// Step one of [`Storage::save_snapshot`], which may run on another
    /// thread while the store keeps appending (the core allows a
    /// `Compaction` snapshot to be written in the background): writes the
    /// snapshot to `snapshot.txt.<index>.tmp` in the node folder `dir`
    /// ([`FileStorage::dir`]) and fsyncs it. Nothing the store reads changes.
    pub fn prepare_snapshot(
        dir: &Path,
        write: &SnapshotWrite,
    ) -> Result<PreparedSnapshot, StorageError> {
        let tmp_name = snapfile::prepared_name(write.snapshot.meta.index);
        let stats = snapfile::write_tmp(dir, &tmp_name, &write.snapshot)?;
        Ok(PreparedSnapshot {
            meta: write.snapshot.meta.clone(),
            origin: write.origin,
            tmp_name,
            stats,
        })
    }

    /// Step two, on the store: renames the prepared file over
    /// `snapshot.txt` (fsyncing the folder) and cuts `logs.txt` as
    /// [`Storage::save_snapshot`] does; durable when it returns. A prepared
    /// snapshot that is no longer newer than the stored one (an installed
    /// snapshot overtook it) is deleted and ignored.
    pub fn commit_snapshot(&mut self, prepared: PreparedSnapshot) -> Result<(), StorageError> {
        self.check_running()?;
        let tmp = self.dir.join(&prepared.tmp_name);
        let meta = &prepared.meta;
        let plan = plan_snapshot(meta, prepared.origin, self.snap_index(), |i| {
            self.term_of(i)
        });
        let keep_suffix = match plan {
            Ok(SnapshotPlan::Apply { keep_suffix }) => keep_suffix,
            other => {
                remove_if_exists(&tmp)?;
                return other.map(|_| ());
            }
        };
        // 1. snapshot.txt, atomically. From here a crash leaves the new
        //    snapshot, and recovery finishes the cut of step 2.
        if let Err(e) = snapfile::install_tmp(&self.dir, &prepared.tmp_name) {
            return Err(self.stop(e));
        }
        tracing::debug!(
            index = %meta.index,
            keys = prepared.stats.keys,
            bytes = prepared.stats.bytes,
            write_ms = prepared.stats.write_time.as_millis() as u64,
            sync_ms = prepared.stats.sync_time.as_millis() as u64,
            "snapshot.txt written"
        );
        // 2. cut logs.txt to the entries after the snapshot. (`p` counts
        //    from the old snapshot, as `offsets` still does.)
        let p = if keep_suffix {
            self.pos(meta.index.next())
        } else {
            self.offsets.len()
        };
        self.snapshot = Some(prepared.meta);
        self.cut_log(p)
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

    fn snap_index(&self) -> LogIndex {
        self.snapshot.as_ref().map_or(LogIndex(0), |m| m.index)
    }

    fn snap_term(&self) -> Term {
        self.snapshot.as_ref().map_or(Term(0), |m| m.term)
    }

    /// Position of `index` in `offsets` / `terms`.
    fn pos(&self, index: LogIndex) -> usize {
        (index.0 - self.snap_index().0 - 1) as usize
    }

    /// Term of `index` if the log holds it.
    fn term_of(&self, index: LogIndex) -> Option<Term> {
        let p = index.0.checked_sub(self.snap_index().0 + 1)?;
        self.terms.get(p as usize).copied()
    }

    /// Replaces `logs.txt` with its lines from position `p` on (all of them
    /// gone when `p == len`): the kept tail is copied to `logs.txt.tmp`,
    /// fsynced, renamed over `logs.txt`, and the folder fsynced. A crash at
    /// any point leaves the old file or the new one, whole. The unsynced
    /// appends in the tail become durable on the way.
    fn cut_log(&mut self, p: usize) -> Result<(), StorageError> {
        let from = self.offsets.get(p).copied().unwrap_or(self.log_bytes);
        let tmp_path = self.dir.join(LOG_TMP_FILE);
        let result = (|| {
            let tmp = fd_retry::open(
                OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(true),
                &tmp_path,
            )
            .map_err(|e| StorageError::io(&tmp_path, "create", e))?;
            let mut chunk = vec![0u8; (1 << 20).min((self.log_bytes - from) as usize)];
            let mut at = from;
            while at < self.log_bytes {
                let n = chunk.len().min((self.log_bytes - at) as usize);
                self.log
                    .read_exact_at(&mut chunk[..n], at)
                    .map_err(|e| StorageError::io(&self.log_path, "read", e))?;
                tmp.write_all_at(&chunk[..n], at - from)
                    .map_err(|e| StorageError::io(&tmp_path, "write", e))?;
                at += n as u64;
            }
            tmp.sync_all()
                .map_err(|e| StorageError::io(&tmp_path, "fsync", e))?;
            fs::rename(&tmp_path, &self.log_path)
                .map_err(|e| StorageError::io(&self.log_path, "rename logs.txt.tmp over", e))?;
            metadata::sync_dir(&self.dir)?;
            Ok(tmp)
        })();
        match result {
            Ok(tmp) => {
                self.log = tmp;
                self.offsets.drain(..p);
                self.terms.drain(..p);
                for o in &mut self.offsets {
                    *o -= from;
                }
                self.log_bytes -= from;
                self.file_len = self.log_bytes;
                self.unsynced = false;
                Ok(())
            }
            Err(e) => Err(self.stop(e)),
        }
    }

    fn truncate_from(&mut self, from: LogIndex) -> Result<(), StorageError> {
        let keep = self.pos(from);
        let offset = self.offsets[keep];
        // A padding byte first, then the cut: at every step the file reads
        // as the old log, or the kept prefix followed by padding (never as
        // an emptied file, which recovery takes for a lost log).
        let cut = self
            .log
            .write_all_at(&[PADDING], offset)
            .and_then(|()| self.log.set_len(offset + 1));
        if let Err(e) = cut {
            return Err(self.stop(StorageError::io(&self.log_path, "truncate", e)));
        }
        self.offsets.truncate(keep);
        self.terms.truncate(keep);
        self.log_bytes = offset;
        self.file_len = offset + 1;
        self.unsynced = true;
        Ok(())
    }

    /// Pads the file with [`PREALLOC_BYTES`] past where `self.buf` will end,
    /// unless it already reaches that far (not under the ENOSPC test hook).
    /// The padding needs no sync of its own: the next `fdatasync` takes it
    /// along.
    fn preallocate(&mut self) {
        let end = self.log_bytes + self.buf.len() as u64;
        if end <= self.file_len || self.prealloc_off || self.enospc_after_bytes.is_some() {
            return;
        }
        let from = self.file_len.max(end);
        let padding = vec![PADDING; PREALLOC_BYTES as usize];
        match self.log.write_all_at(&padding, from) {
            Ok(()) => self.file_len = from + PREALLOC_BYTES,
            // Only an optimisation: give back what was written of it (a
            // nearly full disk needs the room for entries) and stop trying
            // until the next open. A full disk shows in the entries' write.
            Err(e) => {
                tracing::warn!(path = %self.log_path.display(), "cannot preallocate, going on without: {e}");
                self.prealloc_off = true;
                let _ = self.log.set_len(self.file_len);
            }
        }
    }

    fn write_at_end(&mut self) -> Result<(), StorageError> {
        self.preallocate();
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

impl BackgroundSnapshots for FileStorage {
    type Prepared = PreparedSnapshot;
    /// The node folder: a helper writes `snapshot.txt.<index>.tmp` there.
    type Writer = PathBuf;
    fn snapshot_writer(&self) -> PathBuf {
        self.dir.clone()
    }
    fn prepare_snapshot(
        dir: &PathBuf,
        write: &SnapshotWrite,
    ) -> Result<PreparedSnapshot, StorageError> {
        FileStorage::prepare_snapshot(dir, write)
    }
    fn commit_snapshot(&mut self, prepared: PreparedSnapshot) -> Result<(), StorageError> {
        FileStorage::commit_snapshot(self, prepared)
    }
}

impl Storage for FileStorage {
    fn append(&mut self, entries: &[Entry]) -> Result<(), StorageError> {
        self.check_running()?;
        let snap = (self.snap_index(), self.snap_term());
        check_append(entries, snap, self.last_index(), |i| {
            self.terms[self.pos(i)]
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
        // Decide first: a snapshot that is ignored or refused writes nothing.
        let meta = &write.snapshot.meta;
        if plan_snapshot(meta, write.origin, self.snap_index(), |i| self.term_of(i))?
            == SnapshotPlan::Skip
        {
            return Ok(());
        }
        let prepared = match FileStorage::prepare_snapshot(&self.dir, write) {
            Ok(p) => p,
            Err(e) => return Err(self.stop(e)),
        };
        self.commit_snapshot(prepared)
    }

    fn snapshot_meta(&self) -> Option<&SnapshotMeta> {
        self.snapshot.as_ref()
    }

    fn snapshot(&self) -> Result<Option<Snapshot>, StorageError> {
        snapfile::read(&self.dir)
    }

    fn last_index(&self) -> LogIndex {
        LogIndex(self.snap_index().0 + self.offsets.len() as u64)
    }

    fn last_term(&self) -> Term {
        self.terms.last().copied().unwrap_or(self.snap_term())
    }

    fn entries(&self, lo: LogIndex, hi: LogIndex) -> Result<Vec<Entry>, StorageError> {
        let (first, last) = (self.first_index(), self.last_index());
        if lo < first || hi > last || lo > hi.next() {
            return Err(StorageError::OutOfRange {
                lo,
                hi,
                first,
                last,
            });
        }
        if lo > hi {
            return Ok(Vec::new());
        }
        let start = self.offsets[self.pos(lo)];
        let end = self
            .offsets
            .get(self.pos(hi.next()))
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
                line: self.pos(index) as u64 + 1,
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

#[derive(Default)]
struct Scan {
    /// The intact prefix.
    entries: Vec<Entry>,
    offsets: Vec<u64>,
    /// Length of the intact prefix.
    log_bytes: u64,
    /// The file's length, padding included (before any cut).
    file_len: u64,
    /// A tail that provably never reached the disk whole (no damage).
    torn: Option<TornTail>,
    /// Lines from the end of the intact prefix on that may have been synced
    /// and cannot be read.
    damage: Option<Damage>,
}

/// A bad complete line, until the scan knows whether it is the last.
struct BadLine {
    line: u64,
    offset: u64,
    reason: String,
    unsynced: Option<&'static str>,
}

/// Reads and validates the whole log: every line's checksum, consecutive
/// indexes (from the first line's: after a compaction the log starts after
/// the snapshot), non-decreasing terms. Sorts what is wrong into a torn
/// tail (provably never synced: cut) and damage (maybe synced: repaired,
/// see [`recovery`]); intact lines out of order are refused, naming the
/// line. Reads only.
fn scan_log(log: &File, path: &Path, snap_index: LogIndex) -> Result<Scan, StorageError> {
    let file_len = log
        .metadata()
        .map_err(|e| StorageError::io(path, "stat", e))?
        .len();
    let mut reader = BufReader::with_capacity(1 << 20, log);
    let mut scan = Scan {
        file_len,
        ..Scan::default()
    };
    let mut text = Vec::with_capacity(256);
    let mut prev_term = Term(0);
    let mut line_no = 0u64;
    let mut offset = 0u64;
    // The index of line 1, once an intact line tells it.
    let mut base: Option<u64> = None;
    // The last whole line: its number and, when intact, its term.
    let mut last_whole: Option<(u64, Option<Term>)> = None;
    let mut pending: Option<BadLine> = None;
    let mut damage_at: Option<BadLine> = None;
    let mut torn: Option<(u64, u64, String)> = None;
    loop {
        text.clear();
        let n = reader
            .read_until(b'\n', &mut text)
            .map_err(|e| StorageError::io(path, "read", e))? as u64;
        if n == 0 {
            break;
        }
        line_no += 1;
        // The padding: the log ends here. Anything but padding after it is
        // an unfinished write (bytes of a later page that reached the disk
        // before an earlier one), never synced, so never acknowledged.
        if text == b"\n" {
            if !rest_is_padding(&mut reader, path)? {
                torn = Some((
                    line_no,
                    offset,
                    "bytes after the preallocated padding".into(),
                ));
            }
            break;
        }
        if text.last() != Some(&b'\n') {
            torn = Some((line_no, offset, "no trailing newline".into()));
            break;
        }
        // A whole line: a bad one before it was not the last.
        if let Some(bad) = pending.take() {
            damage_at.get_or_insert(bad);
        }
        last_whole = Some((line_no, None));
        match line::decode(&text[..text.len() - 1]) {
            Err(reason) => {
                pending = Some(BadLine {
                    line: line_no,
                    offset,
                    unsynced: recovery::provably_unsynced(&text, offset),
                    reason,
                });
            }
            Ok(entry) => {
                let expected = base.map_or(entry.index, |b| LogIndex(b + line_no - 1));
                if entry.index.0 == 0
                    || entry.index != expected
                    || (damage_at.is_none() && entry.term < prev_term)
                {
                    let reason = format!(
                        "entry index {} term {} does not follow index {} term {prev_term} (expected consecutive indexes, non-decreasing terms)",
                        entry.index,
                        entry.term,
                        expected.prev()
                    );
                    return Err(StorageError::Corrupt {
                        file: path.to_owned(),
                        line: line_no,
                        reason,
                    });
                }
                base.get_or_insert(entry.index.0 + 1 - line_no);
                last_whole = Some((line_no, Some(entry.term)));
                if damage_at.is_none() {
                    prev_term = entry.term;
                    scan.offsets.push(offset);
                    scan.entries.push(entry);
                    scan.log_bytes = offset + n;
                }
            }
        }
        offset += n;
    }
    // A bad final line: cut if it provably never reached the disk whole,
    // else it may have been synced.
    if let Some(bad) = pending.take() {
        match bad.unsynced {
            Some(why) if damage_at.is_none() => {
                last_whole = last_whole.filter(|(l, _)| *l < bad.line);
                torn = Some((bad.line, bad.offset, format!("{}: {why}", bad.reason)));
            }
            _ => {
                damage_at.get_or_insert(bad);
            }
        }
    }
    if let Some(bad) = damage_at {
        let base = base.unwrap_or(snap_index.0 + 1);
        let (last_line, last_term) = last_whole.expect("a damaged line is a whole line");
        scan.damage = Some(Damage {
            first_line: bad.line,
            first_index: LogIndex(base + bad.line - 1),
            last_index: LogIndex(base + last_line - 1),
            last_term,
            reason: bad.reason,
        });
    } else if let Some((line, at, reason)) = torn {
        scan.torn = Some(TornTail {
            line,
            offset: at,
            bytes_cut: file_len - at,
            reason,
        });
    }
    Ok(scan)
}

/// Whether the rest of the file is padding (empty lines) or nothing.
/// Consumes it.
fn rest_is_padding(reader: &mut impl BufRead, path: &Path) -> Result<bool, StorageError> {
    loop {
        let chunk = reader
            .fill_buf()
            .map_err(|e| StorageError::io(path, "read", e))?;
        if chunk.is_empty() {
            return Ok(true);
        }
        if chunk.iter().any(|&b| b != PADDING) {
            return Ok(false);
        }
        let n = chunk.len();
        reader.consume(n);
    }
}

/// Cuts the file at `offset` (what lies beyond was never synced, or is
/// held by a durable vote floor) and makes the cut durable.
fn cut_tail(log: &File, path: &Path, offset: u64) -> Result<(), StorageError> {
    log.set_len(offset)
        .map_err(|e| StorageError::io(path, "truncate the tail", e))?;
    log.sync_data()
        .map_err(|e| StorageError::io(path, "fdatasync", e))
}
