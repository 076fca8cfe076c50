//! The peer wire format: Raft messages between nodes travel on plain TCP
//! connections, multiplexed with gRPC on the node's one listening port.
//!
//! A connection from node A to node B carries A's messages to B only; B's
//! messages to A go on B's own connection to A. On it:
//!
//! - A sends the 8-byte preface [`PEER_MAGIC`] (gRPC's HTTP/2 preface starts
//!   with `P`, ours with `R`: the first byte tells the listener which it is),
//!   then frames: a 4-byte big-endian length and that many bytes of one
//!   protobuf `PeerBatch` (`proto/raftkv.proto`).
//! - B answers with acknowledgements only: 8-byte big-endian counts of the
//!   frames it has taken so far, at most one per [`ACK_DELAY`]. They prove the
//!   connection alive; a sender that sees no progress for its time-out
//!   reconnects. Raft's own replies travel as batches on B's connection to A.
//!
//! Why not a gRPC call per batch: each call costs an HTTP/2 stream, headers
//! both ways, a task on each side and hops through tonic's buffer and
//! hyper's connection tasks. Profiles of 1-client puts put most of the
//! leader's CPU there; a frame costs one `write` and one `read`.

use std::time::Duration;

use bytes::BufMut;
use prost::Message as _;
use raftkv_client::pb;
use tokio_util::codec::LengthDelimitedCodec;

/// The first bytes of a peer connection.
pub const PEER_MAGIC: &[u8; 8] = b"RKVPEER1";

/// Largest frame accepted (entries of up to `max_bytes_per_append` per
/// message, a few messages per batch; or up to `max_batch_bytes` of snapshot
/// chunks of `snapshot_chunk_bytes` each, with protobuf overhead).
pub const MAX_FRAME_BYTES: usize = 64 << 20;

/// How long a receiver may hold an acknowledgement back, to acknowledge many
/// frames at once. Well below any sender's time-out.
pub const ACK_DELAY: Duration = Duration::from_millis(5);

/// Appends one frame (length prefix and encoded batch) to `out`, a growable
/// buffer (`BytesMut`, `Vec<u8>`).
pub fn encode_frame(batch: &pb::PeerBatch, out: &mut impl BufMut) {
    let len = batch.encoded_len();
    out.put_u32(u32::try_from(len).unwrap_or(u32::MAX));
    batch.encode(out).expect("a growable buffer has room");
}

/// The codec that splits a receiver's byte stream into frames.
pub fn frame_codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .length_field_length(4)
        .max_frame_length(MAX_FRAME_BYTES)
        .new_codec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use tokio_util::codec::Decoder;

    #[test]
    fn frames_round_trip_through_the_codec_in_pieces() {
        let batch = |from: u64| pb::PeerBatch {
            cluster_id: "c".into(),
            from,
            to: 1,
            messages: vec![],
            from_addr: "127.0.0.1:7001".into(),
            from_zone: "eu-west".into(),
        };
        let mut wire = BytesMut::new();
        encode_frame(&batch(2), &mut wire);
        encode_frame(&batch(3), &mut wire);
        let mut codec = frame_codec();
        let mut got = Vec::new();
        // Feed the bytes one at a time: a frame is complete only at its end.
        let mut input = BytesMut::new();
        for b in wire {
            input.put_u8(b);
            while let Some(frame) = codec.decode(&mut input).unwrap() {
                got.push(pb::PeerBatch::decode(frame).unwrap());
            }
        }
        assert_eq!(got, vec![batch(2), batch(3)]);
    }

    #[test]
    fn an_oversized_frame_is_an_error() {
        let mut input = BytesMut::new();
        input.put_u32(u32::try_from(MAX_FRAME_BYTES + 1).unwrap());
        assert!(frame_codec().decode(&mut input).is_err());
    }
}
