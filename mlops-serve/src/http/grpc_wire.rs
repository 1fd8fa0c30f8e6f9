//! The gRPC service's codec ([`CheckedCodec`]): prost's, with a look at an inference
//! request's wire bytes before it is decoded, so that a message within the size limit cannot
//! decode into many times its size (thousands of empty inputs, outputs, parameters or shape
//! dimensions, each a struct of its own once decoded): the counts this server could ever accept
//! are checked on the bytes, and a message past them is refused without decoding it.

use std::marker::PhantomData;

use prost::bytes::Buf;
use prost::encoding::{decode_key, decode_varint, skip_field, DecodeContext, WireType};
use prost::Message;
use tonic::codec::{Codec, DecodeBuf, Decoder};
use tonic::Status;
use tonic_prost::ProstEncoder;

use super::grpc::pb;

/// Most request parameters (`group` is the one read).
pub const MAX_PARAMETERS: usize = 16;
/// Most dimensions of the input's shape (it must be `[batch, features]`).
pub const MAX_SHAPE_DIMENSIONS: usize = 8;

/// What a message's bytes must satisfy before decoding (nothing, but for an inference
/// request).
pub trait WireCheck {
    /// `Err` with the reason when the bytes must not be decoded.
    fn check(_bytes: &[u8]) -> Result<(), String> {
        Ok(())
    }
}

macro_rules! unchecked {
    ($($t:ty),*) => { $(impl WireCheck for $t {})* };
}

unchecked!(
    pb::ServerLiveRequest,
    pb::ServerLiveResponse,
    pb::ServerReadyRequest,
    pb::ServerReadyResponse,
    pb::ModelReadyRequest,
    pb::ModelReadyResponse,
    pb::ServerMetadataRequest,
    pb::ServerMetadataResponse,
    pb::ModelMetadataRequest,
    pb::ModelMetadataResponse,
    pb::ModelInferResponse
);

fn length_delimited<'a>(buf: &mut &'a [u8], what: &str) -> Result<&'a [u8], String> {
    let len = decode_varint(buf).map_err(|e| format!("{what}: {e}"))?;
    let len = usize::try_from(len).unwrap_or(usize::MAX);
    if len > buf.len() {
        return Err(format!("{what}: length {len} past the message's end"));
    }
    let (body, rest) = buf.split_at(len);
    *buf = rest;
    Ok(body)
}

fn skip(buf: &mut &[u8], wire_type: WireType, tag: u32) -> Result<(), String> {
    skip_field(wire_type, tag, buf, DecodeContext::default()).map_err(|e| e.to_string())
}

/// The input tensor: at most [`MAX_SHAPE_DIMENSIONS`] dimensions.
fn check_input(mut buf: &[u8]) -> Result<(), String> {
    let mut dims = 0_usize;
    while buf.has_remaining() {
        let (tag, wire_type) = decode_key(&mut buf).map_err(|e| e.to_string())?;
        match (tag, wire_type) {
            (3, WireType::LengthDelimited) => {
                let packed = length_delimited(&mut buf, "input shape")?;
                // Each dimension is a varint of at least one byte.
                dims += packed.iter().filter(|b| **b < 0x80).count();
            }
            (3, _) => {
                dims += 1;
                skip(&mut buf, wire_type, tag)?;
            }
            _ => skip(&mut buf, wire_type, tag)?,
        }
        if dims > MAX_SHAPE_DIMENSIONS {
            return Err(format!(
                "input \"input\": a shape of more than {MAX_SHAPE_DIMENSIONS} dimensions; expected [batch, features]"
            ));
        }
    }
    Ok(())
}

impl WireCheck for pb::ModelInferRequest {
    fn check(mut buf: &[u8]) -> Result<(), String> {
        let (mut inputs, mut outputs, mut raw, mut parameters) =
            (0_usize, 0_usize, 0_usize, 0_usize);
        while buf.has_remaining() {
            let (tag, wire_type) = decode_key(&mut buf).map_err(|e| e.to_string())?;
            match (tag, wire_type) {
                (5, WireType::LengthDelimited) => {
                    inputs += 1;
                    if inputs > 1 {
                        return Err(
                            "expected exactly one input (\"input\"), got more than one".into()
                        );
                    }
                    check_input(length_delimited(&mut buf, "input")?)?;
                }
                (6, _) => {
                    outputs += 1;
                    if outputs > 2 {
                        return Err("more than 2 outputs asked for; this model has \"probability\" and \"label\"".into());
                    }
                    skip(&mut buf, wire_type, tag)?;
                }
                (7, _) => {
                    raw += 1;
                    if raw > 1 {
                        return Err(
                            "more than one raw_input_contents; expected one, for the one input"
                                .into(),
                        );
                    }
                    skip(&mut buf, wire_type, tag)?;
                }
                (4, _) => {
                    parameters += 1;
                    if parameters > MAX_PARAMETERS {
                        return Err(format!("more than {MAX_PARAMETERS} request parameters"));
                    }
                    skip(&mut buf, wire_type, tag)?;
                }
                _ => skip(&mut buf, wire_type, tag)?,
            }
        }
        Ok(())
    }
}

/// prost's codec, with [`WireCheck`] on what it decodes (the generated service and client use
/// it for every call).
#[derive(Debug)]
pub struct CheckedCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for CheckedCodec<T, U> {
    fn default() -> Self {
        CheckedCodec(PhantomData)
    }
}

/// The decoder of [`CheckedCodec`].
#[derive(Debug)]
pub struct CheckedDecoder<U>(PhantomData<U>);

impl<U: Message + Default + WireCheck> Decoder for CheckedDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        let bytes = buf.copy_to_bytes(buf.remaining());
        U::check(&bytes).map_err(Status::invalid_argument)?;
        // As tonic's prost decoder answers a message that does not decode.
        U::decode(bytes)
            .map(Some)
            .map_err(|e| Status::internal(e.to_string()))
    }
}

impl<T, U> Codec for CheckedCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + WireCheck + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = CheckedDecoder<U>;

    fn encoder(&mut self) -> ProstEncoder<T> {
        ProstEncoder::new(Default::default())
    }

    fn decoder(&mut self) -> CheckedDecoder<U> {
        CheckedDecoder(PhantomData)
    }
}
