//! The events suite's figures over repetitions, weft over each JetStream
//! configuration, and the targets, judged against `jetstream-sync` (the
//! same durability as weft's).

use std::fmt::Write as _;

use serde::Serialize;

use super::{Figure, Measured, Outcome, Plan, Variant};

/// What the events suite measured.
#[derive(Debug, Serialize)]
pub(crate) struct Report {
    method: Method,
    /// `nats-server --version`, when JetStream was measured.
    nats_server: Option<String>,
    /// The nats-server executable run, when JetStream was measured.
    nats_server_path: Option<String>,
    /// Whether a publish is on disk when each system acknowledges it.
    durability: Vec<(&'static str, String)>,
    skipped: Vec<(&'static str, String)>,
    rows: Vec<Row>,
    /// weft's figure over each JetStream configuration's, repetition by
    /// repetition.
    ratios: Vec<Ratio>,
}

#[derive(Debug, Serialize)]
struct Method {
    warmup_s: f64,
    duration_s: f64,
    reps: u32,
    pad_bytes: usize,
    latency_rate_per_s: u32,
}

/// One system, one figure, one runtime flavour, over all repetitions.
#[derive(Debug, Serialize)]
struct Row {
    system: &'static str,
    runtime: &'static str,
    figure: Figure,
    label: String,
    /// Publishes (events handled, for the latency figure) in each
    /// repetition's window.
    count: Vec<u64>,
    per_s: Stat,
    /// Publish to durable acknowledgement, or publish to handler.
    p50_us: Stat,
    p99_us: Stat,
    max_us: Stat,
    client_cpu_per_publish_us: Stat,
    server_cpu_per_publish_us: Stat,
    others_cpu_pct: Stat,
}

#[derive(Debug, Serialize)]
struct Ratio {
    runtime: &'static str,
    figure: Figure,
    /// `publishes/s`, `p50` or `p99`.
    what: &'static str,
    /// The JetStream configuration weft is compared with.
    over: Variant,
    weft_over: Stat,
    /// `at least 1.00` or `at most 1.00`, for the figures with a target
    /// and only against `jetstream-sync`, which acknowledges after the
    /// fsync as weft does.
    target: Option<String>,
    met: Option<bool>,
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
    fn new(reps: Vec<f64>) -> Stat {
        let mut sorted = reps.clone();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let median = match n {
            0 => f64::NAN,
            _ if n % 2 == 1 => sorted[n / 2],
            _ => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
        };
        Stat {
            median,
            min: sorted.first().copied().unwrap_or(f64::NAN),
            max: sorted.last().copied().unwrap_or(f64::NAN),
            reps,
        }
    }

    /// The per-repetition ratios, without those that have no meaning: a
    /// window too short for any acknowledgement of the other side (a
    /// `--quick` run with hundreds in flight against a sync per write)
    /// gives a zero.
    fn over(&self, other: &Stat) -> Stat {
        Stat::new(
            self.reps
                .iter()
                .zip(&other.reps)
                .map(|(m, o)| m / o)
                .filter(|r| r.is_finite())
                .collect(),
        )
    }

    fn show(&self, decimals: usize) -> String {
        if self.reps.is_empty() {
            "-".to_owned()
        } else if self.reps.len() > 1 {
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
    pub(crate) fn new(plan: &Plan, outcome: Outcome) -> Report {
        let mut rows = Vec::new();
        for &flavour in &plan.flavours {
            for figure in plan.figures() {
                for &variant in &outcome.variants {
                    let mine: Vec<&Measured> = outcome
                        .runs
                        .iter()
                        .filter(|m| {
                            m.variant == variant && m.flavour == flavour && m.figure == figure
                        })
                        .collect();
                    if mine.is_empty() {
                        continue;
                    }
                    let stat = |f: fn(&Measured) -> Option<f64>| {
                        Stat::new(mine.iter().filter_map(|m| f(m)).collect())
                    };
                    rows.push(Row {
                        system: variant.name(),
                        runtime: flavour.name(),
                        figure,
                        label: figure.label(),
                        count: mine.iter().map(|m| m.count).collect(),
                        per_s: stat(|m| Some(m.per_s)),
                        p50_us: stat(|m| Some(m.p50_us)),
                        p99_us: stat(|m| Some(m.p99_us)),
                        max_us: stat(|m| Some(m.max_us)),
                        client_cpu_per_publish_us: stat(|m| m.cpu_per_publish_us.map(|c| c.0)),
                        server_cpu_per_publish_us: stat(|m| m.cpu_per_publish_us.map(|c| c.1)),
                        others_cpu_pct: stat(|m| m.others_cpu.map(|s| s * 100.0)),
                    });
                }
            }
        }
        let mut ratios = Vec::new();
        for &flavour in &plan.flavours {
            for figure in plan.figures() {
                let find = |v: Variant| {
                    rows.iter().find(|r| {
                        r.system == v.name() && r.runtime == flavour.name() && r.figure == figure
                    })
                };
                let Some(w) = find(Variant::WeftEvents) else {
                    continue;
                };
                for over in [Variant::JetstreamSync, Variant::Jetstream] {
                    let Some(j) = find(over) else {
                        continue;
                    };
                    // Only the configuration with weft's guarantee is held to
                    // the targets; the default is shown beside it.
                    let judged = over == Variant::JetstreamSync;
                    let mut add = |what, ratio: Stat, target: Option<(bool, f64)>| {
                        let target = target.filter(|_| judged && !ratio.reps.is_empty());
                        let met = target.map(|(at_most, limit)| {
                            if at_most {
                                ratio.median <= limit
                            } else {
                                ratio.median >= limit
                            }
                        });
                        ratios.push(Ratio {
                            runtime: flavour.name(),
                            figure,
                            what,
                            over,
                            weft_over: ratio,
                            target: target.map(|(at_most, limit)| {
                                format!(
                                    "{} {limit:.2}",
                                    if at_most { "at most" } else { "at least" }
                                )
                            }),
                            met,
                        });
                    };
                    match figure {
                        Figure::OneAtATime | Figure::InFlight(_) => {
                            add("publishes/s", w.per_s.over(&j.per_s), Some((false, 1.0)));
                        }
                        Figure::Latency(_) => {
                            add("p50", w.p50_us.over(&j.p50_us), None);
                            add("p99", w.p99_us.over(&j.p99_us), Some((true, 1.0)));
                        }
                    }
                }
            }
        }
        let version = outcome.nats_version.as_deref();
        let durability = outcome
            .variants
            .iter()
            .map(|&v| {
                let how = match v {
                    Variant::WeftEvents => "acknowledged after the host's fdatasync of the \
                                            segment file (group commit)"
                        .to_owned(),
                    Variant::Jetstream => jetstream_durability(version),
                    Variant::JetstreamSync => format!(
                        "{}: File storage with `sync_interval: always` (an fsync of every \
                         write before it is acknowledged)",
                        version.unwrap_or("nats-server")
                    ),
                };
                (v.name(), how)
            })
            .collect();
        Report {
            method: Method {
                warmup_s: plan.warmup.as_secs_f64(),
                duration_s: plan.duration.as_secs_f64(),
                reps: plan.reps,
                pad_bytes: plan.pad,
                latency_rate_per_s: plan.rate,
            },
            nats_server: outcome.nats_version,
            nats_server_path: outcome.nats_path.map(|p| p.display().to_string()),
            durability,
            skipped: outcome.skipped,
            rows,
            ratios,
        }
    }

    /// The events part of the printed report.
    pub(crate) fn table(&self) -> String {
        let mut out = String::new();
        let m = &self.method;
        let _ = writeln!(
            out,
            "\nevents: {:.2} s warm-up + {:.2} s measured, {} rep(s), systems interleaved; median (min–max) over reps",
            m.warmup_s, m.duration_s, m.reps
        );
        let _ = writeln!(
            out,
            "  each event is a JSON stamp with {} B of filler; latency: open loop at {}/s, handler receipt minus the publisher's clock",
            m.pad_bytes, m.latency_rate_per_s
        );
        for (system, how) in &self.durability {
            let _ = writeln!(out, "  {system}: {how}");
        }
        for (system, why) in &self.skipped {
            let _ = writeln!(out, "  {system}: not measured: {why}");
        }
        let header = [
            "FIGURE",
            "SYSTEM",
            "per s",
            "p50 µs",
            "p99 µs",
            "CPU µs/publish cl+srv",
            "others' CPU %",
        ];
        let mut flavours: Vec<&'static str> = Vec::new();
        for r in &self.rows {
            if !flavours.contains(&r.runtime) {
                flavours.push(r.runtime);
            }
        }
        for flavour in flavours {
            let mut lines: Vec<[String; 7]> = vec![header.map(str::to_owned)];
            let mut last = String::new();
            for r in self.rows.iter().filter(|r| r.runtime == flavour) {
                let label = if r.label == last {
                    String::new()
                } else {
                    r.label.clone()
                };
                last = r.label.clone();
                lines.push([
                    label,
                    r.system.to_owned(),
                    r.per_s.show(0),
                    r.p50_us.show(0),
                    r.p99_us.show(0),
                    if r.client_cpu_per_publish_us.reps.is_empty() {
                        "-".to_owned()
                    } else {
                        format!(
                            "{:.1}+{:.1}",
                            r.client_cpu_per_publish_us.median, r.server_cpu_per_publish_us.median
                        )
                    },
                    r.others_cpu_pct.show(0),
                ]);
            }
            let widths: Vec<usize> = (0..7)
                .map(|c| {
                    lines
                        .iter()
                        .map(|l| l[c].chars().count())
                        .max()
                        .unwrap_or(0)
                })
                .collect();
            let _ = writeln!(out, "\nevents, {flavour} runtime");
            for l in &lines {
                let mut line = String::new();
                for (c, cell) in l.iter().enumerate() {
                    let pad = " ".repeat(widths[c] - cell.chars().count());
                    if c < 2 {
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
        }
        let _ = writeln!(
            out,
            "per s: publishes acknowledged per second (publish→handler: events handled per second); \
             p50/p99: publish→acknowledgement, or publish→handler"
        );
        if !self.ratios.is_empty() {
            let judged = self.ratios.iter().any(|r| r.over == Variant::JetstreamSync);
            let _ = writeln!(
                out,
                "\nevents, weft / jetstream-sync (the same durability: the targets) and \
                 weft / jetstream (its default: acknowledged before the fsync), median of \
                 the per-repetition ratios:"
            );
            if !judged {
                let _ = writeln!(
                    out,
                    "  no target verdict: the targets are judged against jetstream-sync, \
                     which needs nats-server 2.10+"
                );
            }
            // One line per runtime, figure and quantity: the judged ratio,
            // then the default's beside it.
            let mut done: Vec<(&str, Figure, &str)> = Vec::new();
            for r in &self.ratios {
                let key = (r.runtime, r.figure, r.what);
                if done.contains(&key) {
                    continue;
                }
                done.push(key);
                let mut parts = Vec::new();
                for s in self
                    .ratios
                    .iter()
                    .filter(|s| (s.runtime, s.figure, s.what) == key)
                {
                    let verdict = match (&s.target, s.met) {
                        (Some(t), Some(met)) => {
                            format!(" (target {t}: {})", if met { "met" } else { "MISS" })
                        }
                        _ => String::new(),
                    };
                    parts.push(format!(
                        "{} vs {}{verdict}",
                        s.weft_over.show(2),
                        s.over.name()
                    ));
                }
                let _ = writeln!(
                    out,
                    "  {}, {} runtime, {}: {}",
                    r.figure.label(),
                    r.runtime,
                    r.what,
                    parts.join("; "),
                );
            }
        }
        out
    }
}

/// What a JetStream acknowledgement means with this nats-server's default
/// configuration: it writes a File-storage message to the OS, acknowledges
/// it, and fsyncs on a timer (`sync_interval`, 2 minutes by default in
/// 2.10+); 2.9 cannot be told to do otherwise.
fn jetstream_durability(version: Option<&str>) -> String {
    let name = version.unwrap_or("nats-server");
    if super::supports_sync_always(version) || super::nats_minor(version).is_none() {
        format!(
            "{name}: File storage with the default `sync_interval` (fsync'd periodically, \
             not before the acknowledgement)"
        )
    } else {
        format!(
            "{name}: acknowledged once written to the OS, fsync'd only periodically; this \
             version cannot be told to fsync every write (`sync_interval: always` needs \
             nats-server 2.10+)"
        )
    }
}
