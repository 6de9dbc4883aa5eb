//! Where the host's shared state lives: on this machine only (embedded,
//! the default) or in NATS JetStream, shared by every host of a cluster.
//! The backend is chosen once, at start-up; the rest of the host sees only
//! the traits here.

mod nats;

use std::fmt;
use std::sync::Arc;

use futures::future::BoxFuture;
use tokio::sync::watch;
use weft_core::Error;

use crate::config::HostConfig;
use crate::state::Shared;

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
}

/// The registry backend `config` asks for: NATS when the host joins a
/// cluster (connecting now, so that a host that cannot reach NATS says so
/// at start), embedded otherwise.
pub(crate) async fn registry(config: &HostConfig) -> Result<Arc<dyn RegistryBackend>, Error> {
    match &config.cluster {
        None => Ok(Arc::new(Embedded)),
        Some(cluster) => {
            let backend =
                nats::NatsRegistry::connect(cluster, &config.name, config.lease_ttl).await?;
            Ok(Arc::new(backend))
        }
    }
}
