//! Lists: named lists of contacts or companies, and the records on them.

use axum::extract::State;
use axum::response::Response;

use super::{Shape, page, single, written};
use crate::error::ApiError;
use crate::extract::{ItemId, JsonBody, RecordId};
use crate::models::{CrmCreateListRequestDto, CrmListItemsRequestDto, ListResult, ListsPaginated};
use crate::params::{
    AccountHeader, CrmQuery, IdempotencyHeader, IfMatchHeader, ListItemPath, PageParams,
    ReadParams, RecordPath,
};
use crate::service::{AccountScope, AppState};

const TAG: &str = "Lists";

/// List Lists
///
/// Lists the lists of the linked account, oldest first, one page at a time.
#[utoipa::path(
    get, path = "/unified/crm/lists", tag = TAG, operation_id = "crm_list_lists",
    params(AccountHeader, ReadParams, PageParams),
    responses((status = 200, description = "A page of lists.", body = ListsPaginated)),
)]
pub async fn list(
    State(state): State<AppState>,
    scope: AccountScope,
    query: CrmQuery,
) -> Result<Response, ApiError> {
    let lists = state
        .provider(&scope)?
        .list_lists(&scope, &(&query).into())
        .await?;
    page(lists, &query, Shape::Plain, |data, next, raw| {
        ListsPaginated { next, data, raw }
    })
}

/// Create List
///
/// Creates an empty list in the linked account and returns it.
#[utoipa::path(
    post, path = "/unified/crm/lists", tag = TAG, operation_id = "crm_create_list",
    params(AccountHeader, IdempotencyHeader),
    request_body = CrmCreateListRequestDto,
    responses((status = 200, description = "The list as created.", headers(("ETag" = String, description = "The etag of the record, as in its `etag` field.")), body = ListResult)),
)]
pub async fn create(
    State(state): State<AppState>,
    scope: AccountScope,
    JsonBody(write): JsonBody<CrmCreateListRequestDto>,
) -> Result<Response, ApiError> {
    let list = state.provider(&scope)?.create_list(&scope, write).await?;
    written(list, false, |data, raw| ListResult { data, raw })
}

/// Get List
///
/// Returns one list of the linked account with its items.
#[utoipa::path(
    get, path = "/unified/crm/lists/{id}", tag = TAG, operation_id = "crm_get_list",
    params(AccountHeader, RecordPath, ReadParams),
    responses((status = 200, description = "The list.", headers(("ETag" = String, description = "The etag of the record, as in its `etag` field.")), body = ListResult)),
)]
pub async fn get(
    State(state): State<AppState>,
    scope: AccountScope,
    RecordId(id): RecordId,
    query: CrmQuery,
) -> Result<Response, ApiError> {
    let list = state
        .provider(&scope)?
        .get_list(&scope, &id, &(&query).into())
        .await?;
    single(list, &query, Shape::Plain, |data, raw| ListResult {
        data,
        raw,
    })
}

/// Update List
///
/// Renames or retypes a list. Only the fields present in the body change. A list that has
/// items cannot change its type (409).
#[utoipa::path(
    patch, path = "/unified/crm/lists/{id}", tag = TAG, operation_id = "crm_update_list",
    params(AccountHeader, RecordPath, IfMatchHeader),
    request_body = CrmCreateListRequestDto,
    responses((status = 200, description = "The list as updated.", headers(("ETag" = String, description = "The etag of the record, as in its `etag` field.")), body = ListResult)),
)]
pub async fn update(
    State(state): State<AppState>,
    scope: AccountScope,
    RecordId(id): RecordId,
    JsonBody(write): JsonBody<CrmCreateListRequestDto>,
) -> Result<Response, ApiError> {
    let list = state
        .provider(&scope)?
        .update_list(&scope, &id, write)
        .await?;
    written(list, false, |data, raw| ListResult { data, raw })
}

/// Add List Items
///
/// Adds records to a list. A `contacts` list takes contact ids and a `companies` list takes
/// account ids of the same linked account; an unknown id answers 422 and adds nothing.
/// Adding an item that is already on the list changes nothing.
#[utoipa::path(
    post, path = "/unified/crm/lists/{id}/items", tag = TAG, operation_id = "crm_add_list_items",
    params(AccountHeader, RecordPath, IdempotencyHeader),
    request_body = CrmListItemsRequestDto,
    responses((status = 200, description = "The list with its items.", body = ListResult)),
)]
pub async fn add_items(
    State(state): State<AppState>,
    scope: AccountScope,
    RecordId(id): RecordId,
    JsonBody(write): JsonBody<CrmListItemsRequestDto>,
) -> Result<Response, ApiError> {
    let list = state
        .provider(&scope)?
        .add_list_items(&scope, &id, &write.body.item_ids)
        .await?;
    written(list, false, |data, raw| ListResult { data, raw })
}

/// Remove List Item
///
/// Removes one record from a list. An id that is not on the list answers 404.
#[utoipa::path(
    delete, path = "/unified/crm/lists/{id}/items/{item_id}", tag = TAG, operation_id = "crm_remove_list_item",
    params(AccountHeader, RecordPath, ListItemPath),
    responses((status = 200, description = "The list with its remaining items.", body = ListResult)),
)]
pub async fn remove_item(
    State(state): State<AppState>,
    scope: AccountScope,
    RecordId(id): RecordId,
    ItemId(item_id): ItemId,
) -> Result<Response, ApiError> {
    let list = state
        .provider(&scope)?
        .remove_list_item(&scope, &id, &item_id)
        .await?;
    written(list, false, |data, raw| ListResult { data, raw })
}
