//! Several replicas of the real binary on one PostgreSQL database: no replica keeps state
//! another would need, so any request may go to any replica. And when PostgreSQL stops,
//! every replica answers 503 until it is back, then recovers by itself.
//!
//! These run on PostgreSQL whatever `CRM_TEST_STORE` says: several processes sharing one
//! database is what the PostgreSQL store is for.

mod server_process;

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
        Self::start_with(database, n, &[]).await
    }

    /// As [`Replicas::start`], with `extra` arguments to `serve`.
    async fn start_with(database: String, n: usize, extra: &[&str]) -> Replicas {
        let extra: Vec<String> = extra.iter().map(|s| (*s).to_owned()).collect();
        let starting: Vec<_> = (0..n)
            .map(|_| {
                let database = database.clone();
                let extra = extra.clone();
                std::thread::spawn(move || {
                    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
                    ServerProcess::start(&database, false, "warn,crm_server=info", &extra)
                })
            })
            .collect();
        let servers: Vec<ServerProcess> = starting.into_iter().map(|t| t.join().unwrap()).collect();
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
            &[
                "create-account",
                "--project",
                &project,
                "--name",
                "replicas",
            ],
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

    fn request(
        &self,
        method: reqwest::Method,
        replica: usize,
        path: &str,
    ) -> reqwest::RequestBuilder {
        self.http
            .request(method, self.url(replica, path))
            .bearer_auth(&self.key)
            .header("x-account-id", &self.account)
    }

    /// The JSON body of a GET of `path` on `replica`.
    async fn get(&self, replica: usize, path: &str) -> Value {
        self.request(reqwest::Method::GET, replica, path)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
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
                    let read: Value = replicas.get(replica, &path).await;
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
    let last: Value = replicas.get(2, &path).await;
    assert_eq!(
        last["data"]["title"],
        (writers * increments).to_string(),
        "lost updates"
    );
    println!(
        "replicas: {writers} writers x {increments} increments, {conflicts} conflicts retried, 0 lost"
    );

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
        let read: Value = replicas.get(round + 1, &path).await;
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
    let served = page_through(&replicas, "", async |_| {}).await;
    let total: usize = served.values().sum();
    assert_eq!(total, served.len(), "a record was served twice");
    assert_eq!(
        total,
        1 + 1 + 23,
        "the counter, the idempotent create and the paged ones"
    );

    // A revoked key is refused by every replica within a second.
    let keys: Value = serde_json::from_str(&admin(&replicas.database, &["list-keys"])).unwrap();
    let key_id = keys
        .as_array()
        .unwrap()
        .iter()
        .find(|k| {
            replicas
                .key
                .starts_with(&format!("crm_{}_", k["id"].as_str().unwrap()))
        })
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
        assert!(
            body["message"].as_str().unwrap().contains("database"),
            "{body}"
        );
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
            assert!(
                Instant::now() < deadline,
                "replica {replica} did not recover"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        replicas.servers[replica].ready(&replicas.http).await;
    }
    // Nothing the replicas logged names the password of the database.
    for server in &replicas.servers {
        let logs = serde_json::to_string(&server.logs()).unwrap();
        assert!(
            !logs.contains(cluster.password()),
            "a log line holds the password"
        );
    }
}

/// Pages through a listing, a page from each replica in turn, calling `during` before each
/// page; returns how often each id was served.
async fn page_through(
    replicas: &Replicas,
    filter: &str,
    mut during: impl AsyncFnMut(usize),
) -> std::collections::HashMap<String, usize> {
    let mut served = std::collections::HashMap::new();
    let mut next: Option<String> = None;
    for page in 0.. {
        during(page).await;
        let mut path = format!("/unified/crm/contacts?page_size=5{filter}");
        if let Some(cursor) = &next {
            path.push_str(&format!("&next={cursor}"));
        }
        let body: Value = replicas.get(page, &path).await;
        for record in body["data"].as_array().unwrap() {
            *served
                .entry(record["id"].as_str().unwrap().to_owned())
                .or_default() += 1;
        }
        next = body["next"].as_str().map(str::to_owned);
        if next.is_none() {
            return served;
        }
        assert!(page < 200, "the listing never ended");
    }
    unreachable!()
}

/// The paging guarantee on PostgreSQL, where commit order differs from the order of
/// transaction ids: a writer holds its transaction open while later writes commit, and
/// the listing, paged across replicas, still serves every record that existed once and
/// every record written meanwhile at least once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paging_sees_every_record_while_a_slow_writer_commits_late() {
    let cluster = crm_testkit::PgCluster::shared();
    let database = cluster.create_database().await;
    let replicas = Replicas::start(database.clone(), 2).await;
    let since = chrono::Utc::now() - chrono::Duration::seconds(1);
    let mut before = Vec::new();
    for i in 0..30 {
        let contact = replicas.create_contact(i, &format!("Before {i}")).await;
        before.push(contact["id"].as_str().unwrap().to_owned());
    }
    let db = crm_server::Database::connect(
        &database.parse().unwrap(),
        crm_server::PoolSettings::default(),
    )
    .await
    .unwrap();
    let filters = [
        String::new(),
        format!(
            "&filter[updated_after]={}",
            since
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
                .replace('+', "%2B")
        ),
    ];
    for (round, filter) in filters.iter().enumerate() {
        let held_id = format!("held-{round}");
        let mut held: Option<sqlx::Transaction<'static, sqlx::Any>> = None;
        let mut written = vec![held_id.clone()];
        let mut updated = Vec::new();
        let served = page_through(&replicas, filter, async |page| match page {
            1 => {
                // The slow writer: its transaction id comes before the writes below.
                let mut tx = db.pool().begin().await.unwrap();
                sqlx::query(
                    "INSERT INTO records (linked_account_id, kind, id, body, created_at, updated_at, created_pos, updated_pos)
                     SELECT $1, 'contacts', $2, $3, $4, $4,
                            pg_current_xact_id()::text::bigint, pg_current_xact_id()::text::bigint",
                )
                .bind(&replicas.account)
                .bind(&held_id)
                .bind(json!({ "id": held_id, "last_name": "Held" }).to_string())
                .bind(crm_server::db::timestamp(chrono::Utc::now()))
                .execute(&mut *tx)
                .await
                .unwrap();
                held = Some(tx);
                // Later writes that commit first: new records, and updates of a record
                // already served and of one not served yet.
                for i in 0..3 {
                    let c = replicas.create_contact(i, &format!("During {round} {i}")).await;
                    written.push(c["id"].as_str().unwrap().to_owned());
                }
                for id in [&before[0], &before[29]] {
                    let response = replicas
                        .request(reqwest::Method::PATCH, 1, &format!("/unified/crm/contacts/{id}"))
                        .json(&json!({ "title": format!("round {round}") }))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(response.status(), 200);
                    updated.push(id.clone());
                }
            }
            // Late: past the point where the records written after it would all have been
            // served, so a listing that passed over the slow writer would have ended.
            9 => {
                held.take().unwrap().commit().await.unwrap();
            }
            _ => {}
        })
        .await;
        for id in &before {
            let times = served.get(id).copied().unwrap_or(0);
            if updated.contains(id) {
                assert!(
                    times >= 1,
                    "{id}, updated while paging, was never served ({filter})"
                );
            } else {
                assert_eq!(times, 1, "{id} served {times} times ({filter})");
            }
        }
        for id in &written {
            assert!(
                served.get(id).copied().unwrap_or(0) >= 1,
                "{id}, written while paging, was never served ({filter})"
            );
        }
        println!(
            "paging guarantee ({}): {} served, {} written while paging, all seen",
            if filter.is_empty() {
                "plain"
            } else {
                "incremental"
            },
            served.values().sum::<usize>(),
            written.len() + updated.len()
        );
    }
    db.close().await;
}

/// The nginx configuration the README shows, run as written with this test's ports: three
/// replicas behind it serve every request, and each serves some of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_balances_three_replicas() {
    let nginx = ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("nginx is installed (Debian's nginx-light package)");
    let cluster = crm_testkit::PgCluster::shared();
    let replicas = Replicas::start(cluster.create_database().await, 3).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut conf = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/nginx.conf"
    ))
    .unwrap();
    for (i, server) in replicas.servers.iter().enumerate() {
        let documented = format!("127.0.0.1:808{}", i + 1);
        assert!(
            conf.contains(&documented),
            "the README's config names {documented}"
        );
        conf = conf.replace(&documented, &server.addr);
    }
    conf = conf.replace(
        "listen 127.0.0.1:8080;",
        &format!("listen 127.0.0.1:{port};"),
    );
    let prefix = tempfile::tempdir().unwrap();
    let conf_path = prefix.path().join("nginx.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let pid = prefix.path().join("nginx.pid");
    let mut child = std::process::Command::new(nginx)
        .arg("-p")
        .arg(prefix.path())
        .arg("-c")
        .arg(&conf_path)
        .args(["-e", "stderr", "-g"])
        .arg(format!("daemon off; pid {};", pid.display()))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("nginx starts");
    // Stopped with SIGTERM, so the master stops its workers: a SIGKILL would orphan them.
    struct Stop(std::process::Child);
    impl Drop for Stop {
        fn drop(&mut self) {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &self.0.id().to_string()])
                .status();
            let _ = self.0.wait();
        }
    }
    let deadline = Instant::now() + PATIENCE;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
            panic!("nginx exited with {status}: {err}");
        }
        assert!(Instant::now() < deadline, "nginx did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    let _nginx = Stop(child);

    let base = format!("http://127.0.0.1:{port}");
    let before: Vec<usize> = replicas.servers.iter().map(answered).collect();
    let mut ids = Vec::new();
    for i in 0..30 {
        let created: Value = replicas
            .http
            .post(format!("{base}/unified/crm/contacts"))
            .bearer_auth(&replicas.key)
            .header("x-account-id", &replicas.account)
            .json(&json!({ "last_name": format!("Balanced {i}") }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = created["data"]["id"].as_str().unwrap().to_owned();
        let read = replicas
            .http
            .get(format!("{base}/unified/crm/contacts/{id}"))
            .bearer_auth(&replicas.key)
            .header("x-account-id", &replicas.account)
            .send()
            .await
            .unwrap();
        assert_eq!(read.status(), 200);
        ids.push(id);
    }
    // The request logs arrive a moment after the answers.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let served: Vec<usize> = replicas
        .servers
        .iter()
        .zip(before)
        .map(|(s, b)| answered(s) - b)
        .collect();
    assert_eq!(served.iter().sum::<usize>(), 60, "{served:?}");
    assert!(
        served.iter().all(|n| *n > 0),
        "a replica served nothing: {served:?}"
    );
    println!("nginx: 60 requests over 3 replicas: {served:?}");
}

/// How many requests a replica has answered, from its request log.
fn answered(server: &ServerProcess) -> usize {
    server
        .logs()
        .iter()
        .filter(|e| e["fields"]["message"] == "request answered" && e["span"]["route"] != "/readyz")
        .count()
}

/// The per-key rate limit holds across replicas: hammered through three of them for a
/// minute, together they admit what one server would (its burst and a minute of refill),
/// give or take 10%.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_limit_holds_across_replicas() {
    const LIMIT: usize = 120;
    const RUN: Duration = Duration::from_secs(60);
    let cluster = crm_testkit::PgCluster::shared();
    let replicas = Arc::new(
        Replicas::start_with(
            cluster.create_database().await,
            3,
            &["--rate-limit-per-minute", &LIMIT.to_string()],
        )
        .await,
    );
    let started = Instant::now();
    let mut callers = Vec::new();
    for caller in 0..6 {
        let replicas = Arc::clone(&replicas);
        callers.push(tokio::spawn(async move {
            let (mut admitted, mut refused) = (0usize, 0usize);
            while started.elapsed() < RUN {
                let response = replicas
                    .request(
                        reqwest::Method::GET,
                        caller,
                        "/unified/crm/contacts?page_size=1",
                    )
                    .send()
                    .await
                    .unwrap();
                match response.status().as_u16() {
                    200 => admitted += 1,
                    429 => {
                        assert!(response.headers().contains_key("retry-after"));
                        refused += 1;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    other => panic!("answered {other}"),
                }
            }
            (admitted, refused)
        }));
    }
    let (mut admitted, mut refused) = (0, 0);
    for caller in callers {
        let (a, r) = caller.await.unwrap();
        admitted += a;
        refused += r;
    }
    let seconds = started.elapsed().as_secs_f64();
    // One server admits its burst, then the refill over the run.
    let one_server = LIMIT as f64 * (1.0 + seconds / 60.0);
    println!(
        "rate limit across 3 replicas: {admitted} admitted, {refused} refused in {seconds:.0} s; one server would admit {one_server:.0}"
    );
    assert!(
        refused > 0,
        "the limit was never reached: the test did not test"
    );
    assert!(
        (admitted as f64) <= one_server * 1.1,
        "{admitted} admitted, more than 10% over {one_server:.0}"
    );
    assert!(
        (admitted as f64) >= one_server * 0.9,
        "{admitted} admitted, far under {one_server:.0}"
    );
}

/// A database URL may carry a password: a malformed URL, and a password PostgreSQL
/// refuses, both fail the start with a message that never repeats it.
#[tokio::test]
async fn a_database_password_never_shows_in_errors() {
    let cluster = crm_testkit::PgCluster::shared();
    let refused = format!(
        "postgres://crm:wrong-secret-4711@127.0.0.1:{}/postgres",
        cluster.port()
    );
    for url in ["postgres://crm:wrong-secret-4711@/", refused.as_str()] {
        let out = std::process::Command::new(binary())
            .args([
                "--database",
                url,
                "--log-level",
                "trace",
                "admin",
                "list-projects",
            ])
            .env("RUST_BACKTRACE", "0")
            .output()
            .unwrap();
        assert!(!out.status.success(), "{url} was accepted");
        let shown = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(shown.contains("database"), "{shown}");
        assert!(
            !shown.contains("wrong-secret-4711"),
            "the password shows: {shown}"
        );
    }
}
