//! # raftkv-driver
//!
//! The one driver of the core's `Ready` contract (see `raftkv_core`'s crate
//! docs). `raftkv-server` runs it under tokio with real sockets and disks;
//! `raftkv-sim` runs it under a simulated network, disk and clock, so that
//! the ordering rules that decide durability and lease safety are checked
//! by thousands of seeded schedules, not only by real-process tests.
//!
//! - [`pipeline`]: [`Driver`] and [`Host`]; [`Driver::advance`] is the
//!   single function that orders publish, send, persist and answer.
//! - [`storage_worker`]: the only writer of a node's log (group commit,
//!   background compaction snapshots).
//! - [`lease_view`]: the lease-read view published for readers off the
//!   core's thread.
//! - [`answers`]: client requests, their answers and refusals.
//!
//! Nothing here does I/O of its own, reads a clock or spawns a thread: the
//! host does, through [`Host`] and by running the [`StorageWorker`].

pub mod answers;
pub mod lease_view;
pub mod pipeline;
pub mod storage_worker;

pub use answers::{
    Accepted, ConfAnswer, ReadAnswer, Refusal, Reply, Request, StaleAnswer, TransferAnswer,
    Waiters, WriteAnswer,
};
pub use lease_view::{LeaseReads, Publisher};
pub use pipeline::{Count, Driver, DriverKnobs, DriverOptions, Host, ReadPath};
pub use storage_worker::{Background, Done, Job, Step, StorageWorker, MAX_GROUP};
