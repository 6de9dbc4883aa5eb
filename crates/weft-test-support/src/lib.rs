//! What weft's integration tests use to start real things and wait for
//! them, in one place so that no test copies a harness:
//!
//! - [`poll`] and [`within`]: wait for an event with bounded patience, and
//!   fail naming what never happened;
//! - [`TestServer`]: a transport server on 127.0.0.1:0 for a hand-written
//!   [`Handler`](weft_transport::Handler);
//!
//! and, with the `host` feature (on by default):
//!
//! - [`RunningHost`]: a host in this process, [`Served`]: a service served
//!   over the network from this process, [`Watch`]: the host's registry;
//! - [`HostProcess`]: `weft host` as a child process, and [`Weft`]: the CLI
//!   run as a user runs it;
//! - [`ServiceProcess`]: a service in a child process, usually this test
//!   binary run again to serve a service declared with [`test_services!`];
//! - [`wait_instances`] and [`wait_services`]: wait for the registry;
//! - [`Http`]: one HTTP client for tests, with JSON and problem helpers.
//!
//! and, with the `nats` feature (off by default, so that only the tests of
//! the NATS backend build a NATS client):
//!
//! - `NatsServer`: one nats-server with JetStream on 127.0.0.1;
//! - `NatsCluster`: nats-server nodes in cluster mode with JetStream,
//!   each in a network namespace of its own (`Netns` on a `Network`),
//!   to kill and restart one at a time (needs root and iproute2);
//! - [`ChildProcess`]: any program as a child process.
//!
//! Every process and task it starts is killed or stopped when its handle
//! is dropped.
//!
//! ```no_run
//! # #[cfg(feature = "host")]
//! # async fn example() {
//! # let weft = "weft";
//! use weft_test_support::{HostProcess, ServiceProcess, test_service_command, wait_instances};
//!
//! // In the test binary: `probe` is served when a test starts it.
//! // weft_test_support::test_services! { "probe" => Probe }
//!
//! // In the CLI's tests, `weft` is `env!("CARGO_BIN_EXE_weft")`.
//! let host = HostProcess::start(weft).await;
//! let _probe = ServiceProcess::start(host.address(), "probe-1", test_service_command("probe"));
//! let client = host.client().await;
//! wait_instances(&client, "probe", None, 1).await;
//! let answer = host.http().get("/api/v1/services").await;
//! assert_eq!(answer.json()[0]["name"], "probe");
//! # }
//! ```

mod poll;
mod sockets;
mod transport;

pub use poll::{Outcome, PATIENCE, poll, poll_within, within};
pub use sockets::close_wait_to;
pub use transport::TestServer;

#[cfg(any(feature = "host", feature = "nats"))]
mod child;
#[cfg(feature = "host")]
mod http;
#[cfg(feature = "host")]
mod in_process;
#[cfg(feature = "nats")]
mod nats;
#[cfg(feature = "nats")]
mod netns;
#[cfg(feature = "host")]
mod process;
#[cfg(feature = "host")]
mod services;

#[cfg(any(feature = "host", feature = "nats"))]
pub use child::{ChildProcess, both, test_log, text};
#[cfg(feature = "host")]
pub use http::{Answer, Http};
#[cfg(feature = "host")]
pub use in_process::{RunningHost, Served, Watch, host_call};
#[cfg(feature = "nats")]
pub use nats::{NatsCluster, NatsNode, NatsServer};
#[cfg(feature = "nats")]
pub use netns::{Netns, Network};
#[cfg(feature = "host")]
pub use process::{HostBuilder, HostProcess, Weft};
#[cfg(feature = "host")]
pub use services::{
    SERVICE_ENV, ServiceProcess, instances, serve_test_service, test_service_command,
    wait_instances, wait_services,
};

/// Re-exported for [`test_services!`].
#[cfg(feature = "host")]
#[doc(hidden)]
pub mod __private {
    pub use crate::services::selected_service;
}
