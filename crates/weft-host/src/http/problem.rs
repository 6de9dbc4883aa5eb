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
}

impl Problem {
    /// Answers with `status` instead of the one of the error's code.
    pub(crate) fn status(mut self, status: StatusCode) -> Self {
        self.status = Some(status);
        self
    }
}

impl From<Error> for Problem {
    fn from(error: Error) -> Self {
        Problem {
            error,
            status: None,
            scope: None,
        }
    }
}

impl From<Denied> for Problem {
    fn from(d: Denied) -> Self {
        Problem {
            error: d.error,
            status: None,
            scope: Some(d.scope),
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
        let status = self.status.unwrap_or_else(|| {
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
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"weft\""),
            );
        }
        response
    }
}
