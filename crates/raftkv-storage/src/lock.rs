//! The `LOCK` file: an exclusive `flock` held for the life of the store, so no
//! two processes (and no two handles in one process: each open has its own
//! file description) can open the same node folder. The lock dies with the
//! process, so a `kill -9` never leaves a stale lock behind.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use rustix::fs::{flock, FlockOperation};

use crate::error::StorageError;

pub const LOCK_FILE: &str = "LOCK";

#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

impl DirLock {
    pub fn acquire(dir: &Path) -> Result<DirLock, StorageError> {
        let path = dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| StorageError::io(&path, "open", e))?;
        if let Err(errno) = flock(&file, FlockOperation::NonBlockingLockExclusive) {
            if errno == rustix::io::Errno::WOULDBLOCK {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                let holder = if holder.is_empty() {
                    "holder unknown".to_owned()
                } else {
                    holder.to_owned()
                };
                return Err(StorageError::Locked {
                    dir: dir.to_owned(),
                    holder,
                });
            }
            return Err(StorageError::io(&path, "flock", errno.into()));
        }
        // For the person who finds the folder locked: who holds it.
        let note = format!("pid {}\n", std::process::id());
        file.set_len(0)
            .and_then(|_| file.seek(SeekFrom::Start(0)))
            .and_then(|_| file.write_all(note.as_bytes()))
            .map_err(|e| StorageError::io(&path, "write", e))?;
        Ok(DirLock { _file: file })
    }
}
