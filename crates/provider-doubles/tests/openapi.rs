//! The doubles checked against our OpenAPI descriptions of the vendors' endpoints
//! (`openapi/providers/{hubspot,pipedrive}.yaml`): a scripted session against each double,
//! every answer (success and error) checked for a documented status, its required headers
//! and its JSON body against the operation's response schema, `$ref`s resolved. Every
//! operation of a document must be exercised. Each kind of check is also fed a broken
//! document and must fail.
//!
//! The schema check is a small validator for the subset of OpenAPI 3.0 schemas the
//! documents use; a keyword outside that subset is reported, never skipped.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use provider_doubles::{Failure, HubSpotDouble, PipedriveDouble};
use reqwest::header::HeaderMap;
use reqwest::{Client, Method};
use serde_json::{Map, Value, json};

// ---- loading ----------------------------------------------------------------------------

fn yaml_to_json(v: serde_yaml::Value) -> Value {
    use serde_yaml::Value as Y;
    match v {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => {
            if let Some(i) = n.as_i64() {
                json!(i)
            } else if let Some(u) = n.as_u64() {
                json!(u)
            } else {
                json!(n.as_f64())
            }
        }
        Y::String(s) => Value::String(s),
        Y::Sequence(s) => Value::Array(s.into_iter().map(yaml_to_json).collect()),
        Y::Mapping(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| {
                    let key = match k {
                        Y::String(s) => s,
                        other => serde_yaml::to_string(&other).unwrap().trim().to_owned(),
                    };
                    (key, yaml_to_json(v))
                })
                .collect(),
        ),
        Y::Tagged(t) => yaml_to_json(t.value),
    }
}

fn load(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../openapi/providers")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    yaml_to_json(serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
}

// ---- the schema validator ---------------------------------------------------------------

/// Keywords that only annotate.
const ANNOTATIONS: &[&str] = &[
    "description",
    "title",
    "default",
    "example",
    "readOnly",
    "writeOnly",
    "deprecated",
];
const CHECKED: &[&str] = &[
    "$ref",
    "type",
    "nullable",
    "enum",
    "required",
    "properties",
    "additionalProperties",
    "items",
    "allOf",
    "anyOf",
    "oneOf",
    "minimum",
    "maximum",
    "minItems",
    "maxItems",
    "minLength",
    "maxLength",
    "format",
];

fn deref<'a>(root: &'a Value, mut v: &'a Value) -> Result<&'a Value, String> {
    for _ in 0..32 {
        match v.get("$ref").and_then(Value::as_str) {
            None => return Ok(v),
            Some(r) => {
                let pointer = r
                    .strip_prefix('#')
                    .ok_or_else(|| format!("only local $refs are supported: {r}"))?;
                v = root
                    .pointer(pointer)
                    .ok_or_else(|| format!("unresolved $ref {r}"))?;
            }
        }
    }
    Err("a $ref cycle".to_owned())
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Checks `inst` against `schema`; what is wrong goes to `errs`, each with its JSON path.
fn validate(root: &Value, schema: &Value, inst: &Value, at: &str, errs: &mut Vec<String>) {
    let schema = match deref(root, schema) {
        Ok(s) => s,
        Err(e) => return errs.push(format!("{at}: {e}")),
    };
    let Some(s) = schema.as_object() else {
        return errs.push(format!("{at}: a schema must be an object"));
    };
    for k in s.keys() {
        if !CHECKED.contains(&k.as_str())
            && !ANNOTATIONS.contains(&k.as_str())
            && !k.starts_with("x-")
        {
            errs.push(format!(
                "{at}: the checker does not support the schema keyword {k:?}"
            ));
        }
    }
    let ty = s.get("type").and_then(Value::as_str);
    if inst.is_null() {
        if ty.is_some() && s.get("nullable") != Some(&Value::Bool(true)) {
            errs.push(format!(
                "{at}: null where the schema does not allow it (type {})",
                ty.unwrap_or("")
            ));
        }
        return;
    }
    if let Some(ty) = ty {
        let actual = type_name(inst);
        let ok = actual == ty || (ty == "number" && actual == "integer");
        if !ok {
            return errs.push(format!("{at}: expected {ty}, got {actual} ({inst})"));
        }
    }
    if let Some(options) = s.get("enum").and_then(Value::as_array)
        && !options.contains(inst)
    {
        errs.push(format!(
            "{at}: {inst} is not one of {}",
            Value::Array(options.clone())
        ));
    }
    match inst {
        Value::String(text) => {
            if s.get("format").and_then(Value::as_str) == Some("date-time")
                && chrono::DateTime::parse_from_rfc3339(text).is_err()
            {
                errs.push(format!("{at}: {text:?} is not an RFC 3339 date-time"));
            }
            let len = text.chars().count() as u64;
            if s.get("minLength")
                .and_then(Value::as_u64)
                .is_some_and(|m| len < m)
            {
                errs.push(format!("{at}: shorter than minLength"));
            }
            if s.get("maxLength")
                .and_then(Value::as_u64)
                .is_some_and(|m| len > m)
            {
                errs.push(format!("{at}: longer than maxLength"));
            }
        }
        Value::Number(n) => {
            let x = n.as_f64().unwrap_or(f64::NAN);
            if s.get("minimum")
                .and_then(Value::as_f64)
                .is_some_and(|m| x < m)
            {
                errs.push(format!("{at}: {x} is below the minimum"));
            }
            if s.get("maximum")
                .and_then(Value::as_f64)
                .is_some_and(|m| x > m)
            {
                errs.push(format!("{at}: {x} is above the maximum"));
            }
            if s.get("format").and_then(Value::as_str) == Some("int32")
                && n.as_i64().is_none_or(|i| i32::try_from(i).is_err())
            {
                errs.push(format!("{at}: {n} is not an int32"));
            }
        }
        Value::Array(items) => {
            if s.get("minItems")
                .and_then(Value::as_u64)
                .is_some_and(|m| (items.len() as u64) < m)
            {
                errs.push(format!("{at}: fewer items than minItems"));
            }
            if s.get("maxItems")
                .and_then(Value::as_u64)
                .is_some_and(|m| (items.len() as u64) > m)
            {
                errs.push(format!("{at}: more items than maxItems"));
            }
            if let Some(item_schema) = s.get("items") {
                for (i, item) in items.iter().enumerate() {
                    validate(root, item_schema, item, &format!("{at}[{i}]"), errs);
                }
            }
        }
        Value::Object(obj) => {
            for name in s
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let name = name.as_str().unwrap_or_default();
                if !obj.contains_key(name) {
                    errs.push(format!("{at}: the required property {name:?} is missing"));
                }
            }
            let props = s.get("properties").and_then(Value::as_object);
            for (k, v) in obj {
                match props.and_then(|p| p.get(k)) {
                    Some(ps) => validate(root, ps, v, &format!("{at}.{k}"), errs),
                    None => match s.get("additionalProperties") {
                        Some(Value::Bool(false)) => {
                            errs.push(format!("{at}: the property {k:?} is not allowed"))
                        }
                        Some(Value::Bool(true)) | None => {}
                        Some(extra) => validate(root, extra, v, &format!("{at}.{k}"), errs),
                    },
                }
            }
        }
        _ => {}
    }
    if let Some(all) = s.get("allOf").and_then(Value::as_array) {
        for sub in all {
            validate(root, sub, inst, at, errs);
        }
    }
    for (kw, want_one) in [("anyOf", false), ("oneOf", true)] {
        if let Some(subs) = s.get(kw).and_then(Value::as_array) {
            let passing = subs
                .iter()
                .filter(|sub| {
                    let mut e = Vec::new();
                    validate(root, sub, inst, at, &mut e);
                    e.is_empty()
                })
                .count();
            if passing == 0 || (want_one && passing > 1) {
                errs.push(format!("{at}: {passing} of the {kw} schemas match"));
            }
        }
    }
}

// ---- operations -------------------------------------------------------------------------

const METHODS: &[&str] = &[
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// The operation for a method and a concrete path: the template that matches with the most
/// literal segments.
fn find_operation<'a>(doc: &'a Value, method: &str, path: &str) -> Option<(&'a str, &'a Value)> {
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let mut best: Option<(usize, &str, &Value)> = None;
    for (template, item) in doc["paths"].as_object()? {
        let t: Vec<&str> = template.trim_start_matches('/').split('/').collect();
        if t.len() != segs.len() {
            continue;
        }
        let mut literal = 0;
        let matches = t.iter().zip(&segs).all(|(t, s)| {
            if t.starts_with('{') && t.ends_with('}') {
                !s.is_empty()
            } else {
                literal += 1;
                t == s
            }
        });
        let Some(op) = item.get(method.to_lowercase()) else {
            continue;
        };
        if matches && best.is_none_or(|(n, _, _)| literal > n) {
            best = Some((literal, template.as_str(), op));
        }
    }
    best.map(|(_, t, op)| (t, op))
}

fn operation_ids(doc: &Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for item in doc["paths"]
        .as_object()
        .into_iter()
        .flat_map(|p| p.values())
    {
        for m in METHODS {
            if let Some(id) = item.get(*m).and_then(|op| op["operationId"].as_str()) {
                out.insert(id.to_owned());
            }
        }
    }
    out
}

/// Checks one answer against the document; what is wrong, and the operation's id.
fn check_answer(
    doc: &Value,
    method: &str,
    path: &str,
    status: u16,
    headers: &HeaderMap,
    body: &str,
) -> (Vec<String>, Option<String>) {
    let what = format!("{method} {path} -> {status}");
    let Some((template, op)) = find_operation(doc, method, path) else {
        return (vec![format!("{what}: no operation in the document")], None);
    };
    let op_id = op["operationId"].as_str().map(str::to_owned);
    let mut errs = Vec::new();
    let responses = &op["responses"];
    let range = format!("{}XX", status / 100);
    let Some(resp) = responses
        .get(status.to_string())
        .or_else(|| responses.get(&range))
        .or_else(|| responses.get("default"))
    else {
        return (
            vec![format!(
                "{what}: status {status} is not documented for {template}"
            )],
            op_id,
        );
    };
    let resp = match deref(doc, resp) {
        Ok(r) => r,
        Err(e) => return (vec![format!("{what}: {e}")], op_id),
    };
    for (name, h) in resp
        .get("headers")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        let h = match deref(doc, h) {
            Ok(h) => h,
            Err(e) => {
                errs.push(format!("{what}: header {name}: {e}"));
                continue;
            }
        };
        match headers.get(name.as_str()).map(|v| v.to_str().unwrap_or("")) {
            None if h["required"] == true => {
                errs.push(format!("{what}: the required header {name} is missing"))
            }
            None => {}
            Some(v) => {
                let ty = deref(doc, &h["schema"])
                    .ok()
                    .and_then(|s| s["type"].as_str());
                if ty == Some("integer") && v.trim().parse::<i64>().is_err() {
                    errs.push(format!("{what}: header {name} is not an integer: {v:?}"));
                }
            }
        }
    }
    match resp.get("content").and_then(Value::as_object) {
        None => {
            if !body.is_empty() {
                errs.push(format!(
                    "{what}: a body where the document has none: {body}"
                ));
            }
        }
        Some(content) => {
            let ctype = headers
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            match content.get("application/json") {
                None => errs.push(format!(
                    "{what}: the document has no application/json content"
                )),
                Some(media) => {
                    if !ctype.starts_with("application/json") {
                        errs.push(format!(
                            "{what}: content-type {ctype:?} is not application/json"
                        ));
                    }
                    match serde_json::from_str::<Value>(body) {
                        Err(e) => {
                            errs.push(format!("{what}: the body is not JSON ({e}): {body:?}"))
                        }
                        Ok(v) => {
                            let mut e = Vec::new();
                            validate(doc, &media["schema"], &v, "$", &mut e);
                            errs.extend(e.into_iter().map(|e| format!("{what}: {e}")));
                        }
                    }
                }
            }
        }
    }
    (errs, op_id)
}

// ---- scripted sessions ------------------------------------------------------------------

enum Auth {
    None,
    Bearer(String),
    ApiToken(String),
    Basic(String, String),
}

struct Session<'a> {
    doc: &'a Value,
    base: String,
    client: Client,
    problems: Vec<String>,
    ops: BTreeSet<String>,
}

impl<'a> Session<'a> {
    fn new(doc: &'a Value, base: String) -> Session<'a> {
        Session {
            doc,
            base,
            client: Client::new(),
            problems: Vec::new(),
            ops: BTreeSet::new(),
        }
    }

    /// Sends a request, checks the answer against the document, and returns its body.
    /// `expect` is what the script means to provoke; another status is a script error.
    async fn send(
        &mut self,
        method: &str,
        path_query: &str,
        auth: &Auth,
        body: Option<Value>,
        expect: u16,
    ) -> Value {
        let mut rb = self.client.request(
            Method::from_bytes(method.as_bytes()).unwrap(),
            format!("{}{path_query}", self.base),
        );
        rb = match auth {
            Auth::None => rb,
            Auth::Bearer(t) => rb.bearer_auth(t),
            Auth::ApiToken(t) => rb.header("x-api-token", t),
            Auth::Basic(id, secret) => rb.basic_auth(id, Some(secret)),
        };
        rb = match body {
            None => rb,
            Some(Value::String(form)) => rb
                .header("content-type", "application/x-www-form-urlencoded")
                .body(form),
            Some(v) => rb.json(&v),
        };
        let resp = rb
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path_query}: {e}"));
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        assert_eq!(
            status, expect,
            "the script meant {method} {path_query} to answer {expect}: {text}"
        );
        let path = path_query.split('?').next().unwrap();
        let (errs, op) = check_answer(self.doc, method, path, status, &headers, &text);
        self.problems.extend(errs);
        self.ops.extend(op);
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// What is wrong: the problems found, and the operations never exercised.
    fn finish(mut self) -> Vec<String> {
        for op in operation_ids(self.doc).difference(&self.ops) {
            self.problems
                .push(format!("the operation {op} was never exercised"));
        }
        self.problems
    }
}

fn form(pairs: &[(&str, &str)]) -> Value {
    let mut s = form_urlencoded::Serializer::new(String::new());
    s.extend_pairs(pairs);
    Value::String(s.finish())
}

async fn hubspot_session(doc: &Value) -> Vec<String> {
    let hs = HubSpotDouble::start().await;
    hs.add_token("t");
    hs.add_oauth_client("cid", "secret");
    let grant = hs.issue_oauth("cid", Duration::from_secs(600));
    let list_members: Vec<String> = (0..3)
        .map(|i| {
            hs.insert_contact(Map::from_iter([(
                "email".to_owned(),
                json!(format!("m{i}@example.com")),
            )]))
        })
        .collect();
    let list = hs.insert_list("Members", &list_members);
    let mut s = Session::new(doc, hs.base_url());
    let t = Auth::Bearer("t".to_owned());
    let v = "2026-09";

    for o in ["contacts", "companies"] {
        let (first, second) = if o == "contacts" {
            (
                json!({"email": "a@example.com", "firstname": "Ann"}),
                json!({"email": "b@example.com"}),
            )
        } else {
            (
                json!({"name": "Acme", "domain": "acme.test"}),
                json!({"name": "Beta"}),
            )
        };
        let base = format!("/crm/objects/{v}/{o}");
        s.send("GET", &base, &Auth::None, None, 401).await;
        let a = s
            .send("POST", &base, &t, Some(json!({"properties": first})), 201)
            .await;
        let a = a["id"].as_str().unwrap().to_owned();
        let b = s
            .send("POST", &base, &t, Some(json!({"properties": second})), 201)
            .await;
        let b = b["id"].as_str().unwrap().to_owned();
        s.send(
            "POST",
            &base,
            &t,
            Some(json!({"properties": {"nosuch": "x"}})),
            400,
        )
        .await;
        if o == "contacts" {
            s.send(
                "POST",
                &base,
                &t,
                Some(json!({"properties": {"email": "not-an-email"}})),
                400,
            )
            .await;
            s.send(
                "POST",
                &base,
                &t,
                Some(json!({"properties": {"email": "a@example.com"}})),
                409,
            )
            .await;
            s.send(
                "PATCH",
                &format!("{base}/{b}"),
                &t,
                Some(json!({"properties": {"email": "a@example.com"}})),
                409,
            )
            .await;
        }
        s.send("GET", &format!("{base}?limit=1"), &t, None, 200)
            .await;
        s.send("GET", &format!("{base}?limit=101"), &t, None, 400)
            .await;
        s.send(
            "GET",
            &format!("{base}/{a}?properties=email,name,phone"),
            &t,
            None,
            200,
        )
        .await;
        s.send("GET", &format!("{base}/{a}"), &t, None, 200).await;
        s.send("GET", &format!("{base}/999999"), &t, None, 404)
            .await;
        s.send("GET", &format!("{base}/{a}?archived=maybe"), &t, None, 400)
            .await;
        s.send(
            "PATCH",
            &format!("{base}/{a}"),
            &t,
            Some(json!({"properties": {"city": "Oslo", "phone": ""}})),
            200,
        )
        .await;
        s.send(
            "PATCH",
            &format!("{base}/{a}"),
            &t,
            Some(json!({"properties": {"nosuch": "x"}})),
            400,
        )
        .await;
        s.send(
            "PATCH",
            &format!("{base}/999999"),
            &t,
            Some(json!({"properties": {"city": "x"}})),
            404,
        )
        .await;
        let search = json!({"filterGroups": [{"filters": [{"propertyName": "hs_object_id", "operator": "GTE", "value": "0"}]}],
            "sorts": [{"propertyName": "hs_object_id", "direction": "ASCENDING"}], "limit": 1, "properties": ["email", "name"]});
        s.send("POST", &format!("{base}/search"), &t, Some(search), 200)
            .await;
        s.send(
            "POST",
            &format!("{base}/search"),
            &t,
            Some(json!({"after": "9999", "limit": 2})),
            400,
        )
        .await;
        s.send("DELETE", &format!("{base}/{b}"), &t, None, 204)
            .await;
        s.send("DELETE", &format!("{base}/{b}"), &t, None, 404)
            .await;
        s.send("GET", &format!("{base}/{b}?archived=true"), &t, None, 200)
            .await;
        s.send("GET", &format!("{base}?archived=true"), &t, None, 200)
            .await;
        s.send("GET", &format!("/crm/properties/{v}/{o}"), &t, None, 200)
            .await;
        s.send(
            "GET",
            &format!("/crm/properties/{v}/{o}?archived=maybe"),
            &t,
            None,
            400,
        )
        .await;
        s.send(
            "GET",
            &format!("/crm/properties/{v}/{o}/createdate"),
            &t,
            None,
            200,
        )
        .await;
        s.send(
            "GET",
            &format!("/crm/properties/{v}/{o}/nosuch"),
            &t,
            None,
            404,
        )
        .await;
    }
    hs.add_property(
        "contacts",
        json!({"name": "tier", "type": "enumeration", "fieldType": "select",
        "options": [{"label": "Gold", "value": "gold"}]}),
    );
    s.send(
        "GET",
        &format!("/crm/properties/{v}/contacts/tier"),
        &t,
        None,
        200,
    )
    .await;
    let score = json!({"name": "score", "label": "Score", "type": "number",
        "fieldType": "number", "groupName": "contactinformation"});
    let level = json!({"name": "level", "label": "Level", "type": "enumeration",
        "fieldType": "radio", "groupName": "contactinformation", "description": "How far",
        "options": [{"label": "One", "value": "1"}, {"label": "Two", "value": "2",
        "displayOrder": 1, "hidden": true}]});
    let properties = format!("/crm/properties/{v}/contacts");
    s.send("POST", &properties, &t, Some(score.clone()), 201)
        .await;
    s.send("POST", &properties, &t, Some(level), 201).await;
    s.send("POST", &properties, &t, Some(score), 409).await;
    s.send(
        "POST",
        &properties,
        &t,
        Some(json!({"name": "Bad-Name", "label": "X", "type": "string",
            "fieldType": "text", "groupName": "contactinformation"})),
        400,
    )
    .await;
    s.send(
        "POST",
        &properties,
        &Auth::None,
        Some(json!({"name": "x"})),
        401,
    )
    .await;
    s.send(
        "PATCH",
        &format!("{properties}/score"),
        &t,
        Some(json!({"label": "Lead score", "description": "0 to 100"})),
        200,
    )
    .await;
    s.send(
        "PATCH",
        &format!("{properties}/level"),
        &t,
        Some(json!({"options": [{"label": "Three", "value": "3"}]})),
        200,
    )
    .await;
    s.send(
        "PATCH",
        &format!("{properties}/email"),
        &t,
        Some(json!({"label": "E-mail"})),
        400,
    )
    .await;
    s.send(
        "PATCH",
        &format!("{properties}/score"),
        &t,
        Some(json!({"name": "points"})),
        400,
    )
    .await;
    s.send(
        "PATCH",
        &format!("{properties}/nosuch"),
        &t,
        Some(json!({"label": "X"})),
        404,
    )
    .await;

    s.send(
        "POST",
        &format!("/crm/lists/{v}/search"),
        &t,
        Some(json!({"query": "mem", "count": 1})),
        200,
    )
    .await;
    s.send(
        "POST",
        &format!("/crm/lists/{v}/search"),
        &t,
        Some(json!({"count": 501})),
        400,
    )
    .await;
    s.send("GET", &format!("/crm/lists/{v}/{list}"), &t, None, 200)
        .await;
    s.send("GET", &format!("/crm/lists/{v}/999"), &t, None, 404)
        .await;
    s.send(
        "GET",
        &format!("/crm/lists/{v}/{list}/memberships?limit=2"),
        &t,
        None,
        200,
    )
    .await;
    s.send(
        "GET",
        &format!("/crm/lists/{v}/{list}/memberships?limit=251"),
        &t,
        None,
        400,
    )
    .await;
    s.send(
        "GET",
        &format!("/crm/lists/{v}/999/memberships"),
        &t,
        None,
        404,
    )
    .await;
    let created = s
        .send(
            "POST",
            &format!("/crm/lists/{v}"),
            &t,
            Some(json!({"name": "Created", "objectTypeId": "0-1", "processingType": "MANUAL"})),
            200,
        )
        .await;
    let created = created["list"]["listId"].as_str().unwrap().to_owned();
    s.send(
        "POST",
        &format!("/crm/lists/{v}"),
        &t,
        Some(json!({"name": "Members", "objectTypeId": "0-1", "processingType": "MANUAL"})),
        400,
    )
    .await;
    s.send(
        "POST",
        &format!("/crm/lists/{v}"),
        &t,
        Some(json!({"name": "Dynamic", "objectTypeId": "0-1", "processingType": "DYNAMIC"})),
        400,
    )
    .await;
    s.send(
        "PUT",
        &format!("/crm/lists/{v}/{created}/update-list-name?listName=Renamed"),
        &t,
        None,
        200,
    )
    .await;
    s.send(
        "PUT",
        &format!("/crm/lists/{v}/{created}/update-list-name?listName=Members"),
        &t,
        None,
        400,
    )
    .await;
    s.send(
        "PUT",
        &format!("/crm/lists/{v}/999/update-list-name?listName=X"),
        &t,
        None,
        404,
    )
    .await;
    let members = format!("/crm/lists/{v}/{created}/memberships");
    s.send(
        "PUT",
        &format!("{members}/add"),
        &t,
        Some(json!([list_members[0], list_members[1], "999999"])),
        200,
    )
    .await;
    s.send(
        "PUT",
        &format!("{members}/add"),
        &t,
        Some(json!({"ids": [list_members[2]]})),
        400,
    )
    .await;
    s.send(
        "PUT",
        &format!("/crm/lists/{v}/999/memberships/add"),
        &t,
        Some(json!([list_members[0]])),
        404,
    )
    .await;
    s.send(
        "PUT",
        &format!("{members}/remove"),
        &t,
        Some(json!([list_members[0], "999999"])),
        200,
    )
    .await;
    s.send(
        "PUT",
        &format!("{members}/remove"),
        &t,
        Some(json!([1])),
        400,
    )
    .await;
    s.send(
        "PUT",
        &format!("/crm/lists/{v}/999/memberships/remove"),
        &t,
        Some(json!([list_members[0]])),
        404,
    )
    .await;
    s.send("GET", &format!("/crm/lists/{v}/{created}"), &t, None, 200)
        .await;

    let token_path = "/oauth/2026-03/token";
    let refresh = |secret: &str| {
        form(&[
            ("grant_type", "refresh_token"),
            ("client_id", "cid"),
            ("client_secret", secret),
            ("refresh_token", &grant.refresh_token),
        ])
    };
    let answer = s
        .send(
            "POST",
            token_path,
            &Auth::None,
            Some(refresh("secret")),
            200,
        )
        .await;
    let fresh = Auth::Bearer(answer["access_token"].as_str().unwrap().to_owned());
    s.send(
        "GET",
        &format!("/crm/objects/{v}/contacts"),
        &fresh,
        None,
        200,
    )
    .await;
    s.send("POST", token_path, &Auth::None, Some(refresh("wrong")), 400)
        .await;
    hs.fail_next(
        1,
        Failure::Status429 {
            retry_after: Some(1),
        },
    );
    s.send(
        "POST",
        token_path,
        &Auth::None,
        Some(refresh("secret")),
        429,
    )
    .await;
    hs.fail_next(1, Failure::Status(503));
    s.send(
        "POST",
        token_path,
        &Auth::None,
        Some(refresh("secret")),
        503,
    )
    .await;
    hs.expire_access_token(&grant.access_token);
    s.send(
        "GET",
        &format!("/crm/objects/{v}/contacts"),
        &Auth::Bearer(grant.access_token.clone()),
        None,
        401,
    )
    .await;

    hs.fail_next(1, Failure::Status(403));
    s.send("GET", &format!("/crm/objects/{v}/contacts"), &t, None, 403)
        .await;
    hs.fail_next(1, Failure::Status(502));
    s.send(
        "POST",
        &format!("/crm/objects/{v}/contacts/search"),
        &t,
        Some(json!({})),
        502,
    )
    .await;
    hs.fail_next(1, Failure::Status429 { retry_after: None });
    s.send("GET", &format!("/crm/lists/{v}/{list}"), &t, None, 429)
        .await;
    // The secondly limit itself (0: every call of the second is over it).
    hs.set_secondly_limit(Some(0));
    s.send("GET", &format!("/crm/objects/{v}/contacts"), &t, None, 429)
        .await;
    s.finish()
}

async fn pipedrive_session(doc: &Value) -> Vec<String> {
    let pd = PipedriveDouble::start().await;
    pd.add_token("t");
    pd.add_oauth_client("cid", "secret");
    let grant = pd.issue_oauth("cid", Duration::from_secs(600));
    let tier = pd.add_person_field(
        json!({"field_name": "Tier", "field_type": "enum", "options": [{"label": "Gold"}]}),
    );
    let score = pd.add_person_field(json!({"field_name": "Score", "field_type": "double"}));
    let org = pd.insert_organization(json!({"name": "Acme", "address": "Main St 1"}));
    pd.insert_organization(json!({"name": "Beta"}));
    let mut s = Session::new(doc, pd.base_url());
    let t = Auth::ApiToken("t".to_owned());

    s.send("GET", "/api/v2/persons", &Auth::None, None, 401)
        .await;
    let ann = s
        .send("POST", "/api/v2/persons", &t, Some(json!({"name": "Ann Lee", "org_id": org,
            "emails": [{"value": "ann@example.com", "primary": true, "label": "work"}],
            "phones": [{"value": "+1 555 0100"}], "custom_fields": {tier.clone(): 1, score.clone(): 4.5}})), 200)
        .await;
    let ann = ann["data"]["id"].as_i64().unwrap();
    let bo = s
        .send(
            "POST",
            "/api/v2/persons",
            &t,
            Some(json!({"name": "Bo"})),
            200,
        )
        .await;
    let bo = bo["data"]["id"].as_i64().unwrap();
    s.send(
        "POST",
        "/api/v2/persons",
        &t,
        Some(json!({"emails": [{"value": "x@example.com"}]})),
        400,
    )
    .await;
    s.send(
        "POST",
        "/api/v2/persons",
        &t,
        Some(json!({"name": "X", "first_name": "X"})),
        400,
    )
    .await;
    s.send(
        "POST",
        "/api/v2/persons",
        &t,
        Some(json!({"name": "X", "custom_fields": {"ab": 1}})),
        400,
    )
    .await;
    s.send("GET", "/api/v2/persons?limit=1", &t, None, 200)
        .await;
    s.send("GET", "/api/v2/persons?limit=2&sort_by=update_time&sort_direction=desc&updated_since=2000-01-01T00:00:00Z", &t, None, 200)
        .await;
    s.send("GET", "/api/v2/persons?limit=501", &t, None, 400)
        .await;
    s.send("GET", "/api/v2/persons?cursor=nonsense", &t, None, 400)
        .await;
    s.send("GET", &format!("/api/v2/persons/{ann}"), &t, None, 200)
        .await;
    s.send("GET", &format!("/api/v2/persons/{bo}"), &t, None, 200)
        .await;
    s.send("GET", "/api/v2/persons/99999", &t, None, 404).await;
    s.send("GET", "/api/v2/persons/abc", &t, None, 400).await;
    s.send(
        "PATCH",
        &format!("/api/v2/persons/{ann}"),
        &t,
        Some(json!({"name": "Ann Lee-Smith", "custom_fields": {score.clone(): null}})),
        200,
    )
    .await;
    s.send(
        "PATCH",
        &format!("/api/v2/persons/{ann}"),
        &t,
        Some(json!({"last_name": "X"})),
        400,
    )
    .await;
    s.send(
        "PATCH",
        "/api/v2/persons/99999",
        &t,
        Some(json!({"name": "X"})),
        404,
    )
    .await;
    s.send("DELETE", &format!("/api/v2/persons/{bo}"), &t, None, 200)
        .await;
    s.send("DELETE", &format!("/api/v2/persons/{bo}"), &t, None, 404)
        .await;
    s.send("DELETE", "/api/v2/persons/abc", &t, None, 400).await;

    s.send("GET", "/api/v2/organizations?limit=1", &t, None, 200)
        .await;
    s.send("GET", "/api/v2/organizations?limit=2", &t, None, 200)
        .await;
    s.send("GET", "/api/v2/organizations?limit=0", &t, None, 400)
        .await;
    s.send(
        "GET",
        &format!("/api/v2/organizations/{org}"),
        &t,
        None,
        200,
    )
    .await;
    s.send("GET", "/api/v2/organizations/99999", &t, None, 404)
        .await;
    s.send("GET", "/api/v2/organizations/abc", &t, None, 400)
        .await;
    let gamma = s
        .send(
            "POST",
            "/api/v2/organizations",
            &t,
            Some(
                json!({"name": "Gamma", "owner_id": 1, "address": {"value": "Harbour 2"},
                "visible_to": 3, "label_ids": [5],
                "custom_fields": {"0123456789abcdef0123456789abcdef01234567": "x"}}),
            ),
            200,
        )
        .await;
    let gamma = gamma["data"]["id"].as_i64().unwrap();
    s.send(
        "POST",
        "/api/v2/organizations",
        &t,
        Some(json!({"address": {"value": "Nowhere"}})),
        400,
    )
    .await;
    s.send(
        "POST",
        "/api/v2/organizations",
        &Auth::None,
        Some(json!({"name": "X"})),
        401,
    )
    .await;
    s.send(
        "PATCH",
        &format!("/api/v2/organizations/{gamma}"),
        &t,
        Some(json!({"name": "Gamma AS", "label_ids": []})),
        200,
    )
    .await;
    s.send(
        "PATCH",
        &format!("/api/v2/organizations/{gamma}"),
        &t,
        Some(json!({"website": "gamma.test"})),
        400,
    )
    .await;
    s.send(
        "PATCH",
        "/api/v2/organizations/99999",
        &t,
        Some(json!({"name": "X"})),
        404,
    )
    .await;
    s.send(
        "DELETE",
        &format!("/api/v2/organizations/{org}"),
        &t,
        None,
        200,
    )
    .await;
    s.send(
        "DELETE",
        &format!("/api/v2/organizations/{org}"),
        &t,
        None,
        404,
    )
    .await;
    s.send("DELETE", "/api/v2/organizations/abc", &t, None, 400)
        .await;
    s.send("GET", &format!("/api/v2/persons/{ann}"), &t, None, 200)
        .await;
    s.send("GET", "/api/v2/personFields?limit=5", &t, None, 200)
        .await;
    s.send("GET", "/api/v2/personFields", &t, None, 200).await;
    s.send("GET", "/api/v2/personFields?limit=501", &t, None, 400)
        .await;

    let basic = Auth::Basic("cid".to_owned(), "secret".to_owned());
    let refresh = |token: &str| form(&[("grant_type", "refresh_token"), ("refresh_token", token)]);
    let answer = s
        .send(
            "POST",
            "/oauth/token",
            &basic,
            Some(refresh(&grant.refresh_token)),
            200,
        )
        .await;
    let bearer = Auth::Bearer(answer["access_token"].as_str().unwrap().to_owned());
    s.send("GET", "/api/v2/persons", &bearer, None, 200).await;
    s.send(
        "POST",
        "/oauth/token",
        &basic,
        Some(refresh(&grant.refresh_token)),
        401,
    )
    .await;
    s.send(
        "POST",
        "/oauth/token",
        &Auth::Basic("cid".to_owned(), "wrong".to_owned()),
        Some(refresh("x")),
        401,
    )
    .await;
    s.send(
        "POST",
        "/oauth/token",
        &basic,
        Some(form(&[("grant_type", "password")])),
        400,
    )
    .await;
    pd.fail_next(
        1,
        Failure::Status429 {
            retry_after: Some(2),
        },
    );
    s.send("POST", "/oauth/token", &basic, Some(refresh("x")), 429)
        .await;
    pd.fail_next(1, Failure::Status(500));
    s.send("POST", "/oauth/token", &basic, Some(refresh("x")), 500)
        .await;
    pd.expire_access_token(&grant.access_token);
    s.send(
        "GET",
        "/api/v2/persons",
        &Auth::Bearer(grant.access_token.clone()),
        None,
        401,
    )
    .await;

    pd.fail_next(1, Failure::Status(403));
    s.send("GET", "/api/v2/personFields", &t, None, 403).await;
    pd.fail_next(1, Failure::Status(503));
    s.send("GET", "/api/v2/organizations", &t, None, 503).await;
    pd.fail_next(1, Failure::Status(429));
    s.send("GET", "/api/v2/persons", &t, None, 429).await;
    // The window limit itself (0: every call of the window is over it).
    pd.set_window_limit(Some(0));
    s.send("GET", "/api/v2/persons", &t, None, 429).await;
    s.finish()
}

fn report(problems: &[String]) -> String {
    problems.join("\n")
}

#[tokio::test]
async fn hubspot_double_answers_as_the_document_says() {
    let doc = load("hubspot.yaml");
    let problems = hubspot_session(&doc).await;
    assert!(
        problems.is_empty(),
        "the HubSpot double disagrees with hubspot.yaml:\n{}",
        report(&problems)
    );
}

#[tokio::test]
async fn pipedrive_double_answers_as_the_document_says() {
    let doc = load("pipedrive.yaml");
    let problems = pipedrive_session(&doc).await;
    assert!(
        problems.is_empty(),
        "the Pipedrive double disagrees with pipedrive.yaml:\n{}",
        report(&problems)
    );
}

// ---- the checker fails on broken documents ----------------------------------------------

fn mutate(mut doc: Value, pointer: &str, f: impl FnOnce(&mut Value)) -> Value {
    f(doc
        .pointer_mut(pointer)
        .unwrap_or_else(|| panic!("{pointer} is not in the document")));
    doc
}

fn rename_in_array(v: &mut Value, from: &str, to: &str) {
    let arr = v.as_array_mut().expect("an array");
    let i = arr
        .iter()
        .position(|x| x == from)
        .unwrap_or_else(|| panic!("{from} is not in {arr:?}"));
    arr[i] = json!(to);
}

fn assert_caught(problems: &[String], needle: &str) {
    assert!(
        problems.iter().any(|p| p.contains(needle)),
        "the checker let a broken document pass (wanted a problem mentioning {needle:?}):\n{}",
        report(problems)
    );
}

#[tokio::test]
async fn a_renamed_required_field_is_caught() {
    let doc = mutate(
        load("hubspot.yaml"),
        "/components/schemas/ObjectRecord/required",
        |r| rename_in_array(r, "id", "recordId"),
    );
    assert_caught(
        &hubspot_session(&doc).await,
        "the required property \"recordId\" is missing",
    );
    let doc = mutate(
        load("pipedrive.yaml"),
        "/components/schemas/Person/required",
        |r| rename_in_array(r, "name", "full_name"),
    );
    assert_caught(
        &pipedrive_session(&doc).await,
        "the required property \"full_name\" is missing",
    );
    let doc = mutate(
        load("hubspot.yaml"),
        "/components/schemas/ListMembersAdded/required",
        |r| rename_in_array(r, "recordIdsMissing", "recordIdsNotFound"),
    );
    assert_caught(
        &hubspot_session(&doc).await,
        "the required property \"recordIdsNotFound\" is missing",
    );
}

#[tokio::test]
async fn a_wrong_type_or_nullability_is_caught() {
    let doc = mutate(
        load("hubspot.yaml"),
        "/components/schemas/TokenResponse/properties/expires_in",
        |s| s["type"] = json!("string"),
    );
    assert_caught(
        &hubspot_session(&doc).await,
        "$.expires_in: expected string, got integer",
    );
    let doc = mutate(
        load("pipedrive.yaml"),
        "/components/schemas/Person/properties/last_name",
        |s| {
            s.as_object_mut().unwrap().remove("nullable");
        },
    );
    assert_caught(
        &pipedrive_session(&doc).await,
        "last_name: null where the schema does not allow it",
    );
}

#[tokio::test]
async fn an_undocumented_status_is_caught() {
    let doc = mutate(
        load("hubspot.yaml"),
        "/paths/~1crm~1objects~12026-09~1contacts/post/responses",
        |r| {
            r.as_object_mut().unwrap().remove("409");
        },
    );
    assert_caught(&hubspot_session(&doc).await, "status 409 is not documented");
    let doc = mutate(
        load("pipedrive.yaml"),
        "/paths/~1oauth~1token/post/responses",
        |r| {
            r.as_object_mut().unwrap().remove("401");
        },
    );
    assert_caught(
        &pipedrive_session(&doc).await,
        "status 401 is not documented",
    );
}

#[tokio::test]
async fn a_missing_required_header_is_caught() {
    let doc = mutate(
        load("pipedrive.yaml"),
        "/components/responses/PersonPage/headers",
        |h| {
            let h = h.as_object_mut().unwrap();
            let v = h.remove("x-ratelimit-remaining").unwrap();
            h.insert("x-ratelimit-left".to_owned(), v);
        },
    );
    assert_caught(
        &pipedrive_session(&doc).await,
        "the required header x-ratelimit-left is missing",
    );
    let doc = mutate(
        load("hubspot.yaml"),
        "/components/responses/RecordPage/headers",
        |h| {
            h["X-HubSpot-RateLimit-Burst"] = json!({"$ref": "#/components/headers/RateLimitMax"});
        },
    );
    assert_caught(
        &hubspot_session(&doc).await,
        "the required header X-HubSpot-RateLimit-Burst is missing",
    );
}

#[tokio::test]
async fn an_operation_never_exercised_is_caught() {
    let doc = mutate(load("pipedrive.yaml"), "/paths", |p| {
        p["/api/v2/deals"] = json!({"get": {"operationId": "list_deals", "responses": {"200": {"description": "x"}}}});
    });
    assert_caught(
        &pipedrive_session(&doc).await,
        "the operation list_deals was never exercised",
    );
}

#[test]
fn the_validator_checks_what_it_claims() {
    let root = json!({"components": {"schemas": {
        "Item": {"type": "object", "required": ["id"], "properties": {
            "id": {"type": "integer", "format": "int32"},
            "at": {"type": "string", "format": "date-time"},
            "tag": {"type": "string", "enum": ["a", "b"], "nullable": true},
            "list": {"type": "array", "maxItems": 1, "items": {"$ref": "#/components/schemas/Leaf"}}},
            "additionalProperties": false},
        "Leaf": {"type": "string", "minLength": 2},
        "Odd": {"type": "string", "pattern": "^x"}}}});
    let item = json!({"$ref": "#/components/schemas/Item"});
    let check = |v: Value| {
        let mut e = Vec::new();
        validate(&root, &item, &v, "$", &mut e);
        e
    };
    assert!(
        check(json!({"id": 1, "at": "2026-01-01T00:00:00Z", "tag": null, "list": ["ab"]}))
            .is_empty()
    );
    assert_eq!(check(json!({})).len(), 1, "required");
    assert_eq!(check(json!({"id": 1.5})).len(), 1, "integer");
    assert_eq!(check(json!({"id": 5_000_000_000i64})).len(), 1, "int32");
    assert_eq!(
        check(json!({"id": 1, "at": "yesterday"})).len(),
        1,
        "date-time"
    );
    assert_eq!(check(json!({"id": 1, "tag": "c"})).len(), 1, "enum");
    assert_eq!(
        check(json!({"id": 1, "list": ["ab", "cd"]})).len(),
        1,
        "maxItems"
    );
    assert_eq!(
        check(json!({"id": 1, "list": ["a"]})).len(),
        1,
        "minLength through $ref"
    );
    assert_eq!(
        check(json!({"id": 1, "extra": true})).len(),
        1,
        "additionalProperties: false"
    );
    assert_eq!(check(json!({"id": null})).len(), 1, "null without nullable");
    let mut e = Vec::new();
    validate(
        &root,
        &json!({"$ref": "#/components/schemas/Odd"}),
        &json!("xy"),
        "$",
        &mut e,
    );
    assert!(
        e[0].contains("does not support the schema keyword \"pattern\""),
        "{e:?}"
    );
    let mut e = Vec::new();
    validate(
        &root,
        &json!({"$ref": "#/components/schemas/Nope"}),
        &json!(1),
        "$",
        &mut e,
    );
    assert!(e[0].contains("unresolved $ref"), "{e:?}");
}
