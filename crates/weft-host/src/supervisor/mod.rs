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

mod instance;
mod logs;
mod store;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt as _};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncWriteExt as _;
use tokio::sync::broadcast;
use weft_core::name::Version;
use weft_core::{Code, Error};
use weft_registry::WatchEvent;
use weft_transport::Address;

use self::instance::{CRASH_LOOP, Instance, Launch, Phase};
pub(crate) use self::logs::LogLine;
use self::logs::LogRing;
use self::store::DeployStore;
use crate::state::{Shared, now_ms};

/// How long instances get to stop after SIGTERM before SIGKILL.
pub(crate) const DEFAULT_GRACE: Duration = Duration::from_secs(10);

/// How long a new instance may take to register.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// How many lines of output a failed start reports.
const FAILURE_LINES: usize = 20;

/// Variables a deployment may not set: the supervisor sets them.
const RESERVED_ENV: [&str; 4] = [
    "WEFT_HOST",
    "WEFT_VERSION",
    "WEFT_INSTANCE",
    instance::SUPERVISOR_ENV,
];

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
    sha256: String,
    size: u64,
    program: PathBuf,
}

/// The state of a version, as `weft ls` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Status {
    /// Every wanted instance is registered.
    Running,
    /// Some wanted instances have not registered yet.
    Starting,
    /// An instance keeps exiting soon after it starts; `reason` says how.
    Crashing,
    /// Deployed with no instances (`weft scale NAME VERSION 0`).
    Stopped,
    /// Registered with the host but not deployed by it (started by hand).
    External,
}

/// One version of one service: `GET /api/v1/deployments` lists these.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct VersionStatus {
    pub(crate) service: String,
    pub(crate) version: Version,
    /// Whether calls without a version go here.
    pub(crate) main: bool,
    pub(crate) status: Status,
    /// For `crashing`: how the last instance exited.
    pub(crate) reason: Option<String>,
    /// Instances wanted (for `external`: the registered ones).
    pub(crate) wanted: u32,
    /// Instances registered with the host.
    pub(crate) registered: usize,
    /// When the oldest registered instance started, ms since the Unix epoch.
    pub(crate) since_ms: Option<u64>,
    pub(crate) deployed_ms: Option<u64>,
    pub(crate) sha256: Option<String>,
    pub(crate) instances: Vec<InstanceStatus>,
}

/// One instance of a version.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct InstanceStatus {
    /// `{service}-{version}-{n}`.
    pub(crate) id: String,
    pub(crate) pid: Option<u32>,
    pub(crate) registered: bool,
    /// `running`, `starting` (not registered yet), `restarting` or `stopped`.
    pub(crate) state: String,
    pub(crate) started_ms: u64,
    pub(crate) restarts: u32,
    pub(crate) last_exit: Option<String>,
}

/// A deployed version at run time.
#[derive(Debug)]
struct Deployment {
    record: DeploymentRecord,
    instances: Vec<Arc<Instance>>,
    /// The number of the next instance: ids are never reused while the
    /// host runs, so an old instance deregistering cannot remove its
    /// replacement.
    next: u64,
    logs: Arc<LogRing>,
}

type Key = (String, Version);

/// Runs the deployments of one host.
#[derive(Debug)]
pub(crate) struct Supervisor {
    shared: Arc<Shared>,
    data_dir: PathBuf,
    /// `WEFT_HOST` for instances.
    host: String,
    /// Marks this host's children (see [`instance::SUPERVISOR_ENV`]).
    tag: String,
    store: DeployStore,
    grace: Duration,
    /// Deploy, scale, kill and main run one at a time.
    ops: tokio::sync::Mutex<()>,
    deployments: Mutex<BTreeMap<Key, Deployment>>,
}

/// The address instances reach the host at: the listening address, with a
/// wildcard IP replaced by loopback.
fn reachable(address: &Address) -> String {
    match address {
        Address::Tcp(hp) => {
            if let Some(port) = hp.strip_prefix("0.0.0.0:") {
                format!("tcp://127.0.0.1:{port}")
            } else if let Some(port) = hp.strip_prefix("[::]:") {
                format!("tcp://[::1]:{port}")
            } else {
                address.to_string()
            }
        }
        Address::Unix(_) => address.to_string(),
    }
}

/// RFC 3339 UTC to the second, for log files.
pub(crate) fn rfc3339(ms: u64) -> String {
    let secs = ms / 1000;
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Reads back what [`rfc3339`] wrote (`2026-11-22T11:56:18Z`), in
/// milliseconds since the Unix epoch.
pub(crate) fn parse_rfc3339(text: &str) -> Option<u64> {
    let b = text.as_bytes();
    if b.len() != 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[19] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = text.get(r)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    // Howard Hinnant's days_from_civil.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hh * 3600 + mm * 60 + ss;
    u64::try_from(secs).ok().map(|s| s * 1000)
}

fn io_failed(what: String, e: std::io::Error) -> Error {
    Error::internal(format!(
        "{what}: {e}; check that the host's data dir is writable and the disk is not full"
    ))
}

impl Supervisor {
    /// Opens the deployments store in `data_dir`; nothing starts until
    /// [`restore`](Self::restore).
    pub(crate) async fn open(
        shared: Arc<Shared>,
        data_dir: &Path,
        address: &Address,
    ) -> Result<Arc<Supervisor>, Error> {
        let dir = data_dir.to_owned();
        let store = tokio::task::spawn_blocking(move || DeployStore::open(&dir))
            .await
            .map_err(|e| Error::internal(format!("opening the deployments failed: {e}")))??;
        let tag = std::fs::canonicalize(data_dir)
            .unwrap_or_else(|_| data_dir.to_owned())
            .display()
            .to_string();
        Ok(Arc::new(Supervisor {
            shared,
            data_dir: data_dir.to_owned(),
            host: reachable(address),
            tag,
            store,
            grace: DEFAULT_GRACE,
            ops: tokio::sync::Mutex::new(()),
            deployments: Mutex::new(BTreeMap::new()),
        }))
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

    /// Starts every stored deployment again; run once when the host starts.
    pub(crate) async fn restore(self: &Arc<Self>) {
        let records = match self.store.blocking(|s| s.all()).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the deployments to restore");
                return;
            }
        };
        kill_orphans(&self.tag);
        let _ops = self.ops.lock().await;
        for record in records {
            let program = self.program(&record.service, &record.version, &record.sha256);
            if !program.exists() {
                tracing::error!(
                    service = %record.service,
                    version = %record.version,
                    program = %program.display(),
                    "the executable of a deployment is missing; deploy it again"
                );
            }
            let logs = self.ring(&record.service, &record.version);
            let launch = self.launch(&record, program, logs.clone());
            let mut deployment = Deployment {
                record,
                instances: Vec::new(),
                next: 1,
                logs,
            };
            for _ in 0..deployment.record.instances {
                let id = next_id(&mut deployment);
                deployment
                    .instances
                    .push(Instance::start(id, launch.clone()));
            }
            tracing::info!(
                service = %deployment.record.service,
                version = %deployment.record.version,
                instances = deployment.record.instances,
                "restored a deployment"
            );
            let key = (
                deployment.record.service.clone(),
                deployment.record.version.clone(),
            );
            self.deployments.lock().insert(key, deployment);
        }
    }

    /// Stops every instance, keeping the deployments for the next start.
    pub(crate) async fn shutdown(&self) {
        let instances: Vec<Arc<Instance>> = self
            .deployments
            .lock()
            .values()
            .flat_map(|d| d.instances.iter().cloned())
            .collect();
        futures::future::join_all(instances.iter().map(|i| i.stop())).await;
        self.store.close();
    }

    /// Stores an uploaded executable, reading at most `limit` bytes.
    pub(crate) async fn stage<S, E>(
        &self,
        service: &str,
        version: &Version,
        mut body: S,
        limit: u64,
    ) -> Result<Staged, Error>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let dir = self.version_dir(service, version);
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| io_failed(format!("cannot create {}", dir.display()), e))?;
        let tmp = dir.join(format!(".upload-{:016x}", rand::random::<u64>()));
        let result = async {
            let mut file = tokio::fs::File::create(&tmp)
                .await
                .map_err(|e| io_failed(format!("cannot create {}", tmp.display()), e))?;
            let mut hasher = Sha256::new();
            let mut size = 0u64;
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| {
                    Error::invalid_argument(
                        "body",
                        format!("the upload broke off ({e}); deploy again"),
                    )
                })?;
                size += chunk.len() as u64;
                if size > limit {
                    return Err(Error::resource_exhausted(format!(
                        "the executable is larger than the host's limit of {} MiB; build a smaller one (strip debug info)",
                        limit >> 20
                    )));
                }
                hasher.update(&chunk);
                file.write_all(&chunk)
                    .await
                    .map_err(|e| io_failed(format!("cannot write {}", tmp.display()), e))?;
            }
            if size == 0 {
                return Err(Error::invalid_argument(
                    "body",
                    "the upload is empty; send the service's executable as the request body",
                ));
            }
            file.sync_all()
                .await
                .map_err(|e| io_failed(format!("cannot write {}", tmp.display()), e))?;
            drop(file);
            let sha256 = format!("{:x}", hasher.finalize());
            let program = self.program(service, version, &sha256);
            if let Some(parent) = program.parent() {
                tokio::fs::create_dir_all(parent)
                    .await
                    .map_err(|e| io_failed(format!("cannot create {}", parent.display()), e))?;
            }
            use std::os::unix::fs::PermissionsExt as _;
            tokio::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))
                .await
                .map_err(|e| io_failed(format!("cannot make {} executable", tmp.display()), e))?;
            // Renaming never writes into a file a running instance executes.
            tokio::fs::rename(&tmp, &program)
                .await
                .map_err(|e| io_failed(format!("cannot store {}", program.display()), e))?;
            Ok(Staged {
                sha256,
                size,
                program,
            })
        }
        .await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&tmp).await;
        }
        result
    }

    /// Deploys a version (or replaces its instances) and answers once the
    /// new instances have registered.
    pub(crate) async fn deploy(
        &self,
        req: DeployRequest,
        staged: Staged,
    ) -> Result<VersionStatus, Error> {
        let _ops = self.ops.lock().await;
        let result = self.deploy_locked(&req, &staged).await;
        // Remove executables nothing uses any more (a failed upload's, or
        // the one a redeploy replaced).
        let keep: Option<String> = self
            .deployments
            .lock()
            .get(&(req.service.clone(), req.version.clone()))
            .map(|d| d.record.sha256.clone());
        self.prune_artifacts(&req.service, &req.version, keep.as_deref())
            .await;
        result?;
        self.ensure_main(&req.service, &req.version);
        self.status_of(&req.service, &req.version).ok_or_else(|| {
            Error::internal("the deployment vanished while it was deployed; deploy again")
        })
    }

    async fn deploy_locked(&self, req: &DeployRequest, staged: &Staged) -> Result<(), Error> {
        weft_core::name::validate(&req.service)?;
        for (k, _) in &req.env {
            if k.is_empty() || k.contains('=') || k.contains('\0') {
                return Err(Error::invalid_argument(
                    "env",
                    format!("`{k}` is not an environment variable name; pass --env NAME=VALUE"),
                ));
            }
            if RESERVED_ENV.contains(&k.as_str()) {
                return Err(Error::invalid_argument(
                    "env",
                    format!("{k} is set by the host for every instance; leave it out of --env"),
                ));
            }
        }
        let key: Key = (req.service.clone(), req.version.clone());
        let record = DeploymentRecord {
            service: req.service.clone(),
            version: req.version.clone(),
            instances: req.instances,
            env: req.env.clone(),
            sha256: staged.sha256.clone(),
            size: staged.size,
            deployed_ms: now_ms(),
        };
        let existing = {
            let mut all = self.deployments.lock();
            match all.get(&key) {
                Some(d) => Some((d.instances.clone(), d.logs.clone())),
                None => {
                    all.insert(
                        key.clone(),
                        Deployment {
                            record: record.clone(),
                            instances: Vec::new(),
                            next: 1,
                            logs: self.ring(&req.service, &req.version),
                        },
                    );
                    None
                }
            }
        };
        match existing {
            None => {
                let logs = self.deployments.lock()[&key].logs.clone();
                let launch = self.launch(&record, staged.program.clone(), logs);
                if let Err(e) = self.start_and_wait(&key, &launch, req.instances).await {
                    let gone = self.deployments.lock().remove(&key);
                    if let Some(d) = gone {
                        futures::future::join_all(d.instances.iter().map(|i| i.stop())).await;
                    }
                    return Err(e);
                }
            }
            Some((old, logs)) => {
                let launch = self.launch(&record, staged.program.clone(), logs);
                self.replace(&key, &launch, &old, req.instances).await?;
            }
        }
        let stored = record.clone();
        self.store.blocking(move |s| s.put(&stored)).await?;
        if let Some(d) = self.deployments.lock().get_mut(&key) {
            d.record = record;
        }
        tracing::info!(service = %req.service, version = %req.version, instances = req.instances, "deployed");
        Ok(())
    }

    /// Replaces `old` with `wanted` instances of `launch`, one at a time;
    /// on a failure, puts back what ran before.
    async fn replace(
        &self,
        key: &Key,
        launch: &Launch,
        old: &[Arc<Instance>],
        wanted: u32,
    ) -> Result<(), Error> {
        let mut started: Vec<Arc<Instance>> = Vec::new();
        let mut stopped = 0usize;
        for i in 0..(wanted as usize).max(old.len()) {
            if i < wanted as usize {
                match self.start_and_wait(key, launch, 1).await {
                    Ok(mut new) => started.append(&mut new),
                    Err(e) => {
                        // Back to what ran before: the new ones go, and the
                        // old ones already stopped come back.
                        self.remove_instances(key, &started).await;
                        let restarted: Vec<Arc<Instance>> = old[..stopped]
                            .iter()
                            .map(|o| {
                                let id = self.next_id(key);
                                Instance::start(id, o.launch.clone())
                            })
                            .collect();
                        if let Some(d) = self.deployments.lock().get_mut(key) {
                            d.instances.extend(restarted);
                        }
                        return Err(e);
                    }
                }
            }
            if let Some(o) = old.get(i) {
                self.remove_instances(key, std::slice::from_ref(o)).await;
                stopped += 1;
            }
        }
        Ok(())
    }

    fn next_id(&self, key: &Key) -> String {
        match self.deployments.lock().get_mut(key) {
            Some(d) => next_id(d),
            None => format!("{}-{}-0", key.0, key.1),
        }
    }

    /// Stops instances and takes them out of the deployment.
    async fn remove_instances(&self, key: &Key, which: &[Arc<Instance>]) {
        futures::future::join_all(which.iter().map(|i| i.stop())).await;
        if let Some(d) = self.deployments.lock().get_mut(key) {
            d.instances
                .retain(|i| !which.iter().any(|w| Arc::ptr_eq(i, w)));
        }
    }

    /// Starts `n` instances and waits until all have registered; on a
    /// failure, stops them all again.
    async fn start_and_wait(
        &self,
        key: &Key,
        launch: &Launch,
        n: u32,
    ) -> Result<Vec<Arc<Instance>>, Error> {
        let mut waits = Vec::new();
        let mut started = Vec::new();
        for _ in 0..n {
            // Subscribed before the process starts, so its registration
            // cannot be missed.
            let events = self.shared.registry.lock().subscribe();
            let id = self.next_id(key);
            let inst = Instance::start(id, launch.clone());
            if let Some(d) = self.deployments.lock().get_mut(key) {
                d.instances.push(inst.clone());
            }
            started.push(inst.clone());
            waits.push(self.wait_registered(inst, &key.0, events));
        }
        let results = futures::future::join_all(waits).await;
        if let Some(Err(e)) = results.into_iter().find(Result::is_err) {
            self.remove_instances(key, &started).await;
            return Err(e);
        }
        Ok(started)
    }

    async fn wait_registered(
        &self,
        inst: Arc<Instance>,
        service: &str,
        mut events: broadcast::Receiver<WatchEvent>,
    ) -> Result<(), Error> {
        let mut exits = inst.exits();
        let deadline = tokio::time::sleep(START_TIMEOUT);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                event = events.recv() => match event {
                    Ok(WatchEvent::Up { instance }) if instance.id == inst.id => {
                        if instance.service != service {
                            return Err(Error::invalid_argument(
                                "name",
                                format!(
                                    "the executable serves `{}`, not `{service}`: deploy it under its own name (`weft deploy {} ...`) or rename the service in its #[weft::service(name = ...)]",
                                    instance.service, instance.service
                                ),
                            ));
                        }
                        return Ok(());
                    }
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        let registry = self.shared.registry.lock();
                        if registry.instances().any(|i| i.id == inst.id) {
                            return Ok(());
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => {
                        return Err(Error::unavailable("the host is shutting down; deploy again once it is back"));
                    }
                },
                _ = exits.changed() => {
                    let reason = inst.snapshot().last_exit.unwrap_or_else(|| "exited".to_owned());
                    return Err(start_failure(&inst, &format!("{reason} before it registered with the host")));
                }
                () = &mut deadline => {
                    return Err(start_failure(
                        &inst,
                        &format!(
                            "did not register with the host within {}s; does its main call weft::serve?",
                            START_TIMEOUT.as_secs()
                        ),
                    ));
                }
            }
        }
    }

    /// Makes `version` main when the service's main version is not running
    /// here (the first version deployed, or after the old main was killed).
    fn ensure_main(&self, service: &str, version: &Version) {
        let deployed: Vec<Version> = self
            .deployments
            .lock()
            .keys()
            .filter(|(s, _)| s == service)
            .map(|(_, v)| v.clone())
            .collect();
        let mut registry = self.shared.registry.lock();
        let current = registry.mains().get(service).cloned();
        let running_elsewhere = current.as_ref().is_some_and(|m| {
            deployed.contains(m)
                || registry
                    .instances()
                    .any(|i| i.service == service && &i.version == m)
        });
        if !running_elsewhere && let Err(e) = registry.set_main(service, version.clone()) {
            tracing::warn!(%service, %version, error = %e, "cannot make the deployed version main");
        }
    }

    async fn prune_artifacts(&self, service: &str, version: &Version, keep: Option<&str>) {
        let dir = self.version_dir(service, version);
        let Some(keep) = keep else {
            let _ = tokio::fs::remove_dir_all(&dir).await;
            return;
        };
        let keep = &keep[..16.min(keep.len())];
        let Ok(mut entries) = tokio::fs::read_dir(&dir).await else {
            return;
        };
        while let Ok(Some(entry)) = entries.next_entry().await {
            if entry.file_name().to_string_lossy() != keep {
                let path = entry.path();
                let _ = if path.is_dir() {
                    tokio::fs::remove_dir_all(&path).await
                } else {
                    tokio::fs::remove_file(&path).await
                };
            }
        }
    }

    /// Makes `version` the main version of `service`.
    pub(crate) async fn set_main(&self, service: &str, version: &Version) -> Result<(), Error> {
        let _ops = self.ops.lock().await;
        self.shared
            .registry
            .lock()
            .set_main(service, version.clone())?;
        tracing::info!(%service, %version, "main version set");
        Ok(())
    }

    /// Stops versions and forgets them: `version`, or main when `None`, or
    /// every version with `all`. Returns the versions killed.
    pub(crate) async fn kill(
        &self,
        service: &str,
        version: Option<Version>,
        all: bool,
    ) -> Result<Vec<Version>, Error> {
        let _ops = self.ops.lock().await;
        let deployed: Vec<Version> = self
            .deployments
            .lock()
            .keys()
            .filter(|(s, _)| s == service)
            .map(|(_, v)| v.clone())
            .collect();
        let (main, running): (Option<Version>, Vec<Version>) = {
            let registry = self.shared.registry.lock();
            let mut running: Vec<Version> = registry
                .instances()
                .filter(|i| i.service == service)
                .map(|i| i.version.clone())
                .collect();
            running.sort();
            running.dedup();
            (registry.mains().get(service).cloned(), running)
        };
        if deployed.is_empty() {
            return Err(if running.is_empty() {
                Error::not_found(format!(
                    "this host runs no service `{service}`; `weft ls` lists what runs"
                ))
            } else {
                Error::invalid_argument(
                    "name",
                    format!(
                        "`{service}` was not deployed by this host (its instances were started by hand); stop them where they run"
                    ),
                )
            });
        }
        let targets: Vec<Version> = if all {
            deployed.clone()
        } else {
            let v = match version.or(main.clone()) {
                Some(v) => v,
                None => {
                    return Err(Error::invalid_argument(
                        "version",
                        format!("`{service}` has no main version; name the version to kill"),
                    ));
                }
            };
            if !deployed.contains(&v) {
                return Err(Error::not_found(format!(
                    "version {v} of `{service}` was not deployed by this host (deployed: {}); `weft ls` lists versions",
                    list(&deployed)
                )));
            }
            vec![v]
        };
        if !all
            && let Some(main) = &main
            && targets.contains(main)
        {
            let others: Vec<Version> = deployed
                .iter()
                .chain(&running)
                .filter(|v| !targets.contains(v))
                .cloned()
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect();
            if !others.is_empty() {
                return Err(Error::invalid_argument(
                    "version",
                    format!(
                        "{main} is the main version of `{service}` and {} still running; make another version main first (`weft main {service} {}`), or stop every version with `weft kill {service} --all`",
                        list(&others),
                        others[others.len() - 1]
                    ),
                ));
            }
        }
        for v in &targets {
            let key = (service.to_owned(), v.clone());
            let gone = self.deployments.lock().remove(&key);
            if let Some(d) = gone {
                futures::future::join_all(d.instances.iter().map(|i| i.stop())).await;
                let record = d.record.clone();
                self.store.blocking(move |s| s.remove(&record)).await?;
                self.prune_artifacts(service, v, None).await;
                tracing::info!(%service, version = %v, "killed");
            }
        }
        Ok(targets)
    }

    /// Runs `n` instances of a deployed version; new ones must register.
    pub(crate) async fn scale(
        &self,
        service: &str,
        version: &Version,
        n: u32,
    ) -> Result<VersionStatus, Error> {
        let _ops = self.ops.lock().await;
        let key = (service.to_owned(), version.clone());
        let (current, launch, record) = {
            let all = self.deployments.lock();
            let Some(d) = all.get(&key) else {
                return Err(Error::not_found(format!(
                    "version {version} of `{service}` is not deployed on this host; `weft ls` lists versions, `weft deploy` deploys one"
                )));
            };
            let program = self.program(service, version, &d.record.sha256);
            (
                d.instances.clone(),
                self.launch(&d.record, program, d.logs.clone()),
                d.record.clone(),
            )
        };
        let have = current.len() as u32;
        if n > have {
            self.start_and_wait(&key, &launch, n - have).await?;
        } else if n < have {
            // The newest go first: the oldest have proven themselves.
            self.remove_instances(&key, &current[n as usize..]).await;
        }
        let mut record = record;
        record.instances = n;
        let stored = record.clone();
        self.store.blocking(move |s| s.put(&stored)).await?;
        if let Some(d) = self.deployments.lock().get_mut(&key) {
            d.record = record;
        }
        tracing::info!(%service, %version, instances = n, "scaled");
        self.status_of(service, version)
            .ok_or_else(|| Error::internal("the deployment vanished while it was scaled"))
    }

    /// The newest `n` lines of output of `service` (of `version`, or of all
    /// its versions), and receivers of the lines that follow.
    pub(crate) fn logs(
        &self,
        service: &str,
        version: Option<&Version>,
        n: usize,
    ) -> Result<(Vec<LogLine>, Vec<broadcast::Receiver<LogLine>>), Error> {
        let all = self.deployments.lock();
        let rings: Vec<&Arc<LogRing>> = all
            .iter()
            .filter(|((s, v), _)| s == service && version.is_none_or(|want| want == v))
            .map(|(_, d)| &d.logs)
            .collect();
        if rings.is_empty() {
            let deployed: Vec<Version> = all
                .keys()
                .filter(|(s, _)| s == service)
                .map(|(_, v)| v.clone())
                .collect();
            return Err(Error::not_found(match version {
                Some(v) if !deployed.is_empty() => format!(
                    "version {v} of `{service}` is not deployed on this host (deployed: {})",
                    list(&deployed)
                ),
                _ => format!(
                    "`{service}` is not deployed on this host, so it has no logs here; `weft ls` lists services"
                ),
            }));
        }
        let mut lines = Vec::new();
        let mut receivers = Vec::new();
        for ring in rings {
            let (tail, rx) = ring.tail(n);
            lines.extend(tail);
            receivers.push(rx);
        }
        lines.sort_by_key(|l| l.seq);
        let skip = lines.len().saturating_sub(n);
        Ok((lines.split_off(skip), receivers))
    }

    /// Every version: deployed here, or only registered (`external`).
    pub(crate) fn list(&self) -> Vec<VersionStatus> {
        let keys: Vec<Key> = self.deployments.lock().keys().cloned().collect();
        let mut out: Vec<VersionStatus> = keys
            .iter()
            .filter_map(|(s, v)| self.status_of(s, v))
            .collect();
        let registry = self.shared.registry.lock();
        let mut external: BTreeMap<Key, (usize, u64)> = BTreeMap::new();
        for info in registry.instances() {
            let key = (info.service.clone(), info.version.clone());
            if keys.contains(&key) {
                continue;
            }
            let e = external.entry(key).or_insert((0, u64::MAX));
            e.0 += 1;
            e.1 = e.1.min(info.started_ms);
        }
        for ((service, version), (count, since)) in external {
            out.push(VersionStatus {
                main: registry.mains().get(&service) == Some(&version),
                service,
                version,
                status: Status::External,
                reason: None,
                wanted: count as u32,
                registered: count,
                since_ms: Some(since),
                deployed_ms: None,
                sha256: None,
                instances: Vec::new(),
            });
        }
        out.sort_by(|a, b| (&a.service, &a.version).cmp(&(&b.service, &b.version)));
        out
    }

    fn status_of(&self, service: &str, version: &Version) -> Option<VersionStatus> {
        let (record, instances) = {
            let all = self.deployments.lock();
            let d = all.get(&(service.to_owned(), version.clone()))?;
            (d.record.clone(), d.instances.clone())
        };
        let (registered_pids, main): (HashMap<String, Option<u32>>, bool) = {
            let registry = self.shared.registry.lock();
            (
                registry
                    .instances()
                    .filter(|i| i.service == service && &i.version == version)
                    .map(|i| (i.id.clone(), i.pid))
                    .collect(),
                registry.mains().get(service) == Some(version),
            )
        };
        let mut statuses = Vec::new();
        let mut crashing = None;
        for inst in &instances {
            let snap = inst.snapshot();
            let registered = snap.phase == Phase::Running
                && registered_pids
                    .get(&inst.id)
                    .is_some_and(|pid| pid.is_none() || *pid == snap.pid);
            if !registered && snap.crashes >= CRASH_LOOP && crashing.is_none() {
                crashing = Some(format!(
                    "instance {} {} ({} restarts)",
                    inst.id,
                    snap.last_exit.clone().unwrap_or_default(),
                    snap.restarts
                ));
            }
            statuses.push(InstanceStatus {
                id: inst.id.clone(),
                pid: snap.pid,
                registered,
                state: match (snap.phase, registered) {
                    (Phase::Running, true) => "running",
                    (Phase::Running, false) => "starting",
                    (Phase::Backoff, _) => "restarting",
                    (Phase::Stopped, _) => "stopped",
                }
                .to_owned(),
                started_ms: snap.started_ms,
                restarts: snap.restarts,
                last_exit: snap.last_exit,
            });
        }
        let registered = statuses.iter().filter(|s| s.registered).count();
        let status = if crashing.is_some() {
            Status::Crashing
        } else if record.instances == 0 {
            Status::Stopped
        } else if registered >= record.instances as usize {
            Status::Running
        } else {
            Status::Starting
        };
        Some(VersionStatus {
            service: service.to_owned(),
            version: version.clone(),
            main,
            status,
            reason: crashing,
            wanted: record.instances,
            registered,
            since_ms: statuses
                .iter()
                .filter(|s| s.registered)
                .map(|s| s.started_ms)
                .min(),
            deployed_ms: Some(record.deployed_ms),
            sha256: Some(record.sha256),
            instances: statuses,
        })
    }
}

fn next_id(d: &mut Deployment) -> String {
    let id = format!("{}-{}-{}", d.record.service, d.record.version, d.next);
    d.next += 1;
    id
}

fn list(versions: &[Version]) -> String {
    versions
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn start_failure(inst: &Instance, what: &str) -> Error {
    let lines = inst.last_lines(FAILURE_LINES);
    let output = if lines.is_empty() {
        "it wrote no output".to_owned()
    } else {
        format!(
            "its last {} lines of output:\n{}",
            lines.len(),
            lines
                .iter()
                .map(|l| format!("  | {l}"))
                .collect::<Vec<_>>()
                .join("\n")
        )
    };
    Error::new(
        Code::InvalidArgument,
        format!(
            "instance {} {what}; {output}\nfix the service and deploy again; the versions that ran before are untouched",
            inst.id
        ),
    )
}

/// Kills instances a previous host on this data dir left behind (it was
/// killed before it could stop them): they would register again and
/// collide with the instances started now.
fn kill_orphans(tag: &str) {
    let needle = format!("{}={tag}\0", instance::SUPERVISOR_ENV);
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    let me = std::process::id();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        if pid as u32 == me {
            continue;
        }
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        let mut with_nul = environ;
        with_nul.push(0);
        if with_nul
            .windows(needle.len())
            .any(|w| w == needle.as_bytes())
        {
            tracing::warn!(pid, "killing an instance a previous host left running");
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_addresses_become_loopback() {
        let a: Address = "0.0.0.0:7400".parse().unwrap();
        assert_eq!(reachable(&a), "tcp://127.0.0.1:7400");
        let a: Address = "127.0.0.1:7400".parse().unwrap();
        assert_eq!(reachable(&a), "tcp://127.0.0.1:7400");
    }

    #[test]
    fn times_are_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_795_348_578_999), "2026-11-22T11:56:18Z");
    }

    #[test]
    fn times_read_back() {
        for ms in [0, 951_782_400_000, 1_795_348_578_000, 4_107_542_399_000] {
            assert_eq!(parse_rfc3339(&rfc3339(ms)), Some(ms), "{}", rfc3339(ms));
        }
        for bad in [
            "",
            "2026-11-22 11:56:18Z",
            "2026-13-22T11:56:18Z",
            "2026-11-22T24:00:00Z",
            "2026-11-22T11:56:18",
            "+026-11-22T11:56:18Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }
}
