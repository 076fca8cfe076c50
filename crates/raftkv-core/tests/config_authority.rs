//! A node never votes for a candidate outside its configuration (a node
//! that believes it leads a cluster of its own, as a member restarted
//! without its flags once did).

use std::time::Duration;

use raftkv_core::*;

#[test]
fn no_vote_for_a_candidate_outside_the_configuration() {
    let voters = vec![NodeId(1), NodeId(2), NodeId(3)];
    let mut n = RaftNode::new(
        Config::new(NodeId(1), voters),
        Restored::default(),
        MonoTime::ZERO,
        1,
    )
    .unwrap();
    let now = MonoTime::ZERO + Duration::from_secs(5);
    let ask = |from: u64| Message {
        from: NodeId(from),
        to: NodeId(1),
        term: Term(7),
        body: MessageBody::RequestVote(RequestVote {
            pre_vote: false,
            transfer: false,
            last_log_index: LogIndex(100),
            last_log_term: Term(6),
        }),
    };
    n.step(now, ask(9));
    let rd = n.ready();
    assert!(
        rd.events.iter().any(|e| matches!(
            e,
            Event::VoteDenied {
                to: NodeId(9),
                reason: DenyReason::NotAVoter,
                ..
            }
        )),
        "{:?}",
        rd.events
    );
    // A member of the configuration gets the vote.
    n.step(now, ask(2));
    let rd = n.ready();
    assert!(
        rd.events
            .iter()
            .any(|e| matches!(e, Event::VoteGranted { to: NodeId(2), .. })),
        "{:?}",
        rd.events
    );
}
