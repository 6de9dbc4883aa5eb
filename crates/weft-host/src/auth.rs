//! Bearer tokens with scopes: who may call what through the gateway and
//! `/api/v1`.
//!
//! A token is `weft_<id>_<secret>`: the id finds the record, the secret
//! proves possession. Only the SHA-256 of the 32 random secret bytes is
//! stored, so a copy of the data dir does not leak usable tokens.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::str::FromStr;

use parking_lot::RwLock;
use rand::RngCore as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use weft::Address;
use weft_core::{Code, Error};

use weft_host_api::tokens::{SCOPE_FORMS, TokenInfo};

use crate::time::now_ms;

/// The file in the data dir that holds the bootstrap admin token when auth
/// is on; readable only by the host's user (mode 0600).
pub const ADMIN_TOKEN_FILE: &str = "admin.token";

/// Every token starts with this, so that leaked tokens are easy to scan for.
const PREFIX: &str = "weft_";

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

/// What a token allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Scope {
    /// `call:*`: call every entrypoint of every service.
    CallAll,
    /// `call:SERVICE`: call every entrypoint of one service.
    CallService(String),
    /// `call:SERVICE.ENTRYPOINT`: call one entrypoint.
    CallEntrypoint(String, String),
    /// `admin`: everything, including deploying and managing tokens.
    Admin,
}

impl FromStr for Scope {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = |why: String| {
            Error::invalid_argument(
                "scopes",
                format!("`{s}` is not a scope: {why}; scopes are {SCOPE_FORMS}"),
            )
        };
        if s == "admin" {
            return Ok(Scope::Admin);
        }
        let Some(target) = s.strip_prefix("call:") else {
            return Err(bad(
                "it starts with neither `call:` nor is it `admin`".into()
            ));
        };
        if target == "*" {
            return Ok(Scope::CallAll);
        }
        // Service names may contain dots, entrypoint names (Rust
        // identifiers) cannot: the last dot splits them.
        let valid =
            |name: &str| weft_core::name::validate(name).map_err(|e| bad(e.message().into()));
        if weft_core::name::validate(target).is_ok() && !target.contains('.') {
            return Ok(Scope::CallService(target.to_owned()));
        }
        match target.rsplit_once('.') {
            Some((service, entrypoint))
                if !entrypoint.is_empty()
                    && entrypoint
                        .chars()
                        .all(|c| c == '_' || c.is_ascii_alphanumeric()) =>
            {
                valid(service)?;
                Ok(Scope::CallEntrypoint(
                    service.to_owned(),
                    entrypoint.to_owned(),
                ))
            }
            _ => {
                valid(target)?;
                Ok(Scope::CallService(target.to_owned()))
            }
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::CallAll => f.write_str("call:*"),
            Scope::CallService(s) => write!(f, "call:{s}"),
            Scope::CallEntrypoint(s, e) => write!(f, "call:{s}.{e}"),
            Scope::Admin => f.write_str("admin"),
        }
    }
}

/// What a request needs a token to allow.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Need<'a> {
    /// Calling one entrypoint.
    Call(&'a str, &'a str),
    /// Reading one service's documentation: any scope that calls into it.
    Docs(&'a str),
    /// Reading the host's state (`GET /api/v1/...`): any valid token.
    Read,
    /// Managing the host: tokens, deployments.
    Admin,
}

impl Need<'_> {
    fn allowed_by(&self, scope: &Scope) -> bool {
        match (self, scope) {
            (_, Scope::Admin) | (Need::Read, _) => true,
            (Need::Admin, _) => false,
            (_, Scope::CallAll) => true,
            (Need::Call(s, _) | Need::Docs(s), Scope::CallService(t)) => s == t,
            (Need::Call(s, e), Scope::CallEntrypoint(ts, te)) => s == ts && e == te,
            (Need::Docs(s), Scope::CallEntrypoint(ts, _)) => s == ts,
        }
    }

    /// The narrowest scope that allows this, as `weft token create` takes it.
    pub(crate) fn scope(&self) -> String {
        match self {
            Need::Call(s, e) => format!("call:{s}.{e}"),
            Need::Docs(s) => format!("call:{s}"),
            Need::Read => "any scope".to_owned(),
            Need::Admin => "admin".to_owned(),
        }
    }

    /// Every scope that allows this, for messages.
    fn alternatives(&self) -> String {
        match self {
            Need::Call(s, e) => format!("`call:{s}.{e}`, `call:{s}`, `call:*` or `admin`"),
            Need::Docs(s) => format!("`call:{s}`, `call:{s}.ENTRYPOINT`, `call:*` or `admin`"),
            Need::Read => "any valid token".to_owned(),
            Need::Admin => "`admin`".to_owned(),
        }
    }

    fn create_hint(&self) -> String {
        let scope = match self {
            Need::Read => "call:*".to_owned(),
            other => other.scope(),
        };
        format!("`weft token create --scope {scope}`")
    }
}

/// A stored token: everything but its secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct TokenRecord {
    /// The public part of the token; `weft token revoke ID` takes it.
    pub(crate) id: String,
    /// A label for people.
    #[serde(default)]
    pub(crate) name: String,
    /// Hex SHA-256 of the secret bytes.
    pub(crate) hash: String,
    /// Scopes as written (`call:die_roller`).
    pub(crate) scopes: Vec<String>,
    /// When it was created, in ms since the Unix epoch.
    pub(crate) created_ms: u64,
    /// When it stops working, in ms since the Unix epoch.
    #[serde(default)]
    pub(crate) expires_ms: Option<u64>,
}

impl TokenRecord {
    fn expired(&self, now: u64) -> bool {
        self.expires_ms.is_some_and(|e| e <= now)
    }
}

impl From<&TokenRecord> for TokenInfo {
    fn from(r: &TokenRecord) -> Self {
        TokenInfo {
            id: r.id.clone(),
            name: r.name.clone(),
            scopes: r.scopes.clone(),
            created_ms: r.created_ms,
            expires_ms: r.expires_ms,
            expired: r.expired(now_ms()),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn from_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.is_ascii() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

fn digest(secret: &[u8]) -> String {
    hex(&Sha256::digest(secret))
}

/// Compares without exiting early, so the time taken says nothing about
/// where the first difference is.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A token that failed, with the scope that would have worked.
#[derive(Debug)]
pub(crate) struct Denied {
    pub(crate) error: Error,
    pub(crate) scope: String,
}

/// The tokens the host knows, cached in memory (the store has them too), and
/// whether requests must carry one.
#[derive(Debug)]
pub(crate) struct Auth {
    required: bool,
    tokens: RwLock<HashMap<String, TokenRecord>>,
}

impl Auth {
    pub(crate) fn new(required: bool, records: Vec<TokenRecord>) -> Self {
        Auth {
            required,
            tokens: RwLock::new(records.into_iter().map(|r| (r.id.clone(), r)).collect()),
        }
    }

    /// Whether requests must carry a token.
    pub(crate) fn required(&self) -> bool {
        self.required
    }

    /// Checks a request's `Authorization` header when tokens are required.
    pub(crate) fn check(&self, header: Option<&[u8]>, need: Need<'_>) -> Result<(), Denied> {
        if !self.required {
            return Ok(());
        }
        self.verify(header, need)
    }

    /// Checks a request's `Authorization` header, whether or not tokens are
    /// required.
    pub(crate) fn verify(&self, header: Option<&[u8]>, need: Need<'_>) -> Result<(), Denied> {
        let deny = |code: Code, what: String| Denied {
            error: Error::new(code, what),
            scope: need.scope(),
        };
        let Some(header) = header else {
            return Err(deny(
                Code::Unauthenticated,
                format!(
                    "this host requires a bearer token; this request needs one with {} \
                     (create one with {} on the host, then send `Authorization: Bearer <token>`, \
                     or `weft login HOST --token <token>` for the CLI)",
                    need.alternatives(),
                    need.create_hint()
                ),
            ));
        };
        let token = std::str::from_utf8(header)
            .ok()
            .and_then(|h| {
                let (scheme, rest) = h.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
            })
            .ok_or_else(|| {
                deny(
                    Code::Unauthenticated,
                    "the Authorization header is not `Bearer <token>`; send the token as `Authorization: Bearer weft_...`".into(),
                )
            })?;
        let record = self.lookup(token).ok_or_else(|| {
            deny(
                Code::Unauthenticated,
                format!(
                    "the bearer token is not valid: mistyped, revoked or from another host; \
                     this request needs a token with {} ({} creates one)",
                    need.alternatives(),
                    need.create_hint()
                ),
            )
        })?;
        if record.expired(now_ms()) {
            return Err(deny(
                Code::Unauthenticated,
                format!(
                    "token {} expired; create a new one with {}",
                    record.id,
                    need.create_hint()
                ),
            ));
        }
        let allowed = record
            .scopes
            .iter()
            .filter_map(|s| s.parse::<Scope>().ok())
            .any(|s| need.allowed_by(&s));
        if allowed {
            Ok(())
        } else {
            Err(deny(
                Code::PermissionDenied,
                format!(
                    "token {} has scopes [{}], but this request needs {}; \
                     create a token with {}",
                    record.id,
                    record.scopes.join(", "),
                    need.alternatives(),
                    need.create_hint()
                ),
            ))
        }
    }

    /// The record of a token whose secret matches.
    fn lookup(&self, token: &str) -> Option<TokenRecord> {
        let (id, secret) = token.strip_prefix(PREFIX)?.split_once('_')?;
        let secret = from_hex(secret)?;
        let tokens = self.tokens.read();
        let record = tokens.get(id)?;
        let want = from_hex(&record.hash)?;
        same(&Sha256::digest(&secret), &want).then(|| record.clone())
    }

    /// Makes a new token; the caller stores the record, then [`Auth::insert`]s it.
    /// Returns the record and the full token, which is shown once.
    pub(crate) fn mint(
        &self,
        name: String,
        scopes: Vec<String>,
        expires_in_secs: Option<u64>,
    ) -> Result<(TokenRecord, String), Error> {
        if scopes.is_empty() {
            return Err(Error::invalid_argument(
                "scopes",
                format!("a token needs at least one scope: {SCOPE_FORMS}"),
            ));
        }
        for s in &scopes {
            s.parse::<Scope>()?;
        }
        if expires_in_secs == Some(0) {
            return Err(Error::invalid_argument(
                "expires_in_secs",
                "a token that expires at once is useless; give a positive number of seconds, or none for no expiry",
            ));
        }
        let mut rng = rand::rng();
        let id = loop {
            let mut id = [0u8; 6];
            rng.fill_bytes(&mut id);
            let id = hex(&id);
            if !self.tokens.read().contains_key(&id) {
                break id;
            }
        };
        let mut secret = [0u8; 32];
        rng.fill_bytes(&mut secret);
        let created_ms = now_ms();
        let record = TokenRecord {
            id: id.clone(),
            name,
            hash: digest(&secret),
            scopes,
            created_ms,
            expires_ms: expires_in_secs.map(|s| created_ms.saturating_add(s.saturating_mul(1000))),
        };
        Ok((record, format!("{PREFIX}{id}_{}", hex(&secret))))
    }

    /// Makes a stored token usable.
    /// When tokens are required, a `call:*` credential for this run of the
    /// host: the instances it starts present it, and so does its gateway.
    /// Never stored, so it dies with the host.
    pub(crate) fn mint_mesh_token(&self) -> Option<String> {
        if !self.required() {
            return None;
        }
        let (record, token) = self
            .mint(
                "host instances (this run)".into(),
                vec!["call:*".into()],
                None,
            )
            .ok()?;
        self.insert(record);
        Some(token)
    }

    pub(crate) fn insert(&self, record: TokenRecord) {
        self.tokens.write().insert(record.id.clone(), record);
    }

    /// Makes a token unusable; returns whether it was known.
    pub(crate) fn remove(&self, id: &str) -> bool {
        self.tokens.write().remove(id).is_some()
    }

    /// Every token, oldest first.
    pub(crate) fn list(&self) -> Vec<TokenInfo> {
        let mut list: Vec<TokenInfo> = self.tokens.read().values().map(TokenInfo::from).collect();
        list.sort_by(|a, b| a.created_ms.cmp(&b.created_ms).then(a.id.cmp(&b.id)));
        list
    }

    /// Whether `token` is a valid, unexpired admin token.
    pub(crate) fn is_admin(&self, token: &str) -> bool {
        let header = format!("Bearer {token}");
        self.verify(Some(header.as_bytes()), Need::Admin).is_ok()
    }
}

/// Replaces `path` with `contents` at once (a reader sees the old file or
/// the new one, never half of one), readable only by the host's user.
pub(crate) fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use atomic_write_file::unix::OpenOptionsExt as _;
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = atomic_write_file::AtomicWriteFile::options()
        .preserve_mode(false)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents.as_bytes())?;
    file.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bearer(t: &str) -> Vec<u8> {
        format!("Bearer {t}").into_bytes()
    }

    #[test]
    fn scopes_parse_and_print() {
        for s in [
            "call:*",
            "call:die_roller",
            "call:die_roller.roll_die",
            "call:a.b.c",
            "admin",
        ] {
            assert_eq!(s.parse::<Scope>().unwrap().to_string(), s);
        }
        assert_eq!(
            "call:a.b.c".parse::<Scope>().unwrap(),
            Scope::CallEntrypoint("a.b".into(), "c".into())
        );
        for bad in ["", "call:", "call:Die", "root", "call:.x", "call:*.x"] {
            let e = bad.parse::<Scope>().unwrap_err();
            assert_eq!(e.code(), Code::InvalidArgument, "{bad}");
        }
    }

    #[test]
    fn needs_match_scopes() {
        let call = Need::Call("s", "e");
        assert!(call.allowed_by(&Scope::CallAll));
        assert!(call.allowed_by(&Scope::Admin));
        assert!(call.allowed_by(&Scope::CallService("s".into())));
        assert!(call.allowed_by(&Scope::CallEntrypoint("s".into(), "e".into())));
        assert!(!call.allowed_by(&Scope::CallEntrypoint("s".into(), "f".into())));
        assert!(!call.allowed_by(&Scope::CallService("t".into())));
        assert!(Need::Docs("s").allowed_by(&Scope::CallEntrypoint("s".into(), "f".into())));
        assert!(!Need::Admin.allowed_by(&Scope::CallAll));
        assert!(Need::Read.allowed_by(&Scope::CallService("t".into())));
    }

    #[test]
    fn tokens_verify_by_secret_scope_and_expiry() {
        let auth = Auth::new(true, vec![]);
        let (record, token) = auth.mint("t".into(), vec!["call:s".into()], None).unwrap();
        assert!(!record.hash.contains(&token[token.len() - 64..]));
        auth.insert(record.clone());
        auth.check(Some(&bearer(&token)), Need::Call("s", "e"))
            .unwrap();
        let denied = auth
            .check(Some(&bearer(&token)), Need::Call("t", "e"))
            .unwrap_err();
        assert_eq!(denied.error.code(), Code::PermissionDenied);
        assert_eq!(denied.scope, "call:t.e");
        let mut wrong = token.clone();
        wrong.pop();
        wrong.push(if token.ends_with('0') { '1' } else { '0' });
        let denied = auth
            .check(Some(&bearer(&wrong)), Need::Call("s", "e"))
            .unwrap_err();
        assert_eq!(denied.error.code(), Code::Unauthenticated);
        let denied = auth.check(None, Need::Admin).unwrap_err();
        assert!(denied.error.message().contains("`admin`"));

        let mut old = record;
        old.expires_ms = Some(1);
        auth.insert(old);
        let denied = auth
            .check(Some(&bearer(&token)), Need::Call("s", "e"))
            .unwrap_err();
        assert!(denied.error.message().contains("expired"), "{:?}", denied);
        assert!(auth.remove(&denied_id(&token)));
        assert!(Auth::new(false, vec![]).check(None, Need::Admin).is_ok());
    }

    fn denied_id(token: &str) -> String {
        token[PREFIX.len()..].split('_').next().unwrap().to_owned()
    }

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
