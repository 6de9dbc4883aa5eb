//! `probe`: a service that exists only for the end-to-end tests. It reports
//! who it is, what deadline it got, whether its handlers finished or were
//! cancelled, and fails or blocks on request.
//!
//! It runs as a separate process: this test binary run again (see
//! [`crate::probe`]).

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use weft::prelude::*;

/// The probe service.
#[derive(Debug, Default)]
pub(crate) struct Probe;

/// Who answered a call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub(crate) struct WhoAmI {
    pub(crate) service: String,
    pub(crate) version: String,
    pub(crate) instance: String,
}

/// What became of the `sleep` calls with one tag, in this process.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
pub(crate) struct Stats {
    pub(crate) started: u32,
    pub(crate) finished: u32,
    pub(crate) cancelled: u32,
}

/// The error `fail` returns; callers see the variant name as the kind.
#[derive(Debug, Serialize)]
pub(crate) enum ProbeError {
    Boom,
    OutOfDice { left: u32 },
}

impl std::fmt::Display for ProbeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProbeError::Boom => f.write_str("the probe blew up as asked"),
            ProbeError::OutOfDice { left } => write!(f, "only {left} dice left"),
        }
    }
}

fn registry() -> &'static Mutex<HashMap<String, Stats>> {
    static STATS: OnceLock<Mutex<HashMap<String, Stats>>> = OnceLock::new();
    STATS.get_or_init(Mutex::default)
}

fn record(tag: &str, f: impl FnOnce(&mut Stats)) {
    let mut stats = registry().lock().unwrap_or_else(|e| e.into_inner());
    f(stats.entry(tag.to_owned()).or_default());
}

/// Counts a `sleep` as cancelled when its future is dropped before it finished.
struct SleepGuard {
    tag: String,
    finished: bool,
}

impl Drop for SleepGuard {
    fn drop(&mut self) {
        let finished = self.finished;
        record(&self.tag, |s| {
            if finished {
                s.finished += 1;
            } else {
                s.cancelled += 1;
            }
        });
    }
}

/// The milliseconds left until the context's deadline.
fn budget_ms(ctx: &Context) -> Option<u64> {
    ctx.deadline().map(|d| {
        d.saturating_duration_since(tokio::time::Instant::now())
            .as_millis() as u64
    })
}

/// A probe for end-to-end tests.
#[weft::service(name = "probe")]
impl Probe {
    /// The identity of the instance that answers.
    #[entrypoint]
    async fn whoami(&self, ctx: &Context) -> weft::Result<WhoAmI> {
        let id = ctx
            .identity()
            .ok_or_else(|| weft::Error::internal("a served call has no identity"))?;
        Ok(WhoAmI {
            service: id.service.clone(),
            version: id.version.clone(),
            instance: id.instance.clone(),
        })
    }

    /// Sleeps `ms`, then says who answered: safe to run twice.
    #[entrypoint(idempotent)]
    async fn nap(&self, ctx: &Context, ms: u64) -> weft::Result<WhoAmI> {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        self.whoami(ctx).await
    }

    /// Sleeps `ms`, then says who answered; at most two at once on an
    /// instance, two waiting.
    #[entrypoint(max_concurrency = 2, queue = 2)]
    async fn narrow(&self, ctx: &Context, ms: u64) -> weft::Result<WhoAmI> {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        self.whoami(ctx).await
    }

    /// Sleeps `ms` on the instance `slow` and not on the others, then says
    /// who answered; `stats(tag)` tells whether the sleep finished.
    #[entrypoint(idempotent)]
    async fn slow_on(
        &self,
        ctx: &Context,
        slow: String,
        ms: u64,
        tag: String,
    ) -> weft::Result<WhoAmI> {
        let me = self.whoami(ctx).await?;
        if me.instance == slow {
            self.sleep(ms, tag).await;
        }
        Ok(me)
    }

    /// Returns its argument.
    #[entrypoint]
    async fn echo(&self, data: String) -> String {
        data
    }

    /// Returns a string of `len` bytes.
    #[entrypoint]
    async fn big(&self, len: u64) -> String {
        "x".repeat(len as usize)
    }

    /// Sleeps without blocking; `stats(tag)` tells whether it finished.
    #[entrypoint]
    async fn sleep(&self, ms: u64, tag: String) {
        record(&tag, |s| s.started += 1);
        let mut guard = SleepGuard {
            tag,
            finished: false,
        };
        tokio::time::sleep(Duration::from_millis(ms)).await;
        guard.finished = true;
    }

    /// What became of the `sleep` calls tagged `tag` in this process.
    #[entrypoint]
    async fn stats(&self, tag: String) -> Stats {
        registry()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&tag)
            .copied()
            .unwrap_or_default()
    }

    /// Blocks its runtime thread: a handler that never yields.
    #[entrypoint]
    async fn block(&self, ms: u64) {
        std::thread::sleep(Duration::from_millis(ms));
    }

    /// The milliseconds left of the call's deadline.
    #[entrypoint]
    async fn budget(&self, ctx: &Context) -> Option<u64> {
        budget_ms(ctx)
    }

    /// Calls `probe.budget` through the context and returns what it saw.
    #[entrypoint]
    async fn relay_budget(&self, ctx: &Context) -> weft::Result<Option<u64>> {
        ctx.call("probe", "budget", ()).await
    }

    /// Calls `probe.whoami` through the context: who relayed, and who
    /// answered.
    #[entrypoint]
    async fn relay_whoami(&self, ctx: &Context) -> weft::Result<(WhoAmI, WhoAmI)> {
        let me = self.whoami(ctx).await?;
        let them: WhoAmI = ctx.call("probe", "whoami", ()).await?;
        Ok((me, them))
    }

    /// Calls `probe.sleep` through the context.
    #[entrypoint]
    async fn relay_sleep(&self, ctx: &Context, ms: u64, tag: String) -> weft::Result<()> {
        ctx.call(
            "probe",
            "sleep",
            serde_json::json!({ "ms": ms, "tag": tag }),
        )
        .await
    }

    /// Fails with the `ProbeError` named by `kind` (`boom`, `out_of_dice`).
    #[entrypoint]
    async fn fail(&self, kind: String) -> Result<(), ProbeError> {
        match kind.as_str() {
            "out_of_dice" => Err(ProbeError::OutOfDice { left: 0 }),
            _ => Err(ProbeError::Boom),
        }
    }

    /// Sends a notification as this instance.
    #[entrypoint]
    async fn notify(&self, ctx: &Context, msg: String) -> weft::Result<()> {
        ctx.notify(Severity::Warning, msg).await
    }
}
