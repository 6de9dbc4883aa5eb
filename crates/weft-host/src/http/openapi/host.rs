//! The OpenAPI document of the host's own HTTP API, generated from the route
//! table and the types of `weft-host-api`, so that it cannot drift from
//! what the host answers and the CLI reads.

use schemars::generate::SchemaSettings;
use serde_json::{Map, Value, json};
use weft_host_api::routes::{Access, Answer, Body, In, ROUTES, Route};

use super::{PROBLEM, error_responses, problem_schema, security};

fn parameters(route: &Route, generator: &mut schemars::SchemaGenerator) -> Vec<Value> {
    route
        .params
        .iter()
        .map(|p| {
            let location = match p.location {
                In::Path => "path",
                In::Query => "query",
                In::Header => "header",
            };
            let mut param = json!({
                "name": p.name,
                "in": location,
                "required": p.location == In::Path,
                "description": p.description,
                "schema": (p.schema)(generator).to_value(),
            });
            if p.name == "env" {
                // `?env=A=1&env=B=2`: one value per repetition.
                param["explode"] = json!(true);
            }
            param
        })
        .collect()
}

fn request_body(route: &Route, generator: &mut schemars::SchemaGenerator) -> Option<Value> {
    match route.body {
        Body::None => None,
        Body::Json(schema) => Some(json!({
            "required": true,
            "content": { "application/json": { "schema": schema(generator).to_value() } }
        })),
        Body::Binary => Some(json!({
            "required": true,
            "content": { "application/octet-stream": {
                "schema": { "type": "string", "contentMediaType": "application/octet-stream" }
            } }
        })),
    }
}

fn answer(route: &Route, generator: &mut schemars::SchemaGenerator) -> (String, Value) {
    match route.answer {
        Answer::Json {
            status,
            description,
            schema,
        } => (
            status.to_string(),
            json!({
                "description": description,
                "content": { "application/json": { "schema": schema(generator).to_value() } }
            }),
        ),
        Answer::NdJson {
            description,
            schema,
        } => (
            "200".to_owned(),
            json!({
                "description": format!("One JSON document per line: {description}"),
                "content": { "application/x-ndjson": { "itemSchema": schema(generator).to_value() } }
            }),
        ),
        Answer::NoContent => ("204".to_owned(), json!({ "description": "Done." })),
        Answer::Html => (
            "200".to_owned(),
            json!({ "description": "An HTML page.", "content": { "text/html": {} } }),
        ),
        Answer::Text => (
            "200".to_owned(),
            json!({ "description": "Plain text.", "content": { "text/plain": { "schema": { "type": "string" } } } }),
        ),
    }
}

/// The OpenAPI 3.1 document of the host's own HTTP API; it declares the
/// bearer scheme only when the host requires tokens.
pub(crate) fn host_document(auth_required: bool) -> Value {
    let mut components = Map::new();
    let errors = error_responses(&mut components);
    let mut generator = SchemaSettings::draft2020_12()
        .with(|s| s.definitions_path = "/components/schemas".into())
        .into_generator();
    let mut paths = Map::new();
    for route in ROUTES {
        let mut responses = Map::new();
        let (status, ok) = answer(route, &mut generator);
        responses.insert(status, ok);
        for status in route.errors {
            if let Some(error) = errors.get(&status.to_string()) {
                responses.insert(status.to_string(), error.clone());
            }
        }
        let mut operation = json!({
            "operationId": route.operation,
            "summary": route.summary,
            "description": format!("{} {}", route.summary, route.access.describe()),
            "parameters": parameters(route, &mut generator),
            "responses": responses,
        });
        if let Some(body) = request_body(route, &mut generator) {
            operation["requestBody"] = body;
        }
        if auth_required && route.access == Access::Public {
            operation["security"] = json!([]);
        }
        let item = paths
            .entry(route.path.to_owned())
            .or_insert_with(|| json!({}));
        item[route.method.as_str().to_ascii_lowercase()] = operation;
    }
    let mut schemas: Map<String, Value> = generator.take_definitions(true).into_iter().collect();
    schemas.insert(PROBLEM.to_owned(), problem_schema());
    components.insert("schemas".to_owned(), Value::Object(schemas));
    let security = auth_required.then(|| security(&mut components));
    let mut doc = json!({
        "openapi": "3.1.0",
        "info": {
            "title": "weft host API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The host's HTTP API, on the same port as the wire protocol. \
                When the host requires tokens (it listens beyond loopback, or runs with \
                `--auth required`), everything but `/healthz`, the docs and these documents \
                needs `Authorization: Bearer <token>`: reading needs any valid token, \
                managing the host needs `admin`. Each service's own API is at \
                `/services/{name}/openapi.json` and `/services/{name}/docs`."
        },
        "paths": paths,
        "components": components,
    });
    if security.is_some() {
        doc["security"] = json!([{ "bearer": [] }, {}]);
    }
    doc
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::openapi::tests::assert_refs_resolve;

    #[test]
    fn the_host_document_is_consistent() {
        let doc = host_document(true);
        assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
        let open = host_document(false);
        assert!(open.get("security").is_none());
        assert!(open["components"].get("securitySchemes").is_none());
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
            ("/api/v1/events/topics", "get"),
        ] {
            assert!(doc["paths"][path][method].is_object(), "{method} {path}");
        }
        // The view types come with their schemas.
        let schemas = &doc["components"]["schemas"];
        for name in ["VersionStatus", "TokenInfo", "TopicInfo", "Notification"] {
            assert!(schemas[name].is_object(), "{name}: {schemas}");
        }
    }
}
