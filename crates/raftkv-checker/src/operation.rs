//! The vocabulary of a history: what a client asked ([`Input`]), what it
//! observed ([`Output`]), the call with its interval ([`Operation`]), and
//! how they print. Every other module reads these; this one reads none.

use std::fmt;

/// Longest value or key shown in full; longer ones are cut with `...`.
const QUOTE_CHARS_MAX: usize = 40;

/// What a client asked for.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Input {
    Get { key: String },
    Set { key: String, value: String },
    Delete { key: String },
}

impl Input {
    /// The one key this operation touches.
    pub fn key(&self) -> &str {
        match self {
            Input::Get { key } | Input::Set { key, .. } | Input::Delete { key } => key,
        }
    }
}

/// What the client observed.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Output {
    /// GET result: the value, or None when the key is absent.
    Value(Option<String>),
    /// SET / DELETE acknowledged.
    Ok,
    /// The call's outcome is unknown (timeout, crash, connection lost): it may
    /// or may not have taken effect, at any time after its call.
    Unknown,
}

/// One completed (or abandoned) client call.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Operation {
    /// Unique per history, used in explanations.
    pub id: u64,
    pub client: u64,
    pub input: Input,
    pub output: Output,
    /// Invocation time on ONE shared real clock.
    pub call_ns: u64,
    /// Response time. Ignored for `Output::Unknown` (such a call is treated as
    /// never having returned); pass `u64::MAX` there.
    pub return_ns: u64,
}

impl Operation {
    /// A GET that may be stale by at most `max_staleness_ns` (a
    /// bounded-staleness read), checked as what it promises: it returns the
    /// state at some instant between `max_staleness_ns` before its call and
    /// its return, which is a linearizable GET called that much earlier.
    /// Its value must be one a linearizable read could have returned in
    /// that wider interval, and no older.
    pub fn bounded_read(
        id: u64,
        client: u64,
        key: String,
        value: Option<String>,
        call_ns: u64,
        return_ns: u64,
        max_staleness_ns: u64,
    ) -> Operation {
        Operation {
            id,
            client,
            input: Input::Get { key },
            output: Output::Value(value),
            call_ns: call_ns.saturating_sub(max_staleness_ns),
            return_ns,
        }
    }
}

impl fmt::Display for Input {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Input::Get { key } => write!(f, "GET {}", quote(key)),
            Input::Set { key, value } => {
                write!(f, "SET {} {}", quote(key), quote(value))
            }
            Input::Delete { key } => write!(f, "DELETE {}", quote(key)),
        }
    }
}

impl fmt::Display for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Output::Value(Some(value)) => f.write_str(&quote(value)),
            Output::Value(None) => f.write_str("(absent)"),
            Output::Ok => f.write_str("ok"),
            Output::Unknown => f.write_str("? (outcome unknown)"),
        }
    }
}

impl fmt::Display for Operation {
    /// `#7 SET "k" "v" -> ok by client 2 [t=1.203s..1.205s]`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "#{} {} -> {} {}",
            self.id,
            self.input,
            self.output,
            client_and_interval(self)
        )
    }
}

/// `by client 2 [t=1.203s..1.205s]`, with `..?` for a call that never returned.
pub(crate) fn client_and_interval(op: &Operation) -> String {
    let end = if op.output == Output::Unknown {
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
