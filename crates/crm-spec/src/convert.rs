//! Conversion of an OpenAPI 3.0 document (the hand-written spec) to OpenAPI 3.1, for
//! publishing. It is the inverse of [`normalise`](crate::normalise): a document converted
//! here and normalised back compares equal to the original (a test proves it for
//! `openapi/crm.yaml`).
//!
//! The conversion keeps the meaning of every schema under 3.1's rules (JSON Schema 2020-12).
//! The rules, each covered by a unit test below:
//!
//! **Document**
//! - `openapi` becomes `"3.1.0"`. Everything outside schemas is valid 3.1 as it is
//!   (parameter, header and media-type `example` stay: 3.1 keeps them there).
//!
//! **Schemas** (components, parameters, headers, media types, callbacks, and recursively in
//! `properties`, `items`, `additionalProperties`, `allOf`/`oneOf`/`anyOf` and `not`)
//! - `type: T, nullable: true` becomes `type: [T, "null"]`; an `enum` on such a schema also
//!   lists `null`, as 3.1 checks `enum` on its own.
//! - `nullable: true` without a `type`, on a schema that says what it is through `$ref`,
//!   `allOf`, `oneOf` or `anyOf`: `oneOf`/`anyOf` get a `{type: "null"}` branch; `$ref` and
//!   `allOf` move into a branch of a new `oneOf: [branch, {type: "null"}]` (a single
//!   `allOf` member becomes the branch itself), annotations staying on the wrapper. When
//!   the schema already admits `null` (a branch or reference target that is nullable), no
//!   branch is added.
//! - `nullable: true` on a schema with no type and nothing else to qualify: dropped (such a
//!   schema admits `null` already). `nullable: false` is dropped everywhere.
//! - `example: x` becomes `examples: [x]` (3.1 deprecates the schema's `example`).
//! - Boolean `exclusiveMinimum: true` with `minimum: m` becomes `exclusiveMinimum: m`
//!   (and `minimum` goes); `exclusiveMinimum: false` is dropped; likewise for the maximum.
//! - `format: byte` on a string also gets `contentEncoding: base64`, 3.1's spelling of
//!   it (`format` stays, as an annotation tools still read).

use serde_json::{Map, Value, json};

use crate::pointer::{METHODS, resolve_ref};

/// Returns the OpenAPI 3.1.0 form of an OpenAPI 3.0 document. See the module documentation
/// for the rules.
pub fn convert_30_to_31(doc: &Value) -> Value {
    let mut out = doc.clone();
    let converter = Converter { original: doc };
    let Some(root) = out.as_object_mut() else {
        return out;
    };
    root.insert("openapi".into(), json!("3.1.0"));
    if let Some(paths) = root.get_mut("paths").and_then(Value::as_object_mut) {
        for item in paths.values_mut() {
            converter.path_item(item);
        }
    }
    if let Some(components) = root.get_mut("components").and_then(Value::as_object_mut) {
        for_each_value(components, "schemas", |s| converter.schema(s));
        for_each_value(components, "parameters", |p| converter.parameter(p));
        for_each_value(components, "headers", |h| converter.parameter(h));
        for_each_value(components, "responses", |r| converter.response(r));
        for_each_value(components, "requestBodies", |b| converter.content_of(b));
        for_each_value(components, "callbacks", |c| converter.callback(c));
    }
    out
}

fn for_each_value(map: &mut Map<String, Value>, key: &str, mut f: impl FnMut(&mut Value)) {
    if let Some(inner) = map.get_mut(key).and_then(Value::as_object_mut) {
        inner.values_mut().for_each(&mut f);
    }
}

/// Keys that describe a schema rather than constrain its values; they stay on the wrapper
/// when a nullable reference moves into a `oneOf` branch.
const ANNOTATIONS: &[&str] = &[
    "title",
    "description",
    "example",
    "examples",
    "default",
    "deprecated",
    "readOnly",
    "writeOnly",
    "externalDocs",
];

/// Keys that say what a type-less schema is.
const COMPOSITION: &[&str] = &["$ref", "allOf", "oneOf", "anyOf"];

struct Converter<'a> {
    /// The 3.0 document, for resolving references while its copy is rewritten.
    original: &'a Value,
}

impl Converter<'_> {
    fn path_item(&self, item: &mut Value) {
        let Some(obj) = item.as_object_mut() else {
            return;
        };
        if let Some(params) = obj.get_mut("parameters").and_then(Value::as_array_mut) {
            params.iter_mut().for_each(|p| self.parameter(p));
        }
        for method in METHODS {
            if let Some(op) = obj.get_mut(method).and_then(Value::as_object_mut) {
                self.operation(op);
            }
        }
    }

    fn operation(&self, op: &mut Map<String, Value>) {
        if let Some(params) = op.get_mut("parameters").and_then(Value::as_array_mut) {
            params.iter_mut().for_each(|p| self.parameter(p));
        }
        if let Some(body) = op.get_mut("requestBody") {
            self.content_of(body);
        }
        if let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) {
            responses.values_mut().for_each(|r| self.response(r));
        }
        for_each_value(op, "callbacks", |c| self.callback(c));
    }

    /// A callback: expressions mapped to path items.
    fn callback(&self, callback: &mut Value) {
        if let Some(items) = callback.as_object_mut() {
            items.values_mut().for_each(|item| self.path_item(item));
        }
    }

    /// A parameter or a header (a reference object has nothing to convert).
    fn parameter(&self, value: &mut Value) {
        if let Some(s) = value.get_mut("schema") {
            self.schema(s);
        }
        self.content_of(value);
    }

    fn response(&self, value: &mut Value) {
        self.content_of(value);
        if let Some(obj) = value.as_object_mut() {
            for_each_value(obj, "headers", |h| self.parameter(h));
        }
    }

    /// The schemas of an object's `content` map (request bodies, responses, parameters).
    fn content_of(&self, value: &mut Value) {
        let Some(media) = value.get_mut("content").and_then(Value::as_object_mut) else {
            return;
        };
        for media_type in media.values_mut() {
            if let Some(s) = media_type.get_mut("schema") {
                self.schema(s);
            }
        }
    }

    /// Converts one schema, its subschemas first.
    fn schema(&self, value: &mut Value) {
        let Some(obj) = value.as_object_mut() else {
            return;
        };
        if let Some(properties) = obj.get_mut("properties").and_then(Value::as_object_mut) {
            properties.values_mut().for_each(|s| self.schema(s));
        }
        for key in ["items", "additionalProperties", "not"] {
            if let Some(sub @ Value::Object(_)) = obj.get_mut(key) {
                self.schema(sub);
            }
        }
        for key in ["allOf", "oneOf", "anyOf"] {
            if let Some(branches) = obj.get_mut(key).and_then(Value::as_array_mut) {
                branches.iter_mut().for_each(|s| self.schema(s));
            }
        }

        if let Some(example) = obj.remove("example") {
            obj.entry("examples").or_insert_with(|| json!([example]));
        }
        exclusive_bound(obj, "exclusiveMinimum", "minimum");
        exclusive_bound(obj, "exclusiveMaximum", "maximum");
        if obj.get("type").and_then(Value::as_str) == Some("string")
            && obj.get("format").and_then(Value::as_str) == Some("byte")
        {
            obj.entry("contentEncoding")
                .or_insert_with(|| json!("base64"));
        }
        if obj.remove("nullable") == Some(Value::Bool(true)) {
            self.nullable(obj);
        }
    }

    /// Makes a schema that was `nullable: true` admit `null` the 3.1 way.
    fn nullable(&self, obj: &mut Map<String, Value>) {
        if let Some(Value::String(single)) = obj.get("type") {
            let single = single.clone();
            obj.insert("type".into(), json!([single, "null"]));
            if let Some(values) = obj.get_mut("enum").and_then(Value::as_array_mut)
                && !values.contains(&Value::Null)
            {
                values.push(Value::Null);
            }
            return;
        }
        if obj.contains_key("type") || self.admits_null(&Value::Object(obj.clone()), 0) {
            return;
        }
        let null_branch = json!({"type": "null"});
        let composed: Vec<&str> = COMPOSITION
            .iter()
            .copied()
            .filter(|k| obj.contains_key(*k))
            .collect();
        match composed.as_slice() {
            [] => {
                // No type and no composition: either a bare schema (which admits null
                // already) or an `enum`, which must list null.
                if let Some(values) = obj.get_mut("enum").and_then(Value::as_array_mut) {
                    values.push(Value::Null);
                }
            }
            [key @ ("oneOf" | "anyOf")] => {
                if let Some(branches) = obj.get_mut(*key).and_then(Value::as_array_mut) {
                    branches.push(null_branch);
                }
            }
            _ => {
                // `$ref` or `allOf` (or several): the schema's constraints go into a branch,
                // its annotations stay on the wrapper.
                let constraints: Map<String, Value> = obj
                    .iter()
                    .filter(|(k, _)| !is_annotation(k))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                obj.retain(|k, _| is_annotation(k));
                let branch = match constraints.get("allOf").and_then(Value::as_array) {
                    Some(members) if constraints.len() == 1 && members.len() == 1 => {
                        members[0].clone()
                    }
                    _ => Value::Object(constraints),
                };
                obj.insert("oneOf".into(), Value::Array(vec![branch, null_branch]));
            }
        }
    }

    /// Whether a (3.0) schema already admits `null`, following references.
    fn admits_null(&self, schema: &Value, depth: usize) -> bool {
        let Some(obj) = schema.as_object() else {
            return schema == &Value::Bool(true);
        };
        if depth > 32 {
            return false;
        }
        if obj.get("nullable") == Some(&Value::Bool(true)) {
            return true;
        }
        if let Some(reference) = obj.get("$ref").and_then(Value::as_str) {
            return resolve_ref(self.original, reference)
                .is_ok_and(|target| self.admits_null(target, depth + 1));
        }
        let branches = |key: &str| obj.get(key).and_then(Value::as_array);
        if let Some(all) = branches("allOf") {
            return all.iter().all(|s| self.admits_null(s, depth + 1));
        }
        for key in ["oneOf", "anyOf"] {
            if let Some(any) = branches(key) {
                return any.iter().any(|s| self.admits_null(s, depth + 1));
            }
        }
        match obj.get("type") {
            // A subschema converted already lists null in its type.
            Some(Value::Array(types)) => return types.contains(&json!("null")),
            Some(_) => return false,
            None => {}
        }
        match obj.get("enum").and_then(Value::as_array) {
            Some(values) => values.contains(&Value::Null),
            // No type: any value, null included, unless `not` rules it out.
            None => !obj.contains_key("not"),
        }
    }
}

fn is_annotation(key: &str) -> bool {
    ANNOTATIONS.contains(&key) || key.starts_with("x-")
}

/// 3.0's `minimum: m, exclusiveMinimum: true` as 3.1's `exclusiveMinimum: m`.
fn exclusive_bound(obj: &mut Map<String, Value>, exclusive: &str, inclusive: &str) {
    match obj.get(exclusive) {
        Some(Value::Bool(true)) => {
            obj.remove(exclusive);
            if let Some(bound) = obj.remove(inclusive) {
                obj.insert(exclusive.into(), bound);
            }
        }
        Some(Value::Bool(false)) => {
            obj.remove(exclusive);
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::{compare, normalise_31_to_30, test_support::crm_yaml};

    /// Converts `s` as the only component schema of a 3.0 document (next to `others`) and
    /// returns it.
    fn conv_with(s: Value, others: Value) -> Value {
        let mut schemas = others.as_object().cloned().unwrap_or_default();
        schemas.insert("S".into(), s);
        let doc = json!({
            "openapi": "3.0.3",
            "info": {"title": "t", "version": "1"},
            "paths": {},
            "components": {"schemas": schemas}
        });
        convert_30_to_31(&doc)["components"]["schemas"]["S"].clone()
    }

    fn conv(s: Value) -> Value {
        conv_with(s, json!({}))
    }

    #[test]
    fn sets_the_version() {
        let doc = json!({"openapi": "3.0.3", "info": {"title": "t", "version": "1"}, "paths": {}});
        assert_eq!(convert_30_to_31(&doc)["openapi"], "3.1.0");
    }

    #[test]
    fn nullable_type_becomes_a_type_list() {
        assert_eq!(
            conv(json!({"type": "string", "format": "date-time", "nullable": true})),
            json!({"type": ["string", "null"], "format": "date-time"})
        );
        assert_eq!(
            conv(json!({"type": "string", "nullable": false})),
            json!({"type": "string"})
        );
    }

    #[test]
    fn nullable_enum_lists_null() {
        assert_eq!(
            conv(json!({"type": "string", "enum": ["a", "b"], "nullable": true})),
            json!({"type": ["string", "null"], "enum": ["a", "b", null]})
        );
        assert_eq!(
            conv(json!({"type": "string", "enum": ["a"]})),
            json!({"type": "string", "enum": ["a"]})
        );
        assert_eq!(
            conv(json!({"enum": ["a", 1], "nullable": true})),
            json!({"enum": ["a", 1, null]})
        );
    }

    #[test]
    fn nullable_single_all_of_becomes_one_of_with_null() {
        assert_eq!(
            conv(json!({
                "nullable": true,
                "description": "The account.",
                "allOf": [{"$ref": "#/components/schemas/K"}]
            })),
            json!({
                "description": "The account.",
                "oneOf": [{"$ref": "#/components/schemas/K"}, {"type": "null"}]
            })
        );
    }

    #[test]
    fn nullable_ref_and_multi_member_all_of_go_into_a_branch() {
        assert_eq!(
            conv(json!({"$ref": "#/components/schemas/K", "nullable": true})),
            json!({"oneOf": [{"$ref": "#/components/schemas/K"}, {"type": "null"}]})
        );
        assert_eq!(
            conv(json!({
                "nullable": true,
                "title": "t",
                "allOf": [{"$ref": "#/components/schemas/K"}, {"type": "object", "required": ["a"]}]
            })),
            json!({
                "title": "t",
                "oneOf": [
                    {"allOf": [{"$ref": "#/components/schemas/K"}, {"type": "object", "required": ["a"]}]},
                    {"type": "null"}
                ]
            })
        );
    }

    #[test]
    fn nullable_one_of_and_any_of_get_a_null_branch() {
        assert_eq!(
            conv(json!({"nullable": true, "oneOf": [{"type": "string"}, {"type": "number"}]})),
            json!({"oneOf": [{"type": "string"}, {"type": "number"}, {"type": "null"}]})
        );
        assert_eq!(
            conv(json!({"nullable": true, "anyOf": [{"type": "integer"}, {"type": "number"}]})),
            json!({"anyOf": [{"type": "integer"}, {"type": "number"}, {"type": "null"}]})
        );
    }

    #[test]
    fn no_null_branch_when_null_is_admitted_already() {
        let others = json!({"K": {"type": "string", "nullable": true}});
        assert_eq!(
            conv_with(
                json!({"nullable": true, "allOf": [{"$ref": "#/components/schemas/K"}]}),
                others
            ),
            json!({"allOf": [{"$ref": "#/components/schemas/K"}]})
        );
        assert_eq!(
            conv(json!({"nullable": true, "oneOf": [{"type": "string", "nullable": true}]})),
            json!({"oneOf": [{"type": ["string", "null"]}]})
        );
        // A bare schema admits anything already.
        assert_eq!(
            conv(json!({"nullable": true, "description": "d"})),
            json!({"description": "d"})
        );
    }

    #[test]
    fn example_becomes_examples() {
        assert_eq!(
            conv(json!({"type": "string", "example": "a"})),
            json!({"type": "string", "examples": ["a"]})
        );
        assert_eq!(
            conv(json!({"type": "array", "items": {"type": "string"}, "example": ["a", "b"]})),
            json!({"type": "array", "items": {"type": "string"}, "examples": [["a", "b"]]})
        );
    }

    #[test]
    fn exclusive_bounds_become_numbers() {
        assert_eq!(
            conv(json!({"type": "integer", "minimum": 0, "exclusiveMinimum": true})),
            json!({"type": "integer", "exclusiveMinimum": 0})
        );
        assert_eq!(
            conv(json!({"type": "number", "maximum": 1.5, "exclusiveMaximum": true})),
            json!({"type": "number", "exclusiveMaximum": 1.5})
        );
        assert_eq!(
            conv(json!({"type": "integer", "minimum": 1, "exclusiveMinimum": false})),
            json!({"type": "integer", "minimum": 1})
        );
    }

    #[test]
    fn byte_strings_get_a_content_encoding() {
        assert_eq!(
            conv(json!({"type": "string", "format": "byte"})),
            json!({"type": "string", "format": "byte", "contentEncoding": "base64"})
        );
        assert_eq!(
            conv(json!({"type": "string", "format": "binary"})),
            json!({"type": "string", "format": "binary"})
        );
    }

    #[test]
    fn recurses_into_every_subschema() {
        let out = conv(json!({
            "type": "object",
            "properties": {"p": {"type": "string", "nullable": true}},
            "additionalProperties": {"type": "integer", "nullable": true},
            "allOf": [{"type": "boolean", "nullable": true}],
            "not": {"type": "string", "example": "x"},
            "items": {"type": "number", "example": 1}
        }));
        assert_eq!(out["properties"]["p"]["type"], json!(["string", "null"]));
        assert_eq!(
            out["additionalProperties"]["type"],
            json!(["integer", "null"])
        );
        assert_eq!(out["allOf"][0]["type"], json!(["boolean", "null"]));
        assert_eq!(out["not"]["examples"], json!(["x"]));
        assert_eq!(out["items"]["examples"], json!([1]));
    }

    #[test]
    fn converts_schemas_outside_components_and_leaves_other_examples() {
        let doc = json!({
            "openapi": "3.0.3",
            "info": {"title": "t", "version": "1"},
            "paths": {"/a": {
                "parameters": [{"name": "q", "in": "query", "example": "x",
                                "schema": {"type": "string", "nullable": true}}],
                "post": {
                    "parameters": [{"$ref": "#/components/parameters/P"}],
                    "requestBody": {"content": {"application/json": {
                        "schema": {"type": "object", "nullable": true}, "example": {}
                    }}},
                    "responses": {"200": {
                        "description": "ok",
                        "headers": {"X-R": {"schema": {"type": "integer", "nullable": true}}},
                        "content": {"application/json": {"schema": {"type": "string", "example": "s"}}}
                    }},
                    "callbacks": {"done": {"{$request.body#/url}": {"post": {
                        "responses": {"200": {"description": "ok", "content": {"application/json":
                            {"schema": {"type": "boolean", "nullable": true}}}}}
                    }}}}
                }
            }},
            "components": {
                "parameters": {"P": {"name": "p", "in": "query", "schema": {"type": "boolean", "nullable": true}}},
                "headers": {"H": {"schema": {"type": "string", "example": "h"}}},
                "requestBodies": {"B": {"content": {"application/json": {"schema": {"type": "number", "nullable": true}}}}},
                "responses": {"R": {"description": "r", "content": {"application/json": {"schema": {"type": "string", "nullable": true}}}}}
            }
        });
        let out = convert_30_to_31(&doc);
        let item = &out["paths"]["/a"];
        assert_eq!(
            item["parameters"][0]["schema"]["type"],
            json!(["string", "null"])
        );
        assert_eq!(item["parameters"][0]["example"], "x");
        let op = &item["post"];
        let body = &op["requestBody"]["content"]["application/json"];
        assert_eq!(body["schema"]["type"], json!(["object", "null"]));
        assert_eq!(body["example"], json!({}));
        let ok = &op["responses"]["200"];
        assert_eq!(
            ok["headers"]["X-R"]["schema"]["type"],
            json!(["integer", "null"])
        );
        assert_eq!(
            ok["content"]["application/json"]["schema"],
            json!({"type": "string", "examples": ["s"]})
        );
        let callback = &op["callbacks"]["done"]["{$request.body#/url}"]["post"];
        assert_eq!(
            callback["responses"]["200"]["content"]["application/json"]["schema"]["type"],
            json!(["boolean", "null"])
        );
        let c = &out["components"];
        assert_eq!(
            c["parameters"]["P"]["schema"]["type"],
            json!(["boolean", "null"])
        );
        assert_eq!(c["headers"]["H"]["schema"]["examples"], json!(["h"]));
        assert_eq!(
            c["requestBodies"]["B"]["content"]["application/json"]["schema"]["type"],
            json!(["number", "null"])
        );
        assert_eq!(
            c["responses"]["R"]["content"]["application/json"]["schema"]["type"],
            json!(["string", "null"])
        );
    }

    #[test]
    fn every_rule_round_trips_through_normalisation() {
        let schemas = [
            json!({"type": "string", "nullable": true, "example": "a"}),
            json!({"type": "string", "nullable": true, "enum": ["a", "b"]}),
            json!({"nullable": true, "description": "d", "allOf": [{"$ref": "#/components/schemas/K"}]}),
            json!({"nullable": true, "oneOf": [{"type": "string"}, {"type": "number"}]}),
            json!({"type": "integer", "minimum": 0, "exclusiveMinimum": true}),
            json!({"type": "array", "items": {"type": "integer", "nullable": true}}),
        ];
        for original in schemas {
            let converted = conv_with(original.clone(), json!({"K": {"type": "object"}}));
            let doc = json!({
                "openapi": "3.1.0", "info": {"title": "t", "version": "1"}, "paths": {},
                "components": {"schemas": {"S": converted}}
            });
            let back = normalise_31_to_30(&doc)["components"]["schemas"]["S"].clone();
            assert_eq!(back, original);
        }
    }

    /// The acceptance test of the converter: crm.yaml → 3.1 → normalised → 3.0 is the same
    /// document, and drift sees no change at all.
    #[test]
    fn crm_yaml_round_trips_losslessly() {
        let source = crm_yaml();
        let converted = convert_30_to_31(&source);
        assert_ne!(converted, source);
        let back = normalise_31_to_30(&converted);
        let comparison = compare(&source, &back).unwrap();
        assert!(comparison.is_compatible(), "{comparison}");
        assert!(comparison.is_empty(), "{comparison}");
        assert_eq!(back, source);
    }

    #[test]
    fn converted_crm_yaml_has_no_30_keywords_left() {
        /// Pointers of objects holding `key`, parameters aside (3.1 keeps their `example`).
        fn holders(value: &Value, at: String, key: &str, out: &mut Vec<String>) {
            match value {
                Value::Object(obj) => {
                    if obj.contains_key(key) && !obj.contains_key("in") {
                        out.push(at.clone());
                    }
                    for (k, v) in obj {
                        holders(v, format!("{at}/{k}"), key, out);
                    }
                }
                Value::Array(items) => {
                    for (i, v) in items.iter().enumerate() {
                        holders(v, format!("{at}/{i}"), key, out);
                    }
                }
                _ => {}
            }
        }
        let source = crm_yaml();
        let converted = convert_30_to_31(&source);
        for key in ["nullable", "example"] {
            let mut before = Vec::new();
            holders(&source, String::new(), key, &mut before);
            assert!(!before.is_empty(), "crm.yaml uses {key}");
            let mut after = Vec::new();
            holders(&converted, String::new(), key, &mut after);
            assert!(after.is_empty(), "{key} left at {after:?}");
        }
    }

    #[test]
    fn a_round_trip_catches_a_lossy_conversion() {
        // The losslessness check trips when a rule loses meaning: drop the null branch.
        let source = crm_yaml();
        let mut converted = convert_30_to_31(&source);
        let account = converted
            .pointer_mut("/components/schemas/Contact/properties/account/oneOf")
            .and_then(Value::as_array_mut)
            .expect("Contact.account is a nullable reference");
        account.pop();
        let comparison = compare(&source, &normalise_31_to_30(&converted)).unwrap();
        assert!(!comparison.is_compatible(), "{comparison}");
    }
}
