//! The load generator end to end against fake raftkv and etcd servers (in
//! this process, on free loopback ports): it must issue exactly the asked
//! operations, with the asked consistency, and report them.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use clap::Parser;
use raftkv_bench::etcd::pb as epb;
use raftkv_client::pb;
use tonic::{Request, Response, Status};

/// What a fake server saw.
#[derive(Default)]
struct Seen {
    writes: u64,
    linearizable_reads: u64,
    stale_reads: u64,
    keys: HashMap<String, String>,
    fail_all: bool,
}

type Shared = Arc<Mutex<Seen>>;

struct FakeRaftkv(Shared);

#[tonic::async_trait]
impl pb::kv_server::Kv for FakeRaftkv {
    async fn set(&self, req: Request<pb::SetRequest>) -> Result<Response<pb::WriteReply>, Status> {
        let r = req.into_inner();
        let mut s = self.0.lock().unwrap();
        if s.fail_all {
            return Err(Status::invalid_argument("refused by the fake"));
        }
        assert_ne!(r.client_id, 0, "writes must carry a session");
        s.writes += 1;
        s.keys.insert(r.key, r.value);
        Ok(Response::new(pb::WriteReply {
            index: s.writes,
            existed: false,
            served_by: 1,
        }))
    }

    async fn delete(
        &self,
        _: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::WriteReply>, Status> {
        Err(Status::unimplemented("not used by the generator"))
    }

    async fn get(&self, req: Request<pb::GetRequest>) -> Result<Response<pb::GetReply>, Status> {
        let r = req.into_inner();
        let mut s = self.0.lock().unwrap();
        if r.consistency == pb::Consistency::Stale as i32 {
            s.stale_reads += 1;
        } else {
            s.linearizable_reads += 1;
        }
        let value = s.keys.get(&r.key).cloned();
        Ok(Response::new(pb::GetReply {
            found: value.is_some(),
            value: value.unwrap_or_default(),
            served_by: 1,
            ..Default::default()
        }))
    }

    async fn serve_client(
        &self,
        _: Request<pb::ServeClientRequest>,
    ) -> Result<Response<pb::ServeClientReply>, Status> {
        Err(Status::unimplemented("not used by the generator"))
    }

    async fn status(
        &self,
        _: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusReply>, Status> {
        let s = self.0.lock().unwrap();
        Ok(Response::new(pb::StatusReply {
            id: 1,
            role: "leader".into(),
            applied_index: s.writes,
            commit_index: s.writes,
            counters: vec![pb::Counter {
                name: "writes_proposed".into(),
                value: s.writes,
            }],
            ..Default::default()
        }))
    }
}

struct FakeEtcdKv(Shared);

#[tonic::async_trait]
impl epb::kv_server::Kv for FakeEtcdKv {
    async fn range(
        &self,
        req: Request<epb::RangeRequest>,
    ) -> Result<Response<epb::RangeResponse>, Status> {
        let r = req.into_inner();
        let mut s = self.0.lock().unwrap();
        if r.serializable {
            s.stale_reads += 1;
        } else {
            s.linearizable_reads += 1;
        }
        let key = String::from_utf8(r.key).unwrap();
        let kvs = s
            .keys
            .get(&key)
            .map(|v| epb::KeyValue {
                key: key.clone().into_bytes(),
                value: v.clone().into_bytes(),
                ..Default::default()
            })
            .into_iter()
            .collect();
        Ok(Response::new(epb::RangeResponse {
            kvs,
            ..Default::default()
        }))
    }

    async fn put(
        &self,
        req: Request<epb::PutRequest>,
    ) -> Result<Response<epb::PutResponse>, Status> {
        let r = req.into_inner();
        let mut s = self.0.lock().unwrap();
        s.writes += 1;
        s.keys.insert(
            String::from_utf8(r.key).unwrap(),
            String::from_utf8(r.value).unwrap(),
        );
        Ok(Response::new(epb::PutResponse::default()))
    }
}

struct FakeEtcdMaintenance;

#[tonic::async_trait]
impl epb::maintenance_server::Maintenance for FakeEtcdMaintenance {
    async fn status(
        &self,
        _: Request<epb::StatusRequest>,
    ) -> Result<Response<epb::StatusResponse>, Status> {
        Ok(Response::new(epb::StatusResponse {
            header: Some(epb::ResponseHeader {
                member_id: 7,
                ..Default::default()
            }),
            leader: 7,
            ..Default::default()
        }))
    }
}

/// A server on its own runtime thread; dropping it stops the runtime.
struct FakeServer {
    addr: SocketAddr,
    _runtime: tokio::runtime::Runtime,
}

fn serve(router: tonic::transport::server::Router) -> FakeServer {
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    std_listener.set_nonblocking(true).unwrap();
    let addr = std_listener.local_addr().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    runtime.spawn(async move {
        let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
        // Without NODELAY, delayed ACKs stall small replies by 40 ms.
        let incoming =
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
        router.serve_with_incoming(incoming).await.unwrap();
    });
    FakeServer {
        addr,
        _runtime: runtime,
    }
}

fn fake_raftkv(seen: &Shared) -> FakeServer {
    serve(
        tonic::transport::Server::builder()
            .add_service(pb::kv_server::KvServer::new(FakeRaftkv(seen.clone()))),
    )
}

fn fake_etcd(seen: &Shared) -> FakeServer {
    serve(
        tonic::transport::Server::builder()
            .add_service(epb::kv_server::KvServer::new(FakeEtcdKv(seen.clone())))
            .add_service(epb::maintenance_server::MaintenanceServer::new(
                FakeEtcdMaintenance,
            )),
    )
}

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: raftkv_bench::BenchArgs,
}

/// Runs the generator with `args`; returns whether it succeeded.
fn bench(args: &[&str]) -> bool {
    let cli = Cli::try_parse_from(std::iter::once("raftkv-bench").chain(args.iter().copied()))
        .expect("arguments parse");
    let code = raftkv_bench::run(cli.args).expect("run");
    format!("{code:?}") == format!("{:?}", std::process::ExitCode::SUCCESS)
}

fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn raftkv_put_issues_exactly_the_total() {
    let seen = Shared::default();
    let server = fake_raftkv(&seen);
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("put.json");
    let plot = dir.path().join("put.svg");
    let ep = server.addr.to_string();
    assert!(bench(&[
        "put",
        "--endpoints",
        &ep,
        "--clients",
        "4",
        "--conns",
        "2",
        "--total",
        "300",
        "--no-progress",
        "--json",
        json.to_str().unwrap(),
        "--plot",
        plot.to_str().unwrap(),
    ]));
    let v = read_json(&json);
    assert_eq!(v["writes"], 300);
    assert_eq!(v["reads"], 0);
    assert_eq!(v["errors"], 0);
    assert!(v["latency"]["p50_us"].as_f64().unwrap() > 0.0);
    assert!(v["latency"]["max_us"].as_f64().unwrap() >= v["latency"]["p99_us"].as_f64().unwrap());
    // The generator's own process listens on no endpoint port; the fake
    // server is this test process, so the cluster's pid is ours.
    assert_eq!(v["cluster_pids"][0], std::process::id());
    assert_eq!(v["server_counters"]["writes_proposed"], 300);
    let s = seen.lock().unwrap();
    assert_eq!(s.writes, 300, "exactly --total writes, no warm-up write");
    assert!(s.keys.keys().all(|k| k.len() == 16));
    assert!(s.keys.values().all(|v| v.len() == 256));
    assert!(std::fs::read_to_string(plot).unwrap().contains("<polyline"));
}

#[test]
fn raftkv_get_preloads_then_reads_with_the_asked_consistency() {
    let seen = Shared::default();
    let server = fake_raftkv(&seen);
    let ep = server.addr.to_string();
    assert!(bench(&[
        "get",
        "--endpoints",
        &ep,
        "--clients",
        "3",
        "--total",
        "200",
        "--key-space",
        "50",
        "--consistency",
        "stale",
        "--no-progress",
    ]));
    let s = seen.lock().unwrap();
    assert_eq!(s.writes, 50, "the preload writes each key once");
    assert_eq!(s.keys.len(), 50);
    assert_eq!(s.stale_reads, 200);
}

#[test]
fn raftkv_mixed_follows_the_read_ratio() {
    let seen = Shared::default();
    let server = fake_raftkv(&seen);
    let ep = server.addr.to_string();
    assert!(bench(&[
        "mixed",
        "--endpoints",
        &ep,
        "--clients",
        "2",
        "--total",
        "2000",
        "--key-space",
        "10",
        "--read-ratio",
        "0.9",
        "--no-preload",
        "--no-progress",
    ]));
    let s = seen.lock().unwrap();
    // The generator's first read (leader discovery) is linearizable too.
    let reads = s.linearizable_reads - 1;
    assert_eq!(reads + s.writes, 2000);
    assert!(
        (1700..=1900).contains(&reads),
        "{reads} reads of 2000 at ratio 0.9"
    );
}

#[test]
fn etcd_target_talks_to_the_leader_with_serializable_reads() {
    let seen = Shared::default();
    let server = fake_etcd(&seen);
    let ep = server.addr.to_string();
    assert!(bench(&[
        "put",
        "--target",
        "etcd",
        "--endpoints",
        &ep,
        "--total",
        "100",
        "--no-progress",
    ]));
    assert!(bench(&[
        "get",
        "--target",
        "etcd",
        "--endpoints",
        &ep,
        "--total",
        "100",
        "--key-space",
        "20",
        "--consistency",
        "serializable",
        "--no-progress",
    ]));
    let s = seen.lock().unwrap();
    assert_eq!(s.writes, 100 + 20);
    assert_eq!(s.stale_reads, 100);
}

#[test]
fn a_run_whose_operations_fail_exits_with_failure() {
    let seen = Shared::default();
    seen.lock().unwrap().fail_all = true;
    let server = fake_raftkv(&seen);
    let ep = server.addr.to_string();
    assert!(!bench(&[
        "put",
        "--endpoints",
        &ep,
        "--total",
        "20",
        "--no-progress"
    ]));
}
