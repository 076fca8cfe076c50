//! `raftkv-sim`: run seeds of the cluster simulator, or replay one.

use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Result};
use clap::Parser;
use raftkv_sim::{run_seed, sweep::sweep, RunOptions};

#[derive(Parser, Debug)]
#[command(version, about = "Deterministic cluster simulator for raftkv")]
struct Args {
    /// Run seeds 0..N and report the failing ones.
    #[arg(long, conflicts_with = "seed")]
    seeds: Option<u64>,
    /// Replay one seed and print its event trace and digest.
    #[arg(long)]
    seed: Option<u64>,
    /// Negative control: clock rates far outside the drift bound.
    #[arg(long)]
    clock_drift_beyond_bound: bool,
    /// Negative control: disable LEASES.md rule 3 (restart lease) or 5
    /// (new leader's wait) in every node.
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(["3", "5"]))]
    disable_rule: Option<String>,
    /// Cluster size (default: chosen by the seed among 3, 5 and 7).
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(["3", "5", "7"]))]
    nodes: Option<String>,
    /// Worker threads for --seeds.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Simulated seconds of the safety phase (faults and workload) per seed.
    #[arg(long, default_value_t = 20)]
    safety_s: u64,
}

fn main() -> Result<ExitCode> {
    let args = Args::parse();
    let mut opts = RunOptions::new(0);
    opts.clock_drift_beyond_bound = args.clock_drift_beyond_bound;
    opts.disable_rule = args
        .disable_rule
        .as_deref()
        .map(|r| r.parse())
        .transpose()?;
    opts.nodes = args.nodes.as_deref().map(|n| n.parse()).transpose()?;
    opts.safety_duration = std::time::Duration::from_secs(args.safety_s);
    // Panics inside a run are caught and reported as that seed's failure.
    std::panic::set_hook(Box::new(|_| {}));
    match (args.seeds, args.seed) {
        (Some(n), None) => Ok(run_many(&opts, n, args.workers)),
        (None, Some(s)) => Ok(replay(opts, s)),
        _ => bail!("give --seeds N or --seed S"),
    }
}

fn run_many(opts: &RunOptions, n: u64, workers: usize) -> ExitCode {
    let started = Instant::now();
    let reports = sweep(opts, n, workers);
    let mut failed = 0;
    let mut unknown = 0;
    for r in &reports {
        if let Some(f) = &r.failure {
            failed += 1;
            println!("seed {}: {f}", r.seed);
        }
        unknown += u64::from(r.checker_unknown);
    }
    println!("{} passed, {failed} failed", n - failed);
    let secs = started.elapsed().as_secs_f64();
    let ops: usize = reports.iter().map(|r| r.operations).sum();
    eprintln!(
        "{n} seeds in {secs:.1}s: {:.2} seeds/s ({workers} workers), {ops} client operations checked, checker budget exhausted on {unknown} seeds",
        n as f64 / secs.max(1e-9)
    );
    if let Some(worst) = reports
        .iter()
        .filter(|r| r.recovery_ns.is_some())
        .max_by_key(|r| r.recovery_ns)
    {
        let mut times: Vec<u64> = reports.iter().filter_map(|r| r.recovery_ns).collect();
        times.sort_unstable();
        eprintln!(
            "recovery after healing: median {:.2}s, max {:.2}s (seed {})",
            times[times.len() / 2] as f64 / 1e9,
            worst.recovery_ns.unwrap() as f64 / 1e9,
            worst.seed
        );
    }
    if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn replay(mut opts: RunOptions, seed: u64) -> ExitCode {
    opts.seed = seed;
    opts.trace = true;
    let r = run_seed(&opts);
    for line in &r.trace {
        println!("{line}");
    }
    println!(
        "seed {seed}: {} nodes, {} operations, {}",
        r.nodes,
        r.operations,
        r.failure.as_deref().unwrap_or("passed")
    );
    println!("digest: {:016x}", r.digest);
    if r.failure.is_some() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
