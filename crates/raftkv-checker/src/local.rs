//! Looking for a violation in a small part of a key's history.
//!
//! A sub-history that keeps, for each of its GETs, every write that GET
//! could have read from (see `readfrom`) is linearizable whenever the whole
//! history is: restricting a linearization of the whole to it leaves every
//! GET right after the same write. So a violation found in such a
//! sub-history is a violation of the whole; a small one is cheap to find,
//! even where the search over the whole history would drown in the many
//! orders of busy concurrent stretches, and it is easy to explain.

use crate::history::{KeyHistory, KeyOp, Kind, ABSENT};
use crate::readfrom;
use crate::search::{self, Frontier, SearchResult};

/// GETs per window; windows overlap by half.
const WINDOW_READS: usize = 24;
/// Search steps allowed per window.
const WINDOW_STEPS_MAX: u64 = 100_000;

/// A non-linearizable sub-history, as indices into the key's ops, with the
/// search's frontier on it; `None` if none was found within `steps_max`.
pub(crate) fn find_violation(
    key_history: &KeyHistory,
    steps_max: u64,
) -> Option<(Vec<usize>, Frontier)> {
    let ops = &key_history.ops;
    let analysis = readfrom::analyse(ops);
    let mut steps_left = steps_max;
    for read in 0..ops.len() {
        if let Some(subset) = unexplained_read(ops, &analysis, read) {
            if let Some(frontier) = violation_in(ops, &subset, &mut steps_left) {
                return Some((subset, frontier));
            }
        }
    }
    let reads: Vec<usize> = (0..ops.len())
        .filter(|&i| matches!(ops[i].kind, Kind::Read(_)))
        .collect();
    let mut start = 0;
    while start < reads.len() && steps_left > 0 {
        let window = &reads[start..(start + WINDOW_READS).min(reads.len())];
        let subset = window_subset(ops, &analysis, window);
        if let Some(frontier) = violation_in(ops, &subset, &mut steps_left) {
            return Some((subset, frontier));
        }
        start += WINDOW_READS / 2;
    }
    None
}

/// For a GET that no write (nor the initial absent state) can explain: the
/// GET, the write that hides the older ones from it, and every write of its
/// value (later ones too: they show it was read too early).
fn unexplained_read(
    ops: &[KeyOp],
    analysis: &readfrom::ReadFrom,
    read: usize,
) -> Option<Vec<usize>> {
    let Kind::Read(value) = ops[read].kind else {
        return None;
    };
    let fence = analysis.fences[read];
    let initial_state_explains = value == ABSENT && fence.is_none();
    if !analysis.writers[read].is_empty() || initial_state_explains {
        return None;
    }
    let mut subset = vec![read];
    subset.extend(fence.map(|fence| fence as usize));
    subset.extend((0..ops.len()).filter(|&w| ops[w].kind == Kind::Write(value)));
    subset.sort_unstable();
    subset.dedup();
    Some(subset)
}

/// The window's GETs, every write they could have read from, and the
/// definite writes called while the window's GETs were running.
fn window_subset(ops: &[KeyOp], analysis: &readfrom::ReadFrom, window: &[usize]) -> Vec<usize> {
    let from_ns = ops[window[0]].call_ns;
    let to_ns = window
        .iter()
        .map(|&r| ops[r].return_ns)
        .max()
        .unwrap_or(from_ns);
    let mut subset = window.to_vec();
    for &read in window {
        subset.extend(analysis.writers[read].iter().map(|&w| w as usize));
    }
    subset.extend((0..ops.len()).filter(|&i| {
        let op = &ops[i];
        op.definite && matches!(op.kind, Kind::Write(_)) && (from_ns..=to_ns).contains(&op.call_ns)
    }));
    subset.sort_unstable();
    subset.dedup();
    subset
}

fn violation_in(ops: &[KeyOp], subset: &[usize], steps_left: &mut u64) -> Option<Frontier> {
    let sub_ops: Vec<KeyOp> = subset.iter().map(|&i| ops[i]).collect();
    let outcome = search::search(&sub_ops, (*steps_left).min(WINDOW_STEPS_MAX));
    *steps_left = steps_left.saturating_sub(outcome.steps);
    match outcome.result {
        SearchResult::Violation(frontier) => Some(frontier),
        SearchResult::Linearizable | SearchResult::OutOfBudget => None,
    }
}
