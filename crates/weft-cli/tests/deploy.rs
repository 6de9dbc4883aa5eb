//! Deploying and running versions of a service from the CLI, against a
//! real `weft host` process, as a user does it: `weft init`, `weft deploy`,
//! `weft ls`, `weft call`, `weft main`, `weft kill`, SIGKILL of an
//! instance, a redeploy under load, a crate that does not compile, and a
//! host restart.
//!
//! Every deploy builds where a user's deploys build by default, in the
//! one target dir under the cache dir that every crate shares (here the
//! cache dir is under the test build's own), so only the first build
//! compiles the dependencies.

use std::path::Path;
use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use weft_test_support::{HostProcess, Outcome, Weft, both, poll_within, text};

/// The `weft` binary under test.
const WEFT: &str = env!("CARGO_BIN_EXE_weft");

/// How long a process may take to start, stop or register while the
/// machine is busy building.
const PATIENCE: Duration = Duration::from_secs(60);

/// How long one build may take on a slow, shared machine.
const BUILD_PATIENCE: Duration = Duration::from_secs(20 * 60);

/// The user's cache dir (`XDG_CACHE_HOME`) in the tests: under the target
/// dir of the test build, so that later runs (and CI) reuse compiled
/// dependencies.
const CACHE_HOME: &str = concat!(env!("CARGO_TARGET_TMPDIR"), "/weft-cache");

/// The target dir that deploys and `weft init` crates share by default.
const SHARED_TARGET: &str = concat!(env!("CARGO_TARGET_TMPDIR"), "/weft-cache/weft/target");

/// The CLI in `dir` against `host`, with the tests' cache dir and no
/// target dir of the test's environment, as a user runs it.
fn cli(host: &str, dir: &Path) -> Weft {
    Weft::new(WEFT)
        .host(host)
        .current_dir(dir)
        .env("XDG_CACHE_HOME", CACHE_HOME)
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET_DIR")
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
        lib.replace("die(6)\n", "\"six\"\n"),
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

/// `cargo ARGS` in `dir`, offline, with the tests' cache dir: the crate's
/// `.cargo/config.toml` names the target dir.
fn cargo_in(dir: &Path, args: &[&str]) -> Output {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    std::process::Command::new(cargo)
        .args(args)
        .arg("--offline")
        .current_dir(dir)
        .env("XDG_CACHE_HOME", CACHE_HOME)
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET_DIR")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("cargo runs")
}

/// The generated crate's tests pass, and go on passing without warnings
/// once the user removes an example entrypoint and its test.
#[tokio::test]
async fn the_generated_crate_builds_offline_and_its_tests_pass() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let out = cli("127.0.0.1:1", dir)
        .run(&["init", "--name", "dice-service"])
        .await;
    assert!(out.status.success(), "{}", both(&out));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("weft deploy dice 1.0.0"), "{}", both(&out));
    assert!(
        stdout.contains(SHARED_TARGET) && stdout.contains("shared by every crate"),
        "{stdout}"
    );
    let crate_dir = dir.join("dice-service");
    let lib = std::fs::read_to_string(crate_dir.join("src/lib.rs")).unwrap();
    assert!(lib.contains(r#"#[weft::service(name = "dice")]"#), "{lib}");
    let config = std::fs::read_to_string(crate_dir.join(".cargo/config.toml")).unwrap();
    assert!(
        config.contains(&format!("target-dir = \"{SHARED_TARGET}\"")),
        "{config}"
    );
    let manifest = std::fs::read_to_string(crate_dir.join("Cargo.toml")).unwrap();
    let dependencies: Vec<&str> = manifest
        .split("[dependencies]")
        .nth(1)
        .and_then(|s| s.split("[dev-dependencies]").next())
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once(" = ").map(|(name, _)| name.trim()))
        .collect();
    assert_eq!(dependencies, ["weft", "tokio"], "{manifest}");
    // A second init must not overwrite the first.
    let again = cli("127.0.0.1:1", dir)
        .run(&["init", "--name", "dice-service"])
        .await;
    assert!(!again.status.success() && text(&again.stderr).contains("already exists"));

    let out = cargo_in(&crate_dir, &["test"]);
    assert!(out.status.success(), "{}", both(&out));
    let stdout = text(&out.stdout);
    for test in [
        "every_entrypoint_is_documented_and_takes_its_example",
        "roll_die_rolls_a_six_sided_die",
        "roll_sums_its_dice_and_refuses_zero_dice",
        "version_says_a_version",
    ] {
        assert!(stdout.contains(&format!("test {test} ... ok")), "{stdout}");
    }
    assert!(
        !text(&out.stderr).contains("warning"),
        "{}",
        text(&out.stderr)
    );

    // The user removes the example `roll_die` and its test: no warning, and
    // the test of every entrypoint still holds.
    let example = "    /// Roll one six-sided die.\n    #[entrypoint(get)]\n    async fn roll_die(&self) -> u32 {\n        die(6)\n    }\n\n";
    assert!(lib.contains(example), "{lib}");
    std::fs::write(crate_dir.join("src/lib.rs"), lib.replace(example, "")).unwrap();
    let tests = std::fs::read_to_string(crate_dir.join("tests/service.rs")).unwrap();
    let start = tests
        .find("#[tokio::test]\nasync fn roll_die_rolls_a_six_sided_die")
        .expect("the roll_die test");
    let end = start + 1 + tests[start + 1..].find("#[tokio::test]").unwrap();
    let tests = format!("{}{}", &tests[..start], &tests[end..]);
    std::fs::write(crate_dir.join("tests/service.rs"), tests).unwrap();
    let out = cargo_in(&crate_dir, &["test"]);
    assert!(out.status.success(), "{}", both(&out));
    assert!(
        !text(&out.stderr).contains("warning"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        text(&out.stdout)
            .contains("test every_entrypoint_is_documented_and_takes_its_example ... ok"),
        "{}",
        both(&out)
    );
}

/// The packages a deploy's plain progress lines (`  [3/95] serde`) say it
/// compiled.
fn compiled(stderr: &str) -> Vec<String> {
    stderr
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix('['))
        .filter_map(|l| l.split_once("] "))
        .map(|(_, name)| name.trim().to_owned())
        .collect()
}

/// Two crates from `weft init`, deployed one after the other with no build
/// settings of their own: they share the build cache, so the second deploy
/// compiles only its own crate (its time is printed, not judged); a deploy
/// of what runs, unchanged, keeps the instance running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_services_share_one_build_cache() {
    let work = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let dir = work.path();
    let host = start_host("127.0.0.1:0", data.path()).await;
    for name in ["first-service", "second-service"] {
        let out = cli(host.socket(), dir).run(&["init", "--name", name]).await;
        assert!(out.status.success(), "{}", both(&out));
    }

    let out = deploy(&host, dir, &["first", "1.0.0", "./first-service"]).await;
    assert!(out.status.success(), "{}", both(&out));
    let stderr = text(&out.stderr);
    // Not on a terminal: plain lines, one per compiled unit, with a count.
    assert!(stderr.contains("Built in"), "{stderr}");

    let started = Instant::now();
    let out = deploy(&host, dir, &["second", "1.0.0", "./second-service"]).await;
    let took = started.elapsed();
    assert!(out.status.success(), "{}", both(&out));
    let stderr = text(&out.stderr);
    println!("the second new service deployed in {took:.1?}:\n{stderr}");
    let units = compiled(&stderr);
    assert!(
        units.contains(&"second-service".to_owned()),
        "the new crate itself is compiled: {stderr}"
    );
    for shared in ["weft", "tokio", "serde"] {
        assert!(
            !units.contains(&shared.to_owned()),
            "{shared} compiled again for the second crate: {stderr}"
        );
    }
    for line in stderr.lines().filter(|l| l.trim_start().starts_with('[')) {
        let count = line.trim_start()[1..].split(']').next().unwrap();
        let (done, total) = count.split_once('/').expect("a count N/M");
        let (done, total): (u64, u64) = (done.parse().unwrap(), total.parse().unwrap());
        assert!(done >= 1 && done <= total, "{line}");
    }

    // Deployed again unchanged: the same instance runs on.
    let pid = |list: &[Value]| {
        list.iter()
            .find(|v| v["service"] == "second")
            .and_then(|v| v["instances"][0]["pid"].as_u64())
    };
    let before = pid(&listing(&host, dir).await).expect("second runs");
    let started = Instant::now();
    let out = deploy(&host, dir, &["second", "1.0.0", "./second-service"]).await;
    assert!(out.status.success(), "{}", both(&out));
    println!("deployed again unchanged in {:.1?}", started.elapsed());
    assert_eq!(pid(&listing(&host, dir).await), Some(before));
    let out = weft(&host, dir, &["call", "second", "roll", "--arg", "count=2"]).await;
    assert!(out.status.success(), "{}", both(&out));
}

/// `weft deploy dice 1.0.0 ./dice-service args` fails saying `why`, and
/// that nothing was built, without building.
async fn refused_unbuilt(cli: Weft, args: &[&str], why: &str) {
    let mut all = vec!["deploy", "dice", "1.0.0", "./dice-service"];
    all.extend_from_slice(args);
    let out = cli.run(&all).await;
    assert!(!out.status.success(), "{}", both(&out));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(why) && stderr.contains("nothing was built"),
        "{stderr}"
    );
    assert!(!stderr.contains("Building"), "{stderr}");
}

/// `weft deploy` checks the host and the token before it builds: nothing
/// is compiled when nobody answers or the token is refused.
#[tokio::test]
async fn a_deploy_that_the_host_would_refuse_builds_nothing() {
    let work = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let dir = work.path();
    let out = cli("127.0.0.1:1", dir)
        .run(&["init", "--name", "dice-service"])
        .await;
    assert!(out.status.success(), "{}", both(&out));

    refused_unbuilt(
        cli("127.0.0.1:1", dir),
        &[],
        "cannot reach the weft host at tcp://127.0.0.1:1",
    )
    .await;

    let host = HostProcess::builder(WEFT)
        .data_dir(data.path())
        .args(["--auth", "required"])
        .start()
        .await;
    let bad_token = cli(host.socket(), dir).env("WEFT_TOKEN", "wft_not-a-token");
    refused_unbuilt(bad_token, &[], "the token sent was the one of --token").await;

    // A bad --env is refused the same way.
    let token = host.admin_token().expect("the host's admin token");
    let admin = cli(host.socket(), dir).env("WEFT_TOKEN", &token);
    refused_unbuilt(
        admin,
        &["--env", "WEFT_HOST=x"],
        "WEFT_HOST is set by the host",
    )
    .await;
}
