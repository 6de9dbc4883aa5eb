//! Deploying a version: the first deploy starts its instances, a redeploy
//! replaces them one at a time; either answers once the new instances have
//! registered.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast;
use weft_core::name::Version;
use weft_core::{Code, Error};
use weft_host_api::deployments::VersionStatus;
use weft_registry::WatchEvent;

use super::instance::{self, Instance, Launch};
use super::types::{Deployment, DeploymentRecord, Key, next_id};
use super::{DeployRequest, Staged, Supervisor};
use crate::time::now_ms;

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

impl Supervisor {
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
        check_env(&req.env)?;
        let key: Key = (req.service.clone(), req.version.clone());
        if self.unchanged(&key, req, staged) {
            tracing::info!(service = %req.service, version = %req.version, "deployed again unchanged; its instances run on");
            return Ok(());
        }
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
                            host: self.id_host(),
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
        self.store(&key, record).await?;
        tracing::info!(service = %req.service, version = %req.version, instances = req.instances, "deployed");
        Ok(())
    }

    /// Whether the version runs this very executable with this environment
    /// and number of instances, each of them registered: deploying it again
    /// would only restart them.
    fn unchanged(&self, key: &Key, req: &DeployRequest, staged: &Staged) -> bool {
        let instances: Vec<Arc<Instance>> = match self.deployments.lock().get(key) {
            Some(d)
                if d.record.sha256 == staged.sha256
                    && d.record.env == req.env
                    && d.record.instances == req.instances
                    && d.instances.len() == req.instances as usize =>
            {
                d.instances.clone()
            }
            _ => return false,
        };
        let registry = self.shared.registry.lock();
        instances.iter().all(|inst| {
            matches!(inst.snapshot().phase, instance::Phase::Running)
                && registry.instance(&inst.id).is_some()
        })
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

    /// Takes `record` as the deployment's and stores it, with how it is
    /// listed now.
    pub(super) async fn store(&self, key: &Key, record: DeploymentRecord) -> Result<(), Error> {
        if let Some(d) = self.deployments.lock().get_mut(key) {
            d.record = record.clone();
        }
        let status = self.status_of(&key.0, &key.1).ok_or_else(|| {
            Error::internal("the deployment vanished while it was stored; deploy again")
        })?;
        self.backend.put(record, status).await
    }

    fn next_id(&self, key: &Key) -> String {
        match self.deployments.lock().get_mut(key) {
            Some(d) => next_id(d),
            None => format!("{}-{}-0", key.0, key.1),
        }
    }

    /// Stops instances and takes them out of the deployment.
    pub(super) async fn remove_instances(&self, key: &Key, which: &[Arc<Instance>]) {
        futures::future::join_all(which.iter().map(|i| i.stop())).await;
        if let Some(d) = self.deployments.lock().get_mut(key) {
            d.instances
                .retain(|i| !which.iter().any(|w| Arc::ptr_eq(i, w)));
        }
    }

    /// Starts `n` instances and waits until all have registered; on a
    /// failure, stops them all again.
    pub(super) async fn start_and_wait(
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
}

/// Refuses environment variables a deployment may not set.
pub(crate) fn check_env(env: &[(String, String)]) -> Result<(), Error> {
    for (k, _) in env {
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
    Ok(())
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
