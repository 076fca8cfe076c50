//! Many seeds on a few worker threads, results in seed order.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::run::{run_seed, RunOptions, RunReport};

/// Run seeds `0..count` with `template` (its `seed` is replaced) on
/// `workers` threads. Each run is independent and deterministic, so the
/// results do not depend on the number of workers.
pub fn sweep(template: &RunOptions, count: u64, workers: usize) -> Vec<RunReport> {
    let next = AtomicU64::new(0);
    let results = Mutex::new(Vec::with_capacity(count as usize));
    std::thread::scope(|s| {
        for _ in 0..workers.max(1) {
            s.spawn(|| loop {
                let seed = next.fetch_add(1, Ordering::Relaxed);
                if seed >= count {
                    break;
                }
                let mut opts = template.clone();
                opts.seed = seed;
                opts.trace = false;
                let report = run_seed(&opts);
                results
                    .lock()
                    .expect("no worker panics holding the lock")
                    .push(report);
            });
        }
    });
    let mut out = results.into_inner().expect("workers done");
    out.sort_by_key(|r| r.seed);
    out
}
