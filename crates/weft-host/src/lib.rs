//! The weft host as a library: the process every service registers with,
//! that callers watch, that stores notifications, and that answers HTTP.
//!
//! One address serves everything: connections that open with the weft wire
//! preface ([`weft_wire::MAGIC`]) speak the wire protocol to the host's own
//! service [`weft_host_api::wire::SERVICE`]; any other connection is HTTP:
//!
//! - the gateway, `POST /services/{name}/{entrypoint}` with a JSON object of
//!   named arguments (`?version=1.2.0`, `?version=^1.2` or the
//!   `Weft-Version` header pick a version other than main; `Weft-Timeout`
//!   limits the seconds a call may take), answering with the result as JSON
//!   or an `application/problem+json` error;
//! - `GET /services/{name}/openapi.json` (OpenAPI 3.1) and
//!   `GET /services/{name}/docs` (Swagger UI, served by the host itself);
//! - `GET /openapi.json` and `GET /docs` for the host's own API:
//!   `GET /healthz`, `GET /api/v1/services`, `GET /api/v1/notifications`,
//!   and `/api/v1/tokens`.
//!
//! Bearer tokens with scopes guard the gateway and `/api/v1` when
//! [`AuthMode::is_required`] says so. State lives in a data dir, so
//! notifications, tokens and main versions survive a restart.
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

mod auth;
mod backend;
mod config;
mod events;
mod http;
mod notifications;
mod registrations;
mod registry_service;
mod state;
mod store;
mod supervisor;
mod time;
mod tokens;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncReadExt;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinSet;
use weft_core::backoff::Backoff;
use weft_core::{Address, Error};
use weft_registry::{Registry, WatchEvent};
use weft_transport::{Listener, ServerOptions, Stream};

use crate::auth::Auth;
pub use crate::auth::{ADMIN_TOKEN_FILE, AuthMode};
pub use crate::config::{
    ClusterConfig, DEFAULT_BODY_TIMEOUT, DEFAULT_LEASE_TTL, DEFAULT_MAX_BODY, HostConfig,
};
pub use crate::events::EventsConfig;
use crate::http::gateway::Gateway;
use crate::http::{App, PeerLocal};
use crate::notifications::Notifications;
use crate::registrations::Registrations;
use crate::registry_service::HostHandler;
use crate::state::Shared;
use crate::store::Store;

/// How often lapsed leases are evicted.
const EXPIRE_EVERY: Duration = Duration::from_millis(250);

/// How long a new connection may take to send its first byte; a peer that
/// sends nothing would otherwise hold a task and a socket forever.
const FIRST_BYTES_TIMEOUT: Duration = Duration::from_secs(10);

/// How long open connections get to finish when the host stops.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

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
    admin_token_file: Option<PathBuf>,
    /// Runs deployed versions as child processes.
    supervisor: Arc<supervisor::Supervisor>,
}

impl Host {
    /// Opens (or creates) the data dir and its store, restores main versions
    /// and binds the listener.
    pub async fn bind(config: HostConfig) -> Result<Host, Error> {
        let dir = config.data_dir.clone();
        let store = tokio::task::spawn_blocking(move || Store::open(&dir))
            .await
            .map_err(|e| Error::internal(format!("opening the store failed: {e}")))??;
        // Before the port, so that a host that cannot join its cluster says
        // so before anything connects to it.
        let backends = backend::open(&config, &store).await?;
        let mut registry = Registry::new(config.lease_ttl);
        // Before anything registers, so that a restored main is not first
        // replaced by whichever version registers first.
        let mains = store.blocking(|s| s.mains()).await?;
        registry.restore_mains(mains);
        let listener = match Listener::bind(&config.listen).await {
            Ok(listener) => listener,
            Err(e) => {
                backends.events.close().await;
                return Err(Error::unavailable(format!(
                    "cannot listen on {}: {e}; is another `weft host` running there? stop it, or pick another address with --listen",
                    config.listen
                )));
            }
        };
        let address = listener.local_address();
        let tokens = store.blocking(|s| s.tokens()).await?;
        let auth = Auth::new(config.auth.is_required(&config.listen), tokens);
        let mesh_token = auth.mint_mesh_token();
        let shared = Arc::new(Shared {
            registry: Registrations::new(registry, config.name.clone()),
            notifications: Notifications::new(backends.notifications),
            store,
            auth,
            mesh_token,
            events: backends.events,
            cluster_tokens: backends.tokens,
            cluster: backends.registry,
            identity: state::Identity {
                name: config.name.clone(),
                address: backend::advertised(
                    &address.reachable().to_string(),
                    config.cluster.as_ref().and_then(|c| c.advertise.as_deref()),
                ),
                started_ms: time::now_ms(),
            },
        });
        // Before anything registers under this host's name.
        shared.cluster.claim(&shared).await?;
        let admin_token_file = if shared.auth.required() {
            Some(bootstrap_admin(&shared, &config.data_dir).await?)
        } else {
            None
        };
        let supervisor = supervisor::Supervisor::open(
            shared.clone(),
            backends.deployments,
            &config.data_dir,
            &address,
        );
        Ok(Host {
            listener,
            address,
            config,
            shared,
            admin_token_file,
            supervisor,
        })
    }

    /// Whether HTTP requests to this host need a bearer token.
    pub fn auth_required(&self) -> bool {
        self.shared.auth.required()
    }

    /// The file holding an admin token, when tokens are required: readable
    /// only by the host's user, for `weft token` on the same machine.
    pub fn admin_token_file(&self) -> Option<&std::path::Path> {
        self.admin_token_file.as_deref()
    }

    /// One line for people saying whether and how tokens are required.
    pub fn auth_summary(&self) -> String {
        match &self.admin_token_file {
            Some(file) => format!(
                "auth required: the gateway and /api/v1 need `Authorization: Bearer <token>`; \
                 an admin token is in {} (`weft token create --scope ...` makes more)",
                file.display()
            ),
            None if self.config.auth == AuthMode::Off => format!(
                "auth off: anyone who reaches {} may call services and manage the host",
                self.address
            ),
            None => "auth off on loopback: no token needed from this machine \
                     (`--auth required` asks for tokens)"
                .to_owned(),
        }
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
            config,
            shared,
            admin_token_file: _,
            supervisor,
        } = self;
        tracing::info!(%address, auth = shared.auth.required(), "weft host listening");
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
                    shared.registry.expire();
                }
            }
        });
        let handler = Arc::new(HostHandler {
            shared: shared.clone(),
            stop: stop_rx.clone(),
        });
        let app = Arc::new(App {
            shared: shared.clone(),
            supervisor: supervisor.clone(),
            gateway: Gateway::new(shared.registry.index(), shared.mesh_token.clone()),
            max_body: config.max_body,
            body_timeout: config.body_timeout,
        });
        let router = http::router(app);
        // Instances register over the listener below, so they start once
        // it accepts; a deploy arriving meanwhile waits for the restore.
        let restore = tokio::spawn({
            let supervisor = supervisor.clone();
            async move { supervisor.restore().await }
        });
        let (cluster_stop_tx, cluster_stop) = watch::channel(false);
        let cluster = tokio::spawn(shared.cluster.clone().run(shared.clone(), cluster_stop));
        tokio::pin!(shutdown);
        let mut backoff = Backoff::new(Duration::from_millis(10), Duration::from_secs(1));
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
                    backoff.reset();
                    a
                }
                Err(e) => {
                    // Usually out of file descriptors: wait instead of spinning.
                    tracing::warn!(error = %e, "accepting a connection failed; retrying");
                    tokio::time::sleep(backoff.next_delay()).await;
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
        // Instances deregister over their open connections, so they stop
        // before those are told to go away.
        let _ = restore.await;
        supervisor.shutdown().await;
        // The instances have deregistered: the cluster hears of it, and of
        // this host's leaving, before the connections close.
        let _ = cluster_stop_tx.send(true);
        let _ = cluster.await;
        let _ = stop_tx.send(true);
        // Ends subscribe streams and tails, so that connections can drain.
        shared.events.stopping();
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
        shared.events.close().await;
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
        let mut options = ServerOptions::default();
        if handler.shared.auth.required() {
            let shared = handler.shared.clone();
            options.authenticate = Some(Arc::new(move |credential: Option<&str>| {
                // Any valid token opens the wire port: instances need one to
                // register, clients to watch the registry and notify.
                let header = credential.map(|t| format!("Bearer {t}"));
                shared
                    .auth
                    .verify(header.as_deref().map(str::as_bytes), auth::Need::Read)
                    .map_err(|denied| {
                        format!(
                            "{} (services and clients present it with WEFT_TOKEN)",
                            denied.error.message()
                        )
                    })
            }));
        }
        if let Err(e) =
            weft_transport::serve_connection(stream, initial, handler, options, shutdown).await
        {
            tracing::debug!(%peer, error = %e, "wire connection ended with an error");
        }
    } else {
        let local = PeerLocal(auth::peer_is_local(&peer));
        http::serve_connection(stream, Bytes::from(buf), router, local, stop).await;
    }
}

/// Makes sure `admin.token` in the data dir holds a working admin token,
/// minting one when it is missing, revoked or expired, and returns its path.
async fn bootstrap_admin(shared: &Shared, data_dir: &std::path::Path) -> Result<PathBuf, Error> {
    let path = data_dir.join(ADMIN_TOKEN_FILE);
    if let Ok(existing) = std::fs::read_to_string(&path)
        && shared.auth.is_admin(existing.trim())
    {
        return Ok(path);
    }
    let (record, token) = shared.auth.mint(
        format!("bootstrap admin ({ADMIN_TOKEN_FILE})"),
        vec!["admin".to_owned()],
        None,
    )?;
    tokens::add(shared, record).await?;
    auth::write_private(&path, &format!("{token}\n")).map_err(|e| {
        Error::unavailable(format!(
            "cannot write the admin token to {}: {e}; check that the data dir is writable",
            path.display()
        ))
    })?;
    tracing::info!(file = %path.display(), "created an admin token");
    Ok(path)
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
