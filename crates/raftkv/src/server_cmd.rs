//! `raftkv server`: flags, the optional TOML config file (flags win), and
//! start-up with a clear message on bad configuration.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use raftkv_core::{check_zone, Config, NodeId, Placement};
use raftkv_server::config::{
    DEFAULT_MAX_KEY_BYTES, DEFAULT_MAX_VALUE_BYTES, DEFAULT_PREFACE_TIMEOUT,
    DEFAULT_RATE_LIMIT_PER_CONN, DEFAULT_READY_MAX_LAG_ENTRIES,
};
use raftkv_server::{parse_peers, MembershipFlags, ServerConfig};
use serde::Deserialize;

/// Every setting is optional here so that the config file can supply it;
/// the defaults are applied after merging (see `merge`).
#[derive(Args, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ServerArgs {
    /// TOML file with any of these settings (same names as the flags, e.g.
    /// `id = 1`, `peers = "2=127.0.0.1:7002,3=127.0.0.1:7003"`); flags given
    /// on the command line override it.
    #[arg(long)]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// This node's id (1, 2, ...).
    #[arg(long)]
    pub id: Option<u64>,
    /// Take the id from the host name's trailing number plus one
    /// (`raftkv-0` is node 1): for StatefulSet pods.
    #[arg(long)]
    #[serde(default)]
    pub id_from_hostname: bool,
    /// Address to listen on for peers and clients [default: 127.0.0.1:7000+ID].
    #[arg(long)]
    pub listen: Option<String>,
    /// Every other node as id=host:port, comma-separated. This node may be
    /// listed too (its address is then what others use to reach it).
    #[arg(long)]
    pub peers: Option<String>,
    /// Addresses to give clients in leader hints, id=host:port
    /// comma-separated, when clients reach nodes by other names than peers
    /// do [default: the --peers addresses].
    #[arg(long)]
    pub client_addrs: Option<String>,
    /// Data directory (must exist); this node keeps its files in
    /// DATA_DIR/logs_node_ID [default: ./raftkv-data].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Cluster name; a node ignores messages from another cluster [default: raftkv].
    #[arg(long)]
    pub cluster_id: Option<String>,
    /// Leader heartbeat interval [default: 50].
    #[arg(long)]
    pub heartbeat_ms: Option<u64>,
    /// Minimum election timeout [default: 500].
    #[arg(long)]
    pub election_timeout_min_ms: Option<u64>,
    /// Maximum election timeout [default: 1000].
    #[arg(long)]
    pub election_timeout_max_ms: Option<u64>,
    /// Leader lease duration; must be below the minimum election timeout [default: 400].
    #[arg(long)]
    pub lease_ms: Option<u64>,
    /// Bound on clock rate drift between nodes, parts per million [default: 10000 = 1%].
    #[arg(long)]
    pub drift_ppm: Option<u64>,
    /// Serve every linearizable read by a ReadIndex round instead of from
    /// memory under the lease (for comparison; leases stay protected).
    #[arg(long)]
    #[serde(default)]
    pub no_lease_reads: bool,
    /// Hold follower read leases: answer linearizable GETs here, from
    /// memory, while a follower (docs/protocol.md, rules F1–F7). Every
    /// holder makes the leader's writes wait until it has them; see
    /// `raftkv status` for the wait.
    #[arg(long)]
    #[serde(default)]
    pub read_lease: bool,
    /// Longest follower read lease this node grants when it leads (D_read)
    /// [default: 400].
    #[arg(long)]
    pub read_lease_ms: Option<u64>,
    /// Hold follower read leases when this node's `--zone` is one of these
    /// (comma-separated): one list for every node's configuration, instead
    /// of `--read-lease` on each node of those zones.
    #[arg(long, value_delimiter = ',')]
    #[serde(default)]
    pub read_lease_zones: Vec<String>,
    /// The zone (region, data centre) this node runs in: shown by `raftkv
    /// status`, told to peers (leader placement by zone), and clients given
    /// `--zone` read from a node of theirs first.
    #[arg(long)]
    pub zone: Option<String>,
    /// Voters this node hands leadership to when it leads and is not one of
    /// them, most preferred first, comma-separated ids (for example 1,4):
    /// after a failover leadership comes back. `raftkv placement` sets a
    /// placement for the whole cluster that wins over this flag.
    #[arg(long, value_delimiter = ',')]
    #[serde(default)]
    pub preferred_leaders: Vec<u64>,
    /// Zones whose voters this node hands leadership to (after
    /// `--preferred-leaders`), most preferred first, comma-separated.
    #[arg(long, value_delimiter = ',')]
    #[serde(default)]
    pub preferred_zones: Vec<String>,
    /// How often the core's timers advance [default: 5].
    #[arg(long)]
    pub tick_ms: Option<u64>,
    /// Threads of the node's async runtime (network, gRPC, the core task;
    /// storage has its own thread). 1 runs them all on one thread: fewer
    /// wake-ups and hand-offs, best when several nodes share a few cores (a
    /// local cluster; `raftkv local` passes 1). More lets lease reads and
    /// gRPC work use more cores [default: one per core].
    #[arg(long)]
    pub runtime_threads: Option<usize>,
    /// Largest key in bytes [default: 4096].
    #[arg(long)]
    pub max_key_bytes: Option<usize>,
    /// Largest value in bytes [default: 1048576].
    #[arg(long)]
    pub max_value_bytes: Option<usize>,
    /// Client requests per second allowed on one connection [default: 50000].
    #[arg(long)]
    pub rate_limit: Option<u32>,
    /// How long a client call waits for its outcome [default: 5000].
    #[arg(long)]
    pub client_timeout_ms: Option<u64>,
    /// Client connections open at once; more are closed on accept
    /// [default: derived from the file descriptor limit, see
    /// docs/operations.md].
    #[arg(long)]
    pub max_client_connections: Option<usize>,
    /// Connections from other nodes open at once (each node opens two)
    /// [default: derived from the file descriptor limit, 8 to 256].
    #[arg(long)]
    pub max_peer_connections: Option<usize>,
    /// A new connection that has not sent its whole preface (HTTP/2 preface
    /// and SETTINGS, or the peer preface and first frame) within this many
    /// milliseconds is closed [default: 5000].
    #[arg(long)]
    pub preface_timeout_ms: Option<u64>,
    /// Serve HTTP/1.1 on this address: /metrics (Prometheus), /livez,
    /// /readyz and /healthz (docs/operations.md, "Metrics and health")
    /// [default: off].
    #[arg(long)]
    pub http_listen: Option<String>,
    /// /readyz fails when this node's applied index is more than this many
    /// entries behind the leader's commit index [default: 1000].
    #[arg(long)]
    pub ready_max_lag: Option<u64>,
    /// Log filter for stderr: error, warn, info, debug, trace, or a tracing
    /// filter such as raftkv_server=debug [default: info].
    #[arg(long, value_parser = crate::parse_log_level)]
    pub log_level: Option<String>,
    /// What goes into dump.txt: off, error, info, debug [default: info].
    #[arg(long)]
    pub dump_level: Option<String>,
    /// Join a running cluster: start with no bootstrap voters and wait, as a
    /// non-member, until the leader adds this node (`raftkv member add`).
    /// --peers then only gives addresses of other nodes.
    #[arg(long)]
    #[serde(default)]
    pub join: bool,
    /// Make a one-node cluster, on purpose. A new node needs --peers,
    /// --join or this flag; a node with state in its folder takes its
    /// membership from there, whatever the flags say.
    #[arg(long)]
    #[serde(default)]
    pub single_node: bool,
    /// Take a snapshot and compact the log after this many applied entries
    /// [default: 50000].
    #[arg(long)]
    pub snapshot_threshold: Option<u64>,
    /// Log entries kept behind a snapshot, so a follower a little behind
    /// catches up from the log, not a snapshot [default: 5000].
    #[arg(long)]
    pub snapshot_keep_entries: Option<u64>,
    /// Key-value bytes per InstallSnapshot chunk [default: 1048576].
    #[arg(long)]
    pub snapshot_chunk_bytes: Option<usize>,
}

pub fn run(args: ServerArgs) -> anyhow::Result<ExitCode> {
    let args = match &args.config {
        Some(path) => merge(args.clone_flags(), read_file(path)?),
        None => args,
    };
    crate::init_tracing(args.log_level.as_deref().unwrap_or("info"))?;
    let config = build_config(&args)?;
    config.validate().context("invalid configuration")?;
    let runtime = match args.runtime_threads {
        Some(0) => anyhow::bail!("--runtime-threads must be at least 1"),
        Some(1) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?,
        Some(n) => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build()?,
        None => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?,
    };
    runtime.block_on(async {
        raftkv_server::run(config, shutdown_signal())
            .await
            .context("node stopped with an error")
    })?;
    Ok(ExitCode::SUCCESS)
}

impl ServerArgs {
    fn clone_flags(&self) -> ServerArgs {
        ServerArgs {
            config: self.config.clone(),
            id: self.id,
            id_from_hostname: self.id_from_hostname,
            client_addrs: self.client_addrs.clone(),
            listen: self.listen.clone(),
            peers: self.peers.clone(),
            data_dir: self.data_dir.clone(),
            cluster_id: self.cluster_id.clone(),
            heartbeat_ms: self.heartbeat_ms,
            election_timeout_min_ms: self.election_timeout_min_ms,
            election_timeout_max_ms: self.election_timeout_max_ms,
            lease_ms: self.lease_ms,
            drift_ppm: self.drift_ppm,
            no_lease_reads: self.no_lease_reads,
            read_lease: self.read_lease,
            read_lease_ms: self.read_lease_ms,
            read_lease_zones: self.read_lease_zones.clone(),
            zone: self.zone.clone(),
            preferred_leaders: self.preferred_leaders.clone(),
            preferred_zones: self.preferred_zones.clone(),
            tick_ms: self.tick_ms,
            runtime_threads: self.runtime_threads,
            max_key_bytes: self.max_key_bytes,
            max_value_bytes: self.max_value_bytes,
            rate_limit: self.rate_limit,
            client_timeout_ms: self.client_timeout_ms,
            max_client_connections: self.max_client_connections,
            max_peer_connections: self.max_peer_connections,
            preface_timeout_ms: self.preface_timeout_ms,
            http_listen: self.http_listen.clone(),
            ready_max_lag: self.ready_max_lag,
            log_level: self.log_level.clone(),
            dump_level: self.dump_level.clone(),
            join: self.join,
            single_node: self.single_node,
            snapshot_threshold: self.snapshot_threshold,
            snapshot_keep_entries: self.snapshot_keep_entries,
            snapshot_chunk_bytes: self.snapshot_chunk_bytes,
        }
    }
}

fn read_file(path: &PathBuf) -> anyhow::Result<ServerArgs> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("bad config file {}", path.display()))
}

/// Flags override the file, field by field.
fn merge(flags: ServerArgs, file: ServerArgs) -> ServerArgs {
    ServerArgs {
        config: flags.config,
        id: flags.id.or(file.id),
        id_from_hostname: flags.id_from_hostname || file.id_from_hostname,
        client_addrs: flags.client_addrs.or(file.client_addrs),
        listen: flags.listen.or(file.listen),
        peers: flags.peers.or(file.peers),
        data_dir: flags.data_dir.or(file.data_dir),
        cluster_id: flags.cluster_id.or(file.cluster_id),
        heartbeat_ms: flags.heartbeat_ms.or(file.heartbeat_ms),
        election_timeout_min_ms: flags
            .election_timeout_min_ms
            .or(file.election_timeout_min_ms),
        election_timeout_max_ms: flags
            .election_timeout_max_ms
            .or(file.election_timeout_max_ms),
        lease_ms: flags.lease_ms.or(file.lease_ms),
        drift_ppm: flags.drift_ppm.or(file.drift_ppm),
        no_lease_reads: flags.no_lease_reads || file.no_lease_reads,
        read_lease: flags.read_lease || file.read_lease,
        read_lease_ms: flags.read_lease_ms.or(file.read_lease_ms),
        read_lease_zones: if flags.read_lease_zones.is_empty() {
            file.read_lease_zones
        } else {
            flags.read_lease_zones
        },
        zone: flags.zone.or(file.zone),
        preferred_leaders: if flags.preferred_leaders.is_empty() {
            file.preferred_leaders
        } else {
            flags.preferred_leaders
        },
        preferred_zones: if flags.preferred_zones.is_empty() {
            file.preferred_zones
        } else {
            flags.preferred_zones
        },
        tick_ms: flags.tick_ms.or(file.tick_ms),
        runtime_threads: flags.runtime_threads.or(file.runtime_threads),
        max_key_bytes: flags.max_key_bytes.or(file.max_key_bytes),
        max_value_bytes: flags.max_value_bytes.or(file.max_value_bytes),
        rate_limit: flags.rate_limit.or(file.rate_limit),
        client_timeout_ms: flags.client_timeout_ms.or(file.client_timeout_ms),
        max_client_connections: flags.max_client_connections.or(file.max_client_connections),
        max_peer_connections: flags.max_peer_connections.or(file.max_peer_connections),
        preface_timeout_ms: flags.preface_timeout_ms.or(file.preface_timeout_ms),
        http_listen: flags.http_listen.or(file.http_listen),
        ready_max_lag: flags.ready_max_lag.or(file.ready_max_lag),
        log_level: flags.log_level.or(file.log_level),
        dump_level: flags.dump_level.or(file.dump_level),
        join: flags.join || file.join,
        single_node: flags.single_node || file.single_node,
        snapshot_threshold: flags.snapshot_threshold.or(file.snapshot_threshold),
        snapshot_keep_entries: flags.snapshot_keep_entries.or(file.snapshot_keep_entries),
        snapshot_chunk_bytes: flags.snapshot_chunk_bytes.or(file.snapshot_chunk_bytes),
    }
}

fn build_config(args: &ServerArgs) -> anyhow::Result<ServerConfig> {
    let id = match (args.id, args.id_from_hostname) {
        (Some(_), true) => bail!("give either --id or --id-from-hostname, not both"),
        (Some(id), false) => id,
        (None, true) => id_from_hostname()?,
        (None, false) => {
            bail!("--id is required (or `id` in the config file, or --id-from-hostname)")
        }
    };
    if id == 0 {
        bail!("--id must be at least 1");
    }
    let id = NodeId(id);
    let mut peers = parse_peers(args.peers.as_deref().unwrap_or(""))?;
    // The membership flags, as given: they bootstrap an empty folder only
    // (raftkv_storage::identity::start_voters decides at start).
    let membership = MembershipFlags {
        peers: args
            .peers
            .is_some()
            .then(|| peers.keys().copied().collect()),
        join: args.join,
        single_node: args.single_node,
    };
    let listen_text = args
        .listen
        .clone()
        .unwrap_or_else(|| format!("127.0.0.1:{}", 7000 + id.0));
    let listen: std::net::SocketAddr = listen_text
        .parse()
        .with_context(|| format!("--listen {listen_text:?} is not an ip:port address"))?;
    let advertise = match peers.remove(&id) {
        Some(addr) => {
            let port_matches = addr
                .rsplit_once(':')
                .and_then(|(_, p)| p.parse::<u16>().ok())
                == Some(listen.port());
            if !port_matches {
                bail!("inconsistent peers: --peers lists this node ({id}) at {addr}, but it listens on {listen}");
            }
            addr
        }
        None => listen.to_string(),
    };
    let http_listen = match &args.http_listen {
        None => None,
        Some(text) => Some(text.parse::<std::net::SocketAddr>().with_context(|| {
            format!("--http-listen {text:?} is not an ip:port address (for example 127.0.0.1:9101)")
        })?),
    };
    let client_addrs = parse_peers(args.client_addrs.as_deref().unwrap_or(""))?;
    // The voters the flags name; `raftkv_server::run` replaces them with
    // the stored configuration when the folder has one.
    let voters = if args.join {
        Vec::new()
    } else {
        peers.keys().copied().chain([id]).collect()
    };
    let mut core = Config::new(id, voters);
    if let Some(v) = args.snapshot_threshold {
        core.snapshot_threshold = v;
    }
    if let Some(v) = args.snapshot_keep_entries {
        core.snapshot_keep_entries = v;
    }
    if let Some(v) = args.snapshot_chunk_bytes {
        core.snapshot_chunk_bytes = v;
    }
    let ms = Duration::from_millis;
    if let Some(v) = args.heartbeat_ms {
        core.heartbeat_interval = ms(v);
    }
    if let Some(v) = args.election_timeout_min_ms {
        core.election_timeout_min = ms(v);
    }
    if let Some(v) = args.election_timeout_max_ms {
        core.election_timeout_max = ms(v);
    }
    if let Some(v) = args.lease_ms {
        core.lease_duration = ms(v);
    }
    if let Some(v) = args.drift_ppm {
        core.clock_drift_bound_ppm = v;
    }
    core.lease_reads = !args.no_lease_reads;
    if let Some(z) = &args.zone {
        check_zone(z).map_err(|e| anyhow::anyhow!("--zone: {e}"))?;
    }
    for z in &args.read_lease_zones {
        check_zone(z).map_err(|e| anyhow::anyhow!("--read-lease-zones: {e}"))?;
    }
    core.zone = args.zone.clone();
    core.read_lease = args.read_lease
        || args
            .zone
            .as_ref()
            .is_some_and(|z| args.read_lease_zones.contains(z));
    if !args.read_lease_zones.is_empty() && args.zone.is_none() {
        bail!(
            "--read-lease-zones {:?} is set but this node has no --zone: give it one",
            args.read_lease_zones
        );
    }
    core.placement = Placement {
        leaders: args.preferred_leaders.iter().copied().map(NodeId).collect(),
        zones: args.preferred_zones.clone(),
    };
    core.placement
        .validate()
        .map_err(|e| anyhow::anyhow!("--preferred-leaders/--preferred-zones: {e}"))?;
    if let Some(v) = args.read_lease_ms {
        core.read_lease_duration = ms(v);
    }
    core.max_key_bytes = args.max_key_bytes.unwrap_or(DEFAULT_MAX_KEY_BYTES);
    core.max_value_bytes = args.max_value_bytes.unwrap_or(DEFAULT_MAX_VALUE_BYTES);
    let tick = ms(args.tick_ms.unwrap_or(5)).min(core.heartbeat_interval);
    Ok(ServerConfig {
        peer_rpc_timeout: core.election_timeout_min / 2,
        core,
        listen,
        advertise,
        peers,
        client_addrs,
        data_dir: args
            .data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("raftkv-data")),
        cluster_id: args.cluster_id.clone().unwrap_or_else(|| "raftkv".into()),
        tick_interval: tick,
        peer_queue_len: 1024,
        client_wait_timeout: ms(args.client_timeout_ms.unwrap_or(5000)),
        rate_limit_per_conn: args.rate_limit.unwrap_or(DEFAULT_RATE_LIMIT_PER_CONN),
        dump_level: args.dump_level.clone().unwrap_or_else(|| "info".into()),
        membership,
        max_client_connections: args.max_client_connections,
        max_peer_connections: args.max_peer_connections,
        preface_timeout: args.preface_timeout_ms.map_or(DEFAULT_PREFACE_TIMEOUT, ms),
        http_listen,
        ready_max_lag_entries: args.ready_max_lag.unwrap_or(DEFAULT_READY_MAX_LAG_ENTRIES),
    })
}

/// `name-N` → N + 1 (StatefulSet ordinals start at 0, node ids at 1).
fn id_from_hostname() -> anyhow::Result<u64> {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        bail!(
            "cannot read the host name: {}",
            std::io::Error::last_os_error()
        );
    }
    let len = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let host = String::from_utf8_lossy(&buf[..len]).into_owned();
    ordinal_id(&host)
}

fn ordinal_id(host: &str) -> anyhow::Result<u64> {
    let short = host.split('.').next().unwrap_or(host);
    let ordinal = short.rsplit('-').next().and_then(|n| n.parse::<u64>().ok());
    match ordinal {
        Some(n) => Ok(n + 1),
        None => bail!("--id-from-hostname: host name {host:?} does not end in -<number>"),
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("install SIGINT handler");
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_file() {
        let file: ServerArgs =
            toml::from_str("id = 2\nlease-ms = 300\npeers = \"1=127.0.0.1:7001\"\n").unwrap();
        let flags = ServerArgs {
            lease_ms: Some(200),
            ..Default::default()
        };
        let merged = merge(flags, file);
        assert_eq!(merged.id, Some(2));
        assert_eq!(merged.lease_ms, Some(200));
        let config = build_config(&merged).unwrap();
        assert_eq!(config.core.lease_duration, Duration::from_millis(200));
        assert_eq!(config.listen.port(), 7002);
        config.validate().unwrap();
    }

    #[test]
    fn read_lease_flags_reach_the_core() {
        let file: ServerArgs = toml::from_str("id = 2\nread-lease = true\n").unwrap();
        let flags = ServerArgs {
            read_lease_ms: Some(250),
            ..Default::default()
        };
        let config = build_config(&merge(flags, file)).unwrap();
        assert!(config.core.read_lease);
        assert_eq!(config.core.read_lease_duration, Duration::from_millis(250));
        let off = build_config(&ServerArgs {
            id: Some(1),
            ..Default::default()
        })
        .unwrap();
        assert!(!off.core.read_lease);
    }

    #[test]
    fn zone_flags_reach_the_core_and_bad_ones_are_refused() {
        let file: ServerArgs = toml::from_str(
            "id = 2\nread-lease-zones = [\"eu\", \"ap\"]\npreferred-zones = [\"us\"]\n",
        )
        .unwrap();
        let flags = ServerArgs {
            zone: Some("eu".into()),
            preferred_leaders: vec![3],
            ..Default::default()
        };
        let config = build_config(&merge(flags, file)).unwrap();
        assert!(config.core.read_lease, "eu is a read-lease zone");
        assert_eq!(config.core.zone.as_deref(), Some("eu"));
        assert_eq!(config.core.placement.leaders, vec![NodeId(3)]);
        assert_eq!(config.core.placement.zones, vec!["us".to_owned()]);
        let us = ServerArgs {
            id: Some(1),
            zone: Some("us".into()),
            read_lease_zones: vec!["eu".into()],
            ..Default::default()
        };
        assert!(!build_config(&us).unwrap().core.read_lease);
        for (bad, flag) in [
            (
                ServerArgs {
                    read_lease_zones: vec!["eu".into()],
                    ..Default::default()
                },
                "--zone",
            ),
            (
                ServerArgs {
                    zone: Some("two words".into()),
                    ..Default::default()
                },
                "--zone",
            ),
            (
                ServerArgs {
                    preferred_zones: vec!["a,b".into()],
                    ..Default::default()
                },
                "--preferred-zones",
            ),
            (
                ServerArgs {
                    preferred_leaders: vec![0],
                    ..Default::default()
                },
                "--preferred-leaders",
            ),
        ] {
            let args = ServerArgs { id: Some(1), ..bad };
            let err = build_config(&args).unwrap_err().to_string();
            assert!(err.contains(flag), "{err}");
        }
    }

    #[test]
    fn ids_come_from_statefulset_host_names() {
        assert_eq!(ordinal_id("raftkv-0").unwrap(), 1);
        assert_eq!(ordinal_id("raftkv-2.raftkv-peers.default.svc").unwrap(), 3);
        assert!(ordinal_id("raftkv").is_err());
    }

    #[test]
    fn join_starts_without_voters_and_snapshot_flags_apply() {
        let args = ServerArgs {
            id: Some(4),
            join: true,
            peers: Some("1=127.0.0.1:7001".into()),
            snapshot_threshold: Some(50),
            snapshot_keep_entries: Some(0),
            ..Default::default()
        };
        let config = build_config(&args).unwrap();
        assert!(config.core.voters.is_empty());
        assert_eq!(config.core.snapshot_threshold, 50);
        assert_eq!(config.core.snapshot_keep_entries, 0);
        config.validate().unwrap();
    }

    #[test]
    fn connection_flags_reach_the_config() {
        let file: ServerArgs =
            toml::from_str("id = 1\nmax-client-connections = 100\npreface-timeout-ms = 800\n")
                .unwrap();
        let flags = ServerArgs {
            max_peer_connections: Some(12),
            ..Default::default()
        };
        let config = build_config(&merge(flags, file)).unwrap();
        assert_eq!(config.max_client_connections, Some(100));
        assert_eq!(config.max_peer_connections, Some(12));
        assert_eq!(config.preface_timeout, Duration::from_millis(800));
        let defaults = build_config(&ServerArgs {
            id: Some(1),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(defaults.max_client_connections, None);
        assert_eq!(defaults.preface_timeout, DEFAULT_PREFACE_TIMEOUT);
    }

    #[test]
    fn http_flags_reach_the_config() {
        let file: ServerArgs =
            toml::from_str("id = 1\nhttp-listen = \"127.0.0.1:9101\"\nready-max-lag = 50\n")
                .unwrap();
        let config = build_config(&merge(ServerArgs::default(), file)).unwrap();
        assert_eq!(config.http_listen, Some("127.0.0.1:9101".parse().unwrap()));
        assert_eq!(config.ready_max_lag_entries, 50);
        let flags = ServerArgs {
            http_listen: Some("127.0.0.1:9202".into()),
            ..Default::default()
        };
        let file: ServerArgs =
            toml::from_str("id = 1\nhttp-listen = \"127.0.0.1:9101\"\n").unwrap();
        let config = build_config(&merge(flags, file)).unwrap();
        assert_eq!(config.http_listen, Some("127.0.0.1:9202".parse().unwrap()));
        let defaults = build_config(&ServerArgs {
            id: Some(1),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(defaults.http_listen, None);
        assert_eq!(
            defaults.ready_max_lag_entries,
            DEFAULT_READY_MAX_LAG_ENTRIES
        );
        let bad = build_config(&ServerArgs {
            id: Some(1),
            http_listen: Some("localhost".into()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(
            format!("{bad:#}").contains("--http-listen \"localhost\""),
            "{bad:#}"
        );
    }

    #[test]
    fn unknown_file_keys_are_errors() {
        assert!(toml::from_str::<ServerArgs>("lease = 3").is_err());
    }

    #[test]
    fn self_in_peers_must_match_listen() {
        let args = ServerArgs {
            id: Some(1),
            listen: Some("127.0.0.1:7001".into()),
            peers: Some("1=127.0.0.1:9999,2=127.0.0.1:7002".into()),
            ..Default::default()
        };
        assert!(build_config(&args).is_err());
    }
}
