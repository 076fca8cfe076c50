//! The storage conformance suite: one set of checks, generic over a factory,
//! run against every [`Storage`] implementation (`tests/conformance.rs` runs
//! it for [`crate::FileStorage`] and [`crate::MemStorage`]). Failures panic
//! with a message naming the check.

use raftkv_core::{
    ClientCommand, ClientId, Entry, EntryPayload, HardState, LogIndex, NodeId, Op, Restored, Term,
};

use crate::error::StorageError;
use crate::storage::{persist_ready, Storage};

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
}

/// A command entry whose content depends on (index, term), so a mixed-up
/// entry is noticed.
pub fn entry(index: u64, term: u64) -> Entry {
    let payload = if index % 5 == 1 {
        EntryPayload::Noop
    } else {
        let key = format!("key {index}");
        let op = if index % 7 == 0 {
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
    s.entries(LogIndex(1), s.last_index())
        .expect("read the whole log")
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
            commit: LogIndex(60)
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
