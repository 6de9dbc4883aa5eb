//! Deadlines travel with calls, and a call that times out or is dropped
//! stops its handler in the remote process, and the handlers it called.

use std::time::Duration;

use serde_json::json;
use weft::{Client, Code};
use weft_test_support::{poll, wait_instances};

use crate::probe::Stats;
use crate::{probe, start_host};

async fn stats(client: &Client, tag: &str) -> Stats {
    client
        .call("probe", "stats", json!({ "tag": tag }))
        .await
        .unwrap_or_else(|e| panic!("stats({tag}) failed: {e}"))
}

/// Waits until the `sleep` tagged `tag` was cancelled, and checks it had
/// started and did not finish.
async fn assert_cancelled(client: &Client, tag: &str) {
    let seen = poll(&format!("the sleep tagged {tag} cancelled"), || async {
        let s = stats(client, tag).await;
        (s.cancelled > 0 || s.finished > 0).then_some(s)
    })
    .await;
    assert_eq!(
        seen,
        Stats {
            started: 1,
            finished: 0,
            cancelled: 1
        },
        "tag {tag}"
    );
}

/// A deadline beyond the harness's patience: only a cancellation stops a
/// handler within the test's wait.
const FAR: Duration = Duration::from_secs(300);

fn sleep_args(tag: &str) -> serde_json::Value {
    // Far longer than any test waits: the sleep ends only by cancellation.
    json!({ "ms": 600_000, "tag": tag })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadlines_propagate_and_cancel_remote_handlers() {
    let host = start_host().await;
    let watcher = host.client().await;
    let _probe = probe(&host, "1.0.0", "probe-d");
    wait_instances(&watcher, "probe", None, 1).await;
    let client = host.client().await;

    // A deadline that passes: the caller hears so, the handler stops.
    let err = client
        .request("probe", "sleep")
        .timeout(Duration::from_millis(300))
        .send::<_, ()>(sleep_args("timeout"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err}");
    assert_cancelled(&client, "timeout").await;

    // The deadline reaches the handler, and the calls the handler makes.
    let budget: Option<u64> = client
        .request("probe", "budget")
        .timeout(Duration::from_secs(2))
        .send(())
        .await
        .unwrap();
    let budget = budget.expect("the handler sees a deadline");
    assert!(budget > 0 && budget <= 2000, "{budget}");
    let relayed: Option<u64> = client
        .request("probe", "relay_budget")
        .timeout(Duration::from_secs(2))
        .send(())
        .await
        .unwrap();
    let relayed = relayed.expect("the downstream handler sees a deadline");
    assert!(relayed > 0 && relayed <= 2000, "{relayed}");

    // A caller that stops waiting (drops the future) cancels the handler;
    // the call's own deadline is far beyond the time the test waits.
    let dropped = tokio::time::timeout(
        Duration::from_millis(300),
        client
            .request("probe", "sleep")
            .timeout(FAR)
            .send::<_, ()>(sleep_args("dropped")),
    )
    .await;
    assert!(dropped.is_err(), "the sleep cannot finish: {dropped:?}");
    assert_cancelled(&client, "dropped").await;

    // Cancellation cascades: a relay that times out stops the call it made.
    let err = client
        .request("probe", "relay_sleep")
        .timeout(Duration::from_millis(300))
        .send::<_, ()>(sleep_args("relayed-timeout"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err}");
    assert_cancelled(&client, "relayed-timeout").await;

    // And a relay whose caller drops it, with no deadline near to help.
    let dropped = tokio::time::timeout(
        Duration::from_millis(300),
        client
            .request("probe", "relay_sleep")
            .timeout(FAR)
            .send::<_, ()>(sleep_args("relayed-dropped")),
    )
    .await;
    assert!(dropped.is_err(), "the relay cannot finish: {dropped:?}");
    assert_cancelled(&client, "relayed-dropped").await;
}
