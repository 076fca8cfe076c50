//! `raftkv-netfault`: the real-network fault test (tracker issue 5).
//!
//! Builds the container image, checks that the compose cluster comes up and
//! serves, then runs a 3-node cluster on two Docker networks (peers, clients)
//! under a recorded client workload while it injects, one after another and
//! then mixed: the leader cut off from the peer network while clients still
//! reach it; a minority and a majority partition; `docker pause` of the leader
//! for longer than its lease; `docker kill` of the leader and of a follower
//! with restarts on the same volume; a rolling restart. It heals, waits for
//! the cluster to converge, reads every key, checks the whole history with
//! the linearizability checker and prints a summary. A second phase starts a
//! cluster with follower read leases, reads at a holder while it is cut off
//! from its peers and then paused past its lease, and checks that no read
//! was stale and that writes stalled only until the holder's guard passed.
//! Without a Docker engine
//! it prints `skipped: no Docker engine` and succeeds.

mod docker;
mod faults;

use std::path::PathBuf;
use std::process::{Command, ExitCode};

use anyhow::{bail, Context, Result};
use clap::Parser;

#[derive(Parser, Debug)]
#[command(
    version,
    about = "raftkv real-network fault test (needs a Docker engine)"
)]
pub struct Args {
    /// Image to test; built from this checkout unless --skip-build.
    #[arg(long, default_value = "raftkv:latest")]
    pub image: String,
    #[arg(long)]
    pub skip_build: bool,
    /// Skip the compose smoke test.
    #[arg(long)]
    pub skip_compose: bool,
    /// Seed for the mixed-fault phase and the workload.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Faults in the mixed phase.
    #[arg(long, default_value_t = 6)]
    pub mixed_faults: u32,
    /// Write the recorded history (JSON lines) here.
    #[arg(long)]
    pub history: Option<PathBuf>,
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn main() -> ExitCode {
    let args = Args::parse();
    if !docker::engine_available() {
        println!("skipped: no Docker engine");
        return ExitCode::SUCCESS;
    }
    match run(args) {
        Ok(true) => {
            println!("result: PASS");
            ExitCode::SUCCESS
        }
        Ok(false) => {
            println!("result: FAIL");
            ExitCode::FAILURE
        }
        Err(e) => {
            println!("result: ERROR: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<bool> {
    if !args.skip_build {
        build_image(&args.image)?;
    }
    if !args.skip_compose {
        compose_smoke(&args.image)?;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let main_phase = rt.block_on(faults::run(&args))?;
    let read_leases = rt.block_on(faults::run_read_leases(&args))?;
    Ok(main_phase && read_leases)
}

fn build_image(image: &str) -> Result<()> {
    println!("== building image {image}");
    let status = Command::new("bash")
        .arg(repo_root().join("scripts/build_image.sh"))
        .arg(image)
        .status()
        .context("running scripts/build_image.sh")?;
    if !status.success() {
        bail!("scripts/build_image.sh failed");
    }
    Ok(())
}

/// `docker compose` (v2) where present, else `docker-compose` (v1).
fn compose_command() -> Vec<String> {
    let v2 = Command::new("docker").args(["compose", "version"]).output();
    if v2.is_ok_and(|o| o.status.success()) {
        vec!["docker".into(), "compose".into()]
    } else {
        vec!["docker-compose".into()]
    }
}

struct ComposeProject {
    cmd: Vec<String>,
    project: String,
    file: PathBuf,
}

impl ComposeProject {
    fn run(&self, extra: &[&str]) -> Result<String> {
        let out = Command::new(&self.cmd[0])
            .args(&self.cmd[1..])
            .args(["-p", &self.project, "-f"])
            .arg(&self.file)
            .args(extra)
            .output()
            .context("running compose")?;
        if !out.status.success() {
            bail!(
                "compose {}: {}",
                extra.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }
}

impl Drop for ComposeProject {
    fn drop(&mut self) {
        let _ = self.run(&["down", "-v", "--timeout", "5"]);
    }
}

/// `deploy/compose.yaml` comes up, and a SET through one node is read back
/// through another, from inside the containers (names resolve in the
/// FROM-scratch image: the peers are given by host name).
fn compose_smoke(image: &str) -> Result<()> {
    println!("== compose smoke test (deploy/compose.yaml)");
    if image != "raftkv:latest" {
        docker::docker(&["tag", image, "raftkv:latest"])?;
    }
    let project = ComposeProject {
        cmd: compose_command(),
        project: format!("rkvsmoke{}", std::process::id()),
        file: repo_root().join("deploy/compose.yaml"),
    };
    project.run(&["up", "-d"])?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let endpoints = "--endpoints=127.0.0.1:7001";
    loop {
        let set = project.run(&[
            "exec",
            "-T",
            "node1",
            "/raftkv",
            "set",
            endpoints,
            "smoke-key",
            "smoke value",
        ]);
        if set.is_ok() {
            break;
        }
        if std::time::Instant::now() > deadline {
            bail!("compose cluster never accepted a SET: {set:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    let got = project.run(&[
        "exec",
        "-T",
        "node3",
        "/raftkv",
        "get",
        endpoints,
        "smoke-key",
    ])?;
    if got != "smoke value" {
        bail!("compose cluster returned {got:?} for smoke-key");
    }
    println!("compose: 3 nodes up, SET via node1 and GET via node3 agree");
    Ok(())
}

#[cfg(test)]
mod tests {
    /// The deployment files parse (the k8s manifests cannot run here).
    #[test]
    fn deployment_yaml_parses() {
        let root = super::repo_root().join("deploy");
        for file in ["compose.yaml", "compose.5.yaml", "k8s/raftkv.yaml"] {
            let text = std::fs::read_to_string(root.join(file)).unwrap();
            let docs: Vec<serde_yaml::Value> = serde_yaml::Deserializer::from_str(&text)
                .map(|d| {
                    serde::Deserialize::deserialize(d).unwrap_or_else(|e| panic!("{file}: {e}"))
                })
                .collect();
            assert!(!docs.is_empty(), "{file} is empty");
            for doc in &docs {
                assert!(doc.is_mapping(), "{file}: a document is not a mapping");
            }
        }
    }

    /// `scripts/deploy_remote.sh --dry-run` prints every step and contacts
    /// nobody; a wrong host count is refused.
    #[test]
    fn deploy_remote_dry_run_prints_every_step() {
        let script = super::repo_root().join("scripts/deploy_remote.sh");
        let out = std::process::Command::new("bash")
            .arg(&script)
            .args(["--dry-run", "--user", "ops", "host-a", "host-b", "host-c"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("peers = \"1=host-a:7001,2=host-b:7001,3=host-c:7001\""),
            "{text}"
        );
        assert_eq!(
            text.matches("#   http-listen = \"127.0.0.1:9101\"").count(),
            3,
            "{text}"
        );
        assert_eq!(
            text.matches("+ scp target/release/raftkv").count(),
            3,
            "{text}"
        );
        for host in ["host-a", "host-b", "host-c"] {
            assert!(text.contains(&format!("ops@{host}")), "{text}");
        }
        assert_eq!(text.matches("systemctl\\ enable").count(), 3, "{text}");
        let bad = std::process::Command::new("bash")
            .arg(&script)
            .args(["--dry-run", "h1", "h2"])
            .output()
            .unwrap();
        assert!(!bad.status.success());
        assert!(String::from_utf8_lossy(&bad.stderr).contains("give 3, 5 or 7 hosts"));
    }
}
