//! `events_probe`: a service with event handlers that exists only for the
//! end-to-end tests of events. Each instance appends one line per handled
//! event to `<WEFT_EVENTS_PROBE_DIR>/<instance>.log` (a line that is written
//! survives a SIGKILL of the instance), so a test reads what every instance
//! handled, including instances it killed.
//!
//! It runs as a separate process: this test binary run again (see
//! [`start`]).

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use weft::prelude::*;
use weft_test_support::{HostProcess, ServiceProcess, test_service_command};

/// Where instances write what they handled.
const DIR_ENV: &str = "WEFT_EVENTS_PROBE_DIR";

/// The service name.
pub(crate) const SERVICE: &str = "events_probe";

/// Topics, one per handler.
pub(crate) const POOL: &str = "e2e.pool";
pub(crate) const BROADCAST: &str = "e2e.broadcast";
pub(crate) const ORDERED: &str = "e2e.ordered";
pub(crate) const DEAD: &str = "e2e.dead";

/// The event every handler takes.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub(crate) struct Job {
    /// Which run of a test the event belongs to (`warmup`, `main`, ...).
    pub(crate) tag: String,
    /// The event's number within its tag.
    pub(crate) n: u64,
    /// The ordering key (for the ordered handler).
    #[serde(default)]
    pub(crate) key: String,
    /// How long the handler takes; for the ordered handler, at most this
    /// long (a pseudo-random part of it).
    #[serde(default)]
    pub(crate) ms: u64,
    /// For the dead-letter handler: fail until the fix file exists.
    #[serde(default)]
    pub(crate) fail: bool,
}

/// The probe service.
#[derive(Debug, Default)]
pub(crate) struct EventsProbe;

fn dir() -> PathBuf {
    PathBuf::from(std::env::var_os(DIR_ENV).expect("WEFT_EVENTS_PROBE_DIR is set"))
}

fn now_us() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or(0)
}

/// Appends one line to this instance's log in one write.
fn record(ctx: &Context, line: String) {
    static FILE: OnceLock<Mutex<std::fs::File>> = OnceLock::new();
    let file = FILE.get_or_init(|| {
        let instance = ctx
            .identity()
            .map(|i| i.instance.clone())
            .unwrap_or_else(|| "unknown".into());
        let path = dir().join(format!("{instance}.log"));
        Mutex::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display())),
        )
    });
    let mut file = file.lock().unwrap_or_else(|e| e.into_inner());
    file.write_all(format!("{line}\n").as_bytes())
        .expect("the probe log is writable");
}

/// Handles events for the end-to-end tests.
#[weft::service(name = "events_probe")]
impl EventsProbe {
    /// Pool mode: each event on one instance.
    #[event_handler(topic = "e2e.pool")]
    async fn pooled(&self, ctx: &Context, job: Job) {
        tokio::time::sleep(Duration::from_millis(job.ms)).await;
        record(ctx, format!("pooled {} {}", job.tag, job.n));
    }

    /// Broadcast mode: each event on every instance.
    #[event_handler(topic = "e2e.broadcast", mode = "broadcast")]
    async fn everywhere(&self, ctx: &Context, job: Job) {
        record(ctx, format!("everywhere {} {}", job.tag, job.n));
    }

    /// Per-key order, with a pseudo-random delay.
    #[event_handler(topic = "e2e.ordered", ordered_by = "key")]
    async fn ordered(&self, ctx: &Context, job: Job) {
        let start = now_us();
        let jitter = if job.ms == 0 {
            0
        } else {
            u64::from(
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.subsec_nanos())
                    .unwrap_or(0),
            ) % (job.ms + 1)
        };
        tokio::time::sleep(Duration::from_millis(jitter)).await;
        let end = now_us();
        record(
            ctx,
            format!("ordered {} {} {} {start} {end}", job.tag, job.n, job.key),
        );
    }

    /// Fails while `fail` is set and the fix file does not exist.
    #[event_handler(topic = "e2e.dead", max_attempts = 2)]
    async fn flaky(&self, ctx: &Context, job: Job) -> weft::Result<()> {
        if job.fail && !dir().join("fixed").exists() {
            // The attempt in the key's place: the host counts them.
            let attempt = ctx.event().map_or(0, |e| e.attempt);
            record(ctx, format!("failed {} {} {attempt}", job.tag, job.n));
            return Err(weft::Error::internal("the probe fails until it is fixed"));
        }
        record(ctx, format!("flaky {} {}", job.tag, job.n));
        Ok(())
    }
}

/// One line of an instance's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Line {
    pub(crate) instance: String,
    pub(crate) handler: String,
    pub(crate) tag: String,
    pub(crate) n: u64,
    /// For `ordered`: key, start and end (µs since the epoch).
    pub(crate) key: String,
    pub(crate) start_us: u128,
    pub(crate) end_us: u128,
}

/// Every line every instance wrote under `dir`.
pub(crate) fn lines(dir: &Path) -> Vec<Line> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(instance) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".log"))
        else {
            continue;
        };
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        // A line cut short by a SIGKILL has no newline; skip it.
        for raw in text.split_inclusive('\n').filter(|l| l.ends_with('\n')) {
            let f: Vec<&str> = raw.split_whitespace().collect();
            let (Some(handler), Some(tag), Some(n)) = (f.first(), f.get(1), f.get(2)) else {
                continue;
            };
            out.push(Line {
                instance: instance.to_owned(),
                handler: (*handler).to_owned(),
                tag: (*tag).to_owned(),
                n: n.parse().unwrap_or(u64::MAX),
                key: f.get(3).map(|s| (*s).to_owned()).unwrap_or_default(),
                start_us: f.get(4).and_then(|s| s.parse().ok()).unwrap_or(0),
                end_us: f.get(5).and_then(|s| s.parse().ok()).unwrap_or(0),
            });
        }
    }
    out
}

/// The distinct `n` handled by `handler` for `tag`, per instance.
pub(crate) fn handled(dir: &Path, handler: &str, tag: &str) -> BTreeMap<String, HashSet<u64>> {
    let mut per: BTreeMap<String, HashSet<u64>> = BTreeMap::new();
    for l in lines(dir) {
        if l.handler == handler && l.tag == tag {
            per.entry(l.instance).or_default().insert(l.n);
        }
    }
    per
}

/// The distinct `n` handled by `handler` for `tag` on any instance.
pub(crate) fn handled_anywhere(dir: &Path, handler: &str, tag: &str) -> HashSet<u64> {
    handled(dir, handler, tag).into_values().flatten().collect()
}

/// Starts instance `instance` of the probe against `host`, logging to `dir`.
pub(crate) fn start(host: &HostProcess, instance: &str, dir: &Path) -> ServiceProcess {
    let mut cmd = test_service_command(SERVICE);
    cmd.env(DIR_ENV, dir);
    ServiceProcess::start(host.address(), instance, cmd)
}

/// Starts instance `instance` of the probe inside `netns`, listening on its
/// address, against `host`, logging to `dir`.
pub(crate) fn start_in(
    netns: &weft_test_support::Netns,
    host: &HostProcess,
    instance: &str,
    dir: &Path,
) -> ServiceProcess {
    let mut cmd = test_service_command(SERVICE);
    cmd.env(DIR_ENV, dir)
        .env("WEFT_LISTEN", format!("{}:0", netns.addr()));
    ServiceProcess::start(host.address(), instance, netns.command(&cmd))
}
