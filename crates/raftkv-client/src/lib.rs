//! # raftkv-client
//!
//! The wire protocol of raftkv (generated from `proto/raftkv.proto`, in
//! [`pb`]) and a client library that finds the leader by itself.
//!
//! [`Client`] takes a list of endpoints, caches the leader, follows the
//! leader hint a node returns when it cannot serve, and retries with back-off
//! until a deadline. Writes carry a session id and sequence number so that a
//! retried SET or DELETE applies exactly once. The core remembers only the
//! last sequence number of a session, so a session has at most one write in
//! flight: writes through one [`Client`] are serialised. For concurrent
//! writers, use one client per task ([`Client::with_new_session`] shares the
//! connections).

mod client;
pub mod codec;
mod error;

pub use client::{
    Answer, Client, ClientOptions, Consistency, NodeDistance, StaleInfo, WriteOutcome,
    MAX_MESSAGE_BYTES,
};
pub use error::ClientError;

/// Generated protobuf and gRPC types. Keep them at the edge: the server
/// converts them to core types in `raftkv-server/src/convert.rs`.
#[allow(clippy::all, missing_docs)]
pub mod pb {
    tonic::include_proto!("raftkv.v1");
}

/// Decodes the [`pb::LeaderHint`] carried in the details of an UNAVAILABLE
/// status, if any.
pub fn leader_hint(status: &tonic::Status) -> Option<pb::LeaderHint> {
    use prost::Message;
    if status.details().is_empty() {
        return None;
    }
    pb::LeaderHint::decode(status.details()).ok()
}

/// Builds the status a node returns when it cannot serve a call, naming the
/// leader it knows.
pub fn not_leader_status(message: String, leader_id: u64, leader_addr: &str) -> tonic::Status {
    use prost::Message;
    let hint = pb::LeaderHint {
        leader_id,
        leader_addr: leader_addr.to_owned(),
    };
    tonic::Status::with_details(
        tonic::Code::Unavailable,
        message,
        hint.encode_to_vec().into(),
    )
}
