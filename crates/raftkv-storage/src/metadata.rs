//! `metadata.txt`: the hard state in `name value` lines, replaced atomically
//! (write `metadata.txt.tmp`, fsync it, rename it over, fsync the folder).
//!
//! ```text
//! # raftkv node metadata: replaced atomically; do not edit while the node runs
//! term 5
//! voted_for 2
//! commit 40
//! repair none
//! crc 5e0f3a1c
//! ```

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::Path;

use raftkv_core::{HardState, LogIndex, NodeId, Term, VoteFloor};

use crate::error::StorageError;

pub const METADATA_FILE: &str = "metadata.txt";
pub const METADATA_TMP_FILE: &str = "metadata.txt.tmp";

pub fn encode(hs: &HardState) -> String {
    let vote = hs.voted_for.map_or("none".to_owned(), |n| n.to_string());
    let repair = match hs.repair {
        None => "none".to_owned(),
        Some(f) => format!(
            "index={} term={} {}",
            f.index.map_or("unknown".to_owned(), |i| i.to_string()),
            f.term,
            if f.exact { "exact" } else { "bound" }
        ),
    };
    let body = format!(
        "# raftkv node metadata: replaced atomically; do not edit while the node runs\nterm {}\nvoted_for {}\ncommit {}\nrepair {}\n",
        hs.term, vote, hs.commit, repair
    );
    let crc = crc32c::crc32c(body.as_bytes());
    format!("{body}crc {crc:08x}\n")
}

/// Parses the file's text; `path` is only for the error.
///
/// The last line, `crc <8 hex digits>`, is the CRC-32C of every byte before
/// it: a changed byte, or a plausible hand edit of the term or vote, is
/// refused. A file without `crc` and `repair` lines (written before they
/// existed) is read as it is, with no repair floor.
pub fn decode(text: &str, path: &Path) -> Result<HardState, StorageError> {
    let corrupt = |line: u64, reason: String| StorageError::Corrupt {
        file: path.to_owned(),
        line,
        reason,
    };
    let mut checked = false;
    if let Some(at) = text.rfind("\ncrc ").map(|i| i + 1) {
        let line_no = text[..at].lines().count() as u64 + 1;
        let (body, crc_line) = text.split_at(at);
        let stated = crc_line
            .strip_prefix("crc ")
            .and_then(|r| r.strip_suffix('\n'))
            .and_then(crate::line::parse_crc_hex)
            .ok_or_else(|| {
                corrupt(
                    line_no,
                    format!("expected `crc <8 hex digits>` as the last line, found {crc_line:?}"),
                )
            })?;
        let actual = crc32c::crc32c(body.as_bytes());
        if stated != actual {
            return Err(corrupt(
                line_no,
                format!(
                    "checksum mismatch: the file says {stated:08x}, its content gives {actual:08x} (changed by hand or damaged on disk)"
                ),
            ));
        }
        checked = true;
    }
    let body = if checked {
        &text[..text.rfind("\ncrc ").map_or(0, |i| i + 1)]
    } else {
        text
    };
    let (mut term, mut vote, mut commit, mut repair) = (None, None, None, None);
    for (i, line) in body.lines().enumerate() {
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
            "repair" => {
                let floor = decode_repair(value)
                    .ok_or_else(|| corrupt(line_no, format!("repair: {value:?} is not `none` or `index=<n|unknown> term=<n> exact|bound`")))?;
                repair.replace(floor).is_none()
            }
            _ => {
                return Err(corrupt(
                    line_no,
                    format!("unknown name {name:?} (expected term, voted_for, commit, repair)"),
                ))
            }
        };
        if !slot_was_empty {
            return Err(corrupt(line_no, format!("{name} given twice")));
        }
    }
    let missing = |what: &str| corrupt(body.lines().count() as u64, format!("no `{what}` line"));
    if !checked {
        if repair.is_some() {
            return Err(missing("crc"));
        }
        tracing::warn!(path = %path.display(), "metadata.txt has no checksum (written by an older raftkv); it gets one at the next save");
    }
    Ok(HardState {
        term: term.ok_or_else(|| missing("term"))?,
        voted_for: vote.ok_or_else(|| missing("voted_for"))?,
        commit: commit.ok_or_else(|| missing("commit"))?,
        repair: repair.flatten(),
    })
}

fn decode_repair(value: &str) -> Option<Option<VoteFloor>> {
    if value == "none" {
        return Some(None);
    }
    let mut parts = value.split(' ');
    let index = parts.next()?.strip_prefix("index=")?;
    let index = match index {
        "unknown" => None,
        n => Some(LogIndex(canonical_u64(n)?)),
    };
    let term = Term(canonical_u64(parts.next()?.strip_prefix("term=")?)?);
    let exact = match parts.next()? {
        "exact" => true,
        "bound" => false,
        _ => return None,
    };
    if parts.next().is_some() || (exact && index.is_none()) {
        return None;
    }
    Some(Some(VoteFloor { index, term, exact }))
}

fn canonical_u64(s: &str) -> Option<u64> {
    let n: u64 = s.parse().ok()?;
    (n.to_string() == s).then_some(n)
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
    let mut f = crate::fd_retry::open(
        OpenOptions::new().write(true).create(true).truncate(true),
        &tmp,
    )
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
    crate::fd_retry::retry(dir, || File::open(dir))
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
                repair: None,
            },
            HardState {
                term: Term(5),
                voted_for: None,
                commit: LogIndex(40),
                repair: Some(VoteFloor {
                    index: Some(LogIndex(44)),
                    term: Term(5),
                    exact: false,
                }),
            },
            HardState {
                term: Term(7),
                voted_for: Some(NodeId(1)),
                commit: LogIndex(0),
                repair: Some(VoteFloor {
                    index: None,
                    term: Term(7),
                    exact: false,
                }),
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

    #[test]
    fn an_edit_or_a_flipped_byte_is_refused() {
        let p = Path::new("metadata.txt");
        let good = encode(&HardState {
            term: Term(12),
            voted_for: Some(NodeId(3)),
            commit: LogIndex(7),
            repair: None,
        });
        // A plausible hand edit: another vote in the same term.
        let edited = good.replace("voted_for 3", "voted_for 2");
        match decode(&edited, p) {
            Err(StorageError::Corrupt { line, reason, .. }) => {
                assert_eq!(line, 6);
                assert!(reason.contains("checksum mismatch"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        // Every flipped bit of every byte is caught.
        for i in 0..good.len() {
            for bit in 0..8 {
                let mut b = good.clone().into_bytes();
                b[i] ^= 1 << bit;
                let Ok(t) = String::from_utf8(b) else {
                    continue;
                };
                if let Ok(hs) = decode(&t, p) {
                    panic!("byte {i} bit {bit} flipped was read as {hs:?}");
                }
            }
        }
        // A legacy file (no crc, no repair) still reads.
        let legacy = "# old\nterm 2\nvoted_for none\ncommit 1\n";
        assert_eq!(decode(legacy, p).unwrap().term, Term(2));
        // A repair line without a checksum is not legacy.
        assert!(decode("term 2\nvoted_for none\ncommit 1\nrepair none\n", p).is_err());
    }
}
