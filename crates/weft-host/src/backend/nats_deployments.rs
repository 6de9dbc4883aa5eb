//! Deployments shared through NATS JetStream: each host keeps its own
//! deployments in its data dir, as a host on its own does (and restores
//! them from there when it starts again), and writes how each is listed
//! into the key-value bucket `weft_deployments`, under
//! `<host>.<service>.<version>` (service and version encoded as keys must
//! be). Every host follows the bucket, so that `weft ls` on any host lists
//! every host's deployments, each with its host.
//!
//! A host writes an entry when it deploys, scales or kills, when the entry
//! would read differently (an instance registered, crashed, restarted),
//! and all of them every [`REWRITE_EVERY`], so that a NATS that lost its
//! store (restarted without it) has them back: a write that fails makes
//! the bucket again and is tried once more, and what still fails is tried
//! at the next report. A killed deployment's entry is deleted; an entry of
//! this host that its store does not hold (left from before a restart, or
//! a delete that did not reach NATS) is deleted at the next report. A
//! watch of the bucket that breaks off or hears nothing for two rewrite
//! times is made again. The environment of a deployment (`--env`) stays
//! on its host: it may hold secrets.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, kv};
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

/// How often a host writes all of its entries, changed or not.
const REWRITE_EVERY: Duration = Duration::from_secs(10);

/// This host's deployments in its store, and every host's in the bucket.
#[derive(Clone)]
pub(super) struct NatsDeployments {
    inner: Arc<Inner>,
}

struct Inner {
    stored: StoredDeployments,
    kv: kv::Store,
    /// What the bucket is made from again when NATS lost it.
    js: jetstream::Context,
    config: kv::Config,
    servers: String,
    host: String,
    /// The keys of this host's stored deployments, each with the value
    /// last written for it (`None` until one is). Locked across writes,
    /// so that a report computed before a kill cannot write the killed
    /// deployment back.
    mine: tokio::sync::Mutex<BTreeMap<String, Option<Bytes>>>,
    /// When all of this host's entries were last written, changed or not.
    rewritten: Mutex<Instant>,
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
        let config = kv::Config {
            bucket: BUCKET.to_owned(),
            description: "weft: every host's deployments, written by their host".to_owned(),
            history: 1,
            num_replicas: cluster.replicas(),
            ..kv::Config::default()
        };
        let js = cluster.jetstream().clone();
        let kv = open_bucket(&js, config.clone(), servers).await?;
        Ok(NatsDeployments {
            inner: Arc::new(Inner {
                stored,
                kv,
                js,
                config,
                servers: servers.to_owned(),
                host: cluster.host_name().to_owned(),
                mine: tokio::sync::Mutex::new(BTreeMap::new()),
                rewritten: Mutex::new(Instant::now()),
                seen: Mutex::new(BTreeMap::new()),
            }),
        })
    }
}

impl Inner {
    /// Writes `status` under `key` unless that is what was written last;
    /// remembers it once written. False when the write failed.
    async fn write(
        &self,
        mine: &mut BTreeMap<String, Option<Bytes>>,
        key: &str,
        status: &VersionStatus,
    ) -> bool {
        let mut status = status.clone();
        status.host = Some(self.host.clone());
        let value = match serde_json::to_vec(&status) {
            Ok(v) => Bytes::from(v),
            Err(e) => {
                tracing::error!(%key, error = %e, "cannot encode a deployment for the cluster");
                return true;
            }
        };
        if mine
            .get(key)
            .is_some_and(|last| last.as_ref() == Some(&value))
        {
            return true;
        }
        match tokio::time::timeout(WRITE_TIMEOUT, self.kv.put(key, value.clone())).await {
            Ok(Ok(_)) => {
                mine.insert(key.to_owned(), Some(value));
                true
            }
            Ok(Err(e)) => {
                tracing::warn!(%key, error = %e, "cannot list a deployment in the cluster; trying again at the next report");
                false
            }
            Err(_) => {
                tracing::warn!(%key, "listing a deployment in the cluster took too long; trying again at the next report");
                false
            }
        }
    }

    /// Writes what changed of `statuses` (those stored only); stops at the
    /// first write that fails, NATS being away or without the bucket.
    async fn write_all(
        &self,
        mine: &mut BTreeMap<String, Option<Bytes>>,
        statuses: &[VersionStatus],
    ) -> bool {
        for status in statuses {
            let key = key(&self.host, &status.service, &status.version);
            // Only what is stored: a deploy still starting may fail.
            if mine.contains_key(&key) && !self.write(mine, &key, status).await {
                return false;
            }
        }
        true
    }

    /// Makes the bucket again, should NATS have lost it (restarted without
    /// its store); opening one that is there costs one request.
    async fn reopen(&self) {
        if let Err(e) = open_bucket(&self.js, self.config.clone(), &self.servers).await {
            tracing::warn!(bucket = BUCKET, error = %e, "cannot open the cluster's deployments again");
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
        let mut first = true;
        loop {
            if !first {
                let resynced = tokio::select! {
                    r = self.resync() => r,
                    () = stopped(&mut stop) => return,
                };
                if let Err(e) = resynced {
                    tracing::warn!(bucket = BUCKET, error = %e, "cannot read the cluster's deployments; trying again");
                    tokio::select! {
                        () = tokio::time::sleep(backoff.next_delay()) => {}
                        () = stopped(&mut stop) => return,
                    }
                    continue;
                }
            }
            first = false;
            let watched = tokio::select! {
                w = self.kv.watch_with_history(">") => w,
                () = stopped(&mut stop) => return,
            };
            match watched {
                Ok(mut entries) => loop {
                    tokio::select! {
                        entry = tokio::time::timeout(REWRITE_EVERY * 2, entries.next()) => match entry {
                            Ok(Some(Ok(entry))) => {
                                backoff.reset();
                                self.apply(entry);
                            }
                            Ok(Some(Err(e))) => {
                                tracing::warn!(bucket = BUCKET, error = %e, "a watch of the cluster broke off; watching again");
                                break;
                            }
                            Ok(None) => break,
                            // Silent: no host wrote (none has deployments), or
                            // the watch's NATS node went away without a word.
                            Err(_) => break,
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

    /// After a watch broke off (NATS went away, perhaps losing its store):
    /// forgets the entries the bucket no longer holds.
    async fn resync(&self) -> Result<(), String> {
        let mut keys = self.kv.keys().await.map_err(|e| e.to_string())?;
        let mut there = BTreeSet::new();
        while let Some(key) = keys.next().await {
            there.insert(key.map_err(|e| e.to_string())?);
        }
        self.seen.lock().retain(|k, _| there.contains(k));
        Ok(())
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
            // Not written now: the next report tries again.
            let _ = inner.write(&mut mine, &key, &status).await;
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
            let due = inner.rewritten.lock().elapsed() >= REWRITE_EVERY;
            if due {
                for last in mine.values_mut() {
                    *last = None;
                }
                *inner.rewritten.lock() = Instant::now();
            }
            if !inner.write_all(&mut mine, &statuses).await {
                inner.reopen().await;
                if !inner.write_all(&mut mine, &statuses).await {
                    return;
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
