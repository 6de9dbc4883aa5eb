//! What the gateway and browser tests share: a real host on 127.0.0.1:0,
//! services served over the network in this process, and a small HTTP client.

#![allow(dead_code, unreachable_pub)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{BodyExt as _, Full};
use hyper::header::HeaderValue;
use hyper::{HeaderMap, Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use weft::prelude::*;
use weft::{Dispatch, Incoming, Service};
use weft_core::codec;
use weft_core::spec::ServiceSpec;
use weft_host::{Host, HostConfig};
use weft_registry::WatchEvent;
use weft_transport::{Address, ConnectOptions, Connection, ResponseStream};
use weft_wire::Headers;

/// How long anything in these tests may take before it counts as hung.
pub const WAIT: Duration = Duration::from_secs(20);

/// A host running in this process until stopped or dropped.
pub struct RunningHost {
    pub address: Address,
    pub admin_token: Option<String>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<weft::Result<()>>>,
}

impl RunningHost {
    pub async fn start(config: HostConfig) -> RunningHost {
        let host = Host::bind(config).await.expect("the host binds");
        let address = host.local_address();
        let admin_token = host
            .admin_token_file()
            .map(|f| std::fs::read_to_string(f).unwrap().trim().to_owned());
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
        RunningHost::start(HostConfig::new("127.0.0.1:0".parse().unwrap(), dir)).await
    }

    pub fn hostport(&self) -> String {
        match &self.address {
            Address::Tcp(hp) => hp.replacen("0.0.0.0:", "127.0.0.1:", 1),
            other => panic!("not tcp: {other}"),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.hostport())
    }

    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(WAIT, self.task.take().unwrap())
            .await
            .expect("the host stops")
            .unwrap()
            .unwrap();
    }

    /// Watches the host's registry.
    pub async fn watch(&self) -> Watch {
        let options = ConnectOptions {
            credential: self.admin_token.clone(),
            ..ConnectOptions::default()
        };
        let conn = Connection::connect(&self.address, &options).await.unwrap();
        let stream = conn.call_stream(
            Headers::new(weft::host_api::SERVICE, weft::host_api::WATCH),
            codec::encode(conn.codec(), &serde_json::json!({})).unwrap(),
        );
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

/// The host's registry events, as callers see them.
pub struct Watch {
    conn: Connection,
    stream: ResponseStream,
}

impl Watch {
    pub async fn next(&mut self) -> WatchEvent {
        let item = tokio::time::timeout(WAIT, self.stream.next())
            .await
            .expect("a registry event arrives")
            .expect("the watch goes on")
            .unwrap();
        codec::decode(self.conn.codec(), &item).unwrap()
    }

    /// Waits until an instance of `service` at `version` is up.
    pub async fn up(&mut self, service: &str, version: &str) {
        for _ in 0..1000 {
            match self.next().await {
                WatchEvent::Up { instance }
                    if instance.service == service && instance.version.to_string() == version =>
                {
                    return;
                }
                WatchEvent::Snapshot { instances, .. }
                    if instances
                        .iter()
                        .any(|i| i.service == service && i.version.to_string() == version) =>
                {
                    return;
                }
                _ => {}
            }
        }
        panic!("{service} {version} never came up");
    }

    /// Waits until an instance of `service` is down.
    pub async fn down(&mut self, service: &str) {
        for _ in 0..1000 {
            if let WatchEvent::Down { service: s, .. } = self.next().await
                && s == service
            {
                return;
            }
        }
        panic!("{service} never went down");
    }
}

/// A service served over the network from this process until dropped.
pub struct Served {
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<weft::Result<()>>>,
}

impl Served {
    /// Serves `service` registered with `host`; wait for it with [`Watch::up`].
    pub fn start<S: Service>(service: S, host: &RunningHost) -> Served {
        let (tx, rx) = oneshot::channel::<()>();
        let mut server = weft::Server::from_env(service)
            .unwrap()
            .host(host.address.clone());
        if let Some(token) = &host.admin_token {
            server = server.token(token.clone());
        }
        let server = server
            .listen("127.0.0.1:0".parse().unwrap())
            .shutdown(async move {
                let _ = rx.await;
            });
        Served {
            stop: Some(tx),
            task: Some(tokio::spawn(server.run())),
        }
    }

    /// Stops serving: deregisters, then drains.
    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        let _ = tokio::time::timeout(WAIT, self.task.take().unwrap()).await;
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// A service for testing the gateway's answers.
#[derive(Debug, Default)]
pub struct Echo;

/// Answers in every way the gateway has to translate.
#[weft::service(name = "echo")]
impl Echo {
    /// Returns `text`, `times` times over.
    #[entrypoint]
    async fn echo(&self, text: String, times: Option<u32>) -> String {
        text.repeat(times.unwrap_or(1) as usize)
    }

    /// The version of the instance that answered.
    #[entrypoint]
    async fn version(&self, ctx: &Context) -> String {
        ctx.identity()
            .map(|i| i.version.clone())
            .unwrap_or_default()
    }

    /// Answers after `ms` milliseconds.
    #[entrypoint]
    async fn sleep(&self, ms: u64) -> u64 {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        ms
    }

    /// Always fails with an error of its own.
    #[entrypoint]
    async fn fail(&self) -> weft::Result<u8> {
        Err(weft::Error::application("Broken", "it broke, as asked"))
    }
}

/// [`Echo`] registered as version 2.0.0.
#[derive(Debug, Default)]
pub struct EchoV2;

impl Service for EchoV2 {
    const NAME: &'static str = <Echo as Service>::NAME;
    const VERSION: &'static str = "2.0.0";

    fn spec() -> ServiceSpec {
        <Echo as Service>::spec()
    }

    fn dispatch(self: Arc<Self>, call: Incoming) -> Dispatch {
        Arc::new(Echo).dispatch(call)
    }
}

/// An HTTP answer.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}): {} {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn content_type(&self) -> &str {
        self.headers
            .get(hyper::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// Asserts a problem+json answer with `status` and `code`; returns it.
    pub fn problem(&self, status: u16, code: &str) -> Value {
        assert_eq!(
            self.status.as_u16(),
            status,
            "{}",
            String::from_utf8_lossy(&self.body)
        );
        assert_eq!(self.content_type(), "application/problem+json");
        let p = self.json();
        assert_eq!(p["status"], status);
        assert_eq!(p["code"], code, "{p}");
        assert!(p["title"].is_string() && p["type"].is_string(), "{p}");
        assert!(!p["detail"].as_str().unwrap().is_empty(), "{p}");
        p
    }
}

/// One HTTP/1.1 request to `hostport`.
pub async fn request(
    hostport: &str,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Answer {
    tokio::time::timeout(WAIT, async {
        let stream = tokio::net::TcpStream::connect(hostport).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        let driver = tokio::spawn(conn);
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, hostport);
        for (k, v) in headers {
            req = req.header(*k, HeaderValue::from_str(v).unwrap());
        }
        let response = sender
            .send_request(req.body(Full::new(body.into())).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        driver.abort();
        Answer {
            status,
            headers,
            body,
        }
    })
    .await
    .expect("the host answers in time")
}
