//! What users rely on when processes die, stop or stall: dead instances
//! leave, calls go on while the host restarts, busy instances stay, and
//! SIGTERM finishes the calls in flight.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::json;
use tokio::task::JoinSet;
use weft::Client;
use weft_test_support::{PATIENCE, close_wait_to, instances, poll, text, wait_instances};

use crate::probe::{Stats, WhoAmI};
use crate::{host_builder, probe, probe_with, start_host};

async fn whoami(client: &Client) -> weft::Result<WhoAmI> {
    client.call("probe", "whoami", ()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_instance_leaves_promptly() {
    // A lease far longer than the test waits: only noticing the closed
    // connection can make the killed instance leave in time.
    let host = host_builder().args(["--lease-ttl", "600"]).start().await;
    let watcher = host.client().await;
    let _a = probe(&host, "1.0.0", "probe-a");
    let mut b = probe(&host, "1.0.0", "probe-b");
    wait_instances(&watcher, "probe", None, 2).await;

    let client = host.client().await;
    // Both answer first, so the client holds a connection to each.
    let mut seen = HashSet::new();
    for _ in 0..200 {
        seen.insert(whoami(&client).await.unwrap().instance);
        if seen.len() == 2 {
            break;
        }
    }
    assert_eq!(seen.len(), 2, "{seen:?}");

    b.kill9().await;
    let errors = std::cell::RefCell::new(Vec::new());
    poll(
        "twenty calls in a row answered by the instance left",
        || async {
            for _ in 0..20 {
                match whoami(&client).await {
                    Ok(me) => assert_eq!(me.instance, "probe-a", "a killed instance answered"),
                    Err(e) => {
                        let seen = format!("call failed: {e}");
                        errors.borrow_mut().push(e);
                        return Err(seen);
                    }
                }
            }
            Ok(())
        },
    )
    .await;
    // Calls that were racing the kill may fail, but not many.
    let errors = errors.into_inner();
    assert!(errors.len() < 10, "{errors:?}");
    wait_instances(&client, "probe", None, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_go_on_while_the_host_restarts() {
    let data = tempfile::tempdir().unwrap();
    let mut host = host_builder().data_dir(data.path()).start().await;
    let watcher = host.client().await;
    let _probe = probe(&host, "1.0.0", "probe-r");
    wait_instances(&watcher, "probe", None, 1).await;
    let client = host.client().await;
    assert_eq!(whoami(&client).await.unwrap().instance, "probe-r");
    client
        .call::<_, ()>("probe", "notify", json!({ "msg": "before the restart" }))
        .await
        .unwrap();

    host.kill9().await;
    let err = client.services().await.unwrap_err();
    assert_eq!(
        err.code(),
        weft::Code::Unavailable,
        "the host is down: {err}"
    );
    // The probe's own calls go on too: it resolves them in its own cache.
    let relayed: Option<u64> = client.call("probe", "relay_budget", ()).await.unwrap();
    assert!(relayed.is_some());
    // Calls between a caller and an instance do not go through the host.
    for i in 0..20 {
        let me = whoami(&client)
            .await
            .unwrap_or_else(|e| panic!("call {i} with the host down failed: {e}"));
        assert_eq!(me.instance, "probe-r");
        // Spread over a second: calls keep working while the host stays down.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let restarted = host_builder()
        .listen(host.socket())
        .data_dir(data.path())
        .start()
        .await;
    assert_eq!(restarted.address(), host.address());
    // The instance registers again by itself, and old and new clients see it.
    wait_instances(&client, "probe", None, 1).await;
    let fresh = restarted.client().await;
    assert_eq!(whoami(&fresh).await.unwrap().instance, "probe-r");
    assert_eq!(whoami(&client).await.unwrap().instance, "probe-r");

    let out = restarted.weft(&["notifications", "--json"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let kept = stdout
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .any(|n| n["message"] == "before the restart" && n["service"] == "probe");
    assert!(kept, "the notification survives the restart: {stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_instance_is_not_evicted() {
    let host = host_builder().args(["--lease-ttl", "1"]).start().await;
    let watcher = host.client().await;
    let _probe = probe(&host, "1.0.0", "probe-busy");
    wait_instances(&watcher, "probe", None, 1).await;

    // The probe runs two runtime workers: four calls that block their
    // thread for 3 s keep both blocked for about 6 s, six leases long.
    let caller = host.client().await;
    let mut calls = JoinSet::new();
    for _ in 0..4 {
        let caller = caller.clone();
        calls.spawn(async move {
            caller
                .request("probe", "block")
                .timeout(Duration::from_secs(120))
                .send::<_, ()>(json!({ "ms": 3000 }))
                .await
        });
    }
    let start = Instant::now();
    let mut polls = 0;
    let mut done = Vec::new();
    while done.len() < 4 {
        while let Some(joined) = calls.try_join_next() {
            done.push(joined.expect("the call task does not panic"));
        }
        let listed = watcher.services().await.unwrap();
        assert_eq!(
            instances(&listed, "probe", None),
            1,
            "the busy probe was evicted after {polls} polls: {listed:?}"
        );
        polls += 1;
        assert!(
            start.elapsed() < PATIENCE * 2,
            "the blocking calls did not finish within {:?}",
            PATIENCE * 2
        );
        // The sampling pace of the listing: each look is a chance to see
        // the eviction that must not happen.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for result in done {
        result.expect("a blocking call succeeds");
    }
    assert!(polls >= 5, "the probe was busy through {polls} polls only");
    assert_eq!(whoami(&caller).await.unwrap().instance, "probe-busy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_calls_in_flight() {
    let host = start_host().await;
    let watcher = host.client().await;
    let mut probe = probe(&host, "1.0.0", "probe-g");
    wait_instances(&watcher, "probe", None, 1).await;
    let client = host.client().await;

    let call = tokio::spawn({
        let client = client.clone();
        async move {
            client
                .call::<_, ()>("probe", "sleep", json!({ "ms": 3000, "tag": "graceful" }))
                .await
        }
    });
    poll("the sleep started", || async {
        let stats: Stats = client
            .call("probe", "stats", json!({ "tag": "graceful" }))
            .await
            .unwrap();
        (stats.started == 1).then_some(())
    })
    .await;

    probe.signal(Signal::SIGTERM);
    // It leaves the registry first, so that callers stop choosing it while
    // it finishes what it has.
    wait_instances(&watcher, "probe", None, 0).await;
    assert!(
        !call.is_finished(),
        "the instance was listed until its call finished"
    );
    let result = tokio::time::timeout(PATIENCE, call)
        .await
        .expect("the call in flight ends")
        .expect("the call task does not panic");
    result.expect("the call in flight completes after SIGTERM");
    let status = probe.wait_exit().await;
    assert_eq!(status.code(), Some(0), "the probe exits cleanly: {status}");
    let listed = watcher.services().await.unwrap();
    assert_eq!(instances(&listed, "probe", None), 0, "{listed:?}");
}

/// Sixteen callers call `nap` (50 ms, idempotent) with `call` for
/// `for_ms` while `kill` SIGKILLs one of the two instances after a fifth
/// of it; answers by instance, and the errors.
async fn nap_through_a_kill<F, Fut>(
    call: F,
    for_ms: u64,
    kill: impl Future<Output = ()>,
) -> (
    std::collections::BTreeMap<String, usize>,
    Vec<(weft::Code, String)>,
)
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Napped> + Send,
{
    let stop = Instant::now() + Duration::from_millis(for_ms);
    let mut callers = JoinSet::new();
    for _ in 0..16 {
        let call = call.clone();
        callers.spawn(async move {
            let mut answered = Vec::new();
            let mut errors = Vec::new();
            while Instant::now() < stop {
                match call().await {
                    Ok(instance) => answered.push(instance),
                    Err(e) => errors.push(e),
                }
            }
            (answered, errors)
        });
    }
    tokio::time::sleep(Duration::from_millis(for_ms / 5)).await;
    kill.await;
    let mut answered = std::collections::BTreeMap::new();
    let mut errors = Vec::new();
    while let Some(done) = callers.join_next().await {
        let (a, e) = done.expect("a caller task does not panic");
        for instance in a {
            *answered.entry(instance).or_insert(0) += 1;
        }
        errors.extend(e);
    }
    (answered, errors)
}

/// What a caller of `nap` got: the instance that answered, or the error.
type Napped = Result<String, (weft::Code, String)>;

/// `nap` through `client`, as idempotent or not when `idempotent` says.
fn nap_with(
    client: &Client,
    idempotent: Option<bool>,
) -> impl Fn() -> std::pin::Pin<Box<dyn Future<Output = Napped> + Send>> + Clone + Send + 'static {
    let client = client.clone();
    move || {
        let client = client.clone();
        Box::pin(async move {
            let mut call = client.request("probe", "nap");
            if let Some(i) = idempotent {
                call = call.idempotent(i);
            }
            call.send::<_, WhoAmI>(json!({ "ms": 50 }))
                .await
                .map(|me| me.instance)
                .map_err(|e| (e.code(), e.to_string()))
        })
    }
}

/// An instance SIGKILLed with calls in flight to it: the calls to an
/// idempotent entrypoint go to the other instance and none fails, through
/// the SDK and through the gateway; the same calls made as not idempotent
/// fail, saying that they may have run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_calls_survive_a_killed_instance() {
    let host = host_builder().start().await;
    let client = host.client().await;
    let _a = probe(&host, "1.0.0", "probe-a");

    // Not idempotent for this caller: the calls in flight to the killed
    // instance fail, and say they may have run.
    let mut b = probe(&host, "1.0.0", "probe-b");
    wait_instances(&client, "probe", None, 2).await;
    let (answered, errors) = nap_through_a_kill(nap_with(&client, Some(false)), 1500, async {
        b.kill9().await;
    })
    .await;
    println!(
        "not idempotent: answered {answered:?}, {} failed",
        errors.len()
    );
    assert!(answered.contains_key("probe-b"), "{answered:?}");
    assert!(
        !errors.is_empty(),
        "calls in flight to the killed instance failed"
    );
    for (code, e) in &errors {
        assert_eq!(*code, weft::Code::Unavailable, "{e}");
        assert!(e.contains("may or may not have run"), "{e}");
    }
    wait_instances(&client, "probe", None, 1).await;

    // Idempotent as the registry says: nothing fails.
    let mut c = probe(&host, "1.0.0", "probe-c");
    wait_instances(&client, "probe", None, 2).await;
    let (answered, errors) = nap_through_a_kill(nap_with(&client, None), 1500, async {
        c.kill9().await;
    })
    .await;
    println!("idempotent: answered {answered:?}, {} failed", errors.len());
    assert!(answered.contains_key("probe-c"), "{answered:?}");
    assert!(errors.is_empty(), "idempotent calls failed: {errors:?}");
    // Most calls answered after the kill went to the instance left.
    assert!(answered["probe-a"] > answered["probe-c"], "{answered:?}");
    wait_instances(&client, "probe", None, 1).await;

    // The same through the gateway.
    let mut d = probe(&host, "1.0.0", "probe-d");
    wait_instances(&client, "probe", None, 2).await;
    let http = host.http();
    let over_http = move || {
        let http = http.clone();
        async move {
            let answer = http
                .post_json("/services/probe/nap", &json!({ "ms": 50 }))
                .await;
            let body = answer.json();
            match body["instance"].as_str() {
                Some(instance) => Ok(instance.to_owned()),
                None => Err((weft::Code::Unavailable, body.to_string())),
            }
        }
    };
    let (answered, errors) = nap_through_a_kill(over_http, 1500, async {
        d.kill9().await;
    })
    .await;
    println!("over HTTP: answered {answered:?}, {} failed", errors.len());
    assert!(answered.contains_key("probe-d"), "{answered:?}");
    assert!(
        errors.is_empty(),
        "idempotent calls through the gateway failed: {errors:?}"
    );
}

/// Six calls of `narrow` at once, each holding its place for `ms`: how
/// each ended, in the order they ended.
async fn six_narrow_calls(client: &Client, ms: u64) -> Vec<weft::Result<WhoAmI>> {
    let mut calls = JoinSet::new();
    for _ in 0..6 {
        let client = client.clone();
        calls.spawn(async move {
            client
                .call::<_, WhoAmI>("probe", "narrow", json!({ "ms": ms }))
                .await
        });
    }
    let mut ended = Vec::new();
    while let Some(done) = calls.join_next().await {
        ended.push(done.expect("a call task does not panic"));
    }
    ended
}

/// `#[entrypoint(max_concurrency = 2, queue = 2)]`: on one instance two
/// calls run, two wait, and the others are refused as overloaded before
/// any of those finish, also over HTTP (429); with a second instance all
/// are answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulkhead_refuses_what_it_cannot_hold_and_callers_go_elsewhere() {
    let host = host_builder().start().await;
    let client = host.client().await;
    let _a = probe(&host, "1.0.0", "probe-a");
    wait_instances(&client, "probe", None, 1).await;

    let ended = six_narrow_calls(&client, 2000).await;
    let refused: Vec<usize> = ended
        .iter()
        .enumerate()
        .filter(|(_, r)| r.as_ref().is_err_and(|e| e.is_overloaded()))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(refused, [0, 1], "the two refused end first: {ended:?}");
    let e = ended[0].as_ref().unwrap_err();
    assert_eq!(e.code(), weft::Code::ResourceExhausted, "{e}");
    assert!(e.message().contains("probe.narrow is at its limit"), "{e}");
    assert!(ended[2..].iter().all(Result::is_ok), "{ended:?}");

    // Over HTTP, while four calls hold the instance.
    let holding = tokio::spawn({
        let client = client.clone();
        async move { six_narrow_calls(&client, 1000).await }
    });
    let http = host.http();
    let refused = poll("a call over HTTP refused as overloaded", || async {
        let answer = http
            .post_json("/services/probe/narrow", &json!({ "ms": 1 }))
            .await;
        (answer.status == 429).then_some(answer)
    })
    .await;
    let problem = refused.problem(429, "resource_exhausted");
    assert_eq!(problem["kind"], "overloaded", "{problem}");
    holding.await.unwrap();

    let _b = probe(&host, "1.0.0", "probe-b");
    wait_instances(&client, "probe", None, 2).await;
    let ended = six_narrow_calls(&client, 500).await;
    assert!(ended.iter().all(Result::is_ok), "{ended:?}");
}

/// A port on 127.0.0.1 that was free a moment ago.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Chaos: three instances under a continuous load of idempotent calls,
/// 16 in flight (12 through a long-lived `Client`, 4 through the
/// gateway), one SIGKILLed and replaced every 700 ms, eight times: no call
/// fails, and neither the caller nor the gateway keeps a socket to an
/// instance that is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_load_through_killed_and_replaced_instances_fails_no_call() {
    let host = host_builder().start().await;
    let client = host.client().await;
    let mut ports = Vec::new();
    let mut start = |n: usize| {
        let port = free_port();
        ports.push(port);
        let listen = format!("127.0.0.1:{port}");
        probe_with(
            &host,
            "1.0.0",
            &format!("probe-{n}"),
            &[("WEFT_LISTEN", &listen)],
        )
    };
    let mut running: std::collections::VecDeque<_> = (0..3).map(&mut start).collect();
    wait_instances(&client, "probe", None, 3).await;

    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut callers = JoinSet::new();
    for i in 0..16 {
        let stopped = stopped.clone();
        let sdk = client.clone();
        let http = host.http();
        callers.spawn(async move {
            let (mut ok, mut failed) = (0usize, Vec::new());
            while !*stopped.borrow() {
                let answer = if i < 12 {
                    sdk.call::<_, WhoAmI>("probe", "nap", json!({ "ms": 20 }))
                        .await
                        .map(drop)
                        .map_err(|e| e.to_string())
                } else {
                    let a = http
                        .post_json("/services/probe/nap", &json!({ "ms": 20 }))
                        .await;
                    if a.status == 200 {
                        Ok(())
                    } else {
                        Err(a.text())
                    }
                };
                match answer {
                    Ok(()) => ok += 1,
                    Err(e) => failed.push(e),
                }
            }
            (ok, failed)
        });
    }
    for round in 3..11 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        let mut gone = running.pop_front().expect("an instance to kill");
        gone.kill9().await;
        running.push_back(start(round));
    }
    wait_instances(&client, "probe", None, 3).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.send_replace(true);
    let (mut ok, mut failed) = (0, Vec::new());
    while let Some(done) = callers.join_next().await {
        let (o, f) = done.expect("a caller does not panic");
        ok += o;
        failed.extend(f);
    }
    println!(
        "8 instances killed under load: {ok} calls answered, {} failed",
        failed.len()
    );
    assert!(
        failed.is_empty(),
        "{} calls failed: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );

    let killed = &ports[..8];
    poll("no socket left to a killed instance", || async {
        let left = close_wait_to(killed);
        if left == 0 {
            Ok(())
        } else {
            Err(format!("{left} in CLOSE-WAIT"))
        }
    })
    .await;
}

/// A stopped instance (SIGSTOP: the kernel still accepts connections for
/// it) makes a new caller's dial time out; the error names the instance
/// and says it is stopped or hung, not that the host may be down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_instance_is_named_as_the_one_that_did_not_answer() {
    let host = host_builder().start().await;
    let watcher = host.client().await;
    let probe = probe(&host, "1.0.0", "probe-hung");
    wait_instances(&watcher, "probe", None, 1).await;
    probe.signal(Signal::SIGSTOP);

    let client = host.client().await;
    let err = client
        .request("probe", "whoami")
        .timeout(Duration::from_secs(20))
        .send::<_, WhoAmI>(())
        .await
        .unwrap_err();
    probe.signal(Signal::SIGCONT);
    assert_eq!(err.code(), weft::Code::Unavailable, "{err}");
    let said = err.message();
    assert!(said.contains("instance `probe-hung` of `probe`"), "{said}");
    assert!(said.contains("stopped, hung"), "{said}");
    assert!(!said.contains("WEFT_HOST"), "{said}");
}

/// `.hedge(after)`: with one of two instances slow, every hedged call is
/// answered by the fast one, and the slow one's handler is cancelled;
/// without it, some calls wait for the slow one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hedged_call_is_answered_by_the_fast_instance_and_the_slow_one_cancelled() {
    let host = host_builder().start().await;
    let client = host.client().await;
    let _slow = probe(&host, "1.0.0", "probe-slow");
    let _fast = probe(&host, "1.0.0", "probe-fast");
    wait_instances(&client, "probe", None, 2).await;
    let args = |tag: &str| json!({ "slow": "probe-slow", "ms": 1500, "tag": tag });

    let mut answered = std::collections::BTreeMap::new();
    for _ in 0..10 {
        let me: WhoAmI = client
            .request("probe", "slow_on")
            .hedge(Duration::from_millis(50))
            .send(args("hedged"))
            .await
            .unwrap();
        *answered.entry(me.instance).or_insert(0) += 1;
    }
    assert_eq!(
        answered.keys().collect::<Vec<_>>(),
        ["probe-fast"],
        "{answered:?}"
    );
    // The slow instance started some of them, and finished none: the loser
    // of each race was cancelled.
    let stats = poll("the slow instance's hedged calls ended", || async {
        let s: Stats = client
            .request("probe", "stats")
            .send(json!({ "tag": "hedged" }))
            .await
            .ok()?;
        (s.started > 0 && s.started == s.cancelled).then_some(s)
    })
    .await;
    assert_eq!(stats.finished, 0, "{stats:?}");

    // Without a hedge, calls routed to the slow instance wait for it.
    let mut slow = 0;
    for _ in 0..10 {
        let me: WhoAmI = client
            .request("probe", "slow_on")
            .send(args("plain"))
            .await
            .unwrap();
        slow += usize::from(me.instance == "probe-slow");
        if slow > 0 {
            break;
        }
    }
    assert!(slow > 0, "no call reached the slow instance");
}
