//! Shared helpers for the conformance tests: a real server on an ephemeral port over a
//! temporary SQLite database.

use std::net::SocketAddr;

use crm_client::types::ErrorResponse;
use crm_client::{Error, ResponseValue};
use crm_server::tenancy;
use sqlx::SqlitePool;
use tokio::sync::oneshot;

/// A running server with one project, one API key and one linked account.
pub struct TestServer {
    pub addr: SocketAddr,
    pub base_url: String,
    pub key: String,
    pub account_id: String,
    pub project_id: String,
    pub pool: SqlitePool,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    _dir: tempfile::TempDir,
}

impl TestServer {
    /// Starts the server exactly as `crm-server serve` does, on 127.0.0.1:0.
    pub async fn start() -> TestServer {
        Self::start_with(crm_server::HttpSettings::default()).await
    }

    /// Starts the server with the given limits and timeouts.
    pub async fn start_with(settings: crm_server::HttpSettings) -> TestServer {
        let dir = tempfile::tempdir().expect("temporary directory");
        let pool = crm_server::open_database(&dir.path().join("crm.db"))
            .await
            .expect("database opens");
        let first = crm_server::bootstrap_if_empty(&pool)
            .await
            .expect("bootstrap")
            .expect("an empty database is bootstrapped");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        let app = crm_server::app(pool.clone(), &settings);
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
            pool,
            stop: Some(stop),
            task: Some(task),
            _dir: dir,
        }
    }

    /// A generated client authenticated with this server's key.
    pub fn client(&self) -> crm_client::Client {
        crm_client::with_api_key(&self.base_url, &self.key)
    }

    /// Another project with its own key and linked account.
    pub async fn other_tenant(&self) -> Tenant {
        let project = tenancy::create_project(&self.pool, "other")
            .await
            .expect("project");
        let key = tenancy::create_key(&self.pool, &project.id)
            .await
            .expect("key");
        let account = tenancy::create_linked_account(&self.pool, &project.id, "local", "other")
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
