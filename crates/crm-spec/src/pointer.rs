//! JSON pointers (RFC 6901) and local `$ref` resolution inside one document.

use serde_json::Value;

use crate::{Error, Result};

/// Escapes one segment of a JSON pointer (`~` as `~0`, `/` as `~1`).
pub(crate) fn escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

/// Appends `segment` (escaped) to the pointer `base`, written as a `#/...` fragment.
pub(crate) fn join(base: &str, segment: &str) -> String {
    format!("{base}/{}", escape(segment))
}

/// The value a local reference (`#/components/...`) points at.
pub(crate) fn resolve_ref<'a>(doc: &'a Value, reference: &str) -> Result<&'a Value> {
    reference
        .strip_prefix('#')
        .and_then(|pointer| doc.pointer(pointer))
        .ok_or_else(|| Error::UnresolvedRef {
            reference: reference.to_owned(),
        })
}

/// The `$ref` of a reference object, if `value` is one.
pub(crate) fn ref_of(value: &Value) -> Option<&str> {
    value.get("$ref").and_then(Value::as_str)
}

/// Follows `$ref`s from `value` until a non-reference, returning it and the pointer of the
/// place it was found (`at` when `value` is not a reference).
///
/// A chain longer than 64 links is treated as a cycle.
pub(crate) fn deref<'a>(doc: &'a Value, value: &'a Value, at: &str) -> Result<(&'a Value, String)> {
    let mut current = value;
    let mut pointer = at.to_owned();
    for _ in 0..64 {
        match ref_of(current) {
            Some(reference) => {
                current = resolve_ref(doc, reference)?;
                pointer = reference.to_owned();
            }
            None => return Ok((current, pointer)),
        }
    }
    Err(Error::UnresolvedRef {
        reference: format!("{pointer} (reference cycle)"),
    })
}

/// The HTTP methods a path item may hold operations for, in OpenAPI's order.
pub(crate) const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn escapes_segments() {
        assert_eq!(join("#/paths", "/a/{id}"), "#/paths/~1a~1{id}");
        assert_eq!(escape("a~b"), "a~0b");
    }

    #[test]
    fn follows_reference_chains() {
        let doc = json!({"components": {"parameters": {
            "A": {"$ref": "#/components/parameters/B"},
            "B": {"name": "b", "in": "query"}
        }}});
        let start = json!({"$ref": "#/components/parameters/A"});
        let (found, at) = deref(&doc, &start, "#/x").unwrap();
        assert_eq!(found["name"], "b");
        assert_eq!(at, "#/components/parameters/B");
        assert!(resolve_ref(&doc, "#/components/parameters/C").is_err());
    }

    #[test]
    fn detects_cycles() {
        let doc = json!({"components": {"schemas": {"A": {"$ref": "#/components/schemas/A"}}}});
        let start = json!({"$ref": "#/components/schemas/A"});
        assert!(deref(&doc, &start, "#/x").is_err());
    }
}
