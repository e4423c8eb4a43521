//! A killed process cannot reveal a relaxed durability setting (the page cache outlives
//! it), so the live settings of the store are read instead: every acknowledged write must
//! be on disk. Runs against the store `CRM_TEST_STORE` names.

use conformance::TestServer;
use sqlx::{Connection, Executor};

#[tokio::test]
async fn the_store_puts_every_acknowledged_write_on_disk() {
    let server = TestServer::start().await;
    let problems = server.db.durability_problems().await.unwrap();
    assert!(problems.is_empty(), "{problems:?}");
    server.stop().await;
}

#[tokio::test]
async fn a_relaxed_setting_is_caught() {
    let server = TestServer::start().await;
    let kind = server.db.kind();
    let relax = match kind {
        crm_server::StoreKind::Sqlite => "PRAGMA synchronous = NORMAL",
        crm_server::StoreKind::Postgres => "SET synchronous_commit = off",
    };
    let mut conn = server.db.pool().acquire().await.unwrap();
    conn.execute(relax).await.unwrap();
    let problems = crm_server::db::durability_problems(&mut conn, kind)
        .await
        .unwrap();
    assert_eq!(problems.len(), 1, "{problems:?}");
    // Leave the pool as it was: this connection goes, a fresh one takes its place.
    conn.close_on_drop();
    drop(conn);
    let mut fresh = server.db.pool().acquire().await.unwrap();
    assert!(
        crm_server::db::durability_problems(&mut fresh, kind)
            .await
            .unwrap()
            .is_empty()
    );
    fresh.ping().await.unwrap();
    server.stop().await;
}
