//! The client view: the document progenitor generates `crm-client` from, derived from
//! `openapi/crm.yaml`.
//!
//! The source document keeps the true wire form and is what the server is compared with;
//! the client view differs from it only where progenitor 0.15 cannot generate code for the
//! source. The transformations are few, and each is tested below:
//!
//! 1. **A deepObject query parameter with listed properties becomes one plain query
//!    parameter per property.** `filter` (`style: deepObject`, `schema.properties:
//!    {updated_after}`) becomes the query parameter `filter[updated_after]`, with the
//!    property's schema, required only when the parameter is required and the property is in
//!    the schema's `required`, and the parameter's `deprecated` flag. progenitor sends
//!    exactly that key (`?filter[updated_after]=...`), which is the deepObject wire form, and
//!    names the builder method `filter_updated_after`. References to `components/parameters`
//!    (and from the parameter's schema to `components/schemas`) are resolved first.
//!    Why: progenitor 0.15 refuses any deepObject query parameter ("unsupported style of
//!    query parameter DeepObject").
//! 2. **A free-form deepObject query parameter is removed.** `proxy` (`style: deepObject`,
//!    `additionalProperties`, no `properties`) has no fixed set of keys, so there is no
//!    plain parameter to turn it into. *Users of the generated client cannot send `proxy`
//!    through its builders*; the parameter still exists on the wire and any HTTP client
//!    (including the `reqwest::Client` inside `crm_client::Client`) can send
//!    `proxy[key]=value`.
//!
//! 3. **When an operation's success responses mix a body and no body, the bodiless ones are
//!    removed.** progenitor 0.15 gives each operation one success type and panics
//!    (`assertion failed: response_types.len() <= 1`) when, say, `200` returns a
//!    `ContactResult` and `204` returns nothing (the answer to `Prefer: return=minimal`).
//!    The client view keeps the responses with a body, so the method still returns the
//!    typed record. *A request that makes the server choose the bodiless answer (a client
//!    that sets `.prefer("return=minimal")`) receives it as
//!    `Error::UnexpectedResponse(response)`*, whose status (`204`) and headers (`ETag`) are
//!    all there is to read.
//!
//! What progenitor refuses and no small rewrite can fix is reported as
//! [`Error::NotGenerable`] instead of a progenitor panic: an operation whose error responses
//! (`4xx`, `5xx`, `default`) do not all share one body schema, or whose success responses
//! carry bodies of more than one schema. The fix belongs in the spec (for errors: one error
//! schema for every error status, which keeps the wire contract since schema names never
//! reach the wire).
//!
//! Nothing else is changed: progenitor 0.15 accepts everything else in `openapi/crm.yaml`
//! (`nullable` + `allOf` references, `oneOf` of scalar and container types, header
//! parameters, deprecated parameters). A parameter in `components/parameters` that no
//! operation references any more stays there; progenitor reads only the parameters
//! operations reference.

use serde_json::{Map, Value, json};

use crate::{
    Error, Result,
    pointer::{METHODS, deref, join},
};

/// Derives the client view of `doc` (an OpenAPI 3.0 document). See the module documentation
/// for what changes and why.
pub fn client_view(doc: &Value) -> Result<Value> {
    let mut out = doc.clone();
    let Some(paths) = out.get_mut("paths").and_then(Value::as_object_mut) else {
        return Ok(out);
    };
    for (path, item) in paths.iter_mut() {
        let item_at = join("#/paths", path);
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        rewrite_parameters(doc, item, &item_at)?;
        for method in METHODS {
            if let Some(op) = item.get_mut(method).and_then(Value::as_object_mut) {
                let op_at = join(&item_at, method);
                rewrite_parameters(doc, op, &op_at)?;
                one_success_kind(doc, op, &op_at)?;
            }
        }
    }
    Ok(out)
}

/// Rewrites the `parameters` list of a path item or an operation.
fn rewrite_parameters(doc: &Value, owner: &mut Map<String, Value>, at: &str) -> Result<()> {
    let Some(Value::Array(params)) = owner.get_mut("parameters") else {
        return Ok(());
    };
    let list_at = join(at, "parameters");
    let mut rewritten = Vec::with_capacity(params.len());
    for (index, param) in params.drain(..).enumerate() {
        let param_at = join(&list_at, &index.to_string());
        let (resolved, resolved_at) = deref(doc, &param, &param_at)?;
        if !is_deep_object_query(resolved) {
            rewritten.push(param);
            continue;
        }
        rewritten.extend(expand_deep_object(doc, resolved, &resolved_at)?);
    }
    *params = rewritten;
    Ok(())
}

/// The body a response carries, as progenitor tells response types apart: `None` for no
/// content, else its media types and schemas.
fn body_kind(doc: &Value, response: &Value, at: &str) -> Result<Option<String>> {
    let (response, _) = deref(doc, response, at)?;
    Ok(response
        .get("content")
        .and_then(Value::as_object)
        .filter(|content| !content.is_empty())
        .map(|content| Value::Object(content.clone()).to_string()))
}

fn is_success(status: &str) -> bool {
    status.starts_with('2') || status == "101" || status == "default"
}

fn is_error(status: &str) -> bool {
    status.starts_with('4') || status.starts_with('5') || status == "default"
}

/// Transformation 3, and the checks that turn progenitor's panics into errors.
fn one_success_kind(doc: &Value, op: &mut Map<String, Value>, at: &str) -> Result<()> {
    let Some(Value::Object(responses)) = op.get_mut("responses") else {
        return Ok(());
    };
    let responses_at = join(at, "responses");
    let mut kinds = Vec::with_capacity(responses.len());
    for (status, response) in responses.iter() {
        kinds.push((
            status.clone(),
            body_kind(doc, response, &join(&responses_at, status))?,
        ));
    }
    let distinct = |filter: fn(&str) -> bool, with_body_only: bool| {
        let mut seen: Vec<(&str, &Option<String>)> = Vec::new();
        for (status, kind) in &kinds {
            if filter(status)
                && !(with_body_only && kind.is_none())
                && !seen.iter().any(|(_, k)| *k == kind)
            {
                seen.push((status, kind));
            }
        }
        seen.into_iter()
            .map(|(s, _)| s.to_owned())
            .collect::<Vec<_>>()
    };
    let error_kinds = distinct(is_error, false);
    if error_kinds.len() > 1 {
        return Err(Error::NotGenerable {
            path: at.to_owned(),
            message: format!(
                "its error responses do not share one body schema (statuses {} differ); \
                 progenitor 0.15 needs every error status to use the same error schema",
                error_kinds.join(", ")
            ),
        });
    }
    let body_kinds = distinct(is_success, true);
    if body_kinds.len() > 1 {
        return Err(Error::NotGenerable {
            path: at.to_owned(),
            message: format!(
                "its success responses carry bodies of different schemas (statuses {}); \
                 progenitor 0.15 needs one success type per operation",
                body_kinds.join(", ")
            ),
        });
    }
    if body_kinds.len() == 1 {
        let bodiless: Vec<String> = kinds
            .iter()
            .filter(|(status, kind)| status != "default" && is_success(status) && kind.is_none())
            .map(|(status, _)| status.clone())
            .collect();
        responses.retain(|status, _| !bodiless.contains(status));
    }
    Ok(())
}

fn is_deep_object_query(param: &Value) -> bool {
    param.get("in").and_then(Value::as_str) == Some("query")
        && param.get("style").and_then(Value::as_str) == Some("deepObject")
}

/// One plain query parameter per listed property, or nothing for a free-form object.
fn expand_deep_object(doc: &Value, param: &Value, at: &str) -> Result<Vec<Value>> {
    let name = param
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| Error::Shape {
            path: at.to_owned(),
            message: "parameter without a name".into(),
        })?;
    let Some(schema) = param.get("schema") else {
        return Ok(Vec::new());
    };
    let (schema, _) = deref(doc, schema, &join(at, "schema"))?;
    let Some(properties) = schema.get("properties").and_then(Value::as_object) else {
        return Ok(Vec::new());
    };
    let param_required = param.get("required").and_then(Value::as_bool) == Some(true);
    let required_props: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();

    let mut out = Vec::with_capacity(properties.len());
    for (prop, prop_schema) in properties {
        let mut plain = Map::new();
        plain.insert("name".into(), json!(format!("{name}[{prop}]")));
        plain.insert("in".into(), json!("query"));
        let description = prop_schema
            .get("description")
            .or_else(|| param.get("description"));
        if let Some(description) = description {
            plain.insert("description".into(), description.clone());
        }
        plain.insert(
            "required".into(),
            json!(param_required && required_props.contains(&prop.as_str())),
        );
        if let Some(deprecated) = param.get("deprecated") {
            plain.insert("deprecated".into(), deprecated.clone());
        }
        plain.insert("schema".into(), prop_schema.clone());
        out.push(Value::Object(plain));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::test_support::crm_yaml;

    fn doc_with(params: Value, components: Value) -> Value {
        json!({
            "openapi": "3.0.3",
            "info": {"title": "t", "version": "1"},
            "paths": {"/a": {"get": {
                "parameters": params,
                "responses": {"204": {"description": "none"}}
            }}},
            "components": components
        })
    }

    #[test]
    fn deep_object_with_properties_becomes_plain_parameters() {
        let doc = doc_with(
            json!([{"$ref": "#/components/parameters/Filter"}]),
            json!({"parameters": {"Filter": {
                "name": "filter", "in": "query", "required": false,
                "description": "Filters.", "style": "deepObject", "explode": true,
                "schema": {"type": "object", "properties": {
                    "updated_after": {"type": "string", "format": "date-time", "description": "After."},
                    "name": {"type": "string"}
                }}
            }}}),
        );
        let view = client_view(&doc).unwrap();
        assert_eq!(
            view["paths"]["/a"]["get"]["parameters"],
            json!([
                {"name": "filter[updated_after]", "in": "query", "description": "After.",
                 "required": false,
                 "schema": {"type": "string", "format": "date-time", "description": "After."}},
                {"name": "filter[name]", "in": "query", "description": "Filters.",
                 "required": false, "schema": {"type": "string"}}
            ])
        );
    }

    #[test]
    fn required_deep_object_keeps_required_properties_required() {
        let doc = doc_with(
            json!([{
                "name": "f", "in": "query", "required": true, "deprecated": true,
                "style": "deepObject",
                "schema": {"$ref": "#/components/schemas/F"}
            }]),
            json!({"schemas": {"F": {
                "type": "object", "required": ["a"],
                "properties": {"a": {"type": "string"}, "b": {"type": "string"}}
            }}}),
        );
        let view = client_view(&doc).unwrap();
        let params = &view["paths"]["/a"]["get"]["parameters"];
        assert_eq!(params[0]["name"], "f[a]");
        assert_eq!(params[0]["required"], true);
        assert_eq!(params[0]["deprecated"], true);
        assert_eq!(params[1]["name"], "f[b]");
        assert_eq!(params[1]["required"], false);
    }

    #[test]
    fn free_form_deep_object_is_removed() {
        let doc = doc_with(
            json!([
                {"$ref": "#/components/parameters/Proxy"},
                {"name": "raw", "in": "query", "schema": {"type": "boolean"}}
            ]),
            json!({"parameters": {"Proxy": {
                "name": "proxy", "in": "query", "style": "deepObject", "explode": true,
                "schema": {"type": "object", "additionalProperties": true}
            }}}),
        );
        let view = client_view(&doc).unwrap();
        assert_eq!(
            view["paths"]["/a"]["get"]["parameters"],
            json!([{"name": "raw", "in": "query", "schema": {"type": "boolean"}}])
        );
        // The component stays; nothing references it any more.
        assert!(view["components"]["parameters"]["Proxy"].is_object());
    }

    #[test]
    fn path_item_parameters_are_rewritten_too() {
        let doc = json!({
            "openapi": "3.0.3",
            "info": {"title": "t", "version": "1"},
            "paths": {"/a": {
                "parameters": [{"name": "p", "in": "query", "style": "deepObject",
                                "schema": {"type": "object", "additionalProperties": true}}],
                "get": {"responses": {"204": {"description": "none"}}}
            }}
        });
        let view = client_view(&doc).unwrap();
        assert_eq!(view["paths"]["/a"]["parameters"], json!([]));
    }

    #[test]
    fn unresolvable_parameter_reference_is_an_error() {
        let doc = doc_with(
            json!([{"$ref": "#/components/parameters/Missing"}]),
            json!({}),
        );
        assert!(matches!(
            client_view(&doc),
            Err(Error::UnresolvedRef { .. })
        ));
    }

    fn doc_with_responses(responses: Value) -> Value {
        json!({
            "openapi": "3.0.3",
            "info": {"title": "t", "version": "1"},
            "paths": {"/a": {"patch": {"responses": responses}}},
            "components": {
                "schemas": {
                    "R": {"type": "object"},
                    "E": {"type": "object"},
                    "F": {"type": "object"}
                },
                "responses": {
                    "Bad": {"description": "bad", "content": {"application/json": {
                        "schema": {"$ref": "#/components/schemas/E"}}}},
                    "Done": {"description": "done"}
                }
            }
        })
    }

    #[test]
    fn bodiless_success_beside_a_body_is_removed() {
        let doc = doc_with_responses(json!({
            "200": {"description": "ok", "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/R"}}}},
            "204": {"$ref": "#/components/responses/Done"},
            "400": {"$ref": "#/components/responses/Bad"}
        }));
        let view = client_view(&doc).unwrap();
        let responses = view["paths"]["/a"]["patch"]["responses"]
            .as_object()
            .unwrap();
        let statuses: Vec<&str> = responses.keys().map(String::as_str).collect();
        assert_eq!(statuses, ["200", "400"]);
    }

    #[test]
    fn bodiless_only_successes_are_kept() {
        let doc = doc_with_responses(json!({
            "204": {"description": "none"},
            "202": {"description": "accepted"},
            "404": {"$ref": "#/components/responses/Bad"}
        }));
        let view = client_view(&doc).unwrap();
        assert_eq!(view, doc);
    }

    #[test]
    fn differing_error_schemas_are_not_generable() {
        let doc = doc_with_responses(json!({
            "200": {"description": "ok"},
            "400": {"$ref": "#/components/responses/Bad"},
            "404": {"description": "nf", "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/F"}}}}
        }));
        let err = client_view(&doc).unwrap_err();
        assert!(matches!(err, Error::NotGenerable { .. }), "{err}");
        assert!(err.to_string().contains("400, 404"), "{err}");
    }

    #[test]
    fn differing_success_bodies_are_not_generable() {
        let doc = doc_with_responses(json!({
            "200": {"description": "ok", "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/R"}}}},
            "201": {"description": "made", "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/F"}}}}
        }));
        let err = client_view(&doc).unwrap_err();
        assert!(matches!(err, Error::NotGenerable { .. }), "{err}");
    }

    #[test]
    fn crm_yaml_view_has_no_deep_object_left() {
        let doc = crm_yaml();
        let view = client_view(&doc).unwrap();
        let contacts = &view["paths"]["/unified/crm/contacts"]["get"]["parameters"];
        let names: Vec<String> = contacts
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                let (p, _) = deref(&view, p, "#").unwrap();
                p["name"].as_str().unwrap().to_owned()
            })
            .collect();
        assert!(
            names.contains(&"filter[updated_after]".to_owned()),
            "{names:?}"
        );
        assert!(!names.contains(&"proxy".to_owned()), "{names:?}");
        assert!(!names.contains(&"filter".to_owned()), "{names:?}");
        // Everything other than parameter lists is untouched.
        assert_eq!(view["components"], doc["components"]);
        crate::check_openapi_30(&view, "client view").unwrap();
    }
}
