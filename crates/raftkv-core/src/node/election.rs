//! Leader election: pre-vote, votes with vote stickiness, and becoming leader
//! (including the wait for the old leader's lease, lease rule 5).

use std::collections::BTreeMap;
use std::time::Duration;

use super::replication::Progress;
use super::{LeaderState, RaftNode, RoleState};
use crate::api::{DenyReason, Event};
use crate::message::{Message, MessageBody, RequestVote, RequestVoteResponse};
use crate::types::{Entry, EntryPayload, LogIndex, NodeId, Term};

impl RaftNode {
    /// The election timer fired: first ask whether we could win (pre-vote,
    /// Raft thesis §9.6), without disturbing anyone's term.
    pub(super) fn start_pre_vote(&mut self) {
        debug_assert!(!matches!(self.role, RoleState::Leader(_)));
        self.role = RoleState::PreCandidate {
            votes: BTreeMap::from([(self.cfg.id, true)]),
        };
        self.reset_election_deadline();
        let term = self.term.next();
        self.events.push(Event::ElectionStarted {
            term,
            pre_vote: true,
        });
        self.send_vote_requests(term, true, false);
        self.tally_votes();
    }

    /// Campaign for real: a won pre-vote, or a leadership transfer
    /// (`transfer`: voters set vote stickiness aside).
    pub(super) fn start_election(&mut self, transfer: bool) {
        debug_assert!(!matches!(self.role, RoleState::Leader(_)));
        self.term = self.term.next();
        self.voted_for = Some(self.cfg.id);
        self.role = RoleState::Candidate {
            votes: BTreeMap::from([(self.cfg.id, true)]),
            max_vote_lease_remaining: Duration::ZERO,
        };
        self.reset_election_deadline();
        self.events.push(Event::ElectionStarted {
            term: self.term,
            pre_vote: false,
        });
        self.send_vote_requests(self.term, false, transfer);
        self.tally_votes();
    }

    /// Only voters are asked: no one else's vote counts.
    fn send_vote_requests(&mut self, term: Term, pre_vote: bool, transfer: bool) {
        let body = RequestVote {
            pre_vote,
            transfer,
            last_log_index: self.log.last_index(),
            last_log_term: self.log.last_term(),
        };
        let me = self.cfg.id;
        let voters: Vec<NodeId> = self
            .membership()
            .voters
            .iter()
            .copied()
            .filter(|&v| v != me)
            .collect();
        for to in voters {
            let msg = Message {
                from: self.cfg.id,
                to,
                term,
                body: MessageBody::RequestVote(body.clone()),
            };
            self.requests_out.push(msg);
        }
    }

    /// lease rule 9: a node that heard from a live leader within the
    /// minimum election timeout (or is the leader) does not help unseat it.
    fn leader_is_alive(&self) -> bool {
        if matches!(self.role, RoleState::Leader(_)) {
            return true;
        }
        self.last_leader_contact
            .is_some_and(|t| self.now.saturating_since(t) < self.cfg.election_timeout_min)
    }

    /// What remains of the lease this node protects (rule 2).
    pub(super) fn lease_remaining(&self) -> Duration {
        self.lease_until.saturating_since(self.now)
    }

    pub(super) fn handle_vote_request(&mut self, msg: Message) {
        let MessageBody::RequestVote(req) = &msg.body else {
            unreachable!()
        };
        let (pre_vote, candidate) = (req.pre_vote, msg.from);
        let hard_state_before = self.current_hard_state();
        // A pre-vote is for the term after the candidate's: granting one for a
        // term this node is already in would only help a node that lags.
        let deny = if msg.term < self.term || (pre_vote && msg.term == self.term) {
            Some(DenyReason::StaleTerm)
        } else if msg.term > self.term && !req.transfer && self.leader_is_alive() {
            Some(DenyReason::LeaderAlive)
        } else if !self
            .log
            .is_up_to_date(req.last_log_index, req.last_log_term)
        {
            Some(DenyReason::LogBehind)
        } else if !self.membership().voters.is_empty()
            && !self.lease_configs().iter().any(|m| m.is_voter(candidate))
        {
            // A candidate outside this node's configuration (a node that
            // believes it leads another cluster, or was never added): no
            // vote. The configuration may lag; the voters that know it
            // decide then.
            Some(DenyReason::NotAVoter)
        } else if !self.passes_vote_floor(req.last_log_index, req.last_log_term) {
            // This node's log was damaged; it may have acknowledged entries
            // the candidate lacks (`repair.rs`).
            Some(DenyReason::Repairing)
        } else if self.membership().voters.is_empty() && self.log.last_index() == LogIndex::ZERO {
            // A node waiting to join has no state to vouch for anyone.
            Some(DenyReason::NotJoined)
        } else {
            None
        };
        // A real vote request of a higher term moves this node to that term
        // (even when the log check then fails); a pre-vote never does.
        if !pre_vote && msg.term > self.term && deny != Some(DenyReason::LeaderAlive) {
            self.become_follower(msg.term, None);
        }
        let deny = deny.or_else(|| match self.voted_for {
            Some(v) if !pre_vote && v != candidate && msg.term == self.term => {
                Some(DenyReason::AlreadyVoted(v))
            }
            _ => None,
        });
        let granted = deny.is_none();
        if granted && !pre_vote {
            self.voted_for = Some(candidate);
            self.reset_election_deadline();
        }
        let reply_term = if granted && pre_vote {
            msg.term
        } else {
            self.term
        };
        let event = match deny {
            None => Event::VoteGranted {
                to: candidate,
                term: msg.term,
                pre_vote,
            },
            Some(reason) => Event::VoteDenied {
                to: candidate,
                term: msg.term,
                pre_vote,
                reason,
            },
        };
        self.events.push(event);
        let body = MessageBody::RequestVoteResponse(RequestVoteResponse {
            pre_vote,
            granted,
            lease_remaining: self.lease_remaining(),
        });
        if pre_vote {
            // A pre-vote reply promises nothing: this node recorded no vote
            // and kept its term, so the reply need not wait for its disk
            // (the real vote that may follow does).
            assert_eq!(
                self.current_hard_state(),
                hard_state_before,
                "node {}: a pre-vote changed durable state",
                self.cfg.id
            );
            self.reply_to_pre_vote(candidate, reply_term, body);
        } else {
            self.respond(candidate, reply_term, body);
        }
    }

    pub(super) fn handle_vote_response(&mut self, msg: Message) {
        let MessageBody::RequestVoteResponse(resp) = &msg.body else {
            unreachable!()
        };
        let term = self.term;
        let votes = match (&mut self.role, resp.pre_vote) {
            (RoleState::PreCandidate { votes }, true) => {
                let expected = if resp.granted {
                    msg.term == term.next()
                } else {
                    msg.term <= term.next()
                };
                if !expected {
                    return; // a late reply from an earlier round
                }
                votes
            }
            (
                RoleState::Candidate {
                    votes,
                    max_vote_lease_remaining,
                },
                false,
            ) => {
                if msg.term != term {
                    return; // a late reply from an earlier round
                }
                *max_vote_lease_remaining = (*max_vote_lease_remaining).max(resp.lease_remaining);
                votes
            }
            // A reply we never asked for, or one for a round we left.
            _ => return,
        };
        votes.insert(msg.from, resp.granted);
        self.tally_votes();
    }

    /// Count the votes of voters in force; anyone else's is ignored.
    fn tally_votes(&mut self) {
        let (RoleState::PreCandidate { votes } | RoleState::Candidate { votes, .. }) = &self.role
        else {
            return;
        };
        let m = self.membership();
        let granted = votes
            .iter()
            .filter(|&(id, &g)| g && m.is_voter(*id))
            .count();
        let denied = votes
            .iter()
            .filter(|&(id, &g)| !g && m.is_voter(*id))
            .count();
        let quorum = m.quorum();
        if granted >= quorum {
            match self.role {
                RoleState::PreCandidate { .. } => self.start_election(false),
                _ => self.become_leader(),
            }
        } else if denied >= quorum {
            // Lost: wait for the next timeout as a follower of this term.
            self.role = RoleState::Follower { leader: None };
        }
    }

    fn become_leader(&mut self) {
        let RoleState::Candidate {
            max_vote_lease_remaining,
            ..
        } = self.role
        else {
            unreachable!("only a candidate becomes leader");
        };
        assert_eq!(
            self.voted_for,
            Some(self.cfg.id),
            "a leader voted for itself"
        );
        let now = self.now;
        // lease rule 5: wait out any lease a voter (or this node) may
        // still protect for the previous leader.
        let own = self.lease_remaining();
        let wait = max_vote_lease_remaining.max(own);
        let wait_until = if self.cfg.unsafe_test_knobs.disable_new_leader_wait {
            now
        } else {
            now + wait
        };
        let last = self.log.last_index();
        let progress = self
            .peers
            .iter()
            .map(|&p| (p, Progress::new(last.next(), now)))
            .collect();
        let noop_index = last.next();
        self.log.push(Entry {
            index: noop_index,
            term: self.term,
            payload: EntryPayload::Noop,
        });
        self.role = RoleState::Leader(LeaderState {
            progress,
            noop_index,
            wait_until,
            since: now,
            next_heartbeat: now,
            lease_held: false,
            replicate_pending: true,
            heartbeat_pending: None,
            heartbeat_batched_at: None,
            transfer: None,
            pending_conf: None,
            guards: Default::default(),
            notify_holders: false,
            placement_not_before: now + self.cfg.election_timeout_max,
        });
        self.events.push(Event::BecameLeader {
            term: self.term,
            wait_until,
            noop_index,
        });
        if wait_until > now {
            self.events
                .push(Event::WaitingForOldLease { until: wait_until });
        }
        self.maybe_commit();
    }

    /// Rule 8, check quorum: a leader that has not heard from a majority for
    /// an election timeout must step down (its lease ended long before).
    pub(super) fn heard_from_quorum(&self, ls: &LeaderState) -> bool {
        let window = self.cfg.election_timeout_min;
        let now = self.now;
        let mut heard: Vec<NodeId> = ls
            .progress
            .iter()
            .filter(|(_, p)| {
                p.last_contact
                    .is_some_and(|t| now.saturating_since(t) < window)
            })
            .map(|(&id, _)| id)
            .collect();
        heard.push(self.cfg.id);
        self.membership().has_quorum(&heard)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::node::Restored;
    use crate::types::MonoTime;

    fn vote_request(from: u64, term: u64, pre_vote: bool) -> Message {
        Message {
            from: NodeId(from),
            to: NodeId(3),
            term: Term(term),
            body: MessageBody::RequestVote(RequestVote {
                pre_vote,
                transfer: false,
                last_log_index: LogIndex::ZERO,
                last_log_term: Term(0),
            }),
        }
    }

    /// A granted vote waits for the sync of the vote it records; a granted
    /// pre-vote in the same batch records nothing and goes at once.
    #[test]
    fn a_pre_vote_reply_never_waits_for_the_disk() {
        let cfg = Config::new(NodeId(3), vec![NodeId(1), NodeId(2), NodeId(3)]);
        let mut node = RaftNode::new(cfg, Restored::default(), MonoTime::ZERO, 3).unwrap();
        let now = MonoTime::ZERO;
        node.step(now, vote_request(2, 1, false));
        node.step(now, vote_request(1, 2, true));
        assert_eq!((node.term, node.voted_for), (Term(1), Some(NodeId(2))));
        let rd = node.ready();
        assert!(rd.must_sync, "the vote is durable before its reply goes");
        let reply = |msgs: &[Message], pre_vote: bool| {
            msgs.iter().any(|m| {
                matches!(&m.body, MessageBody::RequestVoteResponse(r)
                    if r.pre_vote == pre_vote && r.granted)
            })
        };
        assert!(reply(&rd.persisted_messages, false) && !reply(&rd.messages, false));
        assert!(reply(&rd.messages, true) && !reply(&rd.persisted_messages, true));
    }
}
