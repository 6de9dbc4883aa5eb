//! `#[weft::service]`: the spec it builds and how its dispatch table decodes
//! arguments, runs entrypoints and encodes replies and errors.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

mod accepted;

use bytes::Bytes;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use weft::Codec;
use weft::prelude::*;
use weft::{Code, Dispatch, Incoming, Service};

/// A point on the board.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Point {
    x: i32,
    y: i32,
}

/// A shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub enum Shape {
    /// A circle.
    Circle {
        /// Radius.
        r: f64,
    },
    /// A square.
    Square(u32),
    /// A point.
    Dot,
}

/// Why a purchase failed.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub enum ShopError {
    /// Nothing left.
    OutOfStock,
    /// Costs more than offered.
    TooExpensive {
        /// The price.
        price: u32,
    },
}

impl std::fmt::Display for ShopError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ShopError::OutOfStock => f.write_str("no dice left"),
            ShopError::TooExpensive { price } => write!(f, "dice cost {price}"),
        }
    }
}

/// An error that is neither serializable nor has a schema.
#[derive(Debug)]
pub struct Opaque;

impl std::fmt::Display for Opaque {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("opaque failure")
    }
}

/// A test service.
#[derive(Debug, Default)]
pub struct Kitchen {
    calls: AtomicU32,
}

/// Everything a service can take and return.
///
/// Second paragraph.
#[weft::service(name = "kitchen")]
impl Kitchen {
    /// Roll one die.
    #[entrypoint]
    async fn roll_die(&self) -> u8 {
        self.count();
        4
    }

    /// Add two numbers;
    ///   `b` is optional.
    #[entrypoint]
    async fn add(&self, ctx: &Context, a: i64, b: Option<i64>) -> weft::Result<i64> {
        let _ = ctx.deadline();
        Ok(a + b.unwrap_or(0))
    }

    /// Context last.
    #[entrypoint]
    async fn neg(&self, a: i64, _ctx: &weft::Context) -> i64 {
        -a
    }

    #[entrypoint(name = "echo")]
    async fn echo_impl(&self, p: Point, s: Shape) -> Result<(Point, Shape), ShopError> {
        Ok((p, s))
    }

    /// Collections.
    #[entrypoint]
    async fn collections(
        &self,
        v: Vec<u8>,
        m: HashMap<String, Vec<Point>>,
        t: (u8, String),
        set: HashSet<String>,
    ) -> (usize, usize, String, usize) {
        (v.len(), m.len(), t.1, set.len())
    }

    /// Fails with a shop error.
    #[entrypoint]
    async fn buy(&self, price: u32) -> Result<u32, ShopError> {
        match price {
            0 => Err(ShopError::OutOfStock),
            p if p > 10 => Err(ShopError::TooExpensive { price: p }),
            p => Ok(p),
        }
    }

    /// Fails with a weft error.
    #[entrypoint]
    async fn missing(&self) -> weft::Result<()> {
        Err(Error::not_found("no such thing: look elsewhere"))
    }

    /// Fails with an opaque error.
    #[entrypoint]
    async fn opaque(&self) -> Result<(), Opaque> {
        Err(Opaque)
    }

    /// Returns nothing.
    #[entrypoint]
    async fn nothing(&self, r#type: String) {
        let _ = r#type;
    }

    /// Not an entrypoint.
    fn count(&self) {
        self.calls.fetch_add(1, Ordering::Relaxed);
    }
}

async fn call_with(codec: Codec, ep: &str, payload: Bytes) -> Result<Bytes, Error> {
    let ctx = weft::testing::Mesh::new().context();
    let call = Incoming::new(ep, codec, payload, ctx);
    match Service::dispatch(Arc::new(Kitchen::default()), call) {
        Dispatch::Unary(fut) => fut.await,
        other => panic!("expected a unary dispatch, got {other:?}"),
    }
}

async fn call(ep: &str, args: Value) -> Result<Value, Error> {
    let payload = Bytes::from(serde_json::to_vec(&args).unwrap());
    let reply = call_with(Codec::Json, ep, payload).await?;
    Ok(serde_json::from_slice(&reply).unwrap())
}

#[test]
fn spec_names_docs_and_order() {
    assert_eq!(Kitchen::NAME, "kitchen");
    assert_eq!(Kitchen::VERSION, env!("CARGO_PKG_VERSION"));
    let spec = Kitchen::spec();
    assert_eq!(spec.name, "kitchen");
    assert_eq!(
        spec.description,
        "Everything a service can take and return.\n\nSecond paragraph."
    );
    let names: Vec<&str> = spec.entrypoints.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "roll_die",
            "add",
            "neg",
            "echo",
            "collections",
            "buy",
            "missing",
            "opaque",
            "nothing"
        ]
    );
    let add = spec.entrypoint("add").unwrap();
    assert_eq!(add.description, "Add two numbers;\n`b` is optional.");
    assert!(!add.streaming);
    assert_eq!(spec.entrypoint("echo").unwrap().description, "");
}

#[test]
fn spec_params_and_schemas() {
    let spec = Kitchen::spec();
    let add = spec.entrypoint("add").unwrap();
    let params: Vec<(&str, bool)> = add
        .params
        .iter()
        .map(|p| (p.name.as_str(), p.required))
        .collect();
    assert_eq!(
        params,
        [("a", true), ("b", false)],
        "the context is no parameter"
    );
    assert_eq!(add.params[0].schema["type"], "integer");
    assert_eq!(add.result["type"], "integer");
    assert_eq!(add.error, None, "weft::Error has no schema of its own");

    let echo = spec.entrypoint("echo").unwrap();
    assert_eq!(echo.params[0].schema["title"], "Point");
    assert_eq!(echo.params[1].schema["title"], "Shape");
    assert_eq!(echo.result["type"], "array");
    let error = echo.error.as_ref().expect("ShopError has a schema");
    assert_eq!(error["title"], "ShopError");

    assert_eq!(spec.entrypoint("opaque").unwrap().error, None);
    assert_eq!(spec.entrypoint("roll_die").unwrap().params, []);
    let nothing = spec.entrypoint("nothing").unwrap();
    assert_eq!(
        nothing.params[0].name, "type",
        "raw identifiers lose their `r#`"
    );
    assert_eq!(nothing.result["type"], "null");
    let collections = spec.entrypoint("collections").unwrap();
    assert_eq!(collections.params.len(), 4);
    assert!(collections.params.iter().all(|p| p.required));
    assert_eq!(collections.params[3].schema["uniqueItems"], true);
}

#[tokio::test]
async fn plain_results_and_context() {
    assert_eq!(call("roll_die", json!({})).await.unwrap(), 4);
    assert_eq!(call("add", json!({ "a": 2, "b": 3 })).await.unwrap(), 5);
    assert_eq!(call("add", json!({ "a": 2 })).await.unwrap(), 2);
    assert_eq!(call("add", json!({ "a": 2, "b": null })).await.unwrap(), 2);
    assert_eq!(call("neg", json!({ "a": 2 })).await.unwrap(), -2);
    assert_eq!(
        call("nothing", json!({ "type": "x" })).await.unwrap(),
        Value::Null
    );
}

#[tokio::test]
async fn structs_enums_and_collections() {
    let reply = call(
        "echo",
        json!({ "p": { "x": 1, "y": -2 }, "s": { "Circle": { "r": 1.5 } } }),
    )
    .await
    .unwrap();
    assert_eq!(
        reply,
        json!([{ "x": 1, "y": -2 }, { "Circle": { "r": 1.5 } }])
    );
    let reply = call("echo", json!({ "p": { "x": 0, "y": 0 }, "s": "Dot" }))
        .await
        .unwrap();
    assert_eq!(reply[1], "Dot");

    let reply = call(
        "collections",
        json!({
            "v": [1, 2, 3],
            "m": { "a": [{ "x": 1, "y": 1 }], "b": [] },
            "t": [7, "seven"],
            "set": ["a", "b", "a"],
        }),
    )
    .await
    .unwrap();
    assert_eq!(reply, json!([3, 2, "seven", 2]));
}

#[tokio::test]
async fn msgpack_is_answered_in_msgpack() {
    #[derive(Serialize)]
    struct Args {
        a: i64,
        b: i64,
    }
    let payload = weft_core::args::encode(Codec::MsgPack, &Args { a: 40, b: 2 }).unwrap();
    let reply = call_with(Codec::MsgPack, "add", payload).await.unwrap();
    let n: i64 = weft_core::codec::decode(Codec::MsgPack, &reply).unwrap();
    assert_eq!(n, 42);
}

#[tokio::test]
async fn bad_arguments_name_the_parameter() {
    let err = call("add", json!({ "b": 1 })).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(err.field(), Some("a"));

    assert_eq!(err.message(), "missing parameter `a` of type `i64`");

    // The same words whichever codec carried the call.
    for codec in [Codec::Json, Codec::MsgPack] {
        let payload = weft_core::args::encode(codec, &json!({ "a": "two" })).unwrap();
        let err = call_with(codec, "add", payload).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert_eq!(err.field(), Some("a"));
        assert_eq!(
            err.message(),
            r#"parameter `a` expects `i64`, got a string "two""#,
            "{codec:?}"
        );
    }

    let err = call("echo", json!({ "p": { "x": 1, "y": 1 }, "s": "Hexagon" }))
        .await
        .unwrap_err();
    assert_eq!(err.field(), Some("s"));
    assert_eq!(
        err.message(),
        r#"parameter `s` expects `Shape`, got a string "Hexagon" (unknown variant `Hexagon`, expected one of `Circle`, `Square`, `Dot`)"#
    );
    let err = call("echo", json!({ "p": { "x": 1.5, "y": 1 }, "s": "Dot" }))
        .await
        .unwrap_err();
    assert_eq!(
        err.message(),
        r#"parameter `p` expects `Point { x: i32, y: i32 }`, got an object {"x":1.5,"y":1} (at `x`: invalid type: floating point `1.5`, expected i32)"#
    );

    let err = call("add", json!({ "a": 1, "c": 1 })).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(err.field(), Some("c"));
    assert!(err.message().contains("`a`, `b`"), "{err}");

    let err = call_with(Codec::Json, "add", Bytes::from_static(b"[1, 2]"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn unknown_entrypoints_are_not_found() {
    let ctx = weft::testing::Mesh::new().context();
    let call = Incoming::new("echo_impl", Codec::Json, Bytes::from_static(b"{}"), ctx);
    match Service::dispatch(Arc::new(Kitchen::default()), call) {
        Dispatch::NotFound(call) => assert_eq!(call.entrypoint(), "echo_impl"),
        other => panic!("expected NotFound, got {other:?}"),
    }
}

#[tokio::test]
async fn application_errors_carry_the_variant() {
    assert_eq!(call("buy", json!({ "price": 3 })).await.unwrap(), 3);

    let err = call("buy", json!({ "price": 0 })).await.unwrap_err();
    assert_eq!(err.code(), Code::Application);
    assert_eq!(err.kind(), Some("OutOfStock"));
    assert_eq!(err.message(), "no dice left");

    let err = call("buy", json!({ "price": 11 })).await.unwrap_err();
    assert_eq!(err.kind(), Some("TooExpensive"));
    assert_eq!(err.message(), "dice cost 11");

    let err = call("opaque", json!({})).await.unwrap_err();
    assert_eq!(err.code(), Code::Application);
    assert_eq!(
        err.kind(),
        Some("Opaque"),
        "a type without Serialize is named by its type"
    );
    assert_eq!(err.message(), "opaque failure");
}

#[tokio::test]
async fn weft_errors_pass_through_unchanged() {
    let err = call("missing", json!({})).await.unwrap_err();
    assert_eq!(err, Error::not_found("no such thing: look elsewhere"));
}

#[tokio::test]
async fn the_service_value_is_the_one_dispatched_to() {
    let kitchen = Arc::new(Kitchen::default());
    for _ in 0..2 {
        let ctx = weft::testing::Mesh::new().context();
        let call = Incoming::new("roll_die", Codec::Json, Bytes::from_static(b"{}"), ctx);
        match Service::dispatch(kitchen.clone(), call) {
            Dispatch::Unary(fut) => assert_eq!(&fut.await.unwrap()[..], b"4"),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(kitchen.calls.load(Ordering::Relaxed), 2);
}

#[test]
fn typed_client_has_one_method_per_entrypoint() {
    // Only compiled: the signatures are what a caller relies on.
    #[allow(dead_code)]
    async fn use_client(ctx: &Context) -> weft::Result<()> {
        let client = KitchenClient::new(ctx);
        let _: u8 = client.roll_die().await?;
        let _: i64 = client.add(1, Some(2)).await?;
        let _: i64 = client.neg(1).await?;
        let _: (Point, Shape) = client.echo(Point { x: 0, y: 0 }, Shape::Dot).await?;
        let _: u32 = client.buy(3).await?;
        let _: () = client.nothing("x".to_owned()).await?;
        Ok(())
    }
    let _ = KitchenClient::new(&weft::testing::Mesh::new().context()).clone();
}

#[tokio::test]
async fn typed_client_calls_through_a_mesh() {
    let mesh = weft::testing::Mesh::new();
    mesh.add(Kitchen::default());
    let client = KitchenClient::new(&mesh);
    assert_eq!(client.roll_die().await.unwrap(), 4);
    assert_eq!(client.add(40, Some(2)).await.unwrap(), 42);
    assert_eq!(client.add(40, None).await.unwrap(), 40);
    let (p, s) = client
        .echo(Point { x: 1, y: 2 }, Shape::Square(3))
        .await
        .unwrap();
    assert_eq!((p, s), (Point { x: 1, y: 2 }, Shape::Square(3)));
    client.nothing("x".to_owned()).await.unwrap();
    let err = client.buy(0).await.unwrap_err();
    assert_eq!(err.code(), Code::Application);
    assert_eq!(err.kind(), Some("OutOfStock"));
}
