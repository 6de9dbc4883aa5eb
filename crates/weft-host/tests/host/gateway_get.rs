//! Read-only entrypoints through `GET` with query parameters, argument
//! defaults on every path, the service document that describes them, and
//! `application/problem+json` for every error, on a real host.

use hyper::Method;
use serde_json::{Value, json};
use weft_test_support::{Answer, RunningHost, Served};

use crate::dice::Dice;

async fn get(host: &RunningHost, path: &str) -> Answer {
    host.http()
        .request(Method::GET, path, &[], String::new())
        .await
}

/// A loopback host with `dice` running.
async fn host_with_dice(dir: &std::path::Path) -> (RunningHost, Served) {
    let host = RunningHost::loopback(dir).await;
    let mut watch = host.watch().await;
    let dice = Served::start(Dice, &host);
    watch.up("dice", env!("CARGO_PKG_VERSION")).await;
    (host, dice)
}

/// A problem answer with `status` whose `field` is `field`.
fn assert_problem(a: &Answer, status: u16, field: Option<&str>) -> Value {
    assert_eq!(a.status, status, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(a.content_type(), "application/problem+json");
    let p = a.json();
    assert_eq!(p["status"], status);
    assert!(!p["detail"].as_str().unwrap().is_empty(), "{p}");
    if let Some(field) = field {
        assert_eq!(p["field"], field, "{p}");
    }
    p
}

#[tokio::test]
async fn read_only_entrypoints_take_get_with_typed_query_values() {
    let dir = tempfile::tempdir().unwrap();
    let (host, _dice) = host_with_dice(dir.path()).await;

    let a = get(
        &host,
        "/services/dice/roll?sides=20&label=big%20table&weights=[1.5,2]&loaded=true",
    )
    .await;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(a.content_type(), "application/json");
    assert_eq!(
        a.json(),
        json!({ "sides": 20, "count": 1, "label": "big table", "weights": [1.5, 2.0], "loaded": true })
    );
    // A number-looking string stays a string.
    let a = get(&host, "/services/dice/roll?label=12").await;
    assert_eq!(a.json()["label"], "12");
    // `version` picks the version, as for POST.
    let a = get(
        &host,
        &format!("/services/dice/roll?version={}", env!("CARGO_PKG_VERSION")),
    )
    .await;
    assert_eq!(a.status, 200);

    for (query, field) in [
        ("sides=abc", "sides"),
        ("sides=2.5", "sides"),
        ("loaded=yes", "loaded"),
        ("count=1&count=2", "count"),
        ("bogus=1", "bogus"),
        // Parsed as an integer, refused by the service as out of range.
        ("sides=300", "sides"),
        ("version=latest", "version"),
    ] {
        let a = get(&host, &format!("/services/dice/roll?{query}")).await;
        let p = assert_problem(&a, 400, Some(field));
        assert_eq!(p["code"], "invalid_argument", "{query}: {p}");
    }
    let a = get(&host, "/services/dice/roll?sides=abc").await;
    let detail = a.json()["detail"].as_str().unwrap().to_owned();
    assert!(
        detail.contains("whole number") && detail.contains("abc"),
        "{detail}"
    );

    // Not read-only: GET is refused, saying how to call it.
    let a = get(&host, "/services/dice/reset").await;
    let p = assert_problem(&a, 405, None);
    assert_eq!(a.headers["allow"], "POST");
    assert!(
        p["detail"].as_str().unwrap().contains("#[entrypoint(get)]"),
        "{p}"
    );
    assert_problem(&get(&host, "/services/dice/nope").await, 404, None);
    assert_problem(&get(&host, "/services/nobody/roll").await, 404, None);
    host.stop().await;
}

#[tokio::test]
async fn defaults_apply_on_every_path() {
    let dir = tempfile::tempdir().unwrap();
    let (host, _dice) = host_with_dice(dir.path()).await;
    let expected =
        json!({ "sides": 6, "count": 1, "label": null, "weights": null, "loaded": null });

    // GET with nothing, POST with {} or nothing, POST with null values.
    assert_eq!(get(&host, "/services/dice/roll").await.json(), expected);
    for body in ["{}", "", r#"{"sides": null}"#] {
        let a = host
            .http()
            .request(Method::POST, "/services/dice/roll", &[], body.to_owned())
            .await;
        assert_eq!(a.status, 200, "{body}");
        assert_eq!(a.json(), expected, "{body}");
    }
    let a = host
        .http()
        .request(Method::POST, "/services/dice/reset", &[], "{}".to_owned())
        .await;
    assert_eq!(a.json(), json!("all"));

    // Over the wire (MessagePack), as `weft call` and other services call.
    let client = weft::Client::connect(&host.hostport()).await.unwrap();
    let rolled: Value = client.call("dice", "roll", json!({})).await.unwrap();
    assert_eq!(rolled, expected);
    let rolled: Value = client
        .call("dice", "roll", json!({ "count": 3 }))
        .await
        .unwrap();
    assert_eq!(rolled["count"], 3);
    assert_eq!(rolled["sides"], 6);
    let e = client
        .call::<_, Value>("dice", "roll", json!({ "sides": "six" }))
        .await
        .unwrap_err();
    assert_eq!(e.code(), weft::Code::InvalidArgument);
    assert_eq!(e.field(), Some("sides"));
    assert!(
        e.message().contains("`u8`"),
        "names the type, not `Option`: {e}"
    );
    assert!(!e.message().contains("Option"), "{e}");
    host.stop().await;
}

#[tokio::test]
async fn the_document_describes_get_defaults_examples_and_events() {
    let dir = tempfile::tempdir().unwrap();
    let (host, _dice) = host_with_dice(dir.path()).await;
    let doc = get(&host, "/services/dice/openapi.json").await.json();
    assert!(doc.get("jsonSchemaDialect").is_none());
    assert!(doc.get("webhooks").is_none());
    // A loopback host requires no token: no scheme, no "Authorize".
    assert!(doc["components"].get("securitySchemes").is_none(), "{doc}");
    assert!(doc.get("security").is_none());

    let roll = &doc["paths"]["/services/dice/roll"];
    let media = &roll["post"]["requestBody"]["content"]["application/json"];
    assert_eq!(media["schema"]["properties"]["sides"]["default"], 6);
    assert_eq!(media["schema"]["properties"]["count"]["default"], 1);
    assert!(media["schema"].get("required").is_none(), "{media}");
    assert_eq!(media["example"]["sides"], 20);
    assert_eq!(media["example"]["label"], "table");
    assert_eq!(media["example"]["count"], 1);
    let query: Vec<&str> = roll["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["in"] == "query")
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        query,
        ["sides", "count", "label", "weights", "loaded", "version"]
    );
    assert!(doc["paths"]["/services/dice/reset"]["get"].is_null());
    assert!(doc["paths"]["/services/dice/reset"]["post"].is_object());

    let events = &doc["x-weft-events"];
    assert_eq!(events["consumes"][0]["topic"], "dice.requested");
    assert_eq!(events["consumes"][0]["handler"], "on_request");
    assert_eq!(events["publishes"][0]["topic"], "dice.rolled");
    let description = doc["info"]["description"].as_str().unwrap();
    assert!(description.contains("dice.requested"), "{description}");
    assert!(description.contains("dice.rolled"), "{description}");

    // The timeout the schema allows is the one the gateway takes.
    let timeout = roll["post"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "Weft-Timeout")
        .unwrap()["schema"]
        .clone();
    assert_eq!(timeout["minimum"], 0.000001);
    for (value, status) in [
        ("0.000001", 200),
        ("0.0000001", 400),
        ("0", 400),
        ("86400", 200),
        ("86401", 400),
    ] {
        let a = host
            .http()
            .request(
                Method::GET,
                "/services/dice/roll",
                &[("Weft-Timeout", value)],
                String::new(),
            )
            .await;
        if status == 400 {
            assert_problem(&a, 400, Some("timeout"));
        } else {
            // So short a deadline may pass before the answer: either way the
            // gateway took the value and sent the call on.
            assert!(
                a.status == 200 || a.status == 504,
                "{value}: {}",
                String::from_utf8_lossy(&a.body)
            );
        }
    }
    host.stop().await;
}

#[tokio::test]
async fn every_error_is_problem_json() {
    let dir = tempfile::tempdir().unwrap();
    let (host, _dice) = host_with_dice(dir.path()).await;
    // Paths that do not decode, under the gateway and the API.
    assert_problem(&get(&host, "/services/%FF/roll").await, 404, None);
    let a = host
        .http()
        .request(
            Method::DELETE,
            "/api/v1/services/%FF%FE/versions/1.0.0",
            &[],
            String::new(),
        )
        .await;
    let p = assert_problem(&a, 400, None);
    assert_eq!(p["code"], "invalid_argument");
    // Unknown routes under /services and /api, and a wrong method.
    assert_problem(&get(&host, "/services/dice/roll/more").await, 404, None);
    assert_problem(&get(&host, "/api/v1/nothing").await, 404, None);
    assert_problem(&get(&host, "/api").await, 404, None);
    let a = host
        .http()
        .request(Method::PUT, "/services/dice/roll", &[], String::new())
        .await;
    assert_problem(&a, 405, None);
    // A body the API's JSON extractor refuses.
    let a = host
        .http()
        .request(
            Method::POST,
            "/api/v1/tokens",
            &[("Content-Type", "text/plain")],
            "{}".to_owned(),
        )
        .await;
    assert!(a.status.is_client_error(), "{}", a.status);
    assert_eq!(a.content_type(), "application/problem+json");
    host.stop().await;
}
