//! Accounts: companies and organisations in the connected CRM.

use axum::extract::State;
use axum::response::Response;

use super::{Shape, no_content, page, single, written};
use crate::error::ApiError;
use crate::extract::{JsonBody, RecordId};
use crate::models::{AccountResult, AccountsPaginated, CrmCreateAccountRequestDto};
use crate::params::{
    AccountHeader, CrmQuery, IdempotencyHeader, IfMatchHeader, PageParams, ReadParams, RecordPath,
};
use crate::service::{AccountScope, AppState};

const TAG: &str = "Accounts";

/// List Accounts
///
/// Lists the accounts (companies) of the linked account, oldest first, one page at a time.
#[utoipa::path(
    get, path = "/unified/crm/accounts", tag = TAG, operation_id = "crm_list_accounts",
    params(AccountHeader, ReadParams, PageParams),
    responses((status = 200, description = "A page of accounts.", body = AccountsPaginated)),
)]
pub async fn list(
    State(state): State<AppState>,
    scope: AccountScope,
    query: CrmQuery,
) -> Result<Response, ApiError> {
    let accounts = state
        .provider(&scope)?
        .list_accounts(&scope, &(&query).into())
        .await?;
    page(accounts, &query, Shape::Plain, |data, next, raw| {
        AccountsPaginated { next, data, raw }
    })
}

/// Create Account
///
/// Creates an account (company) in the linked account and returns it.
#[utoipa::path(
    post, path = "/unified/crm/accounts", tag = TAG, operation_id = "crm_create_account",
    params(AccountHeader, IdempotencyHeader),
    request_body = CrmCreateAccountRequestDto,
    responses((status = 200, description = "The account as created.", headers(("ETag" = String, description = "The etag of the record, as in its `etag` field.")), body = AccountResult)),
)]
pub async fn create(
    State(state): State<AppState>,
    scope: AccountScope,
    JsonBody(write): JsonBody<CrmCreateAccountRequestDto>,
) -> Result<Response, ApiError> {
    let account = state
        .provider(&scope)?
        .create_account(&scope, write)
        .await?;
    written(account, false, |data, raw| AccountResult { data, raw })
}

/// Get Account
///
/// Returns one account (company) of the linked account.
#[utoipa::path(
    get, path = "/unified/crm/accounts/{id}", tag = TAG, operation_id = "crm_get_account",
    params(AccountHeader, RecordPath, ReadParams),
    responses((status = 200, description = "The account.", headers(("ETag" = String, description = "The etag of the record, as in its `etag` field.")), body = AccountResult)),
)]
pub async fn get(
    State(state): State<AppState>,
    scope: AccountScope,
    RecordId(id): RecordId,
    query: CrmQuery,
) -> Result<Response, ApiError> {
    let account = state
        .provider(&scope)?
        .get_account(&scope, &id, &(&query).into())
        .await?;
    single(account, &query, Shape::Plain, |data, raw| AccountResult {
        data,
        raw,
    })
}

/// Update Account
///
/// Updates an account. Only the fields present in the body change; a field sent as `null`
/// is cleared.
#[utoipa::path(
    patch, path = "/unified/crm/accounts/{id}", tag = TAG, operation_id = "crm_update_account",
    params(AccountHeader, RecordPath, IfMatchHeader),
    request_body = CrmCreateAccountRequestDto,
    responses((status = 200, description = "The account as updated.", headers(("ETag" = String, description = "The etag of the record, as in its `etag` field.")), body = AccountResult)),
)]
pub async fn update(
    State(state): State<AppState>,
    scope: AccountScope,
    RecordId(id): RecordId,
    JsonBody(write): JsonBody<CrmCreateAccountRequestDto>,
) -> Result<Response, ApiError> {
    let account = state
        .provider(&scope)?
        .update_account(&scope, &id, write)
        .await?;
    written(account, false, |data, raw| AccountResult { data, raw })
}

/// Delete Account
///
/// Deletes an account and removes it from every list it was on.
#[utoipa::path(
    delete, path = "/unified/crm/accounts/{id}", tag = TAG, operation_id = "crm_delete_account",
    params(AccountHeader, RecordPath),
    responses((status = 204, description = "The account was deleted.")),
)]
pub async fn delete(
    State(state): State<AppState>,
    scope: AccountScope,
    RecordId(id): RecordId,
) -> Result<Response, ApiError> {
    state.provider(&scope)?.delete_account(&scope, &id).await?;
    Ok(no_content())
}
