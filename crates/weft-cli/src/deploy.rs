//! `weft deploy NAME VERSION PATH`: builds the crate at PATH in release
//! mode, uploads its executable to the host, and returns once the host has
//! the new instances registered. In a cluster, `--on HOST[,HOST...]|all`
//! runs it on those hosts: the host asked passes the executable on through
//! NATS, and the command says, per host, whether it started.

use std::collections::{HashMap, HashSet};
use std::io::{BufReader, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use cargo_metadata::{DependencyKind, Message, MetadataCommand, Node, PackageId};
use clap::Args;
use hyper::Method;
use indicatif::{ProgressBar, ProgressStyle};
use weft_host_api::deployments::DeployAnswer;

use crate::manage::{HostApi, Target, print_outcomes, render_table};
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
}

/// Roughly how many units cargo compiles for the crate: its packages and
/// their build scripts, from `cargo metadata` (the bar's length grows if
/// the guess is short).
fn estimate_units(manifest: &Path) -> Option<u64> {
    let meta = MetadataCommand::new()
        .cargo_path(cargo())
        .manifest_path(manifest)
        .exec()
        .ok()?;
    let resolve = meta.resolve?;
    let nodes: HashMap<&PackageId, &Node> = resolve.nodes.iter().map(|n| (&n.id, n)).collect();
    let mut seen = HashSet::new();
    let mut todo = vec![resolve.root.as_ref()?];
    while let Some(id) = todo.pop() {
        if !seen.insert(id) {
            continue;
        }
        // What the build compiles: normal and build dependencies, not
        // dev-dependencies.
        let deps = nodes.get(id).map(|n| n.deps.as_slice()).unwrap_or_default();
        todo.extend(
            deps.iter()
                .filter(|d| {
                    d.dep_kinds
                        .iter()
                        .any(|k| matches!(k.kind, DependencyKind::Normal | DependencyKind::Build))
                })
                .map(|d| &d.pkg),
        );
    }
    let build_scripts = meta
        .packages
        .iter()
        .filter(|p| seen.contains(&p.id))
        .filter(|p| p.targets.iter().any(|t| t.is_custom_build()))
        .count();
    // The root package's own bin is a unit beside its lib.
    Some((seen.len() + build_scripts + 1) as u64)
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned())
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

/// Builds the crate and returns its executable.
fn build(path: &Path) -> Result<PathBuf> {
    let manifest = path.join("Cargo.toml");
    if !manifest.is_file() {
        return Err(Failure(format!(
            "{} has no Cargo.toml; point `weft deploy` at the service's crate (`weft init` creates one)",
            path.display()
        )));
    }
    let manifest = std::fs::canonicalize(&manifest)
        .map_err(|e| Failure(format!("cannot read {}: {e}", manifest.display())))?;
    let bar = ProgressBar::new(estimate_units(&manifest).unwrap_or(0));
    bar.set_style(
        ProgressStyle::with_template("{spinner} Building [{bar:30}] {pos}/{len} {wide_msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.enable_steady_tick(Duration::from_millis(120));
    eprintln!("Building {} (release)", path.display());
    // CARGO_TARGET_DIR, when set, is inherited: deploys of several services
    // (and of the same one again) then share compiled dependencies.
    let mut child = Command::new(cargo())
        .args(["build", "--release", "--message-format", "json-render-diagnostics", "--manifest-path"])
        .arg(&manifest)
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
    let mut stderr = child.stderr.take().expect("piped stderr");
    let diagnostics = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let stdout = child.stdout.take().expect("piped stdout");
    let mut executables = Vec::new();
    let mut succeeded = None;
    for message in Message::parse_stream(BufReader::new(stdout)) {
        let Ok(message) = message else { break };
        match message {
            Message::CompilerArtifact(artifact) => {
                bar.inc(1);
                if bar.position() > bar.length().unwrap_or(0) {
                    bar.set_length(bar.position());
                }
                bar.set_message(artifact.target.name.clone());
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
    let api = HostApi::new(&cmd.target)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "Active host: {}", api.base_url())?;
    out.flush()?;
    drop(out);
    let path = cmd.path.clone();
    let exe = tokio::task::spawn_blocking(move || build(&path))
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
    let mut path = format!(
        "/api/v1/services/{}/versions/{}?instances={}",
        cmd.name, cmd.version, cmd.instances
    );
    for pair in &cmd.env {
        path.push_str("&env=");
        path.push_str(&query_escape(pair));
    }
    if let Some(on) = &cmd.on {
        if on.trim().is_empty() {
            return Err(Failure(
                "--on names no host; write --on HOST[,HOST...] or --on all".into(),
            ));
        }
        path.push_str("&on=");
        path.push_str(&query_escape(on));
    }
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
