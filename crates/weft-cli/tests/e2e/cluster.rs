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

/// Three hosts (`h1`, `h2`, `h3`, lease 2 s) in network namespaces of their
/// own, each listening on and advertising its namespace's address, on a
/// three-node NATS cluster whose nodes have namespaces of their own too.
pub(crate) struct Machines {
    pub(crate) hosts: Vec<HostProcess>,
    pub(crate) machines: Vec<Netns>,
    pub(crate) nats: NatsCluster,
}

impl Machines {
    pub(crate) async fn start() -> Machines {
        let nats = NatsCluster::start(3).await;
        let urls = nats.urls();
        let mut machines = Vec::new();
        let mut hosts = Vec::new();
        for name in ["h1", "h2", "h3"] {
            let netns = nats.network().netns();
            let ip = netns.addr().to_string();
            let host = host_builder()
                .netns(&netns)
                .listen(format!("{ip}:0"))
                .args(["--nats", urls.as_str(), "--name", name])
                .args(["--advertise", ip.as_str(), "--lease-ttl", "2"])
                // The namespaces' network is the test's own.
                .args(["--auth", "off"])
                .start()
                .await;
            machines.push(netns);
            hosts.push(host);
        }
        Machines {
            hosts,
            machines,
            nats,
        }
    }
}

/// Calls through `client` as fast as they come, on `LOADERS` tasks, until
/// `stop`: the instances that answered, and the errors, in order.
const LOADERS: usize = 4;

#[derive(Debug, Default)]
struct Load {
    answered: std::collections::BTreeMap<String, usize>,
    errors: Vec<String>,
}

fn load(
    client: &weft::Client,
    stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinSet<Load> {
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..LOADERS {
        let (client, stop) = (client.clone(), stop.clone());
        tasks.spawn(async move {
            let mut load = Load::default();
            // Bounded: at most this many calls per task.
            for _ in 0..1_000_000 {
                if *stop.borrow() {
                    break;
                }
                match client
                    .request("probe", "whoami")
                    .timeout(std::time::Duration::from_secs(5))
                    .send::<_, WhoAmI>(())
                    .await
                {
                    Ok(me) => *load.answered.entry(me.instance).or_default() += 1,
                    Err(e) => load.errors.push(e.to_string()),
                }
            }
            load
        });
    }
    tasks
}

/// What the load tasks saw, together.
async fn stop_load(
    stop: &tokio::sync::watch::Sender<bool>,
    tasks: &mut tokio::task::JoinSet<Load>,
) -> Load {
    stop.send_replace(true);
    let mut all = Load::default();
    while let Some(load) = tasks.join_next().await {
        let load = load.expect("a load task does not panic");
        for (instance, n) in load.answered {
            *all.answered.entry(instance).or_default() += n;
        }
        all.errors.extend(load.errors);
    }
    all
}

/// Three NATS nodes and three hosts, each in a network namespace of its own:
/// every caller sees every host's instances and calls them across the
/// namespaces; a busy instance stays; losing a NATS node (killed, then
/// back) loses nothing; a host cut off from the network, or killed with
/// its instance mid-load, leaves every registry, and calls go on to the
/// instances that are left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hosts_on_a_three_node_nats_cluster_in_namespaces() {
    let Machines {
        mut hosts,
        machines,
        mut nats,
    } = Machines::start().await;
    let _on_h3 = probe_in(&machines[2], &hosts[2], "probe-h3");
    let client = hosts[0].client().await;
    wait_instances(&client, "probe", None, 1).await;

    // h3's instance, busy for three leases (its two runtime threads
    // blocked), stays in h1's registry: its host, not its handlers, renews
    // it.
    let mut busy = {
        let caller = hosts[2].client().await;
        let mut calls = tokio::task::JoinSet::new();
        for _ in 0..4 {
            let caller = caller.clone();
            calls.spawn(async move {
                caller
                    .request("probe", "block")
                    .timeout(std::time::Duration::from_secs(60))
                    .send::<_, ()>(json!({ "ms": 3000 }))
                    .await
            });
        }
        calls
    };
    let mut looks = 0;
    while !busy.is_empty() {
        while let Some(done) = busy.try_join_next() {
            done.expect("a blocking call's task does not panic")
                .expect("a blocking call succeeds");
        }
        let listed = client.services().await.unwrap();
        assert_eq!(
            instances(&listed, "probe", None),
            1,
            "the instance left h1's registry while busy, after {looks} looks: {listed:?}"
        );
        looks += 1;
        assert!(looks < 600, "the blocking calls did not end");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(looks >= 5, "busy through {looks} looks only");

    // A caller of h1 sees both and calls each at its own namespace's address.
    let mut on_h2 = probe_in(&machines[1], &hosts[1], "probe-h2");
    wait_instances(&client, "probe", None, 2).await;
    let seen = std::cell::RefCell::new(std::collections::BTreeSet::new());
    poll("calls through h1 answered by both instances", || async {
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

    // One NATS node killed, then back: the cluster's registry goes on.
    nats.kill9(0).await;
    let _on_h1 = probe_in(&machines[0], &hosts[0], "probe-h1");
    let on_h3 = hosts[2].client().await;
    wait_instances(&on_h3, "probe", None, 3).await;
    nats.restart(0).await;
    wait_instances(&client, "probe", None, 3).await;

    // h3 cut off from the network: its instance leaves h1's registry
    // within the lease time; back on the network, h3 announces it again.
    machines[2].cut();
    wait_instances(&client, "probe", None, 2).await;
    let out = hosts[0].weft(&["hosts", "--json"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    poll("h1 lists h3 as down", || async {
        let out = hosts[0].weft(&["hosts", "--json"]).await;
        let listed: serde_json::Value =
            serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
        if listed[2]["name"] == "h3" && listed[2]["state"] == "down" {
            Ok(())
        } else {
            Err(listed.to_string())
        }
    })
    .await;
    assert_eq!(listed.as_array().map(Vec::len), Some(3), "{listed}");
    machines[2].reconnect();
    wait_instances(&client, "probe", None, 3).await;

    // Instances on the three hosts call each other by name, each through
    // its own host's registry, straight across the namespaces.
    let relayed = std::cell::RefCell::new(std::collections::BTreeMap::new());
    poll(
        "each instance relays a call to an instance on another host",
        || async {
            let (by, to): (WhoAmI, WhoAmI) = client
                .call("probe", "relay_whoami", ())
                .await
                .map_err(|e| e.to_string())?;
            let mut relayed = relayed.borrow_mut();
            if by.instance != to.instance {
                relayed.insert(by.instance, to.instance);
            }
            if relayed.len() == 3 {
                Ok(())
            } else {
                Err(format!("{relayed:?}"))
            }
        },
    )
    .await;

    // h2 and its instance killed mid-load (a machine that dies): the
    // instance leaves h1's registry, and calls go on to the others.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut loaders = load(&client, stopped);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    hosts[1].kill9().await;
    on_h2.kill9().await;
    wait_instances(&client, "probe", None, 2).await;
    let during = stop_load(&stop, &mut loaders).await;
    println!(
        "while h2 died: {:?} answered, {} call(s) failed: {:?}",
        during.answered,
        during.errors.len(),
        during.errors.iter().take(3).collect::<Vec<_>>()
    );
    assert!(during.answered.contains_key("probe-h2"), "{during:?}");
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut loaders = load(&client, stopped);
    tokio::time::sleep(std::time::Duration::from_millis(1000)).await;
    let after = stop_load(&stop, &mut loaders).await;
    assert!(
        after.errors.is_empty(),
        "calls fail after h2 left: {after:?}"
    );
    assert_eq!(
        after.answered.keys().collect::<Vec<_>>(),
        ["probe-h1", "probe-h3"],
        "{after:?}"
    );
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
    let said = refused_host(&["--nats", &url, "--name", "a", "--lease-ttl", "2"]).await;
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
    // Nothing listens on port 1.
    let said = refused_host(&["--nats", "nats://127.0.0.1:1"]).await;
    assert!(
        said.contains("cannot reach NATS at nats://127.0.0.1:1"),
        "{said}"
    );
    assert!(said.contains("nats-server -js"), "{said}");

    let plain = NatsServer::start_without_jetstream().await;
    let said = refused_host(&["--nats", &plain.url()]).await;
    assert!(said.contains("does not run JetStream"), "{said}");

    let said = refused_host(&["--nats", "not a url"]).await;
    assert!(said.contains("is not a NATS server URL"), "{said}");
}

/// NATS goes away and comes back without its store: the hosts say so,
/// other hosts' instances lapse meanwhile, and once it is back the hosts
/// make the buckets again and announce their instances again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_reconnect_to_a_nats_that_went_away_and_announce_again() {
    let mut nats = NatsServer::start().await;
    let url = nats.url();
    let cluster = |name: &'static str| {
        host_builder().args(["--nats", url.as_str(), "--name", name, "--lease-ttl", "2"])
    };
    let mut a = cluster("a").start().await;
    let mut b = cluster("b").start().await;
    let _instance = probe(&a, "1.0.0", "probe-on-a");
    let on_b = b.client().await;
    wait_instances(&on_b, "probe", None, 1).await;
    let out = a.weft(&["main", "probe", "1.0.0"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));

    nats.kill9().await;
    for host in [&mut a, &mut b] {
        let process = host.process();
        poll("the host says it lost NATS", || async {
            let said = process.output();
            if said.contains("lost the connection to NATS") {
                Ok(())
            } else {
                Err(said)
            }
        })
        .await;
    }
    // Without NATS, b's view of a's instance lapses; b's own callers still
    // get answers about what b knows.
    wait_instances(&on_b, "probe", None, 0).await;

    nats.restart(false).await;
    wait_instances(&on_b, "probe", None, 1).await;
    let me: WhoAmI = on_b.call("probe", "whoami", ()).await.unwrap();
    assert_eq!(me.instance, "probe-on-a");
    let said = a.process().output();
    assert!(said.contains("reconnected to NATS"), "{said}");
    // The main version a knew is in the new bucket again: a host started
    // now takes it from there.
    let c = cluster("c").start().await;
    let on_c = c.client().await;
    wait_instances(&on_c, "probe", None, 1).await;
    let listed = on_c.services().await.unwrap();
    let main = listed
        .iter()
        .find(|s| s.name == "probe")
        .and_then(|s| s.main.as_ref().map(ToString::to_string));
    assert_eq!(main.as_deref(), Some("1.0.0"), "{listed:?}");
}

/// A bucket of weft's name made by someone else with other settings, or by
/// hosts with another lease time: the host refuses to start, says why and
/// what to do, and leaves the bucket as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bucket_with_other_settings_is_refused_and_left_alone() {
    use async_nats::jetstream::{self, kv};

    let nats = NatsServer::start().await;
    let url = nats.url();
    let js = jetstream::new(nats.client().await);
    js.create_key_value(kv::Config {
        bucket: "weft_tokens".to_owned(),
        history: 5,
        ..kv::Config::default()
    })
    .await
    .unwrap();
    let said = refused_host(&["--nats", &url]).await;
    assert!(
        said.contains("the bucket `weft_tokens`")
            && said.contains("keeps 5 values per key, weft keeps 1")
            && said.contains("leaves it as it is"),
        "{said}"
    );
    let tokens = js.get_key_value("weft_tokens").await.unwrap();
    assert_eq!(tokens.status().await.unwrap().history(), 5);
    js.delete_key_value("weft_tokens").await.unwrap();

    // An object store for executables whose objects expire.
    js.create_object_store(async_nats::jetstream::object_store::Config {
        bucket: "weft_artifacts".to_owned(),
        max_age: std::time::Duration::from_secs(60),
        ..Default::default()
    })
    .await
    .unwrap();
    let said = refused_host(&["--nats", &url]).await;
    assert!(
        said.contains("the object store `weft_artifacts`")
            && said.contains("its objects expire after 60 s")
            && said.contains("leaves it as it is"),
        "{said}"
    );
    let mut store = js.get_stream("OBJ_weft_artifacts").await.unwrap();
    assert_eq!(
        store.info().await.unwrap().config.max_age,
        std::time::Duration::from_secs(60),
        "the object store is as it was"
    );
    js.delete_object_store("weft_artifacts").await.unwrap();

    // The registry's bucket is made for the first host's lease time (the
    // refused hosts made it, with the default of 6 s, before they found the
    // tokens' bucket and the object store).
    let _first = host_builder()
        .args(["--nats", url.as_str(), "--name", "a"])
        .start()
        .await;
    let said = refused_host(&["--nats", &url, "--name", "b", "--lease-ttl", "5"]).await;
    assert!(
        said.contains("the bucket `weft_registry`")
            && said.contains("made by hosts with --lease-ttl 6, this host has --lease-ttl 5"),
        "{said}"
    );
}

/// A host that announces its instances at an address the other hosts
/// cannot reach: they stay listed, are reported unreachable (`weft hosts`,
/// the log), and calls to them say what happened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_at_an_address_others_cannot_reach_are_reported() {
    let nats = NatsServer::start().await;
    let url = nats.url();
    let mut a = host_builder()
        .args(["--nats", url.as_str(), "--name", "a"])
        .start()
        .await;
    // b's instances listen on 127.0.0.1; it announces them at 127.0.0.2.
    let b = host_builder()
        .args([
            "--nats",
            url.as_str(),
            "--name",
            "b",
            "--advertise",
            "127.0.0.2",
        ])
        .start()
        .await;
    let _instance = probe(&b, "1.0.0", "probe-on-b");
    let on_a = a.client().await;
    wait_instances(&on_a, "probe", None, 1).await;
    poll("a reports b's instance unreachable", || async {
        let out = a.weft(&["hosts", "--json"]).await;
        let listed: serde_json::Value =
            serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
        let b = &listed[1];
        let reported = b["state"] == "unreachable"
            && b["unreachable"][0]["instance"] == "probe-on-b"
            && b["unreachable"][0]["address"]
                .as_str()
                .is_some_and(|a| a.starts_with("tcp://127.0.0.2:"));
        if reported {
            Ok(())
        } else {
            Err(listed.to_string())
        }
    })
    .await;
    let out = a.weft(&["hosts"]).await;
    let table = text(&out.stdout);
    assert!(
        table.contains("unreachable: probe-on-b at tcp://127.0.0.2:"),
        "{table}"
    );
    // Still listed, not dropped; a call says it cannot get through.
    let listed = on_a.services().await.unwrap();
    assert_eq!(instances(&listed, "probe", None), 1, "{listed:?}");
    let err = on_a
        .call::<_, WhoAmI>("probe", "whoami", ())
        .await
        .unwrap_err();
    assert_eq!(err.code(), weft::Code::Unavailable, "{err}");
    let said = a.process().output();
    assert!(
        said.contains("cannot reach an instance of another host"),
        "{said}"
    );
}

/// Runs `weft host` on 127.0.0.1:0 with a data dir of its own and `args`,
/// which must refuse to start: what it said.
async fn refused_host(args: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let mut all = vec![
        "host",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        dir.path().to_str().unwrap(),
    ];
    all.extend_from_slice(args);
    let out = Weft::new(WEFT).run(&all).await;
    assert!(!out.status.success(), "{args:?}: {}", text(&out.stdout));
    text(&out.stderr)
}

/// A certificate authority and the certificates it signs, as PEM files in
/// a directory of the test's.
struct Pki {
    dir: tempfile::TempDir,
    ca: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "weft test CA");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        std::fs::write(dir.path().join("ca.pem"), cert.pem()).unwrap();
        Pki {
            dir,
            ca: rcgen::Issuer::new(params, key),
        }
    }

    /// The CA's certificate.
    fn ca(&self) -> String {
        self.path("ca.pem")
    }

    /// A certificate for `names` signed by the CA: (certificate, key).
    fn issue(&self, file: &str, names: &[&str]) -> (String, String) {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let params = rcgen::CertificateParams::new(names).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.ca).unwrap();
        let (cert_file, key_file) = (format!("{file}.pem"), format!("{file}-key.pem"));
        std::fs::write(self.dir.path().join(&cert_file), cert.pem()).unwrap();
        std::fs::write(self.dir.path().join(&key_file), key.serialize_pem()).unwrap();
        (self.path(&cert_file), self.path(&key_file))
    }

    fn path(&self, file: &str) -> String {
        self.dir.path().join(file).to_str().unwrap().to_owned()
    }
}

/// A NATS that requires TLS with client certificates: a host with the CA,
/// a certificate and its key joins; one without a certificate is refused
/// and says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_joins_a_nats_that_requires_mutual_tls() {
    let pki = Pki::new();
    let (server_cert, server_key) = pki.issue("server", &["127.0.0.1", "localhost"]);
    let (client_cert, client_key) = pki.issue("client", &["weft-host"]);
    let ca = pki.ca();
    let nats = NatsServer::start_with(&[
        "--tlsverify",
        "--tlscert",
        &server_cert,
        "--tlskey",
        &server_key,
        "--tlscacert",
        &ca,
    ])
    .await;
    let url = nats.url();
    let host = host_builder()
        .args([
            "--nats",
            url.as_str(),
            "--name",
            "tls",
            "--nats-tls-required",
        ])
        .args(["--nats-tls-ca", ca.as_str()])
        .args(["--nats-tls-cert", client_cert.as_str()])
        .args(["--nats-tls-key", client_key.as_str()])
        .start()
        .await;
    let out = host.weft(&["hosts", "--json"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed[0]["name"], "tls", "{listed}");

    let said = refused_host(&["--nats", &url, "--nats-tls-ca", &ca]).await;
    assert!(
        said.contains("cannot reach NATS at") && said.contains("--nats"),
        "{said}"
    );
}

/// Events in a cluster refuse what JetStream cannot take, saying why: a
/// topic whose stream someone else made with other settings (left as it
/// was), and an event over NATS's largest message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_refuse_a_foreign_stream_and_an_event_over_the_limit() {
    use async_nats::jetstream::{self, stream};

    let nats = NatsServer::start().await;
    let url = nats.url();
    let js = jetstream::new(nats.client().await);
    // The stream weft would make for `orders.created`, on other subjects.
    js.create_stream(stream::Config {
        name: "WEFT_EVENTS_orders=2Ecreated".to_owned(),
        subjects: vec!["someone.else".to_owned()],
        ..Default::default()
    })
    .await
    .unwrap();
    let host = host_builder()
        .args(["--nats", url.as_str(), "--name", "a"])
        .start()
        .await;
    let client = host.client().await;
    let err = client
        .publish("orders.created", &json!({ "order": 1 }))
        .await
        .unwrap_err();
    assert!(
        err.message().contains("WEFT_EVENTS_orders=2Ecreated")
            && err.message().contains("other settings")
            && err.message().contains("leaves it as it is"),
        "{err}"
    );
    let mut foreign = js.get_stream("WEFT_EVENTS_orders=2Ecreated").await.unwrap();
    assert_eq!(
        foreign.info().await.unwrap().config.subjects,
        ["someone.else"],
        "the stream is as it was"
    );

    // NATS takes at most 1 MiB in a message by default.
    let big = "x".repeat(1_100_000);
    let err = client
        .publish("big.events", &json!({ "data": big }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), weft::Code::ResourceExhausted, "{err}");
    assert!(
        err.message().contains("1048576 bytes") && err.message().contains("max_payload"),
        "{err}"
    );
    // The topic still takes events that fit.
    client
        .publish("big.events", &json!({ "data": "small" }))
        .await
        .unwrap();
}

/// A consumer group whose JetStream consumer someone else made with other
/// settings: the handler's subscription is refused, saying why and what to
/// do, and the consumer is left as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_with_other_settings_is_refused_and_left_alone() {
    use async_nats::jetstream::{self, consumer, stream};

    let nats = NatsServer::start().await;
    let url = nats.url();
    let js = jetstream::new(nats.client().await);
    // The topic's stream as weft makes it, and a consumer of the ordered
    // handler's name that acknowledges nothing.
    let topic = js
        .create_stream(stream::Config {
            name: "WEFT_EVENTS_e2e=2Eordered".to_owned(),
            subjects: vec!["weft.events.e2e.ordered".to_owned()],
            ..Default::default()
        })
        .await
        .unwrap();
    topic
        .create_consumer(consumer::pull::Config {
            durable_name: Some("events_probe=2Eordered".to_owned()),
            ack_policy: consumer::AckPolicy::None,
            ..Default::default()
        })
        .await
        .unwrap();
    let host = host_builder()
        .args(["--nats", url.as_str(), "--name", "a"])
        .start()
        .await;
    let dir = tempfile::tempdir().unwrap();
    let mut probe = crate::events_probe::start(&host, "refused-1", dir.path());
    let process = probe.process();
    poll("the probe says its ordered handler was refused", || async {
        let said = process.output();
        if said.contains("the host refused the subscription")
            && said.contains("exists in NATS with other settings")
        {
            Ok(())
        } else {
            Err(said)
        }
    })
    .await;
    let mut left = js
        .get_consumer_from_stream::<consumer::pull::Config, _, _>(
            "events_probe=2Eordered",
            "WEFT_EVENTS_e2e=2Eordered",
        )
        .await
        .unwrap();
    assert_eq!(
        left.info().await.unwrap().config.ack_policy,
        consumer::AckPolicy::None,
        "the consumer is as it was"
    );
}
