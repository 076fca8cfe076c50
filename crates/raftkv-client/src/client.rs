//! The retrying, leader-following client.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

use crate::error::ClientError;
use crate::pb;
use crate::pb::admin_client::AdminClient;
use crate::pb::kv_client::KvClient;

#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// How long one call (with all its retries) may take.
    pub deadline: Duration,
    /// How long one attempt against one node may take. Keep it short: a
    /// paused or partitioned leader costs this much before the client moves on.
    pub rpc_timeout: Duration,
    pub connect_timeout: Duration,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// After an attempt at a node timed out or could not connect, leader
    /// hints naming that node are ignored for this long (the other nodes may
    /// still believe in a leader that is gone).
    pub suspect_for: Duration,
    /// A call gives up before its deadline once every endpoint has refused
    /// the connection (nothing listens there) at its last attempt and this
    /// long has passed: a cluster that is down fails fast.
    pub give_up_unreachable_after: Duration,
}

/// The largest gRPC message the client sends or accepts: above any value a
/// node accepts (`--max-value-bytes` is at most 16 MiB), so the node's own
/// limit is the one a caller meets, with its message.
pub const MAX_MESSAGE_BYTES: usize = 64 << 20;

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            deadline: Duration::from_secs(10),
            rpc_timeout: Duration::from_millis(1000),
            connect_timeout: Duration::from_millis(500),
            backoff_min: Duration::from_millis(5),
            backoff_max: Duration::from_millis(200),
            suspect_for: Duration::from_millis(1500),
            give_up_unreachable_after: Duration::from_millis(2000),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Consistency {
    /// From the leader (under its lease or after a ReadIndex round), or
    /// from a follower holding a read lease.
    Linearizable,
    /// Whatever the node asked has applied.
    Stale,
    /// Missing no write made visible more than this long before the call:
    /// served by the first node asked when it can prove that, otherwise
    /// redirected to the leader.
    Bounded(Duration),
}

/// A successful answer, with the node that gave it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer<T> {
    pub value: T,
    pub served_by: u64,
    pub endpoint: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriteOutcome {
    pub index: u64,
    /// For a delete: whether the key existed.
    pub existed: bool,
}

/// How far behind a stale read may be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StaleInfo {
    pub applied_index: u64,
    pub commit_index: u64,
    pub since_leader_contact_ms: Option<u64>,
}

struct Shared {
    endpoints: Mutex<Vec<String>>,
    conns: Mutex<HashMap<String, Channel>>,
    leader: Mutex<Option<String>>,
    suspects: Mutex<HashMap<String, Instant>>,
    next: AtomicUsize,
    /// Reads go to the nearest node first (`prefer_nearest`); the endpoints
    /// are then in order of distance.
    nearest: std::sync::atomic::AtomicBool,
    opts: ClientOptions,
}

/// Where a call goes first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Route {
    /// The leader, when known (writes, linearizable reads by default).
    Leader,
    /// Any node, in turn (stale reads).
    Any,
    /// The nearest reachable node (reads after `prefer_nearest`); a refusal
    /// redirects to the leader.
    Nearest,
}

/// One node as [`Client::prefer_nearest`] found it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeDistance {
    pub endpoint: String,
    /// The node's `--zone` (empty: none, or unreachable).
    pub zone: String,
    /// The fastest of a few status round trips; `None`: unreachable.
    pub rtt: Option<Duration>,
}

struct Session {
    client_id: u64,
    /// The sequence number of the next new write (retries reuse theirs).
    next_seq: u64,
}

/// A raftkv client with one session. Cheap to make more of with
/// [`Client::with_new_session`].
pub struct Client {
    shared: Arc<Shared>,
    session: tokio::sync::Mutex<Session>,
}

/// What one attempt tells the retry loop.
enum Attempt<T> {
    Done(T),
    Fail(ClientError),
    Retry {
        error: String,
        redirect: Option<String>,
        suspect: bool,
        /// The connection itself failed (nothing listens there).
        unreachable: bool,
        /// What the call ends with if the deadline passes now.
        give_up: ClientError,
    },
}

impl Client {
    /// `endpoints` are `host:port` (an `http://` prefix is accepted).
    pub fn new(endpoints: &[String], opts: ClientOptions) -> Result<Client, ClientError> {
        if endpoints.is_empty() {
            return Err(ClientError::BadEndpoint(
                String::new(),
                "no endpoints given".into(),
            ));
        }
        let mut normalized = Vec::with_capacity(endpoints.len());
        for ep in endpoints {
            let ep = normalize(ep);
            Endpoint::from_shared(format!("http://{ep}"))
                .map_err(|e| ClientError::BadEndpoint(ep.clone(), e.to_string()))?;
            normalized.push(ep);
        }
        let shared = Shared {
            endpoints: Mutex::new(normalized),
            conns: Mutex::new(HashMap::new()),
            leader: Mutex::new(None),
            suspects: Mutex::new(HashMap::new()),
            next: AtomicUsize::new(0),
            nearest: std::sync::atomic::AtomicBool::new(false),
            opts,
        };
        Ok(Client {
            shared: Arc::new(shared),
            session: tokio::sync::Mutex::new(new_session()),
        })
    }

    /// Another client with its own session, sharing connections and the
    /// leader cache: use one per concurrent writer.
    pub fn with_new_session(&self) -> Client {
        Client {
            shared: self.shared.clone(),
            session: tokio::sync::Mutex::new(new_session()),
        }
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.shared.endpoints.lock().expect("poisoned").clone()
    }

    /// The endpoint currently believed to be the leader.
    pub fn cached_leader(&self) -> Option<String> {
        self.shared.leader.lock().expect("poisoned").clone()
    }

    pub async fn client_id(&self) -> u64 {
        self.session.lock().await.client_id
    }

    pub async fn set(&self, key: &str, value: &str) -> Result<Answer<WriteOutcome>, ClientError> {
        self.write(|mut kv, client_id, seq| {
            let req = pb::SetRequest {
                key: key.to_owned(),
                value: value.to_owned(),
                client_id,
                seq,
            };
            async move { kv.set(req).await.map(|r| r.into_inner()) }
        })
        .await
    }

    pub async fn delete(&self, key: &str) -> Result<Answer<WriteOutcome>, ClientError> {
        self.write(|mut kv, client_id, seq| {
            let req = pb::DeleteRequest {
                key: key.to_owned(),
                client_id,
                seq,
            };
            async move { kv.delete(req).await.map(|r| r.into_inner()) }
        })
        .await
    }

    /// One write of this session: `send(kv, client_id, seq)` makes the call;
    /// retries reuse the same sequence number, so the write applies once.
    async fn write<F, Fut>(&self, mut send: F) -> Result<Answer<WriteOutcome>, ClientError>
    where
        F: FnMut(KvClient<Channel>, u64, u64) -> Fut,
        Fut: Future<Output = Result<pb::WriteReply, Status>>,
    {
        let mut session = self.session.lock().await;
        let (client_id, seq) = (session.client_id, session.next_seq);
        let result = self.call(true, |kv| send(kv, client_id, seq)).await;
        // Whatever happened, the next write gets a new number: a write that
        // timed out may still apply later, and must not be confused with it.
        session.next_seq += 1;
        result.map(|a| {
            a.map(|r| {
                let outcome = WriteOutcome {
                    index: r.index,
                    existed: r.existed,
                };
                (outcome, r.served_by)
            })
        })
    }

    /// A linearizable read.
    pub async fn get(&self, key: &str) -> Result<Answer<Option<String>>, ClientError> {
        let a = self.get_with(key, Consistency::Linearizable).await?;
        Ok(Answer {
            value: a.value.0,
            served_by: a.served_by,
            endpoint: a.endpoint,
        })
    }

    /// A linearizable read that treats a missing key as an error.
    pub async fn get_existing(&self, key: &str) -> Result<Answer<String>, ClientError> {
        let a = self.get(key).await?;
        match a.value {
            Some(v) => Ok(Answer {
                value: v,
                served_by: a.served_by,
                endpoint: a.endpoint,
            }),
            None => Err(ClientError::KeyNotFound(key.to_owned())),
        }
    }

    pub async fn get_with(
        &self,
        key: &str,
        consistency: Consistency,
    ) -> Result<Answer<(Option<String>, StaleInfo)>, ClientError> {
        // After `prefer_nearest`, linearizable and bounded reads go to the
        // nearest node first (it answers under a read lease or a freshness
        // proof, or redirects to the leader).
        let nearest = self.shared.nearest.load(Ordering::Relaxed);
        let route = match consistency {
            Consistency::Stale => Route::Any,
            _ if nearest => Route::Nearest,
            Consistency::Linearizable => Route::Leader,
            Consistency::Bounded(_) => Route::Any,
        };
        self.call_route(route, |mut kv| {
            let req = get_request(key, consistency);
            async move { kv.get(req).await.map(|r| r.into_inner()) }
        })
        .await
        .map(|a| a.map(|r| (get_reply_value(&r), r.served_by)))
    }

    /// One read at one given node, without retry or redirect (for example a
    /// stale read from a chosen follower).
    pub async fn get_at(
        &self,
        endpoint: &str,
        key: &str,
        consistency: Consistency,
    ) -> Result<(Option<String>, StaleInfo), ClientError> {
        let mut kv = self.conn(&normalize(endpoint))?;
        let fut = kv.get(get_request(key, consistency));
        match tokio::time::timeout(self.shared.opts.rpc_timeout, fut).await {
            Ok(Ok(r)) => Ok(get_reply_value(&r.into_inner())),
            Ok(Err(status)) => Err(status_to_error(&status)),
            Err(_) => Err(timeout_error(self.shared.opts.rpc_timeout)),
        }
    }

    /// The text interface: `SET k v`, `GET k`, `DELETE k`, sent to one node
    /// (no redirect is followed: the reply names the leader).
    pub async fn serve_client_at(
        &self,
        endpoint: &str,
        request: &str,
    ) -> Result<pb::ServeClientReply, ClientError> {
        let mut kv = self.conn(&normalize(endpoint))?;
        let fut = kv.serve_client(pb::ServeClientRequest {
            request: request.to_owned(),
        });
        match tokio::time::timeout(self.shared.opts.rpc_timeout, fut).await {
            Ok(Ok(r)) => Ok(r.into_inner()),
            Ok(Err(status)) => Err(status_to_error(&status)),
            Err(_) => Err(timeout_error(self.shared.opts.rpc_timeout)),
        }
    }

    /// The admin status of one node.
    pub async fn status_at(&self, endpoint: &str) -> Result<pb::StatusReply, ClientError> {
        let mut kv = self.conn(&normalize(endpoint))?;
        match tokio::time::timeout(
            self.shared.opts.rpc_timeout,
            kv.status(pb::StatusRequest {}),
        )
        .await
        {
            Ok(Ok(r)) => Ok(r.into_inner()),
            Ok(Err(status)) => Err(status_to_error(&status)),
            Err(_) => Err(timeout_error(self.shared.opts.rpc_timeout)),
        }
    }

    /// The configuration as the leader sees it, with each member's progress.
    pub async fn member_list(&self) -> Result<Answer<pb::MemberListReply>, ClientError> {
        self.admin(|mut kv| async move {
            kv.member_list(pb::MemberListRequest { any_node: false })
                .await
                .map(|r| r.into_inner())
        })
        .await
        .map(with_server)
    }

    /// The configuration as one node sees it (no progress figures unless it
    /// leads), without retry or redirect.
    pub async fn member_list_at(&self, endpoint: &str) -> Result<pb::MemberListReply, ClientError> {
        let mut admin = admin_client(self.channel(&normalize(endpoint))?);
        let fut = admin.member_list(pb::MemberListRequest { any_node: true });
        match tokio::time::timeout(self.shared.opts.rpc_timeout, fut).await {
            Ok(Ok(r)) => Ok(r.into_inner()),
            Ok(Err(status)) => Err(status_to_error(&status)),
            Err(_) => Err(timeout_error(self.shared.opts.rpc_timeout)),
        }
    }

    /// Adds node `id`, reachable at `addr`, as a learner; returns once the
    /// change has committed. A learner already there with that address is
    /// not an error (the call is safe to retry).
    pub async fn add_learner(
        &self,
        id: u64,
        addr: &str,
    ) -> Result<Answer<pb::MembershipReply>, ClientError> {
        let addr = normalize(addr);
        self.admin(|mut kv| {
            let req = pb::AddLearnerRequest {
                id,
                addr: addr.clone(),
            };
            async move { kv.add_learner(req).await.map(|r| r.into_inner()) }
        })
        .await
        .map(with_server)
    }

    /// Makes learner `id` a voter once it has caught up (the leader refuses
    /// with [`ClientError::Rejected`] while it lags).
    pub async fn promote(&self, id: u64) -> Result<Answer<pb::MembershipReply>, ClientError> {
        self.admin(|mut kv| async move {
            kv.promote(pb::PromoteRequest { id })
                .await
                .map(|r| r.into_inner())
        })
        .await
        .map(with_server)
    }

    /// Removes voter or learner `id` (the leader itself too: it steps down
    /// once the change commits). A node that is not a member is refused
    /// ([`ClientError::Rejected`], naming the members), except when an
    /// earlier attempt of this call may have removed it (its outcome was
    /// unknown): then the removal is in force and the call succeeds with
    /// index 0, as a retried add or promote does.
    pub async fn remove(&self, id: u64) -> Result<Answer<pb::MembershipReply>, ClientError> {
        // Attempts begun whose outcome is not known to be "not applied".
        let unknown = AtomicUsize::new(0);
        let result = self
            .admin(|mut kv| {
                let unknown = &unknown;
                async move {
                    unknown.fetch_add(1, Ordering::SeqCst);
                    let r = kv.remove(pb::RemoveRequest { id }).await;
                    if r.is_ok() || r.as_ref().is_err_and(not_applied) {
                        unknown.fetch_sub(1, Ordering::SeqCst);
                    }
                    r.map(|r| r.into_inner())
                }
            })
            .await;
        match result {
            Err(ClientError::Rejected(m))
                if unknown.load(Ordering::SeqCst) > 0
                    && m.starts_with(&format!("node {id} is not a member")) =>
            {
                let list = self.member_list().await?;
                let m = &list.value;
                let membership = pb::Membership {
                    voters: m.voters.clone(),
                    learners: m.learners.clone(),
                    addrs: m.members.iter().map(|p| (p.id, p.addr.clone())).collect(),
                    ..Default::default()
                };
                Ok(Answer {
                    value: pb::MembershipReply {
                        membership: Some(membership),
                        index: 0,
                        served_by: m.served_by,
                    },
                    served_by: m.served_by,
                    endpoint: list.endpoint,
                })
            }
            other => other.map(with_server),
        }
    }

    /// Moves leadership to voter `to`; returns once it leads.
    pub async fn transfer_leader(
        &self,
        to: u64,
    ) -> Result<Answer<pb::TransferLeaderReply>, ClientError> {
        let answer = self
            .admin(|mut kv| async move {
                kv.transfer_leader(pb::TransferLeaderRequest { to })
                    .await
                    .map(|r| r.into_inner())
            })
            .await?;
        // The old leader no longer is: aim the next call at the new one.
        if !answer.value.leader_addr.is_empty() {
            let addr = normalize(&answer.value.leader_addr);
            self.remember_endpoint(&addr);
            *self.shared.leader.lock().expect("poisoned") = Some(addr);
        }
        Ok(answer.map(|r| {
            let by = r.leader_id;
            (r, by)
        }))
    }

    /// Sets leader placement for the whole cluster: voters by id, then the
    /// voters of these zones, most preferred first (both empty: no
    /// preference). A configuration entry at the leader; returns once it
    /// committed, with the configuration now in force. Repeating a call
    /// whose outcome was unknown is harmless.
    pub async fn set_placement(
        &self,
        leaders: &[u64],
        zones: &[String],
    ) -> Result<Answer<pb::MembershipReply>, ClientError> {
        let req = pb::SetPlacementRequest {
            leaders: leaders.to_vec(),
            zones: zones.to_vec(),
        };
        self.admin(|mut kv| {
            let req = req.clone();
            async move { kv.set_placement(req).await.map(|r| r.into_inner()) }
        })
        .await
        .map(with_server)
    }

    /// An admin call at the leader: like a write, but one attempt may last
    /// the whole deadline (a change waits for a commit, a transfer for an
    /// election).
    async fn admin<R, F, Fut>(&self, mut op: F) -> Result<Answer<R>, ClientError>
    where
        F: FnMut(AdminClient<Channel>) -> Fut,
        Fut: Future<Output = Result<R, Status>>,
    {
        let attempt_timeout = self.shared.opts.deadline.max(self.shared.opts.rpc_timeout);
        self.call_with(Route::Leader, attempt_timeout, |ch| op(admin_client(ch)))
            .await
    }

    /// Runs `op` against the leader (or any node when `follow_leader` is
    /// false), following redirects and retrying until the deadline.
    async fn call<R, F, Fut>(&self, follow_leader: bool, op: F) -> Result<Answer<R>, ClientError>
    where
        F: FnMut(KvClient<Channel>) -> Fut,
        Fut: Future<Output = Result<R, Status>>,
    {
        let route = if follow_leader {
            Route::Leader
        } else {
            Route::Any
        };
        self.call_route(route, op).await
    }

    async fn call_route<R, F, Fut>(&self, route: Route, mut op: F) -> Result<Answer<R>, ClientError>
    where
        F: FnMut(KvClient<Channel>) -> Fut,
        Fut: Future<Output = Result<R, Status>>,
    {
        self.call_with(route, self.shared.opts.rpc_timeout, |ch| op(kv_client(ch)))
            .await
    }

    /// Send linearizable and bounded reads to the endpoints in the order
    /// given (the first reachable one first), as [`Client::prefer_nearest`]
    /// does after measuring.
    pub fn read_first_endpoint_first(&self) {
        self.shared.nearest.store(true, Ordering::Relaxed);
    }

    /// Measure every endpoint (zone and round trip, from its status) and
    /// order them nearest first: a node in `zone` before any other, then by
    /// round trip, unreachable ones last. From then on linearizable and
    /// bounded reads go to the nearest reachable node first; writes still go
    /// to the leader.
    pub async fn prefer_nearest(&self, zone: Option<&str>) -> Vec<NodeDistance> {
        let mut found = Vec::new();
        for ep in self.endpoints() {
            let mut best: Option<(Duration, String)> = None;
            for _ in 0..3 {
                let t0 = Instant::now();
                if let Ok(s) = self.status_at(&ep).await {
                    let rtt = t0.elapsed();
                    if best.as_ref().is_none_or(|(b, _)| rtt < *b) {
                        best = Some((rtt, s.zone));
                    }
                }
            }
            found.push(NodeDistance {
                endpoint: ep,
                zone: best.as_ref().map(|(_, z)| z.clone()).unwrap_or_default(),
                rtt: best.map(|(rtt, _)| rtt),
            });
        }
        found.sort_by_key(|d| {
            let same_zone = zone.is_some_and(|z| !z.is_empty() && d.zone == z);
            (d.rtt.is_none(), !same_zone, d.rtt)
        });
        *self.shared.endpoints.lock().expect("poisoned") =
            found.iter().map(|d| d.endpoint.clone()).collect();
        self.shared.nearest.store(true, Ordering::Relaxed);
        found
    }

    async fn call_with<R, F, Fut>(
        &self,
        route: Route,
        attempt_timeout: Duration,
        mut op: F,
    ) -> Result<Answer<R>, ClientError>
    where
        F: FnMut(Channel) -> Fut,
        Fut: Future<Output = Result<R, Status>>,
    {
        let opts = &self.shared.opts;
        let follow_leader = route == Route::Leader;
        let start = Instant::now();
        let mut backoff = opts.backoff_min;
        let mut target = self.pick(route);
        // Endpoints in the order first tried, and whether the last attempt
        // at each could not connect.
        let mut tried: Vec<(String, bool)> = Vec::new();
        loop {
            let attempt = self.attempt(&target, attempt_timeout, &mut op).await;
            let unreachable = matches!(
                attempt,
                Attempt::Retry {
                    unreachable: true,
                    ..
                }
            );
            match tried.iter_mut().find(|(e, _)| *e == target) {
                Some(t) => t.1 = unreachable,
                None => tried.push((target.clone(), unreachable)),
            }
            let (error, redirect, suspect, give_up) = match attempt {
                Attempt::Done(value) => {
                    if follow_leader {
                        let mut leader = self.shared.leader.lock().expect("poisoned");
                        if leader.as_deref() != Some(target.as_str()) {
                            *leader = Some(target.clone());
                        }
                    }
                    return Ok(Answer {
                        value,
                        served_by: 0,
                        endpoint: target,
                    });
                }
                Attempt::Fail(e) => return Err(e),
                Attempt::Retry {
                    error,
                    redirect,
                    suspect,
                    give_up,
                    ..
                } => (error, redirect, suspect, give_up),
            };
            let last_error = format!("{target}: {error}");
            tracing::debug!(%last_error, ?redirect, "retrying");
            if suspect {
                self.shared
                    .suspects
                    .lock()
                    .expect("poisoned")
                    .insert(target.clone(), Instant::now());
            }
            let elapsed = start.elapsed();
            let names = || tried.iter().map(|(e, _)| e.clone()).collect::<Vec<_>>();
            if elapsed >= opts.deadline {
                return Err(final_error(
                    elapsed,
                    follow_leader,
                    names(),
                    last_error,
                    give_up,
                ));
            }
            let all_unreachable = self
                .endpoints()
                .iter()
                .all(|e| tried.iter().any(|(t, u)| t == e && *u));
            if all_unreachable && elapsed >= opts.give_up_unreachable_after {
                return Err(ClientError::NoneReachable {
                    what: if follow_leader { "leader" } else { "node" },
                    tried: names(),
                    last_error,
                });
            }
            let redirect = redirect.filter(|r| *r != target && !self.is_suspect(r));
            match redirect {
                Some(leader) => {
                    self.remember_endpoint(&leader);
                    *self.shared.leader.lock().expect("poisoned") = Some(leader.clone());
                    target = leader;
                }
                None => {
                    self.forget_leader(&target);
                    let pause = backoff.min(opts.deadline.saturating_sub(elapsed));
                    tokio::time::sleep(pause).await;
                    backoff = (backoff * 2).min(opts.backoff_max);
                    // The nearest node could not help: any node now (a
                    // refusal there names the leader).
                    let next = if route == Route::Nearest {
                        Route::Any
                    } else {
                        route
                    };
                    target = self.pick(next);
                }
            }
        }
    }

    async fn attempt<R, F, Fut>(&self, target: &str, timeout: Duration, op: &mut F) -> Attempt<R>
    where
        F: FnMut(Channel) -> Fut,
        Fut: Future<Output = Result<R, Status>>,
    {
        let channel = match self.channel(target) {
            Ok(channel) => channel,
            Err(e) => return Attempt::Fail(e),
        };
        match tokio::time::timeout(timeout, op(channel)).await {
            Ok(Ok(value)) => Attempt::Done(value),
            Ok(Err(status)) => classify(&status),
            Err(_) => Attempt::Retry {
                error: "attempt timed out".into(),
                redirect: None,
                suspect: true,
                unreachable: false,
                give_up: timeout_error(timeout),
            },
        }
    }

    fn pick(&self, route: Route) -> String {
        if route == Route::Leader {
            if let Some(l) = self.shared.leader.lock().expect("poisoned").clone() {
                return l;
            }
        }
        let endpoints = self.shared.endpoints.lock().expect("poisoned");
        if route == Route::Nearest {
            if let Some(e) = endpoints.iter().find(|e| !self.is_suspect(e)) {
                return e.clone();
            }
        }
        let n = self.shared.next.fetch_add(1, Ordering::Relaxed);
        endpoints[n % endpoints.len()].clone()
    }

    fn forget_leader(&self, target: &str) {
        let mut leader = self.shared.leader.lock().expect("poisoned");
        if leader.as_deref() == Some(target) {
            *leader = None;
        }
    }

    fn is_suspect(&self, endpoint: &str) -> bool {
        let suspects = self.shared.suspects.lock().expect("poisoned");
        suspects
            .get(endpoint)
            .is_some_and(|at| at.elapsed() < self.shared.opts.suspect_for)
    }

    fn remember_endpoint(&self, endpoint: &str) {
        let mut endpoints = self.shared.endpoints.lock().expect("poisoned");
        if !endpoints.iter().any(|e| e == endpoint) {
            endpoints.push(endpoint.to_owned());
        }
    }

    fn conn(&self, endpoint: &str) -> Result<KvClient<Channel>, ClientError> {
        Ok(kv_client(self.channel(endpoint)?))
    }

    /// The one reused channel to `endpoint` (both services share it).
    fn channel(&self, endpoint: &str) -> Result<Channel, ClientError> {
        let mut conns = self.shared.conns.lock().expect("poisoned");
        if let Some(c) = conns.get(endpoint) {
            return Ok(c.clone());
        }
        let channel = Endpoint::from_shared(format!("http://{endpoint}"))
            .map_err(|e| ClientError::BadEndpoint(endpoint.to_owned(), e.to_string()))?
            .connect_timeout(self.shared.opts.connect_timeout)
            .tcp_nodelay(true)
            .connect_lazy();
        conns.insert(endpoint.to_owned(), channel.clone());
        Ok(channel)
    }
}

/// The answer types carry `served_by`; this lets `call` fill it in.
/// Admin replies name the node that served them.
trait ServedBy {
    fn served_by(&self) -> u64;
}

impl ServedBy for pb::MembershipReply {
    fn served_by(&self) -> u64 {
        self.served_by
    }
}

impl ServedBy for pb::MemberListReply {
    fn served_by(&self) -> u64 {
        self.served_by
    }
}

fn with_server<R: ServedBy>(a: Answer<R>) -> Answer<R> {
    a.map(|r| {
        let by = r.served_by();
        (r, by)
    })
}

impl<R> Answer<R> {
    fn map<T>(self, f: impl FnOnce(R) -> (T, u64)) -> Answer<T> {
        let (value, served_by) = f(self.value);
        Answer {
            value,
            served_by,
            endpoint: self.endpoint,
        }
    }
}

/// The error a call ends with at its deadline: a time-out with the time
/// spent when the last attempt timed out (a write's outcome is unknown); the
/// node's refusal when it refused for load or named a leader; else "no
/// leader reachable" with every endpoint tried and the last error.
fn final_error(
    elapsed: Duration,
    follow_leader: bool,
    tried: Vec<String>,
    last_error: String,
    give_up: ClientError,
) -> ClientError {
    match give_up {
        ClientError::Timeout { .. } => ClientError::Timeout {
            elapsed_ms: u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
            last_error,
        },
        ClientError::NotLeader { leader_id, .. } if leader_id != 0 => give_up,
        ClientError::ResourceExhausted(_) => give_up,
        _ => ClientError::NoneReachable {
            what: if follow_leader { "leader" } else { "node" },
            tried,
            last_error,
        },
    }
}

/// The node answered that it did not apply the request (nor will): a
/// redirect before proposing, a refusal, a connection never made. Anything
/// else (a time-out, leadership lost after proposing, a broken connection)
/// leaves the outcome unknown.
fn not_applied(status: &Status) -> bool {
    match status.code() {
        Code::InvalidArgument
        | Code::OutOfRange
        | Code::FailedPrecondition
        | Code::ResourceExhausted
        | Code::Aborted
        | Code::Unimplemented
        | Code::PermissionDenied
        | Code::Unauthenticated
        | Code::NotFound
        | Code::AlreadyExists => true,
        Code::Unavailable => match crate::leader_hint(status) {
            // A node shutting down may have proposed it already.
            Some(_) => {
                !status.message().contains("outcome unknown")
                    && !status.message().contains("shutting down")
            }
            None => is_connect_failure(status),
        },
        _ => false,
    }
}

/// Prost's message for a request that did not decode (an old server answers
/// it INTERNAL; ours INVALID_ARGUMENT).
fn is_decode_failure(status: &Status) -> bool {
    status
        .message()
        .starts_with("failed to decode Protobuf message")
}

/// The transport could not connect: nothing listens at the endpoint.
fn is_connect_failure(status: &Status) -> bool {
    status.code() == Code::Unavailable
        && crate::leader_hint(status).is_none()
        && status.message().to_ascii_lowercase().contains("connect")
}

fn kv_client(channel: Channel) -> KvClient<Channel> {
    KvClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

fn admin_client(channel: Channel) -> AdminClient<Channel> {
    AdminClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

fn classify<T>(status: &Status) -> Attempt<T> {
    match status.code() {
        Code::Unavailable => {
            let hint = crate::leader_hint(status);
            let redirect = hint
                .as_ref()
                .map(|h| h.leader_addr.clone())
                .filter(|a| !a.is_empty());
            // No hint at all means the transport failed: the node is down.
            let suspect = hint.is_none();
            Attempt::Retry {
                error: status.message().to_owned(),
                redirect,
                suspect,
                unreachable: is_connect_failure(status),
                give_up: status_to_error(status),
            }
        }
        // The server refused the request as malformed: INVALID_ARGUMENT,
        // OUT_OF_RANGE (a message above its size limit), an undecodable
        // request an older server answers INTERNAL. Retrying cannot help.
        Code::Internal if is_decode_failure(status) => Attempt::Fail(status_to_error(status)),
        // ABORTED: retry in a moment (a new leader not ready for a
        // membership change, writes paused by a leadership transfer).
        Code::DeadlineExceeded
        | Code::ResourceExhausted
        | Code::Aborted
        | Code::Cancelled
        | Code::Unknown
        | Code::Internal => Attempt::Retry {
            error: format!("{:?}: {}", status.code(), status.message()),
            redirect: None,
            suspect: false,
            unreachable: false,
            give_up: status_to_error(status),
        },
        // INVALID_ARGUMENT, OUT_OF_RANGE, FAILED_PRECONDITION (a refused
        // membership change, a stale sequence number), UNIMPLEMENTED, ...
        _ => Attempt::Fail(status_to_error(status)),
    }
}

fn status_to_error(status: &Status) -> ClientError {
    let message = status.message().to_owned();
    match status.code() {
        Code::InvalidArgument | Code::OutOfRange => ClientError::InvalidArgument(message),
        Code::Internal if is_decode_failure(status) => ClientError::InvalidArgument(message),
        Code::ResourceExhausted => ClientError::ResourceExhausted(message),
        Code::FailedPrecondition => ClientError::Rejected(message),
        Code::DeadlineExceeded => ClientError::Timeout {
            elapsed_ms: 0,
            last_error: message,
        },
        Code::Unavailable => match crate::leader_hint(status) {
            Some(h) => ClientError::NotLeader {
                leader_id: h.leader_id,
                leader_addr: h.leader_addr,
                message,
            },
            None => ClientError::Unavailable(message),
        },
        code => ClientError::Unavailable(format!("{code:?}: {message}")),
    }
}

fn timeout_error(after: Duration) -> ClientError {
    let elapsed_ms = u64::try_from(after.as_millis()).unwrap_or(u64::MAX);
    ClientError::Timeout {
        elapsed_ms,
        last_error: "no answer".into(),
    }
}

fn get_request(key: &str, consistency: Consistency) -> pb::GetRequest {
    let (consistency, max_staleness) = match consistency {
        Consistency::Linearizable => (pb::Consistency::Linearizable, Duration::ZERO),
        Consistency::Stale => (pb::Consistency::Stale, Duration::ZERO),
        Consistency::Bounded(bound) => (pb::Consistency::Bounded, bound),
    };
    pb::GetRequest {
        key: key.to_owned(),
        consistency: consistency as i32,
        max_staleness_ms: u64::try_from(max_staleness.as_millis()).unwrap_or(u64::MAX),
    }
}

fn get_reply_value(r: &pb::GetReply) -> (Option<String>, StaleInfo) {
    let value = r.found.then(|| r.value.clone());
    let info = StaleInfo {
        applied_index: r.applied_index,
        commit_index: r.commit_index,
        since_leader_contact_ms: r.since_leader_contact_ms,
    };
    (value, info)
}

fn normalize(endpoint: &str) -> String {
    let ep = endpoint.trim();
    let ep = ep.strip_prefix("http://").unwrap_or(ep);
    ep.trim_end_matches('/').to_owned()
}

fn new_session() -> Session {
    // Zero means "no session" to the server.
    let client_id = loop {
        let id: u64 = rand::random();
        if id != 0 {
            break id;
        }
    };
    Session {
        client_id,
        next_seq: 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_endpoints() {
        assert_eq!(normalize("http://127.0.0.1:7001/"), "127.0.0.1:7001");
        assert_eq!(normalize(" 127.0.0.1:7001 "), "127.0.0.1:7001");
    }

    #[test]
    fn not_leader_status_round_trips_the_hint() {
        let status = crate::not_leader_status("not leader".into(), 2, "127.0.0.1:7002");
        let hint = crate::leader_hint(&status).expect("hint");
        assert_eq!(
            (hint.leader_id, hint.leader_addr.as_str()),
            (2, "127.0.0.1:7002")
        );
        match classify::<()>(&status) {
            Attempt::Retry {
                redirect, suspect, ..
            } => {
                assert_eq!(redirect.as_deref(), Some("127.0.0.1:7002"));
                assert!(!suspect);
            }
            _ => panic!("not-leader must be retried"),
        }
    }

    #[test]
    fn invalid_argument_is_not_retried() {
        let status = Status::invalid_argument("key too large");
        assert!(matches!(
            classify::<()>(&status),
            Attempt::Fail(ClientError::InvalidArgument(_))
        ));
    }

    #[test]
    fn malformed_requests_are_not_retried() {
        for status in [
            Status::invalid_argument("key is not valid UTF-8 (SetRequest.key)"),
            Status::out_of_range("Error, decoded message length too large"),
            Status::internal(
                "failed to decode Protobuf message: SetRequest.key: invalid string value: data is not UTF-8 encoded",
            ),
        ] {
            match classify::<()>(&status) {
                Attempt::Fail(ClientError::InvalidArgument(m)) => {
                    assert_eq!(m, status.message())
                }
                _ => panic!("{status:?} must fail at once as an invalid argument"),
            }
        }
        for status in [
            Status::failed_precondition("node 9 is not a member"),
            Status::unimplemented("no such method"),
        ] {
            assert!(
                matches!(classify::<()>(&status), Attempt::Fail(_)),
                "{status:?} must not be retried"
            );
        }
        // A server bug stays retried.
        assert!(matches!(
            classify::<()>(&Status::internal("oops")),
            Attempt::Retry { .. }
        ));
    }

    #[test]
    fn only_definite_refusals_count_as_not_applied() {
        assert!(not_applied(&crate::not_leader_status(
            "cannot serve: node 1 is not the leader".into(),
            2,
            "127.0.0.1:7002"
        )));
        assert!(!not_applied(&crate::not_leader_status(
            "leadership lost before the write applied (outcome unknown; retry with the same seq)"
                .into(),
            0,
            ""
        )));
        assert!(not_applied(&Status::unavailable("tcp connect error")));
        assert!(!not_applied(&Status::unavailable("transport error")));
        assert!(!not_applied(&Status::deadline_exceeded("no outcome")));
        assert!(not_applied(&Status::failed_precondition(
            "node 9 is not a member"
        )));
        assert!(not_applied(&Status::aborted("retry later")));
    }

    #[test]
    fn connect_failures_are_told_apart() {
        assert!(is_connect_failure(&Status::unavailable(
            "tcp connect error"
        )));
        let hint = crate::not_leader_status("not leader".into(), 0, "");
        assert!(!is_connect_failure(&hint));
        assert!(!is_connect_failure(&Status::unavailable("node is busy")));
    }

    #[test]
    fn the_final_error_names_every_endpoint_tried() {
        let tried = vec!["127.0.0.1:7001".to_owned(), "127.0.0.1:7002".to_owned()];
        let e = final_error(
            Duration::from_secs(10),
            true,
            tried.clone(),
            "127.0.0.1:7002: tcp connect error".into(),
            ClientError::Unavailable("tcp connect error".into()),
        );
        assert_eq!(
            e.to_string(),
            "no leader reachable (tried 127.0.0.1:7001, 127.0.0.1:7002): 127.0.0.1:7002: tcp connect error"
        );
        let e = final_error(
            Duration::from_secs(10),
            false,
            tried,
            "x".into(),
            ClientError::NotLeader {
                leader_id: 0,
                leader_addr: String::new(),
                message: "knows no leader".into(),
            },
        );
        assert!(e
            .to_string()
            .starts_with("no node reachable (tried 127.0.0.1:7001, 127.0.0.1:7002)"));
    }

    #[tokio::test]
    async fn a_cluster_that_is_down_fails_fast_naming_the_endpoints() {
        // Two ports where nothing listens.
        let ports: Vec<String> = (0..2)
            .map(|_| {
                let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                l.local_addr().unwrap().to_string()
            })
            .collect();
        let opts = ClientOptions {
            deadline: Duration::from_secs(10),
            give_up_unreachable_after: Duration::from_millis(300),
            ..ClientOptions::default()
        };
        let client = Client::new(&ports, opts).unwrap();
        let started = Instant::now();
        let e = client.get("k").await.unwrap_err();
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "took {:?}",
            started.elapsed()
        );
        let text = e.to_string();
        assert!(
            text.starts_with(&format!(
                "no leader reachable (tried {}, {}): ",
                ports[0], ports[1]
            )) || text.starts_with(&format!(
                "no leader reachable (tried {}, {}): ",
                ports[1], ports[0]
            )),
            "{text}"
        );
    }

    #[test]
    fn rejects_empty_endpoint_list() {
        assert!(Client::new(&[], ClientOptions::default()).is_err());
    }
}
