//! # raftkv-sim
//!
//! A deterministic, seeded simulator that runs 3, 5 or 7 copies of the real
//! `raftkv-core` node, each driven by the server's own driver
//! (`raftkv-driver`: persist, send, publish and answer in the server's
//! order, its storage worker on simulated time) with the in-memory storage
//! model of `raftkv-storage` and its own drifting clock, over a network that loses,
//! delays, duplicates and reorders messages and can be partitioned in any
//! shape; nodes crash (losing unsynced writes), restart and pause. Spare
//! nodes join as learners, learners are promoted, voters (the leader too) and
//! learners are removed, removed nodes come back (wiped or not), leadership
//! is transferred, and small snapshots make logs compact and followers catch
//! up by chunked InstallSnapshot. Simulated clients drive a SET/GET/DELETE
//! workload; the Raft safety invariants (with the membership and lease
//! rules) are asserted as the run goes, and the client history is checked
//! for linearizability at the end. See `docs/simulator.md`.
//!
//! - [`Cluster`]: the hand-drivable cluster (tests use it directly).
//! - [`run_seed`]: one randomised run from one `u64` seed (the CLI's unit).
//! - [`invariants`]: the safety properties checked while running.

mod client;
mod client_calls;
pub mod clock;
mod cluster;
mod driver_host;
pub mod invariants;
pub mod rng;
mod run;
pub mod sweep;
pub mod trace;

pub use client::{ClientHandle, Served, ServedKind, Workload};
pub use clock::{Clock, RATE_EXACT_PPM};
pub use cluster::{
    ClientConfig, Cluster, ClusterConfig, Election, Fate, MessageFilter, MixCounts, NetConfig,
};
pub use run::{run_seed, RunOptions, RunReport};
