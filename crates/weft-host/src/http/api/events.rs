//! `/api/v1/events`: what `weft events` uses.
//!
//! - `GET /api/v1/events/topics`: every topic (events, last id, bytes,
//!   publishes in the last minute) with its consumer groups (position,
//!   backlog, in flight, dead letters);
//! - `GET /api/v1/events/topics/{topic}/tail?after=ID&n=N&follow=true`:
//!   events as `application/x-ndjson` (`id`, `published_ms`,
//!   `idempotency_key`, `payload`); without `after`, the last `n` (20);
//! - `GET /api/v1/events/dead?topic=T`: dead letters;
//! - `POST /api/v1/events/replay` `{"topic", "id"}` or `{"topic", "all": true}`
//!   (admin): delivers dead letters to their group again;
//! - `POST /api/v1/events/publish` `{"topic", "payload", "idempotency_key"}`
//!   (admin): stores an event, answers `{"id", "duplicate"}`.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use futures::StreamExt;
use serde::Deserialize;
use serde_json::json;
use weft::host_api::PublishArgs;
use weft_core::{Code, Error};

use crate::auth::Need;
use crate::gateway;
use crate::http::{App, Problem};

/// The largest publish or replay body.
const MAX_BODY: usize = 16 * 1024 * 1024;

/// The routes, for the host's router.
pub(crate) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/api/v1/events/topics", get(topics))
        .route("/api/v1/events/topics/{topic}/tail", get(tail))
        .route("/api/v1/events/dead", get(dead))
        .route("/api/v1/events/replay", post(replay))
        .route("/api/v1/events/publish", post(publish))
}

fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn number(name: &str, v: &str) -> Result<u64, Problem> {
    v.parse().map_err(|_| {
        Problem::from(Error::invalid_argument(
            name,
            format!("`{v}` is not a non-negative integer"),
        ))
    })
}

async fn topics(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if let Err(p) = app.check(&headers, Need::Read) {
        return p.into_response();
    }
    Json(app.shared.events.topics()).into_response()
}

async fn tail(
    State(app): State<Arc<App>>,
    Path(topic): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let result = (|| {
        app.check(&headers, Need::Read)?;
        let (mut after, mut n, mut follow) = (None, 20, false);
        for (k, v) in query_pairs(query.as_deref()) {
            match k.as_str() {
                "after" if !v.is_empty() => after = Some(number("after", &v)?),
                "after" => {}
                "n" => n = number("n", &v)?,
                "follow" => follow = v.is_empty() || v == "true" || v == "1",
                other => {
                    return Err(Problem::from(Error::invalid_argument(
                        "query",
                        format!(
                            "unknown parameter `{other}`; this route takes after, n and follow"
                        ),
                    )));
                }
            }
        }
        Ok::<_, Problem>(app.shared.events.tail(&topic, after, n, follow)?)
    })();
    let stream = match result {
        Ok(s) => s,
        Err(p) => return p.into_response(),
    };
    let body = stream.map(|item| {
        let line = match item {
            Ok(e) => serde_json::to_vec(&e),
            Err(e) => serde_json::to_vec(&json!({ "error": e.message() })),
        };
        let mut line = line.unwrap_or_default();
        line.push(b'\n');
        Ok::<_, std::convert::Infallible>(Bytes::from(line))
    });
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(body),
    )
        .into_response()
}

async fn dead(
    State(app): State<Arc<App>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    if let Err(p) = app.check(&headers, Need::Read) {
        return p.into_response();
    }
    let mut topic = None;
    for (k, v) in query_pairs(query.as_deref()) {
        match k.as_str() {
            "topic" if !v.is_empty() => topic = Some(v),
            "topic" => {}
            other => {
                return Problem::from(Error::invalid_argument(
                    "query",
                    format!("unknown parameter `{other}`; this route takes topic"),
                ))
                .into_response();
            }
        }
    }
    Json(app.shared.events.dead(topic.as_deref())).into_response()
}

/// The body of `POST /api/v1/events/replay`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplayBody {
    topic: String,
    #[serde(default)]
    id: Option<u64>,
    #[serde(default)]
    all: bool,
}

async fn read_json<T: serde::de::DeserializeOwned>(
    app: &App,
    headers: &HeaderMap,
    body: Body,
    example: &str,
) -> Result<T, Problem> {
    let bytes = gateway::read_body(body, headers, MAX_BODY, app.body_timeout).await?;
    serde_json::from_slice(&bytes).map_err(|e| {
        Problem::from(Error::new(
            Code::InvalidArgument,
            format!("the body is not what this route takes ({e}); send {example}"),
        ))
    })
}

async fn replay(State(app): State<Arc<App>>, headers: HeaderMap, body: Body) -> Response {
    let result = async {
        app.check(&headers, Need::Admin)?;
        let req: ReplayBody = read_json(
            &app,
            &headers,
            body,
            r#"{"topic": "orders.created", "id": 7} or {"topic": "orders.created", "all": true}"#,
        )
        .await?;
        let id = match (req.id, req.all) {
            (Some(id), false) => Some(id),
            (None, true) => None,
            _ => {
                return Err(Problem::from(Error::invalid_argument(
                    "id",
                    "name one dead letter with \"id\", or every one of the topic with \"all\": true (not both)",
                )));
            }
        };
        let n = app.shared.events.replay(&req.topic, id)?;
        Ok::<_, Problem>(json!({ "replayed": n }))
    }
    .await;
    match result {
        Ok(v) => Json(v).into_response(),
        Err(p) => p.into_response(),
    }
}

/// The body of `POST /api/v1/events/publish`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishBody {
    topic: String,
    payload: serde_json::Value,
    #[serde(default)]
    idempotency_key: Option<String>,
}

async fn publish(State(app): State<Arc<App>>, headers: HeaderMap, body: Body) -> Response {
    let result = async {
        app.check(&headers, Need::Admin)?;
        let req: PublishBody = read_json(
            &app,
            &headers,
            body,
            r#"{"topic": "orders.created", "payload": {...}, "idempotency_key": "optional"}"#,
        )
        .await?;
        let published = app
            .shared
            .events
            .publish(PublishArgs {
                topic: req.topic,
                payload: req.payload,
                idempotency_key: req.idempotency_key,
                publisher: None,
            })
            .await?;
        Ok::<_, Problem>(published)
    }
    .await;
    match result {
        Ok(p) => Json(p).into_response(),
        Err(p) => p.into_response(),
    }
}
