//! HTTP on the host's port: health, the gateway, documentation, and the
//! `/api/v1` the CLI and tools use.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use bytes::Bytes;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::watch;
use tower::ServiceExt as _;
use weft_core::{Code, Error};

use crate::auth::{Denied, Need};
use crate::gateway::{self, Gateway};
use crate::state::Shared;
use crate::{docs_ui, openapi};

/// The routes the host serves, listed in 404 answers.
const ROUTES: &str = "POST /services/{name}/{entrypoint}, GET /services/{name}/openapi.json, \
GET /services/{name}/docs, GET /docs, GET /openapi.json, GET /healthz, GET /api/v1/services, \
GET /api/v1/notifications?after=&limit=, GET|POST /api/v1/tokens, DELETE /api/v1/tokens/{id}, \
GET /api/v1/deployments, PUT|DELETE /api/v1/services/{name}/versions/{version}, \
POST /api/v1/services/{name}/versions/{version}/scale, DELETE /api/v1/services/{name}, \
PUT /api/v1/services/{name}/main, GET /api/v1/services/{name}/logs, GET /api/v1/events/topics, \
GET /api/v1/events/topics/{topic}/tail?after=&n=&follow=, GET /api/v1/events/dead?topic=, \
POST /api/v1/events/replay, POST /api/v1/events/publish";

/// How long a client may take to send a request's headers; a client that
/// trickles them would otherwise hold a connection forever.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// The largest token-management request body.
const SMALL_BODY: usize = 64 * 1024;

/// What every HTTP handler shares.
#[derive(Debug)]
pub(crate) struct App {
    pub(crate) shared: Arc<Shared>,
    pub(crate) gateway: Gateway,
    /// The largest gateway request body, in bytes.
    pub(crate) max_body: usize,
    /// How long a client may take to send a request body.
    pub(crate) body_timeout: Duration,
}

/// Whether the connection a request came on is from this machine.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PeerLocal(pub(crate) bool);

impl App {
    /// Checks the request's token for `need` when the host requires tokens.
    pub(crate) fn check(&self, headers: &HeaderMap, need: Need<'_>) -> Result<(), Problem> {
        let header = headers
            .get(header::AUTHORIZATION)
            .map(HeaderValue::as_bytes);
        self.shared.auth.check(header, need).map_err(Problem::from)
    }

    /// Token management: with auth off, callers on this machine may manage
    /// tokens without one; everyone else needs an admin token.
    fn check_admin(&self, headers: &HeaderMap, peer: PeerLocal) -> Result<(), Problem> {
        if !self.shared.auth.required() && peer.0 {
            return Ok(());
        }
        let header = headers
            .get(header::AUTHORIZATION)
            .map(HeaderValue::as_bytes);
        self.shared
            .auth
            .verify(header, Need::Admin)
            .map_err(Problem::from)
    }
}

/// The HTTP routes.
pub(crate) fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/openapi.json", get(host_openapi))
        .route(
            "/docs",
            get(|| async { docs_ui::page("weft host API", "/openapi.json") }),
        )
        .route("/api/v1/services", get(services))
        .route("/api/v1/notifications", get(notifications))
        .route("/api/v1/tokens", get(tokens_list).post(tokens_create))
        .route("/api/v1/tokens/{id}", delete(tokens_revoke))
        .route("/services/{name}/{entrypoint}", post(gateway::call))
        .route("/services/{name}/openapi.json", get(service_openapi))
        // An entrypoint may be called `docs`: POST still calls it.
        .route(
            "/services/{name}/docs",
            get(service_docs).post(gateway::call_docs),
        )
        .route("/_weft/assets/{*file}", get(docs_ui::asset))
        .merge(crate::events::api::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(app)
}

async fn host_openapi() -> Response {
    Json(openapi::host_document()).into_response()
}

async fn services(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if let Err(p) = app.check(&headers, Need::Read) {
        return p.into_response();
    }
    Json(app.shared.services()).into_response()
}

#[derive(Debug, Deserialize)]
struct NotificationsQuery {
    after: Option<u64>,
    limit: Option<usize>,
}

async fn notifications(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    query: Result<Query<NotificationsQuery>, QueryRejection>,
) -> Response {
    if let Err(p) = app.check(&headers, Need::Read) {
        return p.into_response();
    }
    let Query(q) = match query {
        Ok(q) => q,
        Err(e) => {
            return Problem::from(Error::invalid_argument(
                "query",
                format!(
                    "{}; use ?after=<id>&limit=<count> with non-negative integers",
                    e.body_text()
                ),
            ))
            .into_response();
        }
    };
    match app.shared.notifications(q.after, q.limit).await {
        Ok(list) => Json(list).into_response(),
        Err(e) => Problem::from(e).into_response(),
    }
}

async fn service_openapi(
    State(app): State<Arc<App>>,
    name: Result<Path<String>, PathRejection>,
    query: Result<Query<gateway::GatewayQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let result = async {
        let Path(name) = name.map_err(|e| Problem::from(Error::not_found(e.body_text())))?;
        app.check(&headers, Need::Docs(&name))?;
        let selector = gateway::version_selector(query, &headers)?;
        let (version, spec) = app.gateway.spec(&app.shared, &name, &selector).await?;
        Ok::<_, Problem>(openapi::service_document(
            &spec,
            &version,
            app.shared.auth.required(),
        ))
    }
    .await;
    match result {
        Ok(doc) => Json(doc).into_response(),
        Err(p) => p.into_response(),
    }
}

async fn service_docs(name: Result<Path<String>, PathRejection>) -> Response {
    match name {
        Ok(Path(name)) if weft_core::name::validate(&name).is_ok() => docs_ui::page(
            &format!("{name} · weft"),
            &format!("/services/{name}/openapi.json"),
        ),
        Ok(Path(name)) => Problem::from(Error::not_found(format!(
            "`{name}` is not a service name, so there are no docs for it; `weft ls` lists services"
        )))
        .into_response(),
        Err(e) => Problem::from(Error::not_found(e.body_text())).into_response(),
    }
}

async fn tokens_list(
    State(app): State<Arc<App>>,
    Extension(peer): Extension<PeerLocal>,
    headers: HeaderMap,
) -> Response {
    if let Err(p) = app.check_admin(&headers, peer) {
        return p.into_response();
    }
    Json(app.shared.auth.list()).into_response()
}

/// The body of `POST /api/v1/tokens`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateToken {
    scopes: Vec<String>,
    #[serde(default)]
    name: String,
    #[serde(default)]
    expires_in_secs: Option<u64>,
}

/// The answer to `POST /api/v1/tokens`: the only time the secret is shown.
#[derive(Debug, Serialize)]
struct CreatedToken {
    id: String,
    token: String,
    name: String,
    scopes: Vec<String>,
    created_ms: u64,
    expires_ms: Option<u64>,
}

async fn tokens_create(
    State(app): State<Arc<App>>,
    Extension(peer): Extension<PeerLocal>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let result = async {
        app.check_admin(&headers, peer)?;
        let bytes = gateway::read_body(body, &headers, SMALL_BODY, app.body_timeout).await?;
        let req: CreateToken = serde_json::from_slice(&bytes).map_err(|e| {
            Problem::from(Error::new(
                Code::InvalidArgument,
                format!(
                    "the body is not a token request ({e}); send {{\"scopes\": [\"call:*\"], \"name\": \"ci\", \"expires_in_secs\": 86400}}"
                ),
            ))
        })?;
        let (record, token) = app
            .shared
            .auth
            .mint(req.name, req.scopes, req.expires_in_secs)?;
        let stored = record.clone();
        app.shared
            .store
            .blocking(move |s| s.put_token(&stored))
            .await?;
        app.shared.auth.insert(record.clone());
        tracing::info!(id = %record.id, scopes = ?record.scopes, "token created");
        Ok::<_, Problem>(CreatedToken {
            id: record.id,
            token,
            name: record.name,
            scopes: record.scopes,
            created_ms: record.created_ms,
            expires_ms: record.expires_ms,
        })
    }
    .await;
    match result {
        Ok(created) => (StatusCode::CREATED, Json(created)).into_response(),
        Err(p) => p.into_response(),
    }
}

async fn tokens_revoke(
    State(app): State<Arc<App>>,
    Extension(peer): Extension<PeerLocal>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> Response {
    let result = async {
        app.check_admin(&headers, peer)?;
        let Path(id) = id.map_err(|e| Problem::from(Error::not_found(e.body_text())))?;
        let key = id.clone();
        let existed = app
            .shared
            .store
            .blocking(move |s| s.remove_token(&key))
            .await?;
        let known = app.shared.auth.remove(&id);
        if existed || known {
            tracing::info!(%id, "token revoked");
            Ok(())
        } else {
            Err(Problem::from(Error::not_found(format!(
                "there is no token `{id}`; `weft token ls` lists token ids"
            ))))
        }
    }
    .await;
    match result {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(p) => p.into_response(),
    }
}

async fn not_found(method: Method, uri: Uri) -> Response {
    Problem::from(Error::not_found(format!(
        "the weft host has no route {method} {}; it serves {ROUTES}",
        uri.path()
    )))
    .into_response()
}

async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    let path = uri.path();
    let hint = if path.starts_with("/services/") && method == Method::GET {
        "call entrypoints with POST and a JSON object of named arguments; \
         GET /services/{name}/docs shows them"
            .to_owned()
    } else {
        format!("it serves {ROUTES}")
    };
    Problem::from(Error::invalid_argument(
        "method",
        format!("{path} does not accept {method}; {hint}"),
    ))
    .status(StatusCode::METHOD_NOT_ALLOWED)
    .into_response()
}

/// An [`Error`] as an RFC 9457 `application/problem+json` response, with the
/// status of its code unless told otherwise.
#[derive(Debug)]
pub(crate) struct Problem {
    error: Error,
    status: Option<StatusCode>,
    /// For 401 and 403: the scope that would have been enough.
    scope: Option<String>,
}

impl Problem {
    /// Answers with `status` instead of the one of the error's code.
    pub(crate) fn status(mut self, status: StatusCode) -> Self {
        self.status = Some(status);
        self
    }
}

impl From<Error> for Problem {
    fn from(error: Error) -> Self {
        Problem {
            error,
            status: None,
            scope: None,
        }
    }
}

impl From<Denied> for Problem {
    fn from(d: Denied) -> Self {
        Problem {
            error: d.error,
            status: None,
            scope: Some(d.scope),
        }
    }
}

#[derive(Serialize)]
struct ProblemBody<'a> {
    #[serde(rename = "type")]
    type_: &'static str,
    title: &'static str,
    status: u16,
    code: Code,
    detail: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    service: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    entrypoint: Option<&'a str>,
    /// The application error's kind; `type` is taken by RFC 9457.
    #[serde(skip_serializing_if = "Option::is_none")]
    kind: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<&'a str>,
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let code = self.error.code();
        let status = self.status.unwrap_or_else(|| {
            StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
        });
        let body = ProblemBody {
            type_: "about:blank",
            title: status.canonical_reason().unwrap_or("Error"),
            status: status.as_u16(),
            code,
            detail: self.error.message(),
            field: self.error.field(),
            service: self.error.service(),
            entrypoint: self.error.entrypoint(),
            kind: self.error.kind(),
            scope: self.scope.as_deref(),
        };
        let json = serde_json::to_vec(&body).unwrap_or_default();
        let mut response = (status, json).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"weft\""),
            );
        }
        response
    }
}

pin_project_lite::pin_project! {
    /// A stream that first replays bytes already read from it (to sniff the
    /// protocol), then reads on.
    #[derive(Debug)]
    pub(crate) struct Rewind<S> {
        prefix: Bytes,
        #[pin]
        inner: S,
    }
}

impl<S> Rewind<S> {
    pub(crate) fn new(prefix: Bytes, inner: S) -> Self {
        Rewind { prefix, inner }
    }
}

impl<S: AsyncRead> AsyncRead for Rewind<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        if !this.prefix.is_empty() {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix.split_to(n));
            return Poll::Ready(Ok(()));
        }
        this.inner.poll_read(cx, buf)
    }
}

impl<S: AsyncWrite> AsyncWrite for Rewind<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.project().inner.poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.project().inner.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Serves one HTTP/1 connection whose first bytes were already read, until
/// it closes; on shutdown, finishes the request in flight and closes.
pub(crate) async fn serve_connection<S>(
    stream: S,
    initial: Bytes,
    router: Router,
    peer: PeerLocal,
    mut shutdown: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let io = TokioIo::new(Rewind::new(initial, stream));
    let service = TowerToHyperService::new(router.map_request(
        move |mut request: axum::http::Request<hyper::body::Incoming>| {
            request.extensions_mut().insert(peer);
            request
        },
    ));
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(io, service)
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(error = %e, "HTTP connection ended with an error");
            }
            return;
        }
        _ = shutdown.wait_for(|stop| *stop) => {}
    }
    conn.as_mut().graceful_shutdown();
    if let Err(e) = conn.await {
        tracing::debug!(error = %e, "HTTP connection ended with an error");
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;

    use super::*;

    #[tokio::test]
    async fn rewind_replays_the_prefix_first() {
        let inner: &[u8] = b" world";
        let mut r = Rewind::new(Bytes::from_static(b"hello"), inner);
        let mut out = String::new();
        r.read_to_string(&mut out).await.unwrap();
        assert_eq!(out, "hello world");
    }
}
