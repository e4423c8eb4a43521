//! The test clusters are real PostgreSQL servers with production durability, reachable only
//! with the password, and never outliving the process that started them.

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crm_testkit::{PgCluster, Store, TestDatabase};
use sqlx::Connection;
use sqlx::postgres::PgConnection;

async fn connect(url: &str) -> PgConnection {
    PgConnection::connect(url).await.expect("connect")
}

async fn show(conn: &mut PgConnection, setting: &'static str) -> String {
    sqlx::query_scalar(setting)
        .fetch_one(conn)
        .await
        .expect(setting)
}

#[tokio::test]
async fn shared_cluster_gives_distinct_connectable_databases() {
    let started = Instant::now();
    let cluster = PgCluster::shared();
    eprintln!("shared cluster ready after {:?}", started.elapsed());
    let started = Instant::now();
    let a = cluster.create_database().await;
    eprintln!("create_database took {:?}", started.elapsed());
    let b = cluster.create_database().await;
    assert_ne!(a, b);
    for url in [&a, &b] {
        assert!(url.starts_with(&format!("postgres://crm:{}@127.0.0.1:", cluster.password())));
    }

    let mut conn_a = connect(&a).await;
    let mut conn_b = connect(&b).await;
    let name_a: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(&mut conn_a)
        .await
        .unwrap();
    let name_b: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(&mut conn_b)
        .await
        .unwrap();
    assert_ne!(name_a, name_b);
    assert!(a.ends_with(&format!("/{name_a}")));
    sqlx::query("CREATE TABLE t (x int)")
        .execute(&mut conn_a)
        .await
        .unwrap();
    let in_b: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_tables WHERE tablename = 't'")
        .fetch_one(&mut conn_b)
        .await
        .unwrap();
    assert_eq!(in_b, 0, "a new database must be empty");
}

#[tokio::test]
async fn durability_settings_are_on() {
    let mut conn = connect(&PgCluster::shared().admin_url()).await;
    assert_eq!(show(&mut conn, "SHOW fsync").await, "on");
    assert_eq!(show(&mut conn, "SHOW synchronous_commit").await, "on");
    assert_eq!(show(&mut conn, "SHOW full_page_writes").await, "on");
    assert_eq!(show(&mut conn, "SHOW max_connections").await, "400");
    assert_eq!(show(&mut conn, "SHOW listen_addresses").await, "127.0.0.1");
}

#[tokio::test]
async fn tcp_logins_need_the_password() {
    let cluster = PgCluster::shared();
    let port = cluster.port();
    let no_password = format!("postgres://crm@127.0.0.1:{port}/postgres");
    assert!(PgConnection::connect(&no_password).await.is_err());
    let wrong = format!("postgres://crm:wrong@127.0.0.1:{port}/postgres");
    let Err(err) = PgConnection::connect(&wrong).await else {
        panic!("a wrong password was accepted");
    };
    assert!(
        err.to_string().contains("password authentication failed"),
        "{err}"
    );
    assert!(!err.to_string().contains(cluster.password()));
    assert!(!format!("{cluster:?}").contains(cluster.password()));
}

#[tokio::test]
async fn owned_cluster_stops_and_restarts_keeping_its_data() {
    let started = Instant::now();
    let cluster = PgCluster::start_new();
    eprintln!("owned cluster ready after {:?}", started.elapsed());
    let url = cluster.create_database().await;
    let mut conn = connect(&url).await;
    sqlx::query("CREATE TABLE kept (x int)")
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::query("INSERT INTO kept VALUES (42)")
        .execute(&mut conn)
        .await
        .unwrap();
    drop(conn);

    let started = Instant::now();
    cluster.stop();
    eprintln!("stop took {:?}", started.elapsed());
    assert!(PgConnection::connect(&url).await.is_err());

    let started = Instant::now();
    cluster.restart();
    eprintln!("restart took {:?}", started.elapsed());
    let mut conn = connect(&url).await;
    let x: i32 = sqlx::query_scalar("SELECT x FROM kept")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(x, 42);
    drop(conn);

    let (port, data) = (cluster.port(), cluster.data_dir());
    drop(cluster);
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "server still listening"
    );
    assert!(!data.exists(), "data directory left behind");
}

#[tokio::test]
async fn test_database_follows_the_store() {
    let sqlite = TestDatabase::new(Store::Sqlite).await;
    assert_eq!(sqlite.store().name(), "sqlite");
    assert_eq!(sqlite.url(), sqlite.dir().join("crm.db").to_str().unwrap());
    assert!(sqlite.dir().is_dir());

    let pg = TestDatabase::new(Store::Postgres).await;
    assert_eq!(pg.store().name(), "postgres");
    assert!(pg.url().starts_with("postgres://crm:"));
    assert!(pg.dir().is_dir());
    assert!(!format!("{pg:?}").contains(PgCluster::shared().password()));
    connect(pg.url()).await;
}

/// Not a test on its own: `server_dies_with_its_process` runs it in a child process, which
/// starts a cluster, reports it, and then dies without running any destructor.
#[test]
#[ignore = "helper process for server_dies_with_its_process"]
fn helper_process_holding_a_cluster() {
    let Ok(mode) = std::env::var("CRM_TESTKIT_HELPER") else {
        return;
    };
    let cluster = PgCluster::shared();
    println!(
        "CLUSTER {} {}",
        cluster.port(),
        cluster.data_dir().display()
    );
    match mode.as_str() {
        "exit" => std::process::exit(0),
        _ => std::thread::sleep(Duration::from_secs(600)),
    }
}

/// Leaves the helper cluster to the guard alone: the test process exits with statics
/// undropped, or is killed outright.
#[test]
fn server_dies_with_its_process() {
    for mode in ["exit", "kill"] {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "helper_process_holding_a_cluster",
                "--ignored",
                "--nocapture",
            ])
            .env("CRM_TESTKIT_HELPER", mode)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let line = BufReader::new(child.stdout.take().unwrap())
            .lines()
            .map(Result::unwrap)
            .find(|line| line.starts_with("CLUSTER "))
            .expect("the helper reports its cluster");
        let mut fields = line.split(' ').skip(1);
        let port: u16 = fields.next().unwrap().parse().unwrap();
        let data = std::path::PathBuf::from(fields.next().unwrap());
        assert!(data.is_dir());
        if mode == "kill" {
            child.kill().unwrap();
        }
        child.wait().unwrap();

        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_ok() || data.exists() {
            assert!(
                Instant::now() < deadline,
                "{mode}: server on {port} outlived its process"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
