//! The Pipedrive double, driven over HTTP.

use std::collections::HashSet;
use std::time::Duration;

use base64::Engine as _;
use provider_doubles::{Failure, PipedriveDouble};
use reqwest::{Client, Method, Response, StatusCode};
use serde_json::{Value, json};

const TOKEN: &str = "pd-api-token-1";

async fn double() -> (PipedriveDouble, Client) {
    let pd = PipedriveDouble::start().await;
    pd.add_token(TOKEN);
    (pd, Client::new())
}

fn api(pd: &PipedriveDouble, rest: &str) -> String {
    format!("{}/api/v2/{rest}", pd.base_url())
}

async fn split(resp: Response) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let status = resp.status();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap();
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).expect("a JSON body")
    };
    (status, headers, body)
}

async fn call(
    c: &Client,
    method: Method,
    u: &str,
    body: Option<Value>,
) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let mut rb = c.request(method, u).header("x-api-token", TOKEN);
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    split(rb.send().await.expect("the double answers")).await
}

fn assert_error_shape(body: &Value) {
    assert_eq!(body["success"], false, "{body}");
    assert!(
        body["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{body}"
    );
    assert_eq!(body["data"], Value::Null, "{body}");
    assert!(body.as_object().unwrap().contains_key("data"), "{body}");
}

fn assert_rate_headers(h: &reqwest::header::HeaderMap) {
    for name in [
        "x-ratelimit-limit",
        "x-ratelimit-remaining",
        "x-ratelimit-reset",
    ] {
        let v = h.get(name).unwrap_or_else(|| panic!("{name} missing"));
        v.to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap_or_else(|_| panic!("{name} is not a number"));
    }
    let reset: u64 = h["x-ratelimit-reset"].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&reset), "a 2-second window: reset {reset}");
}

#[tokio::test]
async fn auth_by_header_query_or_bearer_only() {
    let (pd, c) = double().await;
    let (status, headers, body) = split(c.get(api(&pd, "persons")).send().await.unwrap()).await;
    assert_eq!(status, 401);
    assert_eq!(
        body,
        json!({"success": false, "error": "unauthorized access", "errorCode": 401,
        "error_info": "Please check developers.pipedrive.com"})
    );
    assert_rate_headers(&headers);
    let resp = c
        .get(api(&pd, "persons"))
        .header("x-api-token", "nope")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let resp = c
        .get(api(&pd, "persons"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401, "an API token is not a bearer token");

    let (status, headers, body) = call(&c, Method::GET, &api(&pd, "persons"), None).await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"success": true, "data": [], "additional_data": {"next_cursor": null}})
    );
    assert_rate_headers(&headers);
    let resp = c
        .get(format!("{}?api_token={TOKEN}", api(&pd, "persons")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "the legacy query parameter");
    assert!(
        pd.calls().iter().all(|c| !format!("{c:?}").contains(TOKEN)),
        "the record keeps no token"
    );
}

#[tokio::test]
async fn persons_page_to_the_end_with_opaque_cursors() {
    let (pd, c) = double().await;
    let mut seeded = HashSet::new();
    for i in 0..1200 {
        seeded.insert(pd.insert_person(json!({"name": format!("Person {i}")})));
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let u = match &cursor {
            Some(cur) => api(&pd, &format!("persons?limit=500&cursor={cur}")),
            None => api(&pd, "persons?limit=500"),
        };
        let (status, _, body) = call(&c, Method::GET, &u, None).await;
        assert_eq!(status, 200, "{body}");
        pages += 1;
        seen.extend(
            body["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["id"].as_i64().unwrap()),
        );
        match body["additional_data"]["next_cursor"].as_str() {
            Some(next) => {
                assert!(
                    base64::engine::general_purpose::URL_SAFE_NO_PAD
                        .decode(next)
                        .is_ok(),
                    "base64: {next}"
                );
                assert!(next.parse::<i64>().is_err(), "opaque, not a number");
                cursor = Some(next.to_owned());
            }
            None => {
                assert_eq!(body["additional_data"]["next_cursor"], Value::Null);
                break;
            }
        }
        assert!(pages < 10);
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 1200);
    assert_eq!(seen.iter().copied().collect::<HashSet<_>>(), seeded);
    assert!(seen.windows(2).all(|w| w[0] < w[1]));

    let (_, _, body) = call(&c, Method::GET, &api(&pd, "persons"), None).await;
    assert_eq!(body["data"].as_array().unwrap().len(), 100, "default limit");
    for bad in [
        "persons?limit=501",
        "persons?limit=0",
        "persons?cursor=%21%21",
        "persons?sort_by=name",
        "persons?sort_direction=up",
    ] {
        let (status, _, body) = call(&c, Method::GET, &api(&pd, bad), None).await;
        assert_eq!(status, 400, "{bad}");
        assert_error_shape(&body);
    }
    let (_, _, body) = call(&c, Method::GET, &api(&pd, "persons?ids=3,5,2000"), None).await;
    let ids: Vec<i64> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [3, 5]);
}

#[tokio::test]
async fn updated_filters_and_sorting() {
    let (pd, c) = double().await;
    for (i, t) in [
        "2026-01-01T00:00:00Z",
        "2026-01-02T00:00:00Z",
        "2026-01-03T00:00:00Z",
        "2026-01-04T00:00:00Z",
    ]
    .iter()
    .enumerate()
    {
        pd.insert_person(
            json!({"name": format!("P{i}"), "add_time": "2025-12-01T00:00:00Z", "update_time": t}),
        );
    }
    let u = api(
        &pd,
        "persons?updated_since=2026-01-02T00:00:00Z&updated_until=2026-01-04T00:00:00Z&sort_by=update_time&sort_direction=desc",
    );
    let (status, _, body) = call(&c, Method::GET, &u, None).await;
    assert_eq!(status, 200, "{body}");
    let names: Vec<&str> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["P2", "P1"],
        "since is inclusive, until exclusive, newest first"
    );
    let (status, _, _) = call(
        &c,
        Method::GET,
        &api(&pd, "persons?updated_since=yesterday"),
        None,
    )
    .await;
    assert_eq!(status, 400);

    // Paging by update_time descending visits each once.
    let mut names = Vec::new();
    let mut cursor = String::new();
    loop {
        let q = if cursor.is_empty() {
            String::new()
        } else {
            format!("&cursor={cursor}")
        };
        let (_, _, body) = call(
            &c,
            Method::GET,
            &api(
                &pd,
                &format!("persons?limit=1&sort_by=update_time&sort_direction=desc{q}"),
            ),
            None,
        )
        .await;
        names.extend(
            body["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["name"].as_str().unwrap().to_owned()),
        );
        match body["additional_data"]["next_cursor"].as_str() {
            Some(n) => cursor = n.to_owned(),
            None => break,
        }
    }
    assert_eq!(names, ["P3", "P2", "P1", "P0"]);
    let (status, _, _) = call(
        &c,
        Method::GET,
        &api(&pd, &format!("persons?sort_by=id&cursor={cursor}")),
        None,
    )
    .await;
    assert_eq!(status, 400, "a cursor made for another sort");
}

#[tokio::test]
async fn person_writes_are_validated_strictly() {
    let (pd, c) = double().await;
    let tier = pd.add_person_field(json!({"field_name": "Tier", "field_type": "enum", "options": [{"label": "Gold"}, {"label": "Silver"}]}));
    let score = pd.add_person_field(json!({"field_name": "Score", "field_type": "double"}));
    assert!(tier.len() == 40 && tier.bytes().all(|b| b.is_ascii_hexdigit()));
    let post = |b: Value| {
        let c = c.clone();
        let u = api(&pd, "persons");
        async move { call(&c, Method::POST, &u, Some(b)).await }
    };
    let bad = [
        json!({"emails": [{"value": "a@example.com"}]}),
        json!({"name": ""}),
        json!({"name": "Ann Lee", "first_name": "Ann"}),
        json!({"name": "Ann Lee", "last_name": "Lee"}),
        json!({"name": "Ann Lee", "nickname": "A"}),
        json!({"name": "Ann Lee", "emails": [{"value": "not-an-email", "primary": true}]}),
        json!({"name": "Ann Lee", "owner_id": "1"}),
        json!({"name": "Ann Lee", "custom_fields": {"0000000000000000000000000000000000000000": "x"}}),
        json!({"name": "Ann Lee", "custom_fields": {score.clone(): "12"}}),
        json!({"name": "Ann Lee", "custom_fields": {tier.clone(): 999}}),
        json!({"name": "Ann Lee", "org_id": 42}),
    ];
    for b in bad {
        let (status, _, body) = post(b.clone()).await;
        assert_eq!(status, 400, "{b}");
        assert_error_shape(&body);
    }
    let org = pd.insert_organization(json!({"name": "Acme", "address": "Main St 1"}));
    let gold = pd.add_person_field(json!({"field_name": "Probe", "field_type": "varchar"}));
    let (status, _, body) = post(json!({"name": "Ann Lee Smith", "org_id": org,
        "emails": [{"value": "ann@example.com", "label": "work"}, {"value": "ann@home.example", "label": "home"}],
        "custom_fields": {score.clone(): 12.5}})).await;
    assert_eq!(status, 200, "{body}");
    let p = &body["data"];
    assert_eq!(p["first_name"], "Ann");
    assert_eq!(p["last_name"], "Lee Smith");
    assert_eq!(p["org_id"], org);
    assert_eq!(p["owner_id"], 1);
    assert_eq!(
        p["emails"][0],
        json!({"value": "ann@example.com", "primary": true, "label": "work"})
    );
    assert_eq!(p["emails"][1]["primary"], false);
    let custom = p["custom_fields"].as_object().unwrap();
    assert_eq!(custom.len(), 3, "every custom field, set or not");
    assert_eq!(custom[&score], 12.5);
    assert_eq!(custom[&tier], Value::Null);
    assert_eq!(custom[&gold], Value::Null);
    let add_time = p["add_time"].as_str().unwrap();
    assert_eq!(
        add_time.len(),
        "2026-01-01T00:00:00Z".len(),
        "1-second resolution: {add_time}"
    );
    let id = p["id"].as_i64().unwrap();
    assert_eq!(pd.person(id).unwrap(), *p);

    let u = api(&pd, &format!("persons/{id}"));
    let (status, _, _) = call(&c, Method::PATCH, &u, Some(json!({"first_name": "X"}))).await;
    assert_eq!(status, 400);
    let (status, _, body) = call(
        &c,
        Method::PATCH,
        &u,
        Some(json!({"name": "Bo", "custom_fields": {score.clone(): null}})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["first_name"], "Bo");
    assert_eq!(body["data"]["last_name"], Value::Null);
    assert_eq!(body["data"]["custom_fields"][&score], Value::Null);
    assert_eq!(
        body["data"]["emails"].as_array().unwrap().len(),
        2,
        "untouched fields stay"
    );

    let (status, _, body) = call(&c, Method::DELETE, &u, None).await;
    assert_eq!(status, 200);
    assert_eq!(body, json!({"success": true, "data": {"id": id}}));
    for m in [Method::GET, Method::PATCH, Method::DELETE] {
        let (status, _, body) = call(&c, m.clone(), &u, Some(json!({}))).await;
        assert_eq!(status, 404, "{m}");
        assert_error_shape(&body);
        assert_eq!(body["error"], "Person not found");
    }
    assert!(pd.person(id).is_none());
}

#[tokio::test]
async fn update_time_has_the_clocks_resolution() {
    let (pd, c) = double().await;
    pd.set_clock_resolution_seconds(3600);
    let (_, _, body) = call(
        &c,
        Method::POST,
        &api(&pd, "persons"),
        Some(json!({"name": "Ann"})),
    )
    .await;
    let t = chrono::DateTime::parse_from_rfc3339(body["data"]["update_time"].as_str().unwrap())
        .unwrap();
    assert_eq!(t.timestamp() % 3600, 0, "{t}");
    let id = body["data"]["id"].as_i64().unwrap();
    let (_, _, body) = call(
        &c,
        Method::PATCH,
        &api(&pd, &format!("persons/{id}")),
        Some(json!({"name": "Bo"})),
    )
    .await;
    let t = chrono::DateTime::parse_from_rfc3339(body["data"]["update_time"].as_str().unwrap())
        .unwrap();
    assert_eq!(t.timestamp() % 3600, 0, "{t}");
}

#[tokio::test]
async fn person_fields_and_organizations() {
    let (pd, c) = double().await;
    let codes: Vec<String> = (0..3)
        .map(|i| pd.add_person_field(json!({"field_name": format!("F{i}")})))
        .collect();
    let mut fields = Vec::new();
    let mut cursor = String::new();
    let mut pages = 0;
    loop {
        let q = if cursor.is_empty() {
            "limit=5".to_owned()
        } else {
            format!("limit=5&cursor={cursor}")
        };
        let (status, _, body) = call(
            &c,
            Method::GET,
            &api(&pd, &format!("personFields?{q}")),
            None,
        )
        .await;
        assert_eq!(status, 200, "{body}");
        pages += 1;
        fields.extend(body["data"].as_array().unwrap().iter().cloned());
        match body["additional_data"]["next_cursor"].as_str() {
            Some(n) => cursor = n.to_owned(),
            None => break,
        }
    }
    assert_eq!(fields.len(), 14);
    assert_eq!(pages, 3);
    let custom: Vec<&str> = fields
        .iter()
        .filter(|f| f["is_custom_field"] == true)
        .map(|f| f["field_code"].as_str().unwrap())
        .collect();
    assert_eq!(custom, codes.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(
        fields
            .iter()
            .any(|f| f["field_code"] == "name" && f["field_type"] == "varchar")
    );
    assert_eq!(
        call(&c, Method::GET, &api(&pd, "personFields?limit=501"), None)
            .await
            .0,
        400
    );

    let a = pd.insert_organization(json!({"name": "Acme", "address": "Main St 1"}));
    let b = pd.insert_organization(json!({"name": "Beta"}));
    let (status, _, body) = call(&c, Method::GET, &api(&pd, "organizations?limit=1"), None).await;
    assert_eq!(status, 200);
    assert_eq!(body["data"][0]["id"], a);
    assert_eq!(body["data"][0]["address"], json!({"value": "Main St 1"}));
    let next = body["additional_data"]["next_cursor"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, _, body) = call(
        &c,
        Method::GET,
        &api(&pd, &format!("organizations?limit=1&cursor={next}")),
        None,
    )
    .await;
    assert_eq!(body["data"][0]["id"], b);
    assert_eq!(body["data"][0]["address"], Value::Null);
    assert_eq!(body["additional_data"]["next_cursor"], Value::Null);
    let (status, _, body) = call(
        &c,
        Method::GET,
        &api(&pd, &format!("organizations/{b}")),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["data"]["name"], "Beta");
    let (status, _, body) = call(&c, Method::GET, &api(&pd, "organizations/99"), None).await;
    assert_eq!(status, 404);
    assert_eq!(body["error"], "Organization not found");
}

#[tokio::test]
async fn window_limit_answers_429_with_retry_after() {
    let (pd, c) = double().await;
    pd.set_window_limit(Some(3));
    let mut limited = None;
    for _ in 0..12 {
        let resp = c
            .get(api(&pd, "persons"))
            .header("x-api-token", TOKEN)
            .send()
            .await
            .unwrap();
        if resp.status() == 429 {
            limited = Some(split(resp).await);
            break;
        }
    }
    let (_, headers, body) = limited.expect("a 429 within 12 calls at 3 per 2 s");
    assert_error_shape(&body);
    assert_eq!(body["error"], "Request over limit");
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry), "{retry}");
    assert_rate_headers(&headers);
    assert_eq!(headers["x-ratelimit-limit"], "3");
    assert_eq!(headers["x-ratelimit-remaining"], "0");
    // The limit is the company's: two tokens share it. Twelve calls take well under 2 s,
    // so they meet at most two windows: at most 2 x 3 succeed (per token it would be 12).
    pd.add_token("second");
    let mut ok = 0;
    for i in 0..12 {
        let token = if i % 2 == 0 { TOKEN } else { "second" };
        let resp = c
            .get(api(&pd, "persons"))
            .header("x-api-token", token)
            .send()
            .await
            .unwrap();
        ok += usize::from(resp.status() == 200);
    }
    assert!(ok <= 6, "{ok} calls passed");
}

async fn refresh(
    pd: &PipedriveDouble,
    c: &Client,
    id: &str,
    secret: &str,
    token: &str,
) -> (StatusCode, Value) {
    let mut form = form_urlencoded::Serializer::new(String::new());
    form.append_pair("grant_type", "refresh_token")
        .append_pair("refresh_token", token);
    let resp = c
        .post(format!("{}/oauth/token", pd.base_url()))
        .basic_auth(id, Some(secret))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form.finish())
        .send()
        .await
        .unwrap();
    let (s, _, b) = split(resp).await;
    (s, b)
}

#[tokio::test]
async fn oauth_refresh_rotates_the_refresh_token() {
    let (pd, c) = double().await;
    pd.add_oauth_client("cid", "csecret");
    let grant = pd.issue_oauth("cid", Duration::from_secs(60));
    assert_eq!(grant.api_domain.as_deref(), Some(pd.base_url().as_str()));
    let get = |token: String| {
        let c = c.clone();
        let u = api(&pd, "persons");
        async move { c.get(u).bearer_auth(token).send().await.unwrap().status() }
    };
    assert_eq!(get(grant.access_token.clone()).await, 200);
    pd.expire_access_token(&grant.access_token);
    assert_eq!(get(grant.access_token.clone()).await, 401);

    let (status, body) = refresh(&pd, &c, "cid", "csecret", &grant.refresh_token).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["api_domain"], pd.base_url());
    assert_eq!(body["expires_in"], 3600);
    assert!(body["scope"].is_string());
    let rotated = body["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(rotated, grant.refresh_token);
    assert_eq!(
        get(body["access_token"].as_str().unwrap().to_owned()).await,
        200
    );

    let (status, body) = refresh(&pd, &c, "cid", "csecret", &grant.refresh_token).await;
    assert_eq!(status, 401, "the old refresh token stopped working");
    assert_eq!(body["success"], false);
    assert_eq!(body["error"], "invalid_grant");
    let (status, body) = refresh(&pd, &c, "cid", "wrong", &rotated).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"], "invalid_client");
    pd.set_access_token_lifetime(Duration::from_millis(100));
    let (status, body) = refresh(&pd, &c, "cid", "csecret", &rotated).await;
    assert_eq!(status, 200);
    let short = body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(get(short.clone()).await, 200);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(get(short).await, 401, "expired by time");
    let newest = body["refresh_token"].as_str().unwrap().to_owned();
    pd.revoke_refresh_token(&newest);
    assert_eq!(refresh(&pd, &c, "cid", "csecret", &newest).await.0, 401);
    assert_eq!(pd.refresh_count(), 2);
    assert!(
        pd.calls()
            .iter()
            .all(|c| !c.body.contains(&newest) && !c.body.contains(&rotated))
    );
}

#[tokio::test]
async fn injected_failures_and_concurrency() {
    let (pd, c) = double().await;
    pd.add_oauth_client("cid", "s");
    let grant = pd.issue_oauth("cid", Duration::from_secs(60));
    pd.fail_next_matching(
        "/oauth/token",
        1,
        Failure::Status429 {
            retry_after: Some(7),
        },
    );
    let (status, body) = refresh(&pd, &c, "cid", "s", &grant.refresh_token).await;
    assert_eq!(status, 429);
    assert_eq!(body["error"], "Request over limit");
    assert_eq!(pd.refresh_count(), 0);
    assert_eq!(
        refresh(&pd, &c, "cid", "s", &grant.refresh_token).await.0,
        200,
        "the refresh token survives a 429"
    );

    pd.fail_next(1, Failure::Status(500));
    let (status, headers, body) = call(&c, Method::GET, &api(&pd, "persons"), None).await;
    assert_eq!(status, 500);
    assert_error_shape(&body);
    assert_rate_headers(&headers);
    pd.fail_next(1, Failure::Disconnect);
    assert!(
        c.get(api(&pd, "persons"))
            .header("x-api-token", TOKEN)
            .send()
            .await
            .is_err()
    );
    assert_eq!(
        call(&c, Method::GET, &api(&pd, "persons"), None).await.0,
        200
    );

    pd.set_latency(Duration::from_millis(200));
    let tasks: Vec<_> = (0..6)
        .map(|_| {
            let c = c.clone();
            let u = api(&pd, "persons");
            tokio::spawn(async move {
                c.get(u)
                    .header("x-api-token", TOKEN)
                    .send()
                    .await
                    .unwrap()
                    .status()
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    assert_eq!(pd.max_in_flight(), 6);
    assert_eq!(pd.in_flight(), 0);
}

fn seconds(v: &Value) -> i64 {
    chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap_or_else(|| panic!("{v} is no time")))
        .unwrap()
        .timestamp()
}

#[tokio::test]
async fn organization_writes_are_validated_and_delete_unlinks_persons() {
    let (pd, c) = double().await;
    let code = "0123456789abcdef0123456789abcdef01234567";
    let (status, headers, body) = call(
        &c,
        Method::POST,
        &api(&pd, "organizations"),
        Some(
            json!({"name": "Acme", "owner_id": 7, "address": {"value": "Main St 1, Oslo"},
            "visible_to": 7, "label_ids": [3, 4], "custom_fields": {code: "gold"}}),
        ),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_rate_headers(&headers);
    assert_eq!(body["success"], true);
    let org = body["data"].clone();
    let id = org["id"].as_i64().unwrap();
    assert_eq!(org["name"], "Acme");
    assert_eq!(org["owner_id"], 7);
    assert_eq!(org["address"], json!({"value": "Main St 1, Oslo"}));
    assert_eq!(org["visible_to"], 7);
    assert_eq!(org["label_ids"], json!([3, 4]));
    assert_eq!(org["custom_fields"], json!({code: "gold"}));
    assert_eq!(org["add_time"], org["update_time"]);
    assert_eq!(pd.organization(id), Some(org.clone()));
    let (status, _, read) = call(
        &c,
        Method::GET,
        &api(&pd, &format!("organizations/{id}")),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(read["data"], org);

    // Defaults.
    let (_, _, body) = call(
        &c,
        Method::POST,
        &api(&pd, "organizations"),
        Some(json!({"name": "Beta"})),
    )
    .await;
    let beta = &body["data"];
    assert_eq!(beta["owner_id"], 1);
    assert_eq!(beta["visible_to"], 3);
    assert_eq!(beta["address"], Value::Null);
    assert_eq!(beta["label_ids"], json!([]));
    assert_eq!(beta["custom_fields"], json!({}));
    let beta = beta["id"].as_i64().unwrap();
    assert_ne!(beta, id);

    // Strict validation, on create and on update.
    let bad = [
        json!({}),
        json!({"name": ""}),
        json!({"name": 5}),
        json!({"name": "X", "website": "x.test"}),
        json!({"name": "X", "address": "Main St 1"}),
        json!({"name": "X", "address": {"value": 1}}),
        json!({"name": "X", "address": {"value": "A", "country": "NO"}}),
        json!({"name": "X", "owner_id": "7"}),
        json!({"name": "X", "visible_to": 2}),
        json!({"name": "X", "label_ids": ["a"]}),
        json!({"name": "X", "custom_fields": {"tier": "gold"}}),
        json!({"name": "X", "custom_fields": []}),
        json!({"name": "X", "add_time": "2026-01-01T00:00:00Z"}),
        json!({"name": "X", "id": 9}),
        json!(["X"]),
    ];
    for b in bad {
        let (status, headers, body) = call(
            &c,
            Method::POST,
            &api(&pd, "organizations"),
            Some(b.clone()),
        )
        .await;
        assert_eq!(status, 400, "{b} -> {body}");
        assert_error_shape(&body);
        assert_rate_headers(&headers);
        if b.get("name") != Some(&json!("X")) || b.as_object().is_some_and(|o| o.len() == 1) {
            continue;
        }
        // The same, less the name, as an update.
        let mut update = b.clone();
        update.as_object_mut().unwrap().remove("name");
        let (status, _, body) = call(
            &c,
            Method::PATCH,
            &api(&pd, &format!("organizations/{id}")),
            Some(update.clone()),
        )
        .await;
        assert_eq!(status, 400, "{update} -> {body}");
        assert_error_shape(&body);
    }
    let (_, _, body) = call(&c, Method::GET, &api(&pd, "organizations"), None).await;
    assert_eq!(
        body["data"].as_array().unwrap().len(),
        2,
        "nothing refused was kept"
    );
    assert_eq!(pd.organization(id), Some(org.clone()), "nor changed");
    let resp = c
        .post(api(&pd, "organizations"))
        .json(&json!({"name": "X"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);

    // Updates change the given fields only; update_time moves with the clock.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, headers, body) = call(
        &c,
        Method::PATCH,
        &api(&pd, &format!("organizations/{id}")),
        Some(json!({"name": "Acme AS", "address": {"value": "Harbour 2"},
            "custom_fields": {code: null}})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_rate_headers(&headers);
    let updated = &body["data"];
    assert_eq!(updated["name"], "Acme AS");
    assert_eq!(updated["address"], json!({"value": "Harbour 2"}));
    assert_eq!(
        updated["custom_fields"],
        json!({}),
        "null clears a custom field"
    );
    assert_eq!(updated["owner_id"], 7, "untouched fields stay");
    assert_eq!(updated["label_ids"], json!([3, 4]));
    assert_eq!(updated["add_time"], org["add_time"]);
    assert!(seconds(&updated["update_time"]) > seconds(&org["update_time"]));
    assert_eq!(pd.organization(id).as_ref(), Some(updated));
    pd.set_clock_resolution_seconds(3600);
    let (_, _, body) = call(
        &c,
        Method::PATCH,
        &api(&pd, &format!("organizations/{beta}")),
        Some(json!({"visible_to": 1})),
    )
    .await;
    assert_eq!(body["data"]["visible_to"], 1);
    assert_eq!(seconds(&body["data"]["update_time"]) % 3600, 0);

    // Deleting leaves the organization's persons without one.
    let person = pd.insert_person(json!({"name": "Ann Lee", "org_id": id}));
    let other = pd.insert_person(json!({"name": "Bo", "org_id": beta}));
    let before = pd.person(person).unwrap();
    let u = api(&pd, &format!("organizations/{id}"));
    let (status, headers, body) = call(&c, Method::DELETE, &u, None).await;
    assert_eq!(status, 200, "{body}");
    assert_rate_headers(&headers);
    assert_eq!(body, json!({"success": true, "data": {"id": id}}));
    assert_eq!(pd.organization(id), None);
    let after = pd.person(person).unwrap();
    assert_eq!(after["org_id"], Value::Null);
    assert_eq!(after["update_time"], before["update_time"]);
    assert_eq!(pd.person(other).unwrap()["org_id"], beta);
    let (_, _, body) = call(
        &c,
        Method::GET,
        &api(&pd, &format!("persons?org_id={id}")),
        None,
    )
    .await;
    assert_eq!(body["data"], json!([]));
    for m in [Method::GET, Method::PATCH, Method::DELETE] {
        let (status, headers, body) = call(&c, m.clone(), &u, Some(json!({"name": "X"}))).await;
        assert_eq!(status, 404, "{m}");
        assert_error_shape(&body);
        assert_eq!(body["error"], "Organization not found");
        assert_rate_headers(&headers);
    }
    for m in [Method::PATCH, Method::DELETE] {
        let (status, _, body) = call(
            &c,
            m.clone(),
            &api(&pd, "organizations/abc"),
            Some(json!({"name": "X"})),
        )
        .await;
        assert_eq!(status, 400, "{m}");
        assert_error_shape(&body);
    }
    // A person may not be linked to the deleted organization.
    let (status, _, _) = call(
        &c,
        Method::PATCH,
        &api(&pd, &format!("persons/{other}")),
        Some(json!({"org_id": id})),
    )
    .await;
    assert_eq!(status, 400);
}
