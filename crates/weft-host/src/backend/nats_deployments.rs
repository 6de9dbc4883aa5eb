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
//! times is made again. The listing leaves out the environment of a
//! deployment (`--env`).
//!
//! What each host should run, its deployments' records (with their
//! environment, which may hold secrets: give weft a NATS account of its
//! own), is in a second bucket, `weft_desired`, under the same keys: the
//! host writes a record when it stores one and deletes it when it kills
//! one, and rewrites them with its listing. A host that starts with a
//! store that lacks a deployment the bucket holds for it deploys it from
//! there (see [`DeploymentBackend::desired`]).
//!
//! Hosts ask each other to deploy, scale and kill with requests on
//! `weft.deployments.<host>` (the host's name encoded as a key), which
//! only that host answers: a host that is not up has no one answering, and
//! the asker says so at once. Executables go through the object store of
//! [`super::nats_artifacts`].

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{FutureExt as _, StreamExt as _};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use weft_core::backoff::Backoff;
use weft_core::name::Version;
use weft_core::{Code, Error};
use weft_host_api::deployments::VersionStatus;

use super::deployments::{
    ArtifactStream, DeploymentBackend, Order, OrderHandler, StoredDeployments,
};
use super::nats::{NatsCluster, encode_id, open_bucket};
use super::nats_artifacts::Artifacts;
use crate::supervisor::DeploymentRecord;

/// The bucket every host of a cluster lists its deployments in.
const BUCKET: &str = "weft_deployments";

/// The bucket of what each host should run: its deployments' records.
const DESIRED: &str = "weft_desired";

/// How long a host may take to carry out another host's order: a deploy
/// fetches the executable and waits for its instances to register.
const ORDER_TIMEOUT: Duration = Duration::from_secs(600);

/// A host's answer to an order.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Reply {
    Done(Option<VersionStatus>),
    Failed(Error),
}

/// The subject `host` takes orders on.
fn orders(host: &str) -> String {
    format!("weft.deployments.{}", encode_id(host))
}

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
    /// What each host should run, by the same keys as `kv`.
    desired: kv::Store,
    desired_config: kv::Config,
    /// This host's records, as last written to `desired`.
    records: Mutex<BTreeMap<String, DeploymentRecord>>,
    artifacts: Artifacts,
    client: async_nats::Client,
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
        let desired_config = kv::Config {
            bucket: DESIRED.to_owned(),
            description: "weft: what each host runs (deployment records), written by their host"
                .to_owned(),
            history: 1,
            num_replicas: cluster.replicas(),
            ..kv::Config::default()
        };
        let js = cluster.jetstream().clone();
        let kv = open_bucket(&js, config.clone(), servers).await?;
        let desired = open_bucket(&js, desired_config.clone(), servers).await?;
        let artifacts = Artifacts::open(&js, cluster.replicas(), servers).await?;
        Ok(NatsDeployments {
            inner: Arc::new(Inner {
                stored,
                kv,
                desired,
                desired_config,
                records: Mutex::new(BTreeMap::new()),
                artifacts,
                client: cluster.client().clone(),
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

    /// Makes the buckets again, should NATS have lost them (restarted
    /// without its store); opening one that is there costs one request.
    async fn reopen(&self) {
        if let Err(e) = open_bucket(&self.js, self.config.clone(), &self.servers).await {
            tracing::warn!(bucket = BUCKET, error = %e, "cannot open the cluster's deployments again");
        }
        if let Err(e) = open_bucket(&self.js, self.desired_config.clone(), &self.servers).await {
            tracing::warn!(bucket = DESIRED, error = %e, "cannot open the cluster's deployments again");
        }
    }

    /// Writes this host's record under `key` in the desired state; false
    /// when NATS did not take it (the next rewrite tries again).
    async fn write_desired(&self, key: &str, record: &DeploymentRecord) -> bool {
        let value = match serde_json::to_vec(record) {
            Ok(v) => Bytes::from(v),
            Err(e) => {
                tracing::error!(%key, error = %e, "cannot encode a deployment for the cluster");
                return true;
            }
        };
        match tokio::time::timeout(WRITE_TIMEOUT, self.desired.put(key, value)).await {
            Ok(Ok(_)) => true,
            Ok(Err(e)) => {
                tracing::warn!(%key, error = %e, "cannot keep a deployment in the cluster's desired state; trying again later");
                false
            }
            Err(_) => {
                tracing::warn!(%key, "keeping a deployment in the cluster's desired state took too long; trying again later");
                false
            }
        }
    }

    /// Writes every record of this host into the desired state again.
    async fn rewrite_desired(&self) {
        let records: Vec<(String, DeploymentRecord)> = self
            .records
            .lock()
            .iter()
            .map(|(k, r)| (k.clone(), r.clone()))
            .collect();
        for (key, record) in records {
            if !self.write_desired(&key, &record).await {
                return;
            }
        }
    }

    /// This host's records in the desired state.
    async fn read_desired(&self) -> Result<Vec<DeploymentRecord>, String> {
        let mut keys = self.desired.keys().await.map_err(|e| e.to_string())?;
        let mut mine = Vec::new();
        while let Some(key) = keys.next().await {
            let key = key.map_err(|e| e.to_string())?;
            if host_of(&key) == Some(self.host.as_str()) {
                mine.push(key);
            }
        }
        let mut records = Vec::new();
        for key in mine {
            let Some(value) = self.desired.get(&key).await.map_err(|e| e.to_string())? else {
                continue;
            };
            match serde_json::from_slice::<DeploymentRecord>(&value) {
                Ok(r) => records.push(r),
                Err(e) => {
                    tracing::warn!(%key, error = %e, "skipping an unreadable deployment in the cluster's desired state")
                }
            }
        }
        Ok(records)
    }

    /// Answers the orders other hosts send to this one until `stop`.
    async fn serve(&self, handler: Arc<dyn OrderHandler>, mut stop: watch::Receiver<bool>) {
        let subject = orders(&self.host);
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        loop {
            let subscribed = tokio::select! {
                s = self.client.subscribe(subject.clone()) => s,
                () = stopped(&mut stop) => return,
            };
            match subscribed {
                Ok(mut orders) => loop {
                    tokio::select! {
                        message = orders.next() => match message {
                            Some(message) => {
                                backoff.reset();
                                let (handler, client) = (handler.clone(), self.client.clone());
                                tokio::spawn(answer(handler, client, message));
                            }
                            None => break,
                        },
                        () = stopped(&mut stop) => {
                            let _ = orders.unsubscribe().await;
                            return;
                        }
                    }
                },
                Err(e) => {
                    tracing::warn!(%subject, error = %e, "cannot take orders from the other hosts; trying again");
                }
            }
            tokio::select! {
                () = tokio::time::sleep(backoff.next_delay()) => {}
                () = stopped(&mut stop) => return,
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

/// Carries out one order and answers it.
async fn answer(
    handler: Arc<dyn OrderHandler>,
    client: async_nats::Client,
    message: async_nats::Message,
) {
    let Some(reply_to) = message.reply.clone() else {
        return;
    };
    let reply = match serde_json::from_slice::<Order>(&message.payload) {
        Ok(order) => match handler.handle(order).await {
            Ok(status) => Reply::Done(status),
            Err(e) => Reply::Failed(e),
        },
        Err(e) => Reply::Failed(Error::invalid_argument(
            "order",
            format!(
                "this host cannot read the order ({e}); are the hosts of the cluster the same version of weft?"
            ),
        )),
    };
    let body = match serde_json::to_vec(&reply) {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(error = %e, "cannot encode the answer to an order");
            return;
        }
    };
    if let Err(e) = client.publish(reply_to, body.into()).await {
        tracing::warn!(error = %e, "cannot answer an order of another host");
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
                let key = key(&inner.host, &r.service, &r.version);
                mine.entry(key.clone()).or_insert(None);
                inner.records.lock().insert(key, r.clone());
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
            inner.stored.put(record.clone(), status.clone()).await?;
            let mut mine = inner.mine.lock().await;
            mine.entry(key.clone()).or_insert(None);
            inner.records.lock().insert(key.clone(), record.clone());
            // Not written now: the next rewrite tries again.
            let _ = inner.write_desired(&key, &record).await;
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
            inner.records.lock().remove(&key);
            inner.delete(&key).await;
            if let Err(e) = tokio::time::timeout(WRITE_TIMEOUT, inner.desired.delete(&key))
                .await
                .map_err(|_| "no answer in time".to_owned())
                .and_then(|r| r.map_err(|e| e.to_string()))
            {
                tracing::warn!(%key, error = %e, "cannot take a killed deployment out of the cluster's desired state");
            }
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
            if due {
                inner.rewrite_desired().await;
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

    fn clustered(&self) -> bool {
        true
    }

    fn desired(&self) -> BoxFuture<'static, Result<Vec<DeploymentRecord>, Error>> {
        let inner = self.inner.clone();
        async move {
            inner.read_desired().await.map_err(|e| {
                Error::unavailable(format!(
                    "cannot read this host's deployments from the cluster's `{DESIRED}`: {e}"
                ))
            })
        }
        .boxed()
    }

    fn share_artifact(&self, sha256: &str, path: &Path) -> BoxFuture<'static, Result<(), Error>> {
        let (artifacts, sha256, path) = (
            self.inner.artifacts.clone(),
            sha256.to_owned(),
            path.to_owned(),
        );
        async move { artifacts.put(&sha256, &path).await }.boxed()
    }

    fn fetch_artifact(&self, sha256: &str) -> BoxFuture<'static, Result<ArtifactStream, Error>> {
        let (artifacts, sha256) = (self.inner.artifacts.clone(), sha256.to_owned());
        async move { artifacts.get(&sha256).await }.boxed()
    }

    fn drop_artifact(&self, sha256: &str) -> BoxFuture<'static, ()> {
        let (artifacts, sha256) = (self.inner.artifacts.clone(), sha256.to_owned());
        async move { artifacts.delete(&sha256).await }.boxed()
    }

    fn send(
        &self,
        host: &str,
        order: Order,
    ) -> BoxFuture<'static, Result<Option<VersionStatus>, Error>> {
        let (client, host) = (self.inner.client.clone(), host.to_owned());
        async move {
            let body = serde_json::to_vec(&order)
                .map_err(|e| Error::internal(format!("cannot encode an order: {e}")))?;
            let request = async_nats::Request::new()
                .payload(body.into())
                .timeout(Some(ORDER_TIMEOUT));
            let answer = client
                .send_request(orders(&host), request)
                .await
                .map_err(|e| match e.kind() {
                    async_nats::RequestErrorKind::NoResponders => Error::unavailable(format!(
                        "host `{host}` does not answer: it is not up in the cluster (`weft hosts` lists the hosts); nothing changed there"
                    )),
                    async_nats::RequestErrorKind::TimedOut => Error::deadline_exceeded(format!(
                        "host `{host}` did not answer within {} s; `weft ls` shows what runs there now",
                        ORDER_TIMEOUT.as_secs()
                    )),
                    _ => Error::unavailable(format!(
                        "cannot reach host `{host}` through NATS: {e}; try again once NATS is back"
                    )),
                })?;
            match serde_json::from_slice::<Reply>(&answer.payload) {
                Ok(Reply::Done(status)) => Ok(status),
                Ok(Reply::Failed(e)) => Err(e),
                Err(e) => Err(Error::new(
                    Code::Internal,
                    format!(
                        "host `{host}` answered with something this host cannot read ({e}); are the hosts of the cluster the same version of weft?"
                    ),
                )),
            }
        }
        .boxed()
    }

    fn serve(
        self: Arc<Self>,
        handler: Arc<dyn OrderHandler>,
        stop: watch::Receiver<bool>,
    ) -> BoxFuture<'static, ()> {
        async move { self.inner.serve(handler, stop).await }.boxed()
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
