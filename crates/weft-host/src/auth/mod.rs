//! Bearer tokens with scopes: who may call what through the gateway and
//! `/api/v1`.
//!
//! A token is `weft_<id>_<secret>`: the id finds the record, the secret
//! proves possession. Only the SHA-256 of the 32 random secret bytes is
//! stored, so a copy of the data dir does not leak usable tokens.

use std::collections::HashMap;
use std::path::Path;

use parking_lot::RwLock;
use rand::RngCore as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use weft_core::{Code, Error};

use weft_host_api::tokens::{SCOPE_FORMS, TokenInfo};

use crate::time::now_ms;

mod mode;
mod scope;

pub use self::mode::AuthMode;
pub(crate) use self::mode::peer_is_local;
pub(crate) use self::scope::{Need, Scope};

/// The file in the data dir that holds the bootstrap admin token when auth
/// is on; readable only by the host's user (mode 0600).
pub const ADMIN_TOKEN_FILE: &str = "admin.token";

/// Every token starts with this, so that leaked tokens are easy to scan for.
const PREFIX: &str = "weft_";

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
}
