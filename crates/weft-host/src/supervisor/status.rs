//! What runs, as `weft ls` and `weft logs` show it: the status of every
//! version, deployed here, on another host of the cluster, or started by
//! hand, and the output of instances.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use tokio::sync::broadcast;
use weft_core::Error;
use weft_core::name::Version;
use weft_host_api::deployments::{InstanceState, InstanceStatus, LogLine, Status, VersionStatus};
use weft_host_api::hosts::HostState;
use weft_registry::Registry;

use super::Supervisor;
use super::instance::{CRASH_LOOP, Phase};
use super::logs::LogRing;
use super::types::{Key, list};

impl Supervisor {
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

    /// Every version: deployed here, deployed on another host of the
    /// cluster, or only registered (`external`).
    pub(crate) async fn list(&self) -> Result<Vec<VersionStatus>, Error> {
        let others = self.backend.others().await?;
        // The hosts up now; `None` when that cannot be told.
        let up: Option<BTreeSet<String>> = if others.is_empty() {
            None
        } else {
            match self.shared.cluster.hosts(&self.shared).await {
                Ok(hosts) => Some(
                    hosts
                        .into_iter()
                        .filter(|h| h.state == HostState::Up)
                        .map(|h| h.name)
                        .collect(),
                ),
                Err(e) => {
                    tracing::debug!(error = %e, "cannot tell which hosts are up");
                    None
                }
            }
        };
        let keys: Vec<Key> = self.deployments.lock().keys().cloned().collect();
        let mut out: Vec<VersionStatus> = keys
            .iter()
            .filter_map(|(s, v)| self.status_of(s, v))
            .collect();
        let registry = self.shared.registry.lock();
        let mut hosts: BTreeMap<Key, BTreeSet<String>> = BTreeMap::new();
        for info in registry.instances() {
            if let Some(host) = &info.host {
                hosts
                    .entry((info.service.clone(), info.version.clone()))
                    .or_default()
                    .insert(host.clone());
            }
        }
        let hosts_of = |service: &str, version: &Version| -> Vec<String> {
            hosts
                .get(&(service.to_owned(), version.clone()))
                .map(|h| h.iter().cloned().collect())
                .unwrap_or_default()
        };
        let mut deployed: BTreeSet<Key> = keys.into_iter().collect();
        for mut theirs in others {
            deployed.insert((theirs.service.clone(), theirs.version.clone()));
            theirs.hosts = hosts_of(&theirs.service, &theirs.version);
            let host_down = match (&up, &theirs.host) {
                (Some(up), Some(host)) => !up.contains(host),
                _ => false,
            };
            as_seen_here(&mut theirs, &registry, host_down);
            out.push(theirs);
        }
        let mut external: BTreeMap<Key, (usize, u64)> = BTreeMap::new();
        for info in registry.instances() {
            let key = (info.service.clone(), info.version.clone());
            if deployed.contains(&key) {
                continue;
            }
            let e = external.entry(key).or_insert((0, u64::MAX));
            e.0 += 1;
            e.1 = e.1.min(info.started_ms);
        }
        for ((service, version), (count, since)) in external {
            let hosts = hosts_of(&service, &version);
            out.push(VersionStatus {
                hosts,
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
                host: None,
            });
        }
        out.sort_by(|a, b| {
            (&a.service, &a.version, &a.host).cmp(&(&b.service, &b.version, &b.host))
        });
        Ok(out)
    }

    /// Where `service` (its `version`, or any) is deployed in the cluster
    /// when not on this host, for messages: `host b (tcp://10.0.0.8:7400)`.
    pub(super) async fn deployed_elsewhere(
        &self,
        service: &str,
        version: Option<&Version>,
    ) -> Option<String> {
        let others = self.backend.others().await.ok()?;
        let mut owners: Vec<String> = others
            .into_iter()
            .filter(|v| v.service == service && version.is_none_or(|want| *want == v.version))
            .filter_map(|v| v.host)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        if owners.is_empty() {
            return None;
        }
        if let Ok(hosts) = self.shared.cluster.hosts(&self.shared).await {
            for owner in &mut owners {
                if let Some(h) = hosts.iter().find(|h| h.name == *owner) {
                    *owner = format!("{owner} ({})", h.address);
                }
            }
        }
        Some(format!(
            "host{} {}",
            if owners.len() > 1 { "s" } else { "" },
            owners.join(", ")
        ))
    }

    pub(super) fn status_of(&self, service: &str, version: &Version) -> Option<VersionStatus> {
        let (record, instances) = {
            let all = self.deployments.lock();
            let d = all.get(&(service.to_owned(), version.clone()))?;
            (d.record.clone(), d.instances.clone())
        };
        let (registered_pids, main, hosts): (HashMap<String, Option<u32>>, bool, BTreeSet<String>) = {
            let registry = self.shared.registry.lock();
            let of_version = || {
                registry
                    .instances()
                    .filter(|i| i.service == service && &i.version == version)
            };
            (
                of_version().map(|i| (i.id.clone(), i.pid)).collect(),
                registry.mains().get(service) == Some(version),
                of_version().filter_map(|i| i.host.clone()).collect(),
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
                    (Phase::Running, true) => InstanceState::Running,
                    (Phase::Running, false) => InstanceState::Starting,
                    (Phase::Backoff, _) => InstanceState::Restarting,
                    (Phase::Stopped, _) => InstanceState::Stopped,
                },
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
            hosts: hosts.into_iter().collect(),
            host: Some(self.shared.identity.name.clone()),
        })
    }
}

/// A deployment of another host as this host sees it: its registration
/// and main version as this host's registry (the cluster's) has them now,
/// the rest as its host last reported it.
fn as_seen_here(v: &mut VersionStatus, registry: &Registry, host_down: bool) {
    let registered: HashSet<&str> = registry
        .instances()
        .filter(|i| i.service == v.service && i.version == v.version && i.host == v.host)
        .map(|i| i.id.as_str())
        .collect();
    for instance in &mut v.instances {
        instance.registered = registered.contains(instance.id.as_str());
    }
    v.registered = registered.len();
    v.main = registry.mains().get(&v.service) == Some(&v.version);
    v.since_ms = v
        .instances
        .iter()
        .filter(|i| i.registered)
        .map(|i| i.started_ms)
        .min();
    v.status = if v.wanted == 0 {
        Status::Stopped
    } else if v.registered >= v.wanted as usize {
        Status::Running
    } else if v.status == Status::Crashing {
        Status::Crashing
    } else {
        Status::Starting
    };
    if v.status != Status::Crashing {
        v.reason = None;
    }
    if host_down && let Some(host) = &v.host {
        v.reason = Some(format!("its host `{host}` is not up"));
    }
}
