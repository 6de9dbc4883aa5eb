//! Sockets, multiplexed client connections and the server side of the weft wire protocol.
//!
//! ```no_run
//! use std::sync::Arc;
//! use bytes::Bytes;
//! use weft_transport::{serve, Connection, ConnectOptions, Handler, Listener, PeerInfo, Reply, ServerOptions};
//! use weft_wire::{Codec, Headers, Request};
//!
//! struct Echo;
//!
//! impl Handler for Echo {
//!     fn call(&self, request: Request, _codec: Codec, _peer: &PeerInfo) -> Reply {
//!         Reply::Unary(Box::pin(async move { Ok(request.payload) }))
//!     }
//! }
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let listener = Listener::bind(&"127.0.0.1:0".parse()?).await?;
//! let addr = listener.local_address();
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! let server = tokio::spawn(serve(listener, Arc::new(Echo), ServerOptions::default(), async {
//!     let _ = stopped.await;
//! }));
//!
//! let conn = Connection::connect(&addr, &ConnectOptions::default()).await?;
//! let reply = conn.call(Headers::new("echo", "echo"), Bytes::from_static(b"\"hi\"")).await?;
//! assert_eq!(&reply[..], b"\"hi\"");
//!
//! let _ = stop.send(());
//! server.await??;
//! # Ok(()) }
//! ```
//!
//! A [`Connection`] carries many calls at once: on an idle connection a call's request is
//! written from the caller's own thread; while other calls are in flight the frames of all
//! callers are written together once the scheduler has run them (one syscall for many
//! calls). A reader task per connection wakes each caller directly when its answer
//! arrives. On the server, [`serve_connection`] reads requests, answers at once those
//! whose handler completes on its first poll (one write for a whole read batch), runs the
//! others as tasks of their own, enforces deadlines, honours cancels, and drains
//! gracefully on shutdown.

mod client;
mod io;
mod pool;
mod server;
mod writer;

pub use client::{ConnectOptions, Connection, ResponseFuture, ResponseStream};
pub use io::{Listener, Stream, connect, memory_pair};
pub use pool::Pool;
pub use server::{Handler, PeerInfo, Reply, ServerOptions, serve, serve_connection};
pub use weft_core::Address;
