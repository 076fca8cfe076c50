//! What a run is aimed at: the system under test and the consistency of its
//! reads. The load generator, the tools and the report all name these; this
//! module names nothing of theirs.

use clap::ValueEnum;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    Raftkv,
    Etcd,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ReadConsistency {
    /// raftkv: lease read (or ReadIndex when the lease does not hold);
    /// etcd: its default linearizable Range (a ReadIndex round).
    Linearizable,
    /// raftkv: STALE read from the node asked; etcd: serializable Range.
    #[value(alias = "serializable")]
    Stale,
    /// raftkv only: a bounded-staleness read (`--max-staleness-ms`), served
    /// by the node asked when it can prove the bound, else by the leader.
    Bounded,
}
