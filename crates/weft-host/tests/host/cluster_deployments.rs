//! Deployments in a cluster: two hosts on one NATS server, each deploying
//! a version of `echo`; each lists the other's deployment with its host,
//! a killed deployment leaves every list, and a host that stops and starts
//! again restores its deployment and is listed by the other again. A
//! deploy on several hosts (`on`) runs the version on each, a scale or a
//! kill from any host acts on all that run it, and a host killed and
//! started again (on its store, or on an empty data dir) runs its share.

use std::path::Path;

use hyper::Method;
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use weft_host::{ClusterConfig, HostConfig};
use weft_test_support::{NatsServer, RunningHost, SERVICE_ENV, poll, test_service_command};

/// An executable that serves the test service `name` declared in this
/// binary, as a deploy uploads it: a script that runs this test binary
/// again for that service (which service, the deployment's `--env` says).
fn executable(name: &str) -> Vec<u8> {
    let cmd = test_service_command(name);
    let quote = |s: &std::ffi::OsStr| format!("'{}'", s.to_str().expect("a UTF-8 path"));
    let mut line = format!("exec {}", quote(cmd.get_program()));
    for arg in cmd.get_args() {
        line.push(' ');
        line.push_str(&quote(arg));
    }
    format!("#!/bin/sh\n{line}\n").into_bytes()
}

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A host named `name` on 127.0.0.1:0 with its data in `dir`, in the
/// cluster of the NATS server at `url`.
async fn host(name: &str, dir: &Path, url: &str) -> RunningHost {
    RunningHost::start(
        HostConfig::new("127.0.0.1:0".parse().unwrap(), dir)
            .name(name)
            .cluster(ClusterConfig::new([url])),
    )
    .await
}

/// Deploys `echo` `version` on `host`, as `weft deploy` uploads it, and
/// returns what the deploy answers.
async fn deploy(host: &RunningHost, version: &str, executable: &[u8]) -> Value {
    let answer = host
        .http()
        .request(
            Method::PUT,
            &format!("/api/v1/services/echo/versions/{version}?env={SERVICE_ENV}%3Decho"),
            &[("content-type", "application/octet-stream")],
            executable.to_vec(),
        )
        .await;
    answer.expect_status(200);
    answer.json()
}

/// `GET /api/v1/deployments` on `host`.
async fn deployments(host: &RunningHost) -> Vec<Value> {
    let answer = host.http().get("/api/v1/deployments").await;
    answer.expect_status(200);
    answer.json().as_array().cloned().expect("a list")
}

/// What a listing shows of each version: version, host, status, registered
/// instances and main, in the listing's order.
fn summary(list: &[Value]) -> Vec<(String, String, String, u64, bool)> {
    list.iter()
        .map(|v| {
            (
                v["version"].as_str().unwrap_or_default().to_owned(),
                v["host"].as_str().unwrap_or("-").to_owned(),
                v["status"].as_str().unwrap_or_default().to_owned(),
                v["registered"].as_u64().unwrap_or_default(),
                v["main"].as_bool().unwrap_or_default(),
            )
        })
        .collect()
}

/// Waits until `host` lists exactly `want` (see [`summary`]).
async fn wait_listing(what: &str, host: &RunningHost, want: &[(&str, &str, &str, u64, bool)]) {
    let want: Vec<(String, String, String, u64, bool)> = want
        .iter()
        .map(|(v, h, s, n, m)| ((*v).into(), (*h).into(), (*s).into(), *n, *m))
        .collect();
    poll(what, || async {
        let list = deployments(host).await;
        if summary(&list) == want {
            Ok(list)
        } else {
            Err(serde_json::to_string(&list).unwrap_or_default())
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_on_one_nats_list_each_others_deployments() {
    let nats = NatsServer::start().await;
    let url = nats.url();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = host("a", dir_a.path(), &url).await;
    let b = host("b", dir_b.path(), &url).await;
    let program = executable("echo");

    let deployed = deploy(&a, "1.0.0", &program).await;
    assert_eq!(deployed["host"], "a", "{deployed}");
    assert_eq!(deployed["status"], "running", "{deployed}");
    // b lists a's deployment, as a's deployment, not as an instance
    // started by hand; the first version deployed is main everywhere.
    wait_listing(
        "b lists echo 1.0.0 deployed on a",
        &b,
        &[("1.0.0", "a", "running", 1, true)],
    )
    .await;
    let on_b = deployments(&b).await;
    assert_eq!(on_b[0]["sha256"], sha256(&program), "{on_b:?}");
    assert_eq!(on_b[0]["wanted"], 1, "{on_b:?}");
    // In a cluster, instance ids carry their host: the same version may
    // run on several.
    assert_eq!(on_b[0]["instances"][0]["id"], "echo-1.0.0-a-1", "{on_b:?}");
    assert_eq!(on_b[0]["instances"][0]["registered"], true, "{on_b:?}");

    deploy(&b, "2.0.0", &program).await;
    let both = [
        ("1.0.0", "a", "running", 1, true),
        ("2.0.0", "b", "running", 1, false),
    ];
    wait_listing("a lists both deployments", &a, &both).await;
    wait_listing("b lists both deployments", &b, &both).await;
    // The deployment on a is real: b's gateway reaches it.
    let answer = b
        .http()
        .post_json(
            "/services/echo/version?version=1.0.0",
            &serde_json::json!({}),
        )
        .await;
    answer.expect_status(200);
    assert_eq!(answer.json(), "1.0.0");

    // A kill from b acts on a, which runs the version, and a keeps its
    // rule: main is not stopped while another version runs.
    let refused = b
        .http()
        .delete("/api/v1/services/echo/versions/1.0.0")
        .await;
    refused.expect_status(400);
    assert!(
        refused
            .text()
            .contains("a: 1.0.0 is the main version of `echo`"),
        "{}",
        refused.text()
    );

    // Killed on a, it leaves b's list too.
    let killed = a.http().delete("/api/v1/services/echo?all=true").await;
    killed.expect_status(200);
    assert_eq!(killed.json()["killed"], serde_json::json!(["1.0.0"]));
    // Main outlives its instances: it stays 1.0.0 until it is set.
    let only_b = [("2.0.0", "b", "running", 1, false)];
    wait_listing("b no longer lists echo 1.0.0", &b, &only_b).await;
    wait_listing("a no longer lists echo 1.0.0", &a, &only_b).await;

    // b stops: a keeps listing its deployment, which no instance serves now;
    // b starts again on its data dir and restores it, and a sees it run.
    b.stop().await;
    let stopped = poll("a lists b's deployment as not running", || async {
        let list = deployments(&a).await;
        match summary(&list).as_slice() {
            [(v, h, s, 0, _)] if v == "2.0.0" && h == "b" && s == "starting" => Ok(list),
            _ => Err(serde_json::to_string(&list).unwrap_or_default()),
        }
    })
    .await;
    assert_eq!(
        stopped[0]["reason"], "its host `b` is not up",
        "{stopped:?}"
    );
    let b = host("b", dir_b.path(), &url).await;
    wait_listing("b restores its deployment", &b, &only_b).await;
    wait_listing("a lists b's restored deployment", &a, &only_b).await;

    b.stop().await;
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployments_are_listed_again_after_nats_lost_its_store() {
    let mut nats = NatsServer::start().await;
    let url = nats.url();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = host("a", dir_a.path(), &url).await;
    let b = host("b", dir_b.path(), &url).await;
    let program = executable("echo");
    deploy(&a, "1.0.0", &program).await;
    wait_listing(
        "b lists echo 1.0.0 deployed on a",
        &b,
        &[("1.0.0", "a", "running", 1, true)],
    )
    .await;

    // NATS comes back without its store: a writes its deployment again.
    nats.restart(false).await;
    let js = async_nats::jetstream::new(nats.client().await);
    poll("a's deployment back in the bucket", || async {
        let bucket = js
            .get_key_value("weft_deployments")
            .await
            .map_err(|e| e.to_string())?;
        match bucket.get("a.echo.1=2E0=2E0").await {
            Ok(Some(value)) => {
                let listed: Value = serde_json::from_slice(&value).map_err(|e| e.to_string())?;
                if listed["host"] == "a" && listed["status"] == "running" {
                    Ok(())
                } else {
                    Err(listed.to_string())
                }
            }
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    // And the hosts follow the bucket again: a lists what b deploys now.
    deploy(&b, "2.0.0", &program).await;
    let both = [
        ("1.0.0", "a", "running", 1, true),
        ("2.0.0", "b", "running", 1, false),
    ];
    wait_listing("a lists both deployments", &a, &both).await;
    wait_listing("b lists both deployments", &b, &both).await;

    b.stop().await;
    a.stop().await;
}
