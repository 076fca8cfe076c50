//! The client subcommands: `set`, `get`, `delete`, `status`, `client`.

use std::path::Path;
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
    pub value: String,
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
    /// round); stale: from whichever node answers, possibly behind.
    #[arg(long, value_enum, default_value_t = ConsistencyArg::Linearizable)]
    pub consistency: ConsistencyArg,
    /// Short for --consistency stale.
    #[arg(long)]
    pub stale: bool,
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

pub fn set(args: SetArgs) -> anyhow::Result<ExitCode> {
    let client = args.conn.client()?;
    let answer = runtime()?.block_on(client.set(&args.key, &args.value))?;
    eprintln!(
        "OK (node {}, index {})",
        answer.served_by, answer.value.index
    );
    Ok(ExitCode::SUCCESS)
}

pub fn delete(args: KeyArgs) -> anyhow::Result<ExitCode> {
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
    let client = args.conn.client()?;
    let stale = args.stale || args.consistency == ConsistencyArg::Stale;
    let consistency = if stale {
        Consistency::Stale
    } else {
        Consistency::Linearizable
    };
    let answer = runtime()?.block_on(client.get_with(&args.key, consistency))?;
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
    let reachable = rows.iter().any(|(_, r)| r.is_ok());
    Ok(if reachable {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
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
    for (ep, row) in rows {
        match row {
            Ok(s) => {
                let lease = s.lease.unwrap_or_default();
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
                configs.push(format!(
                    "node {}: voters {:?} learners {:?} (config index {}), snapshot index {}, log from {}",
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
    for line in configs {
        out += &line;
        out.push('\n');
    }
    out
}

fn status_json(endpoint: &str, row: &Result<pb::StatusReply, ClientError>) -> serde_json::Value {
    use serde_json::json;
    match row {
        Err(e) => json!({ "endpoint": endpoint, "error": e.to_string() }),
        Ok(s) => {
            let lease = s.lease.unwrap_or_default();
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
                "transfer_to": s.transfer_to,
                "lease": {"holds": lease.holds, "remaining_us": lease.remaining_us,
                          "wait_remaining_us": lease.wait_remaining_us, "protecting_us": lease.protecting_us},
                "peers": peers, "counters": counters,
            })
        }
    }
}

const HELP: &str = "\
commands (case-insensitive):
  SET <key> <value>   write (the value is the rest of the line)
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
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let _ = editor.add_history_entry(line);
        let (verb, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        let rest = rest.trim();
        match verb.to_ascii_uppercase().as_str() {
            "QUIT" | "EXIT" => break,
            "HELP" => println!("{HELP}"),
            "STATUS" => print!(
                "{}",
                status_table(&rt.block_on(collect_status(&client, &endpoints)))
            ),
            "SET" => match rest.split_once(char::is_whitespace) {
                Some((k, v)) => match rt.block_on(client.set(k, v.trim_start())) {
                    Ok(a) => println!("OK (node {}, index {})", a.served_by, a.value.index),
                    Err(e) => println!("error: {e}"),
                },
                None => println!("usage: SET <key> <value>"),
            },
            "GET" | "GET!" if !rest.is_empty() => {
                let consistency = if verb.ends_with('!') {
                    Consistency::Stale
                } else {
                    Consistency::Linearizable
                };
                match rt.block_on(client.get_with(rest, consistency)) {
                    Ok(a) => {
                        let origin = match consistency {
                            Consistency::Stale => staleness(a.served_by, &a.value.1),
                            Consistency::Linearizable => format!("node {}", a.served_by),
                        };
                        match a.value.0 {
                            Some(v) => println!("{v}    ({origin})"),
                            None => println!("(not found)    ({origin})"),
                        }
                    }
                    Err(e) => println!("error: {e}"),
                }
            }
            "DELETE" | "DEL" if !rest.is_empty() => match rt.block_on(client.delete(rest)) {
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
            _ => println!("cannot parse {line:?}; type HELP"),
        }
    }
    if let Some(h) = &history {
        let _ = editor.save_history(h);
    }
    Ok(())
}
