//! `weft host` and the `weft` CLI as child processes.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Output, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::AsyncWriteExt as _;

use crate::child::{ChildProcess, test_log};
use crate::{Http, PATIENCE, within};

/// Environment variables that would point a child at the developer's own
/// host or give it an identity of the developer's; tests set them anew.
pub(crate) const WEFT_ENV: [&str; 5] = [
    "WEFT_HOST",
    "WEFT_LISTEN",
    "WEFT_VERSION",
    "WEFT_INSTANCE",
    "WEFT_TOKEN",
];

/// `weft host` as a child process on its own data dir.
///
/// Dropping it SIGKILLs the host and every instance it started (found by
/// the `WEFT_SUPERVISOR` it gives them), so that no test leaves processes
/// behind.
///
/// ```no_run
/// # async fn example() {
/// # let weft = "weft";
/// use weft_test_support::HostProcess;
///
/// // In the CLI's tests, `weft` is `env!("CARGO_BIN_EXE_weft")`.
/// let host = HostProcess::builder(weft)
///     .args(["--lease-ttl", "600"])
///     .start()
///     .await;
/// let out = host.weft(&["ls", "--json"]).await;
/// assert!(out.status.success(), "{}", weft_test_support::both(&out));
/// # }
/// ```
#[derive(Debug)]
pub struct HostProcess {
    process: ChildProcess,
    weft: PathBuf,
    address: String,
    data_dir: PathBuf,
    /// The data dir, when the host owns it.
    _dir: Option<tempfile::TempDir>,
}

/// How to start a [`HostProcess`].
#[derive(Debug)]
pub struct HostBuilder {
    weft: PathBuf,
    listen: String,
    data_dir: Option<PathBuf>,
    args: Vec<String>,
    /// The network namespace to run in, by name.
    #[cfg(feature = "nats")]
    netns: Option<String>,
}

impl HostBuilder {
    /// Runs the host inside `netns` (listen on its address, with
    /// [`listen`](Self::listen), for other namespaces to reach it).
    #[cfg(feature = "nats")]
    pub fn netns(mut self, netns: &crate::Netns) -> Self {
        self.netns = Some(netns.name().to_owned());
        self
    }

    /// Listens on `listen` instead of 127.0.0.1:0 (to come back on the port
    /// of a host that was stopped).
    pub fn listen(mut self, listen: impl Into<String>) -> Self {
        self.listen = listen.into();
        self
    }

    /// Uses `dir` as the data dir (kept by the caller, so that a restarted
    /// host finds it again) instead of a temporary one of its own.
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
    }

    /// More `weft host` arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Starts the host and waits (bounded) until it says where it listens;
    /// panics with its output if it does not.
    pub async fn start(self) -> HostProcess {
        let (dir, data_dir) = match self.data_dir {
            Some(d) => (None, d),
            None => {
                let dir = tempfile::tempdir().expect("a temporary data dir");
                let path = dir.path().to_owned();
                (Some(dir), path)
            }
        };
        let mut cmd = std::process::Command::new(&self.weft);
        cmd.args(["host", "--listen", &self.listen, "--data-dir"])
            .arg(&data_dir)
            .args(&self.args)
            .env("RUST_LOG", test_log());
        for k in WEFT_ENV {
            cmd.env_remove(k);
        }
        #[cfg(feature = "nats")]
        if let Some(name) = &self.netns {
            cmd = crate::netns::inside(name, &cmd);
        }
        let mut process = ChildProcess::spawn("weft host", cmd);
        let prefix = "weft host listening on ";
        let line = process
            .wait_for_line("its start-up line", |l| l.starts_with(prefix))
            .await;
        let tail = format!(" (data dir {})", data_dir.display());
        let address = line
            .strip_prefix(prefix)
            .and_then(|rest| rest.strip_suffix(&tail))
            .unwrap_or_else(|| panic!("weft host's start-up line is {line:?}"))
            .to_owned();
        assert!(address.starts_with("tcp://"), "{address}");
        HostProcess {
            process,
            weft: self.weft,
            address,
            data_dir,
            _dir: dir,
        }
    }
}

impl HostProcess {
    /// How to start `weft host` from the binary at `weft` (in the CLI's
    /// tests, `env!("CARGO_BIN_EXE_weft")`): on 127.0.0.1:0 with a
    /// temporary data dir unless told otherwise.
    pub fn builder(weft: impl Into<PathBuf>) -> HostBuilder {
        HostBuilder {
            weft: weft.into(),
            listen: "127.0.0.1:0".to_owned(),
            data_dir: None,
            args: Vec::new(),
            #[cfg(feature = "nats")]
            netns: None,
        }
    }

    /// Starts `weft host` on 127.0.0.1:0 with a temporary data dir.
    pub async fn start(weft: impl Into<PathBuf>) -> HostProcess {
        HostProcess::builder(weft).start().await
    }

    /// `tcp://127.0.0.1:PORT`, as the host printed it.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// `127.0.0.1:PORT`.
    pub fn socket(&self) -> &str {
        self.address.trim_start_matches("tcp://")
    }

    /// The host's data dir.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The admin token the host wrote, when it requires tokens.
    pub fn admin_token(&self) -> Option<String> {
        std::fs::read_to_string(self.data_dir.join(weft_host::ADMIN_TOKEN_FILE))
            .ok()
            .map(|t| t.trim().to_owned())
    }

    /// The process, to signal or wait for.
    pub fn process(&mut self) -> &mut ChildProcess {
        &mut self.process
    }

    /// An HTTP client of the host, without a token.
    pub fn http(&self) -> Http {
        Http::new(self.socket())
    }

    /// A client of the host (bounded).
    pub async fn client(&self) -> weft::Client {
        within(
            &format!("a client of {}", self.address),
            weft::Client::connect(&self.address),
        )
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {}: {e}", self.address))
    }

    /// The `weft` CLI, pointed at this host.
    pub fn cli(&self) -> Weft {
        Weft::new(&self.weft).host(&self.address)
    }

    /// Runs `weft args` against this host (bounded).
    pub async fn weft(&self, args: &[&str]) -> Output {
        self.cli().run(args).await
    }

    /// SIGKILLs the host and waits until it is gone; its instances stay.
    pub async fn kill9(&mut self) -> ExitStatus {
        self.process.kill9().await
    }

    /// SIGTERMs the host and waits (bounded) until it has stopped its
    /// instances and exited.
    pub async fn stop(&mut self) -> ExitStatus {
        self.process.stop().await
    }
}

impl Drop for HostProcess {
    fn drop(&mut self) {
        let _ = self.process.child.start_kill();
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

/// The `weft` CLI run as a user runs it: a fresh process per command, with
/// none of the developer's `WEFT_*` settings, stdin closed unless given.
///
/// ```no_run
/// # async fn example() {
/// # let weft = "weft";
/// use weft_test_support::{Weft, both};
///
/// let out = Weft::new(weft)
///     .host("127.0.0.1:1")
///     .stdin("my_service\n")
///     .run(&["init"])
///     .await;
/// assert!(out.status.success(), "{}", both(&out));
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Weft {
    bin: PathBuf,
    dir: Option<PathBuf>,
    env: Vec<(String, String)>,
    unset: Vec<String>,
    stdin: Option<String>,
    patience: Duration,
}

impl Weft {
    /// The CLI at `bin`, with no host set.
    pub fn new(bin: impl Into<PathBuf>) -> Weft {
        Weft {
            bin: bin.into(),
            dir: None,
            env: Vec::new(),
            unset: Vec::new(),
            stdin: None,
            patience: PATIENCE,
        }
    }

    /// Sets `WEFT_HOST`.
    pub fn host(self, host: &str) -> Weft {
        self.env("WEFT_HOST", host)
    }

    /// Runs in `dir`.
    pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> Weft {
        self.dir = Some(dir.into());
        self
    }

    /// Sets an environment variable.
    pub fn env(mut self, key: &str, value: impl AsRef<std::ffi::OsStr>) -> Weft {
        let value = value.as_ref().to_string_lossy().into_owned();
        self.env.push((key.to_owned(), value));
        self
    }

    /// Leaves an environment variable of the test's out.
    pub fn env_remove(mut self, key: &str) -> Weft {
        self.unset.push(key.to_owned());
        self
    }

    /// Feeds `text` on stdin.
    pub fn stdin(mut self, text: impl Into<String>) -> Weft {
        self.stdin = Some(text.into());
        self
    }

    /// How long a command may take ([`PATIENCE`] unless set; a build takes
    /// longer).
    pub fn patience(mut self, patience: Duration) -> Weft {
        self.patience = patience;
        self
    }

    /// Runs `weft args` and returns its output; kills it and panics if it
    /// takes longer than its patience.
    pub async fn run(&self, args: &[&str]) -> Output {
        let mut cmd = tokio::process::Command::new(&self.bin);
        cmd.args(args);
        for k in WEFT_ENV
            .iter()
            .copied()
            .chain(self.unset.iter().map(String::as_str))
        {
            cmd.env_remove(k);
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        if let Some(dir) = &self.dir {
            cmd.current_dir(dir);
        }
        cmd.stdin(if self.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
        let command = format!("weft {}", args.join(" "));
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run `{command}`: {e}"));
        if let Some(text) = &self.stdin {
            let mut pipe = child.stdin.take().expect("piped stdin");
            pipe.write_all(text.as_bytes())
                .await
                .unwrap_or_else(|e| panic!("`{command}` does not read stdin: {e}"));
        }
        tokio::time::timeout(self.patience, child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("`{command}` did not finish within {:?}", self.patience))
            .unwrap_or_else(|e| panic!("cannot read the output of `{command}`: {e}"))
    }
}
