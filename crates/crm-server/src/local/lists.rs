//! The items of the local provider's lists: which records a list holds, in the order they
//! were added. Every query names the linked account.

use chrono::{DateTime, Utc};
use crm_api::ApiError;
use crm_api::models::{Account, Contact, List, ListItem, ListType};
use crm_api::service::{AccountScope, Served, ServiceResult};
use serde_json::Value;

use super::raw;
use crate::db::{Database, Txn, timestamp};
use crate::rules::{self, Resource, parse_body, typed};
use crate::tenancy::internal;
use crate::txn::args;

/// The most ids one Add List Items call takes.
pub const MAX_ITEMS_PER_CALL: usize = 1000;

/// The items of the list stored at `seq`, in the order they were added.
pub async fn items<'e>(
    executor: impl sqlx::Executor<'e, Database = sqlx::Any>,
    scope: &AccountScope,
    seq: i64,
) -> ServiceResult<Vec<ListItem>> {
    let ids: Vec<String> = sqlx::query_scalar(
        "SELECT item_id FROM list_items WHERE linked_account_id = $1 AND list_seq = $2 ORDER BY added",
    )
    .bind(&scope.account_id)
    .bind(seq)
    .fetch_all(executor)
    .await
    .map_err(internal)?;
    Ok(ids.into_iter().map(list_item).collect())
}

/// A record on a list: the local provider's ids are its remote ids.
fn list_item(id: String) -> ListItem {
    ListItem {
        id: Some(id.clone()),
        remote_id: Some(id),
    }
}

/// How many items the list stored at `seq` holds.
pub async fn count_items(tx: &mut Txn, scope: &AccountScope, seq: i64) -> ServiceResult<i64> {
    let row = tx
        .fetch_optional(
            "SELECT COUNT(*) FROM list_items WHERE linked_account_id = $1 AND list_seq = $2",
            args![&scope.account_id, seq],
        )
        .await
        .map_err(internal)?;
    Ok(row.map(|r| r.int(0)).unwrap_or(0))
}

/// [`items`] in a write transaction.
async fn items_in(tx: &mut Txn, scope: &AccountScope, seq: i64) -> ServiceResult<Vec<ListItem>> {
    let rows = tx
        .fetch_all(
            "SELECT item_id FROM list_items WHERE linked_account_id = $1 AND list_seq = $2 ORDER BY added",
            args![&scope.account_id, seq],
        )
        .await
        .map_err(internal)?;
    Ok(rows.into_iter().map(|r| list_item(r.text(0))).collect())
}

/// Takes a deleted record off every list of its linked account.
pub async fn forget_item(tx: &mut Txn, scope: &AccountScope, item_id: &str) -> ServiceResult<()> {
    tx.execute(
        "DELETE FROM list_items WHERE linked_account_id = $1 AND item_id = $2",
        args![&scope.account_id, item_id],
    )
    .await
    .map_err(internal)?;
    Ok(())
}

/// Finds a list for a change to its items, locks it, and marks it written now.
async fn touch_list(
    db: &Database,
    tx: &mut Txn,
    now: DateTime<Utc>,
    scope: &AccountScope,
    id: &str,
) -> ServiceResult<(i64, List)> {
    let row = tx
        .fetch_optional(
            db.pick(
                "SELECT seq, body FROM records WHERE linked_account_id = $1 AND kind = 'lists' AND id = $2",
                "SELECT seq, body FROM records WHERE linked_account_id = $1 AND kind = 'lists' AND id = $2 FOR UPDATE",
            ),
            args![&scope.account_id, id],
        )
        .await
        .map_err(internal)?
        .ok_or_else(|| rules::not_found::<List>(id))?;
    let seq = row.int(0);
    let mut record = parse_body(&row.text(1))?;
    rules::stamp(&mut record, now);
    let position = db.position_in(tx).await.map_err(internal)?;
    let body = Value::Object(record.clone()).to_string();
    let updated = timestamp(now);
    tx.execute(
        "UPDATE records SET body = $1, updated_at = $2, updated_pos = $3
         WHERE linked_account_id = $4 AND seq = $5",
        args![&body, &updated, position, &scope.account_id, seq],
    )
    .await
    .map_err(internal)?;
    Ok((seq, typed(&record)?))
}

/// Adds records to a list, in the order given; ids already on it keep their place.
pub async fn add_items(
    db: &Database,
    now: DateTime<Utc>,
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
    let mut tx = db.begin().await.map_err(internal)?;
    let (seq, mut list) = touch_list(db, &mut tx, now, scope, id).await?;
    let target = match list.list_type.as_ref().and_then(|t| t.value) {
        Some(ListType::Contacts) | None => Contact::KIND,
        Some(ListType::Companies) => Account::KIND,
        Some(other) => {
            return Err(ApiError::unprocessable(
                "item_ids",
                format!("the local provider keeps no records for a {other:?} list"),
            ));
        }
    };
    let mut wanted: Vec<&str> = Vec::with_capacity(item_ids.len());
    for item in item_ids {
        if !wanted.contains(&item.as_str()) {
            wanted.push(item);
        }
    }
    let mut missing = Vec::new();
    for item in &wanted {
        let found = tx
            .fetch_optional(
                "SELECT 1 FROM records WHERE linked_account_id = $1 AND kind = $2 AND id = $3",
                args![&scope.account_id, target, *item],
            )
            .await
            .map_err(internal)?;
        if found.is_none() {
            missing.push((*item).to_owned());
        }
    }
    if !missing.is_empty() {
        return Err(ApiError::unprocessable(
            "item_ids",
            format!("no {target} with the ids {}", missing.join(", ")),
        )
        .with("missing", missing));
    }
    let last = tx
        .fetch_optional(
            "SELECT MAX(added) FROM list_items WHERE linked_account_id = $1 AND list_seq = $2",
            args![&scope.account_id, seq],
        )
        .await
        .map_err(internal)?
        .and_then(|r| r.opt_int(0));
    let mut added = last.unwrap_or(0);
    for item in &wanted {
        added += 1;
        tx.execute(
            "INSERT INTO list_items (linked_account_id, list_seq, item_id, added) VALUES ($1, $2, $3, $4)
             ON CONFLICT DO NOTHING",
            args![&scope.account_id, seq, *item, added],
        )
        .await
        .map_err(internal)?;
    }
    list.items = Some(items_in(&mut tx, scope, seq).await?);
    tx.commit().await.map_err(internal)?;
    let body = serde_json::json!({ "item_ids": item_ids });
    let raw = raw::list_items("POST", format!("lists/{id}/items"), Some(body), &list.items);
    Ok(Served {
        data: list,
        raw: vec![raw],
    })
}

/// Takes one record off a list.
pub async fn remove_item(
    db: &Database,
    now: DateTime<Utc>,
    scope: &AccountScope,
    id: &str,
    item_id: &str,
) -> ServiceResult<Served<List>> {
    let mut tx = db.begin().await.map_err(internal)?;
    let (seq, mut list) = touch_list(db, &mut tx, now, scope, id).await?;
    let removed = tx
        .execute(
            "DELETE FROM list_items WHERE linked_account_id = $1 AND list_seq = $2 AND item_id = $3",
            args![&scope.account_id, seq, item_id],
        )
        .await
        .map_err(internal)?;
    if removed == 0 {
        return Err(ApiError::not_found(format!(
            "{item_id} is not on list {id}"
        )));
    }
    list.items = Some(items_in(&mut tx, scope, seq).await?);
    tx.commit().await.map_err(internal)?;
    let raw = raw::list_items(
        "DELETE",
        format!("lists/{id}/items/{item_id}"),
        None,
        &list.items,
    );
    Ok(Served {
        data: list,
        raw: vec![raw],
    })
}
