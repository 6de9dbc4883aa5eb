//! The event log of a real host on 127.0.0.1:0, driven over the wire with
//! PUBLISH, SUBSCRIBE and ACK as the SDK does, and over HTTP as tools do.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};
use weft_core::Code;
use weft_core::codec;
use weft_host::HostConfig;
use weft_host_api::wire::{self as host_api, Delivery, Published};
use weft_test_support::{RunningHost, host_call as call, poll, within};
use weft_transport::{Connection, ResponseStream};
use weft_wire::Headers;

async fn start(dir: &Path) -> RunningHost {
    RunningHost::loopback(dir).await
}

async fn publish(conn: &Connection, topic: &str, payload: Value) -> Published {
    call(
        conn,
        host_api::PUBLISH,
        json!({ "topic": topic, "payload": payload }),
    )
    .await
    .unwrap()
}

/// One subscribe stream, as one instance's handler.
struct Subscriber {
    conn: Connection,
    stream: ResponseStream,
    instance: String,
    topic: String,
    handler: String,
}

impl Subscriber {
    async fn new(
        host: &RunningHost,
        topic: &str,
        instance: &str,
        mode: Value,
        credit: u32,
    ) -> Subscriber {
        Subscriber::with(host, topic, "handle", instance, mode, credit, 3).await
    }

    async fn with(
        host: &RunningHost,
        topic: &str,
        handler: &str,
        instance: &str,
        mode: Value,
        credit: u32,
        max_attempts: u32,
    ) -> Subscriber {
        let conn = host.connect().await;
        let args = json!({
            "service": "svc", "handler": handler, "topic": topic, "instance": instance,
            "mode": mode, "max_attempts": max_attempts, "max_in_flight": credit,
        });
        let payload = weft_core::args::encode(conn.codec(), &args).unwrap();
        let stream = conn.call_stream(
            Headers::new(host_api::SERVICE, host_api::SUBSCRIBE),
            payload,
        );
        Subscriber {
            conn,
            stream,
            instance: instance.to_owned(),
            topic: topic.to_owned(),
            handler: handler.to_owned(),
        }
    }

    async fn next(&mut self) -> Delivery {
        let item = within("a delivery", self.stream.next())
            .await
            .expect("the stream goes on")
            .unwrap();
        codec::decode(self.conn.codec(), &item).unwrap()
    }

    /// The next delivery within `wait`, if any.
    async fn maybe_next(&mut self, wait: Duration) -> Option<Delivery> {
        let item = tokio::time::timeout(wait, self.stream.next())
            .await
            .ok()??;
        Some(codec::decode(self.conn.codec(), &item.unwrap()).unwrap())
    }

    /// Every delivery from now on, as a stream.
    fn deliveries(self) -> impl futures::Stream<Item = Delivery> {
        let Subscriber { conn, stream, .. } = self;
        stream.map(move |item| {
            codec::decode(conn.codec(), &item.expect("the stream goes on"))
                .expect("a delivery decodes")
        })
    }

    async fn ack(&self, id: u64, error: Option<&str>) {
        let () = call(
            &self.conn,
            host_api::ACK,
            json!({
                "service": "svc", "handler": self.handler, "topic": self.topic,
                "instance": self.instance, "id": id, "error": error,
            }),
        )
        .await
        .unwrap();
    }
}

fn pool() -> Value {
    json!({ "mode": "pool" })
}

/// One HTTP request with an optional JSON body: the status and the body.
async fn http(host: &RunningHost, method: &str, path: &str, body: Option<Value>) -> (u16, String) {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let answer = host
        .http()
        .request(
            method.parse().unwrap(),
            path,
            &[("content-type", "application/json")],
            body,
        )
        .await;
    (answer.status.as_u16(), answer.text())
}

/// Waits until `instance` is subscribed to `group` of `topic`: from then
/// on, what is published reaches it.
async fn subscribed(host: &RunningHost, topic: &str, group: &str, instance: &str) {
    host.http().wait_subscribed(topic, group, &[instance]).await;
}

#[tokio::test]
async fn publish_deliver_ack_and_idempotency() {
    let dir = tempfile::tempdir().unwrap();
    let host = start(dir.path()).await;
    let conn = host.connect().await;
    let p = publish(&conn, "orders.created", json!({ "order": 1 })).await;
    assert_eq!(
        p,
        Published {
            id: 1,
            duplicate: false
        }
    );
    let mut s = Subscriber::new(&host, "orders.created", "i1", pool(), 10).await;
    let d = s.next().await;
    assert_eq!(
        (d.id, d.attempt, d.payload.clone()),
        (1, 1, json!({ "order": 1 }))
    );
    s.ack(1, None).await;

    let args =
        json!({ "topic": "orders.created", "payload": { "order": 2 }, "idempotency_key": "o-2" });
    let first: Published = call(&conn, host_api::PUBLISH, args.clone()).await.unwrap();
    let again: Published = call(&conn, host_api::PUBLISH, args).await.unwrap();
    assert_eq!(
        first,
        Published {
            id: 2,
            duplicate: false
        }
    );
    assert_eq!(
        again,
        Published {
            id: 2,
            duplicate: true
        }
    );
    assert_eq!(s.next().await.id, 2);
    s.ack(2, None).await;
    assert!(
        s.maybe_next(Duration::from_millis(300)).await.is_none(),
        "the duplicate is not stored"
    );

    let bad = call::<Published>(
        &conn,
        host_api::PUBLISH,
        json!({ "topic": "../etc", "payload": 1 }),
    )
    .await;
    assert_eq!(bad.unwrap_err().code(), Code::InvalidArgument);

    let (status, body) = http(&host, "GET", "/api/v1/events/topics", None).await;
    assert_eq!(status, 200, "{body}");
    let topics: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(topics[0]["topic"], "orders.created");
    assert_eq!(topics[0]["last_id"], 2);
    assert_eq!(topics[0]["groups"][0]["position"], 2);
    assert_eq!(topics[0]["groups"][0]["backlog"], 0);
    drop(s);
    host.stop().await;
}

#[tokio::test]
async fn pool_spreads_without_duplicates_and_broadcast_reaches_all() {
    let dir = tempfile::tempdir().unwrap();
    let host = start(dir.path()).await;
    let conn = host.connect().await;
    let mut a = Subscriber::new(&host, "t", "a", pool(), 4).await;
    let mut b = Subscriber::new(&host, "t", "b", pool(), 4).await;
    let mut ba = Subscriber::with(
        &host,
        "t",
        "all",
        "a",
        json!({ "mode": "broadcast" }),
        100,
        3,
    )
    .await;
    let mut bb = Subscriber::with(
        &host,
        "t",
        "all",
        "b",
        json!({ "mode": "broadcast" }),
        100,
        3,
    )
    .await;
    // Both instances are in the pool group, and both broadcast groups
    // exist, before anything is published.
    host.http()
        .wait_subscribed("t", "svc.handle", &["a", "b"])
        .await;
    subscribed(&host, "t", "svc.all@a", "a").await;
    subscribed(&host, "t", "svc.all@b", "b").await;
    for n in 0..40 {
        publish(&conn, "t", json!({ "n": n })).await;
    }
    let mut seen = BTreeMap::new();
    let mut from = [0, 0];
    while seen.len() < 40 {
        tokio::select! {
            d = a.next() => { from[0] += 1; a.ack(d.id, None).await; assert!(seen.insert(d.id, "a").is_none(), "{} twice", d.id); }
            d = b.next() => { from[1] += 1; b.ack(d.id, None).await; assert!(seen.insert(d.id, "b").is_none(), "{} twice", d.id); }
        }
    }
    assert!(
        from[0] > 0 && from[1] > 0,
        "both instances got events: {from:?}"
    );
    assert!(a.maybe_next(Duration::from_millis(200)).await.is_none());
    for s in [&mut ba, &mut bb] {
        let mut ids = Vec::new();
        for _ in 0..40 {
            let d = s.next().await;
            s.ack(d.id, None).await;
            ids.push(d.id);
        }
        assert_eq!(
            ids,
            (1..=40).collect::<Vec<_>>(),
            "broadcast reaches every instance"
        );
    }
    host.stop().await;
}

#[tokio::test]
async fn ordered_keeps_per_key_order_across_two_subscribers() {
    let dir = tempfile::tempdir().unwrap();
    let host = start(dir.path()).await;
    let conn = host.connect().await;
    let mode = json!({ "mode": "ordered", "field": "key" });
    let mut a = Subscriber::new(&host, "o", "a", mode.clone(), 10).await;
    let mut b = Subscriber::new(&host, "o", "b", mode, 10).await;
    for n in 0..30 {
        publish(&conn, "o", json!({ "key": format!("k{}", n % 3), "n": n })).await;
    }
    let mut handled: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut in_flight: HashSet<String> = HashSet::new();
    let mut total = 0;
    while total < 30 {
        let (d, who) = tokio::select! {
            d = a.next() => (d, 0),
            d = b.next() => (d, 1),
        };
        let key = d.payload["key"].as_str().unwrap().to_owned();
        assert!(in_flight.insert(key.clone()), "two events of {key} at once");
        // Slow handling, so the other key's events overtake.
        tokio::time::sleep(Duration::from_millis(5)).await;
        handled
            .entry(key.clone())
            .or_default()
            .push(d.payload["n"].as_u64().unwrap());
        in_flight.remove(&key);
        if who == 0 {
            a.ack(d.id, None).await
        } else {
            b.ack(d.id, None).await
        }
        total += 1;
    }
    for (key, ns) in handled {
        let mut sorted = ns.clone();
        sorted.sort();
        assert_eq!(ns, sorted, "{key} in publish order");
        assert_eq!(ns.len(), 10);
    }
    host.stop().await;
}

#[tokio::test]
async fn nack_retries_then_dead_letters_and_replay_delivers_again() {
    let dir = tempfile::tempdir().unwrap();
    let host = start(dir.path()).await;
    let conn = host.connect().await;
    let mut s = Subscriber::with(&host, "f", "handle", "i", pool(), 10, 2).await;
    publish(&conn, "f", json!({ "poison": true })).await;
    let d = s.next().await;
    assert_eq!(d.attempt, 1);
    s.ack(d.id, Some("boom")).await;
    let d = s.next().await;
    assert_eq!((d.id, d.attempt), (1, 2), "redelivered after a nack");
    s.ack(d.id, Some("boom again")).await;
    assert!(
        s.maybe_next(Duration::from_millis(500)).await.is_none(),
        "dead after max_attempts"
    );
    let (status, body) = http(&host, "GET", "/api/v1/events/dead?topic=f", None).await;
    assert_eq!(status, 200);
    let dead: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(dead[0]["id"], 1);
    assert_eq!(dead[0]["attempts"], 2);
    assert_eq!(dead[0]["error"], "boom again");
    assert_eq!(dead[0]["group"], "svc.handle");

    let (status, body) = http(
        &host,
        "POST",
        "/api/v1/events/replay",
        Some(json!({ "topic": "f", "id": 1 })),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let d = s.next().await;
    assert_eq!((d.id, d.attempt), (1, 1));
    s.ack(1, None).await;
    poll("a replayed and handled dead letter gone", || async {
        let (_, body) = http(&host, "GET", "/api/v1/events/dead", None).await;
        if body.trim() == "[]" {
            Ok(())
        } else {
            Err(body)
        }
    })
    .await;
    let (status, _) = http(
        &host,
        "POST",
        "/api/v1/events/replay",
        Some(json!({ "topic": "f", "all": true })),
    )
    .await;
    assert_eq!(status, 404);
    host.stop().await;
}

#[tokio::test]
async fn a_disconnected_subscribers_deliveries_go_to_the_other() {
    let dir = tempfile::tempdir().unwrap();
    let host = start(dir.path()).await;
    let conn = host.connect().await;
    let mut a = Subscriber::new(&host, "d", "a", pool(), 100).await;
    subscribed(&host, "d", "svc.handle", "a").await;
    for n in 0..3 {
        publish(&conn, "d", json!({ "n": n })).await;
    }
    for _ in 0..3 {
        a.next().await;
    }
    let mut b = Subscriber::new(&host, "d", "b", pool(), 100).await;
    drop(a);
    let mut ids = Vec::new();
    for _ in 0..3 {
        let d = b.next().await;
        assert_eq!(d.attempt, 2);
        b.ack(d.id, None).await;
        ids.push(d.id);
    }
    ids.sort();
    assert_eq!(ids, vec![1, 2, 3]);
    host.stop().await;
}

#[tokio::test]
async fn restart_resumes_positions_and_redelivers_unacked() {
    let dir = tempfile::tempdir().unwrap();
    let host = start(dir.path()).await;
    let conn = host.connect().await;
    let mut s = Subscriber::new(&host, "r", "i", pool(), 100).await;
    for n in 0..5 {
        publish(&conn, "r", json!({ "n": n })).await;
    }
    for _ in 0..5 {
        let d = s.next().await;
        if d.id != 3 {
            s.ack(d.id, None).await;
        }
    }
    drop(s);
    drop(conn);
    host.stop().await;

    let host = start(dir.path()).await;
    let mut s = Subscriber::new(&host, "r", "i", pool(), 100).await;
    let d = s.next().await;
    assert_eq!(d.id, 3, "only the unacknowledged event comes again");
    s.ack(3, None).await;
    assert!(s.maybe_next(Duration::from_millis(300)).await.is_none());
    let conn = host.connect().await;
    assert_eq!(publish(&conn, "r", json!({})).await.id, 6);
    host.stop().await;
}

#[tokio::test]
async fn a_torn_tail_is_truncated_and_nothing_acknowledged_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let host = start(dir.path()).await;
    let conn = host.connect().await;
    for n in 0..10 {
        publish(&conn, "torn", json!({ "n": n })).await;
    }
    drop(conn);
    host.stop().await;
    let seg_dir = dir.path().join("events/topics/torn");
    let mut segs: Vec<_> = std::fs::read_dir(&seg_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    segs.sort();
    let last = segs.pop().unwrap();
    let mut bytes = std::fs::read(&last).unwrap();
    let len = bytes.len();
    bytes.extend_from_slice(&[0x30, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7]);
    std::fs::write(&last, &bytes).unwrap();

    let host = start(dir.path()).await;
    assert_eq!(
        std::fs::metadata(&last).unwrap().len() as usize,
        len,
        "the garbage is cut"
    );
    let (status, body) = http(
        &host,
        "GET",
        "/api/v1/events/topics/torn/tail?after=0",
        None,
    )
    .await;
    assert_eq!(status, 200);
    let ids: Vec<u64> = body
        .lines()
        .filter(|l| !l.is_empty() && l.starts_with('{'))
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["id"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(ids, (1..=10).collect::<Vec<_>>());
    let conn = host.connect().await;
    assert_eq!(publish(&conn, "torn", json!({})).await.id, 11);
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn instances_subscribing_at_once_share_one_group() {
    const SUBSCRIBERS: usize = 16;
    const EVENTS: u64 = 64;
    let dir = tempfile::tempdir().unwrap();
    let host = start(dir.path()).await;
    let conn = host.connect().await;
    // The topic exists, so that the subscriptions race only for the group.
    publish(&conn, "race", json!({ "n": 0 })).await;
    let names: Vec<String> = (0..SUBSCRIBERS).map(|i| format!("i{i}")).collect();
    // Each subscription is sent as its connection is made, all at once.
    let subs = futures::future::join_all(
        names
            .iter()
            .map(|name| Subscriber::new(&host, "race", name, pool(), 1000)),
    )
    .await;
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    host.http()
        .wait_subscribed("race", "svc.handle", &names)
        .await;
    for n in 1..EVENTS {
        publish(&conn, "race", json!({ "n": n })).await;
    }
    let mut all = futures::stream::select_all(
        subs.into_iter()
            .enumerate()
            .map(|(i, s)| s.deliveries().map(move |d| (i, d))),
    );
    let mut seen: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
    within("every event delivered", async {
        while (seen.len() as u64) < EVENTS {
            let (i, d) = all.next().await.expect("the subscriptions go on");
            seen.entry(d.id).or_default().push(i);
        }
    })
    .await;
    // A pause to let any second delivery of an event arrive.
    while let Ok(Some((i, d))) = tokio::time::timeout(Duration::from_millis(300), all.next()).await
    {
        seen.entry(d.id).or_default().push(i);
    }
    let twice: BTreeMap<&u64, &Vec<usize>> = seen.iter().filter(|(_, v)| v.len() > 1).collect();
    assert!(
        twice.is_empty(),
        "pool mode delivers each event to one subscriber; these went to several: {twice:?}"
    );
    assert_eq!(seen.len() as u64, EVENTS, "every event is delivered");
    host.stop().await;
}

#[tokio::test]
async fn the_broadcast_group_of_an_instance_that_left_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    let start = || {
        let mut config = HostConfig::new("127.0.0.1:0".parse().unwrap(), dir.path());
        config.events = config
            .events
            .clone()
            .broadcast_idle(Duration::from_millis(300));
        RunningHost::start(config)
    };
    let groups = |body: &str| -> Vec<String> {
        let topics: Value = serde_json::from_str(body).unwrap();
        topics
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|t| t["groups"].as_array().unwrap().iter())
            .map(|g| g["group"].as_str().unwrap().to_owned())
            .collect()
    };
    let host = start().await;
    let conn = host.connect().await;
    let broadcast = json!({ "mode": "broadcast" });
    let mut stays = Subscriber::new(&host, "b", "stays", broadcast.clone(), 10).await;
    let leaves = Subscriber::new(&host, "b", "leaves", broadcast.clone(), 10).await;
    let pooled = Subscriber::new(&host, "b", "p", pool(), 10).await;
    publish(&conn, "b", json!({ "n": 1 })).await;
    let d = stays.next().await;
    stays.ack(d.id, None).await;
    let (_, body) = http(&host, "GET", "/api/v1/events/topics", None).await;
    assert_eq!(
        groups(&body),
        ["svc.handle", "svc.handle@leaves", "svc.handle@stays"]
    );

    // The instance leaves; the others stay subscribed.
    drop(leaves);
    let left = poll("a group removed after the idle time", || async {
        let (_, body) = http(&host, "GET", "/api/v1/events/topics", None).await;
        let left = groups(&body);
        if left.len() == 2 { Ok(left) } else { Err(left) }
    })
    .await;
    assert_eq!(
        left,
        ["svc.handle", "svc.handle@stays"],
        "the departed instance's broadcast group is removed after the idle time"
    );
    // The others are untouched, and the removal is stored.
    publish(&conn, "b", json!({ "n": 2 })).await;
    assert_eq!(stays.next().await.id, 2);
    drop((stays, pooled, conn));
    host.stop().await;
    let host = start().await;
    let (_, body) = http(&host, "GET", "/api/v1/events/topics", None).await;
    assert!(
        !groups(&body).contains(&"svc.handle@leaves".to_owned()),
        "{body}"
    );
    host.stop().await;
}
