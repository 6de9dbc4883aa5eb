//! The supervisor: runs deployed versions of services as child processes.
//!
//! - A deploy stores the uploaded executable per version and content
//!   (`data_dir/artifacts/{service}/{version}/{sha256 prefix}/{service}`,
//!   mode 0755), starts the instances with their configuration in the
//!   environment (`WEFT_HOST` = this host, `WEFT_VERSION`,
//!   `WEFT_INSTANCE` = `{service}-{version}-{n}`, `WEFT_LISTEN` =
//!   `127.0.0.1:0`, then the deployment's own variables) and answers once
//!   they have registered, or with the last lines of the output of one that
//!   exited first. The record is stored only then, so a failed deploy
//!   leaves no trace and the versions that ran before are untouched.
//! - Deploying a version again replaces its instances one at a time: start
//!   a new one, wait until it registers, stop an old one gracefully. Each
//!   upload keeps its own directory, so a failed replacement rolls back to
//!   the executable that ran before.
//! - A crashed instance restarts with exponential backoff; one that keeps
//!   crashing shows as `crashing` with its exit reason.
//! - When the host stops, instances are stopped gracefully (SIGTERM, the
//!   grace period, SIGKILL) and their deployments kept; the next host on the
//!   data dir starts them again.
//! - Output goes to `data_dir/logs/{service}/{version}/{instance}.log` and a
//!   ring per version for `weft logs`.
//! - Deployments are kept through a [`DeploymentBackend`]: in the data dir,
//!   and in a cluster also where every host lists every host's deployments
//!   (`weft ls` on any host shows them all, each with its host). The
//!   supervisor reports how its own are doing as that changes.
//! - In a cluster, a deploy can name other hosts, and a scale or a kill
//!   acts on every host that runs the version: hosts ask each other (see
//!   `cluster`), and executables travel through the cluster's artifacts.

mod artifacts;
mod cluster;
mod deploy;
mod instance;
mod lifecycle;
mod logs;
mod manage;
mod orphans;
mod status;
mod store;
mod types;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use weft_core::Address;
use weft_core::name::Version;

pub(crate) use self::deploy::check_env;
use self::instance::Launch;
use self::logs::LogRing;
pub(crate) use self::store::DeployStore;
pub(crate) use self::types::DeploymentRecord;
pub(crate) use self::types::{DeployRequest, Staged};
use self::types::{Deployment, Key};
use crate::backend::DeploymentBackend;
use crate::state::Shared;

/// How long instances get to stop after SIGTERM before SIGKILL.
pub(crate) const DEFAULT_GRACE: Duration = Duration::from_secs(10);

/// The largest executable a deploy may upload (or fetch from the cluster).
pub(crate) const MAX_ARTIFACT: u64 = 512 * 1024 * 1024;

/// Runs the deployments of one host.
#[derive(Debug)]
pub(crate) struct Supervisor {
    shared: Arc<Shared>,
    data_dir: PathBuf,
    /// `WEFT_HOST` for instances.
    host: String,
    /// Marks this host's children (see [`instance::SUPERVISOR_ENV`]).
    tag: String,
    /// Where deployments are kept, and listed for the other hosts.
    backend: Arc<dyn DeploymentBackend>,
    grace: Duration,
    /// Deploy, scale, kill and main run one at a time.
    ops: tokio::sync::Mutex<()>,
    deployments: Mutex<BTreeMap<Key, Deployment>>,
    /// Stops the tasks that report this host's deployments and follow the
    /// other hosts'.
    stop: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Supervisor {
    /// A supervisor keeping its deployments in `backend`; nothing starts
    /// until [`restore`](Self::restore).
    pub(crate) fn open(
        shared: Arc<Shared>,
        backend: Arc<dyn DeploymentBackend>,
        data_dir: &Path,
        address: &Address,
    ) -> Arc<Supervisor> {
        let tag = std::fs::canonicalize(data_dir)
            .unwrap_or_else(|_| data_dir.to_owned())
            .display()
            .to_string();
        Arc::new(Supervisor {
            shared,
            data_dir: data_dir.to_owned(),
            host: address.reachable().to_string(),
            tag,
            backend,
            grace: DEFAULT_GRACE,
            ops: tokio::sync::Mutex::new(()),
            deployments: Mutex::new(BTreeMap::new()),
            stop: watch::channel(false).0,
            tasks: Mutex::new(Vec::new()),
        })
    }

    fn version_dir(&self, service: &str, version: &Version) -> PathBuf {
        self.data_dir
            .join("artifacts")
            .join(service)
            .join(version.to_string())
    }

    fn program(&self, service: &str, version: &Version, sha256: &str) -> PathBuf {
        self.version_dir(service, version)
            .join(&sha256[..16.min(sha256.len())])
            .join(service)
    }

    /// The host name instance ids carry: in a cluster only, so that ids on
    /// a host of its own stay as they were.
    fn id_host(&self) -> Option<String> {
        self.backend
            .clustered()
            .then(|| self.shared.identity.name.clone())
    }

    fn ring(&self, service: &str, version: &Version) -> Arc<LogRing> {
        Arc::new(LogRing::load(
            self.data_dir
                .join("logs")
                .join(service)
                .join(version.to_string()),
        ))
    }

    fn launch(&self, record: &DeploymentRecord, program: PathBuf, logs: Arc<LogRing>) -> Launch {
        Launch {
            program,
            env: record.env.clone(),
            host: self.host.clone(),
            version: record.version.to_string(),
            supervisor: self.tag.clone(),
            grace: self.grace,
            logs,
            token: self.shared.mesh_token.clone(),
        }
    }
}
