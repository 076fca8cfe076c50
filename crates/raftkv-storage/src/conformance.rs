//! The storage conformance suite: one set of checks, generic over a factory,
//! run against every [`Storage`] implementation (`tests/conformance.rs` runs
//! it for [`crate::FileStorage`] and [`crate::MemStorage`]). Failures panic
//! with a message naming the check.
//!
//! Compiled only with the `conformance` feature: dependents enable it in
//! their `[dev-dependencies]`.

use std::collections::BTreeMap;

use raftkv_core::{
    ClientCommand, ClientId, Entry, EntryPayload, HardState, KvData, LogIndex, Membership, NodeId,
    Op, OpResult, Ready, Restored, SessionRecord, Snapshot, SnapshotMeta, SnapshotOrigin,
    SnapshotWrite, Term,
};

use crate::error::StorageError;
use crate::storage::{persist_ready, saved_compactions, Storage};

/// Makes and restarts stores for the suite.
pub trait StorageFactory {
    type S: Storage;
    /// A fresh, empty store.
    fn create(&mut self) -> Self::S;
    /// A clean restart: the store is closed and opened again; everything
    /// synced is back.
    fn reopen(&mut self, store: Self::S) -> (Self::S, Restored);
    /// A crash: the process dies without syncing.
    fn crash(&mut self, store: Self::S) -> (Self::S, Restored);
    /// True when a crash loses exactly the unsynced appends (the model). The
    /// file store keeps whatever reached the page cache when only the process
    /// dies, so for it the suite checks only that synced data survives.
    fn crash_loses_unsynced(&self) -> bool;
    /// A crash in the middle of `save_snapshot(write)`: after the snapshot
    /// is durable, before the log cut that goes with it. The default (for
    /// stores where the two are one atomic step): save, then crash.
    fn crash_during_snapshot(
        &mut self,
        mut store: Self::S,
        write: &SnapshotWrite,
    ) -> (Self::S, Restored) {
        store.save_snapshot(write).expect("save_snapshot");
        self.crash(store)
    }
    /// Damages one byte of the stored snapshot's line `line` (1-based) and
    /// restarts: the error the restart gives, or `None` when the store has
    /// no snapshot file to damage (the model).
    fn damage_snapshot(&mut self, _store: Self::S, _line: u64) -> Option<StorageError> {
        None
    }
}

/// Runs every check.
pub fn run_all<F: StorageFactory>(factory: &mut F) {
    append_and_read(factory);
    truncate_conflicting_suffix(factory);
    holes_and_bad_sequences_rejected(factory);
    hard_state_round_trip(factory);
    reopen_restores_synced(factory);
    crash_keeps_synced(factory);
    persist_ready_order(factory);
    persist_readies_as_a_group(factory);
    run_snapshot_checks(factory);
}

/// The snapshot checks (part of [`run_all`]).
pub fn run_snapshot_checks<F: StorageFactory>(factory: &mut F) {
    compaction_then_reopen(factory);
    installed_keeps_matching_suffix(factory);
    installed_without_suffix(factory);
    older_snapshot_ignored(factory);
    bad_compaction_refused(factory);
    crash_after_compaction(factory);
    persist_ready_snapshots_before_entries(factory);
    config_entries_round_trip(factory);
    crash_between_snapshot_and_log_cut(factory);
    corrupt_snapshot_refused(factory);
}

/// A command entry whose content depends on (index, term), so a mixed-up
/// entry is noticed.
pub fn entry(index: u64, term: u64) -> Entry {
    let payload = if index % 5 == 1 {
        EntryPayload::Noop
    } else {
        let key = format!("key {index}");
        let op = if index.is_multiple_of(7) {
            Op::Delete { key }
        } else {
            // Sizes vary from a few bytes to a few hundred.
            let filler = "abc déf\\ ".repeat((index.wrapping_mul(7919) ^ term) as usize % 40);
            Op::Set {
                key,
                value: format!("value\t{index}/{term} {filler}"),
            }
        };
        EntryPayload::Command(ClientCommand {
            client_id: ClientId(index % 3),
            seq: index,
            op,
        })
    };
    Entry {
        index: LogIndex(index),
        term: Term(term),
        payload,
    }
}

pub fn entries(lo: u64, hi: u64, term: u64) -> Vec<Entry> {
    (lo..=hi).map(|i| entry(i, term)).collect()
}

fn all<S: Storage>(s: &S) -> Vec<Entry> {
    s.entries(s.first_index(), s.last_index())
        .expect("read the whole log")
}

/// A snapshot at `(index, term)` whose content depends on both, with a
/// configuration, sessions, and keys that need escaping.
pub fn snapshot(index: u64, term: u64, keys: u64) -> Snapshot {
    let mut membership = Membership::with_voters([NodeId(1), NodeId(2), NodeId(3)]);
    membership.learners.insert(NodeId(4));
    membership.addrs = BTreeMap::from([
        (NodeId(1), "10.0.0.1:7001".to_owned()),
        (NodeId(4), format!("host {term}:7004")),
    ]);
    let mut data = KvData::new();
    for k in 0..keys {
        let value = if k % 11 == 3 {
            String::new()
        } else {
            format!("v{index}/{term} k{k}\t\\ é")
        };
        data.insert(format!("key {k:05}"), value);
    }
    Snapshot {
        meta: SnapshotMeta {
            index: LogIndex(index),
            term: Term(term),
            membership,
        },
        data,
        sessions: vec![
            SessionRecord {
                client_id: ClientId(3),
                last_seq: 17,
                last_result: OpResult::Set,
                last_index: LogIndex(index.saturating_sub(2)),
            },
            SessionRecord {
                client_id: ClientId(9),
                last_seq: 2,
                last_result: OpResult::Deleted { existed: true },
                last_index: LogIndex(index),
            },
            SessionRecord {
                client_id: ClientId(12),
                last_seq: 5,
                last_result: OpResult::Deleted { existed: false },
                last_index: LogIndex(1),
            },
        ],
    }
}

pub fn compaction(index: u64, term: u64) -> SnapshotWrite {
    SnapshotWrite {
        snapshot: snapshot(index, term, 50),
        origin: SnapshotOrigin::Compaction,
    }
}

pub fn installed(index: u64, term: u64, keep_log_suffix: bool) -> SnapshotWrite {
    SnapshotWrite {
        snapshot: snapshot(index, term, 70),
        origin: SnapshotOrigin::Installed { keep_log_suffix },
    }
}

/// Checks what a restart recovers the way the core will: entries strictly
/// after the snapshot, consecutive, terms non-decreasing from the
/// snapshot's. Returns the last (index, term).
pub fn check_restored(r: &Restored, check: &str) -> (LogIndex, Term) {
    let (mut index, mut term) = r
        .snapshot
        .as_ref()
        .map_or((LogIndex(0), Term(0)), |s| (s.meta.index, s.meta.term));
    for e in &r.entries {
        assert!(
            e.index == index.next() && e.term >= term,
            "{check}: restored entry {} (term {}) does not follow {index} (term {term})",
            e.index,
            e.term
        );
        (index, term) = (e.index, e.term);
    }
    (index, term)
}

fn restored_snapshot(r: &Restored) -> Option<&Snapshot> {
    r.snapshot.as_ref()
}

pub fn compaction_then_reopen<F: StorageFactory>(f: &mut F) {
    let mut s = f.create();
    s.append(&entries(1, 60, 1)).unwrap();
    s.append(&entries(61, 100, 2)).unwrap();
    s.sync().unwrap();
    let snap = compaction(70, 2);
    s.save_snapshot(&snap).unwrap();
    assert_eq!(s.first_index(), LogIndex(71), "compaction: first index");
    assert_eq!((s.last_index(), s.last_term()), (LogIndex(100), Term(2)));
    assert_eq!(all(&s), entries(71, 100, 2), "compaction: the suffix stays");
    assert!(
        matches!(
            s.entries(LogIndex(70), LogIndex(80)),
            Err(StorageError::OutOfRange { .. })
        ),
        "compaction: compacted entries cannot be read"
    );
    assert_eq!(s.snapshot_meta(), Some(&snap.snapshot.meta));
    assert_eq!(s.snapshot().unwrap().as_ref(), Some(&snap.snapshot));
    let (mut s, r) = f.reopen(s);
    assert_eq!(
        restored_snapshot(&r),
        Some(&snap.snapshot),
        "compaction: the snapshot must come back whole"
    );
    assert_eq!(
        r.entries,
        entries(71, 100, 2),
        "compaction: entries after it"
    );
    check_restored(&r, "compaction");
    assert_eq!(s.first_index(), LogIndex(71));
    // The reopened store keeps working: appends, conflicts, more snapshots.
    assert!(
        matches!(
            s.append(&entries(70, 72, 2)),
            Err(StorageError::Compacted { .. })
        ),
        "compaction: an append below the first index must be refused"
    );
    s.append(&entries(95, 110, 3)).unwrap();
    s.sync().unwrap();
    let snap2 = compaction(110, 3);
    s.save_snapshot(&snap2).unwrap();
    assert_eq!(s.first_index(), LogIndex(111));
    assert_eq!((s.last_index(), s.last_term()), (LogIndex(110), Term(3)));
    assert_eq!(all(&s), vec![]);
    s.append(&entries(111, 112, 3)).unwrap();
    s.sync().unwrap();
    let (s, r) = f.reopen(s);
    assert_eq!(restored_snapshot(&r), Some(&snap2.snapshot));
    assert_eq!(r.entries, entries(111, 112, 3));
    assert_eq!(all(&s), entries(111, 112, 3));
}

pub fn installed_keeps_matching_suffix<F: StorageFactory>(f: &mut F) {
    let mut s = f.create();
    s.append(&entries(1, 50, 1)).unwrap();
    s.sync().unwrap();
    let snap = installed(30, 1, true);
    s.save_snapshot(&snap).unwrap();
    assert_eq!(
        all(&s),
        entries(31, 50, 1),
        "installed: matching suffix kept"
    );
    let (mut s, r) = f.reopen(s);
    assert_eq!(restored_snapshot(&r), Some(&snap.snapshot));
    assert_eq!(r.entries, entries(31, 50, 1));
    // keep_log_suffix, but the log has another term there: Raft §7 says
    // drop it all.
    let snap = installed(40, 2, true);
    s.save_snapshot(&snap).unwrap();
    assert_eq!(all(&s), vec![], "installed: a mismatching suffix must go");
    assert_eq!((s.last_index(), s.last_term()), (LogIndex(40), Term(2)));
    s.append(&entries(41, 42, 2)).unwrap();
    s.sync().unwrap();
    let (_, r) = f.reopen(s);
    assert_eq!(restored_snapshot(&r), Some(&snap.snapshot));
    assert_eq!(r.entries, entries(41, 42, 2));
}

pub fn installed_without_suffix<F: StorageFactory>(f: &mut F) {
    let mut s = f.create();
    s.append(&entries(1, 50, 1)).unwrap();
    s.sync().unwrap();
    // Within the log, with the same term, but the core says drop it all.
    let snap = installed(20, 1, false);
    s.save_snapshot(&snap).unwrap();
    assert_eq!(all(&s), vec![], "installed: no suffix kept");
    assert_eq!((s.last_index(), s.last_term()), (LogIndex(20), Term(1)));
    let (mut s, r) = f.reopen(s);
    assert_eq!(restored_snapshot(&r), Some(&snap.snapshot));
    assert_eq!(r.entries, vec![], "installed: no suffix after a reopen");
    // Past the end of the log.
    s.append(&entries(21, 25, 1)).unwrap();
    let snap = installed(90, 4, false);
    s.save_snapshot(&snap).unwrap();
    assert_eq!(
        (s.first_index(), s.last_index()),
        (LogIndex(91), LogIndex(90))
    );
    assert_eq!(s.last_term(), Term(4));
    assert!(
        matches!(s.append(&entries(92, 92, 4)), Err(StorageError::Gap { .. })),
        "installed: a hole after the snapshot must be refused"
    );
    assert!(
        matches!(
            s.append(&entries(91, 91, 3)),
            Err(StorageError::BadSequence { .. })
        ),
        "installed: a term below the snapshot's must be refused"
    );
    s.append(&entries(91, 93, 4)).unwrap();
    s.sync().unwrap();
    let (s, r) = f.crash(s);
    assert_eq!(restored_snapshot(&r), Some(&snap.snapshot));
    assert_eq!(r.entries, entries(91, 93, 4));
    assert_eq!(
        r.hard_state.term,
        Term(4),
        "installed: the restored term is at least the snapshot's"
    );
    assert_eq!(all(&s), entries(91, 93, 4));
}

pub fn older_snapshot_ignored<F: StorageFactory>(f: &mut F) {
    let mut s = f.create();
    s.append(&entries(1, 30, 1)).unwrap();
    s.sync().unwrap();
    let snap = compaction(20, 1);
    s.save_snapshot(&snap).unwrap();
    s.save_snapshot(&compaction(10, 1)).unwrap();
    s.save_snapshot(&installed(20, 1, false)).unwrap();
    assert_eq!(
        s.snapshot_meta(),
        Some(&snap.snapshot.meta),
        "an older (or equal) snapshot must never replace a later one"
    );
    assert_eq!(all(&s), entries(21, 30, 1));
    let (_, r) = f.reopen(s);
    assert_eq!(restored_snapshot(&r), Some(&snap.snapshot));
    assert_eq!(r.entries, entries(21, 30, 1));
}

pub fn bad_compaction_refused<F: StorageFactory>(f: &mut F) {
    let mut s = f.create();
    s.append(&entries(1, 10, 2)).unwrap();
    s.sync().unwrap();
    for (snap, why) in [
        (compaction(11, 2), "past the end of the log"),
        (compaction(5, 1), "with another term than the log's"),
    ] {
        assert!(
            matches!(
                s.save_snapshot(&snap),
                Err(StorageError::SnapshotRejected { .. })
            ),
            "a compaction snapshot {why} must be refused"
        );
    }
    assert_eq!(s.snapshot_meta(), None);
    assert_eq!(
        all(&s),
        entries(1, 10, 2),
        "a refused snapshot changes nothing"
    );
    s.save_snapshot(&compaction(5, 2)).unwrap();
    assert_eq!(s.first_index(), LogIndex(6));
}

pub fn crash_after_compaction<F: StorageFactory>(f: &mut F) {
    let mut s = f.create();
    s.append(&entries(1, 20, 1)).unwrap();
    s.sync().unwrap();
    s.append(&entries(21, 30, 1)).unwrap(); // not synced
    let snap = compaction(15, 1);
    s.save_snapshot(&snap).unwrap();
    let (mut s, r) = f.crash(s);
    assert_eq!(
        restored_snapshot(&r),
        Some(&snap.snapshot),
        "crash: a saved snapshot is durable"
    );
    check_restored(&r, "crash after compaction");
    if f.crash_loses_unsynced() {
        assert_eq!(
            r.entries,
            entries(16, 20, 1),
            "crash: synced entries after it"
        );
    } else {
        assert!(
            r.entries == entries(16, 20, 1) || r.entries == entries(16, 30, 1),
            "crash: the synced entries after the snapshot, maybe the unsynced ones"
        );
    }
    assert_eq!(all(&s), r.entries);
    // An installed snapshot with unsynced appends before it.
    let last = s.last_index().0;
    s.append(&entries(last + 1, last + 5, 2)).unwrap();
    let snap = installed(last + 3, 2, true);
    s.save_snapshot(&snap).unwrap();
    let (_, r) = f.crash(s);
    assert_eq!(restored_snapshot(&r), Some(&snap.snapshot));
    let (end, _) = check_restored(&r, "crash after install");
    assert!(
        end == LogIndex(last + 3) || end == LogIndex(last + 5),
        "crash after install: log ends at {end}"
    );
}

pub fn persist_ready_snapshots_before_entries<F: StorageFactory>(f: &mut F) {
    let mut s = f.create();
    persist_ready(
        &mut s,
        &Ready {
            hard_state: Some(HardState {
                term: Term(1),
                voted_for: Some(NodeId(2)),
                commit: LogIndex(0),
                repair: None,
            }),
            must_sync: true,
            entries: entries(1, 10, 1),
            ..Ready::default()
        },
    )
    .unwrap();
    // A leader sends a snapshot past our log; the same Ready appends after
    // it. Snapshots go first, or the append would leave a hole.
    let hs = HardState {
        term: Term(3),
        voted_for: None,
        commit: LogIndex(40),
        repair: None,
    };
    let snap = installed(40, 3, false);
    let ready = Ready {
        hard_state: Some(hs),
        must_sync: true,
        snapshots: vec![snap.clone()],
        entries: entries(41, 45, 3),
        ..Ready::default()
    };
    persist_ready(&mut s, &ready).unwrap();
    assert_eq!(saved_compactions(&ready), vec![]);
    let (mut s, r) = f.crash(s);
    assert_eq!(restored_snapshot(&r), Some(&snap.snapshot));
    assert_eq!(r.entries, entries(41, 45, 3));
    assert_eq!(r.hard_state, hs);
    // A compaction of durable entries, then more entries.
    let ready = Ready {
        hard_state: Some(HardState {
            commit: LogIndex(45),
            ..hs
        }),
        must_sync: true,
        snapshots: vec![compaction(43, 3), compaction(45, 3)],
        entries: entries(46, 47, 3),
        ..Ready::default()
    };
    persist_ready(&mut s, &ready).unwrap();
    assert_eq!(saved_compactions(&ready), vec![LogIndex(43), LogIndex(45)]);
    let (_, r) = f.crash(s);
    assert_eq!(
        r.snapshot.as_ref().map(|s| s.meta.index),
        Some(LogIndex(45))
    );
    assert_eq!(r.entries, entries(46, 47, 3));
}

pub fn crash_between_snapshot_and_log_cut<F: StorageFactory>(f: &mut F) {
    let mut s = f.create();
    s.append(&entries(1, 40, 1)).unwrap();
    s.append(&entries(41, 60, 2)).unwrap();
    s.sync().unwrap();
    s.save_hard_state(&HardState {
        term: Term(2),
        voted_for: None,
        commit: LogIndex(55),
        repair: None,
    })
    .unwrap();
    let snap = compaction(50, 2);
    let (mut s, r) = f.crash_during_snapshot(s, &snap);
    assert_eq!(
        restored_snapshot(&r),
        Some(&snap.snapshot),
        "crash before the log cut: the snapshot is durable"
    );
    assert_eq!(
        r.entries,
        entries(51, 60, 2),
        "crash before the log cut: entries the snapshot covers must not come back"
    );
    assert_eq!(r.hard_state.commit, LogIndex(55));
    assert_eq!(s.first_index(), LogIndex(51));
    assert_eq!(all(&s), entries(51, 60, 2));
    s.append(&entries(61, 62, 2)).unwrap();
    s.sync().unwrap();
    // An installed snapshot past the log's end: nothing of the log stays.
    let snap = installed(70, 3, false);
    let (mut s, r) = f.crash_during_snapshot(s, &snap);
    assert_eq!(restored_snapshot(&r), Some(&snap.snapshot));
    assert_eq!(r.entries, vec![]);
    assert_eq!((s.last_index(), s.last_term()), (LogIndex(70), Term(3)));
    s.append(&entries(71, 75, 3)).unwrap();
    s.sync().unwrap();
    // An installed snapshot whose term differs from the log's entry at its
    // index: the log conflicts with it, the suffix must not come back.
    let snap = installed(73, 4, false);
    let (s, r) = f.crash_during_snapshot(s, &snap);
    assert_eq!(restored_snapshot(&r), Some(&snap.snapshot));
    assert_eq!(r.entries, vec![], "a conflicting suffix must go");
    assert_eq!((s.last_index(), s.last_term()), (LogIndex(73), Term(4)));
    // Same term at its index: the suffix may stay (it agrees with the
    // snapshot, as after a compaction) or go.
    let mut s = s;
    s.append(&entries(74, 80, 4)).unwrap();
    s.sync().unwrap();
    let snap = installed(77, 4, false);
    let (s, r) = f.crash_during_snapshot(s, &snap);
    assert_eq!(restored_snapshot(&r), Some(&snap.snapshot));
    assert!(
        r.entries.is_empty() || r.entries == entries(78, 80, 4),
        "after an install with a matching term: {} entries",
        r.entries.len()
    );
    check_restored(&r, "crash during install");
    assert_eq!(all(&s), r.entries);
}

pub fn corrupt_snapshot_refused<F: StorageFactory>(f: &mut F) {
    let mut s = f.create();
    s.append(&entries(1, 30, 1)).unwrap();
    s.sync().unwrap();
    s.save_snapshot(&compaction(20, 1)).unwrap();
    // Line 12 is a key line (9 header lines, then the keys).
    if let Some(err) = f.damage_snapshot(s, 12) {
        let msg = err.to_string();
        assert!(
            matches!(&err, StorageError::Corrupt { line: 12, file, .. } if file.ends_with("snapshot.txt")),
            "a damaged snapshot must be refused naming snapshot.txt and line 12: {msg}"
        );
        assert!(msg.contains("snapshot.txt:12:"), "{msg}");
    }
}

pub fn config_entries_round_trip<F: StorageFactory>(f: &mut F) {
    let mut s = f.create();
    let mut log = entries(1, 3, 1);
    let mut m = Membership::with_voters([NodeId(1), NodeId(2)]);
    m.learners.insert(NodeId(7));
    m.addrs.insert(NodeId(7), "new node:7001".into());
    log.push(Entry {
        index: LogIndex(4),
        term: Term(1),
        payload: EntryPayload::Config(m),
    });
    s.append(&log).unwrap();
    s.sync().unwrap();
    let (s, r) = f.reopen(s);
    assert_eq!(r.entries, log, "config entries must come back");
    assert_eq!(all(&s), log);
}

pub fn append_and_read<F: StorageFactory>(f: &mut F) {
    let mut s = f.create();
    assert_eq!(s.last_index(), LogIndex(0));
    assert_eq!(s.last_term(), Term(0));
    assert_eq!(s.entries(LogIndex(1), LogIndex(0)).unwrap(), vec![]);
    s.append(&[]).unwrap();
    s.append(&entries(1, 3, 1)).unwrap();
    s.append(&entries(4, 10, 2)).unwrap();
    assert_eq!(s.last_index(), LogIndex(10));
    assert_eq!(s.last_term(), Term(2));
    let mut want = entries(1, 3, 1);
    want.extend(entries(4, 10, 2));
    assert_eq!(all(&s), want);
    assert_eq!(
        s.entries(LogIndex(4), LogIndex(6)).unwrap(),
        entries(4, 6, 2)
    );
    assert_eq!(
        s.entries(LogIndex(10), LogIndex(10)).unwrap(),
        entries(10, 10, 2)
    );
    for (lo, hi) in [(0, 3), (5, 11), (7, 5)] {
        assert!(
            matches!(
                s.entries(LogIndex(lo), LogIndex(hi)),
                Err(StorageError::OutOfRange { .. })
            ),
            "append_and_read: entries({lo}, {hi}) must be out of range"
        );
    }
}

pub fn truncate_conflicting_suffix<F: StorageFactory>(f: &mut F) {
    let mut s = f.create();
    s.append(&entries(1, 10, 1)).unwrap();
    s.sync().unwrap();
    s.append(&entries(6, 8, 2)).unwrap();
    assert_eq!(
        s.last_index(),
        LogIndex(8),
        "truncate: the suffix after the new entries must be gone"
    );
    let mut want = entries(1, 5, 1);
    want.extend(entries(6, 8, 2));
    assert_eq!(all(&s), want);
    // Replace everything from index 1.
    s.append(&entries(1, 2, 3)).unwrap();
    assert_eq!(all(&s), entries(1, 2, 3));
    // Re-appending the last entry replaces it.
    s.append(&entries(2, 4, 3)).unwrap();
    s.sync().unwrap();
    assert_eq!(all(&s), entries(1, 4, 3));
    let (s, restored) = f.reopen(s);
    assert_eq!(
        restored.entries,
        entries(1, 4, 3),
        "truncate: a reopen must see the truncated log"
    );
    assert_eq!(all(&s), entries(1, 4, 3));
}

pub fn holes_and_bad_sequences_rejected<F: StorageFactory>(f: &mut F) {
    let mut s = f.create();
    assert!(
        matches!(s.append(&entries(2, 3, 1)), Err(StorageError::Gap { .. })),
        "a first append must start at 1"
    );
    assert!(
        matches!(s.append(&[entry(0, 1)]), Err(StorageError::Gap { .. })),
        "index 0 is not an entry"
    );
    s.append(&entries(1, 3, 2)).unwrap();
    assert!(
        matches!(s.append(&entries(5, 6, 2)), Err(StorageError::Gap { .. })),
        "a hole must be refused"
    );
    let not_consecutive = vec![entry(4, 2), entry(6, 2)];
    assert!(matches!(
        s.append(&not_consecutive),
        Err(StorageError::BadSequence { .. })
    ));
    assert!(
        matches!(
            s.append(&entries(4, 4, 1)),
            Err(StorageError::BadSequence { .. })
        ),
        "term below the previous entry"
    );
    let falling = vec![entry(4, 3), entry(5, 2)];
    assert!(matches!(
        s.append(&falling),
        Err(StorageError::BadSequence { .. })
    ));
    assert_eq!(
        all(&s),
        entries(1, 3, 2),
        "refused appends must change nothing"
    );
    s.append(&entries(4, 4, 2)).unwrap();
    assert_eq!(
        s.last_index(),
        LogIndex(4),
        "the store must still accept a good append after refusals"
    );
}

pub fn hard_state_round_trip<F: StorageFactory>(f: &mut F) {
    let mut s = f.create();
    assert_eq!(s.hard_state(), HardState::default());
    let hs = HardState {
        term: Term(7),
        voted_for: Some(NodeId(3)),
        commit: LogIndex(0),
        repair: None,
    };
    s.save_hard_state(&hs).unwrap();
    assert_eq!(s.hard_state(), hs);
    // Durable when save returns: survives a crash with no sync.
    let (mut s, restored) = f.crash(s);
    assert_eq!(
        restored.hard_state, hs,
        "hard state must be durable when save_hard_state returns"
    );
    assert_eq!(s.hard_state(), hs);
    let hs2 = HardState {
        term: Term(8),
        voted_for: None,
        commit: LogIndex(0),
        repair: None,
    };
    s.save_hard_state(&hs2).unwrap();
    let (_, restored) = f.reopen(s);
    assert_eq!(restored.hard_state, hs2);
}

pub fn reopen_restores_synced<F: StorageFactory>(f: &mut F) {
    let mut s = f.create();
    s.append(&entries(1, 50, 1)).unwrap();
    s.append(&entries(51, 100, 4)).unwrap();
    s.sync().unwrap();
    let hs = HardState {
        term: Term(4),
        voted_for: Some(NodeId(1)),
        commit: LogIndex(60),
        repair: None,
    };
    s.save_hard_state(&hs).unwrap();
    let (mut s, restored) = f.reopen(s);
    let mut want = entries(1, 50, 1);
    want.extend(entries(51, 100, 4));
    assert_eq!(
        restored.entries, want,
        "reopen: synced entries must all come back"
    );
    assert_eq!(restored.hard_state, hs);
    assert_eq!((s.last_index(), s.last_term()), (LogIndex(100), Term(4)));
    assert_eq!(
        s.entries(LogIndex(40), LogIndex(60)).unwrap(),
        want[39..60].to_vec()
    );
    // The reopened store keeps working.
    s.append(&entries(101, 101, 5)).unwrap();
    s.sync().unwrap();
    let (_, restored) = f.reopen(s);
    assert_eq!(restored.entries.len(), 101);
    // Entries of a newer term than the stored one raise the restored term.
    assert_eq!(
        restored.hard_state,
        HardState {
            term: Term(5),
            voted_for: None,
            commit: LogIndex(60),
            repair: None,
        }
    );
}

pub fn crash_keeps_synced<F: StorageFactory>(f: &mut F) {
    let mut s = f.create();
    s.append(&entries(1, 20, 1)).unwrap();
    s.sync().unwrap();
    s.append(&entries(15, 30, 2)).unwrap(); // truncates 15..=20, not synced
    let (mut s, restored) = f.crash(s);
    let synced = entries(1, 20, 1);
    if f.crash_loses_unsynced() {
        assert_eq!(
            restored.entries, synced,
            "crash: exactly the synced log must survive"
        );
        assert_eq!(
            all(&s),
            synced,
            "crash: the store must continue from the durable log"
        );
    } else {
        let mut unsynced = entries(1, 14, 1);
        unsynced.extend(entries(15, 30, 2));
        assert!(
            restored.entries == synced || restored.entries == unsynced,
            "crash: the log must be the synced one or the whole unsynced one"
        );
    }
    // Synced-again data survives the next crash, whatever happened before.
    s.append(&entries(21, 25, 3)[..]).ok();
    let last = s.last_index().0;
    s.append(&entries(last + 1, last + 3, 3)).unwrap();
    s.sync().unwrap();
    let want = all(&s);
    let (_, restored) = f.crash(s);
    assert_eq!(restored.entries, want, "crash: synced entries must survive");
}

pub fn persist_ready_order<F: StorageFactory>(f: &mut F) {
    use raftkv_core::Ready;
    let mut s = f.create();
    let hs = HardState {
        term: Term(2),
        voted_for: Some(NodeId(1)),
        commit: LogIndex(3),
        repair: None,
    };
    let ready = Ready {
        hard_state: Some(hs),
        must_sync: true,
        entries: entries(1, 3, 2),
        ..Ready::default()
    };
    persist_ready(&mut s, &ready).unwrap();
    let (mut s, restored) = f.crash(s);
    assert_eq!(
        restored.entries,
        entries(1, 3, 2),
        "persist_ready: entries durable when it returns"
    );
    assert_eq!(
        restored.hard_state, hs,
        "persist_ready: a term/vote change saves the commit with it"
    );
    // A commit-only change is saved lazily.
    let ready = Ready {
        hard_state: Some(HardState {
            commit: LogIndex(2),
            ..hs
        }),
        ..Ready::default()
    };
    persist_ready(&mut s, &ready).unwrap();
    assert_eq!(
        s.hard_state().commit,
        LogIndex(3),
        "persist_ready: a commit index never goes back"
    );
    s.append(&entries(4, 10, 2)).unwrap();
    s.sync().unwrap();
    let ready = Ready {
        hard_state: Some(HardState {
            commit: LogIndex(9),
            ..hs
        }),
        ..Ready::default()
    };
    persist_ready(&mut s, &ready).unwrap();
    assert_eq!(
        s.hard_state().commit,
        LogIndex(3),
        "persist_ready: a small commit advance is not saved at once"
    );
    let opts = crate::PersistOptions {
        force_commit_save: true,
        ..Default::default()
    };
    crate::persist_ready_with(&mut s, &ready, opts).unwrap();
    assert_eq!(
        s.hard_state().commit,
        LogIndex(9),
        "persist_ready: a forced commit save happens"
    );
}

/// A tiny seeded generator (SplitMix64) for tests and the crash writer: the
/// same seed gives the same run.
#[derive(Clone, Debug)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `lo..hi` (`lo < hi`).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        assert!(lo < hi);
        lo + self.next_u64() % (hi - lo)
    }
}

/// Group commit: several Readies, one sync, the same durable state as
/// persisting them one by one (a later Ready's entries replacing an earlier
/// one's suffix, a term and vote change in the middle).
pub fn persist_readies_as_a_group<F: StorageFactory>(f: &mut F) {
    use raftkv_core::Ready;
    let mut s = f.create();
    let hs1 = HardState {
        term: Term(1),
        voted_for: Some(NodeId(1)),
        commit: LogIndex(0),
        repair: None,
    };
    let hs2 = HardState {
        term: Term(2),
        voted_for: Some(NodeId(3)),
        commit: LogIndex(2),
        repair: None,
    };
    let group = vec![
        Ready {
            hard_state: Some(hs1),
            must_sync: true,
            entries: entries(1, 4, 1),
            ..Ready::default()
        },
        Ready {
            hard_state: Some(hs2),
            must_sync: true,
            entries: entries(3, 5, 2),
            ..Ready::default()
        },
        Ready {
            hard_state: Some(HardState {
                commit: LogIndex(7),
                ..hs2
            }),
            entries: entries(6, 8, 2),
            ..Ready::default()
        },
    ];
    crate::persist_readies_with(&mut s, &group, crate::PersistOptions::default()).unwrap();
    let (_, restored) = f.crash(s);
    let mut want = entries(1, 2, 1);
    want.extend(entries(3, 8, 2));
    assert_eq!(restored.entries, want, "group commit: every entry durable");
    assert_eq!(
        restored.hard_state,
        HardState {
            commit: LogIndex(7),
            ..hs2
        },
        "group commit: the last term and vote, with the last commit index"
    );
}
