//! The `raw=true` entries of the local provider, synthesised in this one place: the
//! operations on its own store, in the contract's `RawResponse` shape, with `local://` URLs.
//! A connector answers with the real exchanges with its provider instead.

use crm_api::models::{JsonObject, RawResponse};
use crm_api::service::PageRequest;
use serde_json::Value;

fn entry(method: &str, url: String, body: Option<Value>, response: Option<Value>) -> RawResponse {
    RawResponse {
        method: method.to_owned(),
        url,
        body,
        response,
    }
}

/// Appends the caller's `proxy[...]` parameters, which a provider would receive.
fn with_proxy(mut url: String, proxy: &JsonObject) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (k, v) in proxy {
        query.append_pair(k, v.as_str().unwrap_or_default());
    }
    let query = query.finish();
    if !query.is_empty() {
        url.push(if url.contains('?') { '&' } else { '?' });
        url.push_str(&query);
    }
    url
}

fn id_of(record: &JsonObject) -> &str {
    record.get("id").and_then(Value::as_str).unwrap_or_default()
}

/// A record read by id.
pub fn read(kind: &str, record: &JsonObject, proxy: &JsonObject) -> RawResponse {
    let url = with_proxy(format!("local://{kind}/{}", id_of(record)), proxy);
    entry("GET", url, None, Some(Value::Object(record.clone())))
}

/// A page read from `from` (the position the page started after).
pub fn page(kind: &str, request: &PageRequest, from: &str, bodies: Vec<Value>) -> RawResponse {
    let mut url = format!("local://{kind}?limit={}&after={from}", request.page_size);
    if let Some(t) = request.updated_after {
        url.push_str(&format!("&updated_after={}", crate::db::timestamp(t)));
    }
    let url = with_proxy(url, &request.proxy);
    entry("GET", url, None, Some(Value::Array(bodies)))
}

/// A change to the items of list `id`.
pub fn list_items(
    method: &str,
    path: String,
    body: Option<Value>,
    items: &Option<Vec<crm_api::models::ListItem>>,
) -> RawResponse {
    entry(
        method,
        format!("local://{path}"),
        body,
        Some(serde_json::to_value(items).unwrap_or_default()),
    )
}
