//! A real host on 127.0.0.1:0, driven over the wire and over HTTP as
//! services, callers and tools do.

use std::path::Path;
use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use weft_core::codec::{self, Codec};
use weft_core::name::Version;
use weft_core::spec::ServiceSpec;
use weft_core::{Code, Notification, Severity};
use weft_host::HostConfig;
use weft_host_api::wire as host_api;
use weft_registry::{InstanceInfo, ServiceSummary, WatchEvent};
use weft_test_support::{RunningHost, host_call as call, within};
use weft_transport::{ConnectOptions, Connection, ResponseStream};
use weft_wire::Headers;

/// Long enough that only a closed connection, never a lapsed lease, can
/// explain an instance going down within a test.
const LONG_LEASE: Duration = Duration::from_secs(60);

async fn start(dir: &Path, lease_ttl: Duration) -> RunningHost {
    RunningHost::start(HostConfig::new("127.0.0.1:0".parse().unwrap(), dir).lease_ttl(lease_ttl))
        .await
}

fn headers(entrypoint: &str) -> Headers {
    Headers::new(host_api::SERVICE, entrypoint)
}

async fn next_event(conn: &Connection, stream: &mut ResponseStream) -> WatchEvent {
    let item = within("a watch event", stream.next())
        .await
        .expect("the watch stream goes on")
        .unwrap();
    codec::decode(conn.codec(), &item).unwrap()
}

async fn watch(conn: &Connection) -> ResponseStream {
    conn.call_stream(
        headers(host_api::WATCH),
        codec::encode(conn.codec(), &json!({})).unwrap(),
    )
}

fn instance(id: &str, service: &str, version: &str) -> InstanceInfo {
    InstanceInfo {
        id: id.into(),
        service: service.into(),
        version: Version::parse(version).unwrap(),
        address: "tcp://127.0.0.1:1".into(),
        spec: ServiceSpec {
            name: service.into(),
            description: String::new(),
            entrypoints: vec![],
            event_handlers: vec![],
            publishes: vec![],
        },
        pid: None,
        started_ms: 0,
        host: None,
    }
}

fn notification(message: &str) -> Notification {
    Notification {
        id: 0,
        time_ms: 0,
        severity: Severity::Warning,
        message: message.into(),
        service: "yatzee".into(),
        version: "1.0.0".into(),
        instance: "y1".into(),
    }
}

/// `GET path`: the status, the content type and the body.
async fn http_get(host: &RunningHost, path: &str) -> (u16, String, String) {
    let answer = host.http().get(path).await;
    let content_type = answer.content_type().to_owned();
    (answer.status.as_u16(), content_type, answer.text())
}

#[tokio::test]
async fn watchers_see_instances_come_and_go() {
    let dir = tempfile::tempdir().unwrap();
    let host = start(dir.path(), LONG_LEASE).await;
    let watcher = host.connect().await;
    let mut events = watch(&watcher).await;
    match next_event(&watcher, &mut events).await {
        WatchEvent::Snapshot {
            instances, mains, ..
        } => assert!(instances.is_empty() && mains.is_empty()),
        other => panic!("expected a snapshot first, got {other:?}"),
    }

    let instance_conn = host.connect().await;
    let reply: weft_registry::RegisterReply = call(
        &instance_conn,
        host_api::REGISTER,
        json!({ "instance": instance("d1", "die_roller", "1.0.0") }),
    )
    .await
    .unwrap();
    assert_eq!(reply.lease_ttl_ms, 60_000);
    match next_event(&watcher, &mut events).await {
        WatchEvent::Up { instance } => assert_eq!(instance.id, "d1"),
        other => panic!("expected up, got {other:?}"),
    }
    assert_eq!(
        next_event(&watcher, &mut events).await,
        WatchEvent::Main {
            service: "die_roller".into(),
            version: Version::new(1, 0, 0)
        }
    );

    let () = call(&instance_conn, host_api::KEEPALIVE, json!({ "id": "d1" }))
        .await
        .unwrap();
    let err = call::<()>(
        &instance_conn,
        host_api::KEEPALIVE,
        json!({ "id": "ghost" }),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert!(err.message().contains("register it again"), "{err}");

    let services: Vec<ServiceSummary> =
        call(&watcher, host_api::SERVICES, json!({})).await.unwrap();
    assert_eq!(services.len(), 1);
    assert_eq!(services[0].versions[0].instances, 1);

    // A second watcher starts from a snapshot that has the instance.
    let mut late = watch(&watcher).await;
    match next_event(&watcher, &mut late).await {
        WatchEvent::Snapshot {
            instances, mains, ..
        } => {
            assert_eq!(instances.len(), 1);
            assert_eq!(mains["die_roller"], Version::new(1, 0, 0));
        }
        other => panic!("expected a snapshot, got {other:?}"),
    }

    // The instance crashes: its connection closes and it goes down at
    // once, long before its lease would lapse.
    drop(instance_conn);
    assert_eq!(
        next_event(&watcher, &mut events).await,
        WatchEvent::Down {
            id: "d1".into(),
            service: "die_roller".into()
        }
    );
    host.stop().await;
}

#[tokio::test]
async fn deregister_and_lapsed_leases_go_down() {
    let dir = tempfile::tempdir().unwrap();
    let host = start(dir.path(), Duration::from_millis(300)).await;
    let conn = host.connect().await;
    let mut events = watch(&conn).await;
    assert!(matches!(
        next_event(&conn, &mut events).await,
        WatchEvent::Snapshot { .. }
    ));

    let _: weft_registry::RegisterReply = call(
        &conn,
        host_api::REGISTER,
        json!({ "instance": instance("a1", "a", "1.0.0") }),
    )
    .await
    .unwrap();
    let _: weft_registry::RegisterReply = call(
        &conn,
        host_api::REGISTER,
        json!({ "instance": instance("a2", "a", "1.0.0") }),
    )
    .await
    .unwrap();
    let () = call(&conn, host_api::DEREGISTER, json!({ "id": "a1" }))
        .await
        .unwrap();
    let mut downs = Vec::new();
    while downs.len() < 2 {
        if let WatchEvent::Down { id, .. } = next_event(&conn, &mut events).await {
            downs.push(id);
        }
    }
    // a1 deregistered; a2 kept its connection open but sent no keepalive.
    assert_eq!(downs, ["a1", "a2"]);
    host.stop().await;
}

#[tokio::test]
async fn bad_calls_say_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let host = start(dir.path(), LONG_LEASE).await;
    let conn = host.connect().await;

    let payload = codec::encode(conn.codec(), &json!({})).unwrap();
    let err = conn
        .call(Headers::new("die_roller", "roll_die"), payload)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert!(err.message().contains("weft.host"), "{err}");
    assert!(err.message().contains("directly"), "{err}");

    let err = call::<()>(&conn, "reboot", json!({})).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert!(err.message().contains("`register`"), "{err}");

    let err = call::<()>(&conn, host_api::REGISTER, json!({ "instance": 5 }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(err.field(), Some("instance"));

    let mut bad = instance("x", "Bad Name", "1.0.0");
    bad.spec.name = "Bad Name".into();
    let err = call::<()>(&conn, host_api::REGISTER, json!({ "instance": bad }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    host.stop().await;
}

#[tokio::test]
async fn notifications_and_mains_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let host = start(dir.path(), LONG_LEASE).await;
    let conn = host.connect().await;
    let before = weft_host_now_ms();
    let first: Notification = call(
        &conn,
        host_api::NOTIFY,
        json!({ "notification": notification("one") }),
    )
    .await
    .unwrap();
    assert_eq!(first.id, 1);
    assert!(
        first.time_ms >= before,
        "the host stamps notifications sent without a time"
    );
    let second: Notification = call(
        &conn,
        host_api::NOTIFY,
        json!({ "notification": notification("two") }),
    )
    .await
    .unwrap();
    assert_eq!(second.id, 2);
    let listed: Vec<Notification> = call(&conn, host_api::NOTIFICATIONS, json!({}))
        .await
        .unwrap();
    assert_eq!(listed, [first.clone(), second.clone()]);
    let after: Vec<Notification> = call(&conn, host_api::NOTIFICATIONS, json!({ "after": 1 }))
        .await
        .unwrap();
    assert_eq!(after, std::slice::from_ref(&second));
    let newest: Vec<Notification> = call(&conn, host_api::NOTIFICATIONS, json!({ "limit": 1 }))
        .await
        .unwrap();
    assert_eq!(newest, std::slice::from_ref(&second));

    let _: weft_registry::RegisterReply = call(
        &conn,
        host_api::REGISTER,
        json!({ "instance": instance("a1", "a", "1.2.0") }),
    )
    .await
    .unwrap();
    drop(conn);
    host.stop().await;

    let host = start(dir.path(), LONG_LEASE).await;
    let conn = host.connect().await;
    let listed: Vec<Notification> = call(&conn, host_api::NOTIFICATIONS, json!({}))
        .await
        .unwrap();
    assert_eq!(listed, [first, second]);
    let third: Notification = call(
        &conn,
        host_api::NOTIFY,
        json!({ "notification": notification("three") }),
    )
    .await
    .unwrap();
    assert_eq!(third.id, 3, "ids go on after a restart");

    // The main version is remembered although nothing runs.
    let services: Vec<ServiceSummary> = call(&conn, host_api::SERVICES, json!({})).await.unwrap();
    assert_eq!(services.len(), 1);
    assert_eq!(services[0].main, Some(Version::new(1, 2, 0)));
    assert!(services[0].versions.is_empty());
    // And a newer version registering first does not take it over.
    let _: weft_registry::RegisterReply = call(
        &conn,
        host_api::REGISTER,
        json!({ "instance": instance("a2", "a", "2.0.0") }),
    )
    .await
    .unwrap();
    let services: Vec<ServiceSummary> = call(&conn, host_api::SERVICES, json!({})).await.unwrap();
    assert_eq!(services[0].main, Some(Version::new(1, 2, 0)));
    host.stop().await;
}

fn weft_host_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[tokio::test]
async fn http_shares_the_port() {
    let dir = tempfile::tempdir().unwrap();
    let host = start(dir.path(), LONG_LEASE).await;
    let (status, _, body) = http_get(&host, "/healthz").await;
    assert_eq!((status, body.as_str()), (200, "ok"));

    let conn = host.connect().await;
    let _: Notification = call(
        &conn,
        host_api::NOTIFY,
        json!({ "notification": notification("hi") }),
    )
    .await
    .unwrap();
    let _: weft_registry::RegisterReply = call(
        &conn,
        host_api::REGISTER,
        json!({ "instance": instance("a1", "a", "1.0.0") }),
    )
    .await
    .unwrap();

    let (status, content_type, body) = http_get(&host, "/api/v1/services").await;
    assert_eq!(status, 200);
    assert!(content_type.contains("application/json"), "{content_type}");
    let services: Vec<ServiceSummary> = serde_json::from_str(&body).unwrap();
    assert_eq!(services[0].name, "a");

    let (status, _, body) = http_get(&host, "/api/v1/notifications?after=0&limit=5").await;
    assert_eq!(status, 200);
    let list: Vec<Notification> = serde_json::from_str(&body).unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].message, "hi");

    let (status, _, body) = http_get(&host, "/api/v1/notifications?after=soon").await;
    assert_eq!(status, 400);
    assert!(body.contains("after=<id>"), "{body}");

    let (status, content_type, body) = http_get(&host, "/nope").await;
    assert_eq!(status, 404);
    assert!(
        content_type.contains("application/problem+json"),
        "{content_type}"
    );
    let problem: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(problem["code"], "not_found");
    assert!(
        problem["detail"].as_str().unwrap().contains("/healthz"),
        "{problem}"
    );
    host.stop().await;
}

#[tokio::test]
async fn garbage_does_not_kill_the_host() {
    let dir = tempfile::tempdir().unwrap();
    let host = start(dir.path(), LONG_LEASE).await;
    let garbage: [&[u8]; 4] = [
        b"\xF7garbage that is not a preface\r\n\r\n",
        // A preface of a protocol version that does not exist.
        b"\xF7WFT\xFF\x06\x00\x00\x00\x00\x00\x00",
        b"\x00\x01\x02\x03\xFF\xFE",
        b"NOT HTTP AT ALL\r\n\r\n",
    ];
    for bytes in garbage {
        let mut s = TcpStream::connect(host.hostport()).await.unwrap();
        s.write_all(bytes).await.unwrap();
        let mut sink = Vec::new();
        // An answer, a close or a reset: anything but a hang.
        let _ = within(
            "the host to answer or close garbage",
            s.read_to_end(&mut sink),
        )
        .await;
    }
    // A connection that says nothing and leaves.
    drop(TcpStream::connect(host.hostport()).await.unwrap());

    let (status, _, _) = http_get(&host, "/healthz").await;
    assert_eq!(status, 200);
    let conn = host.connect().await;
    let services: Vec<ServiceSummary> = call(&conn, host_api::SERVICES, json!({})).await.unwrap();
    assert!(services.is_empty());
    host.stop().await;
}

#[tokio::test]
async fn msgpack_connections_work_too() {
    let dir = tempfile::tempdir().unwrap();
    let host = start(dir.path(), LONG_LEASE).await;
    let opts = ConnectOptions {
        codecs: weft_wire::CodecSet::only(Codec::MsgPack),
        ..ConnectOptions::default()
    };
    let conn = host.connect_with(opts).await;
    assert_eq!(conn.codec(), Codec::MsgPack);
    let stored: Notification = call(
        &conn,
        host_api::NOTIFY,
        json!({ "notification": notification("packed") }),
    )
    .await
    .unwrap();
    assert_eq!(stored.message, "packed");
    host.stop().await;
}
