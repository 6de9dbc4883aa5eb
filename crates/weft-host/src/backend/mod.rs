//! Where the host's shared state lives: on this machine only (embedded,
//! the default) or in NATS JetStream, shared by every host of a cluster.
//! The backend is chosen once, at start-up; the rest of the host sees only
//! the traits here.

mod deployments;
mod embedded;
mod events;
mod nats;
mod nats_artifacts;
mod nats_deployments;
mod nats_events;

use std::fmt;
use std::sync::Arc;

use futures::future::BoxFuture;
use tokio::sync::watch;
use weft_core::{Error, Notification};
use weft_host_api::hosts::{HostInfo, HostState};

pub(crate) use self::deployments::{DeploymentBackend, Order, OrderHandler};
pub(crate) use self::events::{Deliveries, EventLog, Tail};
use crate::auth::TokenRecord;
use crate::config::HostConfig;
use crate::state::Shared;
use crate::store::Store;

/// How the host shares its registry with the other hosts of its cluster.
pub(crate) trait RegistryBackend: Send + Sync + fmt::Debug {
    /// Announces this host's instances to the other hosts and merges theirs
    /// into this host's registry, until `stop` turns true; then withdraws
    /// this host's instances.
    fn run(
        self: Arc<Self>,
        shared: Arc<Shared>,
        stop: watch::Receiver<bool>,
    ) -> BoxFuture<'static, ()>;

    /// The hosts of the cluster, this one among them.
    fn hosts(&self, shared: &Shared) -> BoxFuture<'static, Result<Vec<HostInfo>, Error>>;

    /// Takes this host's name in the cluster; fails when another host that
    /// is up already has it.
    fn claim(&self, shared: &Shared) -> BoxFuture<'static, Result<(), Error>>;
}

/// This host as `weft hosts` shows it, alive now.
pub(crate) fn this_host(shared: &Shared) -> HostInfo {
    let instances = shared
        .registry
        .lock()
        .instances()
        .filter(|i| i.host.as_deref() == Some(shared.identity.name.as_str()))
        .count();
    HostInfo {
        name: shared.identity.name.clone(),
        address: shared.identity.address.clone(),
        state: HostState::Up,
        instances,
        started_ms: shared.identity.started_ms,
        heartbeat_ms: crate::time::now_ms(),
        unreachable: Vec::new(),
    }
}

/// `address` as other machines reach it: with `advertise` given, a
/// loopback or wildcard IP is replaced by it, the port kept.
pub(crate) fn advertised(address: &str, advertise: Option<&str>) -> String {
    match advertise {
        Some(advertise) => nats::advertised(address, advertise),
        None => address.to_owned(),
    }
}

/// How tokens made or revoked on this host reach the other hosts of its
/// cluster (each host keeps every token in its own store too, so that it
/// checks tokens without asking anyone).
pub(crate) trait TokenBackend: Send + Sync + fmt::Debug {
    /// Shares a token made on this host.
    fn share(&self, record: &TokenRecord) -> BoxFuture<'static, Result<(), Error>>;
    /// Revokes a token everywhere.
    fn revoke(&self, id: &str) -> BoxFuture<'static, Result<(), Error>>;
}

/// Where notifications are kept: they must be stored before they are
/// answered, and `weft notifications` on any host of a cluster lists every
/// host's.
pub(crate) trait NotificationBackend: Send + Sync + fmt::Debug {
    /// Stores a notification and returns it with its id.
    fn add(&self, notification: Notification) -> BoxFuture<'static, Result<Notification, Error>>;
    /// Notifications with an id above `after`, oldest first; with `limit`,
    /// only the newest `limit` of them.
    fn list(
        &self,
        after: Option<u64>,
        limit: Option<usize>,
    ) -> BoxFuture<'static, Result<Vec<Notification>, Error>>;
}

/// One host on its own: its registry is all there is.
#[derive(Debug)]
struct Embedded;

impl RegistryBackend for Embedded {
    fn run(
        self: Arc<Self>,
        _shared: Arc<Shared>,
        _stop: watch::Receiver<bool>,
    ) -> BoxFuture<'static, ()> {
        Box::pin(async {})
    }

    fn hosts(&self, shared: &Shared) -> BoxFuture<'static, Result<Vec<HostInfo>, Error>> {
        let me = this_host(shared);
        Box::pin(async move { Ok(vec![me]) })
    }

    fn claim(&self, _shared: &Shared) -> BoxFuture<'static, Result<(), Error>> {
        Box::pin(async { Ok(()) })
    }
}

impl TokenBackend for Embedded {
    fn share(&self, _record: &TokenRecord) -> BoxFuture<'static, Result<(), Error>> {
        Box::pin(async { Ok(()) })
    }

    fn revoke(&self, _id: &str) -> BoxFuture<'static, Result<(), Error>> {
        Box::pin(async { Ok(()) })
    }
}

/// The backends of the host's concerns, chosen together at start-up.
#[derive(Debug)]
pub(crate) struct Backends {
    pub(crate) registry: Arc<dyn RegistryBackend>,
    pub(crate) tokens: Arc<dyn TokenBackend>,
    pub(crate) notifications: Arc<dyn NotificationBackend>,
    pub(crate) deployments: Arc<dyn DeploymentBackend>,
    pub(crate) events: Arc<dyn EventLog>,
}

/// The backends `config` asks for: NATS when the host joins a cluster
/// (connecting now, so that a host that cannot reach NATS says so at
/// start), embedded otherwise.
pub(crate) async fn open(config: &HostConfig, store: &Store) -> Result<Backends, Error> {
    let stored = deployments::StoredDeployments::open(&config.data_dir).await?;
    match &config.cluster {
        None => Ok(Backends {
            registry: Arc::new(Embedded),
            tokens: Arc::new(Embedded),
            notifications: Arc::new(embedded::Notifications::new(store.clone())),
            deployments: Arc::new(stored),
            events: open_events(config).await?,
        }),
        Some(cluster) => {
            let nats = Arc::new(
                nats::NatsCluster::connect(cluster, &config.name, config.lease_ttl).await?,
            );
            let deployments =
                nats_deployments::NatsDeployments::open(&nats, stored, &cluster.servers.join(","))
                    .await?;
            let events = nats_events::NatsEvents::open(
                &nats,
                config.events.clone(),
                &cluster.servers.join(","),
            )
            .await?;
            Ok(Backends {
                registry: nats.clone(),
                tokens: nats.clone(),
                notifications: nats,
                deployments: Arc::new(deployments),
                events: Arc::new(events),
            })
        }
    }
}

/// The embedded event log. Opened after everything that may fail, since an
/// open log holds its files until it is closed.
async fn open_events(config: &HostConfig) -> Result<Arc<dyn EventLog>, Error> {
    let log = crate::events::SegmentLog::open(&config.data_dir, config.events.clone()).await?;
    Ok(Arc::new(log))
}
