//! Turning a failed search into a small, readable violation report.
//!
//! The key's history is first shrunk (delta-debugging style: drop chunks of
//! operations while what is left is still not linearizable), then the
//! search's furthest point on the shrunk history is described.

use std::fmt::Write as _;

use crate::history::{KeyHistory, KeyOp, Kind, ABSENT};
use crate::operation::{fmt_time, quote, Operation};
use crate::readfrom::{self, ReadFrom};
use crate::search::{self, Frontier, SearchResult};
use crate::verdict::{Budget, Violation};

/// Prefix operations listed before eliding the older ones.
const PREFIX_SHOWN_MAX: usize = 8;
/// Witness ops listed in full before only the ones around the failure are.
const LISTED_OPS_MAX: usize = 12;

pub(crate) fn violation(
    history: &[Operation],
    key_history: &KeyHistory,
    subset: Vec<usize>,
    frontier: Frontier,
    budget: Budget,
) -> Violation {
    let analysis = readfrom::analyse(&key_history.ops);
    let shrinker = Shrinker {
        key_history,
        analysis: &analysis,
    };
    let (keep, frontier) = shrinker.shrink(subset, frontier, budget.max_steps_per_key);
    let ops: Vec<KeyOp> = keep.iter().map(|&i| key_history.ops[i]).collect();
    let explanation = describe(history, key_history, &ops, &frontier);
    Violation {
        key: key_history.key.clone(),
        operations: ops.iter().map(|op| history[op.source].clone()).collect(),
        explanation,
    }
}

struct Shrinker<'a> {
    key_history: &'a KeyHistory,
    /// Read-from analysis of the key's whole history.
    analysis: &'a ReadFrom,
}

impl Shrinker<'_> {
    /// Shrinks `keep` (indices into the key's ops, known not linearizable,
    /// with `frontier` its search result) within `steps_max` search steps.
    fn shrink(
        &self,
        mut keep: Vec<usize>,
        mut frontier: Frontier,
        steps_max: u64,
    ) -> (Vec<usize>, Frontier) {
        let mut steps_left = steps_max;
        // Ops called after every branch of the search had died never
        // mattered to it: dropping them first is a cheap big cut (verified
        // like the rest).
        let late = keep
            .iter()
            .position(|&i| self.key_history.ops[i].call_ns > frontier.horizon_ns)
            .unwrap_or(keep.len());
        let all = keep.len();
        if let Some(smaller) = self.try_without(&mut keep, late..all, &mut steps_left) {
            frontier = smaller;
        }
        let mut chunk = (keep.len() / 2).max(1);
        loop {
            let mut shrunk = false;
            let mut start = 0;
            while start < keep.len() && steps_left > 0 {
                let end = (start + chunk).min(keep.len());
                match self.try_without(&mut keep, start..end, &mut steps_left) {
                    // The same `start` now names later ops.
                    Some(smaller) => (frontier, shrunk) = (smaller, true),
                    None => start = end,
                }
            }
            if steps_left == 0 || (chunk == 1 && !shrunk) {
                return (keep, frontier);
            }
            chunk = (chunk / 2).max(1);
        }
    }

    /// Drops what it may of `keep[range]` if what is left is still not
    /// linearizable; returns the frontier of the smaller history if so.
    fn try_without(
        &self,
        keep: &mut Vec<usize>,
        range: std::ops::Range<usize>,
        steps_left: &mut u64,
    ) -> Option<Frontier> {
        let candidate = self.without(keep, range);
        if candidate.len() == keep.len() {
            return None;
        }
        let ops: Vec<KeyOp> = candidate.iter().map(|&i| self.key_history.ops[i]).collect();
        let outcome = search::search(&ops, *steps_left);
        *steps_left = steps_left.saturating_sub(outcome.steps);
        let SearchResult::Violation(frontier) = outcome.result else {
            return None;
        };
        *keep = candidate;
        Some(frontier)
    }

    /// `keep` without the ops at `range`, except the writes a remaining GET
    /// could have read from (for a GET no write could serve: every write of
    /// its value). Leaving those out could make the witness fail for a
    /// different reason ("read of a value never written") than the history.
    fn without(&self, keep: &[usize], range: std::ops::Range<usize>) -> Vec<usize> {
        let ops = &self.key_history.ops;
        let mut needed = std::collections::HashSet::new();
        for &read in keep[..range.start].iter().chain(&keep[range.end..]) {
            let Kind::Read(value) = ops[read].kind else {
                continue;
            };
            let writers = &self.analysis.writers[read];
            if writers.is_empty() {
                needed.extend((0..ops.len()).filter(|&w| ops[w].kind == Kind::Write(value)));
            } else {
                needed.extend(writers.iter().map(|&w| w as usize));
            }
        }
        keep.iter()
            .enumerate()
            .filter(|&(position, i)| !range.contains(&position) || needed.contains(i))
            .map(|(_, &i)| i)
            .collect()
    }
}

fn describe(
    history: &[Operation],
    key_history: &KeyHistory,
    ops: &[KeyOp],
    frontier: &Frontier,
) -> String {
    let mut text = String::new();
    let _ = writeln!(
        text,
        "key {}: not linearizable; {} of its {} operations alone {} no valid order:",
        quote(&key_history.key),
        if ops.len() == 1 {
            "this 1".to_string()
        } else {
            format!("these {}", ops.len())
        },
        key_history.ops_total,
        if ops.len() == 1 { "has" } else { "have" },
    );
    let listed = listed_ops(ops, frontier);
    for &index in &listed {
        let _ = writeln!(text, "  {}", history[ops[index].source]);
    }
    if listed.len() < ops.len() {
        let _ = writeln!(
            text,
            "  ... and {} more (all in Violation::operations): writes these GETs could have read from",
            ops.len() - listed.len()
        );
    }
    let name = |index: usize| format!("#{}", ops[index].id);
    if frontier.prefix.is_empty() {
        text.push_str("No operation can come first (the key starts absent).\n");
    } else {
        let shown_from = frontier.prefix.len().saturating_sub(PREFIX_SHOWN_MAX);
        let names: Vec<String> = frontier.prefix[shown_from..]
            .iter()
            .map(|&i| name(i))
            .collect();
        let _ = writeln!(
            text,
            "The longest valid order found is {}{}, leaving the key {}.",
            if shown_from > 0 { "..., " } else { "" },
            names.join(", "),
            key_history.describe_state(frontier.state)
        );
    }
    let deadline = &history[ops[frontier.deadline].source];
    let _ = writeln!(
        text,
        "Then {} had to take effect by t={}, but nothing can go next:",
        name(frontier.deadline),
        fmt_time(deadline.return_ns)
    );
    let mut stuck = vec![frontier.deadline];
    stuck.extend(frontier.pending.iter().filter(|&&i| i != frontier.deadline));
    for &index in &stuck {
        let reason = why_stuck(key_history, ops, frontier, index);
        let _ = writeln!(
            text,
            "  {} cannot be ordered: {reason}",
            history[ops[index].source]
        );
    }
    text.pop(); // the last newline
    text
}

/// All witness ops when few, else those where the search got stuck: the
/// tail of the longest order, the pending ops and the deadline.
fn listed_ops(ops: &[KeyOp], frontier: &Frontier) -> Vec<usize> {
    if ops.len() <= LISTED_OPS_MAX {
        return (0..ops.len()).collect();
    }
    let tail = frontier.prefix.len().saturating_sub(3);
    let mut listed: Vec<usize> = frontier.prefix[tail..]
        .iter()
        .chain(&frontier.pending)
        .chain(std::iter::once(&frontier.deadline))
        .copied()
        .collect();
    listed.sort_unstable();
    listed.dedup();
    listed.truncate(LISTED_OPS_MAX);
    listed
}

fn why_stuck(key_history: &KeyHistory, ops: &[KeyOp], frontier: &Frontier, index: usize) -> String {
    let (op, state) = (ops[index], frontier.state);
    let Kind::Read(value) = op.kind else {
        return why_write_stuck(key_history, ops, frontier, index);
    };
    if value == state {
        return "every order that puts it here fails later".to_string();
    }
    let mut reason = format!(
        "it saw {} but the key is {} at that point",
        key_history.describe_state(value),
        key_history.describe_state(state)
    );
    let writers: Vec<&KeyOp> = key_history
        .ops
        .iter()
        .filter(|w| w.kind == Kind::Write(value))
        .collect();
    if value != ABSENT && writers.is_empty() {
        reason.push_str("; no SET on this key ever wrote that value");
    } else if value != ABSENT && writers.iter().all(|w| w.call_ns > op.return_ns) {
        reason.push_str("; every SET of that value was called after this GET returned");
    }
    reason
}

fn why_write_stuck(
    key_history: &KeyHistory,
    ops: &[KeyOp],
    frontier: &Frontier,
    index: usize,
) -> String {
    let state = frontier.state;
    let pending = |i: &usize| !frontier.prefix.contains(i) && *i != index;
    let reader = (0..ops.len())
        .filter(pending)
        .find(|&i| ops[i].kind == Kind::Read(state));
    let restorable = (0..ops.len())
        .filter(pending)
        .any(|i| ops[i].kind == Kind::Write(state));
    match reader {
        Some(reader) if !restorable && ops[index].kind != Kind::Write(state) => format!(
            "GET #{} must see the key as {} first, and nothing could restore that",
            ops[reader].id,
            key_history.describe_state(state)
        ),
        _ => "every order that applies it here fails later".to_string(),
    }
}
