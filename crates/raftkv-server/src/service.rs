//! The gRPC services: `Kv` (clients, status) and `Admin` (membership
//! changes, leadership transfer). Raft messages between nodes come in
//! through [`crate::peer_inbound`].
//! They check and convert requests at the edge, then talk to the core task
//! through its [`NodeHandle`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use raftkv_client::pb;
use raftkv_core::{
    ClientCommand, ClientId, ConfChange, Membership, NodeId, Op, OpResult, Placement, Role,
    Status as CoreStatus,
};
use tokio::sync::oneshot;
use tonic::{Request, Response, Status};

use crate::clock::Clock;
use crate::config::ServerConfig;
use crate::convert::{check_addr, check_key, check_value, membership_to_pb, WireLimits};
use crate::limits::RateLimiter;
use crate::metrics::{bump, refusal_index, Metrics};
use crate::runtime::{
    Answer, ConfAnswer, NodeHandle, Refusal, Request as CoreRequest, StaleAnswer,
};
use crate::transport::AddressBook;
use raftkv_driver::LeaseReads;

/// Shared by both services.
pub struct Shared {
    pub config: Arc<ServerConfig>,
    pub handle: NodeHandle,
    pub metrics: Arc<Metrics>,
    pub limiter: RateLimiter,
    pub started: Instant,
    /// Peer addresses: --peers, the configuration in force, learned ones.
    pub book: Arc<AddressBook>,
    /// Lease reads served here, without the core task.
    pub lease_reads: Arc<LeaseReads>,
    /// The core task's clock (lease ends are in its time).
    pub clock: Clock,
}

impl Shared {
    /// The address clients should use for a node, this one included:
    /// --client-addrs first, then the peer address.
    pub fn addr_of(&self, id: NodeId) -> Option<String> {
        if let Some(addr) = self.config.client_addrs.get(&id) {
            return Some(addr.clone());
        }
        if id == self.config.core.id {
            return Some(self.config.advertise.clone());
        }
        self.book.get(id)
    }

    pub(crate) fn limits(&self) -> WireLimits {
        WireLimits {
            max_key_bytes: self.config.core.max_key_bytes,
            max_value_bytes: self.config.core.max_value_bytes,
        }
    }

    fn not_leader(&self, what: &str, leader: Option<NodeId>) -> Status {
        let leader_id = leader.map_or(0, |l| l.0);
        let addr = leader.and_then(|l| self.addr_of(l)).unwrap_or_default();
        let addr = addr.as_str();
        let message = match leader {
            Some(l) => format!(
                "{what}: node {} is not the leader; the leader is node {l} at {addr}",
                self.config.core.id
            ),
            None => format!(
                "{what}: node {} is not the leader and knows no leader yet",
                self.config.core.id
            ),
        };
        raftkv_client::not_leader_status(message, leader_id, addr)
    }

    fn refusal(&self, refusal: Refusal) -> Status {
        let reason = match &refusal {
            Refusal::NotLeader { .. } | Refusal::TooStale { .. } => "not_leader",
            Refusal::Busy(_) => "busy",
            Refusal::Invalid(_) => "invalid",
            Refusal::StaleSequence => "stale_sequence",
            Refusal::Conflict(_) => "conflict",
            Refusal::RetryLater(_) => "retry_later",
            Refusal::Stopping => "stopping",
        };
        bump(&self.metrics.refused[refusal_index(reason)]);
        match refusal {
            Refusal::NotLeader { leader, outcome_unknown: false } => self.not_leader("cannot serve", leader),
            Refusal::NotLeader { leader, outcome_unknown: true } => {
                self.not_leader("leadership lost before the write applied (outcome unknown; retry with the same seq)", leader)
            }
            Refusal::Busy(m) => Status::resource_exhausted(m),
            Refusal::Invalid(m) => Status::invalid_argument(m),
            Refusal::StaleSequence => Status::failed_precondition("sequence number older than the session's last"),
            Refusal::Conflict(m) => Status::failed_precondition(m),
            Refusal::RetryLater(m) => Status::aborted(m),
            Refusal::Stopping => raftkv_client::not_leader_status("node is shutting down".into(), 0, ""),
            // A redirect, as for a linearizable read: the leader can serve it.
            Refusal::TooStale { leader, message } => {
                let leader_id = leader.map_or(0, |l| l.0);
                let addr = leader.and_then(|l| self.addr_of(l)).unwrap_or_default();
                let message = format!("node {}: {message}", self.config.core.id);
                raftkv_client::not_leader_status(message, leader_id, &addr)
            }
        }
    }

    /// Rate limit by the caller's connection (its address and port).
    fn admit<T>(&self, req: &Request<T>) -> Result<(), Status> {
        bump(&self.metrics.client_requests);
        if let Some(addr) = req.remote_addr() {
            if !self.limiter.admit(addr) {
                bump(&self.metrics.client_rate_limited);
                return Err(Status::resource_exhausted(format!(
                    "more than {} requests per second on this connection",
                    self.config.rate_limit_per_conn
                )));
            }
        }
        Ok(())
    }

    fn invalid(&self, message: String) -> Status {
        bump(&self.metrics.client_invalid);
        Status::invalid_argument(message)
    }

    async fn ask<T>(&self, make: impl FnOnce(Answer<T>) -> CoreRequest) -> Result<T, Status> {
        self.ask_for(self.config.client_wait_timeout, make).await
    }

    async fn ask_for<T>(
        &self,
        wait: Duration,
        make: impl FnOnce(Answer<T>) -> CoreRequest,
    ) -> Result<T, Status> {
        let (tx, rx) = oneshot::channel();
        self.handle
            .requests
            .send(make(Answer(tx)))
            .await
            .map_err(|_| self.refusal(Refusal::Stopping))?;
        match tokio::time::timeout(wait, rx).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(_)) => Err(self.refusal(Refusal::Stopping)),
            Err(_) => Err({
                bump(&self.metrics.refused[refusal_index("timeout")]);
                Status::deadline_exceeded(format!(
                "no outcome within {wait:?}; for a write the outcome is unknown (retry with the same seq)"
                ))
            }),
        }
    }

    async fn write(&self, op: Op, client_id: u64, seq: u64) -> Result<pb::WriteReply, Status> {
        check_key(op.key(), self.limits()).map_err(|e| self.invalid(e.to_string()))?;
        if op.key().is_empty() {
            return Err(self.invalid("empty key".into()));
        }
        if let Op::Set { value, .. } = &op {
            check_value(value, self.limits()).map_err(|e| self.invalid(e.to_string()))?;
        }
        if client_id != 0 && seq == 0 {
            return Err(self.invalid("a session's sequence numbers start at 1".into()));
        }
        let cmd = ClientCommand {
            client_id: ClientId(client_id),
            seq,
            op,
        };
        let answer = self
            .ask(|reply| CoreRequest::Propose { cmd, reply })
            .await
            .and_then(|answer| answer.map_err(|r| self.refusal(r)));
        if answer.is_err() {
            bump(&self.metrics.proposals_failed);
        }
        let (index, result) = answer?;
        let existed = matches!(result, OpResult::Deleted { existed: true });
        Ok(pb::WriteReply {
            index: index.0,
            existed,
            served_by: self.config.core.id.0,
        })
    }

    /// The core's status and key count, for `/metrics` and `/readyz`;
    /// `None` when the core task does not answer within `wait` (stopping,
    /// or stuck).
    pub(crate) async fn core_status(&self, wait: Duration) -> Option<(CoreStatus, u64)> {
        let (tx, rx) = oneshot::channel();
        let asked = async {
            self.handle
                .requests
                .send(CoreRequest::Status { reply: Answer(tx) })
                .await
                .ok()?;
            rx.await.ok()
        };
        tokio::time::timeout(wait, asked).await.ok().flatten()
    }

    /// A read checks its key as a write does: an empty key is refused
    /// ("empty key"), not reported missing.
    fn check_read_key(&self, key: &str) -> Result<(), Status> {
        check_key(key, self.limits()).map_err(|e| self.invalid(e.to_string()))?;
        if key.is_empty() {
            return Err(self.invalid("empty key".into()));
        }
        Ok(())
    }

    /// A linearizable read, or with `max_staleness` a bounded-staleness one.
    async fn read(
        &self,
        key: String,
        max_staleness: Option<Duration>,
    ) -> Result<Option<String>, Status> {
        self.check_read_key(&key)?;
        if let Some(value) = self.lease_reads.try_read(self.clock.now(), &key) {
            bump(&self.metrics.reads_lease);
            bump(&self.metrics.reads_lease_in_handler);
            return Ok(value);
        }
        let answer = self
            .ask(|reply| CoreRequest::Read {
                key,
                max_staleness,
                reply,
            })
            .await?;
        answer.map_err(|r| self.refusal(r))
    }

    async fn read_stale(&self, key: String) -> Result<StaleAnswer, Status> {
        self.check_read_key(&key)?;
        self.ask(|reply| CoreRequest::ReadStale { key, reply })
            .await
    }
}

pub struct KvService(pub Arc<Shared>);

#[tonic::async_trait]
impl pb::kv_server::Kv for KvService {
    async fn set(&self, req: Request<pb::SetRequest>) -> Result<Response<pb::WriteReply>, Status> {
        self.0.admit(&req)?;
        let r = req.into_inner();
        let reply = self
            .0
            .write(
                Op::Set {
                    key: r.key,
                    value: r.value,
                },
                r.client_id,
                r.seq,
            )
            .await?;
        Ok(Response::new(reply))
    }

    async fn delete(
        &self,
        req: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::WriteReply>, Status> {
        self.0.admit(&req)?;
        let r = req.into_inner();
        let reply = self
            .0
            .write(Op::Delete { key: r.key }, r.client_id, r.seq)
            .await?;
        Ok(Response::new(reply))
    }

    async fn get(&self, req: Request<pb::GetRequest>) -> Result<Response<pb::GetReply>, Status> {
        self.0.admit(&req)?;
        let r = req.into_inner();
        let served_by = self.0.config.core.id.0;
        let reply = match pb::Consistency::try_from(r.consistency) {
            Ok(c @ (pb::Consistency::Linearizable | pb::Consistency::Bounded)) => {
                let bound = (c == pb::Consistency::Bounded)
                    .then(|| Duration::from_millis(r.max_staleness_ms));
                let value = self.0.read(r.key, bound).await?;
                pb::GetReply {
                    found: value.is_some(),
                    value: value.unwrap_or_default(),
                    served_by,
                    ..Default::default()
                }
            }
            Ok(pb::Consistency::Stale) => {
                let a = self.0.read_stale(r.key).await?;
                pb::GetReply {
                    found: a.value.is_some(),
                    value: a.value.unwrap_or_default(),
                    served_by,
                    applied_index: a.applied.0,
                    commit_index: a.commit.0,
                    since_leader_contact_ms: a.since_leader_contact.map(duration_ms),
                }
            }
            Err(_) => {
                return Err(self
                    .0
                    .invalid(format!("unknown consistency {}", r.consistency)))
            }
        };
        Ok(Response::new(reply))
    }

    async fn serve_client(
        &self,
        req: Request<pb::ServeClientRequest>,
    ) -> Result<Response<pb::ServeClientReply>, Status> {
        self.0.admit(&req)?;
        let text = req.into_inner().request;
        let outcome = match parse_text_command(&text) {
            Ok(TextCommand::Get(key)) => {
                self.0.read(key, None).await.map(|v| v.unwrap_or_default())
            }
            Ok(TextCommand::Write(op)) => self.0.write(op, 0, 0).await.map(|_| String::new()),
            Err(e) => Err(self.0.invalid(e)),
        };
        let (status, _) = self.0.ask(|reply| CoreRequest::Status { reply }).await?;
        let leader_id = status.leader.map_or(0, |l| l.0);
        let leader_addr = status
            .leader
            .and_then(|l| self.0.addr_of(l))
            .unwrap_or_default();
        let reply = match outcome {
            Ok(data) => pb::ServeClientReply {
                data,
                leader_id,
                success: true,
                leader_addr,
            },
            Err(s) => pb::ServeClientReply {
                data: s.message().to_owned(),
                leader_id,
                success: false,
                leader_addr,
            },
        };
        Ok(Response::new(reply))
    }

    async fn status(
        &self,
        _req: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusReply>, Status> {
        let (status, keys) = self.0.ask(|reply| CoreRequest::Status { reply }).await?;
        Ok(Response::new(status_to_pb(&self.0, &status, keys)))
    }
}

impl Shared {
    fn member_id(&self, id: u64) -> Result<NodeId, Status> {
        if id == 0 {
            return Err(self.invalid("node ids start at 1".into()));
        }
        Ok(NodeId(id))
    }

    /// How long an admin call may wait: a change needs a commit, a transfer
    /// an election.
    fn admin_wait(&self) -> Duration {
        self.config
            .client_wait_timeout
            .max(self.config.core.election_timeout_max * 4)
    }

    async fn conf_change(&self, change: ConfChange) -> Result<pb::MembershipReply, Status> {
        let answer: ConfAnswer = self
            .ask_for(self.admin_wait(), |reply| CoreRequest::ConfChange {
                change,
                reply,
            })
            .await?;
        let (index, membership) = answer.map_err(|r| self.refusal(r))?;
        Ok(pb::MembershipReply {
            membership: Some(membership_to_pb(&self.with_addrs(&membership))),
            index: index.0,
            served_by: self.config.core.id.0,
        })
    }

    /// The configuration with every member's address filled in from what
    /// this node knows (bootstrap members carry none in the log).
    fn with_addrs(&self, m: &Membership) -> Membership {
        let mut m = m.clone();
        for id in m.members().collect::<Vec<_>>() {
            if let Some(addr) = self.addr_of(id) {
                m.addrs.entry(id).or_insert(addr);
            }
        }
        m
    }
}

fn member_list(shared: &Shared, s: &CoreStatus) -> pb::MemberListReply {
    let m = &s.membership;
    let members = m
        .members()
        .map(|id| {
            let peer = s.peers.iter().find(|p| p.id == id);
            let is_self = id == s.id;
            pb::MemberInfo {
                id: id.0,
                addr: m
                    .addrs
                    .get(&id)
                    .cloned()
                    .or_else(|| shared.addr_of(id))
                    .unwrap_or_default(),
                voter: m.is_voter(id),
                match_index: if is_self {
                    s.last_log_index.0
                } else {
                    peer.map_or(0, |p| p.match_index.0)
                },
                next_index: peer.map_or(0, |p| p.next_index.0),
                snapshot_index: peer.and_then(|p| p.snapshot).map(|(i, _)| i.0),
                snapshot_chunks_acked: peer.and_then(|p| p.snapshot).map_or(0, |(_, n)| n),
                last_contact_ms: peer.and_then(|p| p.last_contact_ago).map(duration_ms),
            }
        })
        .collect();
    pb::MemberListReply {
        voters: m.voters.iter().map(|n| n.0).collect(),
        learners: m.learners.iter().map(|n| n.0).collect(),
        members,
        leader_id: s.leader.map_or(0, |l| l.0),
        leader_addr: s.leader.and_then(|l| shared.addr_of(l)).unwrap_or_default(),
        config_index: s.membership_index.0,
        config_committed: s.membership_index <= s.commit_index,
        served_by: s.id.0,
        commit_index: s.commit_index.0,
    }
}

enum TextCommand {
    Get(String),
    Write(Op),
}

/// `SET k v` (the value is the rest of the line), `GET k`, `DELETE k`.
fn parse_text_command(text: &str) -> Result<TextCommand, String> {
    let text = text.trim_start();
    let (verb, rest) = text.split_once(char::is_whitespace).unwrap_or((text, ""));
    let rest = rest.trim_start();
    match verb.to_ascii_uppercase().as_str() {
        "GET" if !rest.is_empty() && !rest.contains(char::is_whitespace) => {
            Ok(TextCommand::Get(rest.to_owned()))
        }
        "DELETE" | "DEL" if !rest.is_empty() && !rest.contains(char::is_whitespace) => {
            Ok(TextCommand::Write(Op::Delete {
                key: rest.to_owned(),
            }))
        }
        "SET" => match rest.split_once(char::is_whitespace) {
            Some((key, value)) => Ok(TextCommand::Write(Op::Set {
                key: key.to_owned(),
                value: value.to_owned(),
            })),
            None => Err("usage: SET <key> <value>".into()),
        },
        _ => Err(format!(
            "cannot parse {text:?}: use SET <key> <value>, GET <key> or DELETE <key>"
        )),
    }
}

fn status_to_pb(shared: &Shared, s: &CoreStatus, keys: u64) -> pb::StatusReply {
    let config = &shared.config;
    let peers = s
        .peers
        .iter()
        .map(|p| pb::PeerInfo {
            id: p.id.0,
            addr: shared.addr_of(p.id).unwrap_or_default(),
            match_index: p.match_index.0,
            next_index: p.next_index.0,
            last_contact_ms: p.last_contact_ago.map(duration_ms),
            learner: p.learner,
            snapshot_index: p.snapshot.map(|(i, _)| i.0),
            snapshot_chunks_acked: p.snapshot.map_or(0, |(_, n)| n),
        })
        .collect();
    let counters = shared
        .metrics
        .snapshot()
        .into_iter()
        .map(|(name, value)| pb::Counter { name, value })
        .collect();
    pb::StatusReply {
        id: s.id.0,
        addr: config.advertise.clone(),
        cluster_id: config.cluster_id.clone(),
        role: s.role.to_string(),
        term: s.term.0,
        leader_id: s.leader.map_or(0, |l| l.0),
        leader_addr: s.leader.and_then(|l| shared.addr_of(l)).unwrap_or_default(),
        commit_index: s.commit_index.0,
        applied_index: s.applied_index.0,
        last_log_index: s.last_log_index.0,
        persisted_index: s.persisted_index.0,
        lease: Some(pb::LeaseInfo {
            holds: s.lease.holds,
            remaining_us: duration_us(s.lease.remaining),
            wait_remaining_us: duration_us(s.lease.wait_remaining),
            protecting_us: duration_us(s.lease.protecting),
            read_lease: Some(read_lease_info(&s.lease.read_lease)),
        }),
        peers,
        counters,
        keys,
        uptime_ms: duration_ms(shared.started.elapsed()),
        voters: s.membership.voters.iter().map(|n| n.0).collect(),
        learners: s.membership.learners.iter().map(|n| n.0).collect(),
        config_index: s.membership_index.0,
        snapshot_index: s.snapshot_index.0,
        first_log_index: s.first_log_index.0,
        transfer_to: s.transfer_to.map_or(0, |n| n.0),
        zone: shared.config.core.zone.clone().unwrap_or_default(),
        preferred_leaders: s.placement.leaders.iter().map(|n| n.0).collect(),
        preferred_zones: s.placement.zones.clone(),
        placement_from_log: s.placement_from_log,
        preferred_voters: s.preferred_voters.iter().map(|n| n.0).collect(),
    }
}

fn read_lease_info(r: &raftkv_core::ReadLeaseStatus) -> pb::ReadLeaseInfo {
    pb::ReadLeaseInfo {
        enabled: r.enabled,
        remaining_us: duration_us(r.remaining),
        holders: r
            .holders
            .iter()
            .map(|&(id, left)| pb::ReadLeaseHolder {
                id: id.0,
                guard_remaining_us: duration_us(left),
            })
            .collect(),
        write_wait_us: duration_us(r.write_wait),
        staleness_us: r.staleness.map(duration_us),
    }
}

/// The `Admin` service: membership changes and leadership transfer.
pub struct AdminService(pub Arc<Shared>);

#[tonic::async_trait]
impl pb::admin_server::Admin for AdminService {
    async fn member_list(
        &self,
        req: Request<pb::MemberListRequest>,
    ) -> Result<Response<pb::MemberListReply>, Status> {
        let any_node = req.into_inner().any_node;
        let (s, _) = self.0.ask(|reply| CoreRequest::Status { reply }).await?;
        if !any_node && s.role != Role::Leader {
            return Err(self.0.not_leader("member list", s.leader));
        }
        Ok(Response::new(member_list(&self.0, &s)))
    }

    async fn add_learner(
        &self,
        req: Request<pb::AddLearnerRequest>,
    ) -> Result<Response<pb::MembershipReply>, Status> {
        let r = req.into_inner();
        let id = self.0.member_id(r.id)?;
        check_addr(&r.addr).map_err(|e| self.0.invalid(format!("address: {e}")))?;
        let change = ConfChange::AddLearner { id, addr: r.addr };
        self.0.conf_change(change).await.map(Response::new)
    }

    async fn promote(
        &self,
        req: Request<pb::PromoteRequest>,
    ) -> Result<Response<pb::MembershipReply>, Status> {
        let id = self.0.member_id(req.into_inner().id)?;
        let change = ConfChange::Promote { id };
        self.0.conf_change(change).await.map(Response::new)
    }

    async fn remove(
        &self,
        req: Request<pb::RemoveRequest>,
    ) -> Result<Response<pb::MembershipReply>, Status> {
        let id = self.0.member_id(req.into_inner().id)?;
        let change = ConfChange::Remove { id };
        self.0.conf_change(change).await.map(Response::new)
    }

    async fn transfer_leader(
        &self,
        req: Request<pb::TransferLeaderRequest>,
    ) -> Result<Response<pb::TransferLeaderReply>, Status> {
        let to = self.0.member_id(req.into_inner().to)?;
        let answer = self
            .0
            .ask_for(self.0.admin_wait(), |reply| CoreRequest::Transfer {
                to,
                reply,
            })
            .await?;
        let leader = answer.map_err(|r| self.0.refusal(r))?;
        Ok(Response::new(pb::TransferLeaderReply {
            leader_id: leader.0,
            leader_addr: self.0.addr_of(leader).unwrap_or_default(),
        }))
    }

    async fn set_placement(
        &self,
        req: Request<pb::SetPlacementRequest>,
    ) -> Result<Response<pb::MembershipReply>, Status> {
        let r = req.into_inner();
        if r.leaders.len() > 64 || r.zones.len() > 64 {
            return Err(self
                .0
                .invalid("a placement of more than 64 ids or zones".into()));
        }
        let placement = Placement {
            leaders: r.leaders.into_iter().map(NodeId).collect(),
            zones: r.zones,
        };
        placement.validate().map_err(|e| self.0.invalid(e))?;
        let change = ConfChange::Place(placement);
        self.0.conf_change(change).await.map(Response::new)
    }
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn duration_us(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_text_commands() {
        assert!(matches!(parse_text_command("GET k"), Ok(TextCommand::Get(k)) if k == "k"));
        match parse_text_command("set k hello world") {
            Ok(TextCommand::Write(Op::Set { key, value })) => {
                assert_eq!((key.as_str(), value.as_str()), ("k", "hello world"))
            }
            _ => panic!("SET must parse"),
        }
        assert!(matches!(
            parse_text_command("DELETE k"),
            Ok(TextCommand::Write(Op::Delete { .. }))
        ));
        assert!(parse_text_command("SET k").is_err());
        assert!(parse_text_command("GET").is_err());
        assert!(parse_text_command("GET a b").is_err());
        assert!(parse_text_command("").is_err());
        assert!(parse_text_command("FROB x").is_err());
    }
}
