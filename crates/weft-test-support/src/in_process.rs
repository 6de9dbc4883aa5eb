//! A host, and services, in the test's own process.

use std::path::Path;

use futures::StreamExt as _;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use weft::Service;
use weft_core::{Error, codec};
use weft_host::{Host, HostConfig};
use weft_host_api::wire;
use weft_registry::WatchEvent;
use weft_transport::{Address, ConnectOptions, Connection, ResponseStream};
use weft_wire::Headers;

use crate::{Http, within};

/// A host running on a task of this process until [`stop`](Self::stop)ped
/// or dropped (which aborts it).
///
/// ```no_run
/// # async fn example() {
/// use weft_test_support::RunningHost;
///
/// let dir = tempfile::tempdir().unwrap();
/// let host = RunningHost::loopback(dir.path()).await;
/// assert_eq!(host.http().get("/healthz").await.text(), "ok");
/// host.stop().await;
/// # }
/// ```
#[derive(Debug)]
pub struct RunningHost {
    address: Address,
    admin_token: Option<String>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<weft::Result<()>>>,
}

impl RunningHost {
    /// Binds a host with `config` and runs it.
    pub async fn start(config: HostConfig) -> RunningHost {
        let host = Host::bind(config).await.expect("the host binds");
        let address = host.local_address();
        let admin_token = host.admin_token_file().map(|f| {
            std::fs::read_to_string(f)
                .expect("the admin token file is readable")
                .trim()
                .to_owned()
        });
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(host.run(async move {
            let _ = rx.await;
        }));
        RunningHost {
            address,
            admin_token,
            stop: Some(tx),
            task: Some(task),
        }
    }

    /// A host on 127.0.0.1:0 with `dir` as its data dir.
    pub async fn loopback(dir: &Path) -> RunningHost {
        RunningHost::start(HostConfig::new(any_port(), dir)).await
    }

    /// Where the host listens.
    pub fn address(&self) -> &Address {
        &self.address
    }

    /// The admin token, when the host requires tokens.
    pub fn admin_token(&self) -> Option<&str> {
        self.admin_token.as_deref()
    }

    /// `127.0.0.1:PORT`, also for a host that listens on every address.
    pub fn hostport(&self) -> String {
        match &self.address {
            Address::Tcp(hp) => hp.replacen("0.0.0.0:", "127.0.0.1:", 1),
            other => panic!("the host does not listen on TCP: {other}"),
        }
    }

    /// An HTTP client of the host, without a token.
    pub fn http(&self) -> Http {
        Http::new(self.hostport())
    }

    /// A wire connection to the host, with the admin token when it has one.
    pub async fn connect(&self) -> Connection {
        self.connect_with(ConnectOptions {
            credential: self.admin_token.clone(),
            ..ConnectOptions::default()
        })
        .await
    }

    /// A wire connection with `options`.
    pub async fn connect_with(&self, options: ConnectOptions) -> Connection {
        within(
            "a connection to the host",
            Connection::connect(&self.address, &options),
        )
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {}: {e}", self.address))
    }

    /// Stops the host and waits (bounded) until it has stopped cleanly.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            within("the host to stop", task)
                .await
                .expect("the host task does not panic")
                .expect("the host stops without an error");
        }
    }

    /// Watches the host's registry.
    pub async fn watch(&self) -> Watch {
        let conn = self.connect().await;
        let payload =
            codec::encode(conn.codec(), &serde_json::json!({})).expect("an empty object encodes");
        let stream = conn.call_stream(Headers::new(wire::SERVICE, wire::WATCH), payload);
        Watch { conn, stream }
    }
}

impl Drop for RunningHost {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

fn any_port() -> Address {
    "127.0.0.1:0".parse().expect("a TCP address")
}

/// Calls `entrypoint` of the host's wire API (`weft_host_api::wire`) with
/// `args` (a JSON object of named arguments), bounded by [`PATIENCE`](crate::PATIENCE).
///
/// ```no_run
/// # async fn example(host: &weft_test_support::RunningHost) {
/// use weft_registry::ServiceSummary;
///
/// let conn = host.connect().await;
/// let services: Vec<ServiceSummary> =
///     weft_test_support::host_call(&conn, weft_host_api::wire::SERVICES, serde_json::json!({}))
///         .await
///         .unwrap();
/// # }
/// ```
pub async fn host_call<R: DeserializeOwned>(
    conn: &Connection,
    entrypoint: &str,
    args: Value,
) -> Result<R, Error> {
    let payload = weft_core::args::encode(conn.codec(), &args)?;
    let reply = within(
        &format!("the host's answer to {entrypoint}"),
        conn.call(Headers::new(wire::SERVICE, entrypoint), payload),
    )
    .await?;
    codec::decode(conn.codec(), &reply)
}

/// The host's registry events, as callers see them.
#[derive(Debug)]
pub struct Watch {
    conn: Connection,
    stream: ResponseStream,
}

impl Watch {
    /// The next event (bounded).
    pub async fn next(&mut self) -> WatchEvent {
        let item = within("a registry event", self.stream.next())
            .await
            .expect("the watch goes on")
            .expect("the watch sends events");
        codec::decode(self.conn.codec(), &item).expect("a registry event decodes")
    }

    /// Waits until an instance of `service` at `version` is up.
    pub async fn up(&mut self, service: &str, version: &str) {
        let is = |i: &weft_registry::InstanceInfo| {
            i.service == service && i.version.to_string() == version
        };
        within(&format!("{service} {version} up"), async {
            loop {
                match self.next().await {
                    WatchEvent::Up { instance } if is(&instance) => return,
                    WatchEvent::Snapshot { instances, .. } if instances.iter().any(is) => return,
                    _ => {}
                }
            }
        })
        .await;
    }

    /// Waits until an instance of `service` is down.
    pub async fn down(&mut self, service: &str) {
        within(&format!("{service} down"), async {
            loop {
                if let WatchEvent::Down { service: s, .. } = self.next().await
                    && s == service
                {
                    return;
                }
            }
        })
        .await;
    }
}

/// A service served over the network from this process until stopped or
/// dropped (which aborts it).
///
/// ```no_run
/// # async fn example<S: weft::Service>(service: S, host: &weft_test_support::RunningHost) {
/// use weft_test_support::Served;
///
/// let mut watch = host.watch().await;
/// let served = Served::start(service, host);
/// watch.up(S::NAME, S::VERSION).await;
/// served.stop().await;
/// # }
/// ```
#[derive(Debug)]
pub struct Served {
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<weft::Result<()>>>,
}

impl Served {
    /// Serves `service` on 127.0.0.1:0, registered with `host` (with its
    /// admin token when it has one); wait for it with [`Watch::up`].
    pub fn start<S: Service>(service: S, host: &RunningHost) -> Served {
        let (tx, rx) = oneshot::channel::<()>();
        let mut server = weft::Server::from_env(service)
            .expect("the service's settings")
            .host(host.address.clone());
        if let Some(token) = &host.admin_token {
            server = server.token(token.clone());
        }
        let server = server.listen(any_port()).shutdown(async move {
            let _ = rx.await;
        });
        Served {
            stop: Some(tx),
            task: Some(tokio::spawn(server.run())),
        }
    }

    /// Stops serving (deregisters, then drains) and waits (bounded).
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = within("the service to stop", task).await;
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}
