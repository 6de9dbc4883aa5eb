//! The systems under test. Each has a server side (processes started with
//! `__serve`) and a client side (callers that make one call at a time).
//!
//! Adding a system (tarpc, tonic, NATS request-reply, unix sockets) means: a
//! module with its `serve` role(s), its `Server` (the processes, killed on
//! drop) and its `Caller`; a variant in [`System`], [`Role`], [`Server`] and
//! [`Caller`]; and the arms in the `match`es below. Dispatch is an enum, not
//! a trait object, so the hot loop pays no boxing for any system.

mod raw_tcp;
mod weft_echo;

use std::path::PathBuf;

use anyhow::Context as _;
use serde::Serialize;

/// A system under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum System {
    /// Length-prefixed ping-pong over plain tokio TCP: the floor.
    RawTcp,
    /// A weft host and an `echo` service, called through `weft::Client`.
    Weft,
}

impl System {
    /// The name in tables and JSON.
    pub(crate) fn name(self) -> &'static str {
        match self {
            System::RawTcp => "raw-tcp",
            System::Weft => "weft",
        }
    }

    /// How the concurrent scenario's callers share connections, for the
    /// table's notes.
    pub(crate) fn sharing(self) -> &'static str {
        match self {
            System::RawTcp => "one connection per caller",
            System::Weft => "callers share one weft::Client (one multiplexed connection)",
        }
    }

    /// Starts the system's server processes and waits until they answer.
    pub(crate) async fn start_server(self) -> anyhow::Result<Server> {
        Ok(match self {
            System::RawTcp => Server::RawTcp(raw_tcp::Server::start().await?),
            System::Weft => Server::Weft(weft_echo::Server::start().await?),
        })
    }

    /// Connects `n` callers that each echo `payload`, sharing connections
    /// the way this system's users would.
    pub(crate) async fn callers(
        self,
        server: &Server,
        n: usize,
        payload: &[u8],
    ) -> anyhow::Result<Vec<Caller>> {
        Ok(match (self, server) {
            (System::RawTcp, Server::RawTcp(s)) => s
                .callers(n, payload)
                .await?
                .into_iter()
                .map(Caller::RawTcp)
                .collect(),
            (System::Weft, Server::Weft(s)) => s
                .callers(n, payload)
                .await?
                .into_iter()
                .map(Caller::Weft)
                .collect(),
            _ => anyhow::bail!(
                "the {} callers were given another system's server",
                self.name()
            ),
        })
    }
}

/// The running server processes of one system; dropping it kills them.
#[derive(Debug)]
pub(crate) enum Server {
    /// See [`System::RawTcp`].
    RawTcp(raw_tcp::Server),
    /// See [`System::Weft`].
    Weft(weft_echo::Server),
}

impl Server {
    /// Fails with a server's stderr if one of the processes has exited.
    pub(crate) fn check_alive(&self) -> anyhow::Result<()> {
        match self {
            Server::RawTcp(s) => s.check_alive(),
            Server::Weft(s) => s.check_alive(),
        }
    }

    /// The ids of the server processes.
    pub(crate) fn pids(&self) -> Vec<u32> {
        match self {
            Server::RawTcp(s) => s.pids(),
            Server::Weft(s) => s.pids(),
        }
    }
}

/// One caller: makes one call at a time and checks the echo.
#[derive(Debug)]
pub(crate) enum Caller {
    /// See [`System::RawTcp`].
    RawTcp(raw_tcp::Caller),
    /// See [`System::Weft`].
    Weft(weft_echo::Caller),
}

impl Caller {
    /// Sends the payload, waits for the echo and checks it.
    pub(crate) async fn call(&mut self) -> anyhow::Result<()> {
        match self {
            Caller::RawTcp(c) => c.call().await,
            Caller::Weft(c) => c.call().await,
        }
    }
}

/// The server roles, run by `weft-bench __serve <role>`.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum Role {
    /// Echoes length-prefixed frames on every TCP connection.
    RawTcp {
        /// Where to listen.
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: String,
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
        /// Where to accept calls.
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: String,
    },
}

/// Runs a server role until this process is killed or the benchmark
/// process goes away. Every role uses tokio's default multi-threaded
/// runtime, the one `#[tokio::main]` gives users, so no system gets a
/// runtime the others do not.
pub(crate) fn serve(role: Role) -> anyhow::Result<()> {
    crate::process::exit_with_parent()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    runtime.block_on(async move {
        match role {
            Role::RawTcp { listen } => raw_tcp::serve(&listen).await,
            Role::Host { listen, data_dir } => weft_echo::serve_host(&listen, data_dir).await,
            Role::WeftEcho { host, listen } => weft_echo::serve_echo(&host, &listen).await,
        }
    })
}
