//! # raftkv-workload
//!
//! Concurrent clients that SET unique values, GET and DELETE over a small key
//! space against a raftkv cluster, recording every call as a
//! [`raftkv_checker::Operation`] on one clock (this process's monotonic
//! clock), so the history can be checked for linearizability.
//!
//! A write whose call ends in a timeout or an unavailable cluster is recorded
//! with [`Output::Unknown`]: it may or may not have taken effect. A read that
//! fails imposes nothing and is recorded as unknown too.

mod history_file;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use raftkv_checker::{Input, Operation, Output};
use raftkv_client::{Client, ClientError, ClientOptions};

pub use history_file::{read_history, write_history, HistoryFileError};

#[derive(Clone, Debug)]
pub struct WorkloadOptions {
    /// Concurrent clients, each with its own session.
    pub clients: usize,
    /// Distinct keys (`k0` .. `k{keys-1}`).
    pub keys: usize,
    /// Fractions of reads and deletes; the rest are SETs.
    pub read_ratio: f64,
    pub delete_ratio: f64,
    /// Pause between one client's operations.
    pub think_time: Duration,
    pub seed: u64,
    pub client: ClientOptions,
    /// Reads go to the first endpoint first (`Client::prefer_nearest`'s
    /// route, without measuring): a read lease holder answers them itself.
    pub read_nearest: bool,
}

impl Default for WorkloadOptions {
    fn default() -> Self {
        WorkloadOptions {
            clients: 4,
            keys: 8,
            read_ratio: 0.5,
            delete_ratio: 0.05,
            think_time: Duration::from_millis(5),
            seed: 1,
            client: ClientOptions {
                deadline: Duration::from_secs(5),
                ..ClientOptions::default()
            },
            read_nearest: false,
        }
    }
}

/// A running workload; [`Workload::stop`] ends it and returns the history.
pub struct Workload {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<Vec<Operation>>>,
    pub started: Instant,
}

impl Workload {
    /// Start `opts.clients` clients against `endpoints`.
    pub fn start(endpoints: &[String], opts: WorkloadOptions) -> Result<Workload, ClientError> {
        Workload::start_with_clock(endpoints, opts, Instant::now())
    }

    /// Like [`Workload::start`], with times in the history measured from
    /// `started` (so that two workloads' histories can be merged).
    pub fn start_with_clock(
        endpoints: &[String],
        opts: WorkloadOptions,
        started: Instant,
    ) -> Result<Workload, ClientError> {
        let base = Client::new(endpoints, opts.client.clone())?;
        if opts.read_nearest {
            base.read_first_endpoint_first();
        }
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = (0..opts.clients)
            .map(|i| {
                let worker = Worker {
                    client: base.with_new_session(),
                    index: i as u64,
                    opts: opts.clone(),
                    rng: opts.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (i as u64 + 1),
                    started,
                };
                tokio::spawn(worker.run(stop.clone()))
            })
            .collect();
        Ok(Workload {
            stop,
            tasks,
            started,
        })
    }

    /// Nanoseconds since the workload started, on the history's clock.
    pub fn now_ns(&self) -> u64 {
        self.started.elapsed().as_nanos() as u64
    }

    /// Stop issuing new operations, wait for those in flight, and return the
    /// whole history with ids assigned in call order.
    pub async fn stop(self) -> Vec<Operation> {
        self.stop.store(true, Ordering::SeqCst);
        let mut history = Vec::new();
        for t in self.tasks {
            history.extend(t.await.expect("workload task panicked"));
        }
        history.sort_by_key(|op| (op.call_ns, op.client));
        for (i, op) in history.iter_mut().enumerate() {
            op.id = i as u64;
        }
        history
    }
}

struct Worker {
    client: Client,
    index: u64,
    opts: WorkloadOptions,
    rng: u64,
    started: Instant,
}

impl Worker {
    fn next_random(&mut self) -> u64 {
        // SplitMix64: enough for choosing operations, and reproducible.
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn now_ns(&self) -> u64 {
        self.started.elapsed().as_nanos() as u64
    }

    fn next_input(&mut self, n: u64) -> Input {
        let key = format!("k{}", self.next_random() % self.opts.keys.max(1) as u64);
        let roll = (self.next_random() % 10_000) as f64 / 10_000.0;
        if roll < self.opts.read_ratio {
            Input::Get { key }
        } else if roll < self.opts.read_ratio + self.opts.delete_ratio {
            Input::Delete { key }
        } else {
            Input::Set {
                key,
                value: format!("c{}-{}", self.index, n),
            }
        }
    }

    async fn run(mut self, stop: Arc<AtomicBool>) -> Vec<Operation> {
        let mut history = Vec::new();
        let mut n = 0u64;
        while !stop.load(Ordering::SeqCst) {
            n += 1;
            let input = self.next_input(n);
            let call_ns = self.now_ns();
            let output = self.perform(&input).await;
            let return_ns = if output == Output::Unknown {
                u64::MAX
            } else {
                self.now_ns()
            };
            history.push(Operation {
                id: 0,
                client: self.index,
                input,
                output,
                call_ns,
                return_ns,
            });
            tokio::time::sleep(self.opts.think_time).await;
        }
        history
    }

    async fn perform(&self, input: &Input) -> Output {
        let result = match input {
            Input::Get { key } => self.client.get(key).await.map(|a| Output::Value(a.value)),
            Input::Set { key, value } => self.client.set(key, value).await.map(|_| Output::Ok),
            Input::Delete { key } => self.client.delete(key).await.map(|_| Output::Ok),
        };
        match result {
            Ok(output) => output,
            // Anything else leaves the outcome open: the write may have
            // committed before the connection or the deadline gave out.
            Err(_) => Output::Unknown,
        }
    }
}

/// Summary figures of a history.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Summary {
    pub operations: usize,
    pub ok_writes: usize,
    pub ok_reads: usize,
    pub unknown: usize,
    /// The longest stretch with no operation completing successfully.
    pub longest_gap: Duration,
}

/// When each successful operation returned, in order.
fn completion_times(history: &[Operation]) -> Vec<u64> {
    let mut done: Vec<u64> = history
        .iter()
        .filter(|o| o.output != Output::Unknown)
        .map(|o| o.return_ns)
        .collect();
    done.sort_unstable();
    done
}

pub fn summarize(history: &[Operation]) -> Summary {
    let done = completion_times(history);
    let longest_gap = done.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
    Summary {
        operations: history.len(),
        ok_writes: history.iter().filter(|o| o.output == Output::Ok).count(),
        ok_reads: history
            .iter()
            .filter(|o| matches!(o.output, Output::Value(_)))
            .count(),
        unknown: history
            .iter()
            .filter(|o| o.output == Output::Unknown)
            .count(),
        longest_gap: Duration::from_nanos(longest_gap),
    }
}

/// Stretches longer than `min_gap` in which no operation completed
/// successfully, as `(start_ns, end_ns)` on the history's clock.
pub fn unavailability_windows(history: &[Operation], min_gap: Duration) -> Vec<(u64, u64)> {
    let done = completion_times(history);
    let min = min_gap.as_nanos() as u64;
    done.windows(2)
        .filter(|w| w[1] - w[0] > min)
        .map(|w| (w[0], w[1]))
        .collect()
}

/// Read every key of the workload's key space after the run and append the
/// reads to the history as GET operations, so that the checker also proves no
/// acknowledged write was lost: a final read must see the last write.
pub async fn append_final_reads(
    history: &mut Vec<Operation>,
    endpoints: &[String],
    keys: usize,
    started: Instant,
) -> Result<(), ClientError> {
    let client = Client::new(
        endpoints,
        ClientOptions {
            deadline: Duration::from_secs(20),
            ..ClientOptions::default()
        },
    )?;
    let client_index = history.iter().map(|o| o.client).max().unwrap_or(0) + 1;
    for k in 0..keys {
        let key = format!("k{k}");
        let call_ns = started.elapsed().as_nanos() as u64;
        let value = client.get(&key).await?.value;
        let return_ns = started.elapsed().as_nanos() as u64;
        let id = history.len() as u64;
        let output = Output::Value(value);
        history.push(Operation {
            id,
            client: client_index,
            input: Input::Get { key },
            output,
            call_ns,
            return_ns,
        });
    }
    Ok(())
}
