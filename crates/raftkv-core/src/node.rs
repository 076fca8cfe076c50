//! STUB: the API is final; bodies are being written.
use crate::api::*;
use crate::config::{Config, ConfigError};
use crate::kv::KvStore;
use crate::message::Message;
use crate::types::*;

/// What a node recovered from its storage at start-up.
#[derive(Clone, Debug, Default)]
pub struct Restored {
    pub hard_state: HardState,
    /// The whole durable log, from index 1, consecutive.
    pub entries: Vec<Entry>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RestoreError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("restored log is inconsistent: {0}")]
    BadLog(String),
}

pub struct RaftNode {
    _kv: KvStore,
}

impl RaftNode {
    /// Start a node from what storage recovered. `now` is the node's monotonic
    /// clock; `seed` drives its election timeouts.
    pub fn new(_config: Config, _restored: Restored, _now: MonoTime, _seed: u64) -> Result<RaftNode, RestoreError> {
        todo!()
    }
    /// A message from a peer. Malformed or hostile messages are counted and dropped.
    pub fn step(&mut self, _now: MonoTime, _msg: Message) {
        todo!()
    }
    /// Advance timers: elections, heartbeats, check-quorum, lease expiry.
    pub fn tick(&mut self, _now: MonoTime) {
        todo!()
    }
    /// Propose a client write; its outcome arrives in `Ready::write_results`.
    pub fn propose(&mut self, _now: MonoTime, _cmd: ClientCommand) -> Result<LogIndex, ProposeError> {
        todo!()
    }
    /// A linearizable read: served at once under the lease, or pending.
    pub fn read(&mut self, _now: MonoTime, _id: ReadId, _key: String) -> Result<ReadNow, ReadError> {
        todo!()
    }
    /// A possibly stale read from this node's applied state, on any role.
    pub fn read_stale(&self, _key: &str) -> Option<String> {
        todo!()
    }
    pub fn has_ready(&self) -> bool {
        todo!()
    }
    pub fn ready(&mut self) -> Ready {
        todo!()
    }
    /// Storage made entries up to `(index, term)` durable.
    pub fn on_persisted(&mut self, _now: MonoTime, _index: LogIndex, _term: Term) {
        todo!()
    }
    pub fn status(&self, _now: MonoTime) -> Status {
        todo!()
    }
    pub fn kv(&self) -> &KvStore {
        &self._kv
    }
}
