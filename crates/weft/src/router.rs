//! The network mesh: resolves a service in the registry cache, balances over
//! its instances and sends the call on the pooled connection to the chosen one.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use tokio::sync::watch;
use weft_core::backoff::Backoff;
use weft_core::codec::{self, Codec};
use weft_core::name::VersionSelector;
use weft_core::retry::RetryBudget;
use weft_core::{Code, Notification};
use weft_registry::{Cache, WatchEvent};
use weft_transport::{Address, ConnectOptions, Connection, Pool};
use weft_wire::Headers;

use crate::Error;
use crate::context::{Channel, Mesh};
use weft_host_api::wire as host_api;

/// Retries a second that the budget allows whatever the calls.
const RETRY_FLOOR: u64 = 10;

/// Retries the budget allows per call.
const RETRY_SHARE: f64 = 0.2;

/// How often stale entries are pruned from the cache, and the retry
/// budget's window moves: once a second, as the budget counts.
const PRUNE_EVERY: Duration = Duration::from_secs(1);

/// How long a publish may wait for the host to store the event: long
/// enough for a group commit on a slow disk.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(30);

pub(crate) struct Router {
    pub(crate) host: Address,
    pub(crate) cache: Arc<Cache>,
    pub(crate) pool: Pool,
    /// Becomes true once the first registry snapshot arrived.
    synced: watch::Receiver<bool>,
    /// How many calls may be sent again: a fifth of the calls of the last
    /// ten seconds, and at least ten a second (as linkerd and Finagle
    /// budget retries), so that retries cannot multiply an overload.
    retries: RetryBudget,
}

impl Router {
    /// Starts watching the host's registry in the background. The router
    /// works at once; calls made before the first snapshot arrives may not
    /// find their service, so callers can wait with [`Router::synced`].
    pub(crate) fn start(host: Address, opts: ConnectOptions) -> Arc<Router> {
        let (tx, rx) = watch::channel(false);
        let router = Arc::new(Router {
            host,
            cache: Arc::new(Cache::new()),
            pool: Pool::new(opts),
            synced: rx,
            retries: RetryBudget::new(RETRY_SHARE, RETRY_FLOOR),
        });
        let weak = Arc::downgrade(&router);
        tokio::spawn(async move {
            // Jitter: every instance loses the watch when the host restarts.
            let mut backoff =
                Backoff::new(Duration::from_millis(50), Duration::from_secs(2)).with_jitter(0.25);
            loop {
                let Some(router) = weak.upgrade() else { return };
                match router.watch_once(&tx).await {
                    Ok(()) => backoff.reset(),
                    Err(e) => tracing::debug!(error = %e, "registry watch interrupted"),
                }
                drop(router);
                tokio::time::sleep(backoff.next_delay()).await;
            }
        });
        let weak = Arc::downgrade(&router);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(PRUNE_EVERY);
            loop {
                tick.tick().await;
                let Some(router) = weak.upgrade() else { return };
                router.cache.prune(std::time::Instant::now());
                router.retries.tick();
            }
        });
        router
    }

    /// Follows the watch stream until it ends; the cache keeps its content
    /// when the host goes away, so calls between instances go on.
    async fn watch_once(&self, synced: &watch::Sender<bool>) -> Result<(), Error> {
        let conn = self.pool.get(&self.host).await?;
        let mut stream = conn.call_stream(
            host_headers(host_api::WATCH, None),
            codec::encode(conn.codec(), &())?,
        );
        while let Some(item) = stream.next().await {
            let event: WatchEvent = codec::decode(conn.codec(), &item?)?;
            self.cache.apply(event, std::time::Instant::now());
            synced.send_replace(true);
        }
        Ok(())
    }

    /// Waits until the first snapshot arrived, at most `limit`.
    pub(crate) async fn synced(&self, limit: Duration) -> bool {
        let mut rx = self.synced.clone();
        tokio::time::timeout(limit, rx.wait_for(|s| *s))
            .await
            .is_ok()
    }

    /// Calls one of the host's own entrypoints.
    pub(crate) async fn call_host<A, R>(
        &self,
        entrypoint: &str,
        args: &A,
        timeout: Duration,
    ) -> Result<R, Error>
    where
        A: serde::Serialize,
        R: serde::de::DeserializeOwned,
    {
        call_host_on(&self.pool, &self.host, entrypoint, args, timeout).await
    }
}

/// Headers of a call to the host's own service.
pub(crate) fn host_headers(entrypoint: &str, timeout: Option<Duration>) -> Headers {
    Headers {
        service: host_api::SERVICE.to_owned(),
        entrypoint: entrypoint.to_owned(),
        timeout,
        ..Headers::default()
    }
}

/// Calls the host at `host` over `pool`.
pub(crate) async fn call_host_on<A, R>(
    pool: &Pool,
    host: &Address,
    entrypoint: &str,
    args: &A,
    timeout: Duration,
) -> Result<R, Error>
where
    A: serde::Serialize,
    R: serde::de::DeserializeOwned,
{
    let work = async {
        let conn = pool.get(host).await?;
        let payload = weft_core::args::encode(conn.codec(), args)?;
        let reply = conn
            .call(host_headers(entrypoint, Some(timeout)), payload)
            .await?;
        codec::decode(conn.codec(), &reply)
    };
    tokio::time::timeout(timeout, work).await.unwrap_or_else(|_| {
        Err(Error::unavailable(format!(
            "the weft host at {host} did not answer within {timeout:?}; is `weft host` running there?"
        )))
    })
}

struct ConnChannel(Connection);

impl Channel for ConnChannel {
    fn codec(&self) -> Codec {
        self.0.codec()
    }

    fn send(&self, headers: Headers, payload: Bytes) -> BoxFuture<'static, Result<Bytes, Error>> {
        self.0.call(headers, payload).boxed()
    }

    fn send_until(
        &self,
        headers: Headers,
        payload: Bytes,
        deadline: tokio::time::Instant,
    ) -> BoxFuture<'static, Result<Bytes, Error>> {
        self.0
            .call_with_deadline(headers, payload, deadline)
            .boxed()
    }
}

impl Mesh for Router {
    fn route<'a>(
        &'a self,
        service: &'a str,
        version: &'a VersionSelector,
    ) -> BoxFuture<'a, Result<Arc<dyn Channel>, Error>> {
        async move {
            // Each failed dial drops that instance from the local cache, so
            // the loop ends: either a connection or no candidates left.
            let mut last_err = None;
            for _ in 0..8 {
                let resolved = match self.cache.resolve(service, version) {
                    Ok(r) => r,
                    Err(e) => return Err(last_err.unwrap_or(e)),
                };
                let chosen = resolved.pick_candidate(|c| {
                    c.address
                        .as_ref()
                        .map_or(usize::MAX, |a| self.pool.outstanding(a))
                });
                let parsed: Address;
                let address = match &chosen.address {
                    Some(a) => a,
                    None => {
                        // Fails, saying why the registered address does not parse.
                        parsed = chosen.info.address.parse()?;
                        &parsed
                    }
                };
                match self.pool.get(address).await {
                    Ok(conn) => return Ok(Arc::new(ConnChannel(conn)) as Arc<dyn Channel>),
                    Err(e) if e.code() == Code::Unavailable => {
                        tracing::debug!(instance = %chosen.info.id, error = %e, "instance unreachable; dropping it from the cache");
                        self.cache.remove_instance(&chosen.info.id);
                        last_err = Some(Error::instance_unreachable(service, &chosen.info.id, &e));
                    }
                    Err(e) => return Err(e),
                }
            }
            Err(last_err.unwrap_or_else(|| {
                Error::unavailable(format!("no instance of `{service}` could be reached"))
            }))
        }
        .boxed()
    }

    fn idempotent(&self, service: &str, version: &VersionSelector, entrypoint: &str) -> bool {
        self.cache.idempotent(service, version, entrypoint)
    }

    fn deposit(&self) {
        self.retries.deposit();
    }

    fn withdraw(&self) -> bool {
        self.retries.withdraw()
    }

    fn notify(&self, notification: Notification) -> BoxFuture<'static, Result<(), Error>> {
        let pool = self.pool.clone();
        let host = self.host.clone();
        async move {
            let _: Notification = call_host_on(
                &pool,
                &host,
                host_api::NOTIFY,
                &host_api::NotifyArgs { notification },
                Duration::from_secs(10),
            )
            .await?;
            Ok(())
        }
        .boxed()
    }

    fn publish(&self, event: host_api::PublishArgs) -> BoxFuture<'static, Result<u64, Error>> {
        let pool = self.pool.clone();
        let host = self.host.clone();
        async move {
            let topic = event.topic.clone();
            let published: host_api::Published =
                call_host_on(&pool, &host, host_api::PUBLISH, &event, PUBLISH_TIMEOUT)
                    .await
                    .map_err(|e| {
                        if e.code() == Code::NotFound {
                            Error::not_found(format!(
                                "the weft host at {host} cannot store events on `{topic}`: {}; is it a host with the event log (upgrade `weft`)?",
                                e.message()
                            ))
                        } else {
                            e
                        }
                    })?;
            Ok(published.id)
        }
        .boxed()
    }
}
