//! The server refuses every JSON body the spec refuses.
//!
//! For each operation of `openapi/crm.yaml` with a JSON body, a body that uses every
//! property the schema names (nested objects and array items included) is built from the
//! schema itself and must be accepted. Then, one property at a time, it is broken in each
//! way the schema forbids: `null` where the schema is not nullable, a value of another
//! type, a string outside an enum, a malformed date, a string over `maxLength`, a
//! required property left out, an unknown property where `additionalProperties` is false.
//! Each broken body must be refused with 400 or 422 in the contract's error shape.
//!
//! The reverse direction: a refusal for a reason the spec could have stated is a spec bug,
//! so the baseline body is also sent with each value at a limit the schema allows (a
//! string of exactly `minLength` or `maxLength` characters, an array of exactly `maxItems`
//! items), and each must be accepted. Rules no schema can state are listed in the README.
//!
//! The checker is itself tested: documents made stricter than the server (a nullable
//! field made non-nullable, an enum added to a free string) must produce findings.

use std::collections::BTreeMap;

use conformance::TestServer;
use serde_json::{Map, Value, json};

/// The operations in the order they run: creates first, so the others address records
/// that exist (and the mapping names a definition that exists).
const ORDER: &[&str] = &[
    "crm_create_contact_custom_field_definition",
    "crm_create_contact",
    "crm_create_account",
    "crm_create_list",
];

/// One way of breaking the baseline body.
#[derive(Debug)]
enum Change {
    Set(String, Value),
    Remove(String),
    Add(String, String, Value),
}

struct Mutation {
    what: String,
    change: Change,
}

/// What a check found: the mutations sent per operation and every body wrongly accepted;
/// the bodies at the schema's limits sent and every one of them refused.
#[derive(Default)]
struct Report {
    sent: BTreeMap<String, usize>,
    findings: Vec<String>,
    at_limits: usize,
    refused_at_limits: Vec<String>,
}

struct Spec<'a> {
    doc: &'a Value,
}

impl<'a> Spec<'a> {
    /// Follows `$ref`s and single-branch `allOf` wrappers; returns the schema that says
    /// what the value is, and whether `null` is allowed on the way.
    fn resolve(&self, mut schema: &'a Value) -> (&'a Value, bool) {
        let mut nullable = false;
        loop {
            nullable |= schema.get("nullable") == Some(&Value::Bool(true));
            if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
                let pointer = reference.trim_start_matches('#');
                schema = self.doc.pointer(pointer).expect("a $ref that resolves");
                continue;
            }
            match schema.get("allOf").and_then(Value::as_array) {
                Some(all) if all.len() == 1 => schema = &all[0],
                _ => return (schema, nullable),
            }
        }
    }

    /// A valid value of `schema` that uses every property it names.
    fn sample(&self, outer: &'a Value) -> Value {
        let (schema, _) = self.resolve(outer);
        let has_properties = schema.get("properties").is_some();
        if let Some(example) = outer.get("example").or_else(|| schema.get("example"))
            && !has_properties
        {
            return example.clone();
        }
        if let Some(first) = schema.get("oneOf").and_then(|o| o.get(0)) {
            return schema
                .get("example")
                .cloned()
                .unwrap_or_else(|| self.sample(first));
        }
        match schema.get("type").and_then(Value::as_str) {
            Some("object") => match schema.get("properties").and_then(Value::as_object) {
                Some(properties) => Value::Object(
                    properties
                        .iter()
                        .map(|(name, property)| (name.clone(), self.sample(property)))
                        .collect(),
                ),
                None => schema
                    .get("example")
                    .cloned()
                    .unwrap_or_else(|| json!({"key": "value"})),
            },
            Some("array") => Value::Array(vec![self.sample(&schema["items"])]),
            _ => {
                if let Some(example) = schema.get("example") {
                    return example.clone();
                }
                if let Some(first) = schema.get("enum").and_then(|e| e.get(0)) {
                    return first.clone();
                }
                match (
                    schema.get("type").and_then(Value::as_str),
                    schema.get("format").and_then(Value::as_str),
                ) {
                    (Some("string"), Some("date")) => json!("2024-02-29"),
                    (Some("string"), Some("date-time")) => json!("2024-02-29T12:00:00Z"),
                    (Some("integer"), _) => json!(7),
                    (Some("number"), _) => json!(7.5),
                    (Some("boolean"), _) => json!(true),
                    _ => json!("sample"),
                }
            }
        }
    }

    /// Every way of breaking `value` (at `pointer`) that `schema` forbids, and the same
    /// for what it contains.
    fn mutations(&self, schema: &'a Value, value: &Value, pointer: &str, out: &mut Vec<Mutation>) {
        let (schema, nullable) = self.resolve(schema);
        let at = if pointer.is_empty() { "body" } else { pointer };
        let typed = schema.get("type").and_then(Value::as_str);
        let mut set = |what: String, to: Value| {
            out.push(Mutation {
                what,
                change: Change::Set(pointer.to_owned(), to),
            })
        };
        if !nullable && (typed.is_some() || schema.get("oneOf").is_some()) {
            set(format!("{at} = null"), Value::Null);
        }
        let wrong = match typed {
            Some("string") => Some(json!(12345)),
            Some("integer") => Some(json!("12")),
            Some("number") => Some(json!("1.5")),
            Some("boolean") => Some(json!("true")),
            Some("array") => Some(json!({"0": "x"})),
            Some("object") => Some(json!(["x"])),
            _ => None,
        };
        if let Some(wrong) = wrong {
            set(format!("{at} = {wrong} (wrong type)"), wrong);
        }
        if typed == Some("integer") {
            set(format!("{at} = 1.5 (not whole)"), json!(1.5));
        }
        if schema.get("enum").is_some() {
            set(
                format!("{at} outside its enum"),
                json!("zz_not_in_the_enum"),
            );
        }
        match schema.get("format").and_then(Value::as_str) {
            Some("date") => set(format!("{at} not a date"), json!("2024-02-30")),
            Some("date-time") => set(format!("{at} not a date-time"), json!("yesterday")),
            _ => {}
        }
        if let Some(max) = schema.get("maxLength").and_then(Value::as_u64) {
            let long = "x".repeat(usize::try_from(max).expect("small") + 1);
            set(format!("{at} over maxLength {max}"), Value::String(long));
        }
        if let Some(min) = schema
            .get("minLength")
            .and_then(Value::as_u64)
            .filter(|m| *m > 0)
        {
            let short = "x".repeat(usize::try_from(min).expect("small") - 1);
            set(format!("{at} under minLength {min}"), Value::String(short));
        }
        if let (Some(max), Value::Array(items)) =
            (schema.get("maxItems").and_then(Value::as_u64), value)
            && let Some(first) = items.first()
        {
            let many = vec![first.clone(); usize::try_from(max).expect("small") + 1];
            set(format!("{at} over maxItems {max}"), Value::Array(many));
        }
        match (typed, value) {
            (Some("object"), Value::Object(fields)) => {
                for name in schema
                    .get("required")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                {
                    out.push(Mutation {
                        what: format!("{pointer}/{name} (required) left out"),
                        change: Change::Remove(format!("{pointer}/{name}")),
                    });
                }
                let additional = schema.get("additionalProperties");
                if additional == Some(&Value::Bool(false)) {
                    out.push(Mutation {
                        what: format!("{at} with an unknown property"),
                        change: Change::Add(pointer.to_owned(), "zz_unknown".into(), json!(1)),
                    });
                }
                let properties = schema.get("properties").and_then(Value::as_object);
                for (name, inner) in fields {
                    let inner_schema = match properties.and_then(|p| p.get(name)) {
                        Some(s) => s,
                        None => match additional {
                            Some(s @ Value::Object(_))
                                if !s.as_object().is_some_and(Map::is_empty) =>
                            {
                                s
                            }
                            _ => continue,
                        },
                    };
                    let escaped = name.replace('~', "~0").replace('/', "~1");
                    self.mutations(inner_schema, inner, &format!("{pointer}/{escaped}"), out);
                }
            }
            (Some("array"), Value::Array(items)) => {
                if let Some(first) = items.first() {
                    self.mutations(&schema["items"], first, &format!("{pointer}/0"), out);
                }
            }
            _ => {}
        }
    }
}

impl<'a> Spec<'a> {
    /// Every value at a limit `schema` allows, in place of `value` (at `pointer`), and the
    /// same for what it contains. Strings are made of `x`, which every pattern of the spec
    /// accepts.
    fn at_limits(&self, schema: &'a Value, value: &Value, pointer: &str, out: &mut Vec<Mutation>) {
        let (schema, _) = self.resolve(schema);
        let at = if pointer.is_empty() { "body" } else { pointer };
        let mut set = |what: String, to: Value| {
            out.push(Mutation {
                what,
                change: Change::Set(pointer.to_owned(), to),
            })
        };
        for (limit, name) in [
            ("minLength", "exactly minLength"),
            ("maxLength", "exactly maxLength"),
        ] {
            if let Some(n) = schema.get(limit).and_then(Value::as_u64) {
                let text = "x".repeat(usize::try_from(n).expect("small"));
                set(format!("{at} of {name} {n}"), Value::String(text));
            }
        }
        match (schema.get("type").and_then(Value::as_str), value) {
            (Some("array"), Value::Array(items)) => {
                if let (Some(first), Some(max)) = (
                    items.first(),
                    schema.get("maxItems").and_then(Value::as_u64),
                ) {
                    let many = vec![first.clone(); usize::try_from(max).expect("small")];
                    set(
                        format!("{at} of exactly maxItems {max}"),
                        Value::Array(many),
                    );
                }
                if let Some(first) = items.first() {
                    self.at_limits(&schema["items"], first, &format!("{pointer}/0"), out);
                }
            }
            (Some("object"), Value::Object(fields)) => {
                let properties = schema.get("properties").and_then(Value::as_object);
                let additional = schema.get("additionalProperties").filter(|a| a.is_object());
                for (name, inner) in fields {
                    let Some(inner_schema) = properties.and_then(|p| p.get(name)).or(additional)
                    else {
                        continue;
                    };
                    let escaped = name.replace('~', "~0").replace('/', "~1");
                    self.at_limits(inner_schema, inner, &format!("{pointer}/{escaped}"), out);
                }
            }
            _ => {}
        }
    }
}

fn apply(body: &Value, change: &Change) -> Value {
    let mut body = body.clone();
    match change {
        Change::Set(pointer, to) => {
            *body.pointer_mut(pointer).expect("the mutated value exists") = to.clone();
        }
        Change::Remove(pointer) => {
            let (parent, name) = pointer.rsplit_once('/').expect("a property pointer");
            body.pointer_mut(parent)
                .and_then(Value::as_object_mut)
                .expect("the parent object exists")
                .remove(name);
        }
        Change::Add(parent, name, to) => {
            body.pointer_mut(parent)
                .and_then(Value::as_object_mut)
                .expect("the parent object exists")
                .insert(name.clone(), to.clone());
        }
    }
    body
}

/// Ids of the records the path parameters name, filled in by the creates.
#[derive(Default)]
struct Ids {
    by_noun: BTreeMap<&'static str, String>,
    external_id: String,
}

fn noun_of(path: &str) -> &'static str {
    if path.contains("/custom_field_definitions/") {
        "custom_field_definition"
    } else if path.contains("/contacts") {
        "contact"
    } else if path.contains("/accounts") {
        "account"
    } else {
        "list"
    }
}

fn fill_path(path: &str, ids: &Ids) -> String {
    let id = ids.by_noun.get(noun_of(path)).cloned().unwrap_or_default();
    path.replace("{id}", &id)
        .replace("{external_id}", &ids.external_id)
}

/// What a schema cannot say, applied to the baseline once: a create takes no `id` and no
/// `etag`; an update carries the id of the record it addresses and no `etag` (it changes
/// with every write); list items name a contact that exists.
fn settle(operation: &str, path: &str, body: &mut Value, ids: &Ids) {
    let Some(fields) = body.as_object_mut() else {
        return;
    };
    fields.remove("etag");
    if let Some(items) = fields.get_mut("item_ids") {
        *items = json!([ids.by_noun["contact"]]);
    }
    if operation.contains("_create_") {
        fields.remove("id");
    } else if fields.contains_key("id") {
        let id = ids.by_noun[noun_of(path)].clone();
        fields.insert("id".into(), Value::String(id));
    }
}

/// A contact's `external_id` is unique, so each create gets a fresh one, and an update
/// (of the one contact the updates address) keeps the contact's own; a body whose
/// `external_id` is the thing broken is left as it is.
fn fresh_external_id(operation: &str, body: &mut Value, ids: &Ids, serial: usize) {
    if let Some(external_id) = body.get_mut("external_id").filter(|v| v.is_string()) {
        *external_id = if operation.starts_with("crm_update_") {
            Value::String(ids.external_id.clone())
        } else {
            Value::String(format!("strict-{serial}"))
        };
    }
}

struct Sender<'s> {
    http: reqwest::Client,
    server: &'s TestServer,
    serial: usize,
}

impl Sender<'_> {
    async fn send(&mut self, method: &str, path: &str, body: &Value) -> (u16, Value) {
        self.serial += 1;
        let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
        let reply = self
            .http
            .request(method, format!("{}{path}", self.server.base_url))
            .basic_auth(&self.server.key, Some(""))
            .header("x-account-id", &self.server.account_id)
            .json(body)
            .send()
            .await
            .expect("the server answers");
        let status = reply.status().as_u16();
        let text = reply.text().await.expect("a body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }
}

/// Runs the check of `doc` against `server`, for `only` those operations if given.
async fn check(doc: &Value, server: &TestServer, only: Option<&[&str]>) -> Report {
    let spec = Spec { doc };
    let mut operations: Vec<(String, String, String, &Value)> = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("a path item") {
            let Some(schema) = operation.pointer("/requestBody/content/application~1json/schema")
            else {
                continue;
            };
            let id = operation["operationId"]
                .as_str()
                .expect("operationId")
                .to_owned();
            operations.push((id, method.clone(), path.clone(), schema));
        }
    }
    operations.sort_by_key(|(id, ..)| ORDER.iter().position(|o| o == id).unwrap_or(ORDER.len()));

    let mut sender = Sender {
        http: reqwest::Client::new(),
        server,
        serial: 0,
    };
    let mut ids = Ids::default();
    let mut report = Report::default();
    for (operation, method, path, schema) in operations {
        let mut baseline = spec.sample(schema);
        settle(&operation, &path, &mut baseline, &ids);
        let url = fill_path(&path, &ids);
        let mut body = baseline.clone();
        fresh_external_id(&operation, &mut body, &ids, sender.serial);
        let (status, reply) = sender.send(&method, &url, &body).await;
        assert!(
            (200..300).contains(&status),
            "{operation}: the baseline body built from the schema must be accepted, got \
             {status}: {reply}\nbody: {body}"
        );
        if method == "post" && !path.contains('{') {
            let id = reply["data"]["id"]
                .as_str()
                .expect("a created id")
                .to_owned();
            if operation == "crm_create_contact" {
                ids.external_id = reply["data"]["external_id"]
                    .as_str()
                    .expect("the contact's external_id")
                    .to_owned();
            }
            ids.by_noun.insert(noun_of(&path), id);
        }
        if only.is_some_and(|only| !only.contains(&operation.as_str())) {
            continue;
        }

        let mut limits = Vec::new();
        spec.at_limits(schema, &baseline, "", &mut limits);
        report.at_limits += limits.len();
        for limit in limits {
            let mut body = apply(&baseline, &limit.change);
            fresh_external_id(&operation, &mut body, &ids, sender.serial);
            let (status, reply) = sender.send(&method, &url, &body).await;
            if !(200..300).contains(&status) {
                report.refused_at_limits.push(format!(
                    "{operation}: {} was answered {status}: {reply}",
                    limit.what
                ));
            }
        }

        let mut mutations = Vec::new();
        spec.mutations(schema, &baseline, "", &mut mutations);
        mutations.push(Mutation {
            what: "body is an array".into(),
            change: Change::Set(String::new(), json!([baseline.clone()])),
        });
        *report.sent.entry(operation.clone()).or_default() += mutations.len();
        for mutation in mutations {
            let mut body = apply(&baseline, &mutation.change);
            if !mutation.what.starts_with("/external_id") {
                fresh_external_id(&operation, &mut body, &ids, sender.serial);
            }
            let (status, reply) = sender.send(&method, &url, &body).await;
            let shaped = reply.get("statusCode").and_then(Value::as_u64) == Some(u64::from(status))
                && reply.get("message").is_some_and(Value::is_string)
                && reply.get("timestamp").is_some_and(Value::is_string);
            if !matches!(status, 400 | 422) || !shaped {
                report.findings.push(format!(
                    "{operation}: {} was answered {status}: {reply}",
                    mutation.what
                ));
            }
        }
    }
    report
}

fn crm_yaml() -> Value {
    crm_spec::load(concat!(env!("CARGO_MANIFEST_DIR"), "/../openapi/crm.yaml"))
        .expect("the spec loads")
}

#[tokio::test]
async fn every_body_the_spec_refuses_is_refused() {
    let server = TestServer::start().await;
    let report = check(&crm_yaml(), &server, None).await;
    let total: usize = report.sent.values().sum();
    for (operation, sent) in &report.sent {
        println!("body strictness: {operation:<45} {sent:>4} broken bodies");
    }
    println!(
        "body strictness: {total} broken bodies over {} operations, {} accepted",
        report.sent.len(),
        report.findings.len()
    );
    assert!(
        report.sent.len() >= 11,
        "every operation with a body is checked"
    );
    assert!(
        report.findings.is_empty(),
        "bodies the spec refuses were not refused:\n{}",
        report.findings.join("\n")
    );
    println!(
        "body strictness: {} bodies at the schema's limits, {} refused",
        report.at_limits,
        report.refused_at_limits.len()
    );
    assert!(
        report.at_limits >= 6,
        "the limits of the spec are exercised"
    );
    assert!(
        report.refused_at_limits.is_empty(),
        "bodies the spec accepts, at its limits, were refused (a rule the spec could state):\n{}",
        report.refused_at_limits.join("\n")
    );
    server.stop().await;
}

#[tokio::test]
async fn a_spec_stricter_than_the_server_is_caught() {
    let server = TestServer::start().await;
    let mut doc = crm_yaml();
    let contact = doc
        .pointer_mut("/components/schemas/CrmCreateContactRequestDto/properties")
        .and_then(Value::as_object_mut)
        .expect("the contact request schema");
    contact["first_name"]
        .as_object_mut()
        .expect("first_name")
        .remove("nullable");
    contact["title"]["enum"] = json!(["Co-founder", "CEO"]);
    let report = check(&doc, &server, Some(&["crm_create_contact"])).await;
    let found = report.findings.join("\n");
    assert!(found.contains("/first_name = null"), "{found}");
    assert!(found.contains("/title outside its enum"), "{found}");
    assert_eq!(report.findings.len(), 2, "{found}");
    server.stop().await;
}
