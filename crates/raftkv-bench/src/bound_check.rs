//! `--check-bound`: checks, during a run of bounded-staleness reads, that
//! every such read answered within its bound.
//!
//! A writer sets one key, [`KEY`], to 1, 2, 3, … through the leader, one
//! write at a time, and notes when each was acknowledged. A reader reads it
//! with the run's bound through the same route as the measured clients (the
//! first endpoint first with `--read-nearest`) and notes when each read
//! began and what it saw. A write acknowledged before `start − bound` was
//! visible then, so a read that began at `start` and saw an older value
//! broke its bound. The check is sound (every violation it reports is one)
//! and, being a sample, not complete.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use raftkv_client::{Client, ClientOptions, Consistency};

/// The key the check writes and reads.
pub const KEY: &str = "bound-check";

/// What the writer and the reader noted.
#[derive(Default)]
struct Notes {
    /// `acked[i]`: when value `i + 1` was acknowledged.
    acked: Vec<Instant>,
    /// (start, value seen; 0 for none) per read.
    reads: Vec<(Instant, u64)>,
    errors: u64,
}

/// The running check; [`BoundCheck::finish`] stops it and judges.
pub struct BoundCheck {
    bound: Duration,
    notes: Arc<Mutex<Notes>>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// The verdict.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub writes: usize,
    pub reads: usize,
    /// Reads that saw a value older than one acknowledged `bound` before
    /// they began.
    pub beyond_bound: usize,
    /// The longest time a read's answer lagged: from the acknowledgement
    /// of the first write it missed to the read's start (0: none missed).
    pub max_lag: Duration,
    pub errors: u64,
}

impl Verdict {
    pub fn line(&self, bound: Duration) -> String {
        format!(
            "bound check ({} ms): {} checked reads of {KEY:?} against {} writes, {} beyond the bound, largest lag {:.1} ms; {} errors",
            bound.as_millis(),
            self.reads,
            self.writes,
            self.beyond_bound,
            self.max_lag.as_secs_f64() * 1e3,
            self.errors
        )
    }
}

impl BoundCheck {
    /// Starts the writer and the reader.
    pub fn start(
        endpoints: &[String],
        opts: ClientOptions,
        read_nearest: bool,
        bound: Duration,
    ) -> anyhow::Result<BoundCheck> {
        let notes = Arc::new(Mutex::new(Notes::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let writer = Client::new(endpoints, opts.clone())?;
        let reader = Client::new(endpoints, opts)?;
        if read_nearest {
            reader.read_first_endpoint_first();
        }
        let w = {
            let (notes, stop) = (notes.clone(), stop.clone());
            tokio::spawn(async move {
                let mut next = 1u64;
                while !stop.load(Ordering::Relaxed) {
                    match writer.set(KEY, &next.to_string()).await {
                        Ok(_) => {
                            notes.lock().expect("poisoned").acked.push(Instant::now());
                            next += 1;
                        }
                        Err(_) => notes.lock().expect("poisoned").errors += 1,
                    }
                }
            })
        };
        let r = {
            let (notes, stop) = (notes.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let start = Instant::now();
                    match reader.get_with(KEY, Consistency::Bounded(bound)).await {
                        Ok(a) => {
                            let seen = a.value.0.and_then(|v| v.parse().ok()).unwrap_or(0);
                            notes.lock().expect("poisoned").reads.push((start, seen));
                        }
                        Err(_) => notes.lock().expect("poisoned").errors += 1,
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            })
        };
        Ok(BoundCheck {
            bound,
            notes,
            stop,
            tasks: vec![w, r],
        })
    }

    /// Stops both tasks and judges what they noted.
    pub async fn finish(self) -> Verdict {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            let _ = t.await;
        }
        let notes = std::mem::take(&mut *self.notes.lock().expect("poisoned"));
        judge(&notes.acked, &notes.reads, self.bound, notes.errors)
    }
}

/// `acked[i]`: when value `i + 1` was acknowledged (in order); `reads`:
/// (start, value seen).
fn judge(acked: &[Instant], reads: &[(Instant, u64)], bound: Duration, errors: u64) -> Verdict {
    let mut v = Verdict {
        writes: acked.len(),
        reads: reads.len(),
        beyond_bound: 0,
        max_lag: Duration::ZERO,
        errors,
    };
    for &(start, seen) in reads {
        // The first write the read missed, if it was acknowledged before
        // the read began.
        if let Some(&missed) = acked.get(seen as usize) {
            if missed < start {
                let lag = start - missed;
                v.max_lag = v.max_lag.max(lag);
                if lag > bound {
                    v.beyond_bound += 1;
                }
            }
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_missing_a_write_acknowledged_more_than_the_bound_before_it_is_caught() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        // Values 1, 2, 3 acknowledged at 0, 100, 200 ms.
        let acked = [ms(0), ms(100), ms(200)];
        let bound = Duration::from_millis(50);
        // Fresh, lagging 40 ms (within), and lagging 120 ms (beyond).
        let reads = [(ms(250), 3), (ms(140), 1), (ms(220), 1)];
        let v = judge(&acked, &reads, bound, 0);
        assert_eq!((v.reads, v.writes, v.beyond_bound), (3, 3, 1));
        assert_eq!(v.max_lag, Duration::from_millis(120));
        // Nothing read yet (value 0) long after the first write: beyond.
        let v = judge(&acked, &[(ms(90), 0)], bound, 0);
        assert_eq!(v.beyond_bound, 1);
        // A read that began before a write was acknowledged may miss it.
        let v = judge(&acked, &[(ms(99), 1)], bound, 0);
        assert_eq!((v.beyond_bound, v.max_lag), (0, Duration::ZERO));
    }
}
