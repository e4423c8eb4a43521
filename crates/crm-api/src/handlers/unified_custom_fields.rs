//! The project's unified custom fields: names of its own for contact custom fields.

use axum::Json;
use axum::extract::State;

use crate::error::ApiError;
use crate::extract::JsonBody;
use crate::models::{UnifiedCustomFields, UnifiedCustomFieldsResult};
use crate::params::AccountHeader;
use crate::service::{AccountScope, AppState};

const TAG: &str = "Custom Field Definitions";

/// Get Contact Unified Custom Fields
///
/// Returns the project's mapping of unified custom field names to contact custom field
/// definitions. Contacts carry, in `unified_custom_fields`, the value of each mapped field
/// under its unified name.
#[utoipa::path(
    get, path = "/unified/crm/unified_custom_fields/contacts", tag = TAG,
    operation_id = "crm_get_contact_unified_custom_fields",
    params(AccountHeader),
    responses((status = 200, description = "The mapping.", body = UnifiedCustomFieldsResult)),
)]
pub async fn get(
    State(state): State<AppState>,
    scope: AccountScope,
) -> Result<Json<UnifiedCustomFieldsResult>, ApiError> {
    let data = state
        .provider(&scope)?
        .get_contact_unified_custom_fields(&scope)
        .await?;
    Ok(Json(UnifiedCustomFieldsResult { data }))
}

/// Set Contact Unified Custom Fields
///
/// Replaces the project's mapping of unified custom field names to contact custom field
/// definitions, named by definition name, so one mapping serves every linked account of the
/// project.
#[utoipa::path(
    put, path = "/unified/crm/unified_custom_fields/contacts", tag = TAG,
    operation_id = "crm_set_contact_unified_custom_fields",
    params(AccountHeader),
    request_body = UnifiedCustomFields,
    responses((status = 200, description = "The mapping as stored.", body = UnifiedCustomFieldsResult)),
)]
pub async fn set(
    State(state): State<AppState>,
    scope: AccountScope,
    JsonBody(write): JsonBody<UnifiedCustomFields>,
) -> Result<Json<UnifiedCustomFieldsResult>, ApiError> {
    let data = state
        .provider(&scope)?
        .set_contact_unified_custom_fields(&scope, write.body)
        .await?;
    Ok(Json(UnifiedCustomFieldsResult { data }))
}
