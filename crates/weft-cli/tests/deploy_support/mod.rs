//! A `weft host` process for the deploy tests, and the `weft` CLI run as a
//! user runs it. The host is stopped with SIGTERM on drop (so that it stops
//! its instances), SIGKILLed if it does not exit in time, and any instance
//! it left behind is killed too.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// The `weft` binary under test.
pub(crate) const WEFT: &str = env!("CARGO_BIN_EXE_weft");

/// How long a process may take to start, stop, or register.
pub(crate) const PATIENCE: Duration = Duration::from_secs(60);

/// How long one build may take on a slow, shared machine.
pub(crate) const BUILD_PATIENCE: Duration = Duration::from_secs(20 * 60);

/// The target dir every deploy in the tests builds in: under the target
/// dir of the test build, so that later runs (and CI) reuse compiled
/// dependencies.
pub(crate) const DEPLOY_TARGET: &str = concat!(env!("CARGO_TARGET_TMPDIR"), "/weft-deploy");

/// A `weft host` child process.
#[derive(Debug)]
pub(crate) struct Host {
    child: Child,
    /// `127.0.0.1:PORT`.
    pub(crate) address: String,
    pub(crate) data_dir: PathBuf,
}

impl Host {
    /// Starts `weft host` on `listen` with `data_dir`.
    pub(crate) fn start(listen: &str, data_dir: &Path) -> Host {
        let mut child = Command::new(WEFT)
            .args(["host", "--listen", listen, "--data-dir"])
            .arg(data_dir)
            .env("RUST_LOG", "warn")
            .env_remove("WEFT_HOST")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("weft host starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let _ = tx.send(reader.read_line(&mut line).map(|_| line));
            let _ = std::io::copy(&mut reader, &mut std::io::sink());
        });
        let line = rx
            .recv_timeout(PATIENCE)
            .expect("weft host prints where it listens")
            .expect("weft host's stdout is readable");
        let address = line
            .strip_prefix("weft host listening on tcp://")
            .and_then(|rest| rest.split(' ').next())
            .unwrap_or_else(|| panic!("weft host's first line is {line:?}"))
            .to_owned();
        Host {
            child,
            address,
            data_dir: data_dir.to_owned(),
        }
    }

    /// SIGTERM, then waits (bounded) for the host to exit.
    pub(crate) fn stop(&mut self) {
        let pid = Pid::from_raw(self.child.id() as i32);
        let _ = kill(pid, Signal::SIGTERM);
        let start = Instant::now();
        while start.elapsed() < PATIENCE {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        panic!("weft host did not stop within {PATIENCE:?} of SIGTERM");
    }

    /// Runs the `weft` CLI against this host in `dir`.
    pub(crate) fn weft(&self, dir: &Path, args: &[&str]) -> Output {
        weft(dir, &self.address, args, None, PATIENCE)
    }

    /// `weft deploy ...`, which builds, so it may take long.
    pub(crate) fn deploy(&self, dir: &Path, args: &[&str]) -> Output {
        let mut all = vec!["deploy"];
        all.extend_from_slice(args);
        weft(dir, &self.address, &all, None, BUILD_PATIENCE)
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM);
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(20) {
                if let Ok(Some(_)) = self.child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        kill_instances_of(&self.data_dir);
    }
}

/// SIGKILLs every process started by a host with this data dir.
fn kill_instances_of(data_dir: &Path) {
    let tag = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_owned());
    let needle = format!("WEFT_SUPERVISOR={}\0", tag.display());
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        if let Ok(mut environ) = std::fs::read(entry.path().join("environ")) {
            environ.push(0);
            if environ
                .windows(needle.len())
                .any(|w| w == needle.as_bytes())
            {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
    }
}

/// Runs `weft args` in `dir` with `WEFT_HOST=host`, feeding `stdin`, and
/// kills it if it takes longer than `patience`.
pub(crate) fn weft(
    dir: &Path,
    host: &str,
    args: &[&str],
    stdin: Option<&str>,
    patience: Duration,
) -> Output {
    let mut child = Command::new(WEFT)
        .args(args)
        .current_dir(dir)
        .env("WEFT_HOST", host)
        .env("CARGO_TARGET_DIR", DEPLOY_TARGET)
        // The generated crate must build from the local cache alone.
        .env("CARGO_NET_OFFLINE", "true")
        .env_remove("WEFT_TOKEN")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("weft runs");
    if let Some(text) = stdin {
        use std::io::Write as _;
        let mut pipe = child.stdin.take().expect("piped stdin");
        pipe.write_all(text.as_bytes()).expect("weft reads stdin");
    }
    let pid = Pid::from_raw(child.id() as i32);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(patience) {
        Ok(out) => out.expect("weft's output is readable"),
        Err(_) => {
            let _ = kill(pid, Signal::SIGKILL);
            panic!(
                "`weft {}` did not finish within {patience:?}",
                args.join(" ")
            )
        }
    }
}

/// Text of a process's output.
pub(crate) fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Both outputs of a command, for assertion messages.
pub(crate) fn both(out: &Output) -> String {
    format!(
        "status {}\n--- stdout\n{}--- stderr\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    )
}

/// Calls `check` every 100 ms until it returns `Some`, for at most
/// [`PATIENCE`]; panics naming `what` otherwise.
pub(crate) fn poll<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    while start.elapsed() < PATIENCE {
        if let Some(v) = check() {
            return v;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{what}: not seen within {PATIENCE:?}")
}
