//! A short seeded sweep in the default test run, determinism of replay, and
//! the negative control: clocks beyond the drift bound must produce failing
//! seeds that replay. `RAFTKV_SIM_SEEDS=N` widens the sweep.

use raftkv_sim::sweep::sweep;
use raftkv_sim::{run_seed, RunOptions};

fn seeds_from_env(default: u64) -> u64 {
    std::env::var("RAFTKV_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

#[test]
fn short_sweep_with_drift_within_bound_passes() {
    let n = seeds_from_env(60);
    let reports = sweep(&RunOptions::new(0), n, 2);
    assert_eq!(reports.len() as u64, n);
    let failures: Vec<String> = reports
        .iter()
        .filter_map(|r| r.failure.as_ref().map(|f| format!("seed {}: {f}", r.seed)))
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let ops: usize = reports.iter().map(|r| r.operations).sum();
    assert!(
        ops > 100 * n as usize,
        "the workload did too little: {ops} operations"
    );
    // The seeds cover every cluster size.
    for size in [3, 5, 7] {
        assert!(
            reports.iter().any(|r| r.nodes == size),
            "no {size}-node run"
        );
    }
}

#[test]
fn a_seed_replays_to_the_same_trace() {
    let mut opts = RunOptions::new(42);
    opts.trace = true;
    let a = run_seed(&opts);
    let b = run_seed(&opts);
    assert!(a.trace.len() > 1000, "a real run: {} lines", a.trace.len());
    assert_eq!(a.digest, b.digest);
    assert_eq!(a.trace, b.trace);
    opts.seed = 43;
    assert_ne!(run_seed(&opts).digest, a.digest);
}

#[test]
fn drift_beyond_bound_is_caught_and_replays() {
    let mut opts = RunOptions::new(0);
    opts.clock_drift_beyond_bound = true;
    let mut found = None;
    for seed in 0..seeds_from_env(300) {
        opts.seed = seed;
        let r = run_seed(&opts);
        if r.failure.is_some() {
            found = Some(r);
            break;
        }
    }
    let first = found
        .expect("clocks beyond the bound never broke linearizability: the checker has no teeth");
    let failure = first.failure.clone().unwrap();
    assert!(
        failure.starts_with("linearizability"),
        "seed {}: {failure}",
        first.seed
    );
    // The failing seed replays, with its trace, to the same failure.
    opts.seed = first.seed;
    opts.trace = true;
    let again = run_seed(&opts);
    assert_eq!(again.failure.as_deref(), Some(failure.as_str()));
    assert!(again
        .trace
        .iter()
        .any(|l| l.contains("FAILED: linearizability")));
    let third = run_seed(&opts);
    assert_eq!(third.digest, again.digest);
}
