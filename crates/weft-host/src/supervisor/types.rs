//! What the supervisor keeps: the stored record of a deployed version,
//! what a deploy asks for, and a deployed version at run time. What it
//! shows of them is defined with the host's API, in
//! [`weft_host_api::deployments`].

use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use weft_core::name::Version;

use super::instance::Instance;
use super::logs::LogRing;

/// What is stored of a deployed version.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct DeploymentRecord {
    pub(crate) service: String,
    pub(crate) version: Version,
    /// How many instances should run.
    pub(crate) instances: u32,
    /// `--env K=V`, in order.
    pub(crate) env: Vec<(String, String)>,
    /// The executable's SHA-256, hex.
    pub(crate) sha256: String,
    pub(crate) size: u64,
    pub(crate) deployed_ms: u64,
}

/// What a deploy asks for, besides the executable.
#[derive(Debug, Clone)]
pub(crate) struct DeployRequest {
    pub(crate) service: String,
    pub(crate) version: Version,
    pub(crate) instances: u32,
    pub(crate) env: Vec<(String, String)>,
}

/// An uploaded executable, stored and ready to run.
#[derive(Debug)]
pub(crate) struct Staged {
    pub(super) sha256: String,
    pub(super) size: u64,
    pub(super) program: PathBuf,
}

/// A deployed version at run time.
#[derive(Debug)]
pub(super) struct Deployment {
    pub(super) record: DeploymentRecord,
    pub(super) instances: Vec<Arc<Instance>>,
    /// The number of the next instance: ids are never reused while the
    /// host runs, so an old instance deregistering cannot remove its
    /// replacement.
    pub(super) next: u64,
    pub(super) logs: Arc<LogRing>,
    /// In a cluster, this host's name, which instance ids carry: the same
    /// version runs on several hosts, and ids are unique in the cluster.
    pub(super) host: Option<String>,
}

/// A deployment is known by its service and version.
pub(super) type Key = (String, Version);

/// The id of the deployment's next instance, `{service}-{version}-{n}`,
/// in a cluster `{service}-{version}-{host}-{n}`.
pub(super) fn next_id(d: &mut Deployment) -> String {
    let id = match &d.host {
        Some(host) => format!(
            "{}-{}-{host}-{}",
            d.record.service, d.record.version, d.next
        ),
        None => format!("{}-{}-{}", d.record.service, d.record.version, d.next),
    };
    d.next += 1;
    id
}

/// Versions for a message: `1.0.0, 1.1.0`.
pub(super) fn list(versions: &[Version]) -> String {
    versions
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
