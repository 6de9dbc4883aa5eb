//! Child processes: any program, killed when its handle is dropped.

use std::process::{ExitStatus, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt as _, AsyncRead, BufReader};
use tokio::sync::watch;

use crate::{PATIENCE, within};

/// The log filter of the processes tests start: `WEFT_TEST_LOG` when set
/// (`weft=debug,weft_host=debug` tells a failing test's story), `warn`
/// otherwise.
pub fn test_log() -> String {
    std::env::var("WEFT_TEST_LOG").unwrap_or_else(|_| "warn".to_owned())
}

/// The text of a process's output (lossy).
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A command's status and both outputs, for assertion messages.
pub fn both(out: &Output) -> String {
    format!(
        "status {}\n--- stdout\n{}--- stderr\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    )
}

/// What a child printed so far.
#[derive(Debug, Default)]
struct Printed {
    stdout: Vec<String>,
    stderr: Vec<String>,
    stdout_closed: bool,
}

impl Printed {
    fn show(&self) -> String {
        format!(
            "--- stdout\n{}\n--- stderr\n{}",
            self.stdout.join("\n"),
            self.stderr.join("\n")
        )
    }
}

/// A child process, killed (SIGKILL) when dropped. Its stdout and stderr
/// are read as it prints them, so that it never blocks on a full pipe and
/// a failing test can show them; stderr lines are also passed on to the
/// test's stderr, prefixed with the child's name (for a chatty server,
/// see [`ChildProcess::spawn_quiet`]).
///
/// ```no_run
/// # async fn example() {
/// use weft_test_support::ChildProcess;
///
/// let mut driver = ChildProcess::spawn("chromedriver", std::process::Command::new("chromedriver"));
/// driver.wait_for_line("chromedriver to start", |l| l.contains("started successfully")).await;
/// let status = driver.kill9().await;
/// # }
/// ```
#[derive(Debug)]
pub struct ChildProcess {
    name: String,
    pub(crate) child: tokio::process::Child,
    printed: watch::Receiver<Printed>,
    /// Whether its stderr lines go on to the test's.
    echoing: Arc<AtomicBool>,
}

impl ChildProcess {
    /// Starts `cmd` with stdin closed and stdout and stderr read by the
    /// harness; `name` names it in messages.
    pub fn spawn(name: impl Into<String>, cmd: std::process::Command) -> ChildProcess {
        ChildProcess::start(name, cmd, |_| true, true)
    }

    /// Like [`ChildProcess::spawn`], but passes none of its stderr on to
    /// the test's until [`ChildProcess::echo_from_now`], and from then
    /// only the lines for which `worth` holds; every line is still kept
    /// for [`ChildProcess::output`] and for the messages of a failed wait.
    /// For chatty servers, whose start-up chatter and routine lines would
    /// bury a failing test's panic message in its output.
    pub fn spawn_quiet(
        name: impl Into<String>,
        cmd: std::process::Command,
        worth: fn(&str) -> bool,
    ) -> ChildProcess {
        ChildProcess::start(name, cmd, worth, false)
    }

    fn start(
        name: impl Into<String>,
        cmd: std::process::Command,
        worth: fn(&str) -> bool,
        echoing: bool,
    ) -> ChildProcess {
        let name = name.into();
        let mut cmd = tokio::process::Command::from(cmd);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let (tx, printed) = watch::channel(Printed::default());
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        tokio::spawn(read_lines(stdout, tx.clone(), |p, line| match line {
            Some(line) => p.stdout.push(line),
            None => p.stdout_closed = true,
        }));
        let prefix = name.clone();
        let echoing = Arc::new(AtomicBool::new(echoing));
        let echo = echoing.clone();
        tokio::spawn(read_lines(stderr, tx, move |p, line| {
            if let Some(line) = line {
                if echo.load(Ordering::Relaxed) && worth(&line) {
                    eprintln!("[{prefix}] {line}");
                }
                p.stderr.push(line);
            }
        }));
        ChildProcess {
            name,
            child,
            printed,
            echoing,
        }
    }

    /// Passes its stderr lines on to the test's from now on (those its
    /// filter keeps, for one started with [`ChildProcess::spawn_quiet`]).
    pub fn echo_from_now(&self) {
        self.echoing.store(true, Ordering::Relaxed);
    }

    /// The name it was started with.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its process id.
    pub fn pid(&self) -> Pid {
        let id = self
            .child
            .id()
            .unwrap_or_else(|| panic!("{} has exited", self.name));
        Pid::from_raw(i32::try_from(id).expect("a pid fits an i32"))
    }

    /// Sends `signal`.
    pub fn signal(&self, signal: Signal) {
        kill(self.pid(), signal)
            .unwrap_or_else(|e| panic!("cannot send {signal} to {}: {e}", self.name));
    }

    /// SIGKILLs the process and waits until it is gone.
    pub async fn kill9(&mut self) -> ExitStatus {
        let _ = self.child.start_kill();
        self.wait_exit().await
    }

    /// SIGTERMs the process and waits (bounded) until it exits.
    pub async fn stop(&mut self) -> ExitStatus {
        if self.child.id().is_some() {
            self.signal(Signal::SIGTERM);
        }
        self.wait_exit().await
    }

    /// Waits (bounded) until the process exits.
    pub async fn wait_exit(&mut self) -> ExitStatus {
        let what = format!("{} to exit", self.name);
        within(&what, self.child.wait())
            .await
            .unwrap_or_else(|e| panic!("cannot wait for {}: {e}", self.name))
    }

    /// Awaits `future` (a readiness check, usually a [`poll`](crate::poll))
    /// while the process runs; if the process exits first, panics naming
    /// `what` with its status and output, so that a server that refuses its
    /// configuration fails the test at once instead of after the patience.
    ///
    /// ```no_run
    /// # async fn example() {
    /// use weft_test_support::{ChildProcess, poll};
    ///
    /// let mut server = ChildProcess::spawn("server", std::process::Command::new("my-server"));
    /// server
    ///     .while_running("my-server to listen", poll("a connection", || async {
    ///         tokio::net::TcpStream::connect("127.0.0.1:8080").await
    ///     }))
    ///     .await;
    /// # }
    /// ```
    pub async fn while_running<F: Future>(&mut self, what: &str, future: F) -> F::Output {
        let status = tokio::select! {
            out = future => return out,
            status = self.child.wait() => status,
        };
        // Let the readers take in what it printed last.
        let mut printed = self.printed.clone();
        let _ = tokio::time::timeout(
            Duration::from_secs(2),
            printed.wait_for(|p| p.stdout_closed),
        )
        .await;
        tokio::task::yield_now().await;
        panic!(
            "{what}: {} exited first ({status:?}); its output:\n{}",
            self.name,
            self.printed.borrow().show()
        )
    }

    /// Waits (bounded) for a line on stdout for which `wanted` holds and
    /// returns it; panics with everything the process printed if none
    /// comes, or if it closes its stdout first.
    pub async fn wait_for_line(&mut self, what: &str, wanted: impl Fn(&str) -> bool) -> String {
        let mut printed = self.printed.clone();
        let seen = tokio::time::timeout(
            PATIENCE,
            printed.wait_for(|p| p.stdout.iter().any(|l| wanted(l)) || p.stdout_closed),
        )
        .await
        // The borrow would keep the readers from adding lines.
        .map(|r| r.is_ok());
        let found = self
            .printed
            .borrow()
            .stdout
            .iter()
            .find(|l| wanted(l))
            .cloned();
        if let Some(line) = found {
            return line;
        }
        let why = match seen {
            Err(_) => format!("not printed within {PATIENCE:?}"),
            Ok(_) => {
                // Its stdout closed: it exited, or is about to.
                let status = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
                format!("it closed its stdout first (exit: {status:?})")
            }
        };
        // Let the readers catch up with what it printed last.
        tokio::task::yield_now().await;
        panic!(
            "{}: {what}: {why}; its output:\n{}",
            self.name,
            self.printed.borrow().show()
        )
    }

    /// Everything the process printed so far.
    pub fn output(&self) -> String {
        self.printed.borrow().show()
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        // Reaps it when it is already gone; otherwise tokio reaps it later.
        let _ = self.child.try_wait();
    }
}

async fn read_lines(
    stream: impl AsyncRead + Unpin,
    tx: watch::Sender<Printed>,
    mut add: impl FnMut(&mut Printed, Option<String>),
) {
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        tx.send_modify(|p| add(p, Some(line)));
    }
    tx.send_modify(|p| add(p, None));
}
