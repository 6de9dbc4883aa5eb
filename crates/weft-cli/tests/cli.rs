//! The `weft` binary as a user runs it: a real `weft host` child process on
//! 127.0.0.1:0 and the commands against it.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};

use serde_json::Value;

const WEFT: &str = env!("CARGO_BIN_EXE_weft");

/// A `weft host` child process, killed on drop.
struct HostProcess {
    child: Child,
    address: String,
    _dir: tempfile::TempDir,
}

impl HostProcess {
    fn start() -> HostProcess {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(WEFT)
            .args(["host", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path())
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("weft host starts");
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let expected_tail = format!(" (data dir {})\n", dir.path().display());
        assert!(line.ends_with(&expected_tail), "{line:?}");
        let address = line
            .strip_prefix("weft host listening on ")
            .and_then(|rest| rest.strip_suffix(&expected_tail))
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        assert!(address.starts_with("tcp://127.0.0.1:"), "{address}");
        HostProcess {
            child,
            address,
            _dir: dir,
        }
    }

    fn weft(&self, args: &[&str]) -> Output {
        weft_at(&self.address, args)
    }
}

impl Drop for HostProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn weft_at(host: &str, args: &[&str]) -> Output {
    Command::new(WEFT)
        .args(args)
        .env("WEFT_HOST", host)
        .stdin(Stdio::null())
        .output()
        .expect("weft runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn commands_against_a_running_host() {
    let host = HostProcess::start();

    let out = host.weft(&["ls", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let services: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(services, Value::Array(vec![]));

    let out = host.weft(&["ls"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "MAIN  NAME  VERSION  STATUS  RUNNING\n");

    let out = host.weft(&["notifications", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "");

    let out = host.weft(&["notifications"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "TIME  SEVERITY  SERVICE  MESSAGE\n");

    let out = host.weft(&["call", "nosuch", "x"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.starts_with("error: not_found"), "{stderr}");
    assert!(stderr.contains("`nosuch`"), "{stderr}");
    assert!(out.stdout.is_empty());

    let out = host.weft(&["call", "nosuch", "x", "[1, 2]"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("JSON object"),
        "{}",
        text(&out.stderr)
    );

    // A program sends a notification; the CLI shows it.
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let client = weft::Client::connect(&host.address).await.unwrap();
        client
            .notify(weft::Severity::Warning, "disk almost full")
            .await
            .unwrap();
    });
    let out = host.weft(&["notifications", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines: Vec<Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["message"], "disk almost full");
    assert_eq!(lines[0]["severity"], "warning");
    let out = host.weft(&["notifications", "-n", "5"]);
    let table = text(&out.stdout);
    let row = table.lines().nth(1).unwrap_or_default();
    assert!(
        row.contains("warning") && row.ends_with("disk almost full"),
        "{table}"
    );

    // --host wins over WEFT_HOST.
    let out = weft_at("127.0.0.1:1", &["ls", "--json", "--host", &host.address]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn an_unreachable_host_says_how_to_fix_it() {
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = weft_at(
        &format!("127.0.0.1:{port}"),
        &["call", "die_roller", "roll_die"],
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(stderr.contains(&format!("127.0.0.1:{port}")), "{stderr}");
    assert!(stderr.contains("weft host"), "{stderr}");
    assert!(stderr.contains("WEFT_HOST"), "{stderr}");
}

#[test]
fn a_bad_listen_address_is_explained() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(WEFT)
        .args(["host", "--listen", "nowhere", "--data-dir"])
        .arg(dir.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("--listen") && stderr.contains("accepted forms"),
        "{stderr}"
    );
}
