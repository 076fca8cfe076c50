//! One-line renderings of messages and times for the event trace.

use raftkv_core::{Message, MessageBody};

/// Real simulated time as `s.mmmuuu`.
pub fn fmt_real(ns: u64) -> String {
    format!(
        "{:>3}.{:06}",
        ns / 1_000_000_000,
        (ns % 1_000_000_000) / 1_000
    )
}

pub fn fmt_msg(m: &Message) -> String {
    let head = format!("n{}->n{} {} t{}", m.from, m.to, m.body.kind(), m.term);
    match &m.body {
        MessageBody::AppendEntries(a) => format!(
            "{head} prev={}/{} n={} commit={} send={}",
            a.prev_log_index,
            a.prev_log_term,
            a.entries.len(),
            a.leader_commit,
            a.send_time.0
        ),
        MessageBody::AppendEntriesResponse(r) => format!(
            "{head} ok={} match={} conflict={}/{:?} last={}",
            r.success,
            r.match_index,
            r.conflict_index,
            r.conflict_term.map(|t| t.0),
            r.last_log_index
        ),
        MessageBody::RequestVote(r) => format!(
            "{head} last={}/{}{}",
            r.last_log_index,
            r.last_log_term,
            if r.transfer { " transfer" } else { "" }
        ),
        MessageBody::RequestVoteResponse(r) => format!(
            "{head} granted={} lease_remaining={}us",
            r.granted,
            r.lease_remaining.as_micros()
        ),
        MessageBody::InstallSnapshot(s) => format!(
            "{head} snap={}/{} seq={} keys={} done={} send={}",
            s.meta.index,
            s.meta.term,
            s.seq,
            s.data.len(),
            s.done,
            s.send_time.0
        ),
        MessageBody::InstallSnapshotResponse(r) => format!(
            "{head} snap={} next_seq={} installed={}",
            r.snapshot_index, r.next_seq, r.installed
        ),
        MessageBody::TimeoutNow => head,
    }
}
