//! The `weft` binary end to end, as users run it: a `weft host` child
//! process on 127.0.0.1:0, services in child processes (the tutorial's, and
//! test services served by this binary run again), and the CLI against
//! them. One binary, so that the workspace links one instead of eight.

mod calls;
mod cli;
mod cluster;
mod deadlines;
mod events_cli;
mod events_cluster;
mod events_e2e;
mod events_probe;
mod mesh;
mod probe;
mod resilience;
mod shell;
mod tokens;
mod yatzee;

use std::process::Command;

use weft_test_support::{HostBuilder, HostProcess, ServiceProcess, test_service_command};

weft_test_support::test_services! {
    "probe" => probe::Probe,
    "events_probe" => events_probe::EventsProbe,
}

/// The `weft` binary under test.
const WEFT: &str = env!("CARGO_BIN_EXE_weft");

/// A `weft host` on 127.0.0.1:0 with a data dir of its own.
async fn start_host() -> HostProcess {
    HostProcess::start(WEFT).await
}

/// How to start a `weft host` with settings of the test's.
fn host_builder() -> HostBuilder {
    HostProcess::builder(WEFT)
}

/// A probe instance of `version` with the id `instance`.
fn probe(host: &HostProcess, version: &str, instance: &str) -> ServiceProcess {
    probe_with(host, version, instance, &[])
}

/// A probe instance with more environment (`WEFT_LISTEN`, ...).
fn probe_with(
    host: &HostProcess,
    version: &str,
    instance: &str,
    env: &[(&str, &str)],
) -> ServiceProcess {
    let mut cmd = test_service_command("probe");
    cmd.env("WEFT_VERSION", version).envs(env.iter().copied());
    ServiceProcess::start(host.address(), instance, cmd)
}

/// One of the tutorial's services (`die_roller`, `yatzee`) as
/// `weft demo --serve`.
fn tutorial(host: &HostProcess, name: &str) -> ServiceProcess {
    let mut cmd = Command::new(WEFT);
    cmd.args(["demo", "--serve", name]);
    ServiceProcess::start(host.address(), &format!("{name}-1"), cmd)
}
