//! Several replicas of the real binary on one PostgreSQL database: no replica keeps state
//! another would need, so any request may go to any replica. And when PostgreSQL stops,
//! every replica answers 503 until it is back, then recovers by itself.
//!
//! These run on PostgreSQL whatever `CRM_TEST_STORE` says: several processes sharing one
//! database is what the PostgreSQL store is for.

mod server_process;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use server_process::{PATIENCE, ServerProcess, binary};

/// The replicas of a test, and the credentials they serve.
struct Replicas {
    servers: Vec<ServerProcess>,
    database: String,
    key: String,
    account: String,
    http: reqwest::Client,
}

fn admin(database: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(binary())
        .args(["--database", database, "--log-level", "warn", "admin"])
        .args(args)
        .output()
        .expect("admin runs");
    assert!(
        out.status.success(),
        "admin {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn id_in(json_text: &str) -> String {
    serde_json::from_str::<Value>(json_text).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

impl Replicas {
    /// Starts `n` replicas at once on a new, empty database, then links an account.
    async fn start(database: String, n: usize) -> Replicas {
        let starting: Vec<_> = (0..n)
            .map(|_| {
                let database = database.clone();
                std::thread::spawn(move || {
                    ServerProcess::start(&database, false, "warn,crm_server=info", &[])
                })
            })
            .collect();
        let servers: Vec<ServerProcess> =
            starting.into_iter().map(|t| t.join().unwrap()).collect();
        let http = reqwest::Client::builder()
            .timeout(PATIENCE)
            .build()
            .unwrap();
        for server in &servers {
            server.ready(&http).await;
        }
        let project = id_in(&admin(&database, &["create-project", "--name", "replicas"]));
        let created = admin(&database, &["create-key", "--project", &project]);
        let key = created
            .lines()
            .find_map(|l| l.strip_prefix("API key: "))
            .unwrap()
            .trim()
            .to_owned();
        let account = id_in(&admin(
            &database,
            &["create-account", "--project", &project, "--name", "replicas"],
        ));
        Replicas {
            servers,
            database,
            key,
            account,
            http,
        }
    }

    fn url(&self, replica: usize, path: &str) -> String {
        format!(
            "{}{path}",
            self.servers[replica % self.servers.len()].base_url
        )
    }

    fn request(&self, method: reqwest::Method, replica: usize, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, self.url(replica, path))
            .bearer_auth(&self.key)
            .header("x-account-id", &self.account)
    }

    async fn create_contact(&self, replica: usize, last_name: &str) -> Value {
        let response = self
            .request(reqwest::Method::POST, replica, "/unified/crm/contacts")
            .json(&json!({ "last_name": last_name, "title": "0" }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.json::<Value>().await.unwrap()["data"].clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_on_one_database_serve_as_one() {
    let cluster = crm_testkit::PgCluster::shared();
    let database = cluster.create_database().await;
    let replicas = Replicas::start(database.clone(), 3).await;

    // Started at once on an empty database: every migration ran exactly once, and the
    // database was bootstrapped once.
    let db = crm_server::Database::connect(
        &database.parse().unwrap(),
        crm_server::PoolSettings::default(),
    )
    .await
    .unwrap();
    let versions: Vec<i64> = sqlx::query_scalar("SELECT version FROM _sqlx_migrations")
        .fetch_all(db.pool())
        .await
        .unwrap();
    let expected = db.migrator().iter().count();
    assert_eq!(versions.len(), expected, "{versions:?}");
    let projects: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM projects WHERE name = 'default'")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(projects, 1, "bootstrapped once");

    // Read-modify-write with If-Match from writers spread across the replicas: every
    // increment lands once, none is lost.
    let counter = replicas.create_contact(0, "Counter").await;
    let id = counter["id"].as_str().unwrap().to_owned();
    let replicas = Arc::new(replicas);
    let writers = 6;
    let increments = 5;
    let mut tasks = Vec::new();
    for w in 0..writers {
        let replicas = Arc::clone(&replicas);
        let id = id.clone();
        tasks.push(tokio::spawn(async move {
            let mut conflicts = 0;
            for i in 0..increments {
                loop {
                    let replica = w + i;
                    let path = format!("/unified/crm/contacts/{id}");
                    let read: Value = replicas
                        .request(reqwest::Method::GET, replica, &path)
                        .send()
                        .await
                        .unwrap()
                        .json()
                        .await
                        .unwrap();
                    let n: u64 = read["data"]["title"].as_str().unwrap().parse().unwrap();
                    let etag = read["data"]["etag"].as_str().unwrap().to_owned();
                    let write = replicas
                        .request(reqwest::Method::PATCH, replica + 1, &path)
                        .header("if-match", format!("\"{etag}\""))
                        .json(&json!({ "title": (n + 1).to_string() }))
                        .send()
                        .await
                        .unwrap();
                    match write.status().as_u16() {
                        200 => break,
                        412 => conflicts += 1,
                        other => panic!("update answered {other}"),
                    }
                }
            }
            conflicts
        }));
    }
    let mut conflicts = 0;
    for task in tasks {
        conflicts += task.await.unwrap();
    }
    let path = format!("/unified/crm/contacts/{id}");
    let last: Value = replicas
        .request(reqwest::Method::GET, 2, &path)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        last["data"]["title"],
        (writers * increments).to_string(),
        "lost updates"
    );
    println!("replicas: {writers} writers x {increments} increments, {conflicts} conflicts retried, 0 lost");

    // A write on one replica is what the next read on another sees.
    for round in 0..10 {
        let written: Value = replicas
            .request(reqwest::Method::PATCH, round, &path)
            .json(&json!({ "first_name": format!("round {round}") }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let read: Value = replicas
            .request(reqwest::Method::GET, round + 1, &path)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(read["data"]["etag"], written["data"]["etag"]);
    }

    // An Idempotency-Key retried on another replica replays the first answer.
    let post = |replica: usize| {
        replicas
            .request(reqwest::Method::POST, replica, "/unified/crm/contacts")
            .header("idempotency-key", "replicas-1")
            .json(&json!({ "last_name": "Once" }))
    };
    let first = post(0).send().await.unwrap();
    let first_id = first.json::<Value>().await.unwrap()["data"]["id"].clone();
    for replica in 1..3 {
        let again = post(replica).send().await.unwrap();
        assert_eq!(again.headers()["idempotent-replayed"], "true");
        assert_eq!(again.json::<Value>().await.unwrap()["data"]["id"], first_id);
    }

    // A listing that goes to another replica for every page sees every record once.
    for i in 0..23 {
        replicas.create_contact(i, &format!("Paged {i}")).await;
    }
    let mut seen = HashSet::new();
    let mut total = 0;
    let mut next: Option<String> = None;
    for page in 0.. {
        let mut path = "/unified/crm/contacts?page_size=4".to_owned();
        if let Some(cursor) = &next {
            path.push_str(&format!("&next={cursor}"));
        }
        let body: Value = replicas
            .request(reqwest::Method::GET, page, &path)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for record in body["data"].as_array().unwrap() {
            total += 1;
            seen.insert(record["id"].as_str().unwrap().to_owned());
        }
        next = body["next"].as_str().map(str::to_owned);
        if next.is_none() {
            break;
        }
    }
    assert_eq!(total, seen.len(), "a record was served twice");
    assert_eq!(total, 1 + 1 + 23, "the counter, the idempotent create and the paged ones");

    // A revoked key is refused by every replica within a second.
    let keys: Value =
        serde_json::from_str(&admin(&replicas.database, &["list-keys"])).unwrap();
    let key_id = keys
        .as_array()
        .unwrap()
        .iter()
        .find(|k| replicas.key.starts_with(&format!("crm_{}_", k["id"].as_str().unwrap())))
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    admin(&replicas.database, &["revoke-key", "--key-id", &key_id]);
    let revoked_at = Instant::now();
    for replica in 0..3 {
        loop {
            let status = replicas
                .request(reqwest::Method::GET, replica, "/unified/crm/contacts")
                .send()
                .await
                .unwrap()
                .status();
            if status == 401 {
                break;
            }
            assert!(
                revoked_at.elapsed() < Duration::from_secs(1),
                "replica {replica} still serves a revoked key"
            );
        }
    }
    db.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_answer_503_while_postgresql_is_down_and_recover_by_themselves() {
    let cluster = crm_testkit::PgCluster::start_new();
    let database = cluster.create_database().await;
    let replicas = Replicas::start(database, 2).await;
    let contact = replicas.create_contact(0, "Before").await;
    let path = format!("/unified/crm/contacts/{}", contact["id"].as_str().unwrap());

    cluster.stop();
    for replica in 0..2 {
        let response = replicas
            .request(reqwest::Method::GET, replica, &path)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 503);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["statusCode"], 503);
        assert!(body["message"].as_str().unwrap().contains("database"), "{body}");
        let ready = replicas
            .http
            .get(replicas.url(replica, "/readyz"))
            .send()
            .await
            .unwrap();
        assert_eq!(ready.status(), 503);
    }

    cluster.restart();
    for replica in 0..2 {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let response = replicas
                .request(reqwest::Method::GET, replica, &path)
                .send()
                .await
                .unwrap();
            if response.status() == 200 {
                let body: Value = response.json().await.unwrap();
                assert_eq!(body["data"]["last_name"], "Before");
                break;
            }
            assert!(Instant::now() < deadline, "replica {replica} did not recover");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        replicas.servers[replica].ready(&replicas.http).await;
    }
    // Nothing the replicas logged names the password of the database.
    for server in &replicas.servers {
        let logs = serde_json::to_string(&server.logs()).unwrap();
        assert!(!logs.contains(cluster.password()), "a log line holds the password");
    }
}
