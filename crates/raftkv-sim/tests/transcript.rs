//! Transcript-style scenarios: the simulator's trace tells the protocol's
//! story, and the test checks that the story's key lines appear in order
//! (timings and message counts may change; the story may not). Run with
//! `--nocapture` to read the whole transcript.

mod common;

use common::*;
use raftkv_sim::Cluster;

/// Finds each pattern in `trace`, each after the previous one; returns the
/// line numbers. Panics with the transcript when a line is missing.
fn expect_in_order(c: &Cluster, from: usize, patterns: &[String]) -> Vec<usize> {
    let trace = c.trace();
    let mut at = from;
    let mut found = Vec::new();
    for p in patterns {
        match trace[at..].iter().position(|l| l.contains(p.as_str())) {
            Some(k) => {
                at += k;
                found.push(at);
                at += 1;
            }
            None => panic!(
                "transcript lacks {p:?} after line {at}; tail:\n{}",
                transcript_tail(c, 60)
            ),
        }
    }
    found
}

fn print_transcript(c: &Cluster, from: usize) {
    for l in &c.trace()[from..] {
        if !l.contains(" deliver ") && !l.contains(" drop (") {
            println!("{l}");
        }
    }
}

#[test]
fn cut_off_leader_story() {
    let mut c = cluster(3, 81);
    let l = wait_stable_leader(&mut c, ms(5000));
    let t = c.raft(l).unwrap().term();
    let start = c.trace().len();
    c.isolate(l);
    c.run_for(ms(3000));
    let x = c.leader().expect("a new leader");
    assert_ne!(x, l);
    c.heal();
    c.run_for(ms(500));
    print_transcript(&c, start);
    // The cut-off leader loses its lease before anyone else can lead, and
    // the new leader comes from the next term.
    expect_in_order(
        &c,
        start,
        &[
            format!("fault: isolate n{l}"),
            format!("n{l} lease renewal failed in term {t}"),
            format!("election started, term {}", t.next()),
            format!("n{x} became leader of term {}", t.next()),
            format!("n{x} lease acquired in term {}", t.next()),
            "fault: heal all partitions".to_string(),
            format!("n{l} follower of node {x} in term {}", t.next()),
        ],
    );
    // Check quorum deposed the old leader while it was cut off.
    expect_in_order(
        &c,
        start,
        &[format!("n{l} stepped down in term {t}: LostQuorum")],
    );
    assert_safe(&c);
}

#[test]
fn restarted_node_catches_up_story() {
    let mut c = cluster(3, 82);
    let l = wait_stable_leader(&mut c, ms(5000));
    let f = c.node_ids().into_iter().find(|&i| i != l).unwrap();
    let start = c.trace().len();
    c.crash(f);
    let index = one(&mut c, "while-down", 2);
    c.restart(f);
    c.run_for(ms(500));
    print_transcript(&c, start);
    expect_in_order(
        &c,
        start,
        &[
            format!("fault: crash n{f}"),
            format!("n{l} committed up to index {index}"),
            format!("fault: restart n{f}"),
            format!("n{f} follower of node {l}"),
            format!("n{f} committed up to index {index}"),
        ],
    );
    assert_eq!(n_committed(&c, index), 3);
    assert_safe(&c);
}
