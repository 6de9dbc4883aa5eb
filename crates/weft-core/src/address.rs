use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// Where a weft endpoint listens: a TCP `host:port` or a unix-domain socket path.
///
/// ```
/// use weft_core::Address;
///
/// let addr: Address = "http://127.0.0.1:7400".parse()?;
/// assert_eq!(addr, Address::Tcp("127.0.0.1:7400".into()));
/// assert_eq!(addr.to_string(), "tcp://127.0.0.1:7400");
///
/// let addr: Address = "unix:///tmp/weft.sock".parse()?;
/// assert_eq!(addr.to_string(), "unix:///tmp/weft.sock");
/// # Ok::<(), weft_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Address {
    /// A TCP endpoint, `"host:port"` (the host may be a name, an IPv4 or a bracketed IPv6 address).
    Tcp(String),
    /// A unix-domain socket at this path.
    Unix(PathBuf),
}

const ACCEPTED_FORMS: &str = "accepted forms: \"host:port\", \"tcp://host:port\", \"http://host:port\" or \"unix:///path/to/socket\"";

impl FromStr for Address {
    type Err = crate::Error;

    /// Parses `"127.0.0.1:7400"`, `"tcp://127.0.0.1:7400"`, `"localhost:7400"`,
    /// `"http://127.0.0.1:7400"` (the host serves HTTP and weft on one port) or
    /// `"unix:///tmp/x.sock"`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let invalid = |why: &str| {
            crate::Error::new(
                crate::Code::InvalidArgument,
                format!("invalid address {s:?}: {why}; {ACCEPTED_FORMS}"),
            )
        };
        if let Some(path) = s.strip_prefix("unix://") {
            if path.is_empty() {
                return Err(invalid("the socket path is empty"));
            }
            return Ok(Address::Unix(PathBuf::from(path)));
        }
        let rest = if let Some(rest) = s.strip_prefix("tcp://") {
            rest
        } else if let Some(rest) = s.strip_prefix("http://") {
            rest.strip_suffix('/').unwrap_or(rest)
        } else if let Some((scheme, _)) = s.split_once("://") {
            return Err(invalid(&format!("unsupported scheme {scheme:?}")));
        } else {
            s
        };
        let Some((host, port)) = rest.rsplit_once(':') else {
            return Err(invalid("no port"));
        };
        if host.is_empty() || host.contains('/') {
            return Err(invalid("no host"));
        }
        if port.parse::<u16>().is_err() {
            return Err(invalid(&format!(
                "port {port:?} is not a number from 0 to 65535"
            )));
        }
        Ok(Address::Tcp(rest.to_owned()))
    }
}

impl Address {
    /// The address a client on this machine reaches a listener at: a
    /// wildcard IP (`0.0.0.0`, `[::]`) listens on every interface but cannot
    /// be connected to everywhere, so it becomes the loopback address of the
    /// same family. Every other address is returned unchanged.
    ///
    /// ```
    /// use weft_core::Address;
    ///
    /// let listen: Address = "0.0.0.0:7400".parse()?;
    /// assert_eq!(listen.reachable().to_string(), "tcp://127.0.0.1:7400");
    /// let listen: Address = "[::]:7400".parse()?;
    /// assert_eq!(listen.reachable().to_string(), "tcp://[::1]:7400");
    /// # Ok::<(), weft_core::Error>(())
    /// ```
    pub fn reachable(&self) -> Address {
        if let Address::Tcp(hostport) = self {
            if let Some(port) = hostport.strip_prefix("0.0.0.0:") {
                return Address::Tcp(format!("127.0.0.1:{port}"));
            }
            if let Some(port) = hostport.strip_prefix("[::]:") {
                return Address::Tcp(format!("[::1]:{port}"));
            }
        }
        self.clone()
    }
}

impl fmt::Display for Address {
    /// `tcp://host:port` or `unix:///path`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Tcp(hostport) => write!(f, "tcp://{hostport}"),
            Address::Unix(path) => write!(f, "unix://{}", path.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_accepted_form() {
        let tcp = Address::Tcp("127.0.0.1:7400".into());
        for s in [
            "127.0.0.1:7400",
            "tcp://127.0.0.1:7400",
            "http://127.0.0.1:7400",
            "http://127.0.0.1:7400/",
        ] {
            assert_eq!(s.parse::<Address>().unwrap(), tcp, "{s}");
        }
        assert_eq!(
            "localhost:7400".parse::<Address>().unwrap(),
            Address::Tcp("localhost:7400".into())
        );
        assert_eq!(
            "[::1]:80".parse::<Address>().unwrap(),
            Address::Tcp("[::1]:80".into())
        );
        assert_eq!(
            "unix:///tmp/x.sock".parse::<Address>().unwrap(),
            Address::Unix("/tmp/x.sock".into())
        );
    }

    #[test]
    fn display_round_trips() {
        for s in ["tcp://localhost:1", "unix:///tmp/x.sock"] {
            assert_eq!(s.parse::<Address>().unwrap().to_string(), s);
        }
    }

    #[test]
    fn wildcards_become_loopback_of_their_family() {
        let cases = [
            ("0.0.0.0:7400", "tcp://127.0.0.1:7400"),
            ("tcp://[::]:7400", "tcp://[::1]:7400"),
            ("0.0.0.0:0", "tcp://127.0.0.1:0"),
            ("127.0.0.1:7400", "tcp://127.0.0.1:7400"),
            ("10.0.0.7:80", "tcp://10.0.0.7:80"),
            ("localhost:7400", "tcp://localhost:7400"),
            ("[::1]:7400", "tcp://[::1]:7400"),
            ("unix:///tmp/0.0.0.0:1", "unix:///tmp/0.0.0.0:1"),
        ];
        for (listen, reachable) in cases {
            let addr: Address = listen.parse().unwrap();
            assert_eq!(addr.reachable().to_string(), reachable, "{listen}");
        }
    }

    #[test]
    fn errors_say_the_accepted_forms() {
        for s in ["", "localhost", "https://x:1", "x:99999", ":80", "unix://"] {
            let err = s.parse::<Address>().unwrap_err();
            assert_eq!(err.code(), crate::Code::InvalidArgument, "{s}");
            assert!(err.message().contains("accepted forms"), "{s}: {err}");
        }
    }
}
