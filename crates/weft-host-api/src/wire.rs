//! The host's own service: how instances register, how callers watch the
//! registry, how notifications reach the host. Services and clients use it
//! through the SDK; the host implements it.

use serde::{Deserialize, Serialize};
use weft_core::Notification;

pub use weft_registry::{InstanceInfo, RegisterReply, RegisterRequest, WatchEvent};

/// The name the host answers to on the wire.
pub const SERVICE: &str = "weft.host";

/// `register {instance}` → [`RegisterReply`].
pub const REGISTER: &str = "register";
/// `keepalive {id}` → `()`; `not_found` when the host forgot the instance.
pub const KEEPALIVE: &str = "keepalive";
/// `deregister {id}` → `()`.
pub const DEREGISTER: &str = "deregister";
/// `watch {}` → a stream of [`WatchEvent`], starting with a snapshot.
pub const WATCH: &str = "watch";
/// `notify {notification}` → the stored [`Notification`] with its id.
pub const NOTIFY: &str = "notify";
/// `notifications {after, limit}` → `Vec<Notification>`, oldest first.
pub const NOTIFICATIONS: &str = "notifications";
/// `services {}` → `Vec<weft_registry::ServiceSummary>`.
pub const SERVICES: &str = "services";

/// Arguments of [`KEEPALIVE`] and [`DEREGISTER`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InstanceId {
    /// The instance id given at registration.
    pub id: String,
}

/// Arguments of [`NOTIFY`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NotifyArgs {
    /// The notification to store.
    pub notification: Notification,
}

/// Arguments of [`NOTIFICATIONS`].
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NotificationsArgs {
    /// Only notifications with an id greater than this.
    #[serde(default)]
    pub after: Option<u64>,
    /// At most this many, the newest ones.
    #[serde(default)]
    pub limit: Option<usize>,
}

/// `publish {PublishArgs}` (`topic`, `payload`, `idempotency_key`, `publisher`) → [`Published`], once
/// the event is durably stored (fsync'd).
pub const PUBLISH: &str = "publish";
/// `subscribe {Subscription}` → a stream of [`Delivery`]: the events this
/// instance should handle for one handler, as the handler's mode allows.
pub const SUBSCRIBE: &str = "subscribe";
/// `ack {Ack}` → `()`: the outcome of one delivery.
pub const ACK: &str = "ack";

/// Arguments of [`PUBLISH`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PublishArgs {
    /// The topic, a name like `orders.created`.
    pub topic: String,
    /// The event, as JSON.
    pub payload: serde_json::Value,
    /// A publish with the same key as one stored within the host's
    /// deduplication window is dropped, and answered with the first one's id.
    #[serde(default)]
    pub idempotency_key: Option<String>,
    /// The service that published it (for `weft events ls` and docs).
    #[serde(default)]
    pub publisher: Option<String>,
}

/// The answer to [`PUBLISH`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
pub struct Published {
    /// The event's id: its position in the topic's log, from 1.
    pub id: u64,
    /// Whether this publish was a duplicate of an earlier one with the same
    /// idempotency key (and was not stored again).
    pub duplicate: bool,
}

/// How the events of a topic are spread over a service's instances.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum DeliveryMode {
    /// Each event goes to one instance of the service (per handler).
    Pool,
    /// Each event goes to every instance of the service.
    Broadcast,
    /// Like `pool`, but events whose payload has the same value at `field`
    /// are handled one at a time, in publish order, across all instances.
    Ordered {
        /// The payload field (top level) whose value is the ordering key.
        field: String,
    },
}

/// Arguments of [`SUBSCRIBE`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Subscription {
    /// The subscribing service.
    pub service: String,
    /// The handler (method) name: with `service`, it names the consumer group.
    pub handler: String,
    /// The topic.
    pub topic: String,
    /// The subscribing instance.
    pub instance: String,
    /// How events are spread.
    pub mode: DeliveryMode,
    /// After this many failed attempts an event goes to the dead letters.
    pub max_attempts: u32,
    /// At most this many deliveries unacknowledged at once for this instance.
    pub max_in_flight: u32,
}

/// One event handed to a handler.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Delivery {
    /// The topic.
    pub topic: String,
    /// The event's id in its topic.
    pub id: u64,
    /// The event.
    pub payload: serde_json::Value,
    /// 1 for the first delivery, more for redeliveries.
    pub attempt: u32,
    /// When it was published, in milliseconds since the Unix epoch.
    pub published_ms: u64,
}

/// Arguments of [`ACK`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ack {
    /// The subscribing service.
    pub service: String,
    /// The handler.
    pub handler: String,
    /// The topic.
    pub topic: String,
    /// The instance that handled it.
    pub instance: String,
    /// The event's id.
    pub id: u64,
    /// `None` when the handler succeeded; otherwise why it failed (the event
    /// is delivered again with backoff, or goes to the dead letters).
    pub error: Option<String>,
}
