//! The listing queries are served from indexes, read from the store's own query plan
//! (`EXPLAIN`) rather than timed: the first page of an incremental listing, a filtered page
//! and a deep page by cursor each walk an index of `records`, never the whole table, and
//! never sort. Runs against the store `CRM_TEST_STORE` names, with enough rows and fresh
//! statistics that a full scan would look cheaper to a planner if no index fitted.

use conformance::TestServer;
use crm_server::StoreKind;
use crm_server::local::{Order, incremental_start_query, page_query};

const ROWS: i64 = 20_000;

/// The plan of `sql` with its parameters bound, one line per step. On PostgreSQL also the
/// generic plan, the one a prepared statement settles on after a few executions.
async fn plan(server: &TestServer, sql: &str, binds: &[Bind]) -> Vec<String> {
    let mut lines = custom_plan(server, sql, binds).await;
    if server.db.kind() == StoreKind::Postgres {
        lines.push("-- generic plan:".into());
        lines.extend(generic_plan(server, sql, binds).await);
    }
    lines
}

/// PostgreSQL's generic plan of `sql`: prepared with typed parameters, then explained with
/// `plan_cache_mode = force_generic_plan`, on one connection.
async fn generic_plan(server: &TestServer, sql: &str, binds: &[Bind]) -> Vec<String> {
    use sqlx::Executor;
    let mut conn = server.db.pool().acquire().await.unwrap();
    let types: Vec<&str> = binds
        .iter()
        .map(|b| match b {
            Bind::Text(_) => "text",
            Bind::Int(_) => "bigint",
        })
        .collect();
    let args: Vec<String> = binds
        .iter()
        .map(|b| match b {
            Bind::Text(t) => format!("'{}'", t.replace('\'', "''")),
            Bind::Int(i) => i.to_string(),
        })
        .collect();
    conn.execute(sqlx::AssertSqlSafe(format!(
        "SET plan_cache_mode = force_generic_plan; PREPARE planned({}) AS {sql}",
        types.join(", ")
    )))
    .await
    .unwrap();
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "EXPLAIN EXECUTE planned({})",
        args.join(", ")
    )))
    .fetch_all(&mut *conn)
    .await
    .unwrap();
    conn.execute("DEALLOCATE planned; RESET plan_cache_mode")
        .await
        .unwrap();
    rows.iter()
        .map(|r| sqlx::Row::get::<String, _>(r, "QUERY PLAN"))
        .collect()
}

async fn custom_plan(server: &TestServer, sql: &str, binds: &[Bind]) -> Vec<String> {
    let explain = match server.db.kind() {
        StoreKind::Sqlite => format!("EXPLAIN QUERY PLAN {sql}"),
        StoreKind::Postgres => format!("EXPLAIN {sql}"),
    };
    let mut query = sqlx::query(sqlx::AssertSqlSafe(explain));
    for bind in binds {
        query = match bind {
            Bind::Text(t) => query.bind(t.clone()),
            Bind::Int(i) => query.bind(*i),
        };
    }
    let rows = query.fetch_all(server.db.pool()).await.unwrap();
    let column = match server.db.kind() {
        StoreKind::Sqlite => "detail",
        StoreKind::Postgres => "QUERY PLAN",
    };
    rows.iter()
        .map(|r| sqlx::Row::get::<String, _>(r, column))
        .collect()
}

enum Bind {
    Text(String),
    Int(i64),
}

/// Why a plan does not read `records` through one of `indexes` without scanning the table
/// or sorting; `Ok` when it does.
fn check_indexed(plan: &[String], indexes: &[&str]) -> Result<(), String> {
    let text = plan.join("\n");
    if !indexes.iter().any(|i| text.contains(i)) {
        return Err(format!("no index of {indexes:?} in the plan:\n{text}"));
    }
    for forbidden in ["Seq Scan", "SCAN records", "TEMP B-TREE", "Sort"] {
        if text.contains(forbidden) {
            return Err(format!("the plan has {forbidden}:\n{text}"));
        }
    }
    Ok(())
}

fn assert_indexed(what: &str, plan: &[String], indexes: &[&str]) {
    if let Err(why) = check_indexed(plan, indexes) {
        panic!("{what}: {why}");
    }
}

/// The plans are read, not trusted: a query without a usable index is caught.
#[test]
fn a_plan_without_the_index_is_refused() {
    let scan = vec!["SCAN records".to_owned()];
    assert!(check_indexed(&scan, &["records_created"]).is_err());
    let other_index = vec!["SEARCH records USING INDEX records_page (seq>?)".to_owned()];
    assert!(check_indexed(&other_index, &["records_created"]).is_err());
    let sort = vec![
        "Sort".to_owned(),
        "Index Scan using records_updated_at on records".to_owned(),
    ];
    assert!(check_indexed(&sort, &["records_updated_at"]).is_err());
    let good = vec!["SEARCH records USING INDEX records_created (created_pos>?)".to_owned()];
    assert!(check_indexed(&good, &["records_created"]).is_ok());
}

#[tokio::test]
async fn listings_are_served_from_indexes() {
    let server = TestServer::start().await;
    let db = &server.db;
    // Many old contacts of the linked account (written straight into the store), and a
    // few updated since the filter's time.
    let seed = db.pick(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $2)
         INSERT INTO records (linked_account_id, kind, id, body, created_at, updated_at, created_pos, updated_pos)
         SELECT $1, 'contacts', 'seed-' || i, '{}', '2000-01-01T00:00:00.000000Z',
                '2000-01-01T00:00:00.000000Z', 0, 0 FROM n",
        "INSERT INTO records (linked_account_id, kind, id, body, created_at, updated_at, created_pos, updated_pos)
         SELECT $1, 'contacts', 'seed-' || i, '{}', '2000-01-01T00:00:00.000000Z',
                '2000-01-01T00:00:00.000000Z', 0, 0 FROM generate_series(1, $2::bigint) AS i",
    );
    sqlx::query(seed)
        .bind(&server.account_id)
        .bind(ROWS)
        .execute(db.pool())
        .await
        .unwrap();
    sqlx::query(
        "UPDATE records SET updated_at = '2030-01-01T00:00:00.000000Z', updated_pos = 1
         WHERE linked_account_id = $1 AND id IN ('seed-5', 'seed-500', 'seed-5000')",
    )
    .bind(&server.account_id)
    .execute(db.pool())
    .await
    .unwrap();
    sqlx::query("ANALYZE").execute(db.pool()).await.unwrap();

    let account = Bind::Text(server.account_id.clone());
    let kind = || Bind::Text("contacts".into());
    let since = || Bind::Text("2020-01-01T00:00:00.000000Z".into());

    let start = plan(
        &server,
        incremental_start_query(db),
        &[Bind::Text(server.account_id.clone()), kind(), since()],
    )
    .await;
    assert_indexed(
        "where an incremental listing starts",
        &start,
        &["records_updated_at"],
    );

    let filtered = plan(
        &server,
        page_query(db, Order::Updated),
        &[
            Bind::Text(server.account_id.clone()),
            kind(),
            Bind::Int(0),
            Bind::Int(i64::MAX),
            Bind::Int(101),
            since(),
        ],
    )
    .await;
    assert_indexed("a filtered page", &filtered, &["records_updated"]);

    let deep = plan(
        &server,
        page_query(db, Order::Created),
        &[
            account,
            kind(),
            Bind::Int(0),
            Bind::Int(ROWS - 100),
            Bind::Int(101),
        ],
    )
    .await;
    assert_indexed("a deep page by cursor", &deep, &["records_created"]);
    println!(
        "query plans ({:?}):\n  start: {}\n  filtered: {}\n  deep: {}",
        db.kind(),
        start.join(" / "),
        filtered.join(" / "),
        deep.join(" / ")
    );
    server.stop().await;
}
