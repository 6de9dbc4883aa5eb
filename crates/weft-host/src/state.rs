//! What the wire service, the HTTP API and the supervisor share: handles to
//! the host's concerns. The logic lives with each concern.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::auth::Auth;
use crate::events::EventLog;
use crate::notifications::Notifications;
use crate::registry_service::Registrations;
use crate::store::Store;

/// The host's state: handles only.
#[derive(Debug)]
pub(crate) struct Shared {
    /// The registry and which connection registered which instance.
    pub(crate) registry: Registrations,
    /// Main versions, tokens and notifications on disk.
    pub(crate) store: Store,
    /// Tokens, and whether requests must carry one.
    pub(crate) auth: Auth,
    /// When tokens are required: the credential the host gives the instances
    /// it starts and its gateway presents. Made anew on every start and
    /// never stored.
    pub(crate) mesh_token: Option<String>,
    /// Messages for people.
    pub(crate) notifications: Notifications,
    /// Topics, consumer groups and dead letters.
    pub(crate) events: EventLog,
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
