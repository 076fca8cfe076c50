//! `snapshot.txt`: the latest snapshot of the state machine, one line per
//! item, every line checksummed like a `logs.txt` line (CRC-32C of the bytes
//! before ` crc=`, 8 lowercase hex digits):
//!
//! ```text
//! raftkv-snapshot 1 crc=…                       format version
//! index 950000 crc=…                            last included index
//! term 7 crc=…                                  its term
//! config voters=1,2,3 learners=none addr=1:10.0.0.1:7001 crc=…
//! sessions 2 crc=…                              number of session lines
//! session 3 seq=17 index=949998 result=SET crc=…
//! session 9 seq=2 index=950000 result=DELETED:true crc=…
//! keys 613402 crc=…                             number of key lines
//! user:1 hello\sworld crc=…                     <key> <value>, escaped
//! …
//! end crc=…
//! ```
//!
//! Keys are in strictly increasing order (byte order of the unescaped key,
//! which is `String`'s order), sessions in strictly increasing client order.
//! The counts and the final `end` line make a cut-short file detectable; the
//! key order makes a reordered one detectable. The file is replaced
//! atomically: `snapshot.txt.tmp` is written and fsynced, renamed over
//! `snapshot.txt`, and the folder fsynced. A damaged file is refused with
//! its path and line number: unlike a torn `logs.txt` tail, nothing in a
//! snapshot may be dropped.

use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, ErrorKind, Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use raftkv_core::{
    ClientId, KvData, LogIndex, OpResult, SessionRecord, Snapshot, SnapshotMeta, Term,
};

use crate::error::StorageError;
use crate::escape::{escape_into, unescape};
use crate::line::{
    check_crc, decode_membership, encode_membership_into, parse_u64, push_crc_suffix, push_u64,
};
use crate::metadata::sync_dir;

pub const SNAPSHOT_FILE: &str = "snapshot.txt";
pub const SNAPSHOT_TMP_FILE: &str = "snapshot.txt.tmp";
/// The format version written on the first line.
pub const FORMAT_VERSION: u64 = 1;

/// How long a [`write()`] took, and how big the file is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteStats {
    pub bytes: u64,
    pub keys: u64,
    /// Encoding and writing (buffered), before the fsync.
    pub write_time: Duration,
    /// fsync of the file, rename, fsync of the folder.
    pub sync_time: Duration,
}

/// Writes every line of `snap` to `out`.
pub fn encode_to(snap: &Snapshot, out: &mut impl Write) -> std::io::Result<()> {
    let mut line = Vec::with_capacity(256);
    let put = |line: &mut Vec<u8>, out: &mut dyn Write| {
        push_crc_suffix(line, 0);
        let r = out.write_all(line);
        line.clear();
        r
    };
    line.extend_from_slice(b"raftkv-snapshot ");
    push_u64(&mut line, FORMAT_VERSION);
    put(&mut line, out)?;
    line.extend_from_slice(b"index ");
    push_u64(&mut line, snap.meta.index.0);
    put(&mut line, out)?;
    line.extend_from_slice(b"term ");
    push_u64(&mut line, snap.meta.term.0);
    put(&mut line, out)?;
    line.extend_from_slice(b"config ");
    encode_membership_into(&snap.meta.membership, &mut line);
    put(&mut line, out)?;
    line.extend_from_slice(b"sessions ");
    push_u64(&mut line, snap.sessions.len() as u64);
    put(&mut line, out)?;
    for s in &snap.sessions {
        line.extend_from_slice(b"session ");
        push_u64(&mut line, s.client_id.0);
        line.extend_from_slice(b" seq=");
        push_u64(&mut line, s.last_seq);
        line.extend_from_slice(b" index=");
        push_u64(&mut line, s.last_index.0);
        line.extend_from_slice(match s.last_result {
            OpResult::Set => b" result=SET",
            OpResult::Deleted { existed: true } => b" result=DELETED:true",
            OpResult::Deleted { existed: false } => b" result=DELETED:false",
        });
        put(&mut line, out)?;
    }
    line.extend_from_slice(b"keys ");
    push_u64(&mut line, snap.data.len() as u64);
    put(&mut line, out)?;
    for (k, v) in snap.data.iter() {
        escape_into(k, &mut line);
        line.push(b' ');
        escape_into(v, &mut line);
        put(&mut line, out)?;
    }
    line.extend_from_slice(b"end");
    put(&mut line, out)
}

/// The whole file's text (for tests and tools; [`write()`] streams).
pub fn encode(snap: &Snapshot) -> Vec<u8> {
    let mut out = Vec::new();
    encode_to(snap, &mut out).expect("writing to a Vec cannot fail");
    out
}

/// Atomically replaces `dir/snapshot.txt` with `snap`; durable when it
/// returns.
pub fn write(dir: &Path, snap: &Snapshot) -> Result<WriteStats, StorageError> {
    let started = Instant::now();
    let mut stats = write_tmp(dir, SNAPSHOT_TMP_FILE, snap)?;
    install_tmp(dir, SNAPSHOT_TMP_FILE)?;
    stats.sync_time = started.elapsed() - stats.write_time;
    Ok(stats)
}

/// The temporary name a prepared snapshot of `index` is written under
/// (`snapshot.txt.<index>.tmp`); any `snapshot.txt.*.tmp` left at open is a
/// crash's leftover and is removed.
pub fn prepared_name(index: LogIndex) -> String {
    format!("{SNAPSHOT_FILE}.{index}.tmp")
}

/// True for the names [`write()`] and [`prepared_name`] use.
pub fn is_tmp_name(name: &str) -> bool {
    name.starts_with("snapshot.txt.") && name.ends_with(".tmp")
}

/// Writes `snap` to `dir/<tmp_name>` (buffered) and fsyncs it. Step one of
/// an atomic replace; [`install_tmp`] is step two. `sync_time` covers the
/// fsync.
pub fn write_tmp(dir: &Path, tmp_name: &str, snap: &Snapshot) -> Result<WriteStats, StorageError> {
    let started = Instant::now();
    let tmp = dir.join(tmp_name);
    let file = crate::fd_retry::open(
        OpenOptions::new().write(true).create(true).truncate(true),
        &tmp,
    )
    .map_err(|e| StorageError::io(&tmp, "create", e))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    encode_to(snap, &mut out).map_err(|e| StorageError::io(&tmp, "write", e))?;
    let file = out
        .into_inner()
        .map_err(|e| StorageError::io(&tmp, "write", e.into_error()))?;
    let write_time = started.elapsed();
    let bytes = file
        .metadata()
        .map_err(|e| StorageError::io(&tmp, "stat", e))?
        .len();
    file.sync_all()
        .map_err(|e| StorageError::io(&tmp, "fsync", e))?;
    Ok(WriteStats {
        bytes,
        keys: snap.data.len() as u64,
        write_time,
        sync_time: started.elapsed() - write_time,
    })
}

/// Renames `dir/<tmp_name>` (written and fsynced by [`write_tmp`]) over
/// `snapshot.txt` and fsyncs the folder.
pub fn install_tmp(dir: &Path, tmp_name: &str) -> Result<(), StorageError> {
    let path = dir.join(SNAPSHOT_FILE);
    fs::rename(dir.join(tmp_name), &path)
        .map_err(|e| StorageError::io(&path, "rename the new snapshot over", e))?;
    sync_dir(dir)
}

/// Reads `dir/snapshot.txt`; `Ok(None)` when it does not exist.
pub fn read(dir: &Path) -> Result<Option<Snapshot>, StorageError> {
    let path = dir.join(SNAPSHOT_FILE);
    let mut file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StorageError::io(path, "open", e)),
    };
    let len = file
        .metadata()
        .map_err(|e| StorageError::io(&path, "stat", e))?
        .len();
    let mut bytes = Vec::with_capacity(len as usize + 1);
    file.read_to_end(&mut bytes)
        .map_err(|e| StorageError::io(&path, "read", e))?;
    decode(&bytes, &path).map(Some)
}

/// Parses a whole file; `path` is only for the error, which names the line.
pub fn decode(bytes: &[u8], path: &Path) -> Result<Snapshot, StorageError> {
    let mut lines = Lines {
        rest: bytes,
        line_no: 0,
        path,
    };
    let version = lines.header("raftkv-snapshot")?;
    if version != FORMAT_VERSION {
        return Err(lines.corrupt(format!(
            "format version {version}; this build reads version {FORMAT_VERSION}"
        )));
    }
    let index = LogIndex(lines.header("index")?);
    let term = Term(lines.header("term")?);
    let body = lines.next()?;
    let membership = body
        .strip_prefix("config ")
        .ok_or_else(|| "expected `config voters=… learners=… …`".to_owned())
        .and_then(|rest| decode_membership(rest.split(' ')))
        .and_then(|m| m.validate().map(|()| m))
        .map_err(|e| lines.corrupt(e))?;
    let n_sessions = lines.header("sessions")?;
    let mut sessions: Vec<SessionRecord> = Vec::with_capacity(n_sessions.min(1 << 20) as usize);
    for _ in 0..n_sessions {
        let body = lines.next()?;
        let s = decode_session(body).map_err(|e| lines.corrupt(e))?;
        if sessions.last().is_some_and(|p| p.client_id >= s.client_id) {
            return Err(lines.corrupt(format!(
                "session {} out of order (client ids must increase)",
                s.client_id
            )));
        }
        sessions.push(s);
    }
    let n_keys = lines.header("keys")?;
    // Inserted as they are read (measured: as fast as `from_iter` over a
    // Vec of pairs, which is the same inserts, without the Vec). The order
    // check keeps a copy of the previous key in one reused buffer.
    let mut data = KvData::new();
    let mut prev = String::new();
    for i in 0..n_keys {
        let body = lines.next()?;
        let (k, v) = decode_pair(body).map_err(|e| lines.corrupt(e))?;
        if i > 0 && k <= prev {
            return Err(lines.corrupt(format!(
                "key {k:?} out of order (keys must strictly increase)"
            )));
        }
        prev.clear();
        prev.push_str(&k);
        data.insert(k, v);
    }
    if lines.next()? != "end" {
        return Err(lines.corrupt(format!(
            "expected `end` after the {n_keys} keys the `keys` line announces"
        )));
    }
    if !lines.rest.is_empty() {
        lines.line_no += 1;
        return Err(lines.corrupt("text after the `end` line".into()));
    }
    Ok(Snapshot {
        meta: SnapshotMeta {
            index,
            term,
            membership,
        },
        data,
        sessions,
    })
}

struct Lines<'a> {
    rest: &'a [u8],
    line_no: u64,
    path: &'a Path,
}

impl<'a> Lines<'a> {
    fn corrupt(&self, reason: String) -> StorageError {
        StorageError::Corrupt {
            file: self.path.to_owned(),
            line: self.line_no,
            reason,
        }
    }

    /// The next line's text before ` crc=`, checksum verified.
    fn next(&mut self) -> Result<&'a str, StorageError> {
        self.line_no += 1;
        if self.rest.is_empty() {
            return Err(self.corrupt("the file ends early (no `end` line)".into()));
        }
        let Some(nl) = memchr::memchr(b'\n', self.rest) else {
            return Err(self.corrupt("the last line has no newline: the file is cut short".into()));
        };
        let line = &self.rest[..nl];
        self.rest = &self.rest[nl + 1..];
        check_crc(line).map_err(|e| self.corrupt(e))
    }

    /// A `<name> <number>` line.
    fn header(&mut self, name: &str) -> Result<u64, StorageError> {
        let body = self.next()?;
        body.strip_prefix(name)
            .and_then(|r| r.strip_prefix(' '))
            .ok_or_else(|| format!("expected `{name} <number>`, found {body:?}"))
            .and_then(|n| parse_u64(n, name))
            .map_err(|e| self.corrupt(e))
    }
}

fn decode_session(body: &str) -> Result<SessionRecord, String> {
    let bad =
        || format!("expected `session <client> seq=<n> index=<n> result=<r>`, found {body:?}");
    let mut f = body.split(' ');
    let mut field = |prefix: &str| {
        f.next()
            .and_then(|x| x.strip_prefix(prefix))
            .ok_or_else(bad)
    };
    if !field("session")?.is_empty() {
        return Err(bad());
    }
    let client_id = ClientId(parse_u64(field("")?, "client id")?);
    let last_seq = parse_u64(field("seq=")?, "seq")?;
    let last_index = LogIndex(parse_u64(field("index=")?, "index")?);
    let last_result = match field("result=")? {
        "SET" => OpResult::Set,
        "DELETED:true" => OpResult::Deleted { existed: true },
        "DELETED:false" => OpResult::Deleted { existed: false },
        other => return Err(format!("unknown result {other:?}")),
    };
    if f.next().is_some() {
        return Err(bad());
    }
    Ok(SessionRecord {
        client_id,
        last_seq,
        last_index,
        last_result,
    })
}

/// `<key> <value>`, both escaped.
fn decode_pair(body: &str) -> Result<(String, String), String> {
    let (k, v) = body
        .split_once(' ')
        .ok_or("expected `<key> <value>`: no space")?;
    if v.contains(' ') {
        return Err("expected `<key> <value>`: more than two fields".into());
    }
    let k = unescape(k).map_err(|e| format!("key: {e}"))?;
    let v = unescape(v).map_err(|e| format!("value: {e}"))?;
    Ok((k, v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance::snapshot;
    use proptest::prelude::*;

    fn check_refused(bytes: &[u8], what: &str) -> (u64, String) {
        match decode(bytes, Path::new("snapshot.txt")) {
            Err(StorageError::Corrupt { line, reason, .. }) => (line, reason),
            Err(e) => panic!("{what}: wrong error {e}"),
            Ok(_) => panic!("{what}: accepted"),
        }
    }

    #[test]
    fn example_file() {
        let snap = snapshot(42, 3, 3);
        let text = String::from_utf8(encode(&snap)).unwrap();
        println!("{text}");
        let lines: Vec<&str> = text
            .lines()
            .map(|l| l.rsplit_once(" crc=").unwrap().0)
            .collect();
        assert_eq!(
            lines,
            [
                "raftkv-snapshot 1",
                "index 42",
                "term 3",
                "config voters=1,2,3 learners=4 addr=1:10.0.0.1:7001 addr=4:host\\s3:7004",
                "sessions 3",
                "session 3 seq=17 index=40 result=SET",
                "session 9 seq=2 index=42 result=DELETED:true",
                "session 12 seq=5 index=1 result=DELETED:false",
                "keys 3",
                "key\\s00000 v42/3\\sk0\\t\\\\\\sé",
                "key\\s00001 v42/3\\sk1\\t\\\\\\sé",
                "key\\s00002 v42/3\\sk2\\t\\\\\\sé",
                "end",
            ]
        );
        assert_eq!(decode(text.as_bytes(), Path::new("s")).unwrap(), snap);
    }

    #[test]
    fn any_flipped_byte_is_refused_naming_its_line() {
        let bytes = encode(&snapshot(9, 2, 4));
        let line_of = |i: usize| bytes[..i].iter().filter(|&&b| b == b'\n').count() as u64 + 1;
        for i in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[i] ^= 0x01;
            let (line, _) = check_refused(&damaged, &format!("flip at {i}"));
            // A damaged newline merges two lines: the first one is named.
            assert_eq!(line, line_of(i), "flip at byte {i}");
        }
    }

    #[test]
    fn cut_short_or_extended_files_are_refused() {
        let bytes = encode(&snapshot(9, 2, 4));
        for len in 0..bytes.len() {
            check_refused(&bytes[..len], &format!("prefix of {len} bytes"));
        }
        let mut longer = bytes.clone();
        longer.extend_from_slice(b"x\n");
        let (line, reason) = check_refused(&longer, "text after end");
        assert_eq!(line, 15, "{reason}");
    }

    #[test]
    fn an_invalid_configuration_is_refused() {
        let mut snap = snapshot(9, 2, 1);
        snap.meta.membership.learners.insert(raftkv_core::NodeId(2));
        let (line, reason) = check_refused(&encode(&snap), "voter and learner");
        assert_eq!(line, 4);
        assert!(reason.contains("both a voter and a learner"), "{reason}");
    }

    #[test]
    fn reordered_keys_are_refused() {
        let text = String::from_utf8(encode(&snapshot(9, 2, 4))).unwrap();
        let mut lines: Vec<&str> = text.lines().collect();
        lines.swap(10, 11);
        let (line, reason) = check_refused((lines.join("\n") + "\n").as_bytes(), "swap");
        assert_eq!(line, 12);
        assert!(reason.contains("out of order"), "{reason}");
    }

    fn arb_snapshot() -> impl Strategy<Value = Snapshot> {
        (
            any::<u64>(),
            any::<u64>(),
            proptest::collection::btree_map(any::<String>(), any::<String>(), 0..20),
            proptest::collection::btree_map(
                any::<u64>(),
                (any::<u64>(), any::<u64>(), 0u8..3),
                0..4,
            ),
        )
            .prop_map(|(index, term, data, sessions)| {
                let mut snap = snapshot(index, term, 0);
                snap.data = data.into_iter().collect();
                snap.sessions = sessions
                    .into_iter()
                    .map(|(c, (seq, at, r))| SessionRecord {
                        client_id: ClientId(c),
                        last_seq: seq,
                        last_index: LogIndex(at),
                        last_result: match r {
                            0 => OpResult::Set,
                            1 => OpResult::Deleted { existed: true },
                            _ => OpResult::Deleted { existed: false },
                        },
                    })
                    .collect();
                snap
            })
    }

    proptest! {
        #[test]
        fn snapshot_round_trips(snap in arb_snapshot()) {
            let bytes = encode(&snap);
            prop_assert_eq!(decode(&bytes, Path::new("s")).unwrap(), snap);
        }
    }
}
