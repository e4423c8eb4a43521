//! The emitted OpenAPI document: the parts that are not declared on a handler.
//!
//! Routes, parameters, bodies and success responses come from the `#[utoipa::path]`
//! declarations of the handlers. What every CRM operation shares is added here, once:
//! the security schemes, and the twelve error responses of the contract, each a reusable
//! response whose body is [`ErrorResponse`].

use utoipa::OpenApi;
use utoipa::openapi::link::LinkBuilder;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};

use crate::models::{ErrorResponse, ProviderError};

/// The prefix of every path of the CRM contract.
pub const CRM_PREFIX: &str = "/unified/crm/";

/// The error responses every CRM operation declares: status, component name, description.
/// The twelve of the contract come first; 431 is the server's own header limit.
pub const ERROR_RESPONSES: [(u16, &str, &str); 14] = [
    (
        400,
        "BadRequest",
        "The request is malformed (bad JSON, a wrong parameter or a missing header).",
    ),
    (401, "Unauthorized", "No valid API key was sent."),
    (
        403,
        "Forbidden",
        "The API key may not perform this request.",
    ),
    (
        404,
        "NotFound",
        "The linked account or the record does not exist for this project.",
    ),
    (408, "RequestTimeout", "The request took too long."),
    (
        409,
        "Conflict",
        "The request conflicts with the current state of the record.",
    ),
    (
        412,
        "PreconditionFailed",
        "A precondition of the request (such as `If-Match`) does not hold.",
    ),
    (
        422,
        "UnprocessableEntity",
        "The body is well-formed but its values are not acceptable.",
    ),
    (
        429,
        "TooManyRequests",
        "Too many requests; retry after the time given in `Retry-After`.",
    ),
    (
        500,
        "InternalServerError",
        "The server failed to answer the request.",
    ),
    (
        501,
        "NotImplemented",
        "The provider of the linked account does not support this request.",
    ),
    (
        502,
        "BadGateway",
        "The provider of the linked account failed.",
    ),
    (
        504,
        "GatewayTimeout",
        "The provider of the linked account did not answer in time.",
    ),
    (
        431,
        "RequestHeaderFieldsTooLarge",
        "The request's headers are larger, or more, than the server accepts.",
    ),
];

/// The error responses of the operations that take a request body, besides the above.
pub const BODY_ERROR_RESPONSES: [(u16, &str, &str); 2] = [
    (
        413,
        "PayloadTooLarge",
        "The request body is larger than the server accepts.",
    ),
    (
        415,
        "UnsupportedMediaType",
        "The request body is not JSON (send `Content-Type: application/json`).",
    ),
];

/// A link from an operation's answer to another operation it names a record for: the
/// create → read → update → delete sequences, for readers and for stateful testing.
struct OperationLink {
    from: &'static str,
    status: &'static str,
    name: &'static str,
    to: &'static str,
    parameters: &'static [(&'static str, &'static str)],
}

const CREATED: &[(&str, &str)] = &[("id", "$response.body#/data/id")];
const SAME: &[(&str, &str)] = &[("id", "$request.path.id")];

const fn link(
    from: &'static str,
    status: &'static str,
    name: &'static str,
    to: &'static str,
    parameters: &'static [(&'static str, &'static str)],
) -> OperationLink {
    OperationLink {
        from,
        status,
        name,
        to,
        parameters,
    }
}

const LINKS: &[OperationLink] = &[
    link(
        "crm_create_contact",
        "200",
        "GetContact",
        "crm_get_contact",
        CREATED,
    ),
    link(
        "crm_create_contact",
        "200",
        "UpdateContact",
        "crm_update_contact",
        CREATED,
    ),
    link(
        "crm_create_contact",
        "200",
        "UpdateContactByExternalId",
        "crm_update_contact_by_external_id",
        &[("external_id", "$response.body#/data/external_id")],
    ),
    link(
        "crm_create_contact",
        "200",
        "DeleteContact",
        "crm_delete_contact",
        CREATED,
    ),
    link(
        "crm_create_contact",
        "200",
        "ListContacts",
        "crm_list_contacts",
        &[],
    ),
    link(
        "crm_update_contact",
        "200",
        "GetContact",
        "crm_get_contact",
        SAME,
    ),
    link(
        "crm_delete_contact",
        "204",
        "GetContact",
        "crm_get_contact",
        SAME,
    ),
    link(
        "crm_create_account",
        "200",
        "GetAccount",
        "crm_get_account",
        CREATED,
    ),
    link(
        "crm_create_account",
        "200",
        "UpdateAccount",
        "crm_update_account",
        CREATED,
    ),
    link(
        "crm_create_account",
        "200",
        "DeleteAccount",
        "crm_delete_account",
        CREATED,
    ),
    link(
        "crm_create_account",
        "200",
        "ListAccounts",
        "crm_list_accounts",
        &[],
    ),
    link(
        "crm_update_account",
        "200",
        "GetAccount",
        "crm_get_account",
        SAME,
    ),
    link(
        "crm_delete_account",
        "204",
        "GetAccount",
        "crm_get_account",
        SAME,
    ),
    link("crm_create_list", "200", "GetList", "crm_get_list", CREATED),
    link(
        "crm_create_list",
        "200",
        "UpdateList",
        "crm_update_list",
        CREATED,
    ),
    link(
        "crm_create_list",
        "200",
        "AddListItems",
        "crm_add_list_items",
        CREATED,
    ),
    link("crm_create_list", "200", "ListLists", "crm_list_lists", &[]),
    link(
        "crm_create_list",
        "200",
        "RemoveListItem",
        "crm_remove_list_item",
        &[
            ("id", "$response.body#/data/id"),
            ("item_id", "$response.body#/data/items/0/id"),
        ],
    ),
    link("crm_update_list", "200", "GetList", "crm_get_list", SAME),
    link(
        "crm_update_list",
        "200",
        "RemoveListItem",
        "crm_remove_list_item",
        &[
            ("id", "$request.path.id"),
            ("item_id", "$response.body#/data/items/0/id"),
        ],
    ),
    link("crm_add_list_items", "200", "GetList", "crm_get_list", SAME),
    link(
        "crm_add_list_items",
        "200",
        "RemoveListItem",
        "crm_remove_list_item",
        &[
            ("id", "$request.path.id"),
            ("item_id", "$response.body#/data/items/0/id"),
        ],
    ),
    link(
        "crm_remove_list_item",
        "200",
        "GetList",
        "crm_get_list",
        SAME,
    ),
    link(
        "crm_create_contact_custom_field_definition",
        "200",
        "GetContactCustomFieldDefinition",
        "crm_get_contact_custom_field_definition",
        CREATED,
    ),
    link(
        "crm_create_contact_custom_field_definition",
        "200",
        "UpdateContactCustomFieldDefinition",
        "crm_update_contact_custom_field_definition",
        CREATED,
    ),
    link(
        "crm_create_contact_custom_field_definition",
        "200",
        "ListContactCustomFieldDefinitions",
        "crm_list_contact_custom_field_definitions",
        &[],
    ),
    link(
        "crm_update_contact_custom_field_definition",
        "200",
        "GetContactCustomFieldDefinition",
        "crm_get_contact_custom_field_definition",
        SAME,
    ),
];

const DESCRIPTION: &str =
    "One HTTP API for the contacts, accounts, lists and custom field definitions of every
connected CRM. The API is wire-compatible with StackOne's unified CRM API: a program
written for that API works unchanged when its base URL points at this server.

**Authentication.** Send your API key either as the user name of HTTP Basic
authentication with an empty password (`Authorization: Basic base64(API_KEY + \":\")`)
or as a bearer token (`Authorization: Bearer API_KEY`).

**Linked accounts.** Every operation acts on one linked account (one connected CRM of
your project), named by the required `x-account-id` header.

**Errors.** Every failure answers a JSON body with `statusCode`, `message` and
`timestamp`, whatever the status.

**Pagination.** List operations return at most `page_size` records (default 25, at
most 100) and, while more remain, an opaque `next` cursor to pass back unchanged.
";

#[derive(OpenApi)]
#[openapi(
    info(title = "Unified CRM API", version = "3.0.0", license(name = "Apache-2.0")),
    servers((url = "http://127.0.0.1:8080", description = "A server started locally with `cargo run -p crm-server -- serve`")),
    security(("basic" = []), ("bearer" = [])),
    tags(
        (name = "Contacts", description = "People in the connected CRM."),
        (name = "Accounts", description = "Companies and organisations in the connected CRM."),
        (name = "Lists", description = "Named lists of contacts or companies."),
        (name = "Custom Field Definitions", description = "The custom fields a contact can carry, with their types and options."),
    ),
    components(schemas(ErrorResponse, ProviderError)),
)]
pub(crate) struct ApiDoc;

/// Adds what every CRM operation shares to a document whose paths are already in place.
pub(crate) fn complete(mut doc: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    doc.info.description = Some(DESCRIPTION.to_owned());
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "basic",
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Basic)
                .description(Some("The API key as the user name and an empty password."))
                .build(),
        ),
    );
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some("The API key as a bearer token."))
                .build(),
        ),
    );
    for &(_, name, description) in ERROR_RESPONSES.iter().chain(&BODY_ERROR_RESPONSES) {
        let response = ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ErrorResponse")))
                    .build(),
            )
            .build();
        components
            .responses
            .insert(name.to_owned(), RefOr::T(response));
    }
    for (path, item) in doc.paths.paths.iter_mut() {
        if !path.starts_with(CRM_PREFIX) {
            continue;
        }
        let operations = [
            &mut item.get,
            &mut item.post,
            &mut item.patch,
            &mut item.put,
            &mut item.delete,
        ];
        for operation in operations.into_iter().flatten() {
            add_error_responses(operation);
            add_links(operation);
        }
    }
    doc
}

fn add_error_responses(operation: &mut Operation) {
    let body_errors: &[_] = if operation.request_body.is_some() {
        &BODY_ERROR_RESPONSES
    } else {
        &[]
    };
    for &(status, name, _) in ERROR_RESPONSES.iter().chain(body_errors) {
        operation.responses.responses.insert(
            status.to_string(),
            RefOr::Ref(Ref::from_response_name(name)),
        );
    }
}

fn add_links(operation: &mut Operation) {
    let Some(id) = operation.operation_id.clone() else {
        return;
    };
    for l in LINKS.iter().filter(|l| l.from == id) {
        let Some(RefOr::T(response)) = operation.responses.responses.get_mut(l.status) else {
            continue;
        };
        let mut builder = LinkBuilder::new().operation_id(l.to);
        for (name, expression) in l.parameters {
            builder = builder.parameter(*name, *expression);
        }
        response
            .links
            .insert(l.name.to_owned(), RefOr::T(builder.build()));
    }
}
