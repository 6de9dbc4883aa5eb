//! The types that travel between services, callers and the host.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use weft_core::name::Version;
use weft_core::spec::ServiceSpec;

/// One running process of one version of a service, as it registers with the
/// host and as callers see it in their [`Cache`](crate::Cache).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceInfo {
    /// Unique instance id; registering the same id again replaces the entry.
    pub id: String,
    /// The service name (see [`weft_core::name::validate`]).
    pub service: String,
    /// The version this instance runs.
    pub version: Version,
    /// Where callers connect: `tcp://127.0.0.1:4312` or `unix:///path`.
    pub address: String,
    /// The service's entrypoints, for the gateway and docs.
    pub spec: ServiceSpec,
    /// The process id, when the instance runs on the host's machine.
    #[serde(default)]
    pub pid: Option<u32>,
    /// When the instance started, in milliseconds since the Unix epoch.
    #[serde(default)]
    pub started_ms: u64,
    /// The host the instance registered with, by name; set by that host.
    /// In a cluster, every host lists every host's instances, and this
    /// tells them apart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
}

/// Asks the host to register (or re-register) an instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegisterRequest {
    /// The instance to register.
    pub instance: InstanceInfo,
}

/// The host's answer to a [`RegisterRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterReply {
    /// The instance must renew its lease (keepalive) more often than this.
    pub lease_ttl_ms: u64,
    /// The host's epoch; it changes when the host restarts.
    pub host_epoch: String,
}

/// One change in the registry, as the host streams it to watchers.
///
/// A watch stream starts with a [`WatchEvent::Snapshot`] and continues with
/// the other variants.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum WatchEvent {
    /// The whole registry: every instance and every main version.
    Snapshot {
        /// The host's epoch; a new one means the host restarted.
        epoch: String,
        /// Every registered instance.
        instances: Vec<InstanceInfo>,
        /// The main version of each service that has one.
        mains: BTreeMap<String, Version>,
    },
    /// An instance registered (or re-registered, replacing the entry with its id).
    Up {
        /// The instance.
        instance: InstanceInfo,
    },
    /// An instance deregistered or its lease lapsed.
    Down {
        /// The instance id.
        id: String,
        /// Its service.
        service: String,
    },
    /// A service's main version changed.
    Main {
        /// The service.
        service: String,
        /// Its new main version.
        version: Version,
    },
}

/// One service in a listing (`weft ls`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ServiceSummary {
    /// The service name.
    pub name: String,
    /// Its main version, if one is set (it may have no running instances).
    #[schemars(with = "Option<String>")]
    pub main: Option<Version>,
    /// Its running versions, lowest first.
    pub versions: Vec<VersionSummary>,
}

/// One running version of a service in a [`ServiceSummary`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct VersionSummary {
    /// The version.
    #[schemars(with = "String")]
    pub version: Version,
    /// How many instances of it are registered.
    pub instances: usize,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn watch_events_are_tagged_snake_case() {
        let down = WatchEvent::Down {
            id: "i1".into(),
            service: "die_roller".into(),
        };
        assert_eq!(
            serde_json::to_value(&down).unwrap(),
            json!({ "type": "down", "id": "i1", "service": "die_roller" })
        );
        let main = WatchEvent::Main {
            service: "die_roller".into(),
            version: Version::new(1, 2, 3),
        };
        assert_eq!(
            serde_json::to_value(&main).unwrap(),
            json!({ "type": "main", "service": "die_roller", "version": "1.2.3" })
        );
        let snapshot = WatchEvent::Snapshot {
            epoch: "e".into(),
            instances: vec![],
            mains: BTreeMap::from([("a".to_owned(), Version::new(1, 0, 0))]),
        };
        let value = serde_json::to_value(&snapshot).unwrap();
        assert_eq!(value["type"], "snapshot");
        assert_eq!(value["mains"]["a"], "1.0.0");
        for event in [down, main, snapshot] {
            let json = serde_json::to_string(&event).unwrap();
            assert_eq!(serde_json::from_str::<WatchEvent>(&json).unwrap(), event);
        }
    }

    #[test]
    fn instance_info_defaults_optional_fields() {
        let info: InstanceInfo = serde_json::from_value(json!({
            "id": "i1",
            "service": "s",
            "version": "1.0.0",
            "address": "tcp://127.0.0.1:1",
            "spec": { "name": "s" },
        }))
        .unwrap();
        assert_eq!(info.pid, None);
        assert_eq!(info.started_ms, 0);
        let up = WatchEvent::Up { instance: info };
        let json = serde_json::to_string(&up).unwrap();
        assert!(json.starts_with(r#"{"type":"up","instance":{"#), "{json}");
        assert_eq!(serde_json::from_str::<WatchEvent>(&json).unwrap(), up);
    }
}
