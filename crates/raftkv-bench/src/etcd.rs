//! A minimal etcd v3 client (Put, Range, Status) over the API subset in
//! `proto/etcd_kv_subset.proto`, using the same tonic stack as raftkv's
//! client so both systems are driven through identical transport code.

use std::time::Duration;

use anyhow::{bail, Context};
use tonic::transport::{Channel, Endpoint};

/// Generated etcd protobuf and gRPC types (a subset).
#[allow(clippy::all, missing_docs)]
pub mod pb {
    tonic::include_proto!("etcdserverpb");
}

use pb::kv_client::KvClient;
use pb::maintenance_client::MaintenanceClient;

/// One gRPC connection to one etcd member; clone it to share the connection.
#[derive(Clone)]
pub struct EtcdConn {
    kv: KvClient<Channel>,
    rpc_timeout: Duration,
}

/// Opens a connection (lazily) to `endpoint` (`host:port`, `http://` optional).
pub fn channel(endpoint: &str, connect_timeout: Duration) -> anyhow::Result<Channel> {
    let ep = endpoint.trim_start_matches("http://");
    Ok(Endpoint::from_shared(format!("http://{ep}"))
        .with_context(|| format!("bad etcd endpoint {endpoint:?}"))?
        .connect_timeout(connect_timeout)
        .tcp_nodelay(true)
        .connect_lazy())
}

impl EtcdConn {
    pub fn new(endpoint: &str, rpc_timeout: Duration) -> anyhow::Result<EtcdConn> {
        let ch = channel(endpoint, Duration::from_millis(500))?;
        Ok(EtcdConn {
            kv: KvClient::new(ch),
            rpc_timeout,
        })
    }

    pub async fn put(&mut self, key: &str, value: &str) -> anyhow::Result<()> {
        let req = pb::PutRequest {
            key: key.as_bytes().to_vec(),
            value: value.as_bytes().to_vec(),
            ..Default::default()
        };
        tokio::time::timeout(self.rpc_timeout, self.kv.put(req))
            .await
            .context("etcd put timed out")??;
        Ok(())
    }

    /// A single-key read: linearizable (etcd's default, a ReadIndex round)
    /// or serializable (served from the member's local state).
    pub async fn get(&mut self, key: &str, serializable: bool) -> anyhow::Result<bool> {
        let req = pb::RangeRequest {
            key: key.as_bytes().to_vec(),
            serializable,
            ..Default::default()
        };
        let reply = tokio::time::timeout(self.rpc_timeout, self.kv.range(req))
            .await
            .context("etcd get timed out")??;
        Ok(!reply.into_inner().kvs.is_empty())
    }
}

/// The member status of one endpoint: (its member id, the leader's id).
pub async fn status(endpoint: &str) -> anyhow::Result<(u64, u64)> {
    let ch = channel(endpoint, Duration::from_millis(500))?;
    let mut m = MaintenanceClient::new(ch);
    let reply = tokio::time::timeout(Duration::from_secs(1), m.status(pb::StatusRequest {}))
        .await
        .context("etcd status timed out")??
        .into_inner();
    let member = reply.header.map(|h| h.member_id).unwrap_or(0);
    Ok((member, reply.leader))
}

/// The endpoint of the current etcd leader, among `endpoints`.
pub async fn find_leader(endpoints: &[String]) -> anyhow::Result<String> {
    for ep in endpoints {
        if let Ok((member, leader)) = status(ep).await {
            if member != 0 && member == leader {
                return Ok(ep.clone());
            }
        }
    }
    bail!("no etcd endpoint among {endpoints:?} reports itself as leader")
}
