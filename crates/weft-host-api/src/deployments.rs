//! Deployments: what `GET /api/v1/deployments` lists and what the deploy routes take.
//!
//! ```
//! use weft_host_api::deployments::{Deployments, Status};
//!
//! let body = r#"[{"service": "die_roller", "version": "1.0.0", "main": true,
//!     "status": "running", "reason": null, "wanted": 1, "registered": 1,
//!     "since_ms": 1795348578000, "deployed_ms": 1795348577000,
//!     "sha256": "ab12", "instances": []}]"#;
//! let list: Deployments = serde_json::from_str(body).unwrap();
//! assert_eq!(list[0].status, Status::Running);
//! assert_eq!(list[0].version.to_string(), "1.0.0");
//! ```

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use weft_core::name::Version;

/// The most instances one version may run.
pub const MAX_INSTANCES: u32 = 64;

/// The state of a version, as `weft ls` shows it.
///
/// ```
/// use weft_host_api::deployments::Status;
///
/// assert_eq!(serde_json::to_string(&Status::Crashing).unwrap(), r#""crashing""#);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Every wanted instance is registered.
    Running,
    /// Some wanted instances have not registered yet.
    Starting,
    /// An instance keeps exiting soon after it starts; `reason` says how.
    Crashing,
    /// Deployed with no instances (`weft scale NAME VERSION 0`).
    Stopped,
    /// Registered with the host but not deployed by it (started by hand).
    External,
}

/// Where one instance of a deployed version is.
///
/// ```
/// use weft_host_api::deployments::InstanceState;
///
/// assert_eq!(serde_json::to_string(&InstanceState::Restarting).unwrap(), r#""restarting""#);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum InstanceState {
    /// Its process runs and it is registered with the host.
    Running,
    /// Its process runs but it has not registered yet.
    Starting,
    /// It exited and waits to be started again.
    Restarting,
    /// It was stopped and will not start again.
    Stopped,
}

/// One version of one service: `GET /api/v1/deployments` lists these, and
/// a deploy or a scale answers with the version's.
///
/// ```
/// use weft_host_api::deployments::{Status, VersionStatus};
///
/// let v = VersionStatus {
///     service: "die_roller".into(),
///     version: "1.0.0".parse().unwrap(),
///     main: true,
///     status: Status::Stopped,
///     reason: None,
///     wanted: 0,
///     registered: 0,
///     since_ms: None,
///     deployed_ms: Some(1_795_348_577_000),
///     sha256: Some("ab12".into()),
///     instances: Vec::new(),
///     hosts: Vec::new(),
///     host: Some("box1".into()),
/// };
/// let json = serde_json::to_value(&v).unwrap();
/// assert_eq!(json["status"], "stopped");
/// assert_eq!(json["host"], "box1");
/// assert!(json["reason"].is_null());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct VersionStatus {
    /// The service's name.
    pub service: String,
    /// The version.
    #[schemars(with = "String")]
    pub version: Version,
    /// Whether calls without a version go here.
    pub main: bool,
    /// How the version is doing.
    pub status: Status,
    /// For `crashing`: how the last instance exited; for a version of
    /// another host that is not up: that.
    pub reason: Option<String>,
    /// Instances wanted (for `external`: the registered ones).
    pub wanted: u32,
    /// Instances registered with the host.
    pub registered: usize,
    /// When the oldest registered instance started, ms since the Unix epoch.
    pub since_ms: Option<u64>,
    /// When the version was deployed, ms since the Unix epoch (not for
    /// `external`).
    pub deployed_ms: Option<u64>,
    /// The SHA-256 of the executable, hex (not for `external`).
    pub sha256: Option<String>,
    /// The instances the host runs of it (none for `external`).
    pub instances: Vec<InstanceStatus>,
    /// The hosts its registered instances run on, by name; in a cluster,
    /// every host lists every host's versions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// The host it is deployed on, which runs its instances, by name (none
    /// for `external`); in a cluster, every host lists every host's
    /// deployments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
}

/// One instance of a deployed version.
///
/// ```
/// use weft_host_api::deployments::{InstanceState, InstanceStatus};
///
/// let i: InstanceStatus = serde_json::from_str(
///     r#"{"id": "die_roller-1.0.0-1", "pid": 4242, "registered": true,
///         "state": "running", "started_ms": 1795348578000, "restarts": 0,
///         "last_exit": null}"#,
/// )
/// .unwrap();
/// assert_eq!(i.state, InstanceState::Running);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct InstanceStatus {
    /// `{service}-{version}-{n}`.
    pub id: String,
    /// The process id, while the process runs.
    pub pid: Option<u32>,
    /// Whether this process is registered with the host.
    pub registered: bool,
    /// Where it is.
    pub state: InstanceState,
    /// When its current (or last) process started, ms since the Unix epoch.
    pub started_ms: u64,
    /// How often it was started again after exiting.
    pub restarts: u32,
    /// How its last process ended, like `exited with status 3`.
    pub last_exit: Option<String>,
}

/// What `GET /api/v1/deployments` answers: every version, deployed (here
/// or, in a cluster, on another host) or started by hand (`external`),
/// ordered by service, version and host.
pub type Deployments = Vec<VersionStatus>;

/// The query of `PUT|POST /api/v1/services/{name}/versions/{version}`,
/// whose body is the executable: `?instances=2&env=RUST_LOG%3Ddebug`.
///
/// ```
/// use weft_host_api::deployments::DeployQuery;
///
/// let q = DeployQuery::default();
/// assert_eq!(q.instances, 1);
/// assert!(q.env.is_empty());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DeployQuery {
    /// How many instances to run, 1 to [`MAX_INSTANCES`].
    #[serde(default = "one")]
    pub instances: u32,
    /// Environment variables of the instances, each `NAME=VALUE`; the
    /// parameter repeats for each variable.
    #[serde(default)]
    pub env: Vec<String>,
    /// In a cluster, the hosts to run it on: names separated by commas,
    /// or `all` (every host that is up); by default the host asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on: Option<String>,
}

fn one() -> u32 {
    1
}

impl Default for DeployQuery {
    fn default() -> Self {
        DeployQuery {
            instances: one(),
            env: Vec::new(),
            on: None,
        }
    }
}

/// The body of `POST /api/v1/services/{name}/versions/{version}/scale`.
///
/// ```
/// use weft_host_api::deployments::ScaleRequest;
///
/// let r: ScaleRequest = serde_json::from_str(r#"{"instances": 3}"#).unwrap();
/// assert_eq!(r.instances, 3);
/// assert!(serde_json::from_str::<ScaleRequest>(r#"{"instances": 3, "x": 1}"#).is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScaleRequest {
    /// How many instances to run, 0 (stopped) to [`MAX_INSTANCES`].
    pub instances: u32,
}

/// The body of `PUT /api/v1/services/{name}/main`.
///
/// ```
/// use weft_host_api::deployments::MainRequest;
///
/// let r: MainRequest = serde_json::from_str(r#"{"version": "1.1.0"}"#).unwrap();
/// assert_eq!(r.version, "1.1.0");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MainRequest {
    /// The version that calls without a version go to from now on. A
    /// string, so that the host can say what is wrong with one that is not
    /// semver.
    pub version: String,
}

/// What `PUT /api/v1/services/{name}/main` answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct MainSet {
    /// The service.
    pub service: String,
    /// Its main version now.
    #[schemars(with = "String")]
    pub main: Version,
}

/// What `DELETE /api/v1/services/{name}[/versions/{version}]` answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Killed {
    /// The versions stopped and forgotten.
    #[schemars(with = "Vec<String>")]
    pub killed: Vec<Version>,
    /// In a cluster, for a version named: what each host that ran it did
    /// (`status` is none for a host that stopped it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on: Vec<HostOutcome>,
}

/// What one host of a cluster did with a deploy, a scale or a kill: the
/// version's status there, or why it could not.
///
/// ```
/// use weft_host_api::deployments::HostOutcome;
///
/// let o: HostOutcome = serde_json::from_str(
///     r#"{"host": "b", "error": "host `b` is not up in the cluster"}"#,
/// )
/// .unwrap();
/// assert!(o.status.is_none());
/// assert!(!o.ok());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct HostOutcome {
    /// The host, by name.
    pub host: String,
    /// The version on that host afterwards (none after a kill, or after an
    /// error).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<VersionStatus>,
    /// What went wrong on that host; the others went on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl HostOutcome {
    /// Whether the host did what it was asked.
    pub fn ok(&self) -> bool {
        self.error.is_none()
    }
}

/// What a deploy with `on` (several hosts of a cluster) answers, and a
/// scale of a version that runs on other hosts too: one outcome per host.
///
/// ```
/// use weft_host_api::deployments::{DeployAnswer, Placed};
///
/// let a: DeployAnswer = serde_json::from_str(
///     r#"{"service": "echo", "version": "1.0.0", "on": [{"host": "a", "error": "boom"}]}"#,
/// )
/// .unwrap();
/// let DeployAnswer::Hosts(Placed { on, .. }) = a else { panic!() };
/// assert_eq!(on[0].host, "a");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Placed {
    /// The service.
    pub service: String,
    /// The version.
    #[schemars(with = "String")]
    pub version: Version,
    /// Each host asked, in the order of the hosts' names.
    pub on: Vec<HostOutcome>,
}

impl Placed {
    /// The hosts that failed, with their errors: `b: ...; c: ...`, or
    /// none when every host did what it was asked.
    pub fn failures(&self) -> Option<String> {
        let failed: Vec<String> = self
            .on
            .iter()
            .filter_map(|o| o.error.as_ref().map(|e| format!("{}: {e}", o.host)))
            .collect();
        (!failed.is_empty()).then(|| failed.join("; "))
    }
}

/// What a deploy or a scale answers: the version on this host (a deploy
/// without `on`; a scale of a version only this host runs), or one
/// outcome per host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
#[allow(clippy::large_enum_variant)]
pub enum DeployAnswer {
    /// One outcome per host of the cluster.
    Hosts(Placed),
    /// The version on this host.
    Here(VersionStatus),
}

impl DeployAnswer {
    /// The hosts that failed, with their errors, if any did.
    pub fn failures(&self) -> Option<String> {
        match self {
            DeployAnswer::Hosts(p) => p.failures(),
            DeployAnswer::Here(_) => None,
        }
    }
}

/// One line of an instance's output: `GET /api/v1/services/{name}/logs`
/// answers these, one JSON object per line (`application/x-ndjson`).
///
/// ```
/// use weft_host_api::deployments::LogLine;
///
/// let l: LogLine = serde_json::from_str(
///     r#"{"seq": 7, "time_ms": 1795348578000, "instance": "die_roller-1.0.0-1",
///         "stream": "stderr", "line": "listening"}"#,
/// )
/// .unwrap();
/// assert_eq!(l.stream, "stderr");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct LogLine {
    /// Increases with every line the host reads.
    pub seq: u64,
    /// When the host read it, in milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// The instance that wrote it, like `die_roller-1.0.0-1`.
    pub instance: String,
    /// `stdout`, `stderr`, or `weft` for what the supervisor says about the instance.
    pub stream: String,
    /// The text, without its newline.
    pub line: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_status_keeps_its_wire_form() {
        let v = VersionStatus {
            service: "s".into(),
            version: Version::new(1, 2, 0),
            main: false,
            status: Status::External,
            reason: None,
            wanted: 2,
            registered: 2,
            since_ms: Some(5),
            deployed_ms: None,
            sha256: None,
            instances: vec![InstanceStatus {
                id: "s-1.2.0-1".into(),
                pid: None,
                registered: false,
                state: InstanceState::Restarting,
                started_ms: 3,
                restarts: 1,
                last_exit: Some("exited with status 3".into()),
            }],
            hosts: Vec::new(),
            host: None,
        };
        let json = serde_json::to_string(&v).unwrap();
        assert_eq!(
            json,
            r#"{"service":"s","version":"1.2.0","main":false,"status":"external","reason":null,"wanted":2,"registered":2,"since_ms":5,"deployed_ms":null,"sha256":null,"instances":[{"id":"s-1.2.0-1","pid":null,"registered":false,"state":"restarting","started_ms":3,"restarts":1,"last_exit":"exited with status 3"}]}"#
        );
        assert_eq!(serde_json::from_str::<VersionStatus>(&json).unwrap(), v);
    }

    #[test]
    fn a_version_status_names_its_host_and_reads_without_one() {
        let json = r#"{"service":"s","version":"1.0.0","main":true,"status":"running","reason":null,"wanted":1,"registered":1,"since_ms":5,"deployed_ms":4,"sha256":"ab","instances":[]}"#;
        let mut v: VersionStatus = serde_json::from_str(json).unwrap();
        assert_eq!(v.host, None);
        v.host = Some("b".into());
        let back = serde_json::to_value(&v).unwrap();
        assert_eq!(back["host"], "b");
        assert_eq!(serde_json::from_value::<VersionStatus>(back).unwrap(), v);
    }

    #[test]
    fn a_deploy_query_defaults_to_one_instance() {
        let q: DeployQuery = serde_json::from_str("{}").unwrap();
        assert_eq!(q, DeployQuery::default());
    }
}
