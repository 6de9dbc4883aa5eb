//! With tokens required, the wire port asks for one too: services present
//! it to register, clients to watch the registry, and the host's own
//! gateway uses a credential of its own.

use weft_test_support::{RunningHost, Served};

use crate::echo::Echo;
use weft::{Client, ClientOptions, Code};
use weft_host::{AuthMode, HostConfig};

async fn host_requiring_tokens(dir: &std::path::Path) -> RunningHost {
    RunningHost::start(
        HostConfig::new("127.0.0.1:0".parse().unwrap(), dir).auth(AuthMode::Required),
    )
    .await
}

#[tokio::test]
async fn the_wire_port_needs_a_valid_token() {
    let dir = tempfile::tempdir().unwrap();
    let host = host_requiring_tokens(dir.path()).await;
    let address = host.address().to_string();

    let err = Client::connect_with(&address, ClientOptions::default().token("weft_nope_00"))
        .await
        .unwrap_err();
    assert!(err.message().contains("token"), "{err}");

    let mut without = ClientOptions::default();
    without.token = None;
    let err = Client::connect_with(&address, without).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err}");
    assert!(err.message().contains("WEFT_TOKEN"), "{err}");

    let admin = host
        .admin_token()
        .map(str::to_owned)
        .expect("an admin token is written");
    let client = Client::connect_with(&address, ClientOptions::default().token(admin))
        .await
        .unwrap();
    assert!(client.services().await.unwrap().is_empty());
}

#[tokio::test]
async fn services_register_with_a_token_and_the_gateway_reaches_them() {
    let dir = tempfile::tempdir().unwrap();
    let host = host_requiring_tokens(dir.path()).await;
    let mut watch = host.watch().await;
    let served = Served::start(Echo, &host);
    watch.up("echo", env!("CARGO_PKG_VERSION")).await;

    let admin = host.admin_token().map(str::to_owned).unwrap();
    let bearer = format!("Bearer {admin}");
    let answer = host
        .http()
        .request(
            hyper::Method::POST,
            "/services/echo/echo",
            &[
                ("authorization", &bearer),
                ("content-type", "application/json"),
            ],
            r#"{"text":"hi"}"#,
        )
        .await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    assert_eq!(answer.json(), serde_json::json!("hi"));
    served.stop().await;
    host.stop().await;
}
