//! `raftkv bench`: single-client latency of SET and linearizable GET against
//! a running cluster (one operation at a time, so the figures are latencies,
//! not throughput).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;

use crate::client_cmd::ConnArgs;

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Operations of each kind.
    #[arg(long, default_value_t = 5000)]
    pub ops: usize,
    /// Value size in bytes.
    #[arg(long, default_value_t = 16)]
    pub value_bytes: usize,
    #[command(flatten)]
    pub conn: ConnArgs,
}

pub fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let client = args.conn.client()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let value = "x".repeat(args.value_bytes);
    rt.block_on(async {
        // Warm up: find the leader, open the connection.
        client.set("bench-warmup", &value).await?;
        let mut set_ns = Vec::with_capacity(args.ops);
        for i in 0..args.ops {
            let t = Instant::now();
            client.set(&format!("bench-{i}"), &value).await?;
            set_ns.push(t.elapsed());
        }
        let mut get_ns = Vec::with_capacity(args.ops);
        for i in 0..args.ops {
            let t = Instant::now();
            client.get(&format!("bench-{i}")).await?;
            get_ns.push(t.elapsed());
        }
        println!("{}", summary("SET", &mut set_ns));
        println!("{}", summary("GET", &mut get_ns));
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

fn summary(what: &str, samples: &mut [Duration]) -> String {
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize];
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    format!(
        "{what}: {} ops, median {:.0} us, p90 {:.0} us, p99 {:.0} us, max {:.0} us",
        samples.len(),
        us(at(0.5)),
        us(at(0.9)),
        us(at(0.99)),
        us(at(1.0))
    )
}
