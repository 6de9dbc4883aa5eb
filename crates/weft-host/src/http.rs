//! HTTP on the host's port: health, the `/api/v1` the CLI and tools use.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::{Query, State};
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use bytes::Bytes;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::watch;
use weft_core::{Code, Error};

use crate::state::Shared;

/// The routes the host serves, listed in 404 answers.
const ROUTES: &str = "GET /healthz, GET /api/v1/services, GET /api/v1/notifications?after=&limit=";

/// The HTTP routes.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/api/v1/services", get(services))
        .route("/api/v1/notifications", get(notifications))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(shared)
}

async fn services(State(shared): State<Arc<Shared>>) -> Response {
    Json(shared.services()).into_response()
}

#[derive(Debug, Deserialize)]
struct NotificationsQuery {
    after: Option<u64>,
    limit: Option<usize>,
}

async fn notifications(
    State(shared): State<Arc<Shared>>,
    query: Result<Query<NotificationsQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Query(q) = match query {
        Ok(q) => q,
        Err(e) => {
            return Problem(Error::invalid_argument(
                "query",
                format!(
                    "{}; use ?after=<id>&limit=<count> with non-negative integers",
                    e.body_text()
                ),
            ))
            .into_response();
        }
    };
    match shared.notifications(q.after, q.limit).await {
        Ok(list) => Json(list).into_response(),
        Err(e) => Problem(e).into_response(),
    }
}

async fn not_found(method: Method, uri: Uri) -> Response {
    Problem(Error::not_found(format!(
        "the weft host has no route {method} {}; it serves {ROUTES}",
        uri.path()
    )))
    .into_response()
}

async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    let mut response = Problem(Error::invalid_argument(
        "method",
        format!(
            "{} does not accept {method}; it serves {ROUTES}",
            uri.path()
        ),
    ))
    .into_response();
    *response.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    response
}

/// An [`Error`] as an RFC 9457 `application/problem+json` response, with the
/// status of its code.
#[derive(Debug)]
pub(crate) struct Problem(pub(crate) Error);

#[derive(Serialize)]
struct ProblemBody<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    title: &'static str,
    status: u16,
    code: Code,
    detail: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let code = self.0.code();
        let status =
            StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = ProblemBody {
            kind: "about:blank",
            title: status.canonical_reason().unwrap_or("Error"),
            status: status.as_u16(),
            code,
            detail: self.0.message(),
            field: self.0.field(),
        };
        let json = serde_json::to_vec(&body).unwrap_or_default();
        let mut response = (status, json).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
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
    mut shutdown: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let io = TokioIo::new(Rewind::new(initial, stream));
    let service = TowerToHyperService::new(router);
    let conn = hyper::server::conn::http1::Builder::new()
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
