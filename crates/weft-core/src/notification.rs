use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::Error;

/// How urgently a notification needs a person.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Something worth knowing.
    Info,
    /// Something that may need attention.
    Warning,
    /// Something that needs attention now.
    Critical,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        })
    }
}

impl FromStr for Severity {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        match s.to_ascii_lowercase().as_str() {
            "info" => Ok(Severity::Info),
            "warning" | "warn" => Ok(Severity::Warning),
            "critical" | "crit" => Ok(Severity::Critical),
            _ => Err(Error::invalid_argument(
                "severity",
                format!("`{s}` is not a severity: use info, warning or critical"),
            )),
        }
    }
}

/// A message for people, sent by a service with `ctx.notify(..)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Notification {
    /// Sequence number assigned by the host (0 before it is stored).
    #[serde(default)]
    pub id: u64,
    /// Milliseconds since the Unix epoch, when it was sent.
    pub time_ms: u64,
    /// How urgent it is.
    pub severity: Severity,
    /// The text.
    pub message: String,
    /// The service that sent it.
    pub service: String,
    /// The version of that service.
    #[serde(default)]
    pub version: String,
    /// The instance that sent it.
    #[serde(default)]
    pub instance: String,
}
