//! `weft deploy NAME VERSION PATH`: builds the crate at PATH in release
//! mode, uploads its executable to the host, and returns once the host has
//! the new instances registered. In a cluster, `--on HOST[,HOST...]|all`
//! runs it on those hosts: the host asked passes the executable on through
//! NATS, and the command says, per host, whether it started.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead as _, BufReader, IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cargo_metadata::{DependencyKind, Message, MetadataCommand, Node, Package, PackageId};
use clap::Args;
use hyper::Method;
use indicatif::{ProgressBar, ProgressStyle};
use weft_host_api::deployments::DeployAnswer;

use crate::manage::{HostApi, TIMEOUT, Target, print_outcomes, render_table};
use crate::{Failure, Result};

/// How long the host may take to store the executable and get the
/// instances registered (it gives up on an instance after a minute).
const DEPLOY_TIMEOUT: Duration = Duration::from_secs(600);

/// Options of `weft deploy`.
#[derive(Debug, Args)]
pub(crate) struct DeployCmd {
    #[command(flatten)]
    target: Target,
    /// The service's name, as its #[weft::service(name = ...)] says.
    name: String,
    /// The version to deploy it as (semver, like 1.0.0).
    version: String,
    /// The service's crate (a directory with a Cargo.toml).
    path: PathBuf,
    /// How many instances to run.
    #[arg(long, default_value_t = 1, value_name = "N")]
    instances: u32,
    /// An environment variable for the instances, `NAME=VALUE`; repeat for several.
    #[arg(long = "env", value_name = "K=V")]
    env: Vec<String>,
    /// In a cluster: the hosts to run it on, by name (`weft hosts` lists
    /// them), or `all` [default: the host this command talks to].
    #[arg(long, value_name = "HOST[,HOST...]|all")]
    on: Option<String>,
    #[command(flatten)]
    build: Build,
}

/// What `cargo metadata` tells about the crate before it is built.
struct Plan {
    /// How many units the build compiles: packages, build scripts and the
    /// crate's own targets, for this machine's platform.
    units: u64,
    /// Package names by id: artifacts are shown by their package's name.
    names: HashMap<PackageId, String>,
    /// Whether cargo builds in the crate's own `target/`, with no
    /// `CARGO_TARGET_DIR` or `build.target-dir` saying otherwise.
    default_target: bool,
}

/// The platform rustc builds for by default (`rustc -vV`'s `host:`).
fn host_triple() -> Option<String> {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    let out = Command::new(rustc).arg("-vV").output().ok()?;
    String::from_utf8(out.stdout)
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .map(str::to_owned)
}

/// The build's plan from `cargo metadata`; `None` when cargo cannot tell
/// (the build then says why).
fn plan(manifest: &Path) -> Option<Plan> {
    let mut command = MetadataCommand::new();
    command.cargo_path(cargo()).manifest_path(manifest);
    // Dependencies of other platforms are not built here.
    if let Some(triple) = host_triple() {
        command.other_options(vec!["--filter-platform".to_owned(), triple]);
    }
    let meta = command.exec().ok()?;
    let default_target =
        meta.target_directory.as_std_path() == meta.workspace_root.as_std_path().join("target");
    let resolve = meta.resolve.as_ref()?;
    let root = resolve.root.as_ref()?;
    let nodes: HashMap<&PackageId, &Node> = resolve.nodes.iter().map(|n| (&n.id, n)).collect();
    let packages: HashMap<&PackageId, &Package> =
        meta.packages.iter().map(|p| (&p.id, p)).collect();
    let proc_macro = |id: &PackageId| {
        packages
            .get(id)
            .is_some_and(|p| p.targets.iter().any(|t| t.is_proc_macro()))
    };
    // A release build compiles what build scripts and proc-macros use
    // apart from what the executable links (they run on the host, with
    // the build-override profile): each package counts once per side.
    let mut seen: HashSet<(&PackageId, bool)> = HashSet::new();
    let mut todo = vec![(root, false)];
    while let Some((id, for_host)) = todo.pop() {
        if !seen.insert((id, for_host)) {
            continue;
        }
        // What the build compiles: normal and build dependencies, not
        // dev-dependencies.
        for dep in nodes.get(id).map(|n| n.deps.as_slice()).unwrap_or_default() {
            let kinds = || dep.dep_kinds.iter().map(|k| k.kind);
            if kinds().any(|k| k == DependencyKind::Normal) {
                todo.push((&dep.pkg, for_host || proc_macro(&dep.pkg)));
            }
            if kinds().any(|k| k == DependencyKind::Build) {
                todo.push((&dep.pkg, true));
            }
        }
    }
    // One artifact per library (or proc-macro) on each side, one per
    // package's build script, and the crate's own executable.
    let libraries = seen
        .iter()
        .filter_map(|(id, _)| packages.get(id))
        .map(|p| {
            p.targets
                .iter()
                .filter(|t| {
                    t.is_lib() || t.is_proc_macro() || t.is_rlib() || (&p.id == root && t.is_bin())
                })
                .count() as u64
        })
        .sum::<u64>();
    let build_scripts = seen
        .iter()
        .map(|(id, _)| *id)
        .collect::<HashSet<_>>()
        .into_iter()
        .filter_map(|id| packages.get(id))
        .filter(|p| p.targets.iter().any(|t| t.is_custom_build()))
        .count() as u64;
    let units = libraries + build_scripts;
    let names = meta
        .packages
        .iter()
        .map(|p| (p.id.clone(), p.name.to_string()))
        .collect();
    Some(Plan {
        units,
        names,
        default_target,
    })
}

/// The directory deploys build in when neither the command nor cargo's
/// own settings name one: one for every crate, so that the dependencies
/// they share compile once (`weft init` points new crates at it too).
pub(crate) fn shared_target_dir() -> Option<PathBuf> {
    dirs::cache_dir().map(|d| d.join("weft").join("target"))
}

/// Where cargo is told to build: `--target-dir`, else nothing when cargo
/// has a setting of its own or `--own-target-dir` is given, else the
/// shared directory.
fn target_dir(cmd: &Build, plan: Option<&Plan>) -> Option<PathBuf> {
    if let Some(dir) = &cmd.target_dir {
        return Some(dir.clone());
    }
    let configured = match plan {
        Some(plan) => !plan.default_target,
        None => std::env::var_os("CARGO_TARGET_DIR").is_some(),
    };
    if cmd.own_target_dir || configured {
        return None;
    }
    shared_target_dir()
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned())
}

/// The package name in a line of cargo's stderr like `   Compiling serde v1.0.0`.
fn compiling(line: &str) -> Option<&str> {
    line.trim_start()
        .strip_prefix("Compiling ")
        .and_then(|rest| rest.split_whitespace().next())
}

/// Whether a line of cargo's stderr is only progress (`   Compiling x`).
fn is_progress(line: &str) -> bool {
    const VERBS: [&str; 12] = [
        "Compiling",
        "Checking",
        "Finished",
        "Downloaded",
        "Downloading",
        "Blocking",
        "Updating",
        "Locking",
        "Adding",
        "Fresh",
        "Running",
        "Building",
    ];
    let trimmed = line.trim_start();
    line.starts_with(' ')
        && VERBS.iter().any(|v| {
            trimmed
                .strip_prefix(v)
                .is_some_and(|rest| rest.starts_with(' '))
        })
}

/// How `weft deploy` builds: which target directory.
#[derive(Debug, Args)]
pub(crate) struct Build {
    /// Build in DIR [default: the directory cargo is configured with
    /// (CARGO_TARGET_DIR, build.target-dir), else one shared by every crate
    /// weft deploys, under the user's cache directory].
    #[arg(long, value_name = "DIR", conflicts_with = "own_target_dir")]
    target_dir: Option<PathBuf>,
    /// Build in the crate's own target/ directory instead of the shared one.
    #[arg(long)]
    own_target_dir: bool,
}

/// Builds the crate and returns its executable.
fn build(path: &Path, how: &Build) -> Result<PathBuf> {
    let manifest = path.join("Cargo.toml");
    if !manifest.is_file() {
        return Err(Failure(format!(
            "{} has no Cargo.toml; point `weft deploy` at the service's crate (`weft init` creates one)",
            path.display()
        )));
    }
    let manifest = std::fs::canonicalize(&manifest)
        .map_err(|e| Failure(format!("cannot read {}: {e}", manifest.display())))?;
    let started = Instant::now();
    let plan = plan(&manifest);
    let target = target_dir(how, plan.as_ref());
    let (names, total) = plan.map(|p| (p.names, p.units)).unwrap_or_default();
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{spinner} Building [{bar:30}] {pos}/{len} {wide_msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.enable_steady_tick(Duration::from_millis(120));
    // Off a terminal the bar is not drawn: plain lines say the same.
    let plain = !std::io::stderr().is_terminal();
    match &target {
        Some(dir) => eprintln!("Building {} (release) in {}", path.display(), dir.display()),
        None => eprintln!("Building {} (release)", path.display()),
    }
    let mut command = Command::new(cargo());
    command
        .args([
            "build",
            "--release",
            "--message-format",
            "json-render-diagnostics",
            "--manifest-path",
        ])
        .arg(&manifest);
    if let Some(dir) = &target {
        command.arg("--target-dir").arg(dir);
    }
    let mut child = command
        .current_dir(path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            Failure(format!(
                "cannot run `{}`: {e}; install Rust (https://rustup.rs) or set CARGO to cargo's path",
                cargo()
            ))
        })?;
    let stderr = child.stderr.take().expect("piped stderr");
    let shown = bar.clone();
    let diagnostics = std::thread::spawn(move || {
        let mut text = String::new();
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if let Some(name) = compiling(&line) {
                shown.set_message(name.to_owned());
            }
            text.push_str(&line);
            text.push('\n');
        }
        text
    });
    let stdout = child.stdout.take().expect("piped stdout");
    let mut executables = Vec::new();
    let mut succeeded = None;
    let mut compiled = 0u64;
    for message in Message::parse_stream(BufReader::new(stdout)) {
        let Ok(message) = message else { break };
        match message {
            Message::CompilerArtifact(artifact) => {
                bar.inc(1);
                if bar.position() > bar.length().unwrap_or(0) {
                    bar.set_length(bar.position());
                }
                if !artifact.fresh {
                    compiled += 1;
                    if plain {
                        let name = names
                            .get(&artifact.package_id)
                            .cloned()
                            .unwrap_or_else(|| artifact.target.name.clone());
                        eprintln!(
                            "  [{}/{}] {name}",
                            bar.position(),
                            bar.length().unwrap_or(0)
                        );
                    }
                }
                if artifact.target.is_bin()
                    && artifact.manifest_path.as_std_path() == manifest.as_path()
                    && let Some(exe) = artifact.executable
                {
                    executables.push((artifact.target.name.clone(), exe.into_std_path_buf()));
                }
            }
            Message::BuildFinished(finished) => succeeded = Some(finished.success),
            _ => {}
        }
    }
    let status = child
        .wait()
        .map_err(|e| Failure(format!("cannot wait for cargo: {e}")))?;
    let diagnostics = diagnostics.join().unwrap_or_default();
    bar.finish_and_clear();
    if !status.success() || succeeded == Some(false) {
        let output: Vec<&str> = diagnostics.lines().filter(|l| !is_progress(l)).collect();
        return Err(Failure(format!(
            "building {} failed:\n{}\nfix the errors above and deploy again; nothing was sent to the host, so what runs there is untouched",
            path.display(),
            output.join("\n").trim_end()
        )));
    }
    eprintln!(
        "Built in {:.1}s ({compiled} of {} units compiled, the rest up to date)",
        started.elapsed().as_secs_f64(),
        bar.position()
    );
    match executables.len() {
        1 => Ok(executables.remove(0).1),
        0 => Err(Failure(format!(
            "{} builds no executable; a service needs a src/main.rs that calls weft::serve",
            path.display()
        ))),
        _ => Err(Failure(format!(
            "{} builds several executables ({}); a service's crate must build exactly one",
            path.display(),
            executables
                .iter()
                .map(|(n, _)| n.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

fn query_escape(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub(crate) async fn deploy(cmd: DeployCmd) -> Result<()> {
    weft_core::name::validate(&cmd.name).map_err(|e| Failure(format!("NAME: {}", e.message())))?;
    semver_check(&cmd.version)?;
    if cmd.instances == 0 {
        return Err(Failure(
            "--instances 0 would run nothing; deploy with at least 1 (`weft scale` can go to 0 later)".into(),
        ));
    }
    for pair in &cmd.env {
        if !pair.contains('=') || pair.starts_with('=') {
            return Err(Failure(format!(
                "--env {pair:?} is not NAME=VALUE; write it like --env RUST_LOG=info"
            )));
        }
    }
    let mut query = format!("instances={}", cmd.instances);
    for pair in &cmd.env {
        query.push_str("&env=");
        query.push_str(&query_escape(pair));
    }
    if let Some(on) = &cmd.on {
        if on.trim().is_empty() {
            return Err(Failure(
                "--on names no host; write --on HOST[,HOST...] or --on all".into(),
            ));
        }
        query.push_str("&on=");
        query.push_str(&query_escape(on));
    }
    let api = HostApi::new(&cmd.target)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "Active host: {}", api.base_url())?;
    out.flush()?;
    drop(out);
    // The host, the token and what the deploy asks are checked before a
    // build that may take minutes.
    let versions = format!("/api/v1/services/{}/versions/{}", cmd.name, cmd.version);
    api.send(
        Method::POST,
        &format!("{versions}/check?{query}"),
        None,
        TIMEOUT,
    )
    .await
    .map_err(|Failure(msg)| {
        Failure(format!(
            "{msg}\nnothing was built: the host is asked before the build whether it would take the deploy"
        ))
    })?;
    let path = cmd.path.clone();
    let exe = tokio::task::spawn_blocking(move || build(&path, &cmd.build))
        .await
        .map_err(|e| Failure(format!("the build failed: {e}")))??;
    let bytes = tokio::fs::read(&exe).await.map_err(|e| {
        Failure(format!(
            "cannot read the built executable {}: {e}",
            exe.display()
        ))
    })?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "Deploying service...")?;
    out.flush()?;
    drop(out);
    let path = format!("{versions}?{query}");
    let answer = api
        .send(
            Method::PUT,
            &path,
            Some(("application/octet-stream", Bytes::from(bytes))),
            DEPLOY_TIMEOUT,
        )
        .await
        .map_err(|Failure(msg)| {
            Failure(format!(
                "the host did not deploy {} {}: {msg}",
                cmd.name, cmd.version
            ))
        })?;
    let answer: DeployAnswer = serde_json::from_value(answer).map_err(|e| {
        Failure(format!(
            "the host answered the deploy with something this `weft` does not read ({e}); are `weft` and the host the same version?"
        ))
    })?;
    let list = api.deployments().await?;
    let mut out = std::io::stdout().lock();
    if let DeployAnswer::Hosts(placed) = &answer {
        print_outcomes(&mut out, &placed.on, "started")?;
        if let Some(failed) = placed.failures() {
            write!(out, "{}", render_table(&list))?;
            return Err(Failure(format!(
                "{} {} did not start on every host ({failed}); the hosts that started it run it",
                cmd.name, cmd.version
            )));
        }
    }
    writeln!(out, "Service deployed successfully")?;
    write!(out, "{}", render_table(&list))?;
    Ok(())
}

fn semver_check(version: &str) -> Result<()> {
    weft_core::name::Version::parse(version)
        .map(|_| ())
        .map_err(|e| {
            Failure(format!(
                "VERSION `{version}` is not a semver version ({e}); write it like 1.0.0"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_lines_are_told_apart() {
        assert!(is_progress("   Compiling serde v1.0.0"));
        assert!(is_progress("    Finished `release` profile"));
        assert!(!is_progress("error[E0308]: mismatched types"));
        assert!(!is_progress("  --> src/lib.rs:3:5"));
        assert_eq!(query_escape("A=b c&d"), "A%3Db%20c%26d");
    }
}
