//! Documentation routes: the host's API document and page, and each
//! service's document and page.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use weft_core::Error;

use crate::http::gateway::{self, GatewayQuery};
use crate::http::scope::Docs;
use crate::http::{App, Problem, docs_ui, openapi};

/// `GET /openapi.json`.
pub(crate) async fn host_openapi(State(app): State<Arc<App>>) -> Response {
    Json(openapi::host_document(app.shared.auth.required())).into_response()
}

/// `GET /docs`.
pub(crate) async fn host_docs() -> Response {
    docs_ui::page("weft host API", "/openapi.json")
}

/// `GET /services/{name}/openapi.json`: the document of the version that
/// `?version=` or `Weft-Version` picks (main by default).
pub(crate) async fn service_openapi(
    docs: Docs,
    State(app): State<Arc<App>>,
    query: Result<Query<GatewayQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, Problem> {
    let selector = gateway::version_selector(query, &headers)?;
    let (version, spec) = {
        let registry = app.shared.registry.lock();
        let (version, spec) = registry.spec(&docs.service, &selector)?;
        (version.clone(), spec.clone())
    };
    Ok(Json(openapi::service_document(
        &spec,
        &version,
        app.shared.auth.required(),
    )))
}

/// `GET /services/{name}/docs`: the page, which loads the document.
pub(crate) async fn service_docs(name: Result<Path<String>, PathRejection>) -> Response {
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
