//! The registry shared through NATS JetStream: each host writes its own
//! instances into a key-value bucket, `weft_registry`, under
//! `<host>.<instance>`, and writes them again every third of the lease
//! time; every host watches the bucket and merges the other hosts'
//! instances into its own registry, where each write renews their lease.
//! Callers on every host then see every instance through the watch stream
//! they already use, and call it directly at its address.
//!
//! A host that dies stops writing: its instances lapse in every other
//! host's registry within the lease time. A busy instance is never evicted
//! for being busy: its host, not its handlers, writes for it.
//!
//! Main versions live in a second bucket, `weft_mains`, one key per
//! service: a host writes a main that changed on it, and every host applies
//! every write in the bucket's order, so `weft main` on any host applies on
//! all, and concurrent changes end on the same (last) version everywhere.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_nats::Event;
use async_nats::connection::State;
use async_nats::jetstream::{self, kv};
use futures::StreamExt;
use futures::future::BoxFuture;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{Notify, watch};
use weft_core::backoff::Backoff;
use weft_core::name::Version;
use weft_core::{Code, Error, Notification};
use weft_host_api::hosts::{HostInfo, HostState, Unreachable};
use weft_registry::{InstanceInfo, WatchEvent};

use super::{NotificationBackend, RegistryBackend, TokenBackend};
use crate::auth::TokenRecord;
use crate::config::ClusterConfig;
use crate::state::Shared;
use crate::time::now_ms;

/// The bucket every host of a cluster shares its instances in.
const BUCKET: &str = "weft_registry";

/// The bucket of main versions, one key per service.
const MAINS: &str = "weft_mains";

/// The bucket of tokens (their records: id, scopes, the secret's hash).
const TOKENS: &str = "weft_tokens";

/// The bucket of hosts' heartbeats, one key per host.
const HOSTS: &str = "weft_hosts";

/// The stream of notifications; an id is the notification's sequence in it.
const NOTIFICATIONS: &str = "WEFT_NOTIFICATIONS";

/// The subject notifications are published on.
const NOTIFICATIONS_SUBJECT: &str = "weft.notifications";

/// How long notifications are kept in a cluster.
const NOTIFICATIONS_MAX_AGE: Duration = Duration::from_secs(30 * 24 * 3600);

/// How long storing or reading notifications may take.
const NOTIFICATIONS_TIMEOUT: Duration = Duration::from_secs(10);

/// How often this host looks for other hosts' instances it has not yet
/// tried to reach.
const REACH_PERIOD: Duration = Duration::from_millis(500);

/// How long connecting to another host's instance may take before it
/// counts as unreachable.
const REACH_TIMEOUT: Duration = Duration::from_secs(2);

/// At most this many instances are tried at once.
const REACH_BATCH: usize = 64;

/// Which of the other hosts' instances this host reached, by id, at which
/// address; and which it could not, with why and when it last tried.
#[derive(Debug, Default)]
struct Reach {
    reached: HashMap<String, String>,
    unreachable: HashMap<String, (String, Unreachable, tokio::time::Instant)>,
}

/// How many of its instances' writes a host has in flight at once.
const PUT_CONCURRENCY: usize = 64;

/// How long a stopping host waits for NATS to take its instances off.
const LEAVE_TIMEOUT: Duration = Duration::from_secs(2);

/// A key no host writes, read to learn whether a bucket answers.
const READY_PROBE: &str = "_weft_ready";

/// How long a starting host waits for JetStream to be ready (a NATS cluster
/// that has just started elects its leader first).
const JETSTREAM_PATIENCE: Duration = Duration::from_secs(60);

/// How long connecting to NATS may take before the host gives up starting.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Resolves once `stop` turns true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns must not live across an await point.
    let _ = stop.wait_for(|s| *s).await.map(|_| ());
}

/// What a host writes for one of its instances.
#[derive(Debug, Serialize, Deserialize)]
struct Announcement {
    instance: InstanceInfo,
    /// When the host wrote it, by its clock; for people reading the
    /// bucket. Hosts judge an entry's age by the NATS server's clock.
    announced_ms: u64,
}

/// This host's part of the cluster's registry.
pub(super) struct NatsCluster {
    kv: kv::Store,
    /// Main versions by service: the last one written, by any host, wins
    /// everywhere.
    mains: kv::Store,
    /// The main changes this host took from the bucket whose registry
    /// events the announcer has not seen yet, by (service, version), so
    /// that it writes back none of them and every other change: one that
    /// came from the bucket is not this host's to share, and comparing
    /// with the last version seen instead would skip a change made here
    /// while an earlier write was still on its way.
    mains_applied: Mutex<HashMap<(String, Version), usize>>,
    tokens: kv::Store,
    hosts: kv::Store,
    /// Every host's last heartbeat, as the hosts bucket says, and when it
    /// was written (by this host's clock).
    hosts_seen: Mutex<BTreeMap<String, (HostInfo, tokio::time::Instant)>>,
    /// Whether other hosts' instances answer at their announced addresses,
    /// from here.
    reach: Mutex<Reach>,
    /// The buckets' and the notifications stream's settings, to make them
    /// again on a NATS that lost them (a restart without its store, or
    /// memory storage).
    buckets: Vec<kv::Config>,
    notifications: jetstream::stream::Config,
    /// The NATS servers, as given.
    servers: String,
    /// Told each time the connection to NATS is made again.
    connected: Arc<Notify>,
    client: async_nats::Client,
    js: jetstream::Context,
    /// How many copies of each bucket and stream NATS keeps.
    replicas: usize,
    name: String,
    advertise: Option<String>,
    ttl: Duration,
}

impl fmt::Debug for NatsCluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsCluster")
            .field("bucket", &BUCKET)
            .field("name", &self.name)
            .field("advertise", &self.advertise)
            .field("ttl", &self.ttl)
            .finish()
    }
}

/// A key-value key for `id`: letters, digits, `-` and `_` as they are,
/// every other byte as `=XX`, so that any instance id makes a valid key
/// and can be read back from it.
pub(super) fn encode_id(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("={b:02X}"));
        }
    }
    out
}

/// Reads back what [`encode_id`] wrote.
pub(super) fn decode_id(key: &str) -> Option<String> {
    let mut out = Vec::with_capacity(key.len());
    let bytes = key.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'=' {
            let hex = key.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// `address` as other machines reach it: a loopback or wildcard IP is
/// replaced by `advertise`, the port kept.
pub(super) fn advertised(address: &str, advertise: &str) -> String {
    let (scheme, rest) = match address.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, address),
    };
    if scheme.is_some_and(|s| s != "tcp") {
        return address.to_owned();
    }
    let Some((host, port)) = rest.rsplit_once(':') else {
        return address.to_owned();
    };
    let local = matches!(
        host.trim_start_matches('[').trim_end_matches(']'),
        "127.0.0.1" | "0.0.0.0" | "::1" | "::" | "localhost"
    );
    if !local {
        return address.to_owned();
    }
    let advertise = if advertise.contains(':') && !advertise.starts_with('[') {
        format!("[{advertise}]")
    } else {
        advertise.to_owned()
    };
    format!("tcp://{advertise}:{port}")
}

/// Opens the bucket `config` names, creating it when no host has yet. A
/// bucket of that name with other settings (made by another program, or by
/// hosts started with another `--lease-ttl`) is an error: weft neither
/// uses nor changes it.
pub(super) async fn open_bucket(
    js: &jetstream::Context,
    config: kv::Config,
    servers: &str,
) -> Result<kv::Store, Error> {
    let bucket = config.bucket.clone();
    let kv = match js.get_key_value(&bucket).await {
        Ok(kv) => kv,
        Err(_) => match js.create_key_value(config.clone()).await {
            Ok(kv) => {
                answering(&kv, &bucket, servers).await?;
                return Ok(kv);
            }
            // Another host may have created it meanwhile.
            Err(create) => js.get_key_value(&bucket).await.map_err(|_| {
                Error::unavailable(format!(
                    "cannot create the bucket `{bucket}` in NATS at {servers}: {create}"
                ))
            })?,
        },
    };
    let have = &kv.stream.cached_info().config;
    let mut differences = Vec::new();
    if have.max_messages_per_subject != config.history.max(1) {
        differences.push(format!(
            "it keeps {} values per key, weft keeps {}",
            have.max_messages_per_subject,
            config.history.max(1)
        ));
    }
    if have.max_age != config.max_age && bucket == BUCKET {
        // The registry's entries live ten lease times.
        differences.push(format!(
            "it was made by hosts with --lease-ttl {}, this host has --lease-ttl {}: \
             every host of a cluster needs the same",
            (have.max_age / 10).as_secs_f64(),
            (config.max_age / 10).as_secs_f64()
        ));
    } else if have.max_age != config.max_age {
        differences.push(format!(
            "its values expire after {}, weft's after {}",
            age(have.max_age),
            age(config.max_age)
        ));
    }
    if have.storage != config.storage {
        differences.push(format!(
            "it is stored in {}, weft's in {}",
            storage(have.storage),
            storage(config.storage)
        ));
    }
    foreign(&format!("bucket `{bucket}`"), servers, &differences)?;
    answering(&kv, &bucket, servers).await?;
    Ok(kv)
}

/// Waits until `kv` answers reads. A bucket just made on a NATS cluster is
/// read (direct get) from replicas that take a moment to start serving it;
/// until then a read finds no responders.
async fn answering(kv: &kv::Store, bucket: &str, servers: &str) -> Result<(), Error> {
    const TRIES: u32 = 20;
    let mut pause = Duration::from_millis(25);
    for attempt in 1..=TRIES {
        match kv.get(READY_PROBE).await {
            Ok(_) => return Ok(()),
            Err(e) if attempt == TRIES => {
                return Err(Error::unavailable(format!(
                    "the bucket `{bucket}` in NATS at {servers} does not answer reads ({e}); \
                     a NATS cluster without a majority of its servers up cannot serve it"
                )));
            }
            Err(_) => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(500));
            }
        }
    }
    Ok(())
}

/// How a stream's settings differ from weft's: subjects, retention and
/// what it discards when full; with `age`, how long it keeps messages.
pub(super) fn stream_differences(
    have: &jetstream::stream::Config,
    wanted: &jetstream::stream::Config,
    age_too: bool,
) -> Vec<String> {
    let mut differences = Vec::new();
    if have.subjects != wanted.subjects {
        differences.push(format!(
            "it takes the subjects {:?}, weft publishes on {:?}",
            have.subjects, wanted.subjects
        ));
    }
    if have.retention != wanted.retention {
        differences.push(format!(
            "its retention is {:?}, weft's {:?}",
            have.retention, wanted.retention
        ));
    }
    if have.discard != wanted.discard {
        differences.push(format!(
            "it discards {:?} messages when full, weft {:?}",
            have.discard, wanted.discard
        ));
    }
    if age_too && have.max_age != wanted.max_age {
        differences.push(format!(
            "it keeps messages for {}, weft for {}",
            age(have.max_age),
            age(wanted.max_age)
        ));
    }
    differences
}

/// The error for a bucket or stream of weft's name with other settings.
pub(super) fn foreign(what: &str, servers: &str, differences: &[String]) -> Result<(), Error> {
    if differences.is_empty() {
        return Ok(());
    }
    Err(Error::invalid_argument(
        "nats",
        format!(
            "the {what} in NATS at {servers} has other settings than weft's ({}); weft leaves \
             it as it is. If another program uses it, give weft a NATS account of its own; if \
             hosts with another --lease-ttl made it, start this host with theirs; if nothing \
             needs it, delete it (`nats kv rm` or `nats stream rm`) and start the host again",
            differences.join("; ")
        ),
    ))
}

fn age(age: Duration) -> String {
    if age.is_zero() {
        "never".to_owned()
    } else {
        format!("{} s", age.as_secs_f64())
    }
}

fn storage(storage: jetstream::stream::StorageType) -> &'static str {
    match storage {
        jetstream::stream::StorageType::File => "files",
        jetstream::stream::StorageType::Memory => "memory",
    }
}

/// Opens the notifications stream, creating it when no host has yet; one
/// of that name with other subjects or another age is an error.
async fn open_notifications(
    js: &jetstream::Context,
    config: jetstream::stream::Config,
    servers: &str,
) -> Result<(), Error> {
    let stream = js.get_or_create_stream(config.clone()).await.map_err(|e| {
        Error::unavailable(format!(
            "cannot open the notifications stream `{NOTIFICATIONS}` in NATS at {servers}: {e}"
        ))
    })?;
    let differences = stream_differences(&stream.cached_info().config, &config, true);
    foreign(&format!("stream `{NOTIFICATIONS}`"), servers, &differences)
}

/// The settings of the cluster's buckets: the registry, main versions,
/// tokens, hosts.
fn bucket_configs(ttl: Duration, replicas: usize) -> [kv::Config; 4] {
    [
        kv::Config {
            bucket: BUCKET.to_owned(),
            description: "weft: the instances of every host, written by their host".to_owned(),
            history: 1,
            // Only bounds what a stopped cluster leaves behind: liveness is
            // judged by each write's time.
            max_age: ttl * 10,
            storage: jetstream::stream::StorageType::Memory,
            num_replicas: replicas,
            ..kv::Config::default()
        },
        kv::Config {
            bucket: MAINS.to_owned(),
            description: "weft: the main version of each service".to_owned(),
            history: 1,
            num_replicas: replicas,
            ..kv::Config::default()
        },
        kv::Config {
            bucket: TOKENS.to_owned(),
            description: "weft: tokens (never their secrets), by id".to_owned(),
            history: 1,
            num_replicas: replicas,
            ..kv::Config::default()
        },
        kv::Config {
            bucket: HOSTS.to_owned(),
            description: "weft: each host's heartbeat".to_owned(),
            history: 1,
            // A host gone this long is forgotten by `weft hosts`.
            max_age: Duration::from_secs(24 * 3600),
            num_replicas: replicas,
            ..kv::Config::default()
        },
    ]
}

fn notifications_config(replicas: usize) -> jetstream::stream::Config {
    jetstream::stream::Config {
        name: NOTIFICATIONS.to_owned(),
        description: Some("weft: notifications from every host".to_owned()),
        subjects: vec![NOTIFICATIONS_SUBJECT.to_owned()],
        max_age: NOTIFICATIONS_MAX_AGE,
        num_replicas: replicas,
        ..Default::default()
    }
}

impl NatsCluster {
    /// Connects to the cluster's NATS servers, checks that they run
    /// JetStream, and opens (or creates) the registry bucket.
    pub(super) async fn connect(
        cluster: &ClusterConfig,
        name: &str,
        ttl: Duration,
    ) -> Result<NatsCluster, Error> {
        let servers = cluster.servers.join(",");
        let addresses = cluster
            .servers
            .iter()
            .map(|s| {
                s.parse::<async_nats::ServerAddr>().map_err(|e| {
                    Error::invalid_argument(
                        "nats",
                        format!("`{s}` is not a NATS server URL ({e}); write it like nats://10.0.0.5:4222"),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if addresses.is_empty() {
            return Err(Error::invalid_argument(
                "nats",
                "no NATS server given; pass --nats nats://HOST:4222[,nats://HOST:4222...]",
            ));
        }
        let mut options = async_nats::ConnectOptions::new()
            .name(format!("weft host {name}"))
            .connection_timeout(CONNECT_TIMEOUT);
        if let Some(creds) = &cluster.credentials {
            options = options.credentials_file(creds).await.map_err(|e| {
                Error::invalid_argument(
                    "nats-creds",
                    format!(
                        "cannot read the NATS credentials {}: {e}; pass a .creds file that `nsc` wrote",
                        creds.display()
                    ),
                )
            })?;
        }
        if let Some(ca) = &cluster.tls_ca {
            options = options.add_root_certificates(ca.clone());
        }
        if let Some((cert, key)) = &cluster.tls_client {
            options = options.add_client_certificate(cert.clone(), key.clone());
        }
        if cluster.tls_required {
            options = options.require_tls(true);
        }
        let connected = Arc::new(Notify::new());
        let told = connected.clone();
        let lost = Arc::new(std::sync::atomic::AtomicBool::new(false));
        options = options.event_callback(move |event| {
            let (told, lost) = (told.clone(), lost.clone());
            async move {
                match event {
                    Event::Connected => {
                        // Said as loudly as the loss was.
                        if lost.swap(false, std::sync::atomic::Ordering::Relaxed) {
                            tracing::warn!(
                                "reconnected to NATS; announcing this host's instances again"
                            );
                        }
                        told.notify_one();
                    }
                    Event::Disconnected => {
                        lost.store(true, std::sync::atomic::Ordering::Relaxed);
                        tracing::warn!(
                            "lost the connection to NATS; reconnecting. Meanwhile this host's \
                         instances are not renewed in the cluster, and other hosts' instances \
                         leave this host's registry after the lease time"
                        );
                    }
                    Event::LameDuckMode => {
                        tracing::warn!("a NATS server is shutting down; moving to another")
                    }
                    // The host closes it when it stops; client errors
                    // repeat each failed reconnection, said once above.
                    Event::Closed | Event::Draining | Event::ClientError(_) => {
                        tracing::debug!(event = %event, "NATS")
                    }
                    other => tracing::warn!(event = %other, "NATS"),
                }
            }
        });
        let unreachable = |why: String| {
            Error::unavailable(format!(
                "cannot reach NATS at {servers}: {why}; start nats-server there with JetStream \
                 (`nats-server -js`), or check --nats and its credential and TLS options"
            ))
        };
        let client = tokio::time::timeout(CONNECT_TIMEOUT * 2, options.connect(addresses))
            .await
            .map_err(|_| unreachable("no answer in time".into()))?
            .map_err(|e| unreachable(e.to_string()))?;
        let js = jetstream::new(client.clone());
        // Three copies on a cluster of three or more, so that losing a NATS
        // node loses no host's announcements; one on a single server.
        let replicas = if client.server_info().connect_urls.len() >= 3 {
            3
        } else {
            1
        };
        let [registry, mains, tokens, hosts] = bucket_configs(ttl, replicas);
        let notifications = notifications_config(replicas);
        // A NATS cluster that has just started elects its JetStream leader
        // first, and meanwhile answers nothing or "temporarily
        // unavailable": wait for it, saying so, within a patience.
        let patience = tokio::time::Instant::now() + JETSTREAM_PATIENCE;
        let mut waiting = false;
        let (kv, mains_kv, tokens_kv, hosts_kv) = loop {
            let opened = async {
                // Each try is short: a cluster electing its leader does not
                // answer, and the next try may find it ready.
                tokio::time::timeout(Duration::from_secs(2), js.query_account())
                    .await
                    .map_err(|_| {
                        Error::unavailable(format!(
                            "JetStream at {servers} does not answer yet; a NATS cluster that \
                             has just started elects its leader first, and one without a \
                             majority of its servers up cannot"
                        ))
                    })?
                    .map_err(|e| {
                    if matches!(
                        e.kind(),
                        jetstream::context::AccountErrorKind::JetStreamUnavailable
                    ) {
                        Error::invalid_argument(
                            "nats",
                            format!(
                                "the NATS server at {servers} does not run JetStream ({e}); start \
                                 it with JetStream on (`nats-server -js`, or a `jetstream {{}}` \
                                 block in its config)"
                            ),
                        )
                    } else {
                        Error::unavailable(format!(
                            "JetStream at {servers} does not answer ({e}); a NATS cluster that \
                             has just started elects its leader first, and one without a \
                             majority of its servers up cannot"
                        ))
                    }
                })?;
                Ok::<_, Error>((
                    open_bucket(&js, registry.clone(), &servers).await?,
                    open_bucket(&js, mains.clone(), &servers).await?,
                    open_bucket(&js, tokens.clone(), &servers).await?,
                    open_bucket(&js, hosts.clone(), &servers).await?,
                    open_notifications(&js, notifications.clone(), &servers).await?,
                ))
            };
            match opened.await {
                Ok((kv, mains, tokens, hosts, ())) => break (kv, mains, tokens, hosts),
                Err(e)
                    if e.code() == Code::Unavailable && tokio::time::Instant::now() < patience =>
                {
                    if !waiting {
                        tracing::warn!(error = %e.message(), "waiting for NATS JetStream to be ready (up to {} s)", JETSTREAM_PATIENCE.as_secs());
                        waiting = true;
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => return Err(e),
            }
        };
        tracing::info!(%servers, host = name, replicas, "joined the cluster through NATS");
        Ok(NatsCluster {
            kv,
            mains: mains_kv,
            mains_applied: Mutex::new(HashMap::new()),
            tokens: tokens_kv,
            hosts: hosts_kv,
            buckets: vec![registry, mains, tokens, hosts],
            notifications,
            servers,
            connected,
            client,
            hosts_seen: Mutex::new(BTreeMap::new()),
            reach: Mutex::new(Reach::default()),
            js,
            replicas,
            name: name.to_owned(),
            advertise: cluster.advertise.clone(),
            ttl,
        })
    }

    /// The JetStream context the cluster's buckets and streams live in.
    pub(super) fn jetstream(&self) -> &jetstream::Context {
        &self.js
    }

    /// How many copies of a bucket or stream to ask NATS for: three on a
    /// cluster of three or more servers, one otherwise.
    pub(super) fn replicas(&self) -> usize {
        self.replicas
    }

    /// The lease time of the cluster's registry.
    pub(super) fn lease_ttl(&self) -> Duration {
        self.ttl
    }

    /// This host's name in the cluster.
    pub(super) fn host_name(&self) -> &str {
        &self.name
    }

    /// The connection to NATS, for requests between hosts.
    pub(super) fn client(&self) -> &async_nats::Client {
        &self.client
    }

    fn key(&self, id: &str) -> String {
        format!("{}.{}", self.name, encode_id(id))
    }

    fn is_local(&self, instance: &InstanceInfo) -> bool {
        instance.host.as_deref() == Some(self.name.as_str())
    }

    /// This host's own instances, as registered with it.
    fn local(&self, shared: &Shared) -> Vec<InstanceInfo> {
        shared
            .registry
            .lock()
            .instances()
            .filter(|i| self.is_local(i))
            .cloned()
            .collect()
    }

    /// Writes one of this host's instances: its id, and the error if NATS
    /// did not take it.
    async fn put(&self, instance: &InstanceInfo) -> (String, Option<String>) {
        let mut instance = instance.clone();
        if let Some(advertise) = &self.advertise {
            instance.address = advertised(&instance.address, advertise);
        }
        let id = instance.id.clone();
        let announcement = Announcement {
            instance,
            announced_ms: now_ms(),
        };
        let value = match serde_json::to_vec(&announcement) {
            Ok(v) => v,
            Err(e) => return (id, Some(format!("cannot encode it: {e}"))),
        };
        let written = self.kv.put(self.key(&id), value.into()).await;
        (id, written.err().map(|e| e.to_string()))
    }

    /// Writes `instances`, many at a time (a round of a host with
    /// thousands of instances takes a few round trips, not thousands);
    /// says whether NATS took them all, and logs once for those it did not
    /// (NATS away, or a bucket it lost: the next round writes them again).
    async fn put_all(&self, instances: &[InstanceInfo], announced: &mut HashSet<String>) -> bool {
        let mut written = Vec::with_capacity(instances.len());
        for chunk in instances.chunks(PUT_CONCURRENCY) {
            written.extend(futures::future::join_all(chunk.iter().map(|i| self.put(i))).await);
        }
        let mut failed = 0;
        let mut first = None;
        for (id, error) in written {
            match error {
                None => {
                    announced.insert(id);
                }
                Some(error) => {
                    failed += 1;
                    first.get_or_insert((id, error));
                }
            }
        }
        if let Some((id, error)) = first {
            tracing::warn!(failed, instance = %id, %error, "cannot announce instances to the cluster");
        }
        failed == 0
    }

    async fn withdraw(&self, id: &str) {
        if let Err(e) = self.kv.delete(self.key(id)).await {
            tracing::warn!(instance = %id, error = %e, "cannot withdraw an instance from the cluster; it lapses there within the lease time");
        }
    }

    /// Whether the registry's event that `service`'s main is `version`
    /// came from the bucket (and so is not to be written back); forgets
    /// it, as each change is announced once.
    fn took_from_bucket(&self, service: &str, version: &Version) -> bool {
        let mut applied = self.mains_applied.lock();
        let key = (service.to_owned(), version.clone());
        match applied.get_mut(&key) {
            Some(1) => {
                applied.remove(&key);
                true
            }
            Some(n) => {
                *n -= 1;
                true
            }
            None => false,
        }
    }

    /// Writes a main version to the bucket.
    async fn put_main(&self, service: &str, version: &Version) {
        if let Err(e) = self
            .mains
            .put(encode_id(service), version.to_string().into())
            .await
        {
            tracing::warn!(%service, %version, error = %e, "cannot share a main version with the cluster")
        }
    }

    /// Takes a main version from the bucket. Every host applies every
    /// write, its own too, in the bucket's order, so all end on the last.
    fn apply_main(&self, shared: &Shared, entry: kv::Entry, _age: Duration) {
        if entry.operation != kv::Operation::Put {
            return;
        }
        let (Some(service), Ok(version)) = (
            decode_id(&entry.key),
            std::str::from_utf8(&entry.value)
                .map_err(|e| e.to_string())
                .and_then(|v| Version::parse(v).map_err(|e| e.to_string())),
        ) else {
            tracing::warn!(key = %entry.key, "skipping an unreadable main version in the cluster");
            return;
        };
        let mut registry = shared.registry.lock();
        if registry.mains().get(&service) == Some(&version) {
            // Already so here (the echo of this host's own write): the
            // registry emits nothing.
            return;
        }
        *self
            .mains_applied
            .lock()
            .entry((service.clone(), version.clone()))
            .or_default() += 1;
        registry.restore_mains(std::iter::once((service, version)).collect());
    }

    /// Takes a host's heartbeat, or its leaving. When it was written is
    /// kept by this host's clock: now, less its age.
    fn apply_host(&self, _shared: &Shared, entry: kv::Entry, age: Duration) {
        let Some(name) = decode_id(&entry.key) else {
            return;
        };
        match entry.operation {
            kv::Operation::Put => match serde_json::from_slice::<HostInfo>(&entry.value) {
                Ok(host) => {
                    let written = tokio::time::Instant::now()
                        .checked_sub(age)
                        .unwrap_or_else(tokio::time::Instant::now);
                    self.hosts_seen.lock().insert(name, (host, written));
                }
                Err(e) => {
                    tracing::warn!(key = %entry.key, error = %e, "skipping an unreadable host in the cluster")
                }
            },
            kv::Operation::Delete | kv::Operation::Purge => {
                self.hosts_seen.lock().remove(&name);
            }
        }
    }

    /// Takes a token made or revoked on any host: into this host's tokens
    /// and its store, so that it is checked here without asking anyone.
    fn apply_token(&self, shared: &Shared, entry: kv::Entry, _age: Duration) {
        let store = shared.store.clone();
        match entry.operation {
            kv::Operation::Put => {
                let record: TokenRecord = match serde_json::from_slice(&entry.value) {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::warn!(key = %entry.key, error = %e, "skipping an unreadable token in the cluster");
                        return;
                    }
                };
                shared.auth.insert(record.clone());
                tokio::task::spawn_blocking(move || {
                    if let Err(e) = store.put_token(&record) {
                        tracing::warn!(id = %record.id, error = %e, "cannot store a token from the cluster");
                    }
                });
            }
            kv::Operation::Delete | kv::Operation::Purge => {
                let Some(id) = decode_id(&entry.key) else {
                    return;
                };
                shared.auth.remove(&id);
                tokio::task::spawn_blocking(move || {
                    if let Err(e) = store.remove_token(&id) {
                        tracing::warn!(%id, error = %e, "cannot forget a token revoked in the cluster");
                    }
                });
            }
        }
    }

    /// Writes this host's instances as they come and go, and all of them
    /// every third of the lease time; withdraws them when the host stops.
    async fn announce(&self, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
        let mut events = shared.registry.lock().subscribe();
        self.share_unknown_mains(&shared).await;
        let mut announced = HashSet::new();
        let mut tick = tokio::time::interval(self.ttl / 3);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => self.round(&shared, &mut announced).await,
                // Back after NATS went away: it may have lost the buckets
                // (a restart without its store; the registry is in memory).
                () = self.connected.notified() => {
                    self.restore().await;
                    self.share_unknown_mains(&shared).await;
                    self.round(&shared, &mut announced).await;
                }
                event = events.recv() => match event {
                    Ok(WatchEvent::Up { instance }) if self.is_local(&instance) => {
                        self.put_all(std::slice::from_ref(&instance), &mut announced).await;
                        self.heartbeat(&shared).await;
                    }
                    Ok(WatchEvent::Down { id, .. }) if announced.remove(&id) => {
                        self.withdraw(&id).await;
                        self.heartbeat(&shared).await;
                    }
                    // A change made here, and only if the registry still
                    // has it: one that a later change (from the bucket,
                    // say) overtook is not written, or two hosts would
                    // toss it between them.
                    Ok(WatchEvent::Main { service, version }) => {
                        if !self.took_from_bucket(&service, &version)
                            && shared.registry.lock().mains().get(&service) == Some(&version)
                        {
                            self.put_main(&service, &version).await;
                        }
                    }
                    Ok(_) => {}
                    Err(RecvError::Lagged(_)) => {
                        // The missed events may include changes taken from
                        // the bucket: kept, they would mark a later change
                        // made here as taken from there.
                        self.mains_applied.lock().clear();
                        // Departures may be among what was missed.
                        let local: HashSet<String> =
                            self.local(&shared).into_iter().map(|i| i.id).collect();
                        let gone: Vec<String> = announced.difference(&local).cloned().collect();
                        for id in gone {
                            announced.remove(&id);
                            self.withdraw(&id).await;
                        }
                    }
                    Err(RecvError::Closed) => break,
                },
                () = stopped(&mut stop) => break,
            }
        }
        // Without NATS there is no one to tell: the instances lapse
        // everywhere within the lease time, and the host stops at once.
        if self.client.connection_state() != State::Connected {
            return;
        }
        let leave = async {
            futures::future::join_all(announced.iter().map(|id| self.withdraw(id))).await;
            // Leaving: not down, gone.
            if let Err(e) = self.hosts.delete(encode_id(&self.name)).await {
                tracing::warn!(error = %e, "cannot take this host off the cluster's list");
            }
        };
        if tokio::time::timeout(LEAVE_TIMEOUT, leave).await.is_err() {
            tracing::warn!(
                "NATS did not answer in time while this host left the cluster; its instances lapse there within the lease time"
            );
        }
    }

    /// Writes all of this host's instances and its heartbeat; when a write
    /// fails, makes lost buckets again and writes once more. Skipped while
    /// NATS is away (that was said once, when the connection was lost).
    async fn round(&self, shared: &Shared, announced: &mut HashSet<String>) {
        if self.client.connection_state() != State::Connected {
            return;
        }
        let local = self.local(shared);
        if !self.put_all(&local, announced).await {
            self.restore().await;
            self.put_all(&local, announced).await;
        }
        self.heartbeat(shared).await;
    }

    /// Makes the buckets and the notifications stream again where NATS
    /// lost them; opening one that is there costs one request.
    async fn restore(&self) {
        for config in &self.buckets {
            if let Err(e) = open_bucket(&self.js, config.clone(), &self.servers).await {
                tracing::warn!(bucket = %config.bucket, error = %e, "cannot open a bucket of the cluster again");
            }
        }
        if let Err(e) =
            open_notifications(&self.js, self.notifications.clone(), &self.servers).await
        {
            tracing::warn!(error = %e, "cannot open the cluster's notifications again");
        }
    }

    /// Writes the main versions this host has that the bucket lacks: those
    /// kept from before it joined, or lost with a NATS that lost its store.
    async fn share_unknown_mains(&self, shared: &Shared) {
        let mains = shared.registry.lock().mains().clone();
        for (service, version) in mains {
            if matches!(self.mains.get(encode_id(&service)).await, Ok(None)) {
                self.put_main(&service, &version).await;
            }
        }
    }

    /// Connects to each instance of another host once, as it appears, to
    /// learn whether this host reaches it at its announced address; tries
    /// the unreachable ones again every lease time. An unreachable
    /// instance stays in the registry (calls from here go to others), is
    /// logged once, and makes `weft hosts` show its host as unreachable.
    async fn check_reach(&self, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(REACH_PERIOD);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = stopped(&mut stop) => return,
            }
            let remote: Vec<(String, String, String)> = shared
                .registry
                .lock()
                .instances()
                .filter_map(|i| match &i.host {
                    Some(host) if *host != self.name => {
                        Some((i.id.clone(), host.clone(), i.address.clone()))
                    }
                    _ => None,
                })
                .collect();
            let due: Vec<(String, String, String)> = {
                let mut reach = self.reach.lock();
                let ids: HashSet<&str> = remote.iter().map(|(id, ..)| id.as_str()).collect();
                reach.reached.retain(|id, _| ids.contains(id.as_str()));
                reach.unreachable.retain(|id, _| ids.contains(id.as_str()));
                remote
                    .into_iter()
                    .filter(|(id, _, address)| match reach.unreachable.get(id) {
                        Some((_, u, tried)) => u.address != *address || tried.elapsed() >= self.ttl,
                        None => reach.reached.get(id) != Some(address),
                    })
                    .take(REACH_BATCH)
                    .collect()
            };
            let tried =
                futures::future::join_all(due.into_iter().map(|(id, host, address)| async move {
                    let result = try_reach(&address).await;
                    (id, host, address, result)
                }))
                .await;
            let mut reach = self.reach.lock();
            for (id, host, address, result) in tried {
                match result {
                    Ok(()) => {
                        if reach.unreachable.remove(&id).is_some() {
                            tracing::info!(instance = %id, %host, %address, "an instance of another host can be reached again");
                        }
                        reach.reached.insert(id, address);
                    }
                    Err(error) => {
                        if !reach.unreachable.contains_key(&id) {
                            tracing::warn!(
                                instance = %id, %host, %address, %error,
                                "this host cannot reach an instance of another host at the address \
                                 it was announced with; calls from here go to other instances. \
                                 Check that host's --advertise: it must name an address this \
                                 machine reaches"
                            );
                        }
                        reach.reached.remove(&id);
                        let unreachable = Unreachable {
                            instance: id.clone(),
                            address,
                            error,
                        };
                        reach
                            .unreachable
                            .insert(id, (host, unreachable, tokio::time::Instant::now()));
                    }
                }
            }
        }
    }

    /// Writes this host's heartbeat: who it is and how many instances it has.
    async fn heartbeat(&self, shared: &Shared) {
        let me = super::this_host(shared);
        let value = match serde_json::to_vec(&me) {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(error = %e, "cannot encode this host's heartbeat");
                return;
            }
        };
        if let Err(e) = self.hosts.put(encode_id(&self.name), value.into()).await {
            tracing::warn!(error = %e, "cannot write this host's heartbeat to the cluster");
        }
    }

    /// Merges one change of the bucket into this host's registry.
    fn apply(&self, shared: &Shared, entry: kv::Entry, age: Duration) {
        let Some((host, encoded)) = entry.key.split_once('.') else {
            return;
        };
        if host == self.name {
            return;
        }
        match entry.operation {
            kv::Operation::Put => {
                let announcement: Announcement = match serde_json::from_slice(&entry.value) {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(key = %entry.key, error = %e, "skipping an unreadable instance in the cluster's registry");
                        return;
                    }
                };
                // Written two lease times before the newest write: the
                // last word of a host that stopped, not a live instance.
                if age > self.ttl * 2 {
                    return;
                }
                let mut instance = announcement.instance;
                instance.host = Some(host.to_owned());
                // Most writes only renew a lease: look the instance up by id,
                // not by scanning, since every host rewrites all of its
                // instances every third of the lease.
                let known = shared.registry.lock().instance(&instance.id).cloned();
                let result = match known {
                    Some(k) if k == instance => shared.registry.keepalive(&k.id),
                    _ => shared.registry.register(None, instance).map(|_| ()),
                };
                if let Err(e) = result {
                    tracing::warn!(key = %entry.key, error = %e, "cannot take an instance from the cluster's registry");
                }
            }
            kv::Operation::Delete | kv::Operation::Purge => {
                let Some(id) = decode_id(encoded) else {
                    return;
                };
                let owned = shared
                    .registry
                    .lock()
                    .instance(&id)
                    .is_some_and(|i| i.host.as_deref() == Some(host));
                if owned {
                    shared.registry.deregister(&id);
                }
            }
        }
    }

    /// Follows `bucket`, from its current state on, until `stop`, handing
    /// every change to `apply`.
    ///
    /// With `stall`, a watch that delivers nothing for that long is taken
    /// for one whose NATS node went away silently, and is made again (from
    /// the current state): on the buckets every host writes to every third
    /// of the lease, silence that long means a broken watch.
    async fn follow(
        &self,
        bucket: &kv::Store,
        apply: fn(&Self, &Shared, kv::Entry, Duration),
        stall: Option<Duration>,
        shared: Arc<Shared>,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        loop {
            let watched = tokio::select! {
                w = bucket.watch_with_history(">") => w,
                () = stopped(&mut stop) => return,
            };
            match watched {
                // Entries of the state the watch starts from, until the
                // last of them: then each is applied with its age by the
                // NATS server's clock (how much older than the newest it
                // is), never by comparing another machine's clock with
                // this one's. Entries written later arrive new (age zero).
                Ok(mut entries) => {
                    let mut initial = Some(Vec::new());
                    let watched_at = tokio::time::Instant::now();
                    loop {
                        let next = async {
                            match stall {
                                Some(stall) => tokio::time::timeout(stall, entries.next()).await,
                                None => Ok(entries.next().await),
                            }
                        };
                        tokio::select! {
                            entry = next => match entry {
                                Ok(Some(Ok(entry))) => {
                                    backoff.reset();
                                    match initial.as_mut() {
                                        None => apply(self, &shared, entry, Duration::ZERO),
                                        Some(buffer) => {
                                            // A state that takes a lease time to
                                            // arrive is applied as it is.
                                            let last = entry.seen_current
                                                || watched_at.elapsed() > self.ttl;
                                            buffer.push(entry);
                                            if last {
                                                let buffer = initial.take().unwrap_or_default();
                                                let newest = buffer.iter().map(|e| e.created).max();
                                                for entry in buffer {
                                                    let age = newest
                                                        .map_or(Duration::ZERO, |n| (n - entry.created).unsigned_abs());
                                                    apply(self, &shared, entry, age);
                                                }
                                            }
                                        }
                                    }
                                }
                                Ok(Some(Err(e))) => {
                                    tracing::warn!(bucket = %bucket.name, error = %e, "a watch of the cluster broke off; watching again");
                                    break;
                                }
                                Ok(None) => break,
                                Err(_) => {
                                    tracing::debug!(bucket = %bucket.name, "a watch of the cluster went silent; watching again");
                                    break;
                                }
                            },
                            () = stopped(&mut stop) => return,
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot watch the cluster's registry; trying again");
                }
            }
            tokio::select! {
                () = tokio::time::sleep(backoff.next_delay()) => {}
                () = stopped(&mut stop) => return,
            }
        }
    }
}

/// Opens (and closes) a connection to `address`.
async fn try_reach(address: &str) -> Result<(), String> {
    let address: weft_core::Address = address.parse().map_err(|e| format!("{e}"))?;
    match tokio::time::timeout(REACH_TIMEOUT, weft_transport::connect(&address)).await {
        Ok(Ok(_connection)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {} s", REACH_TIMEOUT.as_secs())),
    }
}

impl RegistryBackend for NatsCluster {
    fn hosts(&self, shared: &Shared) -> BoxFuture<'static, Result<Vec<HostInfo>, Error>> {
        let me = super::this_host(shared);
        let mut list: Vec<HostInfo> = self
            .hosts_seen
            .lock()
            .values()
            // This host is up, whatever its last write says.
            .filter(|(h, _)| h.name != me.name)
            .cloned()
            .map(|(mut h, written)| {
                if written.elapsed() > self.ttl * 2 {
                    h.state = HostState::Down;
                    return h;
                }
                h.unreachable = self
                    .reach
                    .lock()
                    .unreachable
                    .values()
                    .filter(|(host, ..)| *host == h.name)
                    .map(|(_, u, _)| u.clone())
                    .collect();
                h.unreachable.sort_by(|a, b| a.instance.cmp(&b.instance));
                if !h.unreachable.is_empty() {
                    h.state = HostState::Unreachable;
                }
                h
            })
            .collect();
        list.push(me);
        list.sort_by(|a, b| a.name.cmp(&b.name));
        Box::pin(async move { Ok(list) })
    }

    fn claim(&self, shared: &Shared) -> BoxFuture<'static, Result<(), Error>> {
        let (hosts, ttl) = (self.hosts.clone(), self.ttl);
        let me = super::this_host(shared);
        let heartbeat = serde_json::to_vec(&me);
        Box::pin(async move {
            let key = encode_id(&me.name);
            let last = match hosts.get(&key).await {
                Ok(last) => last,
                Err(e) => {
                    return Err(Error::unavailable(format!(
                        "cannot read the cluster's hosts to take the name `{}`: {e}",
                        me.name
                    )));
                }
            };
            let last = last.and_then(|v| serde_json::from_slice::<HostInfo>(&v).ok());
            let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
            // The same address is this host coming back after it was killed.
            if let Some(last) = last
                && last.address != me.address
                && now_ms().saturating_sub(last.heartbeat_ms) <= ttl_ms.saturating_mul(2)
            {
                let age = now_ms().saturating_sub(last.heartbeat_ms);
                return Err(Error::invalid_argument(
                    "name",
                    format!(
                        "another host named `{}` is up in the cluster, at {} (its heartbeat is {:.1} s old); \
                         give this one another name with --name",
                        me.name,
                        last.address,
                        age as f64 / 1000.0
                    ),
                ));
            }
            // At once, so that a host started right after this one with
            // the same name finds it.
            let heartbeat = heartbeat.map_err(|e| {
                Error::internal(format!("cannot encode this host's heartbeat: {e}"))
            })?;
            hosts.put(&key, heartbeat.into()).await.map_err(|e| {
                Error::unavailable(format!(
                    "cannot write this host's heartbeat to the cluster: {e}"
                ))
            })?;
            Ok(())
        })
    }

    fn run(
        self: Arc<Self>,
        shared: Arc<Shared>,
        stop: watch::Receiver<bool>,
    ) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            tokio::join!(
                self.announce(shared.clone(), stop.clone()),
                self.check_reach(shared.clone(), stop.clone()),
                self.follow(
                    &self.kv,
                    Self::apply,
                    Some(self.ttl * 2),
                    shared.clone(),
                    stop.clone()
                ),
                self.follow(
                    &self.hosts,
                    Self::apply_host,
                    Some(self.ttl * 2),
                    shared.clone(),
                    stop.clone()
                ),
                self.follow(
                    &self.mains,
                    Self::apply_main,
                    None,
                    shared.clone(),
                    stop.clone()
                ),
                self.follow(&self.tokens, Self::apply_token, None, shared, stop),
            );
        })
    }
}

impl TokenBackend for NatsCluster {
    fn share(&self, record: &TokenRecord) -> BoxFuture<'static, Result<(), Error>> {
        let tokens = self.tokens.clone();
        let key = encode_id(&record.id);
        let value = serde_json::to_vec(record);
        Box::pin(async move {
            let value =
                value.map_err(|e| Error::internal(format!("cannot encode a token: {e}")))?;
            tokens.put(key, value.into()).await.map_err(|e| {
                Error::unavailable(format!(
                    "cannot share the token with the cluster: {e}; it works on this host only until NATS is back"
                ))
            })?;
            Ok(())
        })
    }

    fn revoke(&self, id: &str) -> BoxFuture<'static, Result<(), Error>> {
        let tokens = self.tokens.clone();
        let key = encode_id(id);
        Box::pin(async move {
            tokens.delete(key).await.map_err(|e| {
                Error::unavailable(format!(
                    "cannot revoke the token in the cluster: {e}; it is revoked on this host, try again for the others"
                ))
            })
        })
    }
}

impl NotificationBackend for NatsCluster {
    fn add(&self, notification: Notification) -> BoxFuture<'static, Result<Notification, Error>> {
        let js = self.js.clone();
        Box::pin(async move {
            let failed = |e: String| {
                Error::unavailable(format!(
                    "the notification could not be stored in the cluster: {e}; try again once NATS is back"
                ))
            };
            let body = serde_json::to_vec(&notification)
                .map_err(|e| Error::internal(format!("cannot encode a notification: {e}")))?;
            let stored = tokio::time::timeout(NOTIFICATIONS_TIMEOUT, async {
                js.publish(NOTIFICATIONS_SUBJECT, body.into())
                    .await
                    .map_err(|e| e.to_string())?
                    .await
                    .map_err(|e| e.to_string())
            })
            .await
            .map_err(|_| failed("no acknowledgement in time".into()))?
            .map_err(failed)?;
            let mut notification = notification;
            notification.id = stored.sequence;
            Ok(notification)
        })
    }

    fn list(
        &self,
        after: Option<u64>,
        limit: Option<usize>,
    ) -> BoxFuture<'static, Result<Vec<Notification>, Error>> {
        let js = self.js.clone();
        Box::pin(async move {
            tokio::time::timeout(NOTIFICATIONS_TIMEOUT, read_notifications(js, after, limit))
                .await
                .unwrap_or_else(|_| {
                    Err(Error::unavailable(
                        "reading the cluster's notifications took too long; try again",
                    ))
                })
        })
    }
}

/// Reads the notifications after `after` (the newest `limit` of them) from
/// the stream, with an ordered consumer from the first one wanted to the
/// last one stored when the read began.
async fn read_notifications(
    js: jetstream::Context,
    after: Option<u64>,
    limit: Option<usize>,
) -> Result<Vec<Notification>, Error> {
    let failed =
        |e: String| Error::unavailable(format!("cannot read the cluster's notifications: {e}"));
    let mut stream = js
        .get_stream(NOTIFICATIONS)
        .await
        .map_err(|e| failed(e.to_string()))?;
    let (messages, first, last) = {
        let state = &stream
            .info()
            .await
            .map_err(|e| failed(e.to_string()))?
            .state;
        (state.messages, state.first_sequence, state.last_sequence)
    };
    if messages == 0 || limit == Some(0) {
        return Ok(Vec::new());
    }
    let mut start = after.map_or(first, |a| a.saturating_add(1)).max(first);
    if let Some(limit) = limit {
        start = start.max(last.saturating_sub(limit as u64 - 1));
    }
    if start > last {
        return Ok(Vec::new());
    }
    let consumer = stream
        .create_consumer(jetstream::consumer::pull::OrderedConfig {
            deliver_policy: jetstream::consumer::DeliverPolicy::ByStartSequence {
                start_sequence: start,
            },
            ..Default::default()
        })
        .await
        .map_err(|e| failed(e.to_string()))?;
    let mut messages = consumer
        .messages()
        .await
        .map_err(|e| failed(e.to_string()))?;
    let mut out = Vec::new();
    while let Some(message) = messages.next().await {
        let message = message.map_err(|e| failed(e.to_string()))?;
        let sequence = message
            .info()
            .map_err(|e| failed(e.to_string()))?
            .stream_sequence;
        match serde_json::from_slice::<Notification>(&message.payload) {
            Ok(mut n) => {
                n.id = sequence;
                out.push(n);
            }
            Err(e) => {
                tracing::warn!(sequence, error = %e, "skipping an unreadable notification in the cluster")
            }
        }
        if sequence >= last {
            break;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_make_keys_and_read_back() {
        for id in ["die_roller-1.0.0-1", "a b/c", "x=y", "ünï"] {
            let key = encode_id(id);
            assert!(
                key.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_=".contains(&b)),
                "{key}"
            );
            assert_eq!(decode_id(&key).as_deref(), Some(id));
        }
        assert_eq!(encode_id("a.b"), "a=2Eb");
    }

    #[test]
    fn local_addresses_are_advertised() {
        assert_eq!(
            advertised("tcp://127.0.0.1:4312", "10.0.0.7"),
            "tcp://10.0.0.7:4312"
        );
        assert_eq!(
            advertised("0.0.0.0:4312", "10.0.0.7"),
            "tcp://10.0.0.7:4312"
        );
        assert_eq!(
            advertised("tcp://[::1]:4312", "fd00::7"),
            "tcp://[fd00::7]:4312"
        );
        assert_eq!(
            advertised("tcp://10.0.0.9:4312", "10.0.0.7"),
            "tcp://10.0.0.9:4312"
        );
        assert_eq!(
            advertised("unix:///tmp/s.sock", "10.0.0.7"),
            "unix:///tmp/s.sock"
        );
    }
}
