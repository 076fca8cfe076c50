//! # raftkv-core
//!
//! Raft with leader leases as a pure, deterministic state machine, plus the
//! key-value state machine it replicates.
//!
//! No I/O happens here: no sockets, files, clock reads or global randomness.
//! Time comes in as a [`MonoTime`] argument and randomness from the seed given
//! to [`RaftNode::new`]. Out come [`Ready`] batches: messages to send, entries
//! and hard state to persist, and client results. The server (`raftkv-server`)
//! and the simulator (`raftkv-sim`) drive the very same code.
//!
//! Where things live:
//! - [`node`]: the node and its input methods; role handlers in
//!   `election`, `replication`, `lease` (leases and both kinds of
//!   linearizable read), `membership`, `snapshot`, `transfer` and `repair`.
//! - [`log`]: the in-memory log (with room for a snapshot prefix).
//! - [`kv`]: the key-value state machine with client sessions.
//! - [`snapshot`]: snapshots of it, for compaction and `InstallSnapshot`.
//! - [`message`], [`types`], [`config`], [`api`]: plain data.
//! - `testkit` (with the `testkit` feature, for tests): the instant cluster
//!   and the transcript format of `tests/testdata/*.txt`.

pub mod api;
pub mod config;
pub mod kv;
pub mod log;
pub mod message;
pub mod node;
mod rng;
pub mod snapshot;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod types;

pub use api::*;
pub use config::{Config, ConfigError, UnsafeTestKnobs};
pub use message::*;
pub use node::{RaftNode, RestoreError, Restored};
pub use snapshot::*;
pub use types::*;
