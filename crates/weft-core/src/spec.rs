//! What a service offers: its entrypoints, their parameters and results as
//! JSON Schemas. The `#[weft::service]` macro builds a [`ServiceSpec`]; the
//! host keeps it in the registry and the gateway turns it into OpenAPI.

use serde::{Deserialize, Serialize};

/// A JSON Schema (draft 2020-12), as a JSON value.
pub type Schema = serde_json::Value;

/// The JSON Schema of `T`.
///
/// ```
/// let schema = weft_core::spec::schema_for::<u8>();
/// assert_eq!(schema["type"], "integer");
/// ```
pub fn schema_for<T: schemars::JsonSchema + ?Sized>() -> Schema {
    serde_json::to_value(schemars::schema_for!(T)).unwrap_or(serde_json::Value::Bool(true))
}

/// A service's entrypoints and documentation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceSpec {
    /// The service name.
    pub name: String,
    /// The doc comment of the service's impl block.
    #[serde(default)]
    pub description: String,
    /// Entrypoints in declaration order.
    #[serde(default)]
    pub entrypoints: Vec<EntrypointSpec>,
    /// Event handlers in declaration order.
    #[serde(default)]
    pub event_handlers: Vec<EventHandlerSpec>,
    /// The topics the service declares it publishes.
    #[serde(default)]
    pub publishes: Vec<TopicSpec>,
}

impl ServiceSpec {
    /// The entrypoint called `name`.
    pub fn entrypoint(&self, name: &str) -> Option<&EntrypointSpec> {
        self.entrypoints.iter().find(|e| e.name == name)
    }
}

/// One entrypoint: a name, its named parameters and its result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntrypointSpec {
    /// The name callers use.
    pub name: String,
    /// The method's doc comment.
    #[serde(default)]
    pub description: String,
    /// Named parameters, in declaration order.
    #[serde(default)]
    pub params: Vec<ParamSpec>,
    /// Schema of the success value.
    pub result: Schema,
    /// Schema of the application error, when the entrypoint returns a
    /// `Result` with an error type that has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Schema>,
    /// Whether the entrypoint returns a stream of items.
    #[serde(default)]
    pub streaming: bool,
    /// Whether the entrypoint only reads (`#[entrypoint(get)]`): the
    /// gateway also takes it as `GET` with the arguments in the query.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,
    /// Whether running the entrypoint twice does what running it once does
    /// (`#[entrypoint(idempotent)]`, and every `get`): callers send such a
    /// call again, to another instance, when the connection to the first
    /// was lost before it answered.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub idempotent: bool,
    /// At most this many calls run at once on an instance
    /// (`#[entrypoint(max_concurrency = N)]`); `None`: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<u32>,
    /// With `max_concurrency`: how many calls may wait for a turn
    /// (`queue = M`, 0 unless set); beyond them a call is refused at once
    /// as overloaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<u32>,
}

/// One named parameter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParamSpec {
    /// The parameter's name.
    pub name: String,
    /// Whether callers must pass it (false for `Option<_>` parameters and
    /// parameters with a default).
    pub required: bool,
    /// Its JSON Schema.
    pub schema: Schema,
    /// The value the service uses when the argument is missing
    /// (`#[arg(default = ...)]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<serde_json::Value>,
    /// A value to show in documentation (`#[arg(example = ...)]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub example: Option<serde_json::Value>,
}

/// One event handler: the topic it takes, how events are spread over the
/// service's instances, and the payload's schema.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventHandlerSpec {
    /// The handler's name (the method name); with the service it names the
    /// consumer group.
    pub name: String,
    /// The method's doc comment.
    #[serde(default)]
    pub description: String,
    /// The topic it handles.
    pub topic: String,
    /// `pool`, `broadcast` or `ordered`.
    pub mode: String,
    /// For `ordered`: the payload field whose value is the ordering key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ordered_by: Option<String>,
    /// Failed attempts after which an event goes to the dead letters.
    pub max_attempts: u32,
    /// Schema of the event payload.
    pub payload: Schema,
}

/// A topic a service publishes on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopicSpec {
    /// The topic.
    pub topic: String,
    /// What the events mean.
    #[serde(default)]
    pub description: String,
    /// Schema of the event payload.
    pub payload: Schema,
}
