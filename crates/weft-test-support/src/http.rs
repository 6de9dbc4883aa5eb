//! One HTTP client for tests.

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderValue};
use hyper::{HeaderMap, Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;

use crate::{PATIENCE, poll};

/// An HTTP/1.1 client of one `host:port`: one connection per request, so
/// that a test sees exactly what the server does with each.
///
/// ```no_run
/// # async fn example() {
/// use weft_test_support::Http;
///
/// let http = Http::new("127.0.0.1:7400").token("weft_...");
/// let answer = http.post_json("/services/echo/echo", &serde_json::json!({ "text": "hi" })).await;
/// assert_eq!(answer.status, 200);
/// assert_eq!(answer.json(), "hi");
/// http.get("/services/nope/x").await.problem(404, "not_found");
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Http {
    hostport: String,
    token: Option<String>,
}

impl Http {
    /// A client of the server at `hostport` (`127.0.0.1:PORT`).
    pub fn new(hostport: impl Into<String>) -> Http {
        Http {
            hostport: hostport.into(),
            token: None,
        }
    }

    /// Sends `Authorization: Bearer <token>` with every request that does
    /// not set `Authorization` itself.
    pub fn token(mut self, token: impl Into<String>) -> Http {
        self.token = Some(token.into());
        self
    }

    /// The server's `host:port`.
    pub fn hostport(&self) -> &str {
        &self.hostport
    }

    /// `http://host:port{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.hostport)
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> Answer {
        self.request(Method::GET, path, &[], Bytes::new()).await
    }

    /// `POST path` with `body` as it is, and no content type.
    pub async fn post(&self, path: &str, body: impl Into<Bytes>) -> Answer {
        self.request(Method::POST, path, &[], body).await
    }

    /// `POST path` with `body` as JSON.
    pub async fn post_json(&self, path: &str, body: &Value) -> Answer {
        let headers = [("content-type", "application/json")];
        self.request(Method::POST, path, &headers, body.to_string())
            .await
    }

    /// `DELETE path`.
    pub async fn delete(&self, path: &str) -> Answer {
        self.request(Method::DELETE, path, &[], Bytes::new()).await
    }

    /// One request; panics if the server cannot be reached or does not
    /// answer within [`PATIENCE`].
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Answer {
        let what = format!("{method} {path}");
        match tokio::time::timeout(PATIENCE, self.try_request(method, path, headers, body)).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(e)) => panic!("{what} to {}: {e}", self.hostport),
            Err(_) => panic!("{what} to {}: no answer within {PATIENCE:?}", self.hostport),
        }
    }

    /// One request, unbounded, with failures to connect or to read the
    /// answer returned: for tests in which the server may go away.
    pub async fn try_request(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Result<Answer, String> {
        let stream = tokio::net::TcpStream::connect(&self.hostport)
            .await
            .map_err(|e| format!("cannot connect: {e}"))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake failed: {e}"))?;
        let driver = tokio::spawn(conn);
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, &self.hostport);
        for (k, v) in headers {
            let v = HeaderValue::from_str(v).map_err(|e| format!("header {k}: {e}"))?;
            req = req.header(*k, v);
        }
        let explicit = headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case(AUTHORIZATION.as_str()));
        if let (Some(token), false) = (&self.token, explicit) {
            req = req.header(AUTHORIZATION, format!("Bearer {token}"));
        }
        let req = req
            .body(Full::new(body.into()))
            .map_err(|e| format!("bad request: {e}"))?;
        let result = async {
            let response = sender
                .send_request(req)
                .await
                .map_err(|e| format!("no answer: {e}"))?;
            let status = response.status();
            let headers = response.headers().clone();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| format!("the body broke off: {e}"))?
                .to_bytes();
            Ok(Answer {
                status,
                headers,
                body,
            })
        }
        .await;
        driver.abort();
        result
    }

    /// The instances subscribed to the consumer group `group` of `topic`,
    /// as `GET /api/v1/events/topics` lists them; `None` while the group
    /// does not exist.
    pub async fn subscribers(&self, topic: &str, group: &str) -> Option<Vec<String>> {
        let answer = self.get("/api/v1/events/topics").await;
        // A cluster's NATS may be too busy to answer in time (a node was
        // just killed): not subscribed yet, as far as the caller can tell.
        if answer.status == 503 {
            return None;
        }
        assert_eq!(answer.status, 200, "{}", answer.text());
        let topics = answer.json();
        let group = topics
            .as_array()?
            .iter()
            .filter(|t| t["topic"] == topic)
            .flat_map(|t| t["groups"].as_array().into_iter().flatten())
            .find(|g| g["group"] == group)?;
        Some(
            group["subscribers"]
                .as_array()?
                .iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect(),
        )
    }

    /// Waits until each of `instances` is subscribed to the consumer group
    /// `group` of `topic` (`service.handler`, or `service.handler@instance`
    /// for a broadcast handler): from then on, what is published to
    /// `topic` reaches them.
    pub async fn wait_subscribed(&self, topic: &str, group: &str, instances: &[&str]) {
        let what = format!("{instances:?} subscribed to {group} on {topic}");
        poll(&what, || async {
            let subscribers = self.subscribers(topic, group).await;
            match &subscribers {
                Some(s) if instances.iter().all(|i| s.iter().any(|s| s == i)) => Ok(()),
                _ => Err(subscribers),
            }
        })
        .await;
    }
}

/// An HTTP answer.
#[derive(Debug)]
pub struct Answer {
    /// Its status.
    pub status: StatusCode,
    /// Its headers.
    pub headers: HeaderMap,
    /// Its whole body.
    pub body: Bytes,
}

impl Answer {
    /// The body as JSON; panics with the answer if it is not.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.text()))
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The `Content-Type`, or `""`.
    pub fn content_type(&self) -> &str {
        self.headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// Asserts a status, showing the body if it differs; returns the answer.
    #[track_caller]
    pub fn expect_status(&self, status: u16) -> &Answer {
        assert_eq!(self.status.as_u16(), status, "{}", self.text());
        self
    }

    /// Asserts a problem+json answer with `status` and `code` whose title,
    /// type and detail are set; returns the problem.
    #[track_caller]
    pub fn problem(&self, status: u16, code: &str) -> Value {
        self.expect_status(status);
        assert_eq!(self.content_type(), "application/problem+json");
        let p = self.json();
        assert_eq!(p["status"], status);
        assert_eq!(p["code"], code, "{p}");
        assert!(p["title"].is_string() && p["type"].is_string(), "{p}");
        assert!(!p["detail"].as_str().unwrap_or_default().is_empty(), "{p}");
        p
    }
}
