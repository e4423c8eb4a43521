//! What the HubSpot and Pipedrive connectors share besides calling: record ids, etags,
//! cursors, custom field values, the 501 of an operation a provider has no counterpart for,
//! and the `Idempotency-Key` record of a remote create.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use crm_api::ApiError;
use crm_api::models::JsonObject;
use crm_api::service::AccountScope;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::db::Database;
use crate::tenancy::internal;

/// The ids of one linked account's records.
///
/// Our id of a provider record is opaque and stable: the record's kind, the linked account
/// and the provider's id inside, so no lookup table is needed, an id of one kind is never
/// read as another, and an id of one account never names a record of another account of
/// the same provider (whose ids may well coincide).
#[derive(Debug, Clone, Copy)]
pub struct Ids<'a> {
    pub account: &'a str,
}

impl Ids<'_> {
    pub fn of(&self, kind: &str, remote_id: &str) -> String {
        URL_SAFE_NO_PAD.encode(format!("{kind}:{}:{remote_id}", self.account))
    }

    /// The provider's id inside our `id` of a record of `kind`; `None` when `id` is not one
    /// of this account's.
    pub fn remote(&self, kind: &str, id: &str) -> Option<String> {
        let text = String::from_utf8(URL_SAFE_NO_PAD.decode(id).ok()?).ok()?;
        let remote = text
            .strip_prefix(kind)?
            .strip_prefix(':')?
            .strip_prefix(self.account)?
            .strip_prefix(':')?;
        (!remote.is_empty()).then(|| remote.to_owned())
    }

    /// The remote id of `id`, or the 404 of an id this account never issued for `kind`.
    pub fn remote_or_404(&self, kind: &str, noun: &str, id: &str) -> Result<String, ApiError> {
        self.remote(kind, id).ok_or_else(|| not_found(noun, id))
    }
}

pub fn not_found(noun: &str, id: &str) -> ApiError {
    ApiError::not_found(format!("{noun} {id} not found"))
}

/// A provider 404 as the 404 of our record, the provider's answer kept.
pub fn not_found_as(error: ApiError, noun: &str, id: &str) -> ApiError {
    if error.status == axum::http::StatusCode::NOT_FOUND {
        let mut ours = not_found(noun, id);
        ours.details = error.details;
        ours
    } else {
        error
    }
}

/// `id` and `etag` are the server's, on create and update alike.
pub fn refuse_server_fields(sent: &JsonObject, what: &str) -> Result<(), ApiError> {
    for field in ["id", "etag"] {
        if sent.contains_key(field) {
            return Err(ApiError::unprocessable(
                field,
                format!("{field} is assigned by the server; leave it out of a {what}"),
            ));
        }
    }
    Ok(())
}

/// An etag from a record's content: it changes on every write even where the provider's
/// modification time has one-second resolution, since the content is in it.
pub fn etag_of(parts: &[&Value]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part.to_string().as_bytes());
        hasher.update([0]);
    }
    hasher.finalize()[..12]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The 501 of a unified operation `provider` has no counterpart for.
pub fn unsupported(provider: &str, operation: &str, why: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_IMPLEMENTED,
        format!("{provider} does not support {operation}: {why}"),
    )
    .with("provider", provider)
    .with("operation", operation)
}

/// A cursor position: a small JSON object of the provider's own, inside the envelope of
/// `crm_api::cursor`.
pub fn encode_cursor(provider: &str, position: &Value) -> String {
    crm_api::cursor::encode(provider, &position.to_string())
}

pub fn decode_cursor(provider: &str, cursor: &str) -> Result<JsonObject, ApiError> {
    let text = crm_api::cursor::decode(cursor, provider)?;
    match serde_json::from_str(&text) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(crm_api::cursor::invalid()),
    }
}

/// A custom field value as the unified model shows it, from the provider's text.
pub fn typed_value(text: &str, kind: &str) -> Value {
    match kind {
        "number" => text
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .unwrap_or_else(|| Value::String(text.to_owned())),
        "bool" => match text {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            other => Value::String(other.to_owned()),
        },
        _ => Value::String(text.to_owned()),
    }
}

/// A unified custom field value as text (HubSpot keeps every value as a string; `null`
/// clears a value, which HubSpot spells as the empty string).
pub fn value_text(value: &Value) -> Option<String> {
    match value {
        Value::Null => Some(String::new()),
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Array(items) => Some(
            items
                .iter()
                .filter_map(|i| match i {
                    Value::String(s) => Some(s.clone()),
                    Value::Number(n) => Some(n.to_string()),
                    Value::Bool(b) => Some(b.to_string()),
                    _ => None,
                })
                .collect::<Vec<_>>()
                .join(";"),
        ),
        Value::Object(_) => None,
    }
}

/// A small per-account cache of what changes rarely at the provider (custom field
/// definitions), so a page of records costs one provider call, not two. An entry lives
/// [`DEFINITIONS_TTL`]; a write the provider refuses for an unknown field drops it.
pub struct TtlCache<T> {
    entries: Mutex<BTreeMap<String, (Instant, T)>>,
    ttl: Duration,
}

/// How long custom field definitions are reused before they are read again.
pub const DEFINITIONS_TTL: Duration = Duration::from_secs(60);

impl<T: Clone> TtlCache<T> {
    pub fn new(ttl: Duration) -> TtlCache<T> {
        TtlCache {
            entries: Mutex::default(),
            ttl,
        }
    }

    pub fn get(&self, key: &str) -> Option<T> {
        let entries = self.entries.lock().expect("not poisoned");
        entries
            .get(key)
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, v)| v.clone())
    }

    pub fn put(&self, key: &str, value: T) {
        self.entries
            .lock()
            .expect("not poisoned")
            .insert(key.to_owned(), (Instant::now(), value));
    }

    pub fn forget(&self, key: &str) {
        self.entries.lock().expect("not poisoned").remove(key);
    }
}

/// Every contact of a linked account (or those modified after `updated_after`), read through
/// the provider's own listing 100 at a time: one page in memory at once, one provider call
/// per page.
pub fn export_by_pages<P: crm_api::CrmProvider + Clone>(
    provider: P,
    scope: AccountScope,
    updated_after: Option<chrono::DateTime<chrono::Utc>>,
) -> crm_api::service::RecordStream<crm_api::models::Contact> {
    use crm_api::service::{PageRequest, ServiceResult};
    use futures::StreamExt;
    let pages = futures::stream::try_unfold(
        (provider, scope, Some(None::<String>)),
        move |(provider, scope, cursor)| async move {
            let Some(cursor) = cursor else {
                return Ok(None);
            };
            let request = PageRequest {
                page_size: 100,
                cursor,
                updated_after,
                proxy: JsonObject::new(),
                raw: false,
            };
            let page = provider.list_contacts(&scope, &request).await?;
            let next = page.next.map(Some);
            Ok(Some((page.data, (provider, scope, next))))
        },
    );
    Box::pin(
        pages
            .map(
                |page: ServiceResult<Vec<crm_api::models::Contact>>| match page {
                    Ok(contacts) => {
                        futures::stream::iter(contacts.into_iter().map(Ok)).left_stream()
                    }
                    Err(e) => futures::stream::iter(vec![Err(e)]).right_stream(),
                },
            )
            .flatten(),
    )
}

/// The id an earlier run of a create recorded under its `Idempotency-Key`, when that run
/// created the record at the provider but never recorded its answer.
pub async fn landed_create(
    db: &Database,
    scope: &AccountScope,
    key: Option<&str>,
) -> Result<Option<String>, ApiError> {
    let Some(key) = key else { return Ok(None) };
    let mut conn = db.acquire().await.map_err(internal)?;
    let landed: Option<Option<String>> = sqlx::query_scalar(
        "SELECT record_id FROM idempotency_keys WHERE project_id = $1 AND key = $2",
    )
    .bind(&scope.project_id)
    .bind(key)
    .fetch_optional(&mut *conn)
    .await
    .map_err(internal)?;
    conn.release();
    Ok(landed.flatten())
}

/// Records under `key` the id a create made at the provider, as soon as the provider
/// answered.
pub async fn record_create(
    db: &Database,
    scope: &AccountScope,
    key: Option<&str>,
    id: &str,
) -> Result<(), ApiError> {
    let Some(key) = key else { return Ok(()) };
    let mut tx = db.begin().await.map_err(internal)?;
    tx.execute(
        "UPDATE idempotency_keys SET record_id = $1 WHERE project_id = $2 AND key = $3",
        crate::txn::args![id, &scope.project_id, key],
    )
    .await
    .map_err(internal)?;
    tx.commit().await.map_err(internal)
}

/// The `If-Match` check of a connector: the current record's etag is read first (one call),
/// then the write is made (another). Between the two the provider's record may change;
/// the provider offers no conditional write to close that window.
pub fn check_if_match(if_match: Option<&str>, current: &str) -> Result<(), ApiError> {
    match if_match {
        Some(wanted) if !crate::rules::etag_matches(wanted, current) => {
            Err(ApiError::precondition_failed(format!(
                "the record changed: its etag is now \"{current}\", not {wanted}"
            ))
            .with("parameter", "If-Match"))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_per_kind_and_account_and_nothing_else_reads_as_one() {
        let ids = Ids { account: "a-1" };
        let id = ids.of("contact", "12345");
        assert_eq!(ids.remote("contact", &id).as_deref(), Some("12345"));
        assert_eq!(ids.remote("account", &id), None);
        assert_eq!(Ids { account: "a-2" }.remote("contact", &id), None);
        assert_eq!(ids.remote("contact", "12345"), None);
        assert_eq!(ids.remote("contact", &ids.of("contact", "")), None);
        assert_ne!(id, "12345");
    }

    #[test]
    fn etags_follow_content() {
        let a = serde_json::json!({"email": "a@example.com"});
        let b = serde_json::json!({"email": "b@example.com"});
        let t = serde_json::json!("2026-01-01T00:00:00Z");
        assert_eq!(etag_of(&[&t, &a]), etag_of(&[&t, &a]));
        assert_ne!(etag_of(&[&t, &a]), etag_of(&[&t, &b]));
        assert!(check_if_match(Some("\"x\""), &etag_of(&[&t, &a])).is_err());
        assert!(check_if_match(Some("*"), "x").is_ok());
    }
}
