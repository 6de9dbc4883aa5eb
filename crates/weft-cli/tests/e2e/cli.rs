//! The `weft` binary as a user runs it: a real `weft host` child process on
//! 127.0.0.1:0 and the commands against it.

use serde_json::Value;
use weft_test_support::{Weft, text};

use crate::WEFT;
use crate::mesh::{Backend, Mesh, conformance};

conformance!(commands_against_a_running_host);

/// Runs `weft args` with `WEFT_HOST=host`.
async fn weft_at(host: &str, args: &[&str]) -> std::process::Output {
    Weft::new(WEFT).host(host).run(args).await
}

async fn commands_against_a_running_host(backend: Backend) {
    let mesh = Mesh::start(backend).await;
    let (home, host) = (mesh.home(), mesh.caller());

    let out = host.weft(&["ls", "--json"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let services: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(services, Value::Array(vec![]));

    let out = host.weft(&["ls"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "MAIN  NAME  VERSION  HOST  STATUS  RUNNING\n"
    );

    let out = host.weft(&["notifications", "--json"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "");

    let out = host.weft(&["notifications"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "TIME  SEVERITY  SERVICE  MESSAGE\n");

    let out = host.weft(&["call", "nosuch", "x"]).await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.starts_with("error: not_found"), "{stderr}");
    assert!(stderr.contains("`nosuch`"), "{stderr}");
    assert!(out.stdout.is_empty());

    let out = host.weft(&["call", "nosuch", "x", "[1, 2]"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("JSON object"),
        "{}",
        text(&out.stderr)
    );

    // A program sends a notification; the CLI shows it.
    home.client()
        .await
        .notify(weft::Severity::Warning, "disk almost full")
        .await
        .unwrap();
    let out = host.weft(&["notifications", "--json"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines: Vec<Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["message"], "disk almost full");
    assert_eq!(lines[0]["severity"], "warning");
    let out = host.weft(&["notifications", "-n", "5"]).await;
    let table = text(&out.stdout);
    let row = table.lines().nth(1).unwrap_or_default();
    assert!(
        row.contains("warning") && row.ends_with("disk almost full"),
        "{table}"
    );

    // --host wins over WEFT_HOST.
    let out = weft_at("127.0.0.1:1", &["ls", "--json", "--host", host.address()]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[tokio::test]
async fn an_unreachable_host_says_how_to_fix_it() {
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = weft_at(
        &format!("127.0.0.1:{port}"),
        &["call", "die_roller", "roll_die"],
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(stderr.contains(&format!("127.0.0.1:{port}")), "{stderr}");
    assert!(stderr.contains("weft host"), "{stderr}");
    assert!(stderr.contains("WEFT_HOST"), "{stderr}");
}

#[tokio::test]
async fn a_bad_listen_address_is_explained() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap();
    let out = Weft::new(WEFT)
        .run(&["host", "--listen", "nowhere", "--data-dir", data_dir])
        .await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("--listen") && stderr.contains("accepted forms"),
        "{stderr}"
    );
}

/// The RFC 3339 times in `out`, each checked to parse as one.
fn times_in(out: &str) -> Vec<String> {
    out.split(|c: char| c.is_whitespace() || matches!(c, '(' | ')' | ',' | ';'))
        .filter(|w| w.len() >= 20 && w.as_bytes()[4] == b'-' && w.as_bytes()[10] == b'T')
        .map(|w| {
            w.parse::<jiff::Timestamp>()
                .unwrap_or_else(|e| panic!("`{w}` is not RFC 3339 ({e}) in:\n{out}"));
            w.to_owned()
        })
        .collect()
}

/// A zone no test machine is in by accident: `+05:30`, no daylight saving.
const ZONE: &str = "<+0530>-5:30";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_time_is_rfc3339_in_local_time_or_utc() {
    let host = crate::start_host().await;
    let watcher = host.client().await;
    let _probe = crate::probe(&host, "1.0.0", "probe-1");
    weft_test_support::wait_instances(&watcher, "probe", None, 1).await;
    watcher
        .notify(weft::Severity::Info, "a time to show")
        .await
        .unwrap();
    let out = host.weft(&["events", "publish", "ticks", "{}"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));

    let commands: [&[&str]; 4] = [
        &["ls"],
        &["hosts"],
        &["notifications"],
        &["events", "tail", "ticks"],
    ];
    for args in commands {
        let local = host.cli().env("TZ", ZONE).run(args).await;
        assert!(local.status.success(), "{args:?}: {}", text(&local.stderr));
        let shown = text(&local.stdout);
        let times = times_in(&shown);
        assert!(!times.is_empty(), "{args:?} shows no time:\n{shown}");
        assert!(
            times.iter().all(|t| t.ends_with("+05:30")),
            "{args:?} in local time:\n{shown}"
        );

        // `--utc` after the command or before it.
        let mut after = args.to_vec();
        after.push("--utc");
        let mut before = vec!["--utc"];
        before.extend_from_slice(args);
        for utc_args in [after, before] {
            let utc = host.cli().env("TZ", ZONE).run(&utc_args).await;
            assert!(utc.status.success(), "{utc_args:?}: {}", text(&utc.stderr));
            let shown = text(&utc.stdout);
            let times = times_in(&shown);
            assert!(
                !times.is_empty() && times.iter().all(|t| t.ends_with('Z')),
                "{utc_args:?} in UTC:\n{shown}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_times_follow_the_same_format() {
    let host = crate::host_builder()
        .args(["--auth", "required"])
        .start()
        .await;
    let admin = host.admin_token().expect("the host wrote its admin token");
    let out = host
        .weft(&[
            "token",
            "create",
            "--scope",
            "call:*",
            "--expires",
            "1h",
            "--token",
            &admin,
        ])
        .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    // The token on stdout, what it is (and when it expires) on stderr.
    let said = text(&out.stderr);
    assert_eq!(times_in(&said).len(), 1, "{said}");

    let local = host
        .cli()
        .env("TZ", ZONE)
        .run(&["token", "ls", "--token", &admin])
        .await;
    assert!(local.status.success(), "{}", text(&local.stderr));
    let shown = text(&local.stdout);
    let times = times_in(&shown);
    // When each token was made, and when the one made here expires.
    let rows = shown.lines().count() - 1;
    assert_eq!(times.len(), rows + 1, "{shown}");
    assert!(times.iter().all(|t| t.ends_with("+05:30")), "{shown}");
    let utc = host
        .cli()
        .env("TZ", ZONE)
        .run(&["token", "ls", "--utc", "--token", &admin])
        .await;
    let shown = text(&utc.stdout);
    let times = times_in(&shown);
    assert!(
        times.len() == rows + 1 && times.iter().all(|t| t.ends_with('Z')),
        "{shown}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_reads_its_arguments_from_a_file_or_stdin() {
    let host = crate::start_host().await;
    let watcher = host.client().await;
    let _probe = crate::probe(&host, "1.0.0", "probe-1");
    weft_test_support::wait_instances(&watcher, "probe", None, 1).await;
    let dir = tempfile::tempdir().unwrap();

    // More than a command line can hold (an argument is at most 128 KiB).
    let big = "x".repeat(1 << 20);
    let file = dir.path().join("args.json");
    std::fs::write(&file, serde_json::json!({ "data": big }).to_string()).unwrap();
    let at = format!("@{}", file.display());
    let out = host.weft(&["call", "probe", "echo", &at]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let back: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(back.as_str().map(str::len), Some(big.len()));

    let out = host
        .cli()
        .stdin(r#"{"data": "from stdin"}"#)
        .run(&["call", "probe", "echo", "-"])
        .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "\"from stdin\"\n");

    // --arg still wins over the same key in the file.
    let out = host
        .weft(&["call", "probe", "echo", &at, "--arg", "data=over"])
        .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "\"over\"\n");

    let missing = format!("@{}", dir.path().join("nope.json").display());
    std::fs::write(dir.path().join("bad.json"), "{\"data\": ").unwrap();
    let bad = format!("@{}", dir.path().join("bad.json").display());
    let cases: [(&[&str], Option<&str>, &[&str]); 4] = [
        (
            &["call", "probe", "echo", &missing],
            None,
            &["cannot read the arguments from", "nope.json: no such file"],
        ),
        (
            &["call", "probe", "echo", &bad],
            None,
            &["the arguments in", "bad.json are not valid JSON"],
        ),
        (
            &["call", "probe", "echo", "-"],
            Some("[1, 2]"),
            &["the arguments on stdin must be a JSON object", "not [1,2]"],
        ),
        (
            &["call", "probe", "echo", "-"],
            Some(""),
            &["the arguments on stdin are empty"],
        ),
    ];
    for (args, stdin, parts) in cases {
        let mut cli = host.cli();
        if let Some(input) = stdin {
            cli = cli.stdin(input);
        }
        let out = cli.run(args).await;
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.starts_with("error: "), "{args:?}: {stderr}");
        for part in parts {
            assert!(stderr.contains(part), "{args:?} says {part}: {stderr}");
        }
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}

#[tokio::test]
async fn help_opens_with_what_weft_is() {
    let out = Weft::new(WEFT).run(&["--help"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let help = text(&out.stdout);
    assert!(
        help.starts_with("weft runs microservices that call each other by name."),
        "{help}"
    );
    assert!(!help.contains("weft-cli"), "{help}");
    assert!(help.contains("--utc"), "{help}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_say_one_thing_once_and_name_who_refused() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let nobody = format!("127.0.0.1:{port}");
    let call = weft_at(&nobody, &["call", "probe", "echo"]).await;
    let ls = weft_at(&nobody, &["ls"]).await;
    // Over the wire or HTTP, the same words.
    assert_eq!(text(&call.stderr), text(&ls.stderr));
    let said = text(&call.stderr);
    assert_eq!(said.matches("error:").count(), 1, "{said}");
    assert_eq!(said.matches(&nobody).count(), 1, "{said}");
    assert_eq!(said.matches("connection refused").count(), 1, "{said}");

    let out = weft_at("nowhere", &["call", "probe", "echo"]).await;
    let said = text(&out.stderr);
    assert!(said.starts_with("error: --host: invalid address"), "{said}");

    // A host that is up but refuses the token is not "unreachable".
    let host = crate::host_builder()
        .args(["--auth", "required"])
        .start()
        .await;
    let out = host
        .weft(&["call", "probe", "echo", "--token", "weft_0_0"])
        .await;
    let said = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains("rejected the connection"), "{said}");
    assert!(!said.contains("cannot reach"), "{said}");
    assert!(!said.contains("start it with"), "{said}");
    assert!(!said.starts_with("error: unavailable"), "{said}");

    let out = host.weft(&["ls", "--token", "weft_0_0"]).await;
    let said = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert_eq!(said.matches("error:").count(), 1, "{said}");
    assert!(
        said.contains("the token sent was the one of --token"),
        "{said}"
    );
    assert!(!said.contains("pass --token,"), "{said}");
}
