//! Aggregating repetitions into medians and ranges, and printing them.

use std::fmt::Write as _;

use serde::Serialize;

use crate::measure::{Plan, Run, Scenario};
use crate::systems::System;

/// Everything a run measured, with the machine it ran on.
#[derive(Debug, Serialize)]
pub(crate) struct Report {
    machine: Machine,
    method: Method,
    /// The system the others are compared with.
    floor: &'static str,
    disturbance: Disturbance,
    rows: Vec<Row>,
}

/// How other work on the machine was dealt with.
#[derive(Debug, Serialize)]
pub(crate) struct Disturbance {
    /// `--max-others-cpu`, if given.
    pub(crate) limit_pct: Option<f64>,
    /// Scenario groups measured again because other work exceeded the limit.
    pub(crate) repeated: u32,
    /// Scenario groups kept although other work exceeded the limit.
    pub(crate) kept: u32,
}

#[derive(Debug, Serialize)]
struct Machine {
    nproc: usize,
    cpu: String,
    kernel: String,
    /// The 1-minute load average when the benchmark started: other work
    /// on the machine makes every figure worse and noisier.
    load_at_start: Option<f64>,
}

#[derive(Debug, Serialize)]
struct Method {
    warmup_s: f64,
    duration_s: f64,
    reps: u32,
    payload_bytes: usize,
    concurrency: usize,
    /// How each system's concurrent callers share connections.
    sharing: Vec<(&'static str, &'static str)>,
}

/// One system in one scenario, over all repetitions.
#[derive(Debug, Serialize)]
struct Row {
    system: &'static str,
    scenario: String,
    /// Calls measured in each repetition.
    calls: Vec<u64>,
    p50_us: Stat,
    p99_us: Stat,
    p999_us: Stat,
    max_us: Stat,
    mean_us: Stat,
    calls_per_s: Stat,
    /// Percent of all CPU time that other work on the machine used during
    /// each repetition's window (not measured off Linux).
    others_cpu_pct: Stat,
    /// CPU time per call of the calling process, in µs.
    client_cpu_per_call_us: Stat,
    /// CPU time per call of the system's server processes, in µs.
    server_cpu_per_call_us: Stat,
    /// p50 over the floor's p50 in the same scenario and repetition.
    p50_vs_floor: Stat,
    /// calls/s over the floor's calls/s in the same scenario and repetition.
    calls_per_s_vs_floor: Stat,
}

/// A figure over repetitions: the median, the range, and each value.
#[derive(Debug, Clone, Serialize)]
struct Stat {
    median: f64,
    min: f64,
    max: f64,
    reps: Vec<f64>,
}

impl Stat {
    fn new(mut reps: Vec<f64>) -> Stat {
        let in_order = reps.clone();
        reps.sort_by(f64::total_cmp);
        let n = reps.len();
        let median = match n {
            0 => f64::NAN,
            _ if n % 2 == 1 => reps[n / 2],
            _ => (reps[n / 2 - 1] + reps[n / 2]) / 2.0,
        };
        Stat {
            median,
            min: reps.first().copied().unwrap_or(f64::NAN),
            max: reps.last().copied().unwrap_or(f64::NAN),
            reps: in_order,
        }
    }

    /// `31.2 (30.8–33.0)`, or just the median for one repetition.
    fn show(&self, decimals: usize) -> String {
        if self.reps.len() > 1 {
            format!(
                "{:.d$} ({:.d$}–{:.d$})",
                self.median,
                self.min,
                self.max,
                d = decimals
            )
        } else {
            format!("{:.d$}", self.median, d = decimals)
        }
    }
}

impl Report {
    pub(crate) fn new(
        plan: &Plan,
        systems: &[System],
        runs: Vec<Run>,
        load_at_start: Option<f64>,
        disturbance: Disturbance,
    ) -> Report {
        let floor = systems[0];
        let scenarios = [Scenario::Sequential, Scenario::Concurrent(plan.concurrency)];
        let mut rows = Vec::new();
        for scenario in scenarios {
            // Runs are in the order they were measured, so the n-th run of
            // every system here belongs to the n-th repetition.
            let of = |system: System| -> Vec<&Run> {
                runs.iter()
                    .filter(|r| r.system == system && r.scenario == scenario)
                    .collect()
            };
            let floor_runs = of(floor);
            for &system in systems {
                let mine = of(system);
                // Each repetition's ratio compares runs measured moments
                // apart, so a disturbance that spans both cancels out.
                let paired = |figure: fn(&Run) -> f64| {
                    Stat::new(
                        mine.iter()
                            .zip(&floor_runs)
                            .map(|(m, f)| figure(m) / figure(f))
                            .collect(),
                    )
                };
                let p50 = Stat::new(mine.iter().map(|r| r.p50_us).collect());
                let p99 = Stat::new(mine.iter().map(|r| r.p99_us).collect());
                let rate = Stat::new(mine.iter().map(|r| r.calls_per_s).collect());
                let p999 = Stat::new(mine.iter().map(|r| r.p999_us).collect());
                let max = Stat::new(mine.iter().map(|r| r.max_us).collect());
                let mean = Stat::new(mine.iter().map(|r| r.mean_us).collect());
                rows.push(Row {
                    system: system.name(),
                    scenario: scenario.label(),
                    calls: mine.iter().map(|r| r.calls).collect(),
                    p50_vs_floor: paired(|r| r.p50_us),
                    calls_per_s_vs_floor: paired(|r| r.calls_per_s),
                    p50_us: p50,
                    p99_us: p99,
                    p999_us: p999,
                    max_us: max,
                    mean_us: mean,
                    calls_per_s: rate,
                    client_cpu_per_call_us: Stat::new(
                        mine.iter()
                            .filter_map(|r| r.cpu_per_call_us.map(|c| c.0))
                            .collect(),
                    ),
                    server_cpu_per_call_us: Stat::new(
                        mine.iter()
                            .filter_map(|r| r.cpu_per_call_us.map(|c| c.1))
                            .collect(),
                    ),
                    others_cpu_pct: Stat::new(
                        mine.iter()
                            .filter_map(|r| r.others_cpu.map(|s| s * 100.0))
                            .collect(),
                    ),
                });
            }
        }
        Report {
            machine: Machine::this(load_at_start),
            method: Method {
                warmup_s: plan.warmup.as_secs_f64(),
                duration_s: plan.duration.as_secs_f64(),
                reps: plan.reps,
                payload_bytes: plan.payload,
                concurrency: plan.concurrency,
                sharing: systems.iter().map(|s| (s.name(), s.sharing())).collect(),
            },
            floor: floor.name(),
            disturbance,
            rows,
        }
    }

    /// The human-readable table with a header on the machine and method.
    pub(crate) fn table(&self) -> String {
        let m = &self.method;
        let mut out = String::new();
        let load = self
            .machine
            .load_at_start
            .map_or_else(|| "unknown".to_owned(), |l| format!("{l:.2}"));
        let _ = writeln!(
            out,
            "machine: {} x {}, kernel {}, load average at start {load}",
            self.machine.nproc, self.machine.cpu, self.machine.kernel
        );
        let _ = writeln!(
            out,
            "method: {} B payload, {:.1} s warm-up + {:.1} s measured, {} rep(s), systems interleaved; median (min–max) over reps; ratios per rep against the floor",
            m.payload_bytes, m.warmup_s, m.duration_s, m.reps
        );
        for (system, sharing) in &m.sharing {
            let _ = writeln!(
                out,
                "  {system} with {} in flight: {sharing}",
                m.concurrency
            );
        }
        let _ = writeln!(out);
        let header = [
            "SYSTEM",
            "SCENARIO",
            "p50 µs",
            "p99 µs",
            "mean µs",
            "calls/s",
            "p50 vs floor",
            "calls/s vs floor",
            "CPU µs/call client+server",
            "others' CPU %",
        ];
        let mut cells: Vec<[String; 10]> = vec![header.map(str::to_owned)];
        for row in &self.rows {
            cells.push([
                row.system.to_owned(),
                row.scenario.clone(),
                row.p50_us.show(1),
                row.p99_us.show(1),
                row.mean_us.show(1),
                row.calls_per_s.show(0),
                row.p50_vs_floor.show(2),
                row.calls_per_s_vs_floor.show(2),
                if row.client_cpu_per_call_us.reps.is_empty() {
                    "-".to_owned()
                } else {
                    format!(
                        "{:.1}+{:.1}",
                        row.client_cpu_per_call_us.median, row.server_cpu_per_call_us.median
                    )
                },
                if row.others_cpu_pct.reps.is_empty() {
                    "-".to_owned()
                } else {
                    row.others_cpu_pct.show(0)
                },
            ]);
        }
        let widths: Vec<usize> = (0..10)
            .map(|c| {
                cells
                    .iter()
                    .map(|r| r[c].chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        for row in &cells {
            let mut line = String::new();
            for (c, cell) in row.iter().enumerate() {
                let pad = widths[c] - cell.chars().count();
                // Text columns align left, figures right.
                if c < 2 {
                    line.push_str(cell);
                    line.push_str(&" ".repeat(pad));
                } else {
                    line.push_str(&" ".repeat(pad));
                    line.push_str(cell);
                }
                line.push_str("  ");
            }
            let _ = writeln!(out, "{}", line.trim_end());
        }
        let _ = writeln!(
            out,
            "\nfloor: {}; \"vs floor\" divides each repetition's figure by the floor's in that repetition",
            self.floor
        );
        let _ = writeln!(
            out,
            "others' CPU %: the share of the machine's CPU that other processes took during the measured windows;"
        );
        let _ = writeln!(
            out,
            "  figures from windows where it is more than a few percent are slowed and scattered by that work"
        );
        if let Some(limit) = self.disturbance.limit_pct {
            let _ = writeln!(
                out,
                "  with --max-others-cpu {limit}: {} scenario(s) measured again, {} kept although above the limit",
                self.disturbance.repeated, self.disturbance.kept
            );
        }
        let _ = writeln!(
            out,
            "CPU µs/call: user+system CPU time of the calling process and of the system's server processes per call (medians)"
        );
        out
    }
}

impl Machine {
    fn this(load_at_start: Option<f64>) -> Machine {
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|info| {
                info.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown CPU".to_owned());
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|k| k.trim().to_owned())
            .unwrap_or_else(|_| "unknown".to_owned());
        Machine {
            nproc: nproc(),
            cpu,
            kernel,
            load_at_start,
        }
    }
}

fn nproc() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The 1-minute load average, read before any server starts.
pub(crate) fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// A warning when other work is running: the figures would measure it too.
pub(crate) fn busy_warning(load: Option<f64>) -> Option<String> {
    let load = load?;
    let cpus = nproc() as f64;
    (load > cpus * 0.25).then(|| {
        format!(
            "warning: the load average is {load:.2} on {cpus} CPUs; other work on this machine will slow and scatter the figures"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_ranges() {
        let s = Stat::new(vec![3.0, 1.0, 2.0]);
        assert_eq!((s.median, s.min, s.max), (2.0, 1.0, 3.0));
        assert_eq!(s.reps, vec![3.0, 1.0, 2.0]);
        assert_eq!(Stat::new(vec![1.0, 4.0]).median, 2.5);
        assert_eq!(s.show(1), "2.0 (1.0–3.0)");
        assert_eq!(Stat::new(vec![2.0]).show(0), "2");
    }
}
