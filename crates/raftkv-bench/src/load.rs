//! The workloads (`put`, `get`, `mixed`) and the closed-loop driver: each of
//! `--clients` tasks issues one operation at a time (optionally paced by
//! `--rate`), over `--conns` shared gRPC connections, and records each
//! latency in its own HDR histogram (merged at the end, so recording takes no
//! lock).

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use hdrhistogram::Histogram;
use raftkv_client::{Client, ClientOptions, Consistency};
use rand::{Rng, SeedableRng};

use crate::bound_check::BoundCheck;
use crate::etcd::{self, EtcdConn};
use crate::report::{self, new_histogram};
use crate::target::{ReadConsistency, Target};
use crate::{plot, procs};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum KeyPattern {
    /// Uniformly random keys in the key space.
    Random,
    /// Keys 0, 1, 2, ... (wrapping at --key-space): fills the space once.
    Seq,
}

/// Options shared by every workload.
#[derive(Args, Debug, Clone)]
pub struct LoadArgs {
    /// Which system the endpoints belong to.
    #[arg(long, value_enum, default_value = "raftkv")]
    pub target: Target,
    /// Client endpoints, comma-separated host:port.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003"
    )]
    pub endpoints: Vec<String>,
    /// Concurrent clients, each with one operation in flight.
    #[arg(long, default_value_t = 1)]
    pub clients: usize,
    /// gRPC connections shared by the clients (client i uses connection i mod conns).
    #[arg(long, default_value_t = 1)]
    pub conns: usize,
    /// Stop after this many measured operations.
    #[arg(long, conflicts_with = "duration")]
    pub total: Option<u64>,
    /// Stop after this long measuring (e.g. 10s, 500ms, 2m; a bare number is seconds).
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Cap on total operations per second (spread evenly over the clients).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Key length in bytes.
    #[arg(long, default_value_t = 16)]
    pub key_size: usize,
    /// Value length in bytes.
    #[arg(long, default_value_t = 256)]
    pub val_size: usize,
    /// Number of distinct keys.
    #[arg(long, default_value_t = 1000)]
    pub key_space: u64,
    #[arg(long, value_enum, default_value = "random")]
    pub key_pattern: KeyPattern,
    /// Run this long before measuring (connections, leader discovery, caches).
    #[arg(long, default_value_t = 0)]
    pub warmup_ms: u64,
    /// The bound of `--consistency bounded` reads.
    #[arg(long, default_value_t = 500)]
    pub max_staleness_ms: u64,
    /// raftkv: reads go to the first endpoint first (a follower read lease
    /// holder answers them there), not to the leader the client learnt of.
    #[arg(long)]
    pub read_nearest: bool,
    /// raftkv, `--consistency bounded`: while the run lasts, write and read
    /// one more key to check that every such read is within its bound
    /// (`bound_check.rs`); a read beyond it fails the run.
    #[arg(long)]
    pub check_bound: bool,
    /// Timeout of one RPC attempt.
    #[arg(long, default_value_t = 5000)]
    pub rpc_timeout_ms: u64,
    /// Cluster process ids whose CPU time to report (default: the processes
    /// listening on the endpoints' ports, found through /proc).
    #[arg(long, value_delimiter = ',')]
    pub pids: Vec<u32>,
    /// Write the result as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write a latency-by-percentile plot (SVG) to this file.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// A name for this run in the output.
    #[arg(long)]
    pub label: Option<String>,
    /// No progress bar (it is also off when stderr is not a terminal).
    #[arg(long)]
    pub no_progress: bool,
}

#[derive(Args, Debug)]
pub struct PutArgs {
    #[command(flatten)]
    pub load: LoadArgs,
}

#[derive(Args, Debug)]
pub struct GetArgs {
    #[command(flatten)]
    pub load: LoadArgs,
    #[arg(long, value_enum, default_value = "linearizable")]
    pub consistency: ReadConsistency,
    /// Do not write the key space before reading.
    #[arg(long)]
    pub no_preload: bool,
}

#[derive(Args, Debug)]
pub struct MixedArgs {
    #[command(flatten)]
    pub load: LoadArgs,
    /// Fraction of operations that are reads (0.0 to 1.0).
    #[arg(long, default_value_t = 0.9)]
    pub read_ratio: f64,
    #[arg(long, value_enum, default_value = "linearizable")]
    pub consistency: ReadConsistency,
    #[arg(long)]
    pub no_preload: bool,
}

/// What one run does.
#[derive(Clone, Copy, Debug)]
pub struct Workload {
    pub name: &'static str,
    pub read_ratio: f64,
    pub consistency: ReadConsistency,
    pub preload: bool,
}

pub async fn run_put(a: PutArgs) -> anyhow::Result<ExitCode> {
    let w = Workload {
        name: "put",
        read_ratio: 0.0,
        consistency: ReadConsistency::Linearizable,
        preload: false,
    };
    run_workload(a.load, w).await
}

pub async fn run_get(a: GetArgs) -> anyhow::Result<ExitCode> {
    let w = Workload {
        name: "get",
        read_ratio: 1.0,
        consistency: a.consistency,
        preload: !a.no_preload,
    };
    run_workload(a.load, w).await
}

pub async fn run_mixed(a: MixedArgs) -> anyhow::Result<ExitCode> {
    if !(0.0..=1.0).contains(&a.read_ratio) {
        bail!("--read-ratio must be within 0.0 and 1.0");
    }
    let w = Workload {
        name: "mixed",
        read_ratio: a.read_ratio,
        consistency: a.consistency,
        preload: !a.no_preload,
    };
    run_workload(a.load, w).await
}

/// `3`, `2.5s`, `500ms`, `2m`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (num, scale) = if let Some(n) = t.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60.0)
    } else {
        (t, 1.0)
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("bad duration {text:?} (try 10s, 500ms, 2m)"))?;
    if !(v.is_finite() && v > 0.0) {
        return Err(format!("duration {text:?} must be positive"));
    }
    Ok(Duration::from_secs_f64(v * scale))
}

/// Key `n` as exactly `size` bytes: `k` then the zero-padded number.
pub fn key_name(n: u64, size: usize) -> String {
    let digits = size.saturating_sub(1).max(1);
    let mut s = format!("k{n:0digits$}");
    // A number wider than the padding would make the key longer: keep the
    // low digits so every key has the asked size (callers check key_space).
    if s.len() > size {
        s = format!("k{}", &s[s.len() - digits..]);
    }
    s
}

/// One client's connection to the system under test.
#[derive(Clone)]
enum Worker {
    Raftkv(Arc<Client>),
    Etcd(EtcdConn),
}

impl Worker {
    async fn put(&mut self, key: &str, value: &str) -> anyhow::Result<()> {
        match self {
            Worker::Raftkv(c) => c.set(key, value).await.map(|_| ()).map_err(Into::into),
            Worker::Etcd(c) => c.put(key, value).await,
        }
    }

    async fn get(
        &mut self,
        key: &str,
        consistency: ReadConsistency,
        max_staleness: Duration,
    ) -> anyhow::Result<()> {
        match (self, consistency) {
            (Worker::Raftkv(c), ReadConsistency::Bounded) => c
                .get_with(key, Consistency::Bounded(max_staleness))
                .await
                .map(|_| ())
                .map_err(Into::into),
            (Worker::Etcd(_), ReadConsistency::Bounded) => {
                anyhow::bail!("etcd has no bounded-staleness read")
            }
            (Worker::Raftkv(c), ReadConsistency::Linearizable) => {
                c.get(key).await.map(|_| ()).map_err(Into::into)
            }
            (Worker::Raftkv(c), ReadConsistency::Stale) => c
                .get_with(key, Consistency::Stale)
                .await
                .map(|_| ())
                .map_err(Into::into),
            (Worker::Etcd(c), ReadConsistency::Linearizable) => c.get(key, false).await.map(|_| ()),
            (Worker::Etcd(c), ReadConsistency::Stale) => c.get(key, true).await.map(|_| ()),
        }
    }
}

fn check_args(a: &LoadArgs) -> anyhow::Result<()> {
    if a.clients == 0 || a.conns == 0 {
        bail!("--clients and --conns must be at least 1");
    }
    if a.key_space == 0 || a.key_size < 2 {
        bail!("--key-space must be at least 1 and --key-size at least 2");
    }
    let digits = u32::try_from(a.key_size - 1).unwrap_or(u32::MAX).min(19);
    if digits < 19 && a.key_space > 10u64.pow(digits) {
        bail!(
            "--key-space {} needs keys longer than --key-size {}",
            a.key_space,
            a.key_size
        );
    }
    if a.endpoints.is_empty() {
        bail!("--endpoints is empty");
    }
    if a.rate.is_some_and(|r| !(r.is_finite() && r > 0.0)) {
        bail!("--rate must be positive");
    }
    Ok(())
}

/// One worker per client: raftkv clients get their own session (one write
/// in flight each) over shared connections; etcd clients talk to the leader.
async fn make_workers(a: &LoadArgs) -> anyhow::Result<Vec<Worker>> {
    let rpc_timeout = Duration::from_millis(a.rpc_timeout_ms);
    let conns: Vec<Worker> = match a.target {
        Target::Raftkv => {
            let opts = ClientOptions {
                rpc_timeout,
                deadline: rpc_timeout * 2,
                ..ClientOptions::default()
            };
            let mut v = Vec::new();
            for _ in 0..a.conns {
                let c = Client::new(&a.endpoints, opts.clone())?;
                if a.read_nearest {
                    c.read_first_endpoint_first();
                }
                // Find the leader once so every session starts with it cached.
                c.get("warmup").await.context("first read from raftkv")?;
                v.push(Worker::Raftkv(Arc::new(c)));
            }
            v
        }
        Target::Etcd => {
            let leader = wait_etcd_leader(&a.endpoints).await?;
            let mut v = Vec::new();
            for _ in 0..a.conns {
                let mut c = EtcdConn::new(&leader, rpc_timeout)?;
                c.get("warmup", false)
                    .await
                    .context("first read from etcd")?;
                v.push(Worker::Etcd(c));
            }
            v
        }
    };
    Ok((0..a.clients)
        .map(|i| match &conns[i % conns.len()] {
            Worker::Raftkv(c) => Worker::Raftkv(Arc::new(c.with_new_session())),
            Worker::Etcd(c) => Worker::Etcd(c.clone()),
        })
        .collect())
}

async fn wait_etcd_leader(endpoints: &[String]) -> anyhow::Result<String> {
    let give_up = Instant::now() + Duration::from_secs(15);
    loop {
        match etcd::find_leader(endpoints).await {
            Ok(l) => return Ok(l),
            Err(e) if Instant::now() >= give_up => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Writes every key of the key space once, so reads find values.
async fn preload(a: &LoadArgs, workers: &[Worker]) -> anyhow::Result<()> {
    let t0 = Instant::now();
    let value = "v".repeat(a.val_size);
    let mut tasks = tokio::task::JoinSet::new();
    let n = workers.len() as u64;
    for (i, w) in workers.iter().enumerate() {
        let (mut w, value, key_space, key_size) =
            (w.clone(), value.clone(), a.key_space, a.key_size);
        tasks.spawn(async move {
            let mut k = i as u64;
            while k < key_space {
                w.put(&key_name(k, key_size), &value).await?;
                k += n;
            }
            anyhow::Ok(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.context("preload task panicked")?
            .context("preload write failed")?;
    }
    eprintln!(
        "preloaded {} keys in {:.1} s",
        a.key_space,
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Shared by the client tasks of one run.
struct RunState {
    record_from: Instant,
    end: Option<Instant>,
    total: Option<u64>,
    claimed: AtomicU64,
    done: AtomicU64,
    errors: AtomicU64,
    next_seq_key: AtomicU64,
    first_error: Mutex<Option<String>>,
    stop: AtomicBool,
}

struct ClientResult {
    hist: Histogram<u64>,
    reads: u64,
    writes: u64,
}

async fn run_workload(a: LoadArgs, w: Workload) -> anyhow::Result<ExitCode> {
    check_args(&a)?;
    if a.total.is_none() && a.duration.is_none() {
        bail!("give --total or --duration");
    }
    let workers = make_workers(&a).await?;
    if w.preload {
        preload(&a, &workers).await?;
    }
    let pids = if a.pids.is_empty() {
        procs::pids_listening_on(&a.endpoints)
    } else {
        a.pids.clone()
    };
    let check = if a.check_bound {
        if a.target != Target::Raftkv || w.consistency != ReadConsistency::Bounded {
            bail!("--check-bound needs raftkv and --consistency bounded");
        }
        let opts = ClientOptions {
            rpc_timeout: Duration::from_millis(a.rpc_timeout_ms),
            ..ClientOptions::default()
        };
        let bound = Duration::from_millis(a.max_staleness_ms);
        Some(BoundCheck::start(
            &a.endpoints,
            opts,
            a.read_nearest,
            bound,
        )?)
    } else {
        None
    };
    let counters_before = server_counters(&a).await;
    let start = Instant::now();
    let record_from = start + Duration::from_millis(a.warmup_ms);
    let state = Arc::new(RunState {
        record_from,
        end: a.duration.map(|d| record_from + d),
        total: a.total,
        claimed: AtomicU64::new(0),
        done: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        next_seq_key: AtomicU64::new(0),
        first_error: Mutex::new(None),
        stop: AtomicBool::new(false),
    });
    let cpu_at_start = {
        let pids = pids.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(record_from.into()).await;
            (
                procs::cpu_seconds(&pids),
                procs::process_cpu_seconds(std::process::id()),
            )
        })
    };
    let progress = spawn_progress(&a, state.clone());
    let interval = a
        .rate
        .map(|r| Duration::from_secs_f64(a.clients as f64 / r));
    let mut tasks = tokio::task::JoinSet::new();
    for (i, worker) in workers.into_iter().enumerate() {
        let spec = ClientSpec {
            index: i as u64,
            key_space: a.key_space,
            key_size: a.key_size,
            pattern: a.key_pattern,
            value: "v".repeat(a.val_size),
            interval,
            workload: w,
            max_staleness: Duration::from_millis(a.max_staleness_ms),
        };
        tasks.spawn(client_loop(worker, spec, state.clone()));
    }
    let mut merged = new_histogram();
    let (mut reads, mut writes) = (0, 0);
    while let Some(r) = tasks.join_next().await {
        let r = r.context("client task panicked")?;
        merged.add(&r.hist).context("merging histograms")?;
        reads += r.reads;
        writes += r.writes;
    }
    let finished = Instant::now();
    state.stop.store(true, Ordering::Relaxed);
    let verdict = match check {
        Some(c) => Some(c.finish().await),
        None => None,
    };
    if let Some(p) = progress {
        p.await.ok();
    }
    let cpu_end = procs::cpu_seconds(&pids);
    let self_cpu_end = procs::process_cpu_seconds(std::process::id());
    let (cpu_start, self_cpu_start) = cpu_at_start.await.context("cpu sampler")?;
    let counters_after = server_counters(&a).await;
    let elapsed = finished.saturating_duration_since(record_from);
    let run = report::Run {
        label: a.label.clone(),
        target: a.target,
        workload: w.name.to_string(),
        consistency: (w.read_ratio > 0.0).then_some(w.consistency),
        read_ratio: w.read_ratio,
        clients: a.clients,
        conns: a.conns,
        key_size: a.key_size,
        val_size: a.val_size,
        key_space: a.key_space,
        reads,
        writes,
        errors: state.errors.load(Ordering::Relaxed),
        first_error: state.first_error.lock().expect("poisoned").clone(),
        elapsed_s: elapsed.as_secs_f64(),
        cluster_pids: pids,
        cluster_cpu_s: cpu_start.zip(cpu_end).map(|(s, e)| (e - s).max(0.0)),
        generator_cpu_s: self_cpu_start
            .zip(self_cpu_end)
            .map(|(s, e)| (e - s).max(0.0)),
        latency: report::Latency::from_histogram(&merged),
        curve_ms: plot::curve_ms(&merged),
        server_counters: counters_after
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    v.saturating_sub(*counters_before.get(k).unwrap_or(&0)),
                )
            })
            .collect(),
    };
    println!("{}", run.summary());
    if let Some(v) = &verdict {
        println!("  {}", v.line(Duration::from_millis(a.max_staleness_ms)));
        if v.beyond_bound > 0 || v.reads == 0 {
            eprintln!("bounded reads broke their bound (or none was checked)");
            return Ok(ExitCode::FAILURE);
        }
    }
    if let Some(path) = &a.json {
        let text = serde_json::to_string_pretty(&run.to_json())?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &a.plot {
        let title = run.title();
        std::fs::write(
            path,
            plot::percentile_svg(&[(title, plot::curve_ms(&merged))]),
        )
        .with_context(|| format!("writing {}", path.display()))?;
    }
    let all_failed = run.reads + run.writes == 0 || run.errors > (run.reads + run.writes) / 2;
    Ok(if all_failed {
        eprintln!("most operations failed");
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

struct ClientSpec {
    index: u64,
    key_space: u64,
    key_size: usize,
    pattern: KeyPattern,
    value: String,
    interval: Option<Duration>,
    workload: Workload,
    max_staleness: Duration,
}

async fn client_loop(mut worker: Worker, spec: ClientSpec, state: Arc<RunState>) -> ClientResult {
    let mut out = ClientResult {
        hist: new_histogram(),
        reads: 0,
        writes: 0,
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(spec.index.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    // Spread the clients' pacing slots over one interval.
    let mut next_at = Instant::now()
        + spec
            .interval
            .map(|iv| iv.mul_f64(rng.random::<f64>()))
            .unwrap_or_default();
    loop {
        if let Some(iv) = spec.interval {
            tokio::time::sleep_until(next_at.into()).await;
            next_at += iv;
        }
        let t0 = Instant::now();
        if state.end.is_some_and(|end| t0 >= end) {
            break;
        }
        let recording = t0 >= state.record_from;
        if recording {
            let n = state.claimed.fetch_add(1, Ordering::Relaxed);
            if state.total.is_some_and(|total| n >= total) {
                break;
            }
        }
        let n = match spec.pattern {
            KeyPattern::Random => rng.random_range(0..spec.key_space),
            KeyPattern::Seq => state.next_seq_key.fetch_add(1, Ordering::Relaxed) % spec.key_space,
        };
        let key = key_name(n, spec.key_size);
        let is_read =
            spec.workload.read_ratio > 0.0 && rng.random::<f64>() < spec.workload.read_ratio;
        let result = if is_read {
            worker
                .get(&key, spec.workload.consistency, spec.max_staleness)
                .await
        } else {
            worker.put(&key, &spec.value).await
        };
        let latency_ns = u64::try_from(t0.elapsed().as_nanos()).unwrap_or(u64::MAX);
        if !recording {
            continue;
        }
        match result {
            Ok(()) => {
                out.hist.saturating_record(latency_ns.max(1));
                if is_read {
                    out.reads += 1;
                } else {
                    out.writes += 1;
                }
            }
            Err(e) => {
                state.errors.fetch_add(1, Ordering::Relaxed);
                let mut first = state.first_error.lock().expect("poisoned");
                first.get_or_insert_with(|| format!("{e:#}"));
            }
        }
        state.done.fetch_add(1, Ordering::Relaxed);
    }
    out
}

/// A progress bar on stderr (only when it is a terminal).
fn spawn_progress(a: &LoadArgs, state: Arc<RunState>) -> Option<tokio::task::JoinHandle<()>> {
    if a.no_progress || !std::io::stderr().is_terminal() {
        return None;
    }
    let (len, by_time) = match (a.total, a.duration) {
        (Some(t), _) => (t, false),
        (None, Some(d)) => (d.as_millis() as u64, true),
        (None, None) => return None,
    };
    let bar = indicatif::ProgressBar::new(len);
    let style = if by_time {
        "{elapsed_precise} [{bar:40}] {msg}"
    } else {
        "{elapsed_precise} [{bar:40}] {pos}/{len} {msg}"
    };
    bar.set_style(indicatif::ProgressStyle::with_template(style).expect("valid template"));
    Some(tokio::spawn(async move {
        while !state.stop.load(Ordering::Relaxed) {
            let done = state.done.load(Ordering::Relaxed);
            let since = Instant::now().saturating_duration_since(state.record_from);
            let pos = if by_time {
                since.as_millis() as u64
            } else {
                done
            };
            bar.set_position(pos.min(len));
            bar.set_message(format!("{done} ops"));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bar.finish_and_clear();
    }))
}

/// raftkv's own counters summed over the nodes (empty for etcd): the
/// difference over a run tells how reads were served (lease or ReadIndex)
/// and how many fsyncs the writes cost.
async fn server_counters(a: &LoadArgs) -> BTreeMap<String, u64> {
    let mut sum = BTreeMap::new();
    if a.target != Target::Raftkv {
        return sum;
    }
    let Ok(client) = Client::new(&a.endpoints, ClientOptions::default()) else {
        return sum;
    };
    for ep in &a.endpoints {
        let Ok(status) = client.status_at(ep).await else {
            continue;
        };
        for c in status.counters {
            if SERVER_COUNTERS.contains(&c.name.as_str()) {
                *sum.entry(c.name).or_insert(0) += c.value;
            }
        }
    }
    sum
}

const SERVER_COUNTERS: &[&str] = &[
    "reads_lease",
    "reads_lease_in_handler",
    "reads_pending",
    "reads_stale",
    "writes_proposed",
    "persist_jobs",
    "persist_syncs",
    "client_rate_limited",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_have_the_asked_size() {
        assert_eq!(key_name(7, 16), "k000000000000007");
        assert_eq!(key_name(7, 16).len(), 16);
        assert_eq!(key_name(123_456, 4), "k456");
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("soon").is_err());
    }
}
