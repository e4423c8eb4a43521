//! The links between operations (create → get → update → delete), which stateful testing
//! follows: the source document and the emitted one carry the same links, and every link
//! names a real operation and only parameters that operation takes.

use std::collections::BTreeMap;

use serde_json::Value;

type Links = BTreeMap<(String, String), Value>;

fn source() -> Value {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../openapi/crm.yaml"))
        .expect("the source document");
    serde_yaml::from_str(&text).expect("YAML")
}

fn emitted() -> Value {
    serde_json::to_value(crm_api::openapi()).unwrap()
}

fn operations(doc: &Value) -> BTreeMap<String, Value> {
    let mut all = BTreeMap::new();
    for item in doc["paths"].as_object().unwrap().values() {
        for op in item.as_object().unwrap().values() {
            if let Some(id) = op["operationId"].as_str() {
                all.insert(id.to_owned(), op.clone());
            }
        }
    }
    all
}

fn links(doc: &Value) -> Links {
    let mut all = Links::new();
    for (id, op) in operations(doc) {
        for (status, response) in op["responses"].as_object().unwrap() {
            if let Some(links) = response.get("links") {
                all.insert((id.clone(), status.clone()), links.clone());
            }
        }
    }
    all
}

/// The names of the parameters an operation takes, resolving `$ref`s to components.
fn parameter_names(doc: &Value, op: &Value) -> Vec<String> {
    op["parameters"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .map(|p| match p["$ref"].as_str() {
                    Some(r) => {
                        let name = r.rsplit('/').next().unwrap();
                        doc["components"]["parameters"][name]["name"].clone()
                    }
                    None => p["name"].clone(),
                })
                .filter_map(|n| n.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn source_and_emitted_documents_carry_the_same_links() {
    let source = links(&source());
    let emitted = links(&emitted());
    assert!(source.len() >= 10, "{source:?}");
    assert_eq!(source, emitted);
}

#[test]
fn every_link_names_a_real_operation_and_its_parameters() {
    let doc = source();
    let ops = operations(&doc);
    let mut checked = 0;
    for ((from, status), links) in links(&doc) {
        for (name, link) in links.as_object().unwrap() {
            let to = link["operationId"].as_str().unwrap();
            let target = ops
                .get(to)
                .unwrap_or_else(|| panic!("{from} {status} {name}: no operation {to}"));
            let names = parameter_names(&doc, target);
            for parameter in link["parameters"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, _)| k)
            {
                assert!(
                    names.contains(parameter),
                    "{from} {status} {name}: {to} takes no parameter {parameter} ({names:?})"
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 20, "{checked}");
}
