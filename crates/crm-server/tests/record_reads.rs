//! The batched record reads of PostgreSQL (`record_reads`), on a real PostgreSQL server:
//! reads that arrive together share statements, each still gets its own record (or none),
//! a read sees a record written just before it, and a database that cannot be reached
//! answers every waiting read with an error instead of leaving any of them waiting.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use crm_server::db::{Database, DatabaseUrl, PoolSettings};
use crm_server::record_reads::{BATCH, Found, RecordKey, RecordReads};
use crm_server::serving_conns::ServingConns;
use crm_testkit::PgCluster;
use sqlx::any::AnyConnectOptions;
use sqlx::{Executor, Row};

const P1: &str = "project-1";
const P2: &str = "project-2";
const A1: &str = "account-1";
const A2: &str = "account-2";

/// A migrated database: two projects with an account each, 100 contacts in the first
/// (`c0`..`c99`, body `body-N`), one contact `c0` in the second, and a contact mapping for
/// the first project only.
async fn database() -> Database {
    let url = PgCluster::shared().create_database().await;
    let db = Database::open(
        &DatabaseUrl::from_str(&url).unwrap(),
        PoolSettings::default(),
    )
    .await
    .unwrap();
    let setup = "INSERT INTO projects VALUES ('project-1', 'p', 'now'), ('project-2', 'p', 'now');
         INSERT INTO linked_accounts VALUES
             ('account-1', 'project-1', 'local', 'a', 'now'),
             ('account-2', 'project-2', 'local', 'a', 'now');
         INSERT INTO records (linked_account_id, kind, id, body, created_at, updated_at,
                              created_pos, updated_pos)
         SELECT 'account-1', 'contacts', 'c' || n, 'body-' || n, 'now', 'now', 1, 1
         FROM generate_series(0, 99) n;
         INSERT INTO records (linked_account_id, kind, id, body, created_at, updated_at,
                              created_pos, updated_pos)
         VALUES ('account-2', 'contacts', 'c0', 'other', 'now', 'now', 1, 1);
         INSERT INTO unified_custom_fields VALUES ('project-1', 'contacts', 'mapping-1');";
    db.pool().execute(setup).await.unwrap();
    db
}

fn key(account: &str, kind: &'static str, id: &str, project: &str) -> RecordKey {
    RecordKey {
        account_id: account.to_owned(),
        kind,
        id: id.to_owned(),
        project_id: project.to_owned(),
    }
}

/// `key`'s answer, which must come within a few seconds: a read left waiting fails here.
async fn read(reads: &Arc<RecordReads>, key: RecordKey) -> crm_server::record_reads::Answer {
    tokio::time::timeout(Duration::from_secs(10), reads.read(key))
        .await
        .expect("a read is answered, not left waiting")
}

/// The body and mapping of what was found.
fn seen(found: Found) -> Option<(String, Option<String>)> {
    found.map(|(_, body, mapping)| (body, mapping))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_that_arrive_together_share_statements_and_each_gets_its_own_record() {
    let db = database().await;
    let reads = Arc::clone(db.record_reads().expect("PostgreSQL batches"));
    let before = reads.statements();
    // 400 reads at once: records of either account, missing ids, and a kind that is not
    // stored under that id. Each is checked against what it asked for.
    let tasks: Vec<_> = (0..400)
        .map(|i| {
            let reads = Arc::clone(&reads);
            tokio::spawn(async move {
                let n = i % 100;
                let (asked, expected) = match i % 4 {
                    0 => (
                        key(A1, "contacts", &format!("c{n}"), P1),
                        Some((format!("body-{n}"), Some("mapping-1".to_owned()))),
                    ),
                    1 => (
                        key(A2, "contacts", "c0", P2),
                        Some(("other".to_owned(), None)),
                    ),
                    // A NUL cannot be in PostgreSQL's text: such an id is not found, and
                    // fails no other read of its batch.
                    2 if n % 10 == 0 => (key(A1, "contacts", &format!("c{n}\0"), P1), None),
                    2 => (key(A1, "contacts", &format!("missing-{n}"), P1), None),
                    _ => (key(A1, "accounts", &format!("c{n}"), P1), None),
                };
                let found = read(&reads, asked).await.expect("the read succeeds");
                assert_eq!(seen(found), expected, "read {i}");
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let statements = reads.statements() - before;
    assert!(
        statements < 200,
        "400 reads at once took {statements} statements"
    );
    assert!(statements >= 1);
}

#[tokio::test]
async fn a_read_alone_goes_at_once_and_sees_the_write_before_it() {
    let db = database().await;
    let reads = db.record_reads().expect("PostgreSQL batches");
    assert_eq!(
        seen(read(reads, key(A1, "contacts", "new", P1)).await.unwrap()),
        None
    );
    db.pool()
        .execute(
            "INSERT INTO records (linked_account_id, kind, id, body, created_at, updated_at,
                                  created_pos, updated_pos)
             VALUES ('account-1', 'contacts', 'new', 'fresh', 'now', 'now', 2, 2)",
        )
        .await
        .unwrap();
    let found = read(reads, key(A1, "contacts", "new", P1)).await.unwrap();
    assert_eq!(
        seen(found),
        Some(("fresh".to_owned(), Some("mapping-1".to_owned())))
    );
    // One read at a time: a statement each, none waits for company.
    let before = reads.statements();
    for n in 0..5 {
        read(reads, key(A1, "contacts", &format!("c{n}"), P1))
            .await
            .unwrap();
    }
    assert_eq!(reads.statements() - before, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_database_answers_every_waiting_read_with_an_error() {
    sqlx::any::install_default_drivers();
    // A port nobody listens on.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let options =
        AnyConnectOptions::from_str(&format!("postgres://nobody@127.0.0.1:{port}/none")).unwrap();
    let reads = RecordReads::new(ServingConns::new(options, 2, Duration::from_millis(300)));
    // Twice: the places of the failed batches are given back, so later reads still go.
    for round in 0..2 {
        let tasks: Vec<_> = (0..50)
            .map(|i| {
                let reads = Arc::clone(&reads);
                tokio::spawn(async move {
                    read(&reads, key(A1, "contacts", &format!("c{i}"), P1)).await
                })
            })
            .collect();
        for task in tasks {
            let answer = task.await.unwrap();
            assert!(answer.is_err(), "round {round}: {answer:?}");
        }
    }
}

#[test]
fn reads_go_on_after_the_tasks_of_a_stopped_runtime_were_dropped_half_way() {
    sqlx::any::install_default_drivers();
    // A server that accepts connections and never answers: a batch waits for it until the
    // acquire timeout.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let options =
        AnyConnectOptions::from_str(&format!("postgres://nobody@127.0.0.1:{port}/none")).unwrap();
    let reads = RecordReads::new(ServingConns::new(options, 2, Duration::from_secs(1)));
    let first = tokio::runtime::Runtime::new().unwrap();
    for i in 0..4 {
        let reads = Arc::clone(&reads);
        first.spawn(async move { reads.read(key(A1, "contacts", &format!("c{i}"), P1)).await });
    }
    std::thread::sleep(Duration::from_millis(200));
    // The batch tasks are waiting for the server; the runtime drops them.
    first.shutdown_timeout(Duration::from_millis(100));
    let second = tokio::runtime::Runtime::new().unwrap();
    let answer = second.block_on(read(&reads, key(A1, "contacts", "c9", P1)));
    assert!(answer.is_err(), "{answer:?}");
    drop(silent);
}

#[tokio::test]
async fn each_read_of_a_batch_is_an_index_lookup_whatever_the_size_of_the_table() {
    let db = database().await;
    // A table of two thousand records with fresh statistics: as a plain join, the planner
    // read it whole into a hash for every batch.
    db.pool()
        .execute(
            "INSERT INTO records (linked_account_id, kind, id, body, created_at, updated_at,
                                  created_pos, updated_pos)
             SELECT 'account-1', 'contacts', 'more-' || n, repeat('x', 400), 'now', 'now', 1, 1
             FROM generate_series(1, 2000) n;
             ANALYZE records; ANALYZE unified_custom_fields;",
        )
        .await
        .unwrap();
    let mut conn = db.pool().acquire().await.unwrap();
    // The plan a prepared statement keeps once it is generic, as the server's becomes.
    conn.execute("SET plan_cache_mode = force_generic_plan")
        .await
        .unwrap();
    conn.execute(sqlx::AssertSqlSafe(format!("PREPARE batch AS {BATCH}")))
        .await
        .unwrap();
    let plan: Vec<String> = sqlx::query("EXPLAIN EXECUTE batch('[]', 'contacts')")
        .fetch_all(&mut *conn)
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    let plan = plan.join("\n");
    assert!(!plan.contains("Seq Scan on records"), "{plan}");
    assert!(!plan.contains("Hash"), "{plan}");
    assert!(
        plan.contains("Index Scan using records_linked_account_id_kind_id_key"),
        "{plan}"
    );
}
