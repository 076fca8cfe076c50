//! The gRPC codec of the generated services: prost's, except that a request
//! that does not decode because a string field is not UTF-8 is answered
//! INVALID_ARGUMENT naming the field (prost's codec says INTERNAL, which
//! reads as a server bug and which clients retry).

use std::marker::PhantomData;

use tonic::codec::{Codec, DecodeBuf, Decoder};
use tonic::Status;
use tonic_prost::{ProstDecoder, ProstEncoder};

/// Used by the generated code (see build.rs, `codec_path`).
#[derive(Debug, Clone)]
pub struct RaftkvCodec<T, U> {
    _pd: PhantomData<(T, U)>,
}

impl<T, U> Default for RaftkvCodec<T, U> {
    fn default() -> Self {
        RaftkvCodec { _pd: PhantomData }
    }
}

impl<T, U> Codec for RaftkvCodec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = RaftkvDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::default()
    }

    fn decoder(&mut self) -> Self::Decoder {
        RaftkvDecoder(ProstDecoder::default())
    }
}

/// prost's decoder with malformed input reported as INVALID_ARGUMENT.
#[derive(Debug, Clone)]
pub struct RaftkvDecoder<U>(ProstDecoder<U>);

impl<U: prost::Message + Default> Decoder for RaftkvDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        self.0.decode(buf).map_err(|s| malformed(&s))
    }

    fn buffer_settings(&self) -> tonic::codec::BufferSettings {
        self.0.buffer_settings()
    }
}

/// The status for a message that did not decode: INVALID_ARGUMENT, naming
/// the field when prost names it (`SetRequest.value: invalid string value:
/// data is not UTF-8 encoded` becomes `value is not valid UTF-8
/// (SetRequest.value)`).
pub fn malformed(status: &Status) -> Status {
    let message = status.message();
    let detail = message
        .strip_prefix("failed to decode Protobuf message: ")
        .unwrap_or(message);
    if let Some((path, _)) = detail.split_once(": invalid string value") {
        let field = path.rsplit('.').next().unwrap_or(path);
        return Status::invalid_argument(format!("{field} is not valid UTF-8 ({path})"));
    }
    Status::invalid_argument(format!("malformed request: {message}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_utf8_names_the_field() {
        let s = Status::internal(
            "failed to decode Protobuf message: SetRequest.value: invalid string value: data is not UTF-8 encoded",
        );
        let m = malformed(&s);
        assert_eq!(m.code(), tonic::Code::InvalidArgument);
        assert_eq!(m.message(), "value is not valid UTF-8 (SetRequest.value)");
        let s = Status::internal(
            "failed to decode Protobuf message: GetRequest.key: invalid string value: data is not UTF-8 encoded",
        );
        assert_eq!(
            malformed(&s).message(),
            "key is not valid UTF-8 (GetRequest.key)"
        );
        let s = Status::internal("failed to decode Protobuf message: invalid wire type value: 7");
        assert_eq!(malformed(&s).code(), tonic::Code::InvalidArgument);
    }
}
