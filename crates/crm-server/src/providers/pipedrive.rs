//! The Pipedrive connector: a linked Pipedrive company read and written live through
//! Pipedrive's API v2, with the client generated from `openapi/providers/pipedrive.yaml`.
//!
//! Contacts are persons, accounts are organizations, and custom field definitions are the
//! company's custom person fields. Pipedrive has no lists: the list operations answer 501.
//! What maps to what, and what is lost, is in docs/field-map.md; what each operation costs
//! is in docs/providers.md.
//!
//! Paging: our cursor wraps Pipedrive's `next_cursor`, and a page costs one Pipedrive call
//! (the person field definitions are read at most once a minute per account).
//! `filter[updated_after]` is Pipedrive's `updated_since`. Pipedrive does not list deleted
//! persons, so deletions cannot show in an incremental read.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use crm_api::ApiError;
use crm_api::models::{
    Account, AccountAddress, Contact, ContactEmailAddress, ContactOwnerRef, ContactPhoneNumber,
    CrmCreateAccountRequestDto, CrmCreateContactRequestDto,
    CrmCreateCustomFieldDefinitionRequestDto, CrmCreateListRequestDto, CustomFieldDefinition,
    CustomFieldOption, CustomFieldType, CustomFieldTypeEnum, CustomFields, JsonObject, List,
    PhoneType, UnifiedCustomFields,
};
use crm_api::service::{
    AccountScope, CrmProvider, Page, PageRequest, ReadRequest, RecordStream, Served, ServiceResult,
    Write,
};
use pipedrive_client::types;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue};
use serde_json::{Value, json};

use super::accounts::RemoteAccount;
use super::call::{Call, Connection, Limits, Provider, Session};
use super::common::{
    DEFINITIONS_TTL, Ids, TtlCache, check_if_match, decode_cursor, encode_cursor, etag_of,
    landed_create, not_found, not_found_as, record_create, refuse_server_fields, unsupported,
};
use super::credentials::{Credentials, OAuthTokens};
use crate::db::Database;
use crate::local::LocalProvider;

pub const NAME: &str = "pipedrive";

const CONTACT: &str = "contact";
const ORGANIZATION: &str = "account";
const FIELD: &str = "field";

/// Pipedrive's OAuth host, used when the account has no `--base-url`.
const OAUTH_TOKEN_URL: &str = "https://oauth.pipedrive.com/oauth/token";

/// How the Pipedrive connector reaches Pipedrive.
pub struct Pipedrive;

impl Provider for Pipedrive {
    const NAME: &'static str = NAME;
    type Client = pipedrive_client::Client;

    fn api_base(account: &RemoteAccount) -> String {
        if let Some(base) = &account.base_url {
            return base.clone();
        }
        match &account.credentials {
            Credentials::OAuth(tokens) => tokens
                .api_domain
                .clone()
                .map(|d| d.trim_end_matches('/').to_owned())
                .unwrap_or_else(|| pipedrive_client::DEFAULT_BASE_URL.to_owned()),
            Credentials::Token { .. } => pipedrive_client::DEFAULT_BASE_URL.to_owned(),
        }
    }

    fn client(
        base: &str,
        http: reqwest::Client,
        auth: (HeaderName, HeaderValue),
        query: Vec<(String, String)>,
    ) -> Self::Client {
        pipedrive_client::Client::new_with_client(
            base,
            http,
            pipedrive_client::CallContext {
                auth: Some(auth),
                query,
            },
        )
    }

    fn auth_header(credentials: &Credentials) -> (HeaderName, String) {
        match credentials {
            Credentials::Token { token } => (HeaderName::from_static("x-api-token"), token.clone()),
            Credentials::OAuth(tokens) => {
                (AUTHORIZATION, format!("Bearer {}", tokens.access_token))
            }
        }
    }

    fn token_url(account: &RemoteAccount) -> String {
        match &account.base_url {
            Some(base) => format!("{base}/oauth/token"),
            None => OAUTH_TOKEN_URL.to_owned(),
        }
    }

    fn token_form(tokens: &OAuthTokens) -> (Vec<(&'static str, String)>, bool) {
        (
            vec![
                ("grant_type", "refresh_token".to_owned()),
                ("refresh_token", tokens.refresh_token.clone()),
            ],
            true,
        )
    }

    fn reported_headers() -> &'static [&'static str] {
        &[
            "x-ratelimit-limit",
            "x-ratelimit-remaining",
            "x-ratelimit-reset",
            "retry-after",
            "content-type",
        ]
    }

    /// When the window's budget is spent, wait until it resets.
    fn rate_limit_wait(headers: &HeaderMap) -> Option<std::time::Duration> {
        let number = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        (number("x-ratelimit-remaining") == Some(0)).then(|| {
            std::time::Duration::from_secs(number("x-ratelimit-reset").unwrap_or(2).clamp(1, 10))
        })
    }
}

/// The `pipedrive` provider: every unified operation on a linked Pipedrive company.
#[derive(Clone)]
pub struct PipedriveConnector {
    inner: Arc<Inner>,
}

struct Inner {
    connection: Connection<Pipedrive>,
    local: Arc<LocalProvider>,
    db: Database,
    /// The company's person fields, per account.
    fields: TtlCache<Arc<Vec<types::PersonField>>>,
}

type PdSession<'a> = Session<'a, Pipedrive>;

impl PipedriveConnector {
    pub fn new(
        vault: super::Vault,
        limits: Limits,
        local: Arc<LocalProvider>,
    ) -> PipedriveConnector {
        let db = vault.db().clone();
        PipedriveConnector {
            inner: Arc::new(Inner {
                connection: Connection::new(vault, limits),
                local,
                db,
                fields: TtlCache::new(DEFINITIONS_TTL),
            }),
        }
    }
}

/// Person fields are read page by page; a company has far fewer than this many.
const MOST_FIELD_PAGES: usize = 10;

impl Inner {
    async fn session(&self, scope: &AccountScope) -> ServiceResult<PdSession<'_>> {
        self.connection.session(&scope.account_id).await
    }

    /// The company's person fields (cached for a minute).
    async fn fields(
        &self,
        session: &mut PdSession<'_>,
    ) -> ServiceResult<Arc<Vec<types::PersonField>>> {
        if let Some(found) = self.fields.get(&session.account.id) {
            return Ok(found);
        }
        let mut all = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..MOST_FIELD_PAGES {
            let mut path = "/api/v2/personFields?limit=500".to_owned();
            if let Some(c) = &cursor {
                path.push_str(&format!("&cursor={c}"));
            }
            let page = session
                .call(Call::read("personFields.list", "GET", path), |c| {
                    let cursor = cursor.clone();
                    async move {
                        let mut request = c.list_person_fields().limit(500u32);
                        if let Some(cursor) = cursor {
                            request = request.cursor(cursor);
                        }
                        request.send().await
                    }
                })
                .await?;
            all.extend(page.data);
            match page.additional_data.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        let fields = Arc::new(all);
        self.fields.put(&session.account.id, fields.clone());
        Ok(fields)
    }

    async fn mapping(&self, scope: &AccountScope) -> ServiceResult<BTreeMap<String, String>> {
        self.local.mapping(scope).await
    }

    async fn read_person(
        &self,
        session: &mut PdSession<'_>,
        id: &str,
        remote: i64,
    ) -> ServiceResult<types::Person> {
        let path = format!("/api/v2/persons/{remote}");
        session
            .call(Call::read("persons.get", "GET", path), |c| async move {
                c.get_person().id(remote).send().await
            })
            .await
            .map(|r| r.data)
            .map_err(|e| not_found_as(e, "contact", id))
    }

    async fn list_contacts(
        &self,
        scope: &AccountScope,
        page: &PageRequest,
    ) -> ServiceResult<Page<Contact>> {
        let mut session = self.session(scope).await?.with_proxy(&page.proxy);
        let fields = self.fields(&mut session).await?;
        let cursor = position(page)?;
        let limit = page.page_size.clamp(1, 100);
        let since = page.updated_after;
        let path = list_path("/api/v2/persons", limit, cursor.as_deref(), since);
        let found = session
            .call(Call::read("persons.list", "GET", path), |c| {
                let cursor = cursor.clone();
                async move {
                    let mut request = c.list_persons().limit(limit);
                    if let Some(cursor) = cursor {
                        request = request.cursor(cursor);
                    }
                    if let Some(since) = since {
                        request = request.updated_since(since);
                    }
                    request.send().await
                }
            })
            .await?;
        let mapping = self.mapping(scope).await?;
        Ok(Page {
            data: found
                .data
                .iter()
                .map(|p| {
                    contact_from(
                        Ids {
                            account: &scope.account_id,
                        },
                        p,
                        &fields,
                        &mapping,
                    )
                })
                .collect(),
            next: found
                .additional_data
                .next_cursor
                .map(|c| encode_cursor(NAME, &json!({ "cursor": c }))),
            raw: session.raw,
        })
    }
}

/// Where a page of a Pipedrive listing starts: the `next_cursor` inside our cursor.
fn position(page: &PageRequest) -> ServiceResult<Option<String>> {
    page.cursor
        .as_deref()
        .map(|c| {
            decode_cursor(NAME, c)?
                .get("cursor")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(crm_api::cursor::invalid)
        })
        .transpose()
}

/// A listing's path with its query, as sent (for `raw` and errors).
fn list_path(path: &str, limit: u32, cursor: Option<&str>, since: Option<DateTime<Utc>>) -> String {
    let mut path = format!("{path}?limit={limit}");
    if let Some(c) = cursor {
        path.push_str(&format!("&cursor={c}"));
    }
    if let Some(t) = since {
        path.push_str(&format!(
            "&updated_since={}",
            t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ));
    }
    path
}

fn remote_number(scope: &AccountScope, kind: &str, noun: &str, id: &str) -> ServiceResult<i64> {
    Ids {
        account: &scope.account_id,
    }
    .remote_or_404(kind, noun, id)?
    .parse()
    .map_err(|_| not_found(noun, id))
}

fn custom(fields: &[types::PersonField]) -> impl Iterator<Item = &types::PersonField> {
    fields.iter().filter(|f| f.is_custom_field)
}

/// A custom field value as the unified model shows it: an option's label for `enum` and
/// `set` fields (Pipedrive keeps option ids), the value itself otherwise.
fn shown_value(field: &types::PersonField, value: &Value) -> Value {
    let label = |id: &Value| -> Option<Value> {
        let id = id
            .as_i64()
            .or_else(|| id.as_str().and_then(|s| s.parse().ok()))?;
        field
            .options
            .iter()
            .flatten()
            .find(|o| o.id == id)
            .map(|o| Value::String(o.label.clone()))
    };
    match (field.field_type.as_str(), value) {
        ("enum", v) if !v.is_null() => label(v).unwrap_or_else(|| v.clone()),
        ("set", Value::Array(items)) => Value::Array(
            items
                .iter()
                .map(|i| label(i).unwrap_or_else(|| i.clone()))
                .collect(),
        ),
        _ => value.clone(),
    }
}

/// A unified custom field value as Pipedrive stores it: option labels become option ids.
fn stored_value(field: &types::PersonField, value: &Value) -> ServiceResult<Value> {
    let id_of_label = |v: &Value| -> ServiceResult<Value> {
        if v.is_number() {
            return Ok(v.clone());
        }
        let text = v.as_str().unwrap_or_default();
        field
            .options
            .iter()
            .flatten()
            .find(|o| o.label == text || o.id.to_string() == text)
            .map(|o| Value::from(o.id))
            .ok_or_else(|| {
                ApiError::unprocessable(
                    "custom_fields",
                    format!("{text:?} is not an option of {}", field.field_name),
                )
            })
    };
    match (field.field_type.as_str(), value) {
        (_, Value::Null) => Ok(Value::Null),
        ("enum", v) => id_of_label(v),
        ("set", Value::Array(items)) => items
            .iter()
            .map(id_of_label)
            .collect::<ServiceResult<Vec<_>>>()
            .map(Value::Array),
        ("set", v) => id_of_label(v).map(|v| Value::Array(vec![v])),
        ("double" | "monetary", Value::String(s)) => s
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .ok_or_else(|| {
                ApiError::unprocessable(
                    "custom_fields",
                    format!("{} takes a number", field.field_name),
                )
            }),
        (_, v) => Ok(v.clone()),
    }
}

fn person_etag(person: &types::Person) -> String {
    etag_of(&[&serde_json::to_value(person).unwrap_or(Value::Null)])
}

fn labeled_type(label: Option<&str>) -> Option<PhoneType> {
    match label? {
        "mobile" => Some(PhoneType::Mobile),
        "work" => Some(PhoneType::Work),
        "home" => Some(PhoneType::Home),
        "fax" => Some(PhoneType::Fax),
        "other" => Some(PhoneType::Other),
        _ => Some(PhoneType::Phone),
    }
}

/// A Pipedrive person in the unified model.
fn contact_from(
    ids: Ids,
    person: &types::Person,
    fields: &[types::PersonField],
    mapping: &BTreeMap<String, String>,
) -> Contact {
    let mut emails: Vec<&types::LabeledValue> = person
        .emails
        .iter()
        .filter(|e| !e.value.is_empty())
        .collect();
    emails.sort_by_key(|e| e.primary != Some(true));
    let mut phones: Vec<&types::LabeledValue> = person
        .phones
        .iter()
        .filter(|e| !e.value.is_empty())
        .collect();
    phones.sort_by_key(|e| e.primary != Some(true));
    let custom_fields: Vec<CustomFields> = custom(fields)
        .map(|f| CustomFields {
            id: Some(ids.of(FIELD, &f.field_code)),
            remote_id: Some(f.field_code.clone()),
            name: Some(f.field_name.clone()),
            value: Some(
                person
                    .custom_fields
                    .get(&f.field_code)
                    .map(|v| shown_value(f, v))
                    .unwrap_or(Value::Null),
            ),
            ..CustomFields::default()
        })
        .collect();
    let mut unified = JsonObject::new();
    for (unified_name, definition) in mapping {
        if let Some(field) = custom_fields
            .iter()
            .find(|c| c.name.as_deref() == Some(definition.as_str()))
            && let Some(value) = &field.value
            && !value.is_null()
        {
            unified.insert(unified_name.clone(), value.clone());
        }
    }
    let org = person.org_id.map(|o| o.to_string());
    Contact {
        id: Some(ids.of(CONTACT, &person.id.to_string())),
        remote_id: Some(person.id.to_string()),
        unified_custom_fields: (!unified.is_empty()).then_some(unified),
        first_name: person.first_name.clone().filter(|s| !s.is_empty()),
        last_name: person.last_name.clone().filter(|s| !s.is_empty()),
        name: Some(person.name.clone()),
        emails: Some(emails.iter().map(|e| e.value.clone()).collect()),
        email_addresses: Some(
            emails
                .iter()
                .map(|e| ContactEmailAddress {
                    email: Some(e.value.clone()),
                    email_type: e.label.clone(),
                })
                .collect(),
        ),
        phone_numbers: Some(phones.iter().map(|p| p.value.clone()).collect()),
        typed_phone_numbers: Some(
            phones
                .iter()
                .map(|p| ContactPhoneNumber {
                    number: Some(p.value.clone()),
                    extension: None,
                    phone_type: labeled_type(p.label.as_deref()),
                })
                .collect(),
        ),
        account_ids: Some(org.iter().map(|o| ids.of(ORGANIZATION, o)).collect()),
        remote_account_ids: Some(org.iter().cloned().collect()),
        owner: person.owner_id.map(|o| ContactOwnerRef {
            id: Some(o.to_string()),
        }),
        custom_fields: Some(custom_fields),
        remote_fields: serde_json::to_value(person).ok().and_then(|v| match v {
            Value::Object(map) => Some(map),
            _ => None,
        }),
        remote_created_at: Some(person.add_time),
        remote_updated_at: person.update_time.or(Some(person.add_time)),
        remote_deleted: Some(false),
        created_at: Some(person.add_time),
        updated_at: person.update_time.or(Some(person.add_time)),
        etag: Some(person_etag(person)),
        ..Contact::default()
    }
}

/// What a unified contact write sets on a Pipedrive person.
struct PersonWrite {
    name: Option<String>,
    emails: Option<Vec<types::LabeledValue>>,
    phones: Option<Vec<types::LabeledValue>>,
    org_id: Option<Option<i64>>,
    owner_id: Option<i64>,
    custom_fields: serde_json::Map<String, Value>,
}

fn person_write_from(
    ids: Ids,
    write: &Write<CrmCreateContactRequestDto>,
    fields: &[types::PersonField],
    mapping: &BTreeMap<String, String>,
    current: Option<&types::Person>,
) -> ServiceResult<PersonWrite> {
    let sent = &write.sent;
    let body = &write.body;
    // `name` is the field to write; first and last names are Pipedrive's own split of it.
    let name = if let Some(name) = sent.get("name").and_then(Value::as_str) {
        Some(name.trim().to_owned())
    } else if sent.contains_key("first_name") || sent.contains_key("last_name") {
        let first = match sent.get("first_name") {
            Some(v) => v.as_str().map(str::to_owned),
            None => current.and_then(|c| c.first_name.clone()),
        };
        let last = match sent.get("last_name") {
            Some(v) => v.as_str().map(str::to_owned),
            None => current.and_then(|c| c.last_name.clone()),
        };
        let joined = [first, last]
            .into_iter()
            .flatten()
            .filter(|s| !s.trim().is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        Some(joined)
    } else {
        None
    };
    if name.as_deref().is_some_and(|n| n.trim().is_empty()) {
        return Err(ApiError::unprocessable(
            "name",
            "a Pipedrive person needs a name",
        ));
    }
    let emails = match (&body.email_addresses, &body.emails) {
        (Some(typed), _) => Some(
            typed
                .iter()
                .enumerate()
                .filter_map(|(i, e)| {
                    e.email.clone().map(|value| types::LabeledValue {
                        value,
                        primary: Some(i == 0),
                        label: Some(e.email_type.clone().unwrap_or_else(|| "work".to_owned())),
                    })
                })
                .collect(),
        ),
        (None, Some(plain)) => Some(
            plain
                .iter()
                .enumerate()
                .map(|(i, value)| types::LabeledValue {
                    value: value.clone(),
                    primary: Some(i == 0),
                    label: Some("work".to_owned()),
                })
                .collect(),
        ),
        _ => None,
    };
    let phones = match (&body.typed_phone_numbers, &body.phone_numbers) {
        (Some(typed), _) => Some(
            typed
                .iter()
                .enumerate()
                .filter_map(|(i, p)| {
                    p.number.clone().map(|value| types::LabeledValue {
                        value,
                        primary: Some(i == 0),
                        label: Some(
                            match p.phone_type {
                                Some(PhoneType::Mobile) => "mobile",
                                Some(PhoneType::Home) => "home",
                                Some(PhoneType::Other) => "other",
                                _ => "work",
                            }
                            .to_owned(),
                        ),
                    })
                })
                .collect(),
        ),
        (None, Some(plain)) => Some(
            plain
                .iter()
                .enumerate()
                .map(|(i, value)| types::LabeledValue {
                    value: value.clone(),
                    primary: Some(i == 0),
                    label: Some("work".to_owned()),
                })
                .collect(),
        ),
        _ => None,
    };
    let org_id = match sent.get("account_ids") {
        None => None,
        Some(_) => {
            let accounts = body.account_ids.clone().unwrap_or_default();
            if accounts.len() > 1 {
                return Err(ApiError::unprocessable(
                    "account_ids",
                    "a Pipedrive person belongs to one organization; send one account id",
                ));
            }
            match accounts.first() {
                None => Some(None),
                Some(id) => Some(Some(
                    ids.remote(ORGANIZATION, id)
                        .and_then(|r| r.parse().ok())
                        .ok_or_else(|| {
                            ApiError::unprocessable(
                                "account_ids",
                                format!("{id} is not an account of this linked account"),
                            )
                        })?,
                )),
            }
        }
    };
    let owner_id =
        match body.owner.as_ref().and_then(|o| o.id.as_deref()) {
            Some(id) => Some(id.parse().map_err(|_| {
                ApiError::unprocessable("owner", "a Pipedrive owner id is a number")
            })?),
            None => None,
        };
    let mut custom_fields = serde_json::Map::new();
    let mut values: Vec<(String, Value)> = Vec::new();
    for entry in body.custom_fields.iter().flatten() {
        let key = entry
            .id
            .as_deref()
            .and_then(|id| ids.remote(FIELD, id))
            .or_else(|| entry.remote_id.clone())
            .or_else(|| entry.name.clone())
            .ok_or_else(|| {
                ApiError::unprocessable("custom_fields", "a custom field needs an id or a name")
            })?;
        values.push((key, entry.value.clone().unwrap_or(Value::Null)));
    }
    if let Some(unified) = sent.get("unified_custom_fields").and_then(Value::as_object) {
        for (name, value) in unified {
            let definition = mapping.get(name).ok_or_else(|| {
                ApiError::unprocessable(
                    "unified_custom_fields",
                    format!("{name:?} is not in the project's unified custom field mapping"),
                )
            })?;
            values.push((definition.clone(), value.clone()));
        }
    }
    for (key, value) in values {
        match custom(fields).find(|f| f.field_code == key || f.field_name == key) {
            Some(field) => {
                custom_fields.insert(field.field_code.clone(), stored_value(field, &value)?);
            }
            // Unknown: sent as given, so Pipedrive's refusal names it.
            None => {
                custom_fields.insert(key, value);
            }
        }
    }
    const UNMAPPED: [&str; 13] = [
        "company_name",
        "title",
        "deal_ids",
        "salutation",
        "department",
        "description",
        "birthday",
        "lead_source",
        "photo_url",
        "account",
        "tags",
        "urls",
        "addresses",
    ];
    if let Some(field) = UNMAPPED.iter().find(|f| {
        sent.get(**f)
            .is_some_and(|v| !v.is_null() && v != &json!([]))
    }) {
        return Err(ApiError::unprocessable(
            field,
            format!(
                "the Pipedrive connector does not map `{field}` (see docs/field-map.md); leave it out"
            ),
        ));
    }
    if sent.get("passthrough").is_some_and(|v| !v.is_null()) {
        return Err(ApiError::unprocessable(
            "passthrough",
            "the Pipedrive connector takes no passthrough: Pipedrive refuses fields it does not know",
        ));
    }
    Ok(PersonWrite {
        name,
        emails,
        phones,
        org_id,
        owner_id,
        custom_fields,
    })
}

fn organization_from(ids: Ids, org: &types::Organization) -> Account {
    let address = org.address.as_ref().and_then(|a| a.value.clone());
    Account {
        id: Some(ids.of(ORGANIZATION, &org.id.to_string())),
        remote_id: Some(org.id.to_string()),
        name: Some(org.name.clone()),
        owner_id: org.owner_id.map(|o| o.to_string()),
        remote_owner_id: org.owner_id.map(|o| o.to_string()),
        addresses: Some(
            address
                .map(|a| AccountAddress {
                    street_1: Some(a),
                    ..AccountAddress::default()
                })
                .into_iter()
                .collect(),
        ),
        created_at: Some(org.add_time),
        updated_at: org.update_time.or(Some(org.add_time)),
        etag: Some(etag_of(
            &[&serde_json::to_value(org).unwrap_or(Value::Null)],
        )),
        ..Account::default()
    }
}

fn organization_etag(org: &types::Organization) -> String {
    etag_of(&[&serde_json::to_value(org).unwrap_or(Value::Null)])
}

/// What a unified account write sets on a Pipedrive organization.
struct OrganizationWrite {
    name: Option<String>,
    address: Option<types::AddressInput>,
    owner_id: Option<i64>,
}

fn organization_write_from(
    write: &Write<CrmCreateAccountRequestDto>,
) -> ServiceResult<OrganizationWrite> {
    let sent = &write.sent;
    refuse_server_fields(sent, "write")?;
    const UNMAPPED: [&str; 6] = [
        "description",
        "industries",
        "annual_revenue",
        "website",
        "phone_numbers",
        "passthrough",
    ];
    if let Some(field) = UNMAPPED.iter().find(|f| {
        sent.get(**f)
            .is_some_and(|v| !v.is_null() && v != &json!([]))
    }) {
        return Err(ApiError::unprocessable(
            field,
            format!(
                "the Pipedrive connector does not map `{field}` on accounts (see docs/field-map.md); leave it out"
            ),
        ));
    }
    let address = match &write.body.addresses {
        Some(addresses) if addresses.len() > 1 => {
            return Err(ApiError::unprocessable(
                "addresses",
                "a Pipedrive organization holds one address; send one",
            ));
        }
        Some(addresses) => addresses.first().map(|a| {
            let parts: Vec<String> = [
                a.street_1.clone(),
                a.street_2.clone(),
                a.city.clone(),
                a.state.clone(),
                a.zip_code.clone(),
                a.country.as_ref().and_then(|c| c.value.clone()),
            ]
            .into_iter()
            .flatten()
            .filter(|p| !p.trim().is_empty())
            .collect();
            types::AddressInput {
                value: parts.join(", "),
            }
        }),
        None => None,
    };
    let owner_id = match write.body.owner_id.as_deref() {
        Some(id) => Some(id.parse().map_err(|_| {
            ApiError::unprocessable("owner_id", "a Pipedrive owner id is a number")
        })?),
        None => None,
    };
    Ok(OrganizationWrite {
        name: write.body.name.clone(),
        address,
        owner_id,
    })
}

fn definition_from(ids: Ids, field: &types::PersonField) -> CustomFieldDefinition {
    let value = match field.field_type.as_str() {
        "varchar" | "text" | "varchar_auto" | "phone" | "address" => CustomFieldType::Text,
        "double" | "monetary" => CustomFieldType::Float,
        "int" => CustomFieldType::Integer,
        "date" | "daterange" | "time" | "timerange" => CustomFieldType::Date,
        "enum" => CustomFieldType::SingleSelect,
        "set" => CustomFieldType::MultiSelect,
        _ => CustomFieldType::Other,
    };
    CustomFieldDefinition {
        id: Some(ids.of(FIELD, &field.field_code)),
        remote_id: Some(field.field_code.clone()),
        name: Some(field.field_name.clone()),
        description: field.description.clone(),
        field_type: Some(CustomFieldTypeEnum {
            value: Some(value),
            source_value: Some(Value::String(field.field_type.clone())),
        }),
        options: field
            .options
            .as_ref()
            .filter(|o| !o.is_empty())
            .map(|options| {
                options
                    .iter()
                    .map(|o| CustomFieldOption {
                        id: o.id.to_string(),
                        value: Value::String(o.label.clone()),
                    })
                    .collect()
            }),
    }
}

fn no_lists(operation: &str) -> ApiError {
    unsupported(NAME, operation, "Pipedrive has no lists")
}

#[async_trait]
impl CrmProvider for PipedriveConnector {
    async fn list_contacts(
        &self,
        scope: &AccountScope,
        page: &PageRequest,
    ) -> ServiceResult<Page<Contact>> {
        self.inner.list_contacts(scope, page).await
    }

    async fn get_contact(
        &self,
        scope: &AccountScope,
        id: &str,
        read: &ReadRequest,
    ) -> ServiceResult<Served<Contact>> {
        let remote = remote_number(scope, CONTACT, "contact", id)?;
        let inner = &self.inner;
        let mut session = inner.session(scope).await?.with_proxy(&read.proxy);
        let fields = inner.fields(&mut session).await?;
        let person = inner.read_person(&mut session, id, remote).await?;
        let mapping = inner.mapping(scope).await?;
        Ok(Served {
            data: contact_from(
                Ids {
                    account: &scope.account_id,
                },
                &person,
                &fields,
                &mapping,
            ),
            raw: session.raw,
        })
    }

    async fn create_contact(
        &self,
        scope: &AccountScope,
        write: Write<CrmCreateContactRequestDto>,
    ) -> ServiceResult<Served<Contact>> {
        let inner = &self.inner;
        if let Some(id) = landed_create(&inner.db, scope, write.idempotency_key.as_deref()).await? {
            return self.get_contact(scope, &id, &ReadRequest::default()).await;
        }
        if write.sent.contains_key("id") || write.sent.contains_key("etag") {
            return Err(ApiError::unprocessable(
                "id",
                "id and etag are assigned by the server; leave them out on create",
            ));
        }
        let mut session = inner.session(scope).await?;
        let fields = inner.fields(&mut session).await?;
        let mapping = inner.mapping(scope).await?;
        let person = person_write_from(
            Ids {
                account: &scope.account_id,
            },
            &write,
            &fields,
            &mapping,
            None,
        )?;
        let Some(name) = person.name.clone() else {
            return Err(ApiError::unprocessable(
                "name",
                "a Pipedrive person needs a name: send name, or first_name and last_name",
            ));
        };
        let body = types::PersonCreate {
            custom_fields: person.custom_fields,
            emails: person.emails.unwrap_or_default(),
            label_ids: Vec::new(),
            name,
            org_id: person.org_id.flatten(),
            owner_id: person.owner_id,
            phones: person.phones.unwrap_or_default(),
            visible_to: None,
        };
        let created = session
            .call(
                Call::write("persons.create", "POST", "/api/v2/persons").body(&body),
                |c| {
                    let body = body.clone();
                    async move { c.create_person().body(body).send().await }
                },
            )
            .await
            .inspect_err(|e| forget_fields(inner, scope, e))?
            .data;
        let id = Ids {
            account: &scope.account_id,
        }
        .of(CONTACT, &created.id.to_string());
        record_create(&inner.db, scope, write.idempotency_key.as_deref(), &id).await?;
        Ok(Served {
            data: contact_from(
                Ids {
                    account: &scope.account_id,
                },
                &created,
                &fields,
                &mapping,
            ),
            raw: session.raw,
        })
    }

    async fn update_contact(
        &self,
        scope: &AccountScope,
        id: &str,
        write: Write<CrmCreateContactRequestDto>,
    ) -> ServiceResult<Served<Contact>> {
        let remote = remote_number(scope, CONTACT, "contact", id)?;
        let inner = &self.inner;
        if write.sent.contains_key("id") || write.sent.contains_key("etag") {
            return Err(ApiError::unprocessable(
                "id",
                "id and etag are the server's; leave them out of an update",
            ));
        }
        let mut session = inner.session(scope).await?;
        let fields = inner.fields(&mut session).await?;
        let mapping = inner.mapping(scope).await?;
        // The current person is read first when the write needs it: for `If-Match`, and to
        // join a first or last name sent alone with the other one.
        let needs_current = write.if_match.is_some()
            || (write.sent.contains_key("first_name") != write.sent.contains_key("last_name")
                && !write.sent.contains_key("name"));
        let current = if needs_current {
            Some(inner.read_person(&mut session, id, remote).await?)
        } else {
            None
        };
        if let (Some(wanted), Some(current)) = (write.if_match.as_deref(), &current) {
            check_if_match(Some(wanted), &person_etag(current))?;
        }
        let person = person_write_from(
            Ids {
                account: &scope.account_id,
            },
            &write,
            &fields,
            &mapping,
            current.as_ref(),
        )?;
        let body = types::PersonUpdate {
            custom_fields: person.custom_fields,
            emails: person.emails.unwrap_or_default(),
            label_ids: Vec::new(),
            name: person.name,
            org_id: person.org_id.flatten(),
            owner_id: person.owner_id,
            phones: person.phones.unwrap_or_default(),
            visible_to: None,
        };
        let path = format!("/api/v2/persons/{remote}");
        let updated = session
            .call(
                Call::write("persons.update", "PATCH", path).body(&body),
                |c| {
                    let body = body.clone();
                    async move { c.update_person().id(remote).body(body).send().await }
                },
            )
            .await
            .map_err(|e| not_found_as(e, "contact", id))
            .inspect_err(|e| forget_fields(inner, scope, e))?
            .data;
        Ok(Served {
            data: contact_from(
                Ids {
                    account: &scope.account_id,
                },
                &updated,
                &fields,
                &mapping,
            ),
            raw: session.raw,
        })
    }

    async fn delete_contact(&self, scope: &AccountScope, id: &str) -> ServiceResult<()> {
        let remote = remote_number(scope, CONTACT, "contact", id)?;
        let mut session = self.inner.session(scope).await?;
        let path = format!("/api/v2/persons/{remote}");
        session
            .call(
                Call::write("persons.delete", "DELETE", path),
                |c| async move { c.delete_person().id(remote).send().await },
            )
            .await
            .map_err(|e| not_found_as(e, "contact", id))?;
        Ok(())
    }

    async fn update_contact_by_external_id(
        &self,
        _scope: &AccountScope,
        _external_id: &str,
        _write: Write<CrmCreateContactRequestDto>,
    ) -> ServiceResult<Served<Contact>> {
        Err(unsupported(
            NAME,
            "update contact by external id",
            "Pipedrive persons have no external id this connector maps",
        ))
    }

    async fn export_contacts(
        &self,
        scope: &AccountScope,
        updated_after: Option<DateTime<Utc>>,
    ) -> ServiceResult<RecordStream<Contact>> {
        Ok(super::common::export_by_pages(
            self.clone(),
            scope.clone(),
            updated_after,
        ))
    }

    async fn get_contact_unified_custom_fields(
        &self,
        scope: &AccountScope,
    ) -> ServiceResult<UnifiedCustomFields> {
        self.inner
            .local
            .get_contact_unified_custom_fields(scope)
            .await
    }

    async fn set_contact_unified_custom_fields(
        &self,
        scope: &AccountScope,
        mapping: UnifiedCustomFields,
    ) -> ServiceResult<UnifiedCustomFields> {
        self.inner
            .local
            .set_contact_unified_custom_fields(scope, mapping)
            .await
    }

    async fn list_accounts(
        &self,
        scope: &AccountScope,
        page: &PageRequest,
    ) -> ServiceResult<Page<Account>> {
        let mut session = self.inner.session(scope).await?.with_proxy(&page.proxy);
        let cursor = position(page)?;
        let limit = page.page_size.clamp(1, 100);
        let since = page.updated_after;
        let path = list_path("/api/v2/organizations", limit, cursor.as_deref(), since);
        let found = session
            .call(Call::read("organizations.list", "GET", path), |c| {
                let cursor = cursor.clone();
                async move {
                    let mut request = c.list_organizations().limit(limit);
                    if let Some(cursor) = cursor {
                        request = request.cursor(cursor);
                    }
                    if let Some(since) = since {
                        request = request.updated_since(since);
                    }
                    request.send().await
                }
            })
            .await?;
        Ok(Page {
            data: found
                .data
                .iter()
                .map(|o| {
                    organization_from(
                        Ids {
                            account: &scope.account_id,
                        },
                        o,
                    )
                })
                .collect(),
            next: found
                .additional_data
                .next_cursor
                .map(|c| encode_cursor(NAME, &json!({ "cursor": c }))),
            raw: session.raw,
        })
    }

    async fn get_account(
        &self,
        scope: &AccountScope,
        id: &str,
        read: &ReadRequest,
    ) -> ServiceResult<Served<Account>> {
        let remote = remote_number(scope, ORGANIZATION, "account", id)?;
        let mut session = self.inner.session(scope).await?.with_proxy(&read.proxy);
        let path = format!("/api/v2/organizations/{remote}");
        let found = session
            .call(
                Call::read("organizations.get", "GET", path),
                |c| async move { c.get_organization().id(remote).send().await },
            )
            .await
            .map_err(|e| not_found_as(e, "account", id))?;
        Ok(Served {
            data: organization_from(
                Ids {
                    account: &scope.account_id,
                },
                &found.data,
            ),
            raw: session.raw,
        })
    }

    async fn create_account(
        &self,
        scope: &AccountScope,
        write: Write<CrmCreateAccountRequestDto>,
    ) -> ServiceResult<Served<Account>> {
        let inner = &self.inner;
        if let Some(id) = landed_create(&inner.db, scope, write.idempotency_key.as_deref()).await? {
            return self.get_account(scope, &id, &ReadRequest::default()).await;
        }
        let org = organization_write_from(&write)?;
        let Some(name) = org.name.filter(|n| !n.trim().is_empty()) else {
            return Err(ApiError::unprocessable(
                "name",
                "a Pipedrive organization needs a name",
            ));
        };
        let body = types::OrganizationCreate {
            address: org.address,
            custom_fields: serde_json::Map::new(),
            label_ids: Vec::new(),
            name,
            owner_id: org.owner_id,
            visible_to: None,
        };
        let mut session = inner.session(scope).await?;
        let created = session
            .call(
                Call::write("organizations.create", "POST", "/api/v2/organizations").body(&body),
                |c| {
                    let body = body.clone();
                    async move { c.create_organization().body(body).send().await }
                },
            )
            .await?
            .data;
        let ids = Ids {
            account: &scope.account_id,
        };
        record_create(
            &inner.db,
            scope,
            write.idempotency_key.as_deref(),
            &ids.of(ORGANIZATION, &created.id.to_string()),
        )
        .await?;
        Ok(Served {
            data: organization_from(ids, &created),
            raw: session.raw,
        })
    }

    async fn update_account(
        &self,
        scope: &AccountScope,
        id: &str,
        write: Write<CrmCreateAccountRequestDto>,
    ) -> ServiceResult<Served<Account>> {
        let remote = remote_number(scope, ORGANIZATION, "account", id)?;
        let org = organization_write_from(&write)?;
        if org.name.as_deref().is_some_and(|n| n.trim().is_empty()) {
            return Err(ApiError::unprocessable(
                "name",
                "a Pipedrive organization needs a name",
            ));
        }
        let mut session = self.inner.session(scope).await?;
        if let Some(wanted) = write.if_match.as_deref() {
            let current = session
                .call(
                    Call::read(
                        "organizations.get",
                        "GET",
                        format!("/api/v2/organizations/{remote}"),
                    ),
                    |c| async move { c.get_organization().id(remote).send().await },
                )
                .await
                .map_err(|e| not_found_as(e, "account", id))?
                .data;
            check_if_match(Some(wanted), &organization_etag(&current))?;
        }
        let body = types::OrganizationUpdate {
            address: org.address,
            custom_fields: serde_json::Map::new(),
            label_ids: Vec::new(),
            name: org.name,
            owner_id: org.owner_id,
            visible_to: None,
        };
        let updated = session
            .call(
                Call::write(
                    "organizations.update",
                    "PATCH",
                    format!("/api/v2/organizations/{remote}"),
                )
                .body(&body),
                |c| {
                    let body = body.clone();
                    async move { c.update_organization().id(remote).body(body).send().await }
                },
            )
            .await
            .map_err(|e| not_found_as(e, "account", id))?
            .data;
        Ok(Served {
            data: organization_from(
                Ids {
                    account: &scope.account_id,
                },
                &updated,
            ),
            raw: session.raw,
        })
    }

    async fn delete_account(&self, scope: &AccountScope, id: &str) -> ServiceResult<()> {
        let remote = remote_number(scope, ORGANIZATION, "account", id)?;
        let mut session = self.inner.session(scope).await?;
        session
            .call(
                Call::write(
                    "organizations.delete",
                    "DELETE",
                    format!("/api/v2/organizations/{remote}"),
                ),
                |c| async move { c.delete_organization().id(remote).send().await },
            )
            .await
            .map_err(|e| not_found_as(e, "account", id))?;
        Ok(())
    }

    async fn list_lists(
        &self,
        _scope: &AccountScope,
        _page: &PageRequest,
    ) -> ServiceResult<Page<List>> {
        Err(no_lists("list lists"))
    }

    async fn get_list(
        &self,
        _scope: &AccountScope,
        _id: &str,
        _read: &ReadRequest,
    ) -> ServiceResult<Served<List>> {
        Err(no_lists("get list"))
    }

    async fn create_list(
        &self,
        _scope: &AccountScope,
        _write: Write<CrmCreateListRequestDto>,
    ) -> ServiceResult<Served<List>> {
        Err(no_lists("create list"))
    }

    async fn update_list(
        &self,
        _scope: &AccountScope,
        _id: &str,
        _write: Write<CrmCreateListRequestDto>,
    ) -> ServiceResult<Served<List>> {
        Err(no_lists("update list"))
    }

    async fn add_list_items(
        &self,
        _scope: &AccountScope,
        _id: &str,
        _item_ids: &[String],
    ) -> ServiceResult<Served<List>> {
        Err(no_lists("add list items"))
    }

    async fn remove_list_item(
        &self,
        _scope: &AccountScope,
        _id: &str,
        _item_id: &str,
    ) -> ServiceResult<Served<List>> {
        Err(no_lists("remove a list item"))
    }

    async fn list_contact_custom_field_definitions(
        &self,
        scope: &AccountScope,
        page: &PageRequest,
    ) -> ServiceResult<Page<CustomFieldDefinition>> {
        let inner = &self.inner;
        let mut session = inner.session(scope).await?.with_proxy(&page.proxy);
        let fields = inner.fields(&mut session).await?;
        let custom: Vec<&types::PersonField> = custom(&fields).collect();
        let offset = match &page.cursor {
            Some(c) => decode_cursor(NAME, c)?
                .get("offset")
                .and_then(Value::as_u64)
                .ok_or_else(crm_api::cursor::invalid)? as usize,
            None => 0,
        };
        let size = page.page_size.clamp(1, 100) as usize;
        Ok(Page {
            data: custom
                .iter()
                .skip(offset)
                .take(size)
                .map(|f| {
                    definition_from(
                        Ids {
                            account: &scope.account_id,
                        },
                        f,
                    )
                })
                .collect(),
            next: (offset + size < custom.len())
                .then(|| encode_cursor(NAME, &json!({"offset": offset + size}))),
            raw: session.raw,
        })
    }

    async fn get_contact_custom_field_definition(
        &self,
        scope: &AccountScope,
        id: &str,
        read: &ReadRequest,
    ) -> ServiceResult<Served<CustomFieldDefinition>> {
        let code = Ids {
            account: &scope.account_id,
        }
        .remote_or_404(FIELD, "custom field definition", id)?;
        let inner = &self.inner;
        let mut session = inner.session(scope).await?.with_proxy(&read.proxy);
        let fields = inner.fields(&mut session).await?;
        let field = custom(&fields)
            .find(|f| f.field_code == code)
            .ok_or_else(|| not_found("custom field definition", id))?;
        Ok(Served {
            data: definition_from(
                Ids {
                    account: &scope.account_id,
                },
                field,
            ),
            raw: session.raw,
        })
    }

    async fn create_contact_custom_field_definition(
        &self,
        _scope: &AccountScope,
        _write: Write<CrmCreateCustomFieldDefinitionRequestDto>,
    ) -> ServiceResult<Served<CustomFieldDefinition>> {
        Err(unsupported(
            NAME,
            "create custom field definition",
            "Pipedrive's API v2, which this connector uses, has no endpoint that creates person fields",
        ))
    }

    async fn update_contact_custom_field_definition(
        &self,
        _scope: &AccountScope,
        _id: &str,
        _write: Write<CrmCreateCustomFieldDefinitionRequestDto>,
    ) -> ServiceResult<Served<CustomFieldDefinition>> {
        Err(unsupported(
            NAME,
            "update custom field definition",
            "Pipedrive's API v2, which this connector uses, has no endpoint that changes person fields",
        ))
    }
}

/// A refusal of a write may mean the company's fields changed: read them again next time.
fn forget_fields(inner: &Inner, scope: &AccountScope, error: &ApiError) {
    if error.status == axum::http::StatusCode::UNPROCESSABLE_ENTITY {
        inner.fields.forget(&scope.account_id);
    }
}
