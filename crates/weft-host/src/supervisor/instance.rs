//! One instance: a child process kept running by a task of its own, which
//! restarts it with exponential backoff when it exits and stops it
//! gracefully (SIGTERM, a grace period, then SIGKILL) when told to.

use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use parking_lot::Mutex;
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use weft_core::backoff::Backoff;

use super::logs::{LogRing, pump};
use crate::time::now_ms;

/// The first restart waits this long; each crash in a row doubles it.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// The longest wait between restarts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How long a restart waits, by the number of crashes in a row.
const BACKOFF: Backoff = Backoff::new(FIRST_BACKOFF, MAX_BACKOFF);
/// An instance that ran this long before exiting was healthy: its next
/// restart starts the backoff over.
const STABLE: Duration = Duration::from_secs(30);
/// How long the output of an exited process may take to be read to its end.
const DRAIN_OUTPUT: Duration = Duration::from_secs(2);
/// Crashes in a row after which an instance counts as crash looping.
pub(crate) const CRASH_LOOP: u32 = 2;

/// Environment variables the supervisor sets itself, removed from what
/// children would inherit from the host.
const WEFT_ENV: [&str; 5] = [
    "WEFT_HOST",
    "WEFT_LISTEN",
    "WEFT_VERSION",
    "WEFT_INSTANCE",
    "WEFT_TOKEN",
];

/// Marks a child with the data dir of the host that started it, so that a
/// host restarted after a crash can find the orphans of its predecessor.
pub(crate) const SUPERVISOR_ENV: &str = "WEFT_SUPERVISOR";

/// How to start one instance.
#[derive(Debug, Clone)]
pub(crate) struct Launch {
    pub(crate) program: PathBuf,
    /// The deployment's own variables (`--env K=V`).
    pub(crate) env: Vec<(String, String)>,
    /// `WEFT_HOST`: the host's own address.
    pub(crate) host: String,
    pub(crate) version: String,
    pub(crate) supervisor: String,
    pub(crate) grace: Duration,
    pub(crate) logs: Arc<LogRing>,
    /// `WEFT_TOKEN`, when the host requires tokens.
    pub(crate) token: Option<String>,
}

/// Where an instance's process is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// The process runs (it may not have registered yet).
    Running,
    /// It exited and waits to be started again.
    Backoff,
    /// It was stopped and will not start again.
    Stopped,
}

/// What can be seen of an instance from outside.
#[derive(Debug, Clone)]
pub(crate) struct Snapshot {
    pub(crate) phase: Phase,
    pub(crate) pid: Option<u32>,
    pub(crate) started_ms: u64,
    pub(crate) restarts: u32,
    /// Exits in a row that came too soon after a start.
    pub(crate) crashes: u32,
    pub(crate) last_exit: Option<String>,
}

/// A supervised instance.
#[derive(Debug)]
pub(crate) struct Instance {
    pub(crate) id: String,
    pub(crate) launch: Launch,
    state: Mutex<Snapshot>,
    /// Counts exits, so that a deploy waiting for the instance to register
    /// learns at once when it exits instead.
    exits: watch::Sender<u64>,
    stop: watch::Sender<bool>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Instance {
    /// Starts the instance's keeper task.
    pub(crate) fn start(id: String, launch: Launch) -> Arc<Instance> {
        let instance = Arc::new(Instance {
            id,
            launch,
            state: Mutex::new(Snapshot {
                phase: Phase::Running,
                pid: None,
                started_ms: now_ms(),
                restarts: 0,
                crashes: 0,
                last_exit: None,
            }),
            exits: watch::channel(0).0,
            stop: watch::channel(false).0,
            task: Mutex::new(None),
        });
        let task = tokio::spawn(keep(instance.clone()));
        *instance.task.lock() = Some(task);
        instance
    }

    pub(crate) fn snapshot(&self) -> Snapshot {
        self.state.lock().clone()
    }

    /// A receiver that changes whenever the process exits.
    pub(crate) fn exits(&self) -> watch::Receiver<u64> {
        self.exits.subscribe()
    }

    /// Stops the process gracefully and waits until it is gone.
    pub(crate) async fn stop(&self) {
        let _ = self.stop.send(true);
        let task = self.task.lock().take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }

    /// The last `n` lines the instance wrote.
    pub(crate) fn last_lines(&self, n: usize) -> Vec<String> {
        self.launch.logs.last_of(&self.id, n)
    }

    fn say(&self, text: String) {
        tracing::info!(instance = %self.id, "{text}");
        self.launch.logs.push(&self.id, "weft", text);
    }

    fn spawn(&self) -> std::io::Result<Child> {
        let l = &self.launch;
        let mut cmd = Command::new(&l.program);
        for k in WEFT_ENV {
            cmd.env_remove(k);
        }
        cmd.env("WEFT_LISTEN", "127.0.0.1:0")
            .envs(l.env.iter().map(|(k, v)| (k, v)))
            .env("WEFT_HOST", &l.host)
            .env("WEFT_VERSION", &l.version)
            .env("WEFT_INSTANCE", &self.id)
            .env(SUPERVISOR_ENV, &l.supervisor)
            .envs(l.token.iter().map(|t| ("WEFT_TOKEN", t)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // A Ctrl-C at the host's terminal is for the host, which stops
            // its instances itself; in the host's group they would get it
            // too and be restarted while the host shuts down.
            .process_group(0)
            // If the keeper task is dropped, the process must not outlive it.
            .kill_on_drop(true);
        if let Some(dir) = l.program.parent() {
            cmd.current_dir(dir);
        }
        cmd.spawn()
    }
}

/// Describes how a process ended, for people.
pub(crate) fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt as _;
    if let Some(code) = status.code() {
        return format!("exited with status {code}");
    }
    match status.signal() {
        Some(sig) => match Signal::try_from(sig) {
            Ok(s) => format!("killed by signal {sig} ({})", s.as_str()),
            Err(_) => format!("killed by signal {sig}"),
        },
        None => format!("ended ({status})"),
    }
}

/// SIGTERM, then SIGKILL once the grace period is over.
async fn terminate(child: &mut Child, grace: Duration) -> Option<ExitStatus> {
    if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        if let Ok(status) = tokio::time::timeout(grace, child.wait()).await {
            return status.ok();
        }
        tracing::warn!(pid, ?grace, "instance did not stop in time; killing it");
    }
    let _ = child.kill().await;
    child.try_wait().ok().flatten()
}

/// The keeper: runs the process until told to stop.
async fn keep(me: Arc<Instance>) {
    let mut stop = me.stop.subscribe();
    let mut crashes = 0u32;
    loop {
        if *stop.borrow() {
            break;
        }
        let started = Instant::now();
        let reason = match me.spawn() {
            Err(e) => format!(
                "could not be started ({}: {e})",
                me.launch.program.display()
            ),
            Ok(mut child) => {
                let pid = child.id();
                {
                    let mut s = me.state.lock();
                    s.phase = Phase::Running;
                    s.pid = pid;
                    s.started_ms = now_ms();
                }
                let mut pumps = Vec::new();
                if let Some(out) = child.stdout.take() {
                    pumps.push(tokio::spawn(pump(
                        out,
                        me.launch.logs.clone(),
                        me.id.clone(),
                        "stdout",
                    )));
                }
                if let Some(err) = child.stderr.take() {
                    pumps.push(tokio::spawn(pump(
                        err,
                        me.launch.logs.clone(),
                        me.id.clone(),
                        "stderr",
                    )));
                }
                let exited = tokio::select! {
                    status = child.wait() => Some(status),
                    _ = stop.wait_for(|s| *s) => None,
                };
                let reason = match exited {
                    Some(Ok(status)) => describe(status),
                    Some(Err(e)) => format!("could not be waited for ({e})"),
                    None => {
                        let status = terminate(&mut child, me.launch.grace).await;
                        let _ =
                            tokio::time::timeout(DRAIN_OUTPUT, futures::future::join_all(pumps))
                                .await;
                        me.say(format!(
                            "stopped ({})",
                            status.map_or_else(|| "killed".to_owned(), describe)
                        ));
                        break;
                    }
                };
                // The last lines (a panic message) must be in the ring
                // before anyone hears of the exit.
                let _ = tokio::time::timeout(DRAIN_OUTPUT, futures::future::join_all(pumps)).await;
                reason
            }
        };
        if started.elapsed() >= STABLE {
            crashes = 0;
        }
        crashes += 1;
        let delay = BACKOFF.delay(crashes);
        {
            let mut s = me.state.lock();
            s.phase = Phase::Backoff;
            s.pid = None;
            s.restarts += 1;
            s.crashes = crashes;
            s.last_exit = Some(reason.clone());
        }
        me.say(format!(
            "{reason}; restarting in {:.1}s",
            delay.as_secs_f64()
        ));
        me.exits.send_modify(|n| *n += 1);
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
    }
    let mut s = me.state.lock();
    s.phase = Phase::Stopped;
    s.pid = None;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_a_limit() {
        assert_eq!(BACKOFF.delay(1), FIRST_BACKOFF);
        assert_eq!(BACKOFF.delay(2), FIRST_BACKOFF * 2);
        assert_eq!(BACKOFF.delay(4), FIRST_BACKOFF * 8);
        assert_eq!(BACKOFF.delay(40), MAX_BACKOFF);
    }

    fn launch(program: &str, dir: &std::path::Path) -> Launch {
        Launch {
            program: program.into(),
            env: vec![("GREETING".into(), "hi".into())],
            host: "tcp://127.0.0.1:1".into(),
            version: "1.0.0".into(),
            supervisor: "test".into(),
            grace: Duration::from_secs(5),
            logs: Arc::new(LogRing::new(dir.to_owned())),
            token: None,
        }
    }

    #[tokio::test]
    async fn a_crashing_process_is_restarted_and_its_output_kept() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("crash.sh");
        std::fs::write(
            &script,
            "#!/bin/sh\necho \"$GREETING $WEFT_INSTANCE $WEFT_VERSION\"\nexit 3\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let inst = Instance::start(
            "x-1.0.0-1".into(),
            launch(script.to_str().unwrap(), dir.path()),
        );
        let mut exits = inst.exits();
        for _ in 0..2 {
            tokio::time::timeout(Duration::from_secs(10), exits.changed())
                .await
                .unwrap()
                .unwrap();
        }
        let snap = inst.snapshot();
        assert!(snap.restarts >= 2, "{snap:?}");
        assert!(snap.crashes >= CRASH_LOOP, "{snap:?}");
        assert_eq!(snap.last_exit.as_deref(), Some("exited with status 3"));
        assert_eq!(inst.last_lines(1), ["hi x-1.0.0-1 1.0.0"]);
        inst.stop().await;
        assert_eq!(inst.snapshot().phase, Phase::Stopped);
        let file = std::fs::read_to_string(dir.path().join("x-1.0.0-1.log")).unwrap();
        assert!(file.contains("stdout: hi x-1.0.0-1 1.0.0"), "{file}");
    }

    #[tokio::test]
    async fn stop_terminates_gracefully() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("wait.sh");
        std::fs::write(
            &script,
            "#!/bin/sh\ntrap 'echo bye; exit 0' TERM\necho up\nwhile true; do sleep 0.05; done\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let inst = Instance::start("w-1".into(), launch(script.to_str().unwrap(), dir.path()));
        let ring = inst.launch.logs.clone();
        let (_, mut rx) = ring.tail(0);
        let first = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(first.line, "up");
        inst.stop().await;
        let lines = ring.last_of("w-1", 5);
        assert!(lines.contains(&"bye".to_owned()), "{lines:?}");
        assert_eq!(inst.snapshot().restarts, 0);
    }
}
