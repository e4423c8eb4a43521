//! Custom field definitions for contacts: the fields a contact can carry.

use axum::extract::State;
use axum::response::Response;

use super::{Shape, page, single, written};
use crate::error::ApiError;
use crate::extract::{JsonBody, RecordId};
use crate::models::{
    CrmCreateCustomFieldDefinitionRequestDto, CustomFieldDefinitionResultApiModel,
    CustomFieldDefinitionsPaginated,
};
use crate::params::{
    AccountHeader, CrmQuery, IdempotencyHeader, PageParams, ReadParams, RecordPath,
};
use crate::service::{AccountScope, AppState};

const TAG: &str = "Custom Field Definitions";

/// List Contact Custom Field Definitions
///
/// Lists the custom field definitions for contacts, oldest first, one page at a time.
#[utoipa::path(
    get, path = "/unified/crm/custom_field_definitions/contacts", tag = TAG,
    operation_id = "crm_list_contact_custom_field_definitions",
    params(AccountHeader, ReadParams, PageParams),
    responses((status = 200, description = "A page of custom field definitions.", body = CustomFieldDefinitionsPaginated)),
)]
pub async fn list(
    State(state): State<AppState>,
    scope: AccountScope,
    query: CrmQuery,
) -> Result<Response, ApiError> {
    let definitions = state
        .provider(&scope)?
        .list_contact_custom_field_definitions(&scope, &(&query).into())
        .await?;
    page(definitions, &query, Shape::Plain, |data, next, raw| {
        CustomFieldDefinitionsPaginated { next, data, raw }
    })
}

/// Create Contact Custom Field Definition
///
/// Defines a custom field for contacts. `single_select` and `multi_select` fields need at
/// least one option; option ids are unique within the definition.
#[utoipa::path(
    post, path = "/unified/crm/custom_field_definitions/contacts", tag = TAG,
    operation_id = "crm_create_contact_custom_field_definition",
    params(AccountHeader, IdempotencyHeader),
    request_body = CrmCreateCustomFieldDefinitionRequestDto,
    responses((status = 200, description = "The definition as created.", body = CustomFieldDefinitionResultApiModel)),
)]
pub async fn create(
    State(state): State<AppState>,
    scope: AccountScope,
    JsonBody(write): JsonBody<CrmCreateCustomFieldDefinitionRequestDto>,
) -> Result<Response, ApiError> {
    let definition = state
        .provider(&scope)?
        .create_contact_custom_field_definition(&scope, write)
        .await?;
    written(definition, false, |data, raw| {
        CustomFieldDefinitionResultApiModel { data, raw }
    })
}

/// Get Contact Custom Field Definition
///
/// Returns one custom field definition for contacts.
#[utoipa::path(
    get, path = "/unified/crm/custom_field_definitions/contacts/{id}", tag = TAG,
    operation_id = "crm_get_contact_custom_field_definition",
    params(AccountHeader, RecordPath, ReadParams, PageParams),
    responses((status = 200, description = "The custom field definition.", body = CustomFieldDefinitionResultApiModel)),
)]
pub async fn get(
    State(state): State<AppState>,
    scope: AccountScope,
    RecordId(id): RecordId,
    query: CrmQuery,
) -> Result<Response, ApiError> {
    let definition = state
        .provider(&scope)?
        .get_contact_custom_field_definition(&scope, &id, &(&query).into())
        .await?;
    single(definition, &query, Shape::Plain, |data, raw| {
        CustomFieldDefinitionResultApiModel { data, raw }
    })
}

/// Update Contact Custom Field Definition
///
/// Updates a custom field definition. Only the fields present in the body change;
/// `options`, when sent, replaces the whole set of options.
#[utoipa::path(
    patch, path = "/unified/crm/custom_field_definitions/contacts/{id}", tag = TAG,
    operation_id = "crm_update_contact_custom_field_definition",
    params(AccountHeader, RecordPath),
    request_body = CrmCreateCustomFieldDefinitionRequestDto,
    responses((status = 200, description = "The definition as updated.", body = CustomFieldDefinitionResultApiModel)),
)]
pub async fn update(
    State(state): State<AppState>,
    scope: AccountScope,
    RecordId(id): RecordId,
    JsonBody(write): JsonBody<CrmCreateCustomFieldDefinitionRequestDto>,
) -> Result<Response, ApiError> {
    let definition = state
        .provider(&scope)?
        .update_contact_custom_field_definition(&scope, &id, write)
        .await?;
    written(definition, false, |data, raw| {
        CustomFieldDefinitionResultApiModel { data, raw }
    })
}
