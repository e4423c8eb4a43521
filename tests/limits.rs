//! Limits and the HTTP edge, against a real server: body, page, header and rate limits,
//! request timeouts, request ids and the health routes. Every refusal is in the contract's
//! error shape and carries the request id.

use std::time::Duration;

use conformance::TestServer;
use crm_server::HttpSettings;
use reqwest::StatusCode;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a test waits for something that must happen, before failing.
const PATIENCE: Duration = Duration::from_secs(20);

/// Checks a response is the contract's error body with `status`, and returns it.
async fn error_body(response: reqwest::Response, status: StatusCode) -> Value {
    assert_eq!(response.status(), status);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert!(
        response.headers().contains_key("x-request-id"),
        "every answer carries a request id"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["statusCode"], status.as_u16(), "{body}");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
    chrono::DateTime::parse_from_rfc3339(body["timestamp"].as_str().unwrap()).unwrap();
    body
}

fn contacts(server: &TestServer, http: &reqwest::Client) -> reqwest::RequestBuilder {
    http.get(format!("{}/unified/crm/contacts", server.base_url))
        .basic_auth(&server.key, Some(""))
        .header("x-account-id", &server.account_id)
}

/// A raw HTTP/1.1 exchange: writes `request`, then reads until the server closes. A server
/// that closes with part of the request unread may reset the connection after answering:
/// what arrived before the reset is the answer.
async fn raw_exchange(server: &TestServer, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let _ = stream.write_all(request).await;
    let mut answer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let read = tokio::time::timeout(PATIENCE, stream.read(&mut chunk))
            .await
            .expect("the server answers and closes");
        match read {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&chunk[..n]),
            Err(e) if !answer.is_empty() => {
                eprintln!("connection ended with {e} after the answer");
                break;
            }
            Err(e) => panic!("no answer: {e}"),
        }
    }
    String::from_utf8_lossy(&answer).into_owned()
}

fn split_response(raw: &str) -> (u16, String, Value) {
    let (head, body) = raw.split_once("\r\n\r\n").expect("a complete response");
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let body = serde_json::from_str(body).unwrap_or(Value::Null);
    (status, head.to_ascii_lowercase(), body)
}

#[tokio::test]
async fn oversized_bodies_are_413() {
    let server = TestServer::start_with(HttpSettings {
        max_body_bytes: 1024,
        ..HttpSettings::default()
    })
    .await;
    let http = reqwest::Client::new();
    let send = |name: String| {
        http.post(format!("{}/unified/crm/contacts", server.base_url))
            .basic_auth(&server.key, Some(""))
            .header("x-account-id", &server.account_id)
            .json(&serde_json::json!({ "first_name": name, "last_name": "x" }))
            .send()
    };
    let body = error_body(
        send("a".repeat(2000)).await.unwrap(),
        StatusCode::PAYLOAD_TOO_LARGE,
    )
    .await;
    assert!(body["message"].as_str().unwrap().contains("too large"));
    assert_eq!(send("a".repeat(900)).await.unwrap().status(), 200);
    server.stop().await;
}

#[tokio::test]
async fn page_size_is_capped() {
    let server = TestServer::start().await;
    let http = reqwest::Client::new();
    for bad in ["101", "0", "1000000"] {
        let response = contacts(&server, &http)
            .query(&[("page_size", bad)])
            .send()
            .await
            .unwrap();
        let body = error_body(response, StatusCode::BAD_REQUEST).await;
        assert_eq!(body["data"]["parameter"], "page_size");
    }
    let response = contacts(&server, &http)
        .query(&[("page_size", "100")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    server.stop().await;
}

#[tokio::test]
async fn large_heads_are_431_in_the_error_shape() {
    let server = TestServer::start_with(HttpSettings {
        max_header_bytes: 4096,
        max_headers: 20,
        ..HttpSettings::default()
    })
    .await;
    let http = reqwest::Client::new();

    // Under both limits: served.
    let response = contacts(&server, &http)
        .header("x-filler", "a".repeat(3000))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    // One header too large.
    let response = contacts(&server, &http)
        .header("x-filler", "a".repeat(5000))
        .send()
        .await
        .unwrap();
    let body = error_body(response, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE).await;
    assert!(body["message"].as_str().unwrap().contains("4096"), "{body}");

    // A long query string counts too.
    let response = contacts(&server, &http)
        .query(&[("fields", "a".repeat(5000))])
        .send()
        .await
        .unwrap();
    error_body(response, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE).await;

    // Too many header fields, up to the count hyper parses itself.
    let mut many = contacts(&server, &http);
    for i in 0..90 {
        many = many.header(format!("x-h{i}"), "v");
    }
    let body = error_body(
        many.send().await.unwrap(),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
    )
    .await;
    assert!(body["message"].as_str().unwrap().contains("header fields"));

    // Past hyper's count: a bare 431, and the connection is closed.
    let fields: String = (0..150).map(|i| format!("x-h{i}: v\r\n")).collect();
    let raw = raw_exchange(
        &server,
        format!("GET /healthz HTTP/1.1\r\nhost: x\r\n{fields}\r\n").as_bytes(),
    )
    .await;
    assert_eq!(split_response(&raw).0, 431, "{raw}");

    // Far past the limit, hyper refuses the head itself without reading it into memory:
    // still 431, and the connection is closed.
    let raw = raw_exchange(
        &server,
        format!(
            "GET /healthz HTTP/1.1\r\nhost: x\r\nx-filler: {}\r\n\r\n",
            "a".repeat(40_000)
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(split_response(&raw).0, 431, "{raw}");
    server.stop().await;
}

#[tokio::test]
async fn the_rate_limit_is_off_by_default() {
    let server = TestServer::start().await;
    let http = reqwest::Client::new();
    for _ in 0..40 {
        assert_eq!(contacts(&server, &http).send().await.unwrap().status(), 200);
    }
    server.stop().await;
}

#[tokio::test]
async fn the_rate_limit_answers_429_with_retry_after_per_key() {
    let server = TestServer::start_with(HttpSettings {
        rate_limit_per_minute: Some(3),
        ..HttpSettings::default()
    })
    .await;
    let http = reqwest::Client::new();
    for _ in 0..3 {
        assert_eq!(contacts(&server, &http).send().await.unwrap().status(), 200);
    }
    let response = contacts(&server, &http).send().await.unwrap();
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .expect("Retry-After in whole seconds");
    // Three a minute: a token every 20 seconds.
    assert!((1..=20).contains(&retry_after), "{retry_after}");
    let body = error_body(response, StatusCode::TOO_MANY_REQUESTS).await;
    assert_eq!(body["data"]["retry_after"], retry_after);

    // The limit is per key as presented: someone guessing at another project's key fills
    // the guess's own bucket (401 until it is spent, then 429) and none of the real key's.
    let other = server.other_tenant().await;
    let forged = format!("{}x", other.key);
    let mut statuses = Vec::new();
    for key in [&forged, &forged, &forged, &forged, &other.key] {
        let response = http
            .get(format!("{}/unified/crm/contacts", server.base_url))
            .basic_auth(key, Some(""))
            .header("x-account-id", &other.account_id)
            .send()
            .await
            .unwrap();
        statuses.push(response.status().as_u16());
    }
    assert_eq!(statuses, [401, 401, 401, 429, 200]);
    server.stop().await;
}

#[tokio::test]
async fn a_request_that_takes_too_long_is_408() {
    let server = TestServer::start_with(HttpSettings {
        request_timeout: Some(Duration::from_millis(300)),
        ..HttpSettings::default()
    })
    .await;
    // The body is announced but never finished: only the timeout can answer.
    let head = format!(
        "POST /unified/crm/contacts HTTP/1.1\r\nhost: x\r\nx-request-id: slow-1\r\n\
         authorization: Bearer {}\r\nx-account-id: {}\r\ncontent-type: application/json\r\n\
         content-length: 100\r\n\r\n{{\"first_name\":",
        server.key, server.account_id
    );
    let raw = raw_exchange(&server, head.as_bytes()).await;
    let (status, headers, body) = split_response(&raw);
    assert_eq!(status, 408, "{raw}");
    assert!(headers.contains("x-request-id: slow-1"), "{headers}");
    assert!(headers.contains("connection: close"), "{headers}");
    assert_eq!(body["statusCode"], 408);
    assert!(body["message"].as_str().unwrap().contains("300 ms"));

    // A head that never ends is dropped too, without an answer.
    let raw = raw_exchange(&server, b"GET /healthz HTTP/1.1\r\nhost: x\r\n").await;
    assert_eq!(raw, "", "an unfinished head gets no answer");

    // Nothing of the cut-off write landed.
    let http = reqwest::Client::new();
    let page: Value = contacts(&server, &http)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["data"], serde_json::json!([]));
    server.stop().await;
}

#[tokio::test]
async fn every_answer_carries_a_request_id() {
    let server = TestServer::start().await;
    let http = reqwest::Client::new();
    let base = &server.base_url;

    // A caller's id is returned as it was sent, on successes and failures alike.
    for (request, status) in [
        (contacts(&server, &http), 200),
        (http.get(format!("{base}/unified/crm/contacts")), 401),
        (http.get(format!("{base}/no/such/route")), 404),
        (http.put(format!("{base}/unified/crm/contacts")), 405),
        (http.get(format!("{base}/healthz")), 200),
    ] {
        let response = request
            .header("x-request-id", "trace-42.a")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), status);
        assert_eq!(response.headers()["x-request-id"], "trace-42.a");
    }

    // Without one, or with one that is not plain text, a fresh id is made for each request.
    let mut seen = std::collections::HashSet::new();
    for sent in [None, Some("has spaces"), Some(&*"a".repeat(200))] {
        let mut request = contacts(&server, &http);
        if let Some(id) = sent {
            request = request.header("x-request-id", id);
        }
        let response = request.send().await.unwrap();
        let id = response.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(uuid_like(&id), "{id}");
        assert!(seen.insert(id));
    }
    server.stop().await;
}

fn uuid_like(id: &str) -> bool {
    id.len() == 36 && id.chars().filter(|c| *c == '-').count() == 4
}

#[tokio::test]
async fn health_routes_answer_outside_the_contract() {
    let server = TestServer::start().await;
    let http = reqwest::Client::new();
    let health: Value = http
        .get(format!("{}/healthz", server.base_url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");
    let ready = http
        .get(format!("{}/readyz", server.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    // They are not CRM operations: the emitted document does not list them.
    let doc = serde_json::to_value(crm_api::openapi()).unwrap();
    let paths = doc["paths"].as_object().unwrap();
    assert!(
        paths.keys().all(|p| p.starts_with("/unified/crm/")),
        "{:?}",
        paths.keys()
    );
    server.stop().await;
}

#[tokio::test]
async fn ready_only_once_migrations_have_run() {
    // A database the server has never migrated, of the store under test.
    let database = crm_testkit::TestDatabase::new(crm_testkit::Store::from_env()).await;
    let url: crm_server::DatabaseUrl = database.url().parse().unwrap();
    let settings = crm_server::PoolSettings::default();
    let bare = crm_server::Database::connect(&url, settings).await.unwrap();
    assert!(crm_server::health::pending_migrations(&bare).await.unwrap() > 0);

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let clock = std::sync::Arc::new(crm_server::SystemClock);
    let app = crm_server::app(bare.clone(), clock, &HttpSettings::default());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(crm_server::serve(listener, app, async move {
        let _ = stopped.await;
    }));
    let http = reqwest::Client::new();
    let response = http
        .get(format!("http://{addr}/readyz"))
        .send()
        .await
        .unwrap();
    let body = error_body(response, StatusCode::SERVICE_UNAVAILABLE).await;
    assert!(body["message"].as_str().unwrap().contains("migrations"));
    // Alive all the same.
    let response = http
        .get(format!("http://{addr}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    // Opening the database as the server does runs the migrations: now it is ready.
    let migrated = crm_server::Database::open(&url, settings).await.unwrap();
    let response = http
        .get(format!("http://{addr}/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        crm_server::health::pending_migrations(&bare).await.unwrap(),
        0
    );

    let _ = stop.send(());
    task.await.unwrap().unwrap();
    migrated.close().await;
    bare.close().await;
}

/// `path` with each `{name}` segment of a route template filled in.
fn instantiate(template: &str) -> String {
    template
        .split('/')
        .map(|segment| {
            if segment.starts_with('{') {
                "x1"
            } else {
                segment
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[tokio::test]
async fn the_edge_names_every_route_the_router_serves() {
    let server = TestServer::start().await;
    let app = crm_server::app(
        server.db.clone(),
        server.clock.clone(),
        &HttpSettings::default(),
    );
    let routes: Vec<&str> = app.routes().collect();
    // The API's operations, then the health, documentation and metrics routes.
    let operations = crm_api::openapi().paths.paths.len();
    assert_eq!(routes.len(), operations + 7, "{routes:?}");
    for expected in [
        "/healthz",
        "/readyz",
        "/openapi.json",
        "/openapi.yaml",
        "/openapi-3.1.json",
        "/docs",
        "/metrics",
        "/unified/crm/contacts/{id}",
    ] {
        assert!(routes.contains(&expected), "{expected} in {routes:?}");
    }
    let http = reqwest::Client::new();
    for route in &routes {
        let path = instantiate(route);
        assert_eq!(app.route_of(&path), Some(*route), "{path}");
        // The router serves the path: a method none of its routes has is 405 there, where
        // a path with no route is 404.
        let answer = http
            .request(reqwest::Method::TRACE, format!("{}{path}", server.base_url))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 405, "TRACE {path}");
    }
    let unknown = "/unified/crm/nothing-here";
    assert_eq!(app.route_of(unknown), None);
    let answer = http
        .request(
            reqwest::Method::TRACE,
            format!("{}{unknown}", server.base_url),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 404);
    server.stop().await;
}

/// Reads one answer to a `GET /healthz` (its body is the last thing in it).
async fn read_health_answer(stream: &mut TcpStream) {
    let mut answer = Vec::new();
    let mut chunk = [0u8; 1024];
    while !answer.ends_with(br#"{"status":"ok"}"#) {
        let n = tokio::time::timeout(PATIENCE, stream.read(&mut chunk))
            .await
            .expect("an answer")
            .unwrap();
        assert!(n > 0, "closed before answering");
        answer.extend_from_slice(&chunk[..n]);
    }
}

#[tokio::test]
async fn a_connection_with_no_request_head_in_time_is_closed() {
    let limit = Duration::from_millis(500);
    let server = TestServer::start_with(HttpSettings {
        request_timeout: Some(limit),
        ..HttpSettings::default()
    })
    .await;
    let health = b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n";

    // Asked again and again, each time well within the limit, a connection stays open for
    // longer than the limit.
    let mut busy = TcpStream::connect(server.addr).await.unwrap();
    let opened = std::time::Instant::now();
    while opened.elapsed() < limit * 3 {
        busy.write_all(health).await.unwrap();
        read_health_answer(&mut busy).await;
        tokio::time::sleep(limit / 3).await;
    }
    busy.write_all(health).await.unwrap();
    read_health_answer(&mut busy).await;

    // Then left idle, it is closed once the limit has passed since its last answer.
    let answered = std::time::Instant::now();
    let mut rest = [0u8; 64];
    let read = tokio::time::timeout(PATIENCE, busy.read(&mut rest))
        .await
        .expect("the idle connection is closed");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    let waited = answered.elapsed();
    assert!(waited >= limit, "closed after {waited:?}");
    server.stop().await;
}
