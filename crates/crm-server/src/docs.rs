//! The documentation routes: the spec (`/openapi.json` and `/openapi.yaml` in OpenAPI 3.0.3,
//! `/openapi-3.1.json`) and the reference page (`/docs`), served without an API key.
//!
//! **They are not part of the CRM contract, and this module is the one place they live.**
//! They are added to the application here, outside `crm_api`'s router, so they never appear
//! in the document `crm_api::openapi()` emits; the conformance diff (`tests/spec_diff.rs`,
//! `cargo xtask spec diff`) compares only that document with `openapi/crm.yaml`.
//!
//! What is served is the source spec itself: `openapi/crm.yaml` is embedded at compile
//! time, the YAML route answers it byte for byte, and the JSON, 3.1 and HTML forms are
//! derived from it on first use with the functions `cargo xtask publish` uses
//! (`crm_spec::convert_30_to_31`, `crm_spec::reference_page`). So `/docs` is the page
//! published as `dist/reference.html`: self-contained, its viewer (Swagger UI) shipped
//! inside the `swagger-ui-redist` crate, nothing fetched by the server or the browser.

use std::sync::LazyLock;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::Value;

/// `openapi/crm.yaml` as this binary was built with it.
pub const SPEC_YAML: &str = include_str!("../../../openapi/crm.yaml");

/// The spec as OpenAPI 3.0.3 JSON.
pub const OPENAPI_JSON_PATH: &str = "/openapi.json";
/// The spec as written (OpenAPI 3.0.3 YAML).
pub const OPENAPI_YAML_PATH: &str = "/openapi.yaml";
/// The spec converted to OpenAPI 3.1.
pub const OPENAPI_31_JSON_PATH: &str = "/openapi-3.1.json";
/// The reference page.
pub const DOCS_PATH: &str = "/docs";

/// Every form of the spec the routes serve.
#[derive(Debug, Clone)]
pub struct Documents {
    pub yaml: String,
    pub json: String,
    pub json_31: String,
    pub page: String,
}

impl Documents {
    /// Derives every form from the YAML text of a 3.0 spec.
    pub fn build(yaml: &str) -> Result<Documents, crm_spec::Error> {
        let doc: Value = crm_spec::parse(yaml).map_err(|e| crm_spec::Error::Shape {
            path: "#".into(),
            message: format!("the embedded spec is not YAML: {e}"),
        })?;
        crm_spec::check_openapi_30(&doc, "embedded spec")?;
        let v31 = crm_spec::convert_30_to_31(&doc);
        let json = |v: &Value| serde_json::to_string_pretty(v).unwrap_or_default() + "\n";
        Ok(Documents {
            yaml: yaml.to_owned(),
            json: json(&doc),
            json_31: json(&v31),
            page: crm_spec::reference_page(&doc)?,
        })
    }
}

/// The documents of the embedded spec, derived once.
static DOCUMENTS: LazyLock<Result<Documents, String>> = LazyLock::new(|| {
    Documents::build(SPEC_YAML).map_err(|e| {
        tracing::error!(error = %e, "the embedded spec cannot be served");
        e.to_string()
    })
});

/// The documentation routes, to merge into the application beside `crm_api`'s router.
pub fn router() -> Router {
    Router::new()
        .route(OPENAPI_JSON_PATH, get(|| serve(Form::Json)))
        .route(OPENAPI_YAML_PATH, get(|| serve(Form::Yaml)))
        .route(OPENAPI_31_JSON_PATH, get(|| serve(Form::Json31)))
        .route(DOCS_PATH, get(|| serve(Form::Page)))
}

#[derive(Debug, Clone, Copy)]
enum Form {
    Json,
    Yaml,
    Json31,
    Page,
}

async fn serve(form: Form) -> Response {
    let documents = match &*DOCUMENTS {
        Ok(documents) => documents,
        Err(message) => {
            return crm_api::ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the spec cannot be served: {message}"),
            )
            .into_response();
        }
    };
    let (content_type, body) = match form {
        Form::Json => ("application/json", &documents.json),
        Form::Yaml => ("application/yaml", &documents.yaml),
        Form::Json31 => ("application/json", &documents.json_31),
        Form::Page => ("text/html; charset=utf-8", &documents.page),
    };
    ([(header::CONTENT_TYPE, content_type)], body.clone()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_spec_builds_every_form() {
        let documents = Documents::build(SPEC_YAML).unwrap();
        assert_eq!(documents.yaml, SPEC_YAML);
        let json: Value = serde_json::from_str(&documents.json).unwrap();
        assert_eq!(json["openapi"], "3.0.3");
        let v31: Value = serde_json::from_str(&documents.json_31).unwrap();
        assert_eq!(v31["openapi"], "3.1.0");
        assert!(documents.page.contains("SwaggerUIBundle"));
        assert!(DOCUMENTS.is_ok());
    }

    #[test]
    fn a_broken_spec_is_an_error_not_a_page() {
        assert!(Documents::build("openapi: [").is_err());
        assert!(Documents::build("openapi: 3.0.3\ninfo: {}\n").is_err());
    }
}
