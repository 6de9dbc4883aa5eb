//! The deployment part of `/api/v1`, which `weft deploy`, `ls`, `main`,
//! `kill`, `scale` and `logs` use:
//!
//! - `PUT|POST /api/v1/services/{name}/versions/{version}?instances=N&env=K%3DV...`
//!   with the executable as the body (`application/octet-stream`, up to
//!   512 MiB): stores it, starts the instances (or replaces those of a
//!   version deployed before, one at a time) and answers `200` with a
//!   `VersionStatus` once they
//!   have registered; `400` with the instance's last lines of output when
//!   one exits first. In a cluster, `on=a,b` (or `on=all`) deploys on
//!   those hosts instead, and answers what each did (`Placed`).
//! - `POST /api/v1/services/{name}/versions/{version}/check` with the
//!   same query and no body: `204` when a deploy would be taken (token,
//!   name, version, environment, hosts named), the error it would get
//!   otherwise; nothing changes.
//! - `DELETE /api/v1/services/{name}/versions/{version}` stops a version
//!   and forgets it (in a cluster, on every host that runs it); `DELETE /api/v1/services/{name}[?all=true]` stops the
//!   main version (or every version): answers `{"killed": ["1.0.0"]}`.
//! - `PUT /api/v1/services/{name}/main` with `{"version": "1.1.0"}`.
//! - `POST /api/v1/services/{name}/versions/{version}/scale` with
//!   `{"instances": 3}`: answers the version's status once new instances
//!   have registered; in a cluster, a version that other hosts run too
//!   runs that many instances on each of them, and the answer says what
//!   each host did.
//! - `GET /api/v1/deployments`: every version, deployed (on this host or,
//!   in a cluster, on another; each with its `host`) or started by hand
//!   (`external`), as a list of statuses.
//! - `GET /api/v1/services/{name}/logs?version=V&n=100&follow=true`: the
//!   newest lines of output, one JSON object per line
//!   (`application/x-ndjson`); with `follow`, the response goes on with new
//!   lines.
//!
//! Mutations need an `admin` token and reads any token, when the host
//! requires tokens.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use bytes::Bytes;
use futures::StreamExt as _;
use weft_core::Error;
use weft_core::name::Version;
use weft_host_api::deployments::{
    DeployAnswer, Killed, LogLine, MAX_INSTANCES, MainRequest, MainSet, ScaleRequest,
};

use super::{SMALL_BODY, json, query_pairs};
use crate::http::body::read_json;
use crate::http::scope::{Admin, Read};
use crate::http::{App, Problem};
use crate::supervisor::{DeployRequest, MAX_ARTIFACT, check_env};

pub(super) fn routes() -> Router<Arc<App>> {
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
        .route(
            "/api/v1/services/{name}/versions/{version}/check",
            post(check_deploy),
        )
        .route("/api/v1/services/{name}", delete(kill_service))
        .route("/api/v1/services/{name}/main", put(set_main))
        .route("/api/v1/services/{name}/logs", get(logs))
}

fn parse_version(text: &str) -> Result<Version, Error> {
    Version::parse(text).map_err(|e| {
        Error::invalid_argument(
            "version",
            format!("`{text}` is not a semver version ({e}); write it like 1.2.0"),
        )
    })
}

async fn deployments(_: Read, State(app): State<Arc<App>>) -> Result<Response, Problem> {
    Ok(json(StatusCode::OK, &app.supervisor.list().await?))
}

/// What a deploy's query asks for.
struct DeployQuery {
    instances: u32,
    env: Vec<(String, String)>,
    on: Option<String>,
}

/// Reads a deploy's name, version and query, and checks what can be
/// checked before the executable is read: the environment and, with
/// `on`, that the hosts named are up.
async fn deploy_query(
    app: &App,
    name: &str,
    version: &str,
    query: Option<&str>,
) -> Result<(Version, DeployQuery, Option<Vec<String>>), Error> {
    weft_core::name::validate(name)?;
    let version = parse_version(version)?;
    let mut asked = DeployQuery {
        instances: 1,
        env: Vec::new(),
        on: None,
    };
    for (k, v) in query_pairs(query) {
        match k.as_str() {
            "instances" => {
                asked.instances = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_INSTANCES).contains(n))
                    .ok_or_else(|| {
                        Error::invalid_argument(
                            "instances",
                            format!("`{v}` is not a number of instances from 1 to {MAX_INSTANCES}"),
                        )
                    })?;
            }
            "env" => {
                let (key, value) = v.split_once('=').ok_or_else(|| {
                    Error::invalid_argument(
                        "env",
                        format!("`{v}` has no `=`; write it as NAME=VALUE"),
                    )
                })?;
                asked.env.push((key.to_owned(), value.to_owned()));
            }
            "on" => asked.on = Some(v),
            other => {
                return Err(Error::invalid_argument(
                    "query",
                    format!(
                        "unknown parameter `{other}`; this route takes instances=N, env=NAME%3DVALUE and on=HOST,HOST"
                    ),
                ));
            }
        }
    }
    check_env(&asked.env)?;
    // Before the upload is read: a host named that is not there fails at once.
    let hosts = match &asked.on {
        Some(on) => Some(app.supervisor.hosts_on(on).await?),
        None => None,
    };
    Ok((version, asked, hosts))
}

/// A deploy's checks without the executable: `weft deploy` asks before it
/// builds, so a host that is down or a token it refuses is said at once.
async fn check_deploy(
    _: Admin,
    State(app): State<Arc<App>>,
    Path((name, version)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> Result<StatusCode, Problem> {
    deploy_query(&app, &name, &version, query.as_deref()).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn deploy(
    _: Admin,
    State(app): State<Arc<App>>,
    Path((name, version)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<axum::Json<DeployAnswer>, Problem> {
    let (version, asked, hosts) = deploy_query(&app, &name, &version, query.as_deref()).await?;
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
    let staged = app
        .supervisor
        .stage(&name, &version, body.into_data_stream(), MAX_ARTIFACT)
        .await?;
    let request = DeployRequest {
        service: name,
        version,
        instances: asked.instances,
        env: asked.env,
    };
    let answer = match hosts {
        Some(hosts) => DeployAnswer::Hosts(app.supervisor.deploy_on(request, staged, hosts).await?),
        None => DeployAnswer::Here(app.supervisor.deploy(request, staged).await?),
    };
    Ok(axum::Json(answer))
}

async fn kill_version(
    _: Admin,
    State(app): State<Arc<App>>,
    Path((name, version)): Path<(String, String)>,
) -> Result<axum::Json<Killed>, Problem> {
    let version = parse_version(&version)?;
    Ok(axum::Json(
        app.supervisor.kill_everywhere(&name, &version).await?,
    ))
}

async fn kill_service(
    _: Admin,
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<axum::Json<Killed>, Problem> {
    let all = query_pairs(query.as_deref())
        .iter()
        .any(|(k, v)| k == "all" && (v.is_empty() || v == "true" || v == "1"));
    Ok(axum::Json(
        app.supervisor.kill_service_everywhere(&name, all).await?,
    ))
}

async fn set_main(
    _: Admin,
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<axum::Json<MainSet>, Problem> {
    let req: MainRequest = read_json(
        body,
        &headers,
        SMALL_BODY,
        app.body_timeout,
        r#"{"version": "1.1.0"}"#,
    )
    .await?;
    let version = parse_version(&req.version)?;
    app.supervisor.set_main(&name, &version).await?;
    Ok(axum::Json(MainSet {
        service: name,
        main: version,
    }))
}

async fn scale(
    _: Admin,
    State(app): State<Arc<App>>,
    Path((name, version)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<axum::Json<DeployAnswer>, Problem> {
    let version = parse_version(&version)?;
    let req: ScaleRequest = read_json(
        body,
        &headers,
        SMALL_BODY,
        app.body_timeout,
        r#"{"instances": 2}"#,
    )
    .await?;
    if req.instances > MAX_INSTANCES {
        return Err(Problem::from(Error::invalid_argument(
            "instances",
            format!("at most {MAX_INSTANCES} instances per version"),
        )));
    }
    Ok(axum::Json(
        app.supervisor
            .scale_everywhere(&name, &version, req.instances)
            .await?,
    ))
}

fn ndjson(line: &LogLine) -> Bytes {
    let mut v = serde_json::to_vec(line).unwrap_or_default();
    v.push(b'\n');
    Bytes::from(v)
}

async fn logs(
    _: Read,
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, Problem> {
    let mut version = None;
    let mut n = 100usize;
    let mut follow = false;
    for (k, v) in query_pairs(query.as_deref()) {
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
                    format!("unknown parameter `{other}`; this route takes version, n and follow"),
                )));
            }
        }
    }
    let (lines, receivers) = app.supervisor.logs(&name, version.as_ref(), n)?;
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
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        body,
    )
        .into_response())
}
