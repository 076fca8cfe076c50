//! Turning a failed search into a small, readable violation report.
//!
//! The key's history is first shrunk (delta-debugging style: drop chunks of
//! operations while what is left is still not linearizable), then the
//! search's furthest point on the shrunk history is described.

use std::fmt::Write as _;

use crate::history::{KeyHistory, KeyOp, Kind, ABSENT};
use crate::search::{self, Frontier, SearchResult};
use crate::{Budget, Operation, Violation};

/// Longest value or key shown in full; longer ones are cut with `...`.
const QUOTE_CHARS_MAX: usize = 40;
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
    let (keep, frontier) = shrink(key_history, subset, frontier, budget.max_steps_per_key);
    let ops: Vec<KeyOp> = keep.iter().map(|&i| key_history.ops[i]).collect();
    let explanation = describe(history, key_history, &ops, &frontier);
    Violation {
        key: key_history.key.clone(),
        operations: ops.iter().map(|op| history[op.source].clone()).collect(),
        explanation,
    }
}

/// Shrinks `keep` (indices into the key's ops, known not linearizable, with
/// `frontier` its search result) within `steps_max` search steps in total.
fn shrink(
    key_history: &KeyHistory,
    mut keep: Vec<usize>,
    mut frontier: Frontier,
    steps_max: u64,
) -> (Vec<usize>, Frontier) {
    let mut steps_left = steps_max;
    // Ops called after every branch of the search had died never mattered
    // to it: dropping them first is a cheap big cut (verified like the rest).
    let late = keep
        .iter()
        .position(|&i| key_history.ops[i].call_ns > frontier.horizon_ns)
        .unwrap_or(keep.len());
    if late < keep.len() {
        let candidate = without(key_history, &keep, late..keep.len());
        let ops: Vec<KeyOp> = candidate.iter().map(|&i| key_history.ops[i]).collect();
        let outcome = search::search(&ops, steps_left);
        steps_left = steps_left.saturating_sub(outcome.steps);
        if let SearchResult::Violation(smaller) = outcome.result {
            keep = candidate;
            frontier = smaller;
        }
    }
    let mut chunk = (keep.len() / 2).max(1);
    loop {
        let mut shrunk = false;
        let mut start = 0;
        while start < keep.len() {
            let end = (start + chunk).min(keep.len());
            let candidate = without(key_history, &keep, start..end);
            if candidate.len() < keep.len() {
                let ops: Vec<KeyOp> = candidate.iter().map(|&i| key_history.ops[i]).collect();
                let outcome = search::search(&ops, steps_left);
                steps_left = steps_left.saturating_sub(outcome.steps);
                match outcome.result {
                    SearchResult::Violation(smaller) => {
                        keep = candidate;
                        frontier = smaller;
                        shrunk = true;
                        continue; // the same `start` now names later ops
                    }
                    SearchResult::OutOfBudget => return (keep, frontier),
                    SearchResult::Linearizable => {}
                }
            }
            start = end;
        }
        if chunk == 1 && !shrunk {
            return (keep, frontier);
        }
        chunk = (chunk / 2).max(1);
    }
}

/// `keep` without the ops at `range`, except writes whose value a remaining
/// GET returned: dropping those would turn the witness into a different,
/// misleading violation ("read of a value never written").
fn without(key_history: &KeyHistory, keep: &[usize], range: std::ops::Range<usize>) -> Vec<usize> {
    let outside = keep[..range.start].iter().chain(&keep[range.end..]);
    let read_values: Vec<u32> = outside
        .filter_map(|&i| match key_history.ops[i].kind {
            Kind::Read(value) => Some(value),
            Kind::Write(_) => None,
        })
        .collect();
    keep.iter()
        .enumerate()
        .filter(|&(position, &i)| {
            if !range.contains(&position) {
                return true;
            }
            match key_history.ops[i].kind {
                Kind::Read(_) => false,
                Kind::Write(value) => read_values.contains(&value),
            }
        })
        .map(|(_, &i)| i)
        .collect()
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
        "key {}: not linearizable; these {} of its {} operations alone have no valid order:",
        quote(&key_history.key),
        ops.len(),
        key_history.ops_total
    );
    let listed = listed_ops(ops, frontier);
    for &index in &listed {
        let _ = writeln!(text, "  {}", history[ops[index].source]);
    }
    if listed.len() < ops.len() {
        let _ = writeln!(
            text,
            "  ... and {} more (all in Violation::operations): writes of values these GETs saw, which cannot be left out",
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
            "it would overwrite {} which GET #{} has yet to see",
            key_history.describe_state(state),
            ops[reader].id
        ),
        _ => "every order that applies it here fails later".to_string(),
    }
}

/// `by client 2 [t=1.203s..1.205s]`, with `..?` for a call that never returned.
pub(crate) fn client_and_interval(op: &Operation) -> String {
    let end = if op.output == crate::Output::Unknown {
        "?".to_string()
    } else {
        fmt_time(op.return_ns)
    };
    format!(
        "by client {} [t={}..{}]",
        op.client,
        fmt_time(op.call_ns),
        end
    )
}

/// Seconds with at least millisecond digits, more only when they are set.
pub(crate) fn fmt_time(ns: u64) -> String {
    let mut fraction = format!("{:09}", ns % 1_000_000_000);
    while fraction.len() > 3 && fraction.ends_with('0') {
        fraction.pop();
    }
    format!("{}.{}s", ns / 1_000_000_000, fraction)
}

/// A string in Rust debug quotes, cut to a readable length.
pub(crate) fn quote(value: &str) -> String {
    if value.chars().count() <= QUOTE_CHARS_MAX {
        return format!("{value:?}");
    }
    let head: String = value.chars().take(QUOTE_CHARS_MAX).collect();
    format!("{head:?}...")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_show_milliseconds_and_more_only_when_set() {
        assert_eq!(fmt_time(0), "0.000s");
        assert_eq!(fmt_time(1_203_000_000), "1.203s");
        assert_eq!(fmt_time(1_203_400_000), "1.2034s");
        assert_eq!(fmt_time(7), "0.000000007s");
        assert_eq!(fmt_time(u64::MAX), "18446744073.709551615s");
    }

    #[test]
    fn long_values_are_cut() {
        assert_eq!(quote("v1"), "\"v1\"");
        assert_eq!(quote("a\"b"), "\"a\\\"b\"");
        let long = "x".repeat(100);
        assert_eq!(
            quote(&long),
            format!("\"{}\"...", "x".repeat(QUOTE_CHARS_MAX))
        );
    }
}
