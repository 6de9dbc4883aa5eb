//! Where the desired state of deployments lives: each host's own
//! deployments durably in its data dir (a host that starts again restores
//! them from there), and, in a cluster, also where every host lists every
//! host's deployments. Each host supervises only what runs on it.

use std::fmt;
use std::sync::Arc;

use futures::FutureExt as _;
use futures::future::BoxFuture;
use tokio::sync::watch;
use weft_core::Error;
use weft_core::name::Version;
use weft_host_api::deployments::VersionStatus;

use crate::supervisor::{DeployStore, DeploymentRecord};

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
