//! Committed proposals per second of the core alone: a 3-node cluster in one
//! process, instant in-memory storage, no network (`testkit::InstantCluster`).
//! Each of P proposers keeps one write outstanding and proposes again when
//! its result arrives.
//!
//! Run: `cargo bench -p raftkv-core --bench core_throughput`
//! (`-- --secs 5` to measure longer).

use std::time::{Duration, Instant};

use raftkv_core::testkit::InstantCluster;
use raftkv_core::{ClientCommand, ClientId, MonoTime, Op};

fn measure(proposers: u64, secs: f64) -> (f64, u64) {
    let mut c = InstantCluster::new(3);
    c.run(Duration::from_secs(3));
    let leader = c.leader().expect("leader elected");
    c.run(Duration::from_secs(1)); // past the new leader's lease wait
    let base = c.now;
    let start = Instant::now();
    let mut seqs = vec![0u64; proposers as usize + 1];
    let mut idle: Vec<u64> = (1..=proposers).collect();
    let mut committed = 0u64;
    let value = "v".repeat(100);
    while start.elapsed().as_secs_f64() < secs {
        let now = MonoTime(base.0 + start.elapsed().as_nanos() as u64);
        for client in idle.drain(..) {
            seqs[client as usize] += 1;
            let seq = seqs[client as usize];
            let key = format!("key-{:08}", (client * 7919 + seq) % 100_000);
            let cmd = ClientCommand {
                client_id: ClientId(client),
                seq,
                op: Op::Set {
                    key,
                    value: value.clone(),
                },
            };
            c.nodes[leader].propose(now, cmd).expect("leader accepts");
        }
        c.tick_to(now);
        for w in c.writes.drain(..) {
            assert!(w.outcome.is_ok(), "{w:?}");
            committed += 1;
            idle.push(w.client_id.0);
        }
    }
    (committed as f64 / start.elapsed().as_secs_f64(), committed)
}

fn main() {
    let mut secs = 2.0;
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--secs") {
        secs = args[i + 1].parse().expect("--secs N");
    }
    println!(
        "core throughput, 3 nodes in one process, instant storage and network, 100-byte values"
    );
    println!("{:>10} {:>16} {:>12}", "proposers", "commits/s", "commits");
    for p in [1u64, 64, 1024] {
        let (rate, n) = measure(p, secs);
        println!("{p:>10} {rate:>16.0} {n:>12}");
    }
}
