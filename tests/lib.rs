//! Shared helpers for the conformance tests: a real server on an ephemeral port over a
//! fresh database of the store `CRM_TEST_STORE` names (SQLite by default, or PostgreSQL on a
//! server the test kit starts), so every suite runs unchanged against both stores.

use std::net::SocketAddr;
use std::sync::Arc;

use crm_client::types::ErrorResponse;
use crm_client::{Error, ResponseValue};
use crm_server::{Database, ShiftedClock, Tenancy};
use crm_testkit::{Store, TestDatabase};
use tokio::sync::oneshot;

/// A running server with one project, one API key and one linked account.
pub struct TestServer {
    pub addr: SocketAddr,
    pub base_url: String,
    pub key: String,
    pub account_id: String,
    pub project_id: String,
    pub db: Database,
    pub tenancy: Tenancy,
    /// The server's clock: tests move it to age keys and records.
    pub clock: Arc<ShiftedClock>,
    pub database: TestDatabase,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl TestServer {
    /// Starts the server exactly as `crm-server serve` does, on 127.0.0.1:0.
    pub async fn start() -> TestServer {
        Self::start_with(crm_server::HttpSettings::default()).await
    }

    /// Starts the server with the given limits and timeouts.
    pub async fn start_with(settings: crm_server::HttpSettings) -> TestServer {
        let database = TestDatabase::new(Store::from_env()).await;
        let db = open(&database).await;
        let clock = Arc::new(ShiftedClock::default());
        let tenancy = Tenancy::new(db.clone(), clock.clone());
        let first = crm_server::bootstrap_if_empty(&tenancy)
            .await
            .expect("bootstrap")
            .expect("an empty database is bootstrapped");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        let app = crm_server::app(db.clone(), clock.clone(), &settings);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            crm_server::serve_with(listener, app, &settings, async move {
                let _ = stopped.await;
            })
            .await
        });
        TestServer {
            addr,
            base_url: format!("http://{addr}"),
            key: first.key,
            account_id: first.account.id,
            project_id: first.project.id,
            db,
            tenancy,
            clock,
            database,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// A generated client authenticated with this server's key.
    pub fn client(&self) -> crm_client::Client {
        crm_client::with_api_key(&self.base_url, &self.key)
    }

    /// Another project with its own key and linked account.
    pub async fn other_tenant(&self) -> Tenant {
        let project = self.tenancy.create_project("other").await.expect("project");
        let key = self.tenancy.create_key(&project.id).await.expect("key");
        let account = self
            .tenancy
            .create_linked_account(&project.id, "local", "other")
            .await
            .expect("account");
        Tenant {
            project_id: project.id,
            key: key.key,
            key_id: key.info.id,
            account_id: account.id,
        }
    }

    /// Stops the server, waiting for requests in flight.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("server task").expect("server ran");
        }
    }
}

/// Opens (and migrates) a test database as `crm-server` does.
pub async fn open(database: &TestDatabase) -> Database {
    let url: crm_server::DatabaseUrl = database.url().parse().expect("a database URL");
    Database::open(&url, crm_server::PoolSettings::default())
        .await
        .expect("database opens")
}

/// A project of its own, for tenancy tests.
pub struct Tenant {
    pub project_id: String,
    pub key: String,
    pub key_id: String,
    pub account_id: String,
}

/// What a generated client's operation answers.
pub type Reply<T> = Result<ResponseValue<T>, Error<ErrorResponse>>;

/// The typed error body of a reply that must have failed with `status`, checked to carry
/// the contract's fields.
pub fn failure<T: std::fmt::Debug>(reply: Reply<T>, status: u16) -> ErrorResponse {
    match reply {
        Err(Error::ErrorResponse(body)) => {
            assert_eq!(body.status().as_u16(), status, "{body:?}");
            let body = body.into_inner();
            assert_eq!(body.status_code, i32::from(status));
            assert!(!body.message.is_empty());
            body
        }
        other => panic!("expected a {status} error body, got {other:?}"),
    }
}

/// The field an error body names in `data.field`, or "".
pub fn field_of(error: &ErrorResponse) -> String {
    error
        .data
        .as_ref()
        .and_then(|d| d.get("field"))
        .and_then(|f| f.as_str())
        .unwrap_or_default()
        .to_owned()
}

/// Generated types have no `PartialEq`; their JSON forms compare instead.
pub fn json<T: serde::Serialize>(value: &T) -> serde_json::Value {
    serde_json::to_value(value).expect("a generated type serialises")
}
