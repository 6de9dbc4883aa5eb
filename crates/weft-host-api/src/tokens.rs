//! Tokens: what `/api/v1/tokens` takes and shows.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The scopes a token can have, for messages and documentation.
pub const SCOPE_FORMS: &str = "`call:*`, `call:SERVICE`, `call:SERVICE.ENTRYPOINT` or `admin`";

/// A token as `GET /api/v1/tokens` lists it: everything but its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TokenInfo {
    /// The public part of the token; `weft token revoke ID` takes it.
    pub id: String,
    /// A label for people.
    pub name: String,
    /// Scopes as written: `call:*`, `call:SERVICE`, `call:SERVICE.ENTRYPOINT`
    /// or `admin`.
    pub scopes: Vec<String>,
    /// When it was created, in milliseconds since the Unix epoch.
    pub created_ms: u64,
    /// When it stops working, in milliseconds since the Unix epoch.
    pub expires_ms: Option<u64>,
    /// Whether it has stopped working.
    pub expired: bool,
}

/// The body of `POST /api/v1/tokens`.
///
/// ```
/// let req: weft_host_api::tokens::CreateToken =
///     serde_json::from_str(r#"{"scopes": ["call:yatzee"], "name": "ci"}"#)?;
/// assert_eq!(req.expires_in_secs, None);
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    /// What the token allows: `call:*`, `call:SERVICE`,
    /// `call:SERVICE.ENTRYPOINT` or `admin`.
    pub scopes: Vec<String>,
    /// A label for people.
    #[serde(default)]
    pub name: String,
    /// How long the token works; forever when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub expires_in_secs: Option<u64>,
}

/// The answer to `POST /api/v1/tokens`: the only time the secret is shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CreatedToken {
    /// The public part of the token.
    pub id: String,
    /// The secret to send as `Authorization: Bearer <token>`.
    pub token: String,
    /// A label for people.
    pub name: String,
    /// What the token allows.
    pub scopes: Vec<String>,
    /// When it was created, in milliseconds since the Unix epoch.
    pub created_ms: u64,
    /// When it stops working, in milliseconds since the Unix epoch.
    pub expires_ms: Option<u64>,
}
