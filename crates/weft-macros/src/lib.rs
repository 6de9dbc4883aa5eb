//! The `#[weft::service]` attribute: turns an impl block into a weft service
//! whose async methods are entrypoints callable by name, and generates a
//! typed client for it. Use it through the `weft` crate (`weft::service`);
//! this crate is an implementation detail.
//!
//! ```ignore
//! use weft::prelude::*;
//!
//! #[derive(Default)]
//! pub struct DieRoller;
//!
//! /// Rolls dice.
//! #[weft::service(name = "die_roller", publishes("dice.rolled" = Rolled))]
//! impl DieRoller {
//!     /// Roll one die.
//!     #[entrypoint]
//!     async fn roll_die(&self) -> u8 {
//!         4
//!     }
//!
//!     /// Add two numbers; `b` may be left out.
//!     #[entrypoint]
//!     async fn add(&self, ctx: &Context, a: i64, b: Option<i64>) -> weft::Result<i64> {
//!         Ok(a + b.unwrap_or(0))
//!     }
//!
//!     /// Roll `count` dice; only reads, so the gateway also takes
//!     /// `GET /services/die_roller/roll?sides=20`.
//!     #[entrypoint(get)]
//!     async fn roll(
//!         &self,
//!         #[arg(default = 6, example = 20)] sides: u8,
//!         #[arg(default = 1)] count: u32,
//!     ) -> Vec<u8> {
//!         vec![4; count as usize]
//!     }
//!
//!     /// Called `echo` by callers.
//!     #[entrypoint(name = "echo")]
//!     async fn echo_impl(&self, s: String) -> Result<String, EchoError> {
//!         Ok(s)
//!     }
//!
//!     /// Runs for each event on `orders.created`, on one instance.
//!     #[event_handler(topic = "orders.created", ordered_by = "customer")]
//!     async fn on_order(&self, ctx: &Context, event: OrderCreated) -> weft::Result<()> {
//!         Ok(())
//!     }
//!
//!     // Methods without `#[entrypoint]` stay as they are.
//!     fn helper(&self) {}
//! }
//!
//! // Elsewhere, with a `Context` (or anything that implements `AsContext`):
//! let sum = DieRollerClient::new(&ctx).add(1, Some(2)).await?;
//! ```
//!
//! What the attribute generates:
//!
//! - the impl block itself, with the `#[entrypoint]` markers removed;
//! - an implementation of `weft::Service`: `NAME` from `name = "..."`,
//!   `VERSION` from the defining crate's `CARGO_PKG_VERSION`, `spec()` with
//!   each entrypoint's doc comment and the JSON Schemas of its parameters
//!   (an `Option<_>` parameter is optional), result and, when the error type
//!   implements `JsonSchema`, its error; and `dispatch()`, which decodes the
//!   named arguments, runs the method and encodes its reply;
//! - `dispatch_event()` and the handlers' specs (topic, mode, attempts,
//!   the event's schema) for each `#[event_handler]`, and the specs of the
//!   topics named in `publishes(..)`, with their payload schemas;
//! - `<Type>Client`, a typed client with one `async fn` per entrypoint that
//!   takes the parameters by value and returns `weft::Result<T>`.
//!
//! The rules, each checked at compile time with an error at the offending
//! code:
//!
//! - an entrypoint is an `async fn` taking `&self`, without generics;
//! - its parameters are plain names (`a: T`) whose types implement serde's
//!   `Serialize` and `Deserialize`, schemars' `JsonSchema`, and `Send`;
//!   a `&Context` parameter, in any position, receives the call's context
//!   and is not a named parameter;
//! - its result implements `Serialize`, `Deserialize` and `JsonSchema`; a
//!   `Result<T, E>` whose `E` implements `Display` returns `Err` as a
//!   `weft::Error` of code `Application` whose kind is the enum variant
//!   (when `E` implements `Serialize`) or the type name; a `weft::Error` is
//!   passed through unchanged;
//! - an event handler is an `async fn` taking `&self`, one event whose
//!   type implements `Deserialize` and `JsonSchema`, and optionally a
//!   `&Context`; it returns `()` or `Result<(), E>` with `E: Display`;
//!   `Err` (or a panic) has the event delivered again, up to `max_attempts`
//!   (default 5) times, then it goes to the dead letters; its options are
//!   `topic = ".."` (required), `mode = "pool" | "broadcast"` and
//!   `ordered_by = "field"` (a top-level field of the event);
//! - service and entrypoint names, and topics, use lowercase letters, digits, `_`, `-`
//!   and `.`, start with a letter, and entrypoint names are unique;
//! - `#[entrypoint(get)]` marks an entrypoint that only reads: the gateway
//!   also takes it as `GET /services/{name}/{entrypoint}?param=value`, each
//!   value read as its parameter's schema type says (objects and arrays as
//!   JSON), and the docs show both; a read-only entrypoint cannot have a
//!   parameter named `version` (`?version=` picks the service's version);
//! - `#[arg(default = value)]` on a parameter makes it optional: the
//!   instance uses `value` when the argument is missing or `null`, whoever
//!   calls (the gateway, `weft call`, another service), and the spec and the
//!   docs show it; `#[arg(example = value)]` is the value the docs page
//!   starts from. Either value is an expression of the parameter's type
//!   (for an `Option<T>`, of `T`), or a string literal for a type that is
//!   `From<&str>`, checked by the compiler. Without one, the docs take a field's
//!   example from a doc comment line of its own, ``/// Example: `A-100` ``
//!   (JSON, or text for a string), then from the schema (`default`,
//!   `enum`), then a plain value of the type.

use proc_macro::TokenStream;

mod data;
mod expand;
mod parse;

/// Derives `Serialize`, `Deserialize` and `JsonSchema` through weft's own
/// copies of serde and schemars; see `weft::data`.
#[proc_macro_attribute]
pub fn data(attr: TokenStream, item: TokenStream) -> TokenStream {
    data::expand(attr.into(), item.into()).into()
}

/// Makes an inherent impl block a weft service; see the [crate] docs.
#[proc_macro_attribute]
pub fn service(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand::service(attr.into(), item.into()).into()
}

/// Marks an event handler inside `#[weft::service]`, which removes the
/// marker; see the [crate] docs. Used anywhere else it is an error.
#[proc_macro_attribute]
pub fn event_handler(_attr: TokenStream, item: TokenStream) -> TokenStream {
    let item = proc_macro2::TokenStream::from(item);
    let error = syn::Error::new(
        proc_macro2::Span::call_site(),
        "`#[event_handler]` only marks a method inside an impl block with `#[weft::service(name = \"...\")]`",
    )
    .to_compile_error();
    quote::quote!(#error #item).into()
}

/// Marks an entrypoint inside `#[weft::service]`, which removes the marker:
/// `#[entrypoint]`, `#[entrypoint(name = "...")]`, `#[entrypoint(get)]` for
/// one that only reads (callable with `GET` too); its parameters may carry
/// `#[arg(default = ..., example = ...)]`. See the [crate] docs. Used
/// anywhere else it is an error.
#[proc_macro_attribute]
pub fn entrypoint(_attr: TokenStream, item: TokenStream) -> TokenStream {
    let item = proc_macro2::TokenStream::from(item);
    let error = syn::Error::new(
        proc_macro2::Span::call_site(),
        "`#[entrypoint]` only marks a method inside an impl block with `#[weft::service(name = \"...\")]`",
    )
    .to_compile_error();
    quote::quote!(#error #item).into()
}
