//! Services in child processes, and waiting for the registry.

use std::ffi::OsStr;
use std::path::Path;
use std::process::{Command, ExitStatus};

use nix::sys::signal::Signal;
use weft::{Client, Service, ServiceSummary};

use crate::child::{ChildProcess, test_log};
use crate::poll;
use crate::process::WEFT_ENV;

/// The environment variable that names the test service a re-executed test
/// binary serves (see [`test_services!`](crate::test_services!)).
pub const SERVICE_ENV: &str = "WEFT_TEST_SERVICE";

/// The name of the test function [`test_services!`](crate::test_services!) defines, which the
/// re-executed binary runs.
const SERVICE_TEST: &str = "weft_test_service";

/// Declares the test services this test binary can serve in a child
/// process: an ignored test, `weft_test_service`, that does nothing in a
/// normal run and serves the service named by [`SERVICE_ENV`] when
/// [`test_service_command`] re-executes the binary. Use it once, at the
/// root of the test crate.
///
/// ```no_run
/// use weft::prelude::*;
///
/// /// A service only tests use.
/// #[derive(Debug, Default)]
/// pub struct Probe;
///
/// #[weft::service(name = "probe")]
/// impl Probe {
///     /// Answers.
///     #[entrypoint]
///     async fn ping(&self) -> String {
///         "pong".into()
///     }
/// }
///
/// weft_test_support::test_services! {
///     "probe" => Probe,
/// }
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! test_services {
    ($($name:literal => $service:expr),+ $(,)?) => {
        /// Serves a test service when a test started this binary for it.
        #[test]
        #[ignore = "serves a test service in a child process; the tests start it"]
        fn weft_test_service() {
            let Some(name) = $crate::__private::selected_service() else {
                return;
            };
            match name.as_str() {
                $($name => $crate::serve_test_service($service),)+
                other => panic!("this test binary has no test service `{other}`"),
            }
        }
    };
}

/// The service a re-executed test binary is to serve, if it is one.
#[doc(hidden)]
pub fn selected_service() -> Option<String> {
    std::env::var(SERVICE_ENV).ok()
}

/// Serves `service` with [`weft::serve`] on a runtime of two workers (fixed,
/// so that a test knows how many handlers that block a thread occupy them
/// all); what [`test_services!`](crate::test_services!) runs in the child.
pub fn serve_test_service<S: Service>(service: S) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("the test service's runtime starts");
    if let Err(e) = runtime.block_on(weft::serve(service)) {
        panic!("the test service {} failed: {e}", S::NAME);
    }
}

/// A command that runs this test binary again to serve the test service
/// `name` (declared with [`test_services!`](crate::test_services!)); add the environment it needs
/// (`WEFT_VERSION`, ...) and start it with [`ServiceProcess::start`].
pub fn test_service_command(name: &str) -> Command {
    let exe = std::env::current_exe().expect("the test binary's path");
    let mut cmd = Command::new(exe);
    cmd.args([SERVICE_TEST, "--ignored", "--nocapture", "--test-threads=1"])
        .env(SERVICE_ENV, name);
    cmd
}

/// A service in a child process, registered (or registering) with a host;
/// killed (SIGKILL) when dropped.
///
/// ```no_run
/// # async fn example(host: &weft_test_support::HostProcess) {
/// use weft_test_support::{ServiceProcess, test_service_command, wait_instances};
///
/// let mut cmd = test_service_command("probe");
/// cmd.env("WEFT_VERSION", "2.0.0");
/// let mut probe = ServiceProcess::start(host.address(), "probe-1", cmd);
/// wait_instances(&host.client().await, "probe", Some("2.0.0"), 1).await;
/// probe.kill9().await;
/// # }
/// ```
#[derive(Debug)]
pub struct ServiceProcess {
    process: ChildProcess,
    instance: String,
}

impl ServiceProcess {
    /// Starts `cmd` as instance `instance` of a service of the host at
    /// `host`: sets `WEFT_HOST` and `WEFT_INSTANCE`, and clears the other
    /// `WEFT_*` settings of this process that `cmd` does not set itself.
    pub fn start(host: &str, instance: &str, mut cmd: Command) -> ServiceProcess {
        let set: Vec<String> = cmd
            .get_envs()
            .map(|(k, _)| k.to_string_lossy().into_owned())
            .collect();
        for k in WEFT_ENV {
            if !set.iter().any(|s| s == k) {
                cmd.env_remove(k);
            }
        }
        if !set.iter().any(|s| s == "RUST_LOG") {
            cmd.env("RUST_LOG", test_log());
        }
        cmd.env("WEFT_HOST", host).env("WEFT_INSTANCE", instance);
        let name = format!(
            "{} {instance}",
            Path::new(cmd.get_program())
                .file_name()
                .map_or("service".into(), OsStr::to_string_lossy)
        );
        ServiceProcess {
            process: ChildProcess::spawn(name, cmd),
            instance: instance.to_owned(),
        }
    }

    /// The instance id it registers with.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// The process, to wait for or read its output.
    pub fn process(&mut self) -> &mut ChildProcess {
        &mut self.process
    }

    /// Sends `signal`.
    pub fn signal(&self, signal: Signal) {
        self.process.signal(signal);
    }

    /// SIGKILLs it and waits until it is gone.
    pub async fn kill9(&mut self) -> ExitStatus {
        self.process.kill9().await
    }

    /// Waits (bounded) until it exits.
    pub async fn wait_exit(&mut self) -> ExitStatus {
        self.process.wait_exit().await
    }
}

/// The instances of `service` (of `version`, or of every version) in a
/// listing.
pub fn instances(services: &[ServiceSummary], service: &str, version: Option<&str>) -> usize {
    services
        .iter()
        .filter(|s| s.name == service)
        .flat_map(|s| &s.versions)
        .filter(|v| version.is_none_or(|want| v.version.to_string() == want))
        .map(|v| v.instances)
        .sum()
}

/// Polls `client.services()` until `ready` holds for the listing and
/// returns it; panics naming `what`, with the last listing, after
/// [`PATIENCE`](crate::PATIENCE).
pub async fn wait_services(
    client: &Client,
    what: &str,
    ready: impl Fn(&[ServiceSummary]) -> bool,
) -> Vec<ServiceSummary> {
    poll(what, || async {
        match client.services().await {
            Ok(list) if ready(&list) => Ok(list),
            other => Err(other),
        }
    })
    .await
}

/// Waits until the host lists exactly `count` instances of `service` (of
/// `version`, or of every version).
///
/// ```no_run
/// # async fn example(client: &weft::Client) {
/// weft_test_support::wait_instances(client, "probe", Some("1.0.0"), 1).await;
/// # }
/// ```
pub async fn wait_instances(client: &Client, service: &str, version: Option<&str>, count: usize) {
    let what = format!(
        "{count} instance(s) of {service} {}",
        version.unwrap_or("(any version)")
    );
    wait_services(client, &what, |list| {
        instances(list, service, version) == count
    })
    .await;
}
