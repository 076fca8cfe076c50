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
    /// Negative control: disable lease rule 3 (restart lease) or 5
    /// (new leader's wait) in every node.
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(["3", "5"]))]
    disable_rule: Option<String>,
    /// Negative control: a published lease-read view is never withdrawn
    /// and reads from it ignore its end (the node serves its last view
    /// for as long as it is up).
    #[arg(long)]
    unsafe_stale_view: bool,
    /// Negative control: a lease read the core answers in the middle of a
    /// driver turn goes out before the view is republished (turns are held
    /// in every run).
    #[arg(long)]
    unsafe_late_publish: bool,
    /// Leave storage faults on synced data and restarts with wrong
    /// membership flags out of the fault mix.
    #[arg(long)]
    no_storage_faults: bool,
    /// Negative control: recovery cuts a damaged line that may have been
    /// synced as if it were a torn tail (no vote floor).
    #[arg(long)]
    unsafe_cut_damaged_tail: bool,
    /// Negative control: a restarted node takes its membership from its
    /// flags instead of its stored configuration.
    #[arg(long)]
    unsafe_config_from_flags: bool,
    /// Negative control: a node repairing a damaged log votes as if its log
    /// were whole.
    #[arg(long)]
    unsafe_ignore_vote_floor: bool,
    /// Negative control: the shared driver sends append acknowledgements
    /// before the fsync that covers them.
    #[arg(long)]
    unsafe_ack_before_sync: bool,
    /// Negative control: the shared driver sends granted votes before the
    /// term and vote they depend on are saved.
    #[arg(long)]
    unsafe_vote_before_save: bool,
    /// Leave follower read leases and bounded-staleness reads out of the mix.
    #[arg(long)]
    no_read_leases: bool,
    /// Negative control (F2): the leader grants the full read lease
    /// duration, whatever remains of its own lease.
    #[arg(long)]
    unsafe_grant_beyond_leader_lease: bool,
    /// Negative control (F3): the leader commits without waiting for read
    /// lease holders.
    #[arg(long)]
    unsafe_ignore_read_lease_guards: bool,
    /// Negative control (F4): a holder serves keys that have a write of
    /// unknown fate in its log.
    #[arg(long)]
    unsafe_serve_pending_keys: bool,
    /// Negative control (F5): a holder keeps its read lease when it sees a
    /// higher term.
    #[arg(long)]
    unsafe_keep_read_lease_across_terms: bool,
    /// Cluster size (default: chosen by the seed among 3, 5 and 7).
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(["3", "5", "7"]))]
    nodes: Option<String>,
    /// Worker threads for --seeds.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Leave membership changes, spare nodes and leadership transfers out of
    /// the fault mix.
    #[arg(long)]
    no_membership_mix: bool,
    /// Skip the check that every member catches up after healing.
    #[arg(long)]
    no_catch_up_check: bool,
    /// Turn off the live lease invariants (lease protection, live lease
    /// exclusion), leaving lease bugs to the linearizability checker.
    #[arg(long)]
    no_lease_invariants: bool,
    /// Turn off the live durability checks (persist before send, commit
    /// counting), leaving broken promises to show as lost writes or two
    /// leaders in a term.
    #[arg(long)]
    no_durability_checks: bool,
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
    opts.stale_view = args.unsafe_stale_view;
    opts.late_publish = args.unsafe_late_publish;
    opts.storage_faults = !args.no_storage_faults;
    opts.cut_damaged_tail = args.unsafe_cut_damaged_tail;
    opts.config_from_flags = args.unsafe_config_from_flags;
    opts.ignore_vote_floor = args.unsafe_ignore_vote_floor;
    opts.ack_before_sync = args.unsafe_ack_before_sync;
    opts.vote_before_save = args.unsafe_vote_before_save;
    opts.read_leases = !args.no_read_leases;
    opts.grant_beyond_leader_lease = args.unsafe_grant_beyond_leader_lease;
    opts.ignore_read_lease_guards = args.unsafe_ignore_read_lease_guards;
    opts.serve_pending_keys = args.unsafe_serve_pending_keys;
    opts.keep_read_lease_across_terms = args.unsafe_keep_read_lease_across_terms;
    opts.nodes = args.nodes.as_deref().map(|n| n.parse()).transpose()?;
    opts.safety_duration = std::time::Duration::from_secs(args.safety_s);
    opts.membership_mix = !args.no_membership_mix;
    opts.check_catch_up = !args.no_catch_up_check;
    opts.lease_invariants = !args.no_lease_invariants;
    opts.durability_checks = !args.no_durability_checks;
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
    let mut total = raftkv_sim::MixCounts::default();
    let (mut with_conf, mut with_install, mut with_transfer) = (0, 0, 0);
    let mut with_follower_reads = 0;
    for r in &reports {
        let k = r.counts;
        total.conf_committed += k.conf_committed;
        total.snapshots_taken += k.snapshots_taken;
        total.snapshots_installed += k.snapshots_installed;
        total.transfers_started += k.transfers_started;
        total.transfers_done += k.transfers_done;
        total.wipes += k.wipes;
        total.leaders_removed += k.leaders_removed;
        total.lease_reads_from_view += k.lease_reads_from_view;
        total.follower_reads += k.follower_reads;
        total.bounded_reads += k.bounded_reads;
        total.placement_runs += k.placement_runs;
        total.placement_ended_preferred += k.placement_ended_preferred;
        with_follower_reads += u64::from(k.follower_reads > 0);
        total.disk_faults += k.disk_faults;
        total.repairs_planned += k.repairs_planned;
        total.repairs_finished += k.repairs_finished;
        total.wrong_flag_restarts += k.wrong_flag_restarts;
        total.wrong_flags_refused += k.wrong_flags_refused;
        total.inline_persists += k.inline_persists;
        total.storage_groups += k.storage_groups;
        total.grouped_readies += k.grouped_readies;
        total.queued_behind_fsync += k.queued_behind_fsync;
        with_conf += u64::from(k.conf_committed > 0);
        with_install += u64::from(k.snapshots_installed > 0);
        with_transfer += u64::from(k.transfers_done > 0);
    }
    eprintln!(
        "mix: {} membership changes committed (in {with_conf} of {n} runs), {} leaders removed, {} nodes wiped and re-added; {} snapshots taken, {} installed (in {with_install} runs); {} transfers started, {} won by their target (in {with_transfer} runs); {} lease reads served from the published view",
        total.conf_committed,
        total.leaders_removed,
        total.wipes,
        total.snapshots_taken,
        total.snapshots_installed,
        total.transfers_started,
        total.transfers_done,
        total.lease_reads_from_view,
    );
    eprintln!(
        "reads away from the leader: {} linearizable follower reads (in {with_follower_reads} runs), {} bounded-staleness reads; leader placement: {} runs preferred a leader, {} ended with a preferred node leading",
        total.follower_reads, total.bounded_reads, total.placement_runs, total.placement_ended_preferred,
    );
    eprintln!(
        "storage: {} restarts after a disk fault on synced data, {} repairs planned, {} finished; {} restarts with wrong membership flags, {} of them refused",
        total.disk_faults,
        total.repairs_planned,
        total.repairs_finished,
        total.wrong_flag_restarts,
        total.wrong_flags_refused,
    );
    eprintln!(
        "driver: {} storage groups written ({:.2} Readies each), {} Readies queued behind a running fsync, {} persisted in line by followers",
        total.storage_groups,
        total.grouped_readies as f64 / total.storage_groups.max(1) as f64,
        total.queued_behind_fsync,
        total.inline_persists,
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
    let k = r.counts;
    println!(
        "seed {seed}: {} nodes, {} operations, {} membership changes committed, {} leaders removed, {} wipes, {} snapshots taken, {} installed, {} transfers ({} won), {}",
        r.nodes,
        r.operations,
        k.conf_committed,
        k.leaders_removed,
        k.wipes,
        k.snapshots_taken,
        k.snapshots_installed,
        k.transfers_started,
        k.transfers_done,
        r.failure.as_deref().unwrap_or("passed")
    );
    println!("digest: {:016x}", r.digest);
    if r.failure.is_some() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
