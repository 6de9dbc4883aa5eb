//! Network namespaces on a bridge of their own, so that the processes of a
//! test have different machines' addresses.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher as _, Hasher as _};
use std::net::Ipv4Addr;
use std::os::unix::fs::MetadataExt as _;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use crate::ChildProcess;

/// How many subnets [`Network::new`] tries before it gives up; each try
/// collides only with a parallel test or a leftover bridge, so a handful
/// suffices and the loop stays bounded.
const SUBNET_TRIES: u32 = 64;

/// Runs `ip args`; the error says what failed and what `ip` printed.
fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run `ip {}`: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`ip {}`: {}: {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The error of a failed step of setting up.
fn cannot_set_up(e: String) -> String {
    format!("cannot set up a network namespace: {e}")
}

/// Why this process cannot make network namespaces, if it cannot: it is
/// not root, or `ip` (iproute2) does not run.
fn missing_root_or_ip() -> Option<&'static str> {
    // /proc/self belongs to the process's effective user.
    let root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
    if !root {
        return Some(
            "network namespaces need root: run these tests as root (CI does), \
             e.g. in a container or with sudo",
        );
    }
    let runs = Command::new("ip")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    if !runs {
        return Some("network namespaces need `ip` from iproute2: `apt-get install iproute2`");
    }
    None
}

/// A random number, without a dependency: std seeds each `RandomState`
/// afresh.
fn random() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.finish()
}

/// The bridge, and what its namespaces share.
#[derive(Debug)]
struct Bridge {
    name: String,
    /// `10.x.y`, the first three bytes of the subnet.
    prefix: [u8; 3],
    /// The last byte of the next namespace's address.
    next: AtomicU8,
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = ip(&["link", "del", &self.name]);
    }
}

/// A bridge in the root namespace on a /24 of its own (`10.x.y.0/24`,
/// chosen at random so that parallel tests do not collide; the root side
/// holds `.1`), to which [`Netns`]es are attached. It is deleted when the
/// `Network` and all its namespaces are dropped.
///
/// Needs root and iproute2; panics saying so otherwise.
///
/// ```no_run
/// # async fn example() {
/// use weft_test_support::Network;
///
/// let network = Network::new();
/// let (a, b) = (network.netns(), network.netns());
/// let server = a.spawn(std::process::Command::new("my-server"));
/// // b reaches the server at a.addr(); so does the test, from the root namespace.
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Network {
    bridge: Arc<Bridge>,
}

impl Network {
    /// Creates the bridge on a free random subnet, with `.1` on the root
    /// side.
    ///
    /// Panics saying what failed; see [`Network::try_new`] for the error
    /// instead.
    pub fn new() -> Network {
        Network::try_new().unwrap_or_else(|e| panic!("{e}"))
    }

    /// Creates the bridge as [`Network::new`] does, or says why it cannot
    /// (not root, no `ip`, no free subnet, `ip` failed), for programs that
    /// go on without namespaces.
    pub fn try_new() -> Result<Network, String> {
        if let Some(missing) = missing_root_or_ip() {
            return Err(missing.to_owned());
        }
        let mut last = String::new();
        for _ in 0..SUBNET_TRIES {
            let r = random();
            // 10.100.0.0 to 10.249.255.0: clear of the low 10.x ranges
            // that container networks and VPNs tend to take.
            let prefix = [10, 100 + (r % 150) as u8, (r >> 8) as u8];
            let name = format!("wb-{}-{}", prefix[1], prefix[2]);
            if subnet_in_use(prefix) {
                continue;
            }
            // Creating the bridge is what claims the subnet: a parallel
            // test that picked the same one fails here and tries another.
            if let Err(e) = ip(&["link", "add", &name, "type", "bridge", "forward_delay", "0"]) {
                last = e;
                continue;
            }
            // From here on, dropping `bridge` deletes it.
            let bridge = Bridge {
                name,
                prefix,
                next: AtomicU8::new(2),
            };
            let gateway = format!("{}/24", bridge.gateway());
            ip(&["addr", "add", &gateway, "dev", &bridge.name]).map_err(cannot_set_up)?;
            ip(&["link", "set", &bridge.name, "up"]).map_err(cannot_set_up)?;
            return Ok(Network {
                bridge: Arc::new(bridge),
            });
        }
        Err(format!(
            "no free 10.x.y.0/24 for a test bridge in {SUBNET_TRIES} tries; last: {last}"
        ))
    }

    /// The root namespace's address on the bridge (`.1`).
    pub fn gateway(&self) -> Ipv4Addr {
        self.bridge.gateway()
    }

    /// The bridge's interface name (`wb-...`), for programs that must
    /// delete it themselves when they are interrupted before it drops.
    pub fn bridge_name(&self) -> &str {
        &self.bridge.name
    }

    /// A new namespace on this network, with the next free address.
    ///
    /// Panics saying what failed; see [`Network::try_netns`] for the error
    /// instead.
    pub fn netns(&self) -> Netns {
        self.try_netns().unwrap_or_else(|e| panic!("{e}"))
    }

    /// A new namespace as [`Network::netns`] makes it, or why it could not
    /// be made (nothing of it is left behind then).
    pub fn try_netns(&self) -> Result<Netns, String> {
        Netns::attach(self.bridge.clone())
    }
}

impl Default for Network {
    fn default() -> Self {
        Network::new()
    }
}

impl Bridge {
    fn gateway(&self) -> Ipv4Addr {
        let [a, b, c] = self.prefix;
        Ipv4Addr::new(a, b, c, 1)
    }
}

/// Whether an address of this host already lies in `10.x.y.0/24`.
fn subnet_in_use([a, b, c]: [u8; 3]) -> bool {
    let out = Command::new("ip")
        .args(["-4", "-o", "addr", "show"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    out.contains(&format!(" {a}.{b}.{c}."))
}

/// A network namespace (`ip netns add weft-...`) with loopback up and one
/// veth pair to its [`Network`]'s bridge, so that it has an address of its
/// own (`.2`, `.3`, ...) that the root namespace and the other namespaces
/// on the bridge reach. Dropping it kills whatever runs inside and deletes
/// the namespace and its veth pair.
///
/// ```no_run
/// # async fn example() {
/// use weft_test_support::Netns;
///
/// let ns = Netns::new();
/// let mut cmd = std::process::Command::new("nats-server");
/// cmd.args(["-a", &ns.addr().to_string()]);
/// let server = ns.spawn(cmd);
/// # }
/// ```
#[derive(Debug)]
pub struct Netns {
    name: String,
    veth: String,
    addr: Ipv4Addr,
    /// Keeps the bridge until the last namespace on it is gone.
    bridge: Arc<Bridge>,
}

impl Netns {
    /// A namespace on a network of its own.
    pub fn new() -> Netns {
        Network::new().netns()
    }

    fn attach(bridge: Arc<Bridge>) -> Result<Netns, String> {
        let host = bridge.next.fetch_add(1, Ordering::Relaxed);
        if !(2..255).contains(&host) {
            return Err("a test network holds at most 253 namespaces".to_owned());
        }
        let [a, b, c] = bridge.prefix;
        let ns = Netns {
            name: format!("weft-{b}-{c}-{host}"),
            // Interface names have at most 15 bytes: wv-249-255-254 has 14.
            veth: format!("wv-{b}-{c}-{host}"),
            addr: Ipv4Addr::new(a, b, c, host),
            bridge,
        };
        // From here on, dropping `ns` undoes whatever was done.
        let cidr = format!("{}/24", ns.addr);
        let steps: [&[&str]; 7] = [
            &["netns", "add", &ns.name],
            &[
                "link", "add", &ns.veth, "type", "veth", "peer", "name", "eth0", "netns", &ns.name,
            ],
            &["link", "set", &ns.veth, "master", &ns.bridge.name],
            &["link", "set", &ns.veth, "up"],
            &["-n", &ns.name, "addr", "add", &cidr, "dev", "eth0"],
            &["-n", &ns.name, "link", "set", "eth0", "up"],
            &["-n", &ns.name, "link", "set", "lo", "up"],
        ];
        for step in steps {
            ip(step).map_err(cannot_set_up)?;
        }
        Ok(ns)
    }

    /// Its name, for `ip netns exec` and `ip -n`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its address on the bridge.
    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    /// `cmd` made to run inside the namespace (`ip netns exec`, which execs
    /// it, so that the child is the program itself and signals reach it),
    /// with `cmd`'s arguments, environment and directory; for harnesses
    /// that spawn commands themselves ([`ServiceProcess::start`](crate::ServiceProcess::start)).
    pub fn command(&self, cmd: &Command) -> Command {
        inside(&self.name, cmd)
    }

    /// Cuts the namespace off its network, as a pulled cable would: its
    /// link to the bridge goes down, what runs inside keeps running and
    /// reaches nothing outside. [`Netns::reconnect`] undoes it.
    pub fn cut(&self) {
        ip(&["link", "set", &self.veth, "down"])
            .unwrap_or_else(|e| panic!("cannot cut {} off: {e}", self.name));
    }

    /// Puts the namespace back on its network after [`Netns::cut`].
    pub fn reconnect(&self) {
        ip(&["link", "set", &self.veth, "up"])
            .unwrap_or_else(|e| panic!("cannot reconnect {}: {e}", self.name));
    }

    /// Runs `cmd` inside the namespace (see [`Netns::command`]).
    pub fn spawn(&self, cmd: Command) -> ChildProcess {
        self.spawn_with(cmd, None)
    }

    /// Runs `cmd` inside the namespace as [`ChildProcess::spawn_quiet`]
    /// does.
    pub fn spawn_quiet(&self, cmd: Command, worth: fn(&str) -> bool) -> ChildProcess {
        self.spawn_with(cmd, Some(worth))
    }

    fn spawn_with(&self, cmd: Command, quiet: Option<fn(&str) -> bool>) -> ChildProcess {
        let program = std::path::Path::new(cmd.get_program())
            .file_name()
            .unwrap_or(cmd.get_program())
            .to_string_lossy()
            .into_owned();
        let name = format!("{program} in {}", self.name);
        match quiet {
            Some(worth) => ChildProcess::spawn_quiet(name, self.command(&cmd), worth),
            None => ChildProcess::spawn(name, self.command(&cmd)),
        }
    }
}

impl Default for Netns {
    fn default() -> Self {
        Netns::new()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // A process left inside would keep the namespace, and its veth
        // pair, alive after `ip netns del`.
        if let Ok(out) = Command::new("ip")
            .args(["netns", "pids", &self.name])
            .output()
        {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                if let Ok(pid) = pid.parse() {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
        }
        let _ = ip(&["netns", "del", &self.name]);
        // Gone with the namespace's end of the pair, unless that failed.
        let _ = ip(&["link", "del", &self.veth]);
    }
}

/// `cmd` made to run inside the namespace `name`.
pub(crate) fn inside(name: &str, cmd: &Command) -> Command {
    let mut inside = Command::new("ip");
    inside
        .args(["netns", "exec", name])
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (key, value) in cmd.get_envs() {
        match value {
            Some(value) => inside.env(key, value),
            None => inside.env_remove(key),
        };
    }
    if let Some(dir) = cmd.get_current_dir() {
        inside.current_dir(dir);
    }
    inside
}
