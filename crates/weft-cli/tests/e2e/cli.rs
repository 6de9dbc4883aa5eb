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
