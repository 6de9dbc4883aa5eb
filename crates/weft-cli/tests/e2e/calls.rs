//! Calls between real processes as a user makes them: versions, balancing
//! over instances, errors, notifications, unix sockets.

use std::collections::HashMap;

use serde_json::{Value, json};
use weft::{Client, ClientOptions, Code, Codec, CodecSet};
use weft_test_support::{poll, text, wait_instances};

use crate::mesh::{Backend, Mesh, conformance};
use crate::probe::WhoAmI;
use crate::{probe, probe_with};

conformance!(
    versions_are_chosen_by_main_exact_and_requirement,
    a_main_version_set_anywhere_applies_to_every_caller,
    calls_are_spread_over_instances,
    errors_say_what_went_wrong,
    notifications_from_a_service_are_listed,
    a_service_on_a_unix_socket_is_callable,
);

async fn whoami(client: &Client, version: Option<&str>) -> WhoAmI {
    let mut request = client.request("probe", "whoami");
    if let Some(v) = version {
        request = request.version(v);
    }
    request
        .send(())
        .await
        .unwrap_or_else(|e| panic!("whoami with version {version:?} failed: {e}"))
}

async fn versions_are_chosen_by_main_exact_and_requirement(backend: Backend) {
    let mesh = Mesh::start(backend).await;
    let (home, host) = (mesh.home(), mesh.caller());
    let watcher = host.client().await;
    let _v1 = probe(home, "1.0.0", "probe-v1");
    wait_instances(&watcher, "probe", Some("1.0.0"), 1).await;
    let _v2 = probe(home, "2.0.0", "probe-v2");
    wait_instances(&watcher, "probe", Some("2.0.0"), 1).await;

    let listed = watcher.services().await.unwrap();
    let probe = listed.iter().find(|s| s.name == "probe").unwrap();
    assert_eq!(
        probe.main.as_ref().map(ToString::to_string).as_deref(),
        Some("1.0.0"),
        "the first version registered is main: {listed:?}"
    );

    let client = host.client().await;
    for (version, expected) in [
        (None, "1.0.0"),
        (Some("main"), "1.0.0"),
        (Some("2.0.0"), "2.0.0"),
        (Some("^2"), "2.0.0"),
        (Some("^1"), "1.0.0"),
        (Some(">=1"), "2.0.0"),
    ] {
        let me = whoami(&client, version).await;
        assert_eq!(me.version, expected, "version {version:?} reached {me:?}");
        assert_eq!(me.service, "probe");
        assert_eq!(
            me.instance,
            format!("probe-v{}", &expected[..1]),
            "version {version:?}"
        );
    }

    let err = client
        .request("probe", "whoami")
        .version("3.0.0")
        .send::<_, WhoAmI>(())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err}");

    let out = host
        .weft(&["call", "probe", "whoami", "--version", "2.0.0"])
        .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let me: WhoAmI = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(me.version, "2.0.0");

    let out = host
        .weft(&["call", "probe", "whoami", "--version", "3.0.0"])
        .await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.starts_with("error: not_found"), "{stderr}");
    assert!(
        stderr.contains("3.0.0") && stderr.contains("1.0.0") && stderr.contains("2.0.0"),
        "the error names the wanted and the running versions: {stderr}"
    );
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
}

/// `weft main` on any host moves calls without a version there, for
/// callers of every host.
async fn a_main_version_set_anywhere_applies_to_every_caller(backend: Backend) {
    let mesh = Mesh::start(backend).await;
    let (home, host) = (mesh.home(), mesh.caller());
    let _one = probe(home, "1.0.0", "probe-1");
    let _two = probe(host, "2.0.0", "probe-2");
    let (on_home, on_caller) = (home.client().await, host.client().await);
    wait_instances(&on_home, "probe", None, 2).await;
    wait_instances(&on_caller, "probe", None, 2).await;

    for (at, version) in [(home, "2.0.0"), (host, "1.0.0"), (home, "2.0.0")] {
        let out = at.weft(&["main", "probe", version]).await;
        assert!(out.status.success(), "{}", text(&out.stderr));
        for client in [&on_home, &on_caller] {
            poll(
                &format!("calls without a version go to {version}"),
                || async {
                    let me: WhoAmI = client
                        .call("probe", "whoami", ())
                        .await
                        .map_err(|e| e.to_string())?;
                    if me.version == version {
                        Ok(())
                    } else {
                        Err(format!("answered by {}", me.version))
                    }
                },
            )
            .await;
        }
        let out = host.weft(&["ls", "--json"]).await;
        assert!(out.status.success(), "{}", text(&out.stderr));
        let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
        let main: Vec<&Value> = listed
            .as_array()
            .into_iter()
            .flatten()
            .filter(|v| v["main"] == true)
            .collect();
        assert_eq!(main.len(), 1, "one main version: {listed}");
        assert_eq!(
            main[0]["version"], version,
            "after main {version}: {listed}"
        );
    }
}

async fn calls_are_spread_over_instances(backend: Backend) {
    let mesh = Mesh::start(backend).await;
    let (home, host) = (mesh.home(), mesh.caller());
    let watcher = host.client().await;
    let _a = probe(home, "1.0.0", "probe-a");
    let _b = probe(home, "1.0.0", "probe-b");
    wait_instances(&watcher, "probe", Some("1.0.0"), 2).await;

    let client = host.client().await;
    let mut counts: HashMap<String, usize> = HashMap::new();
    for _ in 0..200 {
        *counts
            .entry(whoami(&client, None).await.instance)
            .or_default() += 1;
    }
    assert_eq!(counts.len(), 2, "both instances answer: {counts:?}");
    // With random choices between two idle instances, each gets about half;
    // fewer than 20 of 200 has a probability below 1e-30.
    assert!(
        counts.values().all(|&n| n >= 20),
        "each instance gets a share: {counts:?}"
    );
}

async fn errors_say_what_went_wrong(backend: Backend) {
    let mesh = Mesh::start(backend).await;
    let (home, host) = (mesh.home(), mesh.caller());
    let watcher = host.client().await;
    let _probe = probe(home, "1.0.0", "probe-1");
    wait_instances(&watcher, "probe", None, 1).await;
    let client = host.client().await;

    let err = client
        .call::<_, Value>("nosuch", "x", ())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err}");
    assert!(err.message().contains("`nosuch`"), "{err}");

    let err = client
        .call::<_, Value>("probe", "nope", ())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err}");
    assert!(
        err.message().contains("`nope`") && err.message().contains("`echo`"),
        "names the entrypoint and those there are: {err}"
    );

    // Argument errors name the entrypoint, the parameter, the type it
    // expects and what was given, whichever codec carried the call.
    let json_client = Client::connect_with(
        host.address(),
        ClientOptions::default().codecs(CodecSet::only(Codec::Json)),
    )
    .await
    .unwrap();
    for caller in [&client, &json_client] {
        for (entrypoint, args, field, message) in [
            (
                "echo",
                json!({}),
                "data",
                "missing parameter `data` of type `String`",
            ),
            (
                "echo",
                json!({ "data": 5 }),
                "data",
                "parameter `data` expects `String`, got the number 5",
            ),
            (
                "echo",
                json!({ "data": "x", "extra": 1 }),
                "extra",
                "unknown parameter `extra`: this entrypoint takes `data`",
            ),
            (
                "sleep",
                json!({ "ms": "five", "tag": "t" }),
                "ms",
                r#"parameter `ms` expects `u64`, got a string "five""#,
            ),
            (
                "sleep",
                json!({ "ms": 1, "tga": "t" }),
                "tag",
                "missing parameter `tag` of type `String` (you passed `tga`: a misspelling?)",
            ),
            (
                "sleep",
                json!({ "ms": 1, "tag": "t", "MS": 2 }),
                "MS",
                "unknown parameter `MS`: this entrypoint takes `ms`, `tag`",
            ),
        ] {
            let err = caller
                .call::<_, Value>("probe", entrypoint, &args)
                .await
                .unwrap_err();
            assert_eq!(err.code(), Code::InvalidArgument, "{args}: {err}");
            assert_eq!(err.field(), Some(field), "{args}: {err}");
            assert_eq!(err.service(), Some("probe"), "{args}: {err:?}");
            assert_eq!(err.entrypoint(), Some(entrypoint), "{args}: {err:?}");
            assert_eq!(err.message(), message, "{args}: {err:?}");
        }
    }

    for (kind, variant, message) in [
        ("boom", "Boom", "the probe blew up as asked"),
        ("out_of_dice", "OutOfDice", "only 0 dice left"),
    ] {
        let err = client
            .call::<_, ()>("probe", "fail", json!({ "kind": kind }))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::Application, "{err}");
        assert_eq!(err.service(), Some("probe"), "{err:?}");
        assert_eq!(err.entrypoint(), Some("fail"), "{err:?}");
        assert_eq!(err.kind(), Some(variant), "{err:?}");
        assert_eq!(err.message(), message, "{err:?}");
    }

    // Over the 16 MiB frame limit, both ways; the client stays usable.
    let huge = "x".repeat(17 << 20);
    let err = client
        .call::<_, String>("probe", "echo", json!({ "data": huge }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err}");
    let back: String = client
        .call("probe", "echo", json!({ "data": "still here" }))
        .await
        .unwrap();
    assert_eq!(back, "still here");
    let err = client
        .call::<_, String>("probe", "big", json!({ "len": 17 << 20 }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err}");
    let back: String = client
        .call("probe", "echo", json!({ "data": "and here" }))
        .await
        .unwrap();
    assert_eq!(back, "and here");

    // The same through the CLI: exit 1, the code and the parameter on stderr.
    let cases: [(&[&str], &str, &[&str]); 6] = [
        (&["call", "nosuch", "x"], "error: not_found", &["`nosuch`"]),
        (&["call", "probe", "nope"], "error: not_found", &["`nope`"]),
        (
            &["call", "probe", "echo"],
            "error: invalid_argument",
            &["missing parameter `data` of type `String`"],
        ),
        (
            &["call", "probe", "echo", "--arg", "data=5"],
            "error: invalid_argument",
            &["parameter `data` expects `String`, got the number 5"],
        ),
        (
            &[
                "call", "probe", "sleep", "--arg", "ms=five", "--arg", "tag=t",
            ],
            "error: invalid_argument from probe.sleep",
            &[r#"parameter `ms` expects `u64`, got a string "five""#],
        ),
        (
            &["call", "probe", "fail", "--arg", "kind=boom"],
            "error: application (Boom) from probe.fail",
            &["blew up"],
        ),
    ];
    for (args, prefix, parts) in cases {
        let out = host.weft(args).await;
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.starts_with(prefix), "{args:?}: {stderr}");
        for part in parts {
            assert!(stderr.contains(part), "{args:?} names {part}: {stderr}");
        }
        assert!(!stderr.contains("msgpack"), "{args:?}: {stderr}");
        // The parameter is named once, not again after the message.
        assert!(!stderr.contains("(parameter `"), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?}: {}", text(&out.stdout));
    }
    let out = host
        .weft(&["call", "probe", "echo", "--arg", "data=hello"])
        .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "\"hello\"\n");
}

async fn notifications_from_a_service_are_listed(backend: Backend) {
    let mesh = Mesh::start(backend).await;
    let (home, host) = (mesh.home(), mesh.caller());
    let watcher = host.client().await;
    let _probe = probe(home, "1.2.3", "probe-n");
    wait_instances(&watcher, "probe", None, 1).await;
    let client = host.client().await;
    client
        .call::<_, ()>("probe", "notify", json!({ "msg": "the probe says hi" }))
        .await
        .unwrap();

    let out = host.weft(&["notifications", "--json"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let listed: Vec<Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect();
    assert_eq!(listed.len(), 1, "{listed:?}");
    let n = &listed[0];
    assert_eq!(n["message"], "the probe says hi", "{n}");
    assert_eq!(n["service"], "probe", "{n}");
    assert_eq!(n["version"], "1.2.3", "{n}");
    assert_eq!(n["instance"], "probe-n", "{n}");
    assert_eq!(n["severity"], "warning", "{n}");
}

async fn a_service_on_a_unix_socket_is_callable(backend: Backend) {
    let mesh = Mesh::start(backend).await;
    let (home, host) = (mesh.home(), mesh.caller());
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("p.sock");
    let listen = format!("unix://{}", socket.display());
    let watcher = host.client().await;
    let _probe = probe_with(home, "1.0.0", "probe-unix", &[("WEFT_LISTEN", &listen)]);
    wait_instances(&watcher, "probe", None, 1).await;
    assert!(socket.exists(), "the probe listens on {listen}");

    let client = host.client().await;
    assert_eq!(whoami(&client, None).await.instance, "probe-unix");
    let back: String = client
        .call("probe", "echo", json!({ "data": "over a unix socket" }))
        .await
        .unwrap();
    assert_eq!(back, "over a unix socket");

    let out = host
        .weft(&["call", "probe", "echo", "--arg", "data=cli"])
        .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "\"cli\"\n");
}
