//! # raftkv-server
//!
//! The node runtime: it drives the pure `raftkv-core` with tokio and tonic.
//!
//! - [`runtime`]: the core task (the only owner of the `RaftNode`), a tokio
//!   shell around the shared driver (`raftkv-driver`), which orders
//!   persistence, sends, the lease-read view and client answers; [`clock`].
//! - [`storage_thread`]: the driver's storage worker on its own thread, off
//!   the runtime.
//! - [`transport`]: per peer, two sender tasks, each with its own TCP
//!   connection (Raft messages; snapshot chunks), following the configuration
//!   in force.
//! - [`peer_inbound`]: the listener, which tells peer connections from gRPC
//!   ones, and the receiving end of peer connections.
//! - [`peer_wire`]: the framing of peer connections.
//! - [`service`]: the gRPC `Kv` and `Admin` services.
//! - [`convert`]: protobuf ↔ core types, with validation.
//! - [`conn_caps`]: caps on inbound connections; [`fds`]: the descriptor
//!   limit, the connection budget, reserve descriptors.
//! - [`http`]: the optional HTTP listener, `/metrics`, `/livez`, `/readyz`.
//! - [`config`], [`limits`], [`metrics`].
//!
//! Wire protocol and operations: docs/server.md.

pub mod clock;
pub mod config;
pub mod conn_caps;
pub mod convert;
pub mod fds;
pub mod http;
pub mod limits;
pub mod metrics;
pub mod peer_inbound;
pub mod peer_wire;
pub mod runtime;
pub mod service;
pub mod storage_thread;
pub mod transport;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use raftkv_client::pb;
use raftkv_core::RaftNode;
use raftkv_storage::identity::{self, Identity};
use raftkv_storage::{
    node_dir_name, DumpLevel, DumpLog, DumpOptions, FileStorage, FileStorageOptions,
};
use tokio::net::TcpListener;

pub use config::{parse_peers, ServerConfig};
pub use raftkv_storage::identity::MembershipFlags;

use crate::clock::Clock;
use crate::conn_caps::ConnCaps;
use crate::fds::FdReserve;
use crate::limits::RateLimiter;
use crate::metrics::Metrics;
use crate::peer_inbound::Inbound;
use crate::runtime::{CoreParts, CoreTask};
use crate::service::{AdminService, KvService, Shared};
use crate::storage_thread::StorageThread;
use crate::transport::{AddressBook, Transport, TransportOptions};
use raftkv_driver::LeaseReads;

/// The file in a node's folder that ties it to one cluster and node id, and
/// records the configuration it was bootstrapped with.
pub use raftkv_storage::identity::IDENTITY_FILE;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("invalid configuration: {0}")]
    Config(#[from] config::ConfigError),
    #[error("cannot listen on {addr}: {source} (is another process using this port?)")]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error(
        "cannot listen on {addr} (--http-listen): {source} (is another process using this port?)"
    )]
    HttpListen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("data directory {path}: {reason}")]
    DataDir { path: PathBuf, reason: String },
    #[error("storage: {0}")]
    Storage(#[from] raftkv_storage::StorageError),
    #[error("membership: {0}")]
    Membership(#[from] raftkv_storage::identity::MembershipError),
    #[error("cannot restore the node: {0}")]
    Restore(#[from] raftkv_core::RestoreError),
    #[error("storage failed while running: {0}")]
    StorageFailed(String),
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Runs one node until `shutdown` resolves (SIGINT/SIGTERM in the binary),
/// then stops cleanly: in-flight storage work is finished, the commit index
/// saved, `dump.txt` flushed and the node folder's lock released.
pub async fn run(
    config: ServerConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServerError> {
    config.validate()?;
    let nofile = match fds::raise_nofile_limit() {
        Ok(limit) => {
            tracing::info!(
                soft = limit.soft,
                hard = limit.hard,
                was = limit.was,
                "file descriptor limit (RLIMIT_NOFILE)"
            );
            limit.soft
        }
        Err(e) => {
            let soft = rlimit::Resource::NOFILE
                .get()
                .map_or(1024, |(soft, _)| soft);
            tracing::warn!(soft, "cannot raise the file descriptor limit: {e}");
            soft
        }
    };
    let listener =
        TcpListener::bind(config.listen)
            .await
            .map_err(|source| ServerError::Listen {
                addr: config.listen,
                source,
            })?;
    // Before the disk too: a bad --http-listen changes nothing.
    let http_listener = match config.http_listen {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .map_err(|source| ServerError::HttpListen { addr, source })?,
        ),
        None => None,
    };
    let dump_level: DumpLevel = config
        .dump_level
        .parse()
        .map_err(|e: String| config::ConfigError::Other(e))?;
    let mut config = config;
    let node_dir = config.data_dir.join(node_dir_name(config.core.id));
    // The identity is checked before the storage opens (a refusal changes
    // nothing in the folder but for a line in `dump.txt`); the membership
    // after, from what the storage holds.
    let opened = check_identity(&node_dir, &config).and_then(|identity| {
        let opened = FileStorage::open(
            &config.data_dir,
            config.core.id,
            FileStorageOptions::default(),
        )?;
        adopt_stored_membership(&node_dir, &mut config, identity, &opened.1)?;
        Ok(opened)
    });
    let (storage, restored, report) = match opened {
        Ok(opened) => opened,
        Err(e) => {
            record_refusal(&node_dir, &config, dump_level, &e);
            return Err(e);
        }
    };
    if let Some(plan) = &report.repair {
        tracing::warn!(node = %config.core.id, "{plan}");
    }
    let dump = Arc::new(DumpLog::open(
        &node_dir,
        DumpOptions {
            level: dump_level,
            ..DumpOptions::new(config.core.id)
        },
    )?);
    if let Some(torn) = &report.torn_tail {
        tracing::warn!("{torn}");
        dump.record(DumpLevel::Error, restored.hard_state.term, torn);
    }
    let clock = Clock::start();
    let entries = restored.entries.len();
    let term = restored.hard_state.term;
    let node = RaftNode::new(config.core.clone(), restored, clock.now(), rand::random())?;
    tracing::info!(
        node = %config.core.id, listen = %config.listen, %term, entries,
        dir = %node_dir.display(), "node started"
    );
    dump.record(
        DumpLevel::Info,
        term,
        &format!(
            "node started on {} with {entries} log entries",
            config.listen
        ),
    );

    let metrics = Arc::new(Metrics::default());
    let book = Arc::new(AddressBook::new(config.peers.clone()));
    let transport = Transport::start(
        book.clone(),
        transport_options(&config),
        metrics.clone(),
        dump.clone(),
    );
    // Descriptors the storage frees for itself when one of its opens finds
    // none (`raftkv_storage::fd_retry`).
    let storage_reserve = Arc::new(FdReserve::new("storage", STORAGE_RESERVE_FDS));
    let (storage, done_rx) =
        StorageThread::start(storage, metrics.clone(), storage_reserve, clock)?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let lease_reads = Arc::new(LeaseReads::new());
    let parts = CoreParts {
        lease_reads: lease_reads.clone(),
        node,
        clock,
        transport,
        dump: dump.clone(),
        storage,
        done_rx,
        tick_interval: config.tick_interval,
        metrics: metrics.clone(),
        shutdown: stop_rx.clone(),
        queue_len: 4096,
    };
    let (core, handle) = CoreTask::new(parts);
    let core = tokio::spawn(core.run());

    let config = Arc::new(config);
    let shared = Arc::new(Shared {
        limiter: RateLimiter::new(config.rate_limit_per_conn),
        config: config.clone(),
        handle,
        metrics,
        started: Instant::now(),
        book,
        lease_reads,
        clock,
    });
    if let Some(listener) = http_listener {
        let addr = listener.local_addr()?;
        let state = Arc::new(http::HttpState {
            shared: shared.clone(),
            node_dir: node_dir.clone(),
        });
        tracing::info!(node = %config.core.id, %addr, "HTTP listener (/metrics, /livez, /readyz)");
        tokio::spawn(http::serve(listener, state, stop_rx.clone()));
    }
    let inbound = Inbound::new(
        connection_caps(&config, nofile, shared.metrics.clone()),
        config.preface_timeout,
    );
    let max_request = config.max_request_bytes();
    let kv = pb::kv_server::KvServer::new(KvService(shared.clone()))
        .max_decoding_message_size(max_request)
        .max_encoding_message_size(raftkv_client::MAX_MESSAGE_BYTES);
    let admin = pb::admin_server::AdminServer::new(AdminService(shared.clone()))
        .max_decoding_message_size(max_request)
        .max_encoding_message_size(raftkv_client::MAX_MESSAGE_BYTES);
    let too_large = TooLargeMessage {
        max_request,
        max_key_bytes: config.core.max_key_bytes,
        max_value_bytes: config.core.max_value_bytes,
    };
    // Peer connections are served by `peer_inbound`; the rest go to tonic.
    let incoming = peer_inbound::accept(listener, shared, inbound, stop_rx.clone());
    let mut server_stop = stop_rx.clone();
    let server = tonic::transport::Server::builder()
        // An established client that answers no PING (gone, or a socket
        // that sent a preface and nothing since) is closed.
        .http2_keepalive_interval(Some(HTTP2_KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(HTTP2_KEEPALIVE_TIMEOUT))
        .layer(tower::util::MapResponseLayer::new(move |r| {
            too_large.rewrite(r)
        }))
        .add_service(kv)
        .add_service(admin)
        .serve_with_incoming_shutdown(incoming, async move {
            let _ = server_stop.wait_for(|stop| *stop).await;
        });
    let server = tokio::spawn(server);

    let mut core = core;
    let core_result = tokio::select! {
        _ = shutdown => {
            tracing::info!(node = %config.core.id, "shutting down");
            let _ = stop_tx.send(true);
            (&mut core).await
        }
        result = &mut core => {
            let _ = stop_tx.send(true);
            result
        }
    };
    // Give open client calls a moment to finish; peers reconnect elsewhere.
    let _ = tokio::time::timeout(Duration::from_secs(2), server).await;
    dump.flush();
    match core_result {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(ServerError::StorageFailed(e)),
        Err(join) => Err(ServerError::StorageFailed(format!(
            "core task panicked: {join}"
        ))),
    }
}

/// Rewrites gRPC's own refusal of a request above the decoding limit
/// (OUT_OF_RANGE "decoded message length too large") into INVALID_ARGUMENT
/// naming the settings that set the limit: the handler's message for a value
/// a little too large, and this one for a value far too large, both tell
/// the user what to change.
#[derive(Clone, Copy)]
struct TooLargeMessage {
    max_request: usize,
    max_key_bytes: usize,
    max_value_bytes: usize,
}

impl TooLargeMessage {
    fn rewrite<B: Default>(
        self,
        response: tonic::codegen::http::Response<B>,
    ) -> tonic::codegen::http::Response<B> {
        let Some(status) = tonic::Status::from_header_map(response.headers()) else {
            return response;
        };
        if status.code() != tonic::Code::OutOfRange
            || !status
                .message()
                .contains("decoded message length too large")
        {
            return response;
        }
        let found = status
            .message()
            .split("found ")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .map_or(String::new(), |n| format!(" of {n} bytes"));
        tonic::Status::invalid_argument(format!(
            "request{found} exceeds the limit of {} bytes: a value may have at most {} bytes \
             (--max-value-bytes), a key {} bytes (--max-key-bytes)",
            self.max_request, self.max_value_bytes, self.max_key_bytes
        ))
        .into_http()
    }
}

/// Descriptors on `/dev/null` held by the storage and freed for each of
/// its jobs (a job opens at most a few files at once).
const STORAGE_RESERVE_FDS: usize = 8;

/// How often tonic PINGs an idle client connection, and how long it waits
/// for the answer before closing it.
pub const HTTP2_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
pub const HTTP2_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// The caps on inbound connections: the flags, or a share of the
/// descriptor limit `nofile` (see [`fds::conn_budget`]); logged.
fn connection_caps(config: &ServerConfig, nofile: u64, metrics: Arc<Metrics>) -> Arc<ConnCaps> {
    let in_use = fds::open_descriptors().unwrap_or(64);
    let (budget, lowered) = fds::conn_budget(
        nofile,
        in_use,
        config.peers.len(),
        config.max_client_connections,
        config.max_peer_connections,
    );
    if lowered {
        tracing::warn!(
            nofile,
            in_use,
            available = budget.available,
            "--max-client-connections / --max-peer-connections do not fit the file \
             descriptor limit: lowered to {} and {}",
            budget.max_client,
            budget.max_peer
        );
    }
    tracing::info!(
        max_client = budget.max_client,
        max_peer = budget.max_peer,
        nofile,
        in_use,
        preface_timeout_ms = config.preface_timeout.as_millis() as u64,
        "inbound connection caps"
    );
    ConnCaps::new(budget.max_client, budget.max_peer, metrics)
}

fn transport_options(config: &ServerConfig) -> TransportOptions {
    TransportOptions {
        cluster_id: config.cluster_id.clone(),
        self_id: config.core.id,
        advertise: config.advertise.clone(),
        queue_len: config.peer_queue_len,
        rpc_timeout: config.peer_rpc_timeout,
        connect_timeout: config.peer_rpc_timeout,
        backoff_min: Duration::from_millis(10),
        backoff_max: config
            .core
            .heartbeat_interval
            .max(Duration::from_millis(10))
            * 4,
        max_batch_messages: 64,
        max_batch_bytes: 4 << 20,
        zone: config.core.zone.clone().unwrap_or_default(),
    }
}

/// Appends why the node refused to start to its folder's `dump.txt`, where
/// the folder exists and another process does not hold it; best effort (a
/// folder that cannot be written gets nothing, the message still goes to
/// stderr).
fn record_refusal(node_dir: &Path, config: &ServerConfig, level: DumpLevel, e: &ServerError) {
    use raftkv_storage::StorageError;
    if matches!(
        e,
        ServerError::Storage(StorageError::Locked { .. } | StorageError::DataDirMissing { .. })
    ) || !node_dir.is_dir()
    {
        return;
    }
    let opts = DumpOptions {
        level,
        ..DumpOptions::new(config.core.id)
    };
    if let Ok(dump) = DumpLog::open(node_dir, opts) {
        dump.record(
            DumpLevel::Error,
            raftkv_core::Term(0),
            &format!("refused to start: {e}"),
        );
        dump.flush();
    }
}

/// A node folder belongs to one node of one cluster: refuse to start on a
/// folder written by another (a copied folder, a reused data directory).
/// Reads only.
fn check_identity(node_dir: &Path, config: &ServerConfig) -> Result<Option<Identity>, ServerError> {
    let Some(found) = identity::read(node_dir)? else {
        return Ok(None);
    };
    if found.cluster_id != config.cluster_id || found.node_id != config.core.id {
        return Err(ServerError::DataDir {
            path: node_dir.to_owned(),
            reason: format!(
                "belongs to another cluster or node: {IDENTITY_FILE} says \"cluster_id={} node_id={}\", this node is \"cluster_id={} node_id={}\"",
                found.cluster_id, found.node_id, config.cluster_id, config.core.id
            ),
        });
    }
    Ok(Some(found))
}

/// The stored configuration is the authority: a node with state takes its
/// bootstrap voters (and their addresses) from `identity.txt` and its
/// membership from its log and snapshot; the flags only bootstrap an empty
/// folder, and only update the addresses of known members later. A flag
/// that contradicts the stored membership is refused, naming both.
fn adopt_stored_membership(
    node_dir: &Path,
    config: &mut ServerConfig,
    stored: Option<Identity>,
    restored: &raftkv_core::Restored,
) -> Result<(), ServerError> {
    let me = config.core.id;
    let in_force = restored
        .entries
        .iter()
        .rev()
        .find_map(|e| match &e.payload {
            raftkv_core::EntryPayload::Config(m) => Some(m.clone()),
            _ => None,
        })
        .or_else(|| {
            restored
                .snapshot
                .as_ref()
                .map(|s| s.meta.membership.clone())
        });
    let has_state = restored.hard_state != raftkv_core::HardState::default()
        || !restored.entries.is_empty()
        || restored.snapshot.is_some();
    let stored_voters = stored.as_ref().and_then(|i| i.voters.clone());
    if stored_voters.is_none() && has_state {
        tracing::warn!(
            node = %me,
            "{IDENTITY_FILE} does not record the bootstrap configuration (an older raftkv wrote it): recording what the flags say, once"
        );
    }
    let voters = identity::start_voters(
        me,
        stored_voters.as_ref(),
        in_force.as_ref(),
        &config.membership,
        false,
    )?;
    // Addresses: the stored ones, updated by the flags for known members.
    let mut addrs = stored.as_ref().map(|i| i.addrs.clone()).unwrap_or_default();
    for (id, addr) in &config.peers {
        addrs.insert(*id, addr.clone());
    }
    addrs.remove(&me);
    if stored_voters.as_ref() != Some(&voters) || stored.as_ref().map(|i| &i.addrs) != Some(&addrs)
    {
        identity::write(
            node_dir,
            &Identity {
                cluster_id: config.cluster_id.clone(),
                node_id: me,
                voters: Some(voters.clone()),
                addrs: addrs.clone(),
            },
        )?;
    }
    if stored_voters.is_some()
        && config
            .core
            .voters
            .iter()
            .copied()
            .collect::<std::collections::BTreeSet<_>>()
            != voters
    {
        tracing::info!(
            node = %me,
            "membership from {IDENTITY_FILE} and the log (bootstrap voters {}), not from the flags",
            identity::ids_text(&voters)
        );
    }
    config.core.voters = voters.into_iter().collect();
    config.peers = addrs;
    config.validate()?;
    Ok(())
}
