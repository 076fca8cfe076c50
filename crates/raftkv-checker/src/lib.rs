//! Linearizability checker for histories of a string key-value store.
//!
//! The model is a map `String -> String`, initially empty, with three
//! operations: `SET key value`, `GET key` and `DELETE key`. Every operation
//! touches one key, so the history is partitioned per key and each key is
//! checked on its own (linearizability is compositional).
//!
//! Each key is checked with the Wing–Gong–Lowe search (as in Lowe, "Testing
//! for linearizability", and Porcupine) with the memo of (set of linearized
//! operations, model state) pairs already shown to lead nowhere. See
//! `docs/checker.md` for the model, the treatment of unknown outcomes and how
//! to read a violation.
//!
//! Real-time order: operation A must precede B only when
//! `A.return_ns < B.call_ns` (strictly). Intervals are closed, so an
//! operation that returned at `t` and one called at `t` may be concurrent:
//! the checker errs on the side of never reporting a false violation.
//!
//! ```
//! use raftkv_checker::{check, Budget, Input, Operation, Output, Verdict};
//!
//! let op = |id, input, output, call_ns, return_ns| Operation { id, client: id, input, output, call_ns, return_ns };
//! let history = [
//!     op(1, Input::Set { key: "k".into(), value: "v1".into() }, Output::Ok, 0, 10),
//!     op(2, Input::Set { key: "k".into(), value: "v2".into() }, Output::Unknown, 20, u64::MAX),
//!     op(3, Input::Get { key: "k".into() }, Output::Value(Some("v1".into())), 30, 40),
//! ];
//! // The unknown SET may not have taken effect (yet): fine.
//! assert_eq!(check(&history, Budget::default()), Verdict::Linearizable);
//! ```

mod explain;
mod history;
mod local;
mod operation;
mod readfrom;
mod search;
mod verdict;

pub use history::HistoryError;
pub use operation::{Input, Operation, Output};
pub use verdict::{Budget, Verdict, Violation};

/// Checks a history; panics if the history itself is malformed (see
/// [`HistoryError`]), since that is a bug in whoever recorded it.
///
/// Keys are checked in key order; the first violating key is reported. A
/// violation on any key wins over a key that ran out of budget.
pub fn check(history: &[Operation], budget: Budget) -> Verdict {
    match try_check(history, budget) {
        Ok(verdict) => verdict,
        Err(err) => panic!("malformed history given to the linearizability checker: {err}"),
    }
}

/// Like [`check`], but returns malformed histories as an error.
pub fn try_check(history: &[Operation], budget: Budget) -> Result<Verdict, HistoryError> {
    Ok(check_detailed(history, budget)?.verdict)
}

/// A verdict plus figures about the search, for benchmarks and logs.
#[derive(Clone, Debug)]
pub struct Report {
    pub verdict: Verdict,
    /// Keys checked.
    pub keys: usize,
    /// Search steps spent on all keys (not counting witness shrinking).
    pub steps_total: u64,
    /// The most steps spent on one key (not counting witness shrinking).
    pub steps_max_per_key: u64,
}

/// Like [`try_check`], and also reports how much search it took.
pub fn check_detailed(history: &[Operation], budget: Budget) -> Result<Report, HistoryError> {
    let keys = history::partition(history)?;
    let mut report = Report {
        verdict: Verdict::Linearizable,
        keys: keys.len(),
        steps_total: 0,
        steps_max_per_key: 0,
    };
    let mut out_of_budget: Option<String> = None;
    for key_history in &keys {
        match check_key(history, key_history, budget, &mut report) {
            KeyVerdict::Linearizable => {}
            KeyVerdict::OutOfBudget => {
                out_of_budget.get_or_insert_with(|| key_history.key.clone());
            }
            KeyVerdict::Violation(violation) => {
                report.verdict = Verdict::NotLinearizable(violation);
                return Ok(report);
            }
        }
    }
    if let Some(key) = out_of_budget {
        report.verdict = Verdict::Unknown { key };
    }
    Ok(report)
}

/// Hooks for this crate's own tests; not part of the API.
#[doc(hidden)]
pub mod testing {
    use super::*;

    /// Runs only the sub-history stage on every key: the ids of the first
    /// non-linearizable sub-history found, if any.
    pub fn sub_history_violation(history: &[Operation], steps_max: u64) -> Option<Vec<u64>> {
        let keys = history::partition(history).expect("well-formed history");
        keys.iter().find_map(|key_history| {
            let (subset, _) = local::find_violation(key_history, steps_max)?;
            Some(subset.iter().map(|&i| key_history.ops[i].id).collect())
        })
    }
}

enum KeyVerdict {
    Linearizable,
    Violation(Violation),
    OutOfBudget,
}

/// One key, in stages: a quick search of the whole (most histories are
/// linearizable and pass here), then small sub-histories (a violation there
/// is one of the whole, and small), then the whole again with all the budget.
fn check_key(
    history: &[Operation],
    key_history: &history::KeyHistory,
    budget: Budget,
    report: &mut Report,
) -> KeyVerdict {
    let mut key_steps = 0;
    let verdict = check_key_stages(history, key_history, budget, &mut key_steps);
    report.steps_total += key_steps;
    report.steps_max_per_key = report.steps_max_per_key.max(key_steps);
    verdict
}

fn check_key_stages(
    history: &[Operation],
    key_history: &history::KeyHistory,
    budget: Budget,
    key_steps: &mut u64,
) -> KeyVerdict {
    let mut spend = |steps: u64| *key_steps += steps;
    let all = || (0..key_history.ops.len()).collect::<Vec<_>>();
    let quick = search::search(&key_history.ops, budget.max_steps_per_key / 4);
    spend(quick.steps);
    let whole = match quick.result {
        search::SearchResult::Linearizable => return KeyVerdict::Linearizable,
        search::SearchResult::Violation(frontier) => Some(frontier),
        search::SearchResult::OutOfBudget => None,
    };
    if let Some((subset, frontier)) = local::find_violation(key_history, budget.max_steps_per_key) {
        return KeyVerdict::Violation(explain::violation(
            history,
            key_history,
            subset,
            frontier,
            budget,
        ));
    }
    let frontier = match whole {
        Some(frontier) => frontier,
        None => {
            let full = search::search(&key_history.ops, budget.max_steps_per_key);
            spend(full.steps);
            match full.result {
                search::SearchResult::Linearizable => return KeyVerdict::Linearizable,
                search::SearchResult::OutOfBudget => return KeyVerdict::OutOfBudget,
                search::SearchResult::Violation(frontier) => frontier,
            }
        }
    };
    KeyVerdict::Violation(explain::violation(
        history,
        key_history,
        all(),
        frontier,
        budget,
    ))
}
