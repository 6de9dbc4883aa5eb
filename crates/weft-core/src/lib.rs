//! The shared vocabulary of weft: errors with stable codes, payload codecs,
//! named arguments, service specs, names and versions, endpoint addresses,
//! notifications, and the backoff every retry loop uses.
//!
//! ```
//! use weft_core::{args, codec::Codec, Code};
//!
//! let bytes = args::encode(Codec::Json, &serde_json::json!({ "n": "six" })).unwrap();
//! let mut args = args::Args::decode(Codec::Json, &bytes).unwrap();
//! let err = args.take::<u8>("n").unwrap_err();
//! assert_eq!(err.code(), Code::InvalidArgument);
//! assert_eq!(err.field(), Some("n"));
//! ```

mod address;
pub mod args;
pub mod backoff;
pub mod codec;
#[cfg(feature = "db")]
pub mod db;
mod error;
pub mod name;
mod notification;
pub mod retry;
pub mod spec;

pub use address::Address;
pub use error::{Code, Error, Result};
pub use notification::{Notification, Severity};
