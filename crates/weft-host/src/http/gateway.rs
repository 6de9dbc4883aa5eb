//! The HTTP gateway: `POST /services/{name}/{entrypoint}` with a JSON object
//! of named arguments calls the entrypoint and answers with its result.
//!
//! The gateway is an ordinary weft client of its own host, offering only
//! JSON: instances then answer in JSON and the payload passes through
//! without being decoded.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body_util::{BodyExt as _, LengthLimitError, Limited};
use serde::Deserialize;
use tokio::sync::OnceCell;
use weft::codec::{Codec, CodecSet};
use weft::name::{Version, VersionSelector};
use weft::spec::ServiceSpec;
use weft::{Address, Client, ClientOptions};
use weft_core::{Code, Error};

use crate::auth::Need;
use crate::http::{App, Problem};
use crate::state::Shared;

/// The header that names a version, as `?version=` does.
pub(crate) const VERSION_HEADER: &str = "weft-version";

/// The header that limits how long a call may take, in seconds.
pub(crate) const TIMEOUT_HEADER: &str = "weft-timeout";

/// How deeply arguments may nest. serde_json refuses more than 128 levels
/// anyway; checking first gives a clear answer, and leaves the instance,
/// which parses the same bytes, room to spare.
pub(crate) const MAX_DEPTH: usize = 100;

/// How long the gateway waits for its registry cache to catch up with the
/// host's registry, which it always trails by a moment.
const CATCH_UP: Duration = Duration::from_secs(1);

/// The gateway's connection to its own host, made on first use (the host
/// must be accepting connections by then).
#[derive(Debug)]
pub(crate) struct Gateway {
    host: String,
    /// The credential for the host's wire port, when it requires one.
    token: Option<String>,
    client: OnceCell<Client>,
}

impl Gateway {
    /// A gateway for the host listening on `address`.
    pub(crate) fn new(address: &Address, token: Option<String>) -> Self {
        let host = match address {
            // A host listening on every interface is reachable on loopback.
            Address::Tcp(hp) => hp
                .replacen("0.0.0.0:", "127.0.0.1:", 1)
                .replacen("[::]:", "[::1]:", 1),
            Address::Unix(path) => format!("unix://{}", path.display()),
        };
        Gateway {
            host,
            token,
            client: OnceCell::new(),
        }
    }

    async fn client(&self) -> Result<&Client, Error> {
        self.client
            .get_or_try_init(|| {
                let mut options = ClientOptions::default().codecs(CodecSet::only(Codec::Json));
                options.token = self.token.clone();
                Client::connect_with(&self.host, options)
            })
            .await
            .map_err(|e| {
                Error::unavailable(format!(
                    "the gateway cannot reach its own host's registry: {}; try again",
                    e.message()
                ))
            })
    }

    /// The spec of the version of `service` that `selector` picks, by the
    /// host's registry, with that version.
    pub(crate) async fn spec(
        &self,
        shared: &Shared,
        service: &str,
        selector: &VersionSelector,
    ) -> Result<(Version, ServiceSpec), Error> {
        let registry = shared.registry.lock();
        let (version, spec) = registry.spec(service, selector)?;
        Ok((version.clone(), spec.clone()))
    }

    /// Waits until the client's cache resolves what the host's registry
    /// already resolves; returns whether it does now.
    async fn caught_up(&self, shared: &Shared, service: &str, selector: &VersionSelector) -> bool {
        let Ok(client) = self.client().await else {
            return false;
        };
        let wanted = selector.to_string();
        let deadline = tokio::time::Instant::now() + CATCH_UP;
        if client.spec(service, &wanted).is_ok()
            || shared.registry.lock().spec(service, selector).is_err()
        {
            return false;
        }
        // The watch event is on its way over loopback; a bounded poll is
        // simpler than plumbing a notification out of the SDK's cache.
        while tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
            if client.spec(service, &wanted).is_ok() {
                return true;
            }
        }
        false
    }
}

/// The query string of gateway and documentation requests.
#[derive(Debug, Deserialize)]
pub(crate) struct GatewayQuery {
    version: Option<String>,
}

/// The version a request names with `?version=` or `Weft-Version`.
pub(crate) fn version_selector(
    query: Result<Query<GatewayQuery>, QueryRejection>,
    headers: &HeaderMap,
) -> Result<VersionSelector, Problem> {
    let from_query = match query {
        Ok(Query(q)) => q.version,
        Err(e) => {
            return Err(Problem::from(Error::invalid_argument(
                "version",
                format!(
                    "{}; name a version with ?version=1.2.0 or ?version=^1.2",
                    e.body_text()
                ),
            )));
        }
    };
    let from_header = match headers.get(VERSION_HEADER) {
        None => None,
        Some(v) => Some(v.to_str().map(str::to_owned).map_err(|_| {
            Problem::from(Error::invalid_argument(
                "version",
                "the Weft-Version header is not text; send a version like 1.2.0 or ^1.2",
            ))
        })?),
    };
    let text = match (from_query, from_header) {
        (Some(q), Some(h)) if q.trim() != h.trim() => {
            return Err(Problem::from(Error::invalid_argument(
                "version",
                format!("?version={q} and the Weft-Version header ({h}) disagree; send only one"),
            )));
        }
        (Some(v), _) | (None, Some(v)) => v,
        (None, None) => return Ok(VersionSelector::Main),
    };
    text.parse().map_err(Problem::from)
}

fn timeout(headers: &HeaderMap) -> Result<Option<Duration>, Problem> {
    let Some(value) = headers.get(TIMEOUT_HEADER) else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .map(Some)
        .ok_or_else(|| {
            Problem::from(Error::invalid_argument(
                "timeout",
                "the Weft-Timeout header must be a positive number of seconds, like 2.5",
            ))
        })
}

/// Reads a request body of at most `limit` bytes, giving up on a client
/// that sends too slowly.
pub(crate) async fn read_body(
    body: Body,
    headers: &HeaderMap,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, Problem> {
    let too_large = || {
        Problem::from(Error::resource_exhausted(format!(
            "the request body is larger than the limit of {limit} bytes; send less, \
             or raise the host's limit (HostConfig::max_body)"
        )))
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    match tokio::time::timeout(timeout, Limited::new(body, limit).collect()).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => Err(too_large()),
        Ok(Err(e)) => Err(Problem::from(Error::new(
            Code::InvalidArgument,
            format!("the request body could not be read: {e}"),
        ))),
        Err(_) => Err(Problem::from(Error::deadline_exceeded(format!(
            "the request body did not arrive within {timeout:?}; send it at once"
        )))
        .status(StatusCode::REQUEST_TIMEOUT)),
    }
}

/// Checks that `body` is one JSON object nested at most [`MAX_DEPTH`] deep.
pub(crate) fn check_arguments(body: &[u8]) -> Result<(), Error> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in body {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(Error::new(
                        Code::InvalidArgument,
                        format!("the arguments nest deeper than {MAX_DEPTH} levels; flatten them"),
                    ));
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(body) {
        return Err(Error::new(
            Code::InvalidArgument,
            format!(
                "the body is not valid JSON ({e}); send a JSON object of named arguments, like {{\"n\": 3}}"
            ),
        ));
    }
    if first != Some(&b'{') {
        return Err(Error::new(
            Code::InvalidArgument,
            "the arguments must be a JSON object of named parameters, like {\"n\": 3} (or {} for none)",
        ));
    }
    Ok(())
}

/// `POST /services/{name}/{entrypoint}`.
pub(crate) async fn call(
    State(app): State<Arc<App>>,
    path: Result<Path<(String, String)>, PathRejection>,
    query: Result<Query<GatewayQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (service, entrypoint) = match path {
        Ok(Path(p)) => p,
        Err(e) => return Problem::from(Error::not_found(e.body_text())).into_response(),
    };
    respond(call_inner(&app, &service, &entrypoint, query, &headers, body).await)
}

/// `POST /services/{name}/docs`: an entrypoint called `docs`.
pub(crate) async fn call_docs(
    State(app): State<Arc<App>>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<GatewayQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let service = match path {
        Ok(Path(p)) => p,
        Err(e) => return Problem::from(Error::not_found(e.body_text())).into_response(),
    };
    respond(call_inner(&app, &service, "docs", query, &headers, body).await)
}

fn respond(result: Result<Bytes, Problem>) -> Response {
    match result {
        Ok(json) => {
            let mut response = json.into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            response
        }
        Err(p) => p.into_response(),
    }
}

async fn call_inner(
    app: &App,
    service: &str,
    entrypoint: &str,
    query: Result<Query<GatewayQuery>, QueryRejection>,
    headers: &HeaderMap,
    body: Body,
) -> Result<Bytes, Problem> {
    // Who is asking comes before reading what they send.
    app.check(headers, Need::Call(service, entrypoint))?;
    let selector = version_selector(query, headers)?;
    let timeout = timeout(headers)?;
    let mut args = read_body(body, headers, app.max_body, app.body_timeout).await?;
    if args.iter().all(u8::is_ascii_whitespace) {
        args = Bytes::from_static(b"{}");
    }
    check_arguments(&args)?;
    let client = app.gateway.client().await?;
    let version = selector.to_string();
    let send = |args: Bytes| {
        let mut request = client.request(service, entrypoint).version(&version);
        if let Some(t) = timeout {
            request = request.timeout(t);
        }
        request.send_raw(Codec::Json, args)
    };
    match send(args.clone()).await {
        Ok(reply) => Ok(reply),
        // Not found or unavailable before reaching an instance may only mean
        // the cache has not yet heard of an instance the host already has.
        Err(e)
            if matches!(e.code(), Code::NotFound | Code::Unavailable)
                && app.gateway.caught_up(&app.shared, service, &selector).await =>
        {
            send(args).await.map_err(Problem::from)
        }
        Err(e) => Err(Problem::from(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_must_be_a_shallow_object() {
        check_arguments(br#"{"a": [1, {"b": "}}}]]]"}], "c": "\"{"}"#).unwrap();
        check_arguments(b"  {}  ").unwrap();
        for bad in [
            &b"[1]"[..],
            b"3",
            b"\"x\"",
            b"{",
            b"{\"a\":}",
            b"{} {}",
            b"null",
        ] {
            let e = check_arguments(bad).unwrap_err();
            assert_eq!(
                e.code(),
                Code::InvalidArgument,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let deep = format!(
            "{{\"a\":{}{}}}",
            "[".repeat(MAX_DEPTH),
            "]".repeat(MAX_DEPTH)
        );
        let e = check_arguments(deep.as_bytes()).unwrap_err();
        assert!(e.message().contains("nest deeper"), "{e}");
        let ok = format!(
            "{{\"a\":{}{}}}",
            "[".repeat(MAX_DEPTH - 1),
            "]".repeat(MAX_DEPTH - 1)
        );
        check_arguments(ok.as_bytes()).unwrap();
        // Far too deep for any recursive parser: refused without recursing.
        let huge = "[".repeat(1_000_000);
        assert!(check_arguments(huge.as_bytes()).is_err());
    }
}
