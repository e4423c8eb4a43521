//! One handler per operation: typed extractors in, a typed envelope out.

pub mod accounts;
pub mod contacts;
pub mod custom_field_definitions;
pub mod lists;
pub mod unified_custom_fields;

use axum::Json;
use axum::http::header::ETAG;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;

use crate::error::ApiError;
use crate::models::RawResponse;
use crate::params::CrmQuery;
use crate::service::{Page, PageRequest, ReadRequest, Served};

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
        }
    }
}

impl From<&CrmQuery> for ReadRequest {
    fn from(q: &CrmQuery) -> Self {
        ReadRequest {
            proxy: q.proxy.clone(),
        }
    }
}

fn raw_part(query: &CrmQuery, raw: Vec<RawResponse>) -> Option<Vec<RawResponse>> {
    query.raw.then_some(raw)
}

/// Serialises `envelope` and keeps only what the query asked for in its `data`.
fn shaped(envelope: impl Serialize, query: &CrmQuery, shape: Shape) -> Result<Response, ApiError> {
    let mut value = serde_json::to_value(envelope)
        .map_err(|e| ApiError::internal(format!("could not serialise the response: {e}")))?;
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

fn with_etag(mut response: Response, etag: Option<String>) -> Response {
    if let Some(value) = etag.and_then(|e| HeaderValue::from_str(&format!("\"{e}\"")).ok()) {
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
pub(crate) fn single<T: Versioned, E: Serialize>(
    served: Served<T>,
    query: &CrmQuery,
    shape: Shape,
    envelope: impl FnOnce(T, Option<Vec<RawResponse>>) -> E,
) -> Result<Response, ApiError> {
    let etag = served.data.etag().map(str::to_owned);
    let response = shaped(
        envelope(served.data, raw_part(query, served.raw)),
        query,
        shape,
    )?;
    Ok(with_etag(response, etag))
}

/// A page of records, shaped by the query.
pub(crate) fn page<T, E: Serialize>(
    page: Page<T>,
    query: &CrmQuery,
    shape: Shape,
    envelope: impl FnOnce(Vec<T>, Option<String>, Option<Vec<RawResponse>>) -> E,
) -> Result<Response, ApiError> {
    shaped(
        envelope(page.data, page.next, raw_part(query, page.raw)),
        query,
        shape,
    )
}

/// The answer to a write: the whole record as stored with its `ETag`, or, when the
/// caller prefers `return=minimal`, 204 with the `ETag` alone.
pub(crate) fn written<T: Versioned, E: Serialize>(
    served: Served<T>,
    minimal: bool,
    envelope: impl FnOnce(T, Option<Vec<RawResponse>>) -> E,
) -> Result<Response, ApiError> {
    let etag = served.data.etag().map(str::to_owned);
    if minimal {
        let mut response = no_content();
        response.headers_mut().insert(
            "preference-applied",
            HeaderValue::from_static("return=minimal"),
        );
        return Ok(with_etag(response, etag));
    }
    let response = shaped(
        envelope(served.data, None),
        &CrmQuery::default(),
        Shape::Plain,
    )?;
    Ok(with_etag(response, etag))
}

pub(crate) fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}
