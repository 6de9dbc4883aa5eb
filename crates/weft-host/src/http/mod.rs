//! HTTP on the host's port: health, the gateway, documentation, and the
//! `/api/v1` the CLI and tools use. Every route is assembled here, in
//! [`router`]; the routes themselves are described once in
//! `weft_host_api::routes`.

mod api;
mod app;
mod body;
mod docs;
mod docs_ui;
pub(crate) mod gateway;
mod openapi;
mod problem;
mod rewind;
mod scope;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tower::ServiceExt as _;
use weft_core::Error;

pub(crate) use self::app::{App, PeerLocal};
pub(crate) use self::problem::Problem;
use self::rewind::Rewind;

/// How long a client may take to send a request's headers; a client that
/// trickles them would otherwise hold a connection forever.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Every HTTP route of the host.
pub(crate) fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/openapi.json", get(docs::host_openapi))
        .route("/docs", get(docs::host_docs))
        .route(
            "/services/{name}/{entrypoint}",
            get(gateway::call_get).post(gateway::call),
        )
        .route("/services/{name}/openapi.json", get(docs::service_openapi))
        // An entrypoint may be called `docs`: POST still calls it.
        .route(
            "/services/{name}/docs",
            get(docs::service_docs).post(gateway::call),
        )
        .route("/_weft/assets/{*file}", get(docs_ui::asset))
        .merge(api::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::map_response(
            problem::plain_errors_as_problems,
        ))
        .with_state(app)
}

async fn not_found(method: Method, uri: Uri) -> Response {
    Problem::from(Error::not_found(format!(
        "the weft host has no route {method} {}; it serves {}",
        uri.path(),
        weft_host_api::routes::hint()
    )))
    .into_response()
}

async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    let path = uri.path();
    let hint = if path.starts_with("/services/") && method == Method::GET {
        "call entrypoints with POST and a JSON object of named arguments (read-only ones \
         also with GET and a query); GET /services/{name}/docs shows them"
            .to_owned()
    } else {
        format!("it serves {}", weft_host_api::routes::hint())
    };
    Problem::from(Error::invalid_argument(
        "method",
        format!("{path} does not accept {method}; {hint}"),
    ))
    .status(StatusCode::METHOD_NOT_ALLOWED)
    .into_response()
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
