//! Deploys across the hosts of a cluster: one deploy with `on` runs a
//! version on several hosts (its executable through NATS), a scale or a
//! kill from another host acts on every host that runs it, a host
//! SIGKILLed and started again runs its share again (from its store, and
//! from the cluster when its data dir is new), a host that is not there
//! and an executable that does not match its SHA-256 are refused, and a
//! host without a cluster says it is not in one.

use std::collections::BTreeSet;
use std::path::Path;

use hyper::Method;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use weft::prelude::*;
use weft_host::{ClusterConfig, HostConfig};
use weft_test_support::{
    Answer, ChildProcess, Http, NatsServer, RunningHost, SERVICE_ENV, poll, test_service_command,
};

/// A service that says which instance answered.
#[derive(Debug, Default)]
pub(crate) struct WhoAmI;

/// Says which instance answered.
#[weft::service(name = "whoami")]
impl WhoAmI {
    /// The id of the instance that answered.
    #[entrypoint]
    async fn instance(&self, ctx: &Context) -> String {
        ctx.identity()
            .map(|i| i.instance.clone())
            .unwrap_or_default()
    }
}

/// An executable serving the test service `name`, as a deploy uploads it:
/// a script that runs this test binary again for that service.
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

/// A host named `name` in this process, in the cluster at `url`.
async fn host(name: &str, dir: &Path, url: &str) -> RunningHost {
    RunningHost::start(
        HostConfig::new("127.0.0.1:0".parse().unwrap(), dir)
            .name(name)
            .cluster(ClusterConfig::new([url])),
    )
    .await
}

/// Deploys `whoami` `version` through `http` with the query `extra`.
async fn deploy(http: &Http, version: &str, extra: &str, program: &[u8]) -> Answer {
    http.request(
        Method::PUT,
        &format!("/api/v1/services/whoami/versions/{version}?env={SERVICE_ENV}%3Dwhoami{extra}"),
        &[("content-type", "application/octet-stream")],
        program.to_vec(),
    )
    .await
}

/// What each host did, from a `Placed` answer: (host, error or status).
fn outcomes(answer: &Value) -> Vec<(String, String)> {
    answer["on"]
        .as_array()
        .unwrap_or_else(|| panic!("no outcomes in {answer}"))
        .iter()
        .map(|o| {
            let what = match o["error"].as_str() {
                Some(e) => format!("error: {e}"),
                None => o["status"]["status"].as_str().unwrap_or("done").to_owned(),
            };
            (o["host"].as_str().unwrap_or_default().to_owned(), what)
        })
        .collect()
}

/// Waits until `http` lists `whoami` `version` on exactly the hosts of
/// `want`, each with that many registered instances.
async fn wait_running(what: &str, http: &Http, version: &str, want: &[(&str, u64)]) {
    let want: Vec<(String, u64)> = want.iter().map(|(h, n)| ((*h).into(), *n)).collect();
    poll(what, || async {
        let list = http.get("/api/v1/deployments").await.json();
        let have: Vec<(String, u64)> = list
            .as_array()
            .into_iter()
            .flatten()
            .filter(|v| v["service"] == "whoami" && v["version"] == version)
            .filter(|v| v["status"] == "running" || want.iter().all(|(_, n)| *n == 0))
            .map(|v| {
                (
                    v["host"].as_str().unwrap_or("-").to_owned(),
                    v["registered"].as_u64().unwrap_or_default(),
                )
            })
            .collect();
        if have == want {
            Ok(())
        } else {
            Err(list.to_string())
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_deploy_runs_a_version_on_every_host_and_any_host_scales_and_kills_it() {
    let nats = NatsServer::start().await;
    let url = nats.url();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = host("a", dir_a.path(), &url).await;
    let b = host("b", dir_b.path(), &url).await;
    poll("a sees b up", || async {
        let hosts = a.http().get("/api/v1/hosts").await.json();
        hosts.as_array().is_some_and(|h| h.len() == 2)
    })
    .await;
    let program = executable("whoami");

    // A host that is not there is refused before anything is deployed.
    let refused = deploy(&a.http(), "1.0.0", "&on=a,nosuch", &program).await;
    refused.expect_status(400);
    assert!(
        refused.text().contains("no host `nosuch` in the cluster"),
        "{}",
        refused.text()
    );

    // One deploy on a, on every host: each runs an instance.
    let answer = deploy(&a.http(), "1.0.0", "&on=all", &program).await;
    answer.expect_status(200);
    let answer = answer.json();
    assert_eq!(
        outcomes(&answer),
        [
            ("a".into(), "running".into()),
            ("b".into(), "running".into())
        ],
        "{answer}"
    );
    assert_eq!(answer["on"][1]["status"]["sha256"], sha256(&program));
    wait_running(
        "a lists whoami 1.0.0 on a and b",
        &a.http(),
        "1.0.0",
        &[("a", 1), ("b", 1)],
    )
    .await;
    // b's copy came through NATS and is b's own now, in its data dir.
    let on_b = dir_b
        .path()
        .join("artifacts/whoami/1.0.0")
        .join(&sha256(&program)[..16])
        .join("whoami");
    assert_eq!(std::fs::read(&on_b).unwrap(), program);

    // Calls through a's gateway reach the instances on both hosts.
    let seen = std::sync::Arc::new(std::sync::Mutex::new(BTreeSet::new()));
    poll("calls reach the instances on a and on b", || {
        let (http, seen) = (a.http(), seen.clone());
        async move {
            let answer = http
                .post_json("/services/whoami/instance", &json!({}))
                .await;
            answer.expect_status(200);
            let mut seen = seen.lock().unwrap();
            seen.insert(answer.json().as_str().unwrap_or_default().to_owned());
            let want: BTreeSet<String> = ["whoami-1.0.0-a-1", "whoami-1.0.0-b-1"]
                .into_iter()
                .map(String::from)
                .collect();
            if *seen == want {
                Ok(())
            } else {
                Err(format!("{seen:?}"))
            }
        }
    })
    .await;

    // A scale from b runs two instances on each host.
    let scaled = b
        .http()
        .post_json(
            "/api/v1/services/whoami/versions/1.0.0/scale",
            &json!({"instances": 2}),
        )
        .await;
    scaled.expect_status(200);
    let scaled = scaled.json();
    assert_eq!(
        outcomes(&scaled),
        [
            ("a".into(), "running".into()),
            ("b".into(), "running".into())
        ],
        "{scaled}"
    );
    wait_running(
        "b lists two instances on each host",
        &b.http(),
        "1.0.0",
        &[("a", 2), ("b", 2)],
    )
    .await;

    // An executable in NATS that does not match its SHA-256 is refused.
    let other = [program.as_slice(), b"# 2.0.0\n"].concat();
    let mut corrupt = other.clone();
    *corrupt.last_mut().unwrap() = b'!';
    let js = async_nats::jetstream::new(nats.client().await);
    let store = js.get_object_store("weft_artifacts").await.unwrap();
    store
        .put(sha256(&other).as_str(), &mut corrupt.as_slice())
        .await
        .unwrap();
    let refused = deploy(&a.http(), "2.0.0", "&on=b", &other).await;
    refused.expect_status(400);
    assert!(
        refused.text().contains(&format!(
            "has the SHA-256 {}, not {}",
            sha256(&corrupt),
            sha256(&other)
        )),
        "{}",
        refused.text()
    );
    // The corrupt copy is gone, so the same deploy again puts it anew.
    let answer = deploy(&a.http(), "2.0.0", "&on=b", &other).await;
    answer.expect_status(200);
    assert_eq!(
        outcomes(&answer.json()),
        [("b".into(), "running".into())],
        "{}",
        answer.text()
    );
    assert!(
        !dir_a.path().join("artifacts/whoami/2.0.0").exists(),
        "a keeps no copy of what it does not run"
    );

    // A kill from b stops a version on every host that runs it.
    let killed = b
        .http()
        .delete("/api/v1/services/whoami/versions/2.0.0")
        .await;
    killed.expect_status(200);
    wait_running("a lists no whoami 2.0.0", &a.http(), "2.0.0", &[]).await;
    // Killing the service's main version from b, without naming it.
    let killed = b.http().delete("/api/v1/services/whoami").await;
    killed.expect_status(200);
    let killed = killed.json();
    assert_eq!(killed["killed"], json!(["1.0.0"]), "{killed}");
    assert_eq!(
        outcomes(&killed),
        [("a".into(), "done".into()), ("b".into(), "done".into())],
        "{killed}"
    );
    wait_running("a lists no whoami 1.0.0", &a.http(), "1.0.0", &[]).await;
    wait_running("b lists no whoami 1.0.0", &b.http(), "1.0.0", &[]).await;

    b.stop().await;
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_without_a_cluster_deploys_only_on_itself() {
    let dir = tempfile::tempdir().unwrap();
    let host = RunningHost::loopback(dir.path()).await;
    let refused = deploy(&host.http(), "1.0.0", "&on=b", &executable("whoami")).await;
    refused.expect_status(400);
    assert!(
        refused.text().contains("is not in a cluster"),
        "{}",
        refused.text()
    );
    host.stop().await;
}

/// The test that runs a host in a child process, for a test to SIGKILL:
/// configured by the variables of [`HostChild::start`].
#[test]
#[ignore = "runs a host in a child process; the tests start it"]
fn weft_test_host() {
    let Ok(dir) = std::env::var("WEFT_TEST_HOST_DIR") else {
        return;
    };
    let name = std::env::var("WEFT_TEST_HOST_NAME").expect("a name");
    let nats = std::env::var("WEFT_TEST_HOST_NATS").expect("a NATS URL");
    let listen = std::env::var("WEFT_TEST_HOST_LISTEN").expect("an address");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async move {
        let host = weft_host::Host::bind(
            HostConfig::new(listen.parse().unwrap(), Path::new(&dir))
                .name(name)
                .cluster(ClusterConfig::new([nats])),
        )
        .await
        .expect("the host binds");
        println!("test host listening on {}", host.local_address());
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).unwrap();
        host.run(async move {
            term.recv().await;
        })
        .await
        .expect("the host runs");
    });
}

/// A host in a child process (this binary again), to SIGKILL.
struct HostChild {
    process: ChildProcess,
    hostport: String,
}

impl HostChild {
    async fn start(name: &str, dir: &Path, url: &str, listen: &str) -> HostChild {
        let exe = std::env::current_exe().unwrap();
        let mut cmd = std::process::Command::new(exe);
        cmd.args([
            "cluster_placement::weft_test_host",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("WEFT_TEST_HOST_DIR", dir)
        .env("WEFT_TEST_HOST_NAME", name)
        .env("WEFT_TEST_HOST_NATS", url)
        .env("WEFT_TEST_HOST_LISTEN", listen)
        .env("RUST_LOG", weft_test_support::test_log());
        for k in ["WEFT_HOST", "WEFT_TOKEN", SERVICE_ENV] {
            cmd.env_remove(k);
        }
        let mut process = ChildProcess::spawn(format!("host {name}"), cmd);
        // The test harness writes the test's name first, on the same line.
        let prefix = "test host listening on ";
        let line = process
            .wait_for_line("its start-up line", |l| l.contains(prefix))
            .await;
        let address = line.split(prefix).nth(1).unwrap_or_default().trim();
        let hostport = address.trim_start_matches("tcp://").to_owned();
        HostChild { process, hostport }
    }

    fn http(&self) -> Http {
        Http::new(self.hostport.clone())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_killed_and_started_again_runs_its_share_again() {
    let nats = NatsServer::start().await;
    let url = nats.url();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = host("a", dir_a.path(), &url).await;
    let mut b = HostChild::start("b", dir_b.path(), &url, "127.0.0.1:0").await;
    let listen = b.hostport.clone();
    poll("a sees b up", || async {
        let hosts = a.http().get("/api/v1/hosts").await.json();
        hosts.as_array().is_some_and(|h| h.len() == 2)
    })
    .await;
    let program = executable("whoami");
    let answer = deploy(&a.http(), "1.0.0", "&on=a,b", &program).await;
    answer.expect_status(200);
    wait_running("both run whoami", &a.http(), "1.0.0", &[("a", 1), ("b", 1)]).await;

    // SIGKILL: b stops nothing and says nothing; started again on its
    // address and data dir, it runs its share from its store.
    b.process.kill9().await;
    let mut b = HostChild::start("b", dir_b.path(), &url, &listen).await;
    wait_running(
        "b runs its share again from its store",
        &b.http(),
        "1.0.0",
        &[("a", 1), ("b", 1)],
    )
    .await;

    // Stopped and started on an empty data dir (a machine replaced), b
    // takes its share from the cluster: the record, and the executable
    // through NATS.
    b.process.stop().await;
    let fresh = tempfile::tempdir().unwrap();
    let b = HostChild::start("b", fresh.path(), &url, &listen).await;
    wait_running(
        "b runs its share again from the cluster",
        &a.http(),
        "1.0.0",
        &[("a", 1), ("b", 1)],
    )
    .await;
    let restored = fresh
        .path()
        .join("artifacts/whoami/1.0.0")
        .join(&sha256(&program)[..16])
        .join("whoami");
    assert_eq!(std::fs::read(&restored).unwrap(), program);

    let mut b = b;
    b.process.stop().await;
    a.stop().await;
}
