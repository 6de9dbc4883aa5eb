//! Deploying and running versions of a service from the CLI, against a
//! real `weft host` process, as a user does it: `weft init`, `weft deploy`,
//! `weft ls`, `weft call`, `weft main`, `weft kill`, SIGKILL of an
//! instance, a redeploy under load, a crate that does not compile, and a
//! host restart.
//!
//! Every deploy builds in one shared target dir, so only the first build
//! compiles the dependencies.

use std::path::Path;
use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::Value;
use weft_test_support::{HostProcess, Outcome, Weft, both, poll_within, text};

/// The `weft` binary under test.
const WEFT: &str = env!("CARGO_BIN_EXE_weft");

/// How long a process may take to start, stop or register while the
/// machine is busy building.
const PATIENCE: Duration = Duration::from_secs(60);

/// How long one build may take on a slow, shared machine.
const BUILD_PATIENCE: Duration = Duration::from_secs(20 * 60);

/// The target dir every deploy in the tests builds in: under the target
/// dir of the test build, so that later runs (and CI) reuse compiled
/// dependencies.
const DEPLOY_TARGET: &str = concat!(env!("CARGO_TARGET_TMPDIR"), "/weft-deploy");

/// The CLI in `dir` against `host`, building in [`DEPLOY_TARGET`].
fn cli(host: &str, dir: &Path) -> Weft {
    Weft::new(WEFT)
        .host(host)
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", DEPLOY_TARGET)
        // The generated crate must build from the local cache alone.
        .env("CARGO_NET_OFFLINE", "true")
        .patience(PATIENCE)
}

/// `weft args` in `dir` against `host`.
async fn weft(host: &HostProcess, dir: &Path, args: &[&str]) -> Output {
    cli(host.socket(), dir).run(args).await
}

/// `weft deploy args`, which builds, so it may take long.
async fn deploy(host: &HostProcess, dir: &Path, args: &[&str]) -> Output {
    let mut all = vec!["deploy"];
    all.extend_from_slice(args);
    cli(host.socket(), dir)
        .patience(BUILD_PATIENCE)
        .run(&all)
        .await
}

/// A `weft host` on `listen` with the data dir `data`.
async fn start_host(listen: &str, data: &Path) -> HostProcess {
    HostProcess::builder(WEFT)
        .listen(listen)
        .data_dir(data)
        .start()
        .await
}

/// How many times the instances of die_roller 1.1.0 logged that they serve.
async fn serving(host: &HostProcess, dir: &Path) -> usize {
    let out = weft(host, dir, &["logs", "die_roller", "1.1.0", "-n", "1000"]).await;
    assert!(out.status.success(), "{}", both(&out));
    text(&out.stdout).matches("serving").count()
}

/// [`poll_within`] with [`PATIENCE`].
async fn poll<T, O: Outcome<T>, Fut: Future<Output = O>>(
    what: &str,
    check: impl FnMut() -> Fut,
) -> T {
    poll_within(PATIENCE, what, check).await
}

/// The versions in `weft ls --json`.
async fn listing(host: &HostProcess, dir: &Path) -> Vec<Value> {
    let out = weft(host, dir, &["ls", "--json"]).await;
    assert!(out.status.success(), "{}", both(&out));
    serde_json::from_slice::<Value>(&out.stdout)
        .expect("ls --json prints JSON")
        .as_array()
        .cloned()
        .expect("a list")
}

fn version_of<'a>(list: &'a [Value], version: &str) -> Option<&'a Value> {
    list.iter()
        .find(|v| v["service"] == "die_roller" && v["version"] == version)
}

/// `weft call die_roller version [--version V]`, parsed.
async fn called_version(host: &HostProcess, dir: &Path, pick: Option<&str>) -> String {
    let mut args = vec!["call", "die_roller", "version"];
    if let Some(v) = pick {
        args.extend(["--version", v]);
    }
    let out = weft(host, dir, &args).await;
    assert!(out.status.success(), "{}", both(&out));
    serde_json::from_slice::<String>(&out.stdout).expect("a version string")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_and_run_versions_from_the_cli() {
    let work = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let dir = work.path();
    let mut host = start_host("127.0.0.1:0", data.path()).await;

    // The transcript: init asks for the name, deploy builds and runs it.
    let out = cli(host.socket(), dir)
        .stdin("die_roller_service\n")
        .run(&["init"])
        .await;
    assert!(out.status.success(), "{}", both(&out));
    assert!(
        text(&out.stdout).starts_with("project_name [my_project]: "),
        "{}",
        both(&out)
    );
    for file in [
        "Cargo.toml",
        "src/lib.rs",
        "src/main.rs",
        "tests/service.rs",
        "README.md",
    ] {
        assert!(
            dir.join("die_roller_service").join(file).is_file(),
            "{file}"
        );
    }
    let readme = std::fs::read_to_string(dir.join("die_roller_service/README.md")).unwrap();
    assert!(readme.contains("weft deploy die_roller 1.0.0"), "{readme}");

    let out = deploy(&host, dir, &["die_roller", "1.0.0", "./die_roller_service"]).await;
    assert!(out.status.success(), "{}", both(&out));
    let stdout = text(&out.stdout);
    assert!(
        stdout.starts_with(&format!("Active host: http://{}\n", host.socket())),
        "{stdout}"
    );
    assert!(
        stdout.contains("Deploying service...\nService deployed successfully\n"),
        "{stdout}"
    );
    let table: Vec<&str> = stdout
        .lines()
        .skip_while(|l| !l.starts_with("MAIN"))
        .collect();
    assert_eq!(
        table[0].split_whitespace().collect::<Vec<_>>(),
        ["MAIN", "NAME", "VERSION", "HOST", "STATUS", "RUNNING"],
        "{stdout}"
    );
    assert!(
        table[1].starts_with("*     die_roller  1.0.0    "),
        "{stdout}"
    );
    assert!(table[1].contains(" running  Running (since 20"), "{stdout}");
    for _ in 0..3 {
        let out = weft(&host, dir, &["call", "die_roller", "roll_die"]).await;
        assert!(out.status.success(), "{}", both(&out));
        let roll: u8 = serde_json::from_slice(&out.stdout).expect("a number");
        assert!((1..=6).contains(&roll), "rolled {roll}");
    }

    // A second version runs beside the first; main stays until switched.
    let out = deploy(
        &host,
        dir,
        &[
            "die_roller",
            "1.1.0",
            "./die_roller_service",
            "--env",
            "GREETING=hello world",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", both(&out));
    assert_eq!(called_version(&host, dir, None).await, "1.0.0");
    let out = weft(&host, dir, &["main", "die_roller", "1.1.0"]).await;
    assert!(out.status.success(), "{}", both(&out));
    assert_eq!(called_version(&host, dir, None).await, "1.1.0");
    assert_eq!(called_version(&host, dir, Some("1.0.0")).await, "1.0.0");
    let list = listing(&host, dir).await;
    assert_eq!(version_of(&list, "1.1.0").unwrap()["main"], true);
    assert_eq!(version_of(&list, "1.0.0").unwrap()["main"], false);

    // Main cannot be killed while another version runs.
    let out = weft(&host, dir, &["kill", "die_roller", "1.1.0"]).await;
    assert!(!out.status.success(), "{}", both(&out));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("weft main die_roller") && stderr.contains("--all"),
        "{stderr}"
    );

    // SIGKILL an instance: the supervisor starts it again.
    let instance = &version_of(&list, "1.1.0").unwrap()["instances"][0];
    let id = instance["id"].as_str().unwrap().to_owned();
    let pid = instance["pid"].as_u64().unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    poll(
        "the killed instance back, registered, with a new pid",
        || async {
            let list = listing(&host, dir).await;
            let v = version_of(&list, "1.1.0")?;
            let i = v["instances"]
                .as_array()?
                .iter()
                .find(|i| i["id"] == id.as_str())?;
            (v["status"] == "running"
                && i["registered"] == true
                && i["pid"].as_u64() != Some(pid)
                && i["restarts"].as_u64() >= Some(1))
            .then_some(())
        },
    )
    .await;
    assert_eq!(called_version(&host, dir, None).await, "1.1.0");

    // Deploying 1.1.0 again, with two instances, replaces them one at a
    // time while calls keep succeeding.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let caller = {
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        let address = host.address().to_owned();
        tokio::spawn(async move {
            let client = weft::Client::connect(&address).await.unwrap();
            let mut errors = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                match client.call::<_, String>("die_roller", "version", ()).await {
                    Ok(v) if v == "1.1.0" => ok.fetch_add(1, Ordering::Relaxed),
                    other => {
                        errors.push(format!("{other:?}"));
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
            errors
        })
    };
    poll("calls flowing before the redeploy", || async {
        (ok.load(Ordering::Relaxed) > 10).then_some(())
    })
    .await;
    let out = deploy(
        &host,
        dir,
        &[
            "die_roller",
            "1.1.0",
            "./die_roller_service",
            "--instances",
            "2",
            "--env",
            "RUST_LOG=info",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", both(&out));
    let before = ok.load(Ordering::Relaxed);
    poll("calls flowing after the redeploy", || async {
        (ok.load(Ordering::Relaxed) > before + 10).then_some(())
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    let errors = caller.await.unwrap();
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "calls failed during the redeploy: {errors:?}"
    );
    let list = listing(&host, dir).await;
    let v = version_of(&list, "1.1.0").unwrap();
    let ids: Vec<&str> = v["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2, "{v}");
    assert!(
        !ids.contains(&id.as_str()),
        "the old instance still runs: {v}"
    );

    // A crate that does not compile: a clear error, nothing changes.
    let broken = dir.join("broken_service");
    std::fs::create_dir_all(broken.join("src")).unwrap();
    for file in ["Cargo.toml", "Cargo.lock", "src/main.rs"] {
        std::fs::copy(dir.join("die_roller_service").join(file), broken.join(file)).unwrap();
    }
    let lib = std::fs::read_to_string(dir.join("die_roller_service/src/lib.rs")).unwrap();
    std::fs::write(
        broken.join("src/lib.rs"),
        lib.replace("rand::random_range(1..=6)", "\"six\""),
    )
    .unwrap();
    let out = deploy(&host, dir, &["die_roller", "1.2.0", "./broken_service"]).await;
    assert!(!out.status.success(), "{}", both(&out));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("building ./broken_service failed"),
        "{stderr}"
    );
    assert!(
        stderr.contains("error[E0308]") && stderr.contains("src/lib.rs"),
        "{stderr}"
    );
    assert!(stderr.contains("untouched"), "{stderr}");
    assert!(version_of(&listing(&host, dir).await, "1.2.0").is_none());
    assert_eq!(called_version(&host, dir, None).await, "1.1.0");
    assert_eq!(called_version(&host, dir, Some("1.0.0")).await, "1.0.0");

    // A host restart: every deployment and the main version come back.
    let before = serving(&host, dir).await;
    assert!(before >= 2, "each instance logs that it is serving");
    host.stop().await;
    let host = start_host(host.socket(), data.path()).await;
    poll("both versions running after the restart", || async {
        let list = listing(&host, dir).await;
        let old = version_of(&list, "1.0.0")?;
        let new = version_of(&list, "1.1.0")?;
        (old["status"] == "running"
            && new["status"] == "running"
            && new["registered"] == 2
            && new["main"] == true)
            .then_some(())
    })
    .await;
    assert_eq!(called_version(&host, dir, None).await, "1.1.0");
    assert_eq!(called_version(&host, dir, Some("1.0.0")).await, "1.0.0");
    // The logs from before the restart are still there, then the new ones.
    poll("the restarted instances' logs", || async {
        (serving(&host, dir).await >= before + 2).then_some(())
    })
    .await;

    // Stopping every version.
    let out = weft(&host, dir, &["kill", "die_roller", "--all"]).await;
    assert!(out.status.success(), "{}", both(&out));
    assert!(listing(&host, dir).await.is_empty());
}

#[tokio::test]
async fn the_generated_crate_builds_offline_and_its_tests_pass() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let out = cli("127.0.0.1:1", dir)
        .run(&["init", "--name", "dice-service"])
        .await;
    assert!(out.status.success(), "{}", both(&out));
    assert!(
        text(&out.stdout).contains("weft deploy dice 1.0.0"),
        "{}",
        both(&out)
    );
    let lib = std::fs::read_to_string(dir.join("dice-service/src/lib.rs")).unwrap();
    assert!(lib.contains(r#"#[weft::service(name = "dice")]"#), "{lib}");
    // A second init must not overwrite the first.
    let again = cli("127.0.0.1:1", dir)
        .run(&["init", "--name", "dice-service"])
        .await;
    assert!(!again.status.success() && text(&again.stderr).contains("already exists"));

    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let out = std::process::Command::new(cargo)
        .args(["test", "--offline"])
        .current_dir(dir.join("dice-service"))
        .env("CARGO_TARGET_DIR", DEPLOY_TARGET)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("cargo runs");
    assert!(out.status.success(), "{}", both(&out));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("test rolls_a_six_sided_die ... ok"),
        "{stdout}"
    );
}
