//! The HTTP gateway: `POST /services/{name}/{entrypoint}` with a JSON object
//! of named arguments calls the entrypoint and answers with its result.
//!
//! The gateway routes with the host's own registry, in process: the
//! registry's routing index says which instances serve the version asked
//! for, and the call goes straight to one of them over a pooled wire
//! connection that offers only JSON, so that bodies pass through to the
//! instance and back untouched.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::Value;
use tokio::time::Instant;
use weft_core::codec::{Codec, CodecSet};
use weft_core::name::VersionSelector;
use weft_core::retry::{Next, Resend, RetryBudget, over_budget};
use weft_core::spec::EntrypointSpec;
use weft_core::{Address, Code, Error};
use weft_registry::Cache;
use weft_transport::{ConnectOptions, Connection, Pool};
use weft_wire::Headers;

use crate::http::body::read_body;
use crate::http::openapi::scalar_type;
use crate::http::scope::Call;
use crate::http::{App, Problem};

/// The header that names a version, as `?version=` does.
pub(crate) const VERSION_HEADER: &str = "weft-version";

/// The header that limits how long a call may take, in seconds.
pub(crate) const TIMEOUT_HEADER: &str = "weft-timeout";

/// The shortest `Weft-Timeout`: the wire carries deadlines in whole
/// microseconds, so anything shorter would be sent as no time at all.
pub(crate) const MIN_TIMEOUT_SECS: f64 = 0.000_001;

/// The longest `Weft-Timeout`, one day: a call that may take longer is a
/// job, not a call.
pub(crate) const MAX_TIMEOUT_SECS: f64 = 86_400.0;

/// How deeply arguments may nest. serde_json refuses more than 128 levels
/// anyway; checking first gives a clear answer, and leaves the instance,
/// which parses the same bytes, room to spare.
pub(crate) const MAX_DEPTH: usize = 100;

/// Retries a second the gateway's budget allows whatever the calls.
const RETRY_FLOOR: u64 = 10;

/// Retries the gateway's budget allows per call.
const RETRY_SHARE: f64 = 0.2;

/// How many instances one call may try to dial before giving up.
const MAX_DIALS: usize = 8;

/// Calls instances on behalf of HTTP clients.
#[derive(Debug)]
pub(crate) struct Gateway {
    /// The host registry's routing index.
    index: Arc<Cache>,
    /// Connections to instances, offering only JSON.
    pool: Pool,
    /// How many calls may be sent again; its window moves every second.
    retries: Arc<RetryBudget>,
}

impl Gateway {
    /// A gateway routing with `index`; `credential` is presented to
    /// instances in the wire preface.
    pub(crate) fn new(index: Arc<Cache>, credential: Option<String>) -> Self {
        let options = ConnectOptions {
            codecs: CodecSet::only(Codec::Json),
            credential,
            ..ConnectOptions::default()
        };
        let retries = Arc::new(RetryBudget::new(RETRY_SHARE, RETRY_FLOOR));
        let weak = Arc::downgrade(&retries);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                let Some(retries) = weak.upgrade() else {
                    return;
                };
                retries.tick();
            }
        });
        Gateway {
            index,
            pool: Pool::new(options),
            retries,
        }
    }

    /// Calls `service.entrypoint` of the version `selector` picks with JSON
    /// `args`, within `timeout` (the SDK's default when `None`), and
    /// returns the JSON result.
    pub(crate) async fn call(
        &self,
        service: &str,
        entrypoint: &str,
        selector: &VersionSelector,
        timeout: Option<Duration>,
        args: Bytes,
    ) -> Result<Bytes, Error> {
        let budget = timeout.unwrap_or(weft::DEFAULT_TIMEOUT);
        let deadline = Instant::now() + budget;
        let late = || {
            Error::deadline_exceeded(format!(
                "{service}.{entrypoint} did not answer within {budget:?}; raise Weft-Timeout or look at why it is slow (`weft logs {service}`)"
            ))
        };
        let mut resend = Resend::new();
        self.retries.deposit();
        loop {
            let sent = async {
                let conn = self.route(service, selector, deadline).await?;
                let headers = Headers {
                    service: service.to_owned(),
                    entrypoint: entrypoint.to_owned(),
                    // The time left now, not the budget: a resend must not
                    // promise the callee more time than remains.
                    timeout: Some(deadline.saturating_duration_since(Instant::now())),
                    ..Headers::default()
                };
                conn.call_with_deadline(headers, args.clone(), deadline)
                    .await
            };
            let e = match sent.await {
                Err(e) => e,
                ok => return ok,
            };
            // As the SDK does: what the callee certainly did not run (it
            // was going away) goes again, so that a rolling redeploy fails
            // no call; an idempotent call that was lost goes to another
            // instance, within the gateway's retry budget.
            let idempotent = || self.index.idempotent(service, selector, entrypoint);
            match resend.next(&e, idempotent, || self.retries.withdraw()) {
                Next::After(pause) => {
                    tracing::debug!(service, entrypoint, error = %e, "sending again");
                    let wake = Instant::now() + pause;
                    if wake >= deadline {
                        return Err(if e.is_not_run() { late() } else { e });
                    }
                    tokio::time::sleep_until(wake).await;
                }
                Next::OverBudget => return Err(over_budget(&e, "the gateway's")),
                Next::Fail if e.code() == Code::DeadlineExceeded && Instant::now() >= deadline => {
                    return Err(late());
                }
                Next::Fail => return Err(e),
            }
        }
    }

    /// A connection to one instance of the version `selector` picks: the
    /// less busy of two, skipping instances that cannot be dialled.
    async fn route(
        &self,
        service: &str,
        selector: &VersionSelector,
        deadline: Instant,
    ) -> Result<Connection, Error> {
        let mut unreachable: Vec<String> = Vec::new();
        let mut last_err = None;
        for _ in 0..MAX_DIALS {
            let resolved = match self.index.resolve(service, selector) {
                Ok(r) => r,
                Err(e) => return Err(last_err.unwrap_or(e)),
            };
            let skip = |id: &str| unreachable.iter().any(|u| u == id);
            let mut chosen = resolved.pick_candidate(|c| {
                if skip(&c.info.id) {
                    usize::MAX
                } else {
                    c.address
                        .as_ref()
                        .map_or(usize::MAX - 1, |a| self.pool.outstanding(a))
                }
            });
            if skip(&chosen.info.id) {
                match resolved.candidates().iter().find(|c| !skip(&c.info.id)) {
                    Some(c) => chosen = c,
                    None => break,
                }
            }
            let parsed: Address;
            let address = match &chosen.address {
                Some(a) => a,
                None => {
                    // Fails, saying why the registered address does not parse.
                    parsed = chosen.info.address.parse()?;
                    &parsed
                }
            };
            // A connected instance answers at once, before the timer is
            // ever polled; only a dial waits on it.
            let dialed = tokio::time::timeout_at(deadline, self.pool.get(address))
                .await
                .unwrap_or_else(|_| {
                    Err(Error::deadline_exceeded(
                        "the deadline passed while connecting",
                    ))
                });
            match dialed {
                Ok(conn) => return Ok(conn),
                Err(e) if e.code() == Code::Unavailable => {
                    tracing::debug!(instance = %chosen.info.id, error = %e, "instance unreachable; trying another");
                    unreachable.push(chosen.info.id.clone());
                    last_err = Some(Error::instance_unreachable(service, &chosen.info.id, &e));
                }
                Err(e) => return Err(e),
            }
        }
        Err(last_err.unwrap_or_else(|| {
            Error::unavailable(format!("no instance of `{service}` could be reached"))
        }))
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
    selector(from_query, headers)
}

/// The version `?version=` (`from_query`) or `Weft-Version` names.
fn selector(from_query: Option<String>, headers: &HeaderMap) -> Result<VersionSelector, Problem> {
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
        .filter(|s| (MIN_TIMEOUT_SECS..=MAX_TIMEOUT_SECS).contains(s))
        // The wire counts whole microseconds: round to them here, so the
        // smallest value allowed is one, never zero.
        .map(|s| (s * 1e6).round() as u64)
        .filter(|micros| *micros > 0)
        .map(|micros| Some(Duration::from_micros(micros)))
        .ok_or_else(|| {
            Problem::from(Error::invalid_argument(
                "timeout",
                format!(
                    "the Weft-Timeout header must be a number of seconds from one microsecond \
                     (0.000001) to {MAX_TIMEOUT_SECS} (a day), like 2.5"
                ),
            ))
        })
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

/// `POST /services/{name}/{entrypoint}`, and `POST /services/{name}/docs`
/// for an entrypoint called `docs`.
pub(crate) async fn call(
    Call {
        service,
        entrypoint,
    }: Call,
    State(app): State<Arc<App>>,
    query: Result<Query<GatewayQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let result = async {
        let selector = version_selector(query, &headers)?;
        let timeout = timeout(&headers)?;
        let mut args = read_body(body, &headers, app.max_body, app.body_timeout).await?;
        if args.iter().all(u8::is_ascii_whitespace) {
            args = Bytes::from_static(b"{}");
        }
        check_arguments(&args)?;
        Ok::<_, Problem>(
            app.gateway
                .call(&service, &entrypoint, &selector, timeout, args)
                .await?,
        )
    }
    .await;
    json_answer(result)
}

/// `GET /services/{name}/{entrypoint}?param=value` for an entrypoint
/// marked `#[entrypoint(get)]`: each query value is read as its
/// parameter's schema type says, and the call goes on as a `POST` with
/// those arguments would.
pub(crate) async fn call_get(
    Call {
        service,
        entrypoint,
    }: Call,
    State(app): State<Arc<App>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let result = async {
        let mut pairs: Vec<(String, String)> =
            form_urlencoded::parse(query.as_deref().unwrap_or("").as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
        let mut version = None;
        pairs.retain(|(k, v)| {
            if k == "version" {
                version = Some(v.clone());
                false
            } else {
                true
            }
        });
        let selector = selector(version, &headers)?;
        let timeout = timeout(&headers)?;
        let (version, spec) = {
            let registry = app.shared.registry.lock();
            let (version, spec) = registry.spec(&service, &selector)?;
            (version.clone(), spec.clone())
        };
        let Some(ep) = spec.entrypoint(&entrypoint) else {
            return Err(Problem::from(Error::not_found(format!(
                "{service} {version} has no entrypoint `{entrypoint}`; GET /services/{service}/docs lists them"
            ))));
        };
        if !ep.read_only {
            return Err(Problem::from(Error::invalid_argument(
                "method",
                format!(
                    "{service}.{entrypoint} is not read-only, so it takes only POST with a JSON \
                     object of named arguments; mark it `#[entrypoint(get)]` to allow GET"
                ),
            ))
            .status(StatusCode::METHOD_NOT_ALLOWED)
            .allow("POST"));
        }
        let args = query_arguments(&service, ep, pairs)?;
        let args = Bytes::from(serde_json::to_vec(&args).unwrap_or_default());
        check_arguments(&args)?;
        Ok::<_, Problem>(
            app.gateway
                .call(
                    &service,
                    &entrypoint,
                    &VersionSelector::Exact(version),
                    timeout,
                    args,
                )
                .await?,
        )
    }
    .await;
    json_answer(result)
}

/// The named arguments of a GET call, each query value read as its
/// parameter's schema type says.
fn query_arguments(
    service: &str,
    ep: &EntrypointSpec,
    pairs: Vec<(String, String)>,
) -> Result<serde_json::Map<String, Value>, Problem> {
    let mut args = serde_json::Map::new();
    for (name, text) in pairs {
        let Some(param) = ep.params.iter().find(|p| p.name == name) else {
            let names: Vec<String> = ep.params.iter().map(|p| format!("`{}`", p.name)).collect();
            let takes = if names.is_empty() {
                "it takes no parameters".to_owned()
            } else {
                format!("it takes {} (and `version`)", names.join(", "))
            };
            return Err(Problem::from(Error::invalid_argument(
                name.clone(),
                format!(
                    "unknown query parameter `{name}` for {service}.{}: {takes}",
                    ep.name
                ),
            )));
        };
        if args.contains_key(&name) {
            return Err(Problem::from(Error::invalid_argument(
                name.clone(),
                format!("`{name}` is in the query twice; give it once"),
            )));
        }
        let value = query_value(&param.schema, &text).map_err(|expected| {
            Problem::from(Error::invalid_argument(
                name.clone(),
                format!("query parameter `{name}` must be {expected}; got `{text}`"),
            ))
        })?;
        args.insert(name, value);
    }
    Ok(args)
}

/// `text` as a value of `schema`'s type, or what was expected.
fn query_value(schema: &Value, text: &str) -> Result<Value, &'static str> {
    let trimmed = text.trim();
    match scalar_type(schema) {
        Some("string") => Ok(Value::String(text.to_owned())),
        Some("integer") => trimmed
            .parse::<i64>()
            .map(Value::from)
            .or_else(|_| trimmed.parse::<u64>().map(Value::from))
            .map_err(|_| "a whole number, like 3"),
        Some("number") => trimmed
            .parse::<f64>()
            .ok()
            .filter(|n| n.is_finite())
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .ok_or("a number, like 2.5"),
        Some("boolean") => match trimmed {
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            _ => Err("`true` or `false`"),
        },
        // Objects, arrays and mixed types travel as JSON text; a bare word
        // is a string (an enum variant, say).
        _ => Ok(serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))),
    }
}

fn json_answer(result: Result<Bytes, Problem>) -> Response {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_follow_the_schema_type() {
        let int = serde_json::json!({ "type": "integer", "format": "uint8" });
        assert_eq!(query_value(&int, " 7 "), Ok(Value::from(7)));
        assert!(query_value(&int, "7.5").is_err());
        assert!(query_value(&int, "seven").is_err());
        let opt = serde_json::json!({ "type": ["number", "null"] });
        assert_eq!(query_value(&opt, "2.5"), Ok(serde_json::json!(2.5)));
        assert!(query_value(&opt, "NaN").is_err());
        let flag = serde_json::json!({ "type": "boolean" });
        assert_eq!(query_value(&flag, "false"), Ok(Value::Bool(false)));
        assert!(query_value(&flag, "yes").is_err());
        let text = serde_json::json!({ "type": "string" });
        assert_eq!(query_value(&text, "12"), Ok(Value::from("12")));
        let list = serde_json::json!({ "type": "array", "items": { "type": "integer" } });
        assert_eq!(query_value(&list, "[1,2]"), Ok(serde_json::json!([1, 2])));
    }

    #[test]
    fn timeouts_that_round_to_nothing_or_overflow_are_refused() {
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(TIMEOUT_HEADER, HeaderValue::from_str(v).unwrap());
            timeout(&h)
        };
        assert_eq!(with("2.5").unwrap(), Some(Duration::from_millis(2500)));
        assert_eq!(with("0.000001").unwrap(), Some(Duration::from_micros(1)));
        for bad in [
            "0",
            "0.0000004",
            "-1",
            "NaN",
            "inf",
            "86401",
            "1e300",
            "soon",
        ] {
            let e = with(bad).unwrap_err();
            assert_eq!(e.error.code(), Code::InvalidArgument, "{bad}");
            assert_eq!(e.error.field(), Some("timeout"), "{bad}");
        }
    }

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
