//! A containerised raftkv cluster driven through the `docker` command line.
//! Everything it creates carries the run's prefix and is removed on drop,
//! also when the test fails or panics.

use std::process::Command;

use anyhow::{bail, Context, Result};

/// Run `docker ARGS`, returning stdout; an error carries stderr.
pub fn docker(args: &[&str]) -> Result<String> {
    let out = Command::new("docker")
        .args(args)
        .output()
        .context("running docker")?;
    if !out.status.success() {
        bail!(
            "docker {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Whether a Docker engine answers.
pub fn engine_available() -> bool {
    Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

pub struct Node {
    pub container: String,
    pub client_ip: String,
}

impl Node {
    pub fn endpoint(&self) -> String {
        format!("{}:7001", self.client_ip)
    }
}

/// The cluster: a peer network (node to node), a client network (clients to
/// nodes, and this test), one volume per node.
pub struct Cluster {
    pub prefix: String,
    pub peer_net: String,
    pub client_net: String,
    pub nodes: Vec<Node>,
    /// Subnet prefixes like "10.213.7" of the two networks.
    peer_subnet: String,
}

impl Cluster {
    pub fn start(prefix: &str, image: &str, n: u64, server_flags: &[String]) -> Result<Cluster> {
        let peer_net = format!("{prefix}-peers");
        let client_net = format!("{prefix}-clients");
        let mut cluster = Cluster {
            prefix: prefix.to_owned(),
            peer_net: peer_net.clone(),
            client_net: client_net.clone(),
            nodes: Vec::new(),
            peer_subnet: String::new(),
        };
        // Networks are created first so that Drop removes them even if a
        // later step fails.
        let peer_subnet = create_network(&peer_net, true)?;
        cluster.peer_subnet = peer_subnet.clone();
        let client_subnet = create_network(&client_net, false)?;
        let ids: Vec<u64> = (1..=n).collect();
        let peers: Vec<String> = ids
            .iter()
            .map(|i| format!("{i}={peer_subnet}.{}:7001", 10 + i))
            .collect();
        let clients: Vec<String> = ids
            .iter()
            .map(|i| format!("{i}={client_subnet}.{}:7001", 10 + i))
            .collect();
        for &id in &ids {
            let container = format!("{prefix}-node{id}");
            let node = Node {
                container: container.clone(),
                client_ip: format!("{client_subnet}.{}", 10 + id),
            };
            let volume = format!("{prefix}-data{id}");
            let mut args: Vec<String> = [
                "create",
                "--name",
                &container,
                "--hostname",
                &format!("node{id}"),
                "--network",
                &client_net,
                "--ip",
                &node.client_ip,
                "-v",
                &format!("{volume}:/data"),
                "--label",
                &format!("raftkv-netfault={prefix}"),
                image,
                "--id",
                &id.to_string(),
                "--cluster-id",
                prefix,
                "--peers",
                &peers.join(","),
                "--client-addrs",
                &clients.join(","),
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            args.extend(server_flags.iter().cloned());
            // Odd ids on a one-thread runtime (followers persist in line),
            // even ids on the default one: the faults hit both.
            if id % 2 == 1 && !server_flags.iter().any(|f| f == "--runtime-threads") {
                args.extend(["--runtime-threads".to_owned(), "1".to_owned()]);
            }
            cluster.nodes.push(node);
            docker(&args.iter().map(String::as_str).collect::<Vec<_>>())?;
            cluster.connect_peers(id)?;
            docker(&["start", &container])?;
        }
        Ok(cluster)
    }

    pub fn node(&self, id: u64) -> &Node {
        &self.nodes[(id - 1) as usize]
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.nodes.iter().map(Node::endpoint).collect()
    }

    /// Cut a node off the peer network (clients still reach it).
    pub fn disconnect_peers(&self, id: u64) -> Result<()> {
        docker(&[
            "network",
            "disconnect",
            "--force",
            &self.peer_net,
            &self.node(id).container,
        ])
        .map(drop)
    }

    pub fn connect_peers(&self, id: u64) -> Result<()> {
        let node = self.node(id);
        let ip = format!("{}.{}", self.peer_subnet, 10 + id);
        docker(&[
            "network",
            "connect",
            "--ip",
            &ip,
            &self.peer_net,
            &node.container,
        ])
        .map(drop)
    }

    pub fn pause(&self, id: u64) -> Result<()> {
        docker(&["pause", &self.node(id).container]).map(drop)
    }

    pub fn unpause(&self, id: u64) -> Result<()> {
        docker(&["unpause", &self.node(id).container]).map(drop)
    }

    pub fn kill(&self, id: u64) -> Result<()> {
        docker(&["kill", "--signal", "KILL", &self.node(id).container]).map(drop)
    }

    pub fn start_node(&self, id: u64) -> Result<()> {
        docker(&["start", &self.node(id).container]).map(drop)
    }

    /// SIGTERM, wait for a clean exit (10 s at most), start again.
    pub fn restart(&self, id: u64) -> Result<()> {
        docker(&["restart", "--time", "10", &self.node(id).container]).map(drop)
    }

    pub fn logs(&self, id: u64) -> String {
        docker(&["logs", "--tail", "30", &self.node(id).container])
            .unwrap_or_else(|e| e.to_string())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &self.nodes {
            let _ = docker(&["unpause", &node.container]);
            let _ = docker(&["rm", "-f", "-v", &node.container]);
        }
        for id in 1..=self.nodes.len() {
            let _ = docker(&["volume", "rm", "-f", &format!("{}-data{id}", self.prefix)]);
        }
        let _ = docker(&["network", "rm", &self.peer_net]);
        let _ = docker(&["network", "rm", &self.client_net]);
    }
}

/// Create a network on a free /24 under 10.213.0.0/16; returns "10.213.K".
fn create_network(name: &str, internal: bool) -> Result<String> {
    let _ = docker(&["network", "rm", name]);
    let mut last_err = None;
    for attempt in 0..40u64 {
        let k =
            (std::process::id() as u64 + attempt * 37 + if internal { 0 } else { 101 }) % 250 + 1;
        let prefix = format!("10.213.{k}");
        let subnet = format!("{prefix}.0/24");
        let mut args = vec![
            "network",
            "create",
            "--subnet",
            &subnet,
            "--label",
            "raftkv-netfault",
        ];
        if internal {
            args.push("--internal");
        }
        args.push(name);
        match docker(&args) {
            Ok(_) => return Ok(prefix),
            Err(e) => last_err = Some(e),
        }
    }
    Err(last_err.expect("tried at least once"))
}
