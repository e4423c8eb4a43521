//! The serving path's PostgreSQL connections (`serving_conns`), on a real PostgreSQL
//! server: a connection given back as it is stays usable, one dropped half-way (a
//! cancelled statement, an open transaction) is made ready before anyone gets it again,
//! no more than the most allowed are ever open, one the server closed while it was idle is
//! replaced instead of failing a request, and one that stays busy past the acquire timeout
//! is closed and frees its place.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use crm_server::serving_conns::ServingConns;
use crm_testkit::PgCluster;
use sqlx::any::AnyConnectOptions;
use sqlx::{AnyConnection, Connection, Executor, Row};

async fn database() -> AnyConnectOptions {
    sqlx::any::install_default_drivers();
    let url = PgCluster::shared().create_database().await;
    AnyConnectOptions::from_str(&url).unwrap()
}

fn conns(options: &AnyConnectOptions, max: u32) -> Arc<ServingConns> {
    ServingConns::new(options.clone(), max, Duration::from_millis(500))
}

async fn backend_pid(conn: &mut AnyConnection) -> i32 {
    sqlx::query("SELECT pg_backend_pid()")
        .fetch_one(conn)
        .await
        .unwrap()
        .get(0)
}

/// Waits until `conns` has `idle` idle connections, which a task puts back.
async fn until_idle(conns: &ServingConns, idle: u32) {
    for _ in 0..200 {
        if conns.counts().1 == idle {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("never {idle} idle: {:?}", conns.counts());
}

#[tokio::test]
async fn a_connection_given_back_is_idle_at_once_and_handed_out_again() {
    let options = database().await;
    let conns = conns(&options, 2);
    let mut conn = conns.acquire().await.unwrap();
    // Read one row of a query that answers two: sqlx leaves the rest for the next use.
    let first: i32 = sqlx::query("SELECT g FROM generate_series(1, 2) g ORDER BY g")
        .fetch_optional(&mut *conn)
        .await
        .unwrap()
        .unwrap()
        .get(0);
    assert_eq!(first, 1);
    let pid = backend_pid(&mut conn).await;
    conn.release();
    // Back in place, with no task and no round trip in between.
    assert_eq!(conns.counts(), (1, 1));
    let mut again = conns.acquire().await.unwrap();
    assert_eq!(backend_pid(&mut again).await, pid);
    let one: i32 = sqlx::query("SELECT 1")
        .fetch_one(&mut *again)
        .await
        .unwrap()
        .get(0);
    assert_eq!(one, 1);
}

#[tokio::test]
async fn a_transaction_dropped_uncommitted_is_rolled_back_before_the_connection_is_reused() {
    let options = database().await;
    let mut other = AnyConnection::connect_with(&options).await.unwrap();
    other.execute("CREATE TABLE t (x int)").await.unwrap();
    let conns = conns(&options, 1);

    let mut conn = conns.acquire().await.unwrap();
    conn.begin().await.unwrap();
    conn.execute("INSERT INTO t VALUES (1)").await.unwrap();
    // Even given back as if finished, an open transaction is rolled back first.
    conn.release();
    assert_eq!(conns.counts().1, 0, "put back before its rollback");
    until_idle(&conns, 1).await;

    let mut conn = conns.acquire().await.unwrap();
    // Outside any transaction now: a statement commits by itself and others see it.
    conn.execute("INSERT INTO t VALUES (2)").await.unwrap();
    conn.release();
    let seen: Vec<i32> = sqlx::query_scalar("SELECT x FROM t ORDER BY x")
        .fetch_all(&mut other)
        .await
        .unwrap();
    assert_eq!(seen, [2]);

    let mut conn = conns.acquire().await.unwrap();
    conn.begin().await.unwrap();
    conn.execute("INSERT INTO t VALUES (3)").await.unwrap();
    conn.commit().await.unwrap();
    assert_eq!(
        conns.counts().1,
        1,
        "a committed connection goes back at once"
    );
    let seen: Vec<i32> = sqlx::query_scalar("SELECT x FROM t ORDER BY x")
        .fetch_all(&mut other)
        .await
        .unwrap();
    assert_eq!(seen, [2, 3]);
}

#[tokio::test]
async fn a_statement_cancelled_half_way_leaves_no_answer_for_the_next_one() {
    let options = database().await;
    let conns = conns(&options, 1);
    let mut conn = conns.acquire().await.unwrap();
    let cancelled = tokio::time::timeout(
        Duration::from_millis(50),
        sqlx::query("SELECT 7 FROM pg_sleep(0.3)").fetch_one(&mut *conn),
    )
    .await;
    assert!(cancelled.is_err(), "the statement was meant to be cut off");
    drop(conn);
    assert_eq!(conns.counts().1, 0, "put back before it was made ready");
    until_idle(&conns, 1).await;
    let mut conn = conns.acquire().await.unwrap();
    let answer: i32 = sqlx::query("SELECT 8")
        .fetch_one(&mut *conn)
        .await
        .unwrap()
        .get(0);
    assert_eq!(answer, 8);
}

#[tokio::test]
async fn no_more_connections_than_the_most_are_open() {
    let options = database().await;
    let conns = conns(&options, 2);
    let mut a = conns.acquire().await.unwrap();
    let b = conns.acquire().await.unwrap();
    let refused = conns.acquire().await;
    assert!(
        matches!(refused, Err(sqlx::Error::PoolTimedOut)),
        "{:?}",
        refused.map(|_| ())
    );
    let database: String = sqlx::query_scalar("SELECT current_database()::text")
        .fetch_one(&mut *a)
        .await
        .unwrap();
    let open: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE datname = $1")
        .bind(&database)
        .fetch_one(&mut *a)
        .await
        .unwrap();
    assert_eq!(open, 2);
    b.release();
    let c = conns.acquire().await.unwrap();
    assert_eq!(conns.counts(), (2, 0));
    a.release();
    c.release();
    assert_eq!(conns.counts(), (2, 2));
    conns.close().await;
    assert_eq!(conns.counts(), (0, 0));
    assert!(matches!(
        conns.acquire().await,
        Err(sqlx::Error::PoolClosed)
    ));
}

#[tokio::test]
async fn an_idle_connection_the_server_closed_is_replaced_not_handed_out() {
    let options = database().await;
    let conns =
        ServingConns::with_idle_check(options.clone(), 1, Duration::from_secs(2), Duration::ZERO);
    let mut conn = conns.acquire().await.unwrap();
    let pid = backend_pid(&mut conn).await;
    conn.release();
    let mut other = AnyConnection::connect_with(&options).await.unwrap();
    let ended: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(pid)
        .fetch_one(&mut other)
        .await
        .unwrap();
    assert!(ended);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut conn = conns.acquire().await.unwrap();
    let new_pid = backend_pid(&mut conn).await;
    assert_ne!(new_pid, pid);
    assert_eq!(conns.counts(), (1, 0));
}

#[tokio::test]
async fn a_connection_still_busy_after_the_acquire_timeout_is_closed_and_its_place_freed() {
    let options = database().await;
    let conns = ServingConns::new(options.clone(), 1, Duration::from_millis(300));
    let mut conn = conns.acquire().await.unwrap();
    let pid = backend_pid(&mut conn).await;
    let cut = tokio::time::timeout(
        Duration::from_millis(50),
        sqlx::query("SELECT pg_sleep(5)").execute(&mut *conn),
    )
    .await;
    assert!(cut.is_err(), "the statement was meant to be cut off");
    drop(conn);
    // Readying it waits behind the 5 s sleep; after the acquire timeout it is closed.
    let mut closed = false;
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if conns.counts() == (0, 0) {
            closed = true;
            break;
        }
    }
    assert!(closed, "still open: {:?}", conns.counts());
    let mut conn = conns.acquire().await.unwrap();
    assert_ne!(backend_pid(&mut conn).await, pid);
}
