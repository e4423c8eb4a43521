//! The HubSpot double, driven over HTTP.

use std::collections::HashSet;
use std::time::Duration;

use provider_doubles::{Failure, HubSpotDouble};
use reqwest::{Client, Method, Response, StatusCode};
use serde_json::{Map, Value, json};

const TOKEN: &str = "pat-test-1";

async fn double() -> (HubSpotDouble, Client) {
    let hs = HubSpotDouble::start().await;
    hs.add_token(TOKEN);
    (hs, Client::new())
}

fn url(hs: &HubSpotDouble, path: &str) -> String {
    format!("{}{}", hs.base_url(), path)
}

fn objects(hs: &HubSpotDouble, rest: &str) -> String {
    url(hs, &format!("/crm/objects/2026-09/{rest}"))
}

async fn call(
    c: &Client,
    method: Method,
    u: &str,
    body: Option<Value>,
) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let mut rb = c.request(method, u).bearer_auth(TOKEN);
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    split(rb.send().await.expect("the double answers")).await
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

fn props(pairs: &[(&str, &str)]) -> Map<String, Value> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect()
}

fn assert_error_shape(body: &Value, category: &str) {
    assert_eq!(body["status"], "error", "{body}");
    assert_eq!(body["category"], category, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert!(
        body["correlationId"]
            .as_str()
            .is_some_and(|m| m.len() == 36),
        "{body}"
    );
}

fn assert_rate_headers(h: &reqwest::header::HeaderMap) {
    for name in [
        "x-hubspot-ratelimit-max",
        "x-hubspot-ratelimit-remaining",
        "x-hubspot-ratelimit-interval-milliseconds",
        "x-hubspot-ratelimit-secondly",
        "x-hubspot-ratelimit-secondly-remaining",
    ] {
        let v = h.get(name).unwrap_or_else(|| panic!("{name} missing"));
        v.to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap_or_else(|_| panic!("{name} is not a number"));
    }
    assert_eq!(h["x-hubspot-ratelimit-interval-milliseconds"], "10000");
}

#[tokio::test]
async fn missing_or_unknown_token_is_401_in_hubspots_shape() {
    let (hs, c) = double().await;
    let resp = c.get(objects(&hs, "contacts")).send().await.unwrap();
    let (status, headers, body) = split(resp).await;
    assert_eq!(status, 401);
    assert_error_shape(&body, "INVALID_AUTHENTICATION");
    assert_eq!(body["message"], "Authentication credentials not found.");
    assert_rate_headers(&headers);

    let resp = c
        .get(objects(&hs, "contacts"))
        .bearer_auth("nope")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let resp = c
        .get(objects(&hs, "contacts"))
        .header("authorization", TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401, "a token without the Bearer scheme");

    let (status, headers, body) = call(&c, Method::GET, &objects(&hs, "contacts"), None).await;
    assert_eq!(status, 200);
    assert_eq!(body["results"], json!([]));
    assert_rate_headers(&headers);
    // The record never holds the credential.
    assert!(hs.calls().iter().all(|c| !format!("{c:?}").contains(TOKEN)));
    assert_eq!(hs.calls().len(), 4);
}

#[tokio::test]
async fn listing_pages_to_the_end_without_duplicates() {
    let (hs, c) = double().await;
    let mut seeded = HashSet::new();
    for i in 0..250 {
        seeded.insert(hs.insert_contact(props(&[("email", &format!("p{i}@example.com"))])));
    }
    let mut seen = Vec::new();
    let mut pages = 0;
    let mut after: Option<String> = None;
    loop {
        let u = match &after {
            Some(a) => objects(&hs, &format!("contacts?limit=100&after={a}")),
            None => objects(&hs, "contacts?limit=100"),
        };
        let (status, _, body) = call(&c, Method::GET, &u, None).await;
        assert_eq!(status, 200, "{body}");
        pages += 1;
        for r in body["results"].as_array().unwrap() {
            let id = r["id"].as_str().unwrap().to_owned();
            assert!(id.parse::<u64>().is_ok(), "ids are decimal strings");
            seen.push(id);
        }
        match body["paging"]["next"]["after"].as_str() {
            Some(a) => {
                let link = body["paging"]["next"]["link"].as_str().unwrap();
                assert!(
                    link.starts_with(&hs.base_url()) && link.contains(&format!("after={a}")),
                    "{link}"
                );
                after = Some(a.to_owned());
            }
            None => break,
        }
        assert!(pages < 10, "paging does not end");
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 250);
    assert_eq!(seen.iter().cloned().collect::<HashSet<_>>(), seeded);

    // The default page is 10; limit is 1..=100.
    let (_, _, body) = call(&c, Method::GET, &objects(&hs, "contacts"), None).await;
    assert_eq!(body["results"].as_array().unwrap().len(), 10);
    for bad in ["101", "0", "x"] {
        let (status, _, body) = call(
            &c,
            Method::GET,
            &objects(&hs, &format!("contacts?limit={bad}")),
            None,
        )
        .await;
        assert_eq!(status, 400, "limit={bad}");
        assert_error_shape(&body, "VALIDATION_ERROR");
    }
    let (status, _, _) = call(&c, Method::GET, &objects(&hs, "contacts?after=abc"), None).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn properties_default_set_and_selection() {
    let (hs, c) = double().await;
    let id = hs.insert_contact(props(&[
        ("email", "a@example.com"),
        ("phone", "+1 555"),
        ("firstname", "Ann"),
    ]));
    let (_, _, body) = call(
        &c,
        Method::GET,
        &objects(&hs, &format!("contacts/{id}")),
        None,
    )
    .await;
    let keys: Vec<&str> = body["properties"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "createdate",
            "email",
            "firstname",
            "hs_object_id",
            "lastmodifieddate",
            "lastname"
        ]
    );
    assert_eq!(body["properties"]["lastname"], Value::Null);
    assert_eq!(body["properties"]["hs_object_id"], json!(id));
    assert_eq!(body["archived"], false);

    let u = objects(
        &hs,
        &format!("contacts/{id}?properties=phone,nosuch&properties=city"),
    );
    let (_, _, body) = call(&c, Method::GET, &u, None).await;
    let keys: Vec<&str> = body["properties"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "city",
            "createdate",
            "hs_object_id",
            "lastmodifieddate",
            "phone"
        ]
    );
    assert_eq!(body["properties"]["phone"], "+1 555");
    assert_eq!(body["properties"]["city"], Value::Null);

    let company = hs.insert_company(props(&[
        ("name", "Acme"),
        ("domain", "acme.test"),
        ("city", "Oslo"),
    ]));
    let (_, _, body) = call(
        &c,
        Method::GET,
        &objects(&hs, &format!("companies/{company}")),
        None,
    )
    .await;
    let keys: Vec<&str> = body["properties"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "createdate",
            "domain",
            "hs_lastmodifieddate",
            "hs_object_id",
            "name"
        ]
    );
}

#[tokio::test]
async fn writes_change_timestamps_and_archive() {
    let (hs, c) = double().await;
    let (status, _, created) = call(
        &c,
        Method::POST,
        &objects(&hs, "contacts"),
        Some(json!({"properties": {"email": "Ann@Example.com", "firstname": "Ann"}})),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(id.parse::<u64>().is_ok());
    assert_eq!(created["properties"]["email"], "ann@example.com");
    assert_eq!(created["createdAt"], created["updatedAt"]);
    assert_eq!(
        created["properties"]["lastmodifieddate"],
        created["updatedAt"]
    );
    let created_at = created["createdAt"].as_str().unwrap();
    assert_eq!(
        created_at.len(),
        "2026-09-01T00:00:00.000Z".len(),
        "millisecond resolution: {created_at}"
    );

    let patch = json!({"properties": {"firstname": "", "jobtitle": "CTO"}});
    let (status, _, updated) = call(
        &c,
        Method::PATCH,
        &objects(&hs, &format!("contacts/{id}")),
        Some(patch),
    )
    .await;
    assert_eq!(status, 200, "{updated}");
    assert!(
        updated["updatedAt"].as_str().unwrap() > created_at,
        "updatedAt moves on every write"
    );
    assert_eq!(updated["createdAt"], created["createdAt"]);
    assert_eq!(
        updated["properties"]["lastmodifieddate"],
        updated["updatedAt"]
    );
    let shown = hs.contact(&id).unwrap();
    assert_eq!(shown["properties"]["jobtitle"], "CTO");
    assert!(
        shown["properties"].get("firstname").is_none(),
        "\"\" clears the property"
    );

    let (status, _, body) = call(
        &c,
        Method::DELETE,
        &objects(&hs, &format!("contacts/{id}")),
        None,
    )
    .await;
    assert_eq!(status, 204);
    assert_eq!(body, Value::Null);
    let (status, _, body) = call(
        &c,
        Method::GET,
        &objects(&hs, &format!("contacts/{id}")),
        None,
    )
    .await;
    assert_eq!(status, 404);
    assert_error_shape(&body, "OBJECT_NOT_FOUND");
    let (status, _, body) = call(
        &c,
        Method::GET,
        &objects(&hs, &format!("contacts/{id}?archived=true")),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["archived"], true);
    assert!(body["archivedAt"].is_string());
    let (_, _, body) = call(
        &c,
        Method::GET,
        &objects(&hs, "contacts?archived=true"),
        None,
    )
    .await;
    assert_eq!(body["results"].as_array().unwrap().len(), 1);
    let (_, _, body) = call(&c, Method::GET, &objects(&hs, "contacts"), None).await;
    assert_eq!(body["results"], json!([]));
    let (_, _, body) = call(
        &c,
        Method::POST,
        &objects(&hs, "contacts/search"),
        Some(json!({})),
    )
    .await;
    assert_eq!(body["total"], 0, "search never returns archived records");
    let (status, _, _) = call(
        &c,
        Method::DELETE,
        &objects(&hs, &format!("contacts/{id}")),
        None,
    )
    .await;
    assert_eq!(status, 404);
    let (status, _, _) = call(
        &c,
        Method::PATCH,
        &objects(&hs, "contacts/999"),
        Some(json!({"properties": {}})),
    )
    .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn validation_errors_in_hubspots_shape() {
    let (hs, c) = double().await;
    let post = |p: Value| {
        let c = c.clone();
        let u = objects(&hs, "contacts");
        async move { call(&c, Method::POST, &u, Some(json!({"properties": p}))).await }
    };
    let (status, _, body) = post(json!({"nosuch": "x"})).await;
    assert_eq!(status, 400);
    assert_error_shape(&body, "VALIDATION_ERROR");
    assert_eq!(body["errors"][0]["code"], "PROPERTY_DOESNT_EXIST");
    assert_eq!(
        body["errors"][0]["context"]["propertyName"],
        json!(["nosuch"])
    );

    let (status, _, body) = post(json!({"email": "not-an-email"})).await;
    assert_eq!(status, 400);
    assert_eq!(body["errors"][0]["code"], "INVALID_EMAIL");
    assert_eq!(
        body["errors"][0]["context"]["propertyName"],
        json!(["email"])
    );

    let (status, _, body) = post(json!({"lifecyclestage": "champion"})).await;
    assert_eq!(status, 400);
    assert_eq!(body["errors"][0]["code"], "INVALID_OPTION");

    let (status, _, first) = post(json!({"email": "dup@example.com"})).await;
    assert_eq!(status, 201);
    let (status, _, body) = post(json!({"email": "DUP@example.com"})).await;
    assert_eq!(status, 409);
    assert_error_shape(&body, "CONFLICT");
    assert_eq!(
        body["message"],
        format!(
            "Contact already exists. Existing ID: {}",
            first["id"].as_str().unwrap()
        )
    );

    hs.add_property(
        "contacts",
        json!({"name": "tenant_tier", "type": "enumeration", "fieldType": "select",
        "options": [{"label": "Gold", "value": "gold"}]}),
    );
    hs.require_property("contacts", "tenant_tier");
    let (status, _, body) = post(json!({"email": "new@example.com"})).await;
    assert_eq!(status, 400);
    assert_eq!(body["errors"][0]["code"], "REQUIRED_PROPERTY");
    assert_eq!(
        body["errors"][0]["context"]["propertyName"],
        json!(["tenant_tier"])
    );
    let (status, _, created) =
        post(json!({"email": "new@example.com", "tenant_tier": "gold"})).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap();
    let u = objects(&hs, &format!("contacts/{id}"));
    let (status, _, body) = call(
        &c,
        Method::PATCH,
        &u,
        Some(json!({"properties": {"tenant_tier": ""}})),
    )
    .await;
    assert_eq!(status, 400, "clearing a required property");
    assert_eq!(body["errors"][0]["code"], "REQUIRED_PROPERTY");
    let (status, _, _) = call(
        &c,
        Method::PATCH,
        &u,
        Some(json!({"properties": {"firstname": "N"}})),
    )
    .await;
    assert_eq!(status, 200);

    let (status, _, body) = post(json!({"hs_object_id": "5"})).await;
    assert_eq!(status, 400);
    assert_eq!(body["errors"][0]["code"], "READ_ONLY_VALUE");
    let (status, _, _) = call(
        &c,
        Method::POST,
        &objects(&hs, "contacts"),
        Some(json!({"email": "x@y.z"})),
    )
    .await;
    assert_eq!(status, 400, "properties must be wrapped");
}

#[tokio::test]
async fn search_filters_sorts_and_the_10k_cap() {
    let (hs, c) = double().await;
    for i in 0..10_050u64 {
        let modified = (1_700_000_000_000 + i * 1000).to_string();
        hs.insert_contact(props(&[
            ("createdate", "1600000000000"),
            ("lastmodifieddate", &modified),
        ]));
    }
    let search = |body: Value| {
        let c = c.clone();
        let u = objects(&hs, "contacts/search");
        async move { call(&c, Method::POST, &u, Some(body)).await }
    };
    let window = json!({"filterGroups": [{"filters": [
        {"propertyName": "lastmodifieddate", "operator": "GTE", "value": "1700000010000"},
        {"propertyName": "lastmodifieddate", "operator": "LT", "value": "2023-11-14T22:13:40Z"}]}],
        "sorts": [{"propertyName": "lastmodifieddate", "direction": "DESCENDING"}], "limit": 200});
    let (status, headers, body) = search(window).await;
    assert_eq!(status, 200, "{body}");
    assert_rate_headers(&headers);
    assert_eq!(body["total"], 10, "{}", body["total"]);
    let times: Vec<&str> = body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["properties"]["lastmodifieddate"].as_str().unwrap())
        .collect();
    assert_eq!(times.first(), Some(&"2023-11-14T22:13:39.000Z"));
    assert!(times.windows(2).all(|w| w[0] > w[1]), "sorted descending");
    assert!(body.get("paging").is_none());

    let by_id = json!({"filterGroups": [{"filters": [{"propertyName": "hs_object_id", "operator": "GT", "value": "10040"}]}],
        "sorts": [{"propertyName": "hs_object_id", "direction": "ASCENDING"}], "limit": 5, "properties": ["email"]});
    let (_, _, body) = search(by_id).await;
    assert_eq!(body["total"], 10);
    let ids: Vec<&str> = body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["10041", "10042", "10043", "10044", "10045"]);
    assert_eq!(body["paging"]["next"]["after"], "5");
    let keys: Vec<&str> = body["results"][0]["properties"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        ["createdate", "email", "hs_object_id", "lastmodifieddate"]
    );

    // The cap: a page may end at 10,000 but not past it.
    let (status, _, body) = search(json!({"limit": 100, "after": "9900"})).await;
    assert_eq!(status, 200);
    assert_eq!(body["total"], 10_050);
    assert_eq!(body["paging"]["next"]["after"], "10000");
    let (status, _, body) = search(json!({"limit": 100, "after": "9901"})).await;
    assert_eq!(status, 400);
    assert_error_shape(&body, "VALIDATION_ERROR");
    let (status, _, _) = search(json!({"limit": 1, "after": "10000"})).await;
    assert_eq!(status, 400);
    let (status, _, _) = search(json!({"limit": 201})).await;
    assert_eq!(status, 400);
    let (status, _, _) = search(json!({"limit": 200})).await;
    assert_eq!(status, 200);
    let six = json!({"filterGroups": (0..6).map(|_| json!({"filters": []})).collect::<Vec<_>>()});
    let (status, _, _) = search(six).await;
    assert_eq!(status, 400, "at most 5 filter groups");
    let (status, _, _) =
        search(json!({"filterGroups": [{"filters": [{"propertyName": "lastmodifieddate", "operator": "GT", "value": "soon"}]}]})).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn search_lags_writes_when_asked() {
    let (hs, c) = double().await;
    hs.set_search_index_lag(Duration::from_millis(300));
    let (status, _, _) = call(
        &c,
        Method::POST,
        &objects(&hs, "contacts"),
        Some(json!({"properties": {"email": "lag@example.com"}})),
    )
    .await;
    assert_eq!(status, 201);
    let (_, _, body) = call(
        &c,
        Method::POST,
        &objects(&hs, "contacts/search"),
        Some(json!({})),
    )
    .await;
    assert_eq!(body["total"], 0, "not indexed yet");
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (_, _, body) = call(
        &c,
        Method::POST,
        &objects(&hs, "contacts/search"),
        Some(json!({})),
    )
    .await;
    assert_eq!(body["total"], 1);
}

#[tokio::test]
async fn secondly_limit_answers_429_without_retry_after() {
    let (hs, c) = double().await;
    hs.set_secondly_limit(Some(2));
    let mut limited = None;
    for _ in 0..10 {
        let resp = c
            .get(objects(&hs, "contacts"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        if resp.status() == 429 {
            limited = Some(split(resp).await);
            break;
        }
    }
    let (_, headers, body) = limited.expect("a 429 within 10 calls at 2 a second");
    assert_error_shape(&body, "RATE_LIMITS");
    assert_eq!(body["errorType"], "RATE_LIMIT");
    assert_eq!(body["policyName"], "SECONDLY");
    assert!(headers.get("retry-after").is_none());
    assert_rate_headers(&headers);
    assert_eq!(headers["x-hubspot-ratelimit-secondly"], "2");
    assert_eq!(headers["x-hubspot-ratelimit-secondly-remaining"], "0");
    // Another token has its own budget.
    hs.add_token("other");
    let resp = c
        .get(objects(&hs, "contacts"))
        .bearer_auth("other")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

fn token_form(client_id: &str, secret: &str, refresh: &str) -> String {
    form(&[
        ("grant_type", "refresh_token"),
        ("client_id", client_id),
        ("client_secret", secret),
        ("refresh_token", refresh),
    ])
}

fn form(pairs: &[(&str, &str)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    s.extend_pairs(pairs);
    s.finish()
}

async fn refresh(hs: &HubSpotDouble, c: &Client, body: String) -> (StatusCode, Value) {
    let resp = c
        .post(url(hs, "/oauth/2026-03/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    let (s, _, b) = split(resp).await;
    (s, b)
}

#[tokio::test]
async fn oauth_tokens_expire_and_refresh() {
    let (hs, c) = double().await;
    hs.add_oauth_client("cid", "csecret");
    let grant = hs.issue_oauth("cid", Duration::from_millis(200));
    assert!(grant.expires_at > chrono::Utc::now());
    let get = |token: String| {
        let c = c.clone();
        let u = objects(&hs, "contacts");
        async move { split(c.get(u).bearer_auth(token).send().await.unwrap()).await }
    };
    assert_eq!(get(grant.access_token.clone()).await.0, 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, _, body) = get(grant.access_token.clone()).await;
    assert_eq!(status, 401);
    assert_error_shape(&body, "EXPIRED_AUTHENTICATION");

    let (status, body) = refresh(&hs, &c, token_form("cid", "csecret", &grant.refresh_token)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "bearer");
    assert_eq!(body["expires_in"], 1800);
    assert_eq!(
        body["refresh_token"],
        grant.refresh_token.as_str(),
        "HubSpot keeps the refresh token"
    );
    let fresh = body["access_token"].as_str().unwrap().to_owned();
    assert_ne!(fresh, grant.access_token);
    assert_eq!(get(fresh.clone()).await.0, 200);
    assert_eq!(hs.refresh_count(), 1);

    hs.expire_access_token(&fresh);
    let (status, _, body) = get(fresh).await;
    assert_eq!(status, 401);
    assert_eq!(body["category"], "EXPIRED_AUTHENTICATION");

    let (status, body) = refresh(&hs, &c, token_form("cid", "wrong", &grant.refresh_token)).await;
    assert_eq!(status, 400);
    assert_eq!(body["status"], "BAD_REFRESH_TOKEN");
    hs.set_access_token_lifetime(Duration::from_secs(60));
    let (status, body) = refresh(&hs, &c, token_form("cid", "csecret", &grant.refresh_token)).await;
    assert_eq!(status, 200);
    assert_eq!(body["expires_in"], 60);
    hs.revoke_refresh_token(&grant.refresh_token);
    let (status, body) = refresh(&hs, &c, token_form("cid", "csecret", &grant.refresh_token)).await;
    assert_eq!(status, 400);
    assert_eq!(body["status"], "BAD_REFRESH_TOKEN");
    assert!(body["message"].is_string());
    assert_eq!(hs.refresh_count(), 2);

    let secrets_seen = hs.calls().iter().any(|c| {
        c.body.contains("csecret")
            || c.body.contains(&grant.refresh_token)
            || c.query.contains("csecret")
    });
    assert!(!secrets_seen, "the record keeps no secret");
    let token_calls = hs
        .calls()
        .iter()
        .filter(|c| c.path == "/oauth/2026-03/token")
        .count();
    assert_eq!(token_calls, 4);
}

#[tokio::test]
async fn injected_failures() {
    let (hs, c) = double().await;
    hs.fail_next(2, Failure::Status(503));
    for _ in 0..2 {
        let (status, headers, body) = call(&c, Method::GET, &objects(&hs, "contacts"), None).await;
        assert_eq!(status, 503);
        assert_eq!(body["status"], "error");
        assert!(body["correlationId"].is_string());
        assert_rate_headers(&headers);
    }
    assert_eq!(
        call(&c, Method::GET, &objects(&hs, "contacts"), None)
            .await
            .0,
        200
    );

    hs.fail_next_matching(
        "/search",
        1,
        Failure::Status429 {
            retry_after: Some(3),
        },
    );
    assert_eq!(
        call(&c, Method::GET, &objects(&hs, "contacts"), None)
            .await
            .0,
        200
    );
    let (status, headers, body) = call(
        &c,
        Method::POST,
        &objects(&hs, "contacts/search"),
        Some(json!({})),
    )
    .await;
    assert_eq!(status, 429);
    assert_eq!(headers["retry-after"], "3");
    assert_eq!(body["policyName"], "SECONDLY");
    assert_eq!(
        call(
            &c,
            Method::POST,
            &objects(&hs, "contacts/search"),
            Some(json!({}))
        )
        .await
        .0,
        200
    );

    // The token endpoint fails too.
    hs.add_oauth_client("cid", "s");
    let grant = hs.issue_oauth("cid", Duration::from_secs(60));
    hs.fail_next(1, Failure::Status429 { retry_after: None });
    let (status, body) = refresh(&hs, &c, token_form("cid", "s", &grant.refresh_token)).await;
    assert_eq!(status, 429);
    assert_eq!(body["errorType"], "RATE_LIMIT");
    assert_eq!(hs.refresh_count(), 0);

    hs.fail_next(1, Failure::Disconnect);
    let err = c
        .get(objects(&hs, "contacts"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect_err("no answer");
    assert!(!err.is_timeout() && err.status().is_none(), "{err:?}");
    assert_eq!(hs.calls().last().unwrap().status, 0);
    assert_eq!(
        call(&c, Method::GET, &objects(&hs, "contacts"), None)
            .await
            .0,
        200
    );

    // A held answer: the client gives up, but the write happened.
    hs.fail_next(1, Failure::Timeout(Duration::from_millis(600)));
    let err = c
        .post(objects(&hs, "contacts"))
        .bearer_auth(TOKEN)
        .json(&json!({"properties": {"email": "held@example.com"}}))
        .timeout(Duration::from_millis(150))
        .send()
        .await
        .expect_err("the answer is held");
    assert!(err.is_timeout(), "{err:?}");
    assert!(
        hs.contact("1")
            .is_some_and(|c| c["properties"]["email"] == "held@example.com")
    );
}

#[tokio::test]
async fn in_flight_is_counted_under_concurrency() {
    let (hs, c) = double().await;
    hs.set_latency(Duration::from_millis(600));
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let c = c.clone();
            let u = objects(&hs, "contacts");
            tokio::spawn(async move { c.get(u).bearer_auth(TOKEN).send().await.unwrap().status() })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(hs.in_flight(), 8);
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    assert_eq!(hs.max_in_flight(), 8);
    assert_eq!(hs.in_flight(), 0);
}

#[tokio::test]
async fn properties_and_lists() {
    let (hs, c) = double().await;
    hs.add_property(
        "contacts",
        json!({"name": "tenant_score", "label": "Score", "type": "number", "fieldType": "number"}),
    );
    let (status, _, body) = call(
        &c,
        Method::GET,
        &url(&hs, "/crm/properties/2026-09/contacts"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let names: Vec<&str> = body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"email") && names.contains(&"tenant_score"),
        "{names:?}"
    );
    let (status, _, body) = call(
        &c,
        Method::GET,
        &url(&hs, "/crm/properties/2026-09/contacts/tenant_score"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["hubspotDefined"], false);
    assert_eq!(body["type"], "number");
    assert_eq!(body["options"], json!([]));
    let (status, _, body) = call(
        &c,
        Method::GET,
        &url(&hs, "/crm/properties/2026-09/contacts/nosuch"),
        None,
    )
    .await;
    assert_eq!(status, 404);
    assert_error_shape(&body, "OBJECT_NOT_FOUND");

    let members: Vec<String> = (0..5)
        .map(|i| hs.insert_contact(props(&[("email", &format!("l{i}@example.com"))])))
        .collect();
    let list_id = hs.insert_list("Customers EU", &members);
    hs.insert_list("Prospects", &[]);
    let (status, _, body) = call(
        &c,
        Method::POST,
        &url(&hs, "/crm/lists/2026-09/search"),
        Some(json!({"query": "customers", "count": 10})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["total"], 1);
    assert_eq!(body["hasMore"], false);
    assert_eq!(body["lists"][0]["listId"], list_id.as_str());
    assert_eq!(body["lists"][0]["objectTypeId"], "0-1");
    assert_eq!(body["lists"][0]["size"], 5);
    let (_, _, body) = call(
        &c,
        Method::POST,
        &url(&hs, "/crm/lists/2026-09/search"),
        Some(json!({"count": 1})),
    )
    .await;
    assert_eq!(
        (
            body["total"].as_u64(),
            body["hasMore"].as_bool(),
            body["offset"].as_u64()
        ),
        (Some(2), Some(true), Some(1))
    );
    let (status, _, _) = call(
        &c,
        Method::POST,
        &url(&hs, "/crm/lists/2026-09/search"),
        Some(json!({"count": 501})),
    )
    .await;
    assert_eq!(status, 400);
    let (status, _, body) = call(
        &c,
        Method::GET,
        &url(&hs, &format!("/crm/lists/2026-09/{list_id}")),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["list"]["name"], "Customers EU");
    assert_eq!(
        call(&c, Method::GET, &url(&hs, "/crm/lists/2026-09/999"), None)
            .await
            .0,
        404
    );

    let mut seen = Vec::new();
    let mut after = String::new();
    for _ in 0..5 {
        let q = if after.is_empty() {
            "limit=2".to_owned()
        } else {
            format!("limit=2&after={after}")
        };
        let (status, _, body) = call(
            &c,
            Method::GET,
            &url(
                &hs,
                &format!("/crm/lists/2026-09/{list_id}/memberships?{q}"),
            ),
            None,
        )
        .await;
        assert_eq!(status, 200, "{body}");
        seen.extend(
            body["results"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["recordId"].as_str().unwrap().to_owned()),
        );
        match body["paging"]["next"]["after"].as_str() {
            Some(a) => after = a.to_owned(),
            None => break,
        }
    }
    assert_eq!(seen, members);
    let u = url(
        &hs,
        &format!("/crm/lists/2026-09/{list_id}/memberships?limit=251"),
    );
    assert_eq!(call(&c, Method::GET, &u, None).await.0, 400);
}

#[tokio::test]
async fn shutdown_stops_serving() {
    let (hs, c) = double().await;
    let u = objects(&hs, "contacts");
    assert_eq!(call(&c, Method::GET, &u, None).await.0, 200);
    let other = hs.clone();
    drop(hs);
    assert_eq!(
        call(&c, Method::GET, &u, None).await.0,
        200,
        "a clone keeps it serving"
    );
    other.shutdown();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let fresh = Client::new();
    assert!(fresh.get(&u).bearer_auth(TOKEN).send().await.is_err());
}

fn millis(v: &Value) -> i64 {
    chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap_or_else(|| panic!("{v} is no time")))
        .unwrap()
        .timestamp_millis()
}

fn properties_url(hs: &HubSpotDouble, rest: &str) -> String {
    url(hs, &format!("/crm/properties/2026-09/{rest}"))
}

#[tokio::test]
async fn custom_properties_are_created_and_updated() {
    let (hs, c) = double().await;
    let tier = json!({"name": "tier", "label": "Tier", "type": "enumeration",
        "fieldType": "select", "groupName": "contactinformation",
        "options": [{"label": "Gold", "value": "gold"},
                    {"label": "Silver", "value": "silver", "displayOrder": 5, "hidden": true}]});
    let (status, headers, created) = call(
        &c,
        Method::POST,
        &properties_url(&hs, "contacts"),
        Some(tier.clone()),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    assert_rate_headers(&headers);
    assert_eq!(created["name"], "tier");
    assert_eq!(created["label"], "Tier");
    assert_eq!(created["type"], "enumeration");
    assert_eq!(created["fieldType"], "select");
    assert_eq!(created["groupName"], "contactinformation");
    assert_eq!(created["description"], "");
    assert_eq!(created["hubspotDefined"], false);
    assert_eq!(created["archived"], false);
    assert_eq!(created["createdAt"], created["updatedAt"]);
    assert_eq!(
        created["options"],
        json!([{"label": "Gold", "value": "gold", "displayOrder": 0, "hidden": false},
               {"label": "Silver", "value": "silver", "displayOrder": 5, "hidden": true}])
    );
    assert_eq!(hs.property("contacts", "tier"), Some(created.clone()));
    let (status, _, read) =
        call(&c, Method::GET, &properties_url(&hs, "contacts/tier"), None).await;
    assert_eq!(status, 200);
    assert_eq!(read, created);
    assert_eq!(
        hs.property("companies", "tier"),
        None,
        "one object type only"
    );

    // The new property can be written, with its options checked.
    let (status, _, body) = call(
        &c,
        Method::POST,
        &objects(&hs, "contacts"),
        Some(json!({"properties": {"tier": "gold"}})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["properties"]["tier"], "gold");
    let (status, _, body) = call(
        &c,
        Method::POST,
        &objects(&hs, "contacts"),
        Some(json!({"properties": {"tier": "platinum"}})),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["errors"][0]["code"], "INVALID_OPTION");

    // An existing name, custom or HubSpot's own, is a conflict.
    for name in ["tier", "email"] {
        let mut again = tier.clone();
        again["name"] = json!(name);
        let (status, headers, body) = call(
            &c,
            Method::POST,
            &properties_url(&hs, "contacts"),
            Some(again),
        )
        .await;
        assert_eq!(status, 409, "{name}: {body}");
        assert_error_shape(&body, "CONFLICT");
        assert_eq!(body["message"], "Property already exists");
        assert_rate_headers(&headers);
    }

    // Invalid definitions.
    let score = json!({"name": "score", "label": "Score", "type": "number",
        "fieldType": "number", "groupName": "contactinformation"});
    let with = |key: &str, value: Value| {
        let mut v = score.clone();
        v[key] = value;
        v
    };
    let without = |key: &str| {
        let mut v = score.clone();
        v.as_object_mut().unwrap().remove(key);
        v
    };
    let refused = [
        with("name", json!("Score")),
        with("name", json!("1score")),
        with("name", json!("score-2")),
        with("name", json!("")),
        with("type", json!("text")),
        with("type", json!("enumeration")),
        json!({"name": "score", "label": "Score", "type": "enumeration",
            "fieldType": "select", "groupName": "contactinformation", "options": []}),
        with("options", json!([{"label": "A"}])),
        with(
            "options",
            json!([{"label": "A", "value": "a"}, {"label": "B", "value": "a"}]),
        ),
        with("label", json!(" ")),
        with("hidden", json!(true)),
        without("name"),
        without("label"),
        without("type"),
        without("fieldType"),
        without("groupName"),
        json!(["score"]),
    ];
    for body in refused {
        let (status, headers, answer) = call(
            &c,
            Method::POST,
            &properties_url(&hs, "contacts"),
            Some(body.clone()),
        )
        .await;
        assert_eq!(status, 400, "{body} -> {answer}");
        assert_error_shape(&answer, "VALIDATION_ERROR");
        assert_rate_headers(&headers);
    }
    assert_eq!(hs.property("contacts", "score"), None);
    let (status, _, _) = call(
        &c,
        Method::POST,
        &properties_url(&hs, "deals"),
        Some(score.clone()),
    )
    .await;
    assert_eq!(status, 400, "an unknown object type");
    let (status, _, body) = call(
        &c,
        Method::POST,
        &properties_url(&hs, "companies"),
        Some(with("groupName", json!("companyinformation"))),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["options"], json!([]));
    assert!(hs.property("companies", "score").is_some());
    let resp = c
        .post(properties_url(&hs, "contacts"))
        .json(&score)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);

    // Updates change the given parts and move updatedAt; options are replaced whole.
    let (status, headers, updated) = call(
        &c,
        Method::PATCH,
        &properties_url(&hs, "contacts/tier"),
        Some(
            json!({"label": "Customer tier", "description": "How much they buy",
            "options": [{"label": "Bronze", "value": "bronze"}]}),
        ),
    )
    .await;
    assert_eq!(status, 200, "{updated}");
    assert_rate_headers(&headers);
    assert_eq!(updated["name"], "tier");
    assert_eq!(updated["label"], "Customer tier");
    assert_eq!(updated["description"], "How much they buy");
    assert_eq!(updated["type"], "enumeration");
    assert_eq!(updated["groupName"], "contactinformation");
    assert_eq!(
        updated["options"],
        json!([{"label": "Bronze", "value": "bronze", "displayOrder": 0, "hidden": false}])
    );
    assert_eq!(updated["createdAt"], created["createdAt"]);
    assert!(millis(&updated["updatedAt"]) > millis(&created["updatedAt"]));
    assert_eq!(hs.property("contacts", "tier"), Some(updated.clone()));
    let (status, _, body) = call(
        &c,
        Method::POST,
        &objects(&hs, "contacts"),
        Some(json!({"properties": {"tier": "gold"}})),
    )
    .await;
    assert_eq!(status, 400, "gold is no longer an option: {body}");

    let (status, _, body) = call(
        &c,
        Method::PATCH,
        &properties_url(&hs, "contacts/tier"),
        Some(json!({"name": "level"})),
    )
    .await;
    assert_eq!(status, 400, "the name cannot change: {body}");
    assert_error_shape(&body, "VALIDATION_ERROR");
    let (status, _, body) = call(
        &c,
        Method::PATCH,
        &properties_url(&hs, "contacts/email"),
        Some(json!({"label": "E-mail"})),
    )
    .await;
    assert_eq!(status, 400);
    assert_error_shape(&body, "VALIDATION_ERROR");
    assert_eq!(
        body["message"],
        "HubSpot-defined properties cannot be changed"
    );
    assert_eq!(hs.property("contacts", "email").unwrap()["label"], "Email");
    let (status, _, body) = call(
        &c,
        Method::PATCH,
        &properties_url(&hs, "contacts/nosuch"),
        Some(json!({"label": "X"})),
    )
    .await;
    assert_eq!(status, 404);
    assert_error_shape(&body, "OBJECT_NOT_FOUND");
    for body in [
        json!({"type": "enumeration"}),
        json!({"options": []}),
        json!({"type": "colour"}),
        json!({"groupName": ""}),
        json!({"hubspotDefined": true}),
    ] {
        let target = if body.get("type") == Some(&json!("enumeration")) {
            "companies/score"
        } else {
            "contacts/tier"
        };
        let (status, _, answer) = call(
            &c,
            Method::PATCH,
            &properties_url(&hs, target),
            Some(body.clone()),
        )
        .await;
        assert_eq!(status, 400, "{target} {body} -> {answer}");
        assert_error_shape(&answer, "VALIDATION_ERROR");
    }
    assert_eq!(
        hs.property("contacts", "tier"),
        Some(updated),
        "refused updates change nothing"
    );
}

fn lists_url(hs: &HubSpotDouble, rest: &str) -> String {
    if rest.is_empty() {
        url(hs, "/crm/lists/2026-09")
    } else {
        url(hs, &format!("/crm/lists/2026-09/{rest}"))
    }
}

#[tokio::test]
async fn lists_are_created_renamed_and_filled() {
    let (hs, c) = double().await;
    let contacts: Vec<String> = (0..4)
        .map(|i| hs.insert_contact(props(&[("email", &format!("m{i}@example.com"))])))
        .collect();
    let company = hs.insert_company(props(&[("name", "Acme")]));
    let existing = hs.insert_list("Existing", &[]);

    let (status, headers, body) = call(
        &c,
        Method::POST,
        &lists_url(&hs, ""),
        Some(json!({"name": "Newsletter", "objectTypeId": "0-1", "processingType": "MANUAL"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_rate_headers(&headers);
    let list = body["list"].clone();
    let id = list["listId"].as_str().unwrap().to_owned();
    assert_ne!(id, existing);
    assert_eq!(list["name"], "Newsletter");
    assert_eq!(list["objectTypeId"], "0-1");
    assert_eq!(list["processingType"], "MANUAL");
    assert_eq!(list["size"], 0);
    assert_eq!(list["createdAt"], list["updatedAt"]);
    let mut expected = list.clone();
    expected["members"] = json!([]);
    assert_eq!(hs.list(&id), Some(expected));
    let (_, _, read) = call(&c, Method::GET, &lists_url(&hs, &id), None).await;
    assert_eq!(read["list"], list);

    // Refused creations.
    let (status, _, body) = call(
        &c,
        Method::POST,
        &lists_url(&hs, ""),
        Some(json!({"name": "Existing", "objectTypeId": "0-1", "processingType": "MANUAL"})),
    )
    .await;
    assert_eq!(status, 400);
    assert_error_shape(&body, "VALIDATION_ERROR");
    assert_eq!(body["message"], "A list named Existing already exists");
    assert_eq!(body["errors"][0]["code"], "DUPLICATE_LIST_NAME");
    for bad in [
        json!({"name": " ", "objectTypeId": "0-1", "processingType": "MANUAL"}),
        json!({"objectTypeId": "0-1", "processingType": "MANUAL"}),
        json!({"name": "D", "objectTypeId": "0-1", "processingType": "DYNAMIC"}),
        json!({"name": "S", "objectTypeId": "0-1", "processingType": "SNAPSHOT"}),
        json!({"name": "X", "objectTypeId": "0-1", "processingType": "OTHER"}),
        json!({"name": "X", "objectTypeId": "0-1"}),
        json!({"name": "X", "objectTypeId": "0-3", "processingType": "MANUAL"}),
        json!({"name": "X", "processingType": "MANUAL"}),
        json!({"name": 5, "objectTypeId": "0-1", "processingType": "MANUAL"}),
        json!([]),
    ] {
        let (status, headers, body) =
            call(&c, Method::POST, &lists_url(&hs, ""), Some(bad.clone())).await;
        assert_eq!(status, 400, "{bad} -> {body}");
        assert_error_shape(&body, "VALIDATION_ERROR");
        assert_rate_headers(&headers);
    }
    let (_, _, body) = call(&c, Method::POST, &lists_url(&hs, "search"), Some(json!({}))).await;
    assert_eq!(body["total"], 2, "refused lists are not kept: {body}");

    // Adding: new members join, unknown and archived records are missing, members already
    // in the list are in neither answer.
    let (status, _, archived) = call(
        &c,
        Method::DELETE,
        &objects(&hs, &format!("contacts/{}", contacts[3])),
        None,
    )
    .await;
    assert_eq!(status, 204, "{archived}");
    let add = lists_url(&hs, &format!("{id}/memberships/add"));
    let (status, headers, body) = call(
        &c,
        Method::PUT,
        &add,
        Some(json!([
            contacts[1],
            contacts[0],
            "999999",
            contacts[3],
            "x",
            contacts[0]
        ])),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_rate_headers(&headers);
    assert_eq!(
        body,
        json!({"recordIdsAdded": [contacts[1], contacts[0]],
               "recordIdsMissing": ["999999", contacts[3], "x"]})
    );
    let after_add = hs.list(&id).unwrap();
    assert_eq!(after_add["size"], 2);
    assert_eq!(after_add["members"], json!([contacts[0], contacts[1]]));
    assert!(millis(&after_add["updatedAt"]) > millis(&list["updatedAt"]));
    let (_, _, body) = call(
        &c,
        Method::PUT,
        &add,
        Some(json!([contacts[0], contacts[2]])),
    )
    .await;
    assert_eq!(
        body,
        json!({"recordIdsAdded": [contacts[2]], "recordIdsMissing": []})
    );
    let (_, _, body) = call(&c, Method::PUT, &add, Some(json!([contacts[0]]))).await;
    assert_eq!(body, json!({"recordIdsAdded": [], "recordIdsMissing": []}));
    let unchanged = hs.list(&id).unwrap();
    let (_, _, page) = call(
        &c,
        Method::GET,
        &lists_url(&hs, &format!("{id}/memberships")),
        None,
    )
    .await;
    let ids: Vec<&str> = page["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["recordId"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            contacts[0].as_str(),
            contacts[1].as_str(),
            contacts[2].as_str()
        ]
    );
    assert_eq!(unchanged["members"], json!(ids));
    assert_eq!(unchanged["size"], 3);

    // Removing: members leave, unknown records are missing, other records are in neither.
    let remove = lists_url(&hs, &format!("{id}/memberships/remove"));
    let (status, headers, body) = call(
        &c,
        Method::PUT,
        &remove,
        Some(json!([contacts[1], "424242", contacts[3], contacts[1]])),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_rate_headers(&headers);
    assert_eq!(
        body,
        json!({"recordIdsRemoved": [contacts[1]], "recordIdsMissing": ["424242", contacts[3]]})
    );
    let after_remove = hs.list(&id).unwrap();
    assert_eq!(after_remove["size"], 2);
    assert_eq!(after_remove["members"], json!([contacts[0], contacts[2]]));
    assert!(millis(&after_remove["updatedAt"]) > millis(&unchanged["updatedAt"]));
    let other = hs.insert_contact(props(&[("email", "other@example.com")]));
    let (_, _, body) = call(&c, Method::PUT, &remove, Some(json!([other]))).await;
    assert_eq!(
        body,
        json!({"recordIdsRemoved": [], "recordIdsMissing": []})
    );
    assert_eq!(
        hs.list(&id).unwrap()["updatedAt"],
        after_remove["updatedAt"]
    );

    // A company list takes companies only.
    let (_, _, body) = call(
        &c,
        Method::POST,
        &lists_url(&hs, ""),
        Some(json!({"name": "Accounts", "objectTypeId": "0-2", "processingType": "MANUAL"})),
    )
    .await;
    assert_eq!(body["list"]["objectTypeId"], "0-2");
    let accounts = body["list"]["listId"].as_str().unwrap().to_owned();
    let (_, _, body) = call(
        &c,
        Method::PUT,
        &lists_url(&hs, &format!("{accounts}/memberships/add")),
        Some(json!([company, contacts[2]])),
    )
    .await;
    assert_eq!(
        body,
        json!({"recordIdsAdded": [company], "recordIdsMissing": [contacts[2]]}),
        "contact {} is no company",
        contacts[2]
    );

    // Refused membership changes.
    for path in [add.clone(), remove.clone()] {
        for bad in [
            json!({"recordIds": [contacts[0]]}),
            json!([1, 2]),
            Value::Array(vec![json!("1"); 100_001]),
        ] {
            let (status, headers, body) = call(&c, Method::PUT, &path, Some(bad)).await;
            assert_eq!(status, 400, "{path}: {body}");
            assert_error_shape(&body, "VALIDATION_ERROR");
            assert_rate_headers(&headers);
        }
    }
    for change in ["add", "remove"] {
        let (status, headers, body) = call(
            &c,
            Method::PUT,
            &lists_url(&hs, &format!("999/memberships/{change}")),
            Some(json!([contacts[0]])),
        )
        .await;
        assert_eq!(status, 404);
        assert_error_shape(&body, "OBJECT_NOT_FOUND");
        assert_rate_headers(&headers);
    }
    assert_eq!(hs.list(&id).unwrap()["size"], 2, "refusals change nothing");

    // Renaming.
    let rename = |list: &str, name: Option<&str>| {
        let q = name.map(|n| query_pair("listName", n)).unwrap_or_default();
        lists_url(&hs, &format!("{list}/update-list-name{q}"))
    };
    let before = hs.list(&id).unwrap();
    let (status, headers, body) =
        call(&c, Method::PUT, &rename(&id, Some("News & offers")), None).await;
    assert_eq!(status, 200, "{body}");
    assert_rate_headers(&headers);
    let renamed = &body["updatedList"];
    assert_eq!(renamed["name"], "News & offers");
    assert_eq!(renamed["listId"], id.as_str());
    assert_eq!(renamed["size"], 2);
    assert_eq!(renamed["createdAt"], before["createdAt"]);
    assert!(millis(&renamed["updatedAt"]) > millis(&before["updatedAt"]));
    assert_eq!(hs.list(&id).unwrap()["name"], "News & offers");
    let (_, _, body) = call(
        &c,
        Method::POST,
        &lists_url(&hs, "search"),
        Some(json!({"query": "offers"})),
    )
    .await;
    assert_eq!(body["lists"][0]["listId"], id.as_str());
    let (status, _, _) = call(&c, Method::PUT, &rename(&id, Some("News & offers")), None).await;
    assert_eq!(status, 200, "a list may keep its own name");
    let (status, _, body) = call(&c, Method::PUT, &rename(&id, Some("Existing")), None).await;
    assert_eq!(status, 400);
    assert_eq!(body["errors"][0]["code"], "DUPLICATE_LIST_NAME");
    for bad in [Some(""), Some("  "), None] {
        let (status, headers, body) = call(&c, Method::PUT, &rename(&id, bad), None).await;
        assert_eq!(status, 400, "{bad:?}: {body}");
        assert_error_shape(&body, "VALIDATION_ERROR");
        assert_rate_headers(&headers);
    }
    let (status, _, body) = call(&c, Method::PUT, &rename("999", Some("X")), None).await;
    assert_eq!(status, 404);
    assert_error_shape(&body, "OBJECT_NOT_FOUND");
    assert_eq!(hs.list(&id).unwrap()["name"], "News & offers");
    assert_eq!(hs.list("999"), None);

    let resp = c
        .put(&add)
        .json(&json!([contacts[0]]))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
}

/// `?key=value`, the value percent-encoded.
fn query_pair(key: &str, value: &str) -> String {
    let encoded: String = value
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    format!("?{key}={encoded}")
}
