//! Calling services from programs that are not services themselves.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use weft_core::codec::CodecSet;
use weft_core::{Notification, Severity};
use weft_registry::ServiceSummary;
use weft_transport::{Address, ConnectOptions};

use crate::Error;
use crate::context::{AsContext, CallBuilder, Context, PublishBuilder};
use crate::router::Router;
use crate::serve::DEFAULT_HOST;
use weft_host_api::wire as host_api;

/// How a [`Client`] connects.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClientOptions {
    /// The payload codecs to offer; instances pick one per connection.
    /// Offering only JSON lets a JSON gateway pass payloads through untouched.
    pub codecs: CodecSet,
    /// The credential presented to the host and to instances when the mesh
    /// requires one (`weft host --auth required`).
    pub token: Option<String>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            codecs: CodecSet::ALL,
            token: std::env::var("WEFT_TOKEN").ok().filter(|t| !t.is_empty()),
        }
    }
}

impl ClientOptions {
    /// Offers only these codecs.
    pub fn codecs(mut self, codecs: CodecSet) -> Self {
        self.codecs = codecs;
        self
    }

    /// Presents this credential (default: the `WEFT_TOKEN` environment variable).
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }
}

/// A connection to a weft mesh for programs that are not services: scripts,
/// CLIs, web backends, tests.
///
/// ```no_run
/// # async fn f() -> weft::Result<()> {
/// let client = weft::Client::connect("127.0.0.1:7400").await?;
/// let rolls: Vec<u8> = client.call("yatzee", "play", ()).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    router: Arc<Router>,
    ctx: Context,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("host", &self.router.host)
            .finish()
    }
}

impl Client {
    /// Connects to the host at `host` (`127.0.0.1:7400`, `unix:///path`) and
    /// waits for its registry.
    pub async fn connect(host: &str) -> Result<Client, Error> {
        Client::connect_with(host, ClientOptions::default()).await
    }

    /// Connects with options; see [`ClientOptions`].
    pub async fn connect_with(host: &str, options: ClientOptions) -> Result<Client, Error> {
        let address: Address = host.parse()?;
        let router = Router::start(
            address.clone(),
            ConnectOptions {
                codecs: options.codecs,
                credential: options.token,
                ..ConnectOptions::default()
            },
        );
        // Reaching the host once gives a clear error when it is not there or
        // refuses this client; the transport's error names the address, says
        // which of the two happened and what to do.
        router.pool.get(&address).await?;
        if !router.synced(Duration::from_secs(10)).await {
            return Err(Error::unavailable(format!(
                "the weft host at {address} did not send its registry within 10 s"
            )));
        }
        let ctx = Context::root(router.clone(), None);
        Ok(Client { router, ctx })
    }

    /// Connects to the host named by `WEFT_HOST` (default `127.0.0.1:7400`).
    pub async fn from_env() -> Result<Client, Error> {
        let host = std::env::var("WEFT_HOST").ok().filter(|h| !h.is_empty());
        Client::connect(host.as_deref().unwrap_or(DEFAULT_HOST)).await
    }

    /// Calls `entrypoint` of the main version of `service`; see [`Context::call`].
    pub async fn call<A, R>(&self, service: &str, entrypoint: &str, args: A) -> Result<R, Error>
    where
        A: Serialize,
        R: DeserializeOwned,
    {
        self.ctx.call(service, entrypoint, args).await
    }

    /// Starts a call with options; see [`Context::request`].
    pub fn request<'a>(&'a self, service: &'a str, entrypoint: &'a str) -> CallBuilder<'a> {
        self.ctx.request(service, entrypoint)
    }

    /// Publishes an event and returns its id once the host stored it; see
    /// [`Context::publish`].
    ///
    /// ```no_run
    /// # async fn f(client: &weft::Client) -> weft::Result<()> {
    /// let id = client
    ///     .publish("orders.created", &serde_json::json!({ "order": 7 }))
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn publish<T: Serialize + ?Sized>(
        &self,
        topic: &str,
        payload: &T,
    ) -> Result<u64, Error> {
        self.ctx.publish(topic, payload).await
    }

    /// Starts a publish with options; see [`Context::publish_with`].
    pub fn publish_with<'a>(&'a self, topic: &'a str) -> PublishBuilder<'a> {
        self.ctx.publish_with(topic)
    }

    /// Sends a notification.
    pub async fn notify(
        &self,
        severity: Severity,
        message: impl Into<String>,
    ) -> Result<(), Error> {
        self.ctx.notify(severity, message).await
    }

    /// Notifications stored by the host, oldest first: those with an id
    /// above `after`, at most `limit` of the newest.
    pub async fn notifications(
        &self,
        after: Option<u64>,
        limit: Option<usize>,
    ) -> Result<Vec<Notification>, Error> {
        self.router
            .call_host(
                host_api::NOTIFICATIONS,
                &host_api::NotificationsArgs { after, limit },
                Duration::from_secs(10),
            )
            .await
    }

    /// The services the host knows, with versions and instance counts.
    pub async fn services(&self) -> Result<Vec<ServiceSummary>, Error> {
        self.router
            .call_host(host_api::SERVICES, &(), Duration::from_secs(10))
            .await
    }

    /// The spec of a service as this client's registry cache has it.
    pub fn spec(
        &self,
        service: &str,
        version: &str,
    ) -> Result<weft_core::spec::ServiceSpec, Error> {
        let selector = version.parse()?;
        self.router.cache.resolve(service, &selector)?;
        self.router
            .cache
            .spec(service, &selector)
            .ok_or_else(|| Error::not_found(format!("no spec for `{service}`")))
    }
}

impl AsContext for Client {
    fn context(&self) -> Context {
        self.ctx.clone()
    }
}
