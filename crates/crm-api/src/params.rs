//! Query, header and path parameters: their OpenAPI declarations and the one parser that
//! reads them off a request.
//!
//! axum's `Query` cannot read deepObject parameters (`filter[updated_after]`, `proxy[key]`)
//! and answers plain text on failure, so the query string is parsed here by hand into
//! [`CrmQuery`], and every failure is an [`ApiError`] in the contract's shape.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use crate::error::ApiError;
use crate::models::JsonObject;

/// Records per page when `page_size` is not given.
pub const DEFAULT_PAGE_SIZE: u32 = 25;
/// The largest `page_size` accepted.
pub const MAX_PAGE_SIZE: u32 = 100;

/// Everything a CRM operation reads from the query string, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct CrmQuery {
    /// Whether the caller asked for the provider calls (`raw=true`).
    pub raw: bool,
    /// Query parameters for the provider (`proxy[key]=value`).
    pub proxy: JsonObject,
    /// The response fields to keep (`fields=id,first_name`); `None` keeps all.
    pub fields: Option<Vec<String>>,
    /// The response fields to leave out (`exclude_fields=remote_fields`).
    pub exclude_fields: Vec<String>,
    /// Extra parts to include (`include=custom_fields`).
    pub include: Vec<String>,
    /// Only records updated after this time (`filter[updated_after]` or `updated_after`).
    pub updated_after: Option<DateTime<Utc>>,
    /// Records per page.
    pub page_size: u32,
    /// The opaque cursor of the page to read (`next`, or its deprecated alias `page`).
    pub cursor: Option<String>,
}

impl Default for CrmQuery {
    fn default() -> Self {
        Self {
            raw: false,
            proxy: JsonObject::new(),
            fields: None,
            exclude_fields: Vec::new(),
            include: Vec::new(),
            updated_after: None,
            page_size: DEFAULT_PAGE_SIZE,
            cursor: None,
        }
    }
}

impl CrmQuery {
    /// Parses a raw query string (without the `?`).
    pub fn parse(query: &str) -> Result<Self, ApiError> {
        let mut parsed = CrmQuery::default();
        let mut next = None;
        let mut page = None;
        let mut filter_updated_after = None;
        let mut plain_updated_after = None;
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            let value = value.into_owned();
            match key.as_ref() {
                "raw" => parsed.raw = parse_bool("raw", &value)?,
                "fields" => parsed.fields = Some(split_list(&value)),
                "exclude_fields" => parsed.exclude_fields = split_list(&value),
                "include" => parsed.include = split_list(&value),
                "page_size" => parsed.page_size = parse_page_size(&value)?,
                "next" => next = non_empty(value),
                "page" => page = non_empty(value),
                "updated_after" => plain_updated_after = Some(parse_time("updated_after", &value)?),
                "filter[updated_after]" => {
                    filter_updated_after = Some(parse_time("filter[updated_after]", &value)?)
                }
                other => {
                    if let Some(name) = deep_object_key(other, "proxy") {
                        parsed.proxy.insert(name.to_owned(), value.into());
                    }
                    // Unknown parameters and unknown filter keys are ignored, as most HTTP
                    // APIs do: a newer client must keep working against this server.
                }
            }
        }
        if parsed.fields.is_some() && !parsed.exclude_fields.is_empty() {
            return Err(ApiError::bad_request(
                "fields and exclude_fields cannot be sent together: keep fields or leave them out, not both",
            )
            .with("parameter", "exclude_fields"));
        }
        parsed.cursor = next.or(page);
        parsed.updated_after = filter_updated_after.or(plain_updated_after);
        Ok(parsed)
    }

    /// Whether `include` names `part`.
    pub fn includes(&self, part: &str) -> bool {
        self.include.iter().any(|p| p == part)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for CrmQuery {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        CrmQuery::parse(parts.uri.query().unwrap_or(""))
    }
}

fn deep_object_key<'a>(key: &'a str, object: &str) -> Option<&'a str> {
    key.strip_prefix(object)?
        .strip_prefix('[')?
        .strip_suffix(']')
        .filter(|k| !k.is_empty())
}

fn non_empty(value: String) -> Option<String> {
    (!value.is_empty()).then_some(value)
}

fn split_list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn parse_bool(name: &str, value: &str) -> Result<bool, ApiError> {
    match value {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(
            ApiError::bad_request(format!("{name} must be true or false, not {value:?}"))
                .with("parameter", name),
        ),
    }
}

fn parse_page_size(value: &str) -> Result<u32, ApiError> {
    value
        .parse::<u32>()
        .ok()
        .filter(|n| (1..=MAX_PAGE_SIZE).contains(n))
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "page_size must be a whole number from 1 to {MAX_PAGE_SIZE}, not {value:?}"
            ))
            .with("parameter", "page_size")
        })
}

fn parse_time(name: &str, value: &str) -> Result<DateTime<Utc>, ApiError> {
    DateTime::parse_from_rfc3339(value)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            ApiError::bad_request(format!(
                "{name} must be an RFC 3339 date-time such as 2024-01-01T00:00:00Z, not {value:?}"
            ))
            .with("parameter", name)
        })
}

// The structs below only declare parameters for the OpenAPI document; requests are read
// by `CrmQuery` and the extractors in `extract`.

/// The linked account header every operation takes.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
pub(crate) struct AccountHeader {
    /// The id of the linked account the call acts on.
    #[param(
        rename = "x-account-id",
        example = "7b0c4a8e-6c3f-4d4e-9a57-1f0d2a3b4c5d"
    )]
    x_account_id: String,
}

/// The id of the record in the path.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub(crate) struct RecordPath {
    /// The id of the record.
    id: String,
}

/// The idempotency key a POST may carry.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
pub(crate) struct IdempotencyHeader {
    /// A key of your choice, 1 to 255 visible ASCII characters (spaces only between them), that
    /// makes the request safe to retry: a retry with the same key and body within 24 hours
    /// returns the first response and changes nothing; the same key with another body is 422;
    /// a retry while the first request is still running is 409.
    #[param(
        rename = "Idempotency-Key",
        nullable = false,
        min_length = 1,
        max_length = 255,
        pattern = r"^[!-~]([\t -~]*[!-~])?$",
        example = "5f1c9a52-6b1b-4a55-8f0b-2d0f4a0b8f9e"
    )]
    idempotency_key: Option<String>,
}

/// The precondition of an update.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
pub(crate) struct IfMatchHeader {
    /// Update only if the record's current etag is this one (or `*`); otherwise 412 and nothing changes. ASCII only.
    #[param(
        rename = "If-Match",
        nullable = false,
        pattern = r"^[\t -~]*$",
        example = "\"3f2a9c1b7d4e5f60\""
    )]
    if_match: Option<String>,
}

/// The answer an update prefers.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
pub(crate) struct PreferHeader {
    /// `return=minimal` answers 204 with no body; `return=representation` (the default) returns the record.
    #[param(rename = "Prefer", nullable = false, example = "return=minimal")]
    prefer: Option<String>,
}

/// The external id of a contact in the path.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub(crate) struct ExternalIdPath {
    /// The external id of the contact.
    #[param(example = "ext-2614d72c")]
    external_id: String,
}

/// The parameters of Export Contacts.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(crate) struct ExportParams {
    /// Filters on the listed records (`filter[updated_after]=2024-01-01T00:00:00Z`).
    #[param(style = DeepObject, explode, nullable = false, inline)]
    filter: Option<ListFilter>,
}

/// The record on a list in the path.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub(crate) struct ListItemPath {
    /// The id of the record to remove from the list.
    item_id: String,
}

/// The filters of a list operation (`filter[updated_after]=...`).
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
pub(crate) struct ListFilter {
    /// Only records updated after this time.
    #[schema(example = "2020-01-01T00:00:00.000Z", nullable = false)]
    updated_after: Option<DateTime<Utc>>,
}

/// The parameters every read takes.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(crate) struct ReadParams {
    /// When true, the result carries `raw`, the provider calls made to serve the request.
    #[param(nullable = false)]
    raw: Option<bool>,
    /// Query parameters passed to the provider as they are (`proxy[key]=value`).
    #[param(style = DeepObject, explode, nullable = false, value_type = Option<Object>)]
    proxy: Option<JsonObject>,
    /// A comma-separated list of the response fields to keep, e.g. `id,first_name`.
    #[param(nullable = false, example = "id,first_name,last_name")]
    fields: Option<String>,
    /// A comma-separated list of response fields to leave out, the inverse of `fields`; sending both is 400.
    #[param(nullable = false, example = "remote_fields,custom_fields")]
    exclude_fields: Option<String>,
}

/// The parameters of the list operations.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(crate) struct PageParams {
    /// Filters on the listed records (`filter[updated_after]=2024-01-01T00:00:00Z`).
    #[param(style = DeepObject, explode, nullable = false, inline)]
    filter: Option<ListFilter>,
    /// Deprecated alias of `next`.
    #[deprecated]
    #[param(nullable = false)]
    page: Option<String>,
    /// The number of records per page, a whole number from 1 to 100 written as a string.
    #[param(
        nullable = false,
        default = "25",
        example = "25",
        pattern = r"^\+?0*([1-9][0-9]?|100)$"
    )]
    page_size: Option<String>,
    /// The cursor of the next page, as returned in `next` by the previous page.
    #[param(nullable = false)]
    next: Option<String>,
    /// Deprecated alias of `filter[updated_after]`.
    #[deprecated]
    #[param(nullable = false, example = "2020-01-01T00:00:00.000Z")]
    updated_after: Option<DateTime<Utc>>,
}

/// The `include` parameter of the contact reads.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(crate) struct IncludeParams {
    /// A comma-separated list of extra parts to include; `custom_fields` adds the contact's custom fields.
    #[param(nullable = false, example = "custom_fields")]
    include: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_parameter() {
        let q = CrmQuery::parse(
            "raw=true&proxy%5Bfoo%5D=bar&proxy[n]=1&fields=id,%20first_name&include=custom_fields\
             &page_size=50&next=abc&filter%5Bupdated_after%5D=2024-01-02T03:04:05Z",
        )
        .unwrap();
        assert!(q.raw);
        assert_eq!(q.proxy.get("foo").unwrap(), "bar");
        assert_eq!(q.proxy.get("n").unwrap(), "1");
        assert_eq!(q.fields.unwrap(), vec!["id", "first_name"]);
        assert!(q.include.contains(&"custom_fields".to_owned()));
        assert_eq!(q.page_size, 50);
        assert!(q.exclude_fields.is_empty());
        assert_eq!(q.cursor.as_deref(), Some("abc"));
        assert_eq!(
            q.updated_after.unwrap().to_rfc3339(),
            "2024-01-02T03:04:05+00:00"
        );
    }

    #[test]
    fn deprecated_aliases_are_accepted_and_lose_to_the_new_names() {
        let q = CrmQuery::parse("page=old&updated_after=2024-01-01T00:00:00Z").unwrap();
        assert_eq!(q.cursor.as_deref(), Some("old"));
        assert!(q.updated_after.is_some());
        let q = CrmQuery::parse(
            "page=old&next=new&updated_after=2024-01-01T00:00:00Z&filter[updated_after]=2025-01-01T00:00:00Z",
        )
        .unwrap();
        assert_eq!(q.cursor.as_deref(), Some("new"));
        assert_eq!(
            q.updated_after.unwrap().to_rfc3339(),
            "2025-01-01T00:00:00+00:00"
        );
    }

    #[test]
    fn defaults() {
        let q = CrmQuery::parse("").unwrap();
        assert_eq!(q, CrmQuery::default());
        assert_eq!(q.page_size, DEFAULT_PAGE_SIZE);
    }

    #[test]
    fn bad_values_are_400_naming_the_parameter() {
        for query in [
            "page_size=0",
            "page_size=101",
            "page_size=ten",
            "page_size=-1",
            "raw=yes",
            "filter[updated_after]=yesterday",
            "updated_after=2024-13-01",
            "fields=id&exclude_fields=name",
        ] {
            let err = CrmQuery::parse(query).unwrap_err();
            assert_eq!(err.status, 400, "{query}");
            assert!(err.data.unwrap().contains_key("parameter"), "{query}");
        }
    }
}
