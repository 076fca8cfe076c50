//! Validation of a history and its split into compact per-key histories.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::operation::{quote, Input, Operation, Output};

/// A history the checker cannot judge because it was recorded wrongly.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HistoryError {
    #[error("operation id {id} appears more than once")]
    DuplicateId { id: u64 },
    #[error("operation {id} returned at {return_ns} ns, before its call at {call_ns} ns")]
    ReturnBeforeCall {
        id: u64,
        call_ns: u64,
        return_ns: u64,
    },
    #[error("operation {id}: output {output:?} does not fit input {input:?}")]
    OutputMismatch {
        id: u64,
        input: Input,
        output: Output,
    },
}

/// Model state and values are interned per key; this id means "absent".
pub(crate) const ABSENT: u32 = 0;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A GET that returned this value id.
    Read(u32),
    /// A SET (value id) or DELETE (`ABSENT`).
    Write(u32),
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct KeyOp {
    pub kind: Kind,
    /// False for `Output::Unknown`: may take effect after its call, or never.
    pub definite: bool,
    pub call_ns: u64,
    /// `u64::MAX` when not definite.
    pub return_ns: u64,
    /// Index of the operation in the caller's history.
    pub source: usize,
    /// The operation's own id, for explanations.
    pub id: u64,
}

/// The operations on one key that can matter, sorted by call time.
#[derive(Debug)]
pub(crate) struct KeyHistory {
    pub key: String,
    pub ops: Vec<KeyOp>,
    /// Value id -> value; index `ABSENT` holds a placeholder.
    pub values: Vec<String>,
    /// Operations of this key in the caller's history, dropped ones included.
    pub ops_total: usize,
}

impl KeyHistory {
    /// The model state named by a value id, for explanations.
    pub fn describe_state(&self, state: u32) -> String {
        if state == ABSENT {
            "absent".to_string()
        } else {
            quote(&self.values[state as usize])
        }
    }
}

/// Validates the history and splits it per key, in key order.
pub(crate) fn partition(history: &[Operation]) -> Result<Vec<KeyHistory>, HistoryError> {
    validate(history)?;
    let mut by_key: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (index, op) in history.iter().enumerate() {
        by_key.entry(op.input.key()).or_default().push(index);
    }
    Ok(by_key
        .into_iter()
        .map(|(key, indices)| key_history(history, key, &indices))
        .collect())
}

fn validate(history: &[Operation]) -> Result<(), HistoryError> {
    let mut ids = HashSet::with_capacity(history.len());
    for op in history {
        if !ids.insert(op.id) {
            return Err(HistoryError::DuplicateId { id: op.id });
        }
        let fits = matches!(
            (&op.input, &op.output),
            (_, Output::Unknown)
                | (Input::Get { .. }, Output::Value(_))
                | (Input::Set { .. } | Input::Delete { .. }, Output::Ok)
        );
        if !fits {
            return Err(HistoryError::OutputMismatch {
                id: op.id,
                input: op.input.clone(),
                output: op.output.clone(),
            });
        }
        if op.output != Output::Unknown && op.return_ns < op.call_ns {
            return Err(HistoryError::ReturnBeforeCall {
                id: op.id,
                call_ns: op.call_ns,
                return_ns: op.return_ns,
            });
        }
    }
    Ok(())
}

fn key_history(history: &[Operation], key: &str, indices: &[usize]) -> KeyHistory {
    let mut interner = Interner::new();
    let mut ops: Vec<KeyOp> = indices
        .iter()
        .filter_map(|&source| key_op(&history[source], source, &mut interner))
        .collect();
    drop_useless_unknown_writes(&mut ops);
    ops.sort_by_key(|op| (op.call_ns, op.source));
    KeyHistory {
        key: key.to_string(),
        ops,
        values: interner.values,
        ops_total: indices.len(),
    }
}

/// Converts one operation; `None` for an unknown GET, which constrains nothing.
fn key_op(op: &Operation, source: usize, interner: &mut Interner) -> Option<KeyOp> {
    let definite = op.output != Output::Unknown;
    let kind = match (&op.input, &op.output) {
        (Input::Get { .. }, Output::Unknown) => return None,
        (Input::Get { .. }, Output::Value(value)) => Kind::Read(interner.id(value.as_deref())),
        (Input::Set { value, .. }, _) => Kind::Write(interner.id(Some(value))),
        (Input::Delete { .. }, _) => Kind::Write(ABSENT),
        (Input::Get { .. }, Output::Ok) => unreachable!("validated: GET never returns Ok"),
    };
    Some(KeyOp {
        kind,
        definite,
        call_ns: op.call_ns,
        return_ns: if definite { op.return_ns } else { u64::MAX },
        source,
        id: op.id,
    })
}

/// An unknown write of a value that no GET returned can always be dropped:
/// in any linearization no GET sits between it and the next write (such a
/// GET would return its value), so removing it changes no GET's result.
/// Dropping such writes up front keeps them out of the search, where each
/// would otherwise double the number of reachable linearized sets.
fn drop_useless_unknown_writes(ops: &mut Vec<KeyOp>) {
    let read: HashSet<u32> = ops
        .iter()
        .filter_map(|op| match op.kind {
            Kind::Read(value) => Some(value),
            Kind::Write(_) => None,
        })
        .collect();
    ops.retain(|op| match op.kind {
        Kind::Write(value) => op.definite || read.contains(&value),
        Kind::Read(_) => true,
    });
}

struct Interner {
    ids: HashMap<String, u32>,
    values: Vec<String>,
}

impl Interner {
    fn new() -> Self {
        Interner {
            ids: HashMap::new(),
            values: vec![String::new()], // slot ABSENT
        }
    }

    fn id(&mut self, value: Option<&str>) -> u32 {
        let Some(value) = value else {
            return ABSENT;
        };
        if let Some(&id) = self.ids.get(value) {
            return id;
        }
        let id = u32::try_from(self.values.len()).expect("fewer than 2^32 distinct values");
        self.values.push(value.to_string());
        self.ids.insert(value.to_string(), id);
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(id: u64, input: Input, output: Output, call_ns: u64, return_ns: u64) -> Operation {
        Operation {
            id,
            client: 1,
            input,
            output,
            call_ns,
            return_ns,
        }
    }

    fn set(key: &str, value: &str) -> Input {
        Input::Set {
            key: key.into(),
            value: value.into(),
        }
    }

    fn get(key: &str) -> Input {
        Input::Get { key: key.into() }
    }

    #[test]
    fn splits_per_key_in_key_order_and_interns_values() {
        let history = [
            op(0, set("b", "x"), Output::Ok, 0, 1),
            op(1, set("a", "x"), Output::Ok, 0, 1),
            op(2, get("a"), Output::Value(Some("x".into())), 2, 3),
            op(3, get("a"), Output::Value(None), 2, 3),
        ];
        let keys = partition(&history).unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[0].key, "a");
        let kinds: Vec<Kind> = keys[0].ops.iter().map(|op| op.kind).collect();
        assert_eq!(kinds, [Kind::Write(1), Kind::Read(1), Kind::Read(ABSENT)]);
        assert_eq!(keys[0].values[1], "x");
        assert_eq!(keys[0].ops_total, 3);
    }

    #[test]
    fn drops_unknown_gets_and_unknown_writes_nobody_read() {
        let history = [
            op(0, get("k"), Output::Unknown, 0, u64::MAX),
            op(1, set("k", "never-read"), Output::Unknown, 0, u64::MAX),
            op(2, set("k", "read"), Output::Unknown, 0, u64::MAX),
            op(3, Input::Delete { key: "k".into() }, Output::Unknown, 0, 7), // no GET saw absent
            op(4, get("k"), Output::Value(Some("read".into())), 5, 6),
            op(5, set("k", "definite"), Output::Ok, 5, 6),
        ];
        let keys = partition(&history).unwrap();
        let ids: Vec<u64> = keys[0].ops.iter().map(|op| op.id).collect();
        assert_eq!(ids, [2, 4, 5]);
        assert_eq!(
            keys[0].ops[0].return_ns,
            u64::MAX,
            "unknown ops never return"
        );
        assert_eq!(keys[0].ops_total, 6);
    }

    #[test]
    fn rejects_mismatched_outputs() {
        let history = [op(9, get("k"), Output::Ok, 0, 1)];
        assert!(matches!(
            partition(&history),
            Err(HistoryError::OutputMismatch { id: 9, .. })
        ));
    }
}
