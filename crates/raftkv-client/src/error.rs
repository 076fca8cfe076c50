//! What a client call can end with.

use thiserror::Error;

#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum ClientError {
    /// The deadline passed while nodes kept redirecting: the last one named
    /// this leader (id 0 / empty address when unknown).
    #[error("not the leader; leader is node {leader_id} at {leader_addr:?} ({message})")]
    NotLeader {
        leader_id: u64,
        leader_addr: String,
        message: String,
    },
    /// No node answered as leader (or, for a stale read, at all): every
    /// endpoint tried refused the connection, or knew no leader, until the
    /// deadline (or, when none accepted connections, sooner). For a write,
    /// the outcome is unknown unless every attempt failed to connect.
    #[error("no {what} reachable (tried {}): {last_error}", tried.join(", "))]
    NoneReachable {
        what: &'static str,
        tried: Vec<String>,
        last_error: String,
    },
    /// The deadline passed. For a write, the outcome is unknown.
    #[error("timed out after {elapsed_ms} ms; last error: {last_error}")]
    Timeout { elapsed_ms: u64, last_error: String },
    /// The request itself is wrong (key or value too large, empty key, ...).
    /// Retrying will not help.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The node refused for load: rate limit or too many pending requests.
    #[error("resource exhausted: {0}")]
    ResourceExhausted(String),
    /// No node could be reached or none could serve before the deadline.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// `get_existing` found no value for the key.
    #[error("key not found: {0:?}")]
    KeyNotFound(String),
    /// The session's sequence number was older than the last applied one.
    #[error("rejected by the server: {0}")]
    Rejected(String),
    /// An endpoint string could not be parsed.
    #[error("bad endpoint {0:?}: {1}")]
    BadEndpoint(String, String),
}
