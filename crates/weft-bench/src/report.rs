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
    rows: Vec<Row>,
}

#[derive(Debug, Serialize)]
struct Machine {
    nproc: usize,
    cpu: String,
    kernel: String,
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
    calls_per_s: Stat,
    /// Median p50 over the floor's median p50 in the same scenario.
    p50_vs_floor: f64,
    /// Median calls/s over the floor's median calls/s in the same scenario.
    calls_per_s_vs_floor: f64,
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
    pub(crate) fn new(plan: &Plan, systems: &[System], runs: Vec<Run>) -> Report {
        let floor = systems[0];
        let scenarios = [Scenario::Sequential, Scenario::Concurrent(plan.concurrency)];
        let mut rows = Vec::new();
        for scenario in scenarios {
            let mut floor_figures = None;
            for &system in systems {
                let mine: Vec<&Run> = runs
                    .iter()
                    .filter(|r| r.system == system && r.scenario == scenario)
                    .collect();
                let p50 = Stat::new(mine.iter().map(|r| r.p50_us).collect());
                let p99 = Stat::new(mine.iter().map(|r| r.p99_us).collect());
                let rate = Stat::new(mine.iter().map(|r| r.calls_per_s).collect());
                let (floor_p50, floor_rate) =
                    *floor_figures.get_or_insert((p50.median, rate.median));
                rows.push(Row {
                    system: system.name(),
                    scenario: scenario.label(),
                    calls: mine.iter().map(|r| r.calls).collect(),
                    p50_vs_floor: p50.median / floor_p50,
                    calls_per_s_vs_floor: rate.median / floor_rate,
                    p50_us: p50,
                    p99_us: p99,
                    calls_per_s: rate,
                });
            }
        }
        Report {
            machine: Machine::this(),
            method: Method {
                warmup_s: plan.warmup.as_secs_f64(),
                duration_s: plan.duration.as_secs_f64(),
                reps: plan.reps,
                payload_bytes: plan.payload,
                concurrency: plan.concurrency,
                sharing: systems.iter().map(|s| (s.name(), s.sharing())).collect(),
            },
            floor: floor.name(),
            rows,
        }
    }

    /// The human-readable table with a header on the machine and method.
    pub(crate) fn table(&self) -> String {
        let m = &self.method;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "machine: {} x {}, kernel {}",
            self.machine.nproc, self.machine.cpu, self.machine.kernel
        );
        let _ = writeln!(
            out,
            "method: {} B payload, {:.1} s warm-up + {:.1} s measured, {} rep(s), systems interleaved; median (min–max) over reps",
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
            "calls/s",
            "p50 vs floor",
            "calls/s vs floor",
        ];
        let mut cells: Vec<[String; 7]> = vec![header.map(str::to_owned)];
        for row in &self.rows {
            cells.push([
                row.system.to_owned(),
                row.scenario.clone(),
                row.p50_us.show(1),
                row.p99_us.show(1),
                row.calls_per_s.show(0),
                format!("{:.2}x", row.p50_vs_floor),
                format!("{:.2}x", row.calls_per_s_vs_floor),
            ]);
        }
        let widths: Vec<usize> = (0..7)
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
        let _ = writeln!(out, "\nfloor: {}", self.floor);
        out
    }
}

impl Machine {
    fn this() -> Machine {
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
            nproc: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu,
            kernel,
        }
    }
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
