//! Helpers for the scripts in `bench/`: free ports, leader discovery,
//! waiting for a restarted node, resident memory, and the failover probe.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use raftkv_client::{Client, ClientOptions, Consistency};

use crate::target::Target;
use crate::{etcd, procs};

#[derive(Args, Debug)]
pub struct FreePortsArgs {
    /// How many ports.
    #[arg(default_value_t = 1)]
    pub count: usize,
}

/// Binds `count` listeners at once (so the ports differ), prints the ports.
pub fn free_ports(a: FreePortsArgs) -> anyhow::Result<ExitCode> {
    let listeners: Vec<std::net::TcpListener> = (0..a.count)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<_, _>>()?;
    let ports: Vec<String> = listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port().to_string()))
        .collect::<Result<_, _>>()?;
    println!("{}", ports.join(" "));
    Ok(ExitCode::SUCCESS)
}

#[derive(Args, Debug)]
pub struct WaitLeaderArgs {
    #[arg(long, value_enum, default_value = "raftkv")]
    pub target: Target,
    #[arg(long, value_delimiter = ',', required = true)]
    pub endpoints: Vec<String>,
    #[arg(long, default_value_t = 30_000)]
    pub timeout_ms: u64,
}

fn raftkv_probe_client(endpoints: &[String]) -> anyhow::Result<Client> {
    let opts = ClientOptions {
        rpc_timeout: Duration::from_millis(500),
        deadline: Duration::from_millis(500),
        ..ClientOptions::default()
    };
    Ok(Client::new(endpoints, opts)?)
}

/// The endpoint (among those given) of a raftkv leader that serves a
/// linearizable read, if there is one now.
pub async fn raftkv_leader(client: &Client, endpoints: &[String]) -> Option<String> {
    for ep in endpoints {
        let Ok(s) = client.status_at(ep).await else {
            continue;
        };
        if s.role == "leader"
            && client
                .get_at(ep, "probe", Consistency::Linearizable)
                .await
                .is_ok()
        {
            return Some(ep.clone());
        }
    }
    None
}

/// Prints the leader's endpoint once the cluster serves reads.
pub async fn wait_leader(a: WaitLeaderArgs) -> anyhow::Result<ExitCode> {
    let give_up = Instant::now() + Duration::from_millis(a.timeout_ms);
    let client = raftkv_probe_client(&a.endpoints)?;
    loop {
        let leader = match a.target {
            Target::Raftkv => raftkv_leader(&client, &a.endpoints).await,
            Target::Etcd => etcd::find_leader(&a.endpoints).await.ok(),
        };
        if let Some(l) = leader {
            println!("{l}");
            return Ok(ExitCode::SUCCESS);
        }
        if Instant::now() >= give_up {
            bail!(
                "no leader among {:?} after {} ms",
                a.endpoints,
                a.timeout_ms
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[derive(Args, Debug)]
pub struct WaitAppliedArgs {
    /// The raftkv node to watch.
    #[arg(long)]
    pub endpoint: String,
    /// Wait until its applied index reaches this.
    #[arg(long, required_unless_present = "index_from")]
    pub index: Option<u64>,
    /// Or: the commit index that this node (the leader) reports now.
    #[arg(long)]
    pub index_from: Option<String>,
    #[arg(long, default_value_t = 60_000)]
    pub timeout_ms: u64,
}

/// Polls a node until it answers with `applied_index >= index`; prints the
/// milliseconds this took.
pub async fn wait_applied(a: WaitAppliedArgs) -> anyhow::Result<ExitCode> {
    let t0 = Instant::now();
    let client = raftkv_probe_client(std::slice::from_ref(&a.endpoint))?;
    let index = match (&a.index_from, a.index) {
        (Some(from), _) => client.status_at(from).await?.commit_index,
        (None, Some(i)) => i,
        (None, None) => bail!("give --index or --index-from"),
    };
    let mut first_answer_ms = None;
    loop {
        if let Ok(s) = client.status_at(&a.endpoint).await {
            let ms = t0.elapsed().as_secs_f64() * 1e3;
            first_answer_ms.get_or_insert(ms);
            if s.applied_index >= index {
                println!(
                    "answered_ms={:.0} applied_ms={ms:.0} applied_index={}",
                    first_answer_ms.unwrap_or(ms),
                    s.applied_index
                );
                return Ok(ExitCode::SUCCESS);
            }
        }
        if t0.elapsed() >= Duration::from_millis(a.timeout_ms) {
            bail!(
                "{} did not apply index {index} in {} ms",
                a.endpoint,
                a.timeout_ms
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[derive(Args, Debug)]
pub struct RssArgs {
    /// Report the processes listening on these ports' endpoints.
    #[arg(long, value_delimiter = ',')]
    pub endpoints: Vec<String>,
    /// Or these process ids.
    #[arg(long, value_delimiter = ',')]
    pub pids: Vec<u32>,
}

/// Prints `pid rss_bytes` lines.
pub fn rss(a: RssArgs) -> anyhow::Result<ExitCode> {
    let mut pids = a.pids.clone();
    pids.extend(procs::pids_listening_on(&a.endpoints));
    if pids.is_empty() {
        bail!("no process found");
    }
    for pid in pids {
        let rss = procs::rss_bytes(pid).with_context(|| format!("no /proc/{pid}/status"))?;
        println!("{pid} {rss}");
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Args, Debug)]
pub struct FailoverArgs {
    #[arg(long, value_delimiter = ',', required = true)]
    pub endpoints: Vec<String>,
    /// Run the steady clients this long before the kill.
    #[arg(long, default_value_t = 2000)]
    pub before_ms: u64,
    /// Keep running this long after the kill.
    #[arg(long, default_value_t = 6000)]
    pub after_ms: u64,
    /// Timeout of one attempt (a dead leader costs this before the client moves on).
    #[arg(long, default_value_t = 100)]
    pub rpc_timeout_ms: u64,
    /// Write the figures as JSON here.
    #[arg(long)]
    pub json: Option<std::path::PathBuf>,
}

/// Completion times of successful operations, issue time included.
#[derive(Default)]
struct Timeline {
    /// (issued, completed) of every success.
    ok: Vec<(Instant, Instant)>,
}

impl Timeline {
    /// From `kill` to the completion of the first success issued after it.
    fn unavailable_after(&self, kill: Instant) -> Option<Duration> {
        self.ok
            .iter()
            .find(|(issued, _)| *issued >= kill)
            .map(|(_, done)| done.saturating_duration_since(kill))
    }

    /// The longest time between two consecutive successful completions.
    fn max_gap(&self) -> Duration {
        self.ok
            .windows(2)
            .map(|w| w[1].1.saturating_duration_since(w[0].1))
            .max()
            .unwrap_or_default()
    }
}

async fn steady(client: Arc<Client>, read: bool, stop_at: Instant) -> Timeline {
    let mut t = Timeline::default();
    let value = "v".repeat(100);
    let mut n = 0u64;
    while Instant::now() < stop_at {
        let issued = Instant::now();
        let key = format!("failover-{}", n % 100);
        let ok = if read {
            client.get(&key).await.is_ok()
        } else {
            client.set(&key, &value).await.is_ok()
        };
        if ok {
            t.ok.push((issued, Instant::now()));
        }
        n += 1;
    }
    t
}

/// Kills the leader (SIGKILL) under a steady writer and a steady reader and
/// reports how long each could not complete an operation.
pub async fn failover(a: FailoverArgs) -> anyhow::Result<ExitCode> {
    let probe = raftkv_probe_client(&a.endpoints)?;
    let leader = raftkv_leader(&probe, &a.endpoints)
        .await
        .context("no leader to kill")?;
    let pids = procs::pids_listening_on(std::slice::from_ref(&leader));
    let [pid] = pids[..] else {
        bail!("expected one process listening on {leader}, found {pids:?}");
    };
    let opts = ClientOptions {
        rpc_timeout: Duration::from_millis(a.rpc_timeout_ms),
        deadline: Duration::from_secs(30),
        backoff_max: Duration::from_millis(20),
        ..ClientOptions::default()
    };
    let writer = Arc::new(Client::new(&a.endpoints, opts.clone())?);
    let reader = Arc::new(writer.with_new_session());
    let start = Instant::now();
    let stop_at = start + Duration::from_millis(a.before_ms + a.after_ms);
    let w = tokio::spawn(steady(writer, false, stop_at));
    let r = tokio::spawn(steady(reader, true, stop_at));
    tokio::time::sleep(Duration::from_millis(a.before_ms)).await;
    let pid_t = libc::pid_t::try_from(pid)?;
    let kill_at = Instant::now();
    // SAFETY: kill has no memory preconditions; the pid is the leader's.
    if unsafe { libc::kill(pid_t, libc::SIGKILL) } != 0 {
        bail!("kill -9 {pid}: {}", std::io::Error::last_os_error());
    }
    let (w, r) = (w.await?, r.await?);
    let ms = |d: Option<Duration>| d.map(|d| d.as_secs_f64() * 1e3);
    let figures = serde_json::json!({
        "killed_leader": leader,
        "killed_pid": pid,
        "write_unavailable_ms": ms(w.unavailable_after(kill_at)),
        "read_unavailable_ms": ms(r.unavailable_after(kill_at)),
        "write_max_gap_ms": ms(Some(w.max_gap())),
        "read_max_gap_ms": ms(Some(r.max_gap())),
        "writes_ok": w.ok.len(),
        "reads_ok": r.ok.len(),
    });
    println!("{figures}");
    if let Some(path) = &a.json {
        std::fs::write(path, serde_json::to_string_pretty(&figures)? + "\n")?;
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeline_measures_from_the_kill() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let t = Timeline {
            ok: vec![
                (at(0), at(1)),
                (at(2), at(3)),
                (at(5), at(900)),
                (at(901), at(902)),
            ],
        };
        // Issued at 5 (after the kill at 4), done at 900.
        assert_eq!(t.unavailable_after(at(4)), Some(Duration::from_millis(896)));
        assert_eq!(t.max_gap(), Duration::from_millis(897));
        assert_eq!(t.unavailable_after(at(1000)), None);
    }
}
