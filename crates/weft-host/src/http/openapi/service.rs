//! The OpenAPI document of one version of a service: a `POST` per
//! entrypoint, and its events as webhooks.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};
use weft_core::name::Version;
use weft_core::spec::{EntrypointSpec, ServiceSpec};

use super::schema::{Schemas, component_name};
use super::{PROBLEM, error_responses, problem_schema, security, summary};
use crate::http::gateway::MAX_DEPTH;

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
}
