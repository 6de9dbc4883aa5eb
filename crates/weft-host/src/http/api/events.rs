//! `/api/v1/events`: what `weft events` uses.
//!
//! - `GET /api/v1/events/topics`: every topic (events, last id, bytes,
//!   publishes in the last minute) with its consumer groups (position,
//!   backlog, in flight, dead letters, subscribers);
//! - `GET /api/v1/events/topics/{topic}/tail?after=ID&n=N&follow=true`:
//!   events as `application/x-ndjson` (`id`, `published_ms`,
//!   `idempotency_key`, `payload`); without `after`, the last `n` (20);
//! - `GET /api/v1/events/dead?topic=T`: dead letters;
//! - `POST /api/v1/events/replay` `{"topic", "id"}` or `{"topic", "all": true}`
//!   (admin): delivers dead letters to their group again;
//! - `POST /api/v1/events/publish` `{"topic", "payload", "idempotency_key"}`
//!   (admin): stores an event, answers `{"id", "duplicate"}`.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use futures::StreamExt;
use serde_json::json;
use weft_core::Error;
use weft_host_api::events::{DeadLetter, PublishRequest, ReplayRequest, Replayed, TopicInfo};
use weft_host_api::wire::{PublishArgs, Published};

use super::{number, query_pairs};
use crate::http::body::read_json;
use crate::http::scope::{Admin, Read};
use crate::http::{App, Problem};

/// The largest publish or replay body.
const MAX_BODY: usize = 16 * 1024 * 1024;

pub(super) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/api/v1/events/topics", get(topics))
        .route("/api/v1/events/topics/{topic}/tail", get(tail))
        .route("/api/v1/events/dead", get(dead))
        .route("/api/v1/events/replay", post(replay))
        .route("/api/v1/events/publish", post(publish))
}

async fn topics(_: Read, State(app): State<Arc<App>>) -> Result<Json<Vec<TopicInfo>>, Problem> {
    Ok(Json(app.shared.events.topics().await?))
}

async fn tail(
    _: Read,
    State(app): State<Arc<App>>,
    Path(topic): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, Problem> {
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
                    format!("unknown parameter `{other}`; this route takes after, n and follow"),
                )));
            }
        }
    }
    let stream = app.shared.events.tail(&topic, after, n, follow).await?;
    let body = stream.map(|item| {
        let line = match item {
            Ok(e) => serde_json::to_vec(&e),
            Err(e) => serde_json::to_vec(&json!({ "error": e.message() })),
        };
        let mut line = line.unwrap_or_default();
        line.push(b'\n');
        Ok::<_, std::convert::Infallible>(Bytes::from(line))
    });
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(body),
    )
        .into_response())
}

async fn dead(
    _: Read,
    State(app): State<Arc<App>>,
    RawQuery(query): RawQuery,
) -> Result<Json<Vec<DeadLetter>>, Problem> {
    let mut topic = None;
    for (k, v) in query_pairs(query.as_deref()) {
        match k.as_str() {
            "topic" if !v.is_empty() => topic = Some(v),
            "topic" => {}
            other => {
                return Err(Problem::from(Error::invalid_argument(
                    "query",
                    format!("unknown parameter `{other}`; this route takes topic"),
                )));
            }
        }
    }
    Ok(Json(app.shared.events.dead(topic.as_deref()).await?))
}

async fn replay(
    _: Admin,
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Replayed>, Problem> {
    let req: ReplayRequest = read_json(
        body,
        &headers,
        MAX_BODY,
        app.body_timeout,
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
    let replayed = app.shared.events.replay(&req.topic, id).await?;
    Ok(Json(Replayed { replayed }))
}

async fn publish(
    _: Admin,
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Published>, Problem> {
    let req: PublishRequest = read_json(
        body,
        &headers,
        MAX_BODY,
        app.body_timeout,
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
    Ok(Json(published))
}
