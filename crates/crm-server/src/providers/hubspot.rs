//! The HubSpot connector: a linked HubSpot portal read and written live through HubSpot's
//! date-versioned CRM API ([`hubspot_client::API_VERSION`]), with the client generated from
//! `openapi/providers/hubspot.yaml`.
//!
//! Contacts are HubSpot contacts, accounts are companies, lists are HubSpot lists, and
//! custom field definitions are the portal's own contact properties (not HubSpot's). What
//! maps to what, and what is lost, is in docs/field-map.md; what each operation costs and
//! which answer 501 is in docs/providers.md.
//!
//! Paging: our cursor wraps HubSpot's position, and a page costs one HubSpot call. The
//! custom property definitions a contact page needs are read at most once a minute per
//! account ([`DEFINITIONS_TTL`]). `filter[updated_after]` runs a search sorted by
//! `hs_object_id` that restarts after the last id it served, so HubSpot's cap of 10,000
//! results per search never applies; after the live contacts it lists the archived ones, so
//! deletions show as `remote_deleted: true`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use crm_api::ApiError;
use crm_api::models::{
    Account, AccountAddress, Contact, ContactAddress, ContactEmailAddress, ContactOwnerRef,
    ContactPhoneNumber, CrmCreateAccountRequestDto, CrmCreateContactRequestDto,
    CrmCreateCustomFieldDefinitionRequestDto, CrmCreateListRequestDto, CustomFieldDefinition,
    CustomFieldOption, CustomFieldType, CustomFieldTypeEnum, CustomFields, JsonObject, List,
    ListItem, ListType, ListTypeEnum, PhoneType, UnifiedCustomFields,
};
use crm_api::service::{
    AccountScope, CrmProvider, Page, PageRequest, ReadRequest, RecordStream, Served, ServiceResult,
    Write,
};
use hubspot_client::types;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue};
use serde_json::{Value, json};

use super::accounts::RemoteAccount;
use super::call::{Call, Connection, Limits, Provider, Session};
use super::common::{
    DEFINITIONS_TTL, Ids, TtlCache, check_if_match, decode_cursor, encode_cursor, etag_of,
    landed_create, not_found, not_found_as, record_create, refuse_server_fields, typed_value,
    unsupported, value_text,
};
use super::credentials::{Credentials, OAuthTokens};
use crate::db::Database;
use crate::local::LocalProvider;

pub const NAME: &str = "hubspot";

/// HubSpot's date version, one setting: it is in every path of `openapi/providers/hubspot.yaml`
/// (so in the generated client) and in the paths this connector reports in `raw`.
const V: &str = hubspot_client::API_VERSION;

const CONTACT: &str = "contact";
const COMPANY: &str = "account";
const LIST: &str = "list";
const FIELD: &str = "field";

/// The contact properties the unified model maps (see docs/field-map.md).
const CONTACT_PROPERTIES: [&str; 16] = [
    "firstname",
    "lastname",
    "email",
    "phone",
    "mobilephone",
    "jobtitle",
    "company",
    "address",
    "city",
    "state",
    "zip",
    "country",
    "hubspot_owner_id",
    "createdate",
    "lastmodifieddate",
    "hs_object_id",
];

/// The company properties the unified model maps.
const COMPANY_PROPERTIES: [&str; 14] = [
    "name",
    "domain",
    "website",
    "description",
    "industry",
    "annualrevenue",
    "phone",
    "address",
    "city",
    "state",
    "zip",
    "country",
    "hubspot_owner_id",
    "hs_lastmodifieddate",
];

/// How the HubSpot connector reaches HubSpot.
pub struct HubSpot;

impl Provider for HubSpot {
    const NAME: &'static str = NAME;
    type Client = hubspot_client::Client;

    fn api_base(account: &RemoteAccount) -> String {
        account
            .base_url
            .clone()
            .unwrap_or_else(|| hubspot_client::DEFAULT_BASE_URL.to_owned())
    }

    fn client(
        base: &str,
        http: reqwest::Client,
        auth: (HeaderName, HeaderValue),
        query: Vec<(String, String)>,
    ) -> Self::Client {
        hubspot_client::Client::new_with_client(
            base,
            http,
            hubspot_client::CallContext {
                auth: Some(auth),
                query,
            },
        )
    }

    fn auth_header(credentials: &Credentials) -> (HeaderName, String) {
        let token = match credentials {
            Credentials::Token { token } => token,
            Credentials::OAuth(tokens) => &tokens.access_token,
        };
        (AUTHORIZATION, format!("Bearer {token}"))
    }

    fn token_url(account: &RemoteAccount) -> String {
        format!("{}/oauth/2026-03/token", Self::api_base(account))
    }

    fn token_form(tokens: &OAuthTokens) -> (Vec<(&'static str, String)>, bool) {
        (
            vec![
                ("grant_type", "refresh_token".to_owned()),
                ("client_id", tokens.client_id.clone()),
                ("client_secret", tokens.client_secret.clone()),
                ("refresh_token", tokens.refresh_token.clone()),
            ],
            false,
        )
    }

    fn reported_headers() -> &'static [&'static str] {
        &[
            "x-hubspot-ratelimit-max",
            "x-hubspot-ratelimit-remaining",
            "x-hubspot-ratelimit-interval-milliseconds",
            "x-hubspot-ratelimit-secondly",
            "x-hubspot-ratelimit-secondly-remaining",
            "retry-after",
            "content-type",
        ]
    }

    /// HubSpot's 429 may come without `Retry-After`: when the secondly budget is spent,
    /// wait a second; when the 10-second window's is, wait out the window.
    fn rate_limit_wait(headers: &HeaderMap) -> Option<std::time::Duration> {
        let number = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        if number("x-hubspot-ratelimit-secondly-remaining") == Some(0) {
            return Some(std::time::Duration::from_millis(1000));
        }
        if number("x-hubspot-ratelimit-remaining") == Some(0) {
            let window = number("x-hubspot-ratelimit-interval-milliseconds").unwrap_or(10_000);
            return Some(std::time::Duration::from_millis(window.min(10_000)));
        }
        None
    }
}

/// The `hubspot` provider: every unified operation on a linked HubSpot portal.
#[derive(Clone)]
pub struct HubSpotConnector {
    inner: Arc<Inner>,
}

struct Inner {
    connection: Connection<HubSpot>,
    local: Arc<LocalProvider>,
    db: Database,
    /// The portal's contact property definitions, per account.
    definitions: TtlCache<Arc<Vec<types::PropertyDefinition>>>,
}

type HubSession<'a> = Session<'a, HubSpot>;

impl HubSpotConnector {
    pub fn new(vault: super::Vault, limits: Limits, local: Arc<LocalProvider>) -> HubSpotConnector {
        let db = vault.db().clone();
        HubSpotConnector {
            inner: Arc::new(Inner {
                connection: Connection::new(vault, limits),
                local,
                db,
                definitions: TtlCache::new(DEFINITIONS_TTL),
            }),
        }
    }
}

impl Inner {
    async fn session(&self, scope: &AccountScope) -> ServiceResult<HubSession<'_>> {
        self.connection.session(&scope.account_id).await
    }

    /// The portal's contact properties (cached for a minute).
    async fn definitions(
        &self,
        session: &mut HubSession<'_>,
    ) -> ServiceResult<Arc<Vec<types::PropertyDefinition>>> {
        if let Some(found) = self.definitions.get(&session.account.id) {
            return Ok(found);
        }
        let list = session
            .call(
                Call::read(
                    "properties.list",
                    "GET",
                    format!("/crm/properties/{V}/contacts"),
                ),
                |c| async move {
                    c.list_properties()
                        .object_type(types::ObjectType::Contacts)
                        .send()
                        .await
                },
            )
            .await?;
        let definitions = Arc::new(list.results);
        self.definitions
            .put(&session.account.id, definitions.clone());
        Ok(definitions)
    }

    /// The names of the portal's own (custom) contact properties.
    fn custom(definitions: &[types::PropertyDefinition]) -> Vec<&types::PropertyDefinition> {
        definitions
            .iter()
            .filter(|d| d.hubspot_defined != Some(true) && d.archived != Some(true))
            .filter(|d| !CONTACT_PROPERTIES.contains(&d.name.as_str()))
            .collect()
    }

    fn contact_properties(definitions: &[types::PropertyDefinition]) -> Vec<String> {
        CONTACT_PROPERTIES
            .iter()
            .map(|p| (*p).to_owned())
            .chain(Self::custom(definitions).iter().map(|d| d.name.clone()))
            .collect()
    }

    async fn mapping(&self, scope: &AccountScope) -> ServiceResult<BTreeMap<String, String>> {
        self.local.mapping(scope).await
    }

    async fn read_contact(
        &self,
        session: &mut HubSession<'_>,
        id: &str,
        remote: &str,
        definitions: &[types::PropertyDefinition],
    ) -> ServiceResult<types::ObjectRecord> {
        let properties = Self::contact_properties(definitions).join(",");
        let path = format!("/crm/objects/{V}/contacts/{remote}?properties={properties}");
        let remote = remote.to_owned();
        session
            .call(Call::read("contacts.get", "GET", path), |c| {
                let remote = remote.clone();
                let properties = properties.clone();
                async move {
                    c.get_contact()
                        .id(remote)
                        .properties(properties)
                        .send()
                        .await
                }
            })
            .await
            .map_err(|e| not_found_as(e, "contact", id))
    }

    async fn list_contacts(
        &self,
        scope: &AccountScope,
        page: &PageRequest,
    ) -> ServiceResult<Page<Contact>> {
        let mut session = self.session(scope).await?.with_proxy(&page.proxy);
        let definitions = self.definitions(&mut session).await?;
        let properties = Self::contact_properties(&definitions);
        let (records, next) =
            object_page(&mut session, types::ObjectType::Contacts, page, &properties).await?;
        let mapping = self.mapping(scope).await?;
        let data = records
            .iter()
            .map(|r| {
                contact_from(
                    Ids {
                        account: &scope.account_id,
                    },
                    r,
                    &definitions,
                    &mapping,
                )
            })
            .collect();
        Ok(Page {
            data,
            next: next.map(|n| encode_cursor(NAME, &n)),
            raw: session.raw,
        })
    }
}

/// One page of `object` as the unified listing asks for it: the plain listing, or with
/// `filter[updated_after]` the incremental one; and the position of the next page.
async fn object_page(
    session: &mut HubSession<'_>,
    object: types::ObjectType,
    page: &PageRequest,
    properties: &[String],
) -> ServiceResult<(Vec<types::ObjectRecord>, Option<Value>)> {
    let position = match &page.cursor {
        Some(c) => decode_cursor(NAME, c)?,
        None => JsonObject::new(),
    };
    let limit = page.page_size.clamp(1, 100);
    match page.updated_after {
        None => {
            let after = position
                .get("after")
                .and_then(Value::as_str)
                .map(str::to_owned);
            let list = list_page(session, object, after, false, limit, properties).await?;
            let next = list.paging.map(|p| json!({"after": p.next.after}));
            Ok((list.results, next))
        }
        Some(since) => {
            let modified = match object {
                types::ObjectType::Contacts => "lastmodifieddate",
                types::ObjectType::Companies => "hs_lastmodifieddate",
            };
            incremental(
                session, object, modified, since, &position, limit, properties,
            )
            .await
        }
    }
}

/// One page of a plain listing of `object`.
async fn list_page(
    session: &mut HubSession<'_>,
    object: types::ObjectType,
    after: Option<String>,
    archived: bool,
    limit: u32,
    properties: &[String],
) -> ServiceResult<types::RecordPage> {
    let properties = properties.join(",");
    let mut path = format!("/crm/objects/{V}/{object}?limit={limit}&properties={properties}");
    if let Some(after) = &after {
        path.push_str(&format!("&after={after}"));
    }
    if archived {
        path.push_str("&archived=true");
    }
    let operation = match object {
        types::ObjectType::Contacts => "contacts.list",
        types::ObjectType::Companies => "companies.list",
    };
    session
        .call(Call::read(operation, "GET", path), |c| {
            let after = after.clone();
            let properties = properties.clone();
            async move {
                match object {
                    types::ObjectType::Contacts => {
                        let mut request = c.list_contacts();
                        if let Some(after) = after {
                            request = request.after(after);
                        }
                        request
                            .limit(limit)
                            .properties(properties)
                            .archived(archived)
                            .send()
                            .await
                    }
                    types::ObjectType::Companies => {
                        let mut request = c.list_companies();
                        if let Some(after) = after {
                            request = request.after(after);
                        }
                        request
                            .limit(limit)
                            .properties(properties)
                            .archived(archived)
                            .send()
                            .await
                    }
                }
            }
        })
        .await
}

/// One page of records modified after `since`: first the live ones, found by a search
/// sorted by `hs_object_id` that restarts after the last id served (so the search cap of
/// 10,000 results never applies), then the archived ones, from the plain listing of
/// archived records, kept when they were archived after `since`.
#[allow(clippy::too_many_arguments)]
async fn incremental(
    session: &mut HubSession<'_>,
    object: types::ObjectType,
    modified: &str,
    since: DateTime<Utc>,
    position: &JsonObject,
    limit: u32,
    properties: &[String],
) -> ServiceResult<(Vec<types::ObjectRecord>, Option<Value>)> {
    let phase = position
        .get("phase")
        .and_then(Value::as_str)
        .unwrap_or("live");
    if phase == "archived" {
        let after = position
            .get("after")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let list = list_page(session, object, after, true, limit, properties).await?;
        let next = list
            .paging
            .map(|p| json!({"phase": "archived", "after": p.next.after}));
        let records = list
            .results
            .into_iter()
            .filter(|r| r.archived_at.unwrap_or(r.updated_at) > since)
            .collect();
        return Ok((records, next));
    }
    if phase != "live" {
        return Err(crm_api::cursor::invalid());
    }
    let last = position
        .get("last")
        .and_then(Value::as_str)
        .unwrap_or("0")
        .to_owned();
    let filter = |property: &str, value: String| types::Filter {
        operator: types::FilterOperator::Gt,
        property_name: property.to_owned(),
        value: Some(value),
        values: Vec::new(),
    };
    let request = types::SearchRequest {
        after: None,
        filter_groups: vec![types::FilterGroup {
            filters: vec![
                filter(modified, since.timestamp_millis().to_string()),
                filter("hs_object_id", last),
            ],
        }],
        limit: std::num::NonZeroU32::new(limit).unwrap_or(std::num::NonZeroU32::MIN),
        properties: properties.to_vec(),
        sorts: vec![types::Sort {
            direction: types::SortDirection::Ascending,
            property_name: "hs_object_id".to_owned(),
        }],
    };
    let (operation, path) = match object {
        types::ObjectType::Contacts => (
            "contacts.search",
            format!("/crm/objects/{V}/contacts/search"),
        ),
        types::ObjectType::Companies => (
            "companies.search",
            format!("/crm/objects/{V}/companies/search"),
        ),
    };
    let found = session
        .call(Call::read(operation, "POST", path).body(&request), |c| {
            let request = request.clone();
            async move {
                match object {
                    types::ObjectType::Contacts => c.search_contacts().body(request).send().await,
                    types::ObjectType::Companies => c.search_companies().body(request).send().await,
                }
            }
        })
        .await?;
    let next = if found.results.len() as u32 >= limit {
        found
            .results
            .last()
            .map(|r| json!({"phase": "live", "last": r.id}))
    } else {
        Some(json!({"phase": "archived"}))
    };
    Ok((found.results, next))
}

fn property<'a>(record: &'a types::ObjectRecord, name: &str) -> Option<&'a str> {
    record
        .properties
        .get(name)
        .and_then(|v| v.as_deref())
        .filter(|v| !v.is_empty())
}

fn owned(record: &types::ObjectRecord, name: &str) -> Option<String> {
    property(record, name).map(str::to_owned)
}

fn remote_fields(record: &types::ObjectRecord) -> JsonObject {
    let sorted: BTreeMap<&String, &Option<String>> = record.properties.iter().collect();
    sorted
        .into_iter()
        .map(|(k, v)| {
            (
                k.clone(),
                v.clone().map(Value::String).unwrap_or(Value::Null),
            )
        })
        .collect()
}

/// The etag of a record: its id, its modification time (milliseconds) and the values of
/// the properties we map. Only those: a create's answer and a read name different sets of
/// properties, and the etag of one record must not depend on which call showed it.
fn etag(record: &types::ObjectRecord, mapped: impl Fn(&str) -> bool) -> String {
    let values: JsonObject = remote_fields(record)
        .into_iter()
        .filter(|(k, v)| mapped(k) && !v.is_null() && v != "")
        .collect();
    etag_of(&[
        &Value::String(record.id.clone()),
        &Value::String(record.updated_at.to_rfc3339()),
        &Value::Bool(record.archived),
        &Value::Object(values),
    ])
}

fn contact_etag(record: &types::ObjectRecord, definitions: &[types::PropertyDefinition]) -> String {
    let custom = Inner::custom(definitions);
    etag(record, |k| {
        CONTACT_PROPERTIES.contains(&k) || custom.iter().any(|d| d.name == k)
    })
}

/// A HubSpot contact in the unified model.
fn contact_from(
    ids: Ids,
    record: &types::ObjectRecord,
    definitions: &[types::PropertyDefinition],
    mapping: &BTreeMap<String, String>,
) -> Contact {
    let first = owned(record, "firstname");
    let last = owned(record, "lastname");
    let name = match (&first, &last) {
        (Some(f), Some(l)) => Some(format!("{f} {l}")),
        (Some(n), None) | (None, Some(n)) => Some(n.clone()),
        (None, None) => None,
    };
    let email = owned(record, "email");
    let phones: Vec<(String, PhoneType)> = [
        ("phone", PhoneType::Phone),
        ("mobilephone", PhoneType::Mobile),
    ]
    .into_iter()
    .filter_map(|(p, t)| owned(record, p).map(|n| (n, t)))
    .collect();
    let address = ContactAddress {
        street_1: owned(record, "address"),
        city: owned(record, "city"),
        state: owned(record, "state"),
        postal_code: owned(record, "zip"),
        country: owned(record, "country"),
        ..ContactAddress::default()
    };
    let custom: Vec<CustomFields> = Inner::custom(definitions)
        .into_iter()
        .map(|d| CustomFields {
            id: Some(ids.of(FIELD, &d.name)),
            remote_id: Some(d.name.clone()),
            name: Some(d.name.clone()),
            value: Some(
                property(record, &d.name)
                    .map(|v| typed_value(v, &d.type_))
                    .unwrap_or(Value::Null),
            ),
            ..CustomFields::default()
        })
        .collect();
    let mut unified = JsonObject::new();
    for (unified_name, definition) in mapping {
        if let Some(field) = custom
            .iter()
            .find(|c| c.name.as_deref() == Some(definition.as_str()))
            && let Some(value) = &field.value
            && !value.is_null()
        {
            unified.insert(unified_name.clone(), value.clone());
        }
    }
    Contact {
        id: Some(ids.of(CONTACT, &record.id)),
        remote_id: Some(record.id.clone()),
        unified_custom_fields: (!unified.is_empty()).then_some(unified),
        first_name: first,
        last_name: last,
        name,
        company_name: owned(record, "company"),
        title: owned(record, "jobtitle"),
        emails: Some(email.iter().cloned().collect()),
        email_addresses: Some(
            email
                .iter()
                .map(|e| ContactEmailAddress {
                    email: Some(e.clone()),
                    email_type: None,
                })
                .collect(),
        ),
        phone_numbers: Some(phones.iter().map(|(n, _)| n.clone()).collect()),
        typed_phone_numbers: Some(
            phones
                .iter()
                .map(|(n, t)| ContactPhoneNumber {
                    number: Some(n.clone()),
                    extension: None,
                    phone_type: Some(*t),
                })
                .collect(),
        ),
        addresses: Some(if address == ContactAddress::default() {
            Vec::new()
        } else {
            vec![address]
        }),
        owner: owned(record, "hubspot_owner_id").map(|id| ContactOwnerRef { id: Some(id) }),
        custom_fields: Some(custom),
        remote_fields: Some(remote_fields(record)),
        remote_created_at: Some(record.created_at),
        remote_updated_at: Some(record.updated_at),
        remote_deleted: Some(record.archived),
        created_at: Some(record.created_at),
        updated_at: Some(record.updated_at),
        etag: Some(contact_etag(record, definitions)),
        ..Contact::default()
    }
}

/// The HubSpot properties a unified contact write sets. On update only what was sent
/// changes; `null` clears (HubSpot: the empty string). A unified field HubSpot has no
/// property for is refused, never dropped.
fn contact_properties_from(
    ids: Ids,
    write: &Write<CrmCreateContactRequestDto>,
    definitions: &[types::PropertyDefinition],
    mapping: &BTreeMap<String, String>,
) -> ServiceResult<HashMap<String, String>> {
    let sent = &write.sent;
    let mut out = HashMap::new();
    let text = |v: &Value| match v {
        Value::Null => Some(String::new()),
        Value::String(s) => Some(s.clone()),
        _ => None,
    };
    let mut set = |property: &str, value: Option<String>| {
        if let Some(value) = value {
            out.insert(property.to_owned(), value);
        }
    };
    for (field, property) in [
        ("first_name", "firstname"),
        ("last_name", "lastname"),
        ("title", "jobtitle"),
        ("company_name", "company"),
    ] {
        if let Some(v) = sent.get(field) {
            set(property, text(v));
        }
    }
    if let Some(name) = sent.get("name").and_then(Value::as_str)
        && !sent.contains_key("first_name")
        && !sent.contains_key("last_name")
    {
        let (first, last) = match name.trim().split_once(' ') {
            Some((f, l)) => (f.to_owned(), l.trim().to_owned()),
            None => (String::new(), name.trim().to_owned()),
        };
        set("firstname", Some(first));
        set("lastname", Some(last));
    }
    // One email per HubSpot contact here: `email`.
    let emails: Option<Vec<String>> = match (&write.body.emails, &write.body.email_addresses) {
        (Some(e), _) => Some(e.clone()),
        (None, Some(typed)) => Some(typed.iter().filter_map(|t| t.email.clone()).collect()),
        (None, None) if sent.contains_key("emails") || sent.contains_key("email_addresses") => {
            Some(Vec::new())
        }
        _ => None,
    };
    if let Some(emails) = emails {
        if emails.len() > 1 {
            return Err(ApiError::unprocessable(
                "emails",
                "a HubSpot contact holds one email address here (`email`); send one",
            ));
        }
        set("email", Some(emails.into_iter().next().unwrap_or_default()));
    }
    // Phones: `phone` and `mobilephone`.
    let phones: Option<Vec<(String, Option<PhoneType>)>> =
        match (&write.body.phone_numbers, &write.body.typed_phone_numbers) {
            (_, Some(typed)) => Some(
                typed
                    .iter()
                    .filter_map(|t| t.number.clone().map(|n| (n, t.phone_type)))
                    .collect(),
            ),
            (Some(plain), None) => Some(plain.iter().map(|n| (n.clone(), None)).collect()),
            (None, None)
                if sent.contains_key("phone_numbers")
                    || sent.contains_key("typed_phone_numbers") =>
            {
                Some(Vec::new())
            }
            _ => None,
        };
    if let Some(phones) = phones {
        let (mut phone, mut mobile) = (None, None);
        for (number, kind) in phones {
            let slot = match kind {
                Some(PhoneType::Mobile) => &mut mobile,
                _ if phone.is_none() => &mut phone,
                _ => &mut mobile,
            };
            if slot.is_some() {
                return Err(ApiError::unprocessable(
                    "phone_numbers",
                    "a HubSpot contact holds two phone numbers here: `phone` and `mobilephone` (type mobile)",
                ));
            }
            *slot = Some(number);
        }
        set("phone", Some(phone.unwrap_or_default()));
        set("mobilephone", Some(mobile.unwrap_or_default()));
    }
    if let Some(addresses) = sent.get("addresses") {
        let list = write.body.addresses.clone().unwrap_or_default();
        if list.len() > 1 {
            return Err(ApiError::unprocessable(
                "addresses",
                "a HubSpot contact holds one address here; send one",
            ));
        }
        let address = list.into_iter().next().unwrap_or_default();
        let _ = addresses;
        set("address", Some(address.street_1.unwrap_or_default()));
        set("city", Some(address.city.unwrap_or_default()));
        set("state", Some(address.state.unwrap_or_default()));
        set("zip", Some(address.postal_code.unwrap_or_default()));
        set("country", Some(address.country.unwrap_or_default()));
    }
    if let Some(owner) = &write.body.owner
        && let Some(id) = &owner.id
    {
        set("hubspot_owner_id", Some(id.clone()));
    }
    let custom = Inner::custom(definitions);
    let mut custom_values: Vec<(String, Value)> = Vec::new();
    for field in write.body.custom_fields.iter().flatten() {
        let property = field
            .id
            .as_deref()
            .and_then(|id| ids.remote(FIELD, id))
            .or_else(|| field.remote_id.clone())
            .or_else(|| field.name.clone())
            .ok_or_else(|| {
                ApiError::unprocessable("custom_fields", "a custom field needs an id or a name")
            })?;
        custom_values.push((property, field.value.clone().unwrap_or(Value::Null)));
    }
    if let Some(unified) = sent.get("unified_custom_fields").and_then(Value::as_object) {
        for (name, value) in unified {
            let definition = mapping.get(name).ok_or_else(|| {
                ApiError::unprocessable(
                    "unified_custom_fields",
                    format!("{name:?} is not in the project's unified custom field mapping"),
                )
            })?;
            custom_values.push((definition.clone(), value.clone()));
        }
    }
    for (property, value) in custom_values {
        // An unknown property goes to HubSpot as sent: its refusal names it.
        if let Some(d) = custom.iter().find(|d| d.name == property)
            && d.type_ == "enumeration"
            && let Some(text) = value.as_str()
            && !d.options.iter().any(|o| o.value == text)
        {
            return Err(ApiError::unprocessable(
                "custom_fields",
                format!("{text:?} is not an option of {property}"),
            ));
        }
        let text = value_text(&value).ok_or_else(|| {
            ApiError::unprocessable(
                "custom_fields",
                format!("{property}: objects cannot be stored in HubSpot properties"),
            )
        })?;
        out.insert(property, text);
    }
    if let Some(passthrough) = &write.body.passthrough {
        for (k, v) in passthrough {
            let text = value_text(v).ok_or_else(|| {
                ApiError::unprocessable("passthrough", format!("{k}: HubSpot properties are text"))
            })?;
            out.insert(k.clone(), text);
        }
    }
    const UNMAPPED: [&str; 11] = [
        "deal_ids",
        "account_ids",
        "salutation",
        "department",
        "description",
        "birthday",
        "lead_source",
        "photo_url",
        "account",
        "tags",
        "urls",
    ];
    if let Some(field) = UNMAPPED
        .iter()
        .find(|f| sent.get(**f).is_some_and(|v| !v.is_null()))
    {
        return Err(ApiError::unprocessable(
            field,
            format!(
                "the HubSpot connector does not map `{field}` (see docs/field-map.md); leave it out or send it in passthrough as a HubSpot property"
            ),
        ));
    }
    Ok(out)
}

fn company_from(ids: Ids, record: &types::ObjectRecord) -> Account {
    let address = AccountAddress {
        street_1: owned(record, "address"),
        city: owned(record, "city"),
        state: owned(record, "state"),
        zip_code: owned(record, "zip"),
        ..AccountAddress::default()
    };
    Account {
        id: Some(ids.of(COMPANY, &record.id)),
        remote_id: Some(record.id.clone()),
        name: owned(record, "name"),
        description: owned(record, "description"),
        industries: Some(owned(record, "industry").into_iter().collect()),
        annual_revenue: owned(record, "annualrevenue"),
        website: owned(record, "website").or_else(|| owned(record, "domain")),
        phone_numbers: Some(owned(record, "phone").into_iter().collect()),
        addresses: Some(if address == AccountAddress::default() {
            Vec::new()
        } else {
            vec![address]
        }),
        owner_id: owned(record, "hubspot_owner_id"),
        remote_owner_id: owned(record, "hubspot_owner_id"),
        created_at: Some(record.created_at),
        updated_at: Some(record.updated_at),
        etag: Some(company_etag(record)),
        ..Account::default()
    }
}

fn company_etag(record: &types::ObjectRecord) -> String {
    etag(record, |k| COMPANY_PROPERTIES.contains(&k))
}

/// The HubSpot properties a unified account write sets (only what was sent; `null` clears).
fn company_properties_from(
    write: &Write<CrmCreateAccountRequestDto>,
) -> ServiceResult<HashMap<String, String>> {
    let sent = &write.sent;
    let body = &write.body;
    let mut out = HashMap::new();
    for (field, property) in [
        ("name", "name"),
        ("description", "description"),
        ("annual_revenue", "annualrevenue"),
        ("website", "website"),
        ("owner_id", "hubspot_owner_id"),
    ] {
        match sent.get(field) {
            Some(Value::String(v)) => {
                out.insert(property.to_owned(), v.clone());
            }
            Some(Value::Null) => {
                out.insert(property.to_owned(), String::new());
            }
            _ => {}
        }
    }
    let one = |field: &str, values: Option<&Vec<String>>| -> ServiceResult<Option<String>> {
        if !sent.contains_key(field) {
            return Ok(None);
        }
        let values = values.cloned().unwrap_or_default();
        if values.len() > 1 {
            return Err(ApiError::unprocessable(
                field,
                format!("a HubSpot company holds one value of `{field}` here; send one"),
            ));
        }
        Ok(Some(values.into_iter().next().unwrap_or_default()))
    };
    if let Some(industry) = one("industries", body.industries.as_ref())? {
        out.insert("industry".to_owned(), industry);
    }
    if let Some(phone) = one("phone_numbers", body.phone_numbers.as_ref())? {
        out.insert("phone".to_owned(), phone);
    }
    if sent.contains_key("addresses") {
        let addresses = body.addresses.clone().unwrap_or_default();
        if addresses.len() > 1 {
            return Err(ApiError::unprocessable(
                "addresses",
                "a HubSpot company holds one address here; send one",
            ));
        }
        let address = addresses.into_iter().next().unwrap_or_default();
        out.insert("address".into(), address.street_1.unwrap_or_default());
        out.insert("city".into(), address.city.unwrap_or_default());
        out.insert("state".into(), address.state.unwrap_or_default());
        out.insert("zip".into(), address.zip_code.unwrap_or_default());
        out.insert(
            "country".into(),
            address.country.and_then(|c| c.value).unwrap_or_default(),
        );
    }
    if let Some(passthrough) = &body.passthrough {
        for (k, v) in passthrough {
            let text = value_text(v).ok_or_else(|| {
                ApiError::unprocessable("passthrough", format!("{k}: HubSpot properties are text"))
            })?;
            out.insert(k.clone(), text);
        }
    }
    Ok(out)
}

async fn read_company(
    session: &mut HubSession<'_>,
    id: &str,
    remote: &str,
) -> ServiceResult<types::ObjectRecord> {
    let properties = COMPANY_PROPERTIES.join(",");
    let path = format!("/crm/objects/{V}/companies/{remote}?properties={properties}");
    let remote = remote.to_owned();
    session
        .call(Call::read("companies.get", "GET", path), |c| {
            let remote = remote.clone();
            let properties = properties.clone();
            async move {
                c.get_company()
                    .id(remote)
                    .properties(properties)
                    .send()
                    .await
            }
        })
        .await
        .map_err(|e| not_found_as(e, "account", id))
}

fn definition_from(ids: Ids, d: &types::PropertyDefinition) -> CustomFieldDefinition {
    let value = match (d.type_.as_str(), d.field_type.as_str()) {
        ("enumeration", "checkbox") => CustomFieldType::MultiSelect,
        ("enumeration", _) => CustomFieldType::SingleSelect,
        ("number", _) => CustomFieldType::Float,
        ("date" | "datetime", _) => CustomFieldType::Date,
        ("bool", _) => CustomFieldType::Boolean,
        ("string", "textarea" | "text") => CustomFieldType::Text,
        ("string", _) => CustomFieldType::Text,
        _ => CustomFieldType::Other,
    };
    CustomFieldDefinition {
        id: Some(ids.of(FIELD, &d.name)),
        remote_id: Some(d.name.clone()),
        name: Some(d.name.clone()),
        description: d
            .description
            .clone()
            .filter(|s| !s.is_empty())
            .or_else(|| Some(d.label.clone())),
        field_type: Some(CustomFieldTypeEnum {
            value: Some(value),
            source_value: Some(Value::String(format!("{}/{}", d.type_, d.field_type))),
        }),
        options: (!d.options.is_empty()).then(|| {
            d.options
                .iter()
                .map(|o| CustomFieldOption {
                    id: o.value.clone(),
                    value: Value::String(o.label.clone()),
                })
                .collect()
        }),
    }
}

fn list_from(ids: Ids, list: &types::CrmList, items: Option<Vec<String>>) -> List {
    let kind = match list.object_type_id.as_str() {
        "0-1" => ListType::Contacts,
        "0-2" => ListType::Companies,
        _ => ListType::UnmappedValue,
    };
    let item_kind = item_kind(list);
    List {
        id: Some(ids.of(LIST, &list.list_id)),
        remote_id: Some(list.list_id.clone()),
        name: Some(list.name.clone()),
        items: items.map(|members| {
            members
                .into_iter()
                .map(|remote| ListItem {
                    id: Some(ids.of(item_kind, &remote)),
                    remote_id: Some(remote),
                })
                .collect()
        }),
        created_at: Some(list.created_at),
        updated_at: Some(list.updated_at),
        list_type: Some(ListTypeEnum {
            value: Some(kind),
            source_value: Some(Value::String(list.object_type_id.clone())),
        }),
        etag: Some(etag_of(&[
            &Value::String(list.list_id.clone()),
            &Value::String(list.name.clone()),
            &Value::String(list.updated_at.to_rfc3339()),
            &json!(list.size),
        ])),
        ..List::default()
    }
}

/// A list and its first [`LIST_ITEMS_SHOWN`] members: one call for the list, and one per
/// 250 members.
async fn read_list(
    session: &mut HubSession<'_>,
    id: &str,
    remote: &str,
) -> ServiceResult<(types::CrmList, Vec<String>)> {
    let remote = remote.to_owned();
    let found = session
        .call(
            Call::read("lists.get", "GET", format!("/crm/lists/{V}/{remote}")),
            |c| {
                let remote = remote.clone();
                async move { c.get_list().list_id(remote).send().await }
            },
        )
        .await
        .map_err(|e| not_found_as(e, "list", id))?;
    let mut members = Vec::new();
    let mut after: Option<String> = None;
    while members.len() < LIST_ITEMS_SHOWN {
        let mut path = format!("/crm/lists/{V}/{remote}/memberships?limit=250");
        if let Some(a) = &after {
            path.push_str(&format!("&after={a}"));
        }
        let page = session
            .call(Call::read("lists.memberships", "GET", path), |c| {
                let remote = remote.clone();
                let after = after.clone();
                async move {
                    let mut request = c.list_memberships().list_id(remote).limit(250u32);
                    if let Some(after) = after {
                        request = request.after(after);
                    }
                    request.send().await
                }
            })
            .await?;
        members.extend(page.results.into_iter().map(|m| m.record_id));
        match page.paging {
            Some(p) => after = Some(p.next.after),
            None => break,
        }
    }
    members.truncate(LIST_ITEMS_SHOWN);
    Ok((found.list, members))
}

/// The kind of record a list holds: companies (`0-2`) or contacts.
fn item_kind(list: &types::CrmList) -> &'static str {
    if list.object_type_id == "0-2" {
        COMPANY
    } else {
        CONTACT
    }
}

/// HubSpot lists take no extra fields.
fn refuse_passthrough(sent: &JsonObject) -> ServiceResult<()> {
    match sent.get("passthrough") {
        Some(v) if !v.is_null() => Err(ApiError::unprocessable(
            "passthrough",
            "HubSpot lists take no passthrough fields",
        )),
        _ => Ok(()),
    }
}

/// The HubSpot property type and field type of a unified custom field type.
fn property_type(kind: CustomFieldType) -> ServiceResult<(types::PropertyType, &'static str)> {
    use types::PropertyType as T;
    Ok(match kind {
        CustomFieldType::Text | CustomFieldType::Url => (T::String, "text"),
        CustomFieldType::Float | CustomFieldType::Integer => (T::Number, "number"),
        CustomFieldType::Date => (T::Date, "date"),
        CustomFieldType::Boolean | CustomFieldType::Checkbox => (T::Bool, "booleancheckbox"),
        CustomFieldType::SingleSelect => (T::Enumeration, "select"),
        CustomFieldType::MultiSelect => (T::Enumeration, "checkbox"),
        other => {
            return Err(ApiError::unprocessable(
                "type",
                format!("HubSpot has no property type for {other:?}"),
            ));
        }
    })
}

/// A unified definition's options as HubSpot options: the option's `id` is HubSpot's
/// `value`, its `value` the label. Select types need at least one.
fn property_options(
    options: &Option<Vec<CustomFieldOption>>,
    kind: CustomFieldType,
) -> ServiceResult<Vec<types::PropertyOption>> {
    let options = options.clone().unwrap_or_default();
    let select = matches!(
        kind,
        CustomFieldType::SingleSelect | CustomFieldType::MultiSelect
    );
    if !select && !options.is_empty() {
        return Err(ApiError::unprocessable(
            "options",
            "only select fields have options",
        ));
    }
    options
        .into_iter()
        .enumerate()
        .map(|(i, o)| {
            let label = value_text(&o.value)
                .filter(|l| !l.is_empty())
                .ok_or_else(|| ApiError::unprocessable("options", "an option needs a value"))?;
            Ok(types::PropertyOption {
                display_order: i32::try_from(i).ok(),
                hidden: Some(false),
                label,
                value: o.id,
            })
        })
        .collect()
}

/// A HubSpot property name for a unified definition's name: lowercase letters, digits and
/// underscores, starting with a letter (`Training Status` → `training_status`).
fn property_name(name: &str) -> String {
    let mut out = String::new();
    for c in name.trim().chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('_') {
            out.push('_');
        }
    }
    let out = out.trim_matches('_').to_owned();
    if out.starts_with(|c: char| c.is_ascii_alphabetic()) {
        out
    } else {
        format!("field_{out}")
    }
}

/// The most members a read of one list shows: up to four membership calls of 250.
const LIST_ITEMS_SHOWN: usize = 1000;

#[async_trait]
impl CrmProvider for HubSpotConnector {
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
        let remote = Ids {
            account: &scope.account_id,
        }
        .remote_or_404(CONTACT, "contact", id)?;
        let inner = &self.inner;
        let mut session = inner.session(scope).await?.with_proxy(&read.proxy);
        let definitions = inner.definitions(&mut session).await?;
        let record = inner
            .read_contact(&mut session, id, &remote, &definitions)
            .await?;
        let mapping = inner.mapping(scope).await?;
        Ok(Served {
            data: contact_from(
                Ids {
                    account: &scope.account_id,
                },
                &record,
                &definitions,
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
        let definitions = inner.definitions(&mut session).await?;
        let mapping = inner.mapping(scope).await?;
        let properties = contact_properties_from(
            Ids {
                account: &scope.account_id,
            },
            &write,
            &definitions,
            &mapping,
        )?;
        let body = types::RecordInput {
            properties: properties
                .into_iter()
                .filter(|(_, v)| !v.is_empty())
                .collect(),
        };
        let created = session
            .call(
                Call::write(
                    "contacts.create",
                    "POST",
                    format!("/crm/objects/{V}/contacts"),
                )
                .body(&body),
                |c| {
                    let body = body.clone();
                    async move { c.create_contact().body(body).send().await }
                },
            )
            .await
            .inspect_err(|e| forget_on_unknown_property(inner, &session_account(scope), e))?;
        let id = Ids {
            account: &scope.account_id,
        }
        .of(CONTACT, &created.id);
        record_create(&inner.db, scope, write.idempotency_key.as_deref(), &id).await?;
        Ok(Served {
            data: contact_from(
                Ids {
                    account: &scope.account_id,
                },
                &created,
                &definitions,
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
        let remote = Ids {
            account: &scope.account_id,
        }
        .remote_or_404(CONTACT, "contact", id)?;
        let inner = &self.inner;
        let mut session = inner.session(scope).await?;
        let definitions = inner.definitions(&mut session).await?;
        let mapping = inner.mapping(scope).await?;
        if write.sent.contains_key("id") || write.sent.contains_key("etag") {
            return Err(ApiError::unprocessable(
                "id",
                "id and etag are the server's; leave them out of an update",
            ));
        }
        let properties = contact_properties_from(
            Ids {
                account: &scope.account_id,
            },
            &write,
            &definitions,
            &mapping,
        )?;
        if let Some(wanted) = write.if_match.as_deref() {
            let current = inner
                .read_contact(&mut session, id, &remote, &definitions)
                .await?;
            check_if_match(Some(wanted), &contact_etag(&current, &definitions))?;
        }
        let record = if properties.is_empty() {
            inner
                .read_contact(&mut session, id, &remote, &definitions)
                .await?
        } else {
            let body = types::RecordInput { properties };
            let path = format!("/crm/objects/{V}/contacts/{remote}");
            session
                .call(
                    Call::write("contacts.update", "PATCH", path).body(&body),
                    |c| {
                        let body = body.clone();
                        let remote = remote.clone();
                        async move { c.update_contact().id(remote).body(body).send().await }
                    },
                )
                .await
                .map_err(|e| not_found_as(e, "contact", id))
                .inspect_err(|e| forget_on_unknown_property(inner, &session_account(scope), e))?
        };
        Ok(Served {
            data: contact_from(
                Ids {
                    account: &scope.account_id,
                },
                &record,
                &definitions,
                &mapping,
            ),
            raw: session.raw,
        })
    }

    async fn delete_contact(&self, scope: &AccountScope, id: &str) -> ServiceResult<()> {
        let remote = Ids {
            account: &scope.account_id,
        }
        .remote_or_404(CONTACT, "contact", id)?;
        let mut session = self.inner.session(scope).await?;
        let path = format!("/crm/objects/{V}/contacts/{remote}");
        session
            .call(Call::write("contacts.archive", "DELETE", path), |c| {
                let remote = remote.clone();
                async move { c.archive_contact().id(remote).send().await }
            })
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
            "HubSpot contacts have no external id this connector maps",
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
        let properties: Vec<String> = COMPANY_PROPERTIES.iter().map(|p| (*p).to_owned()).collect();
        let (records, next) = object_page(
            &mut session,
            types::ObjectType::Companies,
            page,
            &properties,
        )
        .await?;
        Ok(Page {
            data: records
                .iter()
                .map(|r| {
                    company_from(
                        Ids {
                            account: &scope.account_id,
                        },
                        r,
                    )
                })
                .collect(),
            next: next.map(|n| encode_cursor(NAME, &n)),
            raw: session.raw,
        })
    }

    async fn get_account(
        &self,
        scope: &AccountScope,
        id: &str,
        read: &ReadRequest,
    ) -> ServiceResult<Served<Account>> {
        let remote = Ids {
            account: &scope.account_id,
        }
        .remote_or_404(COMPANY, "account", id)?;
        let mut session = self.inner.session(scope).await?.with_proxy(&read.proxy);
        let record = read_company(&mut session, id, &remote).await?;
        Ok(Served {
            data: company_from(
                Ids {
                    account: &scope.account_id,
                },
                &record,
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
        refuse_server_fields(&write.sent, "create")?;
        let mut session = inner.session(scope).await?;
        let body = types::RecordInput {
            properties: company_properties_from(&write)?
                .into_iter()
                .filter(|(_, v)| !v.is_empty())
                .collect(),
        };
        let created = session
            .call(
                Call::write(
                    "companies.create",
                    "POST",
                    format!("/crm/objects/{V}/companies"),
                )
                .body(&body),
                |c| {
                    let body = body.clone();
                    async move { c.create_company().body(body).send().await }
                },
            )
            .await?;
        let ids = Ids {
            account: &scope.account_id,
        };
        record_create(
            &inner.db,
            scope,
            write.idempotency_key.as_deref(),
            &ids.of(COMPANY, &created.id),
        )
        .await?;
        Ok(Served {
            data: company_from(ids, &created),
            raw: session.raw,
        })
    }

    async fn update_account(
        &self,
        scope: &AccountScope,
        id: &str,
        write: Write<CrmCreateAccountRequestDto>,
    ) -> ServiceResult<Served<Account>> {
        let ids = Ids {
            account: &scope.account_id,
        };
        let remote = ids.remote_or_404(COMPANY, "account", id)?;
        refuse_server_fields(&write.sent, "update")?;
        let properties = company_properties_from(&write)?;
        let mut session = self.inner.session(scope).await?;
        if let Some(wanted) = write.if_match.as_deref() {
            let current = read_company(&mut session, id, &remote).await?;
            check_if_match(Some(wanted), &company_etag(&current))?;
        }
        let record = if properties.is_empty() {
            read_company(&mut session, id, &remote).await?
        } else {
            let body = types::RecordInput { properties };
            session
                .call(
                    Call::write(
                        "companies.update",
                        "PATCH",
                        format!("/crm/objects/{V}/companies/{remote}"),
                    )
                    .body(&body),
                    |c| {
                        let body = body.clone();
                        let remote = remote.clone();
                        async move { c.update_company().id(remote).body(body).send().await }
                    },
                )
                .await
                .map_err(|e| not_found_as(e, "account", id))?
        };
        Ok(Served {
            data: company_from(ids, &record),
            raw: session.raw,
        })
    }

    async fn delete_account(&self, scope: &AccountScope, id: &str) -> ServiceResult<()> {
        let remote = Ids {
            account: &scope.account_id,
        }
        .remote_or_404(COMPANY, "account", id)?;
        let mut session = self.inner.session(scope).await?;
        session
            .call(
                Call::write(
                    "companies.archive",
                    "DELETE",
                    format!("/crm/objects/{V}/companies/{remote}"),
                ),
                |c| {
                    let remote = remote.clone();
                    async move { c.archive_company().id(remote).send().await }
                },
            )
            .await
            .map_err(|e| not_found_as(e, "account", id))?;
        Ok(())
    }

    async fn list_lists(
        &self,
        scope: &AccountScope,
        page: &PageRequest,
    ) -> ServiceResult<Page<List>> {
        let mut session = self.inner.session(scope).await?.with_proxy(&page.proxy);
        let offset = match &page.cursor {
            Some(c) => decode_cursor(NAME, c)?
                .get("offset")
                .and_then(Value::as_i64)
                .and_then(|o| i32::try_from(o).ok())
                .ok_or_else(crm_api::cursor::invalid)?,
            None => 0,
        };
        let count = page.page_size.clamp(1, 100);
        let request = types::ListSearchRequest {
            count: std::num::NonZeroU32::new(count).unwrap_or(std::num::NonZeroU32::MIN),
            list_ids: Vec::new(),
            offset: Some(offset),
            processing_types: Vec::new(),
            query: None,
        };
        let found = session
            .call(
                Call::read("lists.search", "POST", format!("/crm/lists/{V}/search")).body(&request),
                |c| {
                    let request = request.clone();
                    async move { c.search_lists().body(request).send().await }
                },
            )
            .await?;
        let next = found.has_more.then(|| json!({"offset": found.offset}));
        Ok(Page {
            data: found
                .lists
                .iter()
                .map(|l| {
                    list_from(
                        Ids {
                            account: &scope.account_id,
                        },
                        l,
                        None,
                    )
                })
                .collect(),
            next: next.map(|n| encode_cursor(NAME, &n)),
            raw: session.raw,
        })
    }

    async fn get_list(
        &self,
        scope: &AccountScope,
        id: &str,
        read: &ReadRequest,
    ) -> ServiceResult<Served<List>> {
        let remote = Ids {
            account: &scope.account_id,
        }
        .remote_or_404(LIST, "list", id)?;
        let mut session = self.inner.session(scope).await?.with_proxy(&read.proxy);
        let (list, members) = read_list(&mut session, id, &remote).await?;
        Ok(Served {
            data: list_from(
                Ids {
                    account: &scope.account_id,
                },
                &list,
                Some(members),
            ),
            raw: session.raw,
        })
    }

    async fn create_list(
        &self,
        scope: &AccountScope,
        write: Write<CrmCreateListRequestDto>,
    ) -> ServiceResult<Served<List>> {
        let inner = &self.inner;
        if let Some(id) = landed_create(&inner.db, scope, write.idempotency_key.as_deref()).await? {
            return self.get_list(scope, &id, &ReadRequest::default()).await;
        }
        refuse_server_fields(&write.sent, "create")?;
        refuse_passthrough(&write.sent)?;
        let name = write
            .body
            .name
            .clone()
            .filter(|n| !crate::rules::is_blank(n))
            .ok_or_else(|| ApiError::unprocessable("name", "a list needs a name"))?;
        let object_type_id = match write.body.list_type.as_ref().and_then(|t| t.value) {
            None | Some(ListType::Contacts) => "0-1",
            Some(ListType::Companies) => "0-2",
            Some(other) => {
                return Err(ApiError::unprocessable(
                    "type",
                    format!("HubSpot lists hold contacts or companies, not {other:?}"),
                ));
            }
        };
        let body = types::ListCreateRequest {
            name,
            object_type_id: object_type_id.to_owned(),
            processing_type: types::ProcessingType::Manual,
        };
        let mut session = inner.session(scope).await?;
        let created = session
            .call(
                Call::write("lists.create", "POST", format!("/crm/lists/{V}")).body(&body),
                |c| {
                    let body = body.clone();
                    async move { c.create_list().body(body).send().await }
                },
            )
            .await?
            .list;
        let ids = Ids {
            account: &scope.account_id,
        };
        record_create(
            &inner.db,
            scope,
            write.idempotency_key.as_deref(),
            &ids.of(LIST, &created.list_id),
        )
        .await?;
        Ok(Served {
            data: list_from(ids, &created, Some(Vec::new())),
            raw: session.raw,
        })
    }

    async fn update_list(
        &self,
        scope: &AccountScope,
        id: &str,
        write: Write<CrmCreateListRequestDto>,
    ) -> ServiceResult<Served<List>> {
        let ids = Ids {
            account: &scope.account_id,
        };
        let remote = ids.remote_or_404(LIST, "list", id)?;
        refuse_server_fields(&write.sent, "update")?;
        refuse_passthrough(&write.sent)?;
        let mut session = self.inner.session(scope).await?;
        let (current, members) = read_list(&mut session, id, &remote).await?;
        let shown = list_from(ids, &current, Some(members.clone()));
        check_if_match(
            write.if_match.as_deref(),
            shown.etag.as_deref().unwrap_or_default(),
        )?;
        if let Some(wanted) = write.body.list_type.as_ref().and_then(|t| t.value)
            && shown.list_type.as_ref().and_then(|t| t.value) != Some(wanted)
        {
            return Err(ApiError::unprocessable(
                "type",
                "a HubSpot list keeps the type of records it was made for",
            ));
        }
        let list = match write.sent.get("name") {
            None => current,
            Some(_) => {
                let name = write
                    .body
                    .name
                    .clone()
                    .filter(|n| !crate::rules::is_blank(n))
                    .ok_or_else(|| ApiError::unprocessable("name", "a list needs a name"))?;
                let path = format!("/crm/lists/{V}/{remote}/update-list-name?listName={name}");
                session
                    .call(Call::write("lists.rename", "PUT", path), |c| {
                        let remote = remote.clone();
                        let name = name.clone();
                        async move {
                            c.update_list_name()
                                .list_id(remote)
                                .list_name(name)
                                .send()
                                .await
                        }
                    })
                    .await
                    .map_err(|e| not_found_as(e, "list", id))?
                    .updated_list
            }
        };
        Ok(Served {
            data: list_from(ids, &list, Some(members)),
            raw: session.raw,
        })
    }

    /// Adds the records, all or none: HubSpot adds those that exist and names the others,
    /// so when any is missing the added ones are removed again and the answer is 422.
    async fn add_list_items(
        &self,
        scope: &AccountScope,
        id: &str,
        item_ids: &[String],
    ) -> ServiceResult<Served<List>> {
        let ids = Ids {
            account: &scope.account_id,
        };
        let remote = ids.remote_or_404(LIST, "list", id)?;
        let mut session = self.inner.session(scope).await?;
        let (list, _) = read_list(&mut session, id, &remote).await?;
        let kind = item_kind(&list);
        let mut records = Vec::with_capacity(item_ids.len());
        for item in item_ids {
            let record = ids.remote(kind, item).ok_or_else(|| {
                ApiError::unprocessable(
                    "item_ids",
                    format!("{item} is not a record of this list's kind in the linked account"),
                )
            })?;
            records.push(record);
        }
        let path = format!("/crm/lists/{V}/{remote}/memberships/add");
        let added = session
            .call(Call::write("lists.add", "PUT", path).body(&records), |c| {
                let remote = remote.clone();
                let records = records.clone();
                async move {
                    c.add_list_members()
                        .list_id(remote)
                        .body(records)
                        .send()
                        .await
                }
            })
            .await
            .map_err(|e| not_found_as(e, "list", id))?;
        if !added.record_ids_missing.is_empty() {
            if !added.record_ids_added.is_empty() {
                let undo = added.record_ids_added.clone();
                let path = format!("/crm/lists/{V}/{remote}/memberships/remove");
                session
                    .call(Call::write("lists.remove", "PUT", path).body(&undo), |c| {
                        let remote = remote.clone();
                        let undo = undo.clone();
                        async move {
                            c.remove_list_members()
                                .list_id(remote)
                                .body(undo)
                                .send()
                                .await
                        }
                    })
                    .await?;
            }
            let missing: Vec<String> = added
                .record_ids_missing
                .iter()
                .map(|r| ids.of(kind, r))
                .collect();
            return Err(ApiError::unprocessable(
                "item_ids",
                format!(
                    "no such records in the linked account: {}",
                    missing.join(", ")
                ),
            ));
        }
        let (list, members) = read_list(&mut session, id, &remote).await?;
        Ok(Served {
            data: list_from(ids, &list, Some(members)),
            raw: session.raw,
        })
    }

    async fn remove_list_item(
        &self,
        scope: &AccountScope,
        id: &str,
        item_id: &str,
    ) -> ServiceResult<Served<List>> {
        let ids = Ids {
            account: &scope.account_id,
        };
        let remote = ids.remote_or_404(LIST, "list", id)?;
        let mut session = self.inner.session(scope).await?;
        let (list, _) = read_list(&mut session, id, &remote).await?;
        let not_on_list = || ApiError::not_found(format!("{item_id} is not on list {id}"));
        let record = ids
            .remote(item_kind(&list), item_id)
            .ok_or_else(not_on_list)?;
        let path = format!("/crm/lists/{V}/{remote}/memberships/remove");
        let body = vec![record];
        let removed = session
            .call(Call::write("lists.remove", "PUT", path).body(&body), |c| {
                let remote = remote.clone();
                let body = body.clone();
                async move {
                    c.remove_list_members()
                        .list_id(remote)
                        .body(body)
                        .send()
                        .await
                }
            })
            .await
            .map_err(|e| not_found_as(e, "list", id))?;
        if removed.record_ids_removed.is_empty() {
            return Err(not_on_list());
        }
        let (list, members) = read_list(&mut session, id, &remote).await?;
        Ok(Served {
            data: list_from(ids, &list, Some(members)),
            raw: session.raw,
        })
    }

    async fn list_contact_custom_field_definitions(
        &self,
        scope: &AccountScope,
        page: &PageRequest,
    ) -> ServiceResult<Page<CustomFieldDefinition>> {
        let inner = &self.inner;
        let mut session = inner.session(scope).await?.with_proxy(&page.proxy);
        let definitions = inner.definitions(&mut session).await?;
        let custom = Inner::custom(&definitions);
        // HubSpot answers every property at once; the cursor is an offset into them.
        let offset = match &page.cursor {
            Some(c) => decode_cursor(NAME, c)?
                .get("offset")
                .and_then(Value::as_u64)
                .ok_or_else(crm_api::cursor::invalid)? as usize,
            None => 0,
        };
        let size = page.page_size.clamp(1, 100) as usize;
        let data: Vec<CustomFieldDefinition> = custom
            .iter()
            .skip(offset)
            .take(size)
            .map(|d| {
                definition_from(
                    Ids {
                        account: &scope.account_id,
                    },
                    d,
                )
            })
            .collect();
        let next = (offset + size < custom.len())
            .then(|| encode_cursor(NAME, &json!({"offset": offset + size})));
        Ok(Page {
            data,
            next,
            raw: session.raw,
        })
    }

    async fn get_contact_custom_field_definition(
        &self,
        scope: &AccountScope,
        id: &str,
        read: &ReadRequest,
    ) -> ServiceResult<Served<CustomFieldDefinition>> {
        let name = Ids {
            account: &scope.account_id,
        }
        .remote_or_404(FIELD, "custom field definition", id)?;
        let mut session = self.inner.session(scope).await?.with_proxy(&read.proxy);
        let path = format!("/crm/properties/{V}/contacts/{name}");
        let found = session
            .call(Call::read("properties.get", "GET", path), |c| {
                let name = name.clone();
                async move {
                    c.get_property()
                        .object_type(types::ObjectType::Contacts)
                        .property_name(name)
                        .send()
                        .await
                }
            })
            .await
            .map_err(|e| not_found_as(e, "custom field definition", id))?;
        if found.hubspot_defined == Some(true) {
            return Err(not_found("custom field definition", id));
        }
        Ok(Served {
            data: definition_from(
                Ids {
                    account: &scope.account_id,
                },
                &found,
            ),
            raw: session.raw,
        })
    }

    async fn create_contact_custom_field_definition(
        &self,
        scope: &AccountScope,
        write: Write<CrmCreateCustomFieldDefinitionRequestDto>,
    ) -> ServiceResult<Served<CustomFieldDefinition>> {
        let inner = &self.inner;
        if let Some(id) = landed_create(&inner.db, scope, write.idempotency_key.as_deref()).await? {
            return self
                .get_contact_custom_field_definition(scope, &id, &ReadRequest::default())
                .await;
        }
        refuse_server_fields(&write.sent, "create")?;
        refuse_passthrough(&write.sent)?;
        let label = write
            .body
            .name
            .clone()
            .filter(|n| !crate::rules::is_blank(n))
            .ok_or_else(|| ApiError::unprocessable("name", "a custom field needs a name"))?;
        let kind = write
            .body
            .field_type
            .as_ref()
            .and_then(|t| t.value)
            .unwrap_or(CustomFieldType::Text);
        let (type_, field_type) = property_type(kind)?;
        let options = property_options(&write.body.options, kind)?;
        let body = types::PropertyCreate {
            description: write.body.description.clone(),
            field_type: field_type.to_owned(),
            group_name: "contactinformation".to_owned(),
            label: label.clone(),
            name: property_name(&label),
            options,
            type_,
        };
        let mut session = inner.session(scope).await?;
        let created = session
            .call(
                Call::write(
                    "properties.create",
                    "POST",
                    format!("/crm/properties/{V}/contacts"),
                )
                .body(&body),
                |c| {
                    let body = body.clone();
                    async move {
                        c.create_property()
                            .object_type(types::ObjectType::Contacts)
                            .body(body)
                            .send()
                            .await
                    }
                },
            )
            .await?;
        inner.definitions.forget(&scope.account_id);
        let ids = Ids {
            account: &scope.account_id,
        };
        record_create(
            &inner.db,
            scope,
            write.idempotency_key.as_deref(),
            &ids.of(FIELD, &created.name),
        )
        .await?;
        Ok(Served {
            data: definition_from(ids, &created),
            raw: session.raw,
        })
    }

    async fn update_contact_custom_field_definition(
        &self,
        scope: &AccountScope,
        id: &str,
        write: Write<CrmCreateCustomFieldDefinitionRequestDto>,
    ) -> ServiceResult<Served<CustomFieldDefinition>> {
        let ids = Ids {
            account: &scope.account_id,
        };
        let name = ids.remote_or_404(FIELD, "custom field definition", id)?;
        refuse_server_fields(&write.sent, "update")?;
        refuse_passthrough(&write.sent)?;
        if let Some(sent) = write.body.name.as_deref()
            && sent != name
        {
            return Err(ApiError::unprocessable(
                "name",
                format!("a HubSpot property keeps its name ({name})"),
            ));
        }
        let (type_, field_type, kind) = match write.body.field_type.as_ref().and_then(|t| t.value) {
            Some(kind) => {
                let (t, f) = property_type(kind)?;
                (Some(t), Some(f.to_owned()), Some(kind))
            }
            None => (None, None, None),
        };
        let options = match kind {
            Some(kind) => property_options(&write.body.options, kind)?,
            None => property_options(&write.body.options, CustomFieldType::SingleSelect)?,
        };
        let body = types::PropertyUpdate {
            description: write.body.description.clone(),
            field_type,
            group_name: None,
            label: None,
            options,
            type_,
        };
        let mut session = self.inner.session(scope).await?;
        let path = format!("/crm/properties/{V}/contacts/{name}");
        let updated = session
            .call(
                Call::write("properties.update", "PATCH", path).body(&body),
                |c| {
                    let body = body.clone();
                    let name = name.clone();
                    async move {
                        c.update_property()
                            .object_type(types::ObjectType::Contacts)
                            .property_name(name)
                            .body(body)
                            .send()
                            .await
                    }
                },
            )
            .await
            .map_err(|e| not_found_as(e, "custom field definition", id))?;
        self.inner.definitions.forget(&scope.account_id);
        Ok(Served {
            data: definition_from(ids, &updated),
            raw: session.raw,
        })
    }
}

fn session_account(scope: &AccountScope) -> String {
    scope.account_id.clone()
}

/// A refusal naming an unknown property may mean the portal's properties changed: read
/// them again next time.
fn forget_on_unknown_property(inner: &Inner, account: &str, error: &ApiError) {
    if error.status == axum::http::StatusCode::UNPROCESSABLE_ENTITY {
        inner.definitions.forget(account);
    }
}
