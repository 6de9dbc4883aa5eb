//! NATS request-reply: a `nats-server` process, and a responder process
//! subscribed to `echo` that publishes every request's payload to its reply
//! subject. Concurrent callers share one `async_nats::Client` (one
//! connection), as NATS users do. Measured only where `nats-server` is
//! installed (`apt-get install nats-server`; or set `WEFT_BENCH_NATS_SERVER`
//! to its path).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, ensure};
use bytes::Bytes;
use futures::StreamExt as _;

use crate::measure::Flavour;
use crate::process::{ServerProcess, announce};

/// The subject the responder answers on.
const SUBJECT: &str = "echo";

/// How long nats-server may take to accept connections.
const NATS_START: Duration = Duration::from_secs(10);

/// The `nats-server` executable: `$WEFT_BENCH_NATS_SERVER`, or the first
/// `nats-server` on `PATH`.
pub(crate) fn find_server() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("WEFT_BENCH_NATS_SERVER") {
        return Some(PathBuf::from(path)).filter(|p| p.is_file());
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join("nats-server"))
        .find(|p| p.is_file())
}

/// The responder process, which runs nats-server as its own child.
#[derive(Debug)]
pub(crate) struct Server {
    process: ServerProcess,
    /// Where nats-server listens.
    address: String,
    nats_pid: u32,
}

impl Server {
    pub(crate) async fn start(flavour: Flavour, nats_server: &Path) -> anyhow::Result<Server> {
        let path = nats_server
            .to_str()
            .context("the nats-server path is not UTF-8")?;
        let process = ServerProcess::start("nats-echo", flavour, &["--nats-server", path]).await?;
        let (address, pid) = process
            .address()
            .split_once(' ')
            .context("the responder printed no nats-server pid")?;
        let server = Server {
            address: address.to_owned(),
            nats_pid: pid.parse()?,
            process,
        };
        server
            .callers(1, b"ready")
            .await?
            .pop()
            .context("no caller")?
            .call()
            .await
            .context("the NATS responder does not answer")?;
        Ok(server)
    }

    pub(crate) fn check_alive(&self) -> anyhow::Result<()> {
        self.process.check_alive()
    }

    pub(crate) fn pids(&self) -> Vec<u32> {
        vec![self.process.pid(), self.nats_pid]
    }

    /// `n` callers sharing one client.
    pub(crate) async fn callers(&self, n: usize, payload: &[u8]) -> anyhow::Result<Vec<Caller>> {
        let client = async_nats::connect(&self.address)
            .await
            .with_context(|| format!("cannot connect to nats-server at {}", self.address))?;
        let payload = Bytes::copy_from_slice(payload);
        Ok((0..n)
            .map(|_| Caller {
                client: client.clone(),
                payload: payload.clone(),
            })
            .collect())
    }
}

/// One task's handle on the shared client.
#[derive(Debug)]
pub(crate) struct Caller {
    client: async_nats::Client,
    payload: Bytes,
}

impl Caller {
    pub(crate) async fn call(&mut self) -> anyhow::Result<()> {
        let reply = self.client.request(SUBJECT, self.payload.clone()).await?;
        ensure!(
            reply.payload == self.payload,
            "the NATS responder answered other data"
        );
        Ok(())
    }
}

/// `__serve nats-echo`: starts nats-server on a free loopback port, answers
/// requests on [`SUBJECT`], and prints `ADDRESS PID` of nats-server. The
/// server is stopped when this process exits, by `stop` (run by the
/// parent-watch thread) or by the guard when this function fails.
pub(crate) async fn serve(
    nats_server: &Path,
    stop: Arc<Mutex<Option<std::process::Child>>>,
) -> anyhow::Result<()> {
    // nats-server reports its port only in its log; a port probed here is
    // simpler to learn. Another process could take it in between, and the
    // start then fails with nats-server's error.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let child = Command::new(nats_server)
        .args(["-a", "127.0.0.1", "-p", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("cannot start {}", nats_server.display()))?;
    let pid = child.id();
    *stop.lock().unwrap_or_else(|p| p.into_inner()) = Some(child);
    let _guard = KillOnDrop(stop);
    let address = format!("127.0.0.1:{port}");
    let mut client = None;
    let deadline = tokio::time::Instant::now() + NATS_START;
    for _ in 0..NATS_START.as_millis() / 10 {
        match async_nats::connect(&address).await {
            Ok(c) => {
                client = Some(c);
                break;
            }
            Err(_) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(e) => return Err(e).context("nats-server does not accept connections"),
        }
    }
    let client = client.context("nats-server did not accept connections in time")?;
    let mut requests = client.subscribe(SUBJECT).await?;
    client.flush().await?;
    announce(&format!("{address} {pid}"))?;
    while let Some(request) = requests.next().await {
        if let Some(reply) = request.reply {
            client.publish(reply, request.payload).await?;
        }
    }
    anyhow::bail!("the subscription to `{SUBJECT}` ended")
}

/// Stops nats-server when the responder fails.
pub(crate) struct KillOnDrop(pub(crate) Arc<Mutex<Option<std::process::Child>>>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        kill(&self.0);
    }
}

/// Kills and reaps the child in `slot`, if any.
pub(crate) fn kill(slot: &Mutex<Option<std::process::Child>>) {
    if let Some(mut child) = slot.lock().unwrap_or_else(|p| p.into_inner()).take() {
        let _ = child.kill();
        let _ = child.wait();
    }
}
