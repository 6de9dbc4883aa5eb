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
