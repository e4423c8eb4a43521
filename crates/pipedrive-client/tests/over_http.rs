//! The generated client against a scripted HTTP server: what goes on the wire (cursor
//! paging parameters, the comma-separated `ids`, JSON and form bodies) and how an error's
//! status, headers and body are read.

use pipedrive_client::{Client, Error, types};
use serde_json::json;
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

const RATE_HEADERS: &str = "x-ratelimit-limit: 80\r\nx-ratelimit-remaining: 0\r\nx-ratelimit-reset: 2\r\nretry-after: 2\r\n";

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
async fn list_persons_sends_cursor_limit_updated_since_and_ids() {
    let (client, server) = script(vec![(
        200,
        r#"{"success": true, "data": [], "additional_data": {"next_cursor": null}}"#,
    )])
    .await;
    let since = chrono::DateTime::parse_from_rfc3339("2026-01-05T10:00:00Z")
        .unwrap()
        .to_utc();
    let page = client
        .list_persons()
        .cursor("eyJpZCI6N30")
        .limit(500u32)
        .updated_since(since)
        .sort_by(types::SortBy::UpdateTime)
        .ids("1,2")
        .send()
        .await
        .unwrap()
        .into_inner();
    assert!(page.additional_data.next_cursor.is_none());
    let seen = server.await.unwrap();
    assert_eq!(
        seen[0].line,
        "GET /api/v2/persons?cursor=eyJpZCI6N30&ids=1%2C2&limit=500&sort_by=update_time\
         &updated_since=2026-01-05T10%3A00%3A00Z HTTP/1.1"
    );
}

#[tokio::test]
async fn create_person_sends_custom_fields_as_given() {
    let (client, server) = script(vec![(
        200,
        r#"{"success": true, "data": {"id": 7, "name": "Ada Lovelace",
            "add_time": "2026-01-05T10:00:00Z",
            "custom_fields": {"0123456789abcdef0123456789abcdef01234567": 42}}}"#,
    )])
    .await;
    let custom_fields = json!({"0123456789abcdef0123456789abcdef01234567": 42, "other": null});
    let person = client
        .create_person()
        .body_map(|body| {
            body.name("Ada Lovelace")
                .emails(vec![types::LabeledValue {
                    value: "ada@example.com".into(),
                    primary: Some(true),
                    label: Some("work".into()),
                }])
                .custom_fields(custom_fields.as_object().unwrap().clone())
        })
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(person.data.id, 7);
    let seen = server.await.unwrap();
    assert_eq!(seen[0].line, "POST /api/v2/persons HTTP/1.1");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&seen[0].body).unwrap(),
        json!({
            "name": "Ada Lovelace",
            "emails": [{"value": "ada@example.com", "primary": true, "label": "work"}],
            "custom_fields": {"0123456789abcdef0123456789abcdef01234567": 42, "other": null}
        })
    );
}

#[tokio::test]
async fn rate_limited_is_an_error_response_with_status_headers_and_body() {
    let (client, _server) = script(vec![(
        429,
        r#"{"success": false, "error": "Request over limit", "data": null}"#,
    )])
    .await;
    let error = client.list_person_fields().send().await.unwrap_err();
    let Error::ErrorResponse(response) = error else {
        panic!("not an error response: {error:?}");
    };
    assert_eq!(response.status().as_u16(), 429);
    assert_eq!(response.headers()["retry-after"], "2");
    assert_eq!(response.headers()["x-ratelimit-remaining"], "0");
    let body: types::PipedriveError = response.into_inner();
    assert_eq!(body.error, "Request over limit");
}

#[tokio::test]
async fn token_refresh_sends_a_form() {
    let (client, server) = script(vec![(
        200,
        r#"{"access_token": "at-2", "token_type": "Bearer", "refresh_token": "rt-2",
            "scope": "base", "expires_in": 3599, "api_domain": "https://acme.pipedrive.com"}"#,
    )])
    .await;
    let token = client
        .refresh_token()
        .body_map(|body| {
            body.grant_type(types::RefreshTokenFormGrantType::RefreshToken)
                .refresh_token("rt-1")
        })
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(token.refresh_token, "rt-2");
    let seen = server.await.unwrap();
    assert_eq!(seen[0].line, "POST /oauth/token HTTP/1.1");
    assert_eq!(
        seen[0].header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(seen[0].body, "grant_type=refresh_token&refresh_token=rt-1");
}
