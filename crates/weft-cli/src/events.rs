//! `weft events`: topics, their consumer groups, tails, dead letters and
//! replays, over the host's `/api/v1/events`.

use std::io::Write as _;

use clap::{Args, Subcommand};
use http_body_util::BodyExt as _;
use hyper::Method;
use serde_json::Value;
use weft_host_api::events::{
    DeadLetter, PublishRequest, ReplayRequest, Replayed, TailEvent, TopicInfo,
};
use weft_host_api::wire::Published;

use crate::manage::{HostApi, TIMEOUT, Target};
use crate::{Failure, Result, table, time};

/// Options of `weft events`.
#[derive(Debug, Args)]
pub(crate) struct EventsCmd {
    #[command(subcommand)]
    command: EventsSub,
}

#[derive(Debug, Subcommand)]
enum EventsSub {
    /// Topics with their event counts, publish rates and, per handler, the
    /// backlog, deliveries in flight and dead letters.
    Ls {
        #[command(flatten)]
        target: Target,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print a topic's newest events (and, with -f, new ones as they come).
    Tail {
        #[command(flatten)]
        target: Target,
        /// The topic.
        topic: String,
        /// How many of the newest events to show first.
        #[arg(short = 'n', default_value_t = 20, value_name = "N")]
        lines: u64,
        /// Keep printing new events.
        #[arg(short = 'f', long)]
        follow: bool,
        /// Print each event as one JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Events that handlers gave up on, of one topic or all.
    Dead {
        #[command(flatten)]
        target: Target,
        /// Only this topic.
        topic: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Deliver dead letters to their handler again: one (`ID --topic T`) or
    /// every one of a topic (`--all T`).
    Replay {
        #[command(flatten)]
        target: Target,
        /// The dead letter's event id.
        #[arg(required_unless_present = "all", requires = "topic")]
        id: Option<u64>,
        /// The topic of ID.
        #[arg(long, value_name = "TOPIC", conflicts_with = "all")]
        topic: Option<String>,
        /// Replay every dead letter of this topic.
        #[arg(long, value_name = "TOPIC")]
        all: Option<String>,
    },
    /// Publish an event (a JSON payload) and print its id.
    Publish {
        #[command(flatten)]
        target: Target,
        /// The topic.
        topic: String,
        /// The payload, as JSON.
        #[arg(value_name = "JSON")]
        payload: String,
        /// A key that makes publishing again within the host's window a no-op.
        #[arg(long, value_name = "KEY")]
        idempotency_key: Option<String>,
    },
}

/// Percent-encodes a path segment or query value.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Runs `weft events ...`.
pub(crate) async fn events(cmd: EventsCmd) -> Result<()> {
    match cmd.command {
        EventsSub::Ls { target, json } => ls(&target, json).await,
        EventsSub::Tail {
            target,
            topic,
            lines,
            follow,
            json,
        } => tail(&target, &topic, lines, follow, json).await,
        EventsSub::Dead {
            target,
            topic,
            json,
        } => dead(&target, topic.as_deref(), json).await,
        EventsSub::Replay {
            target,
            id,
            topic,
            all,
        } => {
            let body = match (id, topic, all) {
                (Some(id), Some(topic), None) => ReplayRequest {
                    topic,
                    id: Some(id),
                    all: false,
                },
                (None, None, Some(topic)) => ReplayRequest {
                    topic,
                    id: None,
                    all: true,
                },
                _ => {
                    return Err(Failure(
                        "name one dead letter with `weft events replay ID --topic TOPIC`, or all of a topic with `weft events replay --all TOPIC`".into(),
                    ));
                }
            };
            let api = HostApi::new(&target)?;
            let answer: Replayed = api
                .request(Method::POST, "/api/v1/events/replay", Some(&body))
                .await?;
            println!(
                "replaying {} dead letter(s); `weft events dead` shows them until they are handled",
                answer.replayed
            );
            Ok(())
        }
        EventsSub::Publish {
            target,
            topic,
            payload,
            idempotency_key,
        } => {
            let payload: Value = serde_json::from_str(&payload).map_err(|e| {
                Failure(format!(
                    "the payload is not JSON ({e}); quote it for the shell, like '{{\"order\": 7}}'"
                ))
            })?;
            let api = HostApi::new(&target)?;
            let body = PublishRequest {
                topic,
                payload,
                idempotency_key,
            };
            let answer: Published = api
                .request(Method::POST, "/api/v1/events/publish", Some(&body))
                .await?;
            if answer.duplicate {
                println!("{} (duplicate: not stored again)", answer.id);
            } else {
                println!("{}", answer.id);
            }
            Ok(())
        }
    }
}

async fn ls(target: &Target, as_json: bool) -> Result<()> {
    let api = HostApi::new(target)?;
    let topics: Vec<TopicInfo> = api
        .request::<(), _>(Method::GET, "/api/v1/events/topics", None)
        .await?;
    let mut out = std::io::stdout().lock();
    if as_json {
        return table::print_json(&mut out, &topics);
    }
    let mut rows = Vec::new();
    for t in &topics {
        let topic = t.topic.clone();
        let events = t.events.to_string();
        let rate = t.rate_per_min.to_string();
        if t.groups.is_empty() {
            rows.push(vec![
                topic.clone(),
                events.clone(),
                rate.clone(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
            ]);
        }
        for g in &t.groups {
            rows.push(vec![
                topic.clone(),
                events.clone(),
                rate.clone(),
                g.group.clone(),
                g.backlog.to_string(),
                g.in_flight.to_string(),
                g.dead.to_string(),
            ]);
        }
    }
    if rows.is_empty() {
        writeln!(
            out,
            "no topics yet; `weft events publish TOPIC JSON` or a service's ctx.publish makes one"
        )?;
        return Ok(());
    }
    write!(
        out,
        "{}",
        table::render(
            &[
                "TOPIC",
                "EVENTS",
                "RATE/min",
                "GROUP",
                "BACKLOG",
                "IN-FLIGHT",
                "DEAD"
            ],
            &rows
        )
    )?;
    Ok(())
}

fn print_event(out: &mut impl std::io::Write, line: &[u8], as_json: bool) -> Result<()> {
    if line.iter().all(u8::is_ascii_whitespace) {
        return Ok(());
    }
    let text = String::from_utf8_lossy(line);
    let text = text.trim_end();
    if as_json {
        writeln!(out, "{text}")?;
        return Ok(());
    }
    // A stream that fails says so in a line of its own: `{"error": ...}`.
    #[derive(serde::Deserialize)]
    struct Broken {
        error: String,
    }
    if let Ok(e) = serde_json::from_str::<TailEvent>(text) {
        writeln!(out, "{} {} {}", e.id, time::show(e.published_ms), e.payload)?;
    } else if let Ok(b) = serde_json::from_str::<Broken>(text) {
        writeln!(out, "! {}", b.error)?;
    } else {
        writeln!(out, "{text}")?;
    }
    Ok(())
}

async fn tail(target: &Target, topic: &str, n: u64, follow: bool, as_json: bool) -> Result<()> {
    let api = HostApi::new(target)?;
    let mut path = format!("/api/v1/events/topics/{}/tail?n={n}", encode(topic));
    if follow {
        path.push_str("&follow=true");
    }
    let response = tokio::time::timeout(TIMEOUT, api.open(Method::GET, &path, None))
        .await
        .map_err(|_| api.too_slow())??;
    let status = response.status();
    let mut body = response.into_body();
    if !status.is_success() {
        let bytes = body
            .collect()
            .await
            .map_err(|e| api.broke_off(&e))?
            .to_bytes();
        return Err(api.problem(status, &bytes));
    }
    let mut pending: Vec<u8> = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|e| Failure(format!("the host's event stream broke off: {e}")))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        pending.extend_from_slice(&data);
        let mut out = std::io::stdout().lock();
        while let Some(i) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=i).collect();
            print_event(&mut out, &line, as_json)?;
        }
        out.flush()?;
    }
    print_event(&mut std::io::stdout().lock(), &pending, as_json)?;
    if follow {
        return Err(Failure(
            "the host closed the event stream (did it stop?); run `weft events tail -f` again once it is back".into(),
        ));
    }
    Ok(())
}

async fn dead(target: &Target, topic: Option<&str>, as_json: bool) -> Result<()> {
    let api = HostApi::new(target)?;
    let path = match topic {
        Some(t) => format!("/api/v1/events/dead?topic={}", encode(t)),
        None => "/api/v1/events/dead".to_owned(),
    };
    let list: Vec<DeadLetter> = api.request::<(), _>(Method::GET, &path, None).await?;
    let mut out = std::io::stdout().lock();
    if as_json {
        return table::print_json(&mut out, &list);
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|d| {
            vec![
                d.topic.clone(),
                d.id.to_string(),
                d.group.clone(),
                d.attempts.to_string(),
                time::show(d.time_ms),
                if d.replaying { "(replaying) " } else { "" }.to_owned() + &d.error,
            ]
        })
        .collect();
    if rows.is_empty() {
        writeln!(out, "no dead letters")?;
        return Ok(());
    }
    write!(
        out,
        "{}",
        table::render(
            &["TOPIC", "ID", "GROUP", "ATTEMPTS", "TIME", "LAST ERROR"],
            &rows
        )
    )?;
    Ok(())
}
