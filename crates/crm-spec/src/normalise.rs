//! Normalisation of an OpenAPI 3.1 document (what utoipa 6 emits) to OpenAPI 3.0.3 (what
//! `openapiv3`, `drift` and progenitor read).
//!
//! The rewrite is purely structural and keeps the meaning of every schema. The rules, each
//! covered by a unit test below:
//!
//! **Document**
//! - `openapi` becomes `"3.0.3"`.
//! - `jsonSchemaDialect` and `$schema` are dropped; `info.summary` and `info.license.identifier`
//!   (3.1 only) are dropped.
//! - `webhooks` and `components.pathItems` are dropped when empty, and otherwise kept as the
//!   extensions `x-webhooks` / `x-pathItems` (3.0 has no place for them).
//! - A reference object outside a schema (`$ref` to a parameter, response, ...) loses its
//!   3.1 sibling keys (`summary`, `description`): 3.0 reference objects have none.
//!
//! **Schemas** (wherever a schema may appear: components, parameters, media types, headers,
//! and recursively in `properties`, `items`, `additionalProperties`, `allOf`/`oneOf`/`anyOf`
//! and `not`)
//! - `type: [T, "null"]` becomes `type: T, nullable: true`; `type: "null"` (or `["null"]`)
//!   becomes `nullable: true` with no type; `type: [T, U, ...]` with several non-null types
//!   becomes a `oneOf` of one branch per type (`anyOf` when both `integer` and `number` are
//!   listed, as they overlap), each branch carrying the validation keywords, the wrapper
//!   keeping the annotations.
//! - `oneOf`/`anyOf` with `{"type": "null"}` branches: the null branches go and the schema
//!   becomes `nullable: true`. When one branch remains and it is a `$ref`, the schema becomes
//!   `allOf: [{$ref}]` with `nullable: true`, keeping the sibling keys of both the wrapper and
//!   the `$ref` branch (utoipa puts a field's `description` next to the `$ref`); when it is
//!   inline, it is merged into the wrapper (the wrapper's keys win); when several remain,
//!   they stay in the `oneOf`/`anyOf`.
//! - A `$ref` with sibling keys (allowed in 3.1, ignored in 3.0) becomes `allOf: [{$ref}]`
//!   with those siblings, so nothing (a description, `readOnly`, a default) is lost.
//! - `examples: [x, ...]` becomes `example: x` (an existing `example` wins).
//! - `const: v` becomes `enum: [v]`.
//! - Numeric `exclusiveMinimum: m` becomes `minimum: m, exclusiveMinimum: true`, unless
//!   `minimum` is already stricter (greater), in which case it is simply dropped; likewise
//!   for `exclusiveMaximum`.
//! - `contentEncoding: base64` on a string without `format` becomes `format: byte`.
//! - 3.1-only keywords are dropped: `$schema`, `$id`, `$anchor`, `$dynamicAnchor`,
//!   `$dynamicRef`, `$comment`, `$defs`, `contentMediaType`, `contentEncoding`,
//!   `contentSchema`, `propertyNames` (utoipa adds `{type: string}` to every map, which JSON
//!   object keys always are), `unevaluatedProperties`, `unevaluatedItems`, `prefixItems`,
//!   `dependentRequired`, `dependentSchemas`, `patternProperties`, `if`/`then`/`else`,
//!   `contains`, `minContains`, `maxContains`.
//! - Boolean schemas: `true` becomes `{}`, `false` becomes `{not: {}}`; `items: false` (a
//!   closed tuple, meaningless without `prefixItems`) is dropped.
//! - `additionalProperties: {}` (utoipa's free-form map) becomes `additionalProperties: true`,
//!   its 3.0 spelling and the one `drift` treats as equal to an absent keyword.
//! - On a nullable schema, a `null` entry in `enum` is dropped: 3.0 says "may be null"
//!   with `nullable`.

use serde_json::{Map, Value, json};

use crate::pointer::METHODS;

/// Returns the 3.0.3 form of an OpenAPI 3.1 document. See the module documentation for the
/// rules. A 3.0 document passes through unchanged apart from its `openapi` version string.
pub fn normalise_31_to_30(doc: &Value) -> Value {
    let mut out = doc.clone();
    let Some(root) = out.as_object_mut() else {
        return out;
    };
    root.insert("openapi".into(), json!("3.0.3"));
    root.remove("jsonSchemaDialect");
    root.remove("$schema");
    move_unless_empty(root, "webhooks", "x-webhooks");

    if let Some(info) = root.get_mut("info").and_then(Value::as_object_mut) {
        info.remove("summary");
        if let Some(license) = info.get_mut("license").and_then(Value::as_object_mut) {
            license.remove("identifier");
        }
    }

    if let Some(paths) = root.get_mut("paths").and_then(Value::as_object_mut) {
        for item in paths.values_mut() {
            path_item(item);
        }
    }

    if let Some(components) = root.get_mut("components").and_then(Value::as_object_mut) {
        move_unless_empty(components, "pathItems", "x-pathItems");
        for_each_value(components, "schemas", schema);
        for_each_value(components, "parameters", |p| reference_or(p, parameter));
        for_each_value(components, "responses", |r| reference_or(r, response));
        for_each_value(components, "requestBodies", |b| {
            reference_or(b, request_body)
        });
        for_each_value(components, "headers", |h| reference_or(h, parameter));
    }
    out
}

fn move_unless_empty(map: &mut Map<String, Value>, key: &str, extension: &str) {
    match map.remove(key) {
        Some(Value::Object(inner)) if inner.is_empty() => {}
        Some(Value::Null) | None => {}
        Some(other) => {
            map.insert(extension.into(), other);
        }
    }
}

fn for_each_value(map: &mut Map<String, Value>, key: &str, mut f: impl FnMut(&mut Value)) {
    if let Some(inner) = map.get_mut(key).and_then(Value::as_object_mut) {
        inner.values_mut().for_each(&mut f);
    }
}

/// Applies `f` to an inline object, or strips a reference object down to its `$ref`.
fn reference_or(value: &mut Value, f: fn(&mut Value)) {
    match value.as_object_mut() {
        Some(obj) if obj.contains_key("$ref") => obj.retain(|k, _| k == "$ref"),
        Some(_) => f(value),
        None => {}
    }
}

fn path_item(item: &mut Value) {
    let Some(obj) = item.as_object_mut() else {
        return;
    };
    if let Some(params) = obj.get_mut("parameters").and_then(Value::as_array_mut) {
        params.iter_mut().for_each(|p| reference_or(p, parameter));
    }
    for method in METHODS {
        if let Some(op) = obj.get_mut(method).and_then(Value::as_object_mut) {
            operation(op);
        }
    }
}

fn operation(op: &mut Map<String, Value>) {
    if let Some(params) = op.get_mut("parameters").and_then(Value::as_array_mut) {
        params.iter_mut().for_each(|p| reference_or(p, parameter));
    }
    if let Some(body) = op.get_mut("requestBody") {
        reference_or(body, request_body);
    }
    if let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) {
        responses
            .values_mut()
            .for_each(|r| reference_or(r, response));
    }
}

/// A parameter or a header: both have `schema` or `content`.
fn parameter(value: &mut Value) {
    if let Some(obj) = value.as_object_mut() {
        if let Some(s) = obj.get_mut("schema") {
            schema(s);
        }
        content(obj);
    }
}

fn request_body(value: &mut Value) {
    if let Some(obj) = value.as_object_mut() {
        content(obj);
    }
}

fn response(value: &mut Value) {
    if let Some(obj) = value.as_object_mut() {
        content(obj);
        for_each_value(obj, "headers", |h| reference_or(h, parameter));
    }
}

fn content(obj: &mut Map<String, Value>) {
    if let Some(media) = obj.get_mut("content").and_then(Value::as_object_mut) {
        for media_type in media.values_mut() {
            if let Some(s) = media_type.get_mut("schema") {
                schema(s);
            }
        }
    }
}

/// Keys that describe a schema rather than constrain its values: they stay on the wrapper
/// when a multi-type schema is split into branches.
const ANNOTATIONS: &[&str] = &[
    "title",
    "description",
    "example",
    "examples",
    "default",
    "deprecated",
    "readOnly",
    "writeOnly",
    "nullable",
    "externalDocs",
];

/// JSON Schema keywords with no OpenAPI 3.0 equivalent.
const DROPPED: &[&str] = &[
    "$schema",
    "$id",
    "$anchor",
    "$dynamicAnchor",
    "$dynamicRef",
    "$comment",
    "$defs",
    "contentMediaType",
    "contentEncoding",
    "contentSchema",
    "propertyNames",
    "unevaluatedProperties",
    "unevaluatedItems",
    "prefixItems",
    "dependentRequired",
    "dependentSchemas",
    "patternProperties",
    "if",
    "then",
    "else",
    "contains",
    "minContains",
    "maxContains",
];

fn is_annotation(key: &str) -> bool {
    ANNOTATIONS.contains(&key) || key.starts_with("x-")
}

/// A branch of `oneOf`/`anyOf` that only admits `null`.
fn is_null_schema(value: &Value) -> bool {
    let Some(obj) = value.as_object() else {
        return false;
    };
    let null_type = match obj.get("type") {
        Some(Value::String(t)) => t == "null",
        Some(Value::Array(ts)) => ts.len() == 1 && ts[0] == "null",
        _ => false,
    };
    let null_const =
        obj.get("const") == Some(&Value::Null) || obj.get("enum") == Some(&json!([null]));
    (null_type || null_const)
        && obj
            .keys()
            .all(|k| is_annotation(k) || matches!(k.as_str(), "type" | "const" | "enum"))
}

/// Normalises one schema in place, then its subschemas.
pub(crate) fn schema(value: &mut Value) {
    match value {
        Value::Bool(true) => {
            *value = json!({});
            return;
        }
        Value::Bool(false) => {
            *value = json!({"not": {}});
            return;
        }
        Value::Object(_) => {}
        _ => return,
    }
    let Value::Object(obj) = value else {
        return;
    };

    ref_with_siblings(obj);
    if obj.len() == 1 && obj.contains_key("$ref") {
        return;
    }
    nullable_branches(obj, "oneOf");
    nullable_branches(obj, "anyOf");
    type_list(obj);
    keywords(obj);

    for key in ["items", "additionalProperties", "not"] {
        match obj.get_mut(key) {
            Some(sub @ Value::Object(_)) => schema(sub),
            Some(Value::Bool(true)) if key == "items" => {
                obj.insert(key.into(), json!({}));
            }
            Some(Value::Bool(false)) if key == "items" => {
                obj.remove(key);
            }
            _ => {}
        }
    }
    if obj
        .get("additionalProperties")
        .and_then(Value::as_object)
        .is_some_and(Map::is_empty)
    {
        obj.insert("additionalProperties".into(), Value::Bool(true));
    }
    if let Some(properties) = obj.get_mut("properties").and_then(Value::as_object_mut) {
        properties.values_mut().for_each(schema);
    }
    for key in ["allOf", "oneOf", "anyOf"] {
        if let Some(branches) = obj.get_mut(key).and_then(Value::as_array_mut) {
            branches.iter_mut().for_each(schema);
        }
    }

    if obj.get("nullable") == Some(&Value::Bool(true))
        && let Some(values) = obj.get_mut("enum").and_then(Value::as_array_mut)
        && values.len() > 1
    {
        values.retain(|v| !v.is_null());
    }
}

/// `{$ref, description, ...}` becomes `{allOf: [{$ref}], description, ...}`.
fn ref_with_siblings(obj: &mut Map<String, Value>) {
    if obj.len() > 1
        && let Some(reference) = obj.remove("$ref")
    {
        let siblings = std::mem::take(obj);
        obj.insert("allOf".into(), json!([{ "$ref": reference }]));
        obj.extend(siblings);
    }
}

/// Removes `{"type": "null"}` branches from `oneOf`/`anyOf`, marking the schema nullable.
fn nullable_branches(obj: &mut Map<String, Value>, key: &str) {
    let Some(Value::Array(branches)) = obj.get(key) else {
        return;
    };
    if !branches.iter().any(is_null_schema) {
        return;
    }
    let Some(Value::Array(branches)) = obj.remove(key) else {
        return;
    };
    let mut rest: Vec<Value> = branches
        .into_iter()
        .filter(|b| !is_null_schema(b))
        .collect();
    obj.insert("nullable".into(), Value::Bool(true));
    if rest.len() > 1 {
        obj.insert(key.into(), Value::Array(rest));
        return;
    }
    // A boolean branch needs no merging: `true` admits anything; `false` admits nothing, so
    // only null remains, which `nullable` (with no type) does not express exactly; utoipa
    // never emits it.
    if let Some(Value::Object(mut branch)) = rest.pop() {
        if let Some(reference) = branch.remove("$ref") {
            let target = json!({ "$ref": reference });
            match obj.get_mut("allOf").and_then(Value::as_array_mut) {
                Some(all_of) => all_of.push(target),
                None => {
                    obj.insert("allOf".into(), json!([target]));
                }
            }
        }
        for (k, v) in branch {
            if k != "nullable" {
                obj.entry(k).or_insert(v);
            }
        }
    }
}

/// `type: [T, "null"]`, `type: "null"` and multi-type lists.
fn type_list(obj: &mut Map<String, Value>) {
    let types: Vec<String> = match obj.get("type") {
        Some(Value::String(t)) if t == "null" => vec![t.clone()],
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(|t| t.as_str().map(str::to_owned))
            .collect(),
        _ => return,
    };
    obj.remove("type");
    let non_null: Vec<String> = types.iter().filter(|t| *t != "null").cloned().collect();
    if non_null.len() != types.len() {
        obj.insert("nullable".into(), Value::Bool(true));
    }
    match non_null.as_slice() {
        [] => {}
        [single] => {
            obj.insert("type".into(), json!(single));
        }
        several => {
            // Every validation keyword goes into every branch: a keyword for another type
            // (say `maxLength` in the `number` branch) constrains nothing there.
            let validation: Vec<(String, Value)> = obj
                .iter()
                .filter(|(k, _)| !is_annotation(k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            obj.retain(|k, _| is_annotation(k));
            let branches: Vec<Value> = several
                .iter()
                .map(|t| {
                    let mut branch = Map::new();
                    branch.insert("type".into(), json!(t));
                    branch.extend(validation.iter().cloned());
                    Value::Object(branch)
                })
                .collect();
            let overlap =
                several.iter().any(|t| t == "integer") && several.iter().any(|t| t == "number");
            let key = if overlap { "anyOf" } else { "oneOf" };
            obj.insert(key.into(), Value::Array(branches));
        }
    }
}

/// `examples`, `const`, exclusive bounds, `contentEncoding` and the dropped keywords.
fn keywords(obj: &mut Map<String, Value>) {
    if let Some(examples) = obj.remove("examples")
        && let Some(first) = examples.as_array().and_then(|a| a.first())
    {
        obj.entry("example").or_insert_with(|| first.clone());
    }
    if let Some(constant) = obj.remove("const") {
        obj.entry("enum").or_insert_with(|| json!([constant]));
    }
    exclusive_bound(obj, "exclusiveMinimum", "minimum", |bound, limit| {
        limit > bound
    });
    exclusive_bound(obj, "exclusiveMaximum", "maximum", |bound, limit| {
        limit < bound
    });
    if obj.get("contentEncoding").and_then(Value::as_str) == Some("base64")
        && obj.get("type").and_then(Value::as_str) == Some("string")
        && !obj.contains_key("format")
    {
        obj.insert("format".into(), json!("byte"));
    }
    for key in DROPPED {
        obj.remove(*key);
    }
}

/// 3.1's numeric `exclusiveMinimum: m` as 3.0's `minimum: m, exclusiveMinimum: true`.
/// `stricter(bound, limit)` says whether an existing inclusive `limit` already implies the
/// exclusive `bound`.
fn exclusive_bound(
    obj: &mut Map<String, Value>,
    exclusive: &str,
    inclusive: &str,
    stricter: fn(f64, f64) -> bool,
) {
    let Some(bound) = obj.get(exclusive).filter(|v| v.is_number()).cloned() else {
        return;
    };
    obj.remove(exclusive);
    let limit = obj.get(inclusive).and_then(Value::as_f64);
    let bound_f = bound.as_f64().unwrap_or(f64::NAN);
    if limit.is_some_and(|limit| stricter(bound_f, limit)) {
        return;
    }
    obj.insert(inclusive.into(), bound);
    obj.insert(exclusive.into(), Value::Bool(true));
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// Normalises `s` as the only component schema of a 3.1 document and returns it.
    fn norm(s: Value) -> Value {
        let doc = json!({
            "openapi": "3.1.0",
            "info": {"title": "t", "version": "1"},
            "paths": {},
            "components": {"schemas": {"S": s}}
        });
        normalise_31_to_30(&doc)["components"]["schemas"]["S"].clone()
    }

    #[test]
    fn sets_the_version_and_drops_31_document_keys() {
        let doc = json!({
            "openapi": "3.1.0",
            "jsonSchemaDialect": "https://spec.openapis.org/oas/3.1/dialect/base",
            "$schema": "x",
            "info": {"title": "t", "version": "1", "summary": "s",
                     "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"}},
            "webhooks": {},
            "paths": {},
            "components": {"pathItems": {}}
        });
        let out = normalise_31_to_30(&doc);
        assert_eq!(
            out,
            json!({
                "openapi": "3.0.3",
                "info": {"title": "t", "version": "1", "license": {"name": "Apache-2.0"}},
                "paths": {},
                "components": {}
            })
        );
    }

    #[test]
    fn keeps_non_empty_webhooks_as_an_extension() {
        let doc = json!({"openapi": "3.1.0", "webhooks": {"w": {}}, "paths": {}});
        let out = normalise_31_to_30(&doc);
        assert_eq!(out["x-webhooks"], json!({"w": {}}));
        assert!(out.get("webhooks").is_none());
    }

    #[test]
    fn type_with_null_becomes_nullable() {
        assert_eq!(
            norm(json!({"type": ["string", "null"], "format": "date-time"})),
            json!({"format": "date-time", "nullable": true, "type": "string"})
        );
        assert_eq!(
            norm(json!({"type": ["array", "null"], "items": {"type": ["integer", "null"]}})),
            json!({"items": {"nullable": true, "type": "integer"}, "nullable": true, "type": "array"})
        );
    }

    #[test]
    fn type_list_without_null_collapses() {
        assert_eq!(norm(json!({"type": ["string"]})), json!({"type": "string"}));
    }

    #[test]
    fn null_type_alone_is_nullable_without_type() {
        assert_eq!(norm(json!({"type": "null"})), json!({"nullable": true}));
        assert_eq!(norm(json!({"type": ["null"]})), json!({"nullable": true}));
    }

    #[test]
    fn several_types_become_one_of() {
        assert_eq!(
            norm(
                json!({"type": ["string", "boolean", "null"], "maxLength": 3, "description": "d"})
            ),
            json!({
                "description": "d",
                "nullable": true,
                "oneOf": [
                    {"type": "string", "maxLength": 3},
                    {"type": "boolean", "maxLength": 3}
                ]
            })
        );
        let overlapping = norm(json!({"type": ["integer", "number"]}));
        assert_eq!(
            overlapping,
            json!({"anyOf": [{"type": "integer"}, {"type": "number"}]})
        );
    }

    #[test]
    fn one_of_ref_or_null_becomes_nullable_all_of() {
        let out = norm(json!({
            "oneOf": [
                {"$ref": "#/components/schemas/Kind", "description": "The value."},
                {"type": "null"}
            ]
        }));
        assert_eq!(
            out,
            json!({
                "nullable": true,
                "allOf": [{"$ref": "#/components/schemas/Kind"}],
                "description": "The value."
            })
        );
    }

    #[test]
    fn wrapper_siblings_are_kept_and_win() {
        let out = norm(json!({
            "description": "outer",
            "example": 1,
            "anyOf": [{"type": "null"}, {"$ref": "#/components/schemas/K", "description": "inner"}]
        }));
        assert_eq!(out["description"], "outer");
        assert_eq!(out["example"], 1);
        assert_eq!(out["nullable"], true);
        assert_eq!(out["allOf"], json!([{"$ref": "#/components/schemas/K"}]));
        assert!(out.get("anyOf").is_none());
    }

    #[test]
    fn one_of_inline_or_null_is_merged() {
        let out = norm(json!({
            "oneOf": [
                {"type": "object", "description": "inner", "properties": {"a": {"type": ["string", "null"]}}},
                {"type": "null"}
            ]
        }));
        assert_eq!(
            out,
            json!({
                "nullable": true,
                "type": "object",
                "description": "inner",
                "properties": {"a": {"nullable": true, "type": "string"}}
            })
        );
    }

    #[test]
    fn one_of_several_or_null_keeps_the_rest() {
        let out =
            norm(json!({"oneOf": [{"type": "string"}, {"type": "number"}, {"type": "null"}]}));
        assert_eq!(
            out,
            json!({"nullable": true, "oneOf": [{"type": "string"}, {"type": "number"}]})
        );
    }

    #[test]
    fn only_null_branches_leave_nullable() {
        assert_eq!(
            norm(json!({"oneOf": [{"type": "null"}]})),
            json!({"nullable": true})
        );
    }

    #[test]
    fn ref_with_siblings_becomes_all_of() {
        assert_eq!(
            norm(json!({"$ref": "#/components/schemas/K", "description": "d", "readOnly": true})),
            json!({"allOf": [{"$ref": "#/components/schemas/K"}], "description": "d", "readOnly": true})
        );
        assert_eq!(
            norm(json!({"$ref": "#/components/schemas/K"})),
            json!({"$ref": "#/components/schemas/K"})
        );
    }

    #[test]
    fn examples_become_example() {
        assert_eq!(
            norm(json!({"type": "string", "examples": ["a", "b"]})),
            json!({"type": "string", "example": "a"})
        );
        assert_eq!(
            norm(json!({"type": "string", "example": "z", "examples": ["a"]})),
            json!({"type": "string", "example": "z"})
        );
    }

    #[test]
    fn const_becomes_single_value_enum() {
        assert_eq!(
            norm(json!({"type": "string", "const": "x"})),
            json!({"type": "string", "enum": ["x"]})
        );
    }

    #[test]
    fn numeric_exclusive_bounds_become_boolean_form() {
        assert_eq!(
            norm(json!({"type": "integer", "exclusiveMinimum": 0})),
            json!({"type": "integer", "minimum": 0, "exclusiveMinimum": true})
        );
        assert_eq!(
            norm(json!({"type": "integer", "exclusiveMaximum": 10, "maximum": 20})),
            json!({"type": "integer", "maximum": 10, "exclusiveMaximum": true})
        );
        // An inclusive bound that is already stricter makes the exclusive one redundant.
        assert_eq!(
            norm(json!({"type": "integer", "minimum": 1, "exclusiveMinimum": 0})),
            json!({"type": "integer", "minimum": 1})
        );
        assert_eq!(
            norm(json!({"type": "number", "maximum": 5, "exclusiveMaximum": 6})),
            json!({"type": "number", "maximum": 5})
        );
        // Equal bounds: the exclusive one wins.
        assert_eq!(
            norm(json!({"type": "integer", "minimum": 0, "exclusiveMinimum": 0})),
            json!({"type": "integer", "minimum": 0, "exclusiveMinimum": true})
        );
        // Already 3.0: untouched.
        assert_eq!(
            norm(json!({"type": "integer", "minimum": 0, "exclusiveMinimum": true})),
            json!({"type": "integer", "minimum": 0, "exclusiveMinimum": true})
        );
    }

    #[test]
    fn drops_31_only_keywords() {
        let out = norm(json!({
            "type": "object",
            "$schema": "x", "$id": "i", "$comment": "c", "$defs": {},
            "propertyNames": {"type": "string"},
            "unevaluatedProperties": false,
            "patternProperties": {"^x": {}},
            "dependentRequired": {},
            "if": {}, "then": {}, "else": {},
            "additionalProperties": {"type": "string"}
        }));
        assert_eq!(
            out,
            json!({"type": "object", "additionalProperties": {"type": "string"}})
        );
        let array = norm(json!({
            "type": "array", "items": {"type": "string"},
            "prefixItems": [{"type": "string"}], "contains": {}, "minContains": 1, "maxContains": 2,
            "unevaluatedItems": false
        }));
        assert_eq!(array, json!({"type": "array", "items": {"type": "string"}}));
    }

    #[test]
    fn content_encoding_base64_becomes_format_byte() {
        assert_eq!(
            norm(
                json!({"type": "string", "contentEncoding": "base64", "contentMediaType": "image/png"})
            ),
            json!({"type": "string", "format": "byte"})
        );
        assert_eq!(
            norm(json!({"type": "string", "contentMediaType": "text/html"})),
            json!({"type": "string"})
        );
    }

    #[test]
    fn free_form_maps_become_additional_properties_true() {
        assert_eq!(
            norm(json!({
                "type": ["object", "null"],
                "additionalProperties": {},
                "propertyNames": {"type": "string"}
            })),
            json!({"additionalProperties": true, "nullable": true, "type": "object"})
        );
    }

    #[test]
    fn boolean_schemas_become_objects() {
        assert_eq!(norm(json!(true)), json!({}));
        assert_eq!(norm(json!(false)), json!({"not": {}}));
        assert_eq!(
            norm(json!({"type": "array", "items": true})),
            json!({"type": "array", "items": {}})
        );
        assert_eq!(
            norm(json!({"type": "array", "items": false})),
            json!({"type": "array"})
        );
        assert_eq!(
            norm(json!({"type": "object", "properties": {"a": true}})),
            json!({"type": "object", "properties": {"a": {}}})
        );
    }

    #[test]
    fn nullable_enum_loses_its_null_value() {
        assert_eq!(
            norm(json!({"type": ["string", "null"], "enum": ["a", "b", null]})),
            json!({"enum": ["a", "b"], "nullable": true, "type": "string"})
        );
    }

    #[test]
    fn recurses_into_every_subschema() {
        let out = norm(json!({
            "type": "object",
            "properties": {"p": {"type": ["string", "null"]}},
            "additionalProperties": {"type": ["integer", "null"]},
            "allOf": [{"type": ["boolean", "null"]}],
            "not": {"const": 1},
            "items": {"examples": [1]}
        }));
        assert_eq!(out["properties"]["p"]["nullable"], true);
        assert_eq!(out["additionalProperties"]["nullable"], true);
        assert_eq!(out["allOf"][0]["nullable"], true);
        assert_eq!(out["not"]["enum"], json!([1]));
        assert_eq!(out["items"]["example"], 1);
    }

    #[test]
    fn normalises_schemas_outside_components() {
        let doc = json!({
            "openapi": "3.1.0",
            "info": {"title": "t", "version": "1"},
            "paths": {"/a": {
                "parameters": [{"name": "q", "in": "query", "schema": {"type": ["string", "null"]}}],
                "get": {
                    "parameters": [
                        {"name": "h", "in": "header", "schema": {"const": "v"}},
                        {"$ref": "#/components/parameters/P", "description": "sibling"}
                    ],
                    "requestBody": {"content": {"application/json": {"schema": {"type": ["object", "null"]}}}},
                    "responses": {
                        "200": {
                            "description": "ok",
                            "headers": {"X-R": {"schema": {"type": ["integer", "null"]}}},
                            "content": {"application/json": {
                                "schema": {"examples": [1]},
                                "examples": {"one": {"value": 1}}
                            }}
                        },
                        "400": {"$ref": "#/components/responses/Bad", "description": "sibling"}
                    }
                }
            }},
            "components": {
                "parameters": {"P": {"name": "p", "in": "query", "schema": {"type": ["boolean", "null"]}}},
                "responses": {"Bad": {"description": "bad", "content": {"application/json": {"schema": {"type": "null"}}}}},
                "requestBodies": {"B": {"content": {"application/json": {"schema": {"const": 1}}}}},
                "headers": {"H": {"schema": {"examples": ["h"]}}}
            }
        });
        let out = normalise_31_to_30(&doc);
        let item = &out["paths"]["/a"];
        assert_eq!(
            item["parameters"][0]["schema"],
            json!({"nullable": true, "type": "string"})
        );
        let op = &item["get"];
        assert_eq!(op["parameters"][0]["schema"], json!({"enum": ["v"]}));
        assert_eq!(
            op["parameters"][1],
            json!({"$ref": "#/components/parameters/P"})
        );
        assert_eq!(
            op["requestBody"]["content"]["application/json"]["schema"],
            json!({"nullable": true, "type": "object"})
        );
        let ok = &op["responses"]["200"];
        assert_eq!(ok["headers"]["X-R"]["schema"]["nullable"], true);
        assert_eq!(
            ok["content"]["application/json"]["schema"],
            json!({"example": 1})
        );
        // Media-type `examples` is a map in 3.0 too, and stays.
        assert_eq!(
            ok["content"]["application/json"]["examples"]["one"]["value"],
            1
        );
        assert_eq!(
            op["responses"]["400"],
            json!({"$ref": "#/components/responses/Bad"})
        );
        let c = &out["components"];
        assert_eq!(c["parameters"]["P"]["schema"]["nullable"], true);
        assert_eq!(
            c["responses"]["Bad"]["content"]["application/json"]["schema"],
            json!({"nullable": true})
        );
        assert_eq!(
            c["requestBodies"]["B"]["content"]["application/json"]["schema"],
            json!({"enum": [1]})
        );
        assert_eq!(c["headers"]["H"]["schema"], json!({"example": "h"}));
    }

    #[test]
    fn a_30_document_is_unchanged() {
        let doc = crate::test_support::crm_yaml();
        assert_eq!(normalise_31_to_30(&doc), doc);
    }

    #[test]
    fn normalised_utoipa_output_parses_as_30() {
        // A trimmed sample of what utoipa 6 emits for `Option<T>` fields of every kind.
        let doc = json!({
            "openapi": "3.1.0",
            "info": {"title": "t", "description": "", "license": {"name": ""}, "version": "1"},
            "paths": {},
            "components": {"schemas": {
                "Kind": {"type": "string", "enum": ["home", "work"]},
                "Thing": {
                    "type": "object",
                    "required": ["n"],
                    "properties": {
                        "n": {"type": "integer", "format": "int64"},
                        "id": {"type": ["string", "null"], "description": "Unique identifier", "example": "abc"},
                        "kind": {"oneOf": [{"$ref": "#/components/schemas/Kind", "description": "k"}, {"type": "null"}]},
                        "map": {"type": ["object", "null"], "additionalProperties": {}, "propertyNames": {"type": "string"}},
                        "list": {"type": ["array", "null"], "items": {"type": "string"}},
                        "bounded": {"type": ["integer", "null"], "minimum": 1, "exclusiveMinimum": 0},
                        "any": {}
                    }
                }
            }}
        });
        let out = normalise_31_to_30(&doc);
        crate::check_openapi_30(&out, "normalised").unwrap();
    }
}
