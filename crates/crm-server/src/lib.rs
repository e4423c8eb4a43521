//! The unified CRM API server: tenancy, API keys, SQLite storage and the built-in `local`
//! provider, behind the router of the `crm-api` crate.

pub mod cursor;
pub mod custom_fields;
pub mod db;
pub mod store;
pub mod tenancy;

use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use crm_api::AppState;
use sqlx::SqlitePool;
use tokio::net::TcpListener;
use tower_http::trace::TraceLayer;

pub use store::LocalCrm;

/// The largest request body accepted, in bytes, unless configured otherwise.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;

/// How the HTTP side of the server behaves.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    pub max_body_bytes: usize,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
        }
    }
}

/// The whole application over an open database.
pub fn app(pool: SqlitePool, settings: &HttpSettings) -> Router {
    let state = AppState::new(Arc::new(LocalCrm::new(pool)));
    crm_api::router(state)
        .layer(DefaultBodyLimit::max(settings.max_body_bytes))
        .layer(TraceLayer::new_for_http())
}

/// Serves `app` on `listener` until `shutdown` completes, then finishes the requests in
/// flight before returning.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// What a first start on an empty database created, so a user can call the API at once.
#[derive(Debug, Clone)]
pub struct Bootstrap {
    pub project: tenancy::Project,
    pub key: String,
    pub account: tenancy::LinkedAccount,
}

/// On a database with no project, creates a project, an API key and a linked account.
pub async fn bootstrap_if_empty(
    pool: &SqlitePool,
) -> Result<Option<Bootstrap>, tenancy::TenancyError> {
    if !tenancy::list_projects(pool).await?.is_empty() {
        return Ok(None);
    }
    let project = tenancy::create_project(pool, "default").await?;
    let key = tenancy::create_key(pool, &project.id).await?;
    let account =
        tenancy::create_linked_account(pool, &project.id, tenancy::LOCAL_PROVIDER, "local").await?;
    Ok(Some(Bootstrap {
        project,
        key: key.key,
        account,
    }))
}

/// Opens the database at `path`, running migrations.
pub async fn open_database(path: &Path) -> Result<SqlitePool, sqlx::Error> {
    db::open(path).await
}
