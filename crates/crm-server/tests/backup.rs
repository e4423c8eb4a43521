//! Backups, as the README gives them. SQLite: `admin backup --to` while the real server
//! takes writes; the copy opens, passes `PRAGMA integrity_check`, is one moment of the store
//! (each writer's contacts in it are a prefix of what the writer wrote), holds every write
//! acknowledged before the backup started, and a server started on it serves them.
//! PostgreSQL: `admin backup` refuses it, naming pg_dump; `pg_dump -Fc`, then `createdb` and
//! `pg_restore` on a second, fresh PostgreSQL server, and a server started there serves
//! every record, in order, and pages new writes after them.

mod server_process;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crm_testkit::{PgCluster, pg_program};
use serde_json::{Value, json};
use server_process::{PATIENCE, ServerProcess, binary};
use sqlx::Connection;
use tokio::sync::Mutex;

/// Contacts put in the store before the backup, so that copying it takes a while.
const SEEDED: usize = 20_000;
const WRITERS: usize = 4;

struct Client {
    http: reqwest::Client,
    base: String,
    key: String,
    account: String,
}

impl Client {
    fn new(server: &ServerProcess, key: &str, account: &str) -> Client {
        Client {
            http: reqwest::Client::builder()
                .timeout(PATIENCE)
                .build()
                .unwrap(),
            base: server.base_url.clone(),
            key: key.to_owned(),
            account: account.to_owned(),
        }
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .basic_auth(&self.key, Some(""))
            .header("x-account-id", &self.account)
    }

    /// Creates a contact named `tag`; its id.
    async fn create(&self, tag: &str) -> String {
        let response = self
            .request(reqwest::Method::POST, "/unified/crm/contacts")
            .json(&json!({"first_name": tag, "last_name": "Backup"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let answer: Value = response.json().await.unwrap();
        answer["data"]["id"].as_str().unwrap().to_owned()
    }

    /// Every contact, following `next` to the end: (id, first_name) in listing order.
    async fn all_contacts(&self) -> Vec<(String, String)> {
        let mut all = Vec::new();
        let mut next: Option<String> = None;
        let deadline = Instant::now() + PATIENCE;
        loop {
            assert!(
                Instant::now() < deadline,
                "the listing did not end: {} contacts served so far",
                all.len()
            );
            let mut request = self
                .request(reqwest::Method::GET, "/unified/crm/contacts")
                .query(&[("page_size", "100")]);
            if let Some(cursor) = &next {
                request = request.query(&[("next", cursor)]);
            }
            let page: Value = request.send().await.unwrap().json().await.unwrap();
            for contact in page["data"].as_array().unwrap() {
                all.push((
                    contact["id"].as_str().unwrap().to_owned(),
                    contact["first_name"].as_str().unwrap().to_owned(),
                ));
            }
            match page["next"].as_str() {
                Some(cursor) => next = Some(cursor.to_owned()),
                None => return all,
            }
        }
    }
}

/// Runs `crm-server --database <database> <args>` to the end.
fn run_binary(database: &str, args: &[&str]) -> Output {
    Command::new(binary())
        .arg("--database")
        .arg(database)
        .args(args)
        .output()
        .expect("run crm-server")
}

/// What one writer wrote: the id of each of its contacts, in order, once acknowledged.
type Ledger = Arc<Mutex<Vec<Vec<String>>>>;

/// Creates contacts `w<writer>-<n>`, one at a time, until `stop`.
async fn writer(
    client: Arc<Client>,
    ledger: Ledger,
    w: usize,
    stop: Arc<AtomicBool>,
    backing_up: Arc<AtomicBool>,
    during: Arc<AtomicUsize>,
) {
    let mut n = 0;
    while !stop.load(Ordering::SeqCst) {
        let id = client.create(&format!("w{w}-{n}")).await;
        if backing_up.load(Ordering::SeqCst) {
            during.fetch_add(1, Ordering::SeqCst);
        }
        ledger.lock().await[w].push(id);
        n += 1;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_backup_taken_under_writes_holds_every_acknowledged_write() {
    let dir = tempfile::Builder::new()
        .prefix("crm-backup-")
        .tempdir()
        .unwrap();
    let store = dir.path().join("crm.db");
    let store = store.to_str().unwrap();
    let copy = dir.path().join("copy.db");
    let copy = copy.to_str().unwrap();
    let server = ServerProcess::start(store, true, "warn,crm_server=info", &[]);
    let (key, account) = server.bootstrap.clone().unwrap();
    let client = Arc::new(Client::new(&server, &key, &account));
    server.ready(&client.http).await;

    // A store of some size, imported while the server runs.
    let seed = dir.path().join("seed.ndjson");
    let mut lines = std::io::BufWriter::new(std::fs::File::create(&seed).unwrap());
    for n in 0..SEEDED {
        let contact = json!({
            "first_name": format!("seed-{n}"),
            "last_name": "Backup",
            "emails": [format!("seed-{n}@example.com")],
            "company_name": "x".repeat(200),
        });
        writeln!(lines, "{contact}").unwrap();
    }
    lines.flush().unwrap();
    drop(lines);
    let imported = run_binary(
        store,
        &[
            "admin",
            "import",
            "--account",
            &account,
            seed.to_str().unwrap(),
        ],
    );
    assert!(
        imported.status.success(),
        "{}",
        String::from_utf8_lossy(&imported.stderr)
    );

    // Writers, and the backup once they are well under way.
    let ledger: Ledger = Arc::new(Mutex::new(vec![Vec::new(); WRITERS]));
    let stop = Arc::new(AtomicBool::new(false));
    let backing_up = Arc::new(AtomicBool::new(false));
    let during = Arc::new(AtomicUsize::new(0));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            tokio::spawn(writer(
                Arc::clone(&client),
                Arc::clone(&ledger),
                w,
                Arc::clone(&stop),
                Arc::clone(&backing_up),
                Arc::clone(&during),
            ))
        })
        .collect();
    let deadline = Instant::now() + PATIENCE;
    while ledger.lock().await.iter().map(Vec::len).sum::<usize>() < 100 {
        assert!(Instant::now() < deadline, "the writers stalled");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let acknowledged_before: Vec<Vec<String>> = {
        let ledger = ledger.lock().await;
        backing_up.store(true, Ordering::SeqCst);
        ledger.clone()
    };
    let (store_arg, copy_arg) = (store.to_owned(), copy.to_owned());
    let started = Instant::now();
    let backup = tokio::task::spawn_blocking(move || {
        run_binary(&store_arg, &["admin", "backup", "--to", &copy_arg])
    })
    .await
    .unwrap();
    let took = started.elapsed();
    backing_up.store(false, Ordering::SeqCst);
    let during = during.load(Ordering::SeqCst);
    // A few more writes after it, then stop.
    tokio::time::sleep(Duration::from_millis(50)).await;
    stop.store(true, Ordering::SeqCst);
    for w in writers {
        w.await.unwrap();
    }
    let stdout = String::from_utf8_lossy(&backup.stdout);
    assert!(
        backup.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&backup.stderr)
    );
    // What it wrote: the path, the size and the time taken.
    let size = std::fs::metadata(copy).unwrap().len();
    assert!(
        stdout.contains(&format!("wrote {copy} ({size} bytes) in ")) && stdout.contains(" s"),
        "{stdout}"
    );
    assert!(
        during > 0,
        "no write was acknowledged while the backup ran: the test did not test"
    );

    // The copy, read as a plain SQLite file.
    let (integrity, in_copy) = {
        let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{copy}?mode=ro"))
            .await
            .unwrap();
        let integrity: String = sqlx::query_scalar("PRAGMA integrity_check")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT id, body FROM records WHERE kind = 'contacts'")
                .fetch_all(&mut conn)
                .await
                .unwrap();
        conn.close().await.unwrap();
        let in_copy: BTreeMap<String, String> = rows
            .into_iter()
            .map(|(id, body)| {
                let body: Value = serde_json::from_str(&body).unwrap();
                (id, body["first_name"].as_str().unwrap().to_owned())
            })
            .collect();
        (integrity, in_copy)
    };
    assert_eq!(integrity, "ok");
    let written = ledger.lock().await.clone();
    let mut from_writers = 0;
    for (w, ids) in written.iter().enumerate() {
        // One moment of the store: the writer's contacts in the copy are a prefix of what it
        // wrote, as each was written only once the one before was acknowledged.
        let held = ids
            .iter()
            .take_while(|id| in_copy.contains_key(*id))
            .count();
        for (n, id) in ids.iter().enumerate() {
            assert_eq!(
                in_copy.contains_key(id),
                n < held,
                "writer {w}: contact {n} in the copy breaks the prefix of {held}"
            );
            if n < held {
                assert_eq!(in_copy[id], format!("w{w}-{n}"));
            }
        }
        // Every write acknowledged before the backup started.
        assert!(
            held >= acknowledged_before[w].len(),
            "writer {w}: {} acknowledged before the backup, {held} in the copy",
            acknowledged_before[w].len()
        );
        from_writers += held;
    }
    assert_eq!(in_copy.len(), SEEDED + from_writers);
    let acknowledged: usize = acknowledged_before.iter().map(Vec::len).sum();

    // A backup never overwrites.
    let again = run_binary(store, &["admin", "backup", "--to", copy]);
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(!again.status.success());
    assert!(stderr.contains("already exists"), "{stderr}");
    assert_eq!(std::fs::metadata(copy).unwrap().len(), size);
    // Nor does it back up a store that is not there (opening would create an empty one).
    let missing = format!("{copy}.missing");
    let nothing = run_binary(&missing, &["admin", "backup", "--to", &format!("{copy}.2")]);
    assert!(!nothing.status.success());
    assert!(String::from_utf8_lossy(&nothing.stderr).contains("no SQLite store"));
    assert!(!std::path::Path::new(&missing).exists());
    drop(server);

    // Restoring is starting a server on the copy: it serves every contact the copy holds.
    let restored = ServerProcess::start(copy, false, "warn,crm_server=info", &[]);
    let client = Client::new(&restored, &key, &account);
    restored.ready(&client.http).await;
    let served: BTreeMap<String, String> = client.all_contacts().await.into_iter().collect();
    assert_eq!(served, in_copy);
    for ids in &acknowledged_before {
        for id in ids {
            assert!(served.contains_key(id));
        }
    }
    println!(
        "backup: {size} bytes in {took:?}, {} contacts; {acknowledged} writes acknowledged \
         before it, {during} while it ran, all {from_writers} it holds consistent",
        in_copy.len()
    );
}

/// `url` without its password, which goes to the PostgreSQL programs as `PGPASSWORD`, as the
/// README has it.
fn without_password(url: &str) -> String {
    let mut url = url::Url::parse(url).unwrap();
    url.set_password(None).unwrap();
    url.into()
}

/// Runs a PostgreSQL program with the cluster's password in `PGPASSWORD`.
fn pg(cluster: &PgCluster, program: &str, args: &[&str], dir: &Path) {
    let out = Command::new(pg_program(program))
        .args(args)
        .env("PGPASSWORD", cluster.password())
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_is_backed_up_with_pg_dump_and_restored_with_pg_restore() {
    let dir = tempfile::Builder::new()
        .prefix("crm-pg-backup-")
        .tempdir()
        .unwrap();
    let source = PgCluster::start_new();
    let database = source.create_database().await;
    let server = ServerProcess::start(&database, true, "warn,crm_server=info", &[]);
    let (key, account) = server.bootstrap.clone().unwrap();
    let client = Client::new(&server, &key, &account);
    server.ready(&client.http).await;
    for n in 0..150 {
        client.create(&format!("pg-{n}")).await;
    }
    let before = client.all_contacts().await;
    assert_eq!(before.len(), 150);

    // admin backup is for SQLite; it says what to do instead.
    let refused = run_binary(&database, &["admin", "backup", "--to", "never.db"]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        stderr.contains("pg_dump") && stderr.contains("README"),
        "{stderr}"
    );
    assert!(!stderr.contains(source.password()), "{stderr}");

    // A long-lived server has used many more transaction ids than a fresh one.
    let mut conn = sqlx::PgConnection::connect(&database).await.unwrap();
    for _ in 0..2000 {
        sqlx::query("SELECT pg_current_xact_id()::text")
            .execute(&mut conn)
            .await
            .unwrap();
    }
    conn.close().await.unwrap();

    // Back up while the server runs.
    pg(
        &source,
        "pg_dump",
        &[
            "--format=custom",
            "--file=crm.dump",
            &format!("--dbname={}", without_password(&database)),
        ],
        dir.path(),
    );
    drop(server);
    drop(source);

    // Restore into a new, empty database on another PostgreSQL server.
    let target = PgCluster::start_new();
    let port = target.port().to_string();
    pg(
        &target,
        "createdb",
        &["-h", "127.0.0.1", "-p", &port, "-U", "crm", "crm_restored"],
        dir.path(),
    );
    let mut restored_url = url::Url::parse(&target.admin_url()).unwrap();
    restored_url.set_path("/crm_restored");
    let restored_url = String::from(restored_url);
    pg(
        &target,
        "pg_restore",
        &[
            "--no-owner",
            "--exit-on-error",
            "--single-transaction",
            &format!("--dbname={}", without_password(&restored_url)),
            "crm.dump",
        ],
        dir.path(),
    );

    // Start a server on it: the same key, the same contacts in the same order, and a new
    // write pages after them.
    let server = ServerProcess::start(&restored_url, false, "warn,crm_server=info", &[]);
    let client = Client::new(&server, &key, &account);
    server.ready(&client.http).await;
    assert_eq!(client.all_contacts().await, before);
    let id = client.create("after-restore").await;
    let after = client.all_contacts().await;
    assert_eq!(after.len(), before.len() + 1);
    assert_eq!(after[..before.len()], before[..]);
    assert_eq!(after[before.len()], (id, "after-restore".to_owned()));
    let ids: BTreeSet<&String> = after.iter().map(|(id, _)| id).collect();
    assert_eq!(ids.len(), after.len());
    // The positions of the old server were ahead of the new server's transaction ids, and
    // were moved below them at start-up.
    let adopted = server
        .wait_for_log(|e| e["fields"]["records"].is_u64() && e["level"] == "WARN")
        .await;
    assert_eq!(adopted["fields"]["records"], 150, "{adopted}");
}
