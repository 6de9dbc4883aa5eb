//! Aggregating repetitions into medians and ranges, and printing them.

use std::fmt::Write as _;

use serde::Serialize;

use crate::measure::{Case, Plan, Run, Scenario};
use crate::systems::System;

/// Everything a run measured, with the machine it ran on.
#[derive(Debug, Serialize)]
pub(crate) struct Report {
    machine: Machine,
    method: Method,
    /// The system all are compared with, when measured.
    floor: Option<&'static str>,
    /// The weft system all are also compared with, when measured.
    reference: Option<&'static str>,
    /// Systems that could not be measured on this machine, and why.
    skipped: Vec<(&'static str, String)>,
    disturbance: Disturbance,
    rows: Vec<Row>,
    targets: Vec<Target>,
}

/// How other work on the machine was dealt with.
#[derive(Debug, Serialize)]
pub(crate) struct Disturbance {
    /// `--max-others-cpu`, if given.
    pub(crate) limit_pct: Option<f64>,
    /// Case groups measured again because other work exceeded the limit.
    pub(crate) repeated: u32,
    /// Case groups kept although other work exceeded the limit.
    pub(crate) kept: u32,
}

/// The machine a run measured on.
#[derive(Debug, Serialize)]
pub(crate) struct Machine {
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
    concurrency: usize,
    /// How each system's concurrent callers share connections.
    sharing: Vec<(&'static str, &'static str)>,
}

/// One system in one case, over all repetitions.
#[derive(Debug, Serialize)]
struct Row {
    system: &'static str,
    runtime: &'static str,
    payload_bytes: usize,
    scenario: String,
    #[serde(skip)]
    case: Case,
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
    /// Figures over the floor's in the same case and repetition.
    vs_floor: Option<Ratios>,
    /// Figures over weft's (over TCP) in the same case and repetition.
    vs_weft: Option<Ratios>,
}

/// A row's figures over another row's, repetition by repetition.
#[derive(Debug, Clone, Serialize)]
struct Ratios {
    p50: Stat,
    p99: Stat,
    calls_per_s: Stat,
}

impl Ratios {
    fn new(mine: &Row, other: &Row) -> Ratios {
        Ratios {
            p50: mine.p50_us.over(&other.p50_us),
            p99: mine.p99_us.over(&other.p99_us),
            calls_per_s: mine.calls_per_s.over(&other.calls_per_s),
        }
    }
}

/// A performance target, checked against this run's medians.
#[derive(Debug, Serialize)]
struct Target {
    what: String,
    case: String,
    /// The ratio, per repetition.
    ratio: Stat,
    /// `at most` or `at least`.
    bound: &'static str,
    limit: f64,
    met: bool,
}

/// A figure over repetitions: the median, the range, and each value.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Stat {
    pub(crate) median: f64,
    min: f64,
    max: f64,
    pub(crate) reps: Vec<f64>,
}

impl Stat {
    pub(crate) fn new(mut reps: Vec<f64>) -> Stat {
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

    /// Each repetition's value over `other`'s in the same repetition: runs
    /// measured moments apart, so a disturbance that spans both cancels out.
    pub(crate) fn over(&self, other: &Stat) -> Stat {
        Stat::new(
            self.reps
                .iter()
                .zip(&other.reps)
                .map(|(m, o)| m / o)
                .collect(),
        )
    }

    /// `31.2 (30.8–33.0)`, or just the median for one repetition.
    pub(crate) fn show(&self, decimals: usize) -> String {
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
        skipped: Vec<(&'static str, String)>,
        runs: Vec<Run>,
        load_at_start: Option<f64>,
        disturbance: Disturbance,
    ) -> Report {
        let floor = systems.iter().copied().find(|&s| s == System::RawTcp);
        let reference = systems.iter().copied().find(|&s| s == System::Weft);
        let mut rows = Vec::new();
        for case in plan.cases() {
            let first = rows.len();
            for &system in systems {
                // Runs are in the order they were measured, so the n-th run
                // of every system here belongs to the n-th repetition.
                let mine: Vec<&Run> = runs
                    .iter()
                    .filter(|r| r.system == system && r.case == case)
                    .collect();
                if mine.is_empty() {
                    continue;
                }
                let stat =
                    |figure: fn(&Run) -> f64| Stat::new(mine.iter().map(|r| figure(r)).collect());
                rows.push(Row {
                    system: system.name(),
                    runtime: case.flavour.name(),
                    payload_bytes: case.payload,
                    scenario: case.scenario.label(),
                    case,
                    calls: mine.iter().map(|r| r.calls).collect(),
                    p50_us: stat(|r| r.p50_us),
                    p99_us: stat(|r| r.p99_us),
                    p999_us: stat(|r| r.p999_us),
                    max_us: stat(|r| r.max_us),
                    mean_us: stat(|r| r.mean_us),
                    calls_per_s: stat(|r| r.calls_per_s),
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
                    vs_floor: None,
                    vs_weft: None,
                });
            }
            let find = |rows: &[Row], s: Option<System>| {
                s.and_then(|s| rows[first..].iter().position(|r| r.system == s.name()))
                    .map(|i| i + first)
            };
            let floor_row = find(&rows, floor);
            let weft_row = find(&rows, reference);
            for i in first..rows.len() {
                let vs_floor = floor_row.map(|f| Ratios::new(&rows[i], &rows[f]));
                let vs_weft = weft_row.map(|w| Ratios::new(&rows[i], &rows[w]));
                rows[i].vs_floor = vs_floor;
                rows[i].vs_weft = vs_weft;
            }
        }
        let targets = targets(&rows);
        Report {
            machine: Machine::this(load_at_start),
            method: Method {
                warmup_s: plan.warmup.as_secs_f64(),
                duration_s: plan.duration.as_secs_f64(),
                reps: plan.reps,
                concurrency: plan.concurrency,
                sharing: systems.iter().map(|s| (s.name(), s.sharing())).collect(),
            },
            floor: floor.map(System::name),
            reference: reference.map(System::name),
            skipped,
            disturbance,
            rows,
            targets,
        }
    }

    /// The human-readable table with a header on the machine and method.
    pub(crate) fn table(&self) -> String {
        let m = &self.method;
        let mut out = String::new();
        let _ = writeln!(out, "{}", self.machine.line());
        let _ = writeln!(
            out,
            "method: {:.2} s warm-up + {:.2} s measured, {} rep(s), systems interleaved; median (min–max) over reps",
            m.warmup_s, m.duration_s, m.reps
        );
        for (system, sharing) in &m.sharing {
            let _ = writeln!(
                out,
                "  {system} with {} in flight: {sharing}",
                m.concurrency
            );
        }
        for (system, why) in &self.skipped {
            let _ = writeln!(out, "  {system}: not measured: {why}");
        }
        let header = [
            "SYSTEM",
            "p50 µs",
            "p99 µs",
            "calls/s",
            "p50 ×tcp",
            "p50 ×weft",
            "p99 ×tcp",
            "p99 ×weft",
            "calls/s ×tcp",
            "calls/s ×weft",
            "CPU µs/call cl+srv",
            "others' CPU %",
        ];
        const COLUMNS: usize = 12;
        let mut blocks: Vec<(String, Vec<[String; COLUMNS]>)> = Vec::new();
        for row in &self.rows {
            let label = row.case.label();
            if blocks.last().is_none_or(|(l, _)| *l != label) {
                blocks.push((label.clone(), Vec::new()));
            }
            let ratio = |r: &Option<Ratios>, pick: fn(&Ratios) -> &Stat| {
                r.as_ref()
                    .map_or_else(|| "-".to_owned(), |r| format!("{:.2}", pick(r).median))
            };
            let cells = [
                row.system.to_owned(),
                row.p50_us.show(1),
                row.p99_us.show(1),
                row.calls_per_s.show(0),
                ratio(&row.vs_floor, |r| &r.p50),
                ratio(&row.vs_weft, |r| &r.p50),
                ratio(&row.vs_floor, |r| &r.p99),
                ratio(&row.vs_weft, |r| &r.p99),
                ratio(&row.vs_floor, |r| &r.calls_per_s),
                ratio(&row.vs_weft, |r| &r.calls_per_s),
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
            ];
            if let Some((_, rows)) = blocks.last_mut() {
                rows.push(cells);
            }
        }
        let all = std::iter::once(&header.map(str::to_owned))
            .chain(blocks.iter().flat_map(|(_, rows)| rows))
            .map(|r| r.iter().map(|c| c.chars().count()).collect::<Vec<_>>())
            .fold(vec![0; COLUMNS], |w, r| {
                w.iter().zip(r).map(|(a, b)| (*a).max(b)).collect()
            });
        let line = |cells: &[String]| {
            let mut line = String::new();
            for (c, cell) in cells.iter().enumerate() {
                let pad = all[c] - cell.chars().count();
                // Names align left, figures right.
                if c == 0 {
                    line.push_str(cell);
                    line.push_str(&" ".repeat(pad));
                } else {
                    line.push_str(&" ".repeat(pad));
                    line.push_str(cell);
                }
                line.push_str("  ");
            }
            line.trim_end().to_owned()
        };
        for (label, rows) in &blocks {
            let _ = writeln!(out, "\n{label}");
            let _ = writeln!(out, "{}", line(&header.map(str::to_owned)));
            for row in rows {
                let _ = writeln!(out, "{}", line(row));
            }
        }
        let _ = writeln!(
            out,
            "\n×tcp, ×weft: the figure over raw-tcp's (the floor) and over weft's (over TCP), repetition by repetition (medians; ranges in --json)"
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
                "  with --max-others-cpu {limit}: {} case(s) measured again, {} kept although above the limit",
                self.disturbance.repeated, self.disturbance.kept
            );
        }
        let _ = writeln!(
            out,
            "CPU µs/call: user+system CPU time of the calling process and of the system's server processes per call (medians)"
        );
        if !self.targets.is_empty() {
            let _ = writeln!(out, "\ntargets (median of the per-repetition ratios):");
            for t in &self.targets {
                let _ = writeln!(
                    out,
                    "  {:<4} {} {} {:.2}, {}: {}",
                    if t.met { "met" } else { "MISS" },
                    t.what,
                    t.bound,
                    t.limit,
                    t.case,
                    t.ratio.show(2),
                );
            }
        }
        out
    }
}

/// The performance targets, wherever this run measured both sides.
fn targets(rows: &[Row]) -> Vec<Target> {
    let mut targets = Vec::new();
    let find = |case: Case, system: System| {
        rows.iter()
            .find(|r| r.case == case && r.system == system.name())
    };
    let mut add = |what: &str, case: Case, ratio: Stat, at_most: bool, limit: f64| {
        let met = if at_most {
            ratio.median <= limit
        } else {
            ratio.median >= limit
        };
        targets.push(Target {
            what: what.to_owned(),
            case: case.label(),
            ratio,
            bound: if at_most { "at most" } else { "at least" },
            limit,
            met,
        });
    };
    let mut cases: Vec<Case> = Vec::new();
    for row in rows {
        if !cases.contains(&row.case) {
            cases.push(row.case);
        }
    }
    for case in cases {
        let weft = find(case, System::Weft);
        match case.scenario {
            Scenario::Sequential => {
                if let (Some(w), Some(f)) = (weft, find(case, System::RawTcp)) {
                    add(
                        "weft p50 / raw-tcp p50",
                        case,
                        w.p50_us.over(&f.p50_us),
                        true,
                        1.5,
                    );
                }
            }
            Scenario::Concurrent(_) => {
                if let (Some(w), Some(t)) = (weft, find(case, System::Tarpc)) {
                    add(
                        "weft calls/s / tarpc calls/s",
                        case,
                        w.calls_per_s.over(&t.calls_per_s),
                        false,
                        1.0,
                    );
                }
                if let (Some(w), Some(t)) = (weft, find(case, System::Tonic)) {
                    add(
                        "weft calls/s / tonic calls/s",
                        case,
                        w.calls_per_s.over(&t.calls_per_s),
                        false,
                        4.0,
                    );
                }
                if let (Some(g), Some(a)) = (find(case, System::Gateway), find(case, System::Axum))
                {
                    add(
                        "gateway req/s / bare axum req/s",
                        case,
                        g.calls_per_s.over(&a.calls_per_s),
                        false,
                        0.7,
                    );
                }
            }
        }
    }
    targets
}

impl Machine {
    /// This machine, with the load average read at the start of the run.
    pub(crate) fn this(load_at_start: Option<f64>) -> Machine {
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

    /// `machine: 2 x AMD EPYC, kernel .., load average at start 0.25`.
    pub(crate) fn line(&self) -> String {
        let load = self
            .load_at_start
            .map_or_else(|| "unknown".to_owned(), |l| format!("{l:.2}"));
        format!(
            "machine: {} x {}, kernel {}, load average at start {load}",
            self.nproc, self.cpu, self.kernel
        )
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
