//! Contacts: people in the connected CRM.

use axum::extract::State;
use axum::response::Response;

use super::{Shape, no_content, page, single, written};
use crate::error::ApiError;
use crate::extract::{JsonBody, RecordId};
use crate::models::{ContactResult, ContactsPaginated, CrmCreateContactRequestDto};
use crate::params::{AccountHeader, CrmQuery, IncludeParams, PageParams, ReadParams, RecordPath};
use crate::service::{AccountScope, AppState};

const TAG: &str = "Contacts";

/// List Contacts
///
/// Lists the contacts of the linked account, oldest first, one page at a time.
#[utoipa::path(
    get, path = "/unified/crm/contacts", tag = TAG, operation_id = "crm_list_contacts",
    params(AccountHeader, ReadParams, PageParams, IncludeParams),
    responses((status = 200, description = "A page of contacts.", body = ContactsPaginated)),
)]
pub async fn list(
    State(state): State<AppState>,
    scope: AccountScope,
    query: CrmQuery,
) -> Result<Response, ApiError> {
    let contacts = state
        .service
        .list_contacts(&scope, &(&query).into())
        .await?;
    page(contacts, &query, Shape::Contact, |data, next, raw| {
        ContactsPaginated { next, data, raw }
    })
}

/// Create Contact
///
/// Creates a contact in the linked account and returns it. Answers 200, not 201.
#[utoipa::path(
    post, path = "/unified/crm/contacts", tag = TAG, operation_id = "crm_create_contact",
    params(AccountHeader),
    request_body = CrmCreateContactRequestDto,
    responses((status = 200, description = "The contact as created.", body = ContactResult)),
)]
pub async fn create(
    State(state): State<AppState>,
    scope: AccountScope,
    JsonBody(write): JsonBody<CrmCreateContactRequestDto>,
) -> Result<Response, ApiError> {
    let contact = state.service.create_contact(&scope, write).await?;
    written(contact, |data, raw| ContactResult { data, raw })
}

/// Get Contact
///
/// Returns one contact of the linked account.
#[utoipa::path(
    get, path = "/unified/crm/contacts/{id}", tag = TAG, operation_id = "crm_get_contact",
    params(AccountHeader, RecordPath, ReadParams, IncludeParams),
    responses((status = 200, description = "The contact.", body = ContactResult)),
)]
pub async fn get(
    State(state): State<AppState>,
    scope: AccountScope,
    RecordId(id): RecordId,
    query: CrmQuery,
) -> Result<Response, ApiError> {
    let contact = state
        .service
        .get_contact(&scope, &id, &(&query).into())
        .await?;
    single(contact, &query, Shape::Contact, |data, raw| ContactResult {
        data,
        raw,
    })
}

/// Update Contact
///
/// Updates a contact. Only the fields present in the body change; a field sent as `null`
/// is cleared. The body has the same model as Create Contact.
#[utoipa::path(
    patch, path = "/unified/crm/contacts/{id}", tag = TAG, operation_id = "crm_update_contact",
    params(AccountHeader, RecordPath),
    request_body = CrmCreateContactRequestDto,
    responses((status = 200, description = "The contact as updated.", body = ContactResult)),
)]
pub async fn update(
    State(state): State<AppState>,
    scope: AccountScope,
    RecordId(id): RecordId,
    JsonBody(write): JsonBody<CrmCreateContactRequestDto>,
) -> Result<Response, ApiError> {
    let contact = state.service.update_contact(&scope, &id, write).await?;
    written(contact, |data, raw| ContactResult { data, raw })
}

/// Delete Contact
///
/// Deletes a contact and removes it from every list it was on.
#[utoipa::path(
    delete, path = "/unified/crm/contacts/{id}", tag = TAG, operation_id = "crm_delete_contact",
    params(AccountHeader, RecordPath),
    responses((status = 204, description = "The contact was deleted.")),
)]
pub async fn delete(
    State(state): State<AppState>,
    scope: AccountScope,
    RecordId(id): RecordId,
) -> Result<Response, ApiError> {
    state.service.delete_contact(&scope, &id).await?;
    Ok(no_content())
}
