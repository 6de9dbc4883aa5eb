//! Reading request bodies: bounded in size and in time, so that neither a
//! large nor a slow client holds the host.

use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, header};
use bytes::Bytes;
use http_body_util::{BodyExt as _, LengthLimitError, Limited};
use serde::de::DeserializeOwned;
use weft_core::{Code, Error};

use crate::http::Problem;

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

/// Reads a JSON body of at most `limit` bytes as a `T`; a body of another
/// shape is refused with `example` of one that works.
pub(crate) async fn read_json<T: DeserializeOwned>(
    body: Body,
    headers: &HeaderMap,
    limit: usize,
    timeout: Duration,
    example: &str,
) -> Result<T, Problem> {
    let bytes = read_body(body, headers, limit, timeout).await?;
    serde_json::from_slice(&bytes).map_err(|e| {
        Problem::from(Error::invalid_argument(
            "body",
            format!("the body is not what this route takes ({e}); send {example}"),
        ))
    })
}
