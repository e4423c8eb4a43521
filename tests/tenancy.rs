//! Tenancy and authentication: three projects, each with keys and linked accounts, and every
//! operation of the spec called with missing, malformed, revoked and foreign credentials.
//! Every refusal must be 401 or 404 in the contract's error shape, must carry none of any
//! tenant's records, and must change nothing.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use conformance::TestServer;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// Marks every record field the tests write, so a leak shows in any body.
const MARKER: &str = "tenant-secret-";

struct Tenant {
    name: String,
    key: String,
    revoked_key: String,
    account: String,
    /// A second linked account of the same project, with no records.
    sibling_account: String,
    records: Records,
}

#[derive(Clone)]
struct Records {
    contact: String,
    account: String,
    list: String,
    field: String,
    external: String,
}

/// One operation of the spec, with the body that would succeed for its owner.
struct Op {
    id: &'static str,
    method: Method,
    path: &'static str,
    body: Option<Value>,
}

fn operations() -> Vec<Op> {
    let contact = json!({"first_name": "intruder", "last_name": "intruder"});
    let named = json!({"name": "intruder"});
    let op = |id, method, path, body: Option<&Value>| Op {
        id,
        method,
        path,
        body: body.cloned(),
    };
    vec![
        op(
            "crm_list_contacts",
            Method::GET,
            "/unified/crm/contacts",
            None,
        ),
        op(
            "crm_create_contact",
            Method::POST,
            "/unified/crm/contacts",
            Some(&contact),
        ),
        op(
            "crm_get_contact",
            Method::GET,
            "/unified/crm/contacts/{contact}",
            None,
        ),
        op(
            "crm_update_contact",
            Method::PATCH,
            "/unified/crm/contacts/{contact}",
            Some(&contact),
        ),
        op(
            "crm_update_contact_by_external_id",
            Method::PATCH,
            "/unified/crm/contacts/external_id/{external}",
            Some(&contact),
        ),
        op(
            "crm_export_contacts",
            Method::GET,
            "/unified/crm/export/contacts",
            None,
        ),
        op(
            "crm_get_contact_unified_custom_fields",
            Method::GET,
            "/unified/crm/unified_custom_fields/contacts",
            None,
        ),
        op(
            "crm_set_contact_unified_custom_fields",
            Method::PUT,
            "/unified/crm/unified_custom_fields/contacts",
            Some(&json!({"mappings": {}})),
        ),
        op(
            "crm_delete_contact",
            Method::DELETE,
            "/unified/crm/contacts/{contact}",
            None,
        ),
        op(
            "crm_list_accounts",
            Method::GET,
            "/unified/crm/accounts",
            None,
        ),
        op(
            "crm_create_account",
            Method::POST,
            "/unified/crm/accounts",
            Some(&named),
        ),
        op(
            "crm_get_account",
            Method::GET,
            "/unified/crm/accounts/{account}",
            None,
        ),
        op(
            "crm_update_account",
            Method::PATCH,
            "/unified/crm/accounts/{account}",
            Some(&named),
        ),
        op(
            "crm_delete_account",
            Method::DELETE,
            "/unified/crm/accounts/{account}",
            None,
        ),
        op("crm_list_lists", Method::GET, "/unified/crm/lists", None),
        op(
            "crm_create_list",
            Method::POST,
            "/unified/crm/lists",
            Some(&named),
        ),
        op(
            "crm_get_list",
            Method::GET,
            "/unified/crm/lists/{list}",
            None,
        ),
        op(
            "crm_update_list",
            Method::PATCH,
            "/unified/crm/lists/{list}",
            Some(&named),
        ),
        op(
            "crm_add_list_items",
            Method::POST,
            "/unified/crm/lists/{list}/items",
            Some(&json!({"item_ids": ["{contact}"]})),
        ),
        op(
            "crm_remove_list_item",
            Method::DELETE,
            "/unified/crm/lists/{list}/items/{contact}",
            None,
        ),
        op(
            "crm_list_contact_custom_field_definitions",
            Method::GET,
            "/unified/crm/custom_field_definitions/contacts",
            None,
        ),
        op(
            "crm_create_contact_custom_field_definition",
            Method::POST,
            "/unified/crm/custom_field_definitions/contacts",
            Some(&named),
        ),
        op(
            "crm_get_contact_custom_field_definition",
            Method::GET,
            "/unified/crm/custom_field_definitions/contacts/{field}",
            None,
        ),
        op(
            "crm_update_contact_custom_field_definition",
            Method::PATCH,
            "/unified/crm/custom_field_definitions/contacts/{field}",
            Some(&named),
        ),
    ]
}

impl Op {
    fn addresses_a_record(&self) -> bool {
        self.path.contains('{')
    }

    fn fill(&self, text: &str, records: &Records) -> String {
        text.replace("{contact}", &records.contact)
            .replace("{account}", &records.account)
            .replace("{list}", &records.list)
            .replace("{field}", &records.field)
            .replace("{external}", &records.external)
    }

    fn path(&self, records: &Records) -> String {
        self.fill(self.path, records)
    }

    fn body(&self, records: &Records) -> Option<Value> {
        self.body
            .as_ref()
            .map(|b| serde_json::from_str(&self.fill(&b.to_string(), records)).unwrap())
    }
}

/// How a request authenticates.
#[derive(Clone)]
enum Credentials {
    None,
    Raw(String),
    Key(String),
}

struct Call<'a> {
    op: &'a Op,
    credentials: Credentials,
    account: &'a str,
    records: &'a Records,
}

async fn send(http: &reqwest::Client, base: &str, call: &Call<'_>) -> (StatusCode, String, Value) {
    let mut request = http
        .request(
            call.op.method.clone(),
            format!("{base}{}", call.op.path(call.records)),
        )
        .header("x-account-id", call.account);
    request = match &call.credentials {
        Credentials::None => request,
        Credentials::Raw(header) => request.header("authorization", header),
        Credentials::Key(key) => request.basic_auth(key, Some("")),
    };
    if let Some(body) = call.op.body(call.records) {
        request = request.json(&body);
    }
    let response = request.send().await.expect("the server answers");
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let text = response.text().await.unwrap();
    let body = if text.is_empty() {
        Value::Null
    } else if !content_type.starts_with("application/json") {
        Value::String(text)
    } else {
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{status} body is not JSON ({e}): {text}"))
    };
    (status, content_type, body)
}

/// Asserts a refusal: the expected status, the contract's error shape, no record data.
fn assert_refused(what: &str, expected: StatusCode, got: (StatusCode, String, Value)) {
    let (status, content_type, body) = got;
    assert_eq!(status, expected, "{what}: {body}");
    assert_eq!(content_type, "application/json", "{what}");
    assert_eq!(body["statusCode"], expected.as_u16(), "{what}: {body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{what}: {body}"
    );
    let timestamp = body["timestamp"].as_str().expect("timestamp");
    chrono::DateTime::parse_from_rfc3339(timestamp).expect("an RFC 3339 timestamp");
    let keys: BTreeSet<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert!(
        keys.is_subset(&BTreeSet::from([
            "statusCode",
            "message",
            "timestamp",
            "data",
            "provider_errors"
        ])),
        "{what}: {body}"
    );
    assert!(
        !body.to_string().contains(MARKER),
        "{what} leaks a record: {body}"
    );
}

async fn create(
    http: &reqwest::Client,
    base: &str,
    key: &str,
    account: &str,
    path: &str,
    body: Value,
) -> String {
    let response = http
        .post(format!("{base}{path}"))
        .basic_auth(key, Some(""))
        .header("x-account-id", account)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "create {path}");
    let created: Value = response.json().await.unwrap();
    created["data"]["id"].as_str().unwrap().to_owned()
}

/// A project with two keys (one revoked), two linked accounts, and one record of every kind
/// in the first account.
async fn tenant(
    server: &TestServer,
    http: &reqwest::Client,
    name: &str,
    project: Option<(&str, &str, &str)>,
) -> Tenant {
    let (project_id, key, account) = match project {
        Some((p, k, a)) => (p.to_owned(), k.to_owned(), a.to_owned()),
        None => {
            let p = server.tenancy.create_project(name).await.unwrap();
            let k = server.tenancy.create_key(&p.id).await.unwrap();
            let a = server
                .tenancy
                .create_linked_account(&p.id, "local", name)
                .await
                .unwrap();
            (p.id, k.key, a.id)
        }
    };
    let revoked = server.tenancy.create_key(&project_id).await.unwrap();
    server.tenancy.revoke_key(&revoked.info.id).await.unwrap();
    let sibling = server
        .tenancy
        .create_linked_account(&project_id, "local", "sibling")
        .await
        .unwrap();
    let base = server.base_url.as_str();
    let mark = |what: &str| format!("{MARKER}{name}-{what}");
    let contact = create(
        http,
        base,
        &key,
        &account,
        "/unified/crm/contacts",
        json!({
            "first_name": mark("first"),
            "last_name": mark("last"),
            "emails": [format!("{}@example.com", mark("mail"))],
            "external_id": format!("ext-{name}"),
        }),
    )
    .await;
    let company = create(
        http,
        base,
        &key,
        &account,
        "/unified/crm/accounts",
        json!({"name": mark("company")}),
    )
    .await;
    let list = create(
        http,
        base,
        &key,
        &account,
        "/unified/crm/lists",
        json!({"name": mark("list")}),
    )
    .await;
    let field = create(
        http,
        base,
        &key,
        &account,
        "/unified/crm/custom_field_definitions/contacts",
        json!({"name": mark("field")}),
    )
    .await;
    let response = http
        .put(format!("{base}/unified/crm/unified_custom_fields/contacts"))
        .basic_auth(&key, Some(""))
        .header("x-account-id", &account)
        .json(&json!({"mappings": {"seeded": mark("field")}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    let response = http
        .post(format!("{base}/unified/crm/lists/{list}/items"))
        .basic_auth(&key, Some(""))
        .header("x-account-id", &account)
        .json(&json!({"item_ids": [contact]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    Tenant {
        name: name.to_owned(),
        key,
        revoked_key: revoked.key,
        account,
        sibling_account: sibling.id,
        records: Records {
            contact,
            account: company,
            list,
            field,
            external: format!("ext-{name}"),
        },
    }
}

/// Everything a tenant's first account holds, as its owner reads it.
async fn snapshot(http: &reqwest::Client, base: &str, t: &Tenant) -> BTreeMap<&'static str, Value> {
    let mut all = BTreeMap::new();
    for path in [
        "/unified/crm/contacts",
        "/unified/crm/accounts",
        "/unified/crm/lists",
        "/unified/crm/custom_field_definitions/contacts",
        "/unified/crm/unified_custom_fields/contacts",
    ] {
        let page: Value = http
            .get(format!("{base}{path}?include=custom_fields"))
            .basic_auth(&t.key, Some(""))
            .header("x-account-id", &t.account)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(page["next"].is_null(), "{page}");
        all.insert(path, page["data"].clone());
    }
    all
}

#[tokio::test]
async fn every_operation_refuses_every_wrong_credential() {
    let server = TestServer::start().await;
    let http = reqwest::Client::new();
    let base = server.base_url.as_str();
    let tenants = vec![
        tenant(
            &server,
            &http,
            "alpha",
            Some((&server.project_id, &server.key, &server.account_id)),
        )
        .await,
        tenant(&server, &http, "beta", None).await,
        tenant(&server, &http, "gamma", None).await,
    ];
    let ops = operations();

    // The table covers exactly the operations of the spec.
    let spec: BTreeSet<String> = crm_spec_operation_ids();
    let covered: BTreeSet<String> = ops.iter().map(|o| o.id.to_owned()).collect();
    assert_eq!(
        covered, spec,
        "the matrix must cover every operation of the spec"
    );

    let before: Vec<_> = {
        let mut v = Vec::new();
        for t in &tenants {
            v.push(snapshot(&http, base, t).await);
        }
        v
    };
    for (t, snap) in tenants.iter().zip(&before) {
        assert!(
            snap.values()
                .filter_map(Value::as_array)
                .all(|d| d.len() == 1),
            "{} is seeded",
            t.name
        );
    }

    let malformed = [
        "Basic !!!".to_owned(),
        "Bearer".to_owned(),
        "Token abc".to_owned(),
        format!("Basic {}", STANDARD.encode(":")),
        "Bearer crm_0000000000000000_notakey".to_owned(),
        format!("Basic {}", STANDARD.encode("crm_")),
    ];
    let mut rotation = 0usize;
    let mut by_status: BTreeMap<u16, usize> = BTreeMap::new();
    let mut count = |status: StatusCode| *by_status.entry(status.as_u16()).or_default() += 1;

    for (i, op) in ops.iter().enumerate() {
        for victim in &tenants {
            // 1. No credentials.
            let call = Call {
                op,
                credentials: Credentials::None,
                account: &victim.account,
                records: &victim.records,
            };
            assert_refused(
                &format!("{} without credentials", op.id),
                StatusCode::UNAUTHORIZED,
                send(&http, base, &call).await,
            );
            count(StatusCode::UNAUTHORIZED);
            // 2. A malformed or unknown Authorization header.
            rotation += 1;
            let header = malformed[(i + rotation) % malformed.len()].clone();
            let call = Call {
                op,
                credentials: Credentials::Raw(header.clone()),
                account: &victim.account,
                records: &victim.records,
            };
            assert_refused(
                &format!("{} with {header:?}", op.id),
                StatusCode::UNAUTHORIZED,
                send(&http, base, &call).await,
            );
            count(StatusCode::UNAUTHORIZED);
            // 3. The tenant's own key, revoked.
            let call = Call {
                op,
                credentials: Credentials::Key(victim.revoked_key.clone()),
                account: &victim.account,
                records: &victim.records,
            };
            let got = send(&http, base, &call).await;
            assert!(
                got.2["message"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("revoked"),
                "{}",
                got.2
            );
            assert_refused(
                &format!("{} with a revoked key", op.id),
                StatusCode::UNAUTHORIZED,
                got,
            );
            count(StatusCode::UNAUTHORIZED);

            for attacker in tenants.iter().filter(|t| t.name != victim.name) {
                // 4. Another project's key on the victim's account and records.
                let call = Call {
                    op,
                    credentials: Credentials::Key(attacker.key.clone()),
                    account: &victim.account,
                    records: &victim.records,
                };
                assert_refused(
                    &format!(
                        "{} with {}'s key on {}'s account",
                        op.id, attacker.name, victim.name
                    ),
                    StatusCode::NOT_FOUND,
                    send(&http, base, &call).await,
                );
                count(StatusCode::NOT_FOUND);
                // 5. The attacker's own key naming the victim's account id.
                let call = Call {
                    op,
                    credentials: Credentials::Key(attacker.key.clone()),
                    account: &victim.sibling_account,
                    records: &victim.records,
                };
                assert_refused(
                    &format!(
                        "{} with {}'s key naming {}'s other account",
                        op.id, attacker.name, victim.name
                    ),
                    StatusCode::NOT_FOUND,
                    send(&http, base, &call).await,
                );
                count(StatusCode::NOT_FOUND);
                // 6. The attacker's own key and account, addressing the victim's record ids.
                if op.addresses_a_record() {
                    let call = Call {
                        op,
                        credentials: Credentials::Key(attacker.key.clone()),
                        account: &attacker.account,
                        records: &victim.records,
                    };
                    assert_refused(
                        &format!("{} by {} on {}'s record", op.id, attacker.name, victim.name),
                        StatusCode::NOT_FOUND,
                        send(&http, base, &call).await,
                    );
                    count(StatusCode::NOT_FOUND);
                }
            }
            // 7. The victim's own key on a sibling account of its own project: records do
            // not cross linked accounts either.
            if op.addresses_a_record() {
                let call = Call {
                    op,
                    credentials: Credentials::Key(victim.key.clone()),
                    account: &victim.sibling_account,
                    records: &victim.records,
                };
                assert_refused(
                    &format!("{} on {}'s sibling account", op.id, victim.name),
                    StatusCode::NOT_FOUND,
                    send(&http, base, &call).await,
                );
                count(StatusCode::NOT_FOUND);
            }
        }
    }

    // Nothing any refused call carried has landed.
    for (t, snap) in tenants.iter().zip(&before) {
        assert_eq!(
            &snapshot(&http, base, t).await,
            snap,
            "{}'s records changed",
            t.name
        );
    }

    // And the owners can still do everything, so the refusals were not a broken server.
    // Deletes go last, taking the list item off before the contact.
    let mut in_order: Vec<&Op> = ops.iter().filter(|o| o.method != Method::DELETE).collect();
    in_order.extend(ops.iter().filter(|o| o.id == "crm_remove_list_item"));
    in_order.extend(
        ops.iter()
            .filter(|o| o.method == Method::DELETE && o.id != "crm_remove_list_item"),
    );
    assert_eq!(in_order.len(), ops.len());
    for op in in_order {
        for t in &tenants {
            let call = Call {
                op,
                credentials: Credentials::Key(t.key.clone()),
                account: &t.account,
                records: &t.records,
            };
            let (status, _, body) = send(&http, base, &call).await;
            assert!(
                status.is_success(),
                "{} by its owner {}: {status} {body}",
                op.id,
                t.name
            );
        }
    }
    let cells: usize = by_status.values().sum();
    println!(
        "tenancy matrix: {} operations x {} projects, {cells} refused calls checked, by status {by_status:?}",
        ops.len(),
        tenants.len()
    );
    server.stop().await;
}

fn crm_spec_operation_ids() -> BTreeSet<String> {
    let doc = serde_json::to_value(crm_api::openapi()).unwrap();
    doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|item| item.as_object().unwrap().values())
        .filter_map(|op| op["operationId"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn the_database_holds_no_key_text() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crm.db");
    // The SQLite store's file and write-ahead log, read byte by byte.
    let url: crm_server::DatabaseUrl = path.to_str().unwrap().parse().unwrap();
    let db = crm_server::Database::open(&url, crm_server::PoolSettings::default())
        .await
        .unwrap();
    let tenancy =
        crm_server::Tenancy::new(db.clone(), std::sync::Arc::new(crm_server::SystemClock));
    let pool = db.pool().clone();
    let mut secrets = Vec::new();
    for name in ["alpha", "beta", "gamma"] {
        let project = tenancy.create_project(name).await.unwrap();
        let account = tenancy
            .create_linked_account(&project.id, "local", name)
            .await
            .unwrap();
        for _ in 0..2 {
            let key = tenancy.create_key(&project.id).await.unwrap();
            // Use every key once, so nothing written on a successful check escapes the scan.
            let scope = crm_api::Authorizer::authorize(
                &tenancy,
                &crm_api::service::ApiKey(key.key.clone()),
                &account.id,
            )
            .await
            .unwrap();
            assert_eq!(scope.project_id, project.id);
            let secret = secret_of(&key.key);
            secrets.push((key.key, secret));
        }
        let revoked = tenancy.create_key(&project.id).await.unwrap();
        tenancy.revoke_key(&revoked.info.id).await.unwrap();
        let secret = secret_of(&revoked.key);
        secrets.push((revoked.key, secret));
    }

    // Every value of every row of every table, as text and as bytes.
    let tables: Vec<String> =
        sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table'")
            .fetch_all(&pool)
            .await
            .unwrap();
    let mut values = 0usize;
    for table in &tables {
        let columns: Vec<String> = sqlx::query_scalar("SELECT name FROM pragma_table_info($1)")
            .bind(table)
            .fetch_all(&pool)
            .await
            .unwrap();
        for column in columns {
            // The names come from the database's own catalogue, not from outside.
            let sql = format!("SELECT CAST(\"{column}\" AS BLOB) FROM \"{table}\"");
            let cells: Vec<Option<Vec<u8>>> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .fetch_all(&pool)
                .await
                .unwrap();
            for cell in cells.into_iter().flatten() {
                values += 1;
                for (key, secret) in &secrets {
                    assert!(
                        !contains(&cell, key.as_bytes()),
                        "{table}.{column} holds a key"
                    );
                    assert!(
                        !contains(&cell, secret.as_bytes()),
                        "{table}.{column} holds a secret"
                    );
                }
            }
        }
    }
    assert!(values > 0);
    // The hashes are there, one per key, and none of them is the secret's own bytes.
    let hashes: Vec<Vec<u8>> = sqlx::query_scalar("SELECT secret_hash FROM api_keys")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(hashes.len(), secrets.len());
    assert!(hashes.iter().all(|h| h.len() == 32));

    // And the files on disk (database, write-ahead log) hold no key either.
    pool.close().await;
    let mut scanned = 0;
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        scanned += bytes.len();
        for (key, secret) in &secrets {
            assert!(!contains(&bytes, key.as_bytes()));
            assert!(!contains(&bytes, secret.as_bytes()));
        }
    }
    assert!(scanned > 0);
}

/// The secret part of `crm_<hex id>_<secret>`; the secret itself may hold `_`.
fn secret_of(key: &str) -> String {
    let (_id, secret) = key.strip_prefix("crm_").unwrap().split_once('_').unwrap();
    assert!(secret.len() >= 40, "{key}");
    secret.to_owned()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn a_revoked_key_is_refused_at_once() {
    let server = TestServer::start().await;
    let http = reqwest::Client::new();
    let other = server.other_tenant().await;
    let list = || {
        http.get(format!("{}/unified/crm/contacts", server.base_url))
            .basic_auth(&other.key, Some(""))
            .header("x-account-id", &other.account_id)
            .send()
    };
    assert_eq!(list().await.unwrap().status(), 200);
    server.tenancy.revoke_key(&other.key_id).await.unwrap();
    let refused = list().await.unwrap();
    assert_eq!(refused.status(), 401);
    let body: Value = refused.json().await.unwrap();
    assert!(body["message"].as_str().unwrap().contains("revoked"));
    // The server's own key is untouched.
    let own = http
        .get(format!("{}/unified/crm/contacts", server.base_url))
        .basic_auth(&server.key, Some(""))
        .header("x-account-id", &server.account_id)
        .send()
        .await
        .unwrap();
    assert_eq!(own.status(), 200);
    server.stop().await;
}
