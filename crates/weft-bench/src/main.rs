//! `weft-bench`: side-by-side latency and throughput of weft and the
//! systems it is compared with, on 127.0.0.1, printed as a table.
//!
//! ```text
//! $ cargo run --release -p weft-bench              # full run: 3 reps of every case, ~10 min
//! $ cargo run --release -p weft-bench -- --quick   # smoke test, well under a minute
//! $ cargo run --release -p weft-bench -- --json    # the same figures for scripts
//! $ cargo run --release -p weft-bench -- --systems raw-tcp,weft,tarpc --scenarios concurrent
//! $ cargo run --release -p weft-bench -- --systems weft-events,jetstream   # the events suite only
//! $ cargo run --release -p weft-bench -- --systems cluster-call,cluster-registry,cluster-events   # the cluster benchmarks only
//! ```
//!
//! Callers and callees always run in separate processes: the binary starts
//! copies of itself with the hidden `__serve` subcommand (`__serve --runtime
//! multi-thread raw-tcp`, `.. host`, `.. weft-echo`, `.. tarpc`,
//! `.. weft-events-handler`, `.. jetstream`, ..), each of
//! which prints its bound address on its first line of stdout. Every child
//! is stopped when the benchmark ends, fails or panics, and exits by itself
//! when the benchmark process disappears (its stdin closes).
//!
//! Systems (see [`systems::System`]): `raw-tcp` (the floor), `raw-unix`,
//! `weft`, `weft-unix`, `tarpc`, `tonic`, `nats` (when nats-server is
//! installed), and over HTTP/1.1 `gateway` (the weft host's gateway) and
//! `axum` (a bare handler).
//!
//! Cases: each tokio runtime flavour (callers and servers alike) × each
//! payload size (64 B, 16 KiB) × one call at a time and `--concurrency` (64)
//! calls in flight.
//!
//! The events suite (systems `weft-events`: a weft host and an event
//! handler service; `jetstream`: nats-server with JetStream file storage and
//! a pull consumer, when nats-server is installed, measured twice with
//! nats-server 2.10+: as configured by default, and as `jetstream-sync`
//! with `sync_interval: always`, an fsync before every acknowledgement like
//! weft's) measures, for each runtime flavour, durable publishes/s one at a
//! time and with `--event-batches` (64, 256) publishes in flight, and
//! publish-to-handler latency at `--event-rate` (500) publishes/s; it
//! reports weft over each JetStream configuration. `--quick`, `--reps`, `--duration`, `--warmup` and
//! `--runtimes` apply to it too.
//!
//! The cluster benchmarks (see [`cluster`]): `cluster-call`, a weft call
//! between hosts in two network namespaces joined through nats-server,
//! next to raw TCP between the same two (root and iproute2 needed); and
//! `cluster-registry`, `--cluster-instances` (1000) instances across three
//! hosts on one NATS: how soon an added or removed instance reaches a
//! caller on every host (`--cluster-samples`, 300), and each host's memory
//! and CPU at rest; and `cluster-events`, on three clustered nats-servers:
//! publishes through a weft host next to direct JetStream publishes to an
//! R3 stream (one at a time and `--concurrency` in flight), and
//! publish-to-handler latency from one host to a handler registered with
//! another at `--event-rate`. All need nats-server 2.10+ and are skipped,
//! saying why, without it. The method is in `docs/performance.md`.

mod cluster;
mod cpu;
mod events;
mod measure;
mod process;
mod report;
mod systems;

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};

use crate::measure::{Flavour, Plan, ScenarioKind};
use crate::systems::System;

/// Side-by-side benchmarks of weft against raw sockets, tarpc, tonic, NATS
/// and axum on 127.0.0.1.
#[derive(Debug, Parser)]
#[command(name = "weft-bench", version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    internal: Option<Internal>,

    /// Measured time per case and repetition (`2s`, `300ms`, `2.5`).
    #[arg(long, value_parser = parse_duration, default_value = "2s")]
    duration: Duration,

    /// Unmeasured warm-up before each measurement.
    #[arg(long, value_parser = parse_duration, default_value = "500ms")]
    warmup: Duration,

    /// Repetitions of every case; systems are interleaved within each.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    reps: u32,

    /// Calls in flight in the concurrent scenario.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(2..=4096))]
    concurrency: u32,

    /// Payload sizes in bytes.
    #[arg(long, value_delimiter = ',', default_value = "64,16384",
          value_parser = clap::value_parser!(u32).range(1..=1_048_576))]
    payloads: Vec<u32>,

    /// The systems to measure, in this order. Ratios are to `raw-tcp` (the
    /// floor) and to `weft`, when they are measured.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "raw-tcp,raw-unix,weft,weft-unix,tarpc,tonic,nats,gateway,axum,weft-events,jetstream,cluster-call,cluster-registry,cluster-events"
    )]
    systems: Vec<System>,

    /// Instances registered across the hosts of `cluster-registry`
    /// (`--quick`: 200).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    cluster_instances: u32,

    /// Instances added and removed one at a time by `cluster-registry` to
    /// time how soon every host sees them (`--quick`: 30).
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    cluster_samples: u32,

    /// The hosts' lease time in the cluster benchmarks (`weft host
    /// --lease-ttl`): each host rewrites its instances to NATS every third
    /// of it.
    #[arg(long, value_parser = parse_duration, default_value = "6s")]
    cluster_lease_ttl: Duration,

    /// Publishes in flight in the events suite's batch figures.
    #[arg(long, value_delimiter = ',', default_value = "64,256",
          value_parser = clap::value_parser!(u32).range(2..=4096))]
    event_batches: Vec<u32>,

    /// Publishes per second in the publish-to-handler latency figures (the
    /// events suite's and `cluster-events`): moderate, so that they
    /// measure latency, not queueing.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    event_rate: u32,

    /// The scenarios: one call at a time, `--concurrency` calls in flight.
    #[arg(long, value_delimiter = ',', default_value = "sequential,concurrent")]
    scenarios: Vec<ScenarioKind>,

    /// The tokio runtime flavours, of the callers and of the servers.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "current-thread,multi-thread"
    )]
    runtimes: Vec<Flavour>,

    /// Smoke test: 1 repetition of 0.2 s after a 0.05 s warm-up (overrides
    /// --reps, --duration and --warmup).
    #[arg(long)]
    quick: bool,

    /// Measure again (at most 10 times) any case during which other
    /// processes took more than this percentage of the machine's CPU. For
    /// shared machines; off by default.
    #[arg(long, value_name = "PERCENT", value_parser = parse_percent)]
    max_others_cpu: Option<f64>,

    /// Print the results as JSON on stdout instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum Internal {
    /// Runs one server process of a benchmarked system (used by the
    /// benchmark itself).
    #[command(name = "__serve", hide = true)]
    Serve {
        /// The tokio runtime flavour to serve on.
        #[arg(long, value_enum, default_value = "multi-thread")]
        runtime: Flavour,
        #[command(subcommand)]
        role: systems::Role,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.internal {
        Some(Internal::Serve { role, runtime }) => systems::serve(role, runtime),
        None => bench(cli),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("weft-bench: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn bench(cli: Cli) -> anyhow::Result<()> {
    let systems = dedup(cli.systems.clone());
    if systems.is_empty() {
        bail!("--systems names no system");
    }
    if cli.cluster_lease_ttl < Duration::from_millis(100) {
        bail!("--cluster-lease-ttl is too short: use at least 100ms, as `weft host --lease-ttl`");
    }
    let (duration, warmup, reps) = if cli.quick {
        (Duration::from_millis(200), Duration::from_millis(50), 1)
    } else {
        (cli.duration, cli.warmup, cli.reps)
    };
    let plan = Plan {
        duration,
        warmup,
        reps,
        payloads: dedup(cli.payloads.iter().map(|&p| p as usize).collect()),
        concurrency: cli.concurrency as usize,
        scenarios: dedup(cli.scenarios.clone()),
        flavours: dedup(cli.runtimes.clone()),
        max_others_cpu: cli.max_others_cpu,
    };
    let load = report::load_average();
    if let Some(warning) = report::busy_warning(load) {
        eprintln!("{warning}");
    }
    let (cluster_systems, systems): (Vec<System>, Vec<System>) =
        systems.into_iter().partition(|s| s.is_cluster());
    let (event_systems, call_systems): (Vec<System>, Vec<System>) =
        systems.into_iter().partition(|s| s.is_events());
    let report = if call_systems.is_empty() {
        None
    } else {
        let outcome = run_plan(&plan, &call_systems)?;
        Some(report::Report::new(
            &plan,
            &outcome.systems,
            outcome.skipped.clone(),
            outcome.runs,
            load,
            report::Disturbance {
                limit_pct: plan.max_others_cpu,
                repeated: outcome.repeated,
                kept: outcome.kept_disturbed,
            },
        ))
    };
    let events_report = if event_systems.is_empty() {
        None
    } else {
        let events_plan = events::Plan {
            warmup,
            duration,
            reps,
            flavours: plan.flavours.clone(),
            batches: dedup(cli.event_batches.iter().map(|&n| n as usize).collect()),
            rate: cli.event_rate,
            pad: EVENT_PAD,
        };
        let outcome = events::run(&events_plan, &event_systems)?;
        Some(events::Report::new(&events_plan, outcome))
    };
    let cluster_report = if cluster_systems.is_empty() {
        None
    } else {
        let cluster_plan = cluster::Plan {
            warmup,
            duration,
            reps,
            flavours: plan.flavours.clone(),
            scenarios: plan.scenarios.clone(),
            concurrency: plan.concurrency,
            instances: if cli.quick {
                QUICK_CLUSTER_INSTANCES
            } else {
                cli.cluster_instances as usize
            },
            samples: if cli.quick {
                QUICK_CLUSTER_SAMPLES
            } else {
                cli.cluster_samples as usize
            },
            rest: if cli.quick { QUICK_REST } else { REST },
            lease_ttl: cli.cluster_lease_ttl,
            event_rate: cli.event_rate,
        };
        Some(cluster::run(&cluster_plan, &cluster_systems)?)
    };
    if cli.json {
        // The events and cluster figures ride beside the call figures,
        // under `events` and `cluster`.
        let mut json = match &report {
            Some(r) => serde_json::to_value(r)?,
            None => serde_json::json!({}),
        };
        if let Some(object) = json.as_object_mut() {
            if let Some(e) = &events_report {
                object.insert("events".to_owned(), serde_json::to_value(e)?);
            }
            if let Some(c) = &cluster_report {
                object.insert("cluster".to_owned(), serde_json::to_value(c)?);
            }
        }
        println!("{}", serde_json::to_string_pretty(&json)?);
    } else {
        if let Some(r) = &report {
            print!("{}", r.table());
        }
        if let Some(e) = &events_report {
            print!("{}", e.table());
        }
        if let Some(c) = &cluster_report {
            print!("{}", c.table());
        }
    }
    Ok(())
}

/// `cluster-registry` in a `--quick` run: fewer instances and samples.
const QUICK_CLUSTER_INSTANCES: usize = 200;
const QUICK_CLUSTER_SAMPLES: usize = 30;

/// How long `cluster-registry` samples the hosts' CPU at rest: long
/// enough that /proc's 10 ms ticks resolve a tenth of a percent.
const REST: Duration = Duration::from_secs(10);
const QUICK_REST: Duration = Duration::from_secs(2);

/// Bytes of filler in every event of the events suite: with the stamp's
/// fields, about 130 bytes of JSON.
const EVENT_PAD: usize = 64;

/// `items` without repeats, in their first order.
fn dedup<T: PartialEq>(items: Vec<T>) -> Vec<T> {
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        if !out.contains(&item) {
            out.push(item);
        }
    }
    out
}

/// Starts every system's servers for every runtime flavour (so a broken one
/// fails the run before any measuring), then measures each case `reps`
/// times, systems interleaved. Every measurement runs on a runtime of its
/// own, dropped after it, so no task of one system outlives its turn.
fn run_plan(plan: &Plan, systems: &[System]) -> anyhow::Result<Outcome> {
    let control = Flavour::CurrentThread.runtime()?;
    let mut outcome = Outcome::default();
    let mut servers = Vec::new();
    for &system in systems {
        for &flavour in &plan.flavours {
            eprintln!("starting {} servers ({})", system.name(), flavour.name());
            let started = control
                .block_on(system.start_server(flavour))
                .with_context(|| format!("the {} servers did not start", system.name()))?;
            match started {
                Ok(server) => servers.push((system, flavour, server)),
                Err(why) => {
                    eprintln!("note: skipping {}: {why}", system.name());
                    outcome.skipped.push((system.name(), why));
                    break;
                }
            }
        }
        if servers.iter().any(|(s, _, _)| *s == system) {
            outcome.systems.push(system);
        }
    }
    drop(control);
    // CPU used by these is the benchmark's own; anything else is other
    // work on the machine, reported beside the figures.
    let own_pids: Vec<u32> = servers.iter().flat_map(|(_, _, s)| s.pids()).collect();
    let cases = plan.cases();
    for rep in 0..plan.reps {
        for &case in &cases {
            // The systems of one case and repetition are measured back to
            // back and, when other work disturbed any of them, repeated
            // together, so that their ratios compare like with like.
            for attempt in 0..=MAX_REPEATS {
                let mut group = Vec::with_capacity(servers.len());
                for (system, _, server) in servers.iter().filter(|(_, f, _)| *f == case.flavour) {
                    eprintln!(
                        "rep {}/{}: {} {}",
                        rep + 1,
                        plan.reps,
                        system.name(),
                        case.label()
                    );
                    server.check_alive()?;
                    let runtime = case.flavour.runtime()?;
                    let run = runtime
                        .block_on(measure::run(plan, *system, server, case, &own_pids))
                        .with_context(|| {
                            format!("measuring {} {} failed", system.name(), case.label())
                        })?;
                    runtime.shutdown_timeout(RUNTIME_SHUTDOWN);
                    group.push(run);
                }
                let worst = group
                    .iter()
                    .filter_map(|r| r.others_cpu)
                    .fold(0.0, f64::max)
                    * 100.0;
                match plan.max_others_cpu {
                    Some(limit) if worst > limit && attempt < MAX_REPEATS => {
                        eprintln!(
                            "  other work took {worst:.0}% of the CPU (limit {limit}%); measuring again"
                        );
                        outcome.repeated += 1;
                    }
                    Some(limit) if worst > limit => {
                        eprintln!(
                            "  other work took {worst:.0}% of the CPU after {MAX_REPEATS} repeats; keeping these figures"
                        );
                        outcome.kept_disturbed += 1;
                        outcome.runs.extend(group);
                        break;
                    }
                    _ => {
                        outcome.runs.extend(group);
                        break;
                    }
                }
            }
        }
    }
    Ok(outcome)
}

/// How long a measurement's runtime may take to stop its remaining tasks.
const RUNTIME_SHUTDOWN: Duration = Duration::from_secs(1);

/// How often a disturbed measurement is repeated before it is kept anyway.
const MAX_REPEATS: u32 = 10;

/// The measurements, and how many were disturbed by other work.
#[derive(Debug, Default)]
struct Outcome {
    /// The systems measured, in order.
    systems: Vec<System>,
    /// The systems that could not be measured here, and why.
    skipped: Vec<(&'static str, String)>,
    runs: Vec<measure::Run>,
    /// Groups measured again because other work took too much CPU.
    repeated: u32,
    /// Groups kept although other work took too much CPU.
    kept_disturbed: u32,
}

/// Parses a percentage from 0 to 100.
fn parse_percent(s: &str) -> Result<f64, String> {
    match s.trim().trim_end_matches('%').parse::<f64>() {
        Ok(p) if (0.0..=100.0).contains(&p) => Ok(p),
        _ => Err(format!("`{s}` is not a percentage from 0 to 100")),
    }
}

/// Parses `3s`, `300ms`, `1.5s` or a bare number of seconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (number, scale) = if let Some(ms) = s.strip_suffix("ms") {
        (ms, 1e-3)
    } else if let Some(secs) = s.strip_suffix('s') {
        (secs, 1.0)
    } else {
        (s, 1.0)
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a duration; write e.g. `3s`, `300ms` or `2.5`"))?;
    let secs = value * scale;
    if !secs.is_finite() || !(0.0..=3600.0).contains(&secs) {
        return Err(format!("`{s}` is out of range: 0 to 3600 s"));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_in_every_form() {
        assert_eq!(parse_duration("3s"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("300ms"), Ok(Duration::from_millis(300)));
        assert_eq!(parse_duration("2.5"), Ok(Duration::from_millis(2500)));
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn the_cli_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
