//! What the checker answers: the search [`Budget`] it may spend, and the
//! [`Verdict`] with its [`Violation`].

use std::fmt;

use crate::operation::{quote, Operation};

/// How much search the checker may spend before answering `Verdict::Unknown`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    /// Search steps (one candidate tried or one backtrack) allowed for one
    /// search of a key. A key that does not pass its first, quick search
    /// (a quarter of this) may take up to 2.25 times this in all, and a
    /// violating key as much again to shrink the reported witness.
    pub max_steps_per_key: u64,
}

impl Default for Budget {
    /// About half a second of search on the development machine; keys of
    /// simulator-sized histories need a few hundred steps.
    fn default() -> Self {
        Budget {
            max_steps_per_key: 5_000_000,
        }
    }
}

/// A key whose history has no linearization.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub key: String,
    /// A small set of operations on `key` that on its own is already not
    /// linearizable (shrunk greedily from the key's history), in call order.
    pub operations: Vec<Operation>,
    /// Human-readable account: the operations and why no order works.
    pub explanation: String,
}

/// The checker's answer for a whole history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Linearizable,
    NotLinearizable(Violation),
    /// A key's search ran out of budget (no violation was found elsewhere).
    Unknown {
        key: String,
    },
}

impl Verdict {
    pub fn is_linearizable(&self) -> bool {
        matches!(self, Verdict::Linearizable)
    }

    pub fn is_violation(&self) -> bool {
        matches!(self, Verdict::NotLinearizable(_))
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.explanation)
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Linearizable => f.write_str("linearizable"),
            Verdict::NotLinearizable(violation) => {
                write!(f, "NOT linearizable: {violation}")
            }
            Verdict::Unknown { key } => write!(
                f,
                "unknown: the search for key {} ran out of budget",
                quote(key)
            ),
        }
    }
}
