//! weft's events: a host process (`__serve host`, the event log in its data
//! dir) and a handler service process (`__serve weft-events-handler`) whose
//! pool-mode `#[event_handler]` on [`LATENCY_TOPIC`] records how long after
//! its publish each event arrived. Publishers use `weft::Client::publish`,
//! which answers once the host has fdatasync'd the event.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow};

use super::{LATENCY_TOPIC, PUBLISH_TOPIC, Received, Stamp, TakeArgs};
use crate::measure::Flavour;
use crate::process::{ServerProcess, announce, resolve_listen};

/// How long the handler service may take to receive its first event.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// How often readiness is retried within [`READY_TIMEOUT`].
const READY_RETRY: Duration = Duration::from_millis(20);

/// The handler service's name.
const SERVICE: &str = "bench_events";

mod handler {
    use std::sync::{Arc, Mutex};

    use super::super::{Received, Stamp};

    /// Records the arrival of every stamped event, for the benchmark to
    /// take.
    #[derive(Debug, Default)]
    pub(crate) struct BenchEvents {
        pub(crate) received: Arc<Mutex<Received>>,
    }

    #[weft::service(name = "bench_events")]
    impl BenchEvents {
        /// Records how long after its publish the event arrived.
        #[event_handler(topic = "bench.latency")]
        async fn stamped(&self, stamp: Stamp<'static>) {
            let now = super::super::now_ns();
            lock(&self.received).record(&stamp, now);
        }

        /// The latencies (ns) recorded for `run`, once at least `expected`
        /// events of it have arrived; forgets them.
        #[entrypoint]
        async fn take(&self, run: u64, expected: u64) -> Option<Vec<u64>> {
            lock(&self.received).take(run, expected)
        }
    }

    fn lock(m: &Mutex<Received>) -> std::sync::MutexGuard<'_, Received> {
        m.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The host and handler processes, and the host's data dir.
#[derive(Debug)]
pub(crate) struct Server {
    // Fields drop in order: the processes are killed before their data dir
    // is removed.
    handler: ServerProcess,
    host: ServerProcess,
    _data_dir: tempfile::TempDir,
}

impl Server {
    /// Starts a host (its event log on the machine's disk, in the temp dir)
    /// and the handler service, and waits until an event published on
    /// [`LATENCY_TOPIC`] reaches the handler.
    pub(crate) async fn start(flavour: Flavour) -> anyhow::Result<Server> {
        let (data_dir, host) =
            crate::systems::weft_echo::start_host(flavour, "weft-bench-events-").await?;
        let handler = ServerProcess::start(
            "weft-events-handler",
            flavour,
            &["--host", host.address(), "--listen", "127.0.0.1:0"],
        )
        .await?;
        let server = Server {
            handler,
            host,
            _data_dir: data_dir,
        };
        server.wait_ready().await?;
        Ok(server)
    }

    /// Publishes one event on each topic and waits until the handler has
    /// the latency topic's.
    async fn wait_ready(&self) -> anyhow::Result<()> {
        let client = self.client().await?;
        client
            .publish(PUBLISH_TOPIC, &Stamp::new(0, 0, false, ""))
            .await
            .context("the weft host does not take publishes")?;
        client
            .publish(LATENCY_TOPIC, &Stamp::new(0, 0, true, ""))
            .await
            .context("the weft host does not take publishes")?;
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut last = None;
        for _ in 0..READY_TIMEOUT.as_millis() / READY_RETRY.as_millis() {
            self.check_alive()?;
            match take(&client, 0, 1).await {
                Ok(Some(_)) => return Ok(()),
                Ok(None) => {}
                Err(e) => last = Some(e),
            }
            if Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(READY_RETRY).await;
        }
        Err(anyhow!(
            "the event handler service did not receive an event within {}s; last error: {}",
            READY_TIMEOUT.as_secs(),
            last.map_or_else(|| "none".to_owned(), |e| format!("{e:#}"))
        ))
    }

    pub(crate) fn check_alive(&self) -> anyhow::Result<()> {
        self.host.check_alive()?;
        self.handler.check_alive()
    }

    pub(crate) fn pids(&self) -> Vec<u32> {
        vec![self.host.pid(), self.handler.pid()]
    }

    /// A new client of the host (one connection, its own registry cache).
    pub(crate) async fn client(&self) -> anyhow::Result<weft::Client> {
        weft::Client::connect(self.host.address())
            .await
            .with_context(|| format!("cannot connect to the weft host at {}", self.host.address()))
    }

    /// `n` publishers sharing one `weft::Client`.
    pub(crate) async fn callers(&self, n: usize, pad: &[u8]) -> anyhow::Result<Vec<Caller>> {
        let client = self.client().await?;
        let pad: Arc<str> = std::str::from_utf8(pad)
            .context("the pad must be UTF-8")?
            .into();
        Ok((0..n)
            .map(|_| Caller {
                client: client.clone(),
                pad: pad.clone(),
                seq: 0,
            })
            .collect())
    }
}

/// Asks the handler service for `run`'s latencies.
pub(crate) async fn take(
    client: &weft::Client,
    run: u64,
    expected: u64,
) -> anyhow::Result<Option<Vec<u64>>> {
    Ok(client
        .call(SERVICE, "take", TakeArgs { run, expected })
        .await?)
}

/// One publisher: publishes on [`PUBLISH_TOPIC`] and waits until the event
/// is durable.
#[derive(Debug)]
pub(crate) struct Caller {
    client: weft::Client,
    pad: Arc<str>,
    seq: u64,
}

impl Caller {
    pub(crate) async fn call(&mut self) -> anyhow::Result<()> {
        self.seq += 1;
        self.client
            .publish(PUBLISH_TOPIC, &Stamp::new(0, self.seq, false, &self.pad))
            .await?;
        Ok(())
    }
}

/// `__serve weft-events-handler`: the handler service, registered with
/// `host`.
pub(crate) async fn serve_handler(host: &str, listen: &str) -> anyhow::Result<()> {
    let listen = resolve_listen(listen)?;
    announce(&listen)?;
    let service = handler::BenchEvents {
        received: Arc::new(Mutex::new(Received::default())),
    };
    weft::Server::from_env(service)?
        .host(host.parse()?)
        .listen(listen.parse()?)
        .run()
        .await?;
    Ok(())
}
