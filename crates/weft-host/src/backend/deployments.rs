//! Where the desired state of deployments lives: each host's own
//! deployments durably in its data dir (a host that starts again restores
//! them from there), and, in a cluster, also where every host lists every
//! host's deployments. Each host supervises only what runs on it; in a
//! cluster, a host asks another to deploy, scale or kill (an [`Order`]),
//! and executables travel between hosts through the cluster's store of
//! artifacts.

use std::fmt;
use std::sync::Arc;

use std::path::Path;

use bytes::Bytes;
use futures::FutureExt as _;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use weft_core::Error;
use weft_core::name::Version;
use weft_host_api::deployments::VersionStatus;

use crate::supervisor::{DeployStore, DeploymentRecord};

/// What one host of a cluster asks another host's supervisor to do with
/// what runs on that host only.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "order", rename_all = "snake_case")]
pub(crate) enum Order {
    /// Deploy `record` (its executable is in the cluster's artifacts, by
    /// its SHA-256).
    Deploy {
        /// What to run, as it will be stored.
        record: DeploymentRecord,
    },
    /// Run `instances` instances of a version deployed there.
    Scale {
        service: String,
        version: Version,
        instances: u32,
    },
    /// Stop a version deployed there and forget it.
    Kill { service: String, version: Version },
}

/// Carries out the orders other hosts send to this one: the supervisor.
pub(crate) trait OrderHandler: Send + Sync + fmt::Debug {
    /// Carries out `order` on this host; answers the version's status
    /// (none after a kill).
    fn handle(&self, order: Order) -> BoxFuture<'_, Result<Option<VersionStatus>, Error>>;
}

/// An artifact's bytes as they are read.
pub(crate) type ArtifactStream = BoxStream<'static, Result<Bytes, std::io::Error>>;

/// The error of cluster operations on a host that is not in a cluster.
fn not_in_a_cluster(what: &str) -> Error {
    Error::invalid_argument(
        "on",
        format!(
            "this host is not in a cluster (it was started without --nats), so it cannot {what}; \
             start the hosts with `weft host --nats URL --name NAME`, or leave out --on"
        ),
    )
}

/// The deployments of this host and, in a cluster, of the others.
pub(crate) trait DeploymentBackend: Send + Sync + fmt::Debug {
    /// This host's deployments as stored: what it starts again when it
    /// starts.
    fn load(&self) -> BoxFuture<'static, Result<Vec<DeploymentRecord>, Error>>;

    /// Stores a deployment of this host (deployed, deployed again or
    /// scaled) before the change is answered; `status` is how it is listed
    /// now.
    fn put(
        &self,
        record: DeploymentRecord,
        status: VersionStatus,
    ) -> BoxFuture<'static, Result<(), Error>>;

    /// Forgets a deployment of this host (killed).
    fn remove(&self, service: &str, version: &Version) -> BoxFuture<'static, Result<(), Error>>;

    /// How every deployment of this host is listed now, for the other
    /// hosts; called as that changes (instances that start, register,
    /// crash). Deployments not stored are left out.
    fn report(&self, statuses: Vec<VersionStatus>) -> BoxFuture<'static, ()>;

    /// The deployments of the other hosts, as their hosts last reported
    /// them (each with its `host`).
    fn others(&self) -> BoxFuture<'static, Result<Vec<VersionStatus>, Error>>;

    /// Follows the other hosts' deployments until `stop` turns true.
    fn run(self: Arc<Self>, stop: watch::Receiver<bool>) -> BoxFuture<'static, ()>;

    /// Lets go of the store, so that a host started again on the same data
    /// dir in the same process can open it.
    fn close(&self);

    /// Whether this host is in a cluster (other hosts can be asked).
    fn clustered(&self) -> bool {
        false
    }

    /// This host's deployments as the cluster keeps them (for a host whose
    /// own store lost them); none on a host of its own.
    fn desired(&self) -> BoxFuture<'static, Result<Vec<DeploymentRecord>, Error>> {
        futures::future::ready(Ok(Vec::new())).boxed()
    }

    /// Puts the executable at `path`, whose SHA-256 is `sha256`, where
    /// every host of the cluster can fetch it (unless it is there).
    fn share_artifact(&self, _sha256: &str, _path: &Path) -> BoxFuture<'static, Result<(), Error>> {
        futures::future::ready(Err(not_in_a_cluster("send executables to other hosts"))).boxed()
    }

    /// The executable of SHA-256 `sha256` from the cluster's artifacts,
    /// as stored there (the caller checks it).
    fn fetch_artifact(&self, _sha256: &str) -> BoxFuture<'static, Result<ArtifactStream, Error>> {
        futures::future::ready(Err(not_in_a_cluster("fetch executables from other hosts"))).boxed()
    }

    /// Forgets an artifact that proved corrupt, so that the next deploy
    /// puts it again.
    fn drop_artifact(&self, _sha256: &str) -> BoxFuture<'static, ()> {
        futures::future::ready(()).boxed()
    }

    /// Sends `order` to the host named `host` and waits for its answer.
    fn send(
        &self,
        host: &str,
        _order: Order,
    ) -> BoxFuture<'static, Result<Option<VersionStatus>, Error>> {
        let what = format!("ask host `{host}`");
        futures::future::ready(Err(not_in_a_cluster(&what))).boxed()
    }

    /// Takes the orders other hosts send to this one, handing each to
    /// `handler`, until `stop` turns true.
    fn serve(
        self: Arc<Self>,
        _handler: Arc<dyn OrderHandler>,
        _stop: watch::Receiver<bool>,
    ) -> BoxFuture<'static, ()> {
        futures::future::ready(()).boxed()
    }
}

/// Deployments in `deployments.redb` in the data dir, on this host only.
#[derive(Debug, Clone)]
pub(super) struct StoredDeployments {
    store: DeployStore,
}

impl StoredDeployments {
    /// Opens (or creates) the store in `data_dir`.
    pub(super) async fn open(data_dir: &std::path::Path) -> Result<Self, Error> {
        let dir = data_dir.to_owned();
        let store = tokio::task::spawn_blocking(move || DeployStore::open(&dir))
            .await
            .map_err(|e| Error::internal(format!("opening the deployments failed: {e}")))??;
        Ok(StoredDeployments { store })
    }
}

impl DeploymentBackend for StoredDeployments {
    fn load(&self) -> BoxFuture<'static, Result<Vec<DeploymentRecord>, Error>> {
        let store = self.store.clone();
        async move { store.blocking(|s| s.all()).await }.boxed()
    }

    fn put(
        &self,
        record: DeploymentRecord,
        _status: VersionStatus,
    ) -> BoxFuture<'static, Result<(), Error>> {
        let store = self.store.clone();
        async move { store.blocking(move |s| s.put(&record)).await }.boxed()
    }

    fn remove(&self, service: &str, version: &Version) -> BoxFuture<'static, Result<(), Error>> {
        let (store, service, version) = (self.store.clone(), service.to_owned(), version.clone());
        async move { store.blocking(move |s| s.remove(&service, &version)).await }.boxed()
    }

    fn report(&self, _statuses: Vec<VersionStatus>) -> BoxFuture<'static, ()> {
        futures::future::ready(()).boxed()
    }

    fn others(&self) -> BoxFuture<'static, Result<Vec<VersionStatus>, Error>> {
        futures::future::ready(Ok(Vec::new())).boxed()
    }

    fn run(self: Arc<Self>, _stop: watch::Receiver<bool>) -> BoxFuture<'static, ()> {
        futures::future::ready(()).boxed()
    }

    fn close(&self) {
        self.store.close();
    }
}
