//! The hand-written parts of the client against a scripted HTTP server: authentication,
//! walking pages, the `filter[updated_after]` key and error bodies.

use futures::TryStreamExt as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// One request as the server saw it: the request line and the headers (names lowercased).
#[derive(Debug)]
struct Seen {
    line: String,
    headers: Vec<(String, String)>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Answers one connection per scripted `(status, body)`, in order, and returns what it saw.
async fn script(answers: Vec<(u16, &'static str)>) -> (String, JoinHandle<Vec<Seen>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base_url = format!("http://{}", listener.local_addr().unwrap());
    let handle = tokio::spawn(async move {
        let mut seen = Vec::new();
        for (status, body) in answers {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buffer = Vec::new();
            let mut chunk = [0u8; 4096];
            while !buffer.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = socket.read(&mut chunk).await.unwrap();
                assert!(n > 0, "connection closed before the end of the headers");
                buffer.extend_from_slice(&chunk[..n]);
            }
            let head = String::from_utf8_lossy(&buffer).into_owned();
            let mut lines = head.split("\r\n");
            let line = lines.next().unwrap().to_owned();
            let headers = lines
                .take_while(|l| !l.is_empty())
                .filter_map(|l| l.split_once(':'))
                .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
                .collect();
            seen.push(Seen { line, headers });
            let response = format!(
                "HTTP/1.1 {status} Scripted\r\ncontent-type: application/json\r\n\
                 content-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            socket.write_all(response.as_bytes()).await.unwrap();
            socket.shutdown().await.unwrap();
        }
        seen
    });
    (base_url, handle)
}

#[tokio::test]
async fn all_contacts_follows_next_with_basic_auth() {
    let (base_url, server) = script(vec![
        (
            200,
            r#"{"data":[{"id":"c1","first_name":"Ada"}],"next":"cursor-2"}"#,
        ),
        (200, r#"{"data":[{"id":"c2"}],"next":null}"#),
    ])
    .await;
    let client = crm_client::with_api_key(&base_url, "key");
    let contacts: Vec<_> = crm_client::all_contacts(&client, "acct-1")
        .try_collect()
        .await
        .unwrap();
    let ids: Vec<_> = contacts.iter().map(|c| c.id.as_deref().unwrap()).collect();
    assert_eq!(ids, ["c1", "c2"]);
    assert_eq!(contacts[0].first_name.as_deref(), Some("Ada"));

    let seen = server.await.unwrap();
    assert_eq!(seen[0].line, "GET /unified/crm/contacts HTTP/1.1");
    assert_eq!(
        seen[1].line,
        "GET /unified/crm/contacts?next=cursor-2 HTTP/1.1"
    );
    for request in &seen {
        // base64("key:")
        assert_eq!(request.header("authorization"), Some("Basic a2V5Og=="));
        assert_eq!(request.header("x-account-id"), Some("acct-1"));
    }
}

#[tokio::test]
async fn filter_updated_after_is_sent_as_a_deep_object_key() {
    let (base_url, server) = script(vec![(200, r#"{"data":[]}"#)]).await;
    let client = crm_client::with_api_key(&base_url, "key");
    let after: chrono::DateTime<chrono::Utc> = "2024-01-01T00:00:00Z".parse().unwrap();
    let page = client
        .crm_list_contacts()
        .x_account_id("acct-1")
        .filter_updated_after(after)
        .send()
        .await
        .unwrap()
        .into_inner();
    assert!(page.data.is_empty());
    assert!(page.next.is_none());

    let seen = server.await.unwrap();
    // `filter[updated_after]`, with the brackets percent-encoded as form encoding does.
    assert!(
        seen[0]
            .line
            .contains("filter%5Bupdated_after%5D=2024-01-01T00%3A00%3A00Z"),
        "{}",
        seen[0].line
    );
}

#[tokio::test]
async fn error_bodies_decode_as_error_response() {
    let (base_url, _server) = script(vec![(
        404,
        r#"{"statusCode":404,"message":"no contact c9","timestamp":"2024-01-01T00:00:00Z"}"#,
    )])
    .await;
    let client = crm_client::with_api_key(&base_url, "key");
    let error = client
        .crm_get_contact()
        .x_account_id("acct-1")
        .id("c9")
        .send()
        .await
        .unwrap_err();
    match error {
        crm_client::Error::ErrorResponse(body) => {
            assert_eq!(body.status().as_u16(), 404);
            assert_eq!(body.status_code, 404);
            assert_eq!(body.message, "no contact c9");
        }
        other => panic!("expected an error response, got {other:?}"),
    }
}
