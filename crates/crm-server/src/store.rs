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
    CustomFieldType, JsonObject, List, ListItem, ListType, RawResponse,
};
use crm_api::service::{
    AccountScope, ApiKey, CrmService, Page, PageRequest, ReadRequest, Served, ServiceResult, Write,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use sqlx::{Row, SqlitePool};

use crate::cursor::Cursor;
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

    /// Fills in what a new record gets when the body leaves it out.
    fn defaults(_record: &mut JsonObject) {}

    /// Recomputes the fields derived from others.
    fn derive(_record: &mut JsonObject) {}

    /// Checks the record as it would be stored.
    fn check(_record: &JsonObject) -> Result<(), ApiError> {
        Ok(())
    }
}

impl Resource for Contact {
    const KIND: &'static str = "contacts";
    const NOUN: &'static str = "contact";

    fn derive(record: &mut JsonObject) {
        // The local provider's ids are our ids.
        for (field, remote) in [
            ("deal_ids", "remote_deal_ids"),
            ("account_ids", "remote_account_ids"),
        ] {
            match record.get(field).cloned() {
                Some(ids) => record.insert(remote.to_owned(), ids),
                None => record.remove(remote),
            };
        }
    }
}

impl Resource for Account {
    const KIND: &'static str = "accounts";
    const NOUN: &'static str = "account";

    fn derive(record: &mut JsonObject) {
        match record.get("owner_id").cloned() {
            Some(owner) => record.insert("remote_owner_id".to_owned(), owner),
            None => record.remove("remote_owner_id"),
        };
    }
}

impl Resource for List {
    const KIND: &'static str = "lists";
    const NOUN: &'static str = "list";

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
/// for the provider and does not become part of the unified record.
fn merge(record: &mut JsonObject, sent: &JsonObject) {
    for (field, value) in sent {
        if field == "passthrough" {
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

fn not_found<R: Resource>(id: &str) -> ApiError {
    ApiError::not_found(format!("{} {id} not found", R::NOUN))
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
        record.insert(
            "updated_at".into(),
            serde_json::to_value(now).unwrap_or_default(),
        );
        R::derive(&mut record);
        R::check(&record)?;
        let data: R = typed(&record)?;
        let stored = to_object(&data)?;
        let passthrough = write
            .sent
            .get("passthrough")
            .filter(|p| !p.is_null())
            .map(Value::to_string);
        let mut tx = write_tx(&self.pool).await.map_err(internal)?;
        sqlx::query(
            "INSERT INTO records (linked_account_id, kind, id, body, passthrough, created_at, updated_at)
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&scope.account_id)
        .bind(R::KIND)
        .bind(&id)
        .bind(Value::Object(stored.clone()).to_string())
        .bind(passthrough)
        .bind(timestamp(now))
        .bind(timestamp(now))
        .execute(&mut *tx)
        .await
        .map_err(internal)?;
        tx.commit().await.map_err(internal)?;
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
        id: &str,
        write: Write<D>,
    ) -> ServiceResult<Served<R>> {
        let now = Utc::now();
        let mut tx = write_tx(&self.pool).await.map_err(internal)?;
        let row = sqlx::query("SELECT seq, body, passthrough FROM records WHERE linked_account_id = ? AND kind = ? AND id = ?")
            .bind(&scope.account_id)
            .bind(R::KIND)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(internal)?
            .ok_or_else(|| not_found::<R>(id))?;
        let seq: i64 = row.get("seq");
        let mut record = parse_body(row.get("body"))?;
        merge(&mut record, &write.sent);
        record.insert(
            "updated_at".into(),
            serde_json::to_value(now).unwrap_or_default(),
        );
        R::derive(&mut record);
        R::check(&record)?;
        let data: R = typed(&record)?;
        let stored = to_object(&data)?;
        let passthrough = match write.sent.get("passthrough") {
            Some(Value::Null) => None,
            Some(p) => Some(p.to_string()),
            None => row.get::<Option<String>, _>("passthrough"),
        };
        sqlx::query("UPDATE records SET body = ?, passthrough = ?, updated_at = ? WHERE seq = ?")
            .bind(Value::Object(stored.clone()).to_string())
            .bind(passthrough)
            .bind(timestamp(now))
            .bind(seq)
            .execute(&mut *tx)
            .await
            .map_err(internal)?;
        tx.commit().await.map_err(internal)?;
        let raw = raw(
            "PATCH",
            format!("local://{}/{id}", R::KIND),
            Some(Value::Object(write.sent)),
            Some(Value::Object(stored)),
        );
        Ok(Served {
            data,
            raw: vec![raw],
        })
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
        let data: R = typed(&record)?;
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
        let rows = sqlx::query(
            "SELECT seq, body FROM records
             WHERE linked_account_id = ?1 AND kind = ?2 AND seq > ?3 AND (?4 IS NULL OR updated_at > ?4)
             ORDER BY seq LIMIT ?5",
        )
        .bind(&scope.account_id)
        .bind(R::KIND)
        .bind(after)
        .bind(&updated_after)
        .bind(i64::from(request.page_size) + 1)
        .fetch_all(&self.pool)
        .await
        .map_err(internal)?;
        let more = rows.len() > request.page_size as usize;
        let mut data = Vec::with_capacity(rows.len());
        let mut bodies = Vec::with_capacity(rows.len());
        for row in rows.into_iter().take(request.page_size as usize) {
            let record = parse_body(row.get("body"))?;
            data.push((row.get::<i64, _>("seq"), typed(&record)?));
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
        record.insert(
            "updated_at".into(),
            serde_json::to_value(now).unwrap_or_default(),
        );
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
        self.update(scope, id, write).await
    }

    async fn delete_contact(&self, scope: &AccountScope, id: &str) -> ServiceResult<()> {
        self.delete::<Contact>(scope, id).await
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
        self.update(scope, id, write).await
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
        if write.sent.contains_key("type") {
            let current = self
                .get::<List>(scope, id, &ReadRequest::default())
                .await?
                .data;
            let items = Self::items(&self.pool, current.0).await?;
            let from = current.1.list_type.and_then(|t| t.value);
            let to = write.body.list_type.as_ref().and_then(|t| t.value);
            if !items.is_empty() && from != to {
                return Err(ApiError::conflict(
                    "a list that has items cannot change its type",
                ));
            }
        }
        let served: Served<List> = self.update(scope, id, write).await?;
        let seq = self
            .get::<List>(scope, id, &ReadRequest::default())
            .await?
            .data
            .0;
        let mut data = served.data;
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
        self.update(scope, id, write).await
    }
}
