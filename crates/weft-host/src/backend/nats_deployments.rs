//! Deployments shared through NATS JetStream: each host keeps its own
//! deployments in its data dir, as a host on its own does (and restores
//! them from there when it starts again), and writes how each is listed
//! into the key-value bucket `weft_deployments`, under
//! `<host>.<service>.<version>` (service and version encoded as keys must
//! be). Every host follows the bucket, so that `weft ls` on any host lists
//! every host's deployments, each with its host.
//!
//! A host writes an entry when it deploys, scales or kills, and again when
//! the entry would read differently (an instance registered, crashed,
//! restarted); an entry it could not write is written at its next report.
//! A killed deployment's entry is deleted; an entry of this host that its
//! store does not hold (left from before a restart, or a delete that did
//! not reach NATS) is deleted at the next report. The environment of a
//! deployment (`--env`) stays on its host: it may hold secrets.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::kv;
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{FutureExt as _, StreamExt as _};
use parking_lot::Mutex;
use tokio::sync::watch;
use weft_core::Error;
use weft_core::backoff::Backoff;
use weft_core::name::Version;
use weft_host_api::deployments::VersionStatus;

use super::deployments::{DeploymentBackend, StoredDeployments};
use super::nats::{NatsCluster, encode_id, open_bucket};
use crate::supervisor::DeploymentRecord;

/// The bucket every host of a cluster lists its deployments in.
const BUCKET: &str = "weft_deployments";

/// How long writing to or deleting from the bucket may take: a deploy
/// waits for it.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// This host's deployments in its store, and every host's in the bucket.
#[derive(Clone)]
pub(super) struct NatsDeployments {
    inner: Arc<Inner>,
}

struct Inner {
    stored: StoredDeployments,
    kv: kv::Store,
    host: String,
    /// The keys of this host's stored deployments, each with the value
    /// last written for it (`None` until one is). Locked across writes,
    /// so that a report computed before a kill cannot write the killed
    /// deployment back.
    mine: tokio::sync::Mutex<BTreeMap<String, Option<Bytes>>>,
    /// Every host's deployments as the bucket holds them, by key.
    seen: Mutex<BTreeMap<String, VersionStatus>>,
}

impl fmt::Debug for NatsDeployments {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsDeployments")
            .field("bucket", &BUCKET)
            .field("host", &self.inner.host)
            .finish()
    }
}

/// The key of `service` `version` deployed on `host`.
fn key(host: &str, service: &str, version: &Version) -> String {
    format!(
        "{host}.{}.{}",
        encode_id(service),
        encode_id(&version.to_string())
    )
}

/// The host a key belongs to: all before the service and the version,
/// which are encoded without dots.
fn host_of(key: &str) -> Option<&str> {
    let mut parts = key.rsplitn(3, '.');
    let (_version, _service) = (parts.next()?, parts.next()?);
    parts.next()
}

impl NatsDeployments {
    /// Opens (or creates) the bucket in the cluster's JetStream, with as
    /// many replicas as the cluster's other buckets; `stored` keeps this
    /// host's deployments.
    pub(super) async fn open(
        cluster: &NatsCluster,
        stored: StoredDeployments,
        servers: &str,
    ) -> Result<NatsDeployments, Error> {
        let kv = open_bucket(
            cluster.jetstream(),
            kv::Config {
                bucket: BUCKET.to_owned(),
                description: "weft: every host's deployments, written by their host".to_owned(),
                history: 1,
                num_replicas: cluster.replicas(),
                ..kv::Config::default()
            },
            servers,
        )
        .await?;
        Ok(NatsDeployments {
            inner: Arc::new(Inner {
                stored,
                kv,
                host: cluster.host_name().to_owned(),
                mine: tokio::sync::Mutex::new(BTreeMap::new()),
                seen: Mutex::new(BTreeMap::new()),
            }),
        })
    }
}

impl Inner {
    /// Writes `status` under `key` unless that is what was written last;
    /// remembers it once written.
    async fn write(
        &self,
        mine: &mut BTreeMap<String, Option<Bytes>>,
        key: &str,
        status: &VersionStatus,
    ) {
        let mut status = status.clone();
        status.host = Some(self.host.clone());
        let value = match serde_json::to_vec(&status) {
            Ok(v) => Bytes::from(v),
            Err(e) => {
                tracing::error!(%key, error = %e, "cannot encode a deployment for the cluster");
                return;
            }
        };
        if mine
            .get(key)
            .is_some_and(|last| last.as_ref() == Some(&value))
        {
            return;
        }
        match tokio::time::timeout(WRITE_TIMEOUT, self.kv.put(key, value.clone())).await {
            Ok(Ok(_)) => {
                mine.insert(key.to_owned(), Some(value));
            }
            Ok(Err(e)) => {
                tracing::warn!(%key, error = %e, "cannot list a deployment in the cluster; trying again at the next report")
            }
            Err(_) => {
                tracing::warn!(%key, "listing a deployment in the cluster took too long; trying again at the next report")
            }
        }
    }

    async fn delete(&self, key: &str) {
        match tokio::time::timeout(WRITE_TIMEOUT, self.kv.delete(key)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(%key, error = %e, "cannot take a deployment off the cluster's list; trying again at the next report")
            }
            Err(_) => {
                tracing::warn!(%key, "taking a deployment off the cluster's list took too long; trying again at the next report")
            }
        }
    }

    /// Takes one change of the bucket.
    fn apply(&self, entry: kv::Entry) {
        match entry.operation {
            kv::Operation::Put => match serde_json::from_slice::<VersionStatus>(&entry.value) {
                Ok(mut status) => {
                    // The key says whose it is.
                    status.host = host_of(&entry.key).map(str::to_owned);
                    self.seen.lock().insert(entry.key, status);
                }
                Err(e) => {
                    tracing::warn!(key = %entry.key, error = %e, "skipping an unreadable deployment in the cluster")
                }
            },
            kv::Operation::Delete | kv::Operation::Purge => {
                self.seen.lock().remove(&entry.key);
            }
        }
    }

    /// Follows the bucket from its current state on until `stop`, watching
    /// it again after a break.
    async fn follow(&self, mut stop: watch::Receiver<bool>) {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        loop {
            let watched = tokio::select! {
                w = self.kv.watch_with_history(">") => w,
                () = stopped(&mut stop) => return,
            };
            match watched {
                Ok(mut entries) => loop {
                    tokio::select! {
                        entry = entries.next() => match entry {
                            Some(Ok(entry)) => {
                                backoff.reset();
                                self.apply(entry);
                            }
                            Some(Err(e)) => {
                                tracing::warn!(bucket = BUCKET, error = %e, "a watch of the cluster broke off; watching again");
                                break;
                            }
                            None => break,
                        },
                        () = stopped(&mut stop) => return,
                    }
                },
                Err(e) => {
                    tracing::warn!(bucket = BUCKET, error = %e, "cannot watch the cluster's deployments; trying again");
                }
            }
            tokio::select! {
                () = tokio::time::sleep(backoff.next_delay()) => {}
                () = stopped(&mut stop) => return,
            }
        }
    }
}

/// Resolves once `stop` turns true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns must not live across an await point.
    let _ = stop.wait_for(|s| *s).await.map(|_| ());
}

impl DeploymentBackend for NatsDeployments {
    fn load(&self) -> BoxFuture<'static, Result<Vec<DeploymentRecord>, Error>> {
        let inner = self.inner.clone();
        async move {
            let records = inner.stored.load().await?;
            let mut mine = inner.mine.lock().await;
            for r in &records {
                mine.entry(key(&inner.host, &r.service, &r.version))
                    .or_insert(None);
            }
            Ok(records)
        }
        .boxed()
    }

    fn put(
        &self,
        record: DeploymentRecord,
        status: VersionStatus,
    ) -> BoxFuture<'static, Result<(), Error>> {
        let inner = self.inner.clone();
        async move {
            let key = key(&inner.host, &record.service, &record.version);
            inner.stored.put(record, status.clone()).await?;
            let mut mine = inner.mine.lock().await;
            mine.entry(key.clone()).or_insert(None);
            inner.write(&mut mine, &key, &status).await;
            Ok(())
        }
        .boxed()
    }

    fn remove(&self, service: &str, version: &Version) -> BoxFuture<'static, Result<(), Error>> {
        let inner = self.inner.clone();
        let key = key(&inner.host, service, version);
        let removed = inner.stored.remove(service, version);
        async move {
            removed.await?;
            let mut mine = inner.mine.lock().await;
            mine.remove(&key);
            inner.delete(&key).await;
            Ok(())
        }
        .boxed()
    }

    fn report(&self, statuses: Vec<VersionStatus>) -> BoxFuture<'static, ()> {
        let inner = self.inner.clone();
        async move {
            let mut mine = inner.mine.lock().await;
            for status in &statuses {
                let key = key(&inner.host, &status.service, &status.version);
                // Only what is stored: a deploy still starting may fail.
                if mine.contains_key(&key) {
                    inner.write(&mut mine, &key, status).await;
                }
            }
            let stale: BTreeSet<String> = inner
                .seen
                .lock()
                .keys()
                .filter(|k| host_of(k) == Some(inner.host.as_str()) && !mine.contains_key(*k))
                .cloned()
                .collect();
            for key in stale {
                inner.delete(&key).await;
            }
        }
        .boxed()
    }

    fn others(&self) -> BoxFuture<'static, Result<Vec<VersionStatus>, Error>> {
        let host = self.inner.host.as_str();
        let others = self
            .inner
            .seen
            .lock()
            .iter()
            .filter(|(k, _)| host_of(k) != Some(host))
            .map(|(_, v)| v.clone())
            .collect();
        futures::future::ready(Ok(others)).boxed()
    }

    fn run(self: Arc<Self>, stop: watch::Receiver<bool>) -> BoxFuture<'static, ()> {
        async move { self.inner.follow(stop).await }.boxed()
    }

    fn close(&self) {
        self.inner.stored.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_names_its_host() {
        let v = Version::new(1, 2, 0);
        let k = key("box1", "die_roller", &v);
        assert_eq!(k, "box1.die_roller.1=2E2=2E0");
        assert_eq!(host_of(&k), Some("box1"));
        assert_eq!(host_of(&key("rack.box1", "a.b", &v)), Some("rack.box1"));
        assert_eq!(host_of("nodots"), None);
    }
}
