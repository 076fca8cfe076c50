//! Everything one node process needs to start, and its validation.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use raftkv_core::{Config, NodeId};

/// Key and value limits (also enforced by the core) and the request rate
/// limit per client connection. Documented in docs/server.md.
pub const DEFAULT_MAX_KEY_BYTES: usize = 4 << 10;
pub const DEFAULT_MAX_VALUE_BYTES: usize = 1 << 20;
pub const DEFAULT_RATE_LIMIT_PER_CONN: u32 = 50_000;
/// The largest `--max-value-bytes` and `--max-key-bytes` accepted: an entry
/// must fit a peer frame (64 MiB) and a client's gRPC message (64 MiB, see
/// `raftkv_client::MAX_MESSAGE_BYTES`) with room to spare.
pub const MAX_VALUE_BYTES_LIMIT: usize = 16 << 20;
pub const MAX_KEY_BYTES_LIMIT: usize = 64 << 10;
/// What a client request carries besides its key and value (ids, sequence
/// numbers, protobuf framing), with a wide margin.
pub const REQUEST_OVERHEAD_BYTES: usize = 64 << 10;
/// How long a new connection has to identify itself: the peer preface and
/// first frame, or the HTTP/2 preface and first frame (docs/server.md).
pub const DEFAULT_PREFACE_TIMEOUT: Duration = Duration::from_secs(5);
/// `/readyz` fails when this node's applied index is more than this many
/// entries behind the leader's commit index as far as it knows
/// (`--ready-max-lag`).
pub const DEFAULT_READY_MAX_LAG_ENTRIES: u64 = 1000;

#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// The core's configuration (id, voters, timing, limits).
    pub core: Config,
    /// Where this node listens.
    pub listen: SocketAddr,
    /// The address other nodes and clients use to reach this node (its entry
    /// in `--peers` when listed there, else `listen`).
    pub advertise: String,
    /// Addresses of other nodes: the bootstrap voters (`core.voters` is
    /// this node plus these), or, for a node that joins a running cluster
    /// (`core.voters` empty), any nodes it should know the address of.
    /// Nodes added at run time carry their address in the configuration.
    pub peers: BTreeMap<NodeId, String>,
    /// Addresses to give clients in leader hints, when they differ from the
    /// peer addresses (separate client and peer networks). Missing ids fall
    /// back to the peer address.
    pub client_addrs: BTreeMap<NodeId, String>,
    /// The data directory; this node's files live in its `node-<id>` folder
    /// as defined by raftkv-storage.
    pub data_dir: PathBuf,
    pub cluster_id: String,
    /// How often the core's timers are advanced.
    pub tick_interval: Duration,
    pub peer_rpc_timeout: Duration,
    pub peer_queue_len: usize,
    /// How long a client call may wait for its write to apply or its read to
    /// be served before the server answers DEADLINE_EXCEEDED.
    pub client_wait_timeout: Duration,
    /// Token-bucket rate per client connection (requests per second; the
    /// burst is the same number).
    pub rate_limit_per_conn: u32,
    /// `dump.txt` level: off, error, info, debug.
    pub dump_level: String,
    /// What `--peers`, `--join` and `--single-node` said. They bootstrap an
    /// empty folder; a folder with state keeps its stored configuration
    /// (`raftkv_storage::identity::start_voters`), and `core.voters` is
    /// replaced by it at start.
    pub membership: raftkv_storage::identity::MembershipFlags,
    /// Inbound client connections open at once; `None` derives the cap
    /// from the descriptor limit ([`crate::fds::conn_budget`]).
    pub max_client_connections: Option<usize>,
    /// Inbound peer connections open at once; `None` derives it too.
    pub max_peer_connections: Option<usize>,
    /// How long a new connection may take to send its preface and first
    /// frame before it is closed.
    pub preface_timeout: Duration,
    /// Where the HTTP listener (`/metrics`, `/livez`, `/readyz`) listens;
    /// `None`: no HTTP listener (`--http-listen`).
    pub http_listen: Option<SocketAddr>,
    /// The largest lag, in entries, behind the leader's commit index with
    /// which `/readyz` still answers ready (`--ready-max-lag`).
    pub ready_max_lag_entries: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    Core(#[from] raftkv_core::ConfigError),
    #[error("inconsistent peers: {0}")]
    Peers(String),
    #[error("cluster id must be 1 to 64 characters of [A-Za-z0-9._-], got {0:?}")]
    ClusterId(String),
    #[error("{0}")]
    Other(String),
}

impl ServerConfig {
    /// Checks everything a node can check alone before it touches the disk or
    /// the network.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.core.validate()?;
        if self.peers.contains_key(&self.core.id) {
            return Err(ConfigError::Peers(format!(
                "node {} lists itself as a peer",
                self.core.id
            )));
        }
        let mut addrs: Vec<&str> = self.peers.values().map(String::as_str).collect();
        addrs.push(&self.advertise);
        let total = addrs.len();
        addrs.sort_unstable();
        addrs.dedup();
        if addrs.len() != total {
            return Err(ConfigError::Peers("two nodes share an address".into()));
        }
        for id in self.client_addrs.keys() {
            if *id != self.core.id && !self.peers.contains_key(id) {
                return Err(ConfigError::Peers(format!(
                    "client address given for node {id}, which is not in --peers"
                )));
            }
        }
        for (id, addr) in &self.peers {
            if !valid_host_port(addr) {
                return Err(ConfigError::Peers(format!(
                    "node {id}: {addr:?} is not host:port"
                )));
            }
        }
        let id_ok = self.cluster_id.len() <= 64
            && !self.cluster_id.is_empty()
            && self
                .cluster_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
        if !id_ok {
            return Err(ConfigError::ClusterId(self.cluster_id.clone()));
        }
        if self.tick_interval.is_zero() || self.tick_interval > self.core.heartbeat_interval {
            return Err(ConfigError::Other(format!(
                "tick interval {:?} must be positive and at most the heartbeat interval {:?}",
                self.tick_interval, self.core.heartbeat_interval
            )));
        }
        if self.core.max_value_bytes > MAX_VALUE_BYTES_LIMIT {
            return Err(ConfigError::Other(format!(
                "--max-value-bytes {} is above the largest supported, {MAX_VALUE_BYTES_LIMIT} (16 MiB)",
                self.core.max_value_bytes
            )));
        }
        if self.core.max_key_bytes > MAX_KEY_BYTES_LIMIT {
            return Err(ConfigError::Other(format!(
                "--max-key-bytes {} is above the largest supported, {MAX_KEY_BYTES_LIMIT} (64 KiB)",
                self.core.max_key_bytes
            )));
        }
        if self.max_client_connections == Some(0) || self.max_peer_connections == Some(0) {
            return Err(ConfigError::Other(
                "connection caps must be at least 1".into(),
            ));
        }
        if self.preface_timeout.is_zero() {
            return Err(ConfigError::Other(
                "the preface time-out must be positive".into(),
            ));
        }
        if self.http_listen == Some(self.listen) {
            return Err(ConfigError::Other(format!(
                "--http-listen {} is the address of --listen; give the HTTP listener its own port",
                self.listen
            )));
        }
        if self.rate_limit_per_conn == 0 || self.peer_queue_len == 0 {
            return Err(ConfigError::Other(
                "rate limit and peer queue length must be positive".into(),
            ));
        }
        Ok(())
    }

    /// The largest gRPC request this node decodes: the largest key and
    /// value it accepts plus [`REQUEST_OVERHEAD_BYTES`], so that a value
    /// just too large is refused by the handler, with a message naming
    /// `--max-value-bytes`, and not by gRPC's default 4 MiB limit.
    pub fn max_request_bytes(&self) -> usize {
        self.core.max_value_bytes + self.core.max_key_bytes + REQUEST_OVERHEAD_BYTES
    }

    /// The address clients should use for a node, this one included.
    pub fn addr_of(&self, id: NodeId) -> Option<&str> {
        if let Some(addr) = self.client_addrs.get(&id) {
            return Some(addr);
        }
        self.peer_addr_of(id)
    }

    /// The address peers use for a node, this one included.
    pub fn peer_addr_of(&self, id: NodeId) -> Option<&str> {
        if id == self.core.id {
            Some(&self.advertise)
        } else {
            self.peers.get(&id).map(String::as_str)
        }
    }
}

fn valid_host_port(addr: &str) -> bool {
    match addr.rsplit_once(':') {
        Some((host, port)) => !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p != 0),
        None => false,
    }
}

/// Parses `--peers`: `id=host:port` items separated by commas.
pub fn parse_peers(text: &str) -> Result<BTreeMap<NodeId, String>, ConfigError> {
    let mut peers = BTreeMap::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (id, addr) = item
            .split_once('=')
            .ok_or_else(|| ConfigError::Peers(format!("{item:?} is not id=host:port")))?;
        let id: u64 = id
            .trim()
            .parse()
            .map_err(|_| ConfigError::Peers(format!("{item:?}: bad node id")))?;
        if id == 0 {
            return Err(ConfigError::Peers(format!("{item:?}: node ids start at 1")));
        }
        let addr = addr.trim().to_owned();
        if !valid_host_port(&addr) {
            return Err(ConfigError::Peers(format!(
                "{item:?}: {addr:?} is not host:port"
            )));
        }
        if peers.insert(NodeId(id), addr).is_some() {
            return Err(ConfigError::Peers(format!("node {id} is listed twice")));
        }
    }
    Ok(peers)
}

/// A valid configuration of node 1 of three, cluster `test`, for tests.
#[cfg(test)]
pub(crate) fn sample() -> ServerConfig {
    tests::config()
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn config() -> ServerConfig {
        let peers = parse_peers("2=127.0.0.1:7002, 3=127.0.0.1:7003").unwrap();
        ServerConfig {
            core: Config::new(NodeId(1), vec![NodeId(1), NodeId(2), NodeId(3)]),
            listen: "127.0.0.1:7001".parse().unwrap(),
            advertise: "127.0.0.1:7001".into(),
            peers,
            client_addrs: BTreeMap::new(),
            data_dir: "/tmp/x".into(),
            cluster_id: "test".into(),
            tick_interval: Duration::from_millis(5),
            peer_rpc_timeout: Duration::from_millis(200),
            peer_queue_len: 128,
            client_wait_timeout: Duration::from_secs(2),
            rate_limit_per_conn: 100,
            dump_level: "info".into(),
            membership: Default::default(),
            max_client_connections: None,
            max_peer_connections: None,
            preface_timeout: DEFAULT_PREFACE_TIMEOUT,
            http_listen: None,
            ready_max_lag_entries: DEFAULT_READY_MAX_LAG_ENTRIES,
        }
    }

    #[test]
    fn http_listener_needs_its_own_port() {
        let mut c = config();
        c.http_listen = Some(c.listen);
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("--http-listen"), "{e}");
        c.http_listen = Some("127.0.0.1:9001".parse().unwrap());
        c.validate().unwrap();
    }

    #[test]
    fn accepts_a_sane_config() {
        config().validate().unwrap();
    }

    #[test]
    fn rejects_bad_peer_lists() {
        assert!(parse_peers("2=127.0.0.1:7002,2=127.0.0.1:7003").is_err());
        assert!(parse_peers("0=127.0.0.1:7002").is_err());
        assert!(parse_peers("2=localhost").is_err());
        assert!(parse_peers("x=localhost:1").is_err());
        let mut c = config();
        c.peers.insert(NodeId(3), "127.0.0.1:7001".into());
        assert!(matches!(c.validate(), Err(ConfigError::Peers(_))));
    }

    #[test]
    fn rejects_lease_longer_than_election_timeout() {
        let mut c = config();
        c.core.lease_duration = c.core.election_timeout_min;
        assert!(matches!(c.validate(), Err(ConfigError::Core(_))));
    }

    #[test]
    fn a_joining_node_needs_no_voters() {
        let mut c = config();
        c.core.voters.clear();
        c.validate().unwrap();
        c.peers.clear();
        c.validate().unwrap();
    }

    #[test]
    fn rejects_zero_connection_caps_and_preface_timeout() {
        let mut c = config();
        c.max_client_connections = Some(0);
        assert!(c.validate().is_err());
        let mut c = config();
        c.max_peer_connections = Some(0);
        assert!(c.validate().is_err());
        let mut c = config();
        c.preface_timeout = Duration::ZERO;
        assert!(c.validate().is_err());
        let mut c = config();
        c.max_client_connections = Some(10);
        c.max_peer_connections = Some(4);
        c.validate().unwrap();
    }

    #[test]
    fn rejects_bad_cluster_id() {
        let mut c = config();
        c.cluster_id = "a b".into();
        assert!(matches!(c.validate(), Err(ConfigError::ClusterId(_))));
    }
}
