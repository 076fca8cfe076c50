//! Hand-written histories with a known answer.

mod common;

use common::History;
use raftkv_checker::{check, try_check, Budget, HistoryError, Verdict, Violation};

fn verdict(history: &History) -> Verdict {
    check(&history.ops, Budget::default())
}

#[track_caller]
fn assert_linearizable(history: &History) {
    let verdict = verdict(history);
    assert!(
        verdict.is_linearizable(),
        "expected linearizable, got: {verdict}"
    );
}

/// Asserts a violation on `key` whose witness includes every op in `must_include`.
#[track_caller]
fn assert_violation(history: &History, key: &str, must_include: &[u64]) -> Violation {
    let verdict = verdict(history);
    let Verdict::NotLinearizable(violation) = verdict else {
        panic!("expected a violation, got: {verdict}");
    };
    assert_eq!(violation.key, key, "{violation}");
    let ids: Vec<u64> = violation.operations.iter().map(|op| op.id).collect();
    for id in must_include {
        assert!(
            ids.contains(id),
            "op #{id} missing from the witness {ids:?}:\n{violation}"
        );
    }
    assert!(
        violation.explanation.contains(&format!("key {key:?}")),
        "{violation}"
    );
    println!("{violation}\n");
    violation
}

// ---- linearizable ----

#[test]
fn empty_history_is_linearizable() {
    assert_linearizable(&History::new());
}

#[test]
fn sequential_set_get_delete() {
    let mut h = History::new();
    h.get(1, "a", None, 0, 5);
    h.set(1, "a", "1", 10, 20);
    h.get(2, "a", Some("1"), 30, 40);
    h.set(1, "a", "2", 50, 60);
    h.get(2, "a", Some("2"), 70, 80);
    h.delete(1, "a", 90, 100);
    h.get(2, "a", None, 110, 120);
    h.set(1, "a", "1", 130, 140); // values may repeat
    h.get(2, "a", Some("1"), 150, 160);
    assert_linearizable(&h);
}

#[test]
fn concurrent_writes_and_a_read_seeing_either() {
    for seen in ["w1", "w2"] {
        let mut h = History::new();
        h.set(1, "k", "w1", 0, 100);
        h.set(2, "k", "w2", 10, 90);
        h.get(3, "k", Some(seen), 50, 150);
        h.get(3, "k", Some(seen), 160, 170); // the same winner stays
        assert_linearizable(&h);
    }
}

#[test]
fn read_concurrent_with_a_write_sees_old_or_new() {
    for seen in [None, Some("new")] {
        let mut h = History::new();
        h.set(1, "k", "new", 0, 100);
        h.get(2, "k", seen, 10, 20);
        assert_linearizable(&h);
    }
}

#[test]
fn unknown_write_that_took_effect() {
    let mut h = History::new();
    h.set_unknown(1, "k", "v1", 10);
    h.get(2, "k", None, 20, 30); // not yet
    h.get(2, "k", Some("v1"), 1_000, 1_010); // took effect late
    h.get(3, "k", Some("v1"), 2_000, 2_010);
    assert_linearizable(&h);
}

#[test]
fn unknown_write_that_never_took_effect() {
    let mut h = History::new();
    h.set(1, "k", "v0", 0, 5);
    h.set_unknown(1, "k", "v1", 10);
    h.get(2, "k", Some("v0"), 20, 30);
    h.get(2, "k", Some("v0"), 1_000, 1_010);
    assert_linearizable(&h);
}

#[test]
fn unknown_delete_may_take_effect_late() {
    let mut h = History::new();
    h.set(1, "k", "v0", 0, 5);
    h.delete_unknown(1, "k", 10);
    h.get(2, "k", Some("v0"), 20, 30);
    h.get(2, "k", None, 40, 50);
    assert_linearizable(&h);
}

#[test]
fn unknown_get_constrains_nothing() {
    let mut h = History::new();
    h.get_unknown(1, "k", 0);
    h.set(1, "k", "v", 10, 20);
    assert_linearizable(&h);
}

#[test]
fn reads_of_absent_keys() {
    let mut h = History::new();
    h.get(1, "never", None, 0, 10);
    h.get(2, "never", None, 5, 15);
    h.set(1, "other", "x", 20, 30);
    h.get(2, "never", None, 40, 50);
    assert_linearizable(&h);
}

#[test]
fn delete_then_get_none() {
    let mut h = History::new();
    h.set(1, "k", "v", 0, 10);
    h.delete(1, "k", 20, 30);
    h.get(2, "k", None, 40, 50);
    h.delete(1, "k", 60, 70); // deleting an absent key is fine
    h.get(2, "k", None, 80, 90);
    assert_linearizable(&h);
}

#[test]
fn touching_intervals_count_as_concurrent() {
    // The write returned at t=10 and the read was called at t=10: not ordered.
    let mut h = History::new();
    h.set(1, "k", "v", 0, 10);
    h.get(2, "k", None, 10, 20);
    assert_linearizable(&h);
}

#[test]
fn instantaneous_operations() {
    let mut h = History::new();
    h.set(1, "k", "v", 5, 5);
    h.get(2, "k", None, 5, 5); // same instant: may go first
    h.get(2, "k", Some("v"), 6, 6);
    assert_linearizable(&h);
}

#[test]
fn keys_are_independent() {
    let mut h = History::new();
    h.set(1, "a", "1", 0, 10);
    h.set(1, "b", "1", 0, 10);
    h.get(2, "a", Some("1"), 20, 30);
    h.get(2, "b", Some("1"), 20, 30);
    h.delete(1, "a", 40, 50);
    h.get(2, "a", None, 60, 70);
    h.get(2, "b", Some("1"), 60, 70);
    assert_linearizable(&h);
}

// ---- not linearizable ----

#[test]
fn stale_read_after_completed_write() {
    let mut h = History::new();
    let w1 = h.set(1, "k", "v1", 0, 10);
    let w2 = h.set(1, "k", "v2", 20, 30);
    let r = h.get(2, "k", Some("v1"), 40, 50);
    let violation = assert_violation(&h, "k", &[w1, w2, r]);
    assert_eq!(violation.operations.len(), 3);
}

#[test]
fn stale_absent_read_after_completed_write() {
    let mut h = History::new();
    let w = h.set(1, "k", "v1", 0, 10);
    let r = h.get(2, "k", None, 20, 30);
    let violation = assert_violation(&h, "k", &[w, r]);
    assert_eq!(violation.operations.len(), 2);
}

#[test]
fn read_of_a_value_never_written() {
    let mut h = History::new();
    h.set(1, "k", "v1", 0, 10);
    let r = h.get(2, "k", Some("ghost"), 20, 30);
    let violation = assert_violation(&h, "k", &[r]);
    assert_eq!(violation.operations.len(), 1);
    assert!(
        violation.explanation.contains("ever wrote that value"),
        "{violation}"
    );
}

#[test]
fn new_then_old_value_in_real_time_order() {
    let mut h = History::new();
    let w1 = h.set(1, "k", "v1", 0, 10);
    let w2 = h.set(1, "k", "v2", 20, 1_000); // slow, still in flight
    let r_new = h.get(2, "k", Some("v2"), 30, 40);
    let r_old = h.get(3, "k", Some("v1"), 50, 60);
    let violation = assert_violation(&h, "k", &[w1, w2, r_new, r_old]);
    assert_eq!(violation.operations.len(), 4);
}

#[test]
fn read_sees_a_write_that_started_after_it_returned() {
    let mut h = History::new();
    let r = h.get(1, "k", Some("v1"), 0, 10);
    let w = h.set(2, "k", "v1", 20, 30);
    let violation = assert_violation(&h, "k", &[r, w]);
    assert!(
        violation
            .explanation
            .contains("called after this GET returned"),
        "{violation}"
    );
}

#[test]
fn unknown_write_cannot_take_effect_before_its_call() {
    let mut h = History::new();
    let r = h.get(1, "k", Some("v1"), 0, 10);
    let w = h.set_unknown(2, "k", "v1", 20);
    assert_violation(&h, "k", &[r, w]);
}

#[test]
fn delete_ignored() {
    let mut h = History::new();
    let w = h.set(1, "k", "v1", 0, 10);
    let d = h.delete(1, "k", 20, 30);
    let r = h.get(2, "k", Some("v1"), 40, 50);
    let violation = assert_violation(&h, "k", &[w, d, r]);
    assert_eq!(violation.operations.len(), 3);
}

#[test]
fn violation_found_among_many_clean_ops_and_keys() {
    let mut h = History::new();
    for i in 0..50u64 {
        for key in ["a", "b", "c"] {
            let value = format!("{key}{i}");
            h.set(i % 4, key, &value, i * 100, i * 100 + 30);
            h.get(i % 4 + 4, key, Some(&value), i * 100 + 40, i * 100 + 60);
        }
    }
    // A stale read on "b" in the middle: "b20" was overwritten by "b21".
    let stale = h.get(9, "b", Some("b20"), 2_140, 2_150);
    let violation = assert_violation(&h, "b", &[stale]);
    assert!(violation.operations.len() <= 4, "{violation}");
}

#[test]
fn unknown_writes_do_not_hide_a_stale_read() {
    let mut h = History::new();
    let w1 = h.set(1, "k", "v1", 0, 10);
    for i in 0..20u64 {
        h.set_unknown(3, "k", &format!("u{i}"), 15 + i);
        h.get(4, "k", Some(&format!("u{i}")), 100 + 10 * i, 105 + 10 * i);
    }
    let w2 = h.set(1, "k", "v2", 400, 410);
    let r = h.get(2, "k", Some("v1"), 420, 430);
    assert_violation(&h, "k", &[w1, w2, r]);
}

// ---- budget and malformed input ----

#[test]
fn tiny_budget_gives_unknown_default_budget_decides() {
    let mut h = History::new();
    for i in 0..30u64 {
        h.set(i, "k", &format!("v{i}"), 0, 1_000);
        h.get(100 + i, "k", Some(&format!("v{i}")), 0, 1_000);
    }
    let verdict = check(
        &h.ops,
        Budget {
            max_steps_per_key: 10,
        },
    );
    assert_eq!(verdict, Verdict::Unknown { key: "k".into() }, "{verdict}");
    assert!(verdict.to_string().contains("ran out of budget"));
    assert_linearizable(&h);
}

#[test]
fn malformed_histories_are_rejected() {
    let mut h = History::new();
    h.set(1, "k", "v", 10, 5);
    assert!(matches!(
        try_check(&h.ops, Budget::default()),
        Err(HistoryError::ReturnBeforeCall { id: 0, .. })
    ));
    let mut h = History::new();
    h.set(1, "k", "v", 0, 5);
    h.set(1, "k", "v", 0, 5);
    h.ops[1].id = 0;
    assert_eq!(
        try_check(&h.ops, Budget::default()),
        Err(HistoryError::DuplicateId { id: 0 })
    );
    let mut h = History::new();
    h.set(1, "k", "v", 0, 5);
    h.ops[0].output = raftkv_checker::Output::Value(None);
    assert!(matches!(
        try_check(&h.ops, Budget::default()),
        Err(HistoryError::OutputMismatch { .. })
    ));
}

#[test]
#[should_panic(expected = "malformed history")]
fn check_panics_on_malformed_history() {
    let mut h = History::new();
    h.get(1, "k", None, 10, 5);
    check(&h.ops, Budget::default());
}

// ---- bounded-staleness reads ----

/// A value overwritten 30 ns before the read's call: stale, so not
/// linearizable as a plain read, but within a 50 ns bound and past a 20 ns
/// one.
#[test]
fn a_bounded_read_may_be_stale_by_its_bound_and_no_more() {
    use raftkv_checker::{Input, Operation, Output};
    let history = |bound: u64| {
        let w = |id: u64, value: &str, call_ns: u64, return_ns: u64| Operation {
            id,
            client: 1,
            input: Input::Set {
                key: "a".into(),
                value: value.into(),
            },
            output: Output::Ok,
            call_ns,
            return_ns,
        };
        let read = Operation::bounded_read(3, 2, "a".into(), Some("1".into()), 100, 110, bound);
        vec![w(1, "1", 0, 10), w(2, "2", 60, 70), read]
    };
    assert!(!check(&history(0), Budget::default()).is_linearizable());
    assert!(!check(&history(20), Budget::default()).is_linearizable());
    assert!(check(&history(50), Budget::default()).is_linearizable());
}
