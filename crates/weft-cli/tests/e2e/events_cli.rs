//! `weft events` against a real `weft host` process, and a SIGKILL of the
//! host while clients publish: every acknowledged publish survives.

use std::collections::HashSet;
use std::process::Output;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use hyper::Method;
use serde_json::Value;
use weft_test_support::{HostProcess, Http, both, poll, text, within};

use crate::host_builder;
use crate::mesh::{Backend, Mesh, conformance};

conformance!(publish_ls_tail, retention_drops_the_oldest_events);

/// Runs `weft args` against `host`; it must succeed.
async fn weft(host: &HostProcess, args: &[&str]) -> Output {
    let out = host.weft(args).await;
    assert!(out.status.success(), "weft {args:?} failed: {}", both(&out));
    out
}

async fn tail_ids(host: &HostProcess, topic: &str) -> Vec<u64> {
    let out = weft(host, &["events", "tail", topic, "-n", "1000000", "--json"]).await;
    text(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["id"]
                .as_u64()
                .unwrap()
        })
        .collect()
}

/// Publishes through one host; lists, tails and looks for dead letters
/// through the other (the same host on the embedded backend).
async fn publish_ls_tail(backend: Backend) {
    let mesh = Mesh::start(backend).await;
    let (publisher, host) = (mesh.home(), mesh.caller());
    let out = weft(
        publisher,
        &["events", "publish", "orders.created", r#"{"order": 1}"#],
    )
    .await;
    assert_eq!(text(&out.stdout).trim(), "1");
    let out = weft(
        publisher,
        &[
            "events",
            "publish",
            "orders.created",
            r#"{"order": 2}"#,
            "--idempotency-key",
            "o2",
        ],
    )
    .await;
    assert_eq!(text(&out.stdout).trim(), "2");
    let out = weft(
        publisher,
        &[
            "events",
            "publish",
            "orders.created",
            r#"{"order": 2}"#,
            "--idempotency-key",
            "o2",
        ],
    )
    .await;
    assert!(text(&out.stdout).contains("duplicate"));

    let out = weft(host, &["events", "ls"]).await;
    let table = text(&out.stdout);
    assert!(table.starts_with("TOPIC"), "{table}");
    assert!(table.contains("orders.created"), "{table}");
    let out = weft(host, &["events", "ls", "--json"]).await;
    let topics: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(topics[0]["events"], 2);

    let out = weft(host, &["events", "tail", "orders.created"]).await;
    let lines = text(&out.stdout);
    assert!(lines.contains(r#"{"order":1}"#), "{lines}");
    assert_eq!(tail_ids(host, "orders.created").await, vec![1, 2]);

    let out = weft(host, &["events", "dead"]).await;
    assert!(text(&out.stdout).contains("no dead letters"));
    let bad = host.weft(&["events", "publish", "t", "{not json"]).await;
    assert!(!bad.status.success());
    assert!(
        text(&bad.stderr).contains("not JSON"),
        "{}",
        text(&bad.stderr)
    );
}

/// A topic keeps at most `--events-max-bytes`: the oldest events go first,
/// and `weft events ls` and `tail` start after them.
async fn retention_drops_the_oldest_events(backend: Backend) {
    let mesh = Mesh::start_with(backend, |b| {
        b.args(["--events-max-bytes", "16K", "--events-segment-size", "4K"])
    })
    .await;
    let (publisher, host) = (mesh.home(), mesh.caller());
    let client = publisher.client().await;
    const COUNT: u64 = 300;
    for n in 0..COUNT {
        let payload = serde_json::json!({ "n": n, "pad": "x".repeat(100) });
        client.publish("kept.briefly", &payload).await.unwrap();
    }
    let first = poll("the oldest events are dropped", || async {
        let out = weft(host, &["events", "ls", "--json"]).await;
        let topics: Value = serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
        let topic = topics
            .as_array()
            .into_iter()
            .flatten()
            .find(|t| t["topic"] == "kept.briefly")
            .cloned()
            .ok_or("no topic")?;
        let (first, bytes) = (topic["first_id"].as_u64(), topic["bytes"].as_u64());
        match (first, bytes) {
            (Some(first), Some(bytes)) if first > 1 && bytes <= 20 * 1024 => Ok(first),
            _ => Err(topic.to_string()),
        }
    })
    .await;
    let ids = tail_ids(host, "kept.briefly").await;
    assert_eq!(
        ids.first(),
        Some(&first),
        "the tail starts at the oldest kept"
    );
    assert_eq!(ids.last(), Some(&COUNT), "the newest are kept");
}

/// One publish over HTTP; `Some(id)` once the host acknowledged it.
async fn http_publish(http: &Http, n: u64) -> Option<u64> {
    let body = format!(r#"{{"topic":"crash","payload":{{"n":{n}}}}}"#);
    let answer = http
        .try_request(
            Method::POST,
            "/api/v1/events/publish",
            &[("content-type", "application/json")],
            body,
        )
        .await
        .ok()?;
    if answer.status != 200 {
        return None;
    }
    serde_json::from_slice::<Value>(&answer.body).ok()?["id"].as_u64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_stream_loses_no_acknowledged_publish() {
    let dir = tempfile::tempdir().unwrap();
    let mut host = host_builder().data_dir(dir.path()).start().await;
    let http = host.http();
    let acked = Arc::new(Mutex::new(HashSet::new()));
    // How many publishes were acknowledged, for the test to wait on.
    let (count_tx, mut count) = tokio::sync::watch::channel(0usize);
    let count_tx = Arc::new(count_tx);
    let mut clients = Vec::new();
    for c in 0..4u64 {
        let (acked, count_tx, http) = (acked.clone(), count_tx.clone(), http.clone());
        clients.push(tokio::spawn(async move {
            let mut n = c * 1_000_000;
            loop {
                n += 1;
                match http_publish(&http, n).await {
                    Some(id) => {
                        let mut acked = acked.lock().unwrap();
                        acked.insert(id);
                        count_tx.send_replace(acked.len());
                    }
                    // A failure is the kill, unless the host still takes
                    // connections: then it was one publish caught by it.
                    None if tokio::net::TcpStream::connect(http.hostport())
                        .await
                        .is_err() =>
                    {
                        return;
                    }
                    None => {}
                }
            }
        }));
    }
    within("300 acknowledged publishes", count.wait_for(|n| *n >= 300))
        .await
        .expect("the publishers go on");
    host.kill9().await;
    for c in clients {
        let _ = tokio::time::timeout(Duration::from_secs(10), c).await;
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 300);

    let host = host_builder().data_dir(dir.path()).start().await;
    let stored: HashSet<u64> = tail_ids(&host, "crash").await.into_iter().collect();
    let lost: Vec<_> = acked.difference(&stored).collect();
    assert!(
        lost.is_empty(),
        "acknowledged but lost after SIGKILL: {lost:?}"
    );
    let out = weft(&host, &["events", "publish", "crash", "{}"]).await;
    let id: u64 = text(&out.stdout).trim().parse().unwrap();
    assert!(id > *acked.iter().max().unwrap());
}
