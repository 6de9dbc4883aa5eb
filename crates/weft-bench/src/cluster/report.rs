//! The cluster benchmarks' figures, their ratios and targets, as a table
//! and as JSON. Targets are printed, never asserted.

use std::fmt::Write as _;

use serde::Serialize;

use super::{Plan, call, events, registry};
use crate::measure::{Case, Run, Scenario};
use crate::report::{Machine, Stat};
use crate::systems::System;

/// weft's p50 over raw TCP's, one call at a time between namespaces.
const CALL_TARGET: f64 = 1.3;

/// The p99 of the time until an added or removed instance shows on every
/// host, in ms.
const VISIBILITY_TARGET_MS: f64 = 100.0;

/// weft's publish p50 over a direct JetStream publish's, at most.
const PUBLISH_P50_TARGET: f64 = 1.3;

/// weft's publishes/s over direct JetStream publishes/s, at least.
const PUBLISH_RATE_TARGET: f64 = 0.8;

/// What the cluster benchmarks measured.
#[derive(Debug, Serialize)]
pub(crate) struct Report {
    machine: Machine,
    /// `nats-server --version`.
    nats_server: Option<String>,
    /// Benchmarks this machine could not run, and why.
    skipped: Vec<(&'static str, String)>,
    call: Option<CallReport>,
    registry: Option<RegistryReport>,
    events: Option<EventsReport>,
}

#[derive(Debug, Serialize)]
struct CallReport {
    warmup_s: f64,
    duration_s: f64,
    reps: u32,
    payload_bytes: usize,
    /// Where nats-server, the callee (its host and the echo instance) and
    /// the caller (with its host) are.
    nats_address: String,
    callee_address: String,
    caller_address: String,
    rows: Vec<CallRow>,
    targets: Vec<Target>,
}

/// One system in one case, over the repetitions.
#[derive(Debug, Serialize)]
struct CallRow {
    system: &'static str,
    runtime: &'static str,
    scenario: String,
    #[serde(skip)]
    case: Case,
    calls: Vec<u64>,
    p50_us: Stat,
    p99_us: Stat,
    calls_per_s: Stat,
    client_cpu_per_call_us: Stat,
    server_cpu_per_call_us: Stat,
    others_cpu_pct: Stat,
    /// The figures over raw TCP's in the same case and repetition.
    p50_over_tcp: Stat,
    p99_over_tcp: Stat,
    calls_per_s_over_tcp: Stat,
}

#[derive(Debug, Serialize)]
struct Target {
    what: String,
    /// The figure: a ratio (median over repetitions) or milliseconds.
    value: Stat,
    /// `at most` or `at least`.
    bound: &'static str,
    limit: f64,
    met: bool,
}

impl Target {
    fn at_most(what: String, value: Stat, limit: f64) -> Target {
        Target {
            what,
            met: value.median <= limit,
            value,
            bound: "at most",
            limit,
        }
    }

    fn at_least(what: String, value: Stat, limit: f64) -> Target {
        Target {
            what,
            met: value.median >= limit,
            value,
            bound: "at least",
            limit,
        }
    }
}

#[derive(Debug, Serialize)]
struct EventsReport {
    warmup_s: f64,
    duration_s: f64,
    reps: u32,
    payload_bytes: usize,
    /// Each measured stream and the node that led it.
    leaders: Vec<(String, String)>,
    publishes: Vec<PublishRow>,
    latency: LatencyRow,
    targets: Vec<Target>,
}

/// One publisher in one scenario, over the repetitions.
#[derive(Debug, Serialize)]
struct PublishRow {
    system: &'static str,
    scenario: String,
    publishes: Vec<u64>,
    p50_us: Stat,
    p99_us: Stat,
    per_s: Stat,
    client_cpu_per_publish_us: Stat,
    server_cpu_per_publish_us: Stat,
    others_cpu_pct: Stat,
    /// The figures over the direct publishes' in the same scenario and
    /// repetition.
    p50_over_direct: Stat,
    p99_over_direct: Stat,
    per_s_over_direct: Stat,
}

/// Publish through host A to the handler at host B.
#[derive(Debug, Serialize)]
struct LatencyRow {
    rate_per_s: u32,
    events: Vec<u64>,
    p50_us: Stat,
    p99_us: Stat,
    max_us: Stat,
    others_cpu_pct: Stat,
}

#[derive(Debug, Serialize)]
struct RegistryReport {
    #[serde(flatten)]
    outcome: registry::Outcome,
    visibility: Vec<Visibility>,
    targets: Vec<Target>,
}

/// The distribution of one kind of visibility delay.
#[derive(Debug, Serialize)]
struct Visibility {
    what: &'static str,
    samples: usize,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

impl Report {
    pub(crate) fn new(
        plan: &Plan,
        nats_server: Option<String>,
        skipped: Vec<(&'static str, String)>,
        call: Option<call::Outcome>,
        registry: Option<registry::Outcome>,
        events: Option<events::Outcome>,
    ) -> Report {
        Report {
            machine: Machine::this(crate::report::load_average()),
            nats_server,
            skipped,
            call: call.map(|c| CallReport::new(plan, c)),
            registry: registry.map(RegistryReport::new),
            events: events.map(|e| EventsReport::new(plan, e)),
        }
    }

    /// The human-readable tables.
    pub(crate) fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "\n{}", self.machine.line());
        if let Some(version) = &self.nats_server {
            let _ = writeln!(out, "{version}");
        }
        for (system, why) in &self.skipped {
            let _ = writeln!(out, "{system}: not measured: {why}");
        }
        if let Some(call) = &self.call {
            call.table(&mut out);
        }
        if let Some(registry) = &self.registry {
            registry.table(&mut out);
        }
        if let Some(events) = &self.events {
            events.table(&mut out);
        }
        out
    }
}

impl CallReport {
    fn new(plan: &Plan, outcome: call::Outcome) -> CallReport {
        let mut cases: Vec<Case> = Vec::new();
        for run in &outcome.runs {
            if !cases.contains(&run.case) {
                cases.push(run.case);
            }
        }
        let mut rows = Vec::new();
        let mut targets = Vec::new();
        for case in cases {
            let runs = |system: System| -> Vec<&Run> {
                outcome
                    .runs
                    .iter()
                    .filter(|r| r.case == case && r.system == system)
                    .collect()
            };
            let floor = runs(System::RawTcp);
            let stat = |runs: &[&Run], figure: fn(&Run) -> Option<f64>| {
                Stat::new(runs.iter().filter_map(|r| figure(r)).collect())
            };
            let tcp_p50 = stat(&floor, |r| Some(r.p50_us));
            let tcp_p99 = stat(&floor, |r| Some(r.p99_us));
            let tcp_rate = stat(&floor, |r| Some(r.calls_per_s));
            for system in [System::RawTcp, System::Weft] {
                let mine = runs(system);
                if mine.is_empty() {
                    continue;
                }
                let p50_us = stat(&mine, |r| Some(r.p50_us));
                let p99_us = stat(&mine, |r| Some(r.p99_us));
                let calls_per_s = stat(&mine, |r| Some(r.calls_per_s));
                let row = CallRow {
                    system: system.name(),
                    runtime: case.flavour.name(),
                    scenario: case.scenario.label(),
                    case,
                    calls: mine.iter().map(|r| r.calls).collect(),
                    p50_over_tcp: p50_us.over(&tcp_p50),
                    p99_over_tcp: p99_us.over(&tcp_p99),
                    calls_per_s_over_tcp: calls_per_s.over(&tcp_rate),
                    p50_us,
                    p99_us,
                    calls_per_s,
                    client_cpu_per_call_us: stat(&mine, |r| r.cpu_per_call_us.map(|c| c.0)),
                    server_cpu_per_call_us: stat(&mine, |r| r.cpu_per_call_us.map(|c| c.1)),
                    others_cpu_pct: stat(&mine, |r| r.others_cpu.map(|s| s * 100.0)),
                };
                if system == System::Weft
                    && case.scenario == Scenario::Sequential
                    && !row.p50_over_tcp.reps.is_empty()
                {
                    targets.push(Target::at_most(
                        format!("weft p50 / raw-tcp p50 across namespaces, {}", case.label()),
                        row.p50_over_tcp.clone(),
                        CALL_TARGET,
                    ));
                }
                rows.push(row);
            }
        }
        let [nats, callee, caller] = outcome.addresses;
        CallReport {
            warmup_s: plan.warmup.as_secs_f64(),
            duration_s: plan.duration.as_secs_f64(),
            reps: plan.reps,
            payload_bytes: call::PAYLOAD,
            nats_address: nats,
            callee_address: callee,
            caller_address: caller,
            rows,
            targets,
        }
    }

    fn table(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "\ncluster-call: a weft call from namespace B ({}: the caller and its host) to namespace A \
             ({}: the echo instance and its host), hosts joined through nats-server in C ({}); \
             raw TCP from B to A beside it",
            self.caller_address, self.callee_address, self.nats_address
        );
        let _ = writeln!(
            out,
            "method: {:.2} s warm-up + {:.2} s measured, {} rep(s), raw-tcp then weft; median (min–max) over reps",
            self.warmup_s, self.duration_s, self.reps
        );
        let header = [
            "SYSTEM",
            "p50 µs",
            "p99 µs",
            "calls/s",
            "p50 ×tcp",
            "p99 ×tcp",
            "calls/s ×tcp",
            "CPU µs/call cl+srv",
            "others' CPU %",
        ];
        let mut label = String::new();
        let mut block: Vec<Vec<String>> = Vec::new();
        for row in &self.rows {
            let this = format!("{}, B → A", row.case.label());
            if this != label && !block.is_empty() {
                let _ = write!(out, "\n{label}\n{}", align(&header, &block));
                block.clear();
            }
            label = this;
            block.push(vec![
                row.system.to_owned(),
                row.p50_us.show(1),
                row.p99_us.show(1),
                row.calls_per_s.show(0),
                format!("{:.2}", row.p50_over_tcp.median),
                format!("{:.2}", row.p99_over_tcp.median),
                format!("{:.2}", row.calls_per_s_over_tcp.median),
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
        if !block.is_empty() {
            let _ = write!(out, "\n{label}\n{}", align(&header, &block));
        }
        let _ = writeln!(
            out,
            "\n×tcp: over raw TCP's figure from B to A in the same repetition (medians); \
             CPU µs/call: the calling process's, and the system's servers' \
             (weft: the echo instance, both hosts and nats-server)"
        );
        print_targets(out, &self.targets, 2);
    }
}

impl RegistryReport {
    fn new(outcome: registry::Outcome) -> RegistryReport {
        let visibility = vec![
            Visibility::new(
                "added, on the host it registered with",
                &outcome.added_own_ms,
            ),
            Visibility::new("added, on every host", &outcome.added_every_ms),
            Visibility::new(
                "removed, from the host it deregistered from",
                &outcome.removed_own_ms,
            ),
            Visibility::new("removed, from every host", &outcome.removed_every_ms),
        ];
        let targets = visibility
            .iter()
            .filter(|v| v.what.ends_with("every host") && v.samples > 0)
            .map(|v| {
                Target::at_most(
                    format!("p99 ms until an instance is {}", v.what),
                    Stat::new(vec![v.p99_ms]),
                    VISIBILITY_TARGET_MS,
                )
            })
            .collect();
        RegistryReport {
            outcome,
            visibility,
            targets,
        }
    }

    fn table(&self, out: &mut String) {
        let o = &self.outcome;
        let _ = writeln!(
            out,
            "\ncluster-registry: {} instances of {} services registered across {} hosts ({}) \
             on one nats-server, all on 127.0.0.1; lease {} s",
            o.instances,
            o.services,
            o.hosts.len(),
            o.hosts.join(", "),
            o.lease_ttl_s
        );
        let _ = writeln!(
            out,
            "registration: every host's watch stream listed all {} {:.2} s after the first register call",
            o.instances, o.registered_s
        );
        let _ = writeln!(
            out,
            "\nvisibility: from the register (deregister) call until a caller's watch stream on the host shows the instance up (down)"
        );
        let rows: Vec<Vec<String>> = self
            .visibility
            .iter()
            .map(|v| {
                vec![
                    v.what.to_owned(),
                    v.samples.to_string(),
                    format!("{:.2}", v.p50_ms),
                    format!("{:.2}", v.p99_ms),
                    format!("{:.2}", v.max_ms),
                ]
            })
            .collect();
        let _ = write!(
            out,
            "{}",
            align(&["WHAT", "samples", "p50 ms", "p99 ms", "max ms"], &rows)
        );
        let others = o
            .others_cpu_pct
            .map_or_else(String::new, |p| format!("; others' CPU {p:.0}%"));
        let _ = writeln!(
            out,
            "\nat rest for {:.1} s with {} instances, keepalives every third of the lease{others}",
            o.rest_s, o.instances
        );
        let mib = |kib: Option<u64>| {
            kib.map_or_else(|| "-".to_owned(), |k| format!("{:.1}", k as f64 / 1024.0))
        };
        let rows: Vec<Vec<String>> = o
            .processes
            .iter()
            .map(|p| {
                vec![
                    p.name.clone(),
                    mib(p.rss_empty_kib),
                    mib(p.rss_kib),
                    format!("{:.1}", p.cpu_pct),
                ]
            })
            .collect();
        let _ = write!(
            out,
            "{}",
            align(
                &[
                    "PROCESS",
                    "RSS MiB, no instances",
                    "RSS MiB at rest",
                    "CPU % of a core at rest"
                ],
                &rows
            )
        );
        let _ = writeln!(
            out,
            "(CPU from /proc/PID/stat, 10 ms ticks: ±{:.1} points)",
            1.0 / o.rest_s.max(0.01)
        );
        print_targets(out, &self.targets, 1);
    }
}

impl EventsReport {
    fn new(plan: &Plan, outcome: events::Outcome) -> EventsReport {
        let mut scenarios: Vec<Scenario> = Vec::new();
        for (_, run) in &outcome.runs {
            if !scenarios.contains(&run.case.scenario) {
                scenarios.push(run.case.scenario);
            }
        }
        let stat = |runs: &[&Run], figure: fn(&Run) -> Option<f64>| {
            Stat::new(runs.iter().filter_map(|r| figure(r)).collect())
        };
        let mut publishes = Vec::new();
        let mut targets = Vec::new();
        for scenario in scenarios {
            let runs = |side: events::Side| -> Vec<&Run> {
                outcome
                    .runs
                    .iter()
                    .filter(|(s, r)| *s == side && r.case.scenario == scenario)
                    .map(|(_, r)| r)
                    .collect()
            };
            let direct = runs(events::Side::Direct);
            let direct_p50 = stat(&direct, |r| Some(r.p50_us));
            let direct_p99 = stat(&direct, |r| Some(r.p99_us));
            let direct_rate = stat(&direct, |r| Some(r.calls_per_s));
            for side in [events::Side::Direct, events::Side::Weft] {
                let mine = runs(side);
                if mine.is_empty() {
                    continue;
                }
                let p50_us = stat(&mine, |r| Some(r.p50_us));
                let p99_us = stat(&mine, |r| Some(r.p99_us));
                let per_s = stat(&mine, |r| Some(r.calls_per_s));
                let row = PublishRow {
                    system: side.name(),
                    scenario: scenario.label(),
                    publishes: mine.iter().map(|r| r.calls).collect(),
                    p50_over_direct: p50_us.over(&direct_p50),
                    p99_over_direct: p99_us.over(&direct_p99),
                    per_s_over_direct: per_s.over(&direct_rate),
                    p50_us,
                    p99_us,
                    per_s,
                    client_cpu_per_publish_us: stat(&mine, |r| r.cpu_per_call_us.map(|c| c.0)),
                    server_cpu_per_publish_us: stat(&mine, |r| r.cpu_per_call_us.map(|c| c.1)),
                    others_cpu_pct: stat(&mine, |r| r.others_cpu.map(|s| s * 100.0)),
                };
                if side == events::Side::Weft && !row.p50_over_direct.reps.is_empty() {
                    targets.push(Target::at_most(
                        format!("weft publish p50 / direct JetStream p50, {}", row.scenario),
                        row.p50_over_direct.clone(),
                        PUBLISH_P50_TARGET,
                    ));
                    targets.push(Target::at_least(
                        format!(
                            "weft publishes/s / direct JetStream publishes/s, {}",
                            row.scenario
                        ),
                        row.per_s_over_direct.clone(),
                        PUBLISH_RATE_TARGET,
                    ));
                }
                publishes.push(row);
            }
        }
        let latency = &outcome.latency;
        let figure = |f: fn(&events::Latency) -> f64| Stat::new(latency.iter().map(f).collect());
        EventsReport {
            warmup_s: plan.warmup.as_secs_f64(),
            duration_s: plan.duration.as_secs_f64(),
            reps: plan.reps,
            payload_bytes: events::PAYLOAD,
            leaders: outcome.leaders,
            publishes,
            latency: LatencyRow {
                rate_per_s: outcome.rate,
                events: latency.iter().map(|l| l.count).collect(),
                p50_us: figure(|l| l.p50_us),
                p99_us: figure(|l| l.p99_us),
                max_us: figure(|l| l.max_us),
                others_cpu_pct: Stat::new(
                    latency
                        .iter()
                        .filter_map(|l| l.others_cpu.map(|s| s * 100.0))
                        .collect(),
                ),
            },
            targets,
        }
    }

    fn table(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "\ncluster-events: three clustered nats-servers (n1, n2, n3) on 127.0.0.1, weft hosts \
             A (on n1) and B (on n2); R3 File streams led by {}",
            self.leaders
                .iter()
                .map(|(stream, leader)| format!("{leader} ({stream})"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let _ = writeln!(
            out,
            "method: {:.2} s warm-up + {:.2} s measured, {} rep(s), direct then weft; \
             median (min–max) over reps; {} B of JSON per event",
            self.warmup_s, self.duration_s, self.reps, self.payload_bytes
        );
        let header = [
            "PUBLISHER",
            "publishes/s",
            "p50 µs",
            "p99 µs",
            "p50 ×direct",
            "p99 ×direct",
            "per s ×direct",
            "CPU µs/publish cl+srv",
            "others' CPU %",
        ];
        let mut label = String::new();
        let mut block: Vec<Vec<String>> = Vec::new();
        for row in &self.publishes {
            let this = format!("acknowledged publishes, {}", row.scenario);
            if this != label && !block.is_empty() {
                let _ = write!(out, "\n{label}\n{}", align(&header, &block));
                block.clear();
            }
            label = this;
            block.push(vec![
                row.system.to_owned(),
                row.per_s.show(0),
                row.p50_us.show(1),
                row.p99_us.show(1),
                format!("{:.2}", row.p50_over_direct.median),
                format!("{:.2}", row.p99_over_direct.median),
                format!("{:.2}", row.per_s_over_direct.median),
                if row.client_cpu_per_publish_us.reps.is_empty() {
                    "-".to_owned()
                } else {
                    format!(
                        "{:.1}+{:.1}",
                        row.client_cpu_per_publish_us.median, row.server_cpu_per_publish_us.median
                    )
                },
                if row.others_cpu_pct.reps.is_empty() {
                    "-".to_owned()
                } else {
                    row.others_cpu_pct.show(0)
                },
            ]);
        }
        if !block.is_empty() {
            let _ = write!(out, "\n{label}\n{}", align(&header, &block));
        }
        let _ = writeln!(
            out,
            "×direct: over the direct JetStream publishes' figure in the same repetition (medians); \
             CPU µs/publish: the publishing process's, and the servers' \
             (the three nats-servers, and for weft host A)"
        );
        let l = &self.latency;
        let _ = writeln!(
            out,
            "\npublish→handler at {}/s: published through host A, handled by an instance \
             registered with host B",
            l.rate_per_s
        );
        let events = l
            .events
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        let _ = write!(
            out,
            "{}",
            align(
                &[
                    "FIGURE",
                    "events",
                    "p50 µs",
                    "p99 µs",
                    "max µs",
                    "others' CPU %"
                ],
                &[vec![
                    "weft, A → B".to_owned(),
                    events,
                    l.p50_us.show(0),
                    l.p99_us.show(0),
                    l.max_us.show(0),
                    if l.others_cpu_pct.reps.is_empty() {
                        "-".to_owned()
                    } else {
                        l.others_cpu_pct.show(0)
                    },
                ]]
            )
        );
        print_targets(out, &self.targets, 2);
    }
}

impl Visibility {
    fn new(what: &'static str, samples_ms: &[f64]) -> Visibility {
        let mut sorted = samples_ms.to_vec();
        sorted.sort_by(f64::total_cmp);
        Visibility {
            what,
            samples: sorted.len(),
            p50_ms: quantile(&sorted, 0.50),
            p99_ms: quantile(&sorted, 0.99),
            max_ms: sorted.last().copied().unwrap_or(f64::NAN),
        }
    }
}

/// The nearest-rank quantile `q` of `sorted`.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn print_targets(out: &mut String, targets: &[Target], decimals: usize) {
    if targets.is_empty() {
        return;
    }
    let _ = writeln!(out, "targets:");
    for t in targets {
        let _ = writeln!(
            out,
            "  {:<4} {} {} {:.d$}: {}",
            if t.met { "met" } else { "MISS" },
            t.what,
            t.bound,
            t.limit,
            t.value.show(decimals),
            d = decimals
        );
    }
}

/// `rows` under `header` in aligned columns: the first to the left, the
/// figures to the right.
fn align(header: &[&str], rows: &[Vec<String>]) -> String {
    let header: Vec<String> = header.iter().map(|h| (*h).to_owned()).collect();
    let mut widths = vec![0; header.len()];
    for row in std::iter::once(&header).chain(rows) {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (c, (cell, width)) in row.iter().zip(&widths).enumerate() {
            let pad = " ".repeat(width - cell.chars().count());
            if c == 0 {
                line.push_str(cell);
                line.push_str(&pad);
            } else {
                line.push_str(&pad);
                line.push_str(cell);
            }
            line.push_str("  ");
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_nearest_rank() {
        let sorted: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&sorted, 0.50), 50.0);
        assert_eq!(quantile(&sorted, 0.99), 99.0);
        assert_eq!(quantile(&[7.0], 0.99), 7.0);
        assert!(quantile(&[], 0.5).is_nan());
    }

    #[test]
    fn columns_align() {
        let table = align(
            &["WHAT", "ms"],
            &[
                vec!["a".into(), "1.00".into()],
                vec!["long".into(), "10.00".into()],
            ],
        );
        assert_eq!(table, "WHAT     ms\na      1.00\nlong  10.00\n");
    }
}
