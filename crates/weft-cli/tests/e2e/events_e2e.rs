//! Events end to end, with real processes: a `weft host` and instances of
//! the events probe. Events published are handled (at least once, so tests
//! count distinct events), spread as each handler's mode says, and survive
//! SIGKILLs of instances and of the host; failing events end in the dead
//! letters and come back with `weft events replay`.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;
use weft::Client;
use weft_test_support::{
    HostProcess, PATIENCE, ServiceProcess, poll, poll_within, text, wait_instances,
};

use crate::events_probe::{self, BROADCAST, DEAD, Job, ORDERED, POOL, SERVICE};
use crate::host_builder;
use crate::mesh::{Backend, Mesh, conformance};

conformance!(
    ten_thousand_events_over_three_pool_instances_are_all_handled,
    broadcast_reaches_every_instance,
    ordered_by_keeps_per_key_order_over_four_instances,
    a_sigkilled_instance_loses_no_event,
    dead_letters_come_back_with_replay_once_the_handler_is_fixed,
);

/// How long the handling of thousands of events may take.
const BULK_PATIENCE: Duration = Duration::from_secs(180);

fn job(tag: &str, n: u64) -> Job {
    Job {
        tag: tag.into(),
        n,
        ..Job::default()
    }
}

/// Starts `count` probe instances `<prefix>-1..` and waits until they are
/// registered.
async fn probes(
    host: &HostProcess,
    client: &Client,
    prefix: &str,
    count: usize,
    dir: &Path,
) -> Vec<ServiceProcess> {
    let procs: Vec<ServiceProcess> = (1..=count)
        .map(|i| events_probe::start(host, &format!("{prefix}-{i}"), dir))
        .collect();
    wait_instances(client, SERVICE, None, count).await;
    procs
}

/// Waits until every probe in `probes` is subscribed to `topic` with
/// `handler`, so that what a test publishes next reaches all of them.
async fn subscribed(host: &HostProcess, topic: &str, handler: &str, probes: &[ServiceProcess]) {
    let http = host.http();
    for p in probes {
        // A broadcast handler has a consumer group per instance.
        let group = if topic == BROADCAST {
            format!("{SERVICE}.{handler}@{}", p.instance())
        } else {
            format!("{SERVICE}.{handler}")
        };
        http.wait_subscribed(topic, &group, &[p.instance()]).await;
    }
}

/// Publishes `jobs` with at most 32 publishes in flight; returns once every
/// publish was acknowledged.
async fn publish_all(client: &Client, topic: &'static str, jobs: Vec<Job>) {
    let mut tasks = JoinSet::new();
    let mut jobs = jobs.into_iter();
    loop {
        while tasks.len() < 32 {
            let Some(job) = jobs.next() else { break };
            let client = client.clone();
            tasks.spawn(async move { client.publish(topic, &job).await });
        }
        match tasks.join_next().await {
            Some(r) => {
                r.expect("the publish task")
                    .expect("the host stores the event");
            }
            None => return,
        }
    }
}

/// Waits until `handler` handled every `n` in `0..count` of `tag` on some
/// instance; panics with what is missing after `patience`.
pub(crate) async fn wait_all_handled(
    dir: &Path,
    handler: &str,
    tag: &str,
    count: u64,
    patience: Duration,
) {
    let what = format!("every one of {count} `{tag}` events handled by `{handler}`");
    poll_within(patience, &what, || async {
        let seen = events_probe::handled_anywhere(dir, handler, tag);
        let missing: Vec<u64> = (0..count).filter(|n| !seen.contains(n)).collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{} missing; the first: {:?}",
                missing.len(),
                &missing[..missing.len().min(20)]
            ))
        }
    })
    .await;
}

async fn ten_thousand_events_over_three_pool_instances_are_all_handled(backend: Backend) {
    // Instances register with one host; publishers and the CLI use the
    // other (the same host on the embedded backend).
    let mesh = Mesh::start(backend).await;
    let (host, caller) = (mesh.home(), mesh.caller());
    let client = caller.client().await;
    let dir = tempfile::tempdir().unwrap();
    let probes = probes(host, &client, "pool", 3, dir.path()).await;
    subscribed(caller, POOL, "pooled", &probes).await;

    const COUNT: u64 = 10_000;
    publish_all(&client, POOL, (0..COUNT).map(|n| job("main", n)).collect()).await;
    wait_all_handled(dir.path(), "pooled", "main", COUNT, BULK_PATIENCE).await;

    let per = events_probe::handled(dir.path(), "pooled", "main");
    let total: usize = per.values().map(HashSet::len).sum();
    assert_eq!(
        per.len(),
        3,
        "every instance takes a share: {:?}",
        counts(&per)
    );
    // At least once: without failures, duplicates stay rare.
    assert!(
        total < COUNT as usize + COUNT as usize / 100,
        "{total} handlings of {COUNT} events: {:?}",
        counts(&per)
    );
}

fn counts(per: &BTreeMap<String, HashSet<u64>>) -> BTreeMap<&str, usize> {
    per.iter().map(|(k, v)| (k.as_str(), v.len())).collect()
}

async fn broadcast_reaches_every_instance(backend: Backend) {
    // Instances register with one host; publishers and the CLI use the
    // other (the same host on the embedded backend).
    let mesh = Mesh::start(backend).await;
    let (host, caller) = (mesh.home(), mesh.caller());
    let client = caller.client().await;
    let dir = tempfile::tempdir().unwrap();
    let probes = probes(host, &client, "bcast", 3, dir.path()).await;
    subscribed(caller, BROADCAST, "everywhere", &probes).await;

    const COUNT: u64 = 200;
    publish_all(
        &client,
        BROADCAST,
        (0..COUNT).map(|n| job("main", n)).collect(),
    )
    .await;
    let every: HashSet<u64> = (0..COUNT).collect();
    poll("every instance handles every broadcast event", || async {
        let per = events_probe::handled(dir.path(), "everywhere", "main");
        (per.len() == 3 && per.values().all(|s| *s == every)).then_some(())
    })
    .await;
}

async fn ordered_by_keeps_per_key_order_over_four_instances(backend: Backend) {
    // Instances register with one host; publishers and the CLI use the
    // other (the same host on the embedded backend).
    let mesh = Mesh::start(backend).await;
    let (host, caller) = (mesh.home(), mesh.caller());
    let client = caller.client().await;
    let dir = tempfile::tempdir().unwrap();
    let probes = probes(host, &client, "ord", 4, dir.path()).await;
    subscribed(caller, ORDERED, "ordered", &probes).await;

    const KEYS: u64 = 8;
    const PER_KEY: u64 = 40;
    // Published one at a time, so that publish order is the order of `n`.
    for n in 0..KEYS * PER_KEY {
        let job = Job {
            key: format!("k{}", n % KEYS),
            ms: 10,
            ..job("main", n)
        };
        client.publish(ORDERED, &job).await.unwrap();
    }
    wait_all_handled(dir.path(), "ordered", "main", KEYS * PER_KEY, PATIENCE * 2).await;

    let mut per_key: BTreeMap<String, Vec<events_probe::Line>> = BTreeMap::new();
    for l in events_probe::lines(dir.path()) {
        if l.handler == "ordered" && l.tag == "main" {
            per_key.entry(l.key.clone()).or_default().push(l);
        }
    }
    assert_eq!(per_key.len(), KEYS as usize);
    let mut instances = HashSet::new();
    for (key, mut lines) in per_key {
        lines.sort_by_key(|l| l.start_us);
        for pair in lines.windows(2) {
            let (a, b) = (&pair[0], &pair[1]);
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
        instances.extend(lines.into_iter().map(|l| l.instance));
    }
    assert!(
        instances.len() > 1,
        "different keys should spread over instances: {instances:?}"
    );
}

async fn a_sigkilled_instance_loses_no_event(backend: Backend) {
    // Instances register with one host; publishers and the CLI use the
    // other (the same host on the embedded backend).
    let mesh = Mesh::start(backend).await;
    let (host, caller) = (mesh.home(), mesh.caller());
    let client = caller.client().await;
    let dir = tempfile::tempdir().unwrap();
    let mut probes = probes(host, &client, "kill", 2, dir.path()).await;
    subscribed(caller, POOL, "pooled", &probes).await;

    const COUNT: u64 = 300;
    let jobs = (0..COUNT)
        .map(|n| Job {
            ms: 20,
            ..job("main", n)
        })
        .collect();
    publish_all(&client, POOL, jobs).await;
    let victim = probes[0].instance().to_owned();
    poll("the victim handles some events", || async {
        events_probe::handled(dir.path(), "pooled", "main")
            .get(&victim)
            .is_some_and(|s| s.len() >= 10)
            .then_some(())
    })
    .await;
    // Mid-handling: it has deliveries in flight that it never acknowledges.
    probes[0].kill9().await;
    wait_all_handled(dir.path(), "pooled", "main", COUNT, BULK_PATIENCE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkilled_host_loses_no_acknowledged_event() {
    let data = tempfile::tempdir().unwrap();
    let mut host = host_builder().data_dir(data.path()).start().await;
    let socket = host.socket().to_owned();
    let client = host.client().await;
    let dir = tempfile::tempdir().unwrap();
    let probes = probes(&host, &client, "hostkill", 2, dir.path()).await;
    subscribed(&host, POOL, "pooled", &probes).await;

    const COUNT: u64 = 1_000;
    // One publisher, one event at a time: each publish that returns Ok is
    // stored; one that fails (the host is down) is retried with the same
    // idempotency key until it is.
    let (acked_tx, mut acked_rx) = tokio::sync::watch::channel(0u64);
    let publisher = {
        let client = client.clone();
        tokio::spawn(async move {
            for n in 0..COUNT {
                let start = Instant::now();
                loop {
                    let sent = client
                        .publish_with(POOL)
                        .idempotency_key(format!("hostkill-{n}"))
                        .send(&job("main", n))
                        .await;
                    match sent {
                        Ok(_) => break,
                        Err(e) => {
                            assert!(
                                start.elapsed() < PATIENCE * 2,
                                "publish {n} still fails after {:?}: {e}",
                                start.elapsed()
                            );
                            // The publisher's own retry pace while the host
                            // is down, as a program would retry.
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                }
                acked_tx.send_replace(n + 1);
            }
        })
    };
    tokio::time::timeout(PATIENCE, acked_rx.wait_for(|n| *n >= COUNT / 3))
        .await
        .expect("a third of the events published")
        .unwrap();
    host.kill9().await;
    let restarted = host_builder()
        .listen(socket)
        .data_dir(data.path())
        .start()
        .await;
    tokio::time::timeout(PATIENCE * 3, publisher)
        .await
        .expect("every event published once the host is back")
        .unwrap();
    wait_all_handled(dir.path(), "pooled", "main", COUNT, BULK_PATIENCE).await;
    drop(restarted);
}

async fn dead_letters_come_back_with_replay_once_the_handler_is_fixed(backend: Backend) {
    // Instances register with one host; publishers and the CLI use the
    // other (the same host on the embedded backend).
    let mesh = Mesh::start(backend).await;
    let (host, caller) = (mesh.home(), mesh.caller());
    let client = caller.client().await;
    let dir = tempfile::tempdir().unwrap();
    let probes = probes(host, &client, "dead", 1, dir.path()).await;
    subscribed(caller, DEAD, "flaky", &probes).await;

    let doomed = Job {
        fail: true,
        ..job("main", 0)
    };
    let id = client.publish(DEAD, &doomed).await.unwrap();
    // max_attempts = 2: two failures, then the dead letters.
    poll("the event fails twice", || async {
        (events_probe::lines(dir.path())
            .iter()
            .filter(|l| l.handler == "failed" && l.tag == "main")
            .count()
            >= 2)
            .then_some(())
    })
    .await;
    let listing = poll("the event is listed in the dead letters", || async {
        let out = caller.weft(&["events", "dead", DEAD]).await;
        let stdout = text(&out.stdout);
        (out.status.success() && stdout.contains(&id.to_string())).then_some(stdout)
    })
    .await;
    assert!(listing.contains(DEAD), "{listing}");
    let attempts: Vec<String> = events_probe::lines(dir.path())
        .into_iter()
        .filter(|l| l.handler == "failed" && l.tag == "main")
        .map(|l| l.key)
        .collect();
    assert_eq!(
        attempts,
        ["1", "2"],
        "the handler sees each attempt, and none beyond max_attempts"
    );
    assert!(events_probe::handled_anywhere(dir.path(), "flaky", "main").is_empty());

    std::fs::write(dir.path().join("fixed"), b"").unwrap();
    let out = caller.weft(&["events", "replay", "--all", DEAD]).await;
    assert!(
        out.status.success(),
        "weft events replay failed: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    poll("the replayed event is handled", || async {
        events_probe::handled_anywhere(dir.path(), "flaky", "main")
            .contains(&0)
            .then_some(())
    })
    .await;
}
