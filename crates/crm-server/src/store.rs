//! The built-in `local` provider: the records of a linked account live in this server's
//! own SQLite database, and `remote_id` equals `id`.
//!
//! Every record kind is stored the same way (one row in `records`, its unified JSON in
//! `body`), so create, update, read, page and delete are written once, generic over
//! [`Resource`]. Every write is one `BEGIN IMMEDIATE` transaction: it either lands whole or
//! not at all.

use async_trait::async_trait;
use chrono::Utc;
use crm_api::ApiError;
use crm_api::models::{
    Account, Contact, CrmCreateAccountRequestDto, CrmCreateContactRequestDto,
    CrmCreateCustomFieldDefinitionRequestDto, CrmCreateListRequestDto, CustomFieldDefinition,
    CustomFieldType, JsonObject, List, ListItem, ListType, RawResponse, UnifiedCustomFields,
};
use crm_api::service::{
    AccountScope, ApiKey, CrmService, IdempotencyClaim, Page, PageRequest, ReadRequest,
    RecordStream, Served, ServiceResult, StoredResponse, Write,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use sqlx::{Row, SqlitePool};
use std::collections::BTreeMap;

use crate::cursor::Cursor;
use crate::custom_fields;
use crate::db::{timestamp, write_tx};
use crate::tenancy::{self, internal};

/// The most ids one Add List Items call takes.
pub const MAX_ITEMS_PER_CALL: usize = 1000;

/// A kind of record of the local provider.
trait Resource: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The kind column, also the resource name in `raw` URLs.
    const KIND: &'static str;
    /// The name of one record, for messages.
    const NOUN: &'static str;

    /// Whether records of this kind carry custom fields checked against definitions and
    /// `unified_custom_fields` from the project's mapping.
    const CUSTOM_FIELDS: bool = false;

    /// Whether a record of this kind that holds items (a list) keeps its `type`.
    const TYPE_FIXED_BY_ITEMS: bool = false;

    /// Fills in what a new record gets when the body leaves it out.
    fn defaults(_record: &mut JsonObject) {}

    /// Recomputes the fields derived from others, given what the write sent.
    fn derive(_record: &mut JsonObject, _sent: &JsonObject) -> Result<(), ApiError> {
        Ok(())
    }

    /// Checks the record as it would be stored.
    fn check(_record: &JsonObject) -> Result<(), ApiError> {
        Ok(())
    }
}

impl Resource for Contact {
    const KIND: &'static str = "contacts";
    const NOUN: &'static str = "contact";
    const CUSTOM_FIELDS: bool = true;

    fn derive(record: &mut JsonObject, sent: &JsonObject) -> Result<(), ApiError> {
        // The local provider's ids and times are ours.
        for (field, remote) in [
            ("deal_ids", "remote_deal_ids"),
            ("account_ids", "remote_account_ids"),
            ("created_at", "remote_created_at"),
            ("updated_at", "remote_updated_at"),
        ] {
            match record.get(field).cloned() {
                Some(value) => record.insert(remote.to_owned(), value),
                None => record.remove(remote),
            };
        }
        record.insert("remote_deleted".into(), false.into());
        custom_fields::sync_lists(record, sent, "emails", "email_addresses", "email")?;
        custom_fields::sync_lists(
            record,
            sent,
            "phone_numbers",
            "typed_phone_numbers",
            "number",
        )
    }

    fn check(record: &JsonObject) -> Result<(), ApiError> {
        match record.get("last_name").and_then(Value::as_str) {
            Some(name) if !name.trim().is_empty() => {}
            _ => {
                return Err(ApiError::unprocessable(
                    "last_name",
                    "last_name is required and must not be empty",
                ));
            }
        }
        let emails = record
            .get("emails")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for (i, email) in emails.iter().enumerate() {
            if !email.as_str().is_some_and(custom_fields::is_email) {
                return Err(ApiError::unprocessable(
                    &format!("emails[{i}]"),
                    format!("emails[{i}]: {email} is not an email address"),
                ));
            }
        }
        Ok(())
    }
}

impl Resource for Account {
    const KIND: &'static str = "accounts";
    const NOUN: &'static str = "account";

    fn derive(record: &mut JsonObject, _sent: &JsonObject) -> Result<(), ApiError> {
        match record.get("owner_id").cloned() {
            Some(owner) => record.insert("remote_owner_id".to_owned(), owner),
            None => record.remove("remote_owner_id"),
        };
        Ok(())
    }
}

impl Resource for List {
    const KIND: &'static str = "lists";
    const NOUN: &'static str = "list";
    const TYPE_FIXED_BY_ITEMS: bool = true;

    fn defaults(record: &mut JsonObject) {
        record
            .entry("type")
            .or_insert_with(|| serde_json::json!({ "value": "contacts" }));
    }

    fn check(record: &JsonObject) -> Result<(), ApiError> {
        require_name(record)
    }
}

impl Resource for CustomFieldDefinition {
    const KIND: &'static str = "custom_field_definitions/contacts";
    const NOUN: &'static str = "custom field definition";

    fn defaults(record: &mut JsonObject) {
        record
            .entry("type")
            .or_insert_with(|| serde_json::json!({ "value": "text" }));
    }

    fn check(record: &JsonObject) -> Result<(), ApiError> {
        require_name(record)?;
        let definition: CustomFieldDefinition = typed(record)?;
        let options = definition.options.unwrap_or_default();
        let field_type = definition.field_type.and_then(|t| t.value);
        if matches!(
            field_type,
            Some(CustomFieldType::SingleSelect | CustomFieldType::MultiSelect)
        ) && options.is_empty()
        {
            return Err(ApiError::unprocessable(
                "options",
                "a single_select or multi_select field needs at least one option",
            ));
        }
        let mut ids: Vec<&str> = options.iter().map(|o| o.id.as_str()).collect();
        ids.sort_unstable();
        if let Some(pair) = ids.windows(2).find(|w| w[0] == w[1]) {
            return Err(ApiError::unprocessable(
                "options",
                format!("option id {:?} appears more than once", pair[0]),
            ));
        }
        Ok(())
    }
}

fn require_name(record: &JsonObject) -> Result<(), ApiError> {
    match record.get("name").and_then(Value::as_str) {
        Some(name) if !name.trim().is_empty() => Ok(()),
        _ => Err(ApiError::unprocessable(
            "name",
            "name is required and must not be empty",
        )),
    }
}

fn typed<R: DeserializeOwned>(record: &JsonObject) -> Result<R, ApiError> {
    serde_json::from_value(Value::Object(record.clone()))
        .map_err(|e| ApiError::unprocessable("", format!("the record is not valid: {e}")))
}

fn to_object<T: Serialize>(value: &T) -> Result<JsonObject, ApiError> {
    match serde_json::to_value(value) {
        Ok(Value::Object(o)) => Ok(o),
        _ => Err(ApiError::internal(
            "a record did not serialise to an object",
        )),
    }
}

fn parse_body(body: &str) -> Result<JsonObject, ApiError> {
    serde_json::from_str(body)
        .map_err(|e| ApiError::internal(format!("a stored record is corrupt: {e}")))
}

/// Applies the fields that were sent: a value replaces, `null` clears. `passthrough` is
/// for the provider and does not become part of the unified record; `id` and `etag` are
/// checks, never values to store.
fn merge(record: &mut JsonObject, sent: &JsonObject) {
    for (field, value) in sent {
        if matches!(field.as_str(), "passthrough" | "id" | "etag") {
            continue;
        }
        if value.is_null() {
            record.remove(field);
        } else {
            record.insert(field.clone(), value.clone());
        }
    }
}

fn raw(method: &str, url: String, body: Option<Value>, response: Option<Value>) -> RawResponse {
    RawResponse {
        method: method.to_owned(),
        url,
        body,
        response,
    }
}

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

/// Where an update finds its record.
#[derive(Debug, Clone, Copy)]
enum Locator<'a> {
    Id(&'a str),
    ExternalId(&'a str),
}

/// Marks a record as written now: a new `updated_at` and a new `etag`.
fn stamp(record: &mut JsonObject, now: chrono::DateTime<Utc>) {
    record.insert(
        "updated_at".into(),
        serde_json::to_value(now).unwrap_or_default(),
    );
    let etag: String = uuid::Uuid::new_v4()
        .simple()
        .to_string()
        .chars()
        .take(16)
        .collect();
    record.insert("etag".into(), etag.into());
}

/// Whether an `If-Match` value names the current etag: `*`, or the etag quoted, weak or bare.
fn etag_matches(wanted: &str, current: &str) -> bool {
    wanted
        .split(',')
        .map(str::trim)
        .any(|w| w == "*" || w.trim_start_matches("W/").trim_matches('"') == current)
}

fn external_id(record: &JsonObject) -> Option<String> {
    record
        .get("external_id")
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// A unique index refused the write: another record already has the external id.
fn conflict_or_internal(e: sqlx::Error) -> ApiError {
    if let sqlx::Error::Database(db) = &e
        && db.is_unique_violation()
    {
        return ApiError::conflict(
            "another record of this linked account already has this external_id",
        )
        .with("field", "external_id");
    }
    internal(e)
}

/// Fills `unified_custom_fields` from the project's mapping and types the record.
fn present_with<R: Resource>(
    mut record: JsonObject,
    mapping: &BTreeMap<String, String>,
) -> ServiceResult<R> {
    if R::CUSTOM_FIELDS && !mapping.is_empty() {
        let entries = record
            .get("custom_fields")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let mut unified = JsonObject::new();
        for (unified_name, definition_name) in mapping {
            if let Some(value) = entries
                .iter()
                .find(|e| e.get("name").and_then(Value::as_str) == Some(definition_name.as_str()))
                .and_then(|e| e.get("value"))
            {
                unified.insert(unified_name.clone(), value.clone());
            }
        }
        if !unified.is_empty() {
            record.insert("unified_custom_fields".into(), Value::Object(unified));
        }
    }
    typed(&record)
}

/// Checks a record's `custom_fields` against the definitions of its linked account.
async fn resolve_custom_fields(
    tx: &mut sqlx::SqliteConnection,
    scope: &AccountScope,
    record: &mut JsonObject,
) -> ServiceResult<()> {
    let Some(entries) = record
        .get("custom_fields")
        .and_then(Value::as_array)
        .cloned()
    else {
        return Ok(());
    };
    let rows = sqlx::query("SELECT body FROM records WHERE linked_account_id = ? AND kind = ?")
        .bind(&scope.account_id)
        .bind(CustomFieldDefinition::KIND)
        .fetch_all(&mut *tx)
        .await
        .map_err(internal)?;
    let definitions = rows
        .into_iter()
        .map(|r| typed::<CustomFieldDefinition>(&parse_body(r.get("body"))?))
        .collect::<Result<Vec<_>, _>>()?;
    let resolved = custom_fields::resolve(&entries, &definitions)?;
    record.insert("custom_fields".into(), Value::Array(resolved));
    Ok(())
}

/// One batch of records of a kind after `after_seq`, oldest first.
async fn read_batch<'e>(
    executor: impl sqlx::SqliteExecutor<'e>,
    account_id: &str,
    kind: &str,
    after_seq: i64,
    updated_after: Option<&str>,
    limit: i64,
) -> ServiceResult<Vec<(i64, JsonObject)>> {
    let rows = sqlx::query(
        "SELECT seq, body FROM records
         WHERE linked_account_id = ?1 AND kind = ?2 AND seq > ?3 AND (?4 IS NULL OR updated_at > ?4)
         ORDER BY seq LIMIT ?5",
    )
    .bind(account_id)
    .bind(kind)
    .bind(after_seq)
    .bind(updated_after)
    .bind(limit)
    .fetch_all(executor)
    .await
    .map_err(internal)?;
    rows.into_iter()
        .map(|row| Ok((row.get::<i64, _>("seq"), parse_body(row.get("body"))?)))
        .collect()
}

/// Runs `sql` on one idempotency key: its last two parameters are the project and the key,
/// after `value` when one is given.
async fn on_key(
    conn: &mut sqlx::SqliteConnection,
    sql: &'static str,
    value: Option<&str>,
    scope: &AccountScope,
    key: &str,
) -> ServiceResult<()> {
    let mut query = sqlx::query(sql);
    if let Some(value) = value {
        query = query.bind(value);
    }
    query
        .bind(&scope.project_id)
        .bind(key)
        .execute(conn)
        .await
        .map_err(internal)?;
    Ok(())
}

/// The record an earlier run of this create already made under `key`, when that run wrote
/// it but never recorded its answer (the server stopped in between).
async fn landed_create<R: Resource>(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    scope: &AccountScope,
    key: &str,
) -> ServiceResult<Option<JsonObject>> {
    let landed: Option<String> = sqlx::query_scalar(
        "SELECT record_id FROM idempotency_keys WHERE project_id = ? AND key = ?",
    )
    .bind(&scope.project_id)
    .bind(key)
    .fetch_optional(&mut **tx)
    .await
    .map_err(internal)?
    .flatten();
    let Some(id) = landed else {
        return Ok(None);
    };
    let body: Option<String> = sqlx::query_scalar(
        "SELECT body FROM records WHERE linked_account_id = ? AND kind = ? AND id = ?",
    )
    .bind(&scope.account_id)
    .bind(R::KIND)
    .bind(&id)
    .fetch_optional(&mut **tx)
    .await
    .map_err(internal)?;
    match body {
        Some(body) => parse_body(&body).map(Some),
        None => Err(ApiError::conflict(format!(
            "the first request with this Idempotency-Key created {} {id}, which has since been \
             deleted; use a new key to create another",
            R::NOUN
        ))),
    }
}

fn not_found<R: Resource>(id: &str) -> ApiError {
    ApiError::not_found(format!("{} {id} not found", R::NOUN))
}

/// How long an idempotency key is remembered.
pub const IDEMPOTENCY_KEY_LIFETIME: chrono::Duration = chrono::Duration::hours(24);
/// After how long an unfinished claim of a key is given up.
pub const ABANDONED_CLAIM_AFTER: chrono::Duration = chrono::Duration::minutes(5);
/// How many records an export reads at a time; the most it holds in memory.
pub const EXPORT_BATCH: i64 = 500;

/// Reads every contact of a linked account in batches of [`EXPORT_BATCH`], on one pooled
/// connection held for the whole export (so one page cache warms, not one per connection).
struct BatchReader {
    pool: SqlitePool,
    connection: Option<sqlx::pool::PoolConnection<sqlx::Sqlite>>,
    account_id: String,
    updated_after: Option<String>,
    after_seq: i64,
    buffered: std::collections::VecDeque<(i64, JsonObject)>,
    done: bool,
}

impl BatchReader {
    async fn next(&mut self) -> ServiceResult<Option<JsonObject>> {
        if self.buffered.is_empty() && !self.done {
            if self.connection.is_none() {
                self.connection = Some(self.pool.acquire().await.map_err(internal)?);
            }
            let connection = self.connection.as_mut().expect("acquired above");
            let batch = read_batch(
                &mut **connection,
                &self.account_id,
                Contact::KIND,
                self.after_seq,
                self.updated_after.as_deref(),
                EXPORT_BATCH,
            )
            .await?;
            self.done = (batch.len() as i64) < EXPORT_BATCH;
            if let Some((seq, _)) = batch.last() {
                self.after_seq = *seq;
            }
            self.buffered.extend(batch);
            if self.done {
                // Give the connection back as soon as the last batch is read.
                self.connection = None;
            }
        }
        Ok(self.buffered.pop_front().map(|(_, record)| record))
    }
}

/// The CRM service over the local provider.
#[derive(Clone)]
pub struct LocalCrm {
    pool: SqlitePool,
}

impl LocalCrm {
    pub fn new(pool: SqlitePool) -> Self {
        Self { pool }
    }

    async fn create<R: Resource, D>(
        &self,
        scope: &AccountScope,
        write: Write<D>,
    ) -> ServiceResult<Served<R>> {
        if write.sent.contains_key("id") {
            return Err(ApiError::unprocessable(
                "id",
                "id is assigned by the server; leave it out on create",
            ));
        }
        if write.sent.contains_key("etag") {
            return Err(ApiError::unprocessable(
                "etag",
                "etag applies to updates; leave it out on create",
            ));
        }
        let now = Utc::now();
        let id = uuid::Uuid::new_v4().to_string();
        let mut record = JsonObject::new();
        merge(&mut record, &write.sent);
        R::defaults(&mut record);
        record.insert("id".into(), id.clone().into());
        record.insert("remote_id".into(), id.clone().into());
        record.insert(
            "created_at".into(),
            serde_json::to_value(now).unwrap_or_default(),
        );
        stamp(&mut record, now);
        R::derive(&mut record, &write.sent)?;
        R::check(&record)?;
        let mut tx = write_tx(&self.pool).await.map_err(internal)?;
        if let Some(key) = &write.idempotency_key
            && let Some(stored) = landed_create::<R>(&mut tx, scope, key).await?
        {
            tx.commit().await.map_err(internal)?;
            let id = stored.get("id").and_then(Value::as_str).unwrap_or_default();
            let raw = raw(
                "GET",
                format!("local://{}/{id}", R::KIND),
                None,
                Some(Value::Object(stored.clone())),
            );
            let data = self.present(scope, stored).await?;
            return Ok(Served {
                data,
                raw: vec![raw],
            });
        }
        if R::CUSTOM_FIELDS {
            resolve_custom_fields(&mut tx, scope, &mut record).await?;
        }
        let data: R = typed(&record)?;
        let stored = to_object(&data)?;
        let passthrough = write
            .sent
            .get("passthrough")
            .filter(|p| !p.is_null())
            .map(Value::to_string);
        sqlx::query(
            "INSERT INTO records (linked_account_id, kind, id, body, passthrough, created_at, updated_at, external_id)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&scope.account_id)
        .bind(R::KIND)
        .bind(&id)
        .bind(Value::Object(stored.clone()).to_string())
        .bind(passthrough)
        .bind(timestamp(now))
        .bind(timestamp(now))
        .bind(external_id(&stored))
        .execute(&mut *tx)
        .await
        .map_err(conflict_or_internal)?;
        if let Some(key) = &write.idempotency_key {
            on_key(
                &mut tx,
                "UPDATE idempotency_keys SET record_id = ? WHERE project_id = ? AND key = ?",
                Some(&id),
                scope,
                key,
            )
            .await?;
        }
        tx.commit().await.map_err(internal)?;
        let data = self.present(scope, stored.clone()).await?;
        let raw = raw(
            "POST",
            format!("local://{}", R::KIND),
            Some(Value::Object(write.sent)),
            Some(Value::Object(stored)),
        );
        Ok(Served {
            data,
            raw: vec![raw],
        })
    }

    async fn update<R: Resource, D>(
        &self,
        scope: &AccountScope,
        at: Locator<'_>,
        write: Write<D>,
    ) -> ServiceResult<Served<(i64, R)>> {
        let now = Utc::now();
        let mut tx = write_tx(&self.pool).await.map_err(internal)?;
        let (column, value) = match at {
            Locator::Id(id) => ("id", id),
            Locator::ExternalId(external) => ("external_id", external),
        };
        let sql = match at {
            Locator::Id(_) => {
                "SELECT seq, body, passthrough FROM records WHERE linked_account_id = ? AND kind = ? AND id = ?"
            }
            Locator::ExternalId(_) => {
                "SELECT seq, body, passthrough FROM records WHERE linked_account_id = ? AND kind = ? AND external_id = ?"
            }
        };
        let row = sqlx::query(sql)
            .bind(&scope.account_id)
            .bind(R::KIND)
            .bind(value)
            .fetch_optional(&mut *tx)
            .await
            .map_err(internal)?
            .ok_or_else(|| {
                ApiError::not_found(format!("{} with {column} {value} not found", R::NOUN))
            })?;
        let seq: i64 = row.get("seq");
        let mut record = parse_body(row.get("body"))?;
        let id = record
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        if let Some(sent_id) = write.sent.get("id").filter(|v| !v.is_null())
            && sent_id.as_str() != Some(id.as_str())
        {
            return Err(ApiError::unprocessable(
                "id",
                format!(
                    "the body's id {sent_id} is not the id of the {} being updated ({id}); an update never changes an id",
                    R::NOUN
                ),
            ));
        }
        let current = record
            .get("etag")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let wanted = write.if_match.clone().or_else(|| {
            write
                .sent
                .get("etag")
                .and_then(Value::as_str)
                .map(str::to_owned)
        });
        if let Some(wanted) = wanted
            && !etag_matches(&wanted, &current)
        {
            return Err(ApiError::precondition_failed(format!(
                "the {} has changed: its etag is \"{current}\", not {wanted}; read it again and retry",
                R::NOUN
            ))
            .with("etag", current));
        }
        let type_of = |r: &JsonObject| r.get("type").and_then(|t| t.get("value")).cloned();
        let type_before = type_of(&record);
        merge(&mut record, &write.sent);
        stamp(&mut record, now);
        R::derive(&mut record, &write.sent)?;
        R::check(&record)?;
        if R::TYPE_FIXED_BY_ITEMS && type_of(&record) != type_before {
            let items: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM list_items WHERE list_seq = ?")
                    .bind(seq)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(internal)?;
            if items > 0 {
                return Err(ApiError::conflict(format!(
                    "a {} that has items cannot change its type",
                    R::NOUN
                )));
            }
        }
        if R::CUSTOM_FIELDS {
            resolve_custom_fields(&mut tx, scope, &mut record).await?;
        }
        let data: R = typed(&record)?;
        let stored = to_object(&data)?;
        let passthrough = match write.sent.get("passthrough") {
            Some(Value::Null) => None,
            Some(p) => Some(p.to_string()),
            None => row.get::<Option<String>, _>("passthrough"),
        };
        sqlx::query("UPDATE records SET body = ?, passthrough = ?, updated_at = ?, external_id = ? WHERE seq = ?")
            .bind(Value::Object(stored.clone()).to_string())
            .bind(passthrough)
            .bind(timestamp(now))
            .bind(external_id(&stored))
            .bind(seq)
            .execute(&mut *tx)
            .await
            .map_err(conflict_or_internal)?;
        tx.commit().await.map_err(internal)?;
        let data = self.present(scope, stored.clone()).await?;
        let raw = raw(
            "PATCH",
            format!("local://{}/{id}", R::KIND),
            Some(Value::Object(write.sent)),
            Some(Value::Object(stored)),
        );
        Ok(Served {
            data: (seq, data),
            raw: vec![raw],
        })
    }

    /// Turns a stored record into its unified form: for contacts, `unified_custom_fields`
    /// from the project's mapping.
    async fn present<R: Resource>(
        &self,
        scope: &AccountScope,
        record: JsonObject,
    ) -> ServiceResult<R> {
        let mapping = if R::CUSTOM_FIELDS {
            self.mapping(scope).await?
        } else {
            BTreeMap::new()
        };
        present_with(record, &mapping)
    }

    /// The project's unified custom field mapping for contacts.
    async fn mapping(&self, scope: &AccountScope) -> ServiceResult<BTreeMap<String, String>> {
        let row = sqlx::query(
            "SELECT mappings FROM unified_custom_fields WHERE project_id = ? AND kind = ?",
        )
        .bind(&scope.project_id)
        .bind(Contact::KIND)
        .fetch_optional(&self.pool)
        .await
        .map_err(internal)?;
        match row {
            Some(row) => serde_json::from_str(row.get("mappings"))
                .map_err(|e| ApiError::internal(format!("a stored mapping is corrupt: {e}"))),
            None => Ok(BTreeMap::new()),
        }
    }

    async fn get<R: Resource>(
        &self,
        scope: &AccountScope,
        id: &str,
        read: &ReadRequest,
    ) -> ServiceResult<Served<(i64, R)>> {
        let row = sqlx::query(
            "SELECT seq, body FROM records WHERE linked_account_id = ? AND kind = ? AND id = ?",
        )
        .bind(&scope.account_id)
        .bind(R::KIND)
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(internal)?
        .ok_or_else(|| not_found::<R>(id))?;
        let record = parse_body(row.get("body"))?;
        let data: R = self.present(scope, record.clone()).await?;
        let url = with_proxy(format!("local://{}/{id}", R::KIND), &read.proxy);
        Ok(Served {
            data: (row.get("seq"), data),
            raw: vec![raw("GET", url, None, Some(Value::Object(record)))],
        })
    }

    async fn page<R: Resource>(
        &self,
        scope: &AccountScope,
        request: &PageRequest,
    ) -> ServiceResult<Page<(i64, R)>> {
        let after = match &request.cursor {
            Some(token) => Cursor::decode(token)?.after_seq,
            None => 0,
        };
        let updated_after = request.updated_after.map(timestamp);
        let rows = read_batch(
            &self.pool,
            &scope.account_id,
            R::KIND,
            after,
            updated_after.as_deref(),
            i64::from(request.page_size) + 1,
        )
        .await?;
        let more = rows.len() > request.page_size as usize;
        let mapping = if R::CUSTOM_FIELDS {
            self.mapping(scope).await?
        } else {
            BTreeMap::new()
        };
        let mut data = Vec::with_capacity(rows.len());
        let mut bodies = Vec::with_capacity(rows.len());
        for (seq, record) in rows.into_iter().take(request.page_size as usize) {
            data.push((seq, present_with(record.clone(), &mapping)?));
            bodies.push(Value::Object(record));
        }
        let next = more.then(|| {
            Cursor {
                after_seq: data.last().map_or(after, |(seq, _)| *seq),
            }
            .encode()
        });
        let mut url = format!(
            "local://{}?limit={}&after={after}",
            R::KIND,
            request.page_size
        );
        if let Some(t) = &updated_after {
            url.push_str(&format!("&updated_after={t}"));
        }
        let url = with_proxy(url, &request.proxy);
        Ok(Page {
            data,
            next,
            raw: vec![raw("GET", url, None, Some(Value::Array(bodies)))],
        })
    }

    async fn delete<R: Resource>(&self, scope: &AccountScope, id: &str) -> ServiceResult<()> {
        let mut tx = write_tx(&self.pool).await.map_err(internal)?;
        let deleted =
            sqlx::query("DELETE FROM records WHERE linked_account_id = ? AND kind = ? AND id = ?")
                .bind(&scope.account_id)
                .bind(R::KIND)
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(internal)?;
        if deleted.rows_affected() == 0 {
            return Err(not_found::<R>(id));
        }
        // A deleted record leaves every list of its linked account.
        sqlx::query(
            "DELETE FROM list_items WHERE item_id = ?1 AND list_seq IN
             (SELECT seq FROM records WHERE linked_account_id = ?2 AND kind = 'lists')",
        )
        .bind(id)
        .bind(&scope.account_id)
        .execute(&mut *tx)
        .await
        .map_err(internal)?;
        tx.commit().await.map_err(internal)?;
        Ok(())
    }

    /// The items of the list stored at `seq`, in the order they were added.
    async fn items<'e, E: sqlx::SqliteExecutor<'e>>(
        executor: E,
        seq: i64,
    ) -> ServiceResult<Vec<ListItem>> {
        let rows = sqlx::query("SELECT item_id FROM list_items WHERE list_seq = ? ORDER BY added")
            .bind(seq)
            .fetch_all(executor)
            .await
            .map_err(internal)?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let id: String = r.get("item_id");
                ListItem {
                    id: Some(id.clone()),
                    remote_id: Some(id),
                }
            })
            .collect())
    }

    async fn with_items(&self, (seq, mut list): (i64, List)) -> ServiceResult<List> {
        list.items = Some(Self::items(&self.pool, seq).await?);
        Ok(list)
    }

    /// Reads a list after a change to its items, in the same transaction.
    async fn list_in_tx(tx: &mut sqlx::SqliteConnection, seq: i64) -> ServiceResult<List> {
        let body: String = sqlx::query("SELECT body FROM records WHERE seq = ?")
            .bind(seq)
            .fetch_one(&mut *tx)
            .await
            .map_err(internal)?
            .get("body");
        let mut list: List = typed(&parse_body(&body)?)?;
        list.items = Some(Self::items(&mut *tx, seq).await?);
        Ok(list)
    }

    /// Finds a list for a change to its items and marks it updated.
    async fn touch_list(
        tx: &mut sqlx::SqliteConnection,
        scope: &AccountScope,
        id: &str,
    ) -> ServiceResult<(i64, List)> {
        let row = sqlx::query("SELECT seq, body FROM records WHERE linked_account_id = ? AND kind = 'lists' AND id = ?")
            .bind(&scope.account_id)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(internal)?
            .ok_or_else(|| not_found::<List>(id))?;
        let seq: i64 = row.get("seq");
        let mut record = parse_body(row.get("body"))?;
        let now = Utc::now();
        stamp(&mut record, now);
        sqlx::query("UPDATE records SET body = ?, updated_at = ? WHERE seq = ?")
            .bind(Value::Object(record.clone()).to_string())
            .bind(timestamp(now))
            .bind(seq)
            .execute(&mut *tx)
            .await
            .map_err(internal)?;
        Ok((seq, typed(&record)?))
    }
}

fn strip_seq<T>(served: Served<(i64, T)>) -> Served<T> {
    Served {
        data: served.data.1,
        raw: served.raw,
    }
}

fn strip_seqs<T>(page: Page<(i64, T)>) -> Page<T> {
    Page {
        data: page.data.into_iter().map(|(_, d)| d).collect(),
        next: page.next,
        raw: page.raw,
    }
}

#[async_trait]
impl CrmService for LocalCrm {
    async fn authorize(&self, key: &ApiKey, account_id: &str) -> ServiceResult<AccountScope> {
        tenancy::authorize(&self.pool, key, account_id).await
    }

    async fn list_contacts(
        &self,
        scope: &AccountScope,
        page: &PageRequest,
    ) -> ServiceResult<Page<Contact>> {
        self.page(scope, page).await.map(strip_seqs)
    }

    async fn get_contact(
        &self,
        scope: &AccountScope,
        id: &str,
        read: &ReadRequest,
    ) -> ServiceResult<Served<Contact>> {
        self.get(scope, id, read).await.map(strip_seq)
    }

    async fn create_contact(
        &self,
        scope: &AccountScope,
        write: Write<CrmCreateContactRequestDto>,
    ) -> ServiceResult<Served<Contact>> {
        self.create(scope, write).await
    }

    async fn update_contact(
        &self,
        scope: &AccountScope,
        id: &str,
        write: Write<CrmCreateContactRequestDto>,
    ) -> ServiceResult<Served<Contact>> {
        self.update(scope, Locator::Id(id), write)
            .await
            .map(strip_seq)
    }

    async fn delete_contact(&self, scope: &AccountScope, id: &str) -> ServiceResult<()> {
        self.delete::<Contact>(scope, id).await
    }

    async fn update_contact_by_external_id(
        &self,
        scope: &AccountScope,
        external_id: &str,
        write: Write<CrmCreateContactRequestDto>,
    ) -> ServiceResult<Served<Contact>> {
        self.update(scope, Locator::ExternalId(external_id), write)
            .await
            .map(strip_seq)
    }

    async fn export_contacts(
        &self,
        scope: &AccountScope,
        updated_after: Option<chrono::DateTime<Utc>>,
    ) -> ServiceResult<RecordStream<Contact>> {
        let mapping = self.mapping(scope).await?;
        let reader = BatchReader {
            pool: self.pool.clone(),
            connection: None,
            account_id: scope.account_id.clone(),
            updated_after: updated_after.map(timestamp),
            after_seq: 0,
            buffered: std::collections::VecDeque::new(),
            done: false,
        };
        let stream =
            futures::stream::try_unfold((reader, mapping), |(mut reader, mapping)| async move {
                match reader.next().await? {
                    Some(record) => {
                        let contact: Contact = present_with(record, &mapping)?;
                        Ok(Some((contact, (reader, mapping))))
                    }
                    None => Ok(None),
                }
            });
        Ok(Box::pin(stream))
    }

    async fn get_contact_unified_custom_fields(
        &self,
        scope: &AccountScope,
    ) -> ServiceResult<UnifiedCustomFields> {
        Ok(UnifiedCustomFields {
            mappings: self.mapping(scope).await?,
        })
    }

    async fn set_contact_unified_custom_fields(
        &self,
        scope: &AccountScope,
        mapping: UnifiedCustomFields,
    ) -> ServiceResult<UnifiedCustomFields> {
        for (unified, definition) in &mapping.mappings {
            if unified.trim().is_empty() || definition.trim().is_empty() {
                return Err(ApiError::unprocessable(
                    "mappings",
                    "unified names and definition names must not be empty",
                ));
            }
        }
        sqlx::query(
            "INSERT INTO unified_custom_fields (project_id, kind, mappings) VALUES (?, ?, ?)
             ON CONFLICT (project_id, kind) DO UPDATE SET mappings = excluded.mappings",
        )
        .bind(&scope.project_id)
        .bind(Contact::KIND)
        .bind(serde_json::to_string(&mapping.mappings).unwrap_or_default())
        .execute(&self.pool)
        .await
        .map_err(internal)?;
        Ok(mapping)
    }

    async fn claim_idempotency_key(
        &self,
        scope: &AccountScope,
        key: &str,
        fingerprint: &str,
    ) -> ServiceResult<IdempotencyClaim> {
        let now = Utc::now();
        let mut tx = write_tx(&self.pool).await.map_err(internal)?;
        let abandoned_before = timestamp(now - ABANDONED_CLAIM_AFTER);
        // Keys live 24 hours. A claim whose request never finished (the server stopped
        // mid-way) is given up after a few minutes so that a retry can run; if its write
        // had landed (`record_id`), the key is kept so that the retry finds that record.
        sqlx::query(
            "DELETE FROM idempotency_keys WHERE created_at < ?1
             OR (status IS NULL AND record_id IS NULL AND (claimed_at IS NULL OR claimed_at < ?2))",
        )
        .bind(timestamp(now - IDEMPOTENCY_KEY_LIFETIME))
        .bind(&abandoned_before)
        .execute(&mut *tx)
        .await
        .map_err(internal)?;
        let row = sqlx::query("SELECT fingerprint, status, headers, body, claimed_at FROM idempotency_keys WHERE project_id = ? AND key = ?")
            .bind(&scope.project_id)
            .bind(key)
            .fetch_optional(&mut *tx)
            .await
            .map_err(internal)?;
        let claim = match row {
            None => {
                sqlx::query("INSERT INTO idempotency_keys (project_id, key, fingerprint, created_at, claimed_at) VALUES (?, ?, ?, ?, ?)")
                    .bind(&scope.project_id)
                    .bind(key)
                    .bind(fingerprint)
                    .bind(timestamp(now))
                    .bind(timestamp(now))
                    .execute(&mut *tx)
                    .await
                    .map_err(internal)?;
                IdempotencyClaim::Proceed
            }
            Some(row) if row.get::<String, _>("fingerprint") != fingerprint => {
                return Err(ApiError::unprocessable(
                    "Idempotency-Key",
                    "this Idempotency-Key was used with another request; use a new key for a new request",
                ));
            }
            Some(row) => match row.get::<Option<i64>, _>("status") {
                None if row
                    .get::<Option<String>, _>("claimed_at")
                    .is_some_and(|at| at >= abandoned_before) =>
                {
                    return Err(ApiError::conflict(
                        "the first request with this Idempotency-Key is still running; retry later",
                    ));
                }
                None => {
                    // Abandoned after its write landed: claim it again; the create finds
                    // the record it made.
                    on_key(
                        &mut tx,
                        "UPDATE idempotency_keys SET claimed_at = ? WHERE project_id = ? AND key = ?",
                        Some(&timestamp(now)),
                        scope,
                        key,
                    )
                    .await?;
                    IdempotencyClaim::Proceed
                }
                Some(status) => IdempotencyClaim::Replay(StoredResponse {
                    status: u16::try_from(status).unwrap_or(200),
                    headers: serde_json::from_str(
                        row.get::<Option<&str>, _>("headers").unwrap_or("[]"),
                    )
                    .unwrap_or_default(),
                    body: row.get::<Option<Vec<u8>>, _>("body").unwrap_or_default(),
                }),
            },
        };
        tx.commit().await.map_err(internal)?;
        Ok(claim)
    }

    async fn complete_idempotency_key(
        &self,
        scope: &AccountScope,
        key: &str,
        response: &StoredResponse,
    ) -> ServiceResult<()> {
        sqlx::query("UPDATE idempotency_keys SET status = ?, headers = ?, body = ? WHERE project_id = ? AND key = ?")
            .bind(i64::from(response.status))
            .bind(serde_json::to_string(&response.headers).unwrap_or_default())
            .bind(&response.body)
            .bind(&scope.project_id)
            .bind(key)
            .execute(&self.pool)
            .await
            .map_err(internal)?;
        Ok(())
    }

    async fn release_idempotency_key(&self, scope: &AccountScope, key: &str) -> ServiceResult<()> {
        // A key whose write landed stays, given up at once, so that a retry finds the
        // record; any other unfinished claim goes.
        let mut tx = write_tx(&self.pool).await.map_err(internal)?;
        on_key(
            &mut tx,
            "DELETE FROM idempotency_keys
             WHERE project_id = ? AND key = ? AND status IS NULL AND record_id IS NULL",
            None,
            scope,
            key,
        )
        .await?;
        on_key(
            &mut tx,
            "UPDATE idempotency_keys SET claimed_at = NULL
             WHERE project_id = ? AND key = ? AND status IS NULL",
            None,
            scope,
            key,
        )
        .await?;
        tx.commit().await.map_err(internal)?;
        Ok(())
    }

    async fn list_accounts(
        &self,
        scope: &AccountScope,
        page: &PageRequest,
    ) -> ServiceResult<Page<Account>> {
        self.page(scope, page).await.map(strip_seqs)
    }

    async fn get_account(
        &self,
        scope: &AccountScope,
        id: &str,
        read: &ReadRequest,
    ) -> ServiceResult<Served<Account>> {
        self.get(scope, id, read).await.map(strip_seq)
    }

    async fn create_account(
        &self,
        scope: &AccountScope,
        write: Write<CrmCreateAccountRequestDto>,
    ) -> ServiceResult<Served<Account>> {
        self.create(scope, write).await
    }

    async fn update_account(
        &self,
        scope: &AccountScope,
        id: &str,
        write: Write<CrmCreateAccountRequestDto>,
    ) -> ServiceResult<Served<Account>> {
        self.update(scope, Locator::Id(id), write)
            .await
            .map(strip_seq)
    }

    async fn delete_account(&self, scope: &AccountScope, id: &str) -> ServiceResult<()> {
        self.delete::<Account>(scope, id).await
    }

    async fn list_lists(
        &self,
        scope: &AccountScope,
        page: &PageRequest,
    ) -> ServiceResult<Page<List>> {
        let lists = self.page::<List>(scope, page).await?;
        let mut data = Vec::with_capacity(lists.data.len());
        for entry in lists.data {
            data.push(self.with_items(entry).await?);
        }
        Ok(Page {
            data,
            next: lists.next,
            raw: lists.raw,
        })
    }

    async fn get_list(
        &self,
        scope: &AccountScope,
        id: &str,
        read: &ReadRequest,
    ) -> ServiceResult<Served<List>> {
        let served = self.get::<List>(scope, id, read).await?;
        Ok(Served {
            data: self.with_items(served.data).await?,
            raw: served.raw,
        })
    }

    async fn create_list(
        &self,
        scope: &AccountScope,
        write: Write<CrmCreateListRequestDto>,
    ) -> ServiceResult<Served<List>> {
        let mut served: Served<List> = self.create(scope, write).await?;
        served.data.items = Some(Vec::new());
        Ok(served)
    }

    async fn update_list(
        &self,
        scope: &AccountScope,
        id: &str,
        write: Write<CrmCreateListRequestDto>,
    ) -> ServiceResult<Served<List>> {
        let served = self
            .update::<List, _>(scope, Locator::Id(id), write)
            .await?;
        let (seq, mut data) = served.data;
        data.items = Some(Self::items(&self.pool, seq).await?);
        Ok(Served {
            data,
            raw: served.raw,
        })
    }

    async fn add_list_items(
        &self,
        scope: &AccountScope,
        id: &str,
        item_ids: &[String],
    ) -> ServiceResult<Served<List>> {
        if item_ids.len() > MAX_ITEMS_PER_CALL {
            return Err(ApiError::unprocessable(
                "item_ids",
                format!("at most {MAX_ITEMS_PER_CALL} ids can be added in one call"),
            ));
        }
        let mut tx = write_tx(&self.pool).await.map_err(internal)?;
        let (seq, list) = Self::touch_list(&mut tx, scope, id).await?;
        let target = match list.list_type.and_then(|t| t.value) {
            Some(ListType::Contacts) | None => Contact::KIND,
            Some(ListType::Companies) => Account::KIND,
            Some(other) => {
                return Err(ApiError::unprocessable(
                    "item_ids",
                    format!("the local provider keeps no records for a {other:?} list"),
                ));
            }
        };
        let wanted = Value::from(item_ids.to_vec()).to_string();
        let missing: Vec<String> = sqlx::query(
            "SELECT DISTINCT value FROM json_each(?1)
             WHERE value NOT IN (SELECT id FROM records WHERE linked_account_id = ?2 AND kind = ?3)",
        )
        .bind(&wanted)
        .bind(&scope.account_id)
        .bind(target)
        .fetch_all(&mut *tx)
        .await
        .map_err(internal)?
        .into_iter()
        .map(|r| r.get("value"))
        .collect();
        if !missing.is_empty() {
            return Err(ApiError::unprocessable(
                "item_ids",
                format!("no {target} with the ids {}", missing.join(", ")),
            )
            .with("missing", missing));
        }
        sqlx::query(
            "INSERT OR IGNORE INTO list_items (list_seq, item_id, added)
             SELECT ?1, value, COALESCE((SELECT MAX(added) FROM list_items WHERE list_seq = ?1), 0) + key + 1
             FROM json_each(?2)",
        )
        .bind(seq)
        .bind(&wanted)
        .execute(&mut *tx)
        .await
        .map_err(internal)?;
        let data = Self::list_in_tx(&mut tx, seq).await?;
        tx.commit().await.map_err(internal)?;
        let body = serde_json::json!({ "item_ids": item_ids });
        let raw = raw(
            "POST",
            format!("local://lists/{id}/items"),
            Some(body),
            Some(serde_json::to_value(&data.items).unwrap_or_default()),
        );
        Ok(Served {
            data,
            raw: vec![raw],
        })
    }

    async fn remove_list_item(
        &self,
        scope: &AccountScope,
        id: &str,
        item_id: &str,
    ) -> ServiceResult<Served<List>> {
        let mut tx = write_tx(&self.pool).await.map_err(internal)?;
        let (seq, _) = Self::touch_list(&mut tx, scope, id).await?;
        let removed = sqlx::query("DELETE FROM list_items WHERE list_seq = ? AND item_id = ?")
            .bind(seq)
            .bind(item_id)
            .execute(&mut *tx)
            .await
            .map_err(internal)?;
        if removed.rows_affected() == 0 {
            return Err(ApiError::not_found(format!(
                "{item_id} is not on list {id}"
            )));
        }
        let data = Self::list_in_tx(&mut tx, seq).await?;
        tx.commit().await.map_err(internal)?;
        let raw = raw(
            "DELETE",
            format!("local://lists/{id}/items/{item_id}"),
            None,
            Some(serde_json::to_value(&data.items).unwrap_or_default()),
        );
        Ok(Served {
            data,
            raw: vec![raw],
        })
    }

    async fn list_contact_custom_field_definitions(
        &self,
        scope: &AccountScope,
        page: &PageRequest,
    ) -> ServiceResult<Page<CustomFieldDefinition>> {
        self.page(scope, page).await.map(strip_seqs)
    }

    async fn get_contact_custom_field_definition(
        &self,
        scope: &AccountScope,
        id: &str,
        read: &ReadRequest,
    ) -> ServiceResult<Served<CustomFieldDefinition>> {
        self.get(scope, id, read).await.map(strip_seq)
    }

    async fn create_contact_custom_field_definition(
        &self,
        scope: &AccountScope,
        write: Write<CrmCreateCustomFieldDefinitionRequestDto>,
    ) -> ServiceResult<Served<CustomFieldDefinition>> {
        self.create(scope, write).await
    }

    async fn update_contact_custom_field_definition(
        &self,
        scope: &AccountScope,
        id: &str,
        write: Write<CrmCreateCustomFieldDefinitionRequestDto>,
    ) -> ServiceResult<Served<CustomFieldDefinition>> {
        self.update(scope, Locator::Id(id), write)
            .await
            .map(strip_seq)
    }
}
