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
//! Nothing else is changed: progenitor 0.15 accepts everything else in `openapi/crm.yaml`
//! (one error schema shared by every error status, `nullable` + `allOf` references, `oneOf`
//! of scalar and container types, header parameters, deprecated parameters). A parameter in
//! `components/parameters` that no operation references any more stays there; progenitor
//! reads only the parameters operations reference.

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
                rewrite_parameters(doc, op, &join(&item_at, method))?;
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
