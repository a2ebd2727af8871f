//! Message codecs: the proto3 JSON mapping and binary protobuf.

use bytes::{BufMut, Bytes, BytesMut};

use crate::ConnectError;

/// What every generated message is: prost for binary, pbjson's serde impls for JSON.
pub trait Message:
    prost::Message + serde::Serialize + serde::de::DeserializeOwned + Default + Send + 'static
{
}

impl<T> Message for T where
    T: prost::Message + serde::Serialize + serde::de::DeserializeOwned + Default + Send + 'static
{
}

/// Turns messages into bytes and back.
pub trait Codec {
    /// The content subtype: `json` or `proto`, as in `application/json` and
    /// `application/connect+json`.
    const NAME: &'static str;

    /// Appends the encoding of `message` to `buf`.
    ///
    /// # Errors
    /// `internal` when the message cannot be represented, e.g. an enum field holding a
    /// number the proto does not name, which has no proto3 JSON form.
    fn encode<M: Message>(message: &M, buf: &mut BytesMut) -> Result<(), ConnectError>;

    /// Decodes one message.
    ///
    /// # Errors
    /// A `ConnectError` with `code` when the bytes are not a valid `M`.
    fn decode<M: Message>(bytes: Bytes, code: crate::Code) -> Result<M, ConnectError>;
}

/// The proto3 JSON mapping (lowerCamelCase names, 64-bit integers as strings, bytes as base64,
/// enums by name, default values omitted, unknown fields ignored). What E2B's SDKs send.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonCodec;

impl Codec for JsonCodec {
    const NAME: &'static str = "json";

    fn encode<M: Message>(message: &M, buf: &mut BytesMut) -> Result<(), ConnectError> {
        // Base64 makes bytes fields 4/3 larger; reserving up front avoids regrowing large
        // output messages several times.
        buf.reserve(message.encoded_len() / 3 * 4 + 64);
        let start = buf.len();
        serde_json::to_writer((&mut *buf).writer(), message).map_err(|e| {
            buf.truncate(start);
            ConnectError::internal(format!(
                "cannot encode {} as JSON: {e}",
                short_type_name::<M>()
            ))
        })
    }

    fn decode<M: Message>(bytes: Bytes, code: crate::Code) -> Result<M, ConnectError> {
        serde_json::from_slice(&bytes).map_err(|e| {
            ConnectError::new(
                code,
                format!("invalid JSON for {}: {e}", short_type_name::<M>()),
            )
        })
    }
}

/// Binary protobuf.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProtoCodec;

impl Codec for ProtoCodec {
    const NAME: &'static str = "proto";

    fn encode<M: Message>(message: &M, buf: &mut BytesMut) -> Result<(), ConnectError> {
        buf.reserve(message.encoded_len());
        message
            .encode(buf)
            .map_err(|e| ConnectError::internal(format!("encoding protobuf: {e}")))
    }

    fn decode<M: Message>(bytes: Bytes, code: crate::Code) -> Result<M, ConnectError> {
        M::decode(bytes).map_err(|e| {
            ConnectError::new(
                code,
                format!("invalid protobuf for {}: {e}", short_type_name::<M>()),
            )
        })
    }
}

/// Which codec a call uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Encoding {
    /// [`JsonCodec`]: what E2B's official SDKs use, and the client's default.
    #[default]
    Json,
    /// [`ProtoCodec`]: smaller and faster.
    Proto,
}

impl Encoding {
    /// `application/json` or `application/proto`: the unary content type.
    pub fn unary_content_type(self) -> &'static str {
        match self {
            Encoding::Json => "application/json",
            Encoding::Proto => "application/proto",
        }
    }

    /// `application/connect+json` or `application/connect+proto`: the streaming content type.
    pub fn streaming_content_type(self) -> &'static str {
        match self {
            Encoding::Json => "application/connect+json",
            Encoding::Proto => "application/connect+proto",
        }
    }

    /// Parses a unary (`streaming == false`) or streaming content type, ignoring parameters
    /// such as `; charset=utf-8`.
    pub fn from_content_type(content_type: &str, streaming: bool) -> Option<Encoding> {
        let essence = content_type.split(';').next()?.trim().to_ascii_lowercase();
        let subtype = if streaming {
            essence.strip_prefix("application/connect+")?
        } else {
            essence.strip_prefix("application/")?
        };
        match subtype {
            "json" => Some(Encoding::Json),
            "proto" => Some(Encoding::Proto),
            _ => None,
        }
    }

    /// Appends the encoding of `message` to `buf`; on error `buf` is unchanged.
    ///
    /// # Errors
    /// `internal` when the message has no encoding (see [`Codec::encode`]).
    pub fn encode<M: Message>(self, message: &M, buf: &mut BytesMut) -> Result<(), ConnectError> {
        match self {
            Encoding::Json => JsonCodec::encode(message, buf),
            Encoding::Proto => ProtoCodec::encode(message, buf),
        }
    }

    /// Decodes one message, failing with `code`.
    ///
    /// # Errors
    /// A `ConnectError` with `code` naming the message type when the bytes are not valid.
    pub fn decode<M: Message>(self, bytes: Bytes, code: crate::Code) -> Result<M, ConnectError> {
        match self {
            Encoding::Json => JsonCodec::decode(bytes, code),
            Encoding::Proto => ProtoCodec::decode(bytes, code),
        }
    }
}

/// `process.StartRequest` rather than `e2b_envd::pb::process::StartRequest`.
fn short_type_name<M>() -> &'static str {
    let full = std::any::type_name::<M>();
    full.strip_prefix("e2b_envd::pb::").unwrap_or(full)
}
