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
//!
//! One thing differs from the source: its `servers` names a developer's machine
//! (`http://127.0.0.1:8080`), which is wrong for a server started anywhere else. The served
//! documents name instead the origin of `--public-url` when it is set (a server behind a
//! load balancer or a proxy), else the relative URL `/`: the origin the document was
//! fetched from, right on any address and port, so "Try it out" on `/docs` calls the
//! server that served the page.

use std::sync::{Arc, OnceLock};

use crate::http::Routes;
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
    /// Derives every form from the YAML text of a 3.0 spec, as written.
    pub fn build(yaml: &str) -> Result<Documents, crm_spec::Error> {
        Self::build_for(yaml, None)
    }

    /// Derives every form from the YAML text of a 3.0 spec, its `servers` replaced by the
    /// one server that serves them: `public_url`, or the relative URL `/` when it is `None`.
    pub fn build_served(
        yaml: &str,
        public_url: Option<&str>,
    ) -> Result<Documents, crm_spec::Error> {
        Self::build_for(yaml, Some(public_url.unwrap_or("/")))
    }

    fn build_for(yaml: &str, server: Option<&str>) -> Result<Documents, crm_spec::Error> {
        let yaml = match server {
            Some(url) => with_server(yaml, url),
            None => yaml.to_owned(),
        };
        let yaml = yaml.as_str();
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

/// The YAML text `yaml` with its top-level `servers` replaced by the one server `url`
/// (the rest byte for byte as written). A document without `servers` gets one.
pub fn with_server(yaml: &str, url: &str) -> String {
    let description = if url == "/" {
        "This server: the origin this document was fetched from"
    } else {
        "This server"
    };
    let block = format!(
        "servers:\n  - url: {}\n    description: {description}\n",
        serde_json::Value::from(url),
        description = serde_json::Value::from(description)
    );
    let mut out = String::with_capacity(yaml.len() + block.len());
    let mut lines = yaml.split_inclusive('\n').peekable();
    let mut replaced = false;
    while let Some(line) = lines.next() {
        if !replaced && line.trim_end() == "servers:" {
            while lines
                .peek()
                .is_some_and(|next| next.starts_with(' ') || next.starts_with('-'))
            {
                lines.next();
            }
            out.push_str(&block);
            replaced = true;
        } else {
            out.push_str(line);
        }
    }
    if !replaced {
        out.push_str(&block);
    }
    out
}

/// The origin a `--public-url` names, without a trailing `/`; `None` when it is not an
/// absolute `http` or `https` URL.
pub fn public_url(value: &str) -> Option<String> {
    let value = value.trim().trim_end_matches('/');
    let rest = value
        .strip_prefix("https://")
        .or_else(|| value.strip_prefix("http://"))?;
    let host = rest.split('/').next().unwrap_or_default();
    (!host.is_empty() && !value.chars().any(|c| c.is_whitespace() || c.is_control()))
        .then(|| value.to_owned())
}

/// The documents of the embedded spec for one server, derived on first use.
#[derive(Clone)]
struct Served {
    public_url: Option<String>,
    documents: Arc<OnceLock<Result<Documents, String>>>,
}

impl Served {
    fn documents(&self) -> &Result<Documents, String> {
        self.documents.get_or_init(|| {
            Documents::build_served(SPEC_YAML, self.public_url.as_deref()).map_err(|e| {
                tracing::error!(error = %e, "the embedded spec cannot be served");
                e.to_string()
            })
        })
    }
}

/// The documentation routes, to merge into the application beside `crm_api`'s router.
/// Their `servers` is `public_url` (the origin clients reach the server at, from
/// `--public-url`), or the relative URL `/` when it is `None`.
pub fn router(public_url: Option<&str>) -> Routes {
    let served = Served {
        public_url: public_url.map(str::to_owned),
        documents: Arc::new(OnceLock::new()),
    };
    let route = |form: Form| {
        let served = served.clone();
        get(move || {
            let served = served.clone();
            async move { serve(&served, form) }
        })
    };
    Routes::new()
        .route(OPENAPI_JSON_PATH, route(Form::Json))
        .route(OPENAPI_YAML_PATH, route(Form::Yaml))
        .route(OPENAPI_31_JSON_PATH, route(Form::Json31))
        .route(DOCS_PATH, route(Form::Page))
}

#[derive(Debug, Clone, Copy)]
enum Form {
    Json,
    Yaml,
    Json31,
    Page,
}

fn serve(served: &Served, form: Form) -> Response {
    let documents = match served.documents() {
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
    }

    #[test]
    fn served_documents_name_this_server_not_a_fixed_address() {
        let relative = Documents::build_served(SPEC_YAML, None).unwrap();
        let json: Value = serde_json::from_str(&relative.json).unwrap();
        assert_eq!(json["servers"].as_array().unwrap().len(), 1);
        assert_eq!(json["servers"][0]["url"], "/");
        assert!(!relative.yaml.contains("127.0.0.1:8080"));
        assert!(!relative.page.contains("127.0.0.1:8080"));
        let yaml: Value = crm_spec::parse(&relative.yaml).unwrap();
        assert_eq!(yaml, json);
        let v31: Value = serde_json::from_str(&relative.json_31).unwrap();
        assert_eq!(v31["servers"][0]["url"], "/");

        let public = Documents::build_served(SPEC_YAML, Some("https://crm.example.com")).unwrap();
        let json: Value = serde_json::from_str(&public.json).unwrap();
        assert_eq!(json["servers"][0]["url"], "https://crm.example.com");
        // Only `servers` differs from the source.
        let mut source: Value = crm_spec::parse(SPEC_YAML).unwrap();
        source["servers"] = json["servers"].clone();
        assert_eq!(source, json);
    }

    #[test]
    fn public_urls_are_absolute_http_origins() {
        assert_eq!(
            public_url("https://crm.example.com/").as_deref(),
            Some("https://crm.example.com")
        );
        assert_eq!(
            public_url("http://10.0.0.5:8080").as_deref(),
            Some("http://10.0.0.5:8080")
        );
        assert_eq!(
            public_url("https://example.com/crm").as_deref(),
            Some("https://example.com/crm")
        );
        for bad in ["", "crm.example.com", "ftp://x", "http://", "https:// x"] {
            assert_eq!(public_url(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_broken_spec_is_an_error_not_a_page() {
        assert!(Documents::build("openapi: [").is_err());
        assert!(Documents::build("openapi: 3.0.3\ninfo: {}\n").is_err());
    }
}
