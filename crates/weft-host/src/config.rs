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
        }
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
