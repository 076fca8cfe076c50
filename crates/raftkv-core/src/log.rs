//! The in-memory Raft log.
//!
//! Invariants (asserted):
//! - entries are consecutive: `entries[i].index == offset + 1 + i`;
//! - terms never decrease along the log;
//! - `commit <= last_index()`, and nothing at or below `commit` is truncated;
//! - `persisted <= last_index()`: everything up to `persisted` is durable.
//!
//! Compaction: `offset`/`offset_term` describe the prefix `1..=offset` that a
//! snapshot replaced; `offset <= commit` always.

use crate::types::{Entry, LogIndex, Term};

#[derive(Clone, Debug, Default)]
pub struct RaftLog {
    offset: LogIndex,
    offset_term: Term,
    entries: Vec<Entry>,
    /// The first index not yet handed to storage in a `Ready`.
    unstable_from: LogIndex,
    /// Everything up to here is durable on this node's storage.
    persisted: LogIndex,
    commit: LogIndex,
}

impl RaftLog {
    /// A log restored from storage: every entry given is durable. `entries`
    /// follow a snapshot ending at `(offset, offset_term)` (zero: none).
    pub fn restored(
        offset: LogIndex,
        offset_term: Term,
        entries: Vec<Entry>,
        commit: LogIndex,
    ) -> RaftLog {
        let last = LogIndex(offset.0 + entries.len() as u64);
        let log = RaftLog {
            offset,
            offset_term,
            entries,
            unstable_from: last.next(),
            persisted: last,
            commit: commit.min(last).max(offset),
        };
        log.check();
        log
    }

    /// The last index a snapshot replaced (0: none).
    pub fn offset(&self) -> LogIndex {
        self.offset
    }

    /// Drop the entries up to `index` (at most the commit index): a snapshot
    /// holds them now.
    pub fn compact_to(&mut self, index: LogIndex) {
        assert!(index <= self.commit, "compacting past the commit index");
        if index <= self.offset {
            return;
        }
        let term = self.term(index).expect("compacting to an index in the log");
        self.entries.drain(..(index.0 - self.offset.0) as usize);
        self.offset = index;
        self.offset_term = term;
        self.unstable_from = self.unstable_from.max(index.next());
        self.persisted = self.persisted.max(index);
    }

    /// A snapshot ending at `(index, term)` was installed. When the log holds
    /// that entry, the entries after it stay (Raft §7); otherwise the whole
    /// log goes. Returns whether the suffix stayed.
    pub fn install_snapshot(&mut self, index: LogIndex, term: Term) -> bool {
        let keep = self.matches(index, term) && index >= self.offset;
        if keep {
            self.commit = self.commit.max(index);
            self.compact_to(index);
        } else {
            self.entries.clear();
            self.offset = index;
            self.offset_term = term;
            self.unstable_from = index.next();
            self.persisted = index;
            self.commit = index;
        }
        self.check();
        keep
    }

    fn check(&self) {
        for (i, e) in self.entries.iter().enumerate() {
            assert_eq!(
                e.index.0,
                self.offset.0 + 1 + i as u64,
                "log entries not consecutive"
            );
        }
        for w in self.entries.windows(2) {
            assert!(
                w[0].term <= w[1].term,
                "log terms decrease at {}",
                w[1].index
            );
        }
    }

    pub fn last_index(&self) -> LogIndex {
        LogIndex(self.offset.0 + self.entries.len() as u64)
    }

    pub fn last_term(&self) -> Term {
        self.entries
            .last()
            .map(|e| e.term)
            .unwrap_or(self.offset_term)
    }

    pub fn first_index(&self) -> LogIndex {
        self.offset.next()
    }

    pub fn commit(&self) -> LogIndex {
        self.commit
    }

    pub fn persisted(&self) -> LogIndex {
        self.persisted
    }

    /// The term of the entry at `index`, `None` when it is not in the log.
    pub fn term(&self, index: LogIndex) -> Option<Term> {
        if index == self.offset {
            return Some(self.offset_term);
        }
        self.get(index).map(|e| e.term)
    }

    pub fn get(&self, index: LogIndex) -> Option<&Entry> {
        if index <= self.offset {
            return None;
        }
        self.entries.get((index.0 - self.offset.0 - 1) as usize)
    }

    /// Entries from `lo` on, at most `max_count` and `max_bytes` (at least one
    /// entry when any exists).
    pub fn slice(&self, lo: LogIndex, max_count: usize, max_bytes: usize) -> Vec<Entry> {
        let mut out = Vec::new();
        let mut bytes = 0;
        let mut i = lo;
        while let Some(e) = self.get(i) {
            if out.len() >= max_count || (!out.is_empty() && bytes + e.size_bytes() > max_bytes) {
                break;
            }
            bytes += e.size_bytes();
            out.push(e.clone());
            i = i.next();
        }
        out
    }

    /// Leader append of a fresh entry at the end.
    pub fn push(&mut self, entry: Entry) {
        assert_eq!(
            entry.index,
            self.last_index().next(),
            "leader append not at the end"
        );
        assert!(
            entry.term >= self.last_term(),
            "leader append with an older term"
        );
        self.entries.push(entry);
    }

    /// `true` when `(index, term)` is in the log.
    pub fn matches(&self, index: LogIndex, term: Term) -> bool {
        self.term(index) == Some(term)
    }

    /// Append entries from a leader after `prev` matched: skip the ones the
    /// log already has, truncate at the first conflict, append the rest.
    /// Returns the index truncated from, if any. The caller has checked that
    /// no conflict lies at or below the commit index.
    pub fn merge(&mut self, entries: &[Entry]) -> Option<LogIndex> {
        let mut truncated = None;
        for (i, e) in entries.iter().enumerate() {
            match self.term(e.index) {
                Some(t) if t == e.term => continue,
                Some(_) => {
                    assert!(
                        e.index > self.commit,
                        "truncating committed entry {}",
                        e.index
                    );
                    self.truncate_from(e.index);
                    truncated = Some(e.index);
                    self.entries.extend_from_slice(&entries[i..]);
                    break;
                }
                None => {
                    self.entries.extend_from_slice(&entries[i..]);
                    break;
                }
            }
        }
        truncated
    }

    /// The first index whose entry would conflict with (differ from) `entries`,
    /// or `None` when all of them agree or extend the log.
    pub fn first_conflict(&self, entries: &[Entry]) -> Option<LogIndex> {
        entries
            .iter()
            .find(|e| matches!(self.term(e.index), Some(t) if t != e.term))
            .map(|e| e.index)
    }

    fn truncate_from(&mut self, index: LogIndex) {
        assert!(index > self.offset);
        self.entries
            .truncate((index.0 - self.offset.0 - 1) as usize);
        self.unstable_from = self.unstable_from.min(index);
        self.persisted = self.persisted.min(index.prev());
    }

    /// The first index of the run of entries with the same term as `index`.
    pub fn first_index_of_term_at(&self, index: LogIndex) -> LogIndex {
        let term = self.term(index);
        let mut i = index;
        while i.prev() > self.offset && self.term(i.prev()) == term {
            i = i.prev();
        }
        i
    }

    /// The last index whose entry has `term`, if the log has any.
    pub fn last_index_of_term(&self, term: Term) -> Option<LogIndex> {
        self.entries
            .iter()
            .rev()
            .find(|e| e.term == term)
            .map(|e| e.index)
    }

    pub fn set_commit(&mut self, index: LogIndex) {
        assert!(
            index <= self.last_index(),
            "commit {index} past the log end {}",
            self.last_index()
        );
        if index > self.commit {
            self.commit = index;
        }
    }

    /// Entries not yet handed to storage; marks them handed.
    pub fn take_unstable(&mut self) -> Vec<Entry> {
        let lo = self.unstable_from;
        let out: Vec<Entry> = self.slice(lo, usize::MAX, usize::MAX);
        self.unstable_from = self.last_index().next();
        out
    }

    pub fn has_unstable(&self) -> bool {
        self.unstable_from <= self.last_index()
    }

    /// Storage reports `(index, term)` durable. Ignored when the log has since
    /// changed at that index.
    pub fn persisted_to(&mut self, index: LogIndex, term: Term) {
        if self.matches(index, term) && index > self.persisted && index < self.unstable_from {
            self.persisted = index;
        }
    }

    /// Whether `(last_index, last_term)` of another log is at least as
    /// up to date as this one (Raft §5.4.1).
    pub fn is_up_to_date(&self, last_index: LogIndex, last_term: Term) -> bool {
        (last_term, last_index) >= (self.last_term(), self.last_index())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::EntryPayload;

    fn e(i: u64, t: u64) -> Entry {
        Entry {
            index: LogIndex(i),
            term: Term(t),
            payload: EntryPayload::Noop,
        }
    }

    #[test]
    fn merge_skips_known_truncates_conflicts() {
        let mut log = RaftLog::restored(
            LogIndex(0),
            Term(0),
            vec![e(1, 1), e(2, 1), e(3, 2)],
            LogIndex(1),
        );
        assert_eq!(log.merge(&[e(2, 1), e(3, 2), e(4, 2)]), None);
        assert_eq!(log.last_index(), LogIndex(4));
        assert_eq!(log.merge(&[e(3, 3)]), Some(LogIndex(3)));
        assert_eq!(log.last_index(), LogIndex(3));
        assert_eq!(log.persisted(), LogIndex(2));
        assert_eq!(log.take_unstable(), vec![e(3, 3)]);
    }

    #[test]
    fn compaction_and_install() {
        let mut log = RaftLog::restored(
            LogIndex(0),
            Term(0),
            vec![e(1, 1), e(2, 1), e(3, 2), e(4, 2)],
            LogIndex(3),
        );
        log.compact_to(LogIndex(2));
        assert_eq!(
            (log.first_index(), log.last_index()),
            (LogIndex(3), LogIndex(4))
        );
        assert_eq!(log.term(LogIndex(2)), Some(Term(1)));
        assert_eq!(log.get(LogIndex(2)), None);
        // A snapshot that matches keeps the suffix...
        assert!(log.install_snapshot(LogIndex(3), Term(2)));
        assert_eq!(
            (log.first_index(), log.last_index()),
            (LogIndex(4), LogIndex(4))
        );
        // ...one that does not replaces everything.
        assert!(!log.install_snapshot(LogIndex(9), Term(5)));
        assert_eq!((log.last_index(), log.last_term()), (LogIndex(9), Term(5)));
        assert_eq!(log.commit(), LogIndex(9));
        assert!(!log.has_unstable());
    }

    #[test]
    fn term_runs() {
        let log = RaftLog::restored(
            LogIndex(0),
            Term(0),
            vec![e(1, 1), e(2, 2), e(3, 2), e(4, 2), e(5, 3)],
            LogIndex(0),
        );
        assert_eq!(log.first_index_of_term_at(LogIndex(4)), LogIndex(2));
        assert_eq!(log.last_index_of_term(Term(2)), Some(LogIndex(4)));
        assert_eq!(log.last_index_of_term(Term(9)), None);
    }
}
