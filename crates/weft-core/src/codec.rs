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
/// [`Code::InvalidArgument`](crate::Code::InvalidArgument) that says which
/// type was expected and what the payload holds instead.
///
/// ```
/// use weft_core::codec::{self, Codec};
///
/// let err = codec::decode::<u32>(Codec::Json, br#""five""#).unwrap_err();
/// assert_eq!(err.message(), r#"expected `u32`, got a string "five""#);
/// ```
pub fn decode<T: DeserializeOwned>(codec: Codec, bytes: &[u8]) -> Result<T, Error> {
    let out = match codec {
        Codec::MsgPack => rmp_serde::from_slice(bytes).map_err(|e| e.to_string()),
        _ => serde_json::from_slice(bytes).map_err(|e| e.to_string()),
    };
    out.map_err(|e| {
        let message = match mismatch::<T>(codec, bytes, e) {
            Mismatch::Given(given) => {
                format!("expected `{}`, got {given}", type_name::<T>())
            }
            Mismatch::Undecodable(e) => format!("payload is not valid {}: {e}", codec.name()),
        };
        Error::new(crate::Code::InvalidArgument, message)
    })
}

/// Why an encoded value did not decode as the type asked for.
pub(crate) enum Mismatch {
    /// It is a well-formed value of another shape: what it holds, in words
    /// (`a string "five"`), with where inside it the shapes part.
    Given(String),
    /// It is not a well-formed value of the codec at all.
    Undecodable(String),
}

/// Explains why `bytes` did not decode as `T` (`error` is the codec's own
/// reason). Runs only after a decode failed, so the fast path never builds a
/// value tree.
pub(crate) fn mismatch<T: DeserializeOwned>(codec: Codec, bytes: &[u8], error: String) -> Mismatch {
    let value: serde_json::Value = match codec {
        Codec::MsgPack => match rmp_serde::from_slice::<rmpv::Value>(bytes) {
            Err(_) => return Mismatch::Undecodable(error),
            Ok(v) => match serde_json::to_value(&v) {
                Ok(v) => v,
                // No JSON form (binary map keys, extensions): said as MessagePack.
                Err(_) => return Mismatch::Given(format!("the MessagePack value {v} ({error})")),
            },
        },
        _ => match serde_json::from_slice(bytes) {
            Ok(v) => v,
            Err(_) => return Mismatch::Undecodable(error),
        },
    };
    let given = describe_value(&value);
    // Decoding the value tree again, now with the path to the failing part;
    // serde's wording ("invalid type: string, expected u32") is the same for
    // every codec, unlike the codecs' own errors.
    match serde_path_to_error::deserialize::<_, T>(value) {
        Err(e) => {
            let at = e
                .path()
                .iter()
                .next()
                .is_some()
                .then(|| e.path().to_string());
            let inner = e.into_inner().to_string();
            Mismatch::Given(match at {
                Some(at) => format!("{given} (at `{at}`: {inner})"),
                // At the top the shape was just described.
                None if inner.starts_with("invalid type") => given,
                None => format!("{given} ({inner})"),
            })
        }
        // Only this codec refuses it (a number too large for MessagePack's
        // encoding of the type, say): its own reason is all there is.
        Ok(_) => Mismatch::Given(format!("{given} ({error})")),
    }
}

/// How many characters of a value an error message quotes.
const QUOTE_CHARS: usize = 60;

/// A value in words: `null`, `the boolean true`, `the number 5`,
/// `a string "five"`, `a list [1,2]`, `an object {"a":1}`; long values are
/// cut short.
pub(crate) fn describe_value(value: &serde_json::Value) -> String {
    use serde_json::Value;
    let quoted = || {
        let text = value.to_string();
        match text.char_indices().nth(QUOTE_CHARS) {
            Some((cut, _)) => format!("{}…", &text[..cut]),
            None => text,
        }
    };
    match value {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(_) => format!("a string {}", quoted()),
        Value::Array(_) => format!("a list {}", quoted()),
        Value::Object(_) => format!("an object {}", quoted()),
    }
}

/// A Rust type's name without module paths:
/// `core::option::Option<alloc::string::String>` → `Option<String>`.
pub(crate) fn type_name<T: ?Sized>() -> String {
    let full = std::any::type_name::<T>();
    let mut out = String::with_capacity(full.len());
    let mut path = String::new();
    let last = |path: &str| path.rsplit("::").next().unwrap_or(path).to_owned();
    for c in full.chars() {
        if c.is_alphanumeric() || c == '_' || c == ':' {
            path.push(c);
        } else {
            out.push_str(&last(&path));
            path.clear();
            out.push(c);
        }
    }
    out.push_str(&last(&path));
    out
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Roll {
        dice: u8,
    }

    #[test]
    fn type_names_drop_module_paths() {
        assert_eq!(type_name::<u32>(), "u32");
        assert_eq!(type_name::<Option<String>>(), "Option<String>");
        assert_eq!(
            type_name::<BTreeMap<String, Vec<Roll>>>(),
            "BTreeMap<String, Vec<Roll>>"
        );
        assert_eq!(type_name::<(u8, [i64; 2])>(), "(u8, [i64; 2])");
    }

    #[test]
    fn mismatches_say_what_was_given_in_every_codec() {
        for codec in [Codec::Json, Codec::MsgPack] {
            let bytes = encode(codec, "five").unwrap();
            let err = decode::<u32>(codec, &bytes).unwrap_err();
            assert_eq!(err.code(), crate::Code::InvalidArgument);
            assert_eq!(
                err.message(),
                r#"expected `u32`, got a string "five""#,
                "{codec:?}"
            );

            let bytes = encode(codec, &serde_json::json!({ "dice": 300 })).unwrap();
            let err = decode::<Roll>(codec, &bytes).unwrap_err();
            assert_eq!(
                err.message(),
                r#"expected `Roll`, got an object {"dice":300} (at `dice`: invalid value: integer `300`, expected u8)"#,
                "{codec:?}"
            );
        }
    }

    #[test]
    fn long_values_are_cut_short() {
        let long = serde_json::Value::String("x".repeat(500));
        let said = describe_value(&long);
        assert!(said.starts_with("a string \"xxx"), "{said}");
        assert!(said.ends_with('…') && said.chars().count() < 80, "{said}");
        assert_eq!(describe_value(&serde_json::json!(null)), "null");
        assert_eq!(describe_value(&serde_json::json!(true)), "the boolean true");
        assert_eq!(describe_value(&serde_json::json!([1, 2])), "a list [1,2]");
    }

    #[test]
    fn msgpack_without_a_json_form_is_described_as_msgpack() {
        let value = rmpv::Value::Map(vec![(
            rmpv::Value::Binary(vec![1, 2]),
            rmpv::Value::from(3),
        )]);
        let mut bytes = Vec::new();
        rmpv::encode::write_value(&mut bytes, &value).unwrap();
        let err = decode::<String>(Codec::MsgPack, &bytes).unwrap_err();
        assert!(
            err.message()
                .starts_with("expected `String`, got the MessagePack value {[1, 2]: 3}"),
            "{err}"
        );
    }

    #[test]
    fn garbage_is_not_described_as_a_value() {
        let err = decode::<u32>(Codec::Json, b"{not json").unwrap_err();
        assert!(
            err.message().starts_with("payload is not valid json"),
            "{err}"
        );
        let err = decode::<u32>(Codec::MsgPack, &[0xc1]).unwrap_err();
        assert!(
            err.message().starts_with("payload is not valid msgpack"),
            "{err}"
        );
    }
}
