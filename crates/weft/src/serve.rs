//! Running a service: listen, register with the host, keep the lease alive,
//! answer calls, and drain on SIGTERM.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::FutureExt;
use tokio::sync::{oneshot, watch};
use weft_core::backoff::Backoff;
use weft_core::codec::Codec;
use weft_core::name::Version;
use weft_registry::{InstanceInfo, RegisterReply, RegisterRequest};
use weft_transport::{
    Address, ConnectOptions, Handler, Listener, PeerInfo, Pool, Reply, ServerOptions,
};
use weft_wire::Request;

use crate::Error;
use crate::bulkhead::Bulkheads;
use crate::context::{Context, Identity};
use crate::events::Subscriber;
use crate::router::{Router, call_host_on};
use crate::service::{Dispatch, DynService, Incoming, Service};
use weft_host_api::wire as host_api;

/// The host address when `WEFT_HOST` is not set.
pub const DEFAULT_HOST: &str = "127.0.0.1:7400";

/// Serves `service` with settings from the environment until SIGTERM or
/// Ctrl-C, then deregisters and drains in-flight calls.
///
/// Each `#[event_handler]` of the service subscribes to its topic on the
/// host once the instance is registered, and again after the host
/// restarts. Each event runs as its own task (at most 16 at once per
/// handler and instance) and is acknowledged when it is done: a handler
/// that returns `Err` or panics has it delivered again. On SIGTERM the
/// instance takes no new events, finishes and acknowledges the ones it has,
/// then deregisters and drains its calls.
///
/// | variable | meaning | default |
/// |---|---|---|
/// | `WEFT_HOST` | the host to register with | `127.0.0.1:7400` |
/// | `WEFT_LISTEN` | where to accept calls (`host:port` or `unix:///path`) | `127.0.0.1:0` |
/// | `WEFT_VERSION` | the version to register as | the crate's version |
/// | `WEFT_INSTANCE` | the instance id | a random id |
/// | `WEFT_TOKEN` | the credential for a host that requires one | none |
///
/// ```no_run
/// use weft::prelude::*;
///
/// #[derive(Default)]
/// struct Echo;
///
/// #[weft::service(name = "echo")]
/// impl Echo {
///     /// Returns its argument.
///     #[entrypoint]
///     async fn echo(&self, text: String) -> String {
///         text
///     }
/// }
///
/// #[tokio::main]
/// async fn main() -> weft::Result<()> {
///     weft::serve(Echo).await
/// }
/// ```
///
/// It also prints the service's logs (its `tracing` events and weft's) on
/// stderr, filtered by `RUST_LOG` (`info` by default), unless the program
/// installed a subscriber of its own first; under `weft host` they are what
/// `weft logs` shows.
pub async fn serve<S: Service>(service: S) -> Result<(), Error> {
    log_to_stderr();
    Server::from_env(service)?.run().await
}

/// Installs a `tracing` subscriber that writes to stderr, if none is set.
fn log_to_stderr() {
    use std::io::IsTerminal as _;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Fails when the program set one already: then that one is used.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

/// A service about to be served, with its settings.
pub struct Server {
    service: Arc<dyn DynService>,
    host: Address,
    listen: Address,
    version: String,
    instance: String,
    token: Option<String>,
    shutdown: Pin<Box<dyn Future<Output = ()> + Send>>,
    drain_timeout: Duration,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("service", &self.service.name())
            .field("host", &self.host)
            .field("listen", &self.listen)
            .field("version", &self.version)
            .field("instance", &self.instance)
            .finish_non_exhaustive()
    }
}

fn env_or(key: &str, default: &str) -> String {
    std::env::var(key)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_owned())
}

impl Server {
    /// Settings from the environment (see [`serve`]).
    pub fn from_env<S: Service>(service: S) -> Result<Self, Error> {
        let host = env_or("WEFT_HOST", DEFAULT_HOST).parse()?;
        let listen = env_or("WEFT_LISTEN", "127.0.0.1:0").parse()?;
        let version = env_or("WEFT_VERSION", S::VERSION);
        Version::parse(&version).map_err(|e| {
            Error::invalid_argument(
                "version",
                format!("`{version}` is not a semver version: {e}"),
            )
        })?;
        Ok(Server {
            service: Arc::new(Arc::new(service)),
            host,
            listen,
            version,
            instance: env_or("WEFT_INSTANCE", &uuid::Uuid::new_v4().simple().to_string()),
            token: std::env::var("WEFT_TOKEN").ok().filter(|t| !t.is_empty()),
            shutdown: Box::pin(terminate()),
            drain_timeout: Duration::from_secs(30),
        })
    }

    /// Registers with this host instead.
    pub fn host(mut self, host: Address) -> Self {
        self.host = host;
        self
    }

    /// Presents this credential to the host instead of `WEFT_TOKEN`.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Accepts calls here instead.
    pub fn listen(mut self, listen: Address) -> Self {
        self.listen = listen;
        self
    }

    /// Stops when `signal` resolves instead of on SIGTERM / Ctrl-C.
    pub fn shutdown(mut self, signal: impl Future<Output = ()> + Send + 'static) -> Self {
        self.shutdown = Box::pin(signal);
        self
    }

    /// Serves until the shutdown signal, then stops taking events, finishes
    /// the ones in hand, deregisters and drains calls.
    pub async fn run(self) -> Result<(), Error> {
        let spec = self.service.spec();
        crate::events::check(&spec)?;
        let listener = Listener::bind(&self.listen).await.map_err(|e| {
            Error::unavailable(format!(
                "cannot listen on {}: {e}; set WEFT_LISTEN to a free address",
                self.listen
            ))
        })?;
        let address = listener.local_address();
        let name = self.service.name();
        let identity = Arc::new(Identity {
            service: name.to_owned(),
            version: self.version.clone(),
            instance: self.instance.clone(),
        });
        let connect = ConnectOptions {
            credential: self.token.clone(),
            ..ConnectOptions::default()
        };
        let router = Router::start(self.host.clone(), connect.clone());
        let root = Context::root(router.clone(), Some(identity));
        let has_handlers = !spec.event_handlers.is_empty();
        let info = InstanceInfo {
            id: self.instance.clone(),
            service: name.to_owned(),
            version: Version::parse(&self.version).expect("validated in from_env"),
            address: address.to_string(),
            spec,
            pid: Some(std::process::id()),
            started_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0),
            // The host says which host it is.
            host: None,
        };
        let (registered_tx, registered_rx) = watch::channel(false);
        let (stop_lease, lease_stopped) =
            spawn_lease_keeper(self.host.clone(), connect, info, registered_tx);
        let (stop_events, events_stopped) = watch::channel(false);
        let events = has_handlers.then(|| {
            Arc::new(Subscriber {
                service: self.service.clone(),
                root: root.clone(),
                pool: router.pool.clone(),
                host: self.host.clone(),
                instance: self.instance.clone(),
            })
            .start(registered_rx, events_stopped)
        });
        tracing::info!(service = name, version = %self.version, %address, "serving");
        let handler = Arc::new(ServiceHandler {
            limits: Bulkheads::of(&self.service.spec()),
            service: self.service.clone(),
            root,
        });
        let drain_timeout = self.drain_timeout;
        let shutdown = self.shutdown;
        let (fired_tx, fired_rx) = oneshot::channel::<()>();
        let shutdown = async move {
            shutdown.await;
            let _ = fired_tx.send(());
            if let Some(events) = events {
                tracing::info!("shutting down: finishing the events in hand");
                let _ = stop_events.send(true);
                let _ = events.await;
            }
            tracing::info!("shutting down: deregistering, then draining in-flight calls");
            // Deregister first so callers stop choosing this instance
            // while it finishes the calls it has.
            let _ = stop_lease.send(());
            let _ = tokio::time::timeout(Duration::from_secs(5), lease_stopped).await;
        };
        let served = weft_transport::serve(listener, handler, ServerOptions::default(), shutdown);
        tokio::pin!(served);
        tokio::select! {
            r = &mut served => r.map_err(|e| Error::internal(format!("server failed: {e}"))),
            _ = async {
                let _ = fired_rx.await;
                tokio::time::sleep(drain_timeout).await;
            } => {
                tracing::warn!(?drain_timeout, "in-flight calls did not finish in time; stopping anyway");
                Ok(())
            }
        }
    }
}

/// Resolves on SIGTERM or Ctrl-C.
async fn terminate() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Keeps the lease alive from a thread of its own with its own runtime, so
/// that no handler, however busy or blocking, can starve it: a busy instance
/// is never evicted for being busy. Returns a sender that stops it (it then
/// deregisters) and a receiver that fires once it has.
fn spawn_lease_keeper(
    host: Address,
    connect: ConnectOptions,
    info: InstanceInfo,
    registered_tx: watch::Sender<bool>,
) -> (oneshot::Sender<()>, oneshot::Receiver<()>) {
    let (stop_tx, mut stop_rx) = oneshot::channel::<()>();
    let (done_tx, done_rx) = oneshot::channel::<()>();
    let spawned = std::thread::Builder::new()
        .name("weft-lease".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!(error = %e, "cannot start the lease keeper");
                    return;
                }
            };
            rt.block_on(async move {
                let pool = Pool::new(connect);
                let id = host_api::InstanceId { id: info.id.clone() };
                let timeout = Duration::from_secs(5);
                let mut registered: Option<RegisterReply> = None;
                // Jitter: every instance registers again when the host restarts.
                let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2))
                    .with_jitter(0.25);
                loop {
                    let wait = match &registered {
                        None => {
                            let req = RegisterRequest { instance: info.clone() };
                            match call_host_on::<_, RegisterReply>(&pool, &host, host_api::REGISTER, &req, timeout).await {
                                Ok(reply) => {
                                    tracing::info!(host = %host, "registered with the host");
                                    let every = Duration::from_millis(reply.lease_ttl_ms / 3).max(Duration::from_millis(50));
                                    registered = Some(reply);
                                    registered_tx.send_replace(true);
                                    backoff.reset();
                                    every
                                }
                                Err(e) => {
                                    tracing::warn!(host = %host, error = %e, "cannot register with the host; retrying");
                                    backoff.next_delay()
                                }
                            }
                        }
                        Some(reply) => {
                            let every = Duration::from_millis(reply.lease_ttl_ms / 3).max(Duration::from_millis(50));
                            match call_host_on::<_, ()>(&pool, &host, host_api::KEEPALIVE, &id, timeout).await {
                                Ok(()) => every,
                                Err(e) if e.code() == weft_core::Code::NotFound => {
                                    // The host restarted or evicted us: register again now.
                                    registered = None;
                                    Duration::ZERO
                                }
                                Err(e) => {
                                    tracing::debug!(error = %e, "keepalive failed; retrying");
                                    registered = None;
                                    Duration::from_millis(100)
                                }
                            }
                        }
                    };
                    tokio::select! {
                        _ = &mut stop_rx => break,
                        _ = tokio::time::sleep(wait) => {}
                    }
                }
                if registered.is_some() {
                    let _ = call_host_on::<_, ()>(&pool, &host, host_api::DEREGISTER, &id, Duration::from_secs(3)).await;
                }
            });
            let _ = done_tx.send(());
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the lease keeper thread");
    }
    (stop_tx, done_rx)
}

/// Answers wire calls by dispatching them to the service.
struct ServiceHandler {
    service: Arc<dyn DynService>,
    root: Context,
    /// The entrypoints' concurrency limits.
    limits: Bulkheads,
}

impl Handler for ServiceHandler {
    fn call(&self, request: Request, codec: Codec, _peer: &PeerInfo) -> Reply {
        let name = self.service.name();
        let mut headers = request.headers;
        if headers.service != name {
            return Reply::Unary(
                futures::future::ready(Err(Error::not_found(format!(
                    "this instance serves `{name}`, not `{}`; the caller's registry cache is out of date",
                    headers.service
                ))))
                .boxed(),
            );
        }
        let ctx = self.root.for_call(&mut headers);
        // Looked up before the name moves on: no copy of it per call, and
        // nothing at all for a service without limits.
        let limit = self.limits.get(&headers.entrypoint);
        let incoming = Incoming::new(headers.entrypoint, codec, request.payload, ctx);
        match (dispatch(&*self.service, incoming), limit) {
            (Reply::Unary(call), Some(limit)) => Reply::Unary(limit.run(call).boxed()),
            (reply, _) => reply,
        }
    }
}

/// Runs one call on a service and tags errors with where they came from.
pub(crate) fn dispatch(service: &dyn DynService, incoming: Incoming) -> Reply {
    let name = service.name();
    let entrypoint = incoming.entrypoint.clone();
    match service.dispatch(incoming) {
        Dispatch::Unary(fut) => Reply::Unary(
            fut.map(move |r: Result<Bytes, Error>| r.map_err(|e| e.with_origin(name, &entrypoint)))
                .boxed(),
        ),
        Dispatch::Stream(s) => Reply::Stream(s),
        Dispatch::NotFound(call) => {
            let known: Vec<String> = service
                .spec()
                .entrypoints
                .iter()
                .map(|e| format!("`{}`", e.name))
                .collect();
            let err = Error::not_found(format!(
                "service `{name}` has no entrypoint `{}`; it has {}",
                call.entrypoint,
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            ));
            Reply::Unary(futures::future::ready(Err(err)).boxed())
        }
    }
}
