//! `weft-bench`: side-by-side latency and throughput of weft and the
//! systems it is compared with, on 127.0.0.1, printed as a table.
//!
//! ```text
//! $ cargo run --release -p weft-bench              # full run: 3 reps of 1 s warm-up + 3 s
//! $ cargo run --release -p weft-bench -- --quick   # smoke test, well under a minute
//! $ cargo run --release -p weft-bench -- --json    # the same figures for scripts
//! ```
//!
//! Callers and callees always run in separate processes: the binary starts
//! copies of itself with the hidden `__serve` subcommand (`__serve raw-tcp`,
//! `__serve host`, `__serve weft-echo`), each of which prints its bound
//! address on its first line of stdout. Every child is killed when the
//! benchmark ends, fails or panics, and exits by itself when the benchmark
//! process disappears (its stdin closes).
//!
//! Systems (see [`systems::System`]):
//!
//! - `raw-tcp`: length-prefixed ping-pong over plain tokio TCP, the floor;
//! - `weft`: a weft host and an `echo` service, called through
//!   `weft::Client`.
//!
//! Scenarios, each with 64-byte payloads: one call at a time, and
//! `--concurrency` (64) calls in flight. For weft the in-flight calls share
//! one `Client` (one multiplexed connection); for raw TCP each caller has a
//! connection of its own. The method is in `docs/performance.md`.

mod cpu;
mod measure;
mod process;
mod report;
mod systems;

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};

use crate::measure::{Plan, Scenario};
use crate::systems::System;

/// Side-by-side benchmarks of weft against raw TCP on 127.0.0.1.
#[derive(Debug, Parser)]
#[command(name = "weft-bench", version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    internal: Option<Internal>,

    /// Measured time per scenario and repetition (`3s`, `300ms`, `2.5`).
    #[arg(long, value_parser = parse_duration, default_value = "3s")]
    duration: Duration,

    /// Unmeasured warm-up before each measurement.
    #[arg(long, value_parser = parse_duration, default_value = "1s")]
    warmup: Duration,

    /// Repetitions of every scenario; systems are interleaved within each.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    reps: u32,

    /// Calls in flight in the concurrent scenario.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(2..=4096))]
    concurrency: u32,

    /// Payload size in bytes.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=1_048_576))]
    payload: u32,

    /// The systems to measure, in this order (the first is the floor the
    /// others are compared with).
    #[arg(long, value_delimiter = ',', default_value = "raw-tcp,weft")]
    systems: Vec<System>,

    /// Smoke test: 1 repetition of 0.3 s after a 0.1 s warm-up (overrides
    /// --reps, --duration and --warmup).
    #[arg(long)]
    quick: bool,

    /// Measure again (at most 10 times) any scenario during which other
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
        #[command(subcommand)]
        role: systems::Role,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.internal {
        Some(Internal::Serve { role }) => systems::serve(role),
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
    let mut systems = cli.systems.clone();
    systems.dedup();
    if systems.is_empty() {
        bail!("--systems names no system");
    }
    let plan = if cli.quick {
        Plan {
            duration: Duration::from_millis(300),
            warmup: Duration::from_millis(100),
            reps: 1,
            max_others_cpu: cli.max_others_cpu,
            ..Plan::new(cli.payload as usize, cli.concurrency as usize)
        }
    } else {
        Plan {
            duration: cli.duration,
            warmup: cli.warmup,
            reps: cli.reps,
            max_others_cpu: cli.max_others_cpu,
            ..Plan::new(cli.payload as usize, cli.concurrency as usize)
        }
    };
    let load = report::load_average();
    if let Some(warning) = report::busy_warning(load) {
        eprintln!("{warning}");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    let outcome = runtime.block_on(run_plan(&plan, &systems))?;
    let report = report::Report::new(
        &plan,
        &systems,
        outcome.runs,
        load,
        report::Disturbance {
            limit_pct: plan.max_others_cpu,
            repeated: outcome.repeated,
            kept: outcome.kept_disturbed,
        },
    );
    if cli.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.table());
    }
    Ok(())
}

/// Starts every system's servers (so a broken one fails the run before any
/// measuring), then measures each scenario `reps` times, systems interleaved.
async fn run_plan(plan: &Plan, systems: &[System]) -> anyhow::Result<Outcome> {
    let mut servers = Vec::with_capacity(systems.len());
    for &system in systems {
        eprintln!("starting {} servers", system.name());
        let started = system
            .start_server()
            .await
            .with_context(|| format!("the {} servers did not start", system.name()))?;
        servers.push((system, started));
    }
    // CPU used by these is the benchmark's own; anything else is other
    // work on the machine, reported beside the figures.
    let mut own_pids = Vec::new();
    for (_, server) in &servers {
        own_pids.extend(server.pids());
    }
    let scenarios = [Scenario::Sequential, Scenario::Concurrent(plan.concurrency)];
    let mut outcome = Outcome::default();
    for rep in 0..plan.reps {
        for scenario in scenarios {
            // The systems of one scenario and repetition are measured back to
            // back and, when other work disturbed any of them, repeated
            // together, so that their ratios compare like with like.
            for attempt in 0..=MAX_REPEATS {
                let mut group = Vec::with_capacity(servers.len());
                for (system, server) in &servers {
                    eprintln!(
                        "rep {}/{}: {} {}",
                        rep + 1,
                        plan.reps,
                        system.name(),
                        scenario.label()
                    );
                    server.check_alive()?;
                    let run = measure::run(plan, *system, server, scenario, &own_pids)
                        .await
                        .with_context(|| {
                            format!("measuring {} {} failed", system.name(), scenario.label())
                        })?;
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

/// How often a disturbed measurement is repeated before it is kept anyway.
const MAX_REPEATS: u32 = 10;

/// The measurements, and how many were disturbed by other work.
#[derive(Debug, Default)]
struct Outcome {
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
