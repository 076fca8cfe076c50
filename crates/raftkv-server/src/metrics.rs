//! Counters (and two gauges) shown by the admin `Status` call, and the two
//! latency histograms of `/metrics` ([`crate::http`]). Plain atomics: they
//! are read rarely and written on every message, so no locking.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use raftkv_core::MessageBody;

/// The kinds of `MessageBody::kind`, in a fixed order.
pub const MESSAGE_KINDS: [&str; 10] = [
    "Heartbeat",
    "AppendEntries",
    "AppendEntriesResponse",
    "PreVote",
    "RequestVote",
    "PreVoteResponse",
    "RequestVoteResponse",
    "InstallSnapshot",
    "InstallSnapshotResponse",
    "TimeoutNow",
];

fn kind_index(body: &MessageBody) -> usize {
    let kind = body.kind();
    MESSAGE_KINDS
        .iter()
        .position(|k| *k == kind)
        .expect("every message kind is listed in MESSAGE_KINDS")
}

/// Why a client request was refused, in a fixed order (the `reason` label
/// of `raftkv_requests_refused_total`). `rate_limited` and `invalid` are
/// the counters `client_rate_limited` and `client_invalid`.
pub const REFUSAL_REASONS: [&str; 8] = [
    "not_leader",
    "busy",
    "invalid",
    "stale_sequence",
    "conflict",
    "retry_later",
    "stopping",
    "timeout",
];

/// Index of a reason in [`REFUSAL_REASONS`].
pub fn refusal_index(reason: &str) -> usize {
    REFUSAL_REASONS
        .iter()
        .position(|r| *r == reason)
        .expect("every refusal reason is listed in REFUSAL_REASONS")
}

macro_rules! counters {
    ($($name:ident),* $(,)?) => {
        /// Plain counters; see [`Metrics::snapshot`] for their names.
        #[derive(Default, Debug)]
        pub struct Metrics {
            /// Peer messages handed to the transport, by kind.
            pub sent: [AtomicU64; MESSAGE_KINDS.len()],
            /// Client requests refused, by [`REFUSAL_REASONS`] (besides
            /// rate limits and invalid requests, counted on their own).
            pub refused: [AtomicU64; REFUSAL_REASONS.len()],
            /// Storage steps' fsyncs (a group's sync; an in-line persist's
            /// write and sync).
            pub fsync: Histogram,
            /// Core inputs (a peer message, a storage completion) that
            /// applied committed entries, the applying included.
            pub apply: Histogram,
            $(pub $name: AtomicU64,)*
        }

        impl Metrics {
            /// `(name, value)` pairs, stable names, for `Status`.
            pub fn snapshot(&self) -> Vec<(String, u64)> {
                let mut out: Vec<(String, u64)> = MESSAGE_KINDS
                    .iter()
                    .zip(self.sent.iter())
                    .map(|(k, v)| (format!("sent.{k}"), v.load(Ordering::Relaxed)))
                    .collect();
                out.extend(
                    REFUSAL_REASONS
                        .iter()
                        .zip(self.refused.iter())
                        .map(|(r, v)| (format!("refused.{r}"), v.load(Ordering::Relaxed))),
                );
                $(out.push((stringify!($name).to_owned(), self.$name.load(Ordering::Relaxed)));)*
                out
            }
        }
    };
}

counters!(
    // Peer transport.
    peer_messages_dropped_queue_full,
    peer_messages_dropped_no_address,
    peer_batches_failed,
    peer_messages_received,
    peer_messages_dropped_inbox_full,
    peer_batches_rejected_cluster,
    peer_messages_malformed,
    // Client calls.
    client_requests,
    client_rate_limited,
    client_invalid,
    writes_proposed,
    reads_lease,
    // Of those, served by the gRPC handler from the published view.
    reads_lease_in_handler,
    reads_pending,
    reads_stale,
    // Reads by the path the core gave them (`raftkv_driver::ReadPath`):
    // leader lease reads the core task served (the handlers' are
    // `reads_lease_in_handler`), ReadIndex rounds, follower read lease
    // reads, bounded-staleness reads.
    reads_lease_core,
    reads_readindex,
    reads_follower_lease,
    reads_bounded,
    // Writes answered with a refusal or not at all (time-out).
    proposals_failed,
    // Times this node saw a new leader (itself included).
    leader_changes,
    // Membership and snapshots.
    conf_changes_proposed,
    snapshots_saved,
    // Storage.
    persist_jobs,
    persist_syncs,
    // Inbound connections (docs/operations.md, "File descriptors"). The two
    // `_open` ones are gauges: connections open now, a connection not yet
    // identified counting as a client (or as a peer when clients are full).
    connections_open_client,
    connections_open_peer,
    connections_refused_cap,
    connections_preface_timeout,
    connections_bad_preface,
    accept_out_of_fds,
    storage_fd_waits,
    // Storage health (gauges): 1 once storage failed (the node then stops);
    // when a storage step (write and fsync) started, as the node clock's
    // nanoseconds plus one, 0 while idle.
    storage_failed,
    storage_busy_since_ns,
);

impl Metrics {
    pub fn count_sent(&self, body: &MessageBody) {
        self.sent[kind_index(body)].fetch_add(1, Ordering::Relaxed);
    }
}

/// `counter.fetch_add(1)` with the ordering that suits counters.
pub fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Bucket bounds of the latency histograms, in seconds: 10 µs to 5 s.
pub const LATENCY_BUCKETS_SECONDS: [f64; 17] = [
    0.000_01, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1,
    0.25, 0.5, 1.0, 2.5, 5.0,
];

/// A latency histogram of plain atomics (one writer thread in practice,
/// read at scrape time): observing takes no lock.
#[derive(Default, Debug)]
pub struct Histogram {
    /// Observations per bucket, not cumulative; the last one is above
    /// every bound (+Inf).
    buckets: [AtomicU64; LATENCY_BUCKETS_SECONDS.len() + 1],
    sum_ns: AtomicU64,
}

/// What a scrape reads of a [`Histogram`].
#[derive(Clone, Debug, PartialEq)]
pub struct HistogramSnapshot {
    pub sum_seconds: f64,
    pub count: u64,
    /// `(upper bound, observations in this bucket)`, not cumulative (as
    /// `prometheus_client`'s encoder takes them); the last bound is
    /// `f64::MAX`, written `+Inf`.
    pub buckets: Vec<(f64, u64)>,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let seconds = d.as_secs_f64();
        let i = LATENCY_BUCKETS_SECONDS
            .iter()
            .position(|&bound| seconds <= bound)
            .unwrap_or(LATENCY_BUCKETS_SECONDS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        let buckets: Vec<(f64, u64)> = LATENCY_BUCKETS_SECONDS
            .iter()
            .chain(&[f64::MAX])
            .zip(&self.buckets)
            .map(|(bound, n)| (*bound, n.load(Ordering::Relaxed)))
            .collect();
        HistogramSnapshot {
            sum_seconds: self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9,
            count: buckets.iter().map(|b| b.1).sum(),
            buckets,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_count_everything() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(5)); // first bucket (10 µs)
        h.observe(Duration::from_micros(10)); // on the bound: still the first
        h.observe(Duration::from_millis(3)); // 5 ms bucket
        h.observe(Duration::from_secs(60)); // above every bound
        let s = h.snapshot();
        assert_eq!(s.count, 4);
        assert_eq!(s.buckets.len(), LATENCY_BUCKETS_SECONDS.len() + 1);
        assert_eq!(s.buckets[0], (0.000_01, 2));
        let at = |bound: f64| s.buckets.iter().find(|b| b.0 == bound).unwrap().1;
        assert_eq!(at(0.002_5), 0);
        assert_eq!(at(0.005), 1);
        assert_eq!(at(5.0), 0);
        assert_eq!(at(f64::MAX), 1, "60 s is only in +Inf");
        assert!(
            (s.sum_seconds - 60.003_015).abs() < 1e-9,
            "{}",
            s.sum_seconds
        );
    }

    #[test]
    fn every_refusal_reason_has_a_slot() {
        let m = Metrics::default();
        for r in REFUSAL_REASONS {
            bump(&m.refused[refusal_index(r)]);
        }
        let snap = m.snapshot();
        assert!(snap.iter().any(|(n, v)| n == "refused.timeout" && *v == 1));
    }
}
