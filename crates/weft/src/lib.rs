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
//! a program with [`Client`], and a test with [`testing::Mesh`].

mod client;
mod context;
pub mod host_api;
mod router;
mod serve;
mod service;
#[cfg(feature = "testing")]
pub mod testing;

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

pub use client::{Client, ClientOptions};
pub use context::{AsContext, CallBuilder, Context, DEFAULT_TIMEOUT, Identity};
pub use serve::{DEFAULT_HOST, Server, serve};
pub use service::{Dispatch, Incoming, Service};
pub use weft_core::{Code, Error, Notification, Result, Severity, args, codec, name, spec};
pub use weft_macros::{entrypoint, service};
pub use weft_registry::ServiceSummary;
pub use weft_transport::Address;
pub use weft_wire::Caller;

/// What a service file needs: `use weft::prelude::*;`.
pub mod prelude {
    pub use crate::{AsContext, Context, Error, Result, Severity, entrypoint};
}
