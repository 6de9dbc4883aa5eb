//! Changing what runs: the main version, killing versions, scaling them.

use weft_core::Error;
use weft_core::name::Version;
use weft_host_api::deployments::VersionStatus;

use super::Supervisor;
use super::types::list;

impl Supervisor {
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
            if let Some(there) = self.deployed_elsewhere(service, version.as_ref()).await {
                return Err(elsewhere(service, version.as_ref(), &there, "kill"));
            }
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
                if let Some(there) = self.deployed_elsewhere(service, Some(&v)).await {
                    return Err(elsewhere(service, Some(&v), &there, "kill"));
                }
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
                self.backend.remove(service, v).await?;
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
        let here = {
            let all = self.deployments.lock();
            all.get(&key).map(|d| {
                let program = self.program(service, version, &d.record.sha256);
                (
                    d.instances.clone(),
                    self.launch(&d.record, program, d.logs.clone()),
                    d.record.clone(),
                )
            })
        };
        let Some((current, launch, record)) = here else {
            return Err(
                match self.deployed_elsewhere(service, Some(version)).await {
                    Some(there) => elsewhere(service, Some(version), &there, "scale"),
                    None => Error::not_found(format!(
                        "version {version} of `{service}` is not deployed on this host; `weft ls` lists versions, `weft deploy` deploys one"
                    )),
                },
            );
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
        self.store(&key, record).await?;
        tracing::info!(%service, %version, instances = n, "scaled");
        self.status_of(service, version)
            .ok_or_else(|| Error::internal("the deployment vanished while it was scaled"))
    }
}

/// What `weft kill` or `weft scale` (`verb`) of a version that another host
/// runs answers: where it runs, since each host manages only its own.
fn elsewhere(service: &str, version: Option<&Version>, there: &str, verb: &str) -> Error {
    let what = match version {
        Some(v) => format!("version {v} of `{service}`"),
        None => format!("`{service}`"),
    };
    Error::invalid_argument(
        "name",
        format!(
            "{what} is deployed on {there}, not on this host, and each host manages what it runs: run `weft {verb}` against that host (--host ADDRESS)"
        ),
    )
}
