//! Payload encoding with the codec negotiated on a connection.

use bytes::Bytes;
use serde::{Serialize, de::DeserializeOwned};

pub use weft_wire::{Codec, CodecSet};

use crate::Error;

/// Encodes a value with `codec`.
///
/// ```
/// use weft_core::codec::{self, Codec};
///
/// let bytes = codec::encode(Codec::Json, &vec![1, 2, 3]).unwrap();
/// assert_eq!(&bytes[..], b"[1,2,3]");
/// let back: Vec<u8> = codec::decode(Codec::Json, &bytes).unwrap();
/// assert_eq!(back, [1, 2, 3]);
/// ```
pub fn encode<T: Serialize + ?Sized>(codec: Codec, value: &T) -> Result<Bytes, Error> {
    let out = match codec {
        Codec::MsgPack => rmp_serde::to_vec_named(value).map_err(|e| e.to_string()),
        _ => serde_json::to_vec(value).map_err(|e| e.to_string()),
    };
    out.map(Bytes::from)
        .map_err(|e| Error::internal(format!("cannot encode value as {}: {e}", codec.name())))
}

/// Decodes a value encoded with `codec`.
///
/// A payload that does not match `T` is an [`Error`] with
/// [`Code::InvalidArgument`](crate::Code::InvalidArgument).
pub fn decode<T: DeserializeOwned>(codec: Codec, bytes: &[u8]) -> Result<T, Error> {
    let out = match codec {
        Codec::MsgPack => rmp_serde::from_slice(bytes).map_err(|e| e.to_string()),
        _ => serde_json::from_slice(bytes).map_err(|e| e.to_string()),
    };
    out.map_err(|e| {
        Error::new(
            crate::Code::InvalidArgument,
            format!("payload is not valid {}: {e}", codec.name()),
        )
    })
}

/// Converts a payload from one codec to another without knowing its type.
pub fn transcode(from: Codec, to: Codec, bytes: Bytes) -> Result<Bytes, Error> {
    if from == to {
        return Ok(bytes);
    }
    let value: serde_json::Value = match from {
        Codec::MsgPack => {
            let v: rmpv::Value = decode(from, &bytes)?;
            serde_json::to_value(v).map_err(|e| Error::internal(e.to_string()))?
        }
        _ => decode(from, &bytes)?,
    };
    encode(to, &value)
}
