//! Errors as RFC 9457 `application/problem+json` answers, the one error
//! body of every HTTP route of the host.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use weft_core::{Code, Error};

use crate::auth::Denied;

/// An [`Error`] as an RFC 9457 `application/problem+json` response, with the
/// status of its code unless told otherwise.
#[derive(Debug)]
pub(crate) struct Problem {
    pub(crate) error: Error,
    status: Option<StatusCode>,
    /// For 401 and 403: the scope that would have been enough.
    scope: Option<String>,
    /// For 405: the methods the resource takes (the `Allow` header).
    allow: Option<&'static str>,
}

impl Problem {
    /// Answers with `status` instead of the one of the error's code.
    pub(crate) fn status(mut self, status: StatusCode) -> Self {
        self.status = Some(status);
        self
    }

    /// Answers with an `Allow` header listing `methods` (for 405).
    pub(crate) fn allow(mut self, methods: &'static str) -> Self {
        self.allow = Some(methods);
        self
    }
}

impl From<Error> for Problem {
    fn from(error: Error) -> Self {
        Problem {
            error,
            status: None,
            scope: None,
            allow: None,
        }
    }
}

impl From<Denied> for Problem {
    fn from(d: Denied) -> Self {
        Problem {
            error: d.error,
            status: None,
            scope: Some(d.scope),
            allow: None,
        }
    }
}

#[derive(Serialize)]
struct ProblemBody<'a> {
    #[serde(rename = "type")]
    type_: &'static str,
    title: &'static str,
    status: u16,
    code: Code,
    detail: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    service: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    entrypoint: Option<&'a str>,
    /// The application error's kind; `type` is taken by RFC 9457.
    #[serde(skip_serializing_if = "Option::is_none")]
    kind: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<&'a str>,
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let code = self.error.code();
        let overloaded = self.error.is_overloaded();
        let status = self.status.unwrap_or_else(|| {
            if overloaded {
                // Not too large: too many at once; the client may come back.
                return StatusCode::TOO_MANY_REQUESTS;
            }
            StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
        });
        let body = ProblemBody {
            type_: "about:blank",
            title: status.canonical_reason().unwrap_or("Error"),
            status: status.as_u16(),
            code,
            detail: self.error.message(),
            field: self.error.field(),
            service: self.error.service(),
            entrypoint: self.error.entrypoint(),
            kind: self.error.kind(),
            scope: self.scope.as_deref(),
        };
        let json = serde_json::to_vec(&body).unwrap_or_default();
        let mut response = (status, json).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if overloaded && status == StatusCode::TOO_MANY_REQUESTS {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if let Some(methods) = self.allow {
            headers.insert(header::ALLOW, HeaderValue::from_static(methods));
        }
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"weft\""),
            );
        }
        response
    }
}

/// The problem code for an HTTP status that something other than weft's own
/// handlers chose (an extractor's rejection, say).
fn code_for(status: StatusCode) -> Code {
    match status.as_u16() {
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        404 => Code::NotFound,
        408 | 504 => Code::DeadlineExceeded,
        413 | 429 => Code::ResourceExhausted,
        503 => Code::Unavailable,
        400..=499 => Code::InvalidArgument,
        _ => Code::Internal,
    }
}

/// The largest error body rewritten as a problem; rejections are a line.
const MAX_PLAIN_ERROR: usize = 64 * 1024;

/// Middleware: an error answer that is not yet `application/problem+json`
/// (a rejection from axum's extractors, which answer in plain text) becomes
/// one, its text the `detail`, its status kept. Every route gets the same
/// error body this way, including ones added later.
pub(crate) async fn plain_errors_as_problems(response: Response) -> Response {
    let status = response.status();
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/problem+json"));
    if !(status.is_client_error() || status.is_server_error()) || is_problem {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = match axum::body::to_bytes(body, MAX_PLAIN_ERROR).await {
        Ok(bytes) if !bytes.is_empty() => String::from_utf8_lossy(&bytes).trim().to_owned(),
        _ => status.canonical_reason().unwrap_or("error").to_owned(),
    };
    let code = code_for(status);
    let detail = if status == StatusCode::BAD_REQUEST && text.contains("path") {
        format!("{text}; check the URL's percent-encoding")
    } else {
        text
    };
    let mut response = Problem::from(Error::new(code, detail))
        .status(status)
        .into_response();
    if let Some(allow) = parts.headers.get(header::ALLOW) {
        response.headers_mut().insert(header::ALLOW, allow.clone());
    }
    response
}
