//! The key-value state machine, with client sessions for exactly-once writes
//! (Raft thesis §6.3).
//!
//! Invariant: entries are applied in log order, each exactly once; a command
//! whose `(client_id, seq)` the session already applied is not applied again,
//! and gets the result remembered from its first application.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeSet, HashMap};
use std::hash::BuildHasherDefault;

use crate::api::WriteError;
use crate::snapshot::{KvData, SessionRecord, Snapshot};
use crate::types::{ClientCommand, ClientId, LogIndex, Op, OpResult};

/// A fixed-key hasher: iteration order (and so everything derived from it)
/// is the same on every run, as determinism requires.
type FixedState = BuildHasherDefault<DefaultHasher>;

#[derive(Clone, Debug, PartialEq, Eq)]
struct Session {
    last_seq: u64,
    last_result: OpResult,
    last_index: LogIndex,
}

#[derive(Clone, Debug, Default)]
pub struct KvStore {
    /// Structurally shared, so a snapshot is an O(1) clone.
    data: KvData,
    sessions: HashMap<ClientId, Session, FixedState>,
    /// `(last_index, client)` of every session, oldest first, for eviction.
    session_age: BTreeSet<(LogIndex, ClientId)>,
    max_sessions: usize,
    applied: LogIndex,
}

impl KvStore {
    pub fn new(max_sessions: usize) -> KvStore {
        assert!(max_sessions > 0);
        KvStore {
            max_sessions,
            ..KvStore::default()
        }
    }

    pub fn get(&self, key: &str) -> Option<&String> {
        self.data.get(key)
    }

    /// The map itself (clone it for an O(1) copy).
    pub fn data(&self) -> &KvData {
        &self.data
    }

    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The index of the last entry applied.
    /// Client sessions held (at most `max_sessions`).
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    pub fn applied(&self) -> LogIndex {
        self.applied
    }

    /// Record that a no-op (or any entry without a command) at `index` applied.
    pub fn apply_noop(&mut self, index: LogIndex) {
        assert!(
            index > self.applied,
            "apply out of order: {index} after {}",
            self.applied
        );
        self.applied = index;
    }

    /// Apply a client command committed at `index`.
    pub fn apply(&mut self, index: LogIndex, cmd: &ClientCommand) -> Result<OpResult, WriteError> {
        assert!(
            index > self.applied,
            "apply out of order: {index} after {}",
            self.applied
        );
        self.applied = index;
        if cmd.client_id != ClientId(0) {
            if let Some(s) = self.sessions.get(&cmd.client_id) {
                if cmd.seq == s.last_seq {
                    return Ok(s.last_result.clone());
                }
                if cmd.seq < s.last_seq {
                    return Err(WriteError::StaleSequence);
                }
            }
        }
        let result = self.apply_op(&cmd.op);
        if cmd.client_id != ClientId(0) {
            self.remember(index, cmd, result.clone());
        }
        Ok(result)
    }

    /// The cached result if `(client, seq)` was already applied.
    pub fn duplicate_of(
        &self,
        client_id: ClientId,
        seq: u64,
    ) -> Option<Result<OpResult, WriteError>> {
        if client_id == ClientId(0) {
            return None;
        }
        let s = self.sessions.get(&client_id)?;
        if seq == s.last_seq {
            Some(Ok(s.last_result.clone()))
        } else if seq < s.last_seq {
            Some(Err(WriteError::StaleSequence))
        } else {
            None
        }
    }

    fn apply_op(&mut self, op: &Op) -> OpResult {
        match op {
            Op::Set { key, value } => {
                self.data.insert(key.clone(), value.clone());
                OpResult::Set
            }
            Op::Delete { key } => OpResult::Deleted {
                existed: self.data.remove(key).is_some(),
            },
        }
    }

    fn remember(&mut self, index: LogIndex, cmd: &ClientCommand, result: OpResult) {
        let session = Session {
            last_seq: cmd.seq,
            last_result: result,
            last_index: index,
        };
        if let Some(old) = self.sessions.insert(cmd.client_id, session) {
            self.session_age.remove(&(old.last_index, cmd.client_id));
        }
        self.session_age.insert((index, cmd.client_id));
        while self.sessions.len() > self.max_sessions {
            let oldest = *self
                .session_age
                .iter()
                .next()
                .expect("age set mirrors sessions");
            self.session_age.remove(&oldest);
            self.sessions.remove(&oldest.1);
        }
        debug_assert_eq!(self.sessions.len(), self.session_age.len());
    }

    /// Every key-value pair, sorted by key (for tests).
    pub fn sorted_pairs(&self) -> Vec<(&String, &String)> {
        self.data.iter().collect()
    }

    /// The data (an O(1) clone) and the sessions, sorted by client id.
    pub fn snapshot_parts(&self) -> (KvData, Vec<SessionRecord>) {
        let mut sessions: Vec<SessionRecord> = self
            .sessions
            .iter()
            .map(|(&client_id, s)| SessionRecord {
                client_id,
                last_seq: s.last_seq,
                last_result: s.last_result.clone(),
                last_index: s.last_index,
            })
            .collect();
        sessions.sort_unstable_by_key(|s| s.client_id);
        (self.data.clone(), sessions)
    }

    /// The state machine a snapshot describes, applied up to its index.
    pub fn from_snapshot(max_sessions: usize, snap: &Snapshot) -> KvStore {
        let mut kv = KvStore::new(max_sessions);
        kv.data = snap.data.clone();
        kv.applied = snap.meta.index;
        for r in &snap.sessions {
            let session = Session {
                last_seq: r.last_seq,
                last_result: r.last_result.clone(),
                last_index: r.last_index,
            };
            if kv.sessions.insert(r.client_id, session).is_none() {
                kv.session_age.insert((r.last_index, r.client_id));
            }
        }
        while kv.sessions.len() > kv.max_sessions {
            let oldest = kv.session_age.pop_first().expect("ages mirror sessions");
            kv.sessions.remove(&oldest.1);
        }
        kv
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(client: u64, seq: u64, k: &str, v: &str) -> ClientCommand {
        ClientCommand {
            client_id: ClientId(client),
            seq,
            op: Op::Set {
                key: k.into(),
                value: v.into(),
            },
        }
    }

    #[test]
    fn retried_command_applies_once() {
        let mut kv = KvStore::new(10);
        kv.apply(LogIndex(1), &set(7, 1, "a", "1")).unwrap();
        kv.apply(LogIndex(2), &set(9, 1, "a", "2")).unwrap();
        // Client 7 retries seq 1: not applied again, "a" stays "2".
        assert_eq!(
            kv.apply(LogIndex(3), &set(7, 1, "a", "1")),
            Ok(OpResult::Set)
        );
        assert_eq!(kv.get("a").map(String::as_str), Some("2"));
        assert_eq!(
            kv.apply(LogIndex(4), &set(9, 0, "a", "x")),
            Err(WriteError::StaleSequence)
        );
        assert_eq!(kv.applied(), LogIndex(4));
    }

    #[test]
    fn sessions_are_bounded_lru() {
        let mut kv = KvStore::new(2);
        kv.apply(LogIndex(1), &set(1, 1, "a", "1")).unwrap();
        kv.apply(LogIndex(2), &set(2, 1, "a", "1")).unwrap();
        kv.apply(LogIndex(3), &set(3, 1, "a", "1")).unwrap();
        assert!(
            kv.duplicate_of(ClientId(1), 1).is_none(),
            "oldest session evicted"
        );
        assert!(kv.duplicate_of(ClientId(3), 1).is_some());
    }

    #[test]
    #[should_panic(expected = "apply out of order")]
    fn out_of_order_apply_panics() {
        let mut kv = KvStore::new(2);
        kv.apply_noop(LogIndex(2));
        kv.apply_noop(LogIndex(1));
    }
}
