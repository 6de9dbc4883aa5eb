//! One measurement: callers in a closed loop (each sends its next call when
//! the previous reply arrives), a warm-up, then a fixed window whose calls
//! are timed into an HDR histogram.

use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow};
use hdrhistogram::Histogram;
use serde::Serialize;

use crate::cpu;
use crate::systems::{Caller, Server, System};

/// The largest latency recorded exactly (60 s, in ns); slower calls are
/// recorded as this.
const HIGHEST_NS: u64 = 60_000_000_000;

/// Significant figures the histogram keeps: 0.1% resolution.
const SIGFIGS: u8 = 3;

/// How long after the window closes a caller may take to finish its last
/// call before the measurement is declared hung.
const GRACE: Duration = Duration::from_secs(10);

/// A bound on calls per caller per measurement, so that no loop depends on
/// the clock alone; far above what one caller can do in the longest window.
const MAX_CALLS_PER_CALLER: u64 = 1_000_000_000;

/// What to measure and for how long.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Plan {
    /// Measured window per case and repetition.
    pub(crate) duration: Duration,
    /// Unmeasured calls before the window.
    pub(crate) warmup: Duration,
    /// Repetitions of each case.
    pub(crate) reps: u32,
    /// Payload sizes in bytes.
    pub(crate) payloads: Vec<usize>,
    /// Callers in the concurrent scenario.
    pub(crate) concurrency: usize,
    /// The scenarios to measure.
    pub(crate) scenarios: Vec<ScenarioKind>,
    /// The tokio runtime flavours of the callers and servers.
    pub(crate) flavours: Vec<Flavour>,
    /// Repeat measurements during which other work took more than this
    /// percentage of the CPU.
    pub(crate) max_others_cpu: Option<f64>,
}

impl Plan {
    /// Every case, in the order they are measured within a repetition.
    pub(crate) fn cases(&self) -> Vec<Case> {
        let mut cases = Vec::new();
        for &flavour in &self.flavours {
            for &payload in &self.payloads {
                for &kind in &self.scenarios {
                    let scenario = match kind {
                        ScenarioKind::Sequential => Scenario::Sequential,
                        ScenarioKind::Concurrent => Scenario::Concurrent(self.concurrency),
                    };
                    cases.push(Case {
                        flavour,
                        payload,
                        scenario,
                    });
                }
            }
        }
        cases
    }
}

/// A tokio runtime flavour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Flavour {
    /// Everything on the thread that calls `block_on`.
    CurrentThread,
    /// A worker per CPU, with work stealing (`#[tokio::main]`'s default).
    MultiThread,
}

impl Flavour {
    /// The name in tables, JSON and on the command line.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Flavour::CurrentThread => "current-thread",
            Flavour::MultiThread => "multi-thread",
        }
    }

    /// A new runtime of this flavour, with IO and timers.
    pub(crate) fn runtime(self) -> anyhow::Result<tokio::runtime::Runtime> {
        let mut builder = match self {
            Flavour::CurrentThread => tokio::runtime::Builder::new_current_thread(),
            Flavour::MultiThread => tokio::runtime::Builder::new_multi_thread(),
        };
        builder
            .enable_all()
            .build()
            .with_context(|| format!("cannot start a {} tokio runtime", self.name()))
    }
}

/// The scenarios `--scenarios` can select.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum ScenarioKind {
    /// One call at a time.
    Sequential,
    /// `--concurrency` calls in flight.
    Concurrent,
}

/// How many calls are in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scenario {
    /// One caller, one call at a time.
    Sequential,
    /// This many callers, each with one call in flight.
    Concurrent(usize),
}

impl Scenario {
    /// The label in tables and JSON.
    pub(crate) fn label(self) -> String {
        match self {
            Scenario::Sequential => "1 in flight".to_owned(),
            Scenario::Concurrent(n) => format!("{n} in flight"),
        }
    }

    /// How many callers make the calls.
    pub(crate) fn callers(self) -> usize {
        match self {
            Scenario::Sequential => 1,
            Scenario::Concurrent(n) => n,
        }
    }
}

/// One combination of runtime flavour, payload size and scenario, measured
/// for every system in turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Case {
    pub(crate) flavour: Flavour,
    pub(crate) payload: usize,
    pub(crate) scenario: Scenario,
}

impl Case {
    /// `multi-thread, 64 B, 1 in flight`.
    pub(crate) fn label(&self) -> String {
        let size = if self.payload >= 1024 && self.payload.is_multiple_of(1024) {
            format!("{} KiB", self.payload / 1024)
        } else {
            format!("{} B", self.payload)
        };
        format!(
            "{} runtime, {size}, {}",
            self.flavour.name(),
            self.scenario.label()
        )
    }
}

/// The outcome of one measurement.
#[derive(Debug, Clone)]
pub(crate) struct Run {
    pub(crate) system: System,
    pub(crate) case: Case,
    /// Calls started inside the window.
    pub(crate) calls: u64,
    pub(crate) p50_us: f64,
    pub(crate) p99_us: f64,
    pub(crate) p999_us: f64,
    pub(crate) max_us: f64,
    pub(crate) mean_us: f64,
    pub(crate) calls_per_s: f64,
    /// The share of all CPU time that went to other work during the window.
    pub(crate) others_cpu: Option<f64>,
    /// CPU time per call of the calling process and of the system's server
    /// processes, in µs.
    pub(crate) cpu_per_call_us: Option<(f64, f64)>,
}

/// A payload of printable ASCII, so that systems that carry text (weft's
/// `String` echo) carry exactly these bytes, with nothing to escape.
pub(crate) fn payload(size: usize) -> Vec<u8> {
    (0..size).map(|i| b'a' + (i % 26) as u8).collect()
}

/// Measures one case of one system once, on the runtime it runs on (of the
/// case's flavour).
pub(crate) async fn run(
    plan: &Plan,
    system: System,
    server: &Server,
    case: Case,
    other_pids: &[u32],
) -> anyhow::Result<Run> {
    let callers = system
        .callers(server, case.scenario.callers(), &payload(case.payload))
        .await?;
    run_callers(plan, system, callers, &server.pids(), case, other_pids).await
}

/// Measures `callers` (as many as `case` has in flight, connected to the
/// system whose server processes are `server_pids`) once, as [`run`] does.
pub(crate) async fn run_callers(
    plan: &Plan,
    system: System,
    callers: Vec<Caller>,
    server_pids: &[u32],
    case: Case,
    other_pids: &[u32],
) -> anyhow::Result<Run> {
    // Every caller shares one window, fixed before any of them starts.
    let start = Instant::now() + plan.warmup;
    let end = start + plan.duration;
    // This process first, then this system's servers, then the rest of
    // the benchmark's processes (other systems' idle servers).
    let mut pids = vec![std::process::id()];
    pids.extend_from_slice(server_pids);
    let servers = 1..pids.len();
    pids.extend(
        other_pids
            .iter()
            .filter(|p| !pids.contains(p))
            .collect::<Vec<_>>(),
    );
    let sampler = tokio::spawn(async move {
        tokio::time::sleep_until(start.into()).await;
        let before = cpu::Sample::now(&pids)?;
        tokio::time::sleep_until(end.into()).await;
        let after = cpu::Sample::now(&pids)?;
        Some((
            before.others_share(&after),
            before.cpu_seconds(&after, |i| i == 0),
            before.cpu_seconds(&after, |i| servers.contains(&i)),
        ))
    });
    let tasks: Vec<_> = callers
        .into_iter()
        .map(|caller| {
            tokio::spawn(tokio::time::timeout(
                end.saturating_duration_since(Instant::now()) + GRACE,
                call_loop(caller, start, end),
            ))
        })
        .collect();
    let mut merged = new_histogram()?;
    for task in tasks {
        let histogram = task
            .await
            .context("a caller task panicked")?
            .map_err(|_| {
                anyhow!(
                    "a call did not return within {}s after the window closed",
                    GRACE.as_secs()
                )
            })??;
        merged.add(&histogram)?;
    }
    let sampled = sampler.await.context("the CPU sampler panicked")?;
    let calls = merged.len();
    let others_cpu = sampled.and_then(|s| s.0);
    let cpu_per_call_us = sampled
        .filter(|_| calls > 0)
        .map(|(_, client, server)| (client * 1e6 / calls as f64, server * 1e6 / calls as f64));
    Ok(Run {
        system,
        case,
        calls,
        p50_us: merged.value_at_quantile(0.50) as f64 / 1e3,
        p99_us: merged.value_at_quantile(0.99) as f64 / 1e3,
        p999_us: merged.value_at_quantile(0.999) as f64 / 1e3,
        max_us: merged.max() as f64 / 1e3,
        mean_us: merged.mean() / 1e3,
        calls_per_s: calls as f64 / plan.duration.as_secs_f64(),
        others_cpu,
        cpu_per_call_us,
    })
}

fn new_histogram() -> anyhow::Result<Histogram<u64>> {
    Ok(Histogram::new_with_bounds(1, HIGHEST_NS, SIGFIGS)?)
}

/// Calls until `end`; records the latency of every call that started in
/// `[start, end)`. Calls straddling either edge are at most one per caller
/// each, so counting by start time neither gains nor loses calls overall.
async fn call_loop(
    mut caller: Caller,
    start: Instant,
    end: Instant,
) -> anyhow::Result<Histogram<u64>> {
    let mut histogram = new_histogram()?;
    for _ in 0..MAX_CALLS_PER_CALLER {
        let sent = Instant::now();
        if sent >= end {
            break;
        }
        caller.call().await?;
        if sent >= start {
            let ns = u64::try_from(sent.elapsed().as_nanos()).unwrap_or(u64::MAX);
            histogram.saturating_record(ns.clamp(1, HIGHEST_NS));
        }
    }
    Ok(histogram)
}
