//! `weft demo`: a host with the yatzee tutorial running, in one command.
//!
//! The host runs in this process; `die_roller` and `yatzee` run as child
//! processes (this same binary, `weft demo --serve NAME`), exactly as
//! deployed services would.

use std::io::Write as _;
use std::process::Stdio;
use std::time::Duration;

use clap::Args;
use tokio::process::{Child, Command};
use weft::{Address, Client};
use weft_host::{Host, HostConfig};

use crate::{Failure, Result, terminate};

/// Options of `weft demo`.
#[derive(Debug, Args)]
pub(crate) struct DemoCmd {
    /// Where the demo host listens.
    #[arg(long, default_value = weft::DEFAULT_HOST, value_name = "ADDR")]
    listen: String,
    /// How many games to play before waiting for Ctrl-C.
    #[arg(long, default_value_t = 1)]
    games: u32,
    /// Stop after the games instead of keeping the host running.
    #[arg(long)]
    once: bool,
    /// Serve one of the tutorial's services (used by the demo itself).
    #[arg(long, hide = true, value_name = "SERVICE")]
    serve: Option<String>,
}

pub(crate) async fn demo(cmd: DemoCmd) -> Result<()> {
    if let Some(name) = cmd.serve {
        return serve(&name).await;
    }
    let listen: Address = cmd
        .listen
        .parse()
        .map_err(|e: weft::Error| Failure(format!("--listen: {}", e.message())))?;
    let data_dir = tempfile::tempdir()
        .map_err(|e| Failure(format!("cannot create a temporary data dir: {e}")))?;
    let host = Host::bind(HostConfig::new(listen, data_dir.path()))
        .await
        // The host's message already says what to do (another host there:
        // stop it, or pick another address).
        .map_err(|e| Failure(e.message().to_owned()))?;
    let address = host.local_address();
    let (stop_host, host_stopped) = tokio::sync::oneshot::channel::<()>();
    let host_task = tokio::spawn(host.run(async {
        let _ = host_stopped.await;
    }));
    println!("weft host listening on {address}");

    let exe = std::env::current_exe().map_err(|e| {
        Failure(format!(
            "cannot find the weft binary to start the services: {e}"
        ))
    })?;
    let mut children = Vec::new();
    for name in ["die_roller", "yatzee"] {
        children.push(spawn(&exe, name, &address)?);
        println!("started {name}");
    }
    let outcome = play(&address, cmd.games).await;
    if outcome.is_ok() && !cmd.once {
        println!();
        println!("The yatzee tutorial is running. In another terminal, try:");
        println!("  weft call yatzee play --host {address}");
        println!("  weft ls --host {address}");
        println!("  weft notifications --host {address}");
        println!("Ctrl-C stops everything.");
        let _ = std::io::stdout().flush();
        terminate().await;
    }
    for child in &mut children {
        stop(child).await;
    }
    let _ = stop_host.send(());
    let _ = host_task.await;
    outcome
}

/// Waits until both services registered, then plays `games` games.
async fn play(address: &Address, games: u32) -> Result<()> {
    let client = Client::connect(&address.to_string()).await?;
    let mut ready = false;
    for _ in 0..300 {
        let services = client.services().await?;
        let running = |name: &str| {
            services
                .iter()
                .any(|s| s.name == name && s.versions.iter().any(|v| v.instances > 0))
        };
        if running("die_roller") && running("yatzee") {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if !ready {
        return Err(Failure(
            "the tutorial's services did not register within 30 s; run with RUST_LOG=debug to see why".into(),
        ));
    }
    for _ in 0..games {
        // The registry watch may lag the listing by a moment.
        let mut last = None;
        for _ in 0..50 {
            match client.call::<_, Vec<u8>>("yatzee", "play", ()).await {
                Ok(rolls) => {
                    last = Some(Ok(rolls));
                    break;
                }
                Err(e) if e.code() == weft::Code::NotFound => {
                    last = Some(Err(e));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
        match last {
            Some(Ok(rolls)) => println!("yatzee.play → {rolls:?}"),
            Some(Err(e)) => return Err(e.into()),
            None => unreachable!("the loop runs at least once"),
        }
    }
    for n in client.notifications(None, None).await? {
        println!("notification from {}: {}", n.service, n.message);
    }
    Ok(())
}

fn spawn(exe: &std::path::Path, name: &str, host: &Address) -> Result<Child> {
    Command::new(exe)
        .args(["demo", "--serve", name])
        .env("WEFT_HOST", host.to_string())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| Failure(format!("cannot start {name}: {e}")))
}

/// Stops a child gracefully (SIGTERM, so it deregisters), then for sure.
async fn stop(child: &mut Child) {
    if let Some(pid) = child.id() {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        if tokio::time::timeout(Duration::from_secs(5), child.wait())
            .await
            .is_ok()
        {
            return;
        }
    }
    let _ = child.kill().await;
}

async fn serve(name: &str) -> Result<()> {
    match name {
        "die_roller" => weft::serve(die_roller::DieRoller).await?,
        "yatzee" => weft::serve(yatzee::Yatzee).await?,
        other => {
            return Err(Failure(format!(
                "`{other}` is not a service of the demo: use die_roller or yatzee"
            )));
        }
    }
    Ok(())
}
