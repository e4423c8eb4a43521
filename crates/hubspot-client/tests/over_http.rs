//! The generated client against a scripted HTTP server: what goes on the wire (paths with the
//! date version, the comma-separated `properties`, JSON and form bodies) and how an error's
//! status, headers and body are read.

use hubspot_client::{Client, Error, types};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// One request as the server saw it.
#[derive(Debug)]
struct Seen {
    line: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

const RATE_HEADERS: &str = "x-hubspot-ratelimit-max: 190\r\nx-hubspot-ratelimit-remaining: 189\r\n\
    x-hubspot-ratelimit-interval-milliseconds: 10000\r\nx-hubspot-ratelimit-secondly: 19\r\n\
    x-hubspot-ratelimit-secondly-remaining: 18\r\n";

/// Answers one connection per scripted `(status, body)`, in order, and returns what it saw.
async fn script(answers: Vec<(u16, &'static str)>) -> (Client, JoinHandle<Vec<Seen>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base_url = format!("http://{}", listener.local_addr().unwrap());
    let handle = tokio::spawn(async move {
        let mut seen = Vec::new();
        for (status, body) in answers {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buffer = Vec::new();
            let mut chunk = [0u8; 4096];
            let head_end = loop {
                if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                    break at + 4;
                }
                let n = socket.read(&mut chunk).await.unwrap();
                assert!(n > 0, "connection closed before the end of the headers");
                buffer.extend_from_slice(&chunk[..n]);
            };
            let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
            let mut lines = head.split("\r\n");
            let line = lines.next().unwrap().to_owned();
            let headers: Vec<(String, String)> = lines
                .take_while(|l| !l.is_empty())
                .filter_map(|l| l.split_once(':'))
                .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
                .collect();
            let length: usize = headers
                .iter()
                .find(|(n, _)| n == "content-length")
                .map_or(0, |(_, v)| v.parse().unwrap());
            while buffer.len() < head_end + length {
                let n = socket.read(&mut chunk).await.unwrap();
                assert!(n > 0, "connection closed before the end of the body");
                buffer.extend_from_slice(&chunk[..n]);
            }
            let body_seen = String::from_utf8_lossy(&buffer[head_end..]).into_owned();
            seen.push(Seen {
                line,
                headers,
                body: body_seen,
            });
            let response = format!(
                "HTTP/1.1 {status} Scripted\r\ncontent-type: application/json\r\n{RATE_HEADERS}\
                 content-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            socket.write_all(response.as_bytes()).await.unwrap();
            socket.shutdown().await.unwrap();
        }
        seen
    });
    (Client::new(&base_url, Default::default()), handle)
}

#[tokio::test]
async fn list_contacts_sends_one_comma_separated_properties_key() {
    let (client, server) = script(vec![(
        200,
        r#"{"results": [], "paging": {"next": {"after": "200"}}}"#,
    )])
    .await;
    let page = client
        .list_contacts()
        .after("100")
        .limit(100u32)
        .properties("email,firstname")
        .send()
        .await
        .unwrap();
    assert_eq!(
        page.headers()["x-hubspot-ratelimit-remaining"],
        "189",
        "rate-limit headers are readable on success"
    );
    assert_eq!(page.into_inner().paging.unwrap().next.after, "200");
    let seen = server.await.unwrap();
    assert_eq!(
        seen[0].line,
        "GET /crm/objects/2026-09/contacts?after=100&limit=100&properties=email%2Cfirstname HTTP/1.1"
    );
}

#[tokio::test]
async fn create_conflict_is_an_error_response_with_status_headers_and_body() {
    let (client, server) = script(vec![(
        409,
        r#"{"status": "error", "message": "Contact already exists. Existing ID: 51",
            "correlationId": "c0ffee", "category": "CONFLICT"}"#,
    )])
    .await;
    let error = client
        .create_contact()
        .body_map(|body| {
            body.properties(
                [("email".to_owned(), "ada@example.com".to_owned())]
                    .into_iter()
                    .collect::<std::collections::HashMap<_, _>>(),
            )
        })
        .send()
        .await
        .unwrap_err();
    let Error::ErrorResponse(response) = error else {
        panic!("not an error response: {error:?}");
    };
    assert_eq!(response.status().as_u16(), 409);
    assert_eq!(
        response.headers()["x-hubspot-ratelimit-secondly-remaining"],
        "18"
    );
    let body: types::HubSpotError = response.into_inner();
    assert_eq!(body.category.as_deref(), Some("CONFLICT"));
    let seen = server.await.unwrap();
    assert_eq!(seen[0].line, "POST /crm/objects/2026-09/contacts HTTP/1.1");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&seen[0].body).unwrap(),
        serde_json::json!({"properties": {"email": "ada@example.com"}})
    );
}

#[tokio::test]
async fn search_sends_filter_groups_as_json() {
    let (client, server) = script(vec![(200, r#"{"total": 0, "results": []}"#)]).await;
    let filter = types::Filter::builder()
        .property_name("lastmodifieddate")
        .operator(types::FilterOperator::Gte)
        .value(Some("1767225600000".to_owned()));
    let page = client
        .search_contacts()
        .body_map(|body| {
            body.filter_groups(vec![types::FilterGroup {
                filters: vec![filter.try_into().unwrap()],
            }])
            .sorts(vec![types::Sort {
                property_name: "hs_object_id".into(),
                direction: types::SortDirection::Ascending,
            }])
            .limit(200u32)
        })
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.total, 0);
    let seen = server.await.unwrap();
    assert_eq!(
        seen[0].line,
        "POST /crm/objects/2026-09/contacts/search HTTP/1.1"
    );
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&seen[0].body).unwrap(),
        serde_json::json!({
            "filterGroups": [{"filters": [{"propertyName": "lastmodifieddate",
                                           "operator": "GTE", "value": "1767225600000"}]}],
            "sorts": [{"propertyName": "hs_object_id", "direction": "ASCENDING"}],
            "limit": 200
        })
    );
}

#[tokio::test]
async fn token_refresh_sends_a_form() {
    let (client, server) = script(vec![(
        200,
        r#"{"access_token": "at-2", "refresh_token": "rt-1", "token_type": "bearer",
            "expires_in": 1800}"#,
    )])
    .await;
    let token = client
        .refresh_token()
        .body_map(|body| {
            body.grant_type(types::RefreshTokenFormGrantType::RefreshToken)
                .client_id("id")
                .client_secret("s3cret")
                .refresh_token("rt-1")
        })
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(token.expires_in, 1800);
    let seen = server.await.unwrap();
    assert_eq!(seen[0].line, "POST /oauth/2026-03/token HTTP/1.1");
    assert_eq!(
        seen[0].header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(
        seen[0].body,
        "client_id=id&client_secret=s3cret&grant_type=refresh_token&refresh_token=rt-1"
    );
}
