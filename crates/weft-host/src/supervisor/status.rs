//! What runs, as `weft ls` and `weft logs` show it: the status of every
//! version, deployed here or started by hand, and the output of instances.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use tokio::sync::broadcast;
use weft_core::Error;
use weft_core::name::Version;
use weft_host_api::deployments::{InstanceState, InstanceStatus, LogLine, Status, VersionStatus};

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

    /// Every version: deployed here, or only registered (`external`).
    pub(crate) fn list(&self) -> Vec<VersionStatus> {
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
            });
        }
        out.sort_by(|a, b| (&a.service, &a.version).cmp(&(&b.service, &b.version)));
        out
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
        })
    }
}
