//! The real binary with linked accounts of real CRMs, pointed at the test doubles of
//! HubSpot and Pipedrive (`provider-doubles`) through `--base-url`.
//!
//! The suites at the top are shared: each runs against a `local`, a `hubspot` and a
//! `pipedrive` account, and asserts what the unified API promises for all three. Where a
//! provider cannot do something, the suite says what it answers instead (a 501, say).
//! Below them are the connector's own tests: retries, the concurrency limit, OAuth renewal,
//! two accounts of one provider, and a search for credentials everywhere a user can look.

mod server_process;

use std::path::{Path, PathBuf};
use std::time::Duration;

use provider_doubles::{Failure, HubSpotDouble, PipedriveDouble};
use reqwest::Method;
use serde_json::{Value, json};
use server_process::{PATIENCE, ServerProcess, binary};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Local,
    HubSpot,
    Pipedrive,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Local => "local",
            Kind::HubSpot => "hubspot",
            Kind::Pipedrive => "pipedrive",
        }
    }
}

/// One project with one linked account of `kind`, served by the real binary.
struct Linked {
    kind: Kind,
    server: ServerProcess,
    dir: tempfile::TempDir,
    database: String,
    key_file: PathBuf,
    key: String,
    project: String,
    account: String,
    hubspot: Option<HubSpotDouble>,
    pipedrive: Option<PipedriveDouble>,
    /// Every credential the account holds, to look for where it must not be.
    secrets: Vec<String>,
    http: reqwest::Client,
}

fn run_admin(database: &str, key_file: &Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(binary())
        .args(["--database", database, "--log-level", "warn"])
        .arg("--secret-key-file")
        .arg(key_file)
        .arg("admin")
        .args(args)
        .output()
        .expect("admin runs")
}

fn admin(database: &str, key_file: &Path, args: &[&str]) -> String {
    let out = run_admin(database, key_file, args);
    assert!(
        out.status.success(),
        "admin {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn id_in(text: &str) -> String {
    serde_json::from_str::<Value>(text).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn random_token(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// Credentials for a new account of `kind` at its double.
enum Creds {
    Token,
    OAuth { lifetime: Duration },
}

impl Linked {
    async fn start(kind: Kind) -> Linked {
        Self::start_with(kind, Creds::Token, &[]).await
    }

    async fn start_with(kind: Kind, creds: Creds, serve_args: &[&str]) -> Linked {
        let dir = tempfile::tempdir().unwrap();
        // The store `CRM_TEST_STORE` names: a SQLite file, or a fresh PostgreSQL database.
        let database = match crm_testkit::Store::from_env() {
            crm_testkit::Store::Sqlite => dir.path().join("crm.db").display().to_string(),
            crm_testkit::Store::Postgres => {
                crm_testkit::PgCluster::shared().create_database().await
            }
        };
        let key_file = dir.path().join("secret.key");
        let generated = std::process::Command::new(binary())
            .args(["admin", "generate-secret-key"])
            .output()
            .unwrap();
        assert!(generated.status.success());
        std::fs::write(&key_file, &generated.stdout).unwrap();
        let project = id_in(&admin(
            &database,
            &key_file,
            &["create-project", "--name", "p"],
        ));
        let created = admin(&database, &key_file, &["create-key", "--project", &project]);
        let key = created
            .lines()
            .find_map(|l| l.strip_prefix("API key: "))
            .unwrap()
            .trim()
            .to_owned();
        let (hubspot, pipedrive) = match kind {
            Kind::Local => (None, None),
            Kind::HubSpot => (Some(HubSpotDouble::start().await), None),
            Kind::Pipedrive => (None, Some(PipedriveDouble::start().await)),
        };
        let mut secrets = Vec::new();
        let account = match kind {
            Kind::Local => id_in(&admin(
                &database,
                &key_file,
                &["create-account", "--project", &project, "--name", "local"],
            )),
            _ => {
                let base_url = hubspot
                    .as_ref()
                    .map(|d| d.base_url())
                    .or_else(|| pipedrive.as_ref().map(|d| d.base_url()))
                    .unwrap();
                let file = dir.path().join("credentials.json");
                let body = link_credentials(kind, &hubspot, &pipedrive, &creds, &mut secrets);
                std::fs::write(&file, body.to_string()).unwrap();
                let out = admin(
                    &database,
                    &key_file,
                    &[
                        "create-account",
                        "--project",
                        &project,
                        "--name",
                        kind.name(),
                        "--provider",
                        kind.name(),
                        "--credentials",
                        file.to_str().unwrap(),
                        "--base-url",
                        &base_url,
                    ],
                );
                std::fs::remove_file(&file).unwrap();
                for secret in &secrets {
                    assert!(!out.contains(secret.as_str()), "admin printed a credential");
                }
                id_in(&out)
            }
        };
        let mut args = vec!["--secret-key-file", key_file.to_str().unwrap()];
        args.extend_from_slice(serve_args);
        let server = ServerProcess::start(&database, false, "trace", &args);
        let http = reqwest::Client::builder()
            .timeout(PATIENCE)
            .build()
            .unwrap();
        server.ready(&http).await;
        Linked {
            kind,
            server,
            dir,
            database,
            key_file,
            key,
            project,
            account,
            hubspot,
            pipedrive,
            secrets,
            http,
        }
    }

    fn hubspot(&self) -> &HubSpotDouble {
        self.hubspot.as_ref().unwrap()
    }

    fn pipedrive(&self) -> &PipedriveDouble {
        self.pipedrive.as_ref().unwrap()
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        self.call_as(&self.account, method, path, body).await
    }

    async fn call_as(
        &self,
        account: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.server.base_url))
            .basic_auth(&self.key, Some(""))
            .header("x-account-id", account);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, value)
    }

    async fn ok(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let (status, value) = self.call(method, path, body).await;
        assert!(
            (200..300).contains(&status),
            "{} {path}: {status} {value:#}",
            self.kind.name()
        );
        value
    }

    /// Makes a custom text field the account's records can carry; returns its name.
    async fn define_custom_field(&self) -> String {
        let name = "favourite_colour".to_owned();
        match self.kind {
            Kind::Local => {
                self.ok(
                    Method::POST,
                    "/unified/crm/custom_field_definitions/contacts",
                    Some(json!({"name": name, "description": "Colour", "type": {"value": "text"}})),
                )
                .await;
            }
            Kind::HubSpot => self.hubspot().add_property(
                "contacts",
                json!({"name": name, "label": "Favourite colour", "type": "string", "fieldType": "text"}),
            ),
            Kind::Pipedrive => {
                self.pipedrive()
                    .add_person_field(json!({"field_name": name, "field_type": "varchar"}));
            }
        }
        name
    }

    async fn create_contact(&self, first: &str, last: &str) -> Value {
        let body = json!({
            "first_name": first,
            "last_name": last,
            "emails": [format!("{}.{}@example.com", first.to_lowercase(), last.to_lowercase())],
            "phone_numbers": ["+1 555 0100"],
        });
        self.ok(Method::POST, "/unified/crm/contacts", Some(body))
            .await["data"]
            .clone()
    }

    /// Everything a user can see of this server and account, as text.
    fn visible_text(&self) -> String {
        let mut text = String::new();
        for event in self.server.logs() {
            text.push_str(&event.to_string());
            text.push('\n');
        }
        let listed = admin(&self.database, &self.key_file, &["list-accounts"]);
        text.push_str(&listed);
        text
    }

    /// What the store holds, as bytes: a SQLite file and its WAL; on PostgreSQL, a
    /// `pg_dump` of the whole database.
    fn stored_bytes(&self) -> Vec<u8> {
        if self.database.starts_with("postgres") {
            let out = std::process::Command::new(crm_testkit::pg_program("pg_dump"))
                .args(["--data-only", &self.database])
                .output()
                .expect("pg_dump runs");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(!out.stdout.is_empty());
            return out.stdout;
        }
        let mut bytes = Vec::new();
        for suffix in ["", "-wal"] {
            if let Ok(b) = std::fs::read(format!("{}{suffix}", self.database)) {
                bytes.extend(b);
            }
        }
        assert!(!bytes.is_empty(), "the SQLite file is read");
        bytes
    }
}

fn link_credentials(
    kind: Kind,
    hubspot: &Option<HubSpotDouble>,
    pipedrive: &Option<PipedriveDouble>,
    creds: &Creds,
    secrets: &mut Vec<String>,
) -> Value {
    match creds {
        Creds::Token => {
            let token = random_token("tok");
            secrets.push(token.clone());
            match kind {
                Kind::HubSpot => {
                    hubspot.as_ref().unwrap().add_token(&token);
                    json!({"access_token": token})
                }
                _ => {
                    pipedrive.as_ref().unwrap().add_token(&token);
                    json!({"api_token": token})
                }
            }
        }
        Creds::OAuth { lifetime } => {
            let client_id = random_token("client");
            let client_secret = random_token("secret");
            let grant = match kind {
                Kind::HubSpot => {
                    let d = hubspot.as_ref().unwrap();
                    d.add_oauth_client(&client_id, &client_secret);
                    d.issue_oauth(&client_id, *lifetime)
                }
                _ => {
                    let d = pipedrive.as_ref().unwrap();
                    d.add_oauth_client(&client_id, &client_secret);
                    d.issue_oauth(&client_id, *lifetime)
                }
            };
            secrets.extend([
                grant.access_token.clone(),
                grant.refresh_token.clone(),
                client_secret.clone(),
            ]);
            json!({
                "access_token": grant.access_token,
                "refresh_token": grant.refresh_token,
                "expires_at": grant.expires_at.to_rfc3339(),
                "client_id": client_id,
                "client_secret": client_secret,
            })
        }
    }
}

const ALL: [Kind; 3] = [Kind::Local, Kind::HubSpot, Kind::Pipedrive];

// ---------------------------------------------------------------------------------------
// The shared suites.
// ---------------------------------------------------------------------------------------

/// Create, get, update (with and without `If-Match`), `Prefer: return=minimal`, a 404,
/// `fields`, `exclude_fields` and `raw`.
async fn contacts_round_trip(l: &Linked) {
    let p = l.kind.name();
    let created = l.create_contact("Ada", "Lovelace").await;
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["first_name"], "Ada", "{p}");
    assert_eq!(created["last_name"], "Lovelace", "{p}");
    assert_eq!(
        created["emails"],
        json!(["ada.lovelace@example.com"]),
        "{p}"
    );
    assert!(created["remote_id"].is_string(), "{p}");
    if l.kind != Kind::Local {
        assert_ne!(created["id"], created["remote_id"], "{p}: our id is opaque");
    }
    let etag = created["etag"].as_str().unwrap().to_owned();

    let got = l
        .ok(Method::GET, &format!("/unified/crm/contacts/{id}"), None)
        .await["data"]
        .clone();
    assert_eq!(got["id"], created["id"], "{p}");
    assert_eq!(got["etag"], created["etag"], "{p}");

    // An update changes the etag, even twice within one second.
    let updated = l
        .ok(
            Method::PATCH,
            &format!("/unified/crm/contacts/{id}"),
            Some(json!({"last_name": "Byron"})),
        )
        .await["data"]
        .clone();
    assert_eq!(updated["last_name"], "Byron", "{p}");
    assert_eq!(updated["first_name"], "Ada", "{p}");
    let second = l
        .ok(
            Method::PATCH,
            &format!("/unified/crm/contacts/{id}"),
            Some(json!({"last_name": "King"})),
        )
        .await["data"]
        .clone();
    assert_ne!(updated["etag"], created["etag"], "{p}");
    assert_ne!(second["etag"], updated["etag"], "{p}");

    // If-Match: a stale etag is refused and changes nothing; the current one applies.
    let stale = l
        .http
        .patch(format!("{}/unified/crm/contacts/{id}", l.server.base_url))
        .basic_auth(&l.key, Some(""))
        .header("x-account-id", &l.account)
        .header("If-Match", format!("\"{etag}\""))
        .json(&json!({"last_name": "Stale"}))
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), 412, "{p}");
    let current = second["etag"].as_str().unwrap();
    let fresh = l
        .http
        .patch(format!("{}/unified/crm/contacts/{id}", l.server.base_url))
        .basic_auth(&l.key, Some(""))
        .header("x-account-id", &l.account)
        .header("If-Match", format!("\"{current}\""))
        .header("Prefer", "return=minimal")
        .json(&json!({"last_name": "Fresh"}))
        .send()
        .await
        .unwrap();
    assert!(fresh.status().is_success(), "{p}: {}", fresh.status());
    let got = l
        .ok(Method::GET, &format!("/unified/crm/contacts/{id}"), None)
        .await["data"]
        .clone();
    assert_eq!(got["last_name"], "Fresh", "{p}");

    // fields, exclude_fields, raw.
    let only = l
        .ok(
            Method::GET,
            &format!("/unified/crm/contacts/{id}?fields=id,last_name"),
            None,
        )
        .await["data"]
        .clone();
    assert_eq!(only.as_object().unwrap().len(), 2, "{p}: {only}");
    let without = l
        .ok(
            Method::GET,
            &format!("/unified/crm/contacts/{id}?exclude_fields=emails"),
            None,
        )
        .await["data"]
        .clone();
    assert!(
        without.get("emails").is_none() && without.get("last_name").is_some(),
        "{p}"
    );
    let raw = l
        .ok(
            Method::GET,
            &format!("/unified/crm/contacts/{id}?raw=true"),
            None,
        )
        .await;
    let exchanges = raw["raw"].as_array().expect("raw entries");
    assert!(!exchanges.is_empty(), "{p}");
    for exchange in exchanges {
        assert!(
            exchange["method"].is_string() && exchange["url"].is_string(),
            "{p}"
        );
    }
    if l.kind != Kind::Local {
        let base = l
            .hubspot
            .as_ref()
            .map(|d| d.base_url())
            .or_else(|| l.pipedrive.as_ref().map(|d| d.base_url()))
            .unwrap();
        assert!(
            exchanges.iter().any(|e| e["url"].as_str().unwrap().starts_with(&base) && e["response"].is_object()),
            "{p}: the real provider exchange is in raw: {exchanges:#?}"
        );
    }

    // An id this server never issued, and one it issued for another kind.
    let (status, body) = l
        .call(Method::GET, "/unified/crm/contacts/no-such-contact", None)
        .await;
    assert_eq!(status, 404, "{p}: {body}");
    assert_eq!(body["statusCode"], 404);

    // The record deleted at the provider is a 404 too.
    let (status, _) = l
        .call(Method::DELETE, &format!("/unified/crm/contacts/{id}"), None)
        .await;
    assert!(status == 200 || status == 204, "{p}: {status}");
    let (status, body) = l
        .call(Method::GET, &format!("/unified/crm/contacts/{id}"), None)
        .await;
    assert_eq!(status, 404, "{p}: {body}");
}

/// Paging with every page size walks every record once, then stops; and a filtered
/// listing sees only what changed after the filter's time.
async fn contacts_paging(l: &Linked) {
    let p = l.kind.name();
    let mut ids = std::collections::BTreeSet::new();
    for i in 0..23 {
        let c = l.create_contact(&format!("P{i:02}"), "Pager").await;
        ids.insert(c["id"].as_str().unwrap().to_owned());
    }
    for page_size in [1usize, 7, 100] {
        let mut seen = Vec::new();
        let mut next: Option<String> = None;
        let mut pages = 0;
        loop {
            let mut path = format!("/unified/crm/contacts?page_size={page_size}");
            if let Some(n) = &next {
                path.push_str(&format!("&next={n}"));
            }
            let page = l.ok(Method::GET, &path, None).await;
            let data = page["data"].as_array().unwrap();
            assert!(data.len() <= page_size, "{p}: {} > {page_size}", data.len());
            seen.extend(data.iter().map(|c| c["id"].as_str().unwrap().to_owned()));
            pages += 1;
            assert!(pages <= 30, "{p}: paging does not end");
            match page["next"].as_str() {
                Some(n) => next = Some(n.to_owned()),
                None => break,
            }
        }
        let unique: std::collections::BTreeSet<_> = seen.iter().cloned().collect();
        assert_eq!(
            unique.len(),
            seen.len(),
            "{p}: a contact twice at page_size {page_size}"
        );
        assert_eq!(unique, ids, "{p}: page_size {page_size}");
    }
    // A cursor this server never issued.
    let (status, body) = l
        .call(Method::GET, "/unified/crm/contacts?next=bm9wZQ", None)
        .await;
    assert_eq!(status, 400, "{p}: {body}");

    // filter[updated_after]: only the contact changed after the mark.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mark = chrono::Utc::now();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let changed = ids.iter().next().unwrap().clone();
    l.ok(
        Method::PATCH,
        &format!("/unified/crm/contacts/{changed}"),
        Some(json!({"first_name": "Changed"})),
    )
    .await;
    let after = mark.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mut seen = Vec::new();
    let mut next: Option<String> = None;
    for _ in 0..10 {
        let mut path = format!("/unified/crm/contacts?page_size=5&filter[updated_after]={after}");
        if let Some(n) = &next {
            path.push_str(&format!("&next={n}"));
        }
        let page = l.ok(Method::GET, &path, None).await;
        seen.extend(
            page["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["id"].as_str().unwrap().to_owned()),
        );
        match page["next"].as_str() {
            Some(n) => next = Some(n.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, vec![changed], "{p}");
}

/// The provider's validation: an invalid email and an unknown custom field are refused
/// in the error shape, and nothing is written.
async fn validation(l: &Linked) {
    let p = l.kind.name();
    let (status, body) = l
        .call(
            Method::POST,
            "/unified/crm/contacts",
            Some(json!({"first_name": "Bad", "last_name": "Email", "emails": ["not-an-email"]})),
        )
        .await;
    assert_eq!(status, 422, "{p}: {body}");
    assert_eq!(body["statusCode"], 422, "{p}");
    if l.kind != Kind::Local {
        let errors = body["provider_errors"].as_array().expect("provider_errors");
        assert_eq!(errors[0]["status"], 400, "{p}: {body}");
        assert!(errors[0]["url"].is_string(), "{p}");
    }
    let (status, body) = l
        .call(
            Method::POST,
            "/unified/crm/contacts",
            Some(json!({"first_name": "Bad", "last_name": "Field",
                        "custom_fields": [{"name": "no_such_field", "value": "x"}]})),
        )
        .await;
    match l.kind {
        // The local store keeps values of fields it has no definition for.
        Kind::Local => assert_eq!(status, 200, "{p}: {body}"),
        _ => {
            assert_eq!(status, 422, "{p}: {body}");
            assert!(body["provider_errors"].is_array(), "{p}");
        }
    }
    let page = l
        .ok(Method::GET, "/unified/crm/contacts?page_size=100", None)
        .await;
    let bad: Vec<&Value> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["last_name"] == "Email")
        .collect();
    assert!(bad.is_empty(), "{p}: a refused write landed");
}

/// Custom field definitions (list, get) and values (written, read back).
async fn custom_fields(l: &Linked) {
    let p = l.kind.name();
    let name = l.define_custom_field().await;
    let defs = l
        .ok(
            Method::GET,
            "/unified/crm/custom_field_definitions/contacts",
            None,
        )
        .await;
    let def = defs["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == name.as_str())
        .unwrap_or_else(|| panic!("{p}: {defs:#}"))
        .clone();
    let def_id = def["id"].as_str().unwrap();
    let got = l
        .ok(
            Method::GET,
            &format!("/unified/crm/custom_field_definitions/contacts/{def_id}"),
            None,
        )
        .await;
    assert_eq!(got["data"]["name"], name.as_str(), "{p}");
    let (status, _) = l
        .call(
            Method::GET,
            "/unified/crm/custom_field_definitions/contacts/nope",
            None,
        )
        .await;
    assert_eq!(status, 404, "{p}");

    let created = l
        .ok(
            Method::POST,
            "/unified/crm/contacts",
            Some(json!({"first_name": "Cus", "last_name": "Tom",
                        "custom_fields": [{"name": name, "value": "teal"}]})),
        )
        .await["data"]
        .clone();
    let id = created["id"].as_str().unwrap();
    // Contacts carry custom fields when asked for.
    let read = l
        .ok(
            Method::GET,
            &format!("/unified/crm/contacts/{id}?include=custom_fields"),
            None,
        )
        .await["data"]
        .clone();
    let value = read["custom_fields"]
        .as_array()
        .unwrap_or_else(|| panic!("{p}: {read:#} (created: {created:#})"))
        .iter()
        .find(|f| f["name"] == name.as_str())
        .map(|f| f["value"].clone());
    assert_eq!(value, Some(json!("teal")), "{p}: {read:#}");
    // Written by id too.
    let by_id = l
        .ok(
            Method::PATCH,
            &format!("/unified/crm/contacts/{id}"),
            Some(json!({"custom_fields": [{"id": def_id, "value": "amber"}]})),
        )
        .await["data"]
        .clone();
    let value = by_id["custom_fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == name.as_str())
        .map(|f| f["value"].clone());
    assert_eq!(value, Some(json!("amber")), "{p}");
}

/// Accounts: list and get.
async fn accounts(l: &Linked) {
    let p = l.kind.name();
    match l.kind {
        Kind::Local => {
            for name in ["Acme", "Globex"] {
                l.ok(
                    Method::POST,
                    "/unified/crm/accounts",
                    Some(json!({"name": name})),
                )
                .await;
            }
        }
        Kind::HubSpot => {
            for name in ["Acme", "Globex"] {
                l.hubspot().insert_company(serde_json::Map::from_iter([(
                    "name".to_owned(),
                    json!(name),
                )]));
            }
        }
        Kind::Pipedrive => {
            for name in ["Acme", "Globex"] {
                l.pipedrive().insert_organization(json!({"name": name}));
            }
        }
    }
    let page = l
        .ok(Method::GET, "/unified/crm/accounts?page_size=1", None)
        .await;
    assert_eq!(page["data"].as_array().unwrap().len(), 1, "{p}");
    assert!(page["next"].is_string(), "{p}");
    let second = l
        .ok(
            Method::GET,
            &format!(
                "/unified/crm/accounts?page_size=1&next={}",
                page["next"].as_str().unwrap()
            ),
            None,
        )
        .await;
    let names: Vec<&Value> = [&page, &second]
        .iter()
        .map(|p| &p["data"][0]["name"])
        .collect();
    assert_eq!(names, vec![&json!("Acme"), &json!("Globex")], "{p}");
    let id = page["data"][0]["id"].as_str().unwrap();
    let got = l
        .ok(Method::GET, &format!("/unified/crm/accounts/{id}"), None)
        .await;
    assert_eq!(got["data"]["name"], "Acme", "{p}");
    let (status, _) = l
        .call(Method::GET, "/unified/crm/accounts/nope", None)
        .await;
    assert_eq!(status, 404, "{p}");
}

/// Lists: served where the provider has them, 501 naming the provider where it has not.
async fn lists(l: &Linked) {
    let p = l.kind.name();
    match l.kind {
        Kind::Pipedrive => {
            let (status, body) = l.call(Method::GET, "/unified/crm/lists", None).await;
            assert_eq!(status, 501, "{p}: {body}");
            assert!(
                body["message"].as_str().unwrap().contains("pipedrive"),
                "{body}"
            );
            return;
        }
        Kind::Local => {
            let c = l.create_contact("List", "Member").await;
            let list = l
                .ok(
                    Method::POST,
                    "/unified/crm/lists",
                    Some(json!({"name": "Newsletter", "type": {"value": "contacts"}})),
                )
                .await;
            let list_id = list["data"]["id"].as_str().unwrap();
            l.ok(
                Method::POST,
                &format!("/unified/crm/lists/{list_id}/items"),
                Some(json!({"item_ids": [c["id"]]})),
            )
            .await;
        }
        Kind::HubSpot => {
            let c = l.create_contact("List", "Member").await;
            let remote = c["remote_id"].as_str().unwrap().to_owned();
            l.hubspot().insert_list("Newsletter", &[remote]);
        }
    }
    let page = l.ok(Method::GET, "/unified/crm/lists", None).await;
    let list = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == "Newsletter")
        .unwrap_or_else(|| panic!("{p}: {page:#}"))
        .clone();
    let got = l
        .ok(
            Method::GET,
            &format!("/unified/crm/lists/{}", list["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(
        got["data"]["items"].as_array().map(Vec::len),
        Some(1),
        "{p}: {got:#}"
    );
}

macro_rules! shared {
    ($($name:ident => $suite:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                for kind in ALL {
                    let linked = Linked::start(kind).await;
                    $suite(&linked).await;
                }
            }
        )*
    };
}

/// Accounts: create, update (with `If-Match`), delete.
async fn account_writes(l: &Linked) {
    let p = l.kind.name();
    let created = l
        .ok(
            Method::POST,
            "/unified/crm/accounts",
            Some(json!({"name": "Initech"})),
        )
        .await["data"]
        .clone();
    assert_eq!(created["name"], "Initech", "{p}");
    let id = created["id"].as_str().unwrap();
    let etag = created["etag"].as_str().unwrap();
    let updated = l
        .ok(
            Method::PATCH,
            &format!("/unified/crm/accounts/{id}"),
            Some(json!({"name": "Initrode"})),
        )
        .await["data"]
        .clone();
    assert_eq!(updated["name"], "Initrode", "{p}");
    assert_ne!(updated["etag"].as_str().unwrap(), etag, "{p}");
    let stale = l
        .http
        .patch(format!("{}/unified/crm/accounts/{id}", l.server.base_url))
        .basic_auth(&l.key, Some(""))
        .header("x-account-id", &l.account)
        .header("If-Match", format!("\"{etag}\""))
        .json(&json!({"name": "Stale"}))
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), 412, "{p}");
    let got = l
        .ok(Method::GET, &format!("/unified/crm/accounts/{id}"), None)
        .await;
    assert_eq!(got["data"]["name"], "Initrode", "{p}");
    let (status, _) = l
        .call(Method::DELETE, &format!("/unified/crm/accounts/{id}"), None)
        .await;
    assert!(status == 200 || status == 204, "{p}: {status}");
    let (status, _) = l
        .call(Method::GET, &format!("/unified/crm/accounts/{id}"), None)
        .await;
    assert_eq!(status, 404, "{p}");
}

/// Lists: create, rename, add and remove items; all or nothing when an item is unknown.
async fn list_writes(l: &Linked) {
    let p = l.kind.name();
    let (status, body) = l
        .call(
            Method::POST,
            "/unified/crm/lists",
            Some(json!({"name": "VIPs", "type": {"value": "contacts"}})),
        )
        .await;
    if l.kind == Kind::Pipedrive {
        assert_eq!(status, 501, "{p}: {body}");
        return;
    }
    assert_eq!(status, 200, "{p}: {body}");
    let id = body["data"]["id"].as_str().unwrap().to_owned();
    let a = l.create_contact("Member", "One").await;
    let b = l.create_contact("Member", "Two").await;
    let added = l
        .ok(
            Method::POST,
            &format!("/unified/crm/lists/{id}/items"),
            Some(json!({"item_ids": [a["id"], b["id"]]})),
        )
        .await;
    assert_eq!(
        added["data"]["items"].as_array().map(Vec::len),
        Some(2),
        "{p}: {added:#}"
    );
    // An unknown record: refused, and nothing of the call stays.
    let c = l.create_contact("Member", "Three").await;
    let (status, body) = l
        .call(
            Method::POST,
            &format!("/unified/crm/lists/{id}/items"),
            Some(json!({"item_ids": [c["id"], "not-a-record"]})),
        )
        .await;
    assert_eq!(status, 422, "{p}: {body}");
    let got = l
        .ok(Method::GET, &format!("/unified/crm/lists/{id}"), None)
        .await;
    assert_eq!(
        got["data"]["items"].as_array().map(Vec::len),
        Some(2),
        "{p}: {got:#}"
    );
    let renamed = l
        .ok(
            Method::PATCH,
            &format!("/unified/crm/lists/{id}"),
            Some(json!({"name": "Very VIPs"})),
        )
        .await;
    assert_eq!(renamed["data"]["name"], "Very VIPs", "{p}");
    let item = a["id"].as_str().unwrap();
    let removed = l
        .ok(
            Method::DELETE,
            &format!("/unified/crm/lists/{id}/items/{item}"),
            None,
        )
        .await;
    assert_eq!(
        removed["data"]["items"].as_array().map(Vec::len),
        Some(1),
        "{p}: {removed:#}"
    );
    let (status, _) = l
        .call(
            Method::DELETE,
            &format!("/unified/crm/lists/{id}/items/{item}"),
            None,
        )
        .await;
    assert_eq!(status, 404, "{p}");
}

/// Custom field definitions: create a select field, use it, change its options.
async fn definition_writes(l: &Linked) {
    let p = l.kind.name();
    let (status, body) = l
        .call(
            Method::POST,
            "/unified/crm/custom_field_definitions/contacts",
            Some(json!({"name": "tier", "description": "Customer tier",
                        "type": {"value": "single_select"},
                        "options": [{"id": "gold", "value": "Gold"}, {"id": "silver", "value": "Silver"}]})),
        )
        .await;
    if l.kind == Kind::Pipedrive {
        assert_eq!(status, 501, "{p}: {body}");
        assert!(
            body["message"].as_str().unwrap().contains("pipedrive"),
            "{body}"
        );
        return;
    }
    assert_eq!(status, 200, "{p}: {body}");
    let def = body["data"].clone();
    assert_eq!(def["name"], "tier", "{p}");
    assert_eq!(
        def["options"].as_array().map(Vec::len),
        Some(2),
        "{p}: {def:#}"
    );
    let id = def["id"].as_str().unwrap();
    let listed = l
        .ok(
            Method::GET,
            "/unified/crm/custom_field_definitions/contacts",
            None,
        )
        .await;
    assert!(
        listed["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["id"] == def["id"]),
        "{p}"
    );
    let updated = l
        .ok(
            Method::PATCH,
            &format!("/unified/crm/custom_field_definitions/contacts/{id}"),
            Some(json!({"options": [{"id": "gold", "value": "Gold"}, {"id": "silver", "value": "Silver"},
                                    {"id": "bronze", "value": "Bronze"}]})),
        )
        .await;
    assert_eq!(
        updated["data"]["options"].as_array().map(Vec::len),
        Some(3),
        "{p}: {updated:#}"
    );
    // A record takes a value of the new field.
    let (status, body) = l
        .call(
            Method::POST,
            "/unified/crm/contacts",
            Some(json!({"last_name": "Tiered", "custom_fields": [{"id": id, "value": "bronze"}]})),
        )
        .await;
    assert_eq!(status, 200, "{p}: {body}");
}

shared! {
    shared_list_writes => list_writes,
    shared_definition_writes => definition_writes,
    shared_account_writes => account_writes,
    shared_contacts_round_trip => contacts_round_trip,
    shared_contacts_paging => contacts_paging,
    shared_validation => validation,
    shared_custom_fields => custom_fields,
    shared_accounts => accounts,
    shared_lists => lists,
}

// ---------------------------------------------------------------------------------------
// The connectors' own tests.
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn a_429_three_times_then_200_is_answered_200() {
    for kind in [Kind::HubSpot, Kind::Pipedrive] {
        let l = Linked::start(kind).await;
        let c = l.create_contact("Rate", "Limited").await;
        let id = c["id"].as_str().unwrap();
        let retry_after = if kind == Kind::Pipedrive {
            Some(1)
        } else {
            None
        };
        match kind {
            Kind::HubSpot => l.hubspot().fail_next(3, Failure::Status429 { retry_after }),
            _ => l
                .pipedrive()
                .fail_next(3, Failure::Status429 { retry_after }),
        }
        let (status, body) = l
            .call(Method::GET, &format!("/unified/crm/contacts/{id}"), None)
            .await;
        assert_eq!(status, 200, "{kind:?}: {body}");
        let calls = match kind {
            Kind::HubSpot => l.hubspot().calls(),
            _ => l.pipedrive().calls(),
        };
        let limited = calls.iter().filter(|c| c.status == 429).count();
        assert_eq!(limited, 3, "{kind:?}");
        // Writes are retried after a 429 too: the provider did nothing.
        match kind {
            Kind::HubSpot => l
                .hubspot()
                .fail_next(1, Failure::Status429 { retry_after: None }),
            _ => l.pipedrive().fail_next(
                1,
                Failure::Status429 {
                    retry_after: Some(1),
                },
            ),
        }
        l.ok(
            Method::PATCH,
            &format!("/unified/crm/contacts/{id}"),
            Some(json!({"last_name": "Again"})),
        )
        .await;
    }
}

#[tokio::test]
async fn past_the_retry_bound_a_429_is_answered_429_with_retry_after() {
    let l = Linked::start_with(
        Kind::Pipedrive,
        Creds::Token,
        &["--request-timeout-secs", "3"],
    )
    .await;
    let c = l.create_contact("Always", "Limited").await;
    l.pipedrive().fail_next(
        50,
        Failure::Status429 {
            retry_after: Some(30),
        },
    );
    let response = l
        .http
        .get(format!(
            "{}/unified/crm/contacts/{}",
            l.server.base_url,
            c["id"].as_str().unwrap()
        ))
        .basic_auth(&l.key, Some(""))
        .header("x-account-id", &l.account)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "30");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["provider_errors"][0]["status"], 429, "{body}");
    assert!(
        body["provider_errors"][0]["headers"]["retry-after"].is_string(),
        "{body}"
    );
}

#[tokio::test]
async fn a_provider_5xx_is_retried_for_reads_only_and_a_timeout_is_504() {
    let l = Linked::start_with(
        Kind::HubSpot,
        Creds::Token,
        &["--request-timeout-secs", "4"],
    )
    .await;
    let c = l.create_contact("Five", "Hundred").await;
    let id = c["id"].as_str().unwrap();
    l.hubspot().fail_next(1, Failure::Status(503));
    l.ok(Method::GET, &format!("/unified/crm/contacts/{id}"), None)
        .await;
    l.hubspot().fail_next(1, Failure::Status(503));
    let (status, body) = l
        .call(
            Method::PATCH,
            &format!("/unified/crm/contacts/{id}"),
            Some(json!({"last_name": "X"})),
        )
        .await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["provider_errors"][0]["status"], 503, "{body}");
    l.hubspot()
        .fail_next(5, Failure::Timeout(Duration::from_secs(10)));
    let (status, body) = l
        .call(Method::GET, &format!("/unified/crm/contacts/{id}"), None)
        .await;
    assert_eq!(status, 504, "{body}");
}

#[tokio::test]
async fn an_unreachable_provider_is_502() {
    let l = Linked::start(Kind::HubSpot).await;
    l.hubspot().shutdown();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (status, body) = l.call(Method::GET, "/unified/crm/contacts", None).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["statusCode"], 502);
}

#[tokio::test]
async fn the_fifth_call_of_one_account_waits_for_a_slot() {
    let l = Linked::start(Kind::Pipedrive).await;
    let c = l.create_contact("Busy", "Tenant").await;
    let path = format!("/unified/crm/contacts/{}", c["id"].as_str().unwrap());
    l.pipedrive().set_latency(Duration::from_millis(400));
    let calls = (0..8).map(|_| l.call(Method::GET, &path, None));
    for (status, _) in futures::future::join_all(calls).await {
        assert_eq!(status, 200);
    }
    assert_eq!(
        l.pipedrive().max_in_flight(),
        4,
        "four in flight, the rest waited"
    );
}

#[tokio::test]
async fn an_expired_oauth_token_is_renewed_once_and_stored() {
    for kind in [Kind::HubSpot, Kind::Pipedrive] {
        let l = Linked::start_with(
            kind,
            Creds::OAuth {
                lifetime: Duration::from_secs(3600),
            },
            &[],
        )
        .await;
        let c = l.create_contact("O", "Auth").await;
        let path = format!("/unified/crm/contacts/{}", c["id"].as_str().unwrap());
        // The provider says the token expired before its time: a 401, then one renewal.
        match kind {
            Kind::HubSpot => l.hubspot().expire_access_token(&l.secrets[0]),
            _ => l.pipedrive().expire_access_token(&l.secrets[0]),
        }
        let calls = (0..10).map(|_| l.call(Method::GET, &path, None));
        for (status, body) in futures::future::join_all(calls).await {
            assert_eq!(status, 200, "{kind:?}: {body}");
        }
        let refreshes = match kind {
            Kind::HubSpot => l.hubspot().refresh_count(),
            _ => l.pipedrive().refresh_count(),
        };
        assert_eq!(refreshes, 1, "{kind:?}");
        // The new tokens are stored: a restart does not renew again.
        let listed = admin(&l.database, &l.key_file, &["list-accounts"]);
        assert!(listed.contains("\"active\""), "{listed}");
    }
}

#[tokio::test]
async fn a_refused_renewal_marks_the_account_needs_reauth() {
    let l = Linked::start_with(
        Kind::HubSpot,
        Creds::OAuth {
            lifetime: Duration::from_secs(3600),
        },
        &[],
    )
    .await;
    l.hubspot().revoke_refresh_token(&l.secrets[1]);
    l.hubspot().expire_access_token(&l.secrets[0]);
    let (status, body) = l.call(Method::GET, "/unified/crm/contacts", None).await;
    assert_eq!(status, 401, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains(&l.account),
        "{body}"
    );
    let listed = admin(&l.database, &l.key_file, &["list-accounts"]);
    assert!(listed.contains("needs_reauth"), "{listed}");
    // Until new credentials come, the provider is not called again.
    let before = l.hubspot().calls().len();
    let (status, _) = l.call(Method::GET, "/unified/crm/contacts", None).await;
    assert_eq!(status, 401);
    assert_eq!(l.hubspot().calls().len(), before);
    // New credentials make it active again.
    let token = random_token("tok");
    l.hubspot().add_token(&token);
    let file = l.dir.path().join("new.json");
    std::fs::write(&file, json!({"access_token": token}).to_string()).unwrap();
    admin(
        &l.database,
        &l.key_file,
        &[
            "update-credentials",
            "--account",
            &l.account,
            "--credentials",
            file.to_str().unwrap(),
        ],
    );
    let (status, body) = l.call(Method::GET, "/unified/crm/contacts", None).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn a_429_during_renewal_is_retried() {
    let l = Linked::start_with(
        Kind::Pipedrive,
        Creds::OAuth {
            lifetime: Duration::from_secs(3600),
        },
        &[],
    )
    .await;
    l.pipedrive().expire_access_token(&l.secrets[0]);
    l.pipedrive().fail_next_matching(
        "/oauth/token",
        2,
        Failure::Status429 {
            retry_after: Some(1),
        },
    );
    let (status, body) = l.call(Method::GET, "/unified/crm/contacts", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(l.pipedrive().refresh_count(), 1);
}

#[tokio::test]
async fn two_accounts_of_one_provider_in_one_project_are_independent() {
    let l = Linked::start(Kind::HubSpot).await;
    let other = HubSpotDouble::start().await;
    let token = random_token("tok");
    other.add_token(&token);
    other.insert_contact(serde_json::Map::from_iter([
        ("firstname".to_owned(), json!("Other")),
        ("lastname".to_owned(), json!("Portal")),
    ]));
    let file = l.dir.path().join("other.json");
    std::fs::write(&file, json!({"access_token": token}).to_string()).unwrap();
    let second = id_in(&admin(
        &l.database,
        &l.key_file,
        &[
            "create-account",
            "--project",
            &l.project,
            "--name",
            "second",
            "--provider",
            "hubspot",
            "--credentials",
            file.to_str().unwrap(),
            "--base-url",
            &other.base_url(),
        ],
    ));
    l.create_contact("First", "Portal").await;
    let (_, first_page) = l.call(Method::GET, "/unified/crm/contacts", None).await;
    let (_, second_page) = l
        .call_as(&second, Method::GET, "/unified/crm/contacts", None)
        .await;
    let names = |page: &Value| -> Vec<String> {
        page["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["last_name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(names(&first_page), vec!["Portal".to_owned()]);
    assert_eq!(first_page["data"][0]["first_name"], "First");
    assert_eq!(second_page["data"][0]["first_name"], "Other");
    // One account's id is not found through the other.
    let id = first_page["data"][0]["id"].as_str().unwrap();
    let (status, _) = l
        .call_as(
            &second,
            Method::GET,
            &format!("/unified/crm/contacts/{id}"),
            None,
        )
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn credentials_never_show_anywhere_a_user_can_look() {
    for kind in [Kind::HubSpot, Kind::Pipedrive] {
        let l = Linked::start_with(
            kind,
            Creds::OAuth {
                lifetime: Duration::from_secs(3600),
            },
            &[],
        )
        .await;
        let mut answers = String::new();
        let c = l.create_contact("Sec", "Ret").await;
        let id = c["id"].as_str().unwrap().to_owned();
        for (method, path, body) in [
            (
                Method::GET,
                format!("/unified/crm/contacts/{id}?raw=true"),
                None,
            ),
            (
                Method::GET,
                "/unified/crm/contacts?raw=true&proxy[foo]=bar".to_owned(),
                None,
            ),
            (
                Method::PATCH,
                format!("/unified/crm/contacts/{id}?raw=true"),
                Some(json!({"last_name": "Kept"})),
            ),
            (
                Method::POST,
                "/unified/crm/contacts?raw=true".to_owned(),
                Some(json!({"last_name": "Bad", "emails": ["nope"]})),
            ),
            (Method::GET, "/unified/crm/contacts/nope".to_owned(), None),
            (
                Method::GET,
                "/unified/crm/accounts?raw=true".to_owned(),
                None,
            ),
            (
                Method::GET,
                "/unified/crm/custom_field_definitions/contacts?raw=true".to_owned(),
                None,
            ),
            (Method::GET, "/unified/crm/lists".to_owned(), None),
        ] {
            let (_, value) = l.call(method, &path, body).await;
            answers.push_str(&value.to_string());
        }
        // A renewal, and a failure of the provider.
        match kind {
            Kind::HubSpot => l.hubspot().expire_access_token(&l.secrets[0]),
            _ => l.pipedrive().expire_access_token(&l.secrets[0]),
        }
        let (_, value) = l
            .call(
                Method::GET,
                &format!("/unified/crm/contacts/{id}?raw=true"),
                None,
            )
            .await;
        answers.push_str(&value.to_string());
        match kind {
            Kind::HubSpot => l.hubspot().fail_next(1, Failure::Status(400)),
            _ => l.pipedrive().fail_next(1, Failure::Status(400)),
        }
        let (_, value) = l
            .call(
                Method::GET,
                &format!("/unified/crm/contacts/{id}?raw=true"),
                None,
            )
            .await;
        answers.push_str(&value.to_string());
        let visible = l.visible_text();
        let stored = l.stored_bytes();
        assert!(
            visible.contains("TRACE") || visible.contains("\"level\":\"TRACE\""),
            "trace logs are on"
        );
        for secret in &l.secrets {
            assert!(
                !answers.contains(secret.as_str()),
                "{kind:?}: a credential in an answer"
            );
            assert!(
                !visible.contains(secret.as_str()),
                "{kind:?}: a credential in the logs or admin output"
            );
            assert!(
                !stored.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{kind:?}: a credential in the database file"
            );
        }
        // The renewed tokens are not visible either.
        let renewed = String::from_utf8_lossy(&stored).to_string();
        assert!(
            !renewed.contains("access_token"),
            "{kind:?}: credentials stored in the clear"
        );
    }
}

#[tokio::test]
async fn the_server_refuses_to_start_without_the_key_when_remote_accounts_exist() {
    let l = Linked::start(Kind::HubSpot).await;
    let out = std::process::Command::new(binary())
        .args([
            "--database",
            &l.database,
            "serve",
            "--listen",
            "127.0.0.1:0",
        ])
        .env_remove("CRM_SECRET_KEY")
        .env_remove("CRM_SECRET_KEY_FILE")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("CRM_SECRET_KEY"), "{stderr}");
    // Another key is refused as well, and says so.
    let wrong = l.dir.path().join("wrong.key");
    let generated = std::process::Command::new(binary())
        .args(["admin", "generate-secret-key"])
        .output()
        .unwrap();
    std::fs::write(&wrong, &generated.stdout).unwrap();
    let out = std::process::Command::new(binary())
        .args([
            "--database",
            &l.database,
            "--secret-key-file",
            wrong.to_str().unwrap(),
            "serve",
            "--listen",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("sealed under secret key"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn rotating_the_secret_key_reseals_every_credential() {
    let l = Linked::start(Kind::Pipedrive).await;
    let new_key = l.dir.path().join("new.key");
    let generated = std::process::Command::new(binary())
        .args(["admin", "generate-secret-key"])
        .output()
        .unwrap();
    std::fs::write(&new_key, &generated.stdout).unwrap();
    let out = admin(
        &l.database,
        &l.key_file,
        &[
            "rotate-secret-key",
            "--new-key-file",
            new_key.to_str().unwrap(),
        ],
    );
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["accounts"],
        1,
        "{out}"
    );
    // The old key no longer opens them; the new one does.
    let old = run_admin(
        &l.database,
        &l.key_file,
        &[
            "update-credentials",
            "--account",
            &l.account,
            "--credentials",
            "/nonexistent",
        ],
    );
    assert!(!old.status.success());
    let server = ServerProcess::start(
        &l.database,
        false,
        "info",
        &["--secret-key-file", new_key.to_str().unwrap()],
    );
    let http = reqwest::Client::new();
    server.ready(&http).await;
    let status = http
        .get(format!("{}/unified/crm/contacts", server.base_url))
        .basic_auth(&l.key, Some(""))
        .header("x-account-id", &l.account)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_portal_s_required_property_is_refused_in_the_error_shape() {
    let l = Linked::start(Kind::HubSpot).await;
    l.hubspot().require_property("contacts", "jobtitle");
    let (status, body) = l
        .call(
            Method::POST,
            "/unified/crm/contacts",
            Some(json!({"first_name": "No", "last_name": "Title"})),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["message"].as_str().unwrap().starts_with("hubspot: "),
        "{body}"
    );
    assert_eq!(
        body["provider_errors"][0]["raw"]["errors"][0]["code"], "REQUIRED_PROPERTY",
        "{body}"
    );
    let created = l
        .ok(
            Method::POST,
            "/unified/crm/contacts",
            Some(json!({"first_name": "A", "last_name": "Title", "title": "CTO"})),
        )
        .await;
    assert_eq!(created["data"]["title"], "CTO");
}

#[tokio::test]
async fn an_idempotency_key_creates_one_record_at_the_provider() {
    for kind in [Kind::HubSpot, Kind::Pipedrive] {
        let l = Linked::start(kind).await;
        let send = || {
            l.http
                .post(format!("{}/unified/crm/contacts", l.server.base_url))
                .basic_auth(&l.key, Some(""))
                .header("x-account-id", &l.account)
                .header("Idempotency-Key", "create-once-1")
                .json(&json!({"first_name": "Once", "last_name": "Only"}))
                .send()
        };
        let first: Value = send().await.unwrap().json().await.unwrap();
        let second = send().await.unwrap();
        assert_eq!(
            second
                .headers()
                .get("idempotent-replayed")
                .map(|v| v.to_str().unwrap()),
            Some("true")
        );
        let second: Value = second.json().await.unwrap();
        assert_eq!(first["data"]["id"], second["data"]["id"], "{kind:?}");
        let creates = match kind {
            Kind::HubSpot => l.hubspot().calls(),
            _ => l.pipedrive().calls(),
        }
        .iter()
        .filter(|c| {
            c.method == "POST" && (c.path.ends_with("/contacts") || c.path.ends_with("/persons"))
        })
        .count();
        assert_eq!(creates, 1, "{kind:?}");
    }
}

#[tokio::test]
async fn a_page_costs_one_provider_call_and_proxy_parameters_reach_the_provider() {
    for kind in [Kind::HubSpot, Kind::Pipedrive] {
        let l = Linked::start(kind).await;
        for i in 0..5 {
            l.create_contact(&format!("C{i}"), "Cost").await;
        }
        let calls = || match kind {
            Kind::HubSpot => l.hubspot().calls(),
            _ => l.pipedrive().calls(),
        };
        // The definitions are warm after the creates: a page is one call.
        let before = calls().len();
        let page = l
            .ok(
                Method::GET,
                "/unified/crm/contacts?page_size=2&proxy[team]=blue",
                None,
            )
            .await;
        let next = page["next"].as_str().unwrap().to_owned();
        let made = calls();
        assert_eq!(made.len(), before + 1, "{kind:?}: {:#?}", &made[before..]);
        assert!(
            made.last().unwrap().query.contains("team=blue"),
            "{kind:?}: {:?}",
            made.last()
        );
        l.ok(
            Method::GET,
            &format!("/unified/crm/contacts?page_size=2&next={next}"),
            None,
        )
        .await;
        assert_eq!(calls().len(), before + 2, "{kind:?}");
    }
}

#[tokio::test]
async fn hubspot_incremental_reads_pass_the_search_cap_and_show_deletions() {
    let l = Linked::start(Kind::HubSpot).await;
    let before = chrono::Utc::now() - chrono::Duration::seconds(5);
    for i in 0..30 {
        l.hubspot().insert_contact(serde_json::Map::from_iter([
            ("firstname".to_owned(), json!(format!("N{i}"))),
            ("lastname".to_owned(), json!("Many")),
        ]));
    }
    let gone = l.create_contact("Gone", "Soon").await;
    l.call(
        Method::DELETE,
        &format!("/unified/crm/contacts/{}", gone["id"].as_str().unwrap()),
        None,
    )
    .await;
    let mut seen = Vec::new();
    let mut deleted = Vec::new();
    let mut next: Option<String> = None;
    let after = before.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    for _ in 0..20 {
        let mut path = format!("/unified/crm/contacts?page_size=10&filter[updated_after]={after}");
        if let Some(n) = &next {
            path.push_str(&format!("&next={n}"));
        }
        let page = l.ok(Method::GET, &path, None).await;
        for c in page["data"].as_array().unwrap() {
            if c["remote_deleted"] == true {
                deleted.push(c["id"].clone());
            } else {
                seen.push(c["id"].clone());
            }
        }
        match page["next"].as_str() {
            Some(n) => next = Some(n.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 30);
    assert_eq!(deleted, vec![gone["id"].clone()]);
    // No search was asked for a position past the cap: every search restarts from an id.
    for call in l
        .hubspot()
        .calls()
        .iter()
        .filter(|c| c.path.ends_with("/search"))
    {
        assert!(!call.body.contains("\"after\""), "{}", call.body);
    }
}

#[tokio::test]
async fn fifty_requests_on_three_replicas_under_an_expired_token_renew_it_once() {
    let database = crm_testkit::PgCluster::shared().create_database().await;
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("secret.key");
    let generated = std::process::Command::new(binary())
        .args(["admin", "generate-secret-key"])
        .output()
        .unwrap();
    std::fs::write(&key_file, &generated.stdout).unwrap();
    let project = id_in(&admin(
        &database,
        &key_file,
        &["create-project", "--name", "storm"],
    ));
    let created = admin(&database, &key_file, &["create-key", "--project", &project]);
    let key = created
        .lines()
        .find_map(|l| l.strip_prefix("API key: "))
        .unwrap()
        .trim()
        .to_owned();
    let double = HubSpotDouble::start().await;
    let hubspot = Some(double.clone());
    let mut secrets = Vec::new();
    // A token that has already expired: every request needs a renewal before its call.
    let body = link_credentials(
        Kind::HubSpot,
        &hubspot,
        &None,
        &Creds::OAuth {
            lifetime: Duration::ZERO,
        },
        &mut secrets,
    );
    let file = dir.path().join("credentials.json");
    std::fs::write(&file, body.to_string()).unwrap();
    let account = id_in(&admin(
        &database,
        &key_file,
        &[
            "create-account",
            "--project",
            &project,
            "--name",
            "storm",
            "--provider",
            "hubspot",
            "--credentials",
            file.to_str().unwrap(),
            "--base-url",
            &double.base_url(),
        ],
    ));
    let key_arg = key_file.to_str().unwrap().to_owned();
    let replicas: Vec<ServerProcess> = (0..3)
        .map(|_| ServerProcess::start(&database, false, "info", &["--secret-key-file", &key_arg]))
        .collect();
    let http = reqwest::Client::builder()
        .timeout(PATIENCE)
        .build()
        .unwrap();
    for replica in &replicas {
        replica.ready(&http).await;
    }
    // The renewal is slow, so the requests pile up behind it.
    double.set_latency(Duration::from_millis(50));
    let requests = (0..50).map(|i| {
        let url = format!("{}/unified/crm/contacts", replicas[i % 3].base_url);
        let request = http
            .get(url)
            .basic_auth(&key, Some(""))
            .header("x-account-id", &account);
        async move { request.send().await.unwrap().status().as_u16() }
    });
    let statuses = futures::future::join_all(requests).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(
        double.refresh_count(),
        1,
        "one renewal for every replica and request"
    );
    let token_calls = double
        .calls()
        .iter()
        .filter(|c| c.path.contains("/oauth/"))
        .count();
    assert_eq!(token_calls, 1);
}

#[tokio::test]
async fn a_base_url_with_credentials_in_it_is_refused_without_repeating_them() {
    let l = Linked::start(Kind::HubSpot).await;
    let file = l.dir.path().join("creds.json");
    std::fs::write(&file, json!({"access_token": "tok-base-url"}).to_string()).unwrap();
    let out = run_admin(
        &l.database,
        &l.key_file,
        &[
            "create-account",
            "--project",
            &l.project,
            "--name",
            "x",
            "--provider",
            "hubspot",
            "--credentials",
            file.to_str().unwrap(),
            "--base-url",
            "https://user:hunter2@example.com",
        ],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--base-url"), "{stderr}");
    assert!(
        !stderr.contains("hunter2") && !stderr.contains("tok-base-url"),
        "{stderr}"
    );
}
