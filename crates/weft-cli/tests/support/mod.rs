//! Real processes for the end-to-end tests: a `weft host` child on
//! 127.0.0.1:0, services as child processes, the `weft` CLI, and bounded
//! waits for what the tests need to see. Every child is killed on drop.

// Each test file uses a different part of this module.
#![allow(dead_code)]

pub(crate) mod probe;

use std::future::Future;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use weft::{Client, ServiceSummary};

/// The `weft` binary under test.
pub(crate) const WEFT: &str = env!("CARGO_BIN_EXE_weft");

/// How long any wait for a process or the mesh may take before the test fails.
pub(crate) const PATIENCE: Duration = Duration::from_secs(30);

/// How often bounded polling loops look again.
pub(crate) const POLL: Duration = Duration::from_millis(100);

/// The log filter of the processes tests start: `WEFT_TEST_LOG` when set
/// (for example `weft=debug,weft_host=debug` to see a failing test's
/// story), `warn` otherwise.
pub(crate) fn test_log() -> String {
    std::env::var("WEFT_TEST_LOG").unwrap_or_else(|_| "warn".to_owned())
}

/// Environment variables that would leak the developer's setup into a child.
const WEFT_ENV: [&str; 4] = ["WEFT_HOST", "WEFT_LISTEN", "WEFT_VERSION", "WEFT_INSTANCE"];

/// A child process, killed (SIGKILL) and reaped on drop.
#[derive(Debug)]
pub(crate) struct Proc {
    name: String,
    child: Child,
}

impl Proc {
    fn spawn(name: impl Into<String>, cmd: &mut Command) -> Proc {
        let name = name.into();
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Proc { name, child }
    }

    pub(crate) fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    /// Sends `signal` to the process.
    pub(crate) fn signal(&self, signal: Signal) {
        kill(self.pid(), signal)
            .unwrap_or_else(|e| panic!("cannot send {signal} to {}: {e}", self.name));
    }

    /// SIGKILLs the process and reaps it.
    pub(crate) async fn kill9(&mut self) -> ExitStatus {
        self.signal(Signal::SIGKILL);
        self.wait_exit().await
    }

    /// Waits (bounded) until the process exits.
    pub(crate) async fn wait_exit(&mut self) -> ExitStatus {
        let start = Instant::now();
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return status,
                Ok(None) => {}
                Err(e) => panic!("cannot wait for {}: {e}", self.name),
            }
            assert!(
                start.elapsed() < PATIENCE,
                "{} did not exit within {PATIENCE:?}",
                self.name
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `weft host` child process.
#[derive(Debug)]
pub(crate) struct Host {
    pub(crate) proc: Proc,
    /// `tcp://127.0.0.1:PORT`, as the host printed it.
    pub(crate) address: String,
    pub(crate) data_dir: PathBuf,
    /// The data dir, when the host owns it.
    _dir: Option<tempfile::TempDir>,
}

impl Host {
    /// A host on 127.0.0.1:0 with a data dir of its own.
    pub(crate) fn start() -> Host {
        Host::start_with(&[])
    }

    /// A host on 127.0.0.1:0 with a data dir of its own and extra `weft host` flags.
    pub(crate) fn start_with(extra: &[&str]) -> Host {
        let dir = tempfile::tempdir().expect("a temporary data dir");
        let mut host = Host::start_at("127.0.0.1:0", dir.path(), extra);
        host._dir = Some(dir);
        host
    }

    /// A host on `listen` with the data dir `data_dir` (kept by the caller,
    /// so that a restarted host finds it again).
    pub(crate) fn start_at(listen: &str, data_dir: &Path, extra: &[&str]) -> Host {
        let mut cmd = Command::new(WEFT);
        cmd.args(["host", "--listen", listen, "--data-dir"])
            .arg(data_dir)
            .args(extra)
            .env("RUST_LOG", test_log())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for k in WEFT_ENV {
            cmd.env_remove(k);
        }
        let mut proc = Proc::spawn("weft host", &mut cmd);
        let stdout = proc.child.stdout.take().expect("piped stdout");
        // The first line says where the host listens; read it on a thread
        // so that a host that never prints it fails the test in bounded time.
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let read = reader.read_line(&mut line).map(|_| line);
            let _ = tx.send(read);
            // Keep draining so that the host never writes into a closed pipe.
            let _ = std::io::copy(&mut reader, &mut std::io::sink());
        });
        let line = match rx.recv_timeout(PATIENCE) {
            Ok(Ok(line)) => line,
            Ok(Err(e)) => panic!("cannot read the first line of weft host: {e}"),
            Err(_) => panic!("weft host printed no first line within {PATIENCE:?}"),
        };
        let tail = format!(" (data dir {})\n", data_dir.display());
        let address = line
            .strip_prefix("weft host listening on ")
            .and_then(|rest| rest.strip_suffix(&tail))
            .unwrap_or_else(|| {
                panic!("weft host's first line is {line:?}; did it fail to start? (see its stderr)")
            })
            .to_owned();
        assert!(address.starts_with("tcp://127.0.0.1:"), "{address}");
        Host {
            proc,
            address,
            data_dir: data_dir.to_owned(),
            _dir: None,
        }
    }

    /// `127.0.0.1:PORT`, for listening on the same port again.
    pub(crate) fn socket(&self) -> &str {
        self.address.trim_start_matches("tcp://")
    }

    /// A client of this host.
    pub(crate) async fn client(&self) -> Client {
        tokio::time::timeout(PATIENCE, Client::connect(&self.address))
            .await
            .unwrap_or_else(|_| panic!("connecting to {} took over {PATIENCE:?}", self.address))
            .unwrap_or_else(|e| panic!("cannot connect to {}: {e}", self.address))
    }

    /// Runs the `weft` CLI against this host.
    pub(crate) async fn weft(&self, args: &[&str]) -> Output {
        weft_at(&self.address, args).await
    }
}

/// Runs the `weft` CLI with `WEFT_HOST=host`, bounded by [`PATIENCE`].
pub(crate) async fn weft_at(host: &str, args: &[&str]) -> Output {
    let mut cmd = tokio::process::Command::new(WEFT);
    cmd.args(args)
        .env("WEFT_HOST", host)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    tokio::time::timeout(PATIENCE, cmd.output())
        .await
        .unwrap_or_else(|_| {
            panic!(
                "`weft {}` did not finish within {PATIENCE:?}",
                args.join(" ")
            )
        })
        .expect("weft runs")
}

/// A service process registered (or registering) with a host.
#[derive(Debug)]
pub(crate) struct Service {
    pub(crate) proc: Proc,
    pub(crate) instance: String,
}

impl Service {
    /// One of the tutorial's services (`die_roller`, `yatzee`) as `weft demo --serve`.
    pub(crate) fn tutorial(host: &Host, name: &str) -> Service {
        let mut cmd = Command::new(WEFT);
        cmd.args(["demo", "--serve", name]);
        Service::start(host, name, &format!("{name}-1"), cmd, &[])
    }

    /// A probe instance of `version` with the id `instance`.
    pub(crate) fn probe(host: &Host, version: &str, instance: &str) -> Service {
        Service::probe_with(host, version, instance, &[])
    }

    /// A probe instance with more environment (`WEFT_LISTEN`, ...).
    pub(crate) fn probe_with(
        host: &Host,
        version: &str,
        instance: &str,
        env: &[(&str, &str)],
    ) -> Service {
        let exe = std::env::current_exe().expect("the test binary's path");
        let mut cmd = Command::new(exe);
        cmd.args(["--exact", probe::NODE_TEST, "--ignored", "--nocapture"])
            .env(probe::NODE_ENV, "1");
        let mut env = env.to_vec();
        env.push(("WEFT_VERSION", version));
        Service::start(host, "probe", instance, cmd, &env)
    }

    fn start(
        host: &Host,
        name: &str,
        instance: &str,
        mut cmd: Command,
        env: &[(&str, &str)],
    ) -> Service {
        for k in WEFT_ENV {
            cmd.env_remove(k);
        }
        cmd.env("WEFT_HOST", &host.address)
            .env("WEFT_INSTANCE", instance)
            .envs(env.iter().copied())
            .env("RUST_LOG", test_log())
            .stdin(Stdio::null())
            // The test harness of a probe process reports on stdout.
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        Service {
            proc: Proc::spawn(format!("{name} {instance}"), &mut cmd),
            instance: instance.to_owned(),
        }
    }
}

/// Instances of `service` (of `version`, or of all versions) in a listing.
pub(crate) fn instances(
    services: &[ServiceSummary],
    service: &str,
    version: Option<&str>,
) -> usize {
    services
        .iter()
        .filter(|s| s.name == service)
        .flat_map(|s| &s.versions)
        .filter(|v| version.is_none_or(|want| v.version.to_string() == want))
        .map(|v| v.instances)
        .sum()
}

/// Polls `client.services()` until `ready` holds for the listing; panics
/// with `what` and the last listing after [`PATIENCE`].
pub(crate) async fn wait_services(
    client: &Client,
    what: &str,
    ready: impl Fn(&[ServiceSummary]) -> bool,
) -> Vec<ServiceSummary> {
    let start = Instant::now();
    let mut last = None;
    for _ in 0..rounds() {
        match client.services().await {
            Ok(list) if ready(&list) => return list,
            other => last = Some(other),
        }
        if start.elapsed() >= PATIENCE {
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    panic!("{what}: not seen within {PATIENCE:?}; last listing: {last:?}")
}

/// Waits until the host lists `count` instances of `service` (of `version`).
pub(crate) async fn wait_instances(
    client: &Client,
    service: &str,
    version: Option<&str>,
    count: usize,
) {
    let what = format!(
        "{count} instance(s) of {service} {}",
        version.unwrap_or("(any version)")
    );
    wait_services(client, &what, |list| {
        instances(list, service, version) == count
    })
    .await;
}

/// How many times a polling loop may look within [`PATIENCE`].
pub(crate) fn rounds() -> usize {
    (PATIENCE.as_millis() / POLL.as_millis()) as usize + 1
}

/// Calls `check` every [`POLL`] until it returns `Some`, for at most
/// [`PATIENCE`]; panics naming `what` if it never does.
pub(crate) async fn poll<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    for _ in 0..rounds() {
        if let Ok(Some(v)) = tokio::time::timeout(PATIENCE, check()).await {
            return v;
        }
        if start.elapsed() >= PATIENCE {
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    panic!("{what}: not seen within {PATIENCE:?}")
}

/// Text of a process's output.
pub(crate) fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
