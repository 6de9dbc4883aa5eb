//! The OpenAPI document of one version of a service: a `POST` per
//! entrypoint (and a `GET` per read-only one), and the topics it consumes
//! and publishes.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};
use weft_core::name::Version;
use weft_core::spec::{EntrypointSpec, ParamSpec, ServiceSpec};

use super::schema::Schemas;
use super::{PROBLEM, error_responses, problem_schema, security, summary};
use crate::http::gateway::{MAX_DEPTH, MAX_TIMEOUT_SECS, MIN_TIMEOUT_SECS};

/// What `?version=` and `Weft-Version` accept, as a regular expression:
/// `main`, an exact version (`1.2.0`) or a requirement (`^1.2`,
/// `>=1.0, <2`) as SemVer parses them; anything else the gateway refuses
/// with 400.
pub(crate) fn version_pattern() -> String {
    let n = "(0|[1-9][0-9]*)";
    let w = "[*xX]";
    let id = "(0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*)";
    let pre = format!(r"(-{id}(\.{id})*)?");
    let build = r"(\+[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?";
    let core = format!(r"({n}\.{n}\.{n}{pre}{build}|{n}\.{n}(\.{w})?|{n}(\.{w}(\.{w})?)?)");
    let comparator = format!(r"((=|>=?|<=?|~|\^)?\s*{core}|{w}(\.{w}(\.{w})?)?)");
    format!(r"^\s*(main|{comparator}(\s*,\s*{comparator})*)?\s*$")
}

/// Parameters every gateway call takes: which version, how long.
fn call_parameters() -> Vec<Value> {
    let version = json!({ "type": "string", "pattern": version_pattern(), "examples": ["^1"] });
    vec![
        json!({
            "name": "version",
            "in": "query",
            "required": false,
            "description": "The version to call: exact (`1.2.0`) or a requirement (`^1.2`); the main version when absent.",
            "schema": version,
        }),
        json!({
            "name": "Weft-Version",
            "in": "header",
            "required": false,
            "description": "The version to call, as the `version` query parameter (send only one).",
            "schema": version,
        }),
        json!({
            "name": "Weft-Timeout",
            "in": "header",
            "required": false,
            "description": format!(
                "The most seconds the call may take (decimal, at least one microsecond, at most {MAX_TIMEOUT_SECS}); 30 when absent."
            ),
            "schema": { "type": "number", "minimum": MIN_TIMEOUT_SECS, "maximum": MAX_TIMEOUT_SECS, "examples": [5] }
        }),
    ]
}

/// A parameter's example for the docs: its own example, its default, or
/// one made from its schema.
fn param_example(p: &ParamSpec, schemas: &Schemas) -> Value {
    p.example
        .clone()
        .or_else(|| p.default.clone())
        .unwrap_or_else(|| example(&p.schema, &p.name, schemas, 0))
}

/// An example value for `schema`: one the schema gives (`examples`,
/// `default`, `const`, the first of an `enum`), else a plain value of its
/// type that respects its bounds. `name` is the property it is for; a
/// string example names it, which says more than `"string"`.
pub(super) fn example(schema: &Value, name: &str, schemas: &Schemas, depth: usize) -> Value {
    let Value::Object(map) = schema else {
        return Value::Null;
    };
    if depth > 8 {
        return Value::Null;
    }
    if let Some(Value::Array(examples)) = map.get("examples")
        && let Some(first) = examples.first()
    {
        return first.clone();
    }
    for key in ["example", "default", "const"] {
        if let Some(v) = map.get(key) {
            return v.clone();
        }
    }
    if let Some(Value::Array(values)) = map.get("enum")
        && let Some(first) = values.iter().find(|v| !v.is_null())
    {
        return first.clone();
    }
    if let Some(v) = map
        .get("description")
        .and_then(Value::as_str)
        .and_then(|d| documented_example(d, map.get("type")))
    {
        return v;
    }
    if let Some(Value::String(r)) = map.get("$ref") {
        let local = r.strip_prefix("#/components/schemas/").map(unescape);
        if let Some(target) = local.as_deref().and_then(|n| schemas.components.get(n)) {
            return example(target, name, schemas, depth + 1);
        }
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(Value::Array(variants)) = map.get(key)
            && let Some(v) = variants
                .iter()
                .find(|v| v.get("type").and_then(Value::as_str) != Some("null"))
        {
            return example(v, name, schemas, depth + 1);
        }
    }
    if let Some(Value::Array(parts)) = map.get("allOf") {
        let mut merged = Map::new();
        for part in parts {
            match example(part, name, schemas, depth + 1) {
                Value::Object(o) => merged.extend(o),
                other => return other,
            }
        }
        return Value::Object(merged);
    }
    let ty = match map.get("type") {
        Some(Value::String(t)) => t.as_str(),
        Some(Value::Array(types)) => types
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null")
            .unwrap_or("null"),
        _ if map.contains_key("properties") => "object",
        _ => return json!({}),
    };
    let bound = |wanted: f64| {
        let min = map.get("minimum").and_then(Value::as_f64);
        let max = map.get("maximum").and_then(Value::as_f64);
        let mut v = wanted;
        if let Some(min) = min {
            v = v.max(min);
        }
        if let Some(max) = max {
            v = v.min(max);
        }
        v
    };
    match ty {
        "integer" => json!(bound(1.0) as i64),
        "number" => json!(bound(1.5)),
        "boolean" => json!(true),
        "null" => Value::Null,
        "string" => json!(match map.get("format").and_then(Value::as_str) {
            Some("date-time") => "2026-01-01T12:00:00Z".to_owned(),
            Some("date") => "2026-01-01".to_owned(),
            Some("time") => "12:00:00".to_owned(),
            Some("uuid") => "5f1b7a2e-4c3d-4e5f-8a9b-0c1d2e3f4a5b".to_owned(),
            Some("email") => "ada@example.com".to_owned(),
            Some("uri") => "https://example.com/".to_owned(),
            Some("ipv4") => "192.0.2.1".to_owned(),
            _ if name.is_empty() => "text".to_owned(),
            _ => name.to_owned(),
        }),
        "array" => {
            let item = map
                .get("items")
                .map_or(Value::Null, |i| example(i, name, schemas, depth + 1));
            let min = map.get("minItems").and_then(Value::as_u64).unwrap_or(1);
            Value::Array(vec![item; usize::try_from(min.clamp(1, 3)).unwrap_or(1)])
        }
        _ => {
            let mut out = Map::new();
            if let Some(Value::Object(props)) = map.get("properties") {
                for (k, v) in props {
                    out.insert(k.clone(), example(v, k, schemas, depth + 1));
                }
            } else if let Some(extra @ Value::Object(_)) = map.get("additionalProperties") {
                out.insert(
                    "key".to_owned(),
                    example(extra, "value", schemas, depth + 1),
                );
            }
            Value::Object(out)
        }
    }
}

/// The example a doc comment gives on a line of its own, `Example: 20` or
/// ``Example: `{"sku": "A-1"}` ``: JSON, or for a string the text itself.
fn documented_example(description: &str, ty: Option<&Value>) -> Option<Value> {
    let line = description.lines().map(str::trim).find_map(|l| {
        l.strip_prefix("Example:")
            .or_else(|| l.strip_prefix("example:"))
            .map(str::trim)
    })?;
    let text = line
        .strip_prefix('`')
        .and_then(|l| l.strip_suffix('`'))
        .unwrap_or(line);
    if text.is_empty() {
        return None;
    }
    match serde_json::from_str::<Value>(text) {
        Ok(v) if ty != Some(&json!("string")) || v.is_string() => Some(v),
        _ => Some(Value::String(text.to_owned())),
    }
}

fn unescape(token: &str) -> String {
    token.replace("~1", "/").replace("~0", "~")
}

/// Whether a parameter of this schema is sent in a query as plain text
/// (a number, a boolean, a string) rather than as JSON.
pub(crate) fn scalar_type(schema: &Value) -> Option<&str> {
    match schema.get("type") {
        Some(Value::String(t)) => Some(t.as_str()),
        Some(Value::Array(types)) => {
            let mut real = types
                .iter()
                .filter_map(Value::as_str)
                .filter(|t| *t != "null");
            match (real.next(), real.next()) {
                (Some(t), None) => Some(t),
                _ => None,
            }
        }
        _ => None,
    }
    .filter(|t| matches!(*t, "integer" | "number" | "boolean" | "string"))
}

fn operation(
    service: &str,
    ep: &EntrypointSpec,
    schemas: &mut Schemas,
    errors: &Map<String, Value>,
) -> (Value, Option<Value>) {
    let mut properties = Map::new();
    let mut required = Vec::new();
    let mut adopted = Vec::new();
    for p in &ep.params {
        let mut schema = schemas.adopt(&p.schema);
        if let (Some(default), Value::Object(map)) = (&p.default, &mut schema) {
            map.insert("default".to_owned(), default.clone());
        }
        properties.insert(p.name.clone(), schema.clone());
        adopted.push(schema);
        if p.required {
            required.push(Value::String(p.name.clone()));
        }
    }
    let example_body: Map<String, Value> = ep
        .params
        .iter()
        .map(|p| (p.name.clone(), param_example(p, schemas)))
        .collect();
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
    let defaults: Vec<String> = ep
        .params
        .iter()
        .filter_map(|p| p.default.as_ref().map(|d| format!("`{}` = `{d}`", p.name)))
        .collect();
    if !defaults.is_empty() {
        if !description.is_empty() {
            description.push_str("\n\n");
        }
        description.push_str(&format!(
            "Left out, {} (the service applies the default).",
            defaults.join(", ")
        ));
    }
    if ep.idempotent {
        if !description.is_empty() {
            description.push_str("\n\n");
        }
        description.push_str(
            "Idempotent: running it twice does what running it once does, so weft \
             callers send it again to another instance when an instance dies before \
             answering.",
        );
    }
    if let Some(max) = ep.max_concurrency {
        if !description.is_empty() {
            description.push_str("\n\n");
        }
        description.push_str(&format!(
            "At most {max} calls run at once on each instance and {} wait; beyond them a \
             call is refused at once with 429 (`resource_exhausted`, kind `overloaded`), \
             unrun, after the gateway has tried the other instances.",
            ep.queue.unwrap_or(0)
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
            "content": { "application/json": { "schema": body, "example": example_body } }
        },
        "responses": responses,
    });
    let summary = summary(&description).to_owned();
    if !summary.is_empty() {
        op["summary"] = json!(summary);
        op["description"] = json!(description);
    }
    if ep.idempotent {
        op["x-weft-idempotent"] = json!(true);
    }
    let get = ep.read_only.then(|| {
        let mut parameters: Vec<Value> = ep
            .params
            .iter()
            .zip(adopted)
            .map(|(p, schema)| {
                let mut param = json!({
                    "name": p.name,
                    "in": "query",
                    "required": p.required,
                    "example": param_example(p, schemas),
                });
                if scalar_type(&p.schema).is_some() {
                    param["schema"] = schema;
                } else {
                    // Structured values travel as JSON text.
                    param["content"] = json!({ "application/json": { "schema": schema } });
                }
                param
            })
            .collect();
        parameters.extend(call_parameters());
        let mut get = op.clone();
        get["operationId"] = json!(format!("{}_get", ep.name));
        get["parameters"] = Value::Array(parameters);
        if let Value::Object(map) = &mut get {
            map.remove("requestBody");
        }
        get
    });
    (op, get)
}

/// The OpenAPI 3.1 document of one version of a service: a `POST` per
/// entrypoint, a `GET` too for read-only ones, and the topics it consumes
/// and publishes in its description and in `x-weft-events`.
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
        let (post, get) = operation(&spec.name, ep, &mut schemas, &errors);
        let mut item = json!({ "post": post });
        if let Some(get) = get {
            item["get"] = get;
        }
        paths.insert(format!("/services/{}/{}", spec.name, ep.name), item);
    }
    let (events_text, events) = events(spec, &mut schemas);
    let mut description = spec.description.trim().to_owned();
    if !description.is_empty() {
        description.push_str("\n\n");
    }
    description.push_str(&format!(
        "Every entrypoint is `POST /services/{name}/{{entrypoint}}` with a JSON object of named \
         arguments; read-only ones also take `GET` with the arguments in the query. The result \
         comes back as JSON, errors as `application/problem+json`. \
         This document describes version {version}; `?version=` picks another.",
        name = spec.name
    ));
    if !streaming.is_empty() {
        description.push_str(&format!(
            " Streaming entrypoints ({}) are not callable over HTTP yet; call them with the weft SDK.",
            streaming.join(", ")
        ));
    }
    description.push_str(&events_text);
    let mut component_schemas: Map<String, Value> = schemas.components.into_iter().collect();
    component_schemas.insert(PROBLEM.to_owned(), problem_schema());
    components.insert("schemas".to_owned(), Value::Object(component_schemas));
    // Docs pages show "Authorize" for any security scheme: only a host that
    // requires tokens declares one.
    let security = auth_required.then(|| security(&mut components));
    let mut doc = json!({
        "openapi": "3.1.0",
        "info": {
            "title": spec.name,
            "version": version.to_string(),
            "description": description,
        },
        "tags": [{ "name": spec.name, "description": summary(&spec.description) }],
        "paths": paths,
        "components": components,
    });
    if !events.is_empty() {
        doc["x-weft-events"] = Value::Object(events);
    }
    if let Some(security) = security {
        doc["security"] = security;
    }
    doc
}

/// The service's events: the topics its handlers consume and the topics it
/// declares it publishes. Events are not HTTP requests, so they are not
/// operations: the description lists them for people, `x-weft-events`
/// for tools, and their payloads are component schemas.
fn events(spec: &ServiceSpec, schemas: &mut Schemas) -> (String, Map<String, Value>) {
    let mut text = String::new();
    let mut consumes = Vec::new();
    let mut publishes = Vec::new();
    let payload_ref = |topic: &str, payload: &Value, schemas: &mut Schemas| {
        let adopted = schemas.adopt(payload);
        let name = match adopted.get("$ref").and_then(Value::as_str) {
            Some(r) if adopted.as_object().is_some_and(|m| m.len() == 1) => {
                r.trim_start_matches("#/components/schemas/").to_owned()
            }
            _ => {
                let wanted = payload
                    .get("title")
                    .and_then(Value::as_str)
                    .map_or_else(|| format!("{topic}.payload"), str::to_owned);
                let name = schemas.name_for(&wanted, &adopted, &BTreeMap::new());
                schemas.components.insert(name.clone(), adopted);
                name
            }
        };
        (
            json!({ "$ref": format!("#/components/schemas/{name}") }),
            name,
        )
    };
    if !spec.event_handlers.is_empty() {
        text.push_str("\n\n### Consumes\n");
    }
    for h in &spec.event_handlers {
        let mode = match (&h.ordered_by, h.mode.as_str()) {
            (Some(field), _) => format!(
                "ordered by `{field}`: events with the same `{field}` are handled one at a time, in publish order"
            ),
            (None, "broadcast") => "broadcast: every instance handles every event".to_owned(),
            (None, _) => "pool: each event is handled by one instance".to_owned(),
        };
        let (schema, name) = payload_ref(&h.topic, &h.payload, schemas);
        let about = summary(&h.description);
        text.push_str(&format!(
            "\n- **`{topic}`** → `{handler}`{sep}{about} Payload: `{name}` (under Schemas). \
             At least once; {mode}. After {attempts} failed attempts an event goes to the dead \
             letters (`weft events dead {topic}`).",
            topic = h.topic,
            handler = h.name,
            sep = if about.is_empty() { "." } else { ": " },
            attempts = h.max_attempts,
        ));
        let mut entry = json!({
            "topic": h.topic,
            "handler": h.name,
            "description": h.description.trim(),
            "mode": h.mode,
            "maxAttempts": h.max_attempts,
            "payload": schema,
        });
        if let Some(field) = &h.ordered_by {
            entry["orderedBy"] = json!(field);
        }
        consumes.push(entry);
    }
    if !spec.publishes.is_empty() {
        text.push_str("\n\n### Publishes\n");
    }
    for t in &spec.publishes {
        let (schema, name) = payload_ref(&t.topic, &t.payload, schemas);
        let about = summary(&t.description);
        text.push_str(&format!(
            "\n- **`{topic}`**{sep}{about} Payload: `{name}` (under Schemas). Handle it with \
             `#[event_handler(topic = \"{topic}\")]`.",
            topic = t.topic,
            sep = if about.is_empty() { "." } else { ": " },
        ));
        publishes.push(json!({
            "topic": t.topic,
            "description": t.description.trim(),
            "payload": schema,
        }));
    }
    if !consumes.is_empty() || !publishes.is_empty() {
        text.push_str(
            "\n\nEvents are published with `ctx.publish(topic, &event)` or \
             `weft events publish TOPIC JSON`, not called over HTTP; `weft events topics` \
             lists them; this page sends none.",
        );
    }
    let mut events = Map::new();
    if !consumes.is_empty() {
        events.insert("consumes".to_owned(), Value::Array(consumes));
    }
    if !publishes.is_empty() {
        events.insert("publishes".to_owned(), Value::Array(publishes));
    }
    (text, events)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::openapi::tests::assert_refs_resolve;
    use weft_core::spec::ParamSpec;

    fn entry(name: &str, params: Vec<ParamSpec>, result: Value) -> EntrypointSpec {
        EntrypointSpec {
            name: name.into(),
            description: format!("Does {name}.\n\nAt length."),
            params,
            result,
            error: None,
            streaming: false,
            read_only: false,
            idempotent: false,
            max_concurrency: None,
            queue: None,
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
                            default: None,
                            example: None,
                        },
                        ParamSpec {
                            name: "note".into(),
                            required: false,
                            schema: json!({"type": "string"}),
                            default: None,
                            example: None,
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
    fn events_are_described_not_operations() {
        use weft_core::spec::{EventHandlerSpec, TopicSpec};
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
        assert!(doc.get("webhooks").is_none(), "{doc}");
        assert!(doc.get("jsonSchemaDialect").is_none());
        assert_eq!(doc["paths"], json!({}));
        let consumed = &doc["x-weft-events"]["consumes"][0];
        assert_eq!(consumed["topic"], "orders.created");
        assert_eq!(consumed["handler"], "on_order");
        assert_eq!(consumed["orderedBy"], "customer");
        assert_eq!(consumed["payload"]["$ref"], "#/components/schemas/Order");
        let schemas = &doc["components"]["schemas"];
        assert_eq!(
            schemas["Order"]["properties"]["item"]["$ref"],
            "#/components/schemas/Item"
        );
        let published = &doc["x-weft-events"]["publishes"][0];
        assert_eq!(published["topic"], "orders.shipped");
        assert_eq!(published["payload"]["$ref"], "#/components/schemas/Order");
        let text = doc["info"]["description"].as_str().unwrap();
        assert!(text.contains("### Consumes"), "{text}");
        assert!(
            text.contains("**`orders.created`** → `on_order`: Ships orders."),
            "{text}"
        );
        assert!(text.contains("ordered by `customer`"), "{text}");
        assert!(text.contains("After 3 failed attempts"), "{text}");
        assert!(text.contains("### Publishes"), "{text}");
        assert!(text.contains("An order left the warehouse."), "{text}");
        // No token needed: no scheme, so the page shows no "Authorize".
        assert!(doc["components"].get("securitySchemes").is_none());
        assert!(doc.get("security").is_none());
    }

    #[test]
    fn read_only_entrypoints_get_a_get_with_query_parameters_and_defaults() {
        let mut ep = entry(
            "roll",
            vec![
                ParamSpec {
                    name: "sides".into(),
                    required: false,
                    schema: json!({ "type": "integer", "format": "uint8", "minimum": 0, "maximum": 255 }),
                    default: Some(json!(6)),
                    example: None,
                },
                ParamSpec {
                    name: "label".into(),
                    required: true,
                    schema: json!({ "type": "string" }),
                    default: None,
                    example: Some(json!("d20")),
                },
                ParamSpec {
                    name: "weights".into(),
                    required: false,
                    schema: json!({ "type": ["array", "null"], "items": { "type": "number", "minimum": 2 } }),
                    default: None,
                    example: None,
                },
            ],
            json!({ "type": "integer" }),
        );
        ep.read_only = true;
        let spec = ServiceSpec {
            name: "dice".into(),
            description: String::new(),
            entrypoints: vec![ep],
            event_handlers: vec![],
            publishes: vec![],
        };
        let doc = service_document(&spec, &Version::new(1, 0, 0), false);
        assert_refs_resolve(&doc);
        let post = &doc["paths"]["/services/dice/roll"]["post"];
        let media = &post["requestBody"]["content"]["application/json"];
        assert_eq!(media["schema"]["properties"]["sides"]["default"], 6);
        assert_eq!(media["schema"]["required"], json!(["label"]));
        assert_eq!(
            media["example"],
            json!({ "sides": 6, "label": "d20", "weights": [2.0] })
        );
        let get = &doc["paths"]["/services/dice/roll"]["get"];
        assert!(get.get("requestBody").is_none());
        let params = get["parameters"].as_array().unwrap();
        let sides = params.iter().find(|p| p["name"] == "sides").unwrap();
        assert_eq!(sides["in"], "query");
        assert_eq!(sides["required"], false);
        assert_eq!(sides["schema"]["default"], 6);
        let weights = params.iter().find(|p| p["name"] == "weights").unwrap();
        assert!(weights["content"]["application/json"]["schema"].is_object());
        assert!(params.iter().any(|p| p["name"] == "Weft-Timeout"));
        assert_ne!(get["operationId"], post["operationId"]);
    }

    #[test]
    fn idempotent_entrypoints_say_so() {
        let mut ep = entry("set", vec![], json!({ "type": "null" }));
        ep.description = "Sets the sides.".into();
        ep.idempotent = true;
        let plain = entry("roll", vec![], json!({ "type": "integer" }));
        let spec = ServiceSpec {
            name: "dice".into(),
            description: String::new(),
            entrypoints: vec![ep, plain],
            event_handlers: vec![],
            publishes: vec![],
        };
        let doc = service_document(&spec, &Version::new(1, 0, 0), false);
        let set = &doc["paths"]["/services/dice/set"]["post"];
        assert_eq!(set["x-weft-idempotent"], true);
        assert_eq!(set["summary"], "Sets the sides.");
        assert!(
            set["description"].as_str().unwrap().contains("Idempotent:"),
            "{set}"
        );
        let roll = &doc["paths"]["/services/dice/roll"]["post"];
        assert!(roll.get("x-weft-idempotent").is_none(), "{roll}");
    }

    #[test]
    fn examples_are_plain_values_of_the_type() {
        let schemas = Schemas::default();
        let u8_schema =
            json!({ "type": "integer", "format": "uint8", "minimum": 0, "maximum": 255 });
        assert_eq!(example(&u8_schema, "n", &schemas, 0), json!(1));
        let big = json!({ "type": "integer", "minimum": 10 });
        assert_eq!(example(&big, "n", &schemas, 0), json!(10));
        assert_eq!(
            example(&json!({ "type": "string" }), "customer", &schemas, 0),
            json!("customer")
        );
        assert_eq!(
            example(
                &json!({ "type": "string", "format": "date-time" }),
                "at",
                &schemas,
                0
            ),
            json!("2026-01-01T12:00:00Z")
        );
        assert_eq!(
            example(&json!({ "enum": ["red", "green"] }), "c", &schemas, 0),
            json!("red")
        );
        assert_eq!(
            example(
                &json!({ "type": "string", "examples": ["hello"] }),
                "s",
                &schemas,
                0
            ),
            json!("hello")
        );
        // A doc comment line `Example: ...` gives the example.
        let documented = json!({
            "type": "object",
            "properties": {
                "sku": { "type": "string", "description": "The item.\nExample: `A-100`" },
                "count": { "type": "integer", "description": "How many.\n\nExample: 12" },
                "zip": { "type": "string", "description": "Example: 01234" },
            }
        });
        assert_eq!(
            example(&documented, "order", &schemas, 0),
            json!({ "sku": "A-100", "count": 12, "zip": "01234" })
        );
    }

    #[test]
    fn the_version_pattern_agrees_with_the_parser() {
        let pattern = regex::Regex::new(&version_pattern()).unwrap();
        for text in [
            "",
            "main",
            "1.2.0",
            "^1.2",
            "~1",
            "*",
            ">=1.0, <2",
            "1.x",
            "=1.2.3-beta.1+b7",
            "1",
            " 1.2 ",
            "v1.2.3",
            "abc",
            "1.2.3.4",
            "^",
            ">=1 <2",
            "01.2.3",
            "1.2.3-",
            "latest",
            "1.*.3",
            "^1.2,",
            ",^1",
            "1.2.3-01",
            "1.2.3+build.5",
            "=1.2.3-rc.1, <2",
        ] {
            let parsed = text.parse::<weft_core::name::VersionSelector>().is_ok();
            assert_eq!(pattern.is_match(text), parsed, "`{text}`");
        }
    }
}
