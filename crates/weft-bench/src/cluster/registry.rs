//! The registry at scale: three weft hosts on one nats-server (all on
//! 127.0.0.1), `plan.instances` instances registered across them, then
//!
//! - visibility: `plan.samples` times, one instance more is registered
//!   with one host (in turn) and then deregistered, and a caller's watch
//!   stream on every host (`weft.host` `watch`, the stream a
//!   `weft::Client` keeps its registry cache with) is timed until it shows
//!   the instance up, and then down;
//! - rest: each host's (and nats-server's) resident memory, and their CPU
//!   over `plan.rest` with nothing happening but the instances' keepalives
//!   and the hosts' own renewals.
//!
//! The instances are real registrations, made the way the SDK makes them
//! (`register` on the host's wire service, `keepalive` every third of the
//! lease), but many per connection, by this process, so that a thousand
//! cost a thousand entries and no thousand processes. They are never
//! called, but their addresses accept connections (a listener per
//! service in this process), since every host connects once to each
//! other host's instances to learn whether it reaches them.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use futures::{StreamExt as _, TryStreamExt as _};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use weft_core::codec;
use weft_host_api::wire::{self, InstanceId, InstanceInfo, RegisterReply, WatchEvent};
use weft_transport::{ConnectOptions, Connection};
use weft_wire::Headers;

use super::{ClusterHost, Nats, Plan};
use crate::cpu;
use crate::measure::Flavour;
use crate::systems::weft_echo;

/// The hosts' names.
const HOSTS: [&str; 3] = ["h1", "h2", "h3"];

/// Services the instances are spread over, as a mesh has many services
/// with several instances each.
const SERVICES: usize = 20;

/// Registrations in flight per host connection.
const IN_FLIGHT: usize = 64;

/// How long one call to a host may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the registered instances may take to appear on every host.
const REGISTERED_TIMEOUT: Duration = Duration::from_secs(120);

/// How long one sample may take to appear (or disappear) on every host.
const SAMPLE_TIMEOUT: Duration = Duration::from_secs(10);

/// A pause before each addition and each removal, so that samples spread
/// over several of the hosts' renewal rounds rather than a burst, and a
/// removal is as likely as an addition to meet one.
const SAMPLE_GAP: Duration = Duration::from_millis(10);

/// A pause after the bulk registration and after the samples, so that
/// what they set off has settled before the next phase.
const SETTLE: Duration = Duration::from_secs(1);

/// Instance ids of the samples start with this; the watchers time only
/// these.
const SAMPLE_PREFIX: &str = "sample-";

/// A bound on keepalive rounds, far beyond any run.
const MAX_ROUNDS: usize = 1_000_000;

/// A bound on the events one watch stream is read for.
const MAX_EVENTS: u64 = 1_000_000_000;

/// What the registry benchmark measured.
#[derive(Debug, Serialize)]
pub(crate) struct Outcome {
    pub(crate) hosts: Vec<&'static str>,
    pub(crate) instances: usize,
    pub(crate) services: usize,
    pub(crate) lease_ttl_s: f64,
    /// From the first registration until every host's watch stream listed
    /// every instance, in s.
    pub(crate) registered_s: f64,
    /// Per sample, in ms from the `register` call: until the watch stream
    /// of the host it registered with showed it, and until every host's
    /// did.
    pub(crate) added_own_ms: Vec<f64>,
    pub(crate) added_every_ms: Vec<f64>,
    /// The same from the `deregister` call, until it was gone.
    pub(crate) removed_own_ms: Vec<f64>,
    pub(crate) removed_every_ms: Vec<f64>,
    /// The length of the rest window, in s.
    pub(crate) rest_s: f64,
    /// The hosts, then nats-server.
    pub(crate) processes: Vec<Resources>,
    /// The share of the machine's CPU other processes took during the rest
    /// window, in %.
    pub(crate) others_cpu_pct: Option<f64>,
}

/// One process's memory and CPU.
#[derive(Debug, Serialize)]
pub(crate) struct Resources {
    pub(crate) name: String,
    /// Resident memory with no instance registered, in KiB.
    pub(crate) rss_empty_kib: Option<u64>,
    /// Resident memory at rest with every instance registered, in KiB.
    pub(crate) rss_kib: Option<u64>,
    /// CPU (user + system) at rest, in % of one core.
    pub(crate) cpu_pct: f64,
}

/// Starts nats-server and the hosts on 127.0.0.1 and measures.
pub(crate) fn run(plan: &Plan, nats_server: &Path) -> anyhow::Result<Outcome> {
    let runtime = Flavour::MultiThread.runtime()?;
    let outcome = runtime.block_on(measure(plan, nats_server));
    runtime.shutdown_timeout(Duration::from_secs(1));
    outcome
}

async fn measure(plan: &Plan, nats_server: &Path) -> anyhow::Result<Outcome> {
    eprintln!(
        "cluster-registry: starting nats-server and {} hosts",
        HOSTS.len()
    );
    let nats = Nats::start(None, nats_server, "127.0.0.1").await?;
    let lease = plan.lease_ttl;
    let mut hosts = Vec::with_capacity(HOSTS.len());
    for name in HOSTS {
        hosts.push(ClusterHost::start(None, nats.url(), name, None, lease).await?);
    }
    let alive = || -> anyhow::Result<()> {
        nats.check_alive()?;
        hosts.iter().try_for_each(ClusterHost::check_alive)
    };
    let mut watchers = Vec::with_capacity(hosts.len());
    for host in &hosts {
        watchers.push(Watcher::start(host.address()).await?);
    }
    for (watcher, host) in watchers.iter().zip(&hosts) {
        watcher
            .wait(
                &format!("{}'s registry", host.name()),
                REGISTERED_TIMEOUT,
                |v| v.synced,
            )
            .await?;
    }
    let mut pids: Vec<u32> = hosts.iter().map(ClusterHost::pid).collect();
    pids.push(nats.server_pid());
    let rss_empty: Vec<Option<u64>> = pids.iter().map(|&p| cpu::rss_kib(p)).collect();

    eprintln!(
        "cluster-registry: registering {} instances across the hosts",
        plan.instances
    );
    // The instances' connections, and one per host for the samples, as a
    // new instance has a connection of its own.
    let mut registrars = Vec::with_capacity(hosts.len());
    let mut samplers = Vec::with_capacity(hosts.len());
    for host in &hosts {
        registrars.push(connect(host.address()).await?);
        samplers.push(connect(host.address()).await?);
    }
    let listeners = Listeners::start().await?;
    let spec = weft_echo::echo_spec();
    let started = Instant::now();
    let mut ids: Vec<Vec<String>> = vec![Vec::new(); hosts.len()];
    let mut bulk = Vec::with_capacity(hosts.len());
    for (h, conn) in registrars.iter().enumerate() {
        let mine: Vec<InstanceInfo> = (0..plan.instances)
            .filter(|n| n % hosts.len() == h)
            .map(|n| instance(format!("i{n:05}"), n, &spec, &listeners))
            .collect();
        ids[h] = mine.iter().map(|i| i.id.clone()).collect();
        bulk.push(register_all(conn, mine));
    }
    let replies = futures::future::try_join_all(bulk).await?;
    let every = replies
        .iter()
        .flatten()
        .map(|r| Duration::from_millis(r.lease_ttl_ms / 3))
        .min()
        .unwrap_or(lease / 3)
        .max(Duration::from_millis(50));
    let (stop_keepalives, stopped) = watch::channel(false);
    let keepalives: Vec<_> = registrars
        .iter()
        .zip(&ids)
        .map(|(conn, ids)| {
            tokio::spawn(keep_alive(
                conn.clone(),
                ids.clone(),
                every,
                stopped.clone(),
            ))
        })
        .collect();
    for (watcher, host) in watchers.iter().zip(&hosts) {
        watcher
            .wait(
                &format!("{} instances on {}", plan.instances, host.name()),
                REGISTERED_TIMEOUT,
                |v| v.instances.len() >= plan.instances,
            )
            .await?;
    }
    let registered_s = started.elapsed().as_secs_f64();
    eprintln!("cluster-registry: every host lists them after {registered_s:.2} s");
    tokio::time::sleep(SETTLE).await;

    eprintln!(
        "cluster-registry: {} instances added and removed one at a time",
        plan.samples
    );
    let mut outcome = Outcome {
        hosts: HOSTS.to_vec(),
        instances: plan.instances,
        services: SERVICES.min(plan.instances.max(1)),
        lease_ttl_s: lease.as_secs_f64(),
        registered_s,
        added_own_ms: Vec::with_capacity(plan.samples),
        added_every_ms: Vec::with_capacity(plan.samples),
        removed_own_ms: Vec::with_capacity(plan.samples),
        removed_every_ms: Vec::with_capacity(plan.samples),
        rest_s: plan.rest.as_secs_f64(),
        processes: Vec::new(),
        others_cpu_pct: None,
    };
    for s in 0..plan.samples {
        alive()?;
        let h = s % hosts.len();
        let sample = instance(format!("{SAMPLE_PREFIX}{s}"), s, &spec, &listeners);
        let id = sample.id.clone();
        let sent = Instant::now();
        let _: RegisterReply = call(
            &samplers[h],
            wire::REGISTER,
            &wire::RegisterRequest { instance: sample },
        )
        .await?;
        let seen = seen_on_all(&watchers, &hosts, &id, "up", |v| v.up.get(&id).copied()).await?;
        outcome.added_own_ms.push(ms(seen[h] - sent));
        outcome.added_every_ms.push(ms(max(&seen) - sent));
        tokio::time::sleep(SAMPLE_GAP).await;
        let sent = Instant::now();
        let () = call(
            &samplers[h],
            wire::DEREGISTER,
            &InstanceId { id: id.clone() },
        )
        .await?;
        let seen =
            seen_on_all(&watchers, &hosts, &id, "down", |v| v.down.get(&id).copied()).await?;
        outcome.removed_own_ms.push(ms(seen[h] - sent));
        outcome.removed_every_ms.push(ms(max(&seen) - sent));
        for watcher in &watchers {
            watcher.forget(&id);
        }
        tokio::time::sleep(SAMPLE_GAP).await;
    }
    tokio::time::sleep(SETTLE).await;

    eprintln!(
        "cluster-registry: the hosts at rest for {:.1} s",
        plan.rest.as_secs_f64()
    );
    alive()?;
    let before = cpu::Sample::now(&pids);
    tokio::time::sleep(plan.rest).await;
    let after = cpu::Sample::now(&pids);
    alive()?;
    let names = hosts
        .iter()
        .map(|h| format!("host {}", h.name()))
        .chain(std::iter::once("nats-server".to_owned()));
    for (i, name) in names.enumerate() {
        let cpu_s = match (&before, &after) {
            (Some(b), Some(a)) => b.cpu_seconds(a, |k| k == i),
            _ => f64::NAN,
        };
        outcome.processes.push(Resources {
            name,
            rss_empty_kib: rss_empty[i],
            rss_kib: cpu::rss_kib(pids[i]),
            cpu_pct: cpu_s / plan.rest.as_secs_f64() * 100.0,
        });
    }
    outcome.others_cpu_pct = before
        .zip(after)
        .and_then(|(b, a)| b.others_share(&a))
        .map(|s| s * 100.0);
    for watcher in &watchers {
        watcher.check()?;
    }
    let _ = stop_keepalives.send(true);
    for task in keepalives {
        task.await.context("a keepalive task panicked")??;
    }
    Ok(outcome)
}

/// What one host's watch stream has shown.
#[derive(Debug, Default)]
struct View {
    /// The snapshot has arrived.
    synced: bool,
    /// The instances it lists.
    instances: HashSet<String>,
    /// When each sample instance was first shown up, and then down.
    up: HashMap<String, Instant>,
    down: HashMap<String, Instant>,
    /// Why the stream ended, if it did.
    ended: Option<String>,
}

/// A caller's watch stream on one host, read by a task that stamps each
/// event as it arrives.
#[derive(Debug)]
struct Watcher {
    view: watch::Sender<View>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Watcher {
    async fn start(host: &str) -> anyhow::Result<Watcher> {
        let conn = connect(host).await?;
        let payload = codec::encode(conn.codec(), &serde_json::json!({}))?;
        let mut stream = conn.call_stream(Headers::new(wire::SERVICE, wire::WATCH), payload);
        let (view, _) = watch::channel(View::default());
        let writer = view.clone();
        let task = tokio::spawn(async move {
            let why = 'read: {
                for _ in 0..MAX_EVENTS {
                    let item = match stream.next().await {
                        Some(Ok(item)) => item,
                        Some(Err(e)) => break 'read format!("the watch stream failed: {e}"),
                        None => break 'read "the watch stream ended".to_owned(),
                    };
                    let now = Instant::now();
                    let event: WatchEvent = match codec::decode(conn.codec(), &item) {
                        Ok(event) => event,
                        Err(e) => break 'read format!("a watch event does not decode: {e}"),
                    };
                    writer.send_modify(|v| v.apply(event, now));
                }
                "read as many events as a run may have".to_owned()
            };
            writer.send_modify(|v| v.ended = Some(why));
        });
        Ok(Watcher { view, task })
    }

    /// Waits (at most `timeout`) until `ready` holds for the view.
    async fn wait(
        &self,
        what: &str,
        timeout: Duration,
        ready: impl Fn(&View) -> bool,
    ) -> anyhow::Result<()> {
        let mut rx = self.view.subscribe();
        let waited = tokio::time::timeout(timeout, rx.wait_for(|v| v.ended.is_some() || ready(v)))
            .await
            .map_err(|_| anyhow!("{what}: not seen within {}s", timeout.as_secs()))?
            .map_err(|_| anyhow!("{what}: the watcher is gone"))?;
        match &waited.ended {
            Some(why) if !ready(&waited) => bail!("{what}: {why}"),
            _ => Ok(()),
        }
    }

    /// The sample `id` is done with: its stamps are dropped.
    fn forget(&self, id: &str) {
        self.view.send_modify(|v| {
            v.up.remove(id);
            v.down.remove(id);
        });
    }

    /// Fails if the stream ended.
    fn check(&self) -> anyhow::Result<()> {
        match &self.view.borrow().ended {
            Some(why) => bail!("{why}"),
            None => Ok(()),
        }
    }
}

impl View {
    fn apply(&mut self, event: WatchEvent, now: Instant) {
        match event {
            WatchEvent::Snapshot { instances, .. } => {
                self.instances = instances.into_iter().map(|i| i.id).collect();
                self.synced = true;
            }
            WatchEvent::Up { instance } => {
                if instance.id.starts_with(SAMPLE_PREFIX) {
                    self.up.entry(instance.id.clone()).or_insert(now);
                }
                self.instances.insert(instance.id);
            }
            WatchEvent::Down { id, .. } => {
                if id.starts_with(SAMPLE_PREFIX) {
                    self.down.entry(id.clone()).or_insert(now);
                }
                self.instances.remove(&id);
            }
            WatchEvent::Main { .. } => {}
        }
    }
}

/// When each host's watcher showed the sample `id` `what` (up or down),
/// as `stamp` reads it from a view; waits until all have.
async fn seen_on_all(
    watchers: &[Watcher],
    hosts: &[ClusterHost],
    id: &str,
    what: &str,
    stamp: impl Fn(&View) -> Option<Instant>,
) -> anyhow::Result<Vec<Instant>> {
    let mut seen = Vec::with_capacity(watchers.len());
    for (watcher, host) in watchers.iter().zip(hosts) {
        let label = format!("{id} {what} on {}", host.name());
        watcher
            .wait(&label, SAMPLE_TIMEOUT, |v| stamp(v).is_some())
            .await?;
        seen.push(stamp(&watcher.view.borrow()).with_context(|| label.clone())?);
    }
    Ok(seen)
}

fn max(instants: &[Instant]) -> Instant {
    instants
        .iter()
        .copied()
        .max()
        .expect("one instant per host")
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// A wire connection to the host at `host`.
async fn connect(host: &str) -> anyhow::Result<Connection> {
    let address = host.parse()?;
    Connection::connect(&address, &ConnectOptions::default())
        .await
        .with_context(|| format!("cannot connect to the weft host at {host}"))
}

/// Calls `entrypoint` of the host's wire service with `args`, an object
/// of named arguments.
async fn call<A: Serialize + ?Sized, R: DeserializeOwned>(
    conn: &Connection,
    entrypoint: &str,
    args: &A,
) -> anyhow::Result<R> {
    let payload = weft_core::args::encode(conn.codec(), args)?;
    let reply = tokio::time::timeout(
        CALL_TIMEOUT,
        conn.call(Headers::new(wire::SERVICE, entrypoint), payload),
    )
    .await
    .map_err(|_| {
        anyhow!(
            "the host did not answer `{entrypoint}` within {}s",
            CALL_TIMEOUT.as_secs()
        )
    })?
    .with_context(|| format!("the host refused `{entrypoint}`"))?;
    Ok(codec::decode(conn.codec(), &reply)?)
}

/// The `n`-th instance: of one of [`SERVICES`] services, with the echo
/// service's entrypoints, at its service's listener.
fn instance(id: String, n: usize, spec: &weft::ServiceSpec, listeners: &Listeners) -> InstanceInfo {
    let service = format!("scale-{:02}", n % SERVICES);
    let mut spec = spec.clone();
    spec.name = service.clone();
    InstanceInfo {
        id,
        service,
        version: weft::Version::new(1, 0, 0),
        address: format!("tcp://{}", listeners.addresses[n % SERVICES]),
        spec,
        pid: None,
        started_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
        host: None,
    }
}

/// A listener per service on 127.0.0.1, where its instances are
/// announced: each accepts connections and closes them, which is all the
/// hosts' reachability check does with them. Dropping it stops them.
#[derive(Debug)]
struct Listeners {
    addresses: Vec<std::net::SocketAddr>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// A bound on the connections one listener accepts, far beyond any run.
const MAX_ACCEPTS: usize = 100_000_000;

impl Listeners {
    async fn start() -> anyhow::Result<Listeners> {
        let mut listeners = Listeners {
            addresses: Vec::with_capacity(SERVICES),
            tasks: Vec::with_capacity(SERVICES),
        };
        for _ in 0..SERVICES {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .context("cannot listen on 127.0.0.1")?;
            listeners.addresses.push(listener.local_addr()?);
            listeners.tasks.push(tokio::spawn(async move {
                for _ in 0..MAX_ACCEPTS {
                    if listener.accept().await.is_err() {
                        return;
                    }
                }
            }));
        }
        Ok(listeners)
    }
}

impl Drop for Listeners {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Registers `instances` over `conn`, [`IN_FLIGHT`] at a time.
async fn register_all(
    conn: &Connection,
    instances: Vec<InstanceInfo>,
) -> anyhow::Result<Vec<RegisterReply>> {
    futures::stream::iter(instances)
        .map(|instance| async move {
            call::<_, RegisterReply>(conn, wire::REGISTER, &wire::RegisterRequest { instance })
                .await
        })
        .buffer_unordered(IN_FLIGHT)
        .try_collect()
        .await
}

/// Renews the lease of each of `ids` every `every`, as each instance's SDK
/// would, until `stop` turns true. Instances start at different moments,
/// so their keepalives are spread evenly over the period rather than sent
/// in one burst.
async fn keep_alive(
    conn: Connection,
    ids: Vec<String>,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let tick = every / u32::try_from(ids.len()).unwrap_or(u32::MAX);
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + tick, tick);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for id in ids
        .iter()
        .cycle()
        .take(ids.len().saturating_mul(MAX_ROUNDS))
    {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return Ok(()),
            _ = ticks.tick() => {}
        }
        call::<_, ()>(&conn, wire::KEEPALIVE, &InstanceId { id: id.clone() })
            .await
            .with_context(|| format!("the keepalive of {id}"))?;
    }
    Ok(())
}
