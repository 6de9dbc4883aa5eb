//! Server processes: copies of this binary started with `__serve`, killed
//! when their handle drops.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use tokio::sync::oneshot;
use weft_test_support::Netns;

use crate::measure::Flavour;

/// How long a server may take to print its address. Generous because the
/// host opens its store first, and a loaded CI machine can be slow.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// How much of a child's stderr is kept for error messages.
const STDERR_KEEP: usize = 16 * 1024;

/// Settings a developer's shell may have that must not leak into the servers
/// (they would point the echo service at another host).
const CLEARED_ENV: [&str; 4] = ["WEFT_HOST", "WEFT_LISTEN", "WEFT_VERSION", "WEFT_INSTANCE"];

/// A running server process. Dropping it kills the process and reaps it, so
/// no server outlives the benchmark, whether it ends normally, by an error or
/// by a panic.
#[derive(Debug)]
pub(crate) struct ServerProcess {
    role: String,
    /// The first line the server printed: its bound address.
    address: String,
    child: Mutex<Child>,
    /// Held open so that the child notices (stdin EOF) when this process dies
    /// without running destructors, e.g. on SIGKILL, and exits by itself.
    stdin: Option<ChildStdin>,
    /// The start of the child's stderr, for error messages.
    stderr: Arc<Mutex<String>>,
}

impl ServerProcess {
    /// Starts `weft-bench __serve --runtime <flavour> <role> <args..>` and
    /// waits for its first line of stdout, its bound address.
    pub(crate) async fn start(
        role: &str,
        flavour: Flavour,
        args: &[&str],
    ) -> anyhow::Result<ServerProcess> {
        ServerProcess::start_in(None, role, flavour, args).await
    }

    /// [`start`](Self::start), inside the network namespace `netns` when
    /// one is given (`ip netns exec`, which execs the server, so that the
    /// child is the server itself and killing it kills the server).
    pub(crate) async fn start_in(
        netns: Option<&Netns>,
        role: &str,
        flavour: Flavour,
        args: &[&str],
    ) -> anyhow::Result<ServerProcess> {
        let exe =
            std::env::current_exe().context("cannot find this executable to start a server")?;
        let mut command = Command::new(exe);
        command
            .arg("__serve")
            .arg("--runtime")
            .arg(flavour.name())
            .arg(role)
            .args(args);
        for key in CLEARED_ENV {
            command.env_remove(key);
        }
        let mut command = match netns {
            Some(netns) => netns.command(&command),
            None => command,
        };
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .with_context(|| format!("cannot start the `{role}` server process"))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr_pipe = child.stderr.take().expect("stderr is piped");
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut process = ServerProcess {
            role: match netns {
                Some(netns) => format!("{role} ({}) in {}", flavour.name(), netns.name()),
                None => format!("{role} ({})", flavour.name()),
            },
            address: String::new(),
            child: Mutex::new(child),
            stdin,
            stderr: stderr.clone(),
        };

        std::thread::Builder::new()
            .name(format!("{role}-stderr"))
            .spawn(move || keep_stderr(stderr_pipe, &stderr))
            .context("cannot start a thread")?;
        let (first_tx, first_rx) = oneshot::channel::<String>();
        std::thread::Builder::new()
            .name(format!("{role}-stdout"))
            .spawn(move || {
                let mut reader = BufReader::new(stdout);
                let mut line = String::new();
                if matches!(reader.read_line(&mut line), Ok(n) if n > 0) {
                    let _ = first_tx.send(line.trim().to_owned());
                }
                // Drain the rest so that the child never blocks on a full pipe.
                let _ = std::io::copy(&mut reader, &mut std::io::sink());
            })
            .context("cannot start a thread")?;

        match tokio::time::timeout(STARTUP_TIMEOUT, first_rx).await {
            Ok(Ok(address)) if !address.is_empty() => {
                process.address = address;
                Ok(process)
            }
            Ok(_) => {
                // The child closed stdout without printing: give it a moment
                // to exit so that its status and stderr are complete.
                for _ in 0..50 {
                    if process.exited().is_some() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(process.failure("exited before printing its address"))
            }
            Err(_) => Err(process.failure(&format!(
                "did not print its address within {}s",
                STARTUP_TIMEOUT.as_secs()
            ))),
        }
    }

    /// The role and runtime flavour, for messages.
    pub(crate) fn role(&self) -> &str {
        &self.role
    }

    /// The address the server printed when it started.
    pub(crate) fn address(&self) -> &str {
        &self.address
    }

    /// The process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.lock().unwrap_or_else(|p| p.into_inner()).id()
    }

    /// Fails with the server's exit status and stderr if it has exited.
    pub(crate) fn check_alive(&self) -> anyhow::Result<()> {
        match self.exited() {
            None => Ok(()),
            Some(_) => Err(self.failure("exited unexpectedly")),
        }
    }

    fn exited(&self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.lock().unwrap_or_else(|p| p.into_inner());
        child.try_wait().ok().flatten()
    }

    fn failure(&self, what: &str) -> anyhow::Error {
        let status = match self.exited() {
            Some(status) => format!(" ({status})"),
            None => String::new(),
        };
        let stderr = self
            .stderr
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let stderr = stderr.trim();
        if stderr.is_empty() {
            anyhow!(
                "the `{}` server {what}{status}; it printed nothing on stderr",
                self.role
            )
        } else {
            anyhow!(
                "the `{}` server {what}{status}; its stderr:\n{stderr}",
                self.role
            )
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        // Closing stdin asks the server to exit by itself, which lets it
        // stop the processes it started in turn (nats-server); it is killed
        // if it has not exited within a second.
        drop(self.stdin.take());
        let child = self.child.get_mut().unwrap_or_else(|p| p.into_inner());
        for _ in 0..EXIT_POLLS {
            if matches!(child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(EXIT_POLL);
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// How often, and how many times, a server is checked for having exited
/// after its stdin was closed: a second in all.
const EXIT_POLL: Duration = Duration::from_millis(10);
const EXIT_POLLS: u32 = 100;

/// Keeps the first [`STDERR_KEEP`] bytes of a child's stderr and drains the rest.
fn keep_stderr(mut pipe: impl Read, keep: &Mutex<String>) {
    let mut buf = [0u8; 4096];
    loop {
        match pipe.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                let mut kept = keep.lock().unwrap_or_else(|p| p.into_inner());
                if kept.len() < STDERR_KEEP {
                    kept.push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            }
        }
    }
}

/// In a server process: exits when the benchmark process goes away (stdin
/// reaches EOF), so that no server is left running even if the benchmark
/// was killed without a chance to clean up.
/// `before_exit` runs first, to stop this process's own children.
pub(crate) fn exit_with_parent(before_exit: impl FnOnce() + Send + 'static) -> anyhow::Result<()> {
    std::thread::Builder::new()
        .name("parent-watch".into())
        .spawn(move || {
            let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
            before_exit();
            std::process::exit(0);
        })
        .context("cannot start a thread")?;
    Ok(())
}

/// In a service process: the address to serve on, with port 0 resolved to
/// a free port first, because `weft::Server::run` binds the listener itself
/// and does not report the port it got. Another process could take the
/// port in between; the benchmark then fails with this process's error
/// instead of measuring the wrong thing.
pub(crate) fn resolve_listen(listen: &str) -> anyhow::Result<String> {
    if !listen.ends_with(":0") {
        return Ok(listen.to_owned());
    }
    let probe = std::net::TcpListener::bind(listen)
        .with_context(|| format!("cannot listen on {listen}"))?;
    Ok(probe.local_addr()?.to_string())
}

/// In a server process: prints the bound address as the first line of
/// stdout, the signal the benchmark waits for.
pub(crate) fn announce(address: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{address}")
        .and_then(|()| out.flush())
        .context("cannot write to stdout")
}
