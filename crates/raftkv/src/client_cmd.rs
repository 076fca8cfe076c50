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
    #[arg(long, short = 'e')]
    pub endpoints: Option<String>,
    /// Give up after this long (retries and redirects included).
    #[arg(long, default_value_t = 10_000)]
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
        "PEERS (last contact ms)"
    );
    for (ep, row) in rows {
        match row {
            Ok(s) => {
                let lease = s.lease.unwrap_or_default();
                let peers: Vec<String> = s
                    .peers
                    .iter()
                    .map(|p| match p.last_contact_ms {
                        Some(c) => format!("{}:{c}", p.id),
                        None => format!("{}:-", p.id),
                    })
                    .collect();
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
                           "next_index": p.next_index, "last_contact_ms": p.last_contact_ms})
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
