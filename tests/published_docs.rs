//! The documentation routes of a running server: `/openapi.json`, `/openapi.yaml`,
//! `/openapi-3.1.json` and `/docs` serve the source spec without an API key, and stay out
//! of the CRM contract (the document `crm_api::openapi()` emits).

use conformance::TestServer;
use serde_json::{Value, json};

const ROUTES: [&str; 4] = [
    "/openapi.json",
    "/openapi.yaml",
    "/openapi-3.1.json",
    "/docs",
];

fn source_text() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../openapi/crm.yaml"))
        .expect("openapi/crm.yaml reads")
}

/// GETs `route` without credentials, returning the content type and the body.
async fn fetch(server: &TestServer, route: &str) -> (String, String) {
    let reply = reqwest::get(format!("{}{route}", server.base_url))
        .await
        .expect("request");
    assert_eq!(reply.status(), 200, "{route}");
    let content_type = reply
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (content_type, reply.text().await.expect("body"))
}

#[tokio::test]
async fn the_server_serves_the_source_spec_in_every_form() {
    let server = TestServer::start().await;
    // The spec as written, but for `servers`: the served documents name the relative URL
    // `/` (the origin they were fetched from), not the developer's address in the source.
    let written = source_text();
    let source_text = crm_server::docs::with_server(&written, "/");
    let source = crm_spec::parse(&source_text).expect("crm.yaml parses");
    let mut written = crm_spec::parse(&written).expect("crm.yaml parses");
    written["servers"] = json!([{"url": "/", "description": "This server: the origin this document was fetched from"}]);
    assert_eq!(source, written, "only servers differs from the source");

    let (kind, yaml) = fetch(&server, "/openapi.yaml").await;
    assert_eq!(kind, "application/yaml");
    assert_eq!(
        yaml, source_text,
        "the YAML is the spec as written, with this server"
    );

    let (kind, json) = fetch(&server, "/openapi.json").await;
    assert_eq!(kind, "application/json");
    let json: Value = serde_json::from_str(&json).expect("JSON");
    assert_eq!(json, source);

    let (kind, v31) = fetch(&server, "/openapi-3.1.json").await;
    assert_eq!(kind, "application/json");
    let v31: Value = serde_json::from_str(&v31).expect("JSON");
    assert_eq!(v31["openapi"], "3.1.0");
    assert_eq!(v31, crm_spec::convert_30_to_31(&source));

    let (kind, page) = fetch(&server, "/docs").await;
    assert_eq!(kind, "text/html; charset=utf-8");
    assert!(page.contains("SwaggerUIBundle"));
    assert!(page.contains("\"operationId\":\"crm_list_contacts\""));
    assert!(!page.contains("<script src"), "the page loads no script");
    assert!(
        !page.contains("127.0.0.1:8080"),
        "the page names no fixed address"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_public_url_is_the_server_the_documents_name() {
    let server = TestServer::start_with(crm_server::HttpSettings {
        public_url: Some("https://crm.example.com".into()),
        ..crm_server::HttpSettings::default()
    })
    .await;
    let (_, json) = fetch(&server, "/openapi.json").await;
    let json: Value = serde_json::from_str(&json).expect("JSON");
    assert_eq!(
        json["servers"],
        json!([{"url": "https://crm.example.com", "description": "This server"}])
    );
    let (_, page) = fetch(&server, "/docs").await;
    assert!(page.contains("https://crm.example.com"));
    server.stop().await;
}

#[tokio::test]
async fn the_documentation_routes_are_not_in_the_crm_contract() {
    let emitted = serde_json::to_value(crm_api::openapi()).expect("serialises");
    let paths = emitted["paths"].as_object().expect("paths");
    assert!(paths.keys().any(|p| p.starts_with("/unified/crm/")));
    for route in ROUTES {
        assert!(
            !paths.contains_key(route),
            "{route} is in crm_api::openapi()"
        );
    }
    let spec = crm_spec::parse(&source_text()).expect("parses");
    for route in ROUTES {
        assert!(spec["paths"].get(route).is_none(), "{route} is in crm.yaml");
    }
}

#[tokio::test]
async fn other_methods_and_routes_keep_the_contract_error_shape() {
    let server = TestServer::start().await;
    let http = reqwest::Client::new();
    let reply = http
        .post(format!("{}/docs", server.base_url))
        .send()
        .await
        .expect("request");
    assert_eq!(reply.status(), 405);
    let reply = http
        .get(format!("{}/docs/nothing", server.base_url))
        .send()
        .await
        .expect("request");
    assert_eq!(reply.status(), 404);
    let body: Value = reply.json().await.expect("a JSON error body");
    assert_eq!(body["statusCode"], 404);
    server.stop().await;
}
