//! `GET /api/v1/services`, `GET /api/v1/hosts` and
//! `GET /api/v1/notifications`.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use weft_core::{Error, Notification};
use weft_host_api::hosts::HostInfo;
use weft_registry::ServiceSummary;

use crate::http::scope::Read;
use crate::http::{App, Problem};

pub(super) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/api/v1/services", get(services))
        .route("/api/v1/hosts", get(hosts))
        .route("/api/v1/notifications", get(notifications))
}

async fn services(_: Read, State(app): State<Arc<App>>) -> Json<Vec<ServiceSummary>> {
    Json(app.shared.registry.services())
}

async fn hosts(_: Read, State(app): State<Arc<App>>) -> Result<Json<Vec<HostInfo>>, Problem> {
    Ok(Json(app.shared.cluster.hosts(&app.shared).await?))
}

#[derive(Debug, Deserialize)]
struct NotificationsQuery {
    after: Option<u64>,
    limit: Option<usize>,
}

async fn notifications(
    _: Read,
    State(app): State<Arc<App>>,
    query: Result<Query<NotificationsQuery>, QueryRejection>,
) -> Result<Json<Vec<Notification>>, Problem> {
    let Query(q) = query.map_err(|e| {
        Problem::from(Error::invalid_argument(
            "query",
            format!(
                "{}; use ?after=<id>&limit=<count> with non-negative integers",
                e.body_text()
            ),
        ))
    })?;
    Ok(Json(app.shared.notifications.list(q.after, q.limit).await?))
}
