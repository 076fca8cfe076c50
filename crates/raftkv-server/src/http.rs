//! The HTTP/1.1 listener (`--http-listen`): `/metrics` in the Prometheus
//! (OpenMetrics) text format, `/livez`, `/readyz` and its alias `/healthz`.
//! docs/operations.md, "Metrics and health", lists every metric.
//!
//! A scrape asks the core task for its status (one request in its queue,
//! answered inside a turn, as the gRPC `Status` call is) and reads the
//! counters' atomics; it never holds anything the core or the request
//! handlers wait for. If the core does not answer within
//! [`CORE_STATUS_WAIT`], `/metrics` still serves the counters
//! (`raftkv_status_available 0`) and `/readyz` fails its `core` check.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::{Registry, Unit};
use raftkv_core::{Role, Status as CoreStatus};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

use crate::clock::Clock;
use crate::metrics::{HistogramSnapshot, Metrics, MESSAGE_KINDS, REFUSAL_REASONS};
use crate::service::Shared;

/// How long a scrape or a readiness probe waits for the core's status.
pub const CORE_STATUS_WAIT: Duration = Duration::from_secs(1);

/// A storage step (write and fsync) running longer than this makes the
/// node unready: its disk is stalled.
pub const STORAGE_STALL_LIMIT: Duration = Duration::from_secs(5);

/// HTTP connections served at once; more are closed on accept.
const MAX_HTTP_CONNECTIONS: usize = 64;

/// A connection must send its request headers within this time.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// The content type of `/metrics` (what `prometheus-client` writes).
pub const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What the HTTP handlers read.
pub struct HttpState {
    pub shared: Arc<Shared>,
    /// This node's folder (`DATA_DIR/logs_node_<id>`), for the disk gauges.
    pub node_dir: PathBuf,
}

/// Serves HTTP on `listener` until `stop` turns true.
pub async fn serve(listener: TcpListener, state: Arc<HttpState>, mut stop: watch::Receiver<bool>) {
    let slots = Arc::new(Semaphore::new(MAX_HTTP_CONNECTIONS));
    loop {
        let accepted = tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of descriptors and the like: wait, never exit.
                tracing::debug!("http accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            continue; // over the cap: dropped, so closed
        };
        let state = state.clone();
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let service = hyper::service::service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(handle(&state, req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = stop.wait_for(|s| *s) => conn.as_mut().graceful_shutdown(),
            }
        });
    }
}

async fn handle(state: &HttpState, req: Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n".into());
    }
    let verbose = req
        .uri()
        .query()
        .is_some_and(|q| q.split('&').any(|p| p.split('=').next() == Some("verbose")));
    match req.uri().path() {
        "/metrics" => {
            let body = metrics_text(state).await;
            Response::builder()
                .header("content-type", METRICS_CONTENT_TYPE)
                .body(Full::new(Bytes::from(body)))
                .expect("a valid response")
        }
        "/livez" => {
            // The process serves HTTP: that is the whole check.
            let checks = vec![Check::ok("ping")];
            health_response("livez", &checks, verbose)
        }
        "/readyz" | "/healthz" => {
            let checks = readiness(state).await;
            health_response("readyz", &checks, verbose)
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n".into()),
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from(body)))
        .expect("a valid response")
}

/// One health check's outcome: `Err` holds why it failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    pub name: &'static str,
    pub outcome: Result<(), String>,
}

impl Check {
    fn ok(name: &'static str) -> Check {
        Check {
            name,
            outcome: Ok(()),
        }
    }
    fn failed(name: &'static str, why: String) -> Check {
        Check {
            name,
            outcome: Err(why),
        }
    }
}

/// 200 when every check passed, else 503. The body is `ok`, or with
/// `verbose` one `[+]name ok` / `[-]name failed: reason` line per check as
/// Kubernetes writes them; a failure without `verbose` names the failed
/// checks only.
pub fn health_response(what: &str, checks: &[Check], verbose: bool) -> Response<Full<Bytes>> {
    let passed = checks.iter().all(|c| c.outcome.is_ok());
    let mut body = String::new();
    if verbose {
        for c in checks {
            match &c.outcome {
                Ok(()) => writeln!(body, "[+]{} ok", c.name),
                Err(why) => writeln!(body, "[-]{} failed: {why}", c.name),
            }
            .expect("writing to a String");
        }
        let verdict = if passed { "passed" } else { "failed" };
        writeln!(body, "{what} check {verdict}").expect("writing to a String");
    } else if passed {
        body.push_str("ok\n");
    } else {
        for c in checks.iter().filter(|c| c.outcome.is_err()) {
            writeln!(body, "[-]{} failed", c.name).expect("writing to a String");
        }
        writeln!(body, "{what} check failed").expect("writing to a String");
    }
    let status = if passed {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    text(status, body)
}

/// The readiness checks: `core` (the core task answers), `leader` (it
/// knows a leader), `applied` (its applied index is within
/// `--ready-max-lag` entries of the leader's commit index as far as it
/// knows), `storage` (storage has not failed and no write has run for more
/// than [`STORAGE_STALL_LIMIT`]).
async fn readiness(state: &HttpState) -> Vec<Check> {
    let shared = &state.shared;
    let status = shared.core_status(CORE_STATUS_WAIT).await;
    let storage = StorageHealth::read(&shared.metrics, shared.clock);
    ready_checks(
        status.as_ref().map(|(s, _)| s),
        storage,
        shared.config.ready_max_lag_entries,
    )
}

/// What `/readyz` knows of the storage thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StorageHealth {
    pub failed: bool,
    /// How long the storage step under way has been running (`None`: idle).
    pub busy_for: Option<Duration>,
}

impl StorageHealth {
    pub fn read(metrics: &Metrics, clock: Clock) -> StorageHealth {
        let since = metrics.storage_busy_since_ns.load(Ordering::Relaxed);
        let busy_for = (since != 0).then(|| {
            let now = clock.now().as_nanos();
            Duration::from_nanos(now.saturating_sub(since - 1))
        });
        StorageHealth {
            failed: metrics.storage_failed.load(Ordering::Relaxed) != 0,
            busy_for,
        }
    }
}

/// The readiness rules, from what the node reported.
pub fn ready_checks(
    status: Option<&CoreStatus>,
    storage: StorageHealth,
    max_lag_entries: u64,
) -> Vec<Check> {
    let mut checks = Vec::with_capacity(4);
    match status {
        None => {
            let why = format!("the core task did not answer within {CORE_STATUS_WAIT:?}");
            checks.push(Check::failed("core", why.clone()));
            checks.push(Check::failed("leader", "unknown: no status".into()));
            checks.push(Check::failed("applied", "unknown: no status".into()));
        }
        Some(s) => {
            checks.push(Check::ok("core"));
            checks.push(match s.leader {
                Some(_) => Check::ok("leader"),
                None => Check::failed(
                    "leader",
                    format!(
                        "no leader known (this node is {} in term {})",
                        s.role, s.term
                    ),
                ),
            });
            let lag = s.leader_commit.0.saturating_sub(s.applied_index.0);
            checks.push(if lag <= max_lag_entries {
                Check::ok("applied")
            } else {
                Check::failed(
                    "applied",
                    format!(
                        "applied index {} is {lag} entries behind the leader's commit index {} \
                         (limit {max_lag_entries}, --ready-max-lag)",
                        s.applied_index, s.leader_commit
                    ),
                )
            });
        }
    }
    checks.push(match storage {
        StorageHealth { failed: true, .. } => {
            Check::failed("storage", "storage failed; the node is stopping".into())
        }
        StorageHealth {
            busy_for: Some(busy),
            ..
        } if busy > STORAGE_STALL_LIMIT => Check::failed(
            "storage",
            format!(
                "a log write and fsync has been running for {:.1}s (limit {}s)",
                busy.as_secs_f64(),
                STORAGE_STALL_LIMIT.as_secs()
            ),
        ),
        _ => Check::ok("storage"),
    });
    checks
}

/// Everything one scrape shows, read before encoding.
pub struct Scrape<'a> {
    pub metrics: &'a Metrics,
    /// The core's status and key count; `None` if it did not answer.
    pub status: Option<(CoreStatus, u64)>,
    pub storage: StorageHealth,
    /// Bytes of the node folder's files; `None` if it cannot be read.
    pub disk_bytes: Option<u64>,
    /// Bytes of `snapshot.txt`; `None` when there is none.
    pub snapshot_bytes: Option<u64>,
}

async fn metrics_text(state: &HttpState) -> String {
    let shared = &state.shared;
    let status = shared.core_status(CORE_STATUS_WAIT).await;
    let scrape = Scrape {
        metrics: &shared.metrics,
        status,
        storage: StorageHealth::read(&shared.metrics, shared.clock),
        disk_bytes: dir_bytes(&state.node_dir),
        snapshot_bytes: std::fs::metadata(state.node_dir.join(raftkv_storage::SNAPSHOT_FILE))
            .ok()
            .map(|m| m.len()),
    };
    render(&scrape)
}

/// The sizes of the files in `dir` and its subfolders (a node folder holds
/// a handful of files).
fn dir_bytes(dir: &Path) -> Option<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let Ok(meta) = entry.metadata() else { continue };
        if meta.is_dir() {
            total += dir_bytes(&entry.path()).unwrap_or(0);
        } else {
            total += meta.len();
        }
    }
    Some(total)
}

/// A family of one label whose values are known at scrape time.
#[derive(Debug)]
struct Labeled<T> {
    label: &'static str,
    values: Vec<(String, T)>,
    kind: MetricType,
}

impl<T> Labeled<T> {
    fn counters(label: &'static str, values: Vec<(String, T)>) -> Labeled<T> {
        Labeled {
            label,
            values,
            kind: MetricType::Counter,
        }
    }
    fn gauges(label: &'static str, values: Vec<(String, T)>) -> Labeled<T> {
        Labeled {
            label,
            values,
            kind: MetricType::Gauge,
        }
    }
}

impl<T> EncodeMetric for Labeled<T>
where
    T: prometheus_client::encoding::EncodeCounterValue
        + prometheus_client::encoding::EncodeGaugeValue
        + std::fmt::Debug
        + Send
        + Sync,
{
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        for (value, v) in &self.values {
            let labels = [(self.label, value.as_str())];
            let mut family = encoder.encode_family(&labels)?;
            match self.kind {
                MetricType::Counter => family.encode_counter::<NoLabelSet, _, u64>(v, None)?,
                _ => family.encode_gauge(v)?,
            }
        }
        Ok(())
    }
    fn metric_type(&self) -> MetricType {
        self.kind
    }
}

/// A histogram read from [`crate::metrics::Histogram`].
#[derive(Debug)]
struct ConstHistogram(HistogramSnapshot);

impl TypedMetric for ConstHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for ConstHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let h = &self.0;
        encoder.encode_histogram::<NoLabelSet>(h.sum_seconds, h.count, &h.buckets, None)
    }
    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

fn gauge(v: impl Into<f64>) -> ConstGauge<f64> {
    ConstGauge::new(v.into())
}

fn counter(v: u64) -> ConstCounter<u64> {
    ConstCounter::new(v)
}

fn flag(b: bool) -> ConstGauge<i64> {
    ConstGauge::new(i64::from(b))
}

/// The whole exposition, in the OpenMetrics text format.
pub fn render(scrape: &Scrape) -> String {
    let mut r = Registry::with_prefix("raftkv");
    let m = scrape.metrics;
    let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    r.register(
        "status_available",
        "1 when the core task answered this scrape's status request",
        flag(scrape.status.is_some()),
    );
    if let Some((s, keys)) = &scrape.status {
        register_status(&mut r, s, *keys);
    }
    // Reads by path. Leader lease reads are answered by the gRPC handlers
    // (most) or by the core task.
    let reads = vec![
        (
            "lease".to_owned(),
            load(&m.reads_lease_in_handler) + load(&m.reads_lease_core),
        ),
        ("readindex".to_owned(), load(&m.reads_readindex)),
        ("stale".to_owned(), load(&m.reads_stale)),
        (
            "follower_read_lease".to_owned(),
            load(&m.reads_follower_lease),
        ),
        ("bounded".to_owned(), load(&m.reads_bounded)),
    ];
    r.register(
        "reads",
        "Reads taken, by path: leader lease, ReadIndex round, stale, follower read lease, bounded staleness",
        Labeled::counters("path", reads),
    );
    r.register(
        "reads_lease_in_handler",
        "Leader lease reads answered by the gRPC handler itself, without the core task",
        counter(load(&m.reads_lease_in_handler)),
    );
    r.register(
        "reads_served_at_once",
        "Reads the core task served at once from memory (leader lease, follower read lease, bounded); handler reads included",
        counter(load(&m.reads_lease)),
    );
    r.register(
        "reads_deferred",
        "Reads the core task could not serve at once (ReadIndex round, or waiting to catch up)",
        counter(load(&m.reads_pending)),
    );
    let mut refused: Vec<(String, u64)> = REFUSAL_REASONS
        .iter()
        .zip(&m.refused)
        .map(|(r, v)| ((*r).to_owned(), load(v)))
        .collect();
    // `invalid` counts both the core's refusals and the handlers' checks.
    if let Some(invalid) = refused.iter_mut().find(|(r, _)| r == "invalid") {
        invalid.1 += load(&m.client_invalid);
    }
    refused.push(("rate_limited".to_owned(), load(&m.client_rate_limited)));
    r.register(
        "requests_refused",
        "Client requests refused, by reason",
        Labeled::counters("reason", refused),
    );
    r.register(
        "client_requests",
        "Client requests received (reads, writes, text commands)",
        counter(load(&m.client_requests)),
    );
    r.register(
        "proposals_failed",
        "Writes that reached the core and were refused or got no outcome in time",
        counter(load(&m.proposals_failed)),
    );
    r.register(
        "writes_proposed",
        "Writes this node appended to its log as leader",
        counter(load(&m.writes_proposed)),
    );
    r.register(
        "conf_changes_proposed",
        "Membership changes this node proposed as leader",
        counter(load(&m.conf_changes_proposed)),
    );
    r.register(
        "leader_changes",
        "Times this node saw a new leader (itself included)",
        counter(load(&m.leader_changes)),
    );
    r.register(
        "snapshots_saved",
        "Compaction snapshots this node wrote to disk",
        counter(load(&m.snapshots_saved)),
    );
    r.register_with_unit(
        "snapshot_size",
        "Size of the node's latest snapshot file (snapshot.txt); 0 when there is none",
        Unit::Bytes,
        gauge(scrape.snapshot_bytes.unwrap_or(0) as f64),
    );
    if let Some(bytes) = scrape.disk_bytes {
        r.register_with_unit(
            "data_dir_size",
            "Bytes of the files in this node's folder (log, metadata, snapshot, dump)",
            Unit::Bytes,
            gauge(bytes as f64),
        );
    }
    r.register_with_unit(
        "storage_fsync_duration",
        "Storage fsyncs: a group of Readies' sync (an in-line follower persist: its write and sync)",
        Unit::Seconds,
        ConstHistogram(m.fsync.snapshot()),
    );
    r.register_with_unit(
        "apply_duration",
        "Core inputs (a peer message, a storage completion) that applied committed entries, the applying included",
        Unit::Seconds,
        ConstHistogram(m.apply.snapshot()),
    );
    r.register(
        "storage_persist_jobs",
        "Readies the storage persisted",
        counter(load(&m.persist_jobs)),
    );
    r.register(
        "storage_syncs",
        "Storage fsyncs (one per group of Readies)",
        counter(load(&m.persist_syncs)),
    );
    r.register(
        "storage_fd_waits",
        "Times the storage found no free file descriptor and waited",
        counter(load(&m.storage_fd_waits)),
    );
    r.register(
        "storage_failed",
        "1 once storage failed (the node then stops)",
        flag(scrape.storage.failed),
    );
    r.register_with_unit(
        "storage_busy",
        "How long the storage write under way has been running; 0 when idle",
        Unit::Seconds,
        gauge(scrape.storage.busy_for.unwrap_or_default().as_secs_f64()),
    );
    register_peer_counters(&mut r, m);
    r.register(
        "client_connections",
        "Client connections open now",
        ConstGauge::new(load(&m.connections_open_client) as f64),
    );
    r.register(
        "peer_connections",
        "Connections from other nodes open now",
        ConstGauge::new(load(&m.connections_open_peer) as f64),
    );
    r.register(
        "connections_closed",
        "Inbound connections closed on accept or before they identified themselves, by reason",
        Labeled::counters(
            "reason",
            vec![
                ("cap".to_owned(), load(&m.connections_refused_cap)),
                (
                    "preface_timeout".to_owned(),
                    load(&m.connections_preface_timeout),
                ),
                ("bad_preface".to_owned(), load(&m.connections_bad_preface)),
            ],
        ),
    );
    r.register(
        "accept_out_of_fds",
        "Accepts that failed for want of file descriptors",
        counter(load(&m.accept_out_of_fds)),
    );
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &r).expect("writing to a String");
    out
}

/// The gauges and counters taken from the core's status.
fn register_status(r: &mut Registry, s: &CoreStatus, keys: u64) {
    r.register(
        "has_leader",
        "1 when this node knows a leader",
        flag(s.leader.is_some()),
    );
    r.register(
        "is_leader",
        "1 when this node is the leader",
        flag(s.role == Role::Leader),
    );
    r.register("term", "The current term", gauge(s.term.0 as f64));
    r.register(
        "proposals_committed",
        "The commit index: entries known committed (as etcd's proposals_committed_total)",
        counter(s.commit_index.0),
    );
    r.register(
        "proposals_applied",
        "The applied index: entries applied to the state machine",
        counter(s.applied_index.0),
    );
    r.register(
        "proposals_pending",
        "Writes appended at this leader and not yet applied",
        gauge(s.pending_proposals as f64),
    );
    r.register(
        "reads_pending",
        "Linearizable reads waiting for a ReadIndex round",
        gauge(s.pending_reads as f64),
    );
    r.register(
        "leader_commit_index",
        "The leader's commit index as far as this node knows",
        gauge(s.leader_commit.0 as f64),
    );
    r.register(
        "last_log_index",
        "The last index in this node's log",
        gauge(s.last_log_index.0 as f64),
    );
    r.register(
        "persisted_index",
        "The last index durable on this node's disk",
        gauge(s.persisted_index.0 as f64),
    );
    r.register(
        "snapshot_index",
        "The last index of the latest durable snapshot (0: none)",
        gauge(s.snapshot_index.0 as f64),
    );
    r.register(
        "lease_held",
        "1 while this node holds the leader lease",
        flag(s.lease.holds),
    );
    r.register_with_unit(
        "lease_remaining",
        "Time left on the leader lease (0 when not held)",
        Unit::Seconds,
        gauge(s.lease.remaining.as_secs_f64()),
    );
    r.register(
        "client_sessions",
        "Client sessions held by the state machine (exactly-once writes)",
        gauge(s.client_sessions as f64),
    );
    r.register("keys", "Keys in the state machine", gauge(keys as f64));
    r.register(
        "voters",
        "Voters in the configuration in force",
        gauge(s.membership.voters.len() as f64),
    );
    r.register(
        "peer_messages_rejected",
        "Peer messages the core rejected (stale, malformed, unexpected)",
        counter(s.rejected_messages),
    );
    // Per peer: known at the leader only.
    let contact: Vec<(String, f64)> = s
        .peers
        .iter()
        .filter_map(|p| {
            p.last_contact_ago
                .map(|ago| (p.id.0.to_string(), ago.as_secs_f64()))
        })
        .collect();
    r.register_with_unit(
        "peer_last_contact",
        "At the leader: time since each peer last answered",
        Unit::Seconds,
        Labeled::gauges("peer", contact),
    );
    let round_trip: Vec<(String, f64)> = s
        .peers
        .iter()
        .filter_map(|p| {
            p.round_trip
                .map(|rt| (p.id.0.to_string(), rt.as_secs_f64()))
        })
        .collect();
    r.register_with_unit(
        "peer_round_trip",
        "At the leader: round trip of each peer's latest reply to an append or heartbeat",
        Unit::Seconds,
        Labeled::gauges("peer", round_trip),
    );
    let matched: Vec<(String, f64)> = s
        .peers
        .iter()
        .filter(|_| s.role == Role::Leader)
        .map(|p| (p.id.0.to_string(), p.match_index.0 as f64))
        .collect();
    r.register(
        "peer_match_index",
        "At the leader: the last index known replicated on each peer",
        Labeled::gauges("peer", matched),
    );
}

fn register_peer_counters(r: &mut Registry, m: &Metrics) {
    let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    let sent = MESSAGE_KINDS
        .iter()
        .zip(&m.sent)
        .map(|(k, v)| ((*k).to_owned(), load(v)))
        .collect();
    r.register(
        "peer_messages_sent",
        "Peer messages handed to the transport, by kind",
        Labeled::counters("kind", sent),
    );
    r.register(
        "peer_messages_received",
        "Peer messages received",
        counter(load(&m.peer_messages_received)),
    );
    r.register(
        "peer_messages_dropped",
        "Peer messages dropped, by reason (Raft retransmits)",
        Labeled::counters(
            "reason",
            vec![
                (
                    "queue_full".to_owned(),
                    load(&m.peer_messages_dropped_queue_full),
                ),
                (
                    "no_address".to_owned(),
                    load(&m.peer_messages_dropped_no_address),
                ),
                (
                    "inbox_full".to_owned(),
                    load(&m.peer_messages_dropped_inbox_full),
                ),
            ],
        ),
    );
    r.register(
        "peer_messages_malformed",
        "Peer frames or messages that did not decode or validate",
        counter(load(&m.peer_messages_malformed)),
    );
    r.register(
        "peer_batches_failed",
        "Peer connections dropped after a failed or stuck send",
        counter(load(&m.peer_batches_failed)),
    );
    r.register(
        "peer_batches_rejected_cluster",
        "Peer batches refused for another cluster id or a wrong sender or receiver",
        counter(load(&m.peer_batches_rejected_cluster)),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use raftkv_core::{LogIndex, Term};

    fn status() -> CoreStatus {
        let mut config = crate::config::sample();
        config.core.voters = vec![raftkv_core::NodeId(1)];
        let node = raftkv_core::RaftNode::new(
            config.core,
            raftkv_core::Restored::default(),
            raftkv_core::MonoTime::ZERO,
            7,
        )
        .expect("a node");
        node.status(raftkv_core::MonoTime::ZERO)
    }

    fn idle() -> StorageHealth {
        StorageHealth {
            failed: false,
            busy_for: None,
        }
    }

    fn failed_names(checks: &[Check]) -> Vec<&'static str> {
        checks
            .iter()
            .filter(|c| c.outcome.is_err())
            .map(|c| c.name)
            .collect()
    }

    #[test]
    fn readiness_follows_leader_lag_and_storage() {
        let mut s = status();
        s.leader = Some(raftkv_core::NodeId(2));
        s.applied_index = LogIndex(500);
        s.leader_commit = LogIndex(1500);
        assert!(failed_names(&ready_checks(Some(&s), idle(), 1000)).is_empty());
        s.leader_commit = LogIndex(1501);
        assert_eq!(
            failed_names(&ready_checks(Some(&s), idle(), 1000)),
            ["applied"]
        );
        s.leader = None;
        s.term = Term(4);
        let checks = ready_checks(Some(&s), idle(), 5000);
        assert_eq!(failed_names(&checks), ["leader"]);
        let why = checks[1].outcome.clone().unwrap_err();
        assert!(
            why.contains("no leader known") && why.contains("term 4"),
            "{why}"
        );
        s.leader = Some(raftkv_core::NodeId(2));
        let stalled = StorageHealth {
            failed: false,
            busy_for: Some(STORAGE_STALL_LIMIT + Duration::from_millis(1)),
        };
        assert_eq!(
            failed_names(&ready_checks(Some(&s), stalled, 5000)),
            ["storage"]
        );
        let busy = StorageHealth {
            failed: false,
            busy_for: Some(Duration::from_millis(30)),
        };
        assert!(failed_names(&ready_checks(Some(&s), busy, 5000)).is_empty());
        let broken = StorageHealth {
            failed: true,
            busy_for: None,
        };
        assert_eq!(
            failed_names(&ready_checks(Some(&s), broken, 5000)),
            ["storage"]
        );
        assert_eq!(
            failed_names(&ready_checks(None, idle(), 5000)),
            ["core", "leader", "applied"]
        );
    }

    #[test]
    fn storage_health_reads_the_busy_marker() {
        let m = Metrics::default();
        let clock = Clock::start();
        assert_eq!(StorageHealth::read(&m, clock).busy_for, None);
        m.storage_busy_since_ns.store(1, Ordering::Relaxed); // since time 0
        std::thread::sleep(Duration::from_millis(5));
        let busy = StorageHealth::read(&m, clock).busy_for.expect("busy");
        assert!(busy >= Duration::from_millis(5), "{busy:?}");
    }

    #[tokio::test]
    async fn verbose_health_lists_every_check() {
        use http_body_util::BodyExt;
        let checks = vec![
            Check::ok("core"),
            Check::failed("leader", "no leader known".into()),
        ];
        let r = health_response("readyz", &checks, true);
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body = r.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(
            std::str::from_utf8(&body).unwrap(),
            "[+]core ok\n[-]leader failed: no leader known\nreadyz check failed\n"
        );
        let r = health_response("livez", &[Check::ok("ping")], false);
        assert_eq!(r.status(), StatusCode::OK);
        let body = r.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"ok\n");
    }

    #[test]
    fn the_exposition_names_every_metric_once() {
        let m = Metrics::default();
        m.reads_lease_in_handler.store(3, Ordering::Relaxed);
        m.reads_lease_core.store(2, Ordering::Relaxed);
        m.fsync.observe(Duration::from_millis(2));
        let mut s = status();
        s.peers = vec![raftkv_core::PeerStatus {
            id: raftkv_core::NodeId(2),
            learner: false,
            snapshot: None,
            match_index: LogIndex(9),
            next_index: LogIndex(10),
            last_contact_ago: Some(Duration::from_millis(250)),
            round_trip: Some(Duration::from_millis(2)),
        }];
        let text = render(&Scrape {
            metrics: &m,
            status: Some((s, 12)),
            storage: idle(),
            disk_bytes: Some(4096),
            snapshot_bytes: None,
        });
        for line in [
            "raftkv_status_available 1",
            "raftkv_is_leader 0",
            "raftkv_keys 12.0",
            "raftkv_reads_total{path=\"lease\"} 5",
            "raftkv_peer_last_contact_seconds{peer=\"2\"} 0.25",
            "raftkv_peer_round_trip_seconds{peer=\"2\"} 0.002",
            "raftkv_data_dir_size_bytes 4096.0",
            "raftkv_storage_fsync_duration_seconds_count 1",
            "raftkv_storage_fsync_duration_seconds_bucket{le=\"0.0025\"} 1",
            "raftkv_requests_refused_total{reason=\"rate_limited\"} 0",
            "# TYPE raftkv_apply_duration_seconds histogram",
            "# EOF",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "no line {line:?} in:\n{text}"
            );
        }
        let mut types: Vec<&str> = text.lines().filter(|l| l.starts_with("# TYPE")).collect();
        let n = types.len();
        types.sort_unstable();
        types.dedup();
        assert_eq!(types.len(), n, "a metric is described twice");
    }
}
