//! The HubSpot double: CRM objects (contacts, companies), search, property definitions (read,
//! create, update), lists (search, read, create, rename, add and remove members) and the
//! OAuth refresh endpoint of API version `2026-09`.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone as _, Utc};
use serde_json::{Map, Value, json};

use crate::server::{self, Api, Common, Reply, Req, Server, lock};
use crate::util::{
    correlation_id, decode_cursor, encode_cursor, fmt_ms, now_ms, parse_epoch_ms_or_rfc3339,
    random_hex, reason, valid_email,
};
use crate::{Failure, OAuthGrant, RecordedCall};

/// The CRM API version the double serves (one constant, as the wire format says).
pub const HUBSPOT_VERSION: &str = "2026-09";
const TOKEN_PATH: &str = "/oauth/2026-03/token";
const DEFAULT_ACCESS_LIFETIME: Duration = Duration::from_secs(1800);
/// Shown as `X-HubSpot-RateLimit-Secondly` when no secondly limit is enforced.
const NOMINAL_SECONDLY: u32 = 100;
/// Search answers at most this many results per query.
const SEARCH_CAP: u64 = 10_000;
/// Properties no write may set.
const READ_ONLY: &[&str] = &[
    "hs_object_id",
    "createdate",
    "lastmodifieddate",
    "hs_lastmodifieddate",
];

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Obj {
    Contacts,
    Companies,
}

impl Obj {
    fn parse(s: &str) -> Option<Obj> {
        match s {
            "contacts" | "contact" | "0-1" => Some(Obj::Contacts),
            "companies" | "company" | "0-2" => Some(Obj::Companies),
            _ => None,
        }
    }

    fn must(s: &str) -> Obj {
        Obj::parse(s).unwrap_or_else(|| {
            panic!("the HubSpot double has no object type {s:?} (contacts, companies)")
        })
    }

    fn lastmod(self) -> &'static str {
        match self {
            Obj::Contacts => "lastmodifieddate",
            Obj::Companies => "hs_lastmodifieddate",
        }
    }

    fn default_props(self) -> &'static [&'static str] {
        match self {
            Obj::Contacts => &[
                "createdate",
                "email",
                "firstname",
                "hs_object_id",
                "lastmodifieddate",
                "lastname",
            ],
            Obj::Companies => &[
                "createdate",
                "domain",
                "hs_lastmodifieddate",
                "hs_object_id",
                "name",
            ],
        }
    }

    fn always(self) -> [&'static str; 3] {
        ["createdate", "hs_object_id", self.lastmod()]
    }

    fn group(self) -> &'static str {
        match self {
            Obj::Contacts => "contactinformation",
            Obj::Companies => "companyinformation",
        }
    }

    /// The `objectTypeId` of lists of this type.
    fn type_id(self) -> &'static str {
        match self {
            Obj::Contacts => "0-1",
            Obj::Companies => "0-2",
        }
    }
}

struct Token {
    /// Set for OAuth access tokens.
    expires_at: Option<DateTime<Utc>>,
    expired: bool,
}

struct Refresh {
    client_id: String,
    revoked: bool,
}

#[derive(Clone)]
struct Record {
    id: u64,
    props: BTreeMap<String, String>,
    created: DateTime<Utc>,
    updated: DateTime<Utc>,
    archived_at: Option<DateTime<Utc>>,
    /// When this version was written over HTTP; `None` for seeded data (always indexed).
    written: Option<Instant>,
    /// The version before this one, kept while search lags writes.
    prev: Option<Box<Record>>,
}

impl Record {
    fn value(&self, obj: Obj, name: &str) -> Option<String> {
        match name {
            "hs_object_id" => Some(self.id.to_string()),
            "createdate" => Some(fmt_ms(self.created)),
            n if n == obj.lastmod() => Some(fmt_ms(self.updated)),
            n => self.props.get(n).cloned(),
        }
    }

    /// The version search sees when its index holds writes up to `cutoff`.
    fn indexed(&self, cutoff: Option<Instant>) -> Option<&Record> {
        let mut r = self;
        loop {
            match (r.written, cutoff) {
                (None, _) => return Some(r),
                (Some(w), Some(c)) if w <= c => return Some(r),
                _ => r = r.prev.as_deref()?,
            }
        }
    }
}

struct Store {
    next_id: u64,
    records: BTreeMap<u64, Record>,
    props: Vec<Value>,
}

struct List {
    id: u64,
    name: String,
    /// The type of the members.
    obj: Obj,
    created: DateTime<Utc>,
    updated: DateTime<Utc>,
    members: BTreeMap<u64, DateTime<Utc>>,
}

#[derive(Default)]
struct Windows {
    second: (u64, u32),
    ten: (u64, u32),
}

struct State {
    tokens: HashMap<String, Token>,
    refresh: HashMap<String, Refresh>,
    clients: HashMap<String, String>,
    access_lifetime: Duration,
    refresh_count: usize,
    secondly_limit: Option<u32>,
    windows: HashMap<String, Windows>,
    contacts: Store,
    companies: Store,
    required: HashSet<(Obj, String)>,
    lists: BTreeMap<u64, List>,
    next_list_id: u64,
    search_lag: Duration,
    last_write_ms: i64,
}

impl State {
    fn store(&self, obj: Obj) -> &Store {
        match obj {
            Obj::Contacts => &self.contacts,
            Obj::Companies => &self.companies,
        }
    }

    fn store_mut(&mut self, obj: Obj) -> &mut Store {
        match obj {
            Obj::Contacts => &mut self.contacts,
            Obj::Companies => &mut self.companies,
        }
    }

    /// The time of a write: now to the millisecond, and always after the previous write,
    /// so every write changes `updatedAt`.
    fn write_time(&mut self) -> DateTime<Utc> {
        let ms = now_ms().timestamp_millis().max(self.last_write_ms + 1);
        self.last_write_ms = ms;
        Utc.timestamp_millis_opt(ms).single().unwrap_or_else(now_ms)
    }

    fn def(&self, obj: Obj, name: &str) -> Option<&Value> {
        self.store(obj)
            .props
            .iter()
            .find(|p| p["name"] == name && p["archived"] != true)
    }
}

struct Inner {
    common: Common,
    state: Mutex<State>,
    base_url: String,
    started: Instant,
}

/// A HubSpot double serving on a loopback port. Clones share one server; it stops when
/// [`shutdown`](Self::shutdown) is called or the last clone is dropped.
#[derive(Clone)]
pub struct HubSpotDouble {
    inner: Arc<Inner>,
    server: Arc<Server>,
}

impl std::fmt::Debug for HubSpotDouble {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubSpotDouble")
            .field("base_url", &self.inner.base_url)
            .finish_non_exhaustive()
    }
}

fn prop_def(
    obj: Obj,
    name: &str,
    label: &str,
    kind: &str,
    field_type: &str,
    options: &[&str],
) -> Value {
    let t = fmt_ms(
        Utc.timestamp_millis_opt(1_577_836_800_000)
            .single()
            .unwrap_or_else(now_ms),
    );
    json!({
        "name": name,
        "label": label,
        "type": kind,
        "fieldType": field_type,
        "description": "",
        "groupName": obj.group(),
        "options": options.iter().enumerate().map(|(i, v)| json!({
            "label": v, "value": v, "displayOrder": i, "hidden": false,
        })).collect::<Vec<_>>(),
        "hubspotDefined": true,
        "hidden": false,
        "createdAt": t,
        "updatedAt": t,
        "archived": false,
    })
}

fn default_defs(obj: Obj) -> Vec<Value> {
    const LIFECYCLE: &[&str] = &[
        "subscriber",
        "lead",
        "marketingqualifiedlead",
        "salesqualifiedlead",
        "opportunity",
        "customer",
        "evangelist",
        "other",
    ];
    const LEAD_STATUS: &[&str] = &[
        "NEW",
        "OPEN",
        "IN_PROGRESS",
        "OPEN_DEAL",
        "UNQUALIFIED",
        "ATTEMPTED_TO_CONTACT",
        "CONNECTED",
        "BAD_TIMING",
    ];
    let text = |n: &str, l: &str| prop_def(obj, n, l, "string", "text", &[]);
    let mut defs = vec![
        prop_def(obj, "hs_object_id", "Record ID", "number", "number", &[]),
        prop_def(obj, "createdate", "Create Date", "datetime", "date", &[]),
        prop_def(
            obj,
            obj.lastmod(),
            "Last Modified Date",
            "datetime",
            "date",
            &[],
        ),
        prop_def(
            obj,
            "hubspot_owner_id",
            "Owner",
            "enumeration",
            "select",
            &[],
        ),
        prop_def(
            obj,
            "lifecyclestage",
            "Lifecycle Stage",
            "enumeration",
            "radio",
            LIFECYCLE,
        ),
        prop_def(obj, "phone", "Phone Number", "string", "phonenumber", &[]),
        text("address", "Street Address"),
        text("city", "City"),
        text("state", "State/Region"),
        text("zip", "Postal Code"),
        text("country", "Country/Region"),
        text("website", "Website URL"),
    ];
    match obj {
        Obj::Contacts => defs.extend([
            text("firstname", "First Name"),
            text("lastname", "Last Name"),
            text("email", "Email"),
            prop_def(
                obj,
                "mobilephone",
                "Mobile Phone Number",
                "string",
                "phonenumber",
                &[],
            ),
            text("jobtitle", "Job Title"),
            text("company", "Company Name"),
            prop_def(
                obj,
                "hs_lead_status",
                "Lead Status",
                "enumeration",
                "radio",
                LEAD_STATUS,
            ),
        ]),
        Obj::Companies => defs.extend([
            text("name", "Company name"),
            text("domain", "Company Domain Name"),
            text("industry", "Industry"),
            prop_def(obj, "description", "Description", "string", "textarea", &[]),
            prop_def(
                obj,
                "numberofemployees",
                "Number of Employees",
                "number",
                "number",
                &[],
            ),
            prop_def(
                obj,
                "annualrevenue",
                "Annual Revenue",
                "number",
                "number",
                &[],
            ),
        ]),
    }
    defs
}

// ---- answers ----------------------------------------------------------------------------

fn error_body(category: &str, message: &str) -> Value {
    json!({"status": "error", "message": message, "correlationId": correlation_id(), "category": category})
}

fn error(status: u16, category: &str, message: &str) -> Reply {
    Reply::json(status, error_body(category, message))
}

fn bad_request(message: &str) -> Reply {
    error(400, "VALIDATION_ERROR", message)
}

fn not_found() -> Reply {
    error(404, "OBJECT_NOT_FOUND", "resource not found")
}

fn prop_error(code: &str, message: String, name: &str) -> Value {
    json!({"message": message, "code": code, "context": {"propertyName": [name]}})
}

fn validation_errors(errors: Vec<Value>) -> Reply {
    let mut body = error_body("VALIDATION_ERROR", "Property values were not valid");
    body["errors"] = Value::Array(errors);
    Reply::json(400, body)
}

fn rate_limited() -> Value {
    json!({
        "status": "error",
        "message": "You have reached your secondly limit.",
        "errorType": "RATE_LIMIT",
        "correlationId": correlation_id(),
        "policyName": "SECONDLY",
        "category": "RATE_LIMITS",
    })
}

fn category_of(status: u16) -> &'static str {
    match status {
        400 => "VALIDATION_ERROR",
        401 => "INVALID_AUTHENTICATION",
        403 => "MISSING_SCOPES",
        404 => "OBJECT_NOT_FOUND",
        409 => "CONFLICT",
        429 => "RATE_LIMITS",
        _ => "INTERNAL_ERROR",
    }
}

struct Limits {
    max: u32,
    remaining: u32,
    secondly: u32,
    secondly_remaining: u32,
}

fn with_limits(reply: Reply, l: &Limits) -> Reply {
    reply
        .header("x-hubspot-ratelimit-max", l.max)
        .header("x-hubspot-ratelimit-remaining", l.remaining)
        .header("x-hubspot-ratelimit-interval-milliseconds", 10_000)
        .header("x-hubspot-ratelimit-secondly", l.secondly)
        .header(
            "x-hubspot-ratelimit-secondly-remaining",
            l.secondly_remaining,
        )
}

// ---- query and body parsing ---------------------------------------------------------------

fn int_param(req: &Req, name: &str, default: u64, max: u64) -> Result<u64, Reply> {
    match req.query_param(name) {
        None => Ok(default),
        Some(s) => match s.trim().parse::<u64>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(bad_request(&format!(
                "{name} must be an integer from 1 to {max}; got {s:?}"
            ))),
        },
    }
}

fn bool_param(req: &Req, name: &str) -> Result<bool, Reply> {
    match req.query_param(name).as_deref() {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(s) => Err(bad_request(&format!(
            "{name} must be true or false; got {s:?}"
        ))),
    }
}

enum Selection {
    Default,
    Names(Vec<String>),
    /// Every property with a value (what a write answers, and the inspection helpers).
    Set,
}

fn selection_from_query(req: &Req) -> Selection {
    let names: Vec<String> = req
        .query_pairs()
        .into_iter()
        .filter(|(k, _)| k == "properties")
        .flat_map(|(_, v)| {
            v.split(',')
                .map(|s| s.trim().to_owned())
                .collect::<Vec<_>>()
        })
        .filter(|s| !s.is_empty())
        .collect();
    if names.is_empty() {
        Selection::Default
    } else {
        Selection::Names(names)
    }
}

fn parse_json(req: &Req) -> Result<Value, Reply> {
    serde_json::from_slice(&req.body).map_err(|e| bad_request(&format!("Invalid input JSON: {e}")))
}

/// The `properties` of a create or update body: name and value, `None` to clear.
fn write_properties(req: &Req) -> Result<Vec<(String, Option<String>)>, Reply> {
    let body = parse_json(req)?;
    let Some(props) = body.get("properties").and_then(Value::as_object) else {
        return Err(bad_request(
            "Invalid input JSON: properties must be an object",
        ));
    };
    let mut out = Vec::new();
    for (name, v) in props {
        let value = match v {
            Value::Null => None,
            Value::String(s) if s.is_empty() => None,
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => {
                return Err(bad_request(&format!(
                    "Invalid input JSON: the value of {name} must be a string"
                )));
            }
        };
        out.push((name.clone(), value));
    }
    Ok(out)
}

#[derive(Clone, Copy)]
enum Kind {
    Date,
    Number,
    Text,
}

fn kind_of(st: &State, obj: Obj, name: &str) -> Option<Kind> {
    let def = st.def(obj, name)?;
    Some(match def["type"].as_str() {
        Some("date" | "datetime") => Kind::Date,
        Some("number") => Kind::Number,
        _ => Kind::Text,
    })
}

fn compare(kind: Kind, a: &str, b: &str) -> Option<Ordering> {
    match kind {
        Kind::Date => Some(parse_epoch_ms_or_rfc3339(a)?.cmp(&parse_epoch_ms_or_rfc3339(b)?)),
        Kind::Number => a
            .trim()
            .parse::<f64>()
            .ok()?
            .partial_cmp(&b.trim().parse::<f64>().ok()?),
        Kind::Text => Some(a.to_lowercase().cmp(&b.to_lowercase())),
    }
}

struct Filter {
    prop: String,
    kind: Kind,
    op: String,
    value: Option<String>,
    high: Option<String>,
    values: Vec<String>,
}

impl Filter {
    fn matches(&self, obj: Obj, rec: &Record) -> bool {
        let v = rec.value(obj, &self.prop);
        let cmp = |other: &Option<String>| match (&v, other) {
            (Some(a), Some(b)) => compare(self.kind, a, b),
            _ => None,
        };
        let eq_any = || {
            self.values.iter().any(|x| {
                v.as_deref().and_then(|a| compare(self.kind, a, x)) == Some(Ordering::Equal)
            })
        };
        match self.op.as_str() {
            "HAS_PROPERTY" => v.is_some(),
            "NOT_HAS_PROPERTY" => v.is_none(),
            "EQ" => cmp(&self.value) == Some(Ordering::Equal),
            "NEQ" => cmp(&self.value) != Some(Ordering::Equal),
            "GT" => cmp(&self.value) == Some(Ordering::Greater),
            "GTE" => matches!(cmp(&self.value), Some(Ordering::Greater | Ordering::Equal)),
            "LT" => cmp(&self.value) == Some(Ordering::Less),
            "LTE" => matches!(cmp(&self.value), Some(Ordering::Less | Ordering::Equal)),
            "BETWEEN" => {
                matches!(cmp(&self.value), Some(Ordering::Greater | Ordering::Equal))
                    && matches!(cmp(&self.high), Some(Ordering::Less | Ordering::Equal))
            }
            "IN" => eq_any(),
            "NOT_IN" => !eq_any(),
            "CONTAINS_TOKEN" => match (&v, &self.value) {
                (Some(a), Some(b)) => a
                    .to_lowercase()
                    .contains(&b.trim_matches('*').to_lowercase()),
                _ => false,
            },
            _ => false,
        }
    }
}

fn value_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn parse_filter(st: &State, obj: Obj, f: &Value) -> Result<Filter, Reply> {
    let prop = f["propertyName"]
        .as_str()
        .ok_or_else(|| bad_request("each filter needs a propertyName"))?;
    let kind = kind_of(st, obj, prop).ok_or_else(|| {
        validation_errors(vec![prop_error(
            "PROPERTY_DOESNT_EXIST",
            format!("Property \"{prop}\" does not exist"),
            prop,
        )])
    })?;
    let op = f["operator"].as_str().unwrap_or("");
    const OPS: &[&str] = &[
        "EQ",
        "NEQ",
        "GT",
        "GTE",
        "LT",
        "LTE",
        "BETWEEN",
        "IN",
        "NOT_IN",
        "HAS_PROPERTY",
        "NOT_HAS_PROPERTY",
        "CONTAINS_TOKEN",
    ];
    if !OPS.contains(&op) {
        return Err(bad_request(&format!("unknown filter operator {op:?}")));
    }
    let value = f.get("value").and_then(value_string);
    let high = f.get("highValue").and_then(value_string);
    let values: Vec<String> = f
        .get("values")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(value_string).collect())
        .unwrap_or_default();
    let needs_value = !matches!(op, "HAS_PROPERTY" | "NOT_HAS_PROPERTY" | "IN" | "NOT_IN");
    if needs_value && value.is_none() {
        return Err(bad_request(&format!(
            "filter on {prop} with {op} needs a value"
        )));
    }
    if op == "BETWEEN" && high.is_none() {
        return Err(bad_request(&format!(
            "filter on {prop} with BETWEEN needs a highValue"
        )));
    }
    if matches!(op, "IN" | "NOT_IN") && values.is_empty() {
        return Err(bad_request(&format!(
            "filter on {prop} with {op} needs values"
        )));
    }
    for v in value.iter().chain(high.iter()).chain(values.iter()) {
        let ok = match kind {
            Kind::Date => parse_epoch_ms_or_rfc3339(v).is_some(),
            Kind::Number => v.trim().parse::<f64>().is_ok(),
            Kind::Text => true,
        };
        if !ok {
            return Err(bad_request(&format!(
                "{v:?} is not a valid value to compare with {prop}"
            )));
        }
    }
    Ok(Filter {
        prop: prop.to_owned(),
        kind,
        op: op.to_owned(),
        value,
        high,
        values,
    })
}

// ---- the double -------------------------------------------------------------------------

impl Inner {
    fn render(&self, st: &State, obj: Obj, rec: &Record, sel: &Selection) -> Value {
        let mut names: Vec<String> = match sel {
            Selection::Default => obj.default_props().iter().map(|s| s.to_string()).collect(),
            Selection::Names(list) => list
                .iter()
                .filter(|n| st.def(obj, n).is_some())
                .cloned()
                .collect(),
            Selection::Set => rec.props.keys().cloned().collect(),
        };
        names.extend(obj.always().iter().map(|s| s.to_string()));
        names.sort();
        names.dedup();
        let props: Map<String, Value> = names
            .into_iter()
            .map(|n| {
                (
                    n.clone(),
                    rec.value(obj, &n).map_or(Value::Null, Value::String),
                )
            })
            .collect();
        let mut out = json!({
            "id": rec.id.to_string(),
            "properties": props,
            "createdAt": fmt_ms(rec.created),
            "updatedAt": fmt_ms(rec.updated),
            "archived": rec.archived_at.is_some(),
        });
        if let Some(t) = rec.archived_at {
            out["archivedAt"] = Value::String(fmt_ms(t));
        }
        out
    }

    fn authenticate(&self, st: &State, req: &Req) -> Result<String, Reply> {
        let token = req
            .header("authorization")
            .and_then(|h| h.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t.trim().to_owned());
        let unknown = || {
            error(
                401,
                "INVALID_AUTHENTICATION",
                "Authentication credentials not found.",
            )
        };
        let Some(token) = token else {
            return Err(unknown());
        };
        let Some(info) = st.tokens.get(&token) else {
            return Err(unknown());
        };
        let now = Utc::now();
        if info.expired || info.expires_at.is_some_and(|t| now >= t) {
            let ago = info
                .expires_at
                .map_or(0, |t| (now - t).num_minutes().max(0));
            return Err(error(
                401,
                "EXPIRED_AUTHENTICATION",
                &format!("The OAuth token used to make this call expired {ago} minute(s) ago."),
            ));
        }
        Ok(token)
    }

    /// Counts a call of `token`; `true` when it is over the secondly limit.
    fn count(&self, st: &mut State, token: &str) -> (bool, Limits) {
        let secs = self.started.elapsed().as_secs();
        let limit = st.secondly_limit;
        let w = st.windows.entry(token.to_owned()).or_default();
        if w.second.0 != secs {
            w.second = (secs, 0);
        }
        if w.ten.0 != secs / 10 {
            w.ten = (secs / 10, 0);
        }
        w.second.1 += 1;
        w.ten.1 += 1;
        let secondly = limit.unwrap_or(NOMINAL_SECONDLY);
        let limits = Limits {
            max: secondly * 10,
            remaining: (secondly * 10).saturating_sub(w.ten.1),
            secondly,
            secondly_remaining: secondly.saturating_sub(w.second.1),
        };
        (limit.is_some_and(|n| w.second.1 > n), limits)
    }

    fn full_limits(&self, st: &State) -> Limits {
        let secondly = st.secondly_limit.unwrap_or(NOMINAL_SECONDLY);
        Limits {
            max: secondly * 10,
            remaining: secondly * 10,
            secondly,
            secondly_remaining: secondly,
        }
    }

    fn token_endpoint(&self, req: &Req) -> Reply {
        let fail = |status: &str, message: &str| {
            Reply::json(400, json!({"status": status, "message": message}))
        };
        if req.method != "POST" {
            return error(405, "METHOD_NOT_ALLOWED", "the token endpoint takes POST");
        }
        let form_type = req.header("content-type").is_some_and(|c| {
            c.trim()
                .to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        });
        if !form_type {
            return fail(
                "BAD_REFRESH_TOKEN",
                "the body must be application/x-www-form-urlencoded",
            );
        }
        let form: HashMap<String, String> =
            form_urlencoded::parse(&req.body).into_owned().collect();
        let field = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
        if field("grant_type") != "refresh_token" {
            return fail("BAD_GRANT_TYPE", "grant_type must be refresh_token");
        }
        let mut st = lock(&self.state);
        let client_id = field("client_id");
        if st
            .clients
            .get(client_id)
            .is_none_or(|secret| secret != field("client_secret"))
        {
            return fail(
                "BAD_REFRESH_TOKEN",
                "missing or unknown client_id or client_secret",
            );
        }
        let refresh_token = field("refresh_token");
        let valid = st
            .refresh
            .get(refresh_token)
            .is_some_and(|r| !r.revoked && r.client_id == client_id);
        if !valid {
            return fail("BAD_REFRESH_TOKEN", "missing or invalid refresh token");
        }
        let lifetime = st.access_lifetime;
        let access_token = format!("hs-oauth-{}", random_hex(40));
        st.tokens.insert(
            access_token.clone(),
            Token {
                expires_at: Some(expiry(lifetime)),
                expired: false,
            },
        );
        st.refresh_count += 1;
        Reply::json(
            200,
            json!({
                "access_token": access_token,
                "refresh_token": refresh_token,
                "token_type": "bearer",
                "expires_in": lifetime.as_secs(),
            }),
        )
    }

    fn route(&self, st: &mut State, req: &Req) -> Reply {
        let segs = req.segments();
        let m = req.method.as_str();
        let obj_of = |o: &str| {
            Obj::parse(o)
                .ok_or_else(|| bad_request(&format!("Unable to infer object type from: {o}")))
        };
        let result = match segs.as_slice() {
            ["crm", "objects", v, o] if *v == HUBSPOT_VERSION => obj_of(o).map(|obj| match m {
                "GET" => self.list(st, obj, req),
                "POST" => self.create(st, obj, req),
                _ => method_not_allowed(),
            }),
            ["crm", "objects", v, o, "search"] if *v == HUBSPOT_VERSION && m == "POST" => {
                obj_of(o).map(|obj| self.search(st, obj, req))
            }
            ["crm", "objects", v, o, id] if *v == HUBSPOT_VERSION => obj_of(o).map(|obj| match m {
                "GET" => self.get_one(st, obj, id, req),
                "PATCH" => self.update(st, obj, id, req),
                "DELETE" => self.archive(st, obj, id, req),
                _ => method_not_allowed(),
            }),
            ["crm", "properties", v, o] if *v == HUBSPOT_VERSION && m == "POST" => {
                obj_of(o).and_then(|obj| self.create_property(st, obj, req))
            }
            ["crm", "properties", v, o] if *v == HUBSPOT_VERSION && m == "GET" => {
                obj_of(o).map(|obj| match bool_param(req, "archived") {
                    Ok(archived) => {
                        let results: Vec<Value> = st
                            .store(obj)
                            .props
                            .iter()
                            .filter(|p| (p["archived"] == true) == archived)
                            .cloned()
                            .collect();
                        Reply::json(200, json!({"results": results}))
                    }
                    Err(r) => r,
                })
            }
            ["crm", "properties", v, o, name] if *v == HUBSPOT_VERSION && m == "GET" => obj_of(o)
                .map(|obj| match st.def(obj, name) {
                    Some(def) => Reply::json(200, def.clone()),
                    None => not_found(),
                }),
            ["crm", "properties", v, o, name] if *v == HUBSPOT_VERSION && m == "PATCH" => {
                obj_of(o).and_then(|obj| self.update_property(st, obj, name, req))
            }
            ["crm", "lists", v] if *v == HUBSPOT_VERSION && m == "POST" => {
                self.create_list(st, req)
            }
            ["crm", "lists", v, "search"] if *v == HUBSPOT_VERSION && m == "POST" => {
                Ok(self.list_search(st, req))
            }
            ["crm", "lists", v, id] if *v == HUBSPOT_VERSION && m == "GET" => Ok(
                match id.parse::<u64>().ok().and_then(|id| st.lists.get(&id)) {
                    Some(list) => Reply::json(200, json!({"list": render_list(list)})),
                    None => not_found(),
                },
            ),
            ["crm", "lists", v, id, "memberships"] if *v == HUBSPOT_VERSION && m == "GET" => {
                Ok(self.memberships(st, id, req))
            }
            ["crm", "lists", v, id, "update-list-name"] if *v == HUBSPOT_VERSION && m == "PUT" => {
                self.rename_list(st, id, req)
            }
            ["crm", "lists", v, id, "memberships", change]
                if *v == HUBSPOT_VERSION && m == "PUT" && matches!(*change, "add" | "remove") =>
            {
                self.change_members(st, id, *change == "add", req)
            }
            _ => Ok(not_found()),
        };
        result.unwrap_or_else(|r| r)
    }

    fn list(&self, st: &State, obj: Obj, req: &Req) -> Reply {
        let run = || -> Result<Reply, Reply> {
            let limit = int_param(req, "limit", 10, 100)? as usize;
            let after = match req.query_param("after") {
                None => 0,
                Some(s) => s
                    .parse::<u64>()
                    .map_err(|_| bad_request(&format!("after is not a valid cursor: {s:?}")))?,
            };
            let archived = bool_param(req, "archived")?;
            let sel = selection_from_query(req);
            let page: Vec<&Record> = st
                .store(obj)
                .records
                .range(after.saturating_add(1)..)
                .map(|(_, r)| r)
                .filter(|r| r.archived_at.is_some() == archived)
                .take(limit + 1)
                .collect();
            let more = page.len() > limit;
            let results: Vec<Value> = page
                .iter()
                .take(limit)
                .map(|r| self.render(st, obj, r, &sel))
                .collect();
            let mut body = json!({"results": results});
            if more {
                let next = page[limit - 1].id.to_string();
                let mut q = form_urlencoded::Serializer::new(String::new());
                for (k, v) in req.query_pairs().into_iter().filter(|(k, _)| k != "after") {
                    q.append_pair(&k, &v);
                }
                q.append_pair("after", &next);
                let link = format!("{}{}?{}", self.base_url, req.path, q.finish());
                body["paging"] = json!({"next": {"after": next, "link": link}});
            }
            Ok(Reply::json(200, body))
        };
        run().unwrap_or_else(|r| r)
    }

    fn find(&self, st: &State, obj: Obj, id: &str, req: &Req) -> Option<u64> {
        match req
            .query_param("idProperty")
            .filter(|p| p != "hs_object_id")
        {
            None => id
                .parse::<u64>()
                .ok()
                .filter(|id| st.store(obj).records.contains_key(id)),
            Some(prop) => st
                .store(obj)
                .records
                .values()
                .find(|r| {
                    r.props
                        .get(&prop)
                        .is_some_and(|v| v.eq_ignore_ascii_case(id))
                })
                .map(|r| r.id),
        }
    }

    fn get_one(&self, st: &State, obj: Obj, id: &str, req: &Req) -> Reply {
        let archived = match bool_param(req, "archived") {
            Ok(a) => a,
            Err(r) => return r,
        };
        let found = self
            .find(st, obj, id, req)
            .and_then(|id| st.store(obj).records.get(&id));
        match found {
            Some(rec) if rec.archived_at.is_some() == archived => {
                Reply::json(200, self.render(st, obj, rec, &selection_from_query(req)))
            }
            _ => not_found(),
        }
    }

    /// Checks the properties of a write; `existing` is the record updated, if any.
    fn validate(
        &self,
        st: &State,
        obj: Obj,
        props: &[(String, Option<String>)],
        existing: Option<u64>,
    ) -> Result<(), Reply> {
        let mut errors = Vec::new();
        for (name, value) in props {
            let Some(def) = st.def(obj, name) else {
                errors.push(prop_error(
                    "PROPERTY_DOESNT_EXIST",
                    format!("Property \"{name}\" does not exist"),
                    name,
                ));
                continue;
            };
            if READ_ONLY.contains(&name.as_str()) {
                errors.push(prop_error(
                    "READ_ONLY_VALUE",
                    format!("Property \"{name}\" is read-only and cannot be set"),
                    name,
                ));
                continue;
            }
            let Some(value) = value else { continue };
            if obj == Obj::Contacts && name == "email" && !valid_email(value) {
                errors.push(prop_error(
                    "INVALID_EMAIL",
                    format!("Email address {value} is invalid"),
                    name,
                ));
            }
            let options: Vec<&str> = def["options"]
                .as_array()
                .map(|o| o.iter().filter_map(|o| o["value"].as_str()).collect())
                .unwrap_or_default();
            if def["type"] == "enumeration" && !options.is_empty() {
                let values: Vec<&str> = if def["fieldType"] == "checkbox" {
                    value.split(';').collect()
                } else {
                    vec![value.as_str()]
                };
                if let Some(bad) = values.iter().find(|v| !options.contains(v)) {
                    errors.push(prop_error(
                        "INVALID_OPTION",
                        format!(
                            "{bad} was not one of the allowed options: [{}]",
                            options.join(", ")
                        ),
                        name,
                    ));
                }
            }
        }
        let mut required: Vec<&String> = st
            .required
            .iter()
            .filter(|(o, _)| *o == obj)
            .map(|(_, n)| n)
            .collect();
        required.sort();
        for name in required {
            let given = props.iter().find(|(n, _)| n == name);
            let missing = match (existing, given) {
                (None, None) | (_, Some((_, None))) => true,
                (Some(_), None) | (_, Some((_, Some(_)))) => false,
            };
            if missing {
                errors.push(prop_error(
                    "REQUIRED_PROPERTY",
                    format!("Property \"{name}\" is required"),
                    name,
                ));
            }
        }
        if !errors.is_empty() {
            return Err(validation_errors(errors));
        }
        if obj == Obj::Contacts
            && let Some((_, Some(email))) = props.iter().find(|(n, _)| n == "email")
        {
            let dup = st.contacts.records.values().find(|r| {
                r.archived_at.is_none()
                    && Some(r.id) != existing
                    && r.props
                        .get("email")
                        .is_some_and(|e| e.eq_ignore_ascii_case(email))
            });
            if let Some(dup) = dup {
                return Err(error(
                    409,
                    "CONFLICT",
                    &format!("Contact already exists. Existing ID: {}", dup.id),
                ));
            }
        }
        Ok(())
    }

    fn create(&self, st: &mut State, obj: Obj, req: &Req) -> Reply {
        let props = match write_properties(req) {
            Ok(p) => p,
            Err(r) => return r,
        };
        if let Err(r) = self.validate(st, obj, &props, None) {
            return r;
        }
        let t = st.write_time();
        let store = st.store_mut(obj);
        store.next_id += 1;
        let id = store.next_id;
        let rec = Record {
            id,
            props: props
                .into_iter()
                .filter_map(|(n, v)| Some((n.clone(), normalize(&n, v?))))
                .collect(),
            created: t,
            updated: t,
            archived_at: None,
            written: Some(Instant::now()),
            prev: None,
        };
        store.records.insert(id, rec);
        let rec = &st.store(obj).records[&id];
        Reply::json(201, self.render(st, obj, rec, &Selection::Set))
    }

    fn update(&self, st: &mut State, obj: Obj, id: &str, req: &Req) -> Reply {
        let Some(id) = self
            .find(st, obj, id, req)
            .filter(|id| st.store(obj).records[id].archived_at.is_none())
        else {
            return not_found();
        };
        let props = match write_properties(req) {
            Ok(p) => p,
            Err(r) => return r,
        };
        if let Err(r) = self.validate(st, obj, &props, Some(id)) {
            return r;
        }
        let t = st.write_time();
        let lag = st.search_lag;
        let rec = st
            .store_mut(obj)
            .records
            .get_mut(&id)
            .expect("checked above");
        new_version(rec, lag);
        for (name, value) in props {
            match value {
                Some(v) => rec.props.insert(name.clone(), normalize(&name, v)),
                None => rec.props.remove(&name),
            };
        }
        rec.updated = t;
        let rec = &st.store(obj).records[&id];
        Reply::json(200, self.render(st, obj, rec, &Selection::Set))
    }

    fn archive(&self, st: &mut State, obj: Obj, id: &str, req: &Req) -> Reply {
        let Some(id) = self
            .find(st, obj, id, req)
            .filter(|id| st.store(obj).records[id].archived_at.is_none())
        else {
            return not_found();
        };
        let t = st.write_time();
        let lag = st.search_lag;
        let rec = st
            .store_mut(obj)
            .records
            .get_mut(&id)
            .expect("checked above");
        new_version(rec, lag);
        rec.archived_at = Some(t);
        rec.updated = t;
        Reply::empty(204)
    }

    fn search(&self, st: &State, obj: Obj, req: &Req) -> Reply {
        let run = || -> Result<Reply, Reply> {
            let body = parse_json(req)?;
            if !body.is_object() {
                return Err(bad_request(
                    "Invalid input JSON: the body must be an object",
                ));
            }
            let limit = match body.get("limit") {
                None | Some(Value::Null) => 10,
                Some(v) => v
                    .as_u64()
                    .filter(|n| (1..=200).contains(n))
                    .ok_or_else(|| {
                        bad_request(&format!("limit must be an integer from 1 to 200; got {v}"))
                    })?,
            };
            let after = match body.get("after") {
                None | Some(Value::Null) => 0,
                Some(Value::String(s)) => s
                    .parse::<u64>()
                    .map_err(|_| bad_request(&format!("after is not a valid offset: {s:?}")))?,
                Some(v) => v
                    .as_u64()
                    .ok_or_else(|| bad_request(&format!("after is not a valid offset: {v}")))?,
            };
            if after + limit > SEARCH_CAP {
                return Err(bad_request(&format!(
                    "Search answers at most {SEARCH_CAP} results: after ({after}) + limit ({limit}) is over it"
                )));
            }
            let groups = match body.get("filterGroups") {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::Array(g)) => g.clone(),
                Some(_) => return Err(bad_request("filterGroups must be an array")),
            };
            if groups.len() > 5 {
                return Err(bad_request("at most 5 filterGroups are allowed"));
            }
            let mut parsed = Vec::new();
            let mut total_filters = 0;
            for g in &groups {
                let filters = g["filters"].as_array().cloned().unwrap_or_default();
                if filters.len() > 6 {
                    return Err(bad_request(
                        "at most 6 filters are allowed in a filterGroup",
                    ));
                }
                total_filters += filters.len();
                parsed.push(
                    filters
                        .iter()
                        .map(|f| parse_filter(st, obj, f))
                        .collect::<Result<Vec<_>, _>>()?,
                );
            }
            if total_filters > 18 {
                return Err(bad_request("at most 18 filters are allowed in all"));
            }
            let sorts = body
                .get("sorts")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            if sorts.len() > 1 {
                return Err(bad_request("at most one sort is allowed"));
            }
            let sort = match sorts.first() {
                None => None,
                Some(Value::String(p)) => Some((p.clone(), false)),
                Some(s) => {
                    let p = s["propertyName"]
                        .as_str()
                        .ok_or_else(|| bad_request("a sort needs a propertyName"))?;
                    let desc = match s["direction"].as_str() {
                        None | Some("ASCENDING") => false,
                        Some("DESCENDING") => true,
                        Some(d) => {
                            return Err(bad_request(&format!("unknown sort direction {d:?}")));
                        }
                    };
                    Some((p.to_owned(), desc))
                }
            };
            if let Some((p, _)) = &sort
                && kind_of(st, obj, p).is_none()
            {
                return Err(validation_errors(vec![prop_error(
                    "PROPERTY_DOESNT_EXIST",
                    format!("Property \"{p}\" does not exist"),
                    p,
                )]));
            }
            let sel = match body.get("properties").and_then(Value::as_array) {
                Some(a) if !a.is_empty() => Selection::Names(
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect(),
                ),
                _ => Selection::Default,
            };
            let text = body
                .get("query")
                .and_then(Value::as_str)
                .map(str::to_lowercase)
                .filter(|q| !q.is_empty());
            let cutoff = if st.search_lag.is_zero() {
                Some(Instant::now())
            } else {
                Instant::now().checked_sub(st.search_lag)
            };
            let mut hits: Vec<&Record> = st
                .store(obj)
                .records
                .values()
                .filter_map(|r| r.indexed(cutoff))
                .filter(|r| r.archived_at.is_none())
                .filter(|r| {
                    parsed.is_empty() || parsed.iter().any(|g| g.iter().all(|f| f.matches(obj, r)))
                })
                .filter(|r| {
                    text.as_ref().is_none_or(|q| {
                        [
                            "firstname",
                            "lastname",
                            "email",
                            "phone",
                            "company",
                            "name",
                            "domain",
                        ]
                        .iter()
                        .any(|p| {
                            r.props
                                .get(*p)
                                .is_some_and(|v| v.to_lowercase().contains(q))
                        })
                    })
                })
                .collect();
            if let Some((p, desc)) = &sort {
                let kind = kind_of(st, obj, p).unwrap_or(Kind::Text);
                hits.sort_by(|a, b| {
                    let ord = match (a.value(obj, p), b.value(obj, p)) {
                        (Some(x), Some(y)) => compare(kind, &x, &y).unwrap_or(Ordering::Equal),
                        (Some(_), None) => Ordering::Less,
                        (None, Some(_)) => Ordering::Greater,
                        (None, None) => Ordering::Equal,
                    };
                    let ord = if *desc { ord.reverse() } else { ord };
                    ord.then(a.id.cmp(&b.id))
                });
            }
            let total = hits.len() as u64;
            let results: Vec<Value> = hits
                .iter()
                .skip(after as usize)
                .take(limit as usize)
                .map(|r| self.render(st, obj, r, &sel))
                .collect();
            let next = after + results.len() as u64;
            let mut out = json!({"total": total, "results": results});
            if next < total && !results.is_empty() {
                out["paging"] = json!({"next": {"after": next.to_string()}});
            }
            Ok(Reply::json(200, out))
        };
        run().unwrap_or_else(|r| r)
    }

    fn list_search(&self, st: &State, req: &Req) -> Reply {
        let run = || -> Result<Reply, Reply> {
            let body = parse_json(req)?;
            if !body.is_object() {
                return Err(bad_request(
                    "Invalid input JSON: the body must be an object",
                ));
            }
            let offset = match body.get("offset") {
                None | Some(Value::Null) => 0,
                Some(v) => v
                    .as_u64()
                    .ok_or_else(|| bad_request("offset must be a non-negative integer"))?,
            };
            let count = match body.get("count") {
                None | Some(Value::Null) => 20,
                Some(v) => v
                    .as_u64()
                    .filter(|n| (1..=500).contains(n))
                    .ok_or_else(|| {
                        bad_request(&format!("count must be an integer from 1 to 500; got {v}"))
                    })?,
            };
            let query = body
                .get("query")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_lowercase();
            let strings = |k: &str| -> Option<Vec<String>> {
                body.get(k)
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(value_string).collect())
            };
            let types = strings("processingTypes").filter(|t| !t.is_empty());
            let ids = strings("listIds").filter(|t| !t.is_empty());
            let matching: Vec<&List> = st
                .lists
                .values()
                .filter(|l| l.name.to_lowercase().contains(&query))
                .filter(|_| {
                    types
                        .as_ref()
                        .is_none_or(|t| t.iter().any(|t| t == "MANUAL"))
                })
                .filter(|l| {
                    ids.as_ref()
                        .is_none_or(|ids| ids.contains(&l.id.to_string()))
                })
                .collect();
            let total = matching.len() as u64;
            let lists: Vec<Value> = matching
                .iter()
                .skip(offset as usize)
                .take(count as usize)
                .map(|l| render_list(l))
                .collect();
            let next = offset + lists.len() as u64;
            Ok(Reply::json(
                200,
                json!({"lists": lists, "hasMore": next < total, "offset": next, "total": total}),
            ))
        };
        run().unwrap_or_else(|r| r)
    }

    fn memberships(&self, st: &State, id: &str, req: &Req) -> Reply {
        let Some(list) = id.parse::<u64>().ok().and_then(|id| st.lists.get(&id)) else {
            return not_found();
        };
        let run = || -> Result<Reply, Reply> {
            let limit = int_param(req, "limit", 100, 250)? as usize;
            let after = match req.query_param("after") {
                None => 0,
                Some(s) => decode_cursor(&s)
                    .and_then(|v| v["r"].as_u64())
                    .ok_or_else(|| bad_request(&format!("after is not a valid cursor: {s:?}")))?,
            };
            let page: Vec<(&u64, &DateTime<Utc>)> = list
                .members
                .range(after.saturating_add(1)..)
                .take(limit + 1)
                .collect();
            let results: Vec<Value> = page
                .iter()
                .take(limit)
                .map(|(id, t)| json!({"recordId": id.to_string(), "membershipTimestamp": fmt_ms(**t)}))
                .collect();
            let mut body = json!({"results": results});
            if page.len() > limit {
                body["paging"] =
                    json!({"next": {"after": encode_cursor(&json!({"r": page[limit - 1].0}))}});
            }
            Ok(Reply::json(200, body))
        };
        run().unwrap_or_else(|r| r)
    }
}

// ---- property definitions and lists: writes ----------------------------------------------

/// The data types a property definition may have.
const PROPERTY_TYPES: &[&str] = &[
    "string",
    "number",
    "date",
    "datetime",
    "enumeration",
    "bool",
];
/// The most record ids one membership change takes.
const MAX_MEMBERSHIP_IDS: usize = 100_000;
const ENUM_NEEDS_OPTIONS: &str = "An enumeration property needs at least one option";

/// Lowercase letters, digits and underscores, starting with a letter.
fn valid_property_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// The checked fields of a property definition write (a create has the required ones).
#[derive(Default)]
struct PropertyWrite {
    name: Option<String>,
    label: Option<String>,
    kind: Option<String>,
    field_type: Option<String>,
    group_name: Option<String>,
    description: Option<String>,
    options: Option<Vec<Value>>,
}

/// Parses and checks the body of a property create (`create`) or update. Unknown fields
/// are refused, `name` included on an update (it cannot be changed).
fn parse_property_write(req: &Req, create: bool) -> Result<PropertyWrite, Reply> {
    let body = parse_json(req)?;
    let Some(fields) = body.as_object() else {
        return Err(bad_request(
            "Invalid input JSON: the body must be an object",
        ));
    };
    let text = |k: &str, v: &Value, blank_ok: bool| -> Result<String, Reply> {
        match v.as_str() {
            Some(s) if blank_ok || !s.trim().is_empty() => Ok(s.to_owned()),
            _ if blank_ok => Err(bad_request(&format!(
                "Invalid input JSON: {k} must be a string"
            ))),
            _ => Err(bad_request(&format!(
                "Invalid input JSON: {k} must be a non-blank string"
            ))),
        }
    };
    let mut w = PropertyWrite::default();
    for (k, v) in fields {
        match k.as_str() {
            "name" if create => {
                let name = text(k, v, false)?;
                if !valid_property_name(&name) {
                    return Err(bad_request(&format!(
                        "Property name {name:?} is not valid: use lowercase letters, digits and \
                         underscores, starting with a letter"
                    )));
                }
                w.name = Some(name);
            }
            "name" => {
                return Err(bad_request(
                    "Invalid input JSON: unrecognized field \"name\" (a property's name cannot be changed)",
                ));
            }
            "label" => w.label = Some(text(k, v, false)?),
            "type" => {
                let kind = text(k, v, false)?;
                if !PROPERTY_TYPES.contains(&kind.as_str()) {
                    return Err(bad_request(&format!(
                        "{kind:?} is not a valid property type: one of {}",
                        PROPERTY_TYPES.join(", ")
                    )));
                }
                w.kind = Some(kind);
            }
            "fieldType" => w.field_type = Some(text(k, v, false)?),
            "groupName" => w.group_name = Some(text(k, v, false)?),
            "description" => w.description = Some(text(k, v, true)?),
            "options" => w.options = Some(parse_options(v)?),
            other => {
                return Err(bad_request(&format!(
                    "Invalid input JSON: unrecognized field {other:?}"
                )));
            }
        }
    }
    if create {
        let missing: Vec<&str> = [
            ("name", w.name.is_none()),
            ("label", w.label.is_none()),
            ("type", w.kind.is_none()),
            ("fieldType", w.field_type.is_none()),
            ("groupName", w.group_name.is_none()),
        ]
        .into_iter()
        .filter(|(_, missing)| *missing)
        .map(|(name, _)| name)
        .collect();
        if !missing.is_empty() {
            return Err(bad_request(&format!(
                "Invalid input JSON: required fields are not set: [{}]",
                missing.join(", ")
            )));
        }
    }
    Ok(w)
}

/// The `options` of a property definition write, completed (`displayOrder` defaults to the
/// position, `hidden` to false).
fn parse_options(v: &Value) -> Result<Vec<Value>, Reply> {
    let bad = |m: String| bad_request(&format!("Invalid input JSON: options: {m}"));
    let Some(items) = v.as_array() else {
        return Err(bad("must be an array".to_owned()));
    };
    let mut out = Vec::new();
    let mut values = HashSet::new();
    for (i, o) in items.iter().enumerate() {
        let Some(o) = o.as_object() else {
            return Err(bad("each option must be an object".to_owned()));
        };
        if let Some(k) = o
            .keys()
            .find(|k| !matches!(k.as_str(), "label" | "value" | "displayOrder" | "hidden"))
        {
            return Err(bad(format!("unrecognized field {k:?}")));
        }
        let (Some(label), Some(value)) = (
            o.get("label").and_then(Value::as_str),
            o.get("value").and_then(Value::as_str),
        ) else {
            return Err(bad(
                "each option needs a label and a value (strings)".to_owned()
            ));
        };
        if !values.insert(value) {
            return Err(bad(format!("the value {value:?} is given twice")));
        }
        let display_order = match o.get("displayOrder") {
            None | Some(Value::Null) => i as i64,
            Some(d) => d
                .as_i64()
                .filter(|d| i32::try_from(*d).is_ok())
                .ok_or_else(|| bad("displayOrder must be an integer".to_owned()))?,
        };
        let hidden = match o.get("hidden") {
            None | Some(Value::Null) => false,
            Some(h) => h
                .as_bool()
                .ok_or_else(|| bad("hidden must be a boolean".to_owned()))?,
        };
        out.push(json!({
            "label": label, "value": value, "displayOrder": display_order, "hidden": hidden,
        }));
    }
    Ok(out)
}

/// Why `name` cannot name a list (blank, or another list's name), if it cannot.
fn list_name_error(st: &State, name: &str, renamed: Option<u64>) -> Option<Reply> {
    if name.trim().is_empty() {
        return Some(bad_request("A list name must not be blank"));
    }
    if st
        .lists
        .values()
        .any(|l| Some(l.id) != renamed && l.name == name)
    {
        let message = format!("A list named {name} already exists");
        let mut body = error_body("VALIDATION_ERROR", &message);
        body["errors"] = json!([{"message": message, "code": "DUPLICATE_LIST_NAME"}]);
        return Some(Reply::json(400, body));
    }
    None
}

impl Inner {
    fn create_property(&self, st: &mut State, obj: Obj, req: &Req) -> Result<Reply, Reply> {
        let w = parse_property_write(req, true)?;
        let kind = w.kind.unwrap_or_default();
        let options = w.options.unwrap_or_default();
        if kind == "enumeration" && options.is_empty() {
            return Err(bad_request(ENUM_NEEDS_OPTIONS));
        }
        let name = w.name.unwrap_or_default();
        // Archived definitions keep their names.
        if st
            .store(obj)
            .props
            .iter()
            .any(|p| p["name"] == name.as_str())
        {
            return Err(error(409, "CONFLICT", "Property already exists"));
        }
        let t = fmt_ms(st.write_time());
        let def = json!({
            "name": name,
            "label": w.label,
            "type": kind,
            "fieldType": w.field_type,
            "description": w.description.unwrap_or_default(),
            "groupName": w.group_name,
            "options": options,
            "hubspotDefined": false,
            "hidden": false,
            "createdAt": t,
            "updatedAt": t,
            "archived": false,
        });
        st.store_mut(obj).props.push(def.clone());
        Ok(Reply::json(201, def))
    }

    fn update_property(
        &self,
        st: &mut State,
        obj: Obj,
        name: &str,
        req: &Req,
    ) -> Result<Reply, Reply> {
        let Some(i) = st
            .store(obj)
            .props
            .iter()
            .position(|p| p["name"] == name && p["archived"] != true)
        else {
            return Err(not_found());
        };
        let w = parse_property_write(req, false)?;
        let current = &st.store(obj).props[i];
        if current["hubspotDefined"] == true {
            return Err(bad_request("HubSpot-defined properties cannot be changed"));
        }
        let kind = w
            .kind
            .as_deref()
            .or_else(|| current["type"].as_str())
            .unwrap_or_default();
        let no_options = match &w.options {
            Some(o) => o.is_empty(),
            None => current["options"].as_array().is_none_or(Vec::is_empty),
        };
        if kind == "enumeration" && no_options {
            return Err(bad_request(ENUM_NEEDS_OPTIONS));
        }
        let t = fmt_ms(st.write_time());
        let def = &mut st.store_mut(obj).props[i];
        let fields = [
            ("label", w.label),
            ("type", w.kind),
            ("fieldType", w.field_type),
            ("groupName", w.group_name),
            ("description", w.description),
        ];
        for (key, value) in fields {
            if let Some(value) = value {
                def[key] = Value::String(value);
            }
        }
        if let Some(options) = w.options {
            def["options"] = Value::Array(options);
        }
        def["updatedAt"] = Value::String(t);
        Ok(Reply::json(200, def.clone()))
    }

    fn create_list(&self, st: &mut State, req: &Req) -> Result<Reply, Reply> {
        let body = parse_json(req)?;
        let Some(fields) = body.as_object() else {
            return Err(bad_request(
                "Invalid input JSON: the body must be an object",
            ));
        };
        let required = |k: &str| {
            fields.get(k).and_then(Value::as_str).ok_or_else(|| {
                bad_request(&format!("Invalid input JSON: {k} is required (a string)"))
            })
        };
        let name = required("name")?;
        let obj = match required("objectTypeId")? {
            "0-1" => Obj::Contacts,
            "0-2" => Obj::Companies,
            other => {
                return Err(bad_request(&format!(
                    "objectTypeId {other:?} is not supported: 0-1 (contacts) or 0-2 (companies)"
                )));
            }
        };
        match required("processingType")? {
            "MANUAL" => {}
            kind @ ("DYNAMIC" | "SNAPSHOT") => {
                return Err(bad_request(&format!(
                    "A {kind} list needs a filterBranch to define its members"
                )));
            }
            other => {
                return Err(bad_request(&format!(
                    "processingType {other:?} is not one of MANUAL, DYNAMIC, SNAPSHOT"
                )));
            }
        }
        if let Some(refusal) = list_name_error(st, name, None) {
            return Err(refusal);
        }
        let t = st.write_time();
        st.next_list_id += 1;
        let id = st.next_list_id;
        let list = List {
            id,
            name: name.to_owned(),
            obj,
            created: t,
            updated: t,
            members: BTreeMap::new(),
        };
        let answer = json!({"list": render_list(&list)});
        st.lists.insert(id, list);
        Ok(Reply::json(200, answer))
    }

    fn rename_list(&self, st: &mut State, id: &str, req: &Req) -> Result<Reply, Reply> {
        let Some(id) = id
            .parse::<u64>()
            .ok()
            .filter(|id| st.lists.contains_key(id))
        else {
            return Err(not_found());
        };
        let name = req
            .query_param("listName")
            .ok_or_else(|| bad_request("listName is required"))?;
        if let Some(refusal) = list_name_error(st, &name, Some(id)) {
            return Err(refusal);
        }
        let t = st.write_time();
        let list = st.lists.get_mut(&id).expect("checked above");
        list.name = name;
        list.updated = t;
        Ok(Reply::json(200, json!({"updatedList": render_list(list)})))
    }

    /// Adds (`add`) or removes the records of a JSON array of ids.
    fn change_members(
        &self,
        st: &mut State,
        id: &str,
        add: bool,
        req: &Req,
    ) -> Result<Reply, Reply> {
        let Some(list) = id.parse::<u64>().ok().and_then(|id| st.lists.get(&id)) else {
            return Err(not_found());
        };
        let body = parse_json(req)?;
        let Some(items) = body.as_array() else {
            return Err(bad_request(
                "Invalid input JSON: the body must be an array of record ids",
            ));
        };
        if items.len() > MAX_MEMBERSHIP_IDS {
            return Err(bad_request(&format!(
                "At most {MAX_MEMBERSHIP_IDS} record ids may be given at once; got {}",
                items.len()
            )));
        }
        let records = &st.store(list.obj).records;
        let mut changed: Vec<u64> = Vec::new();
        let mut missing: Vec<String> = Vec::new();
        let mut seen = HashSet::new();
        for item in items {
            let Some(raw) = item.as_str() else {
                return Err(bad_request(&format!(
                    "Invalid input JSON: record ids must be strings; got {item}"
                )));
            };
            let record = raw.trim().parse::<u64>().ok();
            if !seen.insert(record.map_or_else(|| raw.to_owned(), |r| r.to_string())) {
                continue;
            }
            let member = record.is_some_and(|r| list.members.contains_key(&r));
            let exists = record
                .and_then(|r| records.get(&r))
                .is_some_and(|r| r.archived_at.is_none());
            // Added: an unarchived record of the list's type that is not a member yet;
            // removed: a member, whatever became of its record. A member given to add, or
            // a record outside the list given to remove, is in neither answer.
            let (changes, is_missing) = if add {
                (exists && !member, !exists)
            } else {
                (member, !member && !exists)
            };
            if changes {
                changed.extend(record);
            } else if is_missing {
                missing.push(raw.to_owned());
            }
        }
        let list_id = list.id;
        if !changed.is_empty() {
            let t = st.write_time();
            let list = st.lists.get_mut(&list_id).expect("found above");
            for r in &changed {
                if add {
                    list.members.insert(*r, t);
                } else {
                    list.members.remove(r);
                }
            }
            list.updated = t;
        }
        let changed: Vec<String> = changed.iter().map(u64::to_string).collect();
        let key = if add {
            "recordIdsAdded"
        } else {
            "recordIdsRemoved"
        };
        Ok(Reply::json(
            200,
            json!({key: changed, "recordIdsMissing": missing}),
        ))
    }
}

fn method_not_allowed() -> Reply {
    error(405, "METHOD_NOT_ALLOWED", "method not allowed on this path")
}

fn normalize(name: &str, value: String) -> String {
    if name == "email" {
        value.trim().to_lowercase()
    } else {
        value
    }
}

/// Keeps the current version for a lagging search index before `rec` changes.
fn new_version(rec: &mut Record, lag: Duration) {
    if lag.is_zero() {
        rec.prev = None;
    } else {
        let mut old = rec.clone();
        // Versions older than the index's horizon are never needed again.
        if let Some(cutoff) = Instant::now().checked_sub(lag) {
            let mut v = &mut old;
            loop {
                if v.written.is_none_or(|w| w <= cutoff) {
                    v.prev = None;
                    break;
                }
                match v.prev.as_deref_mut() {
                    Some(p) => v = p,
                    None => break,
                }
            }
        }
        rec.prev = Some(Box::new(old));
    }
    rec.written = Some(Instant::now());
}

fn render_list(l: &List) -> Value {
    json!({
        "listId": l.id.to_string(),
        "name": l.name,
        "objectTypeId": l.obj.type_id(),
        "processingType": "MANUAL",
        "createdAt": fmt_ms(l.created),
        "updatedAt": fmt_ms(l.updated),
        "size": l.members.len(),
    })
}

fn expiry(lifetime: Duration) -> DateTime<Utc> {
    Utc::now() + chrono::Duration::from_std(lifetime).unwrap_or(chrono::Duration::MAX)
}

fn is_crm(path: &str) -> bool {
    path.starts_with("/crm/")
}

impl Api for Inner {
    fn common(&self) -> &Common {
        &self.common
    }

    fn handle(&self, req: &Req) -> Reply {
        if req.path == TOKEN_PATH {
            return self.token_endpoint(req);
        }
        let mut st = lock(&self.state);
        let token = match self.authenticate(&st, req) {
            Ok(t) => t,
            Err(reply) => return with_limits(reply, &self.full_limits(&st)),
        };
        let (over, limits) = self.count(&mut st, &token);
        if over {
            return with_limits(Reply::json(429, rate_limited()), &limits);
        }
        with_limits(self.route(&mut st, req), &limits)
    }

    fn injected(&self, req: &Req, failure: &Failure) -> Reply {
        let st = lock(&self.state);
        let mut limits = self.full_limits(&st);
        let reply = match failure {
            Failure::Status429 { retry_after } => {
                limits.secondly_remaining = 0;
                let r = Reply::json(429, rate_limited());
                match retry_after {
                    Some(s) => r.header("retry-after", s),
                    None => r,
                }
            }
            Failure::Status(429) => {
                limits.secondly_remaining = 0;
                Reply::json(429, rate_limited())
            }
            Failure::Status(code) => error(*code, category_of(*code), reason(*code)),
            Failure::Timeout(_) | Failure::Disconnect => {
                error(500, "INTERNAL_ERROR", "internal error")
            }
        };
        if is_crm(&req.path) {
            with_limits(reply, &limits)
        } else {
            reply
        }
    }

    fn recorded_body(&self, req: &Req) -> String {
        if req.path == TOKEN_PATH {
            server::redact_form(&req.body)
        } else {
            String::from_utf8_lossy(&req.body).into_owned()
        }
    }
}

fn seed_value(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) if s.is_empty() => None,
        other => value_string(other),
    }
}

impl HubSpotDouble {
    /// Starts a double on 127.0.0.1 and a free port.
    pub async fn start() -> HubSpotDouble {
        let (listener, addr) = server::bind().await;
        let empty = |obj| Store {
            next_id: 0,
            records: BTreeMap::new(),
            props: default_defs(obj),
        };
        let inner = Arc::new(Inner {
            common: Common::default(),
            state: Mutex::new(State {
                tokens: HashMap::new(),
                refresh: HashMap::new(),
                clients: HashMap::new(),
                access_lifetime: DEFAULT_ACCESS_LIFETIME,
                refresh_count: 0,
                secondly_limit: None,
                windows: HashMap::new(),
                contacts: empty(Obj::Contacts),
                companies: empty(Obj::Companies),
                required: HashSet::new(),
                lists: BTreeMap::new(),
                next_list_id: 0,
                search_lag: Duration::ZERO,
                last_write_ms: 0,
            }),
            base_url: format!("http://{addr}"),
            started: Instant::now(),
        });
        let server = server::serve(listener, addr, inner.clone());
        HubSpotDouble {
            inner,
            server: Arc::new(server),
        }
    }

    /// `http://127.0.0.1:PORT`
    pub fn base_url(&self) -> String {
        self.server.base_url()
    }

    /// Stops serving (open connections are closed); the state stays readable.
    pub fn shutdown(&self) {
        self.server.shutdown();
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        lock(&self.inner.state)
    }

    /// A token that never expires (a service key or legacy private-app token).
    pub fn add_token(&self, token: &str) {
        self.state().tokens.insert(
            token.to_owned(),
            Token {
                expires_at: None,
                expired: false,
            },
        );
    }

    pub fn add_oauth_client(&self, client_id: &str, client_secret: &str) {
        self.state()
            .clients
            .insert(client_id.to_owned(), client_secret.to_owned());
    }

    /// An access token that expires after `lifetime`, and its refresh token.
    ///
    /// # Panics
    /// When `client_id` was not added with [`add_oauth_client`](Self::add_oauth_client).
    pub fn issue_oauth(&self, client_id: &str, lifetime: Duration) -> OAuthGrant {
        let mut st = self.state();
        assert!(
            st.clients.contains_key(client_id),
            "add_oauth_client({client_id:?}, ..) first"
        );
        let access_token = format!("hs-oauth-{}", random_hex(40));
        let refresh_token = format!("hs-refresh-{}", random_hex(36));
        let expires_at = expiry(lifetime);
        st.tokens.insert(
            access_token.clone(),
            Token {
                expires_at: Some(expires_at),
                expired: false,
            },
        );
        st.refresh.insert(
            refresh_token.clone(),
            Refresh {
                client_id: client_id.to_owned(),
                revoked: false,
            },
        );
        OAuthGrant {
            access_token,
            refresh_token,
            expires_at,
            api_domain: None,
        }
    }

    /// The next call with this token answers 401 `EXPIRED_AUTHENTICATION`.
    pub fn expire_access_token(&self, access_token: &str) {
        if let Some(t) = self.state().tokens.get_mut(access_token) {
            t.expired = true;
        }
    }

    /// Refreshing with this token then fails (400 `BAD_REFRESH_TOKEN`).
    pub fn revoke_refresh_token(&self, refresh_token: &str) {
        if let Some(r) = self.state().refresh.get_mut(refresh_token) {
            r.revoked = true;
        }
    }

    /// The lifetime of access tokens issued by the refresh endpoint (default 1800 s).
    pub fn set_access_token_lifetime(&self, d: Duration) {
        self.state().access_lifetime = d;
    }

    /// How many refreshes succeeded (every attempt is in [`calls`](Self::calls)).
    pub fn refresh_count(&self) -> usize {
        self.state().refresh_count
    }

    /// The next `n` requests, whatever their path, answer `failure`.
    pub fn fail_next(&self, n: usize, failure: Failure) {
        self.inner.common.fail_next(None, n, failure);
    }

    /// The next `n` requests whose path contains `path_contains` answer `failure`.
    pub fn fail_next_matching(&self, path_contains: &str, n: usize, failure: Failure) {
        self.inner.common.fail_next(Some(path_contains), n, failure);
    }

    /// Every request waits this long before it is handled.
    pub fn set_latency(&self, d: Duration) {
        self.inner.common.set_latency(d);
    }

    /// The most requests that were in flight at once.
    pub fn max_in_flight(&self) -> usize {
        self.inner.common.max_in_flight()
    }

    pub fn in_flight(&self) -> usize {
        self.inner.common.in_flight()
    }

    /// At most `n` calls per token per second (429, policy `SECONDLY`, no `Retry-After`
    /// over it); `None` enforces none.
    pub fn set_secondly_limit(&self, n: Option<u32>) {
        self.state().secondly_limit = n;
    }

    pub fn calls(&self) -> Vec<RecordedCall> {
        self.inner.common.calls()
    }

    /// The portal requires this property on writes (the `2026-09` rule): a create without
    /// it, or an update clearing it, answers 400 `REQUIRED_PROPERTY`.
    pub fn require_property(&self, object: &str, name: &str) {
        self.state()
            .required
            .insert((Obj::must(object), name.to_owned()));
    }

    /// Search sees writes only after this long (default 0).
    pub fn set_search_index_lag(&self, d: Duration) {
        self.state().search_lag = d;
    }

    fn insert(&self, obj: Obj, properties: Map<String, Value>) -> String {
        let mut st = self.state();
        let mut created = None;
        let mut updated = None;
        let mut props = BTreeMap::new();
        for (name, v) in properties {
            let value = seed_value(&v);
            let time = || {
                let s = value.clone().unwrap_or_default();
                parse_epoch_ms_or_rfc3339(&s)
                    .and_then(|ms| Utc.timestamp_millis_opt(ms).single())
                    .unwrap_or_else(|| {
                        panic!("{name} must be epoch milliseconds or RFC 3339; got {v}")
                    })
            };
            match name.as_str() {
                "createdate" => created = Some(time()),
                n if n == obj.lastmod() => updated = Some(time()),
                "hs_object_id" => panic!("hs_object_id is assigned by the double"),
                n => {
                    assert!(
                        st.def(obj, n).is_some(),
                        "property {n:?} is not defined on {obj:?}: add_property first"
                    );
                    if let Some(value) = value {
                        props.insert(name.clone(), normalize(&name, value));
                    }
                }
            }
        }
        let t = st.write_time();
        let created = created.unwrap_or(t);
        let store = st.store_mut(obj);
        store.next_id += 1;
        let id = store.next_id;
        let rec = Record {
            id,
            props,
            created,
            updated: updated.unwrap_or(t).max(created),
            archived_at: None,
            written: None,
            prev: None,
        };
        store.records.insert(id, rec);
        id.to_string()
    }

    /// Adds a contact without HTTP (no validation but that the properties exist);
    /// `createdate` / `lastmodifieddate` may be given (epoch ms or RFC 3339) to date it.
    pub fn insert_contact(&self, properties: Map<String, Value>) -> String {
        self.insert(Obj::Contacts, properties)
    }

    /// Adds a company without HTTP, like [`insert_contact`](Self::insert_contact)
    /// (`hs_lastmodifieddate` dates it).
    pub fn insert_company(&self, properties: Map<String, Value>) -> String {
        self.insert(Obj::Companies, properties)
    }

    fn show(&self, obj: Obj, id: &str) -> Option<Value> {
        let st = self.state();
        let rec = st.store(obj).records.get(&id.parse::<u64>().ok()?)?;
        Some(self.inner.render(&st, obj, rec, &Selection::Set))
    }

    /// The contact as the API shows it (every property with a value; archived ones too).
    pub fn contact(&self, id: &str) -> Option<Value> {
        self.show(Obj::Contacts, id)
    }

    pub fn company(&self, id: &str) -> Option<Value> {
        self.show(Obj::Companies, id)
    }

    /// Defines (or replaces) a property of `object` (`contacts` or `companies`); the
    /// definition needs `name`, the rest is filled in.
    pub fn add_property(&self, object: &str, property: Value) {
        let obj = Obj::must(object);
        let name = property["name"]
            .as_str()
            .expect("a property needs a name")
            .to_owned();
        let kind = property["type"].as_str().unwrap_or("string");
        let field_type = property["fieldType"].as_str().unwrap_or("text");
        let mut def = prop_def(
            obj,
            &name,
            property["label"].as_str().unwrap_or(&name),
            kind,
            field_type,
            &[],
        );
        let now = fmt_ms(now_ms());
        def["createdAt"] = json!(now);
        def["updatedAt"] = json!(now);
        def["hubspotDefined"] = json!(false);
        if let Some(opts) = property["options"].as_array() {
            def["options"] = Value::Array(
                opts.iter()
                    .enumerate()
                    .map(|(i, o)| {
                        let value = o["value"].as_str().unwrap_or_default();
                        json!({
                            "label": o["label"].as_str().unwrap_or(value),
                            "value": value,
                            "displayOrder": o["displayOrder"].as_i64().unwrap_or(i as i64),
                            "hidden": o["hidden"].as_bool().unwrap_or(false),
                        })
                    })
                    .collect(),
            );
        }
        if let Some(given) = property.as_object() {
            for (k, v) in given {
                if !matches!(k.as_str(), "options" | "name") {
                    def[k] = v.clone();
                }
            }
        }
        let mut st = self.state();
        let props = &mut st.store_mut(obj).props;
        props.retain(|p| p["name"] != name.as_str());
        props.push(def);
    }

    /// The property definition as `GET /crm/properties/2026-09/{object}/{name}` shows it
    /// (`object` is `contacts` or `companies`); `None` when there is none (or it is archived).
    pub fn property(&self, object: &str, name: &str) -> Option<Value> {
        self.state().def(Obj::must(object), name).cloned()
    }

    /// The list as `GET /crm/lists/2026-09/{listId}` shows it under `list` (`listId`,
    /// `name`, `objectTypeId`, `processingType`, `createdAt`, `updatedAt`, `size`), plus
    /// `members`: the ids of its member records (strings), in the order the memberships
    /// endpoint pages them (ascending). `None` when there is no such list.
    pub fn list(&self, list_id: &str) -> Option<Value> {
        let st = self.state();
        let list = st.lists.get(&list_id.parse::<u64>().ok()?)?;
        let mut shown = render_list(list);
        shown["members"] = list.members.keys().map(u64::to_string).collect();
        Some(shown)
    }

    /// A manual contact list with these members; its `listId`.
    pub fn insert_list(&self, name: &str, member_ids: &[String]) -> String {
        let mut st = self.state();
        let t = st.write_time();
        st.next_list_id += 1;
        let id = st.next_list_id;
        let members = member_ids
            .iter()
            .map(|m| {
                (
                    m.parse::<u64>()
                        .unwrap_or_else(|_| panic!("member id {m:?} is not a record id")),
                    t,
                )
            })
            .collect();
        st.lists.insert(
            id,
            List {
                id,
                name: name.to_owned(),
                obj: Obj::Contacts,
                created: t,
                updated: t,
                members,
            },
        );
        id.to_string()
    }
}
