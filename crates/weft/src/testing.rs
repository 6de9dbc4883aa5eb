//! Testing one service without its dependencies, in process, with no network.
//!
//! A [`Mesh`] holds real services and mocks. Calls between them go through
//! the same argument encoding, dispatch and error paths as on the network,
//! so a test sees what production sees: `InvalidArgument` for a bad
//! argument, `NotFound` for an unknown entrypoint, application errors with
//! their kind.
//!
//! ```
//! use weft::prelude::*;
//! use weft::testing::Mesh;
//!
//! #[derive(Default)]
//! struct Dice;
//!
//! #[weft::service(name = "dice")]
//! impl Dice {
//!     /// Roll two dice through the die roller.
//!     #[entrypoint]
//!     async fn two(&self, ctx: &Context) -> weft::Result<u8> {
//!         let a: u8 = ctx.call("die_roller", "roll_die", ()).await?;
//!         let b: u8 = ctx.call("die_roller", "roll_die", ()).await?;
//!         if a + b == 12 {
//!             ctx.notify(Severity::Info, "double six").await?;
//!         }
//!         Ok(a + b)
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let mesh = Mesh::new();
//! mesh.add(Dice);
//! mesh.mock("die_roller").on("roll_die", |_| 6);
//! let sum: u8 = mesh.call("dice", "two", ()).await.unwrap();
//! assert_eq!(sum, 12);
//! assert_eq!(mesh.notifications()[0].message, "double six");
//! # }
//! ```

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use futures::FutureExt;
use futures::future::BoxFuture;
use parking_lot::{Mutex, RwLock};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::Notify;
use weft_core::Notification;
use weft_core::codec::{self, Codec};
use weft_core::name::VersionSelector;
use weft_wire::Headers;

use crate::Error;
use crate::context::{
    AsContext, CallBuilder, Channel, Context, EventInfo, Identity, Mesh as MeshTrait,
};
use crate::service::{DynService, Incoming, Service};
use weft_host_api::wire::PublishArgs;

type MockFn = Arc<dyn Fn(serde_json::Value) -> Result<serde_json::Value, Error> + Send + Sync>;

#[derive(Default)]
struct Inner {
    services: RwLock<HashMap<String, Arc<dyn DynService>>>,
    mocks: RwLock<HashMap<(String, String), MockFn>>,
    calls: Mutex<Vec<RecordedCall>>,
    notifications: Mutex<Vec<Notification>>,
    notified: Notify,
    published: Mutex<Vec<PublishedEvent>>,
    /// The last id of each topic's events the test delivered.
    delivered: Mutex<HashMap<String, u64>>,
}

/// An event a service (or the test, through [`Mesh::context`]) published
/// in the mesh; see [`Mesh::published`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct PublishedEvent {
    /// The id the mesh answered: the event's position in its topic, from 1.
    pub id: u64,
    /// The topic.
    pub topic: String,
    /// The event, as JSON.
    pub payload: serde_json::Value,
    /// The publishing service, or `None` outside any service.
    pub publisher: Option<String>,
    /// The idempotency key it was published with.
    pub idempotency_key: Option<String>,
}

/// A call that reached a mock.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedCall {
    /// The service called.
    pub service: String,
    /// The entrypoint called.
    pub entrypoint: String,
    /// The arguments, as JSON.
    pub args: serde_json::Value,
}

/// An in-process mesh of services and mocks.
#[derive(Clone, Default)]
pub struct Mesh {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Mesh {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mesh")
            .field(
                "services",
                &self.inner.services.read().keys().collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl Mesh {
    /// An empty mesh.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a real service; calls to its name run it in process.
    pub fn add<S: Service>(&self, service: S) -> &Self {
        self.inner
            .services
            .write()
            .insert(S::NAME.to_owned(), Arc::new(Arc::new(service)));
        self
    }

    /// Mocks the service `service`: its entrypoints answer what [`Mock::on`] says.
    pub fn mock(&self, service: &str) -> Mock<'_> {
        Mock {
            mesh: self,
            service: service.to_owned(),
        }
    }

    /// A context for calling into the mesh, as a client outside any service.
    pub fn context(&self) -> Context {
        Context::root(Arc::new(self.clone()), None)
    }

    /// Calls an entrypoint in the mesh.
    pub async fn call<A: Serialize, R: DeserializeOwned>(
        &self,
        service: &str,
        entrypoint: &str,
        args: A,
    ) -> Result<R, Error> {
        self.context().call(service, entrypoint, args).await
    }

    /// Starts a call with options; see [`Context::request`].
    pub fn request<'a>(
        &'a self,
        ctx: &'a Context,
        service: &'a str,
        entrypoint: &'a str,
    ) -> CallBuilder<'a> {
        ctx.request(service, entrypoint)
    }

    /// Every notification sent so far, in order.
    pub fn notifications(&self) -> Vec<Notification> {
        self.inner.notifications.lock().clone()
    }

    /// Waits until at least `n` notifications were sent and returns them.
    pub async fn wait_notifications(&self, n: usize) -> Vec<Notification> {
        loop {
            let notified = self.inner.notified.notified();
            {
                let all = self.inner.notifications.lock();
                if all.len() >= n {
                    return all.clone();
                }
            }
            notified.await;
        }
    }

    /// Delivers an event to every handler of `topic` in the mesh's
    /// services, one after the other, as the host would deliver it to one
    /// of their instances, and returns how many handlers ran. Fails with
    /// the first handler's error (a returned `Err`, a panic, or an event
    /// that does not decode as the handler's type) once all have run.
    ///
    /// Only the test's own events go to handlers: what services publish is
    /// recorded (see [`Mesh::published`]), not delivered, so a test sees
    /// each step on its own.
    ///
    /// ```
    /// use weft::prelude::*;
    /// use weft::testing::Mesh;
    ///
    /// #[derive(serde::Deserialize, schemars::JsonSchema)]
    /// struct OrderCreated { order: u64 }
    ///
    /// #[derive(Default)]
    /// struct Mailer;
    ///
    /// #[weft::service(name = "mailer")]
    /// impl Mailer {
    ///     /// Sends a confirmation for each new order.
    ///     #[event_handler(topic = "orders.created")]
    ///     async fn on_order(&self, ctx: &Context, event: OrderCreated) -> weft::Result<()> {
    ///         ctx.publish("mails.sent", &serde_json::json!({ "order": event.order })).await?;
    ///         Ok(())
    ///     }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let mesh = Mesh::new();
    /// mesh.add(Mailer);
    /// let handled = mesh.publish("orders.created", &serde_json::json!({ "order": 7 })).await.unwrap();
    /// assert_eq!(handled, 1);
    /// assert_eq!(mesh.published_on("mails.sent"), vec![serde_json::json!({ "order": 7 })]);
    /// # }
    /// ```
    pub async fn publish<T: Serialize + ?Sized>(
        &self,
        topic: &str,
        payload: &T,
    ) -> Result<usize, Error> {
        let payload = serde_json::to_value(payload).map_err(|e| {
            Error::invalid_argument(
                "payload",
                format!("the event for `{topic}` cannot be encoded as JSON: {e}"),
            )
        })?;
        let mut services: Vec<Arc<dyn DynService>> =
            self.inner.services.read().values().cloned().collect();
        services.sort_by_key(|s| s.name());
        let id = {
            let mut last = self.inner.delivered.lock();
            let id = last.entry(topic.to_owned()).or_default();
            *id += 1;
            *id
        };
        let event = EventInfo {
            topic: topic.to_owned(),
            id,
            attempt: 1,
            published_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
        };
        let mut handled = 0;
        let mut first_error = None;
        for service in services {
            let handlers: Vec<String> = service
                .spec()
                .event_handlers
                .into_iter()
                .filter(|h| h.topic == topic)
                .map(|h| h.name)
                .collect();
            for handler in handlers {
                let ctx = self.service_context(&*service).for_event(event.clone());
                let outcome =
                    crate::service::handle_event(&*service, &handler, ctx, payload.clone()).await;
                handled += 1;
                if let Err(e) = outcome {
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(handled),
        }
    }

    /// Every event published in the mesh so far, in order.
    pub fn published(&self) -> Vec<PublishedEvent> {
        self.inner.published.lock().clone()
    }

    /// The payloads of the events published on `topic` so far, in order.
    pub fn published_on(&self, topic: &str) -> Vec<serde_json::Value> {
        self.inner
            .published
            .lock()
            .iter()
            .filter(|e| e.topic == topic)
            .map(|e| e.payload.clone())
            .collect()
    }

    /// The context a service's handler runs in, as instance `test`.
    fn service_context(&self, service: &dyn DynService) -> Context {
        Context::root(
            Arc::new(self.clone()),
            Some(Arc::new(Identity {
                service: service.name().to_owned(),
                version: service.version().to_owned(),
                instance: "test".to_owned(),
            })),
        )
    }

    /// Every call that reached a mock, in order.
    pub fn calls(&self) -> Vec<RecordedCall> {
        self.inner.calls.lock().clone()
    }
}

impl AsContext for Mesh {
    fn context(&self) -> Context {
        Mesh::context(self)
    }
}

/// Sets up the answers of a mocked service; see [`Mesh::mock`].
#[derive(Debug)]
pub struct Mock<'a> {
    mesh: &'a Mesh,
    service: String,
}

impl Mock<'_> {
    /// Answers `entrypoint` with what `f` returns for the arguments (as JSON).
    pub fn on<F, R>(self, entrypoint: &str, f: F) -> Self
    where
        F: Fn(serde_json::Value) -> R + Send + Sync + 'static,
        R: Serialize,
    {
        self.on_result(entrypoint, move |args| Ok(f(args)))
    }

    /// Answers `entrypoint` with a value or an error.
    pub fn on_result<F, R>(self, entrypoint: &str, f: F) -> Self
    where
        F: Fn(serde_json::Value) -> Result<R, Error> + Send + Sync + 'static,
        R: Serialize,
    {
        let name = format!("{}.{entrypoint}", self.service);
        let mock: MockFn = Arc::new(move |args| {
            let out = f(args)?;
            serde_json::to_value(out).map_err(|e| {
                Error::internal(format!(
                    "the mock of {name} returned a value that cannot be encoded: {e}"
                ))
            })
        });
        self.mesh
            .inner
            .mocks
            .write()
            .insert((self.service.clone(), entrypoint.to_owned()), mock);
        self
    }
}

struct MeshChannel {
    mesh: Mesh,
}

impl Channel for MeshChannel {
    fn codec(&self) -> Codec {
        Codec::Json
    }

    fn send(
        &self,
        mut headers: Headers,
        payload: Bytes,
    ) -> BoxFuture<'static, Result<Bytes, Error>> {
        let inner = self.mesh.inner.clone();
        let mock = inner
            .mocks
            .read()
            .get(&(headers.service.clone(), headers.entrypoint.clone()))
            .cloned();
        if let Some(mock) = mock {
            return async move {
                let args: serde_json::Value = codec::decode(Codec::Json, &payload)?;
                inner.calls.lock().push(RecordedCall {
                    service: headers.service.clone(),
                    entrypoint: headers.entrypoint.clone(),
                    args: args.clone(),
                });
                let out =
                    mock(args).map_err(|e| e.with_origin(&headers.service, &headers.entrypoint))?;
                codec::encode(Codec::Json, &out)
            }
            .boxed();
        }
        let service = inner.services.read().get(&headers.service).cloned();
        let Some(service) = service else {
            return futures::future::ready(Err(not_registered(&headers.service))).boxed();
        };
        let ctx = self.mesh.service_context(&*service).for_call(&mut headers);
        let incoming = Incoming::new(headers.entrypoint, Codec::Json, payload, ctx);
        match crate::serve::dispatch(&*service, incoming) {
            weft_transport::Reply::Unary(fut) => fut,
            weft_transport::Reply::Stream(_) => {
                futures::future::ready(Err(Error::invalid_argument(
                    "entrypoint",
                    "this entrypoint streams its replies; call it as a stream",
                )))
                .boxed()
            }
        }
    }
}

fn not_registered(service: &str) -> Error {
    Error::not_found(format!(
        "no service `{service}` in the test mesh; add it with `mesh.add(..)` or mock it with `mesh.mock(\"{service}\")`"
    ))
}

impl MeshTrait for Mesh {
    fn route<'a>(
        &'a self,
        service: &'a str,
        _version: &'a VersionSelector,
    ) -> BoxFuture<'a, Result<Arc<dyn Channel>, Error>> {
        let known = self.inner.services.read().contains_key(service)
            || self.inner.mocks.read().keys().any(|(s, _)| s == service);
        let out: Result<Arc<dyn Channel>, Error> = if known {
            Ok(Arc::new(MeshChannel { mesh: self.clone() }))
        } else {
            Err(not_registered(service))
        };
        futures::future::ready(out).boxed()
    }

    fn notify(&self, notification: Notification) -> BoxFuture<'static, Result<(), Error>> {
        let mut all = self.inner.notifications.lock();
        let mut n = notification;
        n.id = all.len() as u64 + 1;
        all.push(n);
        drop(all);
        self.inner.notified.notify_waiters();
        futures::future::ready(Ok(())).boxed()
    }

    fn publish(&self, event: PublishArgs) -> BoxFuture<'static, Result<u64, Error>> {
        let mut all = self.inner.published.lock();
        // Like the host: a publish with a key seen before is answered with
        // the first one's id and not stored again.
        if let Some(key) = &event.idempotency_key
            && let Some(first) = all
                .iter()
                .find(|e| e.topic == event.topic && e.idempotency_key.as_ref() == Some(key))
        {
            return futures::future::ready(Ok(first.id)).boxed();
        }
        let id = all.iter().filter(|e| e.topic == event.topic).count() as u64 + 1;
        all.push(PublishedEvent {
            id,
            topic: event.topic,
            payload: event.payload,
            publisher: event.publisher,
            idempotency_key: event.idempotency_key,
        });
        futures::future::ready(Ok(id)).boxed()
    }
}
