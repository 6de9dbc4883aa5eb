//! HTTP/1.1: the weft host's gateway and a bare axum handler, both called at
//! `POST /services/echo/echo` with `{"data": ".."}` and answering the same
//! JSON string, by a load generator made of hyper client connections (one
//! keep-alive connection per caller, as wrk does).

use anyhow::{Context as _, anyhow, ensure};
use axum::Json;
use axum::routing::post;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{CONTENT_TYPE, HOST, HeaderValue};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tokio::net::{TcpListener, TcpStream};

use crate::measure::Flavour;
use crate::process::{ServerProcess, announce};

/// The path of the echo entrypoint, the gateway's and the bare handler's.
pub(crate) const ECHO_PATH: &str = "/services/echo/echo";

/// The bare axum server process.
#[derive(Debug)]
pub(crate) struct AxumServer {
    process: ServerProcess,
}

impl AxumServer {
    pub(crate) async fn start(flavour: Flavour) -> anyhow::Result<AxumServer> {
        let process = ServerProcess::start("axum", flavour, &["--listen", "127.0.0.1:0"]).await?;
        let server = AxumServer { process };
        callers(server.address(), 1, b"ready")
            .await?
            .pop()
            .context("no caller")?
            .call()
            .await
            .context("the bare axum server does not answer")?;
        Ok(server)
    }

    pub(crate) fn address(&self) -> &str {
        self.process.address()
    }

    pub(crate) fn check_alive(&self) -> anyhow::Result<()> {
        self.process.check_alive()
    }

    pub(crate) fn pids(&self) -> Vec<u32> {
        vec![self.process.pid()]
    }
}

/// `n` callers, each with a keep-alive HTTP/1.1 connection of its own to
/// `address`, each posting `{"data": payload}` to [`ECHO_PATH`].
pub(crate) async fn callers(
    address: &str,
    n: usize,
    payload: &[u8],
) -> anyhow::Result<Vec<Caller>> {
    // The weft host prints its address as `tcp://HOST:PORT`.
    let address = address.strip_prefix("tcp://").unwrap_or(address);
    let data = std::str::from_utf8(payload).context("the payload must be UTF-8")?;
    let body = Bytes::from(serde_json::to_vec(&serde_json::json!({ "data": data }))?);
    let expected = Bytes::from(serde_json::to_vec(data)?);
    let uri: Uri = ECHO_PATH.parse()?;
    let host = HeaderValue::from_str(address)?;
    let mut callers = Vec::with_capacity(n);
    for _ in 0..n {
        let stream = TcpStream::connect(address)
            .await
            .with_context(|| format!("cannot connect to the HTTP server at {address}"))?;
        stream.set_nodelay(true)?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .context("the HTTP/1.1 handshake failed")?;
        // Ends when `sender` drops, or with the runtime.
        tokio::spawn(connection);
        callers.push(Caller {
            sender,
            uri: uri.clone(),
            host: host.clone(),
            body: body.clone(),
            expected: expected.clone(),
        });
    }
    Ok(callers)
}

/// One keep-alive connection.
#[derive(Debug)]
pub(crate) struct Caller {
    sender: SendRequest<Full<Bytes>>,
    uri: Uri,
    host: HeaderValue,
    /// The request body, built once.
    body: Bytes,
    /// The JSON string the echo answers.
    expected: Bytes,
}

impl Caller {
    pub(crate) async fn call(&mut self) -> anyhow::Result<()> {
        self.sender
            .ready()
            .await
            .context("the HTTP connection closed")?;
        let mut request = Request::new(Full::new(self.body.clone()));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = self.uri.clone();
        let headers = request.headers_mut();
        headers.insert(HOST, self.host.clone());
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let response = self.sender.send_request(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        if status != StatusCode::OK {
            return Err(anyhow!(
                "POST {} answered {status}: {}",
                self.uri,
                String::from_utf8_lossy(&body[..body.len().min(500)])
            ));
        }
        ensure!(body == self.expected, "the echo answered other data");
        Ok(())
    }
}

#[derive(Deserialize)]
struct EchoArgs {
    data: String,
}

async fn echo(Json(args): Json<EchoArgs>) -> Json<String> {
    Json(args.data)
}

/// `__serve axum`: the bare handler, with `TCP_NODELAY` as the host sets it.
pub(crate) async fn serve_axum(listen: &str) -> anyhow::Result<()> {
    use axum::serve::ListenerExt as _;
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    announce(&listener.local_addr()?.to_string())?;
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let app = axum::Router::new().route(ECHO_PATH, post(echo));
    axum::serve(listener, app).await?;
    Ok(())
}
