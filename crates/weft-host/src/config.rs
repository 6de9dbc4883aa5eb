//! How a host runs: [`HostConfig`] and its defaults.

use std::path::PathBuf;
use std::time::Duration;

use weft_core::Address;

use crate::auth::AuthMode;
use crate::events::EventsConfig;

/// The largest gateway request body unless configured otherwise: 16 MiB,
/// the wire protocol's default frame limit.
pub const DEFAULT_MAX_BODY: usize = 16 * 1024 * 1024;

/// How long a client may take to send a request body unless configured
/// otherwise.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a lease lasts without a keepalive, unless configured otherwise.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(6);

/// Where and how a [`Host`](crate::Host) runs.
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// The one address for the wire protocol and HTTP (`127.0.0.1:7400`;
    /// port 0 picks a free port, see [`Host::local_address`](crate::Host::local_address)).
    pub listen: Address,
    /// The directory for the host's state; created if missing.
    pub data_dir: PathBuf,
    /// How long an instance stays registered without a keepalive.
    pub lease_ttl: Duration,
    /// When HTTP requests need a bearer token.
    pub auth: AuthMode,
    /// The largest gateway request body, in bytes; larger ones get 413.
    pub max_body: usize,
    /// How long a client may take to send a request body; slower ones get
    /// 408, so that a stalled client never holds a request open.
    pub body_timeout: Duration,
    /// Retention and deduplication of the event log.
    pub events: EventsConfig,
    /// This host's name, unique in its cluster: instances carry it, so
    /// that every host can tell whose they are. The machine's host name by
    /// default.
    pub name: String,
    /// Cluster mode: share the registry with other hosts through NATS
    /// JetStream. `None` keeps everything on this machine.
    pub cluster: Option<ClusterConfig>,
}

impl HostConfig {
    /// A config with the default lease ([`DEFAULT_LEASE_TTL`]).
    ///
    /// ```
    /// let config = weft_host::HostConfig::new("127.0.0.1:7400".parse()?, "/var/lib/weft");
    /// assert_eq!(config.lease_ttl, weft_host::DEFAULT_LEASE_TTL);
    /// # Ok::<(), weft::Error>(())
    /// ```
    pub fn new(listen: Address, data_dir: impl Into<PathBuf>) -> Self {
        HostConfig {
            listen,
            data_dir: data_dir.into(),
            lease_ttl: DEFAULT_LEASE_TTL,
            auth: AuthMode::default(),
            max_body: DEFAULT_MAX_BODY,
            body_timeout: DEFAULT_BODY_TIMEOUT,
            events: EventsConfig::default(),
            name: default_name(),
            cluster: None,
        }
    }

    /// Sets this host's name in its cluster.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Joins a cluster of hosts through NATS.
    pub fn cluster(mut self, cluster: ClusterConfig) -> Self {
        self.cluster = Some(cluster);
        self
    }

    /// Sets the event log's retention and deduplication window.
    pub fn events(mut self, events: EventsConfig) -> Self {
        self.events = events;
        self
    }

    /// Sets how long an instance stays registered without a keepalive.
    pub fn lease_ttl(mut self, lease_ttl: Duration) -> Self {
        self.lease_ttl = lease_ttl;
        self
    }

    /// Sets when HTTP requests need a bearer token.
    ///
    /// ```
    /// use weft_host::{AuthMode, HostConfig};
    ///
    /// let config = HostConfig::new("0.0.0.0:7400".parse()?, "/var/lib/weft");
    /// assert!(config.auth.is_required(&config.listen));
    /// let config = config.auth(AuthMode::Off);
    /// assert!(!config.auth.is_required(&config.listen));
    /// # Ok::<(), weft::Error>(())
    /// ```
    pub fn auth(mut self, auth: AuthMode) -> Self {
        self.auth = auth;
        self
    }

    /// Sets the largest gateway request body, in bytes.
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }

    /// Sets how long a client may take to send a request body.
    pub fn body_timeout(mut self, timeout: Duration) -> Self {
        self.body_timeout = timeout;
        self
    }
}

/// How a host reaches the NATS servers of its cluster.
///
/// ```
/// let cluster = weft_host::ClusterConfig::new(["nats://10.0.0.5:4222", "nats://10.0.0.6:4222"])
///     .advertise("10.0.0.7");
/// assert_eq!(cluster.servers.len(), 2);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// NATS server URLs (`nats://10.0.0.5:4222`); any one of them is enough
    /// to join.
    pub servers: Vec<String>,
    /// The address other machines reach this machine's instances at, an IP
    /// or a DNS name; instances registered with a loopback or wildcard
    /// address are announced with it instead.
    pub advertise: Option<String>,
    /// A NATS credentials file (`.creds`: a user JWT and its NKey seed).
    pub credentials: Option<PathBuf>,
    /// CA certificates to trust for TLS to NATS (PEM).
    pub tls_ca: Option<PathBuf>,
    /// A client certificate and its key for TLS to NATS (PEM).
    pub tls_client: Option<(PathBuf, PathBuf)>,
    /// Whether to insist on TLS to NATS.
    pub tls_required: bool,
}

impl ClusterConfig {
    /// A cluster reached at `servers`, without credentials or TLS.
    pub fn new<S: Into<String>>(servers: impl IntoIterator<Item = S>) -> Self {
        ClusterConfig {
            servers: servers.into_iter().map(Into::into).collect(),
            advertise: None,
            credentials: None,
            tls_ca: None,
            tls_client: None,
            tls_required: false,
        }
    }

    /// Sets the address other machines reach this machine's instances at.
    pub fn advertise(mut self, address: impl Into<String>) -> Self {
        self.advertise = Some(address.into());
        self
    }
}

/// The machine's host name, as a host name in a cluster may be written:
/// letters, digits, `-` and `_`.
fn default_name() -> String {
    let raw = nix::unistd::gethostname()
        .ok()
        .and_then(|n| n.into_string().ok())
        .unwrap_or_default();
    let cleaned: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    if cleaned.is_empty() {
        "host".to_owned()
    } else {
        cleaned
    }
}
