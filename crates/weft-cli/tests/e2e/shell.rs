//! `weft shell` as a person types into it: through a pseudo-terminal,
//! against a `weft host` child process with a probe service registered.

use std::path::Path;
use std::process::Command;

use rexpect::process::{Signal, WaitStatus};
use rexpect::session::{PtySession, spawn_command};
use serde_json::json;
use weft_test_support::{Weft, poll, text, wait_instances};

use crate::events_probe;
use crate::probe::Stats;
use crate::{WEFT, host_builder, probe, start_host};

/// How long one expectation waits for the shell's output.
const PATIENCE_MS: u64 = 30_000;

/// `weft shell args` on a fresh terminal, as a user whose home is `home`
/// (so its history goes to `home/data/weft/shell_history`), with `env` set.
fn shell(host: &str, home: &Path, args: &[&str], env: &[(&str, &str)]) -> PtySession {
    let mut cmd = Command::new(WEFT);
    cmd.arg("shell")
        .args(args)
        .env_remove("WEFT_TOKEN")
        .env("WEFT_HOST", host)
        .env("HOME", home)
        .env("XDG_DATA_HOME", home.join("data"))
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env("TERM", "xterm")
        .envs(env.iter().copied());
    let mut session = spawn_command(cmd, Some(PATIENCE_MS)).expect("weft shell starts on a pty");
    prompt(&mut session);
    session
}

/// Waits for the prompt; output before it is returned.
fn prompt(session: &mut PtySession) -> String {
    session
        .exp_string("weft> ")
        .unwrap_or_else(|e| panic!("no prompt: {e}"))
}

/// Types `keys` (a line editor reads them one by one) and waits for `wanted`.
fn type_and_expect(session: &mut PtySession, keys: &str, wanted: &str) -> String {
    session.send(keys).unwrap();
    session.flush().unwrap();
    session
        .exp_string(wanted)
        .unwrap_or_else(|e| panic!("typing {keys:?} did not print {wanted:?}: {e}"))
}

/// Waits for the shell to end and checks that it ended well.
fn expect_exit(mut session: PtySession) {
    session.exp_eof().expect("the shell ends");
    match session.process_mut().wait().unwrap() {
        WaitStatus::Exited(_, 0) => {}
        other => panic!("the shell ended with {other:?}"),
    }
}

#[tokio::test]
async fn the_shell_completes_calls_reports_errors_and_remembers() {
    let host = start_host().await;
    let _probe = probe(&host, "1.0.0", "probe-1");
    let events = tempfile::tempdir().unwrap();
    let handler = events_probe::start(&host, "events-1", events.path());
    let client = host.client().await;
    wait_instances(&client, "probe", Some("1.0.0"), 1).await;
    // Started after 1.0.0 registered, so that 1.0.0 is the main version.
    let _probe_2 = probe(&host, "2.0.0", "probe-2");
    wait_instances(&client, "probe", Some("2.0.0"), 1).await;
    let group = format!("{}.flaky", events_probe::SERVICE);
    host.http()
        .wait_subscribed(events_probe::DEAD, &group, &[handler.instance()])
        .await;
    let events_dir = events.path().to_owned();
    let home = tempfile::tempdir().unwrap();
    let address = host.address().to_owned();
    let home_dir = home.path().to_owned();
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let mut sh = shell(&address, &home_dir, &[], &[]);

        // Tab completes the service, then the entrypoint; a wrong name would
        // make the call fail instead of printing the probe's answer.
        type_and_expect(&mut sh, "call pr\twho\t\r", r#""instance": "probe-1""#);
        prompt(&mut sh);
        // ... and a parameter's name, with its `=`.
        type_and_expect(&mut sh, "call probe ec\tda\thello\r", r#""hello""#);
        prompt(&mut sh);

        // With several candidates, a second Tab lists them; more letters
        // and a Tab then pick one.
        type_and_expect(&mut sh, "call probe relay_\t\t", "relay_whoami");
        type_and_expect(&mut sh, "who\t\r", r#""instance": "probe-1""#);
        prompt(&mut sh);

        // `--version` completes, and so do the versions running; the call
        // goes to the version named, not to the main one.
        type_and_expect(
            &mut sh,
            "call probe whoami --ver\t2\t\r",
            r#""instance": "probe-2""#,
        );
        prompt(&mut sh);
        type_and_expect(
            &mut sh,
            "call probe whoami --version 3.0.0\r",
            "error: not_found",
        );
        prompt(&mut sh);

        // Topics complete from the handlers the registry knows; the
        // published event reaches its handler.
        type_and_expect(
            &mut sh,
            "publish e2e.de\t{\"tag\": \"shell\", \"n\": 7}\r",
            "published event ",
        );
        let said = prompt(&mut sh);
        assert!(said.contains("to e2e.dead"), "{said}");
        runtime.block_on(poll("the published event is handled", || async {
            events_probe::handled_anywhere(&events_dir, "flaky", "shell")
                .contains(&7)
                .then_some(())
        }));

        type_and_expect(&mut sh, "help\r", "publish TOPIC JSON");
        prompt(&mut sh);

        // Ctrl-C during a call (SIGINT from the terminal) stops the call,
        // cancels it on the service, and the shell goes on.
        type_and_expect(
            &mut sh,
            "call probe sleep ms=600000 tag=ctrl-c\r",
            "tag=ctrl-c",
        );
        let sleeps = |done: fn(&Stats) -> bool, what: &str| {
            runtime.block_on(poll(what, || async {
                let stats: Stats = client
                    .call("probe", "stats", json!({ "tag": "ctrl-c" }))
                    .await
                    .ok()?;
                done(&stats).then_some(())
            }))
        };
        sleeps(|s| s.started == 1, "the long call started");
        sh.process_mut().signal(Signal::SIGINT).unwrap();
        sh.exp_string("error: interrupted").unwrap();
        prompt(&mut sh);
        sleeps(|s| s.cancelled == 1, "the interrupted call is cancelled");

        // An unknown service is an error, and the shell goes on.
        type_and_expect(&mut sh, "call nosuch x\r", "error: not_found");
        let said = prompt(&mut sh);
        assert!(said.contains("`nosuch`"), "{said}");
        type_and_expect(&mut sh, "call probe echo 42\r", "NAME=VALUE");
        prompt(&mut sh);
        type_and_expect(&mut sh, "ls\r", "probe");
        let listed = prompt(&mut sh);
        assert!(
            listed.contains("1.0.0 (1)") && listed.contains("whoami"),
            "{listed}"
        );
        type_and_expect(&mut sh, "ls probe\r", "data: string");
        prompt(&mut sh);

        // Up recalls the last line of this session.
        type_and_expect(
            &mut sh,
            "call probe echo data=remembered\r",
            r#""remembered""#,
        );
        prompt(&mut sh);
        type_and_expect(&mut sh, "\x1b[A\r", r#""remembered""#);
        prompt(&mut sh);
        sh.send_line("exit").unwrap();
        expect_exit(sh);

        let history = std::fs::read_to_string(home_dir.join("data/weft/shell_history")).unwrap();
        assert!(
            history.contains("call probe echo data=remembered"),
            "{history}"
        );

        // A new session starts with the history of the last (`exit` is not
        // kept, nor a line repeating the one before): Up recalls the last
        // call, Up twice the `ls probe` before it.
        let mut sh = shell(&address, &home_dir, &[], &[]);
        type_and_expect(&mut sh, "\x1b[A\r", r#""remembered""#);
        prompt(&mut sh);
        type_and_expect(&mut sh, "\x1b[A\x1b[A\r", "data: string");
        prompt(&mut sh);
        // Ctrl-D leaves.
        sh.send_control('d').unwrap();
        expect_exit(sh);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_shell_without_a_host_says_how_to_fix_it() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = Weft::new(WEFT)
        .host(&format!("127.0.0.1:{port}"))
        .run(&["shell"])
        .await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(
        stderr.contains(&format!("127.0.0.1:{port}")) && stderr.contains("weft host"),
        "{stderr}"
    );
}

#[tokio::test]
async fn the_shell_uses_the_token_of_a_host_that_requires_one() {
    let host = host_builder().args(["--auth", "required"]).start().await;
    let token = host.admin_token().expect("the host wrote its admin token");
    let home = tempfile::tempdir().unwrap();
    let address = host.address().to_owned();
    let home_dir = home.path().to_owned();
    tokio::task::spawn_blocking(move || {
        // Without a token the shell does not start, and says what to pass.
        let mut cmd = Command::new(WEFT);
        cmd.arg("shell")
            .env_remove("WEFT_TOKEN")
            .env("WEFT_HOST", &address)
            .env("HOME", &home_dir)
            .env("XDG_DATA_HOME", home_dir.join("data"))
            .env("XDG_CONFIG_HOME", home_dir.join("config"))
            .env("TERM", "xterm");
        let mut refused = spawn_command(cmd, Some(PATIENCE_MS)).unwrap();
        let said = refused.exp_eof().unwrap();
        assert!(
            said.contains("error:") && said.contains("WEFT_TOKEN"),
            "{said}"
        );
        match refused.process_mut().wait().unwrap() {
            WaitStatus::Exited(_, 1) => {}
            other => panic!("the refused shell ended with {other:?}"),
        }

        // With WEFT_TOKEN it works: publish, then the bad-payload error.
        // The history file cannot be written (its folder is a file): one
        // warning, and the session goes on.
        let not_a_dir = home_dir.join("not-a-dir");
        std::fs::write(&not_a_dir, "").unwrap();
        let history = not_a_dir.join("history");
        let mut sh = shell(
            &address,
            &home_dir,
            &["--history", history.to_str().unwrap()],
            &[("WEFT_TOKEN", &token)],
        );
        let before = type_and_expect(
            &mut sh,
            "publish orders.created {\"order\": 7}\r",
            "published event ",
        );
        assert!(
            before.contains("warning: cannot save the history"),
            "{before}"
        );
        let said = prompt(&mut sh);
        assert!(said.contains("to orders.created"), "{said}");
        let before = type_and_expect(&mut sh, "publish orders.created {nope}\r", "not JSON");
        assert!(!before.contains("warning"), "warned twice: {before}");
        type_and_expect(&mut sh, "ls\r", "no services");
        prompt(&mut sh);
        type_and_expect(&mut sh, "ls nosuch\r", "no service `nosuch`");
        prompt(&mut sh);
        sh.send_line("exit").unwrap();
        expect_exit(sh);
    })
    .await
    .unwrap();
}
