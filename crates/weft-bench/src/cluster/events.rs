//! Events in a cluster: three nats-servers in one cluster with JetStream
//! (nodes `n1`, `n2`, `n3` on 127.0.0.1, each with its own ports and
//! store), and two weft hosts in cluster mode, A connected to `n1` and B to
//! `n2`, whose event log is on JetStream (a stream of three replicas per
//! topic).
//!
//! - Publishes: `weft::Client::publish` of a client of host A, which
//!   answers once JetStream has stored the event (on a quorum of the
//!   topic's three replicas), next to a direct async-nats JetStream publish
//!   (`publish(..).await?.await?`) from a connection to `n1` to a stream of
//!   the same settings (File storage, three replicas, the same duplicate
//!   window). Both carry the same 64 bytes of JSON (a string), and both
//!   streams' leaders are moved to `n1` first, so that neither pays a hop
//!   to a leader on another node that the other does not. One publish at a
//!   time and `concurrency` in flight (publishers sharing one client), in
//!   a closed loop (`measure::run_callers`), direct then weft.
//! - Publish to handler: an open loop publishes stamped events through
//!   host A at `event_rate` per second; a handler service registered with
//!   host B (the events suite's pool-mode `#[event_handler]`) records how
//!   long after its publish each arrived (wall clock, one machine).
//!
//! Hosts and nats-server run as they do in production (multi-threaded
//! runtimes; nats-server with its default `sync_interval`); the publishers
//! and the handler run on a multi-threaded runtime too.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use async_nats::jetstream::{self, stream};
use bytes::Bytes;

use super::{ClusterHost, Nats, Plan};
use crate::cpu;
use crate::events::{self, LATENCY_TOPIC, Publisher, Stamp, Window};
use crate::measure::{self, Case, Flavour, Run, Scenario, ScenarioKind};
use crate::process::ServerProcess;
use crate::systems::{self, System};

/// The topic of the publish figures; nothing consumes it.
pub(crate) const TOPIC: &str = "bench.cluster";

/// The stream and subject of the direct publishes.
const DIRECT_STREAM: &str = "BENCH_DIRECT";
const DIRECT_SUBJECT: &str = "bench.direct";

/// The JSON of every publish: a string of this many bytes with its quotes.
pub(crate) const PAYLOAD: usize = 64;

/// The nodes' server names; A connects to the first, B to the second.
const NODES: [&str; 3] = ["n1", "n2", "n3"];

/// Replicas of every stream measured, as weft makes them on three servers.
const REPLICAS: usize = 3;

/// weft's duplicate window (`EventsConfig`'s default), given to the direct
/// stream too.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(600);

/// Bytes of filler in the stamped events of the latency figure.
const STAMP_PAD: usize = 0;

/// How long the cluster may take to create a stream, and to get an event
/// to the handler for the first time.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// How often readiness is retried.
const READY_RETRY: Duration = Duration::from_millis(50);

/// Stepdowns tried to put a stream's leader on `n1`.
const LEADER_TRIES: usize = 10;

/// How long a stream may go without a leader after a stepdown.
const ELECTION_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a measurement's runtime may take to stop its remaining tasks.
const RUNTIME_SHUTDOWN: Duration = Duration::from_secs(1);

/// Who publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Side {
    /// async-nats JetStream publishes to `n1`.
    Direct,
    /// `weft::Client::publish` through host A.
    Weft,
}

impl Side {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Side::Direct => "jetstream-direct",
            Side::Weft => "weft",
        }
    }
}

/// What the events benchmark measured.
#[derive(Debug)]
pub(crate) struct Outcome {
    /// The publish figures, in the order taken.
    pub(crate) runs: Vec<(Side, Run)>,
    /// The publish-to-handler figure, one per repetition.
    pub(crate) latency: Vec<Latency>,
    pub(crate) rate: u32,
    /// Each measured stream and the node that led it.
    pub(crate) leaders: Vec<(String, String)>,
}

/// One repetition of the publish-to-handler figure.
#[derive(Debug, Clone)]
pub(crate) struct Latency {
    pub(crate) count: u64,
    pub(crate) p50_us: f64,
    pub(crate) p99_us: f64,
    pub(crate) max_us: f64,
    pub(crate) others_cpu: Option<f64>,
}

/// The nodes, hosts and handler. Fields drop in order: the handler, the
/// hosts, then the nodes.
#[derive(Debug)]
struct Machines {
    handler: ServerProcess,
    host_b: ClusterHost,
    host_a: ClusterHost,
    nodes: Vec<Nats>,
}

/// Starts the cluster, the hosts and the handler, then measures.
pub(crate) fn run(plan: &Plan, nats_server: &Path) -> anyhow::Result<Outcome> {
    let control = Flavour::CurrentThread.runtime()?;
    eprintln!("cluster-events: starting three clustered nats-servers, two hosts and a handler");
    let machines = control.block_on(Machines::start(nats_server, plan.lease_ttl))?;
    let leaders = control.block_on(machines.prepare())?;
    for (stream, leader) in &leaders {
        if leader != NODES[0] {
            eprintln!(
                "note: cluster-events: the stream {stream} is led by {leader}, not {}: \
                 its publishes take one hop more",
                NODES[0]
            );
        }
    }
    drop(control);
    let mut all_pids = machines.pids();
    all_pids.push(machines.handler.pid());
    let mut runs = Vec::new();
    let mut latency = Vec::new();
    let mut run_id = 1_000;
    for rep in 0..plan.reps {
        for &kind in &plan.scenarios {
            let scenario = match kind {
                ScenarioKind::Sequential => Scenario::Sequential,
                ScenarioKind::Concurrent => Scenario::Concurrent(plan.concurrency),
            };
            for side in [Side::Direct, Side::Weft] {
                eprintln!(
                    "rep {}/{}: cluster-events {} publishes, {}",
                    rep + 1,
                    plan.reps,
                    side.name(),
                    scenario.label()
                );
                machines.check_alive()?;
                let run = machines
                    .measure_publishes(plan, side, scenario, &all_pids)
                    .with_context(|| {
                        format!("measuring {} publishes, {}", side.name(), scenario.label())
                    })?;
                runs.push((side, run));
            }
        }
        eprintln!(
            "rep {}/{}: cluster-events publish→handler at {}/s, A → B",
            rep + 1,
            plan.reps,
            plan.event_rate
        );
        machines.check_alive()?;
        run_id += 1;
        latency.push(
            machines
                .measure_latency(plan, run_id, &all_pids)
                .context("measuring publish→handler")?,
        );
    }
    Ok(Outcome {
        runs,
        latency,
        rate: plan.event_rate,
        leaders,
    })
}

impl Machines {
    async fn start(nats_server: &Path, lease: Duration) -> anyhow::Result<Machines> {
        // Probed ports for the routes, since each node must be told the
        // others' before any of them runs.
        let probes = (0..NODES.len())
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
            .collect::<Result<Vec<_>, _>>()
            .context("cannot find free ports on 127.0.0.1")?;
        let ports = probes
            .iter()
            .map(|l| l.local_addr().map(|a| a.port()))
            .collect::<Result<Vec<_>, _>>()?;
        drop(probes);
        let routes = |me: usize| {
            ports
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != me)
                .map(|(_, p)| format!("nats://127.0.0.1:{p}"))
                .collect::<Vec<_>>()
                .join(",")
        };
        let routes: Vec<String> = (0..NODES.len()).map(routes).collect();
        // Together: a node serves JetStream only once a quorum has met.
        let nodes = futures::future::try_join_all(
            NODES
                .iter()
                .zip(ports.iter().zip(&routes))
                .map(|(name, (&port, routes))| Nats::start_node(nats_server, name, port, routes)),
        )
        .await?;
        let host_a = ClusterHost::start(None, nodes[0].url(), "a", None, lease).await?;
        let host_b = ClusterHost::start(None, nodes[1].url(), "b", None, lease).await?;
        let handler = ServerProcess::start(
            "weft-events-handler",
            Flavour::MultiThread,
            &["--host", host_b.address(), "--listen", "127.0.0.1:0"],
        )
        .await?;
        Ok(Machines {
            handler,
            host_b,
            host_a,
            nodes,
        })
    }

    fn check_alive(&self) -> anyhow::Result<()> {
        for node in &self.nodes {
            node.check_alive()?;
        }
        self.host_a.check_alive()?;
        self.host_b.check_alive()?;
        self.handler.check_alive()
    }

    /// nats-server's processes.
    fn nats_pids(&self) -> Vec<u32> {
        self.nodes.iter().map(Nats::server_pid).collect()
    }

    /// Every process of the cluster but the handler.
    fn pids(&self) -> Vec<u32> {
        let mut pids: Vec<u32> = self.nodes.iter().flat_map(Nats::pids).collect();
        pids.extend([self.host_a.pid(), self.host_b.pid()]);
        pids
    }

    /// Makes the streams (the direct one, and weft's two topics through
    /// host A), waits until an event reaches the handler through B, and
    /// moves every stream's leader to `n1`. Returns each stream's leader.
    async fn prepare(&self) -> anyhow::Result<Vec<(String, String)>> {
        let (client, js) = self.connect().await?;
        let direct = stream::Config {
            name: DIRECT_STREAM.to_owned(),
            subjects: vec![DIRECT_SUBJECT.to_owned()],
            storage: stream::StorageType::File,
            num_replicas: REPLICAS,
            duplicate_window: DUPLICATE_WINDOW,
            ..Default::default()
        };
        retry(
            "the direct stream",
            || self.check_alive(),
            async || {
                let stream = js.get_or_create_stream(direct.clone()).await?;
                anyhow::ensure!(
                    stream.cached_info().config.num_replicas == REPLICAS,
                    "the direct stream has {} replicas",
                    stream.cached_info().config.num_replicas
                );
                Ok(())
            },
        )
        .await?;
        let a = self.client(&self.host_a).await?;
        let b = self.client(&self.host_b).await?;
        let body = body();
        retry(
            "publishes through host A",
            || self.check_alive(),
            async || {
                a.publish(TOPIC, &*body).await?;
                a.publish(LATENCY_TOPIC, &Stamp::new(0, 0, true, ""))
                    .await?;
                Ok(())
            },
        )
        .await?;
        retry(
            "an event through host A to the handler at host B",
            || self.check_alive(),
            async || {
                events::weft::take(&b, 0, 1)
                    .await?
                    .map(drop)
                    .context("not yet")
            },
        )
        .await?;
        let mut leaders = Vec::new();
        let mut names = vec![DIRECT_STREAM.to_owned()];
        for topic in [TOPIC, LATENCY_TOPIC] {
            names.push(
                js.stream_by_subject(format!("weft.events.{topic}"))
                    .await
                    .with_context(|| format!("no stream takes weft's topic {topic}"))?,
            );
        }
        for name in names {
            let leader = move_leader(&client, &js, &name, NODES[0]).await?;
            leaders.push((name, leader));
        }
        Ok(leaders)
    }

    /// A connection to `n1`, where host A is connected too.
    async fn connect(&self) -> anyhow::Result<(async_nats::Client, jetstream::Context)> {
        let url = self.nodes[0].url();
        let client = async_nats::connect(url)
            .await
            .with_context(|| format!("cannot connect to nats-server at {url}"))?;
        let js = jetstream::new(client.clone());
        Ok((client, js))
    }

    async fn client(&self, host: &ClusterHost) -> anyhow::Result<weft::Client> {
        weft::Client::connect(host.address())
            .await
            .with_context(|| {
                format!(
                    "cannot connect to the weft host {} at {}",
                    host.name(),
                    host.address()
                )
            })
    }

    /// One closed-loop measurement of `side`'s publishes, on a fresh
    /// multi-threaded runtime.
    fn measure_publishes(
        &self,
        plan: &Plan,
        side: Side,
        scenario: Scenario,
        all_pids: &[u32],
    ) -> anyhow::Result<Run> {
        let case = Case {
            flavour: Flavour::MultiThread,
            payload: PAYLOAD,
            scenario,
        };
        let calls_plan = measure::Plan {
            duration: plan.duration,
            warmup: plan.warmup,
            reps: 1,
            payloads: vec![PAYLOAD],
            concurrency: scenario.callers(),
            scenarios: Vec::new(),
            flavours: vec![case.flavour],
            max_others_cpu: None,
        };
        let mut server_pids = self.nats_pids();
        if side == Side::Weft {
            server_pids.push(self.host_a.pid());
        }
        let runtime = case.flavour.runtime()?;
        let run = runtime.block_on(async {
            let n = scenario.callers();
            let callers: Vec<Caller> = match side {
                Side::Direct => {
                    let (_, js) = self.connect().await?;
                    let body = Bytes::from(serde_json::to_vec(&*body())?);
                    (0..n)
                        .map(|_| Caller::Direct {
                            js: js.clone(),
                            body: body.clone(),
                        })
                        .collect()
                }
                Side::Weft => {
                    let client = self.client(&self.host_a).await?;
                    let body = body();
                    (0..n)
                        .map(|_| Caller::Weft {
                            client: client.clone(),
                            body: body.clone(),
                        })
                        .collect()
                }
            };
            let callers = callers
                .into_iter()
                .map(systems::Caller::ClusterPublish)
                .collect();
            measure::run_callers(
                &calls_plan,
                System::ClusterEvents,
                callers,
                &server_pids,
                case,
                all_pids,
            )
            .await
        });
        runtime.shutdown_timeout(RUNTIME_SHUTDOWN);
        run
    }

    /// One open-loop publish-to-handler measurement, on a fresh
    /// multi-threaded runtime.
    fn measure_latency(
        &self,
        plan: &Plan,
        run_id: u64,
        all_pids: &[u32],
    ) -> anyhow::Result<Latency> {
        let runtime = Flavour::MultiThread.runtime()?;
        let result = runtime.block_on(async {
            let publisher = Publisher::Weft(self.client(&self.host_a).await?);
            let taker = self.client(&self.host_b).await?;
            let window = Window::new(plan.warmup, plan.duration);
            let mut pids = vec![std::process::id()];
            pids.extend(all_pids.iter().copied());
            pids.push(self.handler.pid());
            let sampler = tokio::spawn(async move {
                tokio::time::sleep_until(window.start.into()).await;
                let before = cpu::Sample::now(&pids)?;
                tokio::time::sleep_until(window.end.into()).await;
                before.others_share(&cpu::Sample::now(&pids)?)
            });
            let measured =
                events::publish_at_rate(&publisher, STAMP_PAD, plan.event_rate, &window, run_id)
                    .await?;
            let latencies = events::collect(
                async |expected: u64| events::weft::take(&taker, run_id, expected).await,
                measured,
            )
            .await?;
            let (p50_us, p99_us, max_us) = events::quantiles_us(&latencies)?;
            Ok(Latency {
                count: latencies.len() as u64,
                p50_us,
                p99_us,
                max_us,
                others_cpu: sampler.await.context("the CPU sampler panicked")?,
            })
        });
        runtime.shutdown_timeout(RUNTIME_SHUTDOWN);
        result
    }
}

/// The event of the publish figures: a JSON string of [`PAYLOAD`] bytes.
fn body() -> Arc<str> {
    measure::payload(PAYLOAD - 2)
        .into_iter()
        .map(char::from)
        .collect::<String>()
        .into()
}

/// Runs `attempt` until it succeeds, for at most [`READY_TIMEOUT`], failing
/// at once if `alive` fails.
async fn retry(
    what: &str,
    alive: impl Fn() -> anyhow::Result<()>,
    attempt: impl AsyncFn() -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + READY_TIMEOUT;
    let mut last = anyhow!("no attempt");
    for _ in 0..READY_TIMEOUT.as_millis() / READY_RETRY.as_millis() {
        alive()?;
        match attempt().await {
            Ok(()) => return Ok(()),
            Err(e) => last = e,
        }
        if Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(READY_RETRY).await;
    }
    Err(last.context(format!(
        "{what}: not ready within {}s",
        READY_TIMEOUT.as_secs()
    )))
}

/// The server name of the leader of stream `name`, if it has one.
async fn leader(js: &jetstream::Context, name: &str) -> anyhow::Result<Option<String>> {
    let mut stream = js.get_stream(name).await?;
    Ok(stream
        .info()
        .await?
        .cluster
        .as_ref()
        .and_then(|c| c.leader.clone()))
}

/// Asks stream `name`'s leader to step down in favour of `to` (nats-server
/// 2.11+ takes a preferred server; older ones elect any), up to
/// [`LEADER_TRIES`] times; returns the leader it ends with.
async fn move_leader(
    client: &async_nats::Client,
    js: &jetstream::Context,
    name: &str,
    to: &str,
) -> anyhow::Result<String> {
    let mut current = wait_leader(js, name, None).await?;
    for _ in 0..LEADER_TRIES {
        if current == to {
            break;
        }
        let request = serde_json::json!({ "placement": { "preferred": to } });
        let reply = client
            .request(
                format!("$JS.API.STREAM.LEADER.STEPDOWN.{name}"),
                request.to_string().into(),
            )
            .await
            .with_context(|| format!("cannot ask the leader of {name} to step down"))?;
        let reply: serde_json::Value = serde_json::from_slice(&reply.payload)?;
        if let Some(error) = reply.get("error") {
            eprintln!("note: cluster-events: the leader of {name} did not step down: {error}");
            break;
        }
        current = wait_leader(js, name, Some(&current)).await?;
    }
    Ok(current)
}

/// Waits until stream `name` has a leader other than `not`.
async fn wait_leader(
    js: &jetstream::Context,
    name: &str,
    not: Option<&str>,
) -> anyhow::Result<String> {
    for _ in 0..ELECTION_TIMEOUT.as_millis() / READY_RETRY.as_millis() {
        // Between leaders the stream does not answer: ask again.
        if let Ok(Some(leader)) = leader(js, name).await
            && Some(leader.as_str()) != not
        {
            return Ok(leader);
        }
        tokio::time::sleep(READY_RETRY).await;
    }
    bail!(
        "the stream {name} had no new leader within {}s",
        ELECTION_TIMEOUT.as_secs()
    )
}

/// One publisher of the publish figures.
#[derive(Debug)]
pub(crate) enum Caller {
    /// Through host A: answered once JetStream stored the event.
    Weft {
        client: weft::Client,
        body: Arc<str>,
    },
    /// Straight to JetStream: answered with the stream's acknowledgement.
    Direct { js: jetstream::Context, body: Bytes },
}

impl Caller {
    pub(crate) async fn call(&mut self) -> anyhow::Result<()> {
        match self {
            Caller::Weft { client, body } => {
                client.publish(TOPIC, &**body).await?;
            }
            Caller::Direct { js, body } => {
                js.publish(DIRECT_SUBJECT, body.clone()).await?.await?;
            }
        }
        Ok(())
    }
}
