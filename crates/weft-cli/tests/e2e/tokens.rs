//! Tokens as a user meets them: a host that requires them, `weft token`,
//! `weft login`, and commands that then work (or say what to do).

use std::path::Path;
use std::process::Output;

use serde_json::Value;
use weft_test_support::{HostProcess, poll, text};

use crate::mesh::{Backend, Mesh, conformance};

conformance!(a_host_that_requires_tokens_is_usable_after_login);

/// Runs `weft` as a user whose home (and so credentials file and default
/// data dir) is `home`.
async fn weft_as(home: &Path, host: &HostProcess, args: &[&str]) -> Output {
    host.cli()
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env("XDG_DATA_HOME", home.join("data"))
        .run(args)
        .await
}

/// A token made on one host works at every host (the same host on the
/// embedded backend) until it is revoked on any.
async fn a_host_that_requires_tokens_is_usable_after_login(backend: Backend) {
    let mesh = Mesh::start_with(backend, |b| b.args(["--auth", "required"])).await;
    let (maker, host) = (mesh.home(), mesh.caller());
    let home = tempfile::tempdir().unwrap();
    let data_dir = maker.data_dir().to_str().unwrap().to_owned();

    // Without a token, both the HTTP API and the wire port say what to do.
    let out = weft_as(home.path(), host, &["ls"]).await;
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("token"), "{err}");
    let out = weft_as(home.path(), host, &["call", "nosuch", "x"]).await;
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("WEFT_TOKEN"),
        "{}",
        text(&out.stderr)
    );

    // On the host's machine, `weft token` uses the host's admin.token.
    let out = weft_as(
        home.path(),
        maker,
        &[
            "token",
            "create",
            "--scope",
            "call:*",
            "--data-dir",
            &data_dir,
            "--json",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let created: Value = serde_json::from_slice(&out.stdout).unwrap();
    let token = created["token"].as_str().unwrap().to_owned();
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(token.starts_with("weft_"), "{created}");

    // Logged in, every command sends it: the HTTP API and the wire. (In a
    // cluster, the token reaches the other host a moment after it is made.)
    poll("a login with the new token", || async {
        let out = weft_as(
            home.path(),
            host,
            &["login", host.address(), "--token", &token],
        )
        .await;
        if out.status.success() {
            Ok(())
        } else {
            Err(text(&out.stderr))
        }
    })
    .await;
    let saved = std::fs::read_to_string(home.path().join("config/weft/credentials.json")).unwrap();
    assert!(saved.contains(&token));
    let out = weft_as(home.path(), host, &["ls", "--json"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = weft_as(home.path(), host, &["call", "nosuch", "x"]).await;
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("not_found"),
        "{}",
        text(&out.stderr)
    );

    // A login with a token the host does not know is refused.
    let out = weft_as(
        home.path(),
        host,
        &["login", host.address(), "--token", "weft_0_0"],
    )
    .await;
    assert!(!out.status.success());

    // Managing tokens needs `admin`: the saved `call:*` token is refused,
    // the host's admin token works.
    let out = weft_as(home.path(), host, &["token", "ls"]).await;
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("--scope admin"),
        "{}",
        text(&out.stderr)
    );
    let admin = host.admin_token().expect("the host wrote its admin token");
    let out = weft_as(
        home.path(),
        host,
        &["token", "ls", "--json", "--token", &admin],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains(&id));
    let out = weft_as(
        home.path(),
        host,
        &["token", "revoke", &id, "--token", &admin],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    // Revoked, the saved token stops working at once, and at every other
    // host soon after.
    let out = weft_as(home.path(), host, &["ls"]).await;
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("not valid"),
        "{}",
        text(&out.stderr)
    );
    poll("the revoked token is refused where it was made", || async {
        let out = weft_as(home.path(), maker, &["ls", "--token", &token]).await;
        let said = text(&out.stderr);
        if !out.status.success() && said.contains("not valid") {
            Ok(())
        } else {
            Err(said)
        }
    })
    .await;
}
