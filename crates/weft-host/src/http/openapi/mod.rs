//! OpenAPI 3.1 documents: one per service, generated from its
//! [`ServiceSpec`], and one for the host's own API.
//!
//! Entrypoint schemas come from schemars, each a standalone JSON Schema
//! with its own `$defs`. OpenAPI wants shared definitions in
//! `components/schemas`, so definitions are moved there and every `$ref`
//! is rewritten; two different types with the same name get distinct names.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};
use weft::name::Version;
use weft::spec::{EntrypointSpec, ServiceSpec};

use crate::gateway::MAX_DEPTH;

/// The name of the problem+json schema in `components/schemas`; not a name
/// a Rust type would get from schemars.
const PROBLEM: &str = "weft.Problem";

/// Error answers every call may get: status, component name, description.
const ERRORS: [(&str, &str, &str); 8] = [
    (
        "400",
        "BadRequest",
        "An argument is missing, has the wrong type or is unknown (`field` names it), or the body is not a JSON object, or nests too deeply.",
    ),
    (
        "401",
        "Unauthorized",
        "The host requires a bearer token and none (or no valid one) was sent; `scope` names the scope needed.",
    ),
    (
        "403",
        "Forbidden",
        "The token's scopes do not allow this call; `scope` names the scope needed.",
    ),
    ("404", "NotFound", "No such service, version or entrypoint."),
    (
        "413",
        "PayloadTooLarge",
        "The body or the result is larger than the limit.",
    ),
    (
        "500",
        "InternalError",
        "The entrypoint returned an error of its own (`code` is `application`, `kind` names it), or something failed inside weft.",
    ),
    (
        "503",
        "Unavailable",
        "No instance of the version can take the call right now; retrying later may work.",
    ),
    (
        "504",
        "Timeout",
        "The call did not finish within its deadline (`Weft-Timeout`, 30 s by default).",
    ),
];

fn problem_schema() -> Value {
    json!({
        "type": "object",
        "description": "An RFC 9457 problem: what went wrong and what to do.",
        "required": ["type", "title", "status", "code", "detail"],
        "properties": {
            "type": { "type": "string", "description": "Always `about:blank`: `code` tells errors apart." },
            "title": { "type": "string", "description": "The HTTP status text." },
            "status": { "type": "integer", "description": "The HTTP status." },
            "code": {
                "type": "string",
                "description": "The weft error code.",
                "enum": ["not_found", "invalid_argument", "application", "deadline_exceeded",
                         "unavailable", "cancelled", "unauthenticated", "permission_denied",
                         "resource_exhausted", "internal"]
            },
            "detail": { "type": "string", "description": "What happened and what to do." },
            "field": { "type": "string", "description": "The argument that failed (`invalid_argument`)." },
            "service": { "type": "string", "description": "The service that raised the error." },
            "entrypoint": { "type": "string", "description": "The entrypoint that raised the error." },
            "kind": { "type": "string", "description": "The application error's kind (`application`)." },
            "scope": { "type": "string", "description": "The token scope that would allow the request (401, 403)." }
        }
    })
}

fn error_responses(components: &mut Map<String, Value>) -> Map<String, Value> {
    let mut responses = Map::new();
    let mut refs = Map::new();
    for (status, name, description) in ERRORS {
        responses.insert(
            name.to_owned(),
            json!({
                "description": description,
                "content": { "application/problem+json": {
                    "schema": { "$ref": format!("#/components/schemas/{PROBLEM}") }
                } }
            }),
        );
        refs.insert(
            status.to_owned(),
            json!({ "$ref": format!("#/components/responses/{name}") }),
        );
    }
    components.insert("responses".to_owned(), Value::Object(responses));
    refs
}

/// Parameters every gateway call takes: which version, how long.
fn call_parameters() -> Value {
    json!([
        {
            "name": "version",
            "in": "query",
            "required": false,
            "description": "The version to call: exact (`1.2.0`) or a requirement (`^1.2`); the main version when absent.",
            "schema": { "type": "string" }
        },
        {
            "name": "Weft-Version",
            "in": "header",
            "required": false,
            "description": "The version to call, as the `version` query parameter (send only one).",
            "schema": { "type": "string" }
        },
        {
            "name": "Weft-Timeout",
            "in": "header",
            "required": false,
            "description": "The most seconds the call may take (decimal); 30 when absent.",
            "schema": { "type": "number", "exclusiveMinimum": 0 }
        }
    ])
}

/// Moves `$defs` of standalone schemas into `components/schemas`.
#[derive(Debug, Default)]
struct Schemas {
    components: BTreeMap<String, Value>,
}

/// An OpenAPI component name: letters, digits, `.`, `-`, `_`.
fn component_name(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if cleaned.is_empty() {
        "Schema".to_owned()
    } else {
        cleaned
    }
}

/// Decodes a JSON Pointer token (`~1` is `/`, `~0` is `~`).
fn unescape_pointer(token: &str) -> String {
    token.replace("~1", "/").replace("~0", "~")
}

fn rewrite_refs(value: &mut Value, renames: &BTreeMap<String, String>, root: Option<&str>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get_mut("$ref") {
                let target = r
                    .strip_prefix("#/$defs/")
                    .or_else(|| r.strip_prefix("#/definitions/"))
                    .map(unescape_pointer);
                if let Some(new) = target.and_then(|t| renames.get(&t)) {
                    *r = format!("#/components/schemas/{new}");
                } else if r == "#"
                    && let Some(root) = root
                {
                    *r = format!("#/components/schemas/{root}");
                }
            }
            for v in map.values_mut() {
                rewrite_refs(v, renames, root);
            }
        }
        Value::Array(items) => {
            for v in items {
                rewrite_refs(v, renames, root);
            }
        }
        _ => {}
    }
}

fn has_root_ref(value: &Value) -> bool {
    match value {
        Value::Object(map) => {
            map.get("$ref").and_then(Value::as_str) == Some("#") || map.values().any(has_root_ref)
        }
        Value::Array(items) => items.iter().any(has_root_ref),
        _ => false,
    }
}

impl Schemas {
    /// A free name for `value` based on `wanted`: the same name when it is
    /// free or already holds an equal schema.
    fn name_for(&self, wanted: &str, value: &Value, taken: &BTreeMap<String, String>) -> String {
        let base = component_name(wanted);
        let mut name = base.clone();
        for n in 2.. {
            let in_use = taken.values().any(|t| *t == name);
            match self.components.get(&name) {
                Some(existing) if existing == value && !in_use => return name,
                None if !in_use => return name,
                _ => name = format!("{base}_{n}"),
            }
        }
        name
    }

    /// Returns `schema` ready to embed in the document, its definitions
    /// moved to the components.
    fn adopt(&mut self, schema: &Value) -> Value {
        let mut schema = schema.clone();
        let Value::Object(map) = &mut schema else {
            return schema;
        };
        map.remove("$schema");
        let mut defs = match map.remove("$defs") {
            Some(Value::Object(d)) => d,
            _ => Map::new(),
        };
        if let Some(Value::Object(d)) = map.remove("definitions") {
            defs.extend(d);
        }
        // A recursive root type refers to itself as `#`; it becomes a
        // component too, since `#` would mean the whole document.
        let root = has_root_ref(&schema).then(|| {
            let title = schema
                .get("title")
                .and_then(Value::as_str)
                .unwrap_or("Root")
                .to_owned();
            self.name_for(&title, &schema, &BTreeMap::new())
        });
        // A definition compares with an existing component as it would be
        // stored, its refs rewritten as if no name were taken: the same type
        // used by two entrypoints is stored once.
        let tentative: BTreeMap<String, String> = defs
            .keys()
            .map(|n| (n.clone(), component_name(n)))
            .collect();
        let mut renames = BTreeMap::new();
        for (name, def) in &defs {
            let mut candidate = def.clone();
            rewrite_refs(&mut candidate, &tentative, root.as_deref());
            let chosen = self.name_for(name, &candidate, &renames);
            renames.insert(name.clone(), chosen);
        }
        for (name, mut def) in defs {
            rewrite_refs(&mut def, &renames, root.as_deref());
            if let Some(target) = renames.get(&name) {
                self.components.insert(target.clone(), def);
            }
        }
        rewrite_refs(&mut schema, &renames, root.as_deref());
        match root {
            Some(root) => {
                self.components.insert(root.clone(), schema);
                json!({ "$ref": format!("#/components/schemas/{root}") })
            }
            None => schema,
        }
    }
}

/// The first line of a doc comment, as a summary.
fn summary(description: &str) -> &str {
    description
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("")
}

fn operation(
    service: &str,
    ep: &EntrypointSpec,
    schemas: &mut Schemas,
    errors: &Map<String, Value>,
) -> Value {
    let mut properties = Map::new();
    let mut required = Vec::new();
    for p in &ep.params {
        properties.insert(p.name.clone(), schemas.adopt(&p.schema));
        if p.required {
            required.push(Value::String(p.name.clone()));
        }
    }
    let has_required = !required.is_empty();
    let mut body = json!({
        "type": "object",
        "properties": properties,
        "additionalProperties": false,
    });
    if has_required {
        body["required"] = Value::Array(required);
    }
    let mut responses = Map::new();
    responses.insert(
        "200".to_owned(),
        json!({
            "description": format!("What `{}` returned.", ep.name),
            "content": { "application/json": { "schema": schemas.adopt(&ep.result) } }
        }),
    );
    responses.extend(errors.clone());
    let mut description = ep.description.trim().to_owned();
    if let Some(error) = &ep.error {
        // The application error's own schema, for the 500 answer's `kind`.
        let adopted = schemas.adopt(error);
        let name = format!("{service}.{}.Error", ep.name);
        let name = schemas.name_for(&name, &adopted, &BTreeMap::new());
        schemas.components.insert(name.clone(), adopted);
        if !description.is_empty() {
            description.push_str("\n\n");
        }
        description.push_str(&format!(
            "On failure it answers 500 with `code` `application` and a `kind` \
             described by `#/components/schemas/{name}`."
        ));
    }
    let mut op = json!({
        "operationId": ep.name,
        "tags": [service],
        "parameters": call_parameters(),
        "requestBody": {
            "required": has_required,
            "description": format!(
                "The named arguments of `{}` as one JSON object (an empty body is `{{}}`); \
                 at most {MAX_DEPTH} levels deep.", ep.name),
            "content": { "application/json": { "schema": body } }
        },
        "responses": responses,
    });
    let summary = summary(&description);
    if !summary.is_empty() {
        op["summary"] = json!(summary);
        op["description"] = json!(description);
    }
    op
}

fn security(auth_required: bool, components: &mut Map<String, Value>) -> Option<Value> {
    components.insert(
        "securitySchemes".to_owned(),
        json!({ "bearer": {
            "type": "http",
            "scheme": "bearer",
            "description": "A token from `weft token create --scope ...`."
        } }),
    );
    auth_required.then(|| json!([{ "bearer": [] }]))
}

/// The OpenAPI 3.1 document of one version of a service: a `POST` per
/// entrypoint.
pub(crate) fn service_document(
    spec: &ServiceSpec,
    version: &Version,
    auth_required: bool,
) -> Value {
    let mut components = Map::new();
    let errors = error_responses(&mut components);
    let mut schemas = Schemas::default();
    let mut paths = Map::new();
    let mut streaming = Vec::new();
    for ep in &spec.entrypoints {
        if ep.streaming {
            streaming.push(format!("`{}`", ep.name));
            continue;
        }
        paths.insert(
            format!("/services/{}/{}", spec.name, ep.name),
            json!({ "post": operation(&spec.name, ep, &mut schemas, &errors) }),
        );
    }
    let webhooks = event_webhooks(spec, &mut schemas);
    let mut description = spec.description.trim().to_owned();
    if !description.is_empty() {
        description.push_str("\n\n");
    }
    description.push_str(&format!(
        "Every entrypoint is `POST /services/{name}/{{entrypoint}}` with a JSON object of named \
         arguments; the result comes back as JSON, errors as `application/problem+json`. \
         This document describes version {version}; `?version=` picks another.",
        name = spec.name
    ));
    if !streaming.is_empty() {
        description.push_str(&format!(
            " Streaming entrypoints ({}) are not callable over HTTP yet; call them with the weft SDK.",
            streaming.join(", ")
        ));
    }
    let mut component_schemas: Map<String, Value> = schemas.components.into_iter().collect();
    component_schemas.insert(PROBLEM.to_owned(), problem_schema());
    components.insert("schemas".to_owned(), Value::Object(component_schemas));
    let security = security(auth_required, &mut components);
    let mut doc = json!({
        "openapi": "3.1.0",
        "info": {
            "title": spec.name,
            "version": version.to_string(),
            "description": description,
        },
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "tags": [{ "name": spec.name, "description": summary(&spec.description) }],
        "paths": paths,
        "components": components,
    });
    if !webhooks.is_empty() {
        doc["webhooks"] = Value::Object(webhooks);
    }
    if let Some(security) = security {
        doc["security"] = security;
    }
    doc
}

/// The service's events as OpenAPI webhooks: each event handler (what the
/// service takes) and each topic it declares it publishes (what others may
/// take), with the payload's schema. Events are not HTTP requests; webhooks
/// are the place OpenAPI 3.1 has for messages that arrive by other ways, and
/// the docs page shows them beside the entrypoints.
fn event_webhooks(spec: &ServiceSpec, schemas: &mut Schemas) -> Map<String, Value> {
    let mut hooks = Map::new();
    for h in &spec.event_handlers {
        let mode = match (&h.ordered_by, h.mode.as_str()) {
            (Some(field), _) => format!(
                "ordered by `{field}`: events with the same `{field}` are handled one at a time, in publish order"
            ),
            (None, "broadcast") => "broadcast: every instance handles every event".to_owned(),
            (None, _) => "pool: each event is handled by one instance".to_owned(),
        };
        let mut description = h.description.trim().to_owned();
        if !description.is_empty() {
            description.push_str("\n\n");
        }
        description.push_str(&format!(
            "Handles events published on `{topic}` (`ctx.publish(\"{topic}\", &event)`, or \
             `weft events publish {topic} JSON`), at least once; {mode}. After {attempts} failed \
             attempts an event goes to the dead letters (`weft events dead {topic}`).",
            topic = h.topic,
            attempts = h.max_attempts,
        ));
        hooks.insert(
            format!("{} → {}", h.topic, h.name),
            json!({ "post": {
                "operationId": format!("on_{}", h.name),
                "tags": [format!("{} events", spec.name)],
                "summary": format!("Takes `{}` events", h.topic),
                "description": description,
                "requestBody": {
                    "required": true,
                    "description": format!("The event payload on `{}`.", h.topic),
                    "content": { "application/json": { "schema": schemas.adopt(&h.payload) } }
                },
                "responses": { "200": { "description": "Handled (acknowledged to the host)." } }
            } }),
        );
    }
    for t in &spec.publishes {
        let mut description = t.description.trim().to_owned();
        if !description.is_empty() {
            description.push_str("\n\n");
        }
        description.push_str(&format!(
            "`{}` publishes these on `{}`; handle them with \
             `#[event_handler(topic = \"{}\")]`.",
            spec.name, t.topic, t.topic
        ));
        hooks.insert(
            t.topic.clone(),
            json!({ "post": {
                "operationId": format!("publishes_{}", component_name(&t.topic)),
                "tags": [format!("{} events", spec.name)],
                "summary": format!("Publishes `{}`", t.topic),
                "description": description,
                "requestBody": {
                    "required": true,
                    "content": { "application/json": { "schema": schemas.adopt(&t.payload) } }
                },
                "responses": { "200": { "description": "Stored by the host." } }
            } }),
        );
    }
    hooks
}

/// The schema of a deployed version in `GET /api/v1/deployments`.
fn version_status_schema() -> Value {
    json!({
        "type": "object",
        "required": ["service", "version", "main", "status", "wanted", "registered", "instances"],
        "properties": {
            "service": { "type": "string" },
            "version": { "type": "string" },
            "main": { "type": "boolean", "description": "Whether calls without a version go here." },
            "status": { "enum": ["running", "starting", "crashing", "stopped", "external"] },
            "reason": { "type": ["string", "null"], "description": "For `crashing`: how the last instance exited." },
            "wanted": { "type": "integer" },
            "registered": { "type": "integer" },
            "since_ms": { "type": ["integer", "null"] },
            "deployed_ms": { "type": ["integer", "null"] },
            "sha256": { "type": ["string", "null"] },
            "instances": { "type": "array", "items": { "type": "object", "properties": {
                "id": { "type": "string" },
                "pid": { "type": ["integer", "null"] },
                "registered": { "type": "boolean" },
                "state": { "type": "string" },
                "started_ms": { "type": "integer" },
                "restarts": { "type": "integer" },
                "last_exit": { "type": ["string", "null"] }
            } } }
        }
    })
}

/// The OpenAPI 3.1 document of the host's own HTTP API.
pub(crate) fn host_document() -> Value {
    let mut components = Map::new();
    let errors = error_responses(&mut components);
    let error = |statuses: &[&str]| -> Value {
        statuses
            .iter()
            .filter_map(|s| errors.get(*s).map(|v| ((*s).to_owned(), v.clone())))
            .collect::<Map<String, Value>>()
            .into()
    };
    let with = |mut base: Value, extra: Value| {
        if let (Some(b), Value::Object(e)) = (base.as_object_mut(), extra) {
            b.extend(e);
        }
        base
    };
    let json_ok = |description: &str, schema: Value| json!({ "200": { "description": description, "content": { "application/json": { "schema": schema } } } });
    let token_info = json!({
        "type": "object",
        "required": ["id", "name", "scopes", "created_ms", "expired"],
        "properties": {
            "id": { "type": "string" },
            "name": { "type": "string" },
            "scopes": { "type": "array", "items": { "type": "string" } },
            "created_ms": { "type": "integer", "description": "Milliseconds since the Unix epoch." },
            "expires_ms": { "type": ["integer", "null"] },
            "expired": { "type": "boolean" }
        }
    });
    let mut schemas = Map::new();
    schemas.insert(PROBLEM.to_owned(), problem_schema());
    schemas.insert("TokenInfo".to_owned(), token_info);
    schemas.insert("VersionStatus".to_owned(), version_status_schema());
    components.insert("schemas".to_owned(), Value::Object(schemas));
    let _ = security(false, &mut components);
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "weft host API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The host's HTTP API, on the same port as the wire protocol. \
                When the host requires tokens (it listens beyond loopback, or runs with \
                `--auth required`), everything but `/healthz`, the docs and these documents \
                needs `Authorization: Bearer <token>`: reading needs any valid token, \
                `/api/v1/tokens` needs `admin`. Each service's own API is at \
                `/services/{name}/openapi.json` and `/services/{name}/docs`."
        },
        "security": [{ "bearer": [] }, {}],
        "paths": {
            "/healthz": { "get": {
                "operationId": "healthz", "summary": "Whether the host is up.",
                "security": [],
                "responses": { "200": { "description": "`ok`", "content": { "text/plain": { "schema": { "type": "string" } } } } }
            } },
            "/api/v1/services": { "get": {
                "operationId": "services", "summary": "Services with their main and running versions.",
                "responses": with(json_ok("The services, by name.", json!({
                    "type": "array",
                    "items": { "type": "object", "properties": {
                        "name": { "type": "string" },
                        "main": { "type": ["string", "null"] },
                        "versions": { "type": "array", "items": { "type": "object", "properties": {
                            "version": { "type": "string" }, "instances": { "type": "integer" } } } }
                    } }
                })), error(&["401", "403"]))
            } },
            "/api/v1/notifications": { "get": {
                "operationId": "notifications", "summary": "Stored notifications, oldest first.",
                "parameters": [
                    { "name": "after", "in": "query", "description": "Only those with a greater id.", "schema": { "type": "integer", "minimum": 0 } },
                    { "name": "limit", "in": "query", "description": "At most this many, the newest.", "schema": { "type": "integer", "minimum": 0 } }
                ],
                "responses": with(json_ok("The notifications.", json!({ "type": "array", "items": { "type": "object" } })), error(&["400", "401", "403"]))
            } },
            "/api/v1/tokens": {
                "get": {
                    "operationId": "tokens_list", "summary": "Every token (never its secret). Needs `admin`.",
                    "responses": with(json_ok("The tokens.", json!({ "type": "array", "items": { "$ref": "#/components/schemas/TokenInfo" } })), error(&["401", "403"]))
                },
                "post": {
                    "operationId": "tokens_create", "summary": "Creates a token; the answer is the only time its secret is shown. Needs `admin`.",
                    "requestBody": { "required": true, "content": { "application/json": { "schema": {
                        "type": "object", "required": ["scopes"], "additionalProperties": false,
                        "properties": {
                            "scopes": { "type": "array", "items": { "type": "string" },
                                "description": "`call:*`, `call:SERVICE`, `call:SERVICE.ENTRYPOINT` or `admin`." },
                            "name": { "type": "string" },
                            "expires_in_secs": { "type": "integer", "minimum": 1 }
                        } } } } },
                    "responses": with(json!({ "201": { "description": "The token, with `token` to send as `Authorization: Bearer <token>`.",
                        "content": { "application/json": { "schema": { "type": "object", "properties": {
                            "id": { "type": "string" }, "token": { "type": "string" } } } } } } }),
                        error(&["400", "401", "403"]))
                }
            },
            "/api/v1/tokens/{id}": { "delete": {
                "operationId": "tokens_revoke", "summary": "Revokes a token at once. Needs `admin`.",
                "parameters": [{ "name": "id", "in": "path", "required": true, "schema": { "type": "string" } }],
                "responses": with(json!({ "204": { "description": "Revoked." } }), error(&["401", "403", "404"]))
            } },
            "/api/v1/deployments": { "get": {
                "operationId": "deployments", "summary": "Every version of every service with its status and instances.",
                "responses": with(json_ok("The versions.", json!({ "type": "array", "items": { "$ref": "#/components/schemas/VersionStatus" } })), error(&["401", "403"]))
            } },
            "/api/v1/services/{name}/versions/{version}": {
                "put": {
                    "operationId": "deploy", "summary": "Deploys a version: the body is the service's executable. Answers once its instances have registered. Needs `admin`.",
                    "parameters": [
                        { "name": "name", "in": "path", "required": true, "schema": { "type": "string" } },
                        { "name": "version", "in": "path", "required": true, "schema": { "type": "string" } },
                        { "name": "instances", "in": "query", "schema": { "type": "integer", "minimum": 1 } },
                        { "name": "env", "in": "query", "description": "`K=V`; repeat for several.", "schema": { "type": "array", "items": { "type": "string" } }, "explode": true }
                    ],
                    "requestBody": { "required": true, "content": { "application/octet-stream": { "schema": { "type": "string", "contentMediaType": "application/octet-stream" } } } },
                    "responses": with(json_ok("The version, running.", json!({ "$ref": "#/components/schemas/VersionStatus" })), error(&["400", "401", "403", "413", "500"]))
                },
                "delete": {
                    "operationId": "kill_version", "summary": "Stops a version's instances and forgets it. Needs `admin`.",
                    "parameters": [
                        { "name": "name", "in": "path", "required": true, "schema": { "type": "string" } },
                        { "name": "version", "in": "path", "required": true, "schema": { "type": "string" } }
                    ],
                    "responses": with(json_ok("What was stopped.", json!({ "type": "object", "properties": { "killed": { "type": "array", "items": { "type": "string" } } } })), error(&["400", "401", "403", "404"]))
                }
            },
            "/api/v1/services/{name}/versions/{version}/scale": { "post": {
                "operationId": "scale", "summary": "Runs this many instances of a version. Needs `admin`.",
                "parameters": [
                    { "name": "name", "in": "path", "required": true, "schema": { "type": "string" } },
                    { "name": "version", "in": "path", "required": true, "schema": { "type": "string" } }
                ],
                "requestBody": { "required": true, "content": { "application/json": { "schema": {
                    "type": "object", "required": ["instances"], "properties": { "instances": { "type": "integer", "minimum": 0 } } } } } },
                "responses": with(json_ok("The version.", json!({ "$ref": "#/components/schemas/VersionStatus" })), error(&["400", "401", "403", "404"]))
            } },
            "/api/v1/services/{name}": { "delete": {
                "operationId": "kill_service", "summary": "Stops the main version, or with `all=true` every version. The main version cannot be stopped while others run. Needs `admin`.",
                "parameters": [
                    { "name": "name", "in": "path", "required": true, "schema": { "type": "string" } },
                    { "name": "all", "in": "query", "schema": { "type": "boolean" } }
                ],
                "responses": with(json_ok("What was stopped.", json!({ "type": "object", "properties": { "killed": { "type": "array", "items": { "type": "string" } } } })), error(&["400", "401", "403", "404"]))
            } },
            "/api/v1/services/{name}/main": { "put": {
                "operationId": "set_main", "summary": "Makes a version the main one: calls without a version go there. Needs `admin`.",
                "parameters": [{ "name": "name", "in": "path", "required": true, "schema": { "type": "string" } }],
                "requestBody": { "required": true, "content": { "application/json": { "schema": {
                    "type": "object", "required": ["version"], "properties": { "version": { "type": "string" } } } } } },
                "responses": with(json_ok("The new main version.", json!({ "type": "object" })), error(&["400", "401", "403", "404"]))
            } },
            "/api/v1/services/{name}/logs": { "get": {
                "operationId": "logs", "summary": "The newest lines of output of a service's instances, one JSON object per line; with `follow`, new lines as they come.",
                "parameters": [
                    { "name": "name", "in": "path", "required": true, "schema": { "type": "string" } },
                    { "name": "version", "in": "query", "schema": { "type": "string" } },
                    { "name": "n", "in": "query", "schema": { "type": "integer", "minimum": 0 } },
                    { "name": "follow", "in": "query", "schema": { "type": "boolean" } }
                ],
                "responses": with(json!({ "200": { "description": "`seq`, `time_ms`, `instance`, `stream`, `line` per line.", "content": { "application/x-ndjson": { "schema": { "type": "string" } } } } }), error(&["400", "401", "403", "404"]))
            } },
            "/services/{name}/{entrypoint}": { "post": {
                "operationId": "call", "summary": "Calls an entrypoint with a JSON object of named arguments.",
                "parameters": [
                    { "name": "name", "in": "path", "required": true, "schema": { "type": "string" } },
                    { "name": "entrypoint", "in": "path", "required": true, "schema": { "type": "string" } }
                ],
                "requestBody": { "content": { "application/json": { "schema": { "type": "object" } } } },
                "responses": with(json_ok("What the entrypoint returned.", json!({})),
                    error(&["400", "401", "403", "404", "413", "500", "503", "504"]))
            } },
            "/services/{name}/openapi.json": { "get": {
                "operationId": "service_openapi", "summary": "The OpenAPI document of a service (`?version=` picks a version).",
                "parameters": [
                    { "name": "name", "in": "path", "required": true, "schema": { "type": "string" } },
                    { "name": "version", "in": "query", "schema": { "type": "string" } }
                ],
                "responses": with(json_ok("OpenAPI 3.1.", json!({ "type": "object" })), error(&["401", "403", "404", "503"]))
            } },
            "/services/{name}/docs": { "get": {
                "operationId": "service_docs", "summary": "Interactive documentation of a service.",
                "security": [],
                "parameters": [{ "name": "name", "in": "path", "required": true, "schema": { "type": "string" } }],
                "responses": { "200": { "description": "An HTML page.", "content": { "text/html": {} } } }
            } }
        },
        "components": components,
    })
}

#[cfg(test)]
mod tests {
    use weft::spec::ParamSpec;

    use super::*;

    fn find_refs(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref") {
                    out.push(r.clone());
                }
                m.values().for_each(|v| find_refs(v, out));
            }
            Value::Array(a) => a.iter().for_each(|v| find_refs(v, out)),
            _ => {}
        }
    }

    /// Every `$ref` in `doc` points at something that exists.
    fn assert_refs_resolve(doc: &Value) {
        let mut refs = Vec::new();
        find_refs(doc, &mut refs);
        assert!(!refs.is_empty());
        for r in refs {
            let pointer = r.strip_prefix('#').expect("a local ref");
            assert!(doc.pointer(pointer).is_some(), "dangling {r}");
        }
    }

    fn entry(name: &str, params: Vec<ParamSpec>, result: Value) -> EntrypointSpec {
        EntrypointSpec {
            name: name.into(),
            description: format!("Does {name}.\n\nAt length."),
            params,
            result,
            error: None,
            streaming: false,
        }
    }

    #[test]
    fn defs_move_to_components_and_collisions_are_renamed() {
        let item_a = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": "Order",
            "type": "object",
            "properties": { "item": { "$ref": "#/$defs/Item" } },
            "$defs": {
                "Item": { "type": "object", "properties": { "tags": { "$ref": "#/$defs/Tag" } } },
                "Tag": { "type": "string" }
            }
        });
        let item_b = json!({
            "title": "Other",
            "$ref": "#/$defs/Item",
            "$defs": { "Item": { "type": "integer" } }
        });
        let recursive = json!({
            "title": "Tree",
            "type": "object",
            "properties": { "kids": { "type": "array", "items": { "$ref": "#" } } }
        });
        let spec = ServiceSpec {
            name: "shop".into(),
            description: "Sells things.".into(),
            entrypoints: vec![
                entry(
                    "order",
                    vec![
                        ParamSpec {
                            name: "order".into(),
                            required: true,
                            schema: item_a,
                        },
                        ParamSpec {
                            name: "note".into(),
                            required: false,
                            schema: json!({"type": "string"}),
                        },
                    ],
                    item_b,
                ),
                entry("tree", vec![], recursive),
            ],
            event_handlers: vec![],
            publishes: vec![],
        };
        let doc = service_document(&spec, &Version::new(1, 2, 3), true);
        assert_eq!(doc["openapi"], "3.1.0");
        assert_eq!(doc["info"]["version"], "1.2.3");
        let op = &doc["paths"]["/services/shop/order"]["post"];
        assert_eq!(op["summary"], "Does order.");
        let body = &op["requestBody"]["content"]["application/json"]["schema"];
        assert_eq!(body["required"], json!(["order"]));
        assert!(body["properties"]["order"].get("$schema").is_none());
        assert!(body["properties"]["order"].get("$defs").is_none());
        let schemas = &doc["components"]["schemas"];
        assert_eq!(schemas["Item"]["type"], "object");
        assert_eq!(schemas["Item_2"]["type"], "integer");
        assert_eq!(
            op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/Item_2"
        );
        assert_eq!(
            op["responses"]["404"]["$ref"],
            "#/components/responses/NotFound"
        );
        assert_eq!(
            schemas["Tree"]["properties"]["kids"]["items"]["$ref"],
            "#/components/schemas/Tree"
        );
        assert_eq!(doc["security"], json!([{ "bearer": [] }]));
        assert_refs_resolve(&doc);
    }

    #[test]
    fn events_appear_as_webhooks_with_their_payloads() {
        use weft::spec::{EventHandlerSpec, TopicSpec};
        let order = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": "Order",
            "type": "object",
            "properties": { "customer": { "type": "string" }, "item": { "$ref": "#/$defs/Item" } },
            "$defs": { "Item": { "type": "object", "properties": { "sku": { "type": "string" } } } }
        });
        let spec = ServiceSpec {
            name: "shop".into(),
            description: String::new(),
            entrypoints: vec![],
            event_handlers: vec![EventHandlerSpec {
                name: "on_order".into(),
                description: "Ships orders.".into(),
                topic: "orders.created".into(),
                mode: "ordered".into(),
                ordered_by: Some("customer".into()),
                max_attempts: 3,
                payload: order.clone(),
            }],
            publishes: vec![TopicSpec {
                topic: "orders.shipped".into(),
                description: "An order left the warehouse.".into(),
                payload: order,
            }],
        };
        let doc = service_document(&spec, &Version::new(1, 0, 0), false);
        assert_refs_resolve(&doc);
        let handler = &doc["webhooks"]["orders.created → on_order"]["post"];
        let text = handler["description"].as_str().unwrap();
        assert!(text.starts_with("Ships orders."), "{text}");
        assert!(text.contains("ordered by `customer`"), "{text}");
        assert!(text.contains("After 3 failed attempts"), "{text}");
        let payload = &handler["requestBody"]["content"]["application/json"]["schema"];
        assert_eq!(
            payload["properties"]["item"]["$ref"],
            "#/components/schemas/Item"
        );
        let published = &doc["webhooks"]["orders.shipped"]["post"];
        assert!(
            published["description"]
                .as_str()
                .unwrap()
                .starts_with("An order left the warehouse."),
            "{published}"
        );
    }

    #[test]
    fn the_host_document_is_consistent() {
        let doc = host_document();
        assert_eq!(doc["openapi"], "3.1.0");
        assert_refs_resolve(&doc);
        // Every route the CLI uses is described.
        for (path, method) in [
            ("/api/v1/deployments", "get"),
            ("/api/v1/services/{name}/versions/{version}", "put"),
            ("/api/v1/services/{name}/versions/{version}", "delete"),
            ("/api/v1/services/{name}/versions/{version}/scale", "post"),
            ("/api/v1/services/{name}", "delete"),
            ("/api/v1/services/{name}/main", "put"),
            ("/api/v1/services/{name}/logs", "get"),
            ("/api/v1/tokens", "post"),
            ("/api/v1/notifications", "get"),
        ] {
            assert!(doc["paths"][path][method].is_object(), "{method} {path}");
        }
    }
}
