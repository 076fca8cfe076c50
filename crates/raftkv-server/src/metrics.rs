//! Counters (and two gauges) shown by the admin `Status` call. Plain atomics: they are read
//! rarely and written on every message, so no locking.

use std::sync::atomic::{AtomicU64, Ordering};

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

macro_rules! counters {
    ($($name:ident),* $(,)?) => {
        /// Plain counters; see [`Metrics::snapshot`] for their names.
        #[derive(Default, Debug)]
        pub struct Metrics {
            /// Peer messages handed to the transport, by kind.
            pub sent: [AtomicU64; MESSAGE_KINDS.len()],
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
