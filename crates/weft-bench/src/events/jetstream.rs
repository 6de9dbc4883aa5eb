//! NATS JetStream with file storage: a consumer process (`__serve
//! jetstream`) that starts nats-server as its own child with the
//! configuration the benchmark wrote into the store directory
//! ([`CONFIG_FILE`]: JetStream on, its store there, and `sync_interval:
//! always` for the fsync-always configuration), creates the two
//! File-storage streams, and consumes [`LATENCY_TOPIC`] with a durable pull
//! consumer (explicit acks), recording how long after its publish each
//! message arrived. Publishers use
//! `jetstream::Context::publish(..).await?.await?`: the second await is the
//! stream's acknowledgement.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use async_nats::jetstream::{self, consumer, stream};
use bytes::Bytes;
use futures::StreamExt as _;

use super::{LATENCY_TOPIC, PUBLISH_TOPIC, Received, Stamp, TakeArgs};
use crate::measure::Flavour;
use crate::process::{ServerProcess, announce};

/// The core NATS subject on which the consumer process hands over the
/// latencies it recorded.
const TAKE_SUBJECT: &str = "bench.take";

/// The nats-server configuration file in the store directory, written by
/// the benchmark: the `__serve jetstream` role takes only the store
/// directory, and the file carries the rest.
const CONFIG_FILE: &str = "nats-server.conf";

/// How long nats-server may take to accept connections.
const NATS_START: Duration = Duration::from_secs(10);

/// How long the consumer may take to receive its first message.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// How often readiness is retried within [`READY_TIMEOUT`].
const READY_RETRY: Duration = Duration::from_millis(20);

/// The consumer process, which runs nats-server as its own child, and the
/// JetStream store directory.
#[derive(Debug)]
pub(crate) struct Server {
    // Dropped first: the process stops nats-server before the store goes.
    process: ServerProcess,
    /// Where nats-server listens.
    address: String,
    nats_pid: u32,
    _store_dir: tempfile::TempDir,
}

impl Server {
    /// Starts the consumer process and its nats-server; with
    /// `sync_always`, JetStream fsyncs every write before acknowledging it
    /// (`sync_interval: always`, nats-server 2.10+).
    pub(crate) async fn start(
        flavour: Flavour,
        nats_server: &Path,
        sync_always: bool,
    ) -> anyhow::Result<Server> {
        let path = nats_server
            .to_str()
            .context("the nats-server path is not UTF-8")?;
        let store_dir = tempfile::Builder::new()
            .prefix("weft-bench-jetstream-")
            .tempdir()
            .context("cannot create a store dir for JetStream")?;
        let store = store_dir
            .path()
            .to_str()
            .context("the temp dir's path is not UTF-8")?;
        std::fs::write(
            store_dir.path().join(CONFIG_FILE),
            config(store, sync_always)?,
        )
        .context("cannot write the nats-server configuration")?;
        let process = ServerProcess::start(
            "jetstream",
            flavour,
            &["--nats-server", path, "--store-dir", store],
        )
        .await?;
        let (address, pid) = process
            .address()
            .split_once(' ')
            .context("the consumer printed no nats-server pid")?;
        let server = Server {
            address: address.to_owned(),
            nats_pid: pid.parse()?,
            process,
            _store_dir: store_dir,
        };
        server.wait_ready().await?;
        Ok(server)
    }

    async fn wait_ready(&self) -> anyhow::Result<()> {
        let (client, js) = self.connect().await?;
        js.publish(PUBLISH_TOPIC, stamp_bytes(&Stamp::new(0, 0, false, ""))?)
            .await?
            .await
            .context("JetStream does not take publishes")?;
        js.publish(LATENCY_TOPIC, stamp_bytes(&Stamp::new(0, 0, true, ""))?)
            .await?
            .await
            .context("JetStream does not take publishes")?;
        for _ in 0..READY_TIMEOUT.as_millis() / READY_RETRY.as_millis() {
            self.check_alive()?;
            if take(&client, 0, 1).await?.is_some() {
                return Ok(());
            }
            tokio::time::sleep(READY_RETRY).await;
        }
        Err(anyhow!(
            "the JetStream consumer did not receive a message within {}s",
            READY_TIMEOUT.as_secs()
        ))
    }

    pub(crate) fn check_alive(&self) -> anyhow::Result<()> {
        self.process.check_alive()
    }

    pub(crate) fn pids(&self) -> Vec<u32> {
        vec![self.process.pid(), self.nats_pid]
    }

    /// A new connection and its JetStream context.
    pub(crate) async fn connect(&self) -> anyhow::Result<(async_nats::Client, jetstream::Context)> {
        let client = async_nats::connect(&self.address)
            .await
            .with_context(|| format!("cannot connect to nats-server at {}", self.address))?;
        let js = jetstream::new(client.clone());
        Ok((client, js))
    }

    /// `n` publishers sharing one connection.
    pub(crate) async fn callers(&self, n: usize, pad: &[u8]) -> anyhow::Result<Vec<Caller>> {
        let (_, js) = self.connect().await?;
        let pad: Arc<str> = std::str::from_utf8(pad)
            .context("the pad must be UTF-8")?
            .into();
        Ok((0..n)
            .map(|_| Caller {
                js: js.clone(),
                pad: pad.clone(),
                seq: 0,
            })
            .collect())
    }
}

/// nats-server's configuration: JetStream with its store in `store_dir`
/// and, with `sync_always`, an fsync of every write before it is
/// acknowledged. Listening is set on the command line.
fn config(store_dir: &str, sync_always: bool) -> anyhow::Result<String> {
    // A JSON string is a valid quoted string of nats-server's format.
    let store_dir = serde_json::to_string(store_dir)?;
    let sync = if sync_always {
        "\n  sync_interval: always"
    } else {
        ""
    };
    Ok(format!(
        "jetstream {{\n  store_dir: {store_dir}{sync}\n}}\n"
    ))
}

/// The JSON a publisher sends: the same bytes weft's publishes carry.
pub(crate) fn stamp_bytes(stamp: &Stamp<'_>) -> anyhow::Result<Bytes> {
    Ok(serde_json::to_vec(stamp)?.into())
}

/// Asks the consumer process for `run`'s latencies.
pub(crate) async fn take(
    client: &async_nats::Client,
    run: u64,
    expected: u64,
) -> anyhow::Result<Option<Vec<u64>>> {
    let request = serde_json::to_vec(&TakeArgs { run, expected })?;
    let reply = client
        .request(TAKE_SUBJECT, request.into())
        .await
        .context("the JetStream consumer process does not answer")?;
    Ok(serde_json::from_slice(&reply.payload)?)
}

/// One publisher: publishes on [`PUBLISH_TOPIC`] and waits for the
/// stream's acknowledgement.
#[derive(Debug)]
pub(crate) struct Caller {
    js: jetstream::Context,
    pad: Arc<str>,
    seq: u64,
}

impl Caller {
    pub(crate) async fn call(&mut self) -> anyhow::Result<()> {
        self.seq += 1;
        let payload = stamp_bytes(&Stamp::new(0, self.seq, false, &self.pad))?;
        self.js.publish(PUBLISH_TOPIC, payload).await?.await?;
        Ok(())
    }
}

/// `__serve jetstream`: starts nats-server with the [`CONFIG_FILE`] in
/// `store_dir` on a free loopback port, creates a File-storage stream per
/// topic, consumes [`LATENCY_TOPIC`], answers [`TAKE_SUBJECT`], and prints
/// `ADDRESS PID` of nats-server. nats-server is stopped when this process
/// exits, by `stop` (run by the parent-watch thread) or by the guard when
/// this function fails.
pub(crate) async fn serve(
    nats_server: &Path,
    store_dir: &Path,
    stop: Arc<Mutex<Option<std::process::Child>>>,
) -> anyhow::Result<()> {
    // As in `nats_echo::serve`: a probed port, since nats-server reports
    // its port only in its log.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let config = store_dir.join(CONFIG_FILE);
    anyhow::ensure!(
        config.is_file(),
        "no {CONFIG_FILE} in {}: the benchmark writes it before starting this process",
        store_dir.display()
    );
    let child = Command::new(nats_server)
        .arg("-c")
        .arg(&config)
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
    for _ in 0..NATS_START.as_millis() / 10 {
        if let Ok(c) = async_nats::connect(&address).await {
            client = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let client = client.context("nats-server did not accept connections in time")?;
    let js = jetstream::new(client.clone());
    for (name, subject) in [("PUBLISH", PUBLISH_TOPIC), ("LATENCY", LATENCY_TOPIC)] {
        js.create_stream(stream::Config {
            name: name.to_owned(),
            subjects: vec![subject.to_owned()],
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await
        .with_context(|| format!("cannot create the JetStream stream {name}"))?;
    }
    let consumer = js
        .get_stream("LATENCY")
        .await?
        .create_consumer(consumer::pull::Config {
            durable_name: Some("latency".to_owned()),
            ack_policy: consumer::AckPolicy::Explicit,
            ..Default::default()
        })
        .await
        .context("cannot create the JetStream consumer")?;
    let mut messages = consumer.messages().await?;
    let mut takes = client.subscribe(TAKE_SUBJECT).await?;
    client.flush().await?;
    let received = Arc::new(Mutex::new(Received::default()));
    announce(&format!("{address} {pid}"))?;
    let recorder = received.clone();
    let consume = async move {
        while let Some(message) = messages.next().await {
            let message = message.map_err(|e| anyhow!("the JetStream consumer failed: {e}"))?;
            let now = super::now_ns();
            let stamp: Stamp<'_> = serde_json::from_slice(&message.payload)
                .context("a message on the latency stream is not a stamp")?;
            lock(&recorder).record(&stamp, now);
            message
                .ack()
                .await
                .map_err(|e| anyhow!("cannot acknowledge a JetStream message: {e}"))?;
        }
        anyhow::Ok(())
    };
    let answer = async {
        while let Some(request) = takes.next().await {
            let args: TakeArgs = serde_json::from_slice(&request.payload)?;
            let latencies = lock(&received).take(args.run, args.expected);
            if let Some(reply) = request.reply {
                client
                    .publish(reply, serde_json::to_vec(&latencies)?.into())
                    .await?;
            }
        }
        anyhow::Ok(())
    };
    tokio::select! {
        r = consume => r?,
        r = answer => r?,
    }
    anyhow::bail!("the JetStream consumer or its `{TAKE_SUBJECT}` subscription ended")
}

/// Stops nats-server when the consumer fails.
struct KillOnDrop(Arc<Mutex<Option<std::process::Child>>>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        crate::systems::nats_echo::kill(&self.0);
    }
}

fn lock(m: &Mutex<Received>) -> std::sync::MutexGuard<'_, Received> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
