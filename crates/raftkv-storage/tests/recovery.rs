//! Recovery on open: torn tails (provably never synced) are cut and
//! reported; damaged lines that may have been synced, and a lost or
//! shortened log, keep the intact prefix and get a vote floor; anything
//! else wrong is refused with the file, line and problem named, changing
//! nothing. Also the lock and dump.txt.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use raftkv_core::{
    ClientCommand, ClientId, Entry, EntryPayload, HardState, LogIndex, NodeId, Op, Term, VoteFloor,
};
use raftkv_storage::conformance::{entries, entry};
use raftkv_storage::{
    line, DumpLevel, DumpLog, DumpOptions, FileStorage, FileStorageOptions, OpenReport, Storage,
    StorageError, LOG_FILE,
};

const NODE: NodeId = NodeId(3);

fn open(data: &Path) -> Result<(FileStorage, raftkv_core::Restored, OpenReport), StorageError> {
    FileStorage::open(data, NODE, FileStorageOptions::default())
}

/// A data dir holding node 3 with `n` synced entries of term 1, and no
/// preallocated padding after them (as after a compaction or a cut): the
/// tests below edit the file's end.
fn store_with(n: u64) -> (tempfile::TempDir, PathBuf) {
    let (data, log, log_bytes) = padded_store_with(n);
    fs::OpenOptions::new()
        .write(true)
        .open(&log)
        .unwrap()
        .set_len(log_bytes)
        .unwrap();
    (data, log)
}

/// Like `store_with`, with the padding the store writes; also returns the
/// length of the entries' lines.
fn padded_store_with(n: u64) -> (tempfile::TempDir, PathBuf, u64) {
    let data = tempfile::tempdir().unwrap();
    let (mut s, _, report) = open(data.path()).unwrap();
    assert!(report.created);
    s.append(&entries(1, n, 1)).unwrap();
    s.sync().unwrap();
    s.save_hard_state(&HardState {
        term: Term(1),
        voted_for: Some(NodeId(1)),
        commit: LogIndex(n.min(2)),
        repair: None,
    })
    .unwrap();
    let log = s.dir().join(LOG_FILE);
    (data, log, s.log_bytes())
}

fn expect_corrupt(data: &Path, file: &str, line: u64, what: &str) {
    match open(data) {
        Err(e @ StorageError::Corrupt { .. }) => {
            let StorageError::Corrupt {
                file: f,
                line: l,
                reason,
            } = &e
            else {
                unreachable!()
            };
            assert!(f.ends_with(file), "{e}");
            assert_eq!(*l, line, "{e}");
            assert!(reason.contains(what), "{e}");
            let msg = e.to_string();
            assert!(
                msg.contains(&format!("{file}:{line}:")),
                "message must name file and line: {msg}"
            );
            println!("refused as expected: {msg}");
        }
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("opened a corrupt store"),
    }
}

fn lines(log: &Path) -> Vec<String> {
    fs::read_to_string(log)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn write_lines(log: &Path, lines: &[String], trailing_newline: bool) {
    let mut text = lines.join("\n");
    if trailing_newline {
        text.push('\n');
    }
    fs::write(log, text).unwrap();
}

#[test]
fn torn_final_line_without_newline_is_cut_and_reported() {
    let (data, log) = store_with(10);
    let full = fs::read(&log).unwrap();
    let cut_at = full.len() - 7; // inside line 10
    fs::write(&log, &full[..cut_at]).unwrap();
    let (s, restored, report) = open(data.path()).unwrap();
    assert_eq!(restored.entries, entries(1, 9, 1));
    let torn = report.torn_tail.expect("a torn tail must be reported");
    assert_eq!(torn.line, 10);
    assert_eq!(torn.offset + torn.bytes_cut, cut_at as u64);
    assert!(torn.reason.contains("no trailing newline"));
    assert_eq!(
        fs::metadata(&log).unwrap().len(),
        torn.offset,
        "the file must be cut"
    );
    let dump = fs::read_to_string(s.dir().join("dump.txt")).unwrap();
    assert!(
        dump.contains("cut torn final line 10 of logs.txt"),
        "dump.txt: {dump}"
    );
    assert!(dump.contains(" node=3 term=1 "), "dump.txt: {dump}");
    drop(s);
    // The cut is durable and the store appends after it.
    let (mut s, restored, report) = open(data.path()).unwrap();
    assert!(report.torn_tail.is_none());
    assert_eq!(restored.entries.len(), 9);
    s.append(&entries(10, 12, 2)).unwrap();
    s.sync().unwrap();
    drop(s);
    assert_eq!(open(data.path()).unwrap().1.entries.len(), 12);
}

#[test]
fn a_flipped_byte_in_the_last_synced_line_is_repaired_not_cut() {
    // The line is whole (its newline is there): it may have been synced and
    // acknowledged, so it is not a torn tail.
    let (data, log) = store_with(5);
    let mut l = lines(&log);
    l[4] = l[4].replace("value", "valuf");
    write_lines(&log, &l, true);
    let (s, restored, report) = open(data.path()).unwrap();
    assert_eq!(restored.entries, entries(1, 4, 1));
    assert!(report.torn_tail.is_none());
    let floor = VoteFloor {
        index: Some(LogIndex(5)),
        term: Term(1),
        exact: false,
    };
    assert_eq!(restored.hard_state.repair, Some(floor));
    let plan = report.repair.expect("a repair must be planned");
    assert!(
        plan.reason.contains("line 5 of logs.txt (index 5)"),
        "{}",
        plan.reason
    );
    assert!(plan.reason.contains("checksum mismatch"), "{}", plan.reason);
    let dump = fs::read_to_string(s.dir().join("dump.txt")).unwrap();
    assert!(
        dump.contains("may have held index 5, term at most 1"),
        "{dump}"
    );
    drop(s);
    // The floor is durable: a second open (the damaged line is gone now)
    // plans the same repair from metadata.txt alone.
    let (_, restored, report) = open(data.path()).unwrap();
    assert_eq!(restored.entries, entries(1, 4, 1));
    assert_eq!(restored.hard_state.repair, Some(floor));
    assert!(report.repair.unwrap().reason.contains("not finished"));
}

#[test]
fn a_final_line_of_zeros_is_cut() {
    // A page that never reached the disk reads as zeros, ending where the
    // padding's newline begins.
    let (data, log, log_bytes) = padded_store_with(6);
    let f = fs::OpenOptions::new().write(true).open(&log).unwrap();
    let mut zeros = line::encode(&entry(7, 1)).into_bytes();
    zeros.truncate(zeros.len() - 1);
    zeros[10..].fill(0);
    std::os::unix::fs::FileExt::write_all_at(&f, &zeros, log_bytes).unwrap();
    let (_, restored, report) = open(data.path()).unwrap();
    assert_eq!(restored.entries.len(), 6);
    assert!(report.repair.is_none());
    let torn = report.torn_tail.expect("cut as torn");
    assert!(torn.reason.contains("zero bytes"), "{}", torn.reason);
}

#[test]
fn a_whole_zeroed_tail_is_cut() {
    let (data, log) = store_with(5);
    let mut bytes = fs::read(&log).unwrap();
    bytes.extend_from_slice(&[0u8; 4096]);
    fs::write(&log, bytes).unwrap();
    let (_, restored, report) = open(data.path()).unwrap();
    assert_eq!(restored.entries.len(), 5);
    assert_eq!(report.torn_tail.unwrap().bytes_cut, 4096);
}

#[test]
fn a_bad_line_before_the_end_keeps_the_prefix_and_a_floor_at_the_last_line() {
    let (data, log) = store_with(10);
    let mut l = lines(&log);
    l[3] = l[3].replace("value", "valuf");
    write_lines(&log, &l, true);
    let (_, restored, report) = open(data.path()).unwrap();
    assert_eq!(restored.entries, entries(1, 3, 1));
    // The last line is intact: its term is known exactly.
    assert_eq!(
        restored.hard_state.repair,
        Some(VoteFloor {
            index: Some(LogIndex(10)),
            term: Term(1),
            exact: true
        })
    );
    assert!(report.repair.unwrap().reason.contains("line 4 of logs.txt"));
    assert_eq!(
        lines(&log).len(),
        3,
        "the damaged lines are cut after the floor is saved"
    );
}

#[test]
fn a_short_line_followed_by_more_lines_is_damage_not_a_torn_tail() {
    let (data, log) = store_with(6);
    let mut l = lines(&log);
    let half = l[2].len() / 2;
    l[2].truncate(half);
    write_lines(&log, &l, true);
    let (_, restored, _) = open(data.path()).unwrap();
    assert_eq!(restored.entries, entries(1, 2, 1));
    assert_eq!(
        restored.hard_state.repair.and_then(|f| f.index),
        Some(LogIndex(6))
    );
}

#[test]
fn gap_is_refused() {
    let (data, log) = store_with(6);
    let mut l = lines(&log);
    l.remove(3); // index 4 missing
    write_lines(&log, &l, true);
    expect_corrupt(data.path(), LOG_FILE, 4, "does not follow index 3");
}

#[test]
fn decreasing_term_is_refused() {
    let (data, log) = store_with(3);
    let mut l = lines(&log);
    l.truncate(2);
    l[1] = line::encode(&entry(2, 2)).trim_end().to_owned();
    l.push(line::encode(&entry(3, 1)).trim_end().to_owned());
    l.push(line::encode(&entry(4, 2)).trim_end().to_owned());
    write_lines(&log, &l, true);
    expect_corrupt(data.path(), LOG_FILE, 3, "non-decreasing terms");
}

#[test]
fn unreadable_metadata_is_refused() {
    let (data, _) = store_with(3);
    let meta = data.path().join("logs_node_3/metadata.txt");
    fs::write(&meta, "term 1\nvoted_for one\ncommit 2\n").unwrap();
    expect_corrupt(data.path(), "metadata.txt", 2, "voted_for");
    fs::write(&meta, [0xff, 0xfe]).unwrap();
    expect_corrupt(data.path(), "metadata.txt", 1, "UTF-8");
    fs::remove_file(&meta).unwrap();
    let err = open(data.path()).expect_err("missing metadata with a log must be refused");
    assert!(
        matches!(err, StorageError::Inconsistent { .. })
            && err.to_string().contains("metadata.txt"),
        "{err}"
    );
}

#[test]
fn a_log_shorter_than_the_commit_index_gets_an_unknown_floor() {
    let (data, _) = store_with(3);
    let meta = data.path().join("logs_node_3/metadata.txt");
    fs::write(&meta, "term 1\nvoted_for none\ncommit 9\n").unwrap();
    let (_, restored, report) = open(data.path()).unwrap();
    assert_eq!(restored.entries.len(), 3);
    let floor = restored.hard_state.repair.expect("a floor");
    assert_eq!((floor.index, floor.term), (None, Term(1)));
    assert!(report.repair.unwrap().reason.contains("commit 9"));
}

#[test]
fn a_missing_or_emptied_log_gets_an_unknown_floor() {
    for how in ["deleted", "emptied"] {
        let (data, log) = store_with(5);
        match how {
            "deleted" => fs::remove_file(&log).unwrap(),
            _ => fs::write(&log, b"").unwrap(),
        }
        let (_, restored, report) = open(data.path()).unwrap();
        assert!(restored.entries.is_empty(), "{how}");
        let plan = report.repair.expect(how);
        assert_eq!(plan.floor.index, None, "{how}");
        assert!(
            plan.reason.contains("logs.txt is"),
            "{how}: {}",
            plan.reason
        );
    }
}

#[test]
fn a_new_log_starts_with_padding_and_needs_no_repair() {
    let data = tempfile::tempdir().unwrap();
    let (s, _, report) = open(data.path()).unwrap();
    assert!(report.created && report.repair.is_none());
    assert_eq!(fs::read(s.dir().join(LOG_FILE)).unwrap(), b"\n");
    drop(s);
    let (_, restored, report) = open(data.path()).unwrap();
    assert!(report.repair.is_none());
    assert_eq!(restored.hard_state, HardState::default());
}

#[test]
fn a_refusal_changes_nothing_on_disk() {
    // A torn tail (which recovery would cut) and a metadata.txt that is
    // refused: the open must fail before cutting anything.
    let (data, log) = store_with(5);
    let mut l = lines(&log);
    l[4].truncate(10);
    write_lines(&log, &l, false);
    let meta = data.path().join("logs_node_3/metadata.txt");
    let good_meta = fs::read_to_string(&meta).unwrap();
    fs::write(&meta, good_meta.replace("term 1", "term 2")).unwrap();
    let before: Vec<(String, Vec<u8>)> = folder(data.path());
    let err = open(data.path()).expect_err("an edited metadata.txt is refused");
    assert!(err.to_string().contains("checksum mismatch"), "{err}");
    assert!(err.to_string().contains("metadata.txt:"), "{err}");
    assert_eq!(
        folder(data.path()),
        before,
        "the refusal changed the folder"
    );
}

fn folder(data: &Path) -> Vec<(String, Vec<u8>)> {
    let dir = data.join("logs_node_3");
    let mut v: Vec<(String, Vec<u8>)> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name() != "LOCK")
        .map(|e| {
            (
                e.file_name().into_string().unwrap(),
                fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn leftover_temp_metadata_is_ignored_and_removed() {
    let (data, _) = store_with(3);
    let tmp = data.path().join("logs_node_3/metadata.txt.tmp");
    fs::write(&tmp, "term 99\n").unwrap();
    let (_, restored, _) = open(data.path()).unwrap();
    assert_eq!(restored.hard_state.term, Term(1));
    assert!(!tmp.exists());
}

#[test]
fn metadata_is_readable_text() {
    let (data, _) = store_with(3);
    let text = fs::read_to_string(data.path().join("logs_node_3/metadata.txt")).unwrap();
    assert!(text.contains("\nterm 1\nvoted_for 1\ncommit 2\n"), "{text}");
}

#[test]
fn log_term_above_stored_term_raises_the_restored_term() {
    let (data, _) = store_with(3);
    let (mut s, _, _) = open(data.path()).unwrap();
    s.append(&entries(4, 4, 6)).unwrap();
    s.sync().unwrap();
    drop(s);
    let (_, restored, report) = open(data.path()).unwrap();
    assert_eq!(
        restored.hard_state,
        HardState {
            term: Term(6),
            voted_for: None,
            commit: LogIndex(2),
            repair: None,
        }
    );
    assert_eq!(report.term_raised_from, Some(Term(1)));
}

#[test]
fn second_open_in_the_same_process_is_refused() {
    let (data, _) = store_with(1);
    let (s, _, _) = open(data.path()).unwrap();
    let err = open(data.path()).expect_err("second open must fail");
    assert!(matches!(err, StorageError::Locked { .. }), "{err}");
    assert!(
        err.to_string()
            .contains(&format!("pid {}", std::process::id())),
        "{err}"
    );
    drop(s);
    open(data.path()).expect("the lock is released on drop");
}

#[test]
fn another_process_cannot_open_a_locked_folder() {
    let (data, _) = store_with(1);
    let (s, _, _) = open(data.path()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_raftkv-storage-crash-writer"))
        .args([data.path().to_str().unwrap(), "3", "1"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(3),
        "the writer must fail to open: {stderr}"
    );
    assert!(stderr.contains("locked by another process"), "{stderr}");
    assert!(String::from_utf8_lossy(&out.stdout).is_empty());
    drop(s);
}

#[test]
fn this_process_cannot_open_a_folder_a_child_holds() {
    let (data, _) = store_with(1);
    let child = Command::new(env!("CARGO_BIN_EXE_raftkv-storage-crash-writer"))
        .args([data.path().to_str().unwrap(), "3", "1"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = Kill(child);
    let mut first = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.0.stdout.as_mut().unwrap()),
        &mut first,
    )
    .unwrap();
    assert!(first.starts_with("OPENED"), "{first}");
    let err = open(data.path()).expect_err("open while a child holds the lock must fail");
    assert!(matches!(err, StorageError::Locked { .. }), "{err}");
    drop(child); // SIGKILL: the kernel drops the lock with the process
    open(data.path()).expect("a killed holder leaves no stale lock");
}

#[test]
fn missing_data_dir_is_a_clear_error() {
    let data = tempfile::tempdir().unwrap();
    let missing = data.path().join("nope");
    let err = open(&missing).err().unwrap();
    assert!(matches!(err, StorageError::DataDirMissing { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("nope: data directory does not exist"),
        "{err}"
    );
    assert!(!missing.exists(), "the data dir must not be created");
}

#[test]
fn entries_reads_ranges_through_the_offset_map() {
    let (data, _) = store_with(300);
    let (mut s, _, report) = open(data.path()).unwrap();
    assert_eq!(report.entries, 300);
    assert_eq!(
        s.entries(LogIndex(120), LogIndex(130)).unwrap(),
        entries(120, 130, 1)
    );
    assert_eq!(
        s.entries(LogIndex(300), LogIndex(300)).unwrap(),
        entries(300, 300, 1)
    );
    s.append(&entries(200, 210, 2)).unwrap();
    assert_eq!(
        s.entries(LogIndex(195), LogIndex(210)).unwrap()[5..],
        entries(200, 210, 2)[..]
    );
    // The entries' lines, then padding only.
    let bytes = fs::read(s.dir().join(LOG_FILE)).unwrap();
    let (lines, padding) = bytes.split_at(s.log_bytes() as usize);
    assert!(lines.ends_with(b"\n") && !lines.contains(&0));
    assert!(padding.iter().all(|&b| b == b'\n'));
}

#[test]
fn the_log_is_padded_and_the_padding_ends_it() {
    let (data, log, log_bytes) = padded_store_with(20);
    let len = fs::metadata(&log).unwrap().len();
    assert!(
        len > log_bytes,
        "appends preallocate: {len} bytes for {log_bytes}"
    );
    // A person sees the entries, then blank lines.
    let text = fs::read_to_string(&log).unwrap();
    assert_eq!(text.lines().filter(|l| !l.is_empty()).count(), 20);
    let (mut s, restored, report) = open(data.path()).unwrap();
    assert_eq!(restored.entries, entries(1, 20, 1));
    assert!(report.torn_tail.is_none());
    assert_eq!(report.log_bytes, log_bytes);
    // Appends go into the padding, not past it.
    s.append(&entries(21, 30, 1)).unwrap();
    s.sync().unwrap();
    assert_eq!(fs::metadata(&log).unwrap().len(), len);
    drop(s);
    let (_, restored, report) = open(data.path()).unwrap();
    assert_eq!(restored.entries, entries(1, 30, 1));
    assert!(report.torn_tail.is_none());
}

#[test]
fn a_torn_line_in_the_padding_is_cut_with_the_padding() {
    let (data, log, log_bytes) = padded_store_with(10);
    // An append of entry 11 that reached the disk up to a sector boundary:
    // the padding's newline ends the partial line there.
    let big = Entry {
        index: LogIndex(11),
        term: Term(1),
        payload: EntryPayload::Command(ClientCommand {
            client_id: ClientId(0),
            seq: 11,
            op: Op::Set {
                key: "k".into(),
                value: "v".repeat(2000),
            },
        }),
    };
    let whole = line::encode(&big);
    let part = (512 - log_bytes % 512) as usize;
    let f = fs::OpenOptions::new().write(true).open(&log).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, &whole.as_bytes()[..part], log_bytes).unwrap();
    let (_, restored, report) = open(data.path()).unwrap();
    assert_eq!(restored.entries, entries(1, 10, 1));
    assert!(report.repair.is_none());
    let torn = report.torn_tail.expect("a torn tail must be reported");
    assert_eq!((torn.line, torn.offset), (11, log_bytes));
    assert!(torn.reason.contains("sector boundary"), "{}", torn.reason);
    assert_eq!(
        fs::metadata(&log).unwrap().len(),
        log_bytes,
        "cut, padding and all"
    );
}

#[test]
fn a_short_line_in_the_padding_not_at_a_sector_boundary_may_have_been_synced() {
    // The same half line ending anywhere else cannot be a write cut short
    // by a crash: it is damage, and the node repairs instead of cutting.
    let (data, log, log_bytes) = padded_store_with(10);
    let whole = line::encode(&entry(11, 1));
    let mut part = whole.len() / 2;
    if (log_bytes + part as u64).is_multiple_of(512) {
        part -= 1;
    }
    let f = fs::OpenOptions::new().write(true).open(&log).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, &whole.as_bytes()[..part], log_bytes).unwrap();
    let (_, restored, report) = open(data.path()).unwrap();
    assert_eq!(restored.entries, entries(1, 10, 1));
    assert!(report.torn_tail.is_none());
    assert_eq!(
        restored.hard_state.repair.map(|f| f.index),
        Some(Some(LogIndex(11)))
    );
}

#[test]
fn bytes_after_the_start_of_the_padding_are_a_torn_tail() {
    // A later page of an unsynced batch reached the disk, an earlier one
    // did not: entry 12's line sits in the padding after a blank line.
    let (data, log, log_bytes) = padded_store_with(10);
    let later = line::encode(&entry(12, 1));
    let f = fs::OpenOptions::new().write(true).open(&log).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, later.as_bytes(), log_bytes + 100).unwrap();
    let (_, restored, report) = open(data.path()).unwrap();
    assert_eq!(restored.entries, entries(1, 10, 1));
    let torn = report.torn_tail.expect("a torn tail must be reported");
    assert_eq!((torn.line, torn.offset), (11, log_bytes));
    assert!(torn.reason.contains("padding"), "{}", torn.reason);
}

#[test]
fn dump_log_writes_filters_and_rotates() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = DumpOptions::new(NodeId(2));
    opts.max_bytes = 2000;
    let dump = DumpLog::open(dir.path(), opts).unwrap();
    dump.record(DumpLevel::Info, Term(5), &"election started, term 5");
    dump.record(DumpLevel::Debug, Term(5), &"not at info level");
    dump.record_event(Term(5), &raftkv_core::Event::LeaseLost { term: Term(5) });
    dump.flush();
    let text = fs::read_to_string(dir.path().join("dump.txt")).unwrap();
    let l: Vec<&str> = text.lines().collect();
    assert_eq!(l.len(), 2, "{text}");
    assert!(
        l[0].ends_with("Z node=2 term=5 election started, term 5"),
        "{text}"
    );
    assert!(
        l[1].ends_with("lease renewal failed in term 5; lease reads stop"),
        "{text}"
    );
    for i in 0..100 {
        dump.record(DumpLevel::Info, Term(5), &format_args!("line {i}"));
    }
    drop(dump);
    let now = fs::metadata(dir.path().join("dump.txt")).unwrap().len();
    let old = fs::metadata(dir.path().join("dump.txt.1")).unwrap().len();
    assert!(
        now < 2000 && (2000..2200).contains(&old),
        "sizes {now} {old}"
    );
    let tail = fs::read_to_string(dir.path().join("dump.txt")).unwrap();
    assert!(
        tail.trim_end().ends_with("line 99"),
        "drop must flush: {tail}"
    );
}

#[test]
fn dump_log_drops_and_counts_when_the_queue_is_full() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = DumpOptions::new(NodeId(1));
    opts.queue_lines = 1;
    let dump = DumpLog::open(dir.path(), opts).unwrap();
    for i in 0..20_000 {
        dump.record(DumpLevel::Info, Term(1), &i);
    }
    let dropped = dump.dropped_lines();
    dump.flush();
    drop(dump);
    let text = fs::read_to_string(dir.path().join("dump.txt")).unwrap();
    let written = text.lines().filter(|l| !l.contains("dropped")).count() as u64;
    assert!(dropped > 0, "a queue of 1 must overflow");
    assert!(
        text.contains("lines dropped (queue full)"),
        "the drop count must be written"
    );
    assert!(written <= 20_000 && written > 0);
}
