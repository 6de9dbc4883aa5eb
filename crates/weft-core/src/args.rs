//! Named arguments: how a call's parameters travel.
//!
//! Arguments are one object whose keys are parameter names. The caller can
//! pass anything that serializes to a map (a struct, a `serde_json::Value`
//! object, a `HashMap`), or `()` for an entrypoint without parameters. The
//! callee takes each parameter by name and type, so a missing or mistyped
//! argument is reported with the parameter's name.

use std::fmt;
use std::ops::Range;

use bytes::Bytes;
use serde::de::{DeserializeOwned, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;

use crate::Error;
use crate::codec::{self, Codec};

/// Encodes call arguments. `()` and `None` become an empty object; anything
/// else must serialize to a map.
///
/// ```
/// use weft_core::{args, codec::Codec};
///
/// assert_eq!(&args::encode(Codec::Json, &()).unwrap()[..], b"{}");
/// let err = args::encode(Codec::Json, &[1, 2]).unwrap_err();
/// assert_eq!(err.code(), weft_core::Code::InvalidArgument);
/// ```
pub fn encode<T: Serialize + ?Sized>(codec: Codec, args: &T) -> Result<Bytes, Error> {
    let bytes = codec::encode(codec, args)?;
    // Checking the first byte of the encoding keeps the common path free of
    // an intermediate value tree.
    let is_map = match codec {
        Codec::MsgPack => match bytes.first() {
            Some(0xc0) => return Ok(Bytes::from_static(&[0x80])),
            Some(b) => (0x80..=0x8f).contains(b) || *b == 0xde || *b == 0xdf,
            None => false,
        },
        _ => {
            if &bytes[..] == b"null" {
                return Ok(Bytes::from_static(b"{}"));
            }
            bytes.first() == Some(&b'{')
        }
    };
    if is_map {
        Ok(bytes)
    } else {
        Err(Error::new(
            crate::Code::InvalidArgument,
            "arguments must be an object of named parameters (a struct, a map or `()`); \
             wrap positional values in an object keyed by parameter name",
        ))
    }
}

/// Decoded arguments of one call, taken parameter by parameter.
///
/// ```
/// use weft_core::{args::Args, codec::Codec};
///
/// let mut args = Args::decode(Codec::Json, br#"{"n": 3}"#).unwrap();
/// let n: u32 = args.take("n").unwrap();
/// let label: Option<String> = args.take("label").unwrap();
/// args.finish(&["n", "label"]).unwrap();
/// assert_eq!((n, label), (3, None));
/// ```
#[derive(Debug)]
pub struct Args {
    codec: Codec,
    /// The encoded argument object; values are decoded from it in place.
    bytes: Bytes,
    /// Each parameter's name and where its encoded value lies in `bytes`
    /// (taken once).
    entries: Vec<Entry>,
}

/// A parameter name and the range of its still-encoded value.
type Entry = (String, Option<Range<usize>>);

struct EntryList<V>(Vec<(String, Option<V>)>);

impl<'de, V: Deserialize<'de>> Deserialize<'de> for EntryList<V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V2<V>(std::marker::PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for V2<V> {
            type Value = EntryList<V>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of named arguments")
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(EntryList(Vec::new()))
            }
            fn visit_none<E>(self) -> Result<Self::Value, E> {
                Ok(EntryList(Vec::new()))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::with_capacity(map.size_hint().unwrap_or(0).min(64));
                while let Some((k, v)) = map.next_entry::<String, V>()? {
                    out.push((k, Some(v)));
                }
                Ok(EntryList(out))
            }
        }
        d.deserialize_any(V2(std::marker::PhantomData))
    }
}

impl Args {
    /// Decodes the argument object of a call.
    pub fn decode(codec: Codec, bytes: &[u8]) -> Result<Args, Error> {
        Args::decode_bytes(codec, Bytes::copy_from_slice(bytes))
    }

    /// [`decode`](Self::decode) without copying: the values stay in `bytes`
    /// until each is taken.
    pub fn decode_bytes(codec: Codec, bytes: Bytes) -> Result<Args, Error> {
        let bad = |e: String| {
            Error::new(
                crate::Code::InvalidArgument,
                format!(
                    "arguments must be an object of named parameters encoded as {}: {e}",
                    codec.name()
                ),
            )
        };
        let entries = match codec {
            Codec::MsgPack => msgpack_entries(&bytes).map_err(bad)?,
            _ => {
                let base = bytes.as_ptr() as usize;
                serde_json::from_slice::<EntryList<&RawValue>>(&bytes)
                    .map_err(|e| bad(e.to_string()))?
                    .0
                    .into_iter()
                    .map(|(k, v)| {
                        // A borrowed `RawValue` is a slice of `bytes`.
                        let range = v.map(|raw| {
                            let start = raw.get().as_ptr() as usize - base;
                            start..start + raw.get().len()
                        });
                        (k, range)
                    })
                    .collect()
            }
        };
        Ok(Args {
            codec,
            bytes,
            entries,
        })
    }

    /// Takes the parameter `name` as a `T`. A missing parameter is accepted
    /// when `T` can be built from null (`Option<_>`, `()`).
    pub fn take<T: DeserializeOwned>(&mut self, name: &str) -> Result<T, Error> {
        let found = self
            .entries
            .iter_mut()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.take())
            .map(|range| {
                let value = &self.bytes[range];
                match self.codec {
                    Codec::MsgPack => rmp_serde::from_slice::<T>(value).map_err(|e| e.to_string()),
                    _ => serde_json::from_slice::<T>(value).map_err(|e| e.to_string()),
                }
            });
        match found {
            Some(Ok(v)) => Ok(v),
            Some(Err(e)) => Err(Error::invalid_argument(
                name,
                format!("argument `{name}` has the wrong type: {e}"),
            )),
            None => serde_json::from_str::<T>("null").map_err(|_| {
                Error::invalid_argument(
                    name,
                    format!("missing argument `{name}`: pass it as a named parameter"),
                )
            }),
        }
    }

    /// Checks that every argument passed was taken: an argument that names no
    /// parameter is an error listing the parameters there are.
    pub fn finish(self, params: &[&str]) -> Result<(), Error> {
        let unknown = self
            .entries
            .iter()
            .find(|(k, _)| !params.contains(&k.as_str()))
            .map(|(k, _)| k);
        match unknown {
            None => Ok(()),
            Some(k) => Err(Error::invalid_argument(
                k.clone(),
                if params.is_empty() {
                    format!("unknown argument `{k}`: this entrypoint takes no parameters")
                } else {
                    format!(
                        "unknown argument `{k}`: this entrypoint takes {}",
                        params
                            .iter()
                            .map(|p| format!("`{p}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                },
            )),
        }
    }
}

/// Splits a MessagePack map into its keys and the encoded bytes of each value,
/// so that each value is decoded later straight into its parameter's type.
fn msgpack_entries(bytes: &[u8]) -> Result<Vec<Entry>, String> {
    let mut rest = bytes;
    if rest.first() == Some(&0xc0) {
        return Ok(Vec::new());
    }
    let len = rmp::decode::read_map_len(&mut rest).map_err(|e| format!("expected a map: {e}"))?;
    let mut out = Vec::with_capacity((len as usize).min(64));
    for _ in 0..len {
        let key = match rmpv::decode::read_value_ref(&mut rest).map_err(|e| e.to_string())? {
            rmpv::ValueRef::String(s) => s
                .into_str()
                .ok_or("argument names must be UTF-8")?
                .to_owned(),
            _ => return Err("argument names must be strings".into()),
        };
        let start = bytes.len() - rest.len();
        rmpv::decode::read_value_ref(&mut rest).map_err(|e| e.to_string())?;
        out.push((key, Some(start..bytes.len() - rest.len())));
    }
    if !rest.is_empty() {
        return Err(format!(
            "{} unexpected bytes after the arguments",
            rest.len()
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashSet};

    use serde::{Deserialize, Serialize};

    use super::*;
    use crate::Code;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Shape {
        Circle { r: f64 },
        Square(u32),
        Point,
    }

    #[derive(Serialize)]
    struct Call<'a> {
        shape: &'a Shape,
        tags: HashSet<String>,
        pair: (u8, String),
        opt: Option<i64>,
        map: BTreeMap<String, Vec<u8>>,
    }

    fn round_trip(codec: Codec) {
        let shape = Shape::Circle { r: 1.5 };
        let call = Call {
            shape: &shape,
            tags: ["a".to_owned()].into(),
            pair: (7, "x".into()),
            opt: None,
            map: [("k".to_owned(), vec![1, 2])].into(),
        };
        let bytes = encode(codec, &call).unwrap();
        let mut args = Args::decode(codec, &bytes).unwrap();
        assert_eq!(args.take::<Shape>("shape").unwrap(), shape);
        assert_eq!(args.take::<HashSet<String>>("tags").unwrap().len(), 1);
        assert_eq!(args.take::<(u8, String)>("pair").unwrap(), (7, "x".into()));
        assert_eq!(args.take::<Option<i64>>("opt").unwrap(), None);
        assert_eq!(
            args.take::<BTreeMap<String, Vec<u8>>>("map").unwrap()["k"],
            [1, 2]
        );
        args.finish(&["shape", "tags", "pair", "opt", "map"])
            .unwrap();
    }

    #[test]
    fn json_round_trip() {
        round_trip(Codec::Json);
    }

    #[test]
    fn msgpack_round_trip() {
        round_trip(Codec::MsgPack);
    }

    #[test]
    fn unit_args_are_an_empty_object() {
        for codec in [Codec::Json, Codec::MsgPack] {
            let bytes = encode(codec, &()).unwrap();
            Args::decode(codec, &bytes).unwrap().finish(&[]).unwrap();
        }
    }

    #[test]
    fn errors_name_the_parameter() {
        let mut args = Args::decode(Codec::Json, br#"{"n": "three"}"#).unwrap();
        let err = args.take::<u32>("n").unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert_eq!(err.field(), Some("n"));
        assert!(err.message().contains("wrong type"), "{err}");

        let err = args.take::<u32>("m").unwrap_err();
        assert_eq!(err.field(), Some("m"));
        assert!(err.message().contains("missing argument `m`"), "{err}");

        let args = Args::decode(Codec::Json, br#"{"x": 1}"#).unwrap();
        let err = args.finish(&["n"]).unwrap_err();
        assert_eq!(err.field(), Some("x"));
        assert!(err.message().contains("takes `n`"), "{err}");
    }

    #[test]
    fn non_objects_are_rejected() {
        assert_eq!(
            Args::decode(Codec::Json, b"[1]").unwrap_err().code(),
            Code::InvalidArgument
        );
        assert_eq!(
            Args::decode(Codec::Json, b"{not json").unwrap_err().code(),
            Code::InvalidArgument
        );
        assert!(encode(Codec::MsgPack, &5u8).is_err());
    }
}
