//! One seeded run: a random cluster, a safety phase with random faults and a
//! client workload, then a liveness phase with every fault healed, then the
//! linearizability check of the whole history.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use std::collections::BTreeSet;

use raftkv_checker::{Input, Verdict};
use raftkv_core::{ConfChange, NodeId, Placement, UnsafeTestKnobs};

use crate::client::{ClientHandle, Workload};
use crate::clock::{Clock, RATE_EXACT_PPM};
use crate::cluster::{zone_of, Cluster, ClusterConfig, MixCounts, NetConfig};
use crate::rng::{Fnv64, SimRng};
use raftkv_storage::identity::MembershipFlags;
use raftkv_storage::DiskFault;

/// What to run for one seed.
#[derive(Clone, Debug)]
pub struct RunOptions {
    pub seed: u64,
    /// Cluster size; `None` lets the seed choose among 3, 5 and 7.
    pub nodes: Option<usize>,
    /// Negative control: clock rates far outside `±ρ`.
    pub clock_drift_beyond_bound: bool,
    /// Negative control: switch off lease rule 3 or 5 in every node.
    pub disable_rule: Option<u8>,
    /// Negative control: the published lease-read view is never withdrawn
    /// nor checked against its end.
    pub stale_view: bool,
    /// Negative control: a lease read the core answers mid-turn goes out
    /// before the view is republished (driver turns are then held in every
    /// run, not only in half).
    pub late_publish: bool,
    /// Spare nodes, membership changes (add learner, promote, remove, wipe
    /// and re-add) and leadership transfers in the fault mix.
    pub membership_mix: bool,
    /// After the liveness phase, every member (voter or learner) must catch
    /// up with the leader's commit index within the liveness bound.
    pub check_catch_up: bool,
    /// The live lease invariants (lease protection, live lease exclusion;
    /// see `invariants`). Off, a lease violation runs on until the
    /// linearizability checker (or the end-of-run lease oracle) sees it.
    pub lease_invariants: bool,
    /// Faults of the disk on synced data (a flipped byte in one of the last
    /// entries, a lost `logs.txt`, a log shortened below the saved commit
    /// index) and restarts with wrong or missing membership flags, in the
    /// fault mix.
    pub storage_faults: bool,
    /// Negative control: recovery cuts damaged, maybe-synced lines as if
    /// they were a torn tail.
    pub cut_damaged_tail: bool,
    /// Negative control: a restarted node takes its membership from its
    /// flags, not from its stored configuration.
    pub config_from_flags: bool,
    /// Negative control: a node repairing a damaged log votes as if it
    /// were whole (no vote floor).
    pub ignore_vote_floor: bool,
    /// Negative control: the driver sends append acknowledgements before
    /// the fsync that covers them.
    pub ack_before_sync: bool,
    /// Negative control: the driver sends granted votes before the term
    /// and vote they depend on are saved.
    pub vote_before_save: bool,
    /// The live durability checks (persist before send, commit counting).
    /// Off, a broken promise is left to show as a lost write or two leaders.
    pub durability_checks: bool,
    /// Follower read leases (F1–F7) and bounded-staleness reads in the mix:
    /// three runs in four name some nodes read lease holders, and clients
    /// read from their home node.
    pub read_leases: bool,
    /// Negative controls of the follower read lease rules: the leader
    /// grants `D_read` beyond its own lease (F2), commits ignoring guards
    /// (F3); a holder serves keys with writes of unknown fate (F4), keeps
    /// its lease across a higher term (F5).
    pub grant_beyond_leader_lease: bool,
    pub ignore_read_lease_guards: bool,
    pub serve_pending_keys: bool,
    pub keep_read_lease_across_terms: bool,
    pub trace: bool,
    /// Simulated time with faults and workload.
    pub safety_duration: Duration,
    /// After healing, a leader and an answer for every client within this.
    pub liveness_bound: Duration,
}

impl RunOptions {
    pub fn new(seed: u64) -> RunOptions {
        RunOptions {
            seed,
            nodes: None,
            clock_drift_beyond_bound: false,
            disable_rule: None,
            stale_view: false,
            late_publish: false,
            membership_mix: true,
            check_catch_up: true,
            lease_invariants: true,
            storage_faults: true,
            cut_damaged_tail: false,
            config_from_flags: false,
            ignore_vote_floor: false,
            ack_before_sync: false,
            vote_before_save: false,
            durability_checks: true,
            read_leases: true,
            grant_beyond_leader_lease: false,
            ignore_read_lease_guards: false,
            serve_pending_keys: false,
            keep_read_lease_across_terms: false,
            trace: false,
            safety_duration: Duration::from_secs(20),
            liveness_bound: Duration::from_secs(10),
        }
    }
}

/// The outcome of one seed.
#[derive(Clone, Debug)]
pub struct RunReport {
    pub seed: u64,
    pub nodes: usize,
    /// The property violated, if any (one line).
    pub failure: Option<String>,
    /// The checker ran out of budget on some key (not a failure).
    pub checker_unknown: bool,
    pub operations: usize,
    /// Time from healing to every client answered (liveness phase).
    pub recovery_ns: Option<u64>,
    /// What the membership and snapshot mix made happen.
    pub counts: MixCounts,
    pub trace: Vec<String>,
    /// FNV-1a of the trace lines.
    pub digest: u64,
}

/// Run one seed. Never panics: a panic inside the core (or the simulator)
/// is reported as the seed's failure.
pub fn run_seed(opts: &RunOptions) -> RunReport {
    let mut rng = SimRng::new(opts.seed);
    let cfg = cluster_config(opts, &mut rng);
    let nodes = cfg.nodes;
    let mut cluster = Cluster::new(cfg);
    let outcome = catch_unwind(AssertUnwindSafe(|| drive(&mut cluster, opts, &mut rng)));
    let (mut failure, checker_unknown) = match outcome {
        Ok(r) => r,
        Err(payload) => (Some(format!("panic: {}", panic_message(&payload))), false),
    };
    if failure.is_none() {
        failure = cluster.violation().map(str::to_string);
    }
    if let Some(f) = &failure {
        cluster.note(&format!("FAILED: {f}"));
    }
    let trace = cluster.trace().to_vec();
    let mut h = Fnv64::default();
    for line in &trace {
        h.write(line.as_bytes());
        h.write(b"\n");
    }
    RunReport {
        seed: opts.seed,
        nodes,
        failure,
        checker_unknown,
        operations: cluster.history().len(),
        recovery_ns: cluster.recovery_ns(),
        counts: cluster.counts(),
        trace,
        digest: h.finish(),
    }
}

fn panic_message(payload: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(non-string panic)".to_string()
    }
}

fn cluster_config(opts: &RunOptions, rng: &mut SimRng) -> ClusterConfig {
    let nodes = opts.nodes.unwrap_or_else(|| *rng.pick(&[3, 5, 7]));
    let mut cfg = ClusterConfig::new(nodes, rng.next_u64());
    cfg.trace = opts.trace;
    cfg.check_lease_protection = opts.lease_invariants;
    cfg.unsafe_stale_view = opts.stale_view;
    cfg.unsafe_late_publish = opts.late_publish;
    randomize_timing(&mut cfg, rng);
    // Half the runs hold driver turns open for up to a few milliseconds, as
    // the server's core task takes several inputs before its Readies.
    if rng.below(2) == 0 || opts.late_publish {
        cfg.turn_hold_max = Duration::from_micros(rng.range(200, 5_000));
    }
    if opts.membership_mix {
        cfg.spares = 2;
    }
    // Small snapshots: compaction and InstallSnapshot (in several chunks:
    // the workload's few keys take ~30 bytes each) in most runs.
    cfg.snapshot_threshold = rng.range(20, 100);
    cfg.snapshot_keep_entries = rng.range(0, 10);
    cfg.snapshot_chunk_bytes = rng.range(20, 80) as usize;
    cfg.max_inflight_snapshot_chunks = rng.range(1, 4) as usize;
    let rho = cfg.clock_drift_bound_ppm;
    cfg.clocks = (0..cfg.pool())
        .map(|_| {
            let offset_ns = rng.range(0, 1_000) * 1_000_000_000 + rng.below(1_000_000_000);
            let rate_ppm = if opts.clock_drift_beyond_bound {
                beyond_bound_rate(rng)
            } else {
                rng.range(RATE_EXACT_PPM - rho, RATE_EXACT_PPM + rho)
            };
            Clock::new(offset_ns, rate_ppm)
        })
        .collect();
    cfg.unsafe_test_knobs = UnsafeTestKnobs {
        disable_restart_lease: opts.disable_rule == Some(3),
        disable_new_leader_wait: opts.disable_rule == Some(5),
        ignore_vote_floor: opts.ignore_vote_floor,
        ignore_read_lease_guards: opts.ignore_read_lease_guards,
        serve_pending_keys: opts.serve_pending_keys,
        keep_read_lease_across_terms: opts.keep_read_lease_across_terms,
        grant_beyond_leader_lease: opts.grant_beyond_leader_lease,
    };
    cfg.unsafe_cut_damaged_tail = opts.cut_damaged_tail;
    cfg.unsafe_config_from_flags = opts.config_from_flags;
    cfg.net = random_net(rng);
    cfg.client.attempt_timeout = Duration::from_millis(rng.range(200, 1_500));
    cfg.client.wander_ppm = rng.range(0, 400_000) as u32;
    cfg.fsync_latency_min = Duration::from_micros(rng.range(50, 500));
    cfg.fsync_latency_max = cfg.fsync_latency_min + Duration::from_micros(rng.range(0, 5_000));
    // Half the runs persist followers in line, as the server does on a
    // one-thread runtime.
    cfg.inline_follower_persist = rng.below(2) == 0;
    // A quarter of the runs crash a node right after some of its votes.
    if rng.below(4) == 0 {
        cfg.crash_after_vote_ppm = rng.range(20_000, 200_000) as u32;
    }
    cfg.unsafe_ack_before_sync = opts.ack_before_sync;
    cfg.unsafe_vote_before_save = opts.vote_before_save;
    cfg.check_durable_promises = opts.durability_checks;
    if opts.read_leases {
        read_lease_mix(&mut cfg, rng);
    }
    // Half the runs put nodes in zones. A third of the runs prefer one or
    // two of the bootstrap voters (or a zone) as leader by flags; in runs
    // with membership changes, placements set through the log join the mix
    // (`ConfChange::Place`): placement transfers join the fault mix.
    cfg.zones = rng.below(2) == 0;
    if rng.below(3) == 0 {
        cfg.placement = random_placement(rng, cfg.nodes as u64, cfg.zones);
    }
    cfg
}

/// One or two voters, or (in runs with zones) a zone, sometimes both.
fn random_placement(rng: &mut SimRng, nodes: u64, zones: bool) -> Placement {
    let mut p = Placement::default();
    if !zones || rng.below(2) == 0 {
        p.leaders.push(NodeId(rng.range(1, nodes + 1)));
        let second = NodeId(rng.range(1, nodes + 1));
        if rng.below(2) == 0 && !p.leaders.contains(&second) {
            p.leaders.push(second);
        }
    }
    if zones && (p.leaders.is_empty() || rng.below(3) == 0) {
        p.zones.push(zone_of(NodeId(rng.range(1, nodes + 1))));
    }
    p
}

/// Three runs in four: each node of the pool holds read leases with even
/// odds, `D_read` between a quarter of the lease and all of it, and most
/// GETs go first to the client's home node (a holder). Some GETs are
/// bounded-staleness reads, in every run.
fn read_lease_mix(cfg: &mut ClusterConfig, rng: &mut SimRng) {
    cfg.client.bounded_read_ppm = rng.range(0, 300_000) as u32;
    cfg.client.max_staleness_max = Duration::from_millis(rng.range(1, 500));
    if rng.below(4) == 0 {
        return;
    }
    cfg.read_lease_nodes = (1..=cfg.pool() as u64)
        .map(NodeId)
        .filter(|_| rng.below(2) == 0)
        .collect();
    let d = cfg.lease_duration.as_nanos() as u64;
    cfg.read_lease_duration = Duration::from_nanos(rng.range(d / 4, d + 1));
    cfg.client.home_read_ppm = rng.range(300_000, 900_000) as u32;
}

/// Timing varies by seed within what `Config::validate` accepts (H ≤ D/2,
/// D < E_min), half the time at the core's defaults.
fn randomize_timing(cfg: &mut ClusterConfig, rng: &mut SimRng) {
    cfg.tick_interval = Duration::from_millis(rng.range(1, 10));
    if rng.below(3) == 0 {
        // Tight flow control: back-pressure paths and many small appends.
        cfg.max_entries_per_append = rng.range(1, 4) as usize;
        cfg.max_inflight_appends = rng.range(1, 3) as usize;
        cfg.max_pending_proposals = rng.range(1, 8) as usize;
        cfg.max_pending_reads = rng.range(1, 4) as usize;
    }
    if rng.below(2) == 0 {
        return;
    }
    let e_min = rng.range(150, 800);
    cfg.election_timeout_min = Duration::from_millis(e_min);
    cfg.election_timeout_max = Duration::from_millis(e_min + rng.range(0, e_min));
    let lease_ms = rng.range(e_min / 3, e_min - 1);
    cfg.lease_duration = Duration::from_millis(lease_ms);
    cfg.heartbeat_interval = Duration::from_millis(rng.range(lease_ms / 8, lease_ms / 2).max(1));
}

/// Far outside any sane `ρ`: half the clocks crawl (0.4×–0.7×), half race
/// (1.6×–2.5×). A slow leader with fast followers is the dangerous mix: the
/// leader believes in its lease long after the followers stopped protecting
/// it.
fn beyond_bound_rate(rng: &mut SimRng) -> u64 {
    if rng.below(2) == 0 {
        slow_rate(rng)
    } else {
        fast_rate(rng)
    }
}

fn slow_rate(rng: &mut SimRng) -> u64 {
    rng.range(400_000, 700_000)
}

fn fast_rate(rng: &mut SimRng) -> u64 {
    rng.range(1_600_000, 2_500_000)
}

fn random_net(rng: &mut SimRng) -> NetConfig {
    match rng.below(4) {
        0 => NetConfig::reliable(),
        1 => NetConfig::unreliable(),
        2 => NetConfig {
            loss_ppm: rng.range(0, 50_000) as u32,
            dup_ppm: rng.range(0, 50_000) as u32,
            delay_min: Duration::from_micros(100),
            delay_max: Duration::from_millis(rng.range(1, 60)),
        },
        _ => NetConfig {
            loss_ppm: rng.range(100_000, 300_000) as u32,
            dup_ppm: rng.range(0, 100_000) as u32,
            delay_min: Duration::from_millis(1),
            delay_max: Duration::from_millis(rng.range(5, 100)),
        },
    }
}

/// The two phases and the final check. Returns (failure, checker unknown).
fn drive(c: &mut Cluster, opts: &RunOptions, rng: &mut SimRng) -> (Option<String>, bool) {
    let clients: Vec<ClientHandle> = (0..rng.range(3, 8)).map(|_| c.add_client(None)).collect();
    let mut workload = Workload::small(rng.range(2, 6) as usize);
    workload.think_max = Duration::from_millis(rng.range(5, 100));
    c.start_workload(workload);
    let end_ns = opts.safety_duration.as_nanos() as u64;
    let mut trap = None;
    let mut storage_trap = None;
    let mut mix = MembershipMix::new(c);
    while c.now_ns() < end_ns && c.violation().is_none() {
        let gap = Duration::from_millis(rng.range(100, 1_500));
        c.run_for(gap.min(Duration::from_nanos(end_ns - c.now_ns())));
        if c.now_ns() >= end_ns {
            break;
        }
        if let Some(t) = trap.take() {
            trap = advance_lease_trap(c, t, rng);
        } else if let Some(t) = storage_trap.take() {
            storage_trap = advance_storage_trap(c, t, rng);
        } else if rng.below(100) < 6 {
            trap = start_lease_trap(c);
        } else if opts.storage_faults && rng.below(100) < 5 {
            storage_trap = start_storage_trap(c, rng);
        } else if opts.membership_mix && rng.below(100) < 30 {
            mix.step(c, rng);
        } else {
            inject_fault(c, opts, rng);
        }
    }
    if let Some(v) = c.violation() {
        return (Some(v.to_string()), false);
    }
    match liveness_phase(c, opts, &clients) {
        Ok(took_ns) => c.set_recovery_ns(took_ns),
        Err(f) => return (Some(f), false),
    }
    if opts.check_catch_up {
        if let Err(f) = catch_up_phase(c, opts) {
            return (Some(f), false);
        }
    }
    c.run_for(Duration::from_millis(300));
    c.note_placement_outcome();
    c.check_log_matching_now();
    c.check_state_machines();
    if let Some(v) = c.violation() {
        return (Some(v.to_string()), false);
    }
    let ops = c.finish_history().len();
    c.note(&format!("history: {ops} operations"));
    // The checker first: a stale read it can show beats the lease oracle.
    let (lease, unknown) = match c.check_history() {
        Verdict::Linearizable => (c.lease_overlap(), false),
        Verdict::Unknown { key } => {
            c.note(&format!("checker: search budget exhausted on key {key:?}"));
            (c.lease_overlap(), true)
        }
        Verdict::NotLinearizable(v) => {
            for line in v.explanation.lines() {
                c.note(&format!("checker: {line}"));
            }
            let ops: Vec<String> = v
                .operations
                .iter()
                .map(|o| format!("[client {} {} -> {}]", o.client, o.input, o.output))
                .collect();
            return (
                Some(format!(
                    "linearizability (stale read?) on key {:?}: {}",
                    v.key,
                    ops.join(" ")
                )),
                false,
            );
        }
    };
    if let Some(overlap) = &lease {
        c.note(overlap);
    }
    (lease, unknown)
}

/// Heal everything; a leader must appear and every client must finish its
/// pending operation plus one more write within the bound.
/// Returns how long recovery took, or the liveness failure.
fn liveness_phase(
    c: &mut Cluster,
    opts: &RunOptions,
    clients: &[ClientHandle],
) -> Result<u64, String> {
    c.note("phase: liveness (all faults healed)");
    c.stop_workload();
    c.client_config_mut().give_up_after = None;
    c.heal();
    c.set_net(NetConfig::reliable());
    for id in c.node_ids() {
        c.restart(id);
        c.resume(id);
    }
    let start = c.now_ns();
    let mut final_issued = vec![false; clients.len()];
    let deadline = start + opts.liveness_bound.as_nanos() as u64;
    let mut done = false;
    while c.now_ns() < deadline && c.violation().is_none() {
        issue_finals(c, clients, &mut final_issued);
        if c.leader().is_some() && c.clients_idle() && final_issued.iter().all(|&f| f) {
            done = true;
            break;
        }
        c.run_for(Duration::from_millis(5));
    }
    if let Some(v) = c.violation() {
        return Err(v.to_string());
    }
    if done {
        let took_ns = c.now_ns() - start;
        c.note(&format!(
            "liveness: all clients answered {:.3}s after healing",
            took_ns as f64 / 1e9
        ));
        return Ok(took_ns);
    }
    let pending: Vec<String> = clients
        .iter()
        .zip(&final_issued)
        .filter(|(h, f)| !c.client_idle(**h) || !**f)
        .map(|(h, _)| format!("client {}", h.0 + 1))
        .collect();
    Err(format!(
        "liveness: {:?} after healing: leader {:?}, still waiting: {}",
        opts.liveness_bound,
        c.leader(),
        pending.join(", ")
    ))
}

/// With every fault healed, every member of the leader's configuration
/// catches up (by log or snapshot) with the leader's commit index.
fn catch_up_phase(c: &mut Cluster, opts: &RunOptions) -> Result<(), String> {
    let deadline = c.now_ns() + opts.liveness_bound.as_nanos() as u64;
    let behind = |c: &Cluster| -> Option<Vec<NodeId>> {
        let l = c.leader()?;
        let r = c.raft(l)?;
        let want = r.commit_index();
        Some(
            r.membership()
                .members()
                .filter(|&m| c.raft(m).is_none_or(|x| x.applied_index() < want))
                .collect(),
        )
    };
    while c.now_ns() < deadline && c.violation().is_none() {
        if behind(c).is_some_and(|b| b.is_empty()) {
            c.note("liveness: every member caught up");
            return Ok(());
        }
        c.run_for(Duration::from_millis(20));
    }
    if let Some(v) = c.violation() {
        return Err(v.to_string());
    }
    Err(format!(
        "liveness: members {:?} did not catch up with leader {:?} within {:?} of healing",
        behind(c),
        c.leader(),
        opts.liveness_bound
    ))
}

/// Give every idle client its one final write.
fn issue_finals(c: &mut Cluster, clients: &[ClientHandle], issued: &mut [bool]) {
    for (k, &h) in clients.iter().enumerate() {
        if !issued[k] && c.client_idle(h) {
            issued[k] = true;
            let value = c.unique_value(h);
            c.client_call(
                h,
                Input::Set {
                    key: "final".into(),
                    value,
                },
            );
        }
    }
}

/// The fault sequence that rules 3 and 5 exist for (see
/// `tests/lease.rs::restart_scenario`), in three steps a fault gap apart.
enum LeaseTrap {
    /// Step 1 done: clients only read, so logs stop growing.
    Quiet { mix: (u32, u32) },
    /// Step 2 done: the leader is cut from a minority, whose election timers
    /// now cycle (their pre-votes fail: the rest still hear the leader).
    Set {
        leader: NodeId,
        rest: Vec<NodeId>,
        mix: (u32, u32),
    },
}

fn start_lease_trap(c: &mut Cluster) -> Option<LeaseTrap> {
    c.leader()?;
    let w = c.workload_mut()?;
    let mix = (w.get_ppm, w.delete_ppm);
    w.get_ppm = 1_000_000;
    w.delete_ppm = 0;
    c.note("fault: lease trap: clients only read");
    Some(LeaseTrap::Quiet { mix })
}

fn advance_lease_trap(c: &mut Cluster, t: LeaseTrap, rng: &mut SimRng) -> Option<LeaseTrap> {
    match t {
        LeaseTrap::Quiet { mix } => {
            let Some(leader) = c.leader() else {
                restore_mix(c, mix);
                return None;
            };
            // The voters of its configuration (spares and learners do not
            // hold its lease).
            let voters = c.membership(leader).map(|m| m.voters).unwrap_or_default();
            let mut followers: Vec<NodeId> = voters.into_iter().filter(|&i| i != leader).collect();
            shuffle(&mut followers, rng);
            let k = rng.range(1, (followers.len() as u64 / 2).max(1)) as usize;
            let (cut, rest) = followers.split_at(k);
            c.heal();
            for &f in cut {
                c.cut_link(leader, f);
                c.cut_link(f, leader);
            }
            c.note(&format!("fault: lease trap set around leader n{leader}"));
            Some(LeaseTrap::Set {
                leader,
                rest: rest.to_vec(),
                mix,
            })
        }
        LeaseTrap::Set { leader, rest, mix } => {
            // The leader is cut off (clients still reach it) and every
            // follower that acknowledged its lease crashes and restarts at
            // once: only the restart lease (rule 3) and the new leader's
            // wait (rule 5) keep a cut-off follower from winning and serving
            // writes inside the old lease.
            c.note(&format!("fault: lease trap sprung on n{leader}"));
            c.isolate(leader);
            for id in rest {
                c.crash(id);
                c.restart(id);
            }
            restore_mix(c, mix);
            None
        }
    }
}

/// The schedule that protocol-aware recovery exists for (case 2 of issue
/// 8, `crates/raftkv/tests/edges.rs`), in three steps a fault gap apart:
/// the newest writes reach only a bare majority, whose copies then go down
/// with one of them coming back with a flipped byte in the first of them
/// (the log cut there, under a vote floor), next to the minority that never
/// had them.
///
/// Half the time the copies go down instead at an instant when a follower
/// among them has an fsync running (`mid_fsync`), and the followers come
/// back at once while the leader stays down: what that follower appended
/// and had not synced is lost, so if it had acknowledged it (a driver that
/// sends before the fsync), a leader elected without it loses a write.
enum StorageTrap {
    /// Step 1 done: a largest minority of the leader's voters is cut off;
    /// writes commit on the rest.
    Cut {
        leader: NodeId,
        minority: Vec<NodeId>,
        mid_fsync: bool,
    },
    /// Step 2 done: the rest crashed; one of them restarted with the first
    /// synced entry the minority lacks damaged, the network healed. These
    /// stay down a gap.
    Sprung { down: Vec<NodeId> },
}

fn start_storage_trap(c: &mut Cluster, rng: &mut SimRng) -> Option<StorageTrap> {
    let leader = c.leader()?;
    if c.any_repairing() {
        return None;
    }
    let voters = c.membership(leader)?.voters;
    let mut followers: Vec<NodeId> = voters.iter().copied().filter(|&i| i != leader).collect();
    shuffle(&mut followers, rng);
    followers.truncate((voters.len() - 1) / 2);
    if followers.is_empty() {
        return None;
    }
    c.heal();
    for &m in &followers {
        c.isolate(m);
    }
    c.note(&format!(
        "fault: storage trap: {followers:?} cut off from leader n{leader}"
    ));
    Some(StorageTrap::Cut {
        leader,
        minority: followers,
        mid_fsync: rng.below(2) == 0,
    })
}

fn advance_storage_trap(c: &mut Cluster, t: StorageTrap, rng: &mut SimRng) -> Option<StorageTrap> {
    match t {
        StorageTrap::Cut {
            leader,
            minority,
            mid_fsync,
        } => {
            let Some(m) = c.membership(leader) else {
                c.heal();
                return None;
            };
            let mut holders: Vec<NodeId> = m
                .voters
                .iter()
                .copied()
                .filter(|v| !minority.contains(v))
                .collect();
            if mid_fsync {
                let followers: Vec<NodeId> =
                    holders.iter().copied().filter(|&h| h != leader).collect();
                let caught = c.run_until(Duration::from_millis(300), |c| {
                    followers.iter().any(|&f| c.fsync_in_flight(f))
                });
                for &h in &holders {
                    c.crash(h);
                }
                c.heal();
                c.note(&format!(
                    "fault: storage trap sprung mid-fsync ({}): {holders:?} crashed, all but n{leader} back",
                    if caught { "caught" } else { "none in flight" }
                ));
                for &f in &followers {
                    c.restart(f);
                }
                return Some(StorageTrap::Sprung { down: vec![leader] });
            }
            for &h in &holders {
                c.crash(h);
            }
            c.heal();
            shuffle(&mut holders, rng);
            let damaged = holders.iter().copied().find(|&h| h != leader)?;
            // The byte flipped is in the first entry the minority never had
            // (as in case 2, where that entry is the write W): recovery cuts
            // the log there, so only the vote floor keeps the repairing node
            // from electing a minority node without the newest writes.
            let minority_last = minority
                .iter()
                .map(|&m| {
                    let (entries, snap, _) = c.durable_summary(m);
                    snap.0 + entries as u64
                })
                .max()
                .unwrap_or(0);
            let (entries, snap, _) = c.durable_summary(damaged);
            let beyond = (snap.0 + entries as u64).saturating_sub(minority_last) as usize;
            let back = beyond.clamp(1, entries.max(1)) - 1;
            c.note(&format!(
                "fault: storage trap sprung: n{damaged} back with a flipped byte {back} entries before its last"
            ));
            c.restart_with(damaged, Some(DiskFault::Flip { back }), None);
            holders.retain(|&h| h != damaged);
            Some(StorageTrap::Sprung { down: holders })
        }
        StorageTrap::Sprung { down } => {
            for id in down {
                c.restart(id);
            }
            None
        }
    }
}

fn restore_mix(c: &mut Cluster, (get_ppm, delete_ppm): (u32, u32)) {
    if let Some(w) = c.workload_mut() {
        w.get_ppm = get_ppm;
        w.delete_ppm = delete_ppm;
    }
}

fn inject_fault(c: &mut Cluster, opts: &RunOptions, rng: &mut SimRng) {
    let ids = c.node_ids();
    let n = ids.len() as u64;
    let random_node = |rng: &mut SimRng| NodeId(rng.range(1, n));
    match rng.below(100) {
        0..=14 => c.heal(),
        15..=24 => {
            let mut shuffled = ids.clone();
            shuffle(&mut shuffled, rng);
            let k = rng.range(1, n / 2) as usize;
            let (minority, majority) = shuffled.split_at(k);
            let a: Vec<u64> = minority.iter().map(|i| i.0).collect();
            let b: Vec<u64> = majority.iter().map(|i| i.0).collect();
            c.partition(&[&a, &b]);
        }
        25..=39 => {
            // The old leader cut off from its peers while clients reach it.
            let victim = c.leader().unwrap_or_else(|| random_node(rng));
            if opts.clock_drift_beyond_bound {
                // The dangerous mix, on purpose: the cut-off leader's clock
                // crawls while everyone else's races.
                for id in c.node_ids() {
                    let rate = if id == victim {
                        slow_rate(rng)
                    } else {
                        fast_rate(rng)
                    };
                    c.set_clock_rate(id, rate);
                }
            } else if rng.below(2) == 0 {
                // The same mix at the edge of the bound, which must be safe.
                let rho = c.config().clock_drift_bound_ppm;
                for id in c.node_ids() {
                    let rate = if id == victim {
                        RATE_EXACT_PPM - rho
                    } else {
                        RATE_EXACT_PPM + rho
                    };
                    c.set_clock_rate(id, rate);
                }
            }
            c.isolate(victim);
        }
        40..=46 => {
            // Asymmetric: the leader (or anyone) can send but not hear, or
            // the reverse.
            let a = c.leader().unwrap_or_else(|| random_node(rng));
            let inbound = rng.below(2) == 0;
            for &b in &ids {
                if b != a && rng.below(3) != 0 {
                    if inbound {
                        c.cut_link(b, a);
                    } else {
                        c.cut_link(a, b);
                    }
                }
            }
        }
        47..=51 => {
            // A bridge: two halves that only talk through one node.
            let mut shuffled = ids.clone();
            shuffle(&mut shuffled, rng);
            let bridge = shuffled[0];
            let rest = &shuffled[1..];
            let (left, right) = rest.split_at(rest.len() / 2);
            c.heal();
            for &l in left {
                for &r in right {
                    c.cut_link(l, r);
                    c.cut_link(r, l);
                }
            }
            c.note(&format!("fault: bridge n{bridge}"));
        }
        52..=61 => c.crash(random_node(rng)),
        62..=66 => {
            if let Some(l) = c.leader() {
                c.crash(l);
            }
        }
        67..=78 => {
            let down: Vec<NodeId> = ids.iter().copied().filter(|&i| !c.is_up(i)).collect();
            if !down.is_empty() {
                let id = *rng.pick(&down);
                // One damaged log at a time: the fault model tolerates
                // damage on a minority, and with one node repairing the
                // rest still elect.
                let disk = (opts.storage_faults && !c.any_repairing() && rng.below(100) < 30)
                    .then(|| disk_fault(c, id, rng))
                    .flatten();
                let flags =
                    (opts.storage_faults && rng.below(100) < 30).then(|| wrong_flags(c, id, rng));
                c.restart_with(id, disk, flags);
            }
        }
        79..=84 => {
            let victim = if rng.below(2) == 0 {
                c.leader().unwrap_or_else(|| random_node(rng))
            } else {
                random_node(rng)
            };
            c.pause(victim);
        }
        85..=91 => {
            for id in ids {
                c.resume(id);
            }
        }
        _ => {
            let net = random_net(rng);
            c.set_net(net);
        }
    }
}

/// A fault of node `id`'s disk on synced data, if its log has room for
/// one: a flipped byte in one of its last three entries, `logs.txt` lost,
/// or the log cut (at a line boundary) below the commit index saved in its
/// metadata (a cut above it cannot be told from a shorter log: out of the
/// fault model, docs/storage.md).
fn disk_fault(c: &Cluster, id: NodeId, rng: &mut SimRng) -> Option<DiskFault> {
    let (entries, snap, commit) = c.durable_summary(id);
    match rng.below(100) {
        0..=59 if entries > 0 => Some(DiskFault::Flip {
            back: rng.below(3) as usize,
        }),
        60..=79 => Some(DiskFault::LoseLog),
        _ if commit > snap => Some(DiskFault::Shorten {
            keep: rng.below(commit.0 - snap.0) as usize,
        }),
        _ => None,
    }
}

/// Membership flags an operator gets wrong: none at all, `--single-node`,
/// `--peers` naming only this node or a node the cluster does not have, or
/// `--join` on a member.
fn wrong_flags(c: &Cluster, id: NodeId, rng: &mut SimRng) -> MembershipFlags {
    let stranger = NodeId(c.config().pool() as u64 + 1);
    match rng.below(5) {
        0 => MembershipFlags::default(),
        1 => MembershipFlags {
            single_node: true,
            ..Default::default()
        },
        2 => MembershipFlags {
            peers: Some([id].into()),
            ..Default::default()
        },
        3 => MembershipFlags {
            peers: Some(c.node_ids().into_iter().chain([stranger]).collect()),
            ..Default::default()
        },
        _ => MembershipFlags {
            join: true,
            ..Default::default()
        },
    }
}

/// Membership changes and leadership transfers, asked of whoever leads.
struct MembershipMix {
    /// Ids that have been members: re-added half the time wiped (fresh).
    ever_member: BTreeSet<NodeId>,
    /// Never remove voters below this.
    min_voters: usize,
}

impl MembershipMix {
    fn new(c: &Cluster) -> MembershipMix {
        let voters = c.config().nodes;
        MembershipMix {
            ever_member: (1..=voters as u64).map(NodeId).collect(),
            min_voters: voters.min(3),
        }
    }

    fn step(&mut self, c: &mut Cluster, rng: &mut SimRng) {
        let Some(leader) = c.leader() else {
            return;
        };
        let st = c.status(leader).expect("the leader is up");
        let m = st.membership.clone();
        let committed = st.membership_index <= st.commit_index;
        let voters: Vec<NodeId> = m.voters.iter().copied().collect();
        let learners: Vec<NodeId> = m.learners.iter().copied().collect();
        let outsiders: Vec<NodeId> = c
            .node_ids()
            .into_iter()
            .filter(|&id| !m.is_member(id))
            .collect();
        let r = match rng.below(100) {
            0..=29 if !outsiders.is_empty() => {
                let id = *rng.pick(&outsiders);
                // A node that was a member before comes back either wiped
                // (a fresh node with the same id) or as it is (its old log
                // and term: the leader overwrites what conflicts).
                if self.ever_member.contains(&id) && rng.below(2) == 0 {
                    if !committed {
                        return; // its removal may not have committed yet
                    }
                    c.wipe(id);
                    c.restart(id);
                }
                self.ever_member.insert(id);
                let addr = format!("sim://n{id}");
                c.propose_conf_change(leader, ConfChange::AddLearner { id, addr })
                    .map(drop)
            }
            0..=54 if !learners.is_empty() => {
                let id = *rng.pick(&learners);
                c.propose_conf_change(leader, ConfChange::Promote { id })
                    .map(drop)
            }
            0..=74 => {
                let id = if voters.len() > self.min_voters && rng.below(3) == 0 {
                    leader
                } else if voters.len() > self.min_voters
                    && (learners.is_empty() || rng.below(2) == 0)
                {
                    *rng.pick(&voters)
                } else if !learners.is_empty() {
                    *rng.pick(&learners)
                } else {
                    return;
                };
                c.propose_conf_change(leader, ConfChange::Remove { id })
                    .map(drop)
            }
            75..=84 => {
                // Placement through the log: a random one, or none.
                let p = if rng.below(4) == 0 {
                    Placement::default()
                } else {
                    let mut p = random_placement(rng, c.cfg.nodes as u64, c.cfg.zones);
                    p.leaders.retain(|id| m.is_member(*id));
                    p
                };
                c.propose_conf_change(leader, ConfChange::Place(p))
                    .map(drop)
            }
            _ => {
                let others: Vec<NodeId> = voters.into_iter().filter(|&v| v != leader).collect();
                if others.is_empty() {
                    return;
                }
                let target = *rng.pick(&others);
                if c.transfer_leadership(leader, target).is_ok() && rng.below(4) == 0 {
                    // The leader cut off mid-transfer (TimeoutNow may or
                    // may not have left); clients still reach it.
                    c.note("fault: leader cut off during its transfer");
                    c.isolate(leader);
                }
                return;
            }
        };
        // Refusals (a change in progress, a learner behind, a new leader
        // not ready) are part of the mix; they are in the trace. A quarter
        // of accepted changes are followed at once by cutting the leader off
        // (clients still reach it): the change is in its log only, and the
        // rest must not elect, under either configuration, a leader that
        // serves inside its lease (lease rule 10).
        if r.is_ok() && rng.below(4) == 0 {
            c.note("fault: leader cut off with its change uncommitted");
            c.isolate(leader);
        }
    }
}

fn shuffle<T>(v: &mut [T], rng: &mut SimRng) {
    for i in (1..v.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        v.swap(i, j);
    }
}
