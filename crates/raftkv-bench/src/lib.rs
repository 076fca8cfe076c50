//! # raftkv-bench
//!
//! The load generator behind `raftkv bench` (and the `raftkv-bench` binary):
//! it drives a raftkv cluster or an etcd cluster with the same code, records
//! every latency in an HDR histogram, and reports throughput, percentiles and
//! the CPU seconds the cluster's processes spent. Beside it live the tools the
//! scripts in `bench/` need: a delaying TCP proxy (geo mode), a failover
//! probe, and small helpers (free ports, leader discovery, waiting for a
//! restarted node, the comparison table).
//!
//! Wire it into a CLI with [`BenchArgs`] (a `clap::Args`) and [`run`].

pub mod bound_check;
pub mod etcd;
pub mod load;
pub mod plot;
pub mod procs;
pub mod proxy;
pub mod report;
pub mod table;
pub mod target;
pub mod tools;

use std::process::ExitCode;

use clap::{Args, Subcommand};

/// `raftkv bench <workload|tool> ...`
#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub command: BenchCommand,
}

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Writes only (SET on raftkv, Put on etcd).
    Put(load::PutArgs),
    /// Reads only; the key space is written once first (see --no-preload).
    Get(load::GetArgs),
    /// Reads and writes mixed by --read-ratio.
    Mixed(load::MixedArgs),
    /// A TCP proxy that delays the bytes of each direction by a one-way delay.
    Proxy(proxy::ProxyArgs),
    /// Kill -9 the leader under a steady writer and measure the unavailability.
    Failover(tools::FailoverArgs),
    /// Print N free loopback ports (for scripts).
    FreePorts(tools::FreePortsArgs),
    /// Wait until a cluster has a leader and print the leader's endpoint.
    WaitLeader(tools::WaitLeaderArgs),
    /// Wait until a raftkv node answers and has applied up to an index.
    WaitApplied(tools::WaitAppliedArgs),
    /// Print the resident memory of the processes listening on given ports.
    Rss(tools::RssArgs),
    /// Build the raftkv-vs-etcd table (medians over rounds) from JSON results.
    Table(table::TableArgs),
}

/// Runs one `raftkv bench` command.
pub fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match args.command {
            BenchCommand::Put(a) => load::run_put(a).await,
            BenchCommand::Get(a) => load::run_get(a).await,
            BenchCommand::Mixed(a) => load::run_mixed(a).await,
            BenchCommand::Proxy(a) => proxy::run(a).await,
            BenchCommand::Failover(a) => tools::failover(a).await,
            BenchCommand::FreePorts(a) => tools::free_ports(a),
            BenchCommand::WaitLeader(a) => tools::wait_leader(a).await,
            BenchCommand::WaitApplied(a) => tools::wait_applied(a).await,
            BenchCommand::Rss(a) => tools::rss(a),
            BenchCommand::Table(a) => table::run(a),
        }
    })
}
