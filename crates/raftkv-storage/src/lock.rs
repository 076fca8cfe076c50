//! The `LOCK` file: no two processes, and no two handles in one process, may
//! open the same node folder.
//!
//! Between processes: a POSIX record lock (`fcntl(F_SETLK)`) on `LOCK`, held
//! for the life of the store. The kernel drops it when the process dies, so a
//! `kill -9` leaves no stale lock. We use `fcntl` rather than `flock` because
//! an `flock` lock belongs to the open file description, which a child
//! process shares between `fork` and `exec`: a process that spawns children
//! could then fail to re-open its own folder for a moment (seen in our tests).
//! `fcntl` locks belong to the process and are not inherited by `fork`.
//!
//! Within the process, where `fcntl` locks do not conflict: a registry of
//! locked folders. It also keeps us from opening `LOCK` a second time, which
//! matters because closing *any* descriptor of the file would release the
//! process's `fcntl` lock.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use rustix::fs::{fcntl_lock, FlockOperation};

use crate::error::StorageError;

pub const LOCK_FILE: &str = "LOCK";

fn registry() -> &'static Mutex<HashSet<PathBuf>> {
    static LOCKED: OnceLock<Mutex<HashSet<PathBuf>>> = OnceLock::new();
    LOCKED.get_or_init(|| Mutex::new(HashSet::new()))
}

#[derive(Debug)]
pub struct DirLock {
    /// Canonical path of the folder, the registry key.
    key: PathBuf,
    file: Option<File>,
}

impl DirLock {
    pub fn acquire(dir: &Path) -> Result<DirLock, StorageError> {
        let key = dir
            .canonicalize()
            .map_err(|e| StorageError::io(dir, "resolve path", e))?;
        let mut locked = registry().lock().unwrap_or_else(|p| p.into_inner());
        if locked.contains(&key) {
            let holder = format!("pid {}, this process", std::process::id());
            return Err(StorageError::Locked {
                dir: dir.to_owned(),
                holder,
            });
        }
        let file = lock_file(dir)?;
        locked.insert(key.clone());
        Ok(DirLock {
            key,
            file: Some(file),
        })
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        // Close first: the registry entry must outlive the lock it guards.
        drop(self.file.take());
        registry()
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.key);
    }
}

fn lock_file(dir: &Path) -> Result<File, StorageError> {
    let path = dir.join(LOCK_FILE);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| StorageError::io(&path, "open", e))?;
    if let Err(errno) = fcntl_lock(&file, FlockOperation::NonBlockingLockExclusive) {
        if errno == rustix::io::Errno::AGAIN || errno == rustix::io::Errno::ACCESS {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = match holder.trim() {
                "" => "holder unknown".to_owned(),
                h => h.to_owned(),
            };
            return Err(StorageError::Locked {
                dir: dir.to_owned(),
                holder,
            });
        }
        return Err(StorageError::io(
            &path,
            "lock (fcntl F_SETLK)",
            errno.into(),
        ));
    }
    // For the person who finds the folder locked: who holds it.
    let note = format!("pid {}\n", std::process::id());
    file.set_len(0)
        .and_then(|_| file.seek(SeekFrom::Start(0)))
        .and_then(|_| file.write_all(note.as_bytes()))
        .map_err(|e| StorageError::io(&path, "write", e))?;
    Ok(file)
}
