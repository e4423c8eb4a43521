//! `admin copy` and `admin import` through the real binary, on real SQLite files and the
//! real PostgreSQL of the test kit: a populated SQLite store moved to PostgreSQL answers
//! the same API keys with the same answers; a target in use is refused untouched; a
//! corrupted copy fails verification; an export imported into another account keeps its
//! ids, external ids and times, a rerun duplicates nothing, and a bad line is named.

mod server_process;

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Instant;

use crm_server::transfer::{self, Progress, TransferError};
use crm_server::{Database, DatabaseUrl, PoolSettings, SystemClock, Tenancy};
use crm_testkit::{PgCluster, Store, TestDatabase};
use serde_json::{Value, json};
use server_process::{ServerProcess, binary};

/// Runs `crm-server <args>` in `dir` (so a stray `crm.db` would land there) and waits.
fn run(dir: &Path, args: &[&str]) -> Output {
    Command::new(binary())
        .current_dir(dir)
        .args(["--log-level", "warn"])
        .args(args)
        .output()
        .expect("the binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `admin <args>` on `database`; must succeed. Answers stdout.
fn admin(database: &str, args: &[&str]) -> String {
    let out = Command::new(binary())
        .args(["--database", database, "--log-level", "warn", "admin"])
        .args(args)
        .output()
        .expect("the binary runs");
    assert!(
        out.status.success(),
        "admin {args:?} failed:\n{}",
        text(&out.stderr)
    );
    text(&out.stdout)
}

fn json_id(printed: &str) -> String {
    let value: Value = serde_json::from_str(printed).expect("admin prints JSON");
    value["id"].as_str().unwrap().to_owned()
}

/// Creates a key for `project` with the admin command; answers (key id, key).
fn create_key(database: &str, project: &str) -> (String, String) {
    let out = admin(database, &["create-key", "--project", project]);
    let field = |name: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap()
            .trim()
            .to_owned()
    };
    (field("key id:"), field("API key:"))
}

/// What the server answered: the status, the ETag header and the body.
#[derive(Debug, Clone, PartialEq)]
struct Answer {
    status: u16,
    etag: Option<String>,
    body: Value,
}

/// A caller: the server, an API key and a linked account.
struct Api<'a> {
    http: &'a reqwest::Client,
    base: &'a str,
    key: &'a str,
    account: &'a str,
}

impl Api<'_> {
    async fn send(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> Answer {
        self.send_with(method, path, body, &[]).await
    }

    async fn send_with(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Answer {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(self.key)
            .header("x-account-id", self.account);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let etag = response
            .headers()
            .get("etag")
            .map(|v| v.to_str().unwrap().to_owned());
        let bytes = response.bytes().await.unwrap();
        let mut body: Value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        // An error says when it happened; only that may differ between two answers.
        if body.get("statusCode").is_some()
            && let Some(error) = body.as_object_mut()
        {
            error.remove("timestamp");
        }
        Answer { status, etag, body }
    }

    async fn get(&self, path: &str) -> Answer {
        self.send(reqwest::Method::GET, path, None).await
    }

    /// A write that must succeed; answers its `data`.
    async fn write(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let answer = self.send(method, path, Some(&body)).await;
        assert!(
            (200..300).contains(&answer.status),
            "{path}: {}",
            answer.body
        );
        answer.body["data"].clone()
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.write(reqwest::Method::POST, path, body).await
    }

    /// Every page of a listing, `next` cursors replaced by whether there was one (a cursor
    /// holds store positions, which a copy issues anew).
    async fn pages(&self, path: &str) -> Vec<Answer> {
        let mut pages = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let url = match &next {
                Some(cursor) => format!("{path}&next={cursor}"),
                None => path.to_owned(),
            };
            let mut page = self.get(&url).await;
            assert_eq!(page.status, 200, "{url}: {}", page.body);
            next = page.body["next"].as_str().map(str::to_owned);
            if next.is_some() {
                page.body["next"] = json!("(a cursor)");
            }
            pages.push(page);
            if next.is_none() || pages.len() > 50 {
                return pages;
            }
        }
    }
}

/// The ids of a listing, in order.
fn ids(pages: &[Answer]) -> Vec<String> {
    pages
        .iter()
        .flat_map(|p| p.body["data"].as_array().cloned().unwrap_or_default())
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect()
}

/// The contacts of an account in creation order, without their etags (an import is a
/// write of its own, with a new etag).
async fn contacts_without_etags(api: &Api<'_>) -> Vec<Value> {
    let pages = api.pages("/unified/crm/contacts?page_size=100").await;
    pages[0].body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let mut c = c.clone();
            c.as_object_mut().unwrap().remove("etag");
            c
        })
        .collect()
}

/// Everything the copy test asks both servers, by name.
struct Population {
    key: String,
    account: String,
    second_key: String,
    second_account: String,
    revoked_key: String,
    contacts: Vec<String>,
    list: String,
    contact_body: Value,
}

/// Fills a fresh store through the real server: definitions and a mapping, contacts with
/// emails, custom fields and external ids (one created with an Idempotency-Key, one
/// updated later), an account, a list with items, a second project with its own key and
/// account and contact, and a revoked key.
async fn populate(server: &ServerProcess, database: &str, http: &reqwest::Client) -> Population {
    let (key, account) = server.bootstrap.clone().unwrap();
    let api = Api {
        http,
        base: &server.base_url,
        key: &key,
        account: &account,
    };
    api.post(
        "/unified/crm/custom_field_definitions/contacts",
        json!({"name": "Seats", "type": {"value": "integer"}}),
    )
    .await;
    api.post(
        "/unified/crm/custom_field_definitions/contacts",
        json!({"name": "Status", "type": {"value": "single_select"},
               "options": [{"id": "s", "value": "Started"}, {"id": "c", "value": "Completed"}]}),
    )
    .await;
    api.write(
        reqwest::Method::PUT,
        "/unified/crm/unified_custom_fields/contacts",
        json!({"mappings": {"seats": "Seats", "status": "Status"}}),
    )
    .await;
    let contact_body = |i: usize| {
        json!({
            "first_name": format!("Ada{i}"),
            "last_name": format!("Lovelace{i}"),
            "emails": [format!("ada{i}@example.com")],
            "email_addresses": [{"email": format!("ada{i}@example.com"), "type": "work"}],
            "phone_numbers": [format!("+44 20 7946 000{i}")],
            "external_id": format!("ext-{i}"),
            "custom_fields": [{"name": "Seats", "value": i}, {"name": "Status", "value": "c"}],
        })
    };
    let mut contacts = Vec::new();
    for i in 0..5 {
        let created = if i == 2 {
            let answer = api
                .send_with(
                    reqwest::Method::POST,
                    "/unified/crm/contacts",
                    Some(&contact_body(i)),
                    &[("idempotency-key", "copy-test-1")],
                )
                .await;
            assert!((200..300).contains(&answer.status), "{}", answer.body);
            answer.body["data"].clone()
        } else {
            api.post("/unified/crm/contacts", contact_body(i)).await
        };
        contacts.push(created["id"].as_str().unwrap().to_owned());
    }
    // The first contact, written last: first in creation order, last in update order.
    api.write(
        reqwest::Method::PATCH,
        &format!("/unified/crm/contacts/{}", contacts[0]),
        json!({"title": "Countess"}),
    )
    .await;
    api.post(
        "/unified/crm/accounts",
        json!({"name": "Analytical Engines Ltd"}),
    )
    .await;
    let list = api
        .post("/unified/crm/lists", json!({"name": "Pioneers"}))
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    api.post(
        &format!("/unified/crm/lists/{list}/items"),
        json!({"item_ids": [contacts[3], contacts[1]]}),
    )
    .await;

    let project = json_id(&admin(database, &["create-project", "--name", "second"]));
    let (_, second_key) = create_key(database, &project);
    let second_account = json_id(&admin(
        database,
        &["create-account", "--project", &project, "--name", "other"],
    ));
    let second = Api {
        http,
        base: &server.base_url,
        key: &second_key,
        account: &second_account,
    };
    second
        .post(
            "/unified/crm/contacts",
            json!({"last_name": "Hopper", "emails": ["grace@example.com"]}),
        )
        .await;
    let projects: Value = serde_json::from_str(&admin(database, &["list-projects"])).unwrap();
    let first_project = projects[0]["id"].as_str().unwrap().to_owned();
    let (revoked_id, revoked_key) = create_key(database, &first_project);
    admin(database, &["revoke-key", "--key-id", &revoked_id]);
    Population {
        key,
        account,
        second_key,
        second_account,
        revoked_key,
        contacts,
        list,
        contact_body: contact_body(2),
    }
}

/// What a server answers about the population, by question.
async fn answers(base: &str, http: &reqwest::Client, p: &Population) -> Vec<(String, Answer)> {
    let api = Api {
        http,
        base,
        key: &p.key,
        account: &p.account,
    };
    let mut out = Vec::new();
    for id in &p.contacts {
        let path = format!("/unified/crm/contacts/{id}");
        out.push((path.clone(), api.get(&path).await));
    }
    for path in [
        "/unified/crm/contacts?page_size=2".to_owned(),
        "/unified/crm/contacts?page_size=2&filter[updated_after]=2000-01-01T00:00:00Z".to_owned(),
        "/unified/crm/accounts?page_size=1".to_owned(),
        "/unified/crm/lists?page_size=10".to_owned(),
        "/unified/crm/custom_field_definitions/contacts?page_size=1".to_owned(),
    ] {
        for (i, page) in api.pages(&path).await.into_iter().enumerate() {
            out.push((format!("{path} page {i}"), page));
        }
    }
    for path in [
        format!("/unified/crm/lists/{}", p.list),
        "/unified/crm/unified_custom_fields/contacts".to_owned(),
        "/unified/crm/export/contacts".to_owned(),
    ] {
        out.push((path.clone(), api.get(&path).await));
    }
    // The create made with an Idempotency-Key, sent again: the first answer, replayed.
    out.push((
        "idempotent replay".into(),
        api.send_with(
            reqwest::Method::POST,
            "/unified/crm/contacts",
            Some(&p.contact_body),
            &[("idempotency-key", "copy-test-1")],
        )
        .await,
    ));
    let second = Api {
        http,
        base,
        key: &p.second_key,
        account: &p.second_account,
    };
    out.push((
        "second project's contacts".into(),
        second.get("/unified/crm/contacts").await,
    ));
    let foreign = Api {
        http,
        base,
        key: &p.key,
        account: &p.second_account,
    };
    out.push((
        "first key, second project's account".into(),
        foreign.get("/unified/crm/contacts").await,
    ));
    let revoked = Api {
        http,
        base,
        key: &p.revoked_key,
        account: &p.account,
    };
    out.push((
        "revoked key".into(),
        revoked.get("/unified/crm/contacts").await,
    ));
    out
}

#[tokio::test]
async fn a_sqlite_store_moved_to_postgresql_answers_the_same_keys_the_same() {
    let started = Instant::now();
    let sqlite = TestDatabase::new(Store::Sqlite).await;
    let postgres = TestDatabase::new(Store::Postgres).await;
    let http = reqwest::Client::new();

    let server = ServerProcess::start(sqlite.url(), true, "warn,crm_server=info", &[]);
    server.ready(&http).await;
    let population = populate(&server, sqlite.url(), &http).await;
    let before = answers(&server.base_url, &http, &population).await;
    server.terminate();
    assert!(server.wait_exit().success());
    assert!(
        before
            .iter()
            .any(|(q, a)| q == "revoked key" && a.status == 401)
    );
    assert!(
        before
            .iter()
            .any(|(q, a)| q.starts_with("first key") && a.status == 404)
    );
    println!("populated SQLite in {:.1?}", started.elapsed());

    let copying = Instant::now();
    let work = tempfile::tempdir().unwrap();
    assert!(!records_analyzed(postgres.url(), false).await);
    let out = run(
        work.path(),
        &[
            "admin",
            "copy",
            "--from",
            sqlite.url(),
            "--to",
            postgres.url(),
        ],
    );
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    println!("copied in {:.1?}\n{stdout}{stderr}", copying.elapsed());
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let password = PgCluster::shared().password();
    assert!(!stdout.contains(password) && !stderr.contains(password));
    assert!(stdout.contains("********"), "{stdout}");
    // Nothing is opened at the global --database's default.
    assert!(!work.path().join("crm.db").exists());
    assert!(
        records_analyzed(postgres.url(), true).await,
        "the copy left PostgreSQL's statistics of its empty tables"
    );
    for (table, rows) in [
        ("projects", 2),
        ("api_keys", 3),
        ("linked_accounts", 2),
        // 2 definitions, 5 + 1 contacts, 1 account, 1 list.
        ("records", 10),
        ("list_items", 2),
        ("unified_custom_fields", 1),
        ("idempotency_keys", 1),
    ] {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with(&format!("{table}: {rows} rows, checksum ok"))),
            "{table}: {stdout}"
        );
    }
    assert!(stderr.contains("records: 10 rows copied"), "{stderr}");

    let server = ServerProcess::start(postgres.url(), false, "warn,crm_server=info", &[]);
    server.ready(&http).await;
    let after = answers(&server.base_url, &http, &population).await;
    assert_eq!(before.len(), after.len());
    for ((question, was), (_, is)) in before.iter().zip(&after) {
        assert_eq!(was, is, "{question}");
    }

    // The copy goes on as a store of its own: new records come after the copied ones in
    // both listings, and an update with the copied etag lands.
    let api = Api {
        http: &http,
        base: &server.base_url,
        key: &population.key,
        account: &population.account,
    };
    let new = api
        .post("/unified/crm/contacts", json!({"last_name": "Babbage"}))
        .await;
    let created = ids(&api.pages("/unified/crm/contacts?page_size=100").await);
    assert_eq!(
        created.last(),
        new["id"].as_str().map(str::to_owned).as_ref()
    );
    let contact = &population.contacts[1];
    let etag = before
        .iter()
        .find(|(q, _)| q.ends_with(contact.as_str()))
        .and_then(|(_, a)| a.etag.clone())
        .unwrap();
    let updated = api
        .send_with(
            reqwest::Method::PATCH,
            &format!("/unified/crm/contacts/{contact}"),
            Some(&json!({"title": "Analyst"})),
            &[("if-match", &etag)],
        )
        .await;
    assert_eq!(updated.status, 200, "{}", updated.body);
    let by_update = ids(&api
        .pages("/unified/crm/contacts?page_size=100&filter[updated_after]=2000-01-01T00:00:00Z")
        .await);
    assert_eq!(by_update.last(), Some(contact));
    assert_eq!(by_update[by_update.len() - 2], new["id"].as_str().unwrap());
    println!("whole test in {:.1?}", started.elapsed());
}

/// Whether `ANALYZE` has run on the records table of a PostgreSQL database: `admin copy`
/// and `admin import` run it when they are done, so the planner counts what they loaded.
/// With `wait`, gives PostgreSQL's statistics a few seconds to show it.
async fn records_analyzed(url: &str, wait: bool) -> bool {
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(url).await.unwrap();
    for _ in 0..50 {
        let analyzed: bool = sqlx::query_scalar(
            "SELECT COALESCE((SELECT last_analyze IS NOT NULL FROM pg_stat_user_tables \
             WHERE relname = 'records'), FALSE)",
        )
        .fetch_one(&mut conn)
        .await
        .unwrap();
        if analyzed || !wait {
            return analyzed;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    false
}

/// Opens a database of the test kit.
async fn open(database: &TestDatabase) -> Database {
    let url: DatabaseUrl = database.url().parse().unwrap();
    Database::open(&url, PoolSettings::default()).await.unwrap()
}

/// A store with a project, a key, an account and `contacts` contacts (imported).
async fn seeded(database: &TestDatabase, contacts: usize) -> (Database, String) {
    let db = open(database).await;
    let tenancy = Tenancy::new(db.clone(), Arc::new(SystemClock));
    let first = crm_server::bootstrap_if_empty(&tenancy)
        .await
        .unwrap()
        .unwrap();
    let lines: String = (0..contacts)
        .map(|i| {
            format!(
                "{}\n",
                json!({"id": format!("c-{i}"), "last_name": format!("Lovelace{i}"),
                       "emails": [format!("ada{i}@example.com")], "external_id": format!("e-{i}")})
            )
        })
        .collect();
    let report = transfer::import(
        &db,
        &SystemClock,
        &first.account.id,
        lines.as_bytes(),
        &mut Progress::quiet(),
    )
    .await
    .unwrap();
    assert_eq!(report.imported, contacts as u64);
    (db, first.account.id)
}

#[tokio::test]
async fn a_target_in_use_is_refused_and_left_as_it_was() {
    let source = TestDatabase::new(Store::Sqlite).await;
    let (source_db, _) = seeded(&source, 3).await;
    source_db.close().await;
    let work = tempfile::tempdir().unwrap();
    for store in [Store::Postgres, Store::Sqlite] {
        let target = TestDatabase::new(store).await;
        let (target_db, _) = seeded(&target, 1).await;
        let before = transfer::checksums(&target_db).await.unwrap();
        let out = run(
            work.path(),
            &[
                "admin",
                "copy",
                "--from",
                source.url(),
                "--to",
                target.url(),
            ],
        );
        let stderr = text(&out.stderr);
        assert!(!out.status.success(), "{store:?}: {}", text(&out.stdout));
        assert!(stderr.contains("is not empty"), "{store:?}: {stderr}");
        assert!(
            stderr.contains("nothing was written"),
            "{store:?}: {stderr}"
        );
        assert_eq!(
            transfer::checksums(&target_db).await.unwrap(),
            before,
            "{store:?}"
        );
        target_db.close().await;
    }

    // A --from that does not exist is not created (that would copy an empty store).
    let missing = work.path().join("missing.db");
    let target = TestDatabase::new(Store::Sqlite).await;
    let out = run(
        work.path(),
        &[
            "admin",
            "copy",
            "--from",
            missing.to_str().unwrap(),
            "--to",
            target.url(),
        ],
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("does not exist"),
        "{}",
        text(&out.stderr)
    );
    assert!(!missing.exists());
    // Nor is a store copied onto itself.
    let out = run(
        work.path(),
        &[
            "admin",
            "copy",
            "--from",
            source.url(),
            "--to",
            source.url(),
        ],
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("same database"),
        "{}",
        text(&out.stderr)
    );
    assert!(!work.path().join("crm.db").exists());
}

#[tokio::test]
async fn a_corrupted_copy_fails_verification() {
    let source = TestDatabase::new(Store::Sqlite).await;
    let target = TestDatabase::new(Store::Postgres).await;
    let (from, _) = seeded(&source, 25).await;
    let to = open(&target).await;
    let copied = transfer::copy(&from, &to, &mut Progress::quiet())
        .await
        .unwrap();
    let records = copied.iter().find(|t| t.table == "records").unwrap();
    assert_eq!(records.rows, 25);
    assert_eq!(transfer::verify(&from, &to).await.unwrap(), copied);

    let mismatch = |result: Result<_, TransferError>| match result {
        Err(TransferError::Mismatch(differences)) => differences.join("\n"),
        other => panic!("not a mismatch: {other:?}"),
    };
    // One body changed on the target.
    sqlx::query(
        "UPDATE records SET body = replace(body, 'Lovelace7', 'Lovelace8') WHERE id = 'c-7'",
    )
    .execute(to.pool())
    .await
    .unwrap();
    let found = mismatch(transfer::verify(&from, &to).await);
    assert!(
        found.contains("records: 25 rows, checksum mismatch"),
        "{found}"
    );
    sqlx::query(
        "UPDATE records SET body = replace(body, 'Lovelace8', 'Lovelace7') WHERE id = 'c-7'",
    )
    .execute(to.pool())
    .await
    .unwrap();
    transfer::verify(&from, &to).await.unwrap();

    // The same rows, listed in another order.
    sqlx::query("UPDATE records SET created_pos = created_pos + 1000000 WHERE id = 'c-3'")
        .execute(to.pool())
        .await
        .unwrap();
    let found = mismatch(transfer::verify(&from, &to).await);
    assert!(
        found.contains("records: 25 rows, the same rows listed in a different order"),
        "{found}"
    );

    // A row missing, and a key hash changed.
    sqlx::query("DELETE FROM records WHERE id = 'c-11'")
        .execute(to.pool())
        .await
        .unwrap();
    sqlx::query("UPDATE api_keys SET secret_hash = $1")
        .bind(vec![0u8; 32])
        .execute(to.pool())
        .await
        .unwrap();
    let found = mismatch(transfer::verify(&from, &to).await);
    assert!(
        found.contains("records: 25 rows in the source, 24 in the target"),
        "{found}"
    );
    assert!(
        found.contains("api_keys: 1 rows, checksum mismatch"),
        "{found}"
    );
}

#[tokio::test]
async fn both_orders_survive_copies_in_every_direction() {
    // More records than a batch, with listings whose order is not `seq` order: updates in
    // a scrambled order, and records whose creation position is later than their `seq`.
    let started = Instant::now();
    let first = TestDatabase::new(Store::Sqlite).await;
    let (source, _) = seeded(&first, 2500).await;
    for i in (0..2500).filter(|i| i % 7 == 3).rev() {
        let mut tx = source.begin_write().await.unwrap();
        let position = source.next_position(&mut tx).await.unwrap();
        sqlx::query("UPDATE records SET updated_pos = $1 WHERE id = $2")
            .bind(position)
            .bind(format!("c-{}", (i * 37) % 2500))
            .execute(&mut *tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }
    sqlx::query(
        "UPDATE records SET created_pos = created_pos + 1 WHERE id IN ('c-5', 'c-1500', 'c-2001')",
    )
    .execute(source.pool())
    .await
    .unwrap();
    let expected = transfer::checksums(&source).await.unwrap();

    let second = TestDatabase::new(Store::Postgres).await;
    let third = TestDatabase::new(Store::Sqlite).await;
    let fourth = TestDatabase::new(Store::Postgres).await;
    let mut from = source;
    for target in [&second, &third, &fourth] {
        let to = open(target).await;
        let copied = transfer::copy(&from, &to, &mut Progress::quiet())
            .await
            .unwrap_or_else(|e| panic!("to {:?}: {e}", target.store()));
        assert_eq!(copied, expected, "{:?}", target.store());
        from.close().await;
        from = to;
    }
    println!("three copies of 2500 records in {:.1?}", started.elapsed());
}

#[tokio::test]
async fn an_export_imported_into_another_account_keeps_ids_and_times_once() {
    let database = TestDatabase::new(Store::from_env()).await;
    let url = database.url();
    let http = reqwest::Client::new();
    let server = ServerProcess::start(url, true, "warn,crm_server=info", &[]);
    server.ready(&http).await;
    let (key, account) = server.bootstrap.clone().unwrap();
    let source = Api {
        http: &http,
        base: &server.base_url,
        key: &key,
        account: &account,
    };
    source
        .post(
            "/unified/crm/custom_field_definitions/contacts",
            json!({"name": "Seats", "type": {"value": "integer"}}),
        )
        .await;
    for i in 0..4 {
        let mut body = json!({
            "first_name": format!("Grace{i}"),
            "last_name": "Hopper",
            "emails": [format!("grace{i}@example.com")],
            "custom_fields": [{"name": "Seats", "value": i}],
        });
        if i != 1 {
            body["external_id"] = json!(format!("ext-{i}"));
        }
        source.post("/unified/crm/contacts", body).await;
    }
    let first = ids(&source.pages("/unified/crm/contacts?page_size=100").await)[0].clone();
    source
        .write(
            reqwest::Method::PATCH,
            &format!("/unified/crm/contacts/{first}"),
            json!({"title": "Rear Admiral"}),
        )
        .await;
    let export = source.get("/unified/crm/export/contacts").await;
    assert_eq!(export.status, 200);
    let exported = export.body.as_str().unwrap().to_owned();
    assert_eq!(exported.lines().count(), 4);

    let projects: Value = serde_json::from_str(&admin(url, &["list-projects"])).unwrap();
    let project = projects[0]["id"].as_str().unwrap();
    let other = json_id(&admin(
        url,
        &["create-account", "--project", project, "--name", "imported"],
    ));
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("contacts.ndjson");
    std::fs::write(&file, &exported).unwrap();
    let file = file.to_str().unwrap();

    let postgres = database.store() == Store::Postgres;
    if postgres {
        assert!(!records_analyzed(url, false).await);
    }
    let importing = Instant::now();
    let imported = admin(url, &["import", "--account", &other, file]);
    println!("imported in {:.1?}: {imported}", importing.elapsed());
    assert_eq!(imported.trim(), "imported 4, skipped 0");
    if postgres {
        assert!(
            records_analyzed(url, true).await,
            "the import left PostgreSQL's statistics as they were"
        );
    }
    let target = Api {
        http: &http,
        base: &server.base_url,
        key: &key,
        account: &other,
    };
    let original = contacts_without_etags(&source).await;
    let copy = contacts_without_etags(&target).await;
    assert_eq!(copy.len(), 4);
    // Ids, external ids, times, fields and their order: all as exported.
    assert_eq!(copy, original);
    assert!(copy.iter().any(|c| c["external_id"] == "ext-0"));
    assert_ne!(copy[0]["created_at"], copy[0]["updated_at"]);

    // Again: everything is there already.
    let again = admin(url, &["import", "--account", &other, file]);
    assert_eq!(again.trim(), "imported 0, skipped 4");
    assert_eq!(contacts_without_etags(&target).await.len(), 4);

    // A line without an id or external id is found again by the id derived from it; a
    // line whose external id is taken is skipped.
    let hand = work.path().join("hand.ndjson");
    std::fs::write(
        &hand,
        "{\"last_name\": \"Anonymous\"}\n\n{\"id\": \"fresh\", \"last_name\": \"X\", \"external_id\": \"ext-2\"}\n",
    )
    .unwrap();
    let hand = hand.to_str().unwrap();
    assert_eq!(
        admin(url, &["import", "--account", &other, hand]).trim(),
        "imported 1, skipped 1"
    );
    assert_eq!(
        admin(url, &["import", "--account", &other, hand]).trim(),
        "imported 0, skipped 2"
    );
    assert_eq!(contacts_without_etags(&target).await.len(), 5);

    // A bad third line: named with its reason; the lines before it are committed.
    let bad = work.path().join("bad.ndjson");
    std::fs::write(
        &bad,
        [
            json!({"id": "imp-1", "last_name": "One"}),
            json!({"id": "imp-2", "last_name": "Two", "created_at": "2001-02-03T04:05:06Z"}),
            json!({"id": "imp-3", "first_name": "No last name"}),
            json!({"id": "imp-4", "last_name": "Four"}),
        ]
        .map(|l| format!("{l}\n"))
        .concat(),
    )
    .unwrap();
    let out = Command::new(binary())
        .args(["--database", url, "--log-level", "warn", "admin", "import"])
        .args(["--account", &other, bad.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = text(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("line 3: last_name is required"), "{stderr}");
    assert!(stderr.contains("imported 2, skipped 0"), "{stderr}");
    for (id, status) in [
        ("imp-1", 200),
        ("imp-2", 200),
        ("imp-3", 404),
        ("imp-4", 404),
    ] {
        let answer = target.get(&format!("/unified/crm/contacts/{id}")).await;
        assert_eq!(answer.status, status, "{id}: {}", answer.body);
    }
    let two = target.get("/unified/crm/contacts/imp-2").await.body;
    assert_eq!(two["data"]["created_at"], "2001-02-03T04:05:06Z");
    assert_eq!(two["data"]["updated_at"], "2001-02-03T04:05:06Z");

    // An account that is not there.
    let out = Command::new(binary())
        .args(["--database", url, "--log-level", "warn", "admin", "import"])
        .args(["--account", "nope", file])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("no linked account nope"));
}
