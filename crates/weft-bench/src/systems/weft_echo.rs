//! weft: a host process and an `echo` service process, called with
//! `weft::Client` exactly as a user's program would. The host is off the
//! hot path once the client's registry cache knows the echo instance. The
//! echo service listens on TCP or on a Unix socket; the host always on TCP,
//! where it also serves the HTTP gateway (see `http.rs`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, ensure};
use serde::Serialize;

use crate::measure::Flavour;
use crate::process::{ServerProcess, announce, resolve_listen};

/// How long the echo service may take to become callable through the host.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// How often readiness is retried within [`READY_TIMEOUT`].
const READY_RETRY: Duration = Duration::from_millis(20);

mod echo {
    /// Answers with what it is given.
    #[derive(Debug, Default)]
    pub(crate) struct Echo;

    #[weft::service(name = "echo")]
    impl Echo {
        /// Returns `data` unchanged.
        #[entrypoint]
        async fn echo(&self, data: String) -> String {
            data
        }
    }
}

/// The arguments of `echo.echo`, borrowed so that a call does not copy the
/// payload before encoding it.
#[derive(Serialize)]
struct EchoArgs<'a> {
    data: &'a str,
}

/// The host and echo service processes, and the host's data dir.
#[derive(Debug)]
pub(crate) struct Server {
    // Fields drop in order: the processes are killed before their data dir
    // is removed.
    echo: ServerProcess,
    host: ServerProcess,
    _data_dir: tempfile::TempDir,
}

/// Starts a `__serve host` process with its data dir in a new temp dir named
/// `prefix...`, which is removed when dropped (drop it after the process).
pub(crate) async fn start_host(
    flavour: Flavour,
    prefix: &str,
) -> anyhow::Result<(tempfile::TempDir, ServerProcess)> {
    let data_dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .context("cannot create a data dir for the host")?;
    let dir = data_dir
        .path()
        .to_str()
        .context("the temp dir's path is not UTF-8")?;
    let host = ServerProcess::start(
        "host",
        flavour,
        &["--listen", "127.0.0.1:0", "--data-dir", dir],
    )
    .await?;
    Ok((data_dir, host))
}

impl Server {
    /// Starts a host and an echo service whose instance listens on TCP, or
    /// on a Unix socket in the host's data dir.
    pub(crate) async fn start(flavour: Flavour, unix: bool) -> anyhow::Result<Server> {
        let (data_dir, host) = start_host(flavour, "weft-bench-host-").await?;
        let listen = if unix {
            format!("unix://{}/echo.sock", data_dir.path().display())
        } else {
            "127.0.0.1:0".to_owned()
        };
        let echo = ServerProcess::start(
            "weft-echo",
            flavour,
            &["--host", host.address(), "--listen", &listen],
        )
        .await?;
        let server = Server {
            echo,
            host,
            _data_dir: data_dir,
        };
        server.wait_ready().await?;
        Ok(server)
    }

    /// Waits until a call to `echo.echo` through the host succeeds: the echo
    /// instance has registered and the client has learned of it.
    async fn wait_ready(&self) -> anyhow::Result<()> {
        wait_callable(self.host.address(), || self.check_alive()).await
    }

    pub(crate) fn check_alive(&self) -> anyhow::Result<()> {
        self.host.check_alive()?;
        self.echo.check_alive()
    }

    pub(crate) fn pids(&self) -> Vec<u32> {
        vec![self.host.pid(), self.echo.pid()]
    }

    /// The host's address, where its HTTP gateway also listens.
    pub(crate) fn host_address(&self) -> &str {
        self.host.address()
    }

    /// `n` callers sharing one `weft::Client`, hence one multiplexed
    /// connection to the echo instance.
    pub(crate) async fn callers(&self, n: usize, payload: &[u8]) -> anyhow::Result<Vec<Caller>> {
        callers(self.host.address(), n, payload).await
    }
}

/// The spec of the `echo` service, as its instances register it.
pub(crate) fn echo_spec() -> weft::ServiceSpec {
    <echo::Echo as weft::Service>::spec()
}

/// `n` callers of `echo.echo` sharing one `weft::Client` of the host at
/// `host`.
pub(crate) async fn callers(host: &str, n: usize, payload: &[u8]) -> anyhow::Result<Vec<Caller>> {
    let payload: Arc<str> = std::str::from_utf8(payload)
        .context("weft echoes a String: the payload must be UTF-8")?
        .into();
    let client = weft::Client::connect(host)
        .await
        .with_context(|| format!("cannot connect to the weft host at {host}"))?;
    Ok((0..n)
        .map(|_| Caller {
            client: client.clone(),
            payload: payload.clone(),
        })
        .collect())
}

/// Waits until a call to `echo.echo` through the host at `host` succeeds:
/// an echo instance has registered and the host's registry, hence the
/// client, knows it. `check_alive` fails when a process it depends on has
/// exited, so that a crash ends the wait at once.
pub(crate) async fn wait_callable(
    host: &str,
    check_alive: impl Fn() -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + READY_TIMEOUT;
    let client = weft::Client::connect(host)
        .await
        .with_context(|| format!("cannot connect to the weft host at {host}"))?;
    let max_tries = READY_TIMEOUT.as_millis() / READY_RETRY.as_millis();
    let mut last = None;
    for _ in 0..max_tries {
        check_alive()?;
        match client
            .call::<_, String>("echo", "echo", EchoArgs { data: "ready" })
            .await
        {
            Ok(reply) if reply == "ready" => return Ok(()),
            Ok(reply) => {
                return Err(anyhow!("the echo service answered {reply:?} to \"ready\""));
            }
            Err(e) => last = Some(e),
        }
        if Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(READY_RETRY).await;
    }
    Err(anyhow!(
        "the echo service did not become callable through the host at {host} within {}s; last error: {}",
        READY_TIMEOUT.as_secs(),
        last.map_or_else(|| "none".to_owned(), |e| e.to_string())
    ))
}

/// One task's handle on the shared client.
#[derive(Debug)]
pub(crate) struct Caller {
    client: weft::Client,
    payload: Arc<str>,
}

impl Caller {
    pub(crate) async fn call(&mut self) -> anyhow::Result<()> {
        let reply: String = self
            .client
            .call(
                "echo",
                "echo",
                EchoArgs {
                    data: &self.payload,
                },
            )
            .await?;
        ensure!(
            *reply == *self.payload,
            "the echo service answered other data"
        );
        Ok(())
    }
}

/// `__serve host`: a weft host on `listen` with its state in `data_dir`.
pub(crate) async fn serve_host(listen: &str, data_dir: PathBuf) -> anyhow::Result<()> {
    let config = weft_host::HostConfig::new(listen.parse()?, data_dir);
    let host = weft_host::Host::bind(config).await?;
    announce(&host.local_address().to_string())?;
    host.run(std::future::pending()).await?;
    Ok(())
}

/// `__serve weft-echo`: the echo service, registered with `host`.
pub(crate) async fn serve_echo(host: &str, listen: &str) -> anyhow::Result<()> {
    let listen = resolve_listen(listen)?;
    announce(&listen)?;
    weft::Server::from_env(echo::Echo)?
        .host(host.parse()?)
        .listen(listen.parse()?)
        .run()
        .await?;
    Ok(())
}
