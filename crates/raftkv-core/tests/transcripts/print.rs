//! The compact, stable text of what the core hands out: `index@term` for a
//! log position, times as the node's clock reads them (`0.700000s`),
//! durations in milliseconds. Errors print through `Display` only, so a
//! change of an error's type that keeps its words keeps the transcripts.

use std::fmt::Write as _;
use std::time::Duration;

use raftkv_core::*;

/// `396.04ms`: milliseconds, with up to three decimals when not whole.
pub fn dur(d: Duration) -> String {
    let micros = d.as_micros();
    let (ms, frac) = (micros / 1000, micros % 1000);
    if frac == 0 {
        format!("{ms}ms")
    } else {
        let f = format!("{frac:03}");
        format!("{ms}.{}ms", f.trim_end_matches('0'))
    }
}

pub fn pos(index: LogIndex, term: Term) -> String {
    format!("{index}@{term}")
}

pub fn entry(e: &Entry) -> String {
    let what = match &e.payload {
        EntryPayload::Noop => "noop".to_string(),
        EntryPayload::Command(c) => command(c),
        EntryPayload::Config(m) => format!("config {m}"),
    };
    format!("{} {what}", pos(e.index, e.term))
}

fn command(c: &ClientCommand) -> String {
    let op = match &c.op {
        Op::Set { key, value } => format!("SET {key} {value}"),
        Op::Delete { key } => format!("DEL {key}"),
    };
    format!("{op} (client {} #{})", c.client_id, c.seq)
}

pub fn message(m: &Message) -> String {
    let mut s = format!("{}->{} {} term {}", m.from, m.to, m.body.kind(), m.term);
    match &m.body {
        MessageBody::AppendEntries(a) => {
            let _ = write!(
                s,
                " prev {} commit {}",
                pos(a.prev_log_index, a.prev_log_term),
                a.leader_commit
            );
            if !a.entries.is_empty() {
                let es: Vec<String> = a.entries.iter().map(entry).collect();
                let _ = write!(s, " entries [{}]", es.join(", "));
            }
            let _ = write!(s, " lease {} sent {}", dur(a.lease_duration), a.send_time);
        }
        MessageBody::AppendEntriesResponse(r) => {
            if r.success {
                let _ = write!(s, " ok match {}", r.match_index);
            } else {
                let _ = write!(s, " reject conflict {}", r.conflict_index);
                if let Some(t) = r.conflict_term {
                    let _ = write!(s, " (term {t})");
                }
            }
            let _ = write!(s, " last {} echo {}", r.last_log_index, r.send_time);
        }
        MessageBody::RequestVote(r) => {
            let _ = write!(s, " last {}", pos(r.last_log_index, r.last_log_term));
            if r.transfer {
                s.push_str(" transfer");
            }
        }
        MessageBody::RequestVoteResponse(r) => {
            let verdict = if r.granted { "granted" } else { "denied" };
            let _ = write!(s, " {verdict} lease-left {}", dur(r.lease_remaining));
        }
        MessageBody::InstallSnapshot(i) => {
            let _ = write!(
                s,
                " snapshot {} chunk {} keys {} sessions {}{} lease {} sent {}",
                pos(i.meta.index, i.meta.term),
                i.seq,
                i.data.len(),
                i.sessions.len(),
                if i.done { " done" } else { "" },
                dur(i.lease_duration),
                i.send_time
            );
        }
        MessageBody::InstallSnapshotResponse(r) => {
            let _ = write!(
                s,
                " snapshot {} next {}{} echo {}",
                r.snapshot_index,
                r.next_seq,
                if r.installed { " installed" } else { "" },
                r.send_time
            );
        }
        MessageBody::TimeoutNow => {}
    }
    s
}

fn hard_state(hs: &HardState) -> String {
    let vote = hs.voted_for.map_or("-".to_string(), |v| v.to_string());
    let mut s = format!("term {} vote {vote} commit {}", hs.term, hs.commit);
    if let Some(floor) = hs.repair {
        let _ = write!(s, " repair ({floor})");
    }
    s
}

fn section(out: &mut String, title: &str, lines: impl IntoIterator<Item = String>) {
    let lines: Vec<String> = lines.into_iter().collect();
    if lines.is_empty() {
        return;
    }
    let _ = writeln!(out, "  {title}:");
    for l in lines {
        let _ = writeln!(out, "    {l}");
    }
}

/// Every field of a `Ready` that is set, in the order the driver acts on
/// them (see `Ready`'s documentation).
pub fn ready(id: NodeId, rd: &Ready) -> String {
    let mut out = format!("> {id} handling Ready\n");
    if let Some(hs) = &rd.hard_state {
        let sync = if rd.must_sync { " (sync)" } else { "" };
        let _ = writeln!(out, "  hard state: {}{sync}", hard_state(hs));
    } else if rd.must_sync {
        out.push_str("  (sync)\n");
    }
    section(&mut out, "send", rd.messages.iter().map(message));
    section(
        &mut out,
        "snapshots",
        rd.snapshots.iter().map(|w| {
            let origin = match w.origin {
                SnapshotOrigin::Compaction => "compaction".to_string(),
                SnapshotOrigin::Installed { keep_log_suffix } => {
                    format!("installed, keep log suffix: {keep_log_suffix}")
                }
            };
            let m = &w.snapshot.meta;
            format!(
                "{} {origin}, {} keys",
                pos(m.index, m.term),
                w.snapshot.data.len()
            )
        }),
    );
    section(&mut out, "entries", rd.entries.iter().map(entry));
    section(
        &mut out,
        "send after persisting",
        rd.persisted_messages.iter().map(message),
    );
    section(
        &mut out,
        "write results",
        rd.write_results.iter().map(|w| {
            let outcome = match &w.outcome {
                Ok(OpResult::Set) => "ok".to_string(),
                Ok(OpResult::Deleted { existed }) => format!("deleted (existed: {existed})"),
                Err(e) => format!("error: {e}"),
            };
            format!(
                "client {} #{} at {}: {outcome}",
                w.client_id, w.seq, w.index
            )
        }),
    );
    section(
        &mut out,
        "read results",
        rd.read_results
            .iter()
            .map(|r| format!("read {}: {}", r.id.0, read_outcome(&r.outcome))),
    );
    section(
        &mut out,
        "conf change results",
        rd.conf_change_results.iter().map(|c| {
            let outcome = match &c.outcome {
                Ok(m) => m.to_string(),
                Err(e) => format!("error: {e}"),
            };
            format!("at {}: {outcome}", c.index)
        }),
    );
    section(&mut out, "events", rd.events.iter().map(|e| e.to_string()));
    out
}

pub fn value(v: &Option<String>) -> String {
    match v {
        Some(v) => format!("{v:?}"),
        None => "(absent)".to_string(),
    }
}

fn read_outcome(o: &Result<Option<String>, ReadError>) -> String {
    match o {
        Ok(v) => value(v),
        Err(e) => format!("error: {e}"),
    }
}

pub fn status(s: &Status) -> String {
    let mut out = String::new();
    let opt = |v: Option<NodeId>| v.map_or("-".to_string(), |v| v.to_string());
    let _ = writeln!(
        out,
        "{}: {} term {} leader {} vote {}",
        s.id,
        s.role,
        s.term,
        opt(s.leader),
        opt(s.voted_for)
    );
    let _ = writeln!(
        out,
        "log: first {} last {} persisted {} commit {} applied {} snapshot {}",
        s.first_log_index,
        s.last_log_index,
        s.persisted_index,
        s.commit_index,
        s.applied_index,
        s.snapshot_index
    );
    let l = &s.lease;
    let _ = writeln!(
        out,
        "lease: {} remaining {} wait {} protecting {}",
        if l.holds { "holds" } else { "none" },
        dur(l.remaining),
        dur(l.wait_remaining),
        dur(l.protecting)
    );
    let _ = writeln!(
        out,
        "membership: {} (index {})",
        s.membership, s.membership_index
    );
    if let Some(t) = s.transfer_to {
        let _ = writeln!(out, "transferring to {t}");
    }
    for p in &s.peers {
        let contact = p.last_contact_ago.map_or("never".to_string(), dur);
        let _ = write!(
            out,
            "peer {}{}: match {} next {} contact {contact}",
            p.id,
            if p.learner { " (learner)" } else { "" },
            p.match_index,
            p.next_index
        );
        if let Some((index, acked)) = p.snapshot {
            let _ = write!(out, " snapshot {index} acked {acked}");
        }
        out.push('\n');
    }
    if s.pending_proposals + s.pending_reads > 0 || s.rejected_messages > 0 {
        let _ = writeln!(
            out,
            "pending writes {} reads {}; rejected messages {}",
            s.pending_proposals, s.pending_reads, s.rejected_messages
        );
    }
    out
}
