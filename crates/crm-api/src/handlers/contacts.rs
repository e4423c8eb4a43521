//! Contacts: people in the connected CRM.

use axum::body::Body;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;

use super::{
    Shape, leave_out, listed_page, no_content, prefers_minimal, project, single_presented,
    typed_projection, written, written_presented,
};
use crate::error::ApiError;
use crate::extract::{ExternalId, JsonBody, RecordId};
use crate::models::{Contact, ContactResult, ContactsPaginated, CrmCreateContactRequestDto};
use crate::params::{
    AccountHeader, CrmQuery, ExportParams, ExternalIdPath, IdempotencyHeader, IfMatchHeader,
    IncludeParams, PageParams, PreferHeader, ReadParams, RecordPath,
};
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
        .provider(&scope)?
        .list_contacts_listed(&scope, &(&query).into())
        .await?;
    listed_page(contacts, &query, Shape::Contact, |data, next, raw| {
        ContactsPaginated { next, data, raw }
    })
}

/// Create Contact
///
/// Creates a contact in the linked account and returns it. Answers 200, not 201.
#[utoipa::path(
    post, path = "/unified/crm/contacts", tag = TAG, operation_id = "crm_create_contact",
    params(AccountHeader, IdempotencyHeader),
    request_body = CrmCreateContactRequestDto,
    responses((status = 200, description = "The contact as created.", headers(("ETag" = String, description = "The etag of the record, as in its `etag` field.")), body = ContactResult)),
)]
pub async fn create(
    State(state): State<AppState>,
    scope: AccountScope,
    JsonBody(write): JsonBody<CrmCreateContactRequestDto>,
) -> Result<Response, ApiError> {
    let contact = state
        .provider(&scope)?
        .create_contact_single(&scope, write)
        .await?;
    written_presented(contact, false, |data, raw| ContactResult { data, raw })
}

/// Get Contact
///
/// Returns one contact of the linked account.
#[utoipa::path(
    get, path = "/unified/crm/contacts/{id}", tag = TAG, operation_id = "crm_get_contact",
    params(AccountHeader, RecordPath, ReadParams, IncludeParams),
    responses((status = 200, description = "The contact.", headers(("ETag" = String, description = "The etag of the record, as in its `etag` field.")), body = ContactResult)),
)]
pub async fn get(
    State(state): State<AppState>,
    scope: AccountScope,
    RecordId(id): RecordId,
    query: CrmQuery,
) -> Result<Response, ApiError> {
    let contact = state
        .provider(&scope)?
        .get_contact_single(&scope, &id, &(&query).into())
        .await?;
    single_presented(contact, &query, Shape::Contact, |data, raw| ContactResult {
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
    params(AccountHeader, RecordPath, IfMatchHeader, PreferHeader),
    request_body = CrmCreateContactRequestDto,
    responses(
        (status = 200, description = "The contact as updated.", headers(("ETag" = String, description = "The etag of the record, as in its `etag` field.")), body = ContactResult),
        (status = 204, description = "Updated; sent instead of the record when the request has `Prefer: return=minimal`.", headers(("ETag" = String, description = "The etag of the record, as in its `etag` field."))),
    ),
)]
pub async fn update(
    State(state): State<AppState>,
    scope: AccountScope,
    RecordId(id): RecordId,
    headers: HeaderMap,
    JsonBody(write): JsonBody<CrmCreateContactRequestDto>,
) -> Result<Response, ApiError> {
    let contact = state
        .provider(&scope)?
        .update_contact_single(&scope, &id, write)
        .await?;
    written_presented(contact, prefers_minimal(&headers), |data, raw| {
        ContactResult { data, raw }
    })
}

/// Update Contact by External Id
///
/// Updates the contact whose `external_id` is the one in the path, like Update Contact.
/// If the body carries an `id`, it must equal the contact's id (422 otherwise): an update
/// never changes an id.
#[utoipa::path(
    patch, path = "/unified/crm/contacts/external_id/{external_id}", tag = TAG,
    operation_id = "crm_update_contact_by_external_id",
    params(AccountHeader, ExternalIdPath, IfMatchHeader, PreferHeader),
    request_body = CrmCreateContactRequestDto,
    responses(
        (status = 200, description = "The contact as updated.", headers(("ETag" = String, description = "The etag of the record, as in its `etag` field.")), body = ContactResult),
        (status = 204, description = "Updated; sent instead of the record when the request has `Prefer: return=minimal`.", headers(("ETag" = String, description = "The etag of the record, as in its `etag` field."))),
    ),
)]
pub async fn update_by_external_id(
    State(state): State<AppState>,
    scope: AccountScope,
    ExternalId(external_id): ExternalId,
    headers: HeaderMap,
    JsonBody(write): JsonBody<CrmCreateContactRequestDto>,
) -> Result<Response, ApiError> {
    let contact = state
        .provider(&scope)?
        .update_contact_by_external_id(&scope, &external_id, write)
        .await?;
    written(contact, prefers_minimal(&headers), |data, raw| {
        ContactResult { data, raw }
    })
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
    state.provider(&scope)?.delete_contact(&scope, &id).await?;
    Ok(no_content())
}

/// Export Contacts
///
/// Streams every contact of the linked account, oldest first, as newline-delimited JSON
/// (`application/x-ndjson`): one Contact object per line, with no envelope. The server reads
/// the records in batches and holds only one batch in memory, so an export of any size runs
/// in constant memory.
#[utoipa::path(
    get, path = "/unified/crm/export/contacts", tag = TAG, operation_id = "crm_export_contacts",
    params(AccountHeader, ExportParams, IncludeParams),
    responses((status = 200, description = "One Contact JSON object per line.", content_type = "application/x-ndjson", body = inline(NdjsonBody))),
)]
pub async fn export(
    State(state): State<AppState>,
    scope: AccountScope,
    query: CrmQuery,
) -> Result<Response, ApiError> {
    let contacts = state
        .provider(&scope)?
        .export_contacts(&scope, query.updated_after)
        .await?;
    let typed = typed_projection::<Contact>(&query, Shape::Contact);
    let lines = contacts.map(move |contact| {
        let unserialisable = |e: serde_json::Error| {
            ApiError::internal(format!("could not serialise a contact: {e}"))
        };
        let stopped = |e: ApiError| {
            // The status line is gone by now; ending the stream early is all that is left.
            tracing::error!(error = %e, "export stopped");
            std::io::Error::other(e.message)
        };
        let mut bytes = if typed {
            let mut contact = contact.map_err(stopped)?;
            leave_out(&mut contact, &query, Shape::Contact);
            serde_json::to_vec(&contact)
                .map_err(unserialisable)
                .map_err(stopped)?
        } else {
            let mut line = contact
                .and_then(|c| serde_json::to_value(c).map_err(unserialisable))
                .map_err(stopped)?;
            project(&mut line, &query, Shape::Contact);
            serde_json::to_vec(&line).map_err(std::io::Error::other)?
        };
        bytes.push(b'\n');
        Ok::<_, std::io::Error>(bytes)
    });
    let mut response = Body::from_stream(lines).into_response();
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    Ok(response)
}

/// The schema of an NDJSON body: opaque bytes, one JSON object per line.
#[derive(utoipa::ToSchema)]
#[schema(value_type = String, format = Binary)]
#[allow(dead_code)]
struct NdjsonBody(Vec<u8>);
