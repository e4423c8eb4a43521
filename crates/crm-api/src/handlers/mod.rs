//! One handler per operation: typed extractors in, a typed envelope out.

pub mod accounts;
pub mod contacts;
pub mod custom_field_definitions;
pub mod lists;
pub mod unified_custom_fields;

use axum::Json;
use axum::body::Bytes;
use axum::http::header::{CONTENT_TYPE, ETAG};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;

use crate::error::ApiError;
use crate::models::RawResponse;
use crate::params::CrmQuery;
use crate::service::{Listed, ListedPage, Page, PageRequest, ReadRequest, Served, Single};

/// How a response body is shaped by the query: `raw`, `fields` and, for contacts, `include`.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Shape {
    Plain,
    /// Contacts carry `custom_fields` only when asked for with `include=custom_fields`.
    Contact,
}

impl From<&CrmQuery> for PageRequest {
    fn from(q: &CrmQuery) -> Self {
        PageRequest {
            page_size: q.page_size,
            cursor: q.cursor.clone(),
            updated_after: q.updated_after,
            proxy: q.proxy.clone(),
            raw: q.raw,
        }
    }
}

impl From<&CrmQuery> for ReadRequest {
    fn from(q: &CrmQuery) -> Self {
        ReadRequest {
            proxy: q.proxy.clone(),
            raw: q.raw,
        }
    }
}

fn raw_part(query: &CrmQuery, raw: Vec<RawResponse>) -> Option<Vec<RawResponse>> {
    query.raw.then_some(raw)
}

/// Serialises `envelope` and keeps only what the query asked for in its `data`.
fn shaped(envelope: impl Serialize, query: &CrmQuery, shape: Shape) -> Result<Response, ApiError> {
    let mut value = serde_json::to_value(envelope).map_err(unserialisable)?;
    if let Some(data) = value.get_mut("data") {
        match data {
            Value::Array(items) => items
                .iter_mut()
                .for_each(|item| project(item, query, shape)),
            item => project(item, query, shape),
        }
    }
    Ok(Json(value).into_response())
}

fn unserialisable(e: serde_json::Error) -> ApiError {
    ApiError::internal(format!("could not serialise the response: {e}"))
}

/// Whether [`project`] would change nothing of records typed `T` once
/// [`Projectable::leave_out_custom_fields`] ran on them: then the envelope is serialised
/// as it is, without a [`Value`] tree in between.
fn typed_projection<T: Projectable>(query: &CrmQuery, shape: Shape) -> bool {
    query.fields.is_none()
        && query.exclude_fields.is_empty()
        && (matches!(shape, Shape::Plain) || query.includes("custom_fields") || T::CUSTOM_FIELDS)
}

/// What [`project`] does to a record for [`Shape::Contact`] without `include=custom_fields`,
/// done on the typed record.
fn leave_out<T: Projectable>(item: &mut T, query: &CrmQuery, shape: Shape) {
    if matches!(shape, Shape::Contact) && !query.includes("custom_fields") {
        item.leave_out_custom_fields();
    }
}

/// `envelope` as a JSON response, serialised straight from its types.
fn serialised(envelope: &impl Serialize, capacity: usize) -> Result<Response, ApiError> {
    let mut body = Vec::with_capacity(capacity);
    serde_json::to_writer(&mut body, envelope).map_err(unserialisable)?;
    Ok((
        [(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        body,
    )
        .into_response())
}

pub(crate) fn project(item: &mut Value, query: &CrmQuery, shape: Shape) {
    let Value::Object(fields) = item else { return };
    if matches!(shape, Shape::Contact) && !query.includes("custom_fields") {
        fields.remove("custom_fields");
    }
    if let Some(keep) = &query.fields {
        fields.retain(|name, _| keep.iter().any(|k| k == name));
    }
    for name in &query.exclude_fields {
        fields.remove(name);
    }
}

/// A record as [`project`] shapes it, seen on its type.
pub(crate) trait Projectable {
    /// Whether [`Projectable::leave_out_custom_fields`] removes what [`project`] removes
    /// from the record's JSON without `include=custom_fields`.
    const CUSTOM_FIELDS: bool = false;

    fn leave_out_custom_fields(&mut self) {}
}

impl Projectable for crate::models::Contact {
    const CUSTOM_FIELDS: bool = true;

    fn leave_out_custom_fields(&mut self) {
        // Serialised without the field when `None`, as `project` removes it.
        self.custom_fields = None;
    }
}

impl Projectable for crate::models::Account {}
impl Projectable for crate::models::List {}
impl Projectable for crate::models::CustomFieldDefinition {}

/// A record that carries a version (`etag`), sent back in the `ETag` header.
pub(crate) trait Versioned {
    fn etag(&self) -> Option<&str> {
        None
    }
}

impl Versioned for crate::models::Contact {
    fn etag(&self) -> Option<&str> {
        self.etag.as_deref()
    }
}

impl Versioned for crate::models::Account {
    fn etag(&self) -> Option<&str> {
        self.etag.as_deref()
    }
}

impl Versioned for crate::models::List {
    fn etag(&self) -> Option<&str> {
        self.etag.as_deref()
    }
}

impl Versioned for crate::models::CustomFieldDefinition {}

/// The `ETag` header of a record's `etag`: the value in double quotes.
fn etag_header<T: Versioned>(record: &T) -> Option<HeaderValue> {
    quoted_etag(record.etag()?)
}

/// An etag as the `ETag` header sends it: in double quotes.
fn quoted_etag(etag: &str) -> Option<HeaderValue> {
    let mut quoted = Vec::with_capacity(etag.len() + 2);
    quoted.push(b'"');
    quoted.extend_from_slice(etag.as_bytes());
    quoted.push(b'"');
    HeaderValue::from_maybe_shared(Bytes::from(quoted)).ok()
}

fn with_etag(mut response: Response, etag: Option<HeaderValue>) -> Response {
    if let Some(value) = etag {
        response.headers_mut().insert(ETAG, value);
    }
    response
}

/// Whether the request asked for `Prefer: return=minimal`.
pub(crate) fn prefers_minimal(headers: &HeaderMap) -> bool {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split([',', ';']))
        .any(|p| p.trim().eq_ignore_ascii_case("return=minimal"))
}

/// A single record, shaped by the query, with its `ETag`.
pub(crate) fn single<T: Versioned + Projectable, E: Serialize>(
    served: Served<T>,
    query: &CrmQuery,
    shape: Shape,
    envelope: impl FnOnce(T, Option<Vec<RawResponse>>) -> E,
) -> Result<Response, ApiError> {
    let etag = etag_header(&served.data);
    let mut data = served.data;
    let response = if typed_projection::<T>(query, shape) {
        leave_out(&mut data, query, shape);
        serialised(&envelope(data, raw_part(query, served.raw)), 1024)?
    } else {
        shaped(envelope(data, raw_part(query, served.raw)), query, shape)?
    };
    Ok(with_etag(response, etag))
}

/// A single record that may come presented (see [`Single`]), shaped by the query, with its
/// `ETag`. A presented record is written out as it is when the query shapes records on their
/// type and asks for no `raw` (its envelope is then `data` alone); otherwise it is typed
/// first and takes the way of [`single`].
pub(crate) fn single_presented<T, E: Serialize>(
    served: Served<Single<T>>,
    query: &CrmQuery,
    shape: Shape,
    envelope: impl FnOnce(T, Option<Vec<RawResponse>>) -> E,
) -> Result<Response, ApiError>
where
    T: Versioned + Projectable + serde::de::DeserializeOwned,
{
    let data = match served.data {
        Single::Presented { json, etag } if !query.raw && typed_projection::<T>(query, shape) => {
            return Ok(presented_data(&json, etag.as_deref()));
        }
        Single::Presented { json, .. } => serde_json::from_str(&json).map_err(unserialisable)?,
        Single::Typed(data) => data,
    };
    single(
        Served {
            data,
            raw: served.raw,
        },
        query,
        shape,
        envelope,
    )
}

/// A page of records, shaped by the query.
pub(crate) fn page<T: Projectable, E: Serialize>(
    page: Page<T>,
    query: &CrmQuery,
    shape: Shape,
    envelope: impl FnOnce(Vec<T>, Option<String>, Option<Vec<RawResponse>>) -> E,
) -> Result<Response, ApiError> {
    let mut data = page.data;
    if typed_projection::<T>(query, shape) {
        data.iter_mut()
            .for_each(|item| leave_out(item, query, shape));
        let capacity = 256 + 1024 * data.len();
        serialised(
            &envelope(data, page.next, raw_part(query, page.raw)),
            capacity,
        )
    } else {
        shaped(
            envelope(data, page.next, raw_part(query, page.raw)),
            query,
            shape,
        )
    }
}

/// A page whose records may come presented (see [`Listed`]), shaped by the query. A
/// presented record is written out as it is when the query shapes records on their type (it
/// holds no `custom_fields`, so leaving them out changes nothing); otherwise it is typed first
/// and the page takes the way of [`page`].
pub(crate) fn listed_page<T, E: Serialize>(
    page_: ListedPage<T>,
    query: &CrmQuery,
    shape: Shape,
    envelope: impl FnOnce(Vec<T>, Option<String>, Option<Vec<RawResponse>>) -> E,
) -> Result<Response, ApiError>
where
    T: Projectable + Serialize + serde::de::DeserializeOwned,
{
    if !typed_projection::<T>(query, shape) {
        let data = page_
            .data
            .into_iter()
            .map(Listed::into_typed)
            .collect::<Result<Vec<T>, _>>()
            .map_err(unserialisable)?;
        return page(
            Page {
                data,
                next: page_.next,
                raw: page_.raw,
            },
            query,
            shape,
            envelope,
        );
    }
    let mut data = page_.data;
    for item in &mut data {
        if let Listed::Typed(record) = item {
            leave_out(record, query, shape);
        }
    }
    let capacity = 256 + 1024 * data.len();
    serialised(
        &ListedEnvelope {
            next: page_.next,
            data,
            raw: raw_part(query, page_.raw),
        },
        capacity,
    )
}

/// The JSON of every `*Paginated` model (`next`, `data`, `raw`, in this order, absent
/// ones left out), over [`Listed`] records.
#[derive(Serialize)]
struct ListedEnvelope<T> {
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<String>,
    data: Vec<Listed<T>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    raw: Option<Vec<RawResponse>>,
}

/// The answer to a write: the whole record as stored with its `ETag`, or, when the
/// caller prefers `return=minimal`, 204 with the `ETag` alone.
pub(crate) fn written<T: Versioned, E: Serialize>(
    served: Served<T>,
    minimal: bool,
    envelope: impl FnOnce(T, Option<Vec<RawResponse>>) -> E,
) -> Result<Response, ApiError> {
    let etag = etag_header(&served.data);
    if minimal {
        return Ok(with_etag(minimal_answer(), etag));
    }
    // Nothing to project: the whole record, as for `CrmQuery::default()` and `Shape::Plain`.
    let response = serialised(&envelope(served.data, None), 1024)?;
    Ok(with_etag(response, etag))
}

/// [`written`] for a record that may come presented (see [`Single`]): a presented one is
/// written out as it is, the envelope of a write being `data` alone.
pub(crate) fn written_presented<T: Versioned, E: Serialize>(
    served: Served<Single<T>>,
    minimal: bool,
    envelope: impl FnOnce(T, Option<Vec<RawResponse>>) -> E,
) -> Result<Response, ApiError> {
    match served.data {
        Single::Typed(data) => written(
            Served {
                data,
                raw: served.raw,
            },
            minimal,
            envelope,
        ),
        Single::Presented { etag, .. } if minimal => Ok(with_etag(
            minimal_answer(),
            etag.as_deref().and_then(quoted_etag),
        )),
        Single::Presented { json, etag } => Ok(presented_data(&json, etag.as_deref())),
    }
}

/// The answer `{"data": json}` for a record presented as `json`, with its `ETag`.
fn presented_data(json: &str, etag: Option<&str>) -> Response {
    let mut body = Vec::with_capacity(json.len() + 10);
    body.extend_from_slice(b"{\"data\":");
    body.extend_from_slice(json.as_bytes());
    body.push(b'}');
    let response = (
        [(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        body,
    )
        .into_response();
    with_etag(response, etag.and_then(quoted_etag))
}

/// The answer to a write asked for with `Prefer: return=minimal`.
fn minimal_answer() -> Response {
    let mut response = no_content();
    response.headers_mut().insert(
        "preference-applied",
        HeaderValue::from_static("return=minimal"),
    );
    response
}

pub(crate) fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}
