//! Entrypoint schemas come from schemars, each a standalone JSON Schema
//! with its own `$defs`. OpenAPI wants shared definitions in
//! `components/schemas`, so definitions are moved there and every `$ref`
//! is rewritten; two different types with the same name get distinct names.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

/// Moves `$defs` of standalone schemas into `components/schemas`.
#[derive(Debug, Default)]
pub(super) struct Schemas {
    pub(super) components: BTreeMap<String, Value>,
}

/// An OpenAPI component name: letters, digits, `.`, `-`, `_`.
pub(super) fn component_name(name: &str) -> String {
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
    pub(super) fn name_for(
        &self,
        wanted: &str,
        value: &Value,
        taken: &BTreeMap<String, String>,
    ) -> String {
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
    pub(super) fn adopt(&mut self, schema: &Value) -> Value {
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
