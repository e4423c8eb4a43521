//! The built-in `local` provider: the records of a linked account live in this server's
//! own database (SQLite or PostgreSQL), and `remote_id` equals `id`.
//!
//! Every record kind is stored the same way (one row in `records`, its unified JSON in
//! `body`), so create, update, read, page and delete are written once, generic over
//! [`Resource`]; the rules they apply are [`crate::rules`]. Every write is one transaction
//! that lands whole or not at all. Every query names the linked account it reads.

mod lists;
mod paging;
mod presented;
mod raw;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use crm_api::ApiError;
use crm_api::models::{
    Account, Contact, CrmCreateAccountRequestDto, CrmCreateContactRequestDto,
    CrmCreateCustomFieldDefinitionRequestDto, CrmCreateListRequestDto, CustomFieldDefinition,
    JsonObject, List, UnifiedCustomFields,
};
use crm_api::service::{
    AccountScope, CrmProvider, Listed, ListedPage, Page, PageRequest, ReadRequest, RecordStream,
    Served, ServiceResult, Single, Write,
};
use serde_json::Value;
use serde_json::value::RawValue;
use sqlx::Row;

use crate::clock::Clock;
use crate::custom_fields;
use crate::db::{Database, StoreKind, Txn, TxnError, timestamp};
use crate::rules::{self, Resource, parse_body, present, present_stored, typed};
use crate::sqlite_reads::bind_numbered;
use crate::tenancy::{internal, internal_shared, read_failed};
use crate::txn::args;

pub use lists::MAX_ITEMS_PER_CALL;
pub use paging::{EXPORT_BATCH, Order, Position, incremental_start_query, page_query};

/// The provider name of linked accounts served by this module.
pub const PROVIDER: &str = "local";

/// Where an update finds its record.
#[derive(Debug, Clone, Copy)]
enum Locator<'a> {
    Id(&'a str),
    ExternalId(&'a str),
}

/// A unique index refused the write: another record already has the external id.
fn conflict_or_internal(e: TxnError) -> ApiError {
    if e.is_unique_violation() {
        return ApiError::conflict(
            "another record of this linked account already has this external_id",
        )
        .with("field", "external_id");
    }
    internal(e)
}

/// The CRM provider over this server's own database.
#[derive(Clone)]
pub struct LocalProvider {
    db: Database,
    clock: Arc<dyn Clock>,
    /// Stored bodies known to be their own presentation (see `presented`).
    presented: Arc<presented::Presented>,
}

impl LocalProvider {
    pub fn new(db: Database, clock: Arc<dyn Clock>) -> Self {
        Self {
            db,
            clock,
            presented: Arc::default(),
        }
    }

    /// The items of the list stored at `seq`.
    async fn list_items(
        &self,
        scope: &AccountScope,
        seq: i64,
    ) -> ServiceResult<Vec<crm_api::models::ListItem>> {
        let mut conn = self.db.acquire().await.map_err(internal)?;
        let items = lists::items(&mut *conn, scope, seq).await?;
        conn.release();
        Ok(items)
    }

    /// Checks a record's `custom_fields` against the definitions of its linked account.
    async fn resolve_custom_fields(
        tx: &mut Txn,
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
        let rows = tx
            .fetch_all(
                "SELECT body FROM records WHERE linked_account_id = $1 AND kind = $2",
                args![&scope.account_id, CustomFieldDefinition::KIND],
            )
            .await
            .map_err(internal)?;
        let definitions = rows
            .into_iter()
            .map(|r| typed::<CustomFieldDefinition>(&parse_body(&r.text(0))?))
            .collect::<Result<Vec<_>, _>>()?;
        let resolved = custom_fields::resolve(&entries, &definitions)?;
        record.insert("custom_fields".into(), Value::Array(resolved));
        Ok(())
    }

    /// The record an earlier run of this create already made under `key`, when that run
    /// wrote it but never recorded its answer (the server stopped in between).
    async fn landed_create<R: Resource>(
        tx: &mut Txn,
        scope: &AccountScope,
        key: &str,
    ) -> ServiceResult<Option<JsonObject>> {
        let landed = tx
            .fetch_optional(
                "SELECT record_id FROM idempotency_keys WHERE project_id = $1 AND key = $2",
                args![&scope.project_id, key],
            )
            .await
            .map_err(internal)?;
        let Some(id) = landed.and_then(|r| r.opt_text(0)) else {
            return Ok(None);
        };
        let body = tx
            .fetch_optional(
                "SELECT body FROM records WHERE linked_account_id = $1 AND kind = $2 AND id = $3",
                args![&scope.account_id, R::KIND, &id],
            )
            .await
            .map_err(internal)?
            .map(|r| r.text(0));
        match body {
            Some(body) => parse_body(&body).map(Some),
            None => Err(ApiError::conflict(format!(
                "the first request with this Idempotency-Key created {} {id}, which has since been \
                 deleted; use a new key to create another",
                R::NOUN
            ))),
        }
    }

    async fn create<R: Resource, D>(
        &self,
        scope: &AccountScope,
        write: Write<D>,
    ) -> ServiceResult<Served<R>> {
        Ok(self.create_written(scope, write).await?.map(|w| w.data))
    }

    /// Creates a record; the answer keeps the text stored when it is the record's
    /// presentation.
    async fn create_written<R: Resource, D>(
        &self,
        scope: &AccountScope,
        write: Write<D>,
    ) -> ServiceResult<Served<Written<R>>> {
        let now = self.clock.now();
        let id = new_record_id(now);
        let record = rules::new_record::<R>(&write.sent, &id, now)?;
        // A record without custom field values needs nothing from the store to be checked
        // and encoded, so that is done before the write starts: on SQLite the writes of the
        // process take turns, and each turn is kept to the statements.
        let needs_definitions = R::CUSTOM_FIELDS
            && record
                .get("custom_fields")
                .is_some_and(|v| v.as_array().is_some());
        let draft = match needs_definitions {
            false => Draft::Encoded(encode::<R>(record)?),
            true => Draft::NeedsDefinitions(record),
        };
        // Without a key to record it under nor definitions to read, a create is one statement.
        let alone = matches!(draft, Draft::Encoded(_));
        let mut tx = match write.idempotency_key.is_none() && alone {
            true => self.db.begin_alone().await,
            false => self.db.begin().await,
        }
        .map_err(internal)?;
        if let Some(key) = &write.idempotency_key
            && let Some(stored) = Self::landed_create::<R>(&mut tx, scope, key).await?
        {
            tx.commit().await.map_err(internal)?;
            let data = self.present(scope, stored).await?;
            return Ok(Served {
                data: Written { data, text: None },
                raw: Vec::new(),
            });
        }
        let Encoded { data, body } = match draft {
            Draft::Encoded(encoded) => encoded,
            Draft::NeedsDefinitions(mut record) => {
                Self::resolve_custom_fields(&mut tx, scope, &mut record).await?;
                encode::<R>(record)?
            }
        };
        let passthrough = write
            .sent
            .get("passthrough")
            .filter(|p| !p.is_null())
            .map(Value::to_string);
        let position = self.db.position_for(&mut tx).await.map_err(internal)?;
        let created = timestamp(now);
        let external_id = data.external_id().map(str::to_owned);
        tx.execute(
            self.db.pick(
                "INSERT INTO records (linked_account_id, kind, id, body, passthrough, created_at, updated_at, external_id, created_pos, updated_pos)
                 VALUES ($1, $2, $3, $4, $5, $6, $6, $7, $8, $8)",
                "INSERT INTO records (linked_account_id, kind, id, body, passthrough, created_at, updated_at, external_id, created_pos, updated_pos)
                 VALUES ($1, $2, $3, $4, $5, $6, $6, $7, COALESCE($8, pg_current_xact_id()::text::bigint), COALESCE($8, pg_current_xact_id()::text::bigint))",
            ),
            args![
                &scope.account_id,
                R::KIND,
                &id,
                &body,
                &passthrough,
                &created,
                external_id.as_deref(),
                position
            ],
        )
        .await
        .map_err(conflict_or_internal)?;
        if let Some(key) = &write.idempotency_key {
            tx.execute(
                "UPDATE idempotency_keys SET record_id = $1 WHERE project_id = $2 AND key = $3",
                args![&id, &scope.project_id, key.as_str()],
            )
            .await
            .map_err(internal)?;
        }
        tx.commit().await.map_err(internal)?;
        let data = self.written(scope, data, body).await?;
        // A write's answer never carries `raw`, so none is made.
        Ok(Served {
            data,
            raw: Vec::new(),
        })
    }

    async fn update<R: Resource, D>(
        &self,
        scope: &AccountScope,
        at: Locator<'_>,
        write: Write<D>,
    ) -> ServiceResult<Served<(i64, R)>> {
        Ok(self
            .update_written(scope, at, write)
            .await?
            .map(|(seq, written)| (seq, written.data)))
    }

    /// Updates a record; the answer keeps the text stored when it is the record's
    /// presentation.
    async fn update_written<R: Resource, D>(
        &self,
        scope: &AccountScope,
        at: Locator<'_>,
        write: Write<D>,
    ) -> ServiceResult<Served<(i64, Written<R>)>> {
        let now = self.clock.now();
        let (column, value, plain, locked) = match at {
            Locator::Id(id) => (
                "id",
                id,
                "SELECT seq, body, passthrough FROM records WHERE linked_account_id = $1 AND kind = $2 AND id = $3",
                "SELECT seq, body, passthrough FROM records WHERE linked_account_id = $1 AND kind = $2 AND id = $3 FOR UPDATE",
            ),
            Locator::ExternalId(external) => (
                "external_id",
                external,
                "SELECT seq, body, passthrough FROM records WHERE linked_account_id = $1 AND kind = $2 AND external_id = $3",
                "SELECT seq, body, passthrough FROM records WHERE linked_account_id = $1 AND kind = $2 AND external_id = $3 FOR UPDATE",
            ),
        };
        let sql = self.db.pick(plain, locked);
        // The update is worked out first from the committed record, outside any transaction.
        // On SQLite, where the writes of the process take turns, the write then only checks
        // in its turn that the record is still the one it read (else it works it out again).
        // On PostgreSQL it is one statement that applies only if the record is still the one
        // read, and only when it is not does the update run in a transaction of its own.
        let early = match (R::TYPE_FIXED_BY_ITEMS, self.db.sqlite_reads()) {
            (true, _) => None,
            (false, Some(reads)) => reads
                .read(|conn| {
                    let mut statement = conn.prepare_cached(plain)?;
                    bind_numbered(&mut statement, &[&scope.account_id, &R::KIND, &value])?;
                    let mut rows = statement.raw_query();
                    rows.next()?
                        .map(|r| Ok((r.get::<_, i64>(0)?, r.get(1)?, r.get(2)?)))
                        .transpose()
                })
                .ok()
                .flatten(),
            (false, None) => sqlx::query(plain)
                .bind(&scope.account_id)
                .bind(R::KIND)
                .bind(value)
                .fetch_optional(self.db.pool())
                .await
                .ok()
                .flatten()
                .map(|row| (row.get("seq"), row.get("body"), row.get("passthrough"))),
        }
        .and_then(|(seq, body, passthrough): (i64, String, Option<String>)| {
            let revision = revise_alone::<R, D>(&body, passthrough.clone(), &write, now)?;
            Some((seq, body, passthrough, revision))
        });
        let early = match early {
            Some((seq, body, passthrough, revision)) if self.db.kind() == StoreKind::Postgres => {
                let external_id = revision.data.external_id().map(str::to_owned);
                let updated = timestamp(now);
                let mut tx = self.db.begin_alone().await.map_err(internal)?;
                let applied = tx
                    .execute(
                        "UPDATE records SET body = $1, passthrough = $2, updated_at = $3, external_id = $4,
                         updated_pos = pg_current_xact_id()::text::bigint
                         WHERE linked_account_id = $5 AND seq = $6 AND body = $7
                         AND passthrough IS NOT DISTINCT FROM $8",
                        args![
                            &revision.body,
                            &revision.passthrough,
                            &updated,
                            external_id.as_deref(),
                            &scope.account_id,
                            seq,
                            &body,
                            &passthrough
                        ],
                    )
                    .await
                    .map_err(conflict_or_internal)?;
                tx.commit().await.map_err(internal)?;
                if applied == 1 {
                    return self.updated(scope, seq, revision.data, revision.body).await;
                }
                None
            }
            early => early,
        };
        let mut tx = self.db.begin().await.map_err(internal)?;
        let row = tx
            .fetch_optional(sql, args![&scope.account_id, R::KIND, value])
            .await
            .map_err(internal)?
            .ok_or_else(|| {
                ApiError::not_found(format!("{} with {column} {value} not found", R::NOUN))
            })?;
        let seq = row.int(0);
        let current = row.text(1);
        let current_passthrough = row.opt_text(2);
        let revision = match early {
            Some((early_seq, body, passthrough, revision))
                if early_seq == seq && body == current && passthrough == current_passthrough =>
            {
                revision
            }
            _ => {
                let mut record = parse_body(&current)?;
                let type_before = rules::type_of(&record);
                rules::apply_update::<R>(&mut record, &write.sent, write.if_match.as_deref(), now)?;
                if R::TYPE_FIXED_BY_ITEMS
                    && rules::type_of(&record) != type_before
                    && lists::count_items(&mut tx, scope, seq).await? > 0
                {
                    return Err(ApiError::conflict(format!(
                        "a {} that has items cannot change its type",
                        R::NOUN
                    )));
                }
                if R::CUSTOM_FIELDS {
                    Self::resolve_custom_fields(&mut tx, scope, &mut record).await?;
                }
                let Encoded { data, body } = encode::<R>(record)?;
                Revision {
                    data,
                    body,
                    passthrough: next_passthrough(&write.sent, current_passthrough),
                }
            }
        };
        let Revision {
            data,
            body,
            passthrough,
        } = revision;
        let position = self.db.position_for(&mut tx).await.map_err(internal)?;
        let updated = timestamp(now);
        let external_id = data.external_id().map(str::to_owned);
        tx.execute(
            self.db.pick(
                "UPDATE records SET body = $1, passthrough = $2, updated_at = $3, external_id = $4, updated_pos = $5
                 WHERE linked_account_id = $6 AND seq = $7",
                "UPDATE records SET body = $1, passthrough = $2, updated_at = $3, external_id = $4,
                 updated_pos = COALESCE($5, pg_current_xact_id()::text::bigint)
                 WHERE linked_account_id = $6 AND seq = $7",
            ),
            args![
                &body,
                &passthrough,
                &updated,
                external_id.as_deref(),
                position,
                &scope.account_id,
                seq
            ],
        )
        .await
        .map_err(conflict_or_internal)?;
        tx.commit().await.map_err(internal)?;
        self.updated(scope, seq, data, body).await
    }

    /// The answer to an update that stored `data` as `body`.
    async fn updated<R: Resource>(
        &self,
        scope: &AccountScope,
        seq: i64,
        data: R,
        body: String,
    ) -> ServiceResult<Served<(i64, Written<R>)>> {
        let data = self.written(scope, data, body).await?;
        // A write's answer never carries `raw`, so none is made.
        Ok(Served {
            data: (seq, data),
            raw: Vec::new(),
        })
    }

    /// What a record just written as `body` presents as: the model stored, and `body`
    /// itself, unless it holds custom field values to name by the project's mapping.
    async fn written<R: Resource>(
        &self,
        scope: &AccountScope,
        data: R,
        body: String,
    ) -> ServiceResult<Written<R>> {
        Ok(match data.has_custom_fields() {
            true => Written {
                data: self.present(scope, rules::to_object(&data)?).await?,
                text: None,
            },
            false => Written {
                data,
                text: Some(body),
            },
        })
    }

    /// Turns a stored record into its unified form: for contacts, `unified_custom_fields`
    /// from the project's mapping.
    async fn present<R: Resource>(
        &self,
        scope: &AccountScope,
        record: JsonObject,
    ) -> ServiceResult<R> {
        // The mapping only names custom fields: a record without any needs no read of it.
        let mapping = if has_custom_fields(&record) {
            self.mapping_for::<R>(scope).await?
        } else {
            BTreeMap::new()
        };
        present(record, &mapping)
    }

    async fn mapping_for<R: Resource>(
        &self,
        scope: &AccountScope,
    ) -> ServiceResult<BTreeMap<String, String>> {
        if R::CUSTOM_FIELDS {
            self.mapping(scope).await
        } else {
            Ok(BTreeMap::new())
        }
    }

    /// The project's unified custom field mapping for contacts.
    pub(crate) async fn mapping(
        &self,
        scope: &AccountScope,
    ) -> ServiceResult<BTreeMap<String, String>> {
        const MAPPING: &str =
            "SELECT mappings FROM unified_custom_fields WHERE project_id = $1 AND kind = $2";
        let mappings: Option<String> = match self.db.sqlite_reads() {
            Some(reads) => reads
                .read(|conn| {
                    let mut statement = conn.prepare_cached(MAPPING)?;
                    bind_numbered(&mut statement, &[&scope.project_id, &Contact::KIND])?;
                    let mut rows = statement.raw_query();
                    rows.next()?.map(|r| r.get(0)).transpose()
                })
                .map_err(read_failed)?,
            None => {
                let mut conn = self.db.acquire().await.map_err(internal)?;
                let mappings = sqlx::query_scalar(MAPPING)
                    .bind(&scope.project_id)
                    .bind(Contact::KIND)
                    .fetch_optional(&mut *conn)
                    .await
                    .map_err(internal)?;
                conn.release();
                mappings
            }
        };
        parse_mapping(mappings)
    }

    async fn get<R: Resource>(
        &self,
        scope: &AccountScope,
        id: &str,
        read: &ReadRequest,
    ) -> ServiceResult<Served<(i64, R)>> {
        let (seq, body, mappings) = self.read_record::<R>(scope, id).await?;
        let mapping = if R::CUSTOM_FIELDS {
            parse_mapping(mappings)?
        } else {
            BTreeMap::new()
        };
        // The stored object is built only for a `raw` entry, when the caller asked for one.
        if read.raw {
            let record = parse_body(&body)?;
            let raw = raw::read(R::KIND, &record, &read.proxy);
            let data: R = present(record, &mapping)?;
            return Ok(Served {
                data: (seq, data),
                raw: vec![raw],
            });
        }
        Ok(Served {
            data: (seq, present_stored(&body, &mapping)?),
            raw: Vec::new(),
        })
    }

    /// [`LocalProvider::get`], with a body known to present as itself (see [`presented`])
    /// handed over as it is.
    async fn get_listed<R: Resource>(
        &self,
        scope: &AccountScope,
        id: &str,
        read: &ReadRequest,
    ) -> ServiceResult<Served<Single<R>>> {
        if read.raw {
            return Ok(self
                .get::<R>(scope, id, read)
                .await?
                .map(|(_, data)| Single::Typed(data)));
        }
        let (_, body, mappings) = self.read_record::<R>(scope, id).await?;
        let key = presented::Key::of(R::KIND, &body);
        let data = if self.presented.knows(key) {
            let etag = presented::etag(&body).map(str::to_owned);
            Single::Presented { json: body, etag }
        } else {
            let mapping = if R::CUSTOM_FIELDS {
                parse_mapping(mappings)?
            } else {
                BTreeMap::new()
            };
            let record: R = present_stored(&body, &mapping)?;
            if serde_json::to_string(&record)
                .is_ok_and(|text| presented::presents_as_itself(&body, &text, record.etag()))
            {
                self.presented.learn(&[key]);
            }
            Single::Typed(record)
        };
        Ok(Served {
            data,
            raw: Vec::new(),
        })
    }

    /// A record's `seq` and stored body, with the project's stored mapping.
    async fn read_record<R: Resource>(
        &self,
        scope: &AccountScope,
        id: &str,
    ) -> ServiceResult<(i64, String, Option<String>)> {
        // The record and the project's mapping in one round trip.
        const RECORD: &str = "SELECT r.seq, r.body, m.mappings FROM records r \
             LEFT JOIN unified_custom_fields m ON m.project_id = $4 AND m.kind = $5 \
             WHERE r.linked_account_id = $1 AND r.kind = $2 AND r.id = $3";
        let found: Option<(i64, String, Option<String>)> = match self.db.sqlite_reads() {
            Some(reads) => reads
                .read(|conn| {
                    let mut statement = conn.prepare_cached(RECORD)?;
                    bind_numbered(
                        &mut statement,
                        &[
                            &scope.account_id,
                            &R::KIND,
                            &id,
                            &scope.project_id,
                            &Contact::KIND,
                        ],
                    )?;
                    let mut rows = statement.raw_query();
                    rows.next()?
                        .map(|r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                        .transpose()
                })
                .map_err(read_failed)?,
            // On PostgreSQL, with the reads that arrive beside it (see `record_reads`).
            None => {
                let key = crate::record_reads::RecordKey {
                    account_id: scope.account_id.clone(),
                    kind: R::KIND,
                    id: id.to_owned(),
                    project_id: scope.project_id.clone(),
                };
                self.db
                    .record_reads()
                    .expect("PostgreSQL batches its record reads")
                    .read(key)
                    .await
                    .map_err(|e| internal_shared(&e))?
            }
        };
        found.ok_or_else(|| rules::not_found::<R>(id))
    }

    async fn page<R: Resource>(
        &self,
        scope: &AccountScope,
        request: &PageRequest,
    ) -> ServiceResult<Page<(i64, R)>> {
        let page = paging::read_page(&self.db, scope, R::KIND, request).await?;
        let mapping = self.mapping_for::<R>(scope).await?;
        let mut data = Vec::with_capacity(page.rows.len());
        if !request.raw {
            for (seq, body) in page.rows {
                data.push((seq, present_stored(&body, &mapping)?));
            }
            return Ok(Page {
                data,
                next: page.next,
                raw: Vec::new(),
            });
        }
        // The stored objects are built only for the `raw` entry, when the caller asked.
        let mut bodies = Vec::with_capacity(page.rows.len());
        for (seq, body) in page.rows {
            let record = parse_body(&body)?;
            data.push((seq, present(record.clone(), &mapping)?));
            bodies.push(Value::Object(record));
        }
        Ok(Page {
            data,
            next: page.next,
            raw: vec![raw::page(R::KIND, request, &page.from, bodies)],
        })
    }

    /// A page whose stored bodies that present as themselves are handed over as they are
    /// (see `presented`); the others are presented, and learned when they turn out so.
    async fn listed<R: Resource>(
        &self,
        scope: &AccountScope,
        request: &PageRequest,
    ) -> ServiceResult<ListedPage<R>> {
        if request.raw {
            return self
                .page(scope, request)
                .await
                .map(|page| ListedPage::from(strip_seqs(page)));
        }
        let page = paging::read_page(&self.db, scope, R::KIND, request).await?;
        let keys: Vec<presented::Key> = page
            .rows
            .iter()
            .map(|(_, body)| presented::Key::of(R::KIND, body))
            .collect();
        let known = self.presented.known(&keys);
        let mut mapping = None;
        let mut learned = Vec::new();
        let mut data = Vec::with_capacity(page.rows.len());
        for (((_, body), key), known) in page.rows.into_iter().zip(keys).zip(known) {
            if known {
                let json = RawValue::from_string(body)
                    .map_err(|e| ApiError::internal(format!("a stored record is corrupt: {e}")))?;
                data.push(Listed::Presented(json));
                continue;
            }
            // The mapping is read only for a page with a body not known yet.
            let mapping = match &mut mapping {
                Some(mapping) => mapping,
                None => mapping.insert(self.mapping_for::<R>(scope).await?),
            };
            let record: R = present_stored(&body, mapping)?;
            if serde_json::to_string(&record)
                .is_ok_and(|text| presented::presents_as_itself(&body, &text, record.etag()))
            {
                learned.push(key);
            }
            data.push(Listed::Typed(record));
        }
        self.presented.learn(&learned);
        Ok(ListedPage {
            data,
            next: page.next,
            raw: Vec::new(),
        })
    }

    async fn delete<R: Resource>(&self, scope: &AccountScope, id: &str) -> ServiceResult<()> {
        let mut tx = self.db.begin().await.map_err(internal)?;
        let deleted = tx
            .execute(
                "DELETE FROM records WHERE linked_account_id = $1 AND kind = $2 AND id = $3",
                args![&scope.account_id, R::KIND, id],
            )
            .await
            .map_err(internal)?;
        if deleted == 0 {
            return Err(rules::not_found::<R>(id));
        }
        // A deleted record leaves every list of its linked account.
        lists::forget_item(&mut tx, scope, id).await?;
        tx.commit().await.map_err(internal)?;
        Ok(())
    }
}

/// A record just written, as its answer presents it: with the text stored when that text is
/// its presentation (it holds no custom field values).
struct Written<R> {
    data: R,
    text: Option<String>,
}

impl<R: Resource> Written<R> {
    /// The record handed over as the text stored, when that is its presentation.
    fn single(self) -> Single<R> {
        match self.text {
            Some(json) => Single::Presented {
                etag: self.data.etag().map(str::to_owned),
                json,
            },
            None => Single::Typed(self.data),
        }
    }
}

/// A record as an update leaves it, encoded for storing.
struct Revision<R> {
    data: R,
    body: String,
    passthrough: Option<String>,
}

/// The passthrough an update stores: the one sent (`null` clears it), else the stored one.
fn next_passthrough(sent: &JsonObject, stored: Option<String>) -> Option<String> {
    match sent.get("passthrough") {
        Some(Value::Null) => None,
        Some(p) => Some(p.to_string()),
        None => stored,
    }
}

/// The record `body` after `write`, when working that out needs nothing from the store
/// (no custom field values to check against their definitions); `None` when it does, or
/// when the update fails, which is then decided again in the write's own transaction.
fn revise_alone<R: Resource, D>(
    body: &str,
    passthrough: Option<String>,
    write: &Write<D>,
    now: chrono::DateTime<chrono::Utc>,
) -> Option<Revision<R>> {
    let mut record = parse_body(body).ok()?;
    rules::apply_update::<R>(&mut record, &write.sent, write.if_match.as_deref(), now).ok()?;
    if R::CUSTOM_FIELDS && record.get("custom_fields").is_some_and(Value::is_array) {
        return None;
    }
    let Encoded { data, body } = encode::<R>(record).ok()?;
    Some(Revision {
        data,
        body,
        passthrough: next_passthrough(&write.sent, passthrough),
    })
}

/// Whether a record holds custom field values (which presenting it names by the mapping).
fn has_custom_fields(record: &JsonObject) -> bool {
    record
        .get("custom_fields")
        .and_then(Value::as_array)
        .is_some_and(|entries| !entries.is_empty())
}

/// A record checked against its kind's model: the model, and the JSON text stored.
struct Encoded<R> {
    data: R,
    body: String,
}

/// A record to create: encoded, or waiting for its custom fields to be checked against their
/// definitions, which are read in the write's transaction.
enum Draft<R> {
    Encoded(Encoded<R>),
    NeedsDefinitions(JsonObject),
}

fn encode<R: Resource>(record: JsonObject) -> ServiceResult<Encoded<R>> {
    let data: R = rules::typed_owned(record)?;
    // The model's own text: what its JSON object would write, without building the object.
    let body = serde_json::to_string(&data)
        .map_err(|e| ApiError::internal(format!("could not encode a record: {e}")))?;
    Ok(Encoded { data, body })
}

/// A stored mapping (JSON) as the map it is; none stored is the empty mapping.
fn parse_mapping(stored: Option<String>) -> ServiceResult<BTreeMap<String, String>> {
    match stored {
        Some(m) => serde_json::from_str(&m)
            .map_err(|e| ApiError::internal(format!("a stored mapping is corrupt: {e}"))),
        None => Ok(BTreeMap::new()),
    }
}

fn strip_seq<T>(served: Served<(i64, T)>) -> Served<T> {
    served.map(|(_, data)| data)
}

fn strip_seqs<T>(page: Page<(i64, T)>) -> Page<T> {
    Page {
        data: page.data.into_iter().map(|(_, d)| d).collect(),
        next: page.next,
        raw: page.raw,
    }
}

#[async_trait]
impl CrmProvider for LocalProvider {
    async fn list_contacts(
        &self,
        scope: &AccountScope,
        page: &PageRequest,
    ) -> ServiceResult<Page<Contact>> {
        self.page(scope, page).await.map(strip_seqs)
    }

    async fn list_contacts_listed(
        &self,
        scope: &AccountScope,
        page: &PageRequest,
    ) -> ServiceResult<ListedPage<Contact>> {
        self.listed(scope, page).await
    }

    async fn get_contact(
        &self,
        scope: &AccountScope,
        id: &str,
        read: &ReadRequest,
    ) -> ServiceResult<Served<Contact>> {
        self.get(scope, id, read).await.map(strip_seq)
    }

    async fn get_contact_single(
        &self,
        scope: &AccountScope,
        id: &str,
        read: &ReadRequest,
    ) -> ServiceResult<Served<Single<Contact>>> {
        self.get_listed(scope, id, read).await
    }

    async fn create_contact(
        &self,
        scope: &AccountScope,
        write: Write<CrmCreateContactRequestDto>,
    ) -> ServiceResult<Served<Contact>> {
        self.create(scope, write).await
    }

    async fn create_contact_single(
        &self,
        scope: &AccountScope,
        write: Write<CrmCreateContactRequestDto>,
    ) -> ServiceResult<Served<Single<Contact>>> {
        Ok(self
            .create_written(scope, write)
            .await?
            .map(Written::single))
    }

    async fn update_contact_single(
        &self,
        scope: &AccountScope,
        id: &str,
        write: Write<CrmCreateContactRequestDto>,
    ) -> ServiceResult<Served<Single<Contact>>> {
        let served = self.update_written(scope, Locator::Id(id), write).await?;
        Ok(served.map(|(_, written)| written.single()))
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
        updated_after: Option<chrono::DateTime<chrono::Utc>>,
    ) -> ServiceResult<RecordStream<Contact>> {
        let mapping = self.mapping(scope).await?;
        let reader = paging::BatchReader::new(
            self.db.clone(),
            scope.account_id.clone(),
            Contact::KIND,
            updated_after,
        );
        let stream =
            futures::stream::try_unfold((reader, mapping), |(mut reader, mapping)| async move {
                match reader.next().await? {
                    Some(record) => {
                        let contact: Contact = present(record, &mapping)?;
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
            if rules::is_blank(unified) || rules::is_blank(definition) {
                return Err(ApiError::unprocessable(
                    "mappings",
                    "unified names and definition names must not be empty",
                ));
            }
        }
        let mappings = serde_json::to_string(&mapping.mappings).unwrap_or_default();
        let mut tx = self.db.begin().await.map_err(internal)?;
        tx.execute(
            "INSERT INTO unified_custom_fields (project_id, kind, mappings) VALUES ($1, $2, $3)
             ON CONFLICT (project_id, kind) DO UPDATE SET mappings = excluded.mappings",
            args![&scope.project_id, Contact::KIND, &mappings],
        )
        .await
        .map_err(internal)?;
        tx.commit().await.map_err(internal)?;
        Ok(mapping)
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
        let mut conn = self.db.acquire().await.map_err(internal)?;
        for (seq, mut list) in lists.data {
            list.items = Some(lists::items(&mut *conn, scope, seq).await?);
            data.push(list);
        }
        conn.release();
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
        let (seq, mut list) = served.data;
        list.items = Some(self.list_items(scope, seq).await?);
        Ok(Served {
            data: list,
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
        data.items = Some(self.list_items(scope, seq).await?);
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
        lists::add_items(&self.db, self.clock.now(), scope, id, item_ids).await
    }

    async fn remove_list_item(
        &self,
        scope: &AccountScope,
        id: &str,
        item_id: &str,
    ) -> ServiceResult<Served<List>> {
        lists::remove_item(&self.db, self.clock.now(), scope, id, item_id).await
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

/// A new record's id: a version-7 UUID, whose first 48 bits are the creation time in
/// milliseconds and the rest random. Records created one after another get ids that sort
/// together, so each insert goes to the last page of the id index rather than to a random
/// one: a batch of creates writes a few pages of that index to the WAL, not one each. The
/// time it shows is the record's `created_at`, which every answer carries anyway.
fn new_record_id(now: chrono::DateTime<chrono::Utc>) -> String {
    let millis = u64::try_from(now.timestamp_millis()).unwrap_or_default();
    uuid::Builder::from_unix_timestamp_millis(millis, &rand::random())
        .into_uuid()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ids are UUIDs that sort by creation time, each unique.
    #[test]
    fn record_ids_sort_in_the_order_records_were_created() {
        let start = chrono::Utc::now();
        let ids: Vec<String> = (0..200)
            .map(|i| new_record_id(start + chrono::Duration::milliseconds(i)))
            .collect();
        for id in &ids {
            let parsed = uuid::Uuid::parse_str(id).expect("a UUID");
            assert_eq!(parsed.get_version_num(), 7, "{id}");
            assert_eq!(
                id,
                &parsed.hyphenated().to_string(),
                "lower-case, hyphenated"
            );
        }
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(sorted, ids, "ids of later records sort after earlier ones");
        let same_time: std::collections::HashSet<String> =
            (0..1000).map(|_| new_record_id(start)).collect();
        assert_eq!(
            same_time.len(),
            1000,
            "ids made in the same millisecond differ"
        );
    }

    /// A record's stored text is written from its model directly: it must be the text its
    /// JSON object writes, which reads and pages hand over as it is.
    #[test]
    fn a_record_is_stored_as_its_json_object_writes() {
        let sent: JsonObject = serde_json::from_str(
            r#"{"first_name":"Ada","last_name":"Lovelace","emails":["ada@example.com"],
                "phone_numbers":["+44 20 7946 0000"],"external_id":"ext-1",
                "custom_fields":[{"name":"tier","value":3.5}],"tags":[{"name":"vip"}],
                "last_activity_at":"2024-01-01T00:00:00.000Z"}"#,
        )
        .unwrap();
        let now = chrono::DateTime::parse_from_rfc3339("2025-06-01T12:00:00.123456Z")
            .unwrap()
            .to_utc();
        let record = rules::new_record::<Contact>(&sent, "c-1", now).unwrap();
        let Encoded { data, body } = encode::<Contact>(record).unwrap();
        let object = serde_json::to_string(&rules::to_object(&data).unwrap()).unwrap();
        assert_eq!(body, object);
        assert_eq!(data.external_id(), Some("ext-1"));
        assert!(data.has_custom_fields());
        let record = rules::new_record::<Account>(
            &serde_json::from_str(r#"{"name":"Acme","owner_id":"o-1"}"#).unwrap(),
            "a-1",
            now,
        )
        .unwrap();
        let Encoded { data, body } = encode::<Account>(record).unwrap();
        assert_eq!(
            body,
            serde_json::to_string(&rules::to_object(&data).unwrap()).unwrap()
        );
    }
}
