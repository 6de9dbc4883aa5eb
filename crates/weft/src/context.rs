//! The context of a call: its deadline, who is calling, and the way to call
//! other services and notify people.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::future::BoxFuture;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::time::Instant;
use weft_core::codec::{self, Codec};
use weft_core::name::VersionSelector;
use weft_core::retry::{Next, Resend, over_budget};
use weft_core::{Code, Notification, Severity, args};
use weft_wire::{Caller, Headers};

use crate::Error;
use weft_host_api::wire::PublishArgs;

/// How long a call may take when neither the caller nor its own caller says.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Who a running instance is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Service name.
    pub service: String,
    /// Version of the service.
    pub version: String,
    /// Unique id of the instance.
    pub instance: String,
}

/// Where a call goes once resolved: one instance (or one in-process service)
/// with the codec its connection speaks.
pub(crate) trait Channel: Send + Sync {
    fn codec(&self) -> Codec;
    fn send(&self, headers: Headers, payload: Bytes) -> BoxFuture<'static, Result<Bytes, Error>>;

    /// [`send`](Self::send) that fails with `DeadlineExceeded` once
    /// `deadline` passes, dropping (so cancelling) the call. Channels with
    /// a cheaper way than a timer per call override it.
    fn send_until(
        &self,
        headers: Headers,
        payload: Bytes,
        deadline: Instant,
    ) -> BoxFuture<'static, Result<Bytes, Error>> {
        let call = self.send(headers, payload);
        Box::pin(async move {
            tokio::time::timeout_at(deadline, call)
                .await
                .unwrap_or_else(|_| Err(Error::deadline_exceeded("the call's deadline passed")))
        })
    }
}

/// The network (or the in-process test mesh) a context calls through.
pub(crate) trait Mesh: Send + Sync + 'static {
    /// Resolves a service and version to one channel.
    fn route<'a>(
        &'a self,
        service: &'a str,
        version: &'a VersionSelector,
    ) -> BoxFuture<'a, Result<Arc<dyn Channel>, Error>>;

    /// Delivers a notification to the host.
    fn notify(&self, notification: Notification) -> BoxFuture<'static, Result<(), Error>>;

    /// Stores an event in the host's event log; resolves with its id once
    /// it is durable.
    fn publish(&self, event: PublishArgs) -> BoxFuture<'static, Result<u64, Error>>;

    /// Whether `entrypoint` of the version of `service` that `version`
    /// resolves to is idempotent, as its spec in the registry says. Asked
    /// only once a call has failed.
    fn idempotent(&self, _service: &str, _version: &VersionSelector, _entrypoint: &str) -> bool {
        false
    }

    /// Counts a call in the caller's retry budget.
    fn deposit(&self) {}

    /// Takes one retry from the caller's retry budget: false when retries
    /// are over their share of the calls.
    fn withdraw(&self) -> bool {
        false
    }
}

/// The context of a running call, and the handle to call other services.
///
/// Every entrypoint may take `&Context`. Calls made through it inherit its
/// deadline, so a chain of calls never outlives the first caller's patience,
/// and they stop when the call that made them is cancelled.
///
/// ```no_run
/// # async fn f(ctx: &weft::Context) -> weft::Result<()> {
/// let roll: u8 = ctx.call("die_roller", "roll_die", ()).await?;
/// let sum: u32 = ctx
///     .request("calc", "add")
///     .version("^1.2")
///     .timeout(std::time::Duration::from_secs(2))
///     .send(serde_json::json!({ "a": roll, "b": 1 }))
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Context {
    pub(crate) mesh: Arc<dyn Mesh>,
    pub(crate) deadline: Option<Instant>,
    pub(crate) identity: Option<Arc<Identity>>,
    /// `identity` as the caller header of every call made from here, built
    /// once per instance so that a call only counts a reference.
    pub(crate) as_caller: Option<Arc<Caller>>,
    pub(crate) traceparent: Option<Arc<str>>,
    pub(crate) caller: Option<Arc<Caller>>,
    pub(crate) event: Option<Arc<EventInfo>>,
}

/// The event an event handler is handling; see [`Context::event`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EventInfo {
    /// The topic it was published on.
    pub topic: String,
    /// Its id in the topic: ids grow by one per event, in publish order.
    pub id: u64,
    /// 1 for the first delivery; more when it is delivered again after a
    /// failure or a lost instance.
    pub attempt: u32,
    /// When the host stored it, in milliseconds since the Unix epoch.
    pub published_ms: u64,
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context")
            .field("deadline", &self.deadline)
            .field("identity", &self.identity)
            .field("caller", &self.caller)
            .field("event", &self.event)
            .finish_non_exhaustive()
    }
}

impl Context {
    pub(crate) fn root(mesh: Arc<dyn Mesh>, identity: Option<Arc<Identity>>) -> Self {
        let as_caller = identity.as_deref().map(|i| {
            Arc::new(Caller {
                service: i.service.clone(),
                version: i.version.clone(),
                instance: i.instance.clone(),
            })
        });
        Context {
            mesh,
            deadline: None,
            identity,
            as_caller,
            traceparent: None,
            caller: None,
            event: None,
        }
    }

    /// A context for handling one event.
    pub(crate) fn for_event(&self, event: EventInfo) -> Self {
        Context {
            event: Some(Arc::new(event)),
            ..self.clone()
        }
    }

    /// A context for handling one incoming call; takes what it keeps out of
    /// `headers` rather than copying it.
    pub(crate) fn for_call(&self, headers: &mut Headers) -> Self {
        Context {
            mesh: self.mesh.clone(),
            deadline: headers.timeout.map(|t| Instant::now() + t),
            identity: self.identity.clone(),
            as_caller: self.as_caller.clone(),
            traceparent: headers.traceparent.take().map(Arc::from),
            caller: headers.caller.take(),
            event: None,
        }
    }

    /// When this call must be done by, if its caller set a deadline.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// The instance that made this call, when it was another service.
    pub fn caller(&self) -> Option<&Caller> {
        self.caller.as_deref()
    }

    /// The event being handled, inside an event handler: its topic, id and
    /// delivery attempt. Handlers that must not act twice on one event (it
    /// arrives at least once) can key their work on `topic` and `id`.
    ///
    /// ```
    /// use weft::prelude::*;
    ///
    /// # #[derive(Debug, Default)] struct Mailer;
    /// #[weft::service(name = "mailer")]
    /// impl Mailer {
    ///     #[event_handler(topic = "orders.created")]
    ///     async fn on_order(&self, ctx: &Context, order: serde_json::Value) -> Result<()> {
    ///         let event = ctx.event().expect("inside an event handler");
    ///         if event.attempt > 1 {
    ///             tracing::info!(id = event.id, attempt = event.attempt, "delivered again");
    ///         }
    ///         Ok(())
    ///     }
    /// }
    /// ```
    pub fn event(&self) -> Option<&EventInfo> {
        self.event.as_deref()
    }

    /// The instance running this call, when it runs inside a served service.
    pub fn identity(&self) -> Option<&Identity> {
        self.identity.as_deref()
    }

    /// Calls `entrypoint` of the main version of `service` with named
    /// arguments (a struct, a map, `serde_json::json!({..})`, or `()`).
    pub async fn call<A, R>(&self, service: &str, entrypoint: &str, args: A) -> Result<R, Error>
    where
        A: Serialize,
        R: DeserializeOwned,
    {
        self.request(service, entrypoint).send(args).await
    }

    /// Starts a call with options: version, timeout.
    pub fn request<'a>(&'a self, service: &'a str, entrypoint: &'a str) -> CallBuilder<'a> {
        CallBuilder {
            ctx: self,
            service,
            entrypoint,
            version: Ok(VersionSelector::Main),
            timeout: None,
            idempotency_key: None,
            idempotent: None,
            hedge: None,
            fallback: None,
        }
    }

    /// Sends a notification for people; the host stores it and shows it.
    pub async fn notify(
        &self,
        severity: Severity,
        message: impl Into<String>,
    ) -> Result<(), Error> {
        let id = self.identity.as_deref();
        let time_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        self.mesh
            .notify(Notification {
                id: 0,
                time_ms,
                severity,
                message: message.into(),
                service: id
                    .map(|i| i.service.clone())
                    .unwrap_or_else(|| "client".into()),
                version: id.map(|i| i.version.clone()).unwrap_or_default(),
                instance: id.map(|i| i.instance.clone()).unwrap_or_default(),
            })
            .await
    }

    /// Publishes an event on `topic` and returns its id once the host has
    /// stored it durably. Every `#[event_handler(topic = ..)]` of every
    /// service receives it at least once.
    ///
    /// ```no_run
    /// # async fn f(ctx: &weft::Context) -> weft::Result<()> {
    /// #[derive(serde::Serialize)]
    /// struct OrderCreated { order: u64, customer: String }
    ///
    /// let id = ctx
    ///     .publish("orders.created", &OrderCreated { order: 7, customer: "ada".into() })
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn publish<T: Serialize + ?Sized>(
        &self,
        topic: &str,
        payload: &T,
    ) -> Result<u64, Error> {
        self.publish_with(topic).send(payload).await
    }

    /// Starts a publish with options: an idempotency key.
    ///
    /// ```no_run
    /// # async fn f(ctx: &weft::Context) -> weft::Result<()> {
    /// // Publishing twice with the same key stores the event once.
    /// let id = ctx
    ///     .publish_with("orders.created")
    ///     .idempotency_key("order-7")
    ///     .send(&serde_json::json!({ "order": 7 }))
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn publish_with<'a>(&'a self, topic: &'a str) -> PublishBuilder<'a> {
        PublishBuilder {
            ctx: self,
            topic,
            idempotency_key: None,
        }
    }

    /// The budget left for a call made now: the explicit timeout, capped by
    /// this context's own deadline.
    fn budget(&self, explicit: Option<Duration>) -> Result<Duration, Error> {
        let wanted = explicit.unwrap_or(DEFAULT_TIMEOUT);
        match self.deadline {
            None => Ok(wanted),
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    Err(Error::deadline_exceeded(
                        "the deadline of the calling request passed before this call could start",
                    ))
                } else {
                    Ok(wanted.min(left))
                }
            }
        }
    }
}

/// Anything that can make calls: a [`Context`], a [`Client`](crate::Client),
/// a test mesh. Generated typed clients take one.
pub trait AsContext: Send + Sync {
    /// The context calls are made in.
    fn context(&self) -> Context;
}

impl AsContext for Context {
    fn context(&self) -> Context {
        self.clone()
    }
}

/// A call being prepared; see [`Context::request`].
#[derive(Debug)]
#[must_use = "a call does nothing until `.send(args).await`"]
pub struct CallBuilder<'a> {
    ctx: &'a Context,
    service: &'a str,
    entrypoint: &'a str,
    version: Result<VersionSelector, Error>,
    timeout: Option<Duration>,
    idempotency_key: Option<String>,
    idempotent: Option<bool>,
    hedge: Option<Duration>,
    fallback: Option<Result<serde_json::Value, Error>>,
}

impl CallBuilder<'_> {
    /// Calls an exact version (`"1.2.0"`) or the highest matching a
    /// requirement (`"^1.2"`) instead of the main version.
    pub fn version(mut self, version: &str) -> Self {
        self.version = version.parse();
        self
    }

    /// Gives this call at most `timeout` (still capped by the caller's deadline).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Says whether this call may be sent again after the connection to its
    /// instance was lost before it answered, instead of what the
    /// entrypoint's spec says (`#[entrypoint(idempotent)]`): `true` when
    /// running it twice is safe for this caller (an idempotency key the
    /// callee checks, say), `false` to never send it twice.
    ///
    /// ```no_run
    /// # async fn f(ctx: &weft::Context) -> weft::Result<()> {
    /// let order: u64 = ctx
    ///     .request("orders", "place")
    ///     .idempotency_key("order-7f3a")
    ///     .idempotent(true)
    ///     .send(serde_json::json!({ "item": "dice" }))
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn idempotent(mut self, idempotent: bool) -> Self {
        self.idempotent = Some(idempotent);
        self
    }

    /// Sends the call to a second instance too when the first has not
    /// answered within `after`, and takes whichever answers first; the
    /// other is cancelled. Only for idempotent calls (the spec's
    /// `#[entrypoint(idempotent)]` or [`idempotent(true)`](Self::idempotent)):
    /// for others it is ignored, since the call could run twice.
    ///
    /// ```no_run
    /// # async fn f(ctx: &weft::Context) -> weft::Result<()> {
    /// let price: u64 = ctx
    ///     .request("prices", "quote")
    ///     .hedge(std::time::Duration::from_millis(20))
    ///     .send(serde_json::json!({ "item": "dice" }))
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn hedge(mut self, after: Duration) -> Self {
        self.hedge = Some(after);
        self
    }

    /// Answers `value` instead of an error when the call fails (after its
    /// resends), for any error but `invalid_argument`, which is the
    /// caller's own mistake and is returned. `value` must decode as the
    /// type the call answers.
    ///
    /// ```no_run
    /// # async fn f(ctx: &weft::Context) -> weft::Result<()> {
    /// let tips: Vec<String> = ctx
    ///     .request("tips", "for_today")
    ///     .fallback(Vec::<String>::new())
    ///     .send(())
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn fallback<T: Serialize>(mut self, value: T) -> Self {
        self.fallback = Some(serde_json::to_value(value).map_err(|e| {
            Error::invalid_argument(
                "fallback",
                format!("the fallback value cannot be encoded: {e}"),
            )
        }));
        self
    }

    /// Marks the call with an idempotency key the callee may use to drop duplicates.
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }

    /// Sends the call with named arguments and waits for the decoded reply.
    /// Dropping the future cancels the call on the remote side.
    pub async fn send<A: Serialize, R: DeserializeOwned>(self, args: A) -> Result<R, Error> {
        let bytes = match (self.send_encoded(Typed(args)).await, &self.fallback) {
            (Ok(bytes), _) => bytes,
            (Err(e), Some(fallback)) if e.code() != Code::InvalidArgument => {
                tracing::debug!(service = self.service, entrypoint = self.entrypoint, error = %e, "answering the fallback");
                let value = fallback.clone()?;
                return serde_json::from_value(value).map_err(|d| {
                    Error::invalid_argument(
                        "fallback",
                        format!(
                            "the fallback of {}.{} is not of the type the call answers: {d}",
                            self.service, self.entrypoint
                        ),
                    )
                });
            }
            (Err(e), _) => return Err(e),
        };
        codec::decode(bytes.0, &bytes.1).map_err(|e| {
            Error::internal(format!(
                "the reply of {}.{} does not have the expected type: {}",
                self.service,
                self.entrypoint,
                e.message()
            ))
        })
    }

    /// Sends arguments already encoded with `codec` (an object of named
    /// parameters) and returns the reply encoded with `codec`, converting
    /// on the way only when the connection speaks another codec.
    pub async fn send_raw(self, codec: Codec, args: Bytes) -> Result<Bytes, Error> {
        let (got, reply) = self.send_encoded(Encoded(codec, args)).await?;
        codec::transcode(got, codec, reply)
    }

    /// Sends the call and returns the reply undecoded, with its codec.
    ///
    /// The deadline costs no timer of its own in the common case: routing
    /// to a connected instance completes at once, and the connection
    /// enforces the deadline of the call itself with one timer for all its
    /// calls.
    async fn send_encoded<A: EncodeArgs>(&self, args: A) -> Result<(Codec, Bytes), Error> {
        let version = self.version.clone()?;
        let budget = self.ctx.budget(self.timeout)?;
        let deadline = Instant::now() + budget;
        let (service, entrypoint) = (self.service, self.entrypoint);
        let late = || {
            Error::deadline_exceeded(format!(
                "{service}.{entrypoint} did not answer within {budget:?}; raise the timeout or look at why it is slow (`weft logs {service}`)"
            ))
        };
        // A callee that was shutting down did not run the call: send it
        // again (each route picks afresh) so that a rolling restart fails no
        // call. One whose connection was lost, or that found no instance to
        // reach, goes to another instance only if it is idempotent, within
        // the caller's retry budget. All within the deadline.
        let mut resend = Resend::new();
        self.ctx.mesh.deposit();
        loop {
            let sent = match self.hedge {
                Some(after) if self.is_idempotent(&version) => {
                    self.send_hedged(&version, deadline, &args, after).await
                }
                _ => self.send_once(&version, deadline, &args).await,
            };
            let e = match sent {
                Err(e) => e,
                ok => return ok,
            };
            match resend.next(
                &e,
                || self.is_idempotent(&version),
                || self.ctx.mesh.withdraw(),
            ) {
                Next::After(pause) => {
                    tracing::debug!(service, entrypoint, error = %e, "sending again");
                    let wake = Instant::now() + pause;
                    if wake >= deadline {
                        if e.is_not_run() {
                            tokio::time::sleep_until(deadline).await;
                            return Err(late());
                        }
                        return Err(e);
                    }
                    tokio::time::sleep_until(wake).await;
                }
                Next::OverBudget => return Err(over_budget(&e, "this caller's")),
                Next::Fail if e.code() == Code::DeadlineExceeded && Instant::now() >= deadline => {
                    return Err(late());
                }
                Next::Fail => return Err(e),
            }
        }
    }

    /// Whether the call may be sent twice: the caller's word, else the
    /// entrypoint's spec in the registry.
    fn is_idempotent(&self, version: &VersionSelector) -> bool {
        self.idempotent.unwrap_or_else(|| {
            self.ctx
                .mesh
                .idempotent(self.service, version, self.entrypoint)
        })
    }

    /// One attempt, and a second one beside it (routed afresh, so to the
    /// less busy instance) if the first has not answered within `after`:
    /// the first answer wins, and dropping the other cancels it; an error
    /// counts only once both have failed.
    async fn send_hedged<A: EncodeArgs>(
        &self,
        version: &VersionSelector,
        deadline: Instant,
        args: &A,
        after: Duration,
    ) -> Result<(Codec, Bytes), Error> {
        let first = self.send_once(version, deadline, args);
        tokio::pin!(first);
        if let Ok(answered) = tokio::time::timeout(after, &mut first).await {
            // Answered (or failed) in time: no hedge.
            return answered;
        }
        tracing::debug!(
            service = self.service,
            entrypoint = self.entrypoint,
            ?after,
            "hedging"
        );
        let second = self.send_once(version, deadline, args);
        tokio::pin!(second);
        tokio::select! {
            r = &mut first => match r {
                Ok(answer) => Ok(answer),
                Err(_) => second.await,
            },
            r = &mut second => match r {
                Ok(answer) => Ok(answer),
                Err(_) => first.await,
            },
        }
    }

    /// One attempt: resolve, encode, send; all before `deadline`.
    async fn send_once<A: EncodeArgs>(
        &self,
        version: &VersionSelector,
        deadline: Instant,
        args: &A,
    ) -> Result<(Codec, Bytes), Error> {
        let ctx = self.ctx;
        let (service, entrypoint) = (self.service, self.entrypoint);
        let channel = {
            let mut route = ctx.mesh.route(service, version);
            // Routing to a connected instance is ready at once; only a dial
            // needs a timer.
            match futures::poll!(route.as_mut()) {
                std::task::Poll::Ready(r) => r?,
                std::task::Poll::Pending => tokio::time::timeout_at(deadline, route)
                    .await
                    .unwrap_or_else(|_| {
                        Err(Error::deadline_exceeded(
                            "the deadline passed while connecting",
                        ))
                    })?,
            }
        };
        let codec = channel.codec();
        let payload = args.encode_args(codec)?;
        let headers = Headers {
            service: service.to_owned(),
            entrypoint: entrypoint.to_owned(),
            // The route above already chose the version; the callee serves
            // one version and has nothing to check it against.
            version: None,
            // What is left now, not the budget at the first attempt: a
            // resend (or a slow dial) has used some of it, and the callee
            // must not work past the caller's deadline.
            timeout: Some(deadline.saturating_duration_since(Instant::now())),
            traceparent: ctx.traceparent.as_deref().map(str::to_owned),
            caller: ctx.as_caller.clone(),
            idempotency_key: self.idempotency_key.clone(),
            auth: None,
        };
        channel
            .send_until(headers, payload, deadline)
            .await
            .map(|b| (codec, b))
    }
}

/// A publish being prepared; see [`Context::publish_with`].
#[derive(Debug)]
#[must_use = "nothing is published until `.send(&payload).await`"]
pub struct PublishBuilder<'a> {
    ctx: &'a Context,
    topic: &'a str,
    idempotency_key: Option<String>,
}

impl PublishBuilder<'_> {
    /// Marks the event with a key: a publish with the same key as one the
    /// host stored within its deduplication window is dropped, and answered
    /// with the first one's id. Use it to retry a publish safely.
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }

    /// Publishes `payload` (any serde value; handlers decode it into their
    /// event type) and returns the event's id once it is stored durably.
    pub async fn send<T: Serialize + ?Sized>(self, payload: &T) -> Result<u64, Error> {
        let topic = self.topic;
        weft_core::name::validate_topic(topic)?;
        let payload = serde_json::to_value(payload).map_err(|e| {
            Error::invalid_argument(
                "payload",
                format!("the event for `{topic}` cannot be encoded as JSON: {e}"),
            )
        })?;
        self.ctx
            .mesh
            .publish(PublishArgs {
                topic: topic.to_owned(),
                payload,
                idempotency_key: self.idempotency_key,
                publisher: self.ctx.identity.as_deref().map(|i| i.service.clone()),
            })
            .await
    }
}

/// Arguments on their way out: typed values, or bytes already encoded.
trait EncodeArgs {
    fn encode_args(&self, codec: Codec) -> Result<Bytes, Error>;
}

struct Typed<A>(A);

impl<A: Serialize> EncodeArgs for Typed<A> {
    fn encode_args(&self, codec: Codec) -> Result<Bytes, Error> {
        args::encode(codec, &self.0)
    }
}

struct Encoded(Codec, Bytes);

impl EncodeArgs for Encoded {
    fn encode_args(&self, codec: Codec) -> Result<Bytes, Error> {
        codec::transcode(self.0, codec, self.1.clone())
    }
}

#[cfg(test)]
mod tests {
    use parking_lot::Mutex;
    use weft_core::retry::RetryBudget;

    use super::*;

    /// A mesh with one channel that records the headers of every request and
    /// answers the first `not_run` of them with "did not run", the next
    /// `lost` with a lost connection.
    struct Recorder {
        sent: Mutex<Vec<Headers>>,
        not_run: u32,
        lost: u32,
    }

    impl Channel for Recorder {
        fn codec(&self) -> Codec {
            Codec::Json
        }

        fn send(&self, headers: Headers, _: Bytes) -> BoxFuture<'static, Result<Bytes, Error>> {
            let mut sent = self.sent.lock();
            sent.push(headers);
            let n = sent.len() as u32;
            let reply = if n <= self.not_run {
                Err(Error::not_run("the instance is shutting down"))
            } else if n <= self.not_run + self.lost {
                Err(Error::unavailable(
                    "the connection was lost; the call may or may not have run",
                ))
            } else {
                Ok(Bytes::from_static(b"4"))
            };
            Box::pin(futures::future::ready(reply))
        }
    }

    struct OneChannel {
        recorder: Arc<Recorder>,
        /// What the registry says of every entrypoint.
        idempotent: bool,
        /// The retry budget; `None` allows every retry.
        budget: Option<RetryBudget>,
    }

    impl Mesh for OneChannel {
        fn route<'a>(
            &'a self,
            _: &'a str,
            _: &'a VersionSelector,
        ) -> BoxFuture<'a, Result<Arc<dyn Channel>, Error>> {
            let channel: Arc<dyn Channel> = self.recorder.clone();
            Box::pin(futures::future::ready(Ok(channel)))
        }

        fn idempotent(&self, _: &str, _: &VersionSelector, _: &str) -> bool {
            self.idempotent
        }

        fn deposit(&self) {
            if let Some(b) = &self.budget {
                b.deposit();
            }
        }

        fn withdraw(&self) -> bool {
            self.budget.as_ref().is_none_or(|b| b.withdraw())
        }

        fn notify(&self, _: Notification) -> BoxFuture<'static, Result<(), Error>> {
            unreachable!("these tests only call")
        }

        fn publish(&self, _: PublishArgs) -> BoxFuture<'static, Result<u64, Error>> {
            unreachable!("these tests only call")
        }
    }

    fn context(not_run: u32) -> (Context, Arc<Recorder>) {
        context_with(not_run, 0, false, None)
    }

    fn context_with(
        not_run: u32,
        lost: u32,
        idempotent: bool,
        budget: Option<RetryBudget>,
    ) -> (Context, Arc<Recorder>) {
        let recorder = Arc::new(Recorder {
            sent: Mutex::new(Vec::new()),
            not_run,
            lost,
        });
        let identity = Arc::new(Identity {
            service: "shop".into(),
            version: "1.0.0".into(),
            instance: "shop-1".into(),
        });
        let mesh = OneChannel {
            recorder: recorder.clone(),
            idempotent,
            budget,
        };
        let ctx = Context::root(Arc::new(mesh), Some(identity));
        (ctx, recorder)
    }

    #[tokio::test]
    async fn an_idempotent_call_is_sent_again_after_a_lost_connection() {
        let (ctx, recorder) = context_with(0, 2, true, None);
        let roll: u8 = ctx.call("dice", "roll", ()).await.unwrap();
        assert_eq!(roll, 4);
        assert_eq!(recorder.sent.lock().len(), 3);
    }

    #[tokio::test]
    async fn a_call_that_may_have_run_is_sent_once_unless_the_caller_says_otherwise() {
        let (ctx, recorder) = context_with(0, 1, false, None);
        let err = ctx.call::<_, u8>("dice", "roll", ()).await.unwrap_err();
        assert_eq!(err.code(), Code::Unavailable);
        assert!(err.message().contains("may or may not have run"), "{err}");
        assert_eq!(recorder.sent.lock().len(), 1);

        let (ctx, recorder) = context_with(0, 1, false, None);
        let roll: u8 = ctx
            .request("dice", "roll")
            .idempotent(true)
            .send(())
            .await
            .unwrap();
        assert_eq!(roll, 4);
        assert_eq!(recorder.sent.lock().len(), 2);

        // And an idempotent entrypoint, called by one who says it is not.
        let (ctx, recorder) = context_with(0, 1, true, None);
        let err = ctx
            .request("dice", "roll")
            .idempotent(false)
            .send::<_, u8>(())
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::Unavailable);
        assert_eq!(recorder.sent.lock().len(), 1);
    }

    #[tokio::test]
    async fn a_failed_call_answers_its_fallback_but_not_for_a_bad_argument() {
        let (ctx, _) = context_with(0, 1, false, None);
        let roll: u8 = ctx
            .request("dice", "roll")
            .fallback(6)
            .send(())
            .await
            .unwrap();
        assert_eq!(roll, 6);

        let (ctx, _) = context_with(0, 1, false, None);
        let err = ctx
            .request("dice", "roll")
            .fallback("six")
            .send::<_, u8>(())
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert_eq!(err.field(), Some("fallback"));

        // Answered: the fallback is not used.
        let (ctx, _) = context_with(0, 0, false, None);
        let roll: u8 = ctx
            .request("dice", "roll")
            .fallback(6)
            .send(())
            .await
            .unwrap();
        assert_eq!(roll, 4);
    }

    #[tokio::test]
    async fn retries_stay_within_the_budget() {
        // No floor: a fifth of a retry per call.
        let budget = RetryBudget::new(0.2, 0);
        let (ctx, recorder) = context_with(0, u32::MAX / 2, true, Some(budget));
        let mut over_budget = 0;
        for _ in 0..20 {
            let err = ctx.call::<_, u8>("dice", "roll", ()).await.unwrap_err();
            assert_eq!(err.code(), Code::Unavailable);
            over_budget += usize::from(err.message().contains("over their budget"));
        }
        let sent = recorder.sent.lock().len();
        assert!(
            (20..=24).contains(&sent),
            "20 calls sent {sent} times with a budget of 4 retries"
        );
        assert!(over_budget >= 16, "{over_budget} calls said so");
    }

    #[tokio::test]
    async fn a_resent_call_carries_the_time_left_at_resend() {
        let (ctx, recorder) = context(2);
        let budget = Duration::from_secs(2);
        let roll: u8 = ctx
            .request("dice", "roll")
            .timeout(budget)
            .send(())
            .await
            .unwrap();
        assert_eq!(roll, 4);
        let sent: Vec<Duration> = recorder
            .sent
            .lock()
            .iter()
            .map(|h| h.timeout.unwrap())
            .collect();
        assert_eq!(sent.len(), 3);
        assert!(sent[0] <= budget && sent[0] > budget - Duration::from_millis(10));
        // Each resend waits at least 20 ms for the registry to drop the
        // instance that went away; that time is no longer the callee's.
        for pair in sent.windows(2) {
            assert!(
                pair[1] + Duration::from_millis(20) <= pair[0],
                "resent with {:?} after {:?}",
                pair[1],
                pair[0]
            );
        }
    }

    #[tokio::test]
    async fn calls_carry_the_identity_built_once_and_no_version() {
        let (ctx, recorder) = context(0);
        for _ in 0..2 {
            let _: u8 = ctx
                .request("dice", "roll")
                .version("^1")
                .send(())
                .await
                .unwrap();
        }
        let sent = recorder.sent.lock();
        let mine = ctx.as_caller.as_ref().unwrap();
        for headers in sent.iter() {
            let caller = headers.caller.as_ref().unwrap();
            assert!(Arc::ptr_eq(caller, mine));
            assert_eq!(caller.instance, "shop-1");
            assert_eq!(headers.version, None);
        }
    }

    #[test]
    fn an_incoming_call_keeps_its_caller_without_a_copy() {
        let (root, _) = context(0);
        let caller = Arc::new(Caller {
            service: "cart".into(),
            version: "2.0.0".into(),
            instance: "cart-9".into(),
        });
        let mut headers = Headers::new("shop", "order");
        headers.caller = Some(caller.clone());
        headers.traceparent =
            Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into());
        let ctx = root.for_call(&mut headers);
        assert!(Arc::ptr_eq(ctx.caller.as_ref().unwrap(), &caller));
        assert_eq!(
            ctx.traceparent.as_deref(),
            Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
        );
        assert_eq!(ctx.identity().unwrap().instance, "shop-1");
    }
}
