//! The deployment part of `/api/v1`, which `weft deploy`, `ls`, `main`,
//! `kill`, `scale` and `logs` use. Errors are `application/problem+json`
//! like everywhere else on the host; mutations need an `admin` token and
//! reads any token, when the host requires tokens.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use bytes::Bytes;
use futures::StreamExt as _;
use http_body_util::BodyExt as _;
use serde::Deserialize;
use weft_core::Error;
use weft_core::name::Version;

use crate::auth::Need;
use crate::http::{App, Problem};
use crate::supervisor::{DeployRequest, LogLine, Supervisor};

/// The largest executable a deploy may upload.
pub(crate) const MAX_ARTIFACT: u64 = 512 * 1024 * 1024;

/// The largest JSON body of the small requests.
const SMALL_BODY: usize = 64 * 1024;

/// The most instances one version may ask for.
const MAX_INSTANCES: u32 = 64;

/// What the deployment handlers share.
#[derive(Debug, Clone)]
struct Api {
    app: Arc<App>,
    supervisor: Arc<Supervisor>,
}

/// The routes, for the HTTP module to merge:
///
/// - `PUT|POST /api/v1/services/{name}/versions/{version}?instances=N&env=K%3DV...`
///   with the executable as the body (`application/octet-stream`, up to
///   512 MiB): stores it, starts the instances (or replaces those of a
///   version deployed before, one at a time) and answers `200` with a
///   [`VersionStatus`](crate::supervisor::VersionStatus) once they have
///   registered; `400` with the instance's last lines of output when one
///   exits first.
/// - `DELETE /api/v1/services/{name}/versions/{version}` stops a version
///   and forgets it; `DELETE /api/v1/services/{name}[?all=true]` stops the
///   main version (or every version): answers `{"killed": ["1.0.0"]}`.
/// - `PUT /api/v1/services/{name}/main` with `{"version": "1.1.0"}`.
/// - `POST /api/v1/services/{name}/versions/{version}/scale` with
///   `{"instances": 3}`: answers the version's status once new instances
///   have registered.
/// - `GET /api/v1/deployments`: every version, deployed or started by hand
///   (`external`), as a list of statuses.
/// - `GET /api/v1/services/{name}/logs?version=V&n=100&follow=true`: the
///   newest lines of output, one JSON object per line
///   (`application/x-ndjson`: `seq`, `time_ms`, `instance`, `stream`,
///   `line`); with `follow`, the response goes on with new lines.
pub(crate) fn routes(app: Arc<App>, supervisor: Arc<Supervisor>) -> Router {
    Router::new()
        .route("/api/v1/deployments", get(deployments))
        .route(
            "/api/v1/services/{name}/versions/{version}",
            put(deploy).post(deploy).delete(kill_version),
        )
        .route(
            "/api/v1/services/{name}/versions/{version}/scale",
            post(scale),
        )
        .route("/api/v1/services/{name}", delete(kill_service))
        .route("/api/v1/services/{name}/main", put(set_main))
        .route("/api/v1/services/{name}/logs", get(logs))
        .with_state(Api { app, supervisor })
}

fn problem(e: Error) -> Response {
    Problem::from(e).into_response()
}

fn json<T: serde::Serialize>(status: StatusCode, value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => (status, [(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => problem(Error::internal(format!("cannot encode the answer: {e}"))),
    }
}

fn parse_version(text: &str) -> Result<Version, Error> {
    Version::parse(text).map_err(|e| {
        Error::invalid_argument(
            "version",
            format!("`{text}` is not a semver version ({e}); write it like 1.2.0"),
        )
    })
}

fn pairs(query: Option<&str>) -> Vec<(String, String)> {
    query
        .map(|q| {
            form_urlencoded::parse(q.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default()
}

async fn small_json<T: serde::de::DeserializeOwned>(body: Body, example: &str) -> Result<T, Error> {
    let limited = http_body_util::Limited::new(body, SMALL_BODY);
    let bytes = tokio::time::timeout(Duration::from_secs(30), limited.collect())
        .await
        .map_err(|_| Error::deadline_exceeded("the request body did not arrive in time"))?
        .map_err(|e| Error::invalid_argument("body", format!("cannot read the body: {e}")))?
        .to_bytes();
    serde_json::from_slice(&bytes).map_err(|e| {
        Error::invalid_argument(
            "body",
            format!("the body is not what this route takes ({e}); send {example}"),
        )
    })
}

async fn deployments(State(api): State<Api>, headers: HeaderMap) -> Response {
    if let Err(p) = api.app.check(&headers, Need::Read) {
        return p.into_response();
    }
    json(StatusCode::OK, &api.supervisor.list())
}

async fn deploy(
    State(api): State<Api>,
    Path((name, version)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let result = async {
        api.app.check(&headers, Need::Admin)?;
        weft_core::name::validate(&name)?;
        let version = parse_version(&version)?;
        let mut instances = 1u32;
        let mut env = Vec::new();
        for (k, v) in pairs(query.as_deref()) {
            match k.as_str() {
                "instances" => {
                    instances = v.parse().ok().filter(|n| (1..=MAX_INSTANCES).contains(n)).ok_or_else(|| {
                        Error::invalid_argument(
                            "instances",
                            format!("`{v}` is not a number of instances from 1 to {MAX_INSTANCES}"),
                        )
                    })?;
                }
                "env" => {
                    let (key, value) = v.split_once('=').ok_or_else(|| {
                        Error::invalid_argument("env", format!("`{v}` has no `=`; write it as NAME=VALUE"))
                    })?;
                    env.push((key.to_owned(), value.to_owned()));
                }
                other => {
                    return Err(Error::invalid_argument(
                        "query",
                        format!("unknown parameter `{other}`; this route takes instances=N and env=NAME%3DVALUE"),
                    )
                    .into());
                }
            }
        }
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > MAX_ARTIFACT) {
            return Err(Error::resource_exhausted(format!(
                "the executable is larger than the host's limit of {} MiB; build a smaller one",
                MAX_ARTIFACT >> 20
            ))
            .into());
        }
        let stream = body.into_data_stream();
        let staged = api
            .supervisor
            .stage(&name, &version, stream, MAX_ARTIFACT)
            .await?;
        let request = DeployRequest {
            service: name,
            version,
            instances,
            env,
        };
        Ok::<_, Problem>(api.supervisor.deploy(request, staged).await?)
    }
    .await;
    match result {
        Ok(status) => json(StatusCode::OK, &status),
        Err(p) => p.into_response(),
    }
}

async fn kill_version(
    State(api): State<Api>,
    Path((name, version)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let result = async {
        api.app.check(&headers, Need::Admin)?;
        let version = parse_version(&version)?;
        Ok::<_, Problem>(api.supervisor.kill(&name, Some(version), false).await?)
    }
    .await;
    match result {
        Ok(killed) => json(StatusCode::OK, &serde_json::json!({ "killed": killed })),
        Err(p) => p.into_response(),
    }
}

async fn kill_service(
    State(api): State<Api>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let result = async {
        api.app.check(&headers, Need::Admin)?;
        let all = pairs(query.as_deref())
            .iter()
            .any(|(k, v)| k == "all" && (v.is_empty() || v == "true" || v == "1"));
        Ok::<_, Problem>(api.supervisor.kill(&name, None, all).await?)
    }
    .await;
    match result {
        Ok(killed) => json(StatusCode::OK, &serde_json::json!({ "killed": killed })),
        Err(p) => p.into_response(),
    }
}

/// The body of `PUT /api/v1/services/{name}/main`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MainBody {
    version: String,
}

async fn set_main(
    State(api): State<Api>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let result = async {
        api.app.check(&headers, Need::Admin)?;
        let req: MainBody = small_json(body, r#"{"version": "1.1.0"}"#).await?;
        let version = parse_version(&req.version)?;
        api.supervisor.set_main(&name, &version).await?;
        Ok::<_, Problem>(version)
    }
    .await;
    match result {
        Ok(version) => json(
            StatusCode::OK,
            &serde_json::json!({ "service": name, "main": version }),
        ),
        Err(p) => p.into_response(),
    }
}

/// The body of `POST .../scale`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScaleBody {
    instances: u32,
}

async fn scale(
    State(api): State<Api>,
    Path((name, version)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let result = async {
        api.app.check(&headers, Need::Admin)?;
        let version = parse_version(&version)?;
        let req: ScaleBody = small_json(body, r#"{"instances": 2}"#).await?;
        if req.instances > MAX_INSTANCES {
            return Err(Problem::from(Error::invalid_argument(
                "instances",
                format!("at most {MAX_INSTANCES} instances per version"),
            )));
        }
        Ok(api.supervisor.scale(&name, &version, req.instances).await?)
    }
    .await;
    match result {
        Ok(status) => json(StatusCode::OK, &status),
        Err(p) => p.into_response(),
    }
}

fn ndjson(line: &LogLine) -> Bytes {
    let mut v = serde_json::to_vec(line).unwrap_or_default();
    v.push(b'\n');
    Bytes::from(v)
}

async fn logs(
    State(api): State<Api>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let result = (|| {
        api.app.check(&headers, Need::Read)?;
        let mut version = None;
        let mut n = 100usize;
        let mut follow = false;
        for (k, v) in pairs(query.as_deref()) {
            match k.as_str() {
                "version" if !v.is_empty() => version = Some(parse_version(&v)?),
                "version" => {}
                "n" => {
                    n = v.parse().map_err(|_| {
                        Error::invalid_argument("n", format!("`{v}` is not a number of lines"))
                    })?;
                }
                "follow" => follow = v.is_empty() || v == "true" || v == "1",
                other => {
                    return Err(Problem::from(Error::invalid_argument(
                        "query",
                        format!(
                            "unknown parameter `{other}`; this route takes version, n and follow"
                        ),
                    )));
                }
            }
        }
        let (lines, receivers) = api.supervisor.logs(&name, version.as_ref(), n)?;
        Ok::<_, Problem>((lines, receivers, follow))
    })();
    let (lines, receivers, follow) = match result {
        Ok(r) => r,
        Err(p) => return p.into_response(),
    };
    let first = futures::stream::iter(lines.iter().map(ndjson).collect::<Vec<_>>());
    let body = if follow {
        let live = futures::stream::select_all(receivers.into_iter().map(|rx| {
            futures::stream::unfold(rx, |mut rx| async move {
                loop {
                    match rx.recv().await {
                        Ok(line) => return Some((line, rx)),
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                    }
                }
            })
            .boxed()
        }))
        .map(|l| ndjson(&l));
        Body::from_stream(first.chain(live).map(Ok::<_, std::convert::Infallible>))
    } else {
        Body::from_stream(first.map(Ok::<_, std::convert::Infallible>))
    };
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        body,
    )
        .into_response()
}
