//! Cluster mode: hosts that share one registry through NATS JetStream.

use serde_json::json;
use weft_test_support::{
    HostProcess, NatsCluster, NatsServer, Netns, ServiceProcess, Weft, instances, poll,
    test_service_command, text, wait_instances,
};

use crate::probe::WhoAmI;
use crate::{WEFT, host_builder, probe};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_on_one_nats_see_and_call_each_others_instances() {
    let nats = NatsServer::start().await;
    let url = nats.url();
    let cluster = |name: &'static str| {
        host_builder().args(["--nats", url.as_str(), "--name", name, "--lease-ttl", "2"])
    };
    let mut a = cluster("a").start().await;
    let b = cluster("b").start().await;
    let _instance = probe(&a, "1.0.0", "probe-on-a");

    // b's registry lists the instance that registered with a, with its host.
    let on_b = b.client().await;
    wait_instances(&on_b, "probe", Some("1.0.0"), 1).await;
    // `weft ls` on b lists it, with the host it runs on.
    let out = b.weft(&["ls", "--json"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed[0]["service"], "probe", "{listed}");
    assert_eq!(listed[0]["hosts"], json!(["a"]), "{listed}");
    // A caller of b reaches it directly.
    let me: WhoAmI = on_b.call("probe", "whoami", ()).await.unwrap();
    assert_eq!(me.instance, "probe-on-a");
    // So does b's gateway.
    let answer = b
        .http()
        .post_json("/services/probe/echo", &json!({ "data": "across" }))
        .await;
    answer.expect_status(200);
    assert_eq!(answer.json(), json!("across"));

    // `weft hosts` on either host lists both, up, with a's instance.
    let hosts = |host: &HostProcess| {
        let cli = host.cli();
        async move {
            let out = cli.run(&["hosts", "--json"]).await;
            assert!(out.status.success(), "{}", text(&out.stderr));
            serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
        }
    };
    for (name, host) in [("a", &a), ("b", &b)] {
        // a's heartbeat may trail its instance's announcement a moment.
        poll(
            &format!("{name} lists a (up, 1 instance) and b"),
            || async {
                let listed = hosts(host).await;
                let wanted = listed[0]["name"] == "a"
                    && listed[0]["state"] == "up"
                    && listed[0]["instances"] == 1
                    && listed[1]["name"] == "b"
                    && listed[1]["instances"] == 0;
                if wanted {
                    Ok(())
                } else {
                    Err(listed.to_string())
                }
            },
        )
        .await;
    }

    // Killed, a writes nothing more: b lets its instance go within the
    // lease time, though the instance's process still runs.
    a.kill9().await;
    poll("b dropped the instance of the killed host a", || async {
        let list = on_b.services().await.map_err(|e| e.to_string())?;
        match instances(&list, "probe", None) {
            0 => Ok(()),
            n => Err(format!("{n} probe instance(s) still listed")),
        }
    })
    .await;
    poll("b lists a as down", || async {
        let listed = hosts(&b).await;
        if listed[0]["state"] == "down" {
            Ok(())
        } else {
            Err(listed.to_string())
        }
    })
    .await;
}

fn probe_in(netns: &Netns, host: &HostProcess, instance: &str) -> ServiceProcess {
    let mut cmd = test_service_command("probe");
    cmd.env("WEFT_VERSION", "1.0.0")
        .env("WEFT_LISTEN", format!("{}:0", netns.addr()));
    ServiceProcess::start(host.address(), instance, netns.command(&cmd))
}

/// Three NATS nodes and three hosts, each in a network namespace of its own:
/// every caller sees every host's instances and calls them across the
/// namespaces; losing a NATS node loses nothing; a killed host's instance
/// leaves every registry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hosts_on_a_three_node_nats_cluster_in_namespaces() {
    let mut nats = NatsCluster::start(3).await;
    let urls = nats.urls();
    let mut machines = Vec::new();
    let mut hosts = Vec::new();
    for name in ["h1", "h2", "h3"] {
        let netns = nats.network().netns();
        let ip = netns.addr().to_string();
        let host = host_builder()
            .netns(&netns)
            .listen(format!("{ip}:0"))
            .args([
                "--nats",
                urls.as_str(),
                "--name",
                name,
                "--advertise",
                ip.as_str(),
            ])
            // The namespaces' network is the test's own.
            .args(["--lease-ttl", "2", "--auth", "off"])
            .start()
            .await;
        machines.push(netns);
        hosts.push(host);
    }
    let _on_h1 = probe_in(&machines[0], &hosts[0], "probe-h1");
    let _on_h2 = probe_in(&machines[1], &hosts[1], "probe-h2");

    // A caller of h3 sees both and calls each at its own namespace's address.
    let client = hosts[2].client().await;
    wait_instances(&client, "probe", None, 2).await;
    let seen = std::cell::RefCell::new(std::collections::BTreeSet::new());
    poll("calls through h3 answered by both instances", || async {
        let me: WhoAmI = client
            .call("probe", "whoami", ())
            .await
            .map_err(|e| e.to_string())?;
        let mut seen = seen.borrow_mut();
        seen.insert(me.instance);
        if seen.len() == 2 {
            Ok(())
        } else {
            Err(format!("{seen:?}"))
        }
    })
    .await;

    // One NATS node gone: the cluster's registry goes on.
    nats.kill9(0).await;
    let _on_h3 = probe_in(&machines[2], &hosts[2], "probe-h3");
    let on_h1 = hosts[0].client().await;
    wait_instances(&on_h1, "probe", None, 3).await;

    // h2 killed: its instance leaves the others' registries.
    hosts[1].kill9().await;
    wait_instances(&on_h1, "probe", None, 2).await;
    wait_instances(&client, "probe", None, 2).await;
    let out = hosts[0].weft(&["hosts", "--json"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed.as_array().map(Vec::len), Some(3), "{listed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_is_taken_once_and_a_restarted_host_takes_its_instances_back() {
    let nats = NatsServer::start().await;
    let url = nats.url();
    let mut a = host_builder()
        .args(["--nats", url.as_str(), "--name", "a", "--lease-ttl", "2"])
        .start()
        .await;
    let b = host_builder()
        .args(["--nats", url.as_str(), "--name", "b", "--lease-ttl", "2"])
        .start()
        .await;

    // A second host named `a` is refused while a is up.
    let dir = tempfile::tempdir().unwrap();
    let out = Weft::new(WEFT)
        .run(&[
            "host",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            dir.path().to_str().unwrap(),
            "--nats",
            &url,
            "--name",
            "a",
        ])
        .await;
    assert!(!out.status.success(), "{}", text(&out.stdout));
    let said = text(&out.stderr);
    assert!(
        said.contains("another host named `a` is up in the cluster"),
        "{said}"
    );

    // a is killed and started again on its address and data dir: it takes
    // its name back, its instance registers with it again, and b sees it.
    let _instance = probe(&a, "1.0.0", "probe-on-a");
    let on_b = b.client().await;
    wait_instances(&on_b, "probe", None, 1).await;
    let (listen, data_dir) = (
        a.address().trim_start_matches("tcp://").to_owned(),
        a.data_dir().to_owned(),
    );
    a.kill9().await;
    wait_instances(&on_b, "probe", None, 0).await;
    let _a = host_builder()
        .listen(listen)
        .data_dir(&data_dir)
        .args(["--nats", url.as_str(), "--name", "a", "--lease-ttl", "2"])
        .start()
        .await;
    wait_instances(&on_b, "probe", None, 1).await;
}

#[tokio::test]
async fn a_host_that_cannot_join_its_cluster_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let weft = Weft::new(WEFT);

    // Nothing listens on port 1.
    let out = weft
        .run(&[
            "host",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            data,
            "--nats",
            "nats://127.0.0.1:1",
        ])
        .await;
    assert!(!out.status.success(), "{}", text(&out.stdout));
    let said = text(&out.stderr);
    assert!(
        said.contains("cannot reach NATS at nats://127.0.0.1:1"),
        "{said}"
    );
    assert!(said.contains("nats-server -js"), "{said}");

    let plain = NatsServer::start_without_jetstream().await;
    let out = weft
        .run(&[
            "host",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            data,
            "--nats",
            &plain.url(),
        ])
        .await;
    assert!(!out.status.success(), "{}", text(&out.stdout));
    let said = text(&out.stderr);
    assert!(said.contains("does not run JetStream"), "{said}");

    let out = weft
        .run(&[
            "host",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            data,
            "--nats",
            "not a url",
        ])
        .await;
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("is not a NATS server URL"),
        "{}",
        text(&out.stderr)
    );
}
