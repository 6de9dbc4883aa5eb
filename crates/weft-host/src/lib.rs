//! The weft host as a library: the process every service registers with,
//! that callers watch, that stores notifications, and that answers HTTP.
//!
//! One address serves everything: connections that open with the weft wire
//! preface ([`weft_wire::MAGIC`]) speak the wire protocol to the host's own
//! service [`weft::host_api::SERVICE`]; any other connection is HTTP
//! (`GET /healthz`, `GET /api/v1/services`, `GET /api/v1/notifications`).
//! State lives in a data dir, so notifications and main versions survive a
//! restart.
//!
//! ```no_run
//! use weft_host::{Host, HostConfig};
//!
//! # async fn f() -> weft::Result<()> {
//! let config = HostConfig::new("127.0.0.1:0".parse()?, "/tmp/weft-data");
//! let host = Host::bind(config).await?;
//! println!("listening on {}", host.local_address());
//! host.run(async {
//!     let _ = tokio::signal::ctrl_c().await;
//! })
//! .await?;
//! # Ok(()) }
//! ```

mod http;
mod state;
mod store;
mod wire;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncReadExt;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinSet;
use weft::{Address, Error};
use weft_registry::{Registry, WatchEvent};
use weft_transport::{Listener, ServerOptions, Stream};

use crate::state::Shared;
use crate::store::Store;
use crate::wire::HostHandler;

/// How long a lease lasts without a keepalive, unless configured otherwise.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(6);

/// How often lapsed leases are evicted.
const EXPIRE_EVERY: Duration = Duration::from_millis(250);

/// How long a new connection may take to send its first byte; a peer that
/// sends nothing would otherwise hold a task and a socket forever.
const FIRST_BYTES_TIMEOUT: Duration = Duration::from_secs(10);

/// How long open connections get to finish when the host stops.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Where and how a [`Host`] runs.
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// The one address for the wire protocol and HTTP (`127.0.0.1:7400`;
    /// port 0 picks a free port, see [`Host::local_address`]).
    pub listen: Address,
    /// The directory for the host's state; created if missing.
    pub data_dir: PathBuf,
    /// How long an instance stays registered without a keepalive.
    pub lease_ttl: Duration,
}

impl HostConfig {
    /// A config with the default lease ([`DEFAULT_LEASE_TTL`]).
    ///
    /// ```
    /// let config = weft_host::HostConfig::new("127.0.0.1:7400".parse()?, "/var/lib/weft");
    /// assert_eq!(config.lease_ttl, weft_host::DEFAULT_LEASE_TTL);
    /// # Ok::<(), weft::Error>(())
    /// ```
    pub fn new(listen: Address, data_dir: impl Into<PathBuf>) -> Self {
        HostConfig {
            listen,
            data_dir: data_dir.into(),
            lease_ttl: DEFAULT_LEASE_TTL,
        }
    }

    /// Sets how long an instance stays registered without a keepalive.
    pub fn lease_ttl(mut self, lease_ttl: Duration) -> Self {
        self.lease_ttl = lease_ttl;
        self
    }
}

/// A bound host, ready to [`run`](Host::run).
///
/// ```no_run
/// # async fn f() -> weft::Result<()> {
/// let host = weft_host::Host::bind(weft_host::HostConfig::new(
///     "127.0.0.1:7400".parse()?,
///     "/tmp/weft-data",
/// ))
/// .await?;
/// host.run(std::future::pending()).await
/// # }
/// ```
#[derive(Debug)]
pub struct Host {
    listener: Listener,
    address: Address,
    config: HostConfig,
    shared: Arc<Shared>,
}

impl Host {
    /// Opens (or creates) the data dir and its store, restores main versions
    /// and binds the listener.
    pub async fn bind(config: HostConfig) -> Result<Host, Error> {
        let dir = config.data_dir.clone();
        let store = tokio::task::spawn_blocking(move || Store::open(&dir))
            .await
            .map_err(|e| Error::internal(format!("opening the store failed: {e}")))??;
        let mut registry = Registry::new(config.lease_ttl);
        // Before anything registers, so that a restored main is not first
        // replaced by whichever version registers first.
        let mains = store.blocking(|s| s.mains()).await?;
        registry.restore_mains(mains);
        let listener = Listener::bind(&config.listen).await.map_err(|e| {
            Error::unavailable(format!(
                "cannot listen on {}: {e}; is another `weft host` running there? stop it, or pick another address with --listen",
                config.listen
            ))
        })?;
        let address = listener.local_address();
        Ok(Host {
            listener,
            address,
            config,
            shared: Arc::new(Shared::new(registry, store)),
        })
    }

    /// The address the host listens on, with the real port after binding port 0.
    pub fn local_address(&self) -> Address {
        self.address.clone()
    }

    /// The data dir this host keeps its state in.
    pub fn data_dir(&self) -> &std::path::Path {
        &self.config.data_dir
    }

    /// Serves until `shutdown` resolves, then stops accepting, tells open
    /// connections to go away, and persists the main versions.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> Result<(), Error> {
        let Host {
            listener,
            address,
            config: _,
            shared,
        } = self;
        tracing::info!(%address, "weft host listening");
        let (stop_tx, stop_rx) = watch::channel(false);
        let mains = tokio::spawn(persist_mains(
            shared.clone(),
            shared.registry.lock().subscribe(),
        ));
        let expirer = tokio::spawn({
            let shared = shared.clone();
            async move {
                let mut tick = tokio::time::interval(EXPIRE_EVERY);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    shared.expire();
                }
            }
        });
        let handler = Arc::new(HostHandler {
            shared: shared.clone(),
            stop: stop_rx.clone(),
        });
        let router = http::router(shared.clone());
        tokio::pin!(shutdown);
        let mut backoff = Duration::from_millis(10);
        let mut conns = JoinSet::new();
        loop {
            let accepted = tokio::select! {
                () = &mut shutdown => break,
                accepted = listener.accept() => accepted,
                // Reap finished connections so the set does not grow.
                Some(_) = conns.join_next(), if !conns.is_empty() => continue,
            };
            let (stream, peer) = match accepted {
                Ok(a) => {
                    backoff = Duration::from_millis(10);
                    a
                }
                Err(e) => {
                    // Usually out of file descriptors: wait instead of spinning.
                    tracing::warn!(error = %e, "accepting a connection failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
            };
            conns.spawn(serve_one(
                stream,
                peer,
                handler.clone(),
                router.clone(),
                stop_rx.clone(),
            ));
        }
        tracing::info!(connections = conns.len(), "weft host stopping");
        drop(listener);
        let _ = stop_tx.send(true);
        if tokio::time::timeout(SHUTDOWN_GRACE, async {
            while conns.join_next().await.is_some() {}
        })
        .await
        .is_err()
        {
            tracing::warn!(
                connections = conns.len(),
                "connections did not close in time; closing them"
            );
            conns.shutdown().await;
        }
        expirer.abort();
        mains.abort();
        let _ = expirer.await;
        let _ = mains.await;
        // The persister may have been cut short: store the final state once.
        let all = shared.registry.lock().mains().clone();
        let persisted = shared
            .store
            .blocking(move |s| s.set_mains(all.iter().map(|(k, v)| (k.as_str(), v))))
            .await;
        shared.store.close();
        persisted
    }
}

/// Sniffs the first bytes of a connection and serves it as wire or HTTP.
async fn serve_one(
    mut stream: Stream,
    peer: String,
    handler: Arc<HostHandler>,
    router: axum::Router,
    stop: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 1024];
    let n = match tokio::time::timeout(FIRST_BYTES_TIMEOUT, stream.read(&mut buf)).await {
        Ok(Ok(0)) => return,
        Ok(Ok(n)) => n,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "reading a new connection failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "a new connection sent nothing; closing it");
            return;
        }
    };
    buf.truncate(n);
    if buf[0] == weft_wire::MAGIC[0] {
        let initial = BytesMut::from(&buf[..]);
        let mut stop = stop;
        let shutdown = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        if let Err(e) = weft_transport::serve_connection(
            stream,
            initial,
            handler,
            ServerOptions::default(),
            shutdown,
        )
        .await
        {
            tracing::debug!(%peer, error = %e, "wire connection ended with an error");
        }
    } else {
        http::serve_connection(stream, Bytes::from(buf), router, stop).await;
    }
}

/// Persists every change of a main version as it happens.
async fn persist_mains(shared: Arc<Shared>, mut events: broadcast::Receiver<WatchEvent>) {
    loop {
        let write = match events.recv().await {
            Ok(WatchEvent::Main { service, version }) => {
                shared
                    .store
                    .blocking(move |s| s.set_main(&service, &version))
                    .await
            }
            Ok(_) => continue,
            Err(broadcast::error::RecvError::Lagged(_)) => {
                let all = shared.registry.lock().mains().clone();
                shared
                    .store
                    .blocking(move |s| s.set_mains(all.iter().map(|(k, v)| (k.as_str(), v))))
                    .await
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        if let Err(e) = write {
            tracing::error!(error = %e, "cannot persist a main version");
        }
    }
}
