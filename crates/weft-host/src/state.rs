//! What the wire service, the HTTP API and the supervisor share: handles to
//! the host's concerns. The logic lives with each concern.

use std::sync::Arc;

use crate::auth::Auth;
use crate::backend::{EventLog, RegistryBackend, TokenBackend};
use crate::notifications::Notifications;
use crate::registrations::Registrations;
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
    pub(crate) events: Arc<dyn EventLog>,
    /// Where tokens made or revoked here go for the other hosts of a
    /// cluster (nowhere on a host of its own).
    pub(crate) cluster_tokens: Arc<dyn TokenBackend>,
    /// Shares the registry with the other hosts of a cluster, and lists
    /// them.
    pub(crate) cluster: Arc<dyn RegistryBackend>,
    /// Who this host is, for the other hosts and for `weft hosts`.
    pub(crate) identity: Identity,
}

/// Who a host is.
#[derive(Debug, Clone)]
pub(crate) struct Identity {
    /// Its name in its cluster.
    pub(crate) name: String,
    /// Where other machines reach it.
    pub(crate) address: String,
    /// When this run of it started, in ms since the Unix epoch.
    pub(crate) started_ms: u64,
}
