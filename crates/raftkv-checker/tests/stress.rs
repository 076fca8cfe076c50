//! Opt-in sweep over busy single-key histories with one GET's value
//! replaced, reporting how often the checker decides and how fast:
//!
//! ```text
//! STRESS_SEEDS=200 STRESS_OPS=400 STRESS_CLIENTS=16 STRESS_UNKNOWN_PERCENT=30 STRESS_VALUE_POOL=0 \
//!   cargo test -p raftkv-checker --release --test stress -- --ignored --nocapture
//! ```
//! `STRESS_CLEAN=1` leaves the histories linearizable.

mod common;

use common::{linearizable_history, GenConfig, Rng, MS};
use raftkv_checker::{check_detailed, Budget, Input, Output, Verdict};

fn knob(name: &str, default: u64) -> u64 {
    std::env::var(name).map_or(default, |value| value.parse().expect("a number"))
}

#[test]
#[ignore = "opt-in sweep; see the file's docs"]
fn busy_single_key_sweep() {
    let seeds = knob("STRESS_SEEDS", 200);
    let config = GenConfig {
        ops: knob("STRESS_OPS", 400) as usize,
        keys: 1,
        clients: knob("STRESS_CLIENTS", 16) as usize,
        unknown_percent: knob("STRESS_UNKNOWN_PERCENT", 30),
        latency_ns_max: 40 * MS,
        think_ns_max: MS,
        value_pool: knob("STRESS_VALUE_POOL", 0),
    };
    let corrupt = std::env::var("STRESS_CLEAN").is_err();
    let (mut counts, mut witness_ops_max, mut total_ms, mut worst_ms) = ([0usize; 3], 0, 0.0, 0.0);
    for seed in 0..seeds {
        let mut rng = Rng::new(seed);
        let mut history = linearizable_history(&mut rng, &config);
        let values: Vec<String> = history
            .iter()
            .filter_map(|op| match &op.input {
                Input::Set { value, .. } => Some(value.clone()),
                _ => None,
            })
            .collect();
        let gets: Vec<usize> = (0..history.len())
            .filter(|&i| {
                matches!(history[i].input, Input::Get { .. })
                    && history[i].output != Output::Unknown
            })
            .collect();
        if corrupt && !gets.is_empty() && !values.is_empty() {
            let target = gets[rng.below(gets.len() as u64) as usize];
            history[target].output = Output::Value(Some(
                values[rng.below(values.len() as u64) as usize].clone(),
            ));
        }
        let start = std::time::Instant::now();
        let report = check_detailed(&history, Budget::default()).expect("well-formed");
        let elapsed_ms = start.elapsed().as_secs_f64() * 1e3;
        total_ms += elapsed_ms;
        worst_ms = f64::max(worst_ms, elapsed_ms);
        match &report.verdict {
            Verdict::Linearizable => counts[0] += 1,
            Verdict::NotLinearizable(violation) => {
                counts[1] += 1;
                witness_ops_max = witness_ops_max.max(violation.operations.len());
            }
            Verdict::Unknown { .. } => counts[2] += 1,
        }
    }
    println!(
        "{seeds} histories: {} linearizable, {} violations, {} unknown; mean {:.1} ms, worst {:.1} ms; largest witness {witness_ops_max} ops",
        counts[0],
        counts[1],
        counts[2],
        total_ms / seeds as f64,
        worst_ms
    );
}
