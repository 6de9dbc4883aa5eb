//! A weft call between two machines of a cluster, next to raw TCP between
//! the same two: three network namespaces on one bridge (veth pairs),
//!
//! - C: nats-server with JetStream;
//! - A: a weft host (`--nats`, `--advertise` A's address), the `echo`
//!   service registered with it and listening on A's address, and the raw
//!   TCP echo server on A's address;
//! - B: a weft host, and the caller: a `weft::Client` of B's host, which
//!   learns of the echo instance through NATS and calls it directly at its
//!   address in A, and raw TCP connections from B to A.
//!
//! For each runtime flavour the echo servers in A are started afresh (and
//! the previous echo instance waited out of B's registry); within it every
//! repetition measures raw TCP, then weft, for each scenario, so that the
//! ratio compares figures taken seconds apart.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use weft_test_support::{Netns, Network};

use super::{ClusterHost, Nats, OnInterrupt, Plan, inside};
use crate::measure::{self, Case, Flavour, Run, Scenario, ScenarioKind};
use crate::process::ServerProcess;
use crate::systems::{Caller, System, raw, weft_echo};

/// The payload of every call, as in the echo benchmarks' small case.
pub(crate) const PAYLOAD: usize = 64;

/// How long a stopped echo instance may take to leave B's registry.
const GONE_TIMEOUT: Duration = Duration::from_secs(30);

/// How often B's registry is asked whether it has gone.
const GONE_POLL: Duration = Duration::from_millis(20);

/// How long a measurement's runtime may take to stop its remaining tasks.
const RUNTIME_SHUTDOWN: Duration = Duration::from_secs(1);

/// What the call benchmark measured.
#[derive(Debug)]
pub(crate) struct Outcome {
    /// Every measurement, raw TCP and weft, in the order taken.
    pub(crate) runs: Vec<Run>,
    /// The namespaces' addresses, for the report: (C, A, B).
    pub(crate) addresses: [String; 3],
}

/// The namespaces and what runs in them. Fields drop in order: the
/// processes first, then the namespaces, then the bridge.
#[derive(Debug)]
struct Machines {
    host_b: ClusterHost,
    host_a: ClusterHost,
    nats: Nats,
    b: Netns,
    a: Netns,
    c: Netns,
    _network: Network,
    _interrupt: OnInterrupt,
}

/// Sets up the namespaces and hosts, then measures every flavour and
/// scenario `plan.reps` times.
pub(crate) fn run(plan: &Plan, nats_server: &Path) -> anyhow::Result<Outcome> {
    let control = Flavour::CurrentThread.runtime()?;
    eprintln!("cluster-call: setting up namespaces, nats-server and two hosts");
    let machines = control.block_on(Machines::start(nats_server, plan.lease_ttl))?;
    let mut runs = Vec::new();
    for &flavour in &plan.flavours {
        eprintln!(
            "cluster-call: starting the echo servers in A ({})",
            flavour.name()
        );
        let a_ip = machines.a.addr().to_string();
        let listen = format!("{a_ip}:0");
        let echo = control.block_on(ServerProcess::start_in(
            Some(&machines.a),
            "weft-echo",
            flavour,
            &["--host", machines.host_a.address(), "--listen", &listen],
        ))?;
        let raw = control.block_on(ServerProcess::start_in(
            Some(&machines.a),
            "raw-tcp",
            flavour,
            &["--listen", &listen],
        ))?;
        let alive = || -> anyhow::Result<()> {
            machines.check_alive()?;
            echo.check_alive()?;
            raw.check_alive()
        };
        inside(&machines.b, || {
            flavour.runtime()?.block_on(async {
                weft_echo::wait_callable(machines.host_b.address(), alive)
                    .await
                    .context("the echo instance in A is not callable from B")?;
                raw::tcp_callers(raw.address(), 1, b"ready")
                    .await?
                    .pop()
                    .context("no caller")?
                    .call()
                    .await
                    .context("the raw TCP server in A does not answer from B")
            })
        })?;
        let mut all_pids = machines.pids();
        all_pids.extend([echo.pid(), raw.pid()]);
        for rep in 0..plan.reps {
            for &kind in &plan.scenarios {
                let scenario = match kind {
                    ScenarioKind::Sequential => Scenario::Sequential,
                    ScenarioKind::Concurrent => Scenario::Concurrent(plan.concurrency),
                };
                let case = Case {
                    flavour,
                    payload: PAYLOAD,
                    scenario,
                };
                for system in [System::RawTcp, System::Weft] {
                    eprintln!(
                        "rep {}/{}: cluster-call {} {}",
                        rep + 1,
                        plan.reps,
                        system.name(),
                        case.label()
                    );
                    alive()?;
                    let server_pids = match system {
                        System::RawTcp => vec![raw.pid()],
                        _ => {
                            let mut pids = vec![echo.pid()];
                            pids.extend(machines.pids());
                            pids
                        }
                    };
                    let target = match system {
                        System::RawTcp => raw.address(),
                        _ => machines.host_b.address(),
                    };
                    let run = inside(&machines.b, || {
                        measure_once(plan, system, target, case, &server_pids, &all_pids)
                    })
                    .with_context(|| {
                        format!("measuring {} {} failed", system.name(), case.label())
                    })?;
                    runs.push(run);
                }
            }
        }
        drop(echo);
        drop(raw);
        // The next flavour's echo instance must be the only one B's
        // callers can pick.
        inside(&machines.b, || {
            flavour
                .runtime()?
                .block_on(wait_gone(machines.host_b.address()))
        })?;
    }
    Ok(Outcome {
        runs,
        addresses: [
            machines.c.addr().to_string(),
            machines.a.addr().to_string(),
            machines.b.addr().to_string(),
        ],
    })
}

impl Machines {
    async fn start(nats_server: &Path, lease: Duration) -> anyhow::Result<Machines> {
        let network = Network::try_new().map_err(anyhow::Error::msg)?;
        let c = network.try_netns().map_err(anyhow::Error::msg)?;
        let a = network.try_netns().map_err(anyhow::Error::msg)?;
        let b = network.try_netns().map_err(anyhow::Error::msg)?;
        let interrupt = OnInterrupt::new(&network, &[&c, &a, &b])?;
        let nats = Nats::start(Some(&c), nats_server, &c.addr().to_string()).await?;
        let a_ip = a.addr().to_string();
        let b_ip = b.addr().to_string();
        let host_a = ClusterHost::start(Some(&a), nats.url(), "a", Some(&a_ip), lease).await?;
        let host_b = ClusterHost::start(Some(&b), nats.url(), "b", Some(&b_ip), lease).await?;
        Ok(Machines {
            host_b,
            host_a,
            nats,
            b,
            a,
            c,
            _network: network,
            _interrupt: interrupt,
        })
    }

    fn check_alive(&self) -> anyhow::Result<()> {
        self.nats.check_alive()?;
        self.host_a.check_alive()?;
        self.host_b.check_alive()
    }

    /// The hosts' and nats-server's processes.
    fn pids(&self) -> Vec<u32> {
        let mut pids = vec![self.host_a.pid(), self.host_b.pid()];
        pids.extend(self.nats.pids());
        pids
    }
}

/// One measurement on a fresh runtime of the case's flavour, on the
/// calling thread (which is in B): raw TCP callers of the echo server at
/// `target`, or weft callers through the host at `target`.
fn measure_once(
    plan: &Plan,
    system: System,
    target: &str,
    case: Case,
    server_pids: &[u32],
    other_pids: &[u32],
) -> anyhow::Result<Run> {
    let calls_plan = measure::Plan {
        duration: plan.duration,
        warmup: plan.warmup,
        reps: 1,
        payloads: vec![case.payload],
        concurrency: plan.concurrency,
        scenarios: Vec::new(),
        flavours: vec![case.flavour],
        max_others_cpu: None,
    };
    let runtime = case.flavour.runtime()?;
    let run = runtime.block_on(async {
        let n = case.scenario.callers();
        let payload = measure::payload(case.payload);
        let callers: Vec<Caller> = match system {
            System::RawTcp => raw::tcp_callers(target, n, &payload)
                .await?
                .into_iter()
                .map(Caller::RawTcp)
                .collect(),
            System::Weft => weft_echo::callers(target, n, &payload)
                .await?
                .into_iter()
                .map(Caller::Weft)
                .collect(),
            other => bail!("{} is not measured across namespaces", other.name()),
        };
        measure::run_callers(&calls_plan, system, callers, server_pids, case, other_pids).await
    });
    runtime.shutdown_timeout(RUNTIME_SHUTDOWN);
    run
}

/// Waits until the registry of the host at `host` lists no `echo`
/// instance.
async fn wait_gone(host: &str) -> anyhow::Result<()> {
    let client = weft::Client::connect(host)
        .await
        .with_context(|| format!("cannot connect to the weft host at {host}"))?;
    let deadline = Instant::now() + GONE_TIMEOUT;
    for _ in 0..GONE_TIMEOUT.as_millis() / GONE_POLL.as_millis() {
        let services = client.services().await?;
        let left: usize = services
            .iter()
            .filter(|s| s.name == "echo")
            .flat_map(|s| &s.versions)
            .map(|v| v.instances)
            .sum();
        if left == 0 {
            return Ok(());
        }
        if Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(GONE_POLL).await;
    }
    bail!(
        "a stopped echo instance was still in B's registry after {}s",
        GONE_TIMEOUT.as_secs()
    )
}
