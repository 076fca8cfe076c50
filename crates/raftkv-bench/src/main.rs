//! `raftkv-bench`: the same commands as `raftkv bench`, as a standalone
//! binary (see the crate docs).

use std::process::ExitCode;

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "raftkv-bench",
    version,
    about = "Load generator for raftkv and etcd, geo-mode proxy, benchmark helpers"
)]
struct Cli {
    #[command(flatten)]
    args: raftkv_bench::BenchArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match raftkv_bench::run(cli.args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("raftkv-bench: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
