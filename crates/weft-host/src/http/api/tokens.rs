//! `/api/v1/tokens`: creating, listing and revoking tokens.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{delete, get};
use axum::{Json, Router};
use weft_core::Error;
use weft_host_api::tokens::{CreateToken, CreatedToken, TokenInfo};

use super::SMALL_BODY;
use crate::http::body::read_json;
use crate::http::scope::TokenAdmin;
use crate::http::{App, Problem};

pub(super) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/api/v1/tokens", get(list).post(create))
        .route("/api/v1/tokens/{id}", delete(revoke))
}

async fn list(_: TokenAdmin, State(app): State<Arc<App>>) -> Json<Vec<TokenInfo>> {
    Json(app.shared.auth.list())
}

async fn create(
    _: TokenAdmin,
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<CreatedToken>), Problem> {
    let req: CreateToken = read_json(
        body,
        &headers,
        SMALL_BODY,
        app.body_timeout,
        r#"{"scopes": ["call:*"], "name": "ci", "expires_in_secs": 86400}"#,
    )
    .await?;
    let (record, token) = app
        .shared
        .auth
        .mint(req.name, req.scopes, req.expires_in_secs)?;
    crate::tokens::add(&app.shared, record.clone()).await?;
    tracing::info!(id = %record.id, scopes = ?record.scopes, "token created");
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken {
            id: record.id,
            token,
            name: record.name,
            scopes: record.scopes,
            created_ms: record.created_ms,
            expires_ms: record.expires_ms,
        }),
    ))
}

async fn revoke(
    _: TokenAdmin,
    State(app): State<Arc<App>>,
    id: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, Problem> {
    let Path(id) = id.map_err(|e| Problem::from(Error::not_found(e.body_text())))?;
    if crate::tokens::revoke(&app.shared, &id).await? {
        tracing::info!(%id, "token revoked");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(Problem::from(Error::not_found(format!(
            "there is no token `{id}`; `weft token ls` lists token ids"
        ))))
    }
}
