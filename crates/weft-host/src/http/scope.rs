//! Who may do what: each extractor here checks the request's bearer token
//! for one kind of access before the handler runs, and refuses the request
//! with a problem that names the scope needed. Handlers say what they need
//! by taking one of them.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use axum::http::{HeaderValue, header};
use weft_core::Error;

use crate::auth::Need;
use crate::http::{App, PeerLocal, Problem};

fn authorization(parts: &Parts) -> Option<&[u8]> {
    parts
        .headers
        .get(header::AUTHORIZATION)
        .map(HeaderValue::as_bytes)
}

/// Checks the token for `need` when the host requires tokens.
fn check(app: &App, parts: &Parts, need: Need<'_>) -> Result<(), Problem> {
    app.shared
        .auth
        .check(authorization(parts), need)
        .map_err(Problem::from)
}

/// Any valid token, when the host requires tokens: reading the host's
/// state.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Read;

impl FromRequestParts<Arc<App>> for Read {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, Problem> {
        check(app, parts, Need::Read).map(|()| Read)
    }
}

/// An `admin` token, when the host requires tokens: changing what runs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Admin;

impl FromRequestParts<Arc<App>> for Admin {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, Problem> {
        check(app, parts, Need::Admin).map(|()| Admin)
    }
}

/// Token management: an `admin` token, always, except that with tokens
/// off a caller on the host's own machine needs none (so that the first
/// token can be made).
#[derive(Debug, Clone, Copy)]
pub(crate) struct TokenAdmin;

impl FromRequestParts<Arc<App>> for TokenAdmin {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, Problem> {
        let local = parts
            .extensions
            .get::<PeerLocal>()
            .is_some_and(|peer| peer.0);
        if !app.shared.auth.required() && local {
            return Ok(TokenAdmin);
        }
        app.shared
            .auth
            .verify(authorization(parts), Need::Admin)
            .map(|()| TokenAdmin)
            .map_err(Problem::from)
    }
}

/// The path's `{name}` and `{entrypoint}` (`docs` on the route that has
/// only a name).
async fn service_path(parts: &mut Parts, app: &Arc<App>) -> Result<(String, String), Problem> {
    let Path(mut params) = Path::<HashMap<String, String>>::from_request_parts(parts, app)
        .await
        .map_err(|e| Problem::from(Error::not_found(e.body_text())))?;
    let service = params.remove("name").unwrap_or_default();
    let entrypoint = params.remove("entrypoint").unwrap_or_else(|| "docs".into());
    Ok((service, entrypoint))
}

/// A token that may call the entrypoint in the path, when the host
/// requires tokens; carries the service and entrypoint.
#[derive(Debug, Clone)]
pub(crate) struct Call {
    pub(crate) service: String,
    pub(crate) entrypoint: String,
}

impl FromRequestParts<Arc<App>> for Call {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, Problem> {
        let (service, entrypoint) = service_path(parts, app).await?;
        check(app, parts, Need::Call(&service, &entrypoint))?;
        Ok(Call {
            service,
            entrypoint,
        })
    }
}

/// A token that may call into the service in the path, when the host
/// requires tokens: reading its documentation. Carries the service.
#[derive(Debug, Clone)]
pub(crate) struct Docs {
    pub(crate) service: String,
}

impl FromRequestParts<Arc<App>> for Docs {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, Problem> {
        let (service, _) = service_path(parts, app).await?;
        check(app, parts, Need::Docs(&service))?;
        Ok(Docs { service })
    }
}
