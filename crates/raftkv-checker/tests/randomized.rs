//! Seeded random histories: against a brute-force oracle, linearizable by
//! construction, and with an injected stale read. Every failure message names
//! its seed; rerun one seed by editing the range.

mod common;

use std::collections::HashMap;

use common::{linearizable_history, GenConfig, Rng, MS};
use raftkv_checker::{check, Budget, Input, Operation, Output, Verdict};

// ---- brute-force oracle on tiny histories ----

/// Tries every order directly from the definition: definite ops inside
/// real-time order with the right outputs, unknown writes optional.
fn brute_force_linearizable(ops: &[Operation]) -> bool {
    let mut by_key: HashMap<&str, Vec<&Operation>> = HashMap::new();
    for op in ops {
        if !(matches!(op.input, Input::Get { .. }) && op.output == Output::Unknown) {
            by_key.entry(op.input.key()).or_default().push(op);
        }
    }
    by_key.values().all(|ops| {
        let mut placed = vec![false; ops.len()];
        extend(ops, &mut placed, None)
    })
}

fn extend(ops: &[&Operation], placed: &mut [bool], state: Option<&str>) -> bool {
    let definite = |op: &Operation| op.output != Output::Unknown;
    if (0..ops.len()).all(|i| placed[i] || !definite(ops[i])) {
        return true;
    }
    for i in 0..ops.len() {
        // Every definite op that returned before this call must come first.
        let ready = !placed[i]
            && (0..ops.len())
                .all(|j| placed[j] || !definite(ops[j]) || ops[j].return_ns >= ops[i].call_ns);
        if !ready {
            continue;
        }
        let next_state = match (&ops[i].input, &ops[i].output) {
            (Input::Get { .. }, Output::Value(seen)) if seen.as_deref() == state => state,
            (Input::Get { .. }, _) => continue,
            (Input::Set { value, .. }, _) => Some(value.as_str()),
            (Input::Delete { .. }, _) => None,
        };
        placed[i] = true;
        let found = extend(ops, placed, next_state);
        placed[i] = false;
        if found {
            return true;
        }
    }
    false
}

/// Arbitrary (mostly not linearizable) tiny histories with few values and
/// many equal timestamps, so edge cases come up often.
fn tiny_random_history(rng: &mut Rng) -> Vec<Operation> {
    let len = 1 + rng.below(tiny_ops_max()) as usize;
    let values = 2 + rng.below(2);
    // Sometimes crowded, sometimes spread out (more real-time order).
    let spread_ns = 4 + rng.below(5 * len as u64);
    let value = |rng: &mut Rng| ["a", "b", "c"][rng.below(values) as usize].to_string();
    (0..len)
        .map(|i| {
            let key = format!("k{}", rng.below(2) * rng.below(2)); // mostly k0
            let call_ns = rng.below(spread_ns);
            let return_ns = call_ns + rng.below(6);
            let (input, output) = match rng.below(3) {
                0 => {
                    let seen = if rng.chance(25) {
                        None
                    } else {
                        Some(value(rng))
                    };
                    (Input::Get { key }, Output::Value(seen))
                }
                1 => (
                    Input::Set {
                        key,
                        value: value(rng),
                    },
                    Output::Ok,
                ),
                _ => (Input::Delete { key }, Output::Ok),
            };
            let output = if rng.chance(20) {
                Output::Unknown
            } else {
                output
            };
            let return_ns = if output == Output::Unknown {
                u64::MAX
            } else {
                return_ns
            };
            Operation {
                id: i as u64,
                client: i as u64,
                input,
                output,
                call_ns,
                return_ns,
            }
        })
        .collect()
}

/// Longest tiny history; RAFTKV_CHECKER_TINY_OPS=11 for a harder sweep.
fn tiny_ops_max() -> u64 {
    std::env::var("RAFTKV_CHECKER_TINY_OPS").map_or(8, |s| s.parse().expect("a number"))
}

/// How many tiny histories to try; RAFTKV_CHECKER_SEEDS=300000 for a longer sweep.
fn tiny_seeds() -> u64 {
    std::env::var("RAFTKV_CHECKER_SEEDS").map_or(4_000, |s| s.parse().expect("a number"))
}

#[test]
fn agrees_with_brute_force_on_tiny_histories() {
    let (mut linearizable, mut violations) = (0, 0);
    // RAFTKV_CHECKER_SEEDS=200000 for a longer sweep.
    let seeds: u64 =
        std::env::var("RAFTKV_CHECKER_SEEDS").map_or(4_000, |s| s.parse().expect("a number"));
    for seed in 0..seeds {
        let history = tiny_random_history(&mut Rng::new(seed));
        let expected = brute_force_linearizable(&history);
        let verdict = check(&history, Budget::default());
        match (&verdict, expected) {
            (Verdict::Linearizable, true) => linearizable += 1,
            (Verdict::NotLinearizable(violation), false) => {
                violations += 1;
                let witness = violation.operations.clone();
                assert!(!brute_force_linearizable(&witness), "seed {seed}: witness is linearizable:\n{violation}");
            }
            _ => panic!("seed {seed}: oracle says linearizable={expected}, checker says {verdict}\n{history:#?}"),
        }
    }
    println!("tiny histories: {linearizable} linearizable, {violations} violations");
    assert!(
        linearizable > 500 && violations > 500,
        "both outcomes are exercised"
    );
}

/// The sub-history stage on its own: whatever it flags must really be a
/// violation (it normally runs only after the whole search failed, so the
/// other tests would not notice it flagging a linearizable history).
#[test]
fn sub_history_stage_is_sound() {
    for seed in 0..tiny_seeds() {
        let history = tiny_random_history(&mut Rng::new(seed));
        if let Some(ids) = raftkv_checker::testing::sub_history_violation(&history, 1_000_000) {
            assert!(
                !brute_force_linearizable(&history),
                "seed {seed}: flagged {ids:?} in a linearizable history"
            );
            let sub: Vec<Operation> = history
                .iter()
                .filter(|op| ids.contains(&op.id))
                .cloned()
                .collect();
            assert!(
                !brute_force_linearizable(&sub),
                "seed {seed}: flagged sub-history {ids:?} is linearizable"
            );
        }
    }
    for (c, config) in configs().iter().enumerate() {
        for seed in 0..20 {
            let history = linearizable_history(&mut Rng::new(seed), config);
            let flagged = raftkv_checker::testing::sub_history_violation(&history, 10_000_000);
            assert_eq!(flagged, None, "config {c} seed {seed}");
        }
    }
}

// ---- larger histories, linearizable by construction ----

fn configs() -> Vec<GenConfig> {
    vec![
        // Strictly sequential: one client.
        GenConfig {
            ops: 300,
            keys: 3,
            clients: 1,
            unknown_percent: 0,
            latency_ns_max: 5 * MS,
            think_ns_max: MS,
            value_pool: 0,
        },
        // Concurrent, some lost outcomes.
        GenConfig {
            ops: 400,
            keys: 4,
            clients: 8,
            unknown_percent: 10,
            latency_ns_max: 20 * MS,
            think_ns_max: 5 * MS,
            value_pool: 0,
        },
        // Crash-heavy: a third of the outcomes unknown, few keys.
        GenConfig {
            ops: 400,
            keys: 2,
            clients: 6,
            unknown_percent: 35,
            latency_ns_max: 20 * MS,
            think_ns_max: 5 * MS,
            value_pool: 0,
        },
        // Repeated values (a pool of 3 per key), high concurrency.
        GenConfig {
            ops: 300,
            keys: 2,
            clients: 8,
            unknown_percent: 15,
            latency_ns_max: 30 * MS,
            think_ns_max: MS,
            value_pool: 3,
        },
        // Instantaneous ops, many equal timestamps.
        GenConfig {
            ops: 200,
            keys: 2,
            clients: 5,
            unknown_percent: 10,
            latency_ns_max: 0,
            think_ns_max: 2,
            value_pool: 0,
        },
    ]
}

#[test]
fn histories_from_a_real_map_are_linearizable() {
    for (c, config) in configs().iter().enumerate() {
        for seed in 0..40 {
            let history = linearizable_history(&mut Rng::new(seed), config);
            let verdict = check(&history, Budget::default());
            assert!(
                verdict.is_linearizable(),
                "config {c} seed {seed}: {verdict}"
            );
        }
    }
}

/// Appends, after everything, a GET of `k` that returns a value overwritten
/// by a later completed SET. Values are unique, so no order can explain it.
/// Returns the injected op's id, or None if the history has no such pair.
fn inject_stale_read(history: &mut Vec<Operation>, rng: &mut Rng) -> Option<(String, u64)> {
    let definite_sets: Vec<&Operation> = history
        .iter()
        .filter(|op| matches!(op.input, Input::Set { .. }) && op.output == Output::Ok)
        .collect();
    let mut pairs = Vec::new();
    for old in &definite_sets {
        for new in &definite_sets {
            if old.input.key() == new.input.key() && old.return_ns < new.call_ns {
                pairs.push((*old, *new));
            }
        }
    }
    if pairs.is_empty() {
        return None;
    }
    let (old, _) = pairs[rng.below(pairs.len() as u64) as usize];
    let Input::Set { key, value } = old.input.clone() else {
        unreachable!()
    };
    let end_ns = history
        .iter()
        .filter(|op| op.output != Output::Unknown)
        .map(|op| op.return_ns)
        .max()?;
    let id = history.len() as u64;
    history.push(Operation {
        id,
        client: 999,
        input: Input::Get { key: key.clone() },
        output: Output::Value(Some(value)),
        call_ns: end_ns + 1,
        return_ns: end_ns + 2,
    });
    Some((key, id))
}

#[test]
fn injected_stale_reads_are_detected() {
    let mut injected = 0;
    // The injected read is stale for sure only when values are unique.
    let unique = configs()
        .into_iter()
        .enumerate()
        .filter(|(_, config)| config.value_pool == 0);
    for (c, config) in unique {
        for seed in 0..40 {
            let mut rng = Rng::new(seed);
            let mut history = linearizable_history(&mut rng, &config);
            let Some((key, id)) = inject_stale_read(&mut history, &mut rng) else {
                continue;
            };
            injected += 1;
            let verdict = check(&history, Budget::default());
            let Verdict::NotLinearizable(violation) = verdict else {
                panic!("config {c} seed {seed}: stale read #{id} on {key} missed: {verdict}");
            };
            assert_eq!(violation.key, key, "config {c} seed {seed}");
            assert!(
                violation.operations.iter().any(|op| op.id == id),
                "config {c} seed {seed}:\n{violation}"
            );
            assert!(
                violation.operations.len() <= 6,
                "config {c} seed {seed}: witness not small:\n{violation}"
            );
        }
    }
    assert!(
        injected >= 100,
        "only {injected} histories had a stale read to inject"
    );
}

/// High concurrency, many lost outcomes, one GET's value replaced by some
/// other written value: the search must decide every one within budget, and
/// each witness must itself be non-linearizable (checked by brute force).
#[test]
fn corrupted_reads_in_busy_histories_are_decided() {
    let (mut linearizable, mut violations) = (0, 0);
    for seed in 0..60 {
        let mut rng = Rng::new(seed);
        let config = GenConfig {
            ops: 400,
            keys: 1,
            clients: 16,
            unknown_percent: 30,
            latency_ns_max: 40 * MS,
            think_ns_max: MS,
            value_pool: if seed % 2 == 0 { 3 } else { 0 },
        };
        let mut history = linearizable_history(&mut rng, &config);
        let gets: Vec<usize> = (0..history.len())
            .filter(|&i| {
                matches!(history[i].input, Input::Get { .. })
                    && history[i].output != Output::Unknown
            })
            .collect();
        let values: Vec<String> = history
            .iter()
            .filter_map(|op| match &op.input {
                Input::Set { value, .. } => Some(value.clone()),
                _ => None,
            })
            .collect();
        let target = gets[rng.below(gets.len() as u64) as usize];
        history[target].output = Output::Value(Some(
            values[rng.below(values.len() as u64) as usize].clone(),
        ));
        match check(&history, Budget::default()) {
            Verdict::Linearizable => linearizable += 1,
            Verdict::NotLinearizable(violation) => {
                violations += 1;
                let witness = &violation.operations;
                assert!(
                    witness.len() <= 8,
                    "seed {seed}: witness not small:\n{violation}"
                );
                assert!(
                    !brute_force_linearizable(witness),
                    "seed {seed}: witness is linearizable:\n{violation}"
                );
            }
            unknown => panic!("seed {seed}: {unknown}"),
        }
    }
    println!(
        "corrupted busy histories: {linearizable} still linearizable, {violations} violations"
    );
    assert!(violations >= 20);
}

// ---- speed figure (printed, not asserted) ----

#[test]
fn speed_on_simulator_sized_histories() {
    let cases = [
        (
            "3000 ops, 30 keys, 10% unknown",
            GenConfig {
                ops: 3_000,
                keys: 30,
                clients: 16,
                unknown_percent: 10,
                latency_ns_max: 20 * MS,
                think_ns_max: 2 * MS,
                value_pool: 0,
            },
        ),
        (
            "3000 ops, 10 keys, 30% unknown",
            GenConfig {
                ops: 3_000,
                keys: 10,
                clients: 16,
                unknown_percent: 30,
                latency_ns_max: 20 * MS,
                think_ns_max: 2 * MS,
                value_pool: 0,
            },
        ),
        (
            "2000 ops, 5 keys, 20 clients, 25% unknown, slow ops",
            GenConfig {
                ops: 2_000,
                keys: 5,
                clients: 20,
                unknown_percent: 25,
                latency_ns_max: 50 * MS,
                think_ns_max: MS,
                value_pool: 0,
            },
        ),
        (
            "1000 ops, 2 keys, 12 clients, 20% unknown, values from a pool of 4",
            GenConfig {
                ops: 1_000,
                keys: 2,
                clients: 12,
                unknown_percent: 20,
                latency_ns_max: 30 * MS,
                think_ns_max: MS,
                value_pool: 4,
            },
        ),
    ];
    for (name, config) in cases {
        let history = linearizable_history(&mut Rng::new(7), &config);
        let start = std::time::Instant::now();
        let report =
            raftkv_checker::check_detailed(&history, Budget::default()).expect("well-formed");
        let elapsed = start.elapsed();
        assert!(
            report.verdict.is_linearizable(),
            "{name}: {}",
            report.verdict
        );
        println!(
            "{name}: {:?}, {} steps in total, at most {} on one key, {:.1} ms",
            report.verdict,
            report.steps_total,
            report.steps_max_per_key,
            elapsed.as_secs_f64() * 1e3
        );
    }
}

#[test]
fn speed_on_a_stale_read() {
    // Proving a violation means exhausting the search, then shrinking.
    let config = GenConfig {
        ops: 2_000,
        keys: 5,
        clients: 20,
        unknown_percent: 25,
        latency_ns_max: 50 * MS,
        think_ns_max: MS,
        value_pool: 0,
    };
    let mut rng = Rng::new(11);
    let mut history = linearizable_history(&mut rng, &config);
    let (key, id) = inject_stale_read(&mut history, &mut rng).expect("a stale value exists");
    let start = std::time::Instant::now();
    let report = raftkv_checker::check_detailed(&history, Budget::default()).expect("well-formed");
    let elapsed = start.elapsed();
    let Verdict::NotLinearizable(violation) = &report.verdict else {
        panic!("stale read #{id} on {key} missed: {}", report.verdict);
    };
    println!(
        "2000 ops with a stale read: violation on {:?} with {} ops in the witness, {} steps before shrinking, {:.1} ms\n{violation}",
        violation.key,
        violation.operations.len(),
        report.steps_total,
        elapsed.as_secs_f64() * 1e3
    );
}
