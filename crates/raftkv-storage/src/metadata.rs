//! `metadata.txt`: the hard state in `name value` lines, replaced atomically
//! (write `metadata.txt.tmp`, fsync it, rename it over, fsync the folder).
//!
//! ```text
//! # raftkv node metadata: replaced atomically; do not edit while the node runs
//! term 5
//! voted_for 2
//! commit 40
//! ```

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::Path;

use raftkv_core::{HardState, LogIndex, NodeId, Term};

use crate::error::StorageError;

pub const METADATA_FILE: &str = "metadata.txt";
pub const METADATA_TMP_FILE: &str = "metadata.txt.tmp";

pub fn encode(hs: &HardState) -> String {
    let vote = hs.voted_for.map_or("none".to_owned(), |n| n.to_string());
    format!(
        "# raftkv node metadata: replaced atomically; do not edit while the node runs\nterm {}\nvoted_for {}\ncommit {}\n",
        hs.term, vote, hs.commit
    )
}

/// Parses the file's text; `path` is only for the error.
pub fn decode(text: &str, path: &Path) -> Result<HardState, StorageError> {
    let corrupt = |line: u64, reason: String| StorageError::Corrupt {
        file: path.to_owned(),
        line,
        reason,
    };
    let (mut term, mut vote, mut commit) = (None, None, None);
    for (i, line) in text.lines().enumerate() {
        let line_no = i as u64 + 1;
        if line.starts_with('#') {
            continue;
        }
        let (name, value) = line
            .split_once(' ')
            .ok_or_else(|| corrupt(line_no, format!("expected `name value`, found {line:?}")))?;
        let number = || {
            value
                .parse::<u64>()
                .map_err(|_| corrupt(line_no, format!("{name}: {value:?} is not a number")))
        };
        let slot_was_empty = match name {
            "term" => term.replace(Term(number()?)).is_none(),
            "commit" => commit.replace(LogIndex(number()?)).is_none(),
            "voted_for" => {
                let v = match value {
                    "none" => None,
                    _ => match number()? {
                        0 => {
                            return Err(corrupt(
                                line_no,
                                "voted_for 0 is not a node (write `none`)".into(),
                            ))
                        }
                        n => Some(NodeId(n)),
                    },
                };
                vote.replace(v).is_none()
            }
            _ => {
                return Err(corrupt(
                    line_no,
                    format!("unknown name {name:?} (expected term, voted_for, commit)"),
                ))
            }
        };
        if !slot_was_empty {
            return Err(corrupt(line_no, format!("{name} given twice")));
        }
    }
    let missing = |what: &str| corrupt(text.lines().count() as u64, format!("no `{what}` line"));
    Ok(HardState {
        term: term.ok_or_else(|| missing("term"))?,
        voted_for: vote.ok_or_else(|| missing("voted_for"))?,
        commit: commit.ok_or_else(|| missing("commit"))?,
    })
}

/// Reads `dir/metadata.txt`; `Ok(None)` when it does not exist.
pub fn read(dir: &Path) -> Result<Option<HardState>, StorageError> {
    let path = dir.join(METADATA_FILE);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StorageError::io(path, "read", e)),
    };
    let text = String::from_utf8(bytes).map_err(|e| StorageError::Corrupt {
        file: path.clone(),
        line: 1,
        reason: format!("not UTF-8: {e}"),
    })?;
    decode(&text, &path).map(Some)
}

/// Atomically replaces `dir/metadata.txt`; durable when it returns.
pub fn write(dir: &Path, hs: &HardState) -> Result<(), StorageError> {
    let tmp = dir.join(METADATA_TMP_FILE);
    let path = dir.join(METADATA_FILE);
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(|e| StorageError::io(&tmp, "create", e))?;
    f.write_all(encode(hs).as_bytes())
        .map_err(|e| StorageError::io(&tmp, "write", e))?;
    f.sync_all()
        .map_err(|e| StorageError::io(&tmp, "fsync", e))?;
    drop(f);
    fs::rename(&tmp, &path)
        .map_err(|e| StorageError::io(&path, "rename metadata.txt.tmp over", e))?;
    sync_dir(dir)
}

/// fsyncs a folder so that a create or rename inside it is durable.
pub fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StorageError::io(dir, "fsync folder", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for hs in [
            HardState::default(),
            HardState {
                term: Term(5),
                voted_for: Some(NodeId(2)),
                commit: LogIndex(40),
            },
        ] {
            assert_eq!(decode(&encode(&hs), Path::new("m")).unwrap(), hs);
        }
    }

    #[test]
    fn bad_files_name_the_line() {
        let p = Path::new("metadata.txt");
        for (text, line) in [
            ("term 1\nvoted_for none\ncommit x\n", 3),
            ("term 1\nterm 2\n", 2),
            ("term 1\nvotedfor 2\n", 2),
            ("term 1\ncommit 2\n", 2),
            ("term 1\n\nvoted_for none\ncommit 0\n", 2),
            ("term 1\nvoted_for 0\ncommit 0\n", 2),
        ] {
            match decode(text, p) {
                Err(StorageError::Corrupt { line: l, .. }) => assert_eq!(l, line, "{text:?}"),
                other => panic!("{text:?}: {other:?}"),
            }
        }
    }
}
