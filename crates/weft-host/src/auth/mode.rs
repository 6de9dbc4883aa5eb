//! When tokens are required, and who counts as local.

use std::fmt;
use std::str::FromStr;

use weft_core::{Address, Error};

/// When the gateway and `/api/v1` ask for a bearer token.
///
/// ```
/// use weft_host::AuthMode;
///
/// let mode: AuthMode = "required".parse()?;
/// assert_eq!(mode, AuthMode::Required);
/// assert_eq!(AuthMode::default(), AuthMode::Auto);
/// # Ok::<(), weft::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuthMode {
    /// Never ask: anyone who reaches the port may call and manage.
    Off,
    /// Ask when the host listens on an address other than loopback (or a
    /// unix socket): zero configuration on a laptop, safe on a network.
    #[default]
    Auto,
    /// Always ask.
    Required,
}

impl AuthMode {
    /// Whether tokens are required for a host listening on `listen`.
    pub fn is_required(self, listen: &Address) -> bool {
        match self {
            AuthMode::Off => false,
            AuthMode::Required => true,
            AuthMode::Auto => !is_local(listen),
        }
    }
}

impl FromStr for AuthMode {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "off" => Ok(AuthMode::Off),
            "auto" => Ok(AuthMode::Auto),
            "required" => Ok(AuthMode::Required),
            other => Err(Error::invalid_argument(
                "auth",
                format!("`{other}` is not an auth mode; use `required`, `auto` or `off`"),
            )),
        }
    }
}

impl fmt::Display for AuthMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AuthMode::Off => "off",
            AuthMode::Auto => "auto",
            AuthMode::Required => "required",
        })
    }
}

/// Whether only this machine can reach `address`: a loopback IP,
/// `localhost`, or a unix socket.
pub(crate) fn is_local(address: &Address) -> bool {
    match address {
        Address::Unix(_) => true,
        Address::Tcp(hostport) => {
            let host = hostport
                .rsplit_once(':')
                .map_or(hostport.as_str(), |(h, _)| h);
            let host = host.trim_start_matches('[').trim_end_matches(']');
            host.eq_ignore_ascii_case("localhost")
                || host
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
    }
}

/// Whether a connection's peer (as the listener reports it) is this machine.
pub(crate) fn peer_is_local(peer: &str) -> bool {
    peer.starts_with("unix:")
        || peer
            .parse::<std::net::SocketAddr>()
            .is_ok_and(|a| a.ip().is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locality() {
        for (a, local) in [
            ("127.0.0.1:7400", true),
            ("localhost:1", true),
            ("[::1]:7400", true),
            ("0.0.0.0:7400", false),
            ("10.1.2.3:7400", false),
            ("example.com:80", false),
            ("unix:///tmp/x.sock", true),
        ] {
            assert_eq!(is_local(&a.parse().unwrap()), local, "{a}");
        }
        assert!(peer_is_local("127.0.0.1:5555"));
        assert!(peer_is_local("unix:/tmp/x"));
        assert!(!peer_is_local("10.0.0.1:5555"));
    }
}
