//! The client subcommands: `set`, `get`, `delete`, `status`, `client`.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use raftkv_client::{pb, Client, ClientError, ClientOptions, Consistency};

/// Where `raftkv local` writes the endpoints of the cluster it started.
pub const ENDPOINTS_FILE: &str = "raftkv-data/endpoints.txt";
/// `raftkv local`'s default data directory (where it writes ENDPOINTS_FILE).
pub const DEFAULT_DATA_DIR: &str = "raftkv-data";
const DEFAULT_ENDPOINTS: &str = "127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003";

#[derive(Args, Debug, Clone)]
pub struct ConnArgs {
    /// Nodes to talk to, host:port comma-separated. Default: the cluster that
    /// `raftkv local` started from this folder (./raftkv-data/endpoints.txt),
    /// else 127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003.
    #[arg(long, short = 'e', global = true)]
    pub endpoints: Option<String>,
    /// Give up after this long (retries and redirects included).
    #[arg(long, default_value_t = 10_000, global = true)]
    pub timeout_ms: u64,
}

#[derive(Args, Debug)]
pub struct SetArgs {
    pub key: String,
    /// The value (or give --value-file).
    #[arg(required_unless_present = "value_file", conflicts_with = "value_file")]
    pub value: Option<String>,
    /// Read the value from this file, `-` for standard input, byte for byte
    /// (a final newline is kept): for values too large for the command line.
    #[arg(long, value_name = "FILE")]
    pub value_file: Option<PathBuf>,
    #[command(flatten)]
    pub conn: ConnArgs,
}

#[derive(Args, Debug)]
pub struct KeyArgs {
    pub key: String,
    #[command(flatten)]
    pub conn: ConnArgs,
}

#[derive(Args, Debug)]
pub struct GetArgs {
    pub key: String,
    /// linearizable: from the leader (under its lease, or after a ReadIndex
    /// round), or with --nearest/--zone from a follower read lease holder;
    /// stale: from whichever node answers, possibly behind.
    #[arg(long, value_enum, default_value_t = ConsistencyArg::Linearizable)]
    pub consistency: ConsistencyArg,
    /// Short for --consistency stale.
    #[arg(long)]
    pub stale: bool,
    /// A bounded-staleness read: served by the first endpoint when it can
    /// prove its state misses no write made visible longer ago than this
    /// (for example 500ms or 2s), else by the leader.
    #[arg(long, value_parser = humantime::parse_duration, conflicts_with_all = ["stale", "consistency"])]
    pub max_staleness: Option<std::time::Duration>,
    /// Read from the nearest node first: measure every endpoint's round
    /// trip, and with --zone prefer a node in that zone. A follower read
    /// lease holder answers itself; another node redirects to the leader.
    #[arg(long)]
    pub nearest: bool,
    /// This client's zone (implies --nearest): a node started with the same
    /// `--zone` is read from first.
    #[arg(long)]
    pub zone: Option<String>,
    #[command(flatten)]
    pub conn: ConnArgs,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConsistencyArg {
    Linearizable,
    Stale,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub conn: ConnArgs,
}

#[derive(Args, Debug)]
pub struct MemberArgs {
    #[command(subcommand)]
    pub command: MemberCommand,
    #[command(flatten)]
    pub conn: ConnArgs,
}

#[derive(clap::Subcommand, Debug)]
pub enum MemberCommand {
    /// Voters, learners, addresses and (from the leader) each member's
    /// progress.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Add node ID, reachable at ADDR (host:port), as a learner (start it
    /// with `raftkv server --join` first). Returns once committed.
    Add { id: u64, addr: String },
    /// Make learner ID a voter (refused until it has caught up).
    Promote { id: u64 },
    /// Remove voter or learner ID (the leader too: it steps down).
    Remove { id: u64 },
}

#[derive(Args, Debug)]
pub struct TransferArgs {
    /// The voter that should lead.
    #[arg(long)]
    pub to: u64,
    #[command(flatten)]
    pub conn: ConnArgs,
}

impl ConnArgs {
    pub fn endpoint_list(&self) -> anyhow::Result<Vec<String>> {
        let text = match &self.endpoints {
            Some(e) => e.clone(),
            None => default_endpoints(),
        };
        let list: Vec<String> = text
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        if list.is_empty() {
            anyhow::bail!("no endpoints given");
        }
        Ok(list)
    }

    pub fn client(&self) -> anyhow::Result<Client> {
        let opts = ClientOptions {
            deadline: Duration::from_millis(self.timeout_ms),
            ..ClientOptions::default()
        };
        Ok(Client::new(&self.endpoint_list()?, opts)?)
    }
}

fn default_endpoints() -> String {
    std::fs::read_to_string(Path::new(ENDPOINTS_FILE))
        .unwrap_or_else(|_| DEFAULT_ENDPOINTS.to_owned())
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// The value of `raftkv set`: the argument, or the contents of --value-file.
fn set_value(args: &SetArgs) -> anyhow::Result<String> {
    let bytes = match (&args.value, &args.value_file) {
        (Some(v), _) => return Ok(v.clone()),
        (None, Some(path)) if path == Path::new("-") => {
            let mut bytes = Vec::new();
            std::io::stdin()
                .read_to_end(&mut bytes)
                .context("cannot read the value from standard input")?;
            bytes
        }
        (None, Some(path)) => std::fs::read(path)
            .with_context(|| format!("--value-file {}: cannot read", path.display()))?,
        (None, None) => anyhow::bail!("give a value or --value-file"),
    };
    String::from_utf8(bytes).map_err(|e| {
        anyhow::anyhow!(
            "--value-file: the value is not valid UTF-8 (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        )
    })
}

/// Get and delete refuse an empty key as set does (the server would answer
/// a read of it "not found").
fn check_key(key: &str) -> anyhow::Result<()> {
    if key.is_empty() {
        anyhow::bail!("invalid argument: empty key");
    }
    Ok(())
}

pub fn set(args: SetArgs) -> anyhow::Result<ExitCode> {
    let value = set_value(&args)?;
    let client = args.conn.client()?;
    let answer = runtime()?.block_on(client.set(&args.key, &value))?;
    eprintln!(
        "OK (node {}, index {})",
        answer.served_by, answer.value.index
    );
    Ok(ExitCode::SUCCESS)
}

pub fn delete(args: KeyArgs) -> anyhow::Result<ExitCode> {
    check_key(&args.key)?;
    let client = args.conn.client()?;
    let answer = runtime()?.block_on(client.delete(&args.key))?;
    let what = if answer.value.existed {
        "deleted"
    } else {
        "no such key"
    };
    eprintln!(
        "OK, {what} (node {}, index {})",
        answer.served_by, answer.value.index
    );
    Ok(ExitCode::SUCCESS)
}

pub fn get(args: GetArgs) -> anyhow::Result<ExitCode> {
    check_key(&args.key)?;
    let client = args.conn.client()?;
    let stale = args.stale || args.consistency == ConsistencyArg::Stale;
    let consistency = match (stale, args.max_staleness) {
        (true, _) => Consistency::Stale,
        (false, Some(bound)) => Consistency::Bounded(bound),
        (false, None) => Consistency::Linearizable,
    };
    let rt = runtime()?;
    if args.nearest || args.zone.is_some() {
        let order = rt.block_on(client.prefer_nearest(args.zone.as_deref()));
        let shown: Vec<String> = order
            .iter()
            .map(|d| match d.rtt {
                Some(rtt) if d.zone.is_empty() => {
                    format!("{} {:.1} ms", d.endpoint, rtt.as_secs_f64() * 1e3)
                }
                Some(rtt) => format!(
                    "{} ({}) {:.1} ms",
                    d.endpoint,
                    d.zone,
                    rtt.as_secs_f64() * 1e3
                ),
                None => format!("{} unreachable", d.endpoint),
            })
            .collect();
        eprintln!("(nearest first: {})", shown.join(", "));
    }
    let answer = rt.block_on(client.get_with(&args.key, consistency))?;
    if args.nearest || args.zone.is_some() || args.max_staleness.is_some() {
        eprintln!("(served by node {})", answer.served_by);
    }
    if stale {
        eprintln!("({})", staleness(answer.served_by, &answer.value.1));
    }
    match answer.value.0 {
        Some(value) => {
            println!("{value}");
            Ok(ExitCode::SUCCESS)
        }
        None => {
            eprintln!("raftkv: key not found: {}", args.key);
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Where a stale read came from and how far behind it may be.
fn staleness(node: u64, info: &raftkv_client::StaleInfo) -> String {
    let contact = match info.since_leader_contact_ms {
        Some(ms) => format!("{ms} ms since it heard from a leader"),
        None => "no leader contact to report".to_owned(),
    };
    format!(
        "stale read from node {node}: applied index {}, commit index known {}, {contact}",
        info.applied_index, info.commit_index
    )
}

pub fn status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let client = args.conn.client()?;
    let endpoints = args.conn.endpoint_list()?;
    let rows = runtime()?.block_on(collect_status(&client, &endpoints));
    if args.json {
        let list: Vec<serde_json::Value> = rows.iter().map(|(ep, r)| status_json(ep, r)).collect();
        println!("{}", serde_json::to_string_pretty(&list)?);
    } else {
        print!("{}", status_table(&rows));
    }
    let answered = rows.iter().filter(|(_, r)| r.is_ok()).count();
    match quorum_verdict(answered, rows.len()) {
        None => Ok(ExitCode::SUCCESS),
        Some(why) => {
            eprintln!("raftkv: {why}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// `None` when a majority of the nodes asked answered; else what to say.
/// (One node asked and answering passes: a health check of that node.)
fn quorum_verdict(answered: usize, asked: usize) -> Option<String> {
    let majority = asked / 2 + 1;
    if answered >= majority {
        return None;
    }
    Some(if answered == 0 {
        format!("no node answered (asked {asked})")
    } else {
        format!("no quorum: only {answered} of {asked} nodes answered (a majority is {majority})")
    })
}

pub fn member(args: MemberArgs) -> anyhow::Result<ExitCode> {
    let client = args.conn.client()?;
    let rt = runtime()?;
    let reply = match args.command {
        MemberCommand::List { json } => {
            let list = rt.block_on(client.member_list())?.value;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&member_list_json(&list))?
                );
            } else {
                print!("{}", member_table(&list));
            }
            return Ok(ExitCode::SUCCESS);
        }
        MemberCommand::Add { id, addr } => rt.block_on(client.add_learner(id, &addr))?,
        MemberCommand::Promote { id } => rt.block_on(client.promote(id))?,
        MemberCommand::Remove { id } => rt.block_on(client.remove(id))?,
    };
    let m = reply.value.membership.unwrap_or_default();
    let when = if reply.value.index == 0 {
        "already in force".to_owned()
    } else {
        format!("committed at index {}", reply.value.index)
    };
    eprintln!(
        "OK, {when} (node {}): voters {:?} learners {:?}",
        reply.served_by, m.voters, m.learners
    );
    Ok(ExitCode::SUCCESS)
}

pub fn transfer_leader(args: TransferArgs) -> anyhow::Result<ExitCode> {
    let client = args.conn.client()?;
    let reply = runtime()?.block_on(client.transfer_leader(args.to))?;
    eprintln!(
        "OK, node {} at {} leads",
        reply.value.leader_id, reply.value.leader_addr
    );
    Ok(ExitCode::SUCCESS)
}

#[derive(Args, Debug)]
pub struct PlacementArgs {
    /// Voter ids leadership should go to, most preferred first, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        required_unless_present_any = ["clear", "prefer_zone"],
        conflicts_with = "clear"
    )]
    pub prefer: Vec<u64>,
    /// Zones leadership should go to (after `--prefer`), most preferred
    /// first: the voters whose `--zone` is one of these.
    #[arg(long, value_delimiter = ',', conflicts_with = "clear")]
    pub prefer_zone: Vec<String>,
    /// No preference: leadership stays where elections put it (the nodes'
    /// `--preferred-*` flags no longer count either).
    #[arg(long)]
    pub clear: bool,
    #[command(flatten)]
    pub conn: ConnArgs,
}

/// Sets leader placement for the whole cluster: a configuration entry at
/// the leader, so every node has it, restarted and new ones included.
pub fn placement(args: PlacementArgs) -> anyhow::Result<ExitCode> {
    let client = args.conn.client()?;
    let rt = runtime()?;
    let reply = rt.block_on(client.set_placement(&args.prefer, &args.prefer_zone))?;
    let m = reply.value.membership.unwrap_or_default();
    if !m.placement_set || (m.preferred_leaders.is_empty() && m.preferred_zones.is_empty()) {
        eprintln!(
            "OK, no preferred leader (committed at index {})",
            reply.value.index
        );
    } else {
        eprintln!(
            "OK, preferred leaders {:?} zones {:?} (committed at index {})",
            m.preferred_leaders, m.preferred_zones, reply.value.index
        );
    }
    // A zone no node reports is accepted (its nodes may join later) but is
    // most likely a typo: say so.
    if !args.prefer_zone.is_empty() {
        let endpoints = args.conn.endpoint_list()?;
        let statuses = rt.block_on(collect_status(&client, &endpoints));
        let known: Vec<&str> = statuses
            .iter()
            .filter_map(|(_, s)| s.as_ref().ok())
            .map(|s| s.zone.as_str())
            .collect();
        for z in &args.prefer_zone {
            if !known.contains(&z.as_str()) {
                eprintln!(
                    "warning: no node among {} says it runs in zone {z:?} (see `raftkv status`)",
                    endpoints.join(",")
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn member_table(m: &pb::MemberListReply) -> String {
    let mut out = format!(
        "configuration at index {} ({}); leader {}\n",
        m.config_index,
        if m.config_committed {
            "committed"
        } else {
            "not committed yet"
        },
        if m.leader_id == 0 {
            "unknown".to_owned()
        } else {
            m.leader_id.to_string()
        }
    );
    out += &format!(
        "{:<4} {:<21} {:<8} {:>8} {:>8} {:>10} {}\n",
        "ID", "ADDRESS", "ROLE", "MATCH", "BEHIND", "CONTACT_MS", "SNAPSHOT"
    );
    for p in &m.members {
        let role = if p.id == m.leader_id {
            "leader"
        } else if p.voter {
            "voter"
        } else {
            "learner"
        };
        let snapshot = match p.snapshot_index {
            Some(i) => format!(
                "sending index {i}, {} chunks acked",
                p.snapshot_chunks_acked
            ),
            None => "-".to_owned(),
        };
        out += &format!(
            "{:<4} {:<21} {:<8} {:>8} {:>8} {:>10} {}\n",
            p.id,
            p.addr,
            role,
            p.match_index,
            m.commit_index.saturating_sub(p.match_index),
            p.last_contact_ms.map_or("-".to_owned(), |c| c.to_string()),
            snapshot
        );
    }
    out
}

fn member_list_json(m: &pb::MemberListReply) -> serde_json::Value {
    use serde_json::json;
    let members: Vec<_> = m
        .members
        .iter()
        .map(|p| {
            json!({"id": p.id, "addr": p.addr, "voter": p.voter, "match_index": p.match_index,
                   "next_index": p.next_index, "snapshot_index": p.snapshot_index,
                   "snapshot_chunks_acked": p.snapshot_chunks_acked,
                   "last_contact_ms": p.last_contact_ms})
        })
        .collect();
    json!({
        "voters": m.voters, "learners": m.learners, "leader_id": m.leader_id,
        "leader_addr": m.leader_addr, "config_index": m.config_index,
        "config_committed": m.config_committed, "commit_index": m.commit_index,
        "served_by": m.served_by, "members": members,
    })
}

type StatusRow = (String, Result<pb::StatusReply, ClientError>);

async fn collect_status(client: &Client, endpoints: &[String]) -> Vec<StatusRow> {
    let mut rows = Vec::new();
    for ep in endpoints {
        rows.push((ep.clone(), client.status_at(ep).await));
    }
    rows
}

fn ms(us: u64) -> String {
    format!("{:.1}", us as f64 / 1000.0)
}

pub fn status_table(rows: &[StatusRow]) -> String {
    let mut out = format!(
        "{:<4} {:<21} {:<13} {:>5} {:>6} {:>8} {:>8} {:<6} {:>12} {:>10} {}\n",
        "ID",
        "ADDRESS",
        "ROLE",
        "TERM",
        "LEADER",
        "COMMIT",
        "APPLIED",
        "LEASE",
        "REMAINING_MS",
        "WAIT_MS",
        "PEERS (id:match/last contact ms; L = learner, S = snapshot)"
    );
    let mut configs = Vec::new();
    let mut read_leases = Vec::new();
    for (ep, row) in rows {
        match row {
            Ok(s) => {
                let lease = s.lease.clone().unwrap_or_default();
                if let Some(line) = read_lease_line(s.id, &lease.read_lease.unwrap_or_default()) {
                    read_leases.push(line);
                }
                let peers: Vec<String> = s
                    .peers
                    .iter()
                    .map(|p| {
                        let contact = p.last_contact_ms.map_or("-".to_owned(), |c| c.to_string());
                        let learner = if p.learner { "L" } else { "" };
                        let snap = p.snapshot_index.map_or(String::new(), |i| {
                            format!("S{i}#{}", p.snapshot_chunks_acked)
                        });
                        if s.role == "leader" {
                            format!("{}{learner}:{}/{contact}{snap}", p.id, p.match_index)
                        } else {
                            format!("{}{learner}", p.id)
                        }
                    })
                    .collect();
                let mut placement = String::new();
                if !s.zone.is_empty() {
                    placement += &format!(", zone {}", s.zone);
                }
                if !s.preferred_leaders.is_empty() || !s.preferred_zones.is_empty() {
                    placement += &format!(
                        ", prefers leaders {:?} zones {:?} = voters {:?} ({})",
                        s.preferred_leaders,
                        s.preferred_zones,
                        s.preferred_voters,
                        if s.placement_from_log {
                            "raftkv placement"
                        } else {
                            "flags"
                        }
                    );
                }
                configs.push(format!(
                    "node {}: voters {:?} learners {:?} (config index {}), snapshot index {}, log from {}{placement}",
                    s.id, s.voters, s.learners, s.config_index, s.snapshot_index, s.first_log_index
                ));
                let leader = if s.leader_id == 0 {
                    "-".to_owned()
                } else {
                    s.leader_id.to_string()
                };
                out += &format!(
                    "{:<4} {:<21} {:<13} {:>5} {:>6} {:>8} {:>8} {:<6} {:>12} {:>10} {}\n",
                    s.id,
                    s.addr,
                    s.role,
                    s.term,
                    leader,
                    s.commit_index,
                    s.applied_index,
                    if lease.holds { "holds" } else { "-" },
                    ms(lease.remaining_us),
                    ms(lease.wait_remaining_us),
                    peers.join(" ")
                );
            }
            Err(e) => out += &format!("{:<4} {:<21} unreachable: {e}\n", "?", ep),
        }
    }
    for line in configs.into_iter().chain(read_leases) {
        out += &line;
        out.push('\n');
    }
    out
}

/// One node's follower read leases, for the status table (None: nothing to
/// say: not enabled, no holders, no write ever waited).
fn read_lease_line(id: u64, r: &pb::ReadLeaseInfo) -> Option<String> {
    if !r.enabled && r.holders.is_empty() && r.write_wait_us == 0 {
        return None;
    }
    let mut parts = Vec::new();
    if r.enabled {
        parts.push(if r.remaining_us > 0 {
            format!("holds a read lease ({} ms left)", ms(r.remaining_us))
        } else {
            "asks for read leases, holds none".to_owned()
        });
    }
    if !r.holders.is_empty() {
        let holders: Vec<String> = r
            .holders
            .iter()
            .map(|h| format!("{} ({} ms)", h.id, ms(h.guard_remaining_us)))
            .collect();
        parts.push(format!("guards for holders {}", holders.join(", ")));
    }
    if r.write_wait_us > 0 {
        parts.push(format!(
            "commits waited {} ms for holders in all",
            ms(r.write_wait_us)
        ));
    }
    if let Some(st) = r.staleness_us {
        parts.push(format!("state at most {} ms stale", ms(st)));
    }
    Some(format!("node {id} read leases: {}", parts.join("; ")))
}

fn status_json(endpoint: &str, row: &Result<pb::StatusReply, ClientError>) -> serde_json::Value {
    use serde_json::json;
    match row {
        Err(e) => json!({ "endpoint": endpoint, "error": e.to_string() }),
        Ok(s) => {
            let lease = s.lease.clone().unwrap_or_default();
            let rl = lease.read_lease.clone().unwrap_or_default();
            let holders: Vec<_> = rl
                .holders
                .iter()
                .map(|h| json!({"id": h.id, "guard_remaining_us": h.guard_remaining_us}))
                .collect();
            let peers: Vec<_> = s
                .peers
                .iter()
                .map(|p| {
                    json!({"id": p.id, "addr": p.addr, "match_index": p.match_index,
                           "next_index": p.next_index, "last_contact_ms": p.last_contact_ms,
                           "learner": p.learner, "snapshot_index": p.snapshot_index,
                           "snapshot_chunks_acked": p.snapshot_chunks_acked})
                })
                .collect();
            let counters: serde_json::Map<String, serde_json::Value> = s
                .counters
                .iter()
                .map(|c| (c.name.clone(), json!(c.value)))
                .collect();
            json!({
                "endpoint": endpoint, "id": s.id, "addr": s.addr, "cluster_id": s.cluster_id,
                "role": s.role, "term": s.term, "leader_id": s.leader_id, "leader_addr": s.leader_addr,
                "commit_index": s.commit_index, "applied_index": s.applied_index,
                "last_log_index": s.last_log_index, "persisted_index": s.persisted_index,
                "keys": s.keys, "uptime_ms": s.uptime_ms,
                "voters": s.voters, "learners": s.learners, "config_index": s.config_index,
                "snapshot_index": s.snapshot_index, "first_log_index": s.first_log_index,
                "transfer_to": s.transfer_to, "zone": s.zone, "preferred_leaders": s.preferred_leaders,
                "preferred_zones": s.preferred_zones, "placement_from_log": s.placement_from_log,
                "preferred_voters": s.preferred_voters,
                "lease": {"holds": lease.holds, "remaining_us": lease.remaining_us,
                          "wait_remaining_us": lease.wait_remaining_us, "protecting_us": lease.protecting_us,
                          "read_lease": {"enabled": rl.enabled, "remaining_us": rl.remaining_us,
                                         "holders": holders, "write_wait_us": rl.write_wait_us,
                                         "staleness_us": rl.staleness_us}},
                "peers": peers, "counters": counters,
            })
        }
    }
}

const HELP: &str = "\
commands (case-insensitive):
  SET <key> <value>   write (the value is the rest of the line; TAB types a tab)
  GET <key>           linearizable read from the leader
  GET! <key>          stale read from whichever node answers
  DELETE <key>        delete
  STATUS              the status table of all nodes
  HELP                this text
  QUIT                leave (or Ctrl-D)";

pub fn repl(args: ConnArgs) -> anyhow::Result<ExitCode> {
    prompt(&args)?;
    Ok(ExitCode::SUCCESS)
}

/// The interactive prompt; returns on QUIT, Ctrl-D or Ctrl-C.
pub fn prompt(args: &ConnArgs) -> anyhow::Result<()> {
    let client = args.client()?;
    let endpoints = args.endpoint_list()?;
    let rt = runtime()?;
    let mut editor = rustyline::DefaultEditor::new().context("cannot start line editor")?;
    // No completion here: TAB types a tab (values may hold tabs).
    editor.bind_sequence(
        rustyline::KeyEvent(rustyline::KeyCode::Tab, rustyline::Modifiers::NONE),
        rustyline::Cmd::Insert(1, "\t".into()),
    );
    let history = std::env::var_os("HOME").map(|h| Path::new(&h).join(".raftkv_history"));
    if let Some(h) = &history {
        let _ = editor.load_history(h);
    }
    println!(
        "raftkv client; endpoints {}; type HELP",
        endpoints.join(",")
    );
    loop {
        let line = match editor.readline("raftkv> ") {
            Ok(line) => line,
            Err(
                rustyline::error::ReadlineError::Interrupted | rustyline::error::ReadlineError::Eof,
            ) => break,
            Err(e) => return Err(e.into()),
        };
        if line.trim().is_empty() {
            continue;
        }
        let _ = editor.add_history_entry(line.as_str());
        match parse_prompt_line(&line) {
            Err(message) => println!("{message}"),
            Ok(PromptCommand::Quit) => break,
            Ok(PromptCommand::Help) => println!("{HELP}"),
            Ok(PromptCommand::Status) => print!(
                "{}",
                status_table(&rt.block_on(collect_status(&client, &endpoints)))
            ),
            Ok(PromptCommand::Set { key, value }) => match rt.block_on(client.set(&key, &value)) {
                Ok(a) => println!("OK (node {}, index {})", a.served_by, a.value.index),
                Err(e) => println!("error: {e}"),
            },
            Ok(PromptCommand::Get { key, consistency }) => {
                match rt.block_on(client.get_with(&key, consistency)) {
                    Ok(a) => {
                        let origin = match consistency {
                            Consistency::Stale => staleness(a.served_by, &a.value.1),
                            Consistency::Linearizable | Consistency::Bounded(_) => {
                                format!("node {}", a.served_by)
                            }
                        };
                        match a.value.0 {
                            Some(v) => println!("{v}    ({origin})"),
                            None => println!("(not found)    ({origin})"),
                        }
                    }
                    Err(e) => println!("error: {e}"),
                }
            }
            Ok(PromptCommand::Delete { key }) => match rt.block_on(client.delete(&key)) {
                Ok(a) => {
                    let what = if a.value.existed {
                        "deleted"
                    } else {
                        "no such key"
                    };
                    println!("OK, {what} (node {}, index {})", a.served_by, a.value.index)
                }
                Err(e) => println!("error: {e}"),
            },
        }
    }
    if let Some(h) = &history {
        let _ = editor.save_history(h);
    }
    Ok(())
}

/// One line of the interactive prompt.
#[derive(Debug, PartialEq, Eq)]
pub enum PromptCommand {
    Quit,
    Help,
    Status,
    Set {
        key: String,
        value: String,
    },
    Get {
        key: String,
        consistency: Consistency,
    },
    Delete {
        key: String,
    },
}

/// Parses a prompt line. The verb and the key end at the first space or tab;
/// a SET's value is the rest of the line after the blanks that follow the
/// key, tabs inside it and at its end kept (trailing spaces are dropped).
pub fn parse_prompt_line(line: &str) -> Result<PromptCommand, String> {
    let blank = |c: char| c == ' ' || c == '\t';
    let text = line.trim_start_matches(blank);
    let (verb, rest) = text.split_once(blank).unwrap_or((text, ""));
    let rest = rest.trim_start_matches(blank);
    let key_only = || {
        let key = rest.trim_end_matches(blank);
        if key.is_empty() {
            Err(format!("usage: {} <key>", verb.to_ascii_uppercase()))
        } else {
            Ok(key.to_owned())
        }
    };
    match verb.to_ascii_uppercase().as_str() {
        "QUIT" | "EXIT" => Ok(PromptCommand::Quit),
        "HELP" => Ok(PromptCommand::Help),
        "STATUS" => Ok(PromptCommand::Status),
        "SET" => match rest.split_once(blank) {
            Some((key, value)) => Ok(PromptCommand::Set {
                key: key.to_owned(),
                value: value
                    .trim_start_matches(' ')
                    .trim_end_matches(' ')
                    .to_owned(),
            }),
            None => Err("usage: SET <key> <value>".into()),
        },
        "GET" => Ok(PromptCommand::Get {
            key: key_only()?,
            consistency: Consistency::Linearizable,
        }),
        "GET!" => Ok(PromptCommand::Get {
            key: key_only()?,
            consistency: Consistency::Stale,
        }),
        "DELETE" | "DEL" => Ok(PromptCommand::Delete { key: key_only()? }),
        _ => Err(format!("cannot parse {:?}; type HELP", line.trim())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompt_values_keep_their_tabs() {
        assert_eq!(
            parse_prompt_line("SET k a\tb"),
            Ok(PromptCommand::Set {
                key: "k".into(),
                value: "a\tb".into()
            })
        );
        // A tab typed as the separator, and tabs at the value's ends.
        assert_eq!(
            parse_prompt_line("set\tk\t\tcol1\tcol2\t"),
            Ok(PromptCommand::Set {
                key: "k".into(),
                value: "\tcol1\tcol2\t".into()
            })
        );
        assert_eq!(
            parse_prompt_line("SET k   hello world  "),
            Ok(PromptCommand::Set {
                key: "k".into(),
                value: "hello world".into()
            })
        );
    }

    #[test]
    fn prompt_commands_parse() {
        assert_eq!(
            parse_prompt_line("get! k "),
            Ok(PromptCommand::Get {
                key: "k".into(),
                consistency: Consistency::Stale
            })
        );
        assert_eq!(
            parse_prompt_line("DEL k"),
            Ok(PromptCommand::Delete { key: "k".into() })
        );
        assert_eq!(parse_prompt_line(" quit"), Ok(PromptCommand::Quit));
        assert_eq!(parse_prompt_line("GET"), Err("usage: GET <key>".into()));
        assert_eq!(
            parse_prompt_line("SET k"),
            Err("usage: SET <key> <value>".into())
        );
        assert!(parse_prompt_line("FROB")
            .unwrap_err()
            .contains("cannot parse"));
    }

    #[test]
    fn status_needs_a_majority_of_the_nodes_asked() {
        assert_eq!(quorum_verdict(3, 3), None);
        assert_eq!(quorum_verdict(2, 3), None);
        assert_eq!(quorum_verdict(1, 1), None);
        assert_eq!(
            quorum_verdict(1, 3).as_deref(),
            Some("no quorum: only 1 of 3 nodes answered (a majority is 2)")
        );
        assert_eq!(
            quorum_verdict(0, 3).as_deref(),
            Some("no node answered (asked 3)")
        );
        assert!(quorum_verdict(2, 4).is_some());
    }
}
