//! `raftkv`: run a node (`server`), a whole local cluster (`local`), or talk
//! to a cluster (`set`, `get`, `delete`, `status`, `client`).
//! See docs/server.md for the full tour.

mod client_cmd;
mod health_cmd;
mod local;
mod server_cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "raftkv",
    version,
    about = "A replicated key-value store: Raft with leader leases"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one node of a cluster.
    Server(Box<server_cmd::ServerArgs>),
    /// Start an N-node cluster on this machine as child processes; Ctrl-C stops it.
    Local(local::LocalArgs),
    /// Set KEY to VALUE.
    Set(client_cmd::SetArgs),
    /// Print the value of KEY (alone, on stdout); a missing key exits with 1.
    Get(client_cmd::GetArgs),
    /// Delete KEY.
    Delete(client_cmd::KeyArgs),
    /// Show every node's role, term, indexes and lease as a table (or JSON).
    Status(client_cmd::StatusArgs),
    /// An interactive prompt: SET, GET, DELETE, STATUS, HELP.
    Client(client_cmd::ConnArgs),
    /// Cluster membership: list, add a learner, promote, remove.
    Member(client_cmd::MemberArgs),
    /// Hand leadership to another voter (before maintenance of the leader).
    TransferLeader(client_cmd::TransferArgs),
    /// Leader placement: the voters leadership goes back to (until restart;
    /// `raftkv server --preferred-leaders` sets it at start).
    Placement(client_cmd::PlacementArgs),
    /// Ask a node's HTTP listener whether it is alive (/livez) or, with
    /// --ready, ready (/readyz); exit 0 or 1 (for container health checks).
    Health(health_cmd::HealthArgs),
    /// Load generator (raftkv or etcd), geo-mode proxy and benchmark tools.
    #[cfg(feature = "bench")]
    Bench(raftkv_bench::BenchArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Server(args) => server_cmd::run(*args),
        Command::Local(args) => local::run(args),
        Command::Set(args) => client_cmd::set(args),
        Command::Get(args) => client_cmd::get(args),
        Command::Delete(args) => client_cmd::delete(args),
        Command::Status(args) => client_cmd::status(args),
        Command::Client(args) => client_cmd::repl(args),
        Command::Member(args) => client_cmd::member(args),
        Command::TransferLeader(args) => client_cmd::transfer_leader(args),
        Command::Placement(args) => client_cmd::placement(args),
        Command::Health(args) => health_cmd::run(args),
        #[cfg(feature = "bench")]
        Command::Bench(args) => raftkv_bench::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("raftkv: error: {}", error_chain(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, `: `-separated, each message once:
/// many errors already include their source in their own message (a
/// storage error names the I/O error it wraps), which anyhow's `{:#}` would
/// print a second time.
fn error_chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if text.is_empty() || out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

const LEVELS: [&str; 6] = ["error", "warn", "info", "debug", "trace", "off"];

/// Checks a `--log-level`: a level, or comma-separated `target=level`
/// directives. A tracing filter would take a misspelt level (`debg`) as the
/// name of a target and then print nothing at all.
pub fn parse_log_level(text: &str) -> Result<String, String> {
    let accepted = || {
        format!(
            "accepted: {}, or target=level directives such as raftkv_server=debug (comma-separated)",
            LEVELS.join(", ")
        )
    };
    let is_level = |l: &str| LEVELS.iter().any(|x| x.eq_ignore_ascii_case(l.trim()));
    if text.trim().is_empty() {
        return Err(format!("--log-level is empty; {}", accepted()));
    }
    for directive in text.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let level = directive.rsplit_once('=').map_or(directive, |(_, l)| l);
        if !is_level(level) {
            return Err(format!(
                "--log-level {text:?}: {level:?} is not a level; {}",
                accepted()
            ));
        }
    }
    tracing_subscriber::EnvFilter::try_new(text)
        .map_err(|e| format!("--log-level {text:?}: {e}; {}", accepted()))?;
    Ok(text.to_owned())
}

/// Tracing to stderr at `level` (a tracing filter such as `info` or
/// `raftkv_server=debug`).
fn init_tracing(level: &str) -> anyhow::Result<()> {
    parse_log_level(level).map_err(|e| anyhow::anyhow!(e))?;
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .map_err(|e| anyhow::anyhow!("bad --log-level {level:?}: {e}"))?;
    // Colours only on a terminal: `raftkv local` sends node logs to files.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .init();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_levels_are_checked() {
        for ok in [
            "info",
            "DEBUG",
            "warn,raftkv_server=debug",
            "raftkv_core=trace",
            "off",
        ] {
            assert_eq!(parse_log_level(ok).as_deref(), Ok(ok));
        }
        assert_eq!(
            parse_log_level("debg").unwrap_err(),
            "--log-level \"debg\": \"debg\" is not a level; accepted: error, warn, info, \
             debug, trace, off, or target=level directives such as raftkv_server=debug \
             (comma-separated)"
        );
        assert!(parse_log_level("raftkv_server=debg").is_err());
        assert!(parse_log_level("").is_err());
    }

    #[test]
    fn an_error_chain_prints_each_message_once() {
        let io = std::io::Error::other("disk on fire");
        let inner = anyhow::Error::new(io).context("metadata.txt: read failed: disk on fire");
        let e = inner.context("node stopped with an error");
        assert_eq!(
            error_chain(&e),
            "node stopped with an error: metadata.txt: read failed: disk on fire"
        );
    }
}
