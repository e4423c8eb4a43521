//! The Pipedrive double: API v2 persons and organizations (list, read, create, update,
//! delete), person fields, and the OAuth refresh endpoint.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, TimeZone as _, Utc};
use serde_json::{Map, Value, json};

use crate::server::{self, Api, Common, Reply, Req, Server, lock};
use crate::util::{
    decode_cursor, encode_cursor, fmt_secs, parse_rfc3339, random_hex, reason, valid_email,
};
use crate::{Failure, OAuthGrant, RecordedCall};

const TOKEN_PATH: &str = "/oauth/token";
const DEFAULT_ACCESS_LIFETIME: Duration = Duration::from_secs(3600);
/// The rate-limit window, in seconds.
const WINDOW_SECS: u64 = 2;
/// Shown as `x-ratelimit-limit` when no window limit is enforced.
const NOMINAL_WINDOW_LIMIT: u32 = 1000;
const ERROR_INFO: &str = "Please check developers.pipedrive.com";
/// The user every token acts as, and so the default owner.
const USER_ID: i64 = 1;

struct Token {
    oauth: bool,
    expires_at: Option<DateTime<Utc>>,
    expired: bool,
}

struct Refresh {
    client_id: String,
}

#[derive(Clone)]
struct Channel {
    value: String,
    primary: bool,
    label: String,
}

struct Person {
    id: i64,
    name: String,
    owner_id: i64,
    org_id: Option<i64>,
    add_time: DateTime<Utc>,
    update_time: DateTime<Utc>,
    emails: Vec<Channel>,
    phones: Vec<Channel>,
    visible_to: i64,
    label_ids: Vec<i64>,
    custom: BTreeMap<String, Value>,
}

struct Org {
    id: i64,
    name: String,
    owner_id: i64,
    add_time: DateTime<Utc>,
    update_time: DateTime<Utc>,
    visible_to: i64,
    label_ids: Vec<i64>,
    address: Option<String>,
    custom: Map<String, Value>,
}

struct Field {
    code: String,
    field_type: String,
    custom: bool,
    json: Value,
}

impl Field {
    fn option_ids(&self) -> Vec<i64> {
        self.json["options"]
            .as_array()
            .map(|o| o.iter().filter_map(|o| o["id"].as_i64()).collect())
            .unwrap_or_default()
    }
}

trait Item {
    fn id(&self) -> i64;
    fn add_time(&self) -> DateTime<Utc>;
    fn update_time(&self) -> DateTime<Utc>;
}

impl Item for Person {
    fn id(&self) -> i64 {
        self.id
    }
    fn add_time(&self) -> DateTime<Utc> {
        self.add_time
    }
    fn update_time(&self) -> DateTime<Utc> {
        self.update_time
    }
}

impl Item for Org {
    fn id(&self) -> i64 {
        self.id
    }
    fn add_time(&self) -> DateTime<Utc> {
        self.add_time
    }
    fn update_time(&self) -> DateTime<Utc> {
        self.update_time
    }
}

struct State {
    tokens: HashMap<String, Token>,
    refresh: HashMap<String, Refresh>,
    clients: HashMap<String, String>,
    access_lifetime: Duration,
    refresh_count: usize,
    window_limit: Option<u32>,
    window: (u64, u32),
    persons: BTreeMap<i64, Person>,
    next_person: i64,
    orgs: BTreeMap<i64, Org>,
    next_org: i64,
    fields: Vec<Field>,
    next_option_id: i64,
    resolution: u64,
}

impl State {
    /// Now, at the clock's resolution (1 s unless set otherwise).
    fn clock(&self) -> DateTime<Utc> {
        let secs = Utc::now().timestamp();
        let r = self.resolution.max(1) as i64;
        Utc.timestamp_opt(secs - secs.rem_euclid(r), 0)
            .single()
            .unwrap_or_else(Utc::now)
    }

    fn custom_field(&self, code: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.custom && f.code == code)
    }
}

struct Inner {
    common: Common,
    state: Mutex<State>,
    base_url: String,
    started: Instant,
}

/// A Pipedrive double serving on a loopback port. Clones share one server; it stops when
/// [`shutdown`](Self::shutdown) is called or the last clone is dropped.
#[derive(Clone)]
pub struct PipedriveDouble {
    inner: Arc<Inner>,
    server: Arc<Server>,
}

impl std::fmt::Debug for PipedriveDouble {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PipedriveDouble")
            .field("base_url", &self.inner.base_url)
            .finish_non_exhaustive()
    }
}

// ---- answers ----------------------------------------------------------------------------

fn error(status: u16, message: &str) -> Reply {
    Reply::json(
        status,
        json!({"success": false, "error": message, "error_info": ERROR_INFO, "data": null}),
    )
}

fn bad_request(message: &str) -> Reply {
    error(400, message)
}

fn unauthorized() -> Reply {
    Reply::json(
        401,
        json!({"success": false, "error": "unauthorized access", "errorCode": 401, "error_info": ERROR_INFO}),
    )
}

fn over_limit() -> Reply {
    error(429, "Request over limit")
}

fn ok(data: Value) -> Reply {
    Reply::json(200, json!({"success": true, "data": data}))
}

fn ok_page(data: Vec<Value>, next_cursor: Option<String>) -> Reply {
    Reply::json(
        200,
        json!({"success": true, "data": data, "additional_data": {"next_cursor": next_cursor}}),
    )
}

fn channels(list: &[Channel]) -> Value {
    Value::Array(
        list.iter()
            .map(|c| json!({"value": c.value, "primary": c.primary, "label": c.label}))
            .collect(),
    )
}

fn first_last(name: &str) -> (Option<String>, Option<String>) {
    let name = name.trim();
    match name.split_once(' ') {
        Some((first, last)) => (
            Some(first.to_owned()),
            Some(last.trim().to_owned()).filter(|s| !s.is_empty()),
        ),
        None if name.is_empty() => (None, None),
        None => (Some(name.to_owned()), None),
    }
}

// ---- parsing ----------------------------------------------------------------------------

/// A create or update of a person, checked.
#[derive(Default)]
struct PersonWrite {
    name: Option<String>,
    owner_id: Option<i64>,
    org_id: Option<Option<i64>>,
    emails: Option<Vec<Channel>>,
    phones: Option<Vec<Channel>>,
    visible_to: Option<i64>,
    label_ids: Option<Vec<i64>>,
    custom: Vec<(String, Value)>,
    add_time: Option<DateTime<Utc>>,
    update_time: Option<DateTime<Utc>>,
}

fn int_of(v: &Value, field: &str) -> Result<i64, String> {
    v.as_i64()
        .ok_or_else(|| format!("Validation failed: {field}: must be an integer"))
}

fn parse_channels(v: &Value, field: &str) -> Result<Vec<Channel>, String> {
    let Some(items) = v.as_array() else {
        return Err(format!("Validation failed: {field}: must be an array"));
    };
    let mut out = Vec::new();
    for item in items {
        let Some(obj) = item.as_object() else {
            return Err(format!("Validation failed: {field}: items must be objects"));
        };
        if let Some(k) = obj
            .keys()
            .find(|k| !matches!(k.as_str(), "value" | "primary" | "label"))
        {
            return Err(format!("Validation failed: {field}: unknown field {k}"));
        }
        let Some(value) = obj.get("value").and_then(Value::as_str) else {
            return Err(format!(
                "Validation failed: {field}: value is required and must be a string"
            ));
        };
        if field == "emails" && !valid_email(value) {
            return Err(format!(
                "Validation failed: emails: {value:?} is not a valid email address"
            ));
        }
        if value.trim().is_empty() {
            return Err(format!(
                "Validation failed: {field}: value must not be empty"
            ));
        }
        let primary = match obj.get("primary") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                return Err(format!(
                    "Validation failed: {field}: primary must be a boolean"
                ));
            }
        };
        let label = match obj.get("label") {
            None | Some(Value::Null) => "work".to_owned(),
            Some(Value::String(s)) => s.clone(),
            Some(_) => {
                return Err(format!(
                    "Validation failed: {field}: label must be a string"
                ));
            }
        };
        out.push(Channel {
            value: value.to_owned(),
            primary,
            label,
        });
    }
    match out.iter().filter(|c| c.primary).count() {
        0 => {
            if let Some(first) = out.first_mut() {
                first.primary = true;
            }
        }
        1 => {}
        _ => {
            return Err(format!(
                "Validation failed: {field}: only one item can be primary"
            ));
        }
    }
    Ok(out)
}

fn check_custom(field: &Field, v: &Value) -> Result<(), String> {
    if v.is_null() {
        return Ok(());
    }
    let code = &field.code;
    let bad = |what: &str| {
        Err(format!(
            "Validation failed: custom_fields.{code}: must be {what}"
        ))
    };
    match field.field_type.as_str() {
        "varchar" | "varchar_auto" | "text" | "phone" | "address" => {
            if v.is_string() {
                Ok(())
            } else {
                bad("a string")
            }
        }
        "double" => {
            if v.is_number() {
                Ok(())
            } else {
                bad("a number")
            }
        }
        "monetary" => {
            let ok = v.is_number() || (v["value"].is_number() && v["currency"].is_string());
            if ok {
                Ok(())
            } else {
                bad("a number or {value, currency}")
            }
        }
        "date" => match v
            .as_str()
            .map(|s| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d"))
        {
            Some(Ok(_)) => Ok(()),
            _ => bad("a date (YYYY-MM-DD)"),
        },
        "enum" => match v.as_i64() {
            Some(id) if field.option_ids().contains(&id) => Ok(()),
            _ => bad("the id of one of its options"),
        },
        "set" => {
            let ids = field.option_ids();
            let ok = v.as_array().is_some_and(|a| {
                a.iter()
                    .all(|x| x.as_i64().is_some_and(|id| ids.contains(&id)))
            });
            if ok {
                Ok(())
            } else {
                bad("an array of ids of its options")
            }
        }
        "int" | "user" | "org" | "people" => {
            if v.as_i64().is_some() {
                Ok(())
            } else {
                bad("an integer")
            }
        }
        _ => Ok(()),
    }
}

fn parse_person(st: &State, body: &Value, create: bool, seed: bool) -> Result<PersonWrite, String> {
    let Some(obj) = body.as_object() else {
        return Err("Validation failed: the body must be a JSON object".to_owned());
    };
    let mut w = PersonWrite::default();
    for (k, v) in obj {
        match k.as_str() {
            "name" => match v.as_str().map(str::trim) {
                Some(n) if !n.is_empty() => w.name = Some(n.to_owned()),
                _ => return Err("Validation failed: name: must be a non-empty string".to_owned()),
            },
            "owner_id" => w.owner_id = Some(int_of(v, k)?),
            "org_id" => {
                w.org_id = Some(match v {
                    Value::Null => None,
                    v => {
                        let id = int_of(v, k)?;
                        if !st.orgs.contains_key(&id) {
                            return Err(format!(
                                "Validation failed: org_id: organization {id} does not exist"
                            ));
                        }
                        Some(id)
                    }
                })
            }
            "emails" => w.emails = Some(parse_channels(v, k)?),
            "phones" => w.phones = Some(parse_channels(v, k)?),
            "visible_to" => {
                let n = int_of(v, k)?;
                if ![1, 3, 5, 7].contains(&n) {
                    return Err(
                        "Validation failed: visible_to: must be one of 1, 3, 5, 7".to_owned()
                    );
                }
                w.visible_to = Some(n);
            }
            "label_ids" => {
                let ids = v
                    .as_array()
                    .ok_or("Validation failed: label_ids: must be an array of integers")?;
                w.label_ids = Some(ids.iter().map(|x| int_of(x, k)).collect::<Result<_, _>>()?);
            }
            "custom_fields" => {
                let Some(map) = v.as_object() else {
                    return Err("Validation failed: custom_fields: must be an object".to_owned());
                };
                for (code, value) in map {
                    let Some(field) = st.custom_field(code) else {
                        return Err(format!(
                            "Validation failed: custom_fields: unknown field code {code}"
                        ));
                    };
                    check_custom(field, value)?;
                    w.custom.push((code.clone(), value.clone()));
                }
            }
            "add_time" | "update_time" if seed => {
                let t = v
                    .as_str()
                    .and_then(parse_rfc3339)
                    .ok_or(format!("{k} must be an RFC 3339 date-time"))?;
                if k == "add_time" {
                    w.add_time = Some(t)
                } else {
                    w.update_time = Some(t)
                }
            }
            "first_name" | "last_name" => {
                return Err(format!(
                    "Validation failed: {k}: is read-only, derived from name; write name instead"
                ));
            }
            "id" | "add_time" | "update_time" => {
                return Err(format!("Validation failed: {k}: is read-only"));
            }
            other => return Err(format!("Validation failed: unknown field {other}")),
        }
    }
    if create && w.name.is_none() {
        return Err("Validation failed: name: is required".to_owned());
    }
    Ok(w)
}

struct Paging {
    limit: usize,
    sort_by: String,
    desc: bool,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
    after: Option<(i64, i64)>,
}

fn parse_paging(req: &Req) -> Result<Paging, Reply> {
    let limit = match req.query_param("limit") {
        None => 100,
        Some(s) => match s.parse::<usize>() {
            Ok(n) if (1..=500).contains(&n) => n,
            _ => {
                return Err(bad_request(&format!(
                    "Validation failed: limit: must be an integer from 1 to 500; got {s:?}"
                )));
            }
        },
    };
    let sort_by = req
        .query_param("sort_by")
        .unwrap_or_else(|| "id".to_owned());
    if !matches!(sort_by.as_str(), "id" | "update_time" | "add_time") {
        return Err(bad_request(
            "Validation failed: sort_by: must be one of id, update_time, add_time",
        ));
    }
    let desc = match req.query_param("sort_direction").as_deref() {
        None | Some("asc") => false,
        Some("desc") => true,
        Some(_) => {
            return Err(bad_request(
                "Validation failed: sort_direction: must be asc or desc",
            ));
        }
    };
    let time = |name: &str| -> Result<Option<DateTime<Utc>>, Reply> {
        match req.query_param(name) {
            None => Ok(None),
            Some(s) => parse_rfc3339(&s).map(Some).ok_or_else(|| {
                bad_request(&format!(
                    "Validation failed: {name}: must be an RFC 3339 date-time"
                ))
            }),
        }
    };
    let since = time("updated_since")?;
    let until = time("updated_until")?;
    let after = match req.query_param("cursor").filter(|c| !c.is_empty()) {
        None => None,
        Some(c) => {
            let v = decode_cursor(&c)
                .ok_or_else(|| bad_request("Validation failed: cursor: invalid cursor"))?;
            if v["sort_by"] != sort_by.as_str() || v["desc"] != desc {
                return Err(bad_request(
                    "Validation failed: cursor: it was made for another sort",
                ));
            }
            match (v["key"].as_i64(), v["id"].as_i64()) {
                (Some(k), Some(id)) => Some((k, id)),
                _ => return Err(bad_request("Validation failed: cursor: invalid cursor")),
            }
        }
    };
    Ok(Paging {
        limit,
        sort_by,
        desc,
        since,
        until,
        after,
    })
}

fn int_list(req: &Req, name: &str) -> Result<Option<Vec<i64>>, Reply> {
    match req.query_param(name) {
        None => Ok(None),
        Some(s) => s
            .split(',')
            .filter(|p| !p.trim().is_empty())
            .map(|p| p.trim().parse::<i64>())
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
            .map_err(|_| bad_request(&format!("Validation failed: {name}: must be integers"))),
    }
}

/// One page of `items` in the asked order, and the cursor of the next one.
fn page<'a, T: Item>(
    items: impl Iterator<Item = &'a T>,
    p: &Paging,
) -> (Vec<&'a T>, Option<String>) {
    let key = |t: &T| match p.sort_by.as_str() {
        "update_time" => t.update_time().timestamp_millis(),
        "add_time" => t.add_time().timestamp_millis(),
        _ => t.id(),
    };
    let mut all: Vec<&T> = items
        .filter(|t| p.since.is_none_or(|s| t.update_time() >= s))
        .filter(|t| p.until.is_none_or(|u| t.update_time() < u))
        .collect();
    all.sort_by_key(|t| (key(t), t.id()));
    if p.desc {
        all.reverse();
    }
    if let Some(pos) = p.after {
        all.retain(|t| {
            if p.desc {
                (key(t), t.id()) < pos
            } else {
                (key(t), t.id()) > pos
            }
        });
    }
    let more = all.len() > p.limit;
    all.truncate(p.limit);
    let next = match all.last() {
        Some(last) if more => Some(encode_cursor(
            &json!({"sort_by": p.sort_by, "desc": p.desc, "key": key(last), "id": last.id()}),
        )),
        _ => None,
    };
    (all, next)
}

// ---- the double -------------------------------------------------------------------------

impl Inner {
    fn render_person(&self, st: &State, p: &Person) -> Value {
        let (first, last) = first_last(&p.name);
        let custom: Map<String, Value> = st
            .fields
            .iter()
            .filter(|f| f.custom)
            .map(|f| {
                (
                    f.code.clone(),
                    p.custom.get(&f.code).cloned().unwrap_or(Value::Null),
                )
            })
            .collect();
        json!({
            "id": p.id,
            "name": p.name,
            "first_name": first,
            "last_name": last,
            "owner_id": p.owner_id,
            "org_id": p.org_id,
            "add_time": fmt_secs(p.add_time),
            "update_time": fmt_secs(p.update_time),
            "emails": channels(&p.emails),
            "phones": channels(&p.phones),
            "visible_to": p.visible_to,
            "label_ids": p.label_ids,
            "custom_fields": custom,
        })
    }

    fn render_org(o: &Org) -> Value {
        json!({
            "id": o.id,
            "name": o.name,
            "owner_id": o.owner_id,
            "add_time": fmt_secs(o.add_time),
            "update_time": fmt_secs(o.update_time),
            "visible_to": o.visible_to,
            "label_ids": o.label_ids,
            "address": o.address.as_ref().map(|a| json!({"value": a})),
            "custom_fields": o.custom,
        })
    }

    fn authenticate(&self, st: &State, req: &Req) -> Result<(), Reply> {
        let api_token = req
            .header("x-api-token")
            .map(str::to_owned)
            .or_else(|| req.query_param("api_token"));
        if let Some(t) = api_token {
            return match st.tokens.get(t.trim()) {
                Some(tok) if !tok.oauth && !tok.expired => Ok(()),
                _ => Err(unauthorized()),
            };
        }
        let bearer = req
            .header("authorization")
            .and_then(|h| h.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t.trim());
        match bearer.and_then(|t| st.tokens.get(t)) {
            Some(tok)
                if tok.oauth && !tok.expired && tok.expires_at.is_none_or(|e| Utc::now() < e) =>
            {
                Ok(())
            }
            _ => Err(unauthorized()),
        }
    }

    /// Counts a call against the company's window; the headers, and whether it is over.
    fn count(&self, st: &mut State) -> (bool, [(&'static str, String); 3], u64) {
        let elapsed = self.started.elapsed();
        let idx = elapsed.as_secs() / WINDOW_SECS;
        if st.window.0 != idx {
            st.window = (idx, 0);
        }
        st.window.1 += 1;
        let limit = st.window_limit.unwrap_or(NOMINAL_WINDOW_LIMIT);
        let reset = self.reset_secs();
        let headers = [
            ("x-ratelimit-limit", limit.to_string()),
            (
                "x-ratelimit-remaining",
                limit.saturating_sub(st.window.1).to_string(),
            ),
            ("x-ratelimit-reset", reset.to_string()),
        ];
        (
            st.window_limit.is_some_and(|n| st.window.1 > n),
            headers,
            reset,
        )
    }

    /// Whole seconds until the current window ends (at least 1).
    fn reset_secs(&self) -> u64 {
        let elapsed = self.started.elapsed();
        let end = Duration::from_secs((elapsed.as_secs() / WINDOW_SECS + 1) * WINDOW_SECS);
        (end - elapsed).as_secs_f64().ceil().max(1.0) as u64
    }

    fn token_endpoint(&self, req: &Req) -> Reply {
        if req.method != "POST" {
            return error(405, "Method not allowed");
        }
        let invalid = |what: &str, info: &str| {
            Reply::json(
                401,
                json!({"success": false, "error": what, "error_info": info, "data": null}),
            )
        };
        let client = req
            .header("authorization")
            .and_then(|h| h.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"))
            .and_then(|(_, b64)| STANDARD.decode(b64.trim()).ok())
            .and_then(|raw| String::from_utf8(raw).ok())
            .and_then(|s| {
                s.split_once(':')
                    .map(|(id, secret)| (id.to_owned(), secret.to_owned()))
            });
        let mut st = lock(&self.state);
        let Some((client_id, secret)) =
            client.filter(|(id, secret)| st.clients.get(id) == Some(secret))
        else {
            return invalid("invalid_client", "Client authentication failed");
        };
        let _ = secret;
        let form: HashMap<String, String> =
            form_urlencoded::parse(&req.body).into_owned().collect();
        if form.get("grant_type").map(String::as_str) != Some("refresh_token") {
            return Reply::json(
                400,
                json!({"success": false, "error": "unsupported_grant_type", "error_info": "grant_type must be refresh_token", "data": null}),
            );
        }
        let old = form.get("refresh_token").cloned().unwrap_or_default();
        if st
            .refresh
            .get(&old)
            .is_none_or(|r| r.client_id != client_id)
        {
            return invalid("invalid_grant", "Invalid refresh token");
        }
        // Rotation: the old refresh token stops working.
        st.refresh.remove(&old);
        let lifetime = st.access_lifetime;
        let access_token = format!("pd-oauth-{}", random_hex(40));
        let refresh_token = format!("pd-refresh-{}", random_hex(40));
        st.tokens.insert(
            access_token.clone(),
            Token {
                oauth: true,
                expires_at: Some(expiry(lifetime)),
                expired: false,
            },
        );
        st.refresh
            .insert(refresh_token.clone(), Refresh { client_id });
        st.refresh_count += 1;
        Reply::json(
            200,
            json!({
                "access_token": access_token,
                "token_type": "Bearer",
                "refresh_token": refresh_token,
                "scope": "base,contacts:full",
                "expires_in": lifetime.as_secs(),
                "api_domain": self.base_url,
            }),
        )
    }

    fn route(&self, st: &mut State, req: &Req) -> Reply {
        let segs = req.segments();
        let m = req.method.as_str();
        let id_of = |s: &str| {
            s.parse::<i64>()
                .map_err(|_| bad_request("Validation failed: id: must be an integer"))
        };
        let result = match segs.as_slice() {
            ["api", "v2", "persons"] => match m {
                "GET" => self.list_persons(st, req),
                "POST" => self.create_person(st, req),
                _ => Ok(error(405, "Method not allowed")),
            },
            ["api", "v2", "persons", id] => id_of(id).and_then(|id| match m {
                "GET" => match st.persons.get(&id) {
                    Some(p) => Ok(ok(self.render_person(st, p))),
                    None => Ok(error(404, "Person not found")),
                },
                "PATCH" => self.update_person(st, id, req),
                "DELETE" => Ok(match st.persons.remove(&id) {
                    Some(_) => ok(json!({"id": id})),
                    None => error(404, "Person not found"),
                }),
                _ => Ok(error(405, "Method not allowed")),
            }),
            ["api", "v2", "organizations"] => match m {
                "GET" => self.list_orgs(st, req),
                "POST" => self.create_org(st, req),
                _ => Ok(error(405, "Method not allowed")),
            },
            ["api", "v2", "organizations", id] => id_of(id).and_then(|id| match m {
                "GET" => Ok(match st.orgs.get(&id) {
                    Some(o) => ok(Self::render_org(o)),
                    None => error(404, "Organization not found"),
                }),
                "PATCH" => self.update_org(st, id, req),
                "DELETE" => Ok(delete_org(st, id)),
                _ => Ok(error(405, "Method not allowed")),
            }),
            ["api", "v2", "personFields"] if m == "GET" => self.person_fields(st, req),
            _ => Ok(error(404, "Not found")),
        };
        result.unwrap_or_else(|r| r)
    }

    fn list_persons(&self, st: &State, req: &Req) -> Result<Reply, Reply> {
        let p = parse_paging(req)?;
        let ids = int_list(req, "ids")?;
        let owner = int_list(req, "owner_id")?;
        let org = int_list(req, "org_id")?;
        let (items, next) = page(
            st.persons.values().filter(|x| {
                ids.as_ref().is_none_or(|ids| ids.contains(&x.id))
                    && owner.as_ref().is_none_or(|o| o.contains(&x.owner_id))
                    && org
                        .as_ref()
                        .is_none_or(|o| x.org_id.is_some_and(|id| o.contains(&id)))
            }),
            &p,
        );
        Ok(ok_page(
            items
                .into_iter()
                .map(|x| self.render_person(st, x))
                .collect(),
            next,
        ))
    }

    fn list_orgs(&self, st: &State, req: &Req) -> Result<Reply, Reply> {
        let p = parse_paging(req)?;
        let ids = int_list(req, "ids")?;
        let owner = int_list(req, "owner_id")?;
        let (items, next) = page(
            st.orgs.values().filter(|x| {
                ids.as_ref().is_none_or(|ids| ids.contains(&x.id))
                    && owner.as_ref().is_none_or(|o| o.contains(&x.owner_id))
            }),
            &p,
        );
        Ok(ok_page(
            items.into_iter().map(Self::render_org).collect(),
            next,
        ))
    }

    fn person_fields(&self, st: &State, req: &Req) -> Result<Reply, Reply> {
        let limit = match req.query_param("limit") {
            None => 100,
            Some(s) => s
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=500).contains(n))
                .ok_or_else(|| {
                    bad_request("Validation failed: limit: must be an integer from 1 to 500")
                })?,
        };
        let offset = match req.query_param("cursor").filter(|c| !c.is_empty()) {
            None => 0,
            Some(c) => decode_cursor(&c)
                .and_then(|v| v["offset"].as_u64())
                .ok_or_else(|| bad_request("Validation failed: cursor: invalid cursor"))?
                as usize,
        };
        let data: Vec<Value> = st
            .fields
            .iter()
            .skip(offset)
            .take(limit)
            .map(|f| f.json.clone())
            .collect();
        let end = offset + data.len();
        let next = (end < st.fields.len()).then(|| encode_cursor(&json!({"offset": end})));
        Ok(ok_page(data, next))
    }

    fn body(req: &Req) -> Result<Value, Reply> {
        serde_json::from_slice(&req.body)
            .map_err(|e| bad_request(&format!("Validation failed: invalid JSON body: {e}")))
    }

    fn create_person(&self, st: &mut State, req: &Req) -> Result<Reply, Reply> {
        let body = Self::body(req)?;
        let w = parse_person(st, &body, true, false).map_err(|e| bad_request(&e))?;
        let id = insert_person(st, w);
        Ok(ok(self.render_person(st, &st.persons[&id])))
    }

    fn create_org(&self, st: &mut State, req: &Req) -> Result<Reply, Reply> {
        let body = Self::body(req)?;
        let w = parse_org(&body, true).map_err(|e| bad_request(&e))?;
        let now = st.clock();
        st.next_org += 1;
        let id = st.next_org;
        let mut o = Org {
            id,
            name: String::new(),
            owner_id: USER_ID,
            add_time: now,
            update_time: now,
            visible_to: 3,
            label_ids: Vec::new(),
            address: None,
            custom: Map::new(),
        };
        apply_org(&mut o, w);
        let shown = Self::render_org(&o);
        st.orgs.insert(id, o);
        Ok(ok(shown))
    }

    fn update_org(&self, st: &mut State, id: i64, req: &Req) -> Result<Reply, Reply> {
        if !st.orgs.contains_key(&id) {
            return Ok(error(404, "Organization not found"));
        }
        let body = Self::body(req)?;
        let w = parse_org(&body, false).map_err(|e| bad_request(&e))?;
        let now = st.clock();
        let o = st.orgs.get_mut(&id).expect("checked above");
        apply_org(o, w);
        o.update_time = now;
        Ok(ok(Self::render_org(o)))
    }

    fn update_person(&self, st: &mut State, id: i64, req: &Req) -> Result<Reply, Reply> {
        if !st.persons.contains_key(&id) {
            return Ok(error(404, "Person not found"));
        }
        let body = Self::body(req)?;
        let w = parse_person(st, &body, false, false).map_err(|e| bad_request(&e))?;
        let now = st.clock();
        let p = st.persons.get_mut(&id).expect("checked above");
        apply(p, w);
        p.update_time = now;
        Ok(ok(self.render_person(st, &st.persons[&id])))
    }
}

fn apply(p: &mut Person, w: PersonWrite) {
    if let Some(n) = w.name {
        p.name = n;
    }
    if let Some(o) = w.owner_id {
        p.owner_id = o;
    }
    if let Some(o) = w.org_id {
        p.org_id = o;
    }
    if let Some(e) = w.emails {
        p.emails = e;
    }
    if let Some(ph) = w.phones {
        p.phones = ph;
    }
    if let Some(v) = w.visible_to {
        p.visible_to = v;
    }
    if let Some(l) = w.label_ids {
        p.label_ids = l;
    }
    for (code, value) in w.custom {
        if value.is_null() {
            p.custom.remove(&code);
        } else {
            p.custom.insert(code, value);
        }
    }
}

/// A create or update of an organization, checked.
#[derive(Default)]
struct OrgWrite {
    name: Option<String>,
    owner_id: Option<i64>,
    address: Option<String>,
    visible_to: Option<i64>,
    label_ids: Option<Vec<i64>>,
    custom: Vec<(String, Value)>,
}

fn is_field_code(code: &str) -> bool {
    code.len() == 40 && code.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Checks an organization create (`create`) or update body. The double keeps no
/// organization field definitions, so a custom field code is checked for its form only (40
/// hex characters) and any value is kept.
fn parse_org(body: &Value, create: bool) -> Result<OrgWrite, String> {
    let Some(obj) = body.as_object() else {
        return Err("Validation failed: the body must be a JSON object".to_owned());
    };
    let mut w = OrgWrite::default();
    for (k, v) in obj {
        match k.as_str() {
            "name" => match v.as_str().map(str::trim) {
                Some(n) if !n.is_empty() => w.name = Some(n.to_owned()),
                _ => return Err("Validation failed: name: must be a non-empty string".to_owned()),
            },
            "owner_id" => w.owner_id = Some(int_of(v, k)?),
            "address" => {
                let Some(address) = v.as_object() else {
                    return Err("Validation failed: address: must be an object".to_owned());
                };
                if let Some(other) = address.keys().find(|k| *k != "value") {
                    return Err(format!("Validation failed: address: unknown field {other}"));
                }
                let Some(value) = address.get("value").and_then(Value::as_str) else {
                    return Err(
                        "Validation failed: address: value is required and must be a string"
                            .to_owned(),
                    );
                };
                w.address = Some(value.to_owned());
            }
            "visible_to" => {
                let n = int_of(v, k)?;
                if ![1, 3, 5, 7].contains(&n) {
                    return Err(
                        "Validation failed: visible_to: must be one of 1, 3, 5, 7".to_owned()
                    );
                }
                w.visible_to = Some(n);
            }
            "label_ids" => {
                let ids = v
                    .as_array()
                    .ok_or("Validation failed: label_ids: must be an array of integers")?;
                w.label_ids = Some(ids.iter().map(|x| int_of(x, k)).collect::<Result<_, _>>()?);
            }
            "custom_fields" => {
                let Some(map) = v.as_object() else {
                    return Err("Validation failed: custom_fields: must be an object".to_owned());
                };
                for (code, value) in map {
                    if !is_field_code(code) {
                        return Err(format!(
                            "Validation failed: custom_fields: unknown field code {code}"
                        ));
                    }
                    w.custom.push((code.clone(), value.clone()));
                }
            }
            "id" | "add_time" | "update_time" => {
                return Err(format!("Validation failed: {k}: is read-only"));
            }
            other => return Err(format!("Validation failed: unknown field {other}")),
        }
    }
    if create && w.name.is_none() {
        return Err("Validation failed: name: is required".to_owned());
    }
    Ok(w)
}

fn apply_org(o: &mut Org, w: OrgWrite) {
    if let Some(n) = w.name {
        o.name = n;
    }
    if let Some(owner) = w.owner_id {
        o.owner_id = owner;
    }
    if let Some(a) = w.address {
        o.address = Some(a);
    }
    if let Some(v) = w.visible_to {
        o.visible_to = v;
    }
    if let Some(l) = w.label_ids {
        o.label_ids = l;
    }
    for (code, value) in w.custom {
        if value.is_null() {
            o.custom.remove(&code);
        } else {
            o.custom.insert(code, value);
        }
    }
}

/// Deletes an organization; its persons are left without one (their `update_time` stays).
fn delete_org(st: &mut State, id: i64) -> Reply {
    if st.orgs.remove(&id).is_none() {
        return error(404, "Organization not found");
    }
    for p in st.persons.values_mut() {
        if p.org_id == Some(id) {
            p.org_id = None;
        }
    }
    ok(json!({"id": id}))
}

fn insert_person(st: &mut State, mut w: PersonWrite) -> i64 {
    let now = st.clock();
    st.next_person += 1;
    let id = st.next_person;
    let add_time = w.add_time.take().unwrap_or(now);
    let update_time = w.update_time.take().unwrap_or(add_time);
    let mut p = Person {
        id,
        name: String::new(),
        owner_id: USER_ID,
        org_id: None,
        add_time,
        update_time,
        emails: Vec::new(),
        phones: Vec::new(),
        visible_to: 3,
        label_ids: Vec::new(),
        custom: BTreeMap::new(),
    };
    apply(&mut p, w);
    st.persons.insert(id, p);
    id
}

fn field_json(
    name: &str,
    code: &str,
    field_type: &str,
    custom: bool,
    options: Option<Vec<Value>>,
) -> Value {
    json!({
        "field_name": name,
        "field_code": code,
        "field_type": field_type,
        "is_custom_field": custom,
        "options": options,
        "description": null,
    })
}

fn system_fields() -> Vec<Field> {
    [
        ("Name", "name", "varchar"),
        ("First name", "first_name", "varchar"),
        ("Last name", "last_name", "varchar"),
        ("Email", "emails", "varchar"),
        ("Phone", "phones", "phone"),
        ("Organization", "org_id", "org"),
        ("Owner", "owner_id", "user"),
        ("Person created", "add_time", "date"),
        ("Update time", "update_time", "date"),
        ("Visible to", "visible_to", "visible_to"),
        ("Labels", "label_ids", "set"),
    ]
    .into_iter()
    .map(|(name, code, t)| Field {
        code: code.to_owned(),
        field_type: t.to_owned(),
        custom: false,
        json: field_json(name, code, t, false, (t == "set").then(Vec::new)),
    })
    .collect()
}

fn expiry(lifetime: Duration) -> DateTime<Utc> {
    Utc::now() + chrono::Duration::from_std(lifetime).unwrap_or(chrono::Duration::MAX)
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
        if let Err(reply) = self.authenticate(&st, req) {
            let limit = st.window_limit.unwrap_or(NOMINAL_WINDOW_LIMIT);
            return reply
                .header("x-ratelimit-limit", limit)
                .header("x-ratelimit-remaining", limit)
                .header("x-ratelimit-reset", self.reset_secs());
        }
        let (over, headers, reset) = self.count(&mut st);
        let mut reply = if over {
            over_limit().header("retry-after", reset)
        } else {
            self.route(&mut st, req)
        };
        reply.headers.extend(headers);
        reply
    }

    fn injected(&self, req: &Req, failure: &Failure) -> Reply {
        let limit = lock(&self.state)
            .window_limit
            .unwrap_or(NOMINAL_WINDOW_LIMIT);
        let mut remaining = limit;
        let reply = match failure {
            Failure::Status429 { retry_after } => {
                remaining = 0;
                match retry_after {
                    Some(s) => over_limit().header("retry-after", s),
                    None => over_limit(),
                }
            }
            Failure::Status(429) => {
                remaining = 0;
                over_limit().header("retry-after", self.reset_secs())
            }
            Failure::Status(code) => error(*code, reason(*code)),
            Failure::Timeout(_) | Failure::Disconnect => error(500, "Internal server error"),
        };
        if req.path.starts_with("/api/") {
            reply
                .header("x-ratelimit-limit", limit)
                .header("x-ratelimit-remaining", remaining)
                .header("x-ratelimit-reset", self.reset_secs())
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

impl PipedriveDouble {
    /// Starts a double on 127.0.0.1 and a free port.
    pub async fn start() -> PipedriveDouble {
        let (listener, addr) = server::bind().await;
        let inner = Arc::new(Inner {
            common: Common::default(),
            state: Mutex::new(State {
                tokens: HashMap::new(),
                refresh: HashMap::new(),
                clients: HashMap::new(),
                access_lifetime: DEFAULT_ACCESS_LIFETIME,
                refresh_count: 0,
                window_limit: None,
                window: (0, 0),
                persons: BTreeMap::new(),
                next_person: 0,
                orgs: BTreeMap::new(),
                next_org: 0,
                fields: system_fields(),
                next_option_id: 0,
                resolution: 1,
            }),
            base_url: format!("http://{addr}"),
            started: Instant::now(),
        });
        let server = server::serve(listener, addr, inner.clone());
        PipedriveDouble {
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

    /// An API token (sent as `x-api-token`, or the legacy `api_token` query parameter).
    pub fn add_token(&self, token: &str) {
        self.state().tokens.insert(
            token.to_owned(),
            Token {
                oauth: false,
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

    /// An access token (sent as `Authorization: Bearer`) that expires after `lifetime`, its
    /// refresh token, and `api_domain` (the double's base URL).
    ///
    /// # Panics
    /// When `client_id` was not added with [`add_oauth_client`](Self::add_oauth_client).
    pub fn issue_oauth(&self, client_id: &str, lifetime: Duration) -> OAuthGrant {
        let mut st = self.state();
        assert!(
            st.clients.contains_key(client_id),
            "add_oauth_client({client_id:?}, ..) first"
        );
        let access_token = format!("pd-oauth-{}", random_hex(40));
        let refresh_token = format!("pd-refresh-{}", random_hex(40));
        let expires_at = expiry(lifetime);
        st.tokens.insert(
            access_token.clone(),
            Token {
                oauth: true,
                expires_at: Some(expires_at),
                expired: false,
            },
        );
        st.refresh.insert(
            refresh_token.clone(),
            Refresh {
                client_id: client_id.to_owned(),
            },
        );
        OAuthGrant {
            access_token,
            refresh_token,
            expires_at,
            api_domain: Some(self.inner.base_url.clone()),
        }
    }

    /// The next call with this token answers 401.
    pub fn expire_access_token(&self, access_token: &str) {
        if let Some(t) = self.state().tokens.get_mut(access_token) {
            t.expired = true;
        }
    }

    /// Refreshing with this token then fails (401 `invalid_grant`).
    pub fn revoke_refresh_token(&self, refresh_token: &str) {
        self.state().refresh.remove(refresh_token);
    }

    /// The lifetime of access tokens issued by the refresh endpoint (default 3600 s).
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

    pub fn max_in_flight(&self) -> usize {
        self.inner.common.max_in_flight()
    }

    pub fn in_flight(&self) -> usize {
        self.inner.common.in_flight()
    }

    /// At most `n` calls per company (the whole double) per 2-second window; over it, 429
    /// with `Retry-After`. `None` enforces none.
    pub fn set_window_limit(&self, n: Option<u32>) {
        self.state().window_limit = n;
    }

    pub fn calls(&self) -> Vec<RecordedCall> {
        self.inner.common.calls()
    }

    /// The resolution of `add_time` / `update_time` (default 1 s, as the real one; 0 is 1).
    pub fn set_clock_resolution_seconds(&self, seconds: u64) {
        self.state().resolution = seconds.max(1);
    }

    /// Adds a person without HTTP, checked as a create is; `add_time` / `update_time`
    /// (RFC 3339) may be given to date it. Its id.
    ///
    /// # Panics
    /// When the person would be refused over HTTP.
    pub fn insert_person(&self, person: Value) -> i64 {
        let mut st = self.state();
        let w =
            parse_person(&st, &person, true, true).unwrap_or_else(|e| panic!("insert_person: {e}"));
        insert_person(&mut st, w)
    }

    /// Adds an organization without HTTP: `name` (required), `owner_id`, `address` (a
    /// string), `visible_to`, `label_ids`, `custom_fields`, `add_time`, `update_time`. Its id.
    pub fn insert_organization(&self, org: Value) -> i64 {
        let mut st = self.state();
        let name = org["name"]
            .as_str()
            .expect("insert_organization: name is required")
            .to_owned();
        let now = st.clock();
        let time = |k: &str| {
            org[k]
                .as_str()
                .map(|s| parse_rfc3339(s).unwrap_or_else(|| panic!("{k} must be RFC 3339")))
        };
        let add_time = time("add_time").unwrap_or(now);
        st.next_org += 1;
        let id = st.next_org;
        st.orgs.insert(
            id,
            Org {
                id,
                name,
                owner_id: org["owner_id"].as_i64().unwrap_or(USER_ID),
                add_time,
                update_time: time("update_time").unwrap_or(add_time),
                visible_to: org["visible_to"].as_i64().unwrap_or(3),
                label_ids: org["label_ids"]
                    .as_array()
                    .map(|a| a.iter().filter_map(Value::as_i64).collect())
                    .unwrap_or_default(),
                address: org["address"].as_str().map(str::to_owned),
                custom: org["custom_fields"]
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
            },
        );
        id
    }

    /// The person as `GET /api/v2/persons/{id}` shows it; `None` when there is none.
    pub fn person(&self, id: i64) -> Option<Value> {
        let st = self.state();
        st.persons
            .get(&id)
            .map(|p| self.inner.render_person(&st, p))
    }

    /// The organization as `GET /api/v2/organizations/{id}` shows it; `None` when there is
    /// none (or it was deleted).
    pub fn organization(&self, id: i64) -> Option<Value> {
        self.state().orgs.get(&id).map(Inner::render_org)
    }

    /// Defines a custom person field: `field_name` (required), `field_type` (default
    /// `varchar`), `options` (`[{label}]`, ids assigned, for `enum` / `set`), `field_code`
    /// (40 hex characters; made up when absent). Its field code.
    pub fn add_person_field(&self, field: Value) -> String {
        let mut st = self.state();
        let name = field["field_name"]
            .as_str()
            .expect("add_person_field: field_name is required")
            .to_owned();
        let field_type = field["field_type"].as_str().unwrap_or("varchar").to_owned();
        let code = match field["field_code"].as_str() {
            Some(c) => {
                assert!(
                    c.len() == 40 && c.bytes().all(|b| b.is_ascii_hexdigit()),
                    "a custom field code is 40 hex characters; got {c:?}"
                );
                c.to_owned()
            }
            None => random_hex(40),
        };
        let options = match field["options"].as_array() {
            Some(opts) => Some(
                opts.iter()
                    .map(|o| {
                        st.next_option_id += 1;
                        let id = o["id"].as_i64().unwrap_or(st.next_option_id);
                        json!({"id": id, "label": o["label"].as_str().unwrap_or_default()})
                    })
                    .collect::<Vec<_>>(),
            ),
            None if matches!(field_type.as_str(), "enum" | "set") => Some(Vec::new()),
            None => None,
        };
        let mut json = field_json(&name, &code, &field_type, true, options);
        if let Some(d) = field.get("description") {
            json["description"] = d.clone();
        }
        st.fields.retain(|f| f.code != code);
        st.fields.push(Field {
            code: code.clone(),
            field_type,
            custom: true,
            json,
        });
        code
    }
}
