//! weft: services that call each other by name.
//!
//! A service is a Rust type; its async methods marked `#[entrypoint]` can be
//! called by any other service or program, by name, with named arguments of
//! any serde type.
//!
//! ```no_run
//! use weft::prelude::*;
//!
//! #[derive(Default)]
//! pub struct DieRoller;
//!
//! #[weft::service(name = "die_roller")]
//! impl DieRoller {
//!     /// Roll one die.
//!     #[entrypoint]
//!     async fn roll_die(&self) -> u8 {
//!         4 // chosen by a fair die roll
//!     }
//! }
//!
//! #[tokio::main]
//! async fn main() -> weft::Result<()> {
//!     weft::serve(DieRoller).await
//! }
//! ```
//!
//! Another service calls it with `ctx.call("die_roller", "roll_die", ()).await?`,
//! a program with [`Client`], and a test with `weft::testing::Mesh` (the
//! `testing` feature, which a crate enables in its dev-dependencies:
//! `weft = { version = "..", features = ["testing"] }`).
//!
//! An entrypoint that only reads can be marked `#[entrypoint(get)]`: the
//! host's gateway then also takes `GET /services/die_roller/roll?sides=20`.
//! `#[arg(default = ..)]` makes a parameter optional, with the default
//! applied by the service whoever calls; `#[arg(example = ..)]` is what the
//! docs page (`/services/{name}/docs`) shows:
//!
//! ```no_run
//! # use weft::prelude::*;
//! # #[derive(Default)]
//! # pub struct DieRoller;
//! #[weft::service(name = "die_roller")]
//! impl DieRoller {
//!     /// Roll `count` dice with `sides` sides.
//!     #[entrypoint(get)]
//!     async fn roll(
//!         &self,
//!         #[arg(default = 6, example = 20)] sides: u8,
//!         #[arg(default = 1)] count: u32,
//!     ) -> Vec<u8> {
//!         vec![sides; count as usize]
//!     }
//! }
//! ```
//!
//! # Your own types
//!
//! Parameters and results can be any type that serde encodes and schemars
//! describes (the docs page and the OpenAPI document show its schema).
//! Mark your own structs and enums with [`#[weft::data]`](data): it derives
//! `Serialize`, `Deserialize` and `JsonSchema` through the copies weft
//! re-exports, so a service crate needs no dependency beyond `weft` and
//! `tokio`. serde's and schemars' options work as usual below it.
//!
//! ```
//! use weft::prelude::*;
//!
//! /// How to roll.
//! #[weft::data]
//! #[derive(Debug, Clone, PartialEq)]
//! pub struct Roll {
//!     /// How many dice, 1 to 5.
//!     pub dice: u8,
//!     #[serde(default)]
//!     pub sides: Sides,
//! }
//!
//! /// The kind of dice.
//! #[weft::data]
//! #[derive(Debug, Clone, Copy, PartialEq, Default)]
//! #[serde(rename_all = "snake_case")]
//! pub enum Sides {
//!     #[default]
//!     Six,
//!     Twenty,
//! }
//!
//! #[derive(Default)]
//! pub struct Dice;
//!
//! #[weft::service(name = "dice")]
//! impl Dice {
//!     /// Rolls as asked; every die shows its highest face.
//!     #[entrypoint]
//!     async fn roll(&self, roll: Roll) -> Vec<u8> {
//!         let face = match roll.sides {
//!             Sides::Six => 6,
//!             Sides::Twenty => 20,
//!         };
//!         vec![face; usize::from(roll.dice)]
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let mesh = weft::testing::Mesh::new();
//! mesh.add(Dice);
//! let rolled: Vec<u8> = mesh
//!     .call("dice", "roll", weft::serde_json::json!({ "roll": { "dice": 2, "sides": "twenty" } }))
//!     .await
//!     .unwrap();
//! assert_eq!(rolled, [20, 20]);
//!
//! // A wrong argument is answered in the type's own terms.
//! let err = mesh
//!     .call::<_, Vec<u8>>("dice", "roll", weft::serde_json::json!({ "roll": { "dice": "two" } }))
//!     .await
//!     .unwrap_err();
//! assert_eq!(err.code(), weft::Code::InvalidArgument);
//! assert_eq!(
//!     err.message(),
//!     r#"parameter `roll` expects `Roll { dice: u8, sides: Sides }`, got an object {"dice":"two"} (at `dice`: invalid type: string "two", expected u8)"#
//! );
//! # }
//! ```
//!
//! Deriving by hand works too; point schemars at weft's copy with
//! `#[schemars(crate = "weft::schemars")]` and derive [`JsonSchema`] from
//! `weft`:
//!
//! ```
//! #[derive(serde::Serialize, serde::Deserialize, weft::JsonSchema)]
//! #[schemars(crate = "weft::schemars")]
//! pub struct Score {
//!     pub points: u32,
//! }
//! # assert_eq!(weft::schemars::schema_for!(Score).get("title").unwrap(), "Score");
//! ```
//!
//! # Events
//!
//! A service tells others what happened without waiting for them:
//! [`Context::publish`] returns once the host stored the event durably, and
//! every method marked `#[event_handler(topic = "..")]` receives it at least
//! once. A handler that returns `Err` or panics gets the event again with
//! backoff, up to `max_attempts` (default 5); then it goes to the dead
//! letters (`weft events dead`, `weft events replay`).
//!
//! ```no_run
//! use weft::prelude::*;
//!
//! /// A new order.
//! #[weft::data]
//! pub struct OrderCreated {
//!     order: u64,
//!     customer: String,
//! }
//!
//! #[derive(Default)]
//! pub struct Shop;
//!
//! // `publishes(..)` puts the topic and its payload schema in the docs.
//! #[weft::service(name = "shop", publishes("orders.created" = OrderCreated))]
//! impl Shop {
//!     /// Places an order; returns the event's id.
//!     #[entrypoint]
//!     async fn order(&self, ctx: &Context, customer: String) -> weft::Result<u64> {
//!         ctx.publish("orders.created", &OrderCreated { order: 7, customer }).await
//!     }
//!
//!     /// Each order goes to one instance (`mode = "pool"`, the default);
//!     /// orders of one customer one at a time, in publish order.
//!     #[event_handler(topic = "orders.created", ordered_by = "customer", max_attempts = 10)]
//!     async fn bill(&self, event: OrderCreated) -> weft::Result<()> {
//!         Ok(())
//!     }
//!
//!     /// Every instance sees every order.
//!     #[event_handler(topic = "orders.created", mode = "broadcast")]
//!     async fn warm_cache(&self, ctx: &Context, event: OrderCreated) {}
//! }
//!
//! #[tokio::main]
//! async fn main() -> weft::Result<()> {
//!     weft::serve(Shop).await
//! }
//! ```

mod bulkhead;
mod client;
mod context;
mod events;
mod router;
mod serve;
mod service;
#[cfg(feature = "testing")]
pub mod testing;

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

pub use client::{Client, ClientOptions};
pub use context::{
    AsContext, CallBuilder, Context, DEFAULT_TIMEOUT, EventInfo, Identity, PublishBuilder,
};
pub use serve::{DEFAULT_HOST, Server, serve};
pub use service::{Dispatch, Incoming, Service};
pub use weft_core::args::Args;
pub use weft_core::codec::{Codec, CodecSet};
pub use weft_core::name::{Version, VersionReq};
pub use weft_core::spec::{EntrypointSpec, EventHandlerSpec, ParamSpec, ServiceSpec, TopicSpec};
pub use weft_core::{Address, Code, Error, Notification, Result, Severity};
pub use weft_macros::{data, entrypoint, event_handler, service};

/// serde_json, which weft uses for JSON: `weft::serde_json::json!` builds
/// arguments without a dependency of your own.
pub use serde_json;

/// schemars, which describes parameter and result types; `weft::data` and
/// `#[schemars(crate = "weft::schemars")]` use this copy.
pub use schemars;

/// The trait (and derive) for types that describe themselves as a JSON
/// Schema; [`data`] derives it.
pub use schemars::JsonSchema;
pub use weft_registry::ServiceSummary;
pub use weft_wire::Caller;

/// What a service file needs: `use weft::prelude::*;`.
pub mod prelude {
    pub use crate::{AsContext, Context, Error, Result, Severity, data, entrypoint, event_handler};
}
