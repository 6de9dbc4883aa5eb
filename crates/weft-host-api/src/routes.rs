//! The routes of the host's HTTP API, described once: the host builds its
//! OpenAPI document (`GET /openapi.json`) and the hint of its 404 answers
//! from [`ROUTES`], and tools can list them.
//!
//! ```
//! use weft_host_api::routes::{self, Method};
//!
//! let tokens = routes::ROUTES
//!     .iter()
//!     .find(|r| r.path == "/api/v1/tokens" && r.method == Method::Post)
//!     .unwrap();
//! assert_eq!(tokens.operation, "tokens_create");
//! assert!(routes::hint().contains("GET|POST /api/v1/tokens"));
//! ```

use std::fmt;

use schemars::{JsonSchema, Schema, SchemaGenerator};
use weft_core::Notification;
use weft_registry::ServiceSummary;

use crate::deployments::{DeployAnswer, Killed, MainRequest, MainSet, ScaleRequest, VersionStatus};
use crate::events::{DeadLetter, PublishRequest, ReplayRequest, Replayed, TopicInfo};
use crate::hosts::HostInfo;
use crate::tokens::{CreateToken, CreatedToken, TokenInfo};
use crate::wire::Published;

/// Makes the schema of a type, adding its definitions to the generator.
pub type SchemaFn = fn(&mut SchemaGenerator) -> Schema;

/// The schema of `T`, as a [`SchemaFn`]: `schema::<TokenInfo>`.
pub fn schema<T: JsonSchema>(generator: &mut SchemaGenerator) -> Schema {
    generator.subschema_for::<T>()
}

/// An HTTP method the host answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `GET`
    Get,
    /// `POST`
    Post,
    /// `PUT`
    Put,
    /// `DELETE`
    Delete,
}

impl Method {
    /// The method as HTTP writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who may use a route when the host requires tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone: health and documentation pages.
    Public,
    /// Any valid token.
    Read,
    /// A token whose scopes allow calling the entrypoint in the path.
    Call,
    /// A token whose scopes allow calling into the service in the path.
    Docs,
    /// An `admin` token.
    Admin,
    /// An `admin` token; with tokens off, also anyone on the host's machine.
    TokenAdmin,
}

impl Access {
    /// How documentation says it.
    pub fn describe(self) -> &'static str {
        match self {
            Access::Public => "No token needed.",
            Access::Read => "Needs any valid token when the host requires tokens.",
            Access::Call => {
                "Needs a token that may call the entrypoint (`call:SERVICE.ENTRYPOINT`, `call:SERVICE`, `call:*` or `admin`) when the host requires tokens."
            }
            Access::Docs => {
                "Needs a token that may call into the service when the host requires tokens."
            }
            Access::Admin => "Needs an `admin` token when the host requires tokens.",
            Access::TokenAdmin => {
                "Needs an `admin` token, except from the host's own machine when tokens are off."
            }
        }
    }
}

/// Where a parameter goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum In {
    /// A `{name}` segment of the path.
    Path,
    /// The query string.
    Query,
    /// A request header.
    Header,
}

/// One parameter of a route.
#[derive(Debug, Clone, Copy)]
pub struct Param {
    /// Its name.
    pub name: &'static str,
    /// Where it goes.
    pub location: In,
    /// What it means.
    pub description: &'static str,
    /// Its schema.
    pub schema: SchemaFn,
}

/// What a route takes as its body.
#[derive(Debug, Clone, Copy)]
pub enum Body {
    /// Nothing.
    None,
    /// A JSON document of this schema.
    Json(SchemaFn),
    /// Raw bytes (`application/octet-stream`).
    Binary,
}

/// What a route answers when it succeeds.
#[derive(Debug, Clone, Copy)]
pub enum Answer {
    /// A JSON document of this schema.
    Json {
        /// The status: 200 or 201.
        status: u16,
        /// What the document is.
        description: &'static str,
        /// Its schema.
        schema: SchemaFn,
    },
    /// One JSON document of this schema per line (`application/x-ndjson`).
    NdJson {
        /// What each line is.
        description: &'static str,
        /// The schema of each line.
        schema: SchemaFn,
    },
    /// `204 No Content`.
    NoContent,
    /// An HTML page.
    Html,
    /// Plain text.
    Text,
}

/// One route of the host's HTTP API.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    /// The method.
    pub method: Method,
    /// The path, with `{name}` for each path parameter.
    pub path: &'static str,
    /// A stable name for the operation.
    pub operation: &'static str,
    /// What it does, in one sentence.
    pub summary: &'static str,
    /// Who may use it.
    pub access: Access,
    /// Its path, query and header parameters.
    pub params: &'static [Param],
    /// Its body.
    pub body: Body,
    /// Its answer when it succeeds.
    pub answer: Answer,
    /// The error statuses it may answer (with `application/problem+json`).
    pub errors: &'static [u16],
}

const fn path(name: &'static str, description: &'static str) -> Param {
    Param {
        name,
        location: In::Path,
        description,
        schema: schema::<String>,
    }
}

const fn query(name: &'static str, description: &'static str, schema: SchemaFn) -> Param {
    Param {
        name,
        location: In::Query,
        description,
        schema,
    }
}

const NAME: Param = path("name", "The service.");
const VERSION: Param = path("version", "The version, like `1.2.0`.");
const VERSION_QUERY: Param = query(
    "version",
    "The version: exact (`1.2.0`) or a requirement (`^1.2`); the main version when absent.",
    schema::<String>,
);

/// The API that tools use; the gateway's calls are described per service at
/// `/services/{name}/openapi.json`.
pub const ROUTES: &[Route] = &[
    Route {
        method: Method::Get,
        path: "/healthz",
        operation: "healthz",
        summary: "Whether the host is up: answers `ok`.",
        access: Access::Public,
        params: &[],
        body: Body::None,
        answer: Answer::Text,
        errors: &[],
    },
    Route {
        method: Method::Get,
        path: "/openapi.json",
        operation: "host_openapi",
        summary: "This document.",
        access: Access::Public,
        params: &[],
        body: Body::None,
        answer: Answer::Json {
            status: 200,
            description: "OpenAPI 3.1.",
            schema: schema::<serde_json::Value>,
        },
        errors: &[],
    },
    Route {
        method: Method::Get,
        path: "/docs",
        operation: "host_docs",
        summary: "Interactive documentation of this API.",
        access: Access::Public,
        params: &[],
        body: Body::None,
        answer: Answer::Html,
        errors: &[],
    },
    Route {
        method: Method::Get,
        path: "/api/v1/services",
        operation: "services",
        summary: "Services with their main and running versions.",
        access: Access::Read,
        params: &[],
        body: Body::None,
        answer: Answer::Json {
            status: 200,
            description: "The services, by name.",
            schema: schema::<Vec<ServiceSummary>>,
        },
        errors: &[401, 403],
    },
    Route {
        method: Method::Get,
        path: "/api/v1/hosts",
        operation: "hosts",
        summary: "The hosts of the cluster (this host alone when it runs on its own), with their state and instances.",
        access: Access::Read,
        params: &[],
        body: Body::None,
        answer: Answer::Json {
            status: 200,
            description: "The hosts, by name.",
            schema: schema::<Vec<HostInfo>>,
        },
        errors: &[401, 403],
    },
    Route {
        method: Method::Get,
        path: "/api/v1/notifications",
        operation: "notifications",
        summary: "Stored notifications, oldest first.",
        access: Access::Read,
        params: &[
            query("after", "Only those with a greater id.", schema::<u64>),
            query("limit", "At most this many, the newest.", schema::<u64>),
        ],
        body: Body::None,
        answer: Answer::Json {
            status: 200,
            description: "The notifications.",
            schema: schema::<Vec<Notification>>,
        },
        errors: &[400, 401, 403],
    },
    Route {
        method: Method::Get,
        path: "/api/v1/tokens",
        operation: "tokens_list",
        summary: "Every token, never its secret.",
        access: Access::TokenAdmin,
        params: &[],
        body: Body::None,
        answer: Answer::Json {
            status: 200,
            description: "The tokens.",
            schema: schema::<Vec<TokenInfo>>,
        },
        errors: &[401, 403],
    },
    Route {
        method: Method::Post,
        path: "/api/v1/tokens",
        operation: "tokens_create",
        summary: "Creates a token; the answer is the only time its secret is shown.",
        access: Access::TokenAdmin,
        params: &[],
        body: Body::Json(schema::<CreateToken>),
        answer: Answer::Json {
            status: 201,
            description: "The token, with `token` to send as `Authorization: Bearer <token>`.",
            schema: schema::<CreatedToken>,
        },
        errors: &[400, 401, 403],
    },
    Route {
        method: Method::Delete,
        path: "/api/v1/tokens/{id}",
        operation: "tokens_revoke",
        summary: "Revokes a token at once.",
        access: Access::TokenAdmin,
        params: &[path("id", "The token's id, as `weft token ls` shows it.")],
        body: Body::None,
        answer: Answer::NoContent,
        errors: &[401, 403, 404],
    },
    Route {
        method: Method::Get,
        path: "/api/v1/deployments",
        operation: "deployments",
        summary: "Every version of every service with its status and instances.",
        access: Access::Read,
        params: &[],
        body: Body::None,
        answer: Answer::Json {
            status: 200,
            description: "The versions.",
            schema: schema::<Vec<VersionStatus>>,
        },
        errors: &[401, 403],
    },
    Route {
        method: Method::Put,
        path: "/api/v1/services/{name}/versions/{version}",
        operation: "deploy",
        summary: "Deploys a version: the body is the service's executable. Answers once its instances have registered.",
        access: Access::Admin,
        params: DEPLOY_PARAMS,
        body: Body::Binary,
        answer: Answer::Json {
            status: 200,
            description: "The version, running; with `on`, what each host did.",
            schema: schema::<DeployAnswer>,
        },
        errors: &[400, 401, 403, 413, 500],
    },
    Route {
        method: Method::Post,
        path: "/api/v1/services/{name}/versions/{version}",
        operation: "deploy_post",
        summary: "Deploys a version, as `PUT` does.",
        access: Access::Admin,
        params: DEPLOY_PARAMS,
        body: Body::Binary,
        answer: Answer::Json {
            status: 200,
            description: "The version, running; with `on`, what each host did.",
            schema: schema::<DeployAnswer>,
        },
        errors: &[400, 401, 403, 413, 500],
    },
    Route {
        method: Method::Post,
        path: "/api/v1/services/{name}/versions/{version}/check",
        operation: "check_deploy",
        summary: "Checks a deploy before its executable is built: the token, the name, the version and the query are those a deploy would accept (no body, nothing changes).",
        access: Access::Admin,
        params: DEPLOY_PARAMS,
        body: Body::None,
        answer: Answer::NoContent,
        errors: &[400, 401, 403, 404],
    },
    Route {
        method: Method::Delete,
        path: "/api/v1/services/{name}/versions/{version}",
        operation: "kill_version",
        summary: "Stops a version's instances and forgets it (in a cluster: on every host that runs it).",
        access: Access::Admin,
        params: &[NAME, VERSION],
        body: Body::None,
        answer: Answer::Json {
            status: 200,
            description: "What was stopped.",
            schema: schema::<Killed>,
        },
        errors: &[400, 401, 403, 404],
    },
    Route {
        method: Method::Post,
        path: "/api/v1/services/{name}/versions/{version}/scale",
        operation: "scale",
        summary: "Runs this many instances of a version (in a cluster: on each host that runs it); answers once new ones have registered.",
        access: Access::Admin,
        params: &[NAME, VERSION],
        body: Body::Json(schema::<ScaleRequest>),
        answer: Answer::Json {
            status: 200,
            description: "The version; in a cluster, when other hosts run it too, what each host did.",
            schema: schema::<DeployAnswer>,
        },
        errors: &[400, 401, 403, 404],
    },
    Route {
        method: Method::Delete,
        path: "/api/v1/services/{name}",
        operation: "kill_service",
        summary: "Stops the main version, or with `all=true` every version. The main version cannot be stopped while others run.",
        access: Access::Admin,
        params: &[NAME, query("all", "Stop every version.", schema::<bool>)],
        body: Body::None,
        answer: Answer::Json {
            status: 200,
            description: "What was stopped.",
            schema: schema::<Killed>,
        },
        errors: &[400, 401, 403, 404],
    },
    Route {
        method: Method::Put,
        path: "/api/v1/services/{name}/main",
        operation: "set_main",
        summary: "Makes a version the main one: calls without a version go there.",
        access: Access::Admin,
        params: &[NAME],
        body: Body::Json(schema::<MainRequest>),
        answer: Answer::Json {
            status: 200,
            description: "The new main version.",
            schema: schema::<MainSet>,
        },
        errors: &[400, 401, 403, 404],
    },
    Route {
        method: Method::Get,
        path: "/api/v1/services/{name}/logs",
        operation: "logs",
        summary: "The newest lines of output of a service's instances; with `follow`, new lines as they come.",
        access: Access::Read,
        params: &[
            NAME,
            query("version", "Only this version's lines.", schema::<String>),
            query("n", "How many of the newest lines (100).", schema::<u64>),
            query("follow", "Go on with new lines.", schema::<bool>),
        ],
        body: Body::None,
        answer: Answer::NdJson {
            description: "One line of output.",
            schema: schema::<crate::deployments::LogLine>,
        },
        errors: &[400, 401, 403, 404],
    },
    Route {
        method: Method::Get,
        path: "/api/v1/events/topics",
        operation: "event_topics",
        summary: "Every topic with its consumer groups: position, backlog, in flight, dead letters and subscribers.",
        access: Access::Read,
        params: &[],
        body: Body::None,
        answer: Answer::Json {
            status: 200,
            description: "The topics.",
            schema: schema::<Vec<TopicInfo>>,
        },
        errors: &[401, 403],
    },
    Route {
        method: Method::Get,
        path: "/api/v1/events/topics/{topic}/tail",
        operation: "event_tail",
        summary: "A topic's events; without `after`, the last `n`; with `follow`, new ones as they come.",
        access: Access::Read,
        params: &[
            path("topic", "The topic."),
            query("after", "Only events with a greater id.", schema::<u64>),
            query("n", "How many (20).", schema::<u64>),
            query("follow", "Go on with new events.", schema::<bool>),
        ],
        body: Body::None,
        answer: Answer::NdJson {
            description: "One event.",
            schema: schema::<crate::events::TailEvent>,
        },
        errors: &[400, 401, 403, 404],
    },
    Route {
        method: Method::Get,
        path: "/api/v1/events/dead",
        operation: "event_dead",
        summary: "Dead letters: events that failed every delivery attempt.",
        access: Access::Read,
        params: &[query("topic", "Only this topic's.", schema::<String>)],
        body: Body::None,
        answer: Answer::Json {
            status: 200,
            description: "The dead letters.",
            schema: schema::<Vec<DeadLetter>>,
        },
        errors: &[400, 401, 403],
    },
    Route {
        method: Method::Post,
        path: "/api/v1/events/replay",
        operation: "event_replay",
        summary: "Delivers dead letters to their group again.",
        access: Access::Admin,
        params: &[],
        body: Body::Json(schema::<ReplayRequest>),
        answer: Answer::Json {
            status: 200,
            description: "How many were replayed.",
            schema: schema::<Replayed>,
        },
        errors: &[400, 401, 403, 404],
    },
    Route {
        method: Method::Post,
        path: "/api/v1/events/publish",
        operation: "event_publish",
        summary: "Stores an event; answers once it is on disk.",
        access: Access::Admin,
        params: &[],
        body: Body::Json(schema::<PublishRequest>),
        answer: Answer::Json {
            status: 200,
            description: "The event's id, and whether its idempotency key was seen before.",
            schema: schema::<Published>,
        },
        errors: &[400, 401, 403, 413],
    },
    Route {
        method: Method::Post,
        path: "/services/{name}/{entrypoint}",
        operation: "call",
        summary: "Calls an entrypoint with a JSON object of named arguments.",
        access: Access::Call,
        params: &[
            NAME,
            path("entrypoint", "The entrypoint."),
            VERSION_QUERY,
            Param {
                name: "Weft-Version",
                location: In::Header,
                description: "The version, as the `version` query parameter (send only one).",
                schema: schema::<String>,
            },
            Param {
                name: "Weft-Timeout",
                location: In::Header,
                description: "The most seconds the call may take (decimal); 30 when absent.",
                schema: schema::<f64>,
            },
        ],
        body: Body::Json(schema::<serde_json::Map<String, serde_json::Value>>),
        answer: Answer::Json {
            status: 200,
            description: "What the entrypoint returned.",
            schema: schema::<serde_json::Value>,
        },
        errors: &[400, 401, 403, 404, 413, 500, 503, 504],
    },
    Route {
        method: Method::Get,
        path: "/services/{name}/openapi.json",
        operation: "service_openapi",
        summary: "The OpenAPI document of a service.",
        access: Access::Docs,
        params: &[NAME, VERSION_QUERY],
        body: Body::None,
        answer: Answer::Json {
            status: 200,
            description: "OpenAPI 3.1.",
            schema: schema::<serde_json::Value>,
        },
        errors: &[401, 403, 404, 503],
    },
    Route {
        method: Method::Get,
        path: "/services/{name}/docs",
        operation: "service_docs",
        summary: "Interactive documentation of a service.",
        access: Access::Public,
        params: &[NAME],
        body: Body::None,
        answer: Answer::Html,
        errors: &[404],
    },
];

const DEPLOY_PARAMS: &[Param] = &[
    NAME,
    VERSION,
    query("instances", "How many instances to run (1).", schema::<u32>),
    query(
        "env",
        "An environment variable for the instances, `K=V`; repeat for several.",
        schema::<Vec<String>>,
    ),
    query(
        "on",
        "In a cluster: the hosts to run it on, names separated by commas, or `all` (default: this host).",
        schema::<String>,
    ),
];

/// The routes for people, one path per entry with its methods:
/// `GET|POST /api/v1/tokens, ...`; the host's 404 answers list them.
pub fn hint() -> String {
    let mut entries: Vec<(&str, Vec<Method>)> = Vec::new();
    for route in ROUTES {
        match entries.iter_mut().find(|(p, _)| *p == route.path) {
            Some((_, methods)) if !methods.contains(&route.method) => methods.push(route.method),
            Some(_) => {}
            None => entries.push((route.path, vec![route.method])),
        }
    }
    entries
        .iter()
        .map(|(path, methods)| {
            let methods: Vec<&str> = methods.iter().map(|m| m.as_str()).collect();
            format!("{} {path}", methods.join("|"))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_path_parameter_is_declared() {
        for route in ROUTES {
            let declared: Vec<&str> = route
                .params
                .iter()
                .filter(|p| p.location == In::Path)
                .map(|p| p.name)
                .collect();
            let in_path: Vec<&str> = route
                .path
                .split('/')
                .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
                .collect();
            assert_eq!(declared, in_path, "{} {}", route.method, route.path);
        }
    }

    #[test]
    fn operations_are_unique_and_the_hint_names_every_route() {
        let hint = hint();
        let mut seen = std::collections::HashSet::new();
        for route in ROUTES {
            assert!(seen.insert(route.operation), "{}", route.operation);
            assert!(hint.contains(route.path), "{}", route.path);
        }
        assert!(hint.contains("PUT|POST|DELETE /api/v1/services/{name}/versions/{version}"));
    }
}
