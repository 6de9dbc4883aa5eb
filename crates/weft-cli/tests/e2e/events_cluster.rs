//! Events across a cluster: three NATS nodes and three hosts, each in a
//! network namespace of its own, with instances of the events probe on
//! every host. Per-key order holds while a host dies and its share moves
//! to the others; no acknowledged event is lost when a NATS node or a host
//! is SIGKILLed. Events are handled at least once: duplicates are counted
//! and printed.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use weft::Client;
use weft_test_support::{PATIENCE, ServiceProcess, poll, poll_within, wait_instances};

use crate::cluster::Machines;
use crate::events_e2e::wait_all_handled;
use crate::events_probe::{self, BROADCAST, Job, ORDERED, POOL, SERVICE};

/// `per_host` probe instances on each host, `<prefix>-h<i>-<j>`.
async fn probes(
    cluster: &Machines,
    prefix: &str,
    per_host: usize,
    dir: &std::path::Path,
) -> Vec<Vec<ServiceProcess>> {
    let mut all = Vec::new();
    for (i, (host, netns)) in cluster.hosts.iter().zip(&cluster.machines).enumerate() {
        all.push(
            (1..=per_host)
                .map(|j| {
                    events_probe::start_in(netns, host, &format!("{prefix}-h{}-{j}", i + 1), dir)
                })
                .collect(),
        );
    }
    let client = cluster.hosts[0].client().await;
    wait_instances(&client, SERVICE, None, per_host * cluster.hosts.len()).await;
    all
}

/// Publishes `job` until it is stored: a publish that fails (its host or
/// a NATS node going away) is sent again with the same idempotency key.
async fn publish_surely(client: &Client, topic: &'static str, key: String, job: &Job) {
    poll_within(PATIENCE * 2, &format!("event {key} stored"), || async {
        client
            .publish_with(topic)
            .idempotency_key(key.clone())
            .send(job)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    })
    .await;
}

/// Handlings per event `n` of `handler` and `tag`, on any instance.
fn handlings(dir: &std::path::Path, handler: &str, tag: &str) -> BTreeMap<u64, usize> {
    let mut per = BTreeMap::new();
    for l in events_probe::lines(dir) {
        if l.handler == handler && l.tag == tag {
            *per.entry(l.n).or_default() += 1;
        }
    }
    per
}

async fn wait_handled(dir: &std::path::Path, handler: &str, tag: &str, count: u64) {
    wait_all_handled(dir, handler, tag, count, PATIENCE * 4).await;
}

/// The 38-item ordered workload over instances on three hosts, one host
/// SIGKILLed (with its instances, as a machine that dies) mid-stream: every
/// key's events are handled in publish order, one at a time, its share
/// moving to the other hosts; then a NATS node is SIGKILLed while events are
/// published and handled, and nothing acknowledged is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_keep_order_and_survive_a_dead_host_and_a_dead_nats_node() {
    let mut cluster = Machines::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut probes = probes(&cluster, "ev", 2, dir.path()).await;
    let client = cluster.hosts[0].client().await;
    for (i, host) in cluster.hosts.iter().enumerate() {
        let instances: Vec<String> = probes[i].iter().map(|p| p.instance().to_owned()).collect();
        let refs: Vec<&str> = instances.iter().map(String::as_str).collect();
        host.http()
            .wait_subscribed(ORDERED, &format!("{SERVICE}.ordered"), &refs)
            .await;
    }

    // 38 events over 5 keys, published one at a time (publish order is the
    // order of `n`), each handled in up to 40 ms.
    const ORDERED_COUNT: u64 = 38;
    let job = |n: u64| Job {
        tag: "ordered".into(),
        n,
        key: format!("k{}", n % 5),
        ms: 40,
        ..Job::default()
    };
    for n in 0..ORDERED_COUNT {
        publish_surely(&client, ORDERED, format!("ordered-{n}"), &job(n)).await;
        if n == ORDERED_COUNT / 3 {
            // Some handled: h2 and its instances die.
            poll("a few ordered events handled", || async {
                (handlings(dir.path(), "ordered", "ordered").len() >= 5).then_some(())
            })
            .await;
            cluster.hosts[1].kill9().await;
            for p in &mut probes[1] {
                p.kill9().await;
            }
        }
    }
    wait_handled(dir.path(), "ordered", "ordered", ORDERED_COUNT).await;
    let mut per_key: BTreeMap<String, Vec<events_probe::Line>> = BTreeMap::new();
    for l in events_probe::lines(dir.path()) {
        if l.handler == "ordered" && l.tag == "ordered" {
            per_key.entry(l.key.clone()).or_default().push(l);
        }
    }
    let mut duplicates = 0;
    for (key, mut lines) in per_key {
        lines.sort_by_key(|l| l.start_us);
        for pair in lines.windows(2) {
            let (a, b) = (&pair[0], &pair[1]);
            if a.n == b.n {
                duplicates += 1;
                continue;
            }
            assert!(
                a.n < b.n,
                "key {key}: event {} was handled after event {} though published before it: {a:?} then {b:?}",
                b.n,
                a.n
            );
            assert!(
                a.end_us <= b.start_us,
                "key {key}: events {} and {} were handled at the same time ({} and {})",
                a.n,
                b.n,
                a.instance,
                b.instance
            );
        }
    }
    println!(
        "ordered: {ORDERED_COUNT} events, {duplicates} handled twice (a host died mid-stream)"
    );

    // Pool events published through h1 and handled on h1 and h3 while a
    // NATS node is SIGKILLed, and started again.
    const POOL_COUNT: u64 = 300;
    let publisher = {
        let client = client.clone();
        tokio::spawn(async move {
            for n in 0..POOL_COUNT {
                let job = Job {
                    tag: "pool".into(),
                    n,
                    ms: 5,
                    ..Job::default()
                };
                publish_surely(&client, POOL, format!("pool-{n}"), &job).await;
            }
        })
    };
    poll("a third of the pool events handled", || async {
        (handlings(dir.path(), "pooled", "pool").len() as u64 >= POOL_COUNT / 3).then_some(())
    })
    .await;
    cluster.nats.kill9(0).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    cluster.nats.restart(0).await;
    tokio::time::timeout(PATIENCE * 4, publisher)
        .await
        .expect("every pool event published")
        .unwrap();
    wait_handled(dir.path(), "pooled", "pool", POOL_COUNT).await;
    let per = handlings(dir.path(), "pooled", "pool");
    let twice: HashMap<u64, usize> = per.into_iter().filter(|(_, c)| *c > 1).collect();
    println!(
        "pool: {POOL_COUNT} events, all handled, {} handled more than once (a NATS node died mid-stream)",
        twice.len()
    );

    // Broadcast: every event reaches every instance on the hosts that are
    // left (h1's and h3's).
    let living: Vec<String> = [&probes[0], &probes[2]]
        .into_iter()
        .flatten()
        .map(|p| p.instance().to_owned())
        .collect();
    for (host, list) in [
        (&cluster.hosts[0], &probes[0]),
        (&cluster.hosts[2], &probes[2]),
    ] {
        for p in list {
            host.http()
                .wait_subscribed(
                    BROADCAST,
                    &format!("{SERVICE}.everywhere@{}", p.instance()),
                    &[p.instance()],
                )
                .await;
        }
    }
    const BROADCAST_COUNT: u64 = 20;
    for n in 0..BROADCAST_COUNT {
        let job = Job {
            tag: "broadcast".into(),
            n,
            ..Job::default()
        };
        publish_surely(&client, BROADCAST, format!("broadcast-{n}"), &job).await;
    }
    let every: std::collections::HashSet<u64> = (0..BROADCAST_COUNT).collect();
    poll(
        "every instance on h1 and h3 handles every broadcast event",
        || async {
            let per = events_probe::handled(dir.path(), "everywhere", "broadcast");
            let done = living
                .iter()
                .all(|i| per.get(i).is_some_and(|s| *s == every));
            if done {
                Ok(())
            } else {
                Err(format!(
                    "{:?}",
                    per.iter().map(|(k, v)| (k, v.len())).collect::<Vec<_>>()
                ))
            }
        },
    )
    .await;
}
