//! The HTTP gateway of a real host on 127.0.0.1:0, with services served
//! over the network: every status it answers with, bodies that are
//! malformed, deep or large, OpenAPI documents, and tokens.

use std::time::Duration;

use hyper::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use weft_host::{AuthMode, HostConfig};

use weft_test_support::{Answer, RunningHost, Served, poll, within};

use crate::echo::{Echo, EchoV2};

async fn post(host: &RunningHost, path: &str, body: &str) -> Answer {
    host.http()
        .request(Method::POST, path, &[], body.to_owned())
        .await
}

/// A loopback host with echo 1.0.0 (main) and 2.0.0 running.
async fn host_with_echo(dir: &std::path::Path) -> (RunningHost, Served, Served) {
    let host = RunningHost::loopback(dir).await;
    let mut watch = host.watch().await;
    let v1 = Served::start(Echo, &host);
    watch.up("echo", env!("CARGO_PKG_VERSION")).await;
    let v2 = Served::start(EchoV2, &host);
    watch.up("echo", "2.0.0").await;
    (host, v1, v2)
}

#[tokio::test]
async fn calls_the_main_version_or_the_one_named() {
    let dir = tempfile::tempdir().unwrap();
    let (host, _v1, _v2) = host_with_echo(dir.path()).await;
    let main = env!("CARGO_PKG_VERSION");

    let a = post(
        &host,
        "/services/echo/echo",
        r#"{"text": "ab", "times": 2}"#,
    )
    .await;
    assert_eq!(a.status, 200);
    assert_eq!(a.content_type(), "application/json");
    assert_eq!(a.json(), json!("abab"));

    // No body at all is no arguments.
    let a = post(&host, "/services/echo/version", "").await;
    assert_eq!(a.json(), json!(main), "the first version up is main");
    for path in [
        "/services/echo/version?version=2.0.0",
        "/services/echo/version?version=%5E2",
        "/services/echo/version?version=^2",
    ] {
        let a = post(&host, path, "{}").await;
        assert_eq!(
            (a.status.as_u16(), a.json()),
            (200, json!("2.0.0")),
            "{path}"
        );
    }
    let a = host
        .http()
        .request(
            Method::POST,
            "/services/echo/version",
            &[("Weft-Version", "2.0.0")],
            "{}",
        )
        .await;
    assert_eq!(a.json(), json!("2.0.0"));
    let a = post(
        &host,
        &format!("/services/echo/version?version={main}"),
        "{}",
    )
    .await;
    assert_eq!(a.json(), json!(main));

    // The docs' example: curl -X POST .../play -d '{}' sends a form type.
    let a = host
        .http()
        .request(
            Method::POST,
            "/services/echo/echo",
            &[("Content-Type", "application/x-www-form-urlencoded")],
            r#"{"text": "x"}"#,
        )
        .await;
    assert_eq!(a.json(), json!("x"));
    host.stop().await;
}

#[tokio::test]
async fn invalid_arguments_are_400_naming_the_argument() {
    let dir = tempfile::tempdir().unwrap();
    let (host, _v1, _v2) = host_with_echo(dir.path()).await;

    let p = post(&host, "/services/echo/echo", r#"{"text": 5}"#)
        .await
        .problem(400, "invalid_argument");
    assert_eq!(p["field"], "text");
    assert_eq!(p["service"], "echo");
    assert_eq!(p["entrypoint"], "echo");
    assert_eq!(
        p["detail"], "parameter `text` expects `String`, got the number 5",
        "says what was expected and what was given: {p}"
    );
    let p = post(
        &host,
        "/services/echo/echo",
        r#"{"text": "a", "times": "twice"}"#,
    )
    .await
    .problem(400, "invalid_argument");
    assert_eq!(
        p["detail"], r#"parameter `times` expects `Option<u32>`, got a string "twice""#,
        "{p}"
    );

    let p = post(&host, "/services/echo/echo", "{}")
        .await
        .problem(400, "invalid_argument");
    assert_eq!(p["field"], "text", "a missing argument is named: {p}");
    assert_eq!(
        p["detail"], "missing parameter `text` of type `String`",
        "{p}"
    );

    let p = post(
        &host,
        "/services/echo/echo",
        r#"{"text": "a", "colour": 1}"#,
    )
    .await
    .problem(400, "invalid_argument");
    assert_eq!(p["field"], "colour", "{p}");

    let p = post(&host, "/services/echo/echo?version=one", "{}")
        .await
        .problem(400, "invalid_argument");
    assert_eq!(p["field"], "version");
    let a = host
        .http()
        .request(
            Method::POST,
            "/services/echo/echo?version=1.0.0",
            &[("Weft-Version", "2.0.0")],
            "{}",
        )
        .await;
    assert!(
        a.problem(400, "invalid_argument")["detail"]
            .as_str()
            .unwrap()
            .contains("disagree")
    );
    let a = host
        .http()
        .request(
            Method::POST,
            "/services/echo/sleep",
            &[("Weft-Timeout", "soon")],
            r#"{"ms": 1}"#,
        )
        .await;
    assert_eq!(a.problem(400, "invalid_argument")["field"], "timeout");
    host.stop().await;
}

#[tokio::test]
async fn malformed_deep_and_non_object_bodies_are_400() {
    let dir = tempfile::tempdir().unwrap();
    let (host, _v1, _v2) = host_with_echo(dir.path()).await;
    let deep = format!("{{\"text\": {}{}}}", "[".repeat(200), "]".repeat(200));
    let very_deep = "[".repeat(100_000);
    for (body, says) in [
        ("{\"text\": ", "not valid JSON"),
        ("{\"text\": \"a\"} trailing", "not valid JSON"),
        ("\u{1}\u{2}garbage", "not valid JSON"),
        ("[\"a\"]", "JSON object"),
        ("\"a\"", "JSON object"),
        ("null", "JSON object"),
        (deep.as_str(), "nest deeper"),
        (very_deep.as_str(), "nest deeper"),
    ] {
        let p = post(&host, "/services/echo/echo", body)
            .await
            .problem(400, "invalid_argument");
        assert!(
            p["detail"].as_str().unwrap().contains(says),
            "{}: {p}",
            &body[..body.len().min(20)]
        );
    }
    let a = host
        .http()
        .request(
            Method::POST,
            "/services/echo/echo",
            &[],
            vec![0xff, 0xfe, b'{'],
        )
        .await;
    a.problem(400, "invalid_argument");
    // The host is fine afterwards.
    assert_eq!(
        post(&host, "/services/echo/echo", r#"{"text":"ok"}"#)
            .await
            .json(),
        json!("ok")
    );
    host.stop().await;
}

#[tokio::test]
async fn unknown_service_version_and_entrypoint_are_404() {
    let dir = tempfile::tempdir().unwrap();
    let (host, _v1, _v2) = host_with_echo(dir.path()).await;
    let p = post(&host, "/services/nope/echo", "{}")
        .await
        .problem(404, "not_found");
    assert!(p["detail"].as_str().unwrap().contains("`nope`"), "{p}");
    let p = post(&host, "/services/echo/echo?version=9.9.9", "{}")
        .await
        .problem(404, "not_found");
    assert!(
        p["detail"].as_str().unwrap().contains("2.0.0"),
        "lists running versions: {p}"
    );
    let p = post(&host, "/services/echo/shout", "{}")
        .await
        .problem(404, "not_found");
    assert!(
        p["detail"].as_str().unwrap().contains("`echo`"),
        "lists entrypoints: {p}"
    );
    let p = host
        .http()
        .request(Method::GET, "/services/nope/openapi.json", &[], "")
        .await
        .problem(404, "not_found");
    assert!(!p["detail"].as_str().unwrap().is_empty());
    let a = host
        .http()
        .request(Method::GET, "/services/echo/echo", &[], "")
        .await;
    let p = a.problem(405, "invalid_argument");
    assert!(p["detail"].as_str().unwrap().contains("POST"), "{p}");
    host.stop().await;
}

#[tokio::test]
async fn large_bodies_are_413_and_slow_ones_408() {
    let dir = tempfile::tempdir().unwrap();
    let host = RunningHost::start(
        HostConfig::new("127.0.0.1:0".parse().unwrap(), dir.path())
            .max_body(1024)
            .body_timeout(Duration::from_millis(300)),
    )
    .await;
    let mut watch = host.watch().await;
    let _echo = Served::start(Echo, &host);
    watch.up("echo", env!("CARGO_PKG_VERSION")).await;

    let text = "x".repeat(2000);
    let p = post(
        &host,
        "/services/echo/echo",
        &format!(r#"{{"text": "{text}"}}"#),
    )
    .await
    .problem(413, "resource_exhausted");
    assert!(p["detail"].as_str().unwrap().contains("1024"), "{p}");
    // Just under the limit passes.
    let text = "x".repeat(1000);
    let a = post(
        &host,
        "/services/echo/echo",
        &format!(r#"{{"text": "{text}"}}"#),
    )
    .await;
    assert_eq!(a.json(), json!(text));

    // A chunked body has no length to refuse up front: it is cut off.
    let mut s = tokio::net::TcpStream::connect(host.hostport())
        .await
        .unwrap();
    let chunk = "y".repeat(1500);
    let req = format!(
        "POST /services/echo/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{chunk}\r\n0\r\n\r\n",
        chunk.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    within("answers", s.read_to_string(&mut out)).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 413"), "{out}");

    // A client that stops sending mid-body gets 408, not a hung request.
    let mut s = tokio::net::TcpStream::connect(host.hostport())
        .await
        .unwrap();
    s.write_all(
        b"POST /services/echo/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"te",
    )
    .await
    .unwrap();
    let mut out = String::new();
    within("answers a stalled body", s.read_to_string(&mut out))
        .await
        .unwrap();
    assert!(out.starts_with("HTTP/1.1 408"), "{out}");
    host.stop().await;
}

#[tokio::test]
async fn application_errors_are_500_with_their_kind() {
    let dir = tempfile::tempdir().unwrap();
    let (host, _v1, _v2) = host_with_echo(dir.path()).await;
    let p = post(&host, "/services/echo/fail", "{}")
        .await
        .problem(500, "application");
    assert_eq!(p["kind"], "Broken");
    assert_eq!(p["service"], "echo");
    assert_eq!(p["entrypoint"], "fail");
    assert!(p["detail"].as_str().unwrap().contains("as asked"));
    host.stop().await;
}

#[tokio::test]
async fn a_deadline_is_504() {
    let dir = tempfile::tempdir().unwrap();
    let (host, _v1, _v2) = host_with_echo(dir.path()).await;
    let a = host
        .http()
        .request(
            Method::POST,
            "/services/echo/sleep",
            &[("Weft-Timeout", "0.2")],
            r#"{"ms": 20000}"#,
        )
        .await;
    a.problem(504, "deadline_exceeded");
    host.stop().await;
}

#[tokio::test]
async fn a_main_version_with_nothing_running_is_503() {
    let dir = tempfile::tempdir().unwrap();
    let host = RunningHost::loopback(dir.path()).await;
    let mut watch = host.watch().await;
    let echo = Served::start(Echo, &host);
    watch.up("echo", env!("CARGO_PKG_VERSION")).await;
    assert_eq!(
        post(&host, "/services/echo/echo", r#"{"text":"a"}"#)
            .await
            .status,
        200
    );
    echo.stop().await;
    watch.down("echo").await;
    let p = post(&host, "/services/echo/echo", r#"{"text":"a"}"#)
        .await
        .problem(503, "unavailable");
    assert!(
        p["detail"].as_str().unwrap().contains("main version"),
        "{p}"
    );
    host.stop().await;
}

#[tokio::test]
async fn openapi_describes_every_entrypoint() {
    let dir = tempfile::tempdir().unwrap();
    let (host, _v1, _v2) = host_with_echo(dir.path()).await;
    let a = host
        .http()
        .request(Method::GET, "/services/echo/openapi.json", &[], "")
        .await;
    assert_eq!(a.status, 200);
    let doc = a.json();
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["info"]["title"], "echo");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    assert!(
        doc["info"]["description"]
            .as_str()
            .unwrap()
            .contains("Answers in every way")
    );
    let op = &doc["paths"]["/services/echo/echo"]["post"];
    assert_eq!(op["summary"], "Returns `text`, `times` times over.");
    let body = &op["requestBody"]["content"]["application/json"]["schema"];
    assert_eq!(body["required"], json!(["text"]));
    assert_eq!(body["properties"]["text"]["type"], "string");
    assert!(body["properties"]["times"].is_object());
    assert_eq!(
        op["responses"]["200"]["content"]["application/json"]["schema"]["type"],
        "string"
    );
    assert!(op["responses"]["400"]["$ref"].is_string());
    for name in ["version", "sleep", "fail"] {
        assert!(
            doc["paths"][format!("/services/echo/{name}")]["post"].is_object(),
            "{name}"
        );
    }
    // Every reference resolves inside the document.
    let text = doc.to_string();
    for piece in text.split("\"$ref\":\"#").skip(1) {
        let pointer = piece.split('"').next().unwrap();
        assert!(doc.pointer(pointer).is_some(), "dangling #{pointer}");
    }
    let a = host
        .http()
        .request(
            Method::GET,
            "/services/echo/openapi.json?version=2.0.0",
            &[],
            "",
        )
        .await;
    assert_eq!(a.json()["info"]["version"], "2.0.0");

    let host_doc = host
        .http()
        .request(Method::GET, "/openapi.json", &[], "")
        .await
        .json();
    assert_eq!(host_doc["openapi"], "3.1.0");
    assert!(host_doc["paths"]["/api/v1/tokens"]["post"].is_object());
    for path in ["/docs", "/services/echo/docs"] {
        let a = host.http().request(Method::GET, path, &[], "").await;
        assert_eq!(a.status, 200, "{path}");
        assert!(a.content_type().starts_with("text/html"));
        let csp = a.headers["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("default-src 'self'"), "{csp}");
        let html = String::from_utf8_lossy(&a.body).into_owned();
        for asset in html
            .split("src=\"")
            .skip(1)
            .chain(html.split("href=\"").skip(1))
        {
            let url = asset.split('"').next().unwrap();
            assert!(url.starts_with('/'), "only the host's own assets: {url}");
            let a = host.http().request(Method::GET, url, &[], "").await;
            assert_eq!(a.status, 200, "{url}");
            assert!(
                a.headers["cache-control"]
                    .to_str()
                    .unwrap()
                    .contains("immutable"),
                "{url}"
            );
        }
    }
    host.stop().await;
}

/// Creates a token through the API with `admin` credentials.
async fn create_token(host: &RunningHost, admin: Option<&str>, body: Value) -> Answer {
    let auth = admin.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth
        .as_deref()
        .map(|a| vec![("Authorization", a)])
        .unwrap_or_default();
    host.http()
        .request(Method::POST, "/api/v1/tokens", &headers, body.to_string())
        .await
}

async fn call_with(host: &RunningHost, path: &str, token: Option<&str>) -> Answer {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth
        .as_deref()
        .map(|a| vec![("Authorization", a)])
        .unwrap_or_default();
    host.http()
        .request(Method::POST, path, &headers, r#"{"text": "hi"}"#)
        .await
}

#[tokio::test]
async fn tokens_guard_the_gateway_by_scope() {
    let dir = tempfile::tempdir().unwrap();
    let host = RunningHost::start(
        HostConfig::new("127.0.0.1:0".parse().unwrap(), dir.path()).auth(AuthMode::Required),
    )
    .await;
    let admin = host
        .admin_token()
        .map(str::to_owned)
        .expect("auth required makes an admin token");
    let file = dir.path().join(weft_host::ADMIN_TOKEN_FILE);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "admin.token is private");
    }
    let mut watch = host.watch().await;
    let _echo = Served::start(Echo, &host);
    watch.up("echo", env!("CARGO_PKG_VERSION")).await;

    // No token: 401 naming the scope.
    let p = call_with(&host, "/services/echo/echo", None)
        .await
        .problem(401, "unauthenticated");
    assert_eq!(p["scope"], "call:echo.echo");
    assert!(
        p["detail"].as_str().unwrap().contains("weft token create"),
        "{p}"
    );
    let a = call_with(&host, "/services/echo/echo", Some("weft_nope_00")).await;
    assert!(a.headers.contains_key("www-authenticate"));
    a.problem(401, "unauthenticated");
    host.http()
        .request(Method::GET, "/api/v1/services", &[], "")
        .await
        .problem(401, "unauthenticated");

    // Creating tokens needs admin.
    create_token(&host, None, json!({ "scopes": ["call:*"] }))
        .await
        .problem(401, "unauthenticated");
    let p = create_token(&host, Some(&admin), json!({ "scopes": ["call:nope:x"] }))
        .await
        .problem(400, "invalid_argument");
    assert_eq!(p["field"], "scopes");
    create_token(&host, Some(&admin), json!({ "scopes": [] }))
        .await
        .problem(400, "invalid_argument");

    let mut tokens = std::collections::BTreeMap::new();
    for scope in [
        "call:*",
        "call:echo",
        "call:echo.echo",
        "call:echo.version",
        "call:other",
        "admin",
    ] {
        let a = create_token(
            &host,
            Some(&admin),
            json!({ "scopes": [scope], "name": scope }),
        )
        .await;
        assert_eq!(a.status, 201, "{}", String::from_utf8_lossy(&a.body));
        let created = a.json();
        assert!(created["token"].as_str().unwrap().starts_with("weft_"));
        tokens.insert(scope, created["token"].as_str().unwrap().to_owned());
    }
    for (scope, allowed) in [
        ("call:*", true),
        ("call:echo", true),
        ("call:echo.echo", true),
        ("admin", true),
        ("call:echo.version", false),
        ("call:other", false),
    ] {
        let a = call_with(&host, "/services/echo/echo", Some(&tokens[scope])).await;
        if allowed {
            assert_eq!((a.status.as_u16(), a.json()), (200, json!("hi")), "{scope}");
        } else {
            let p = a.problem(403, "permission_denied");
            assert_eq!(p["scope"], "call:echo.echo", "{scope}");
            assert!(p["detail"].as_str().unwrap().contains(scope), "{p}");
        }
    }
    // A call scope reads docs of its service, not token lists.
    let bearer = format!("Bearer {}", tokens["call:echo.version"]);
    let a = host
        .http()
        .request(
            Method::GET,
            "/services/echo/openapi.json",
            &[("Authorization", &bearer)],
            "",
        )
        .await;
    assert_eq!(a.status, 200);
    assert_eq!(a.json()["security"], json!([{ "bearer": [] }]));
    host.http()
        .request(Method::GET, "/services/echo/openapi.json", &[], "")
        .await
        .problem(401, "unauthenticated");
    let p = host
        .http()
        .request(
            Method::GET,
            "/api/v1/tokens",
            &[("Authorization", &bearer)],
            "",
        )
        .await
        .problem(403, "permission_denied");
    assert_eq!(p["scope"], "admin");
    let a = host
        .http()
        .request(
            Method::GET,
            "/api/v1/services",
            &[("Authorization", &bearer)],
            "",
        )
        .await;
    assert_eq!(a.status, 200);

    // Listing shows no secrets; revoking works at once.
    let admin_bearer = format!("Bearer {admin}");
    let a = host
        .http()
        .request(
            Method::GET,
            "/api/v1/tokens",
            &[("Authorization", &admin_bearer)],
            "",
        )
        .await;
    assert_eq!(a.status, 200);
    let body = String::from_utf8_lossy(&a.body).into_owned();
    for t in tokens.values() {
        assert!(
            !body.contains(&t[t.len() - 64..]),
            "a secret leaked: {body}"
        );
    }
    let list = a.json();
    let id = list
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "call:echo")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let a = host
        .http()
        .request(
            Method::DELETE,
            &format!("/api/v1/tokens/{id}"),
            &[("Authorization", &admin_bearer)],
            "",
        )
        .await;
    assert_eq!(a.status, 204);
    call_with(&host, "/services/echo/echo", Some(&tokens["call:echo"]))
        .await
        .problem(401, "unauthenticated");
    host.http()
        .request(
            Method::DELETE,
            &format!("/api/v1/tokens/{id}"),
            &[("Authorization", &admin_bearer)],
            "",
        )
        .await
        .problem(404, "not_found");

    // An expired token stops working.
    let a = create_token(
        &host,
        Some(&admin),
        json!({ "scopes": ["call:*"], "expires_in_secs": 1 }),
    )
    .await;
    let short = a.json()["token"].as_str().unwrap().to_owned();
    assert_eq!(
        call_with(&host, "/services/echo/echo", Some(&short))
            .await
            .status,
        200
    );
    // Expiry is the host's wall-clock time: the token is refused once its
    // second has passed.
    let refused = poll("the short-lived token refused", || async {
        let a = call_with(&host, "/services/echo/echo", Some(&short)).await;
        if a.status == 401 {
            Ok(a)
        } else {
            Err(a.status)
        }
    })
    .await;
    let p = refused.problem(401, "unauthenticated");
    assert!(p["detail"].as_str().unwrap().contains("expired"), "{p}");
    host.stop().await;

    // Tokens and the admin token survive a restart.
    let host = RunningHost::start(
        HostConfig::new("127.0.0.1:0".parse().unwrap(), dir.path()).auth(AuthMode::Required),
    )
    .await;
    assert_eq!(host.admin_token(), Some(admin.as_str()));
    let a = host
        .http()
        .request(
            Method::GET,
            "/api/v1/services",
            &[("Authorization", &format!("Bearer {}", tokens["call:*"]))],
            "",
        )
        .await;
    assert_eq!(a.status, 200);
    host.stop().await;
}

#[tokio::test]
async fn loopback_needs_no_token_and_other_addresses_do() {
    let dir = tempfile::tempdir().unwrap();
    let host = RunningHost::loopback(dir.path()).await;
    assert!(host.admin_token().is_none());
    let a = host
        .http()
        .request(Method::GET, "/api/v1/services", &[], "")
        .await;
    assert_eq!(a.status, 200);
    // Callers on this machine may manage tokens without one.
    let a = create_token(&host, None, json!({ "scopes": ["call:*"] })).await;
    assert_eq!(a.status, 201);
    host.stop().await;

    let dir = tempfile::tempdir().unwrap();
    let host = RunningHost::start(HostConfig::new("0.0.0.0:0".parse().unwrap(), dir.path())).await;
    assert!(
        host.admin_token().is_some(),
        "auto requires tokens beyond loopback"
    );
    host.http()
        .request(Method::GET, "/api/v1/services", &[], "")
        .await
        .problem(401, "unauthenticated");
    assert_eq!(
        host.http()
            .request(Method::GET, "/healthz", &[], "")
            .await
            .status,
        200
    );
    host.stop().await;
}
