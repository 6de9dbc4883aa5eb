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

/// What an argument object must be, for saying what was given instead.
type ArgumentObject = std::collections::HashMap<String, serde::de::IgnoredAny>;

impl Args {
    /// Decodes the argument object of a call.
    pub fn decode(codec: Codec, bytes: &[u8]) -> Result<Args, Error> {
        Args::decode_bytes(codec, Bytes::copy_from_slice(bytes))
    }

    /// [`decode`](Self::decode) without copying: the values stay in `bytes`
    /// until each is taken.
    pub fn decode_bytes(codec: Codec, bytes: Bytes) -> Result<Args, Error> {
        let bad = |e: String| {
            let message = match codec::mismatch::<ArgumentObject>(codec, &bytes, e) {
                codec::Mismatch::Given(given) => format!(
                    "arguments must be an object of named parameters, like {{\"n\": 3}}; got {given}"
                ),
                codec::Mismatch::Undecodable(e) => format!(
                    "arguments must be an object of named parameters encoded as {}: {e}",
                    codec.name()
                ),
            };
            Error::new(crate::Code::InvalidArgument, message)
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
    ///
    /// Errors say what was expected, with `T`'s name, and what was given:
    ///
    /// ```
    /// use weft_core::{args::Args, codec::Codec};
    ///
    /// let mut args = Args::decode(Codec::Json, br#"{"n": "five"}"#).unwrap();
    /// let err = args.take::<u32>("n").unwrap_err();
    /// assert_eq!(err.field(), Some("n"));
    /// assert_eq!(err.message(), r#"parameter `n` expects `u32`, got a string "five""#);
    /// ```
    pub fn take<T: DeserializeOwned>(&mut self, name: &str) -> Result<T, Error> {
        self.take_as(name, codec::type_name::<T>)
    }

    /// [`take`](Self::take), with `expected()` as the type that errors say was
    /// expected (see [`expected_type`]); it is called only on error.
    pub fn take_as<T: DeserializeOwned>(
        &mut self,
        name: &str,
        expected: impl FnOnce() -> String,
    ) -> Result<T, Error> {
        let found = self
            .entries
            .iter_mut()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.take());
        let Some(range) = found else {
            return serde_json::from_str::<T>("null").map_err(|_| {
                let mut message = format!("missing parameter `{name}` of type `{}`", expected());
                let misspelt = self
                    .entries
                    .iter()
                    .find(|(k, v)| v.is_some() && similar(k, name));
                if let Some((k, _)) = misspelt {
                    message.push_str(&format!(" (you passed `{k}`: a misspelling?)"));
                }
                Error::invalid_argument(name, message)
            });
        };
        let value = &self.bytes[range];
        let decoded = match self.codec {
            Codec::MsgPack => rmp_serde::from_slice::<T>(value).map_err(|e| e.to_string()),
            _ => serde_json::from_slice::<T>(value).map_err(|e| e.to_string()),
        };
        decoded.map_err(|e| {
            let given = match codec::mismatch::<T>(self.codec, value, e) {
                codec::Mismatch::Given(given) => given,
                codec::Mismatch::Undecodable(e) => {
                    format!("a value that is not valid {}: {e}", self.codec.name())
                }
            };
            Error::invalid_argument(
                name,
                format!("parameter `{name}` expects `{}`, got {given}", expected()),
            )
        })
    }

    /// Checks that every argument passed was taken: an argument that names no
    /// parameter is an error listing the parameters there are.
    pub fn finish(self, params: &[&str]) -> Result<(), Error> {
        let unknown = self
            .entries
            .iter()
            .find(|(k, _)| !params.contains(&k.as_str()))
            .map(|(k, _)| k);
        let Some(k) = unknown else {
            return Ok(());
        };
        let message = if params.is_empty() {
            format!("unknown parameter `{k}`: this entrypoint takes no parameters")
        } else {
            let list = params
                .iter()
                .map(|p| format!("`{p}`"))
                .collect::<Vec<_>>()
                .join(", ");
            let passed = |p: &&&str| self.entries.iter().any(|(k, _)| k == **p);
            match params.iter().filter(|p| !passed(p)).find(|p| similar(k, p)) {
                Some(close) => format!(
                    "unknown parameter `{k}`: did you mean `{close}`? This entrypoint takes {list}"
                ),
                None => format!("unknown parameter `{k}`: this entrypoint takes {list}"),
            }
        };
        Err(Error::invalid_argument(k.clone(), message))
    }
}

/// Whether `a` is likely a misspelling of `b`: the same but for case or `-`
/// versus `_`, or one or two edits apart (a swap of neighbours is one edit;
/// no edits for names of one or two letters, where any name is that close).
fn similar(a: &str, b: &str) -> bool {
    let norm = |s: &str| -> Vec<char> { s.to_lowercase().replace('-', "_").chars().collect() };
    let (a, b) = (norm(a), norm(b));
    let allowed = match b.len() {
        0..=2 => 0,
        3..=5 => 1,
        _ => 2,
    };
    if a.len().abs_diff(b.len()) > allowed {
        return false;
    }
    // Optimal string alignment distance.
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    d[0] = (0..=b.len()).collect();
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()] <= allowed
}

/// The type a parameter of type `T` expects, in the terms its author wrote
/// it: the Rust type's name, and for a struct its fields as its JSON Schema
/// describes them (`Roll { dice: u8, label: Option<String> }`); for an enum
/// of names, the names.
///
/// ```
/// #[derive(serde::Deserialize, schemars::JsonSchema)]
/// struct Roll {
///     dice: u8,
///     label: Option<String>,
/// }
///
/// assert_eq!(weft_core::args::expected_type::<u32>(), "u32");
/// assert_eq!(
///     weft_core::args::expected_type::<Roll>(),
///     "Roll { dice: u8, label: Option<String> }"
/// );
/// ```
pub fn expected_type<T: schemars::JsonSchema + ?Sized>() -> String {
    let name = codec::type_name::<T>();
    let schema = crate::spec::schema_for::<T>();
    if let Some(props) = schema.get("properties").and_then(|p| p.as_object()) {
        let mut fields: Vec<String> = props
            .iter()
            .take(MAX_FIELDS)
            .map(|(k, v)| format!("{k}: {}", schema_type(v)))
            .collect();
        if props.len() > MAX_FIELDS {
            fields.push("…".to_owned());
        }
        return format!("{name} {{ {} }}", fields.join(", "));
    }
    match string_choices(&schema) {
        Some(choices) => format!("{name} (one of {choices})"),
        None => name,
    }
}

/// How many fields of a struct an error message lists.
const MAX_FIELDS: usize = 8;

/// `"a", "b"` for a schema that takes only those strings.
fn string_choices(schema: &serde_json::Value) -> Option<String> {
    let choices = schema.get("enum")?.as_array()?;
    let names: Option<Vec<String>> = choices
        .iter()
        .map(|c| c.as_str().map(|s| format!("{s:?}")))
        .collect();
    Some(names?.join(", "))
}

/// A field's type from its JSON Schema, in Rust terms where the schema says
/// them (`u8`, `Option<String>`, `Vec<Roll>`).
fn schema_type(schema: &serde_json::Value) -> String {
    if let Some(r) = schema.get("$ref").and_then(|r| r.as_str()) {
        return r.rsplit('/').next().unwrap_or(r).to_owned();
    }
    let without_null = |list: &Vec<serde_json::Value>| -> Option<serde_json::Value> {
        let is_null =
            |v: &serde_json::Value| v.get("type").and_then(|t| t.as_str()) == Some("null");
        (list.len() == 2 && list.iter().any(is_null))
            .then(|| list.iter().find(|v| !is_null(v)).cloned())
            .flatten()
    };
    for key in ["anyOf", "oneOf"] {
        if let Some(inner) = schema
            .get(key)
            .and_then(|l| l.as_array())
            .and_then(without_null)
        {
            return format!("Option<{}>", schema_type(&inner));
        }
    }
    if let Some(choices) = string_choices(schema) {
        return format!("one of {choices}");
    }
    match schema.get("type") {
        Some(serde_json::Value::Array(types)) => {
            let others: Vec<&serde_json::Value> = types
                .iter()
                .filter(|t| t.as_str() != Some("null"))
                .collect();
            match others.as_slice() {
                [one] if others.len() < types.len() => {
                    let mut inner = schema.clone();
                    inner["type"] = (*one).clone();
                    format!("Option<{}>", schema_type(&inner))
                }
                _ => "value".to_owned(),
            }
        }
        Some(serde_json::Value::String(t)) => {
            let format = schema.get("format").and_then(|f| f.as_str());
            match (t.as_str(), format) {
                ("integer", Some(f)) => match f {
                    "uint8" => "u8",
                    "uint16" => "u16",
                    "uint32" => "u32",
                    "uint64" => "u64",
                    "uint128" => "u128",
                    "uint" => "usize",
                    "int8" => "i8",
                    "int16" => "i16",
                    "int32" => "i32",
                    "int64" => "i64",
                    "int128" => "i128",
                    "int" => "isize",
                    _ => "integer",
                }
                .to_owned(),
                ("integer", None) => "integer".to_owned(),
                ("number", Some("float")) => "f32".to_owned(),
                ("number", Some("double")) => "f64".to_owned(),
                ("number", _) => "number".to_owned(),
                ("string", _) => "String".to_owned(),
                ("boolean", _) => "bool".to_owned(),
                ("null", _) => "()".to_owned(),
                ("array", _) => match schema.get("items") {
                    Some(items) if items.is_object() => format!("Vec<{}>", schema_type(items)),
                    _ => match schema.get("prefixItems").and_then(|p| p.as_array()) {
                        Some(items) => format!(
                            "({})",
                            items.iter().map(schema_type).collect::<Vec<_>>().join(", ")
                        ),
                        None => "Vec<value>".to_owned(),
                    },
                },
                ("object", _) => match schema.get("additionalProperties") {
                    Some(v) if v.is_object() => format!("map of {}", schema_type(v)),
                    _ => "object".to_owned(),
                },
                (other, _) => other.to_owned(),
            }
        }
        _ => "value".to_owned(),
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
        assert_eq!(
            err.message(),
            r#"parameter `n` expects `u32`, got a string "three""#
        );

        let err = args.take::<u32>("m").unwrap_err();
        assert_eq!(err.field(), Some("m"));
        assert_eq!(err.message(), "missing parameter `m` of type `u32`");

        let args = Args::decode(Codec::Json, br#"{"x": 1}"#).unwrap();
        let err = args.finish(&["n"]).unwrap_err();
        assert_eq!(err.field(), Some("x"));
        assert_eq!(
            err.message(),
            "unknown parameter `x`: this entrypoint takes `n`"
        );
    }

    #[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
    struct Roll {
        dice: u8,
        label: Option<String>,
    }

    #[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
    enum Color {
        Red,
        Green,
    }

    #[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
    struct Table {
        rolls: Vec<Roll>,
        best: Option<Roll>,
        pair: (u16, f64),
        flags: BTreeMap<String, bool>,
        color: Color,
    }

    /// The same bad value reads the same whichever codec carried it: in the
    /// parameter's terms, never in the codec's ("wrong msgpack marker").
    #[test]
    fn wrong_types_read_alike_in_every_codec() {
        let cases: [(serde_json::Value, &str); 5] = [
            (
                serde_json::json!({ "roll": "five" }),
                r#"parameter `roll` expects `Roll { dice: u8, label: Option<String> }`, got a string "five""#,
            ),
            (
                serde_json::json!({ "roll": { "dice": 300 } }),
                r#"parameter `roll` expects `Roll { dice: u8, label: Option<String> }`, got an object {"dice":300} (at `dice`: invalid value: integer `300`, expected u8)"#,
            ),
            (
                serde_json::json!({ "roll": { "dice": 3, "label": 7 } }),
                r#"parameter `roll` expects `Roll { dice: u8, label: Option<String> }`, got an object {"dice":3,"label":7} (at `label`: invalid type: integer `7`, expected a string)"#,
            ),
            (
                serde_json::json!({ "roll": null }),
                "parameter `roll` expects `Roll { dice: u8, label: Option<String> }`, got null",
            ),
            (
                serde_json::json!({ "roll": true }),
                "parameter `roll` expects `Roll { dice: u8, label: Option<String> }`, got the boolean true",
            ),
        ];
        for codec in [Codec::Json, Codec::MsgPack] {
            for (call, message) in &cases {
                let bytes = encode(codec, call).unwrap();
                let mut args = Args::decode(codec, &bytes).unwrap();
                let err = args
                    .take_as::<Roll>("roll", expected_type::<Roll>)
                    .unwrap_err();
                assert_eq!(err.code(), Code::InvalidArgument);
                assert_eq!(err.field(), Some("roll"));
                assert_eq!(err.message(), *message, "{codec:?} {call}");
            }
            let bytes = encode(codec, &serde_json::json!({ "n": -1, "s": 5 })).unwrap();
            let mut args = Args::decode(codec, &bytes).unwrap();
            assert_eq!(
                args.take::<u32>("n").unwrap_err().message(),
                "parameter `n` expects `u32`, got the number -1 (invalid value: integer `-1`, expected u32)",
                "{codec:?}"
            );
            assert_eq!(
                args.take::<String>("s").unwrap_err().message(),
                "parameter `s` expects `String`, got the number 5",
                "{codec:?}"
            );
        }
    }

    #[test]
    fn expected_types_use_the_authors_terms() {
        assert_eq!(expected_type::<u32>(), "u32");
        assert_eq!(expected_type::<Option<String>>(), "Option<String>");
        assert_eq!(expected_type::<Vec<i64>>(), "Vec<i64>");
        assert_eq!(expected_type::<Color>(), r#"Color (one of "Red", "Green")"#);
        assert_eq!(
            expected_type::<Table>(),
            r#"Table { best: Option<Roll>, color: Color, flags: map of bool, pair: (u16, f64), rolls: Vec<Roll> }"#
        );
    }

    #[test]
    fn a_misspelt_parameter_gets_a_suggestion() {
        for (passed, suggested) in [
            ("cont", "count"),
            ("Label", "label"),
            ("dry-run", "dry_run"),
            ("lable", "label"),
        ] {
            let body = format!(r#"{{"{passed}": 1}}"#);
            let args = Args::decode(Codec::Json, body.as_bytes()).unwrap();
            let err = args.finish(&["count", "label", "dry_run"]).unwrap_err();
            assert_eq!(err.field(), Some(passed));
            assert_eq!(
                err.message(),
                format!(
                    "unknown parameter `{passed}`: did you mean `{suggested}`? This entrypoint takes `count`, `label`, `dry_run`"
                )
            );
        }
        // A misspelt required parameter is missing: the error says which
        // argument looks like it.
        let mut args = Args::decode(Codec::Json, br#"{"cont": 1}"#).unwrap();
        assert_eq!(
            args.take::<u32>("count").unwrap_err().message(),
            "missing parameter `count` of type `u32` (you passed `cont`: a misspelling?)"
        );
        // No suggestion of a parameter that was passed too, nor of a far one.
        let args = Args::decode(Codec::Json, br#"{"n": 1, "m": 2}"#).unwrap();
        let err = args.finish(&["n", "total"]).unwrap_err();
        assert_eq!(
            err.message(),
            "unknown parameter `m`: this entrypoint takes `n`, `total`"
        );
        let args = Args::decode(Codec::Json, br#"{"x": 1}"#).unwrap();
        assert_eq!(
            args.finish(&[]).unwrap_err().message(),
            "unknown parameter `x`: this entrypoint takes no parameters"
        );
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
        for codec in [Codec::Json, Codec::MsgPack] {
            let bytes = codec::encode(codec, &["five"]).unwrap();
            assert_eq!(
                Args::decode(codec, &bytes).unwrap_err().message(),
                r#"arguments must be an object of named parameters, like {"n": 3}; got a list ["five"]"#,
                "{codec:?}"
            );
        }
    }
}
