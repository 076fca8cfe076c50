//! `raftkv`: run a node (`server`), a whole local cluster (`local`), or talk
//! to a cluster (`set`, `get`, `delete`, `status`, `client`).
//! See docs/server.md for the full tour.

mod client_cmd;
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
    /// Load generator (raftkv or etcd), geo-mode proxy and benchmark tools.
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
        Command::Bench(args) => raftkv_bench::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("raftkv: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Tracing to stderr at `level` (a tracing filter such as `info` or
/// `raftkv_server=debug`).
fn init_tracing(level: &str) -> anyhow::Result<()> {
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
