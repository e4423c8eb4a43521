//! The HTTP surface of the unified CRM API: models, handlers, router and the emitted
//! OpenAPI document.
//!
//! This crate owns no storage and performs no I/O of its own: handlers validate input and
//! call the services of [`service`] (authorisation, idempotency keys, and one
//! [`CrmProvider`] per provider), which the server implements. The router and the OpenAPI document
//! are built from the same `#[utoipa::path]` declarations, so a route cannot exist without
//! being documented.

pub mod cursor;
pub mod error;
pub mod extract;
pub mod handlers;
pub mod idempotency;
pub mod metrics;
pub mod models;
pub mod openapi;
pub mod params;
pub mod service;

use axum::Router;
use axum::http::StatusCode;
use axum::http::{Method, Uri};
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use error::ApiError;
pub use service::{AppState, Authorizer, CrmProvider, IdempotencyStore};

use handlers::{accounts, contacts, custom_field_definitions as cfd, lists, unified_custom_fields};

fn api_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(contacts::list, contacts::create))
        .routes(routes!(contacts::get, contacts::update, contacts::delete))
        .routes(routes!(contacts::update_by_external_id))
        .routes(routes!(contacts::export))
        .routes(routes!(
            unified_custom_fields::get,
            unified_custom_fields::set
        ))
        .routes(routes!(accounts::list, accounts::create))
        .routes(routes!(accounts::get, accounts::update, accounts::delete))
        .routes(routes!(lists::list, lists::create))
        .routes(routes!(lists::get, lists::update))
        .routes(routes!(lists::add_items))
        .routes(routes!(lists::remove_item))
        .routes(routes!(cfd::list, cfd::create))
        .routes(routes!(cfd::get, cfd::update))
}

/// What the path of every CRM operation starts with.
pub const API_PREFIX: &str = "/unified/";

/// The OpenAPI document (3.1, as utoipa emits it) of every CRM operation.
pub fn openapi() -> utoipa::openapi::OpenApi {
    openapi::complete(api_router().split_for_parts().1)
}

/// The CRM router over `state`: every operation of the document, and contract-shaped
/// errors for unknown routes and wrong methods.
pub fn router(state: AppState) -> Router {
    router_and_paths(state).0
}

/// As [`router`], with the path template of every operation as the router matches it.
pub fn router_and_paths(state: AppState) -> (Router, Vec<String>) {
    let (router, document) = api_router().split_for_parts();
    let router = router
        .fallback(unknown_route)
        .method_not_allowed_fallback(wrong_method)
        .layer(idempotency::IdempotencyLayer(state.clone()))
        .with_state(state);
    (router, document.paths.paths.into_keys().collect())
}

async fn unknown_route(method: Method, uri: Uri) -> ApiError {
    ApiError::not_found(format!("no route for {method} {}", uri.path()))
}

async fn wrong_method(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{method} is not allowed on {}", uri.path()),
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_operation_is_under_the_api_prefix() {
        let document = super::openapi();
        assert!(!document.paths.paths.is_empty());
        for path in document.paths.paths.keys() {
            assert!(path.starts_with(super::API_PREFIX), "{path}");
        }
    }
}
