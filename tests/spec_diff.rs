//! Spec diff: the document the server emits (OpenAPI 3.1, normalised to 3.0) against the
//! hand-written `openapi/crm.yaml`, judged by Oxide's `drift`. Any change other than
//! documentation text fails; documentation differences are listed.

use serde_json::Value;

fn source() -> Value {
    crm_spec::load(concat!(env!("CARGO_MANIFEST_DIR"), "/../openapi/crm.yaml"))
        .expect("openapi/crm.yaml loads")
}

fn emitted() -> Value {
    let doc = serde_json::to_value(crm_api::openapi()).expect("the emitted document serialises");
    crm_spec::normalise_31_to_30(&doc)
}

#[test]
fn the_emitted_spec_matches_the_source() {
    let comparison = crm_spec::compare(&source(), &emitted()).expect("documents compare");
    println!("{comparison}");
    assert!(
        comparison.is_compatible(),
        "the server's document differs from openapi/crm.yaml:\n{comparison}"
    );
}

/// A change that breaks compatibility, applied to a document in place.
type Breakage = fn(&mut Value);

/// Each breakage is applied to the emitted document, as a change to the server would make it.
#[test]
fn every_kind_of_breakage_is_caught() {
    let breakages: Vec<(&str, Breakage)> = vec![
        ("an operation removed", |d| {
            d["paths"]["/unified/crm/contacts"]
                .as_object_mut()
                .unwrap()
                .remove("post");
        }),
        ("a response field dropped", |d| {
            d["components"]["schemas"]["Contact"]["properties"]
                .as_object_mut()
                .unwrap()
                .remove("last_name");
        }),
        ("a property type changed", |d| {
            d["components"]["schemas"]["Contact"]["properties"]["first_name"]["type"] =
                "integer".into();
        }),
        ("a parameter made required", |d| {
            let params = d["paths"]["/unified/crm/contacts"]["get"]["parameters"]
                .as_array_mut()
                .unwrap();
            let page_size = params
                .iter_mut()
                .find(|p| p["name"] == "page_size")
                .unwrap();
            page_size["required"] = true.into();
        }),
        ("a response code removed", |d| {
            d["paths"]["/unified/crm/contacts/{id}"]["get"]["responses"]
                .as_object_mut()
                .unwrap()
                .remove("404");
        }),
        ("a required field added to a request body", |d| {
            d["components"]["schemas"]["CrmCreateContactRequestDto"]["required"] =
                serde_json::json!(["first_name"]);
        }),
    ];
    let source = source();
    for (what, breakage) in breakages {
        let mut broken = emitted();
        breakage(&mut broken);
        let comparison = crm_spec::compare(&source, &broken).expect("documents compare");
        assert!(
            !comparison.is_compatible(),
            "{what} was not caught:\n{comparison}"
        );
        assert!(comparison.significant().count() > 0, "{what}");
        println!("caught {what}:\n{comparison}");
    }
}

#[test]
fn documentation_changes_are_listed_but_pass() {
    let mut changed = emitted();
    changed["paths"]["/unified/crm/contacts"]["get"]["summary"] = "Something else".into();
    changed["components"]["schemas"]["Contact"]["properties"]["first_name"]["description"] =
        "Another text".into();
    let comparison = crm_spec::compare(&source(), &changed).expect("documents compare");
    assert!(comparison.is_compatible(), "{comparison}");
    let baseline = crm_spec::compare(&source(), &emitted()).expect("documents compare");
    assert!(
        comparison.changes().len() > baseline.changes().len(),
        "the documentation changes are listed:\n{comparison}"
    );
}
