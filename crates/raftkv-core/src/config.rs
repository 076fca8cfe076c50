//! Configuration of one node's core, with validation.

use std::time::Duration;

use thiserror::Error;

use crate::types::{check_zone, NodeId, Placement};

/// Drift bound in parts per million (10_000 = 1 %).
pub type Ppm = u64;

#[derive(Clone, Debug)]
pub struct Config {
    pub id: NodeId,
    /// The voters the cluster starts with (bootstrap), this node included.
    /// Used only while neither the log nor a snapshot holds a configuration;
    /// after that the log rules. Empty for a node that joins a running
    /// cluster: it waits, as a non-member, for the leader to reach it.
    pub voters: Vec<NodeId>,
    pub heartbeat_interval: Duration,
    pub election_timeout_min: Duration,
    pub election_timeout_max: Duration,
    /// `D` of the lease rules (docs/protocol.md).
    pub lease_duration: Duration,
    /// `ρ` of the lease rules (docs/protocol.md), in parts per million.
    pub clock_drift_bound_ppm: Ppm,
    /// Serve linearizable reads from memory under the lease. When false,
    /// every read takes a ReadIndex round (for comparison, or for clocks
    /// that cannot be trusted even for rate). Followers still protect leases
    /// and new leaders still wait, so nodes may differ in this setting.
    pub lease_reads: bool,
    /// Ask the leader for follower read leases (rules F1–F7 of
    /// docs/protocol.md): answer linearizable reads from this node's own
    /// state, with no message, while one holds. Every holder makes the
    /// leader's writes wait until it has them, so this is off by default.
    pub read_lease: bool,
    /// `D_read`: the longest read lease a leader grants (F2). Used by the
    /// leader; a follower takes what it is granted.
    pub read_lease_duration: Duration,
    /// Voters (by id, then by zone) this node hands leadership to when it
    /// leads and is not one of them, first caught-up one first
    /// (`node/placement.rs`; `--preferred-leaders`, `--preferred-zones`).
    /// Empty: none. A placement set in the log (`ConfChange::Place`) wins.
    pub placement: Placement,
    /// The zone this node runs in (`--zone`); peers' zones are learned at
    /// run time (`RaftNode::learn_zone`).
    pub zone: Option<String>,
    pub max_entries_per_append: usize,
    pub max_bytes_per_append: usize,
    /// AppendEntries messages in flight to one peer, and their bytes.
    pub max_inflight_appends: usize,
    pub max_inflight_bytes: usize,
    /// Entries appended by the leader but not yet applied.
    pub max_pending_proposals: usize,
    /// Linearizable reads waiting for ReadIndex confirmation.
    pub max_pending_reads: usize,
    /// Client sessions remembered for exactly-once; the least recently used
    /// is forgotten past this.
    pub max_sessions: usize,
    pub max_key_bytes: usize,
    pub max_value_bytes: usize,
    /// Take a durable snapshot (and cut the log file) once this many entries
    /// have applied since the last one, and at least a quarter as many as
    /// there are keys (so a large state is not rewritten too often; a
    /// restart then replays at most that many entries).
    pub snapshot_threshold: u64,
    /// Applied entries kept in memory, so that a follower a little behind
    /// catches up from the log rather than a snapshot. Older ones are
    /// dropped from memory at once (they stay in the log file until the next
    /// snapshot): the in-memory log never grows with the history.
    pub snapshot_keep_entries: u64,
    /// Bytes of key-value data per `InstallSnapshot` chunk, and chunks in
    /// flight to one follower (flow control: heartbeats and lease renewal go
    /// on between chunks).
    pub snapshot_chunk_bytes: usize,
    pub max_inflight_snapshot_chunks: usize,
    /// Test-only switches that break the lease rules on purpose, so the
    /// simulator can show its checker finds the resulting stale reads. Never
    /// exposed by the server.
    pub unsafe_test_knobs: UnsafeTestKnobs,
}

/// See [`Config::unsafe_test_knobs`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UnsafeTestKnobs {
    /// Disable lease rule 3 (a restarted node assumes the worst lease).
    pub disable_restart_lease: bool,
    /// Disable lease rule 5 (a new leader waits out the old lease).
    pub disable_new_leader_wait: bool,
    /// A node repairing a damaged log votes as if its log were whole
    /// (ignores the vote floor of `node/repair.rs`).
    pub ignore_vote_floor: bool,
    /// F3 off: the leader commits without waiting for read lease holders.
    pub ignore_read_lease_guards: bool,
    /// F4 off: a holder answers a key that has a write of unknown fate in
    /// its log.
    pub serve_pending_keys: bool,
    /// F5 off: a holder keeps its read lease when it sees a higher term.
    pub keep_read_lease_across_terms: bool,
    /// F2 off: the leader grants `D_read` whatever remains of its own lease,
    /// and whether it holds one or not.
    pub grant_beyond_leader_lease: bool,
}

impl Config {
    /// Defaults that suit a LAN or loopback cluster.
    pub fn new(id: NodeId, voters: Vec<NodeId>) -> Config {
        Config {
            id,
            voters,
            heartbeat_interval: Duration::from_millis(50),
            election_timeout_min: Duration::from_millis(500),
            election_timeout_max: Duration::from_millis(1000),
            lease_duration: Duration::from_millis(400),
            clock_drift_bound_ppm: 10_000,
            lease_reads: true,
            read_lease: false,
            read_lease_duration: Duration::from_millis(400),
            placement: Placement::default(),
            zone: None,
            max_entries_per_append: 512,
            max_bytes_per_append: 1 << 20,
            max_inflight_appends: 64,
            max_inflight_bytes: 16 << 20,
            max_pending_proposals: 20_000,
            max_pending_reads: 20_000,
            max_sessions: 100_000,
            max_key_bytes: 4 << 10,
            max_value_bytes: 1 << 20,
            snapshot_threshold: 50_000,
            snapshot_keep_entries: 5_000,
            snapshot_chunk_bytes: 1 << 20,
            max_inflight_snapshot_chunks: 4,
            unsafe_test_knobs: UnsafeTestKnobs::default(),
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        use ConfigError::*;
        if self.id == NodeId(0) {
            return Err(ZeroId);
        }
        if !self.voters.is_empty() && !self.voters.contains(&self.id) {
            return Err(NotAVoter(self.id));
        }
        let mut sorted = self.voters.clone();
        sorted.sort();
        sorted.dedup();
        if sorted.len() != self.voters.len() || sorted.contains(&NodeId(0)) {
            return Err(BadVoters);
        }
        self.placement.validate().map_err(BadPlacement)?;
        if let Some(z) = &self.zone {
            check_zone(z).map_err(BadPlacement)?;
        }
        if self.heartbeat_interval.is_zero() {
            return Err(Timing("heartbeat interval must be positive".into()));
        }
        if self.election_timeout_min > self.election_timeout_max {
            return Err(Timing(format!(
                "election timeout min {:?} exceeds max {:?}",
                self.election_timeout_min, self.election_timeout_max
            )));
        }
        if self.heartbeat_interval * 2 > self.lease_duration {
            return Err(Timing(format!(
                "heartbeat interval {:?} must be at most half the lease duration {:?}",
                self.heartbeat_interval, self.lease_duration
            )));
        }
        if self.lease_duration >= self.election_timeout_min {
            return Err(Timing(format!(
                "lease duration {:?} must be shorter than the minimum election timeout {:?}",
                self.lease_duration, self.election_timeout_min
            )));
        }
        if self.read_lease_duration.is_zero() {
            return Err(Timing("read lease duration must be positive".into()));
        }
        if self.clock_drift_bound_ppm >= 500_000 {
            return Err(Timing(format!(
                "clock drift bound {} ppm is absurd (must be below 500000)",
                self.clock_drift_bound_ppm
            )));
        }
        for (name, v) in [
            ("max_entries_per_append", self.max_entries_per_append),
            ("max_bytes_per_append", self.max_bytes_per_append),
            ("max_inflight_appends", self.max_inflight_appends),
            ("max_inflight_bytes", self.max_inflight_bytes),
            ("max_pending_proposals", self.max_pending_proposals),
            ("max_pending_reads", self.max_pending_reads),
            ("max_sessions", self.max_sessions),
            ("max_key_bytes", self.max_key_bytes),
            ("max_value_bytes", self.max_value_bytes),
            ("snapshot_chunk_bytes", self.snapshot_chunk_bytes),
            (
                "max_inflight_snapshot_chunks",
                self.max_inflight_snapshot_chunks,
            ),
            ("snapshot_threshold", self.snapshot_threshold as usize),
        ] {
            if v == 0 {
                return Err(ZeroLimit(name));
            }
        }
        Ok(())
    }

    /// The leader's usable lease after the drift shrink of lease rule 4:
    /// `D·(1-ρ)/(1+ρ)`.
    pub fn leader_lease(&self) -> Duration {
        self.drift_shrunk(self.lease_duration)
    }

    /// `d·(1-ρ)/(1+ρ)`: a duration on another node's clock that surely
    /// ends, on this node's clock, no later than `d` (rounded down).
    pub fn drift_shrunk(&self, d: Duration) -> Duration {
        let rho = u128::from(self.clock_drift_bound_ppm);
        let shrunk = d.as_nanos() * (1_000_000 - rho) / (1_000_000 + rho);
        Duration::from_nanos(u64::try_from(shrunk).unwrap_or(u64::MAX))
    }

    /// `d·(1+ρ)/(1-ρ)`: the most another node's clock (or real time) can
    /// advance while this node's advances by `d` (rounded up).
    pub fn drift_stretched(&self, d: Duration) -> Duration {
        let rho = u128::from(self.clock_drift_bound_ppm);
        let den = 1_000_000 - rho;
        let stretched = (d.as_nanos() * (1_000_000 + rho)).div_ceil(den);
        Duration::from_nanos(u64::try_from(stretched).unwrap_or(u64::MAX))
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("node id 0 is reserved; ids start at 1")]
    ZeroId,
    #[error(
        "node {0} is not among the bootstrap voters (leave them empty to join a running cluster)"
    )]
    NotAVoter(NodeId),
    #[error("the voter list has duplicates or a zero id")]
    BadVoters,
    #[error("timing: {0}")]
    Timing(String),
    #[error("placement: {0}")]
    BadPlacement(String),
    #[error("limit {0} must be positive")]
    ZeroLimit(&'static str),
}
