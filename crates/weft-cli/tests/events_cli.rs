//! `weft events` against a real `weft host` process, and a SIGKILL of the
//! host while clients publish: every acknowledged publish survives.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use std::sync::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WEFT: &str = env!("CARGO_BIN_EXE_weft");

/// A `weft host` child process, killed on drop.
struct HostProcess {
    child: Child,
    address: String,
}

impl HostProcess {
    fn start(dir: &Path) -> HostProcess {
        let mut child = Command::new(WEFT)
            .args(["host", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir)
            .env("RUST_LOG", "warn")
            .env_remove("WEFT_HOST")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("weft host starts");
        let stdout = child.stdout.take().unwrap();
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut reader, &mut std::io::sink());
        });
        let address = line
            .strip_prefix("weft host listening on ")
            .and_then(|rest| rest.split_once(' '))
            .map(|(a, _)| a.to_owned())
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
        HostProcess { child, address }
    }

    fn weft(&self, args: &[&str]) -> Output {
        let out = Command::new(WEFT)
            .args(args)
            .env("WEFT_HOST", &self.address)
            .env_remove("WEFT_TOKEN")
            .stdin(Stdio::null())
            .output()
            .expect("weft runs");
        assert!(
            out.status.success(),
            "weft {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn hostport(&self) -> String {
        self.address.trim_start_matches("tcp://").to_owned()
    }

    fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for HostProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn tail_ids(host: &HostProcess, topic: &str) -> Vec<u64> {
    let out = host.weft(&["events", "tail", topic, "-n", "1000000", "--json"]);
    text(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["id"]
                .as_u64()
                .unwrap()
        })
        .collect()
}

#[test]
fn publish_ls_tail() {
    let dir = tempfile::tempdir().unwrap();
    let host = HostProcess::start(dir.path());
    let out = host.weft(&["events", "publish", "orders.created", r#"{"order": 1}"#]);
    assert_eq!(text(&out.stdout).trim(), "1");
    let out = host.weft(&[
        "events",
        "publish",
        "orders.created",
        r#"{"order": 2}"#,
        "--idempotency-key",
        "o2",
    ]);
    assert_eq!(text(&out.stdout).trim(), "2");
    let out = host.weft(&[
        "events",
        "publish",
        "orders.created",
        r#"{"order": 2}"#,
        "--idempotency-key",
        "o2",
    ]);
    assert!(text(&out.stdout).contains("duplicate"));

    let out = host.weft(&["events", "ls"]);
    let table = text(&out.stdout);
    assert!(table.starts_with("TOPIC"), "{table}");
    assert!(table.contains("orders.created"), "{table}");
    let out = host.weft(&["events", "ls", "--json"]);
    let topics: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(topics[0]["events"], 2);

    let out = host.weft(&["events", "tail", "orders.created"]);
    let lines = text(&out.stdout);
    assert!(lines.contains(r#"{"order":1}"#), "{lines}");
    assert_eq!(tail_ids(&host, "orders.created"), vec![1, 2]);

    let out = host.weft(&["events", "dead"]);
    assert!(text(&out.stdout).contains("no dead letters"));
    let bad = Command::new(WEFT)
        .args(["events", "publish", "t", "{not json"])
        .env("WEFT_HOST", &host.address)
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(
        text(&bad.stderr).contains("not JSON"),
        "{}",
        text(&bad.stderr)
    );
}

/// One publish over HTTP; `Some(id)` once the host acknowledged it.
async fn http_publish(hostport: &str, n: u64) -> Option<u64> {
    let body = format!(r#"{{"topic":"crash","payload":{{"n":{n}}}}}"#);
    let mut s = tokio::net::TcpStream::connect(hostport).await.ok()?;
    let req = format!(
        "POST /api/v1/events/publish HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).await.ok()?;
    if !out.starts_with("HTTP/1.1 200") {
        return None;
    }
    let (_, body) = out.split_once("\r\n\r\n")?;
    serde_json::from_str::<Value>(body).ok()?["id"].as_u64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_stream_loses_no_acknowledged_publish() {
    let dir = tempfile::tempdir().unwrap();
    let mut host = HostProcess::start(dir.path());
    let hostport = host.hostport();
    let acked = Arc::new(Mutex::new(HashSet::new()));
    let mut clients = Vec::new();
    for c in 0..4u64 {
        let acked = acked.clone();
        let hostport = hostport.clone();
        clients.push(tokio::spawn(async move {
            let mut n = c * 1_000_000;
            loop {
                n += 1;
                match http_publish(&hostport, n).await {
                    Some(id) => {
                        acked.lock().unwrap().insert(id);
                    }
                    None => {
                        // The host is gone; keep trying briefly, then stop.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        if tokio::net::TcpStream::connect(&hostport).await.is_err() {
                            return;
                        }
                    }
                }
            }
        }));
    }
    while acked.lock().unwrap().len() < 300 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    host.kill9();
    for c in clients {
        let _ = tokio::time::timeout(Duration::from_secs(10), c).await;
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 300);

    let host = HostProcess::start(dir.path());
    let stored: HashSet<u64> = tail_ids(&host, "crash").into_iter().collect();
    let lost: Vec<_> = acked.difference(&stored).collect();
    assert!(
        lost.is_empty(),
        "acknowledged but lost after SIGKILL: {lost:?}"
    );
    let out = host.weft(&["events", "publish", "crash", "{}"]);
    let id: u64 = text(&out.stdout).trim().parse().unwrap();
    assert!(id > *acked.iter().max().unwrap());
}
