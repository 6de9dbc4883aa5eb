//! Deployments across the hosts of a cluster. A deploy with `on` puts the
//! executable into the cluster's artifacts once and asks each host named
//! to deploy it (this one deploys it itself); each of those hosts fetches
//! it, checks its SHA-256, and deploys it as if it had been uploaded to
//! it. A scale or a kill of a version acts on every host that runs it
//! (a scale runs N instances on each of them). Each host still
//! supervises only what runs on it: the others only ask.

use std::collections::BTreeSet;
use std::sync::Arc;

use futures::FutureExt as _;
use futures::future::BoxFuture;
use weft_core::name::Version;
use weft_core::{Code, Error};
use weft_host_api::deployments::{DeployAnswer, HostOutcome, Killed, Placed, VersionStatus};
use weft_host_api::hosts::HostState;

use super::types::DeploymentRecord;
use super::{DeployRequest, MAX_ARTIFACT, Staged, Supervisor};
use crate::backend::{Order, OrderHandler};
use crate::time::now_ms;

impl Supervisor {
    /// The hosts `on` names: `all` (every host that is up), or names
    /// separated by commas, each of a host that is up. A host of its own
    /// knows only itself.
    pub(crate) async fn hosts_on(&self, on: &str) -> Result<Vec<String>, Error> {
        let me = self.shared.identity.name.clone();
        let names: BTreeSet<String> = on
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(str::to_owned)
            .collect();
        if names.is_empty() {
            return Err(Error::invalid_argument(
                "on",
                "--on names no host; write --on HOST[,HOST...] or --on all",
            ));
        }
        if names.contains("all") && names.len() > 1 {
            return Err(Error::invalid_argument(
                "on",
                "--on all already means every host that is up; leave out the other names",
            ));
        }
        if !self.backend.clustered() {
            if let Some(other) = names.iter().find(|n| *n != "all" && **n != me) {
                return Err(Error::invalid_argument(
                    "on",
                    format!(
                        "this host (`{me}`) is not in a cluster (it was started without --nats), so it cannot deploy on `{other}`; \
                         start the hosts with `weft host --nats URL --name NAME`, or leave out --on"
                    ),
                ));
            }
            return Ok(vec![me]);
        }
        let hosts = self.shared.cluster.hosts(&self.shared).await?;
        let up = |state: HostState| state != HostState::Down;
        if names.contains("all") {
            return Ok(hosts
                .into_iter()
                .filter(|h| up(h.state))
                .map(|h| h.name)
                .collect());
        }
        for name in &names {
            match hosts.iter().find(|h| h.name == *name) {
                None => {
                    let known: Vec<&str> = hosts.iter().map(|h| h.name.as_str()).collect();
                    return Err(Error::invalid_argument(
                        "on",
                        format!(
                            "there is no host `{name}` in the cluster (its hosts: {}); `weft hosts` lists them, --on takes their names",
                            known.join(", ")
                        ),
                    ));
                }
                Some(h) if !up(h.state) => {
                    return Err(Error::unavailable(format!(
                        "host `{name}` ({}) is down: it has not written a heartbeat for two lease times; start it again, or leave it out of --on; nothing was deployed",
                        h.address
                    )));
                }
                Some(_) => {}
            }
        }
        Ok(names.into_iter().collect())
    }

    /// Deploys the executable staged here on `hosts` (this host among them
    /// or not), each host at once; answers what each did.
    pub(crate) async fn deploy_on(
        &self,
        req: DeployRequest,
        staged: Staged,
        hosts: Vec<String>,
    ) -> Result<Placed, Error> {
        let me = self.shared.identity.name.clone();
        let here = hosts.contains(&me);
        let others: Vec<String> = hosts.iter().filter(|h| **h != me).cloned().collect();
        if !others.is_empty()
            && let Err(e) = self
                .backend
                .share_artifact(&staged.sha256, &staged.program)
                .await
        {
            if !here {
                self.drop_staged(&req.service, &req.version).await;
            }
            return Err(e);
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
        let (service, version) = (req.service.clone(), req.version.clone());
        let local = async {
            if here {
                Some(self.deploy(req, staged).await)
            } else {
                self.drop_staged(&service, &version).await;
                None
            }
        };
        let remote = futures::future::join_all(others.iter().map(|host| {
            self.backend.send(
                host,
                Order::Deploy {
                    record: record.clone(),
                },
            )
        }));
        let (local, remote) = tokio::join!(local, remote);
        let mut outcomes: Vec<(HostOutcome, Option<Code>)> = others
            .into_iter()
            .zip(remote)
            .map(|(host, r)| outcome(host, r))
            .collect();
        if let Some(local) = local {
            outcomes.push(outcome(me, local.map(Some)));
        }
        placed(service, version, outcomes, "deployed")
    }

    /// Runs `n` instances of a version on each host that runs it; a version
    /// that only this host runs (always, on a host of its own) is scaled
    /// here alone, as it was before clusters.
    pub(crate) async fn scale_everywhere(
        &self,
        service: &str,
        version: &Version,
        n: u32,
    ) -> Result<DeployAnswer, Error> {
        let (here, others) = self.running_on(service, version).await;
        if others.is_empty() {
            return self
                .scale(service, version, n)
                .await
                .map(DeployAnswer::Here);
        }
        let order = Order::Scale {
            service: service.to_owned(),
            version: version.clone(),
            instances: n,
        };
        let outcomes = self.everywhere(here, others, order).await;
        placed(service.to_owned(), version.clone(), outcomes, "scaled").map(DeployAnswer::Hosts)
    }

    /// Stops a version on every host that runs it and forgets it there.
    pub(crate) async fn kill_everywhere(
        &self,
        service: &str,
        version: &Version,
    ) -> Result<Killed, Error> {
        let (here, others) = self.running_on(service, version).await;
        if others.is_empty() {
            let killed = self.kill(service, Some(version.clone()), false).await?;
            return Ok(Killed {
                killed,
                on: Vec::new(),
            });
        }
        let order = Order::Kill {
            service: service.to_owned(),
            version: version.clone(),
        };
        let outcomes = self.everywhere(here, others, order).await;
        let on = placed(service.to_owned(), version.clone(), outcomes, "killed")?.on;
        Ok(Killed {
            killed: vec![version.clone()],
            on,
        })
    }

    /// Stops the main version of `service` on every host that runs it and
    /// forgets it there; with `all`, every version this host runs (on this
    /// host only).
    pub(crate) async fn kill_service_everywhere(
        &self,
        service: &str,
        all: bool,
    ) -> Result<Killed, Error> {
        let main = self.shared.registry.lock().mains().get(service).cloned();
        match main {
            Some(main) if !all => self.kill_everywhere(service, &main).await,
            // What there is to say (nothing runs, no main) is said here.
            _ => Ok(Killed {
                killed: self.kill(service, None, all).await?,
                on: Vec::new(),
            }),
        }
    }

    /// Whether this host runs `service` `version`, and which other hosts
    /// of the cluster do, as they list it.
    async fn running_on(&self, service: &str, version: &Version) -> (bool, Vec<String>) {
        let here = self
            .deployments
            .lock()
            .contains_key(&(service.to_owned(), version.clone()));
        let me = self.shared.identity.name.as_str();
        let others = match self.backend.others().await {
            Ok(others) => others
                .into_iter()
                .filter(|v| v.service == service && v.version == *version)
                .filter_map(|v| v.host)
                .filter(|h| h != me)
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot tell which other hosts run a version");
                Vec::new()
            }
        };
        (here, others)
    }

    /// Carries out `order` here (when `here`) and on `others`, all at once.
    async fn everywhere(
        &self,
        here: bool,
        others: Vec<String>,
        order: Order,
    ) -> Vec<(HostOutcome, Option<Code>)> {
        let me = self.shared.identity.name.clone();
        let local = async {
            if here {
                Some(self.carry_out(order.clone()).await)
            } else {
                None
            }
        };
        let remote = futures::future::join_all(
            others
                .iter()
                .map(|host| self.backend.send(host, order.clone())),
        );
        let (local, remote) = tokio::join!(local, remote);
        let mut outcomes: Vec<(HostOutcome, Option<Code>)> = others
            .into_iter()
            .zip(remote)
            .map(|(host, r)| outcome(host, r))
            .collect();
        if let Some(local) = local {
            outcomes.push(outcome(me, local));
        }
        outcomes
    }

    /// Carries out an order on this host only.
    async fn carry_out(&self, order: Order) -> Result<Option<VersionStatus>, Error> {
        match order {
            Order::Deploy { record } => {
                let staged = self.fetch(&record).await?;
                let req = DeployRequest {
                    service: record.service,
                    version: record.version,
                    instances: record.instances,
                    env: record.env,
                };
                self.deploy(req, staged).await.map(Some)
            }
            Order::Scale {
                service,
                version,
                instances,
            } => self.scale(&service, &version, instances).await.map(Some),
            Order::Kill { service, version } => {
                self.kill(&service, Some(version), false).await?;
                Ok(None)
            }
        }
    }

    /// Fetches the executable of `record` from the cluster's artifacts and
    /// stores it as an upload is stored, checking its SHA-256.
    pub(super) async fn fetch(&self, record: &DeploymentRecord) -> Result<Staged, Error> {
        let stream = self.backend.fetch_artifact(&record.sha256).await?;
        let staged = self
            .stage(&record.service, &record.version, stream, MAX_ARTIFACT)
            .await?;
        if staged.sha256 != record.sha256 {
            self.drop_staged(&record.service, &record.version).await;
            self.backend.drop_artifact(&record.sha256).await;
            return Err(Error::invalid_argument(
                "sha256",
                format!(
                    "the executable of {} {} fetched from the cluster has the SHA-256 {}, not {} as deployed, so it was refused \
                     (and removed from the cluster's artifacts); deploy the version again",
                    record.service, record.version, staged.sha256, record.sha256
                ),
            ));
        }
        Ok(staged)
    }

    /// Removes what was staged for a version this host does not run (or
    /// does not run with that executable).
    async fn drop_staged(&self, service: &str, version: &Version) {
        let keep: Option<String> = self
            .deployments
            .lock()
            .get(&(service.to_owned(), version.clone()))
            .map(|d| d.record.sha256.clone());
        self.prune_artifacts(service, version, keep.as_deref())
            .await;
    }

    /// This host's deployments that the cluster keeps for it but its store
    /// lacks (a data dir lost or new): fetched from the cluster's
    /// artifacts and stored, ready to start.
    pub(super) async fn missing_from_store(
        &self,
        stored: &[DeploymentRecord],
    ) -> Vec<(DeploymentRecord, Staged)> {
        let desired = match self.backend.desired().await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read what the cluster keeps for this host; restoring from its own store only");
                return Vec::new();
            }
        };
        let mut out = Vec::new();
        for record in desired {
            if stored
                .iter()
                .any(|r| r.service == record.service && r.version == record.version)
            {
                continue;
            }
            match self.fetch(&record).await {
                Ok(staged) => out.push((record, staged)),
                Err(e) => {
                    tracing::error!(service = %record.service, version = %record.version, error = %e, "cannot restore a deployment the cluster keeps for this host");
                }
            }
        }
        out
    }
}

impl OrderHandler for Supervisor {
    fn handle(&self, order: Order) -> BoxFuture<'_, Result<Option<VersionStatus>, Error>> {
        self.carry_out(order).boxed()
    }
}

/// What a host did, from its answer, with the code of its error.
fn outcome(
    host: String,
    result: Result<Option<VersionStatus>, Error>,
) -> (HostOutcome, Option<Code>) {
    match result {
        Ok(status) => (
            HostOutcome {
                host,
                status,
                error: None,
            },
            None,
        ),
        Err(e) => (
            HostOutcome {
                host,
                status: None,
                error: Some(e.message().to_owned()),
            },
            Some(e.code()),
        ),
    }
}

/// The answer of an operation on several hosts: what each did, ordered by
/// host; an error when none did it.
fn placed(
    service: String,
    version: Version,
    mut outcomes: Vec<(HostOutcome, Option<Code>)>,
    done: &str,
) -> Result<Placed, Error> {
    outcomes.sort_by(|a, b| a.0.host.cmp(&b.0.host));
    let mut codes: Vec<Code> = Vec::new();
    for code in outcomes.iter().filter_map(|(_, c)| *c) {
        if !codes.contains(&code) {
            codes.push(code);
        }
    }
    let on: Vec<HostOutcome> = outcomes.into_iter().map(|(o, _)| o).collect();
    if !on.is_empty() && on.iter().all(|o| !o.ok()) {
        let why: Vec<String> = on
            .iter()
            .map(|o| format!("{}: {}", o.host, o.error.as_deref().unwrap_or_default()))
            .collect();
        // The hosts' own code when they agree (an instance that exits at
        // start is the service's fault everywhere).
        let code = match codes.len() {
            1 => codes[0],
            _ => Code::Unavailable,
        };
        return Err(Error::new(
            code,
            format!(
                "{service} {version} was not {done} on any host: {}",
                why.join("; ")
            ),
        ));
    }
    Ok(Placed {
        service,
        version,
        on,
    })
}

/// Keeps the supervisor serving orders from other hosts while it runs.
pub(super) fn serve_orders(
    supervisor: &Arc<Supervisor>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let handler: Arc<dyn OrderHandler> = supervisor.clone();
    tokio::spawn(supervisor.backend.clone().serve(handler, stop))
}
