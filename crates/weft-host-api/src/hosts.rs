//! Hosts: what `GET /api/v1/hosts` lists, the hosts of the cluster.
//!
//! ```
//! use weft_host_api::hosts::{HostInfo, HostState};
//!
//! let h: HostInfo = serde_json::from_str(
//!     r#"{"name": "box1", "address": "10.0.0.7:7400", "state": "up",
//!         "instances": 3, "started_ms": 1795348578000, "heartbeat_ms": 1795348580000}"#,
//! )
//! .unwrap();
//! assert_eq!(h.state, HostState::Up);
//! ```

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Whether a host is alive, by its last heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum HostState {
    /// Its last heartbeat is recent.
    Up,
    /// It has not written for two lease times: killed, cut off, or its
    /// machine is down. Its instances have left every registry.
    Down,
    /// It is up, but some of its instances cannot be reached from the host
    /// that answers at the addresses they were announced with (often an
    /// `--advertise` that names an address other machines cannot reach).
    /// They stay listed; calls from here go to other instances.
    Unreachable,
}

/// One host of the cluster (on a host of its own: itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct HostInfo {
    /// The host's name (`weft host --name`, the machine's name by default).
    pub name: String,
    /// Where the host answers: its wire protocol and HTTP.
    pub address: String,
    /// Whether it is alive.
    pub state: HostState,
    /// How many instances are registered with it.
    pub instances: usize,
    /// When it started, in milliseconds since the Unix epoch.
    pub started_ms: u64,
    /// When it last wrote its heartbeat, in milliseconds since the Unix epoch.
    pub heartbeat_ms: u64,
    /// Its instances that the host that answers cannot reach, with why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unreachable: Vec<Unreachable>,
}

/// An instance that cannot be reached at its announced address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Unreachable {
    /// The instance's id.
    pub instance: String,
    /// The address it was announced with.
    pub address: String,
    /// What connecting to it said.
    pub error: String,
}
