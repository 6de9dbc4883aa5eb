//! `/api/v1`, what the CLI and tools use: the registry's view and
//! notifications, tokens, deployments and events.

mod deployments;
mod events;
mod registry;
mod tokens;

use std::sync::Arc;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use weft_core::Error;

use crate::http::{App, Problem};

/// The largest JSON body of the small requests (tokens, scale, main).
const SMALL_BODY: usize = 64 * 1024;

/// The routes under `/api/v1`.
pub(super) fn routes() -> Router<Arc<App>> {
    Router::new()
        .merge(registry::routes())
        .merge(tokens::routes())
        .merge(deployments::routes())
        .merge(events::routes())
}

/// `value` as a JSON answer with `status`.
fn json<T: Serialize>(status: StatusCode, value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => (status, [(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => {
            Problem::from(Error::internal(format!("cannot encode the answer: {e}"))).into_response()
        }
    }
}

/// The pairs of a query string, decoded.
fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// A non-negative integer query parameter.
fn number(name: &str, v: &str) -> Result<u64, Problem> {
    v.parse().map_err(|_| {
        Problem::from(Error::invalid_argument(
            name,
            format!("`{v}` is not a non-negative integer"),
        ))
    })
}
