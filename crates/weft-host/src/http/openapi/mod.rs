//! OpenAPI 3.1 documents: one per service, generated from its
//! [`ServiceSpec`](weft_core::spec::ServiceSpec) ([`service`]), and one for
//! the host's own API, generated from the route table of `weft-host-api`
//! ([`host`]). Both share the problem answers and the security scheme
//! defined here; [`schema`] moves schemars' definitions into components.

mod host;
mod schema;
mod service;

use serde_json::{Map, Value, json};

pub(crate) use self::host::host_document;
pub(crate) use self::service::{scalar_type, service_document};

/// The name of the problem+json schema in `components/schemas`; not a name
/// a Rust type would get from schemars.
pub(super) const PROBLEM: &str = "weft.Problem";

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

pub(super) fn problem_schema() -> Value {
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

pub(super) fn error_responses(components: &mut Map<String, Value>) -> Map<String, Value> {
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

/// Declares the bearer scheme in `components` and returns the requirement
/// that uses it.
pub(super) fn security(components: &mut Map<String, Value>) -> Value {
    components.insert(
        "securitySchemes".to_owned(),
        json!({ "bearer": {
            "type": "http",
            "scheme": "bearer",
            "description": "A token from `weft token create --scope ...`."
        } }),
    );
    json!([{ "bearer": [] }])
}

/// The first line of a doc comment, as a summary.
pub(super) fn summary(description: &str) -> &str {
    description
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("")
}

#[cfg(test)]
pub(super) mod tests {
    use serde_json::Value;

    pub(crate) fn find_refs(v: &Value, out: &mut Vec<String>) {
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
    pub(crate) fn assert_refs_resolve(doc: &Value) {
        let mut refs = Vec::new();
        find_refs(doc, &mut refs);
        assert!(!refs.is_empty());
        for r in refs {
            let pointer = r.strip_prefix('#').expect("a local ref");
            assert!(doc.pointer(pointer).is_some(), "dangling {r}");
        }
    }
}
