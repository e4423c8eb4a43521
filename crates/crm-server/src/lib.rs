//! The unified CRM API server: tenancy, API keys, idempotency keys and the built-in
//! `local` provider over SQLite or PostgreSQL, behind the router of the `crm-api` crate.

pub mod backup;
pub mod clock;
pub mod custom_fields;
pub mod db;
pub mod docs;
pub mod group_commit;
pub mod health;
pub mod http;
pub mod idempotency;
pub mod local;
pub mod metrics;
pub mod providers;
pub mod rate_limit;
pub mod record_reads;
pub mod rules;
pub mod serving_conns;
pub mod settings;
pub mod sqlite_reads;
pub mod tenancy;
pub mod transfer;
pub mod txn;

use std::future::Future;
use std::sync::Arc;

use crm_api::AppState;
use tokio::net::TcpListener;

pub use clock::{Clock, ShiftedClock, SystemClock};
pub use db::{Database, DatabaseUrl, PoolSettings, StoreKind};
pub use http::{App, DEFAULT_MAX_BODY_BYTES, HttpSettings, Routes};
pub use local::LocalProvider;
pub use tenancy::Tenancy;

/// The whole application over an open database: the CRM router, the health routes and
/// (unless served on their own listener) `/metrics`, behind the HTTP edge (request ids, logs, limits, timeouts).
pub fn app(db: Database, clock: Arc<dyn Clock>, settings: &HttpSettings) -> App {
    let vault = providers::Vault::new(db.clone(), None);
    app_with_vault(db, clock, settings, vault)
}

/// As [`app`], serving the linked accounts of real CRMs (HubSpot, Pipedrive) with the
/// credentials `vault` opens.
pub fn app_with_vault(
    db: Database,
    clock: Arc<dyn Clock>,
    settings: &HttpSettings,
    vault: providers::Vault,
) -> App {
    let local = Arc::new(LocalProvider::new(db.clone(), clock.clone()));
    let limits =
        providers::call::Limits::within(settings.request_timeout, settings.provider_concurrency);
    let state = AppState::new(
        Arc::new(Tenancy::new(db.clone(), clock.clone())),
        Arc::new(idempotency::IdempotencyKeys::new(db.clone(), clock)),
    )
    .with_provider(local::PROVIDER, local.clone())
    .with_provider(
        providers::hubspot::NAME,
        Arc::new(providers::hubspot::HubSpotConnector::new(
            vault.clone(),
            limits,
            local.clone(),
        )),
    )
    .with_provider(
        providers::pipedrive::NAME,
        Arc::new(providers::pipedrive::PipedriveConnector::new(
            vault, limits, local,
        )),
    );
    // The documentation routes stay outside crm_api's router: see `docs`.
    let (api, api_paths) = crm_api::router_and_paths(state);
    let mut routes = health::router(db.clone())
        .and(docs::router(settings.public_url.as_deref()))
        .merge(api, api_paths);
    if settings.metrics {
        routes = routes.and(metrics::router(db.clone()));
    }
    http::layered(routes, settings, &db)
}

/// Serves `app` on `listener` with the default connection settings until `shutdown`
/// completes, then finishes the requests in flight before returning.
pub async fn serve(
    listener: TcpListener,
    app: App,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    http::serve(listener, app, &HttpSettings::default(), shutdown).await
}

/// As [`serve`], with the header limits and timeouts of `settings` applied to connections
/// (pass the settings `app` was built with).
pub async fn serve_with(
    listener: TcpListener,
    app: App,
    settings: &HttpSettings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    http::serve(listener, app, settings, shutdown).await
}

/// What a first start on an empty database created, so a user can call the API at once.
#[derive(Debug, Clone)]
pub struct Bootstrap {
    pub project: tenancy::Project,
    pub key: String,
    pub account: tenancy::LinkedAccount,
}

/// On a database with no project, creates a project, an API key and a linked account.
/// Replicas started at once on an empty database bootstrap it once: the check and the
/// creation run under a lock that spans processes.
pub async fn bootstrap_if_empty(
    tenancy: &Tenancy,
) -> Result<Option<Bootstrap>, tenancy::TenancyError> {
    let lock = tenancy.db().exclusive("crm-bootstrap").await?;
    let first = async {
        if !tenancy.list_projects().await?.is_empty() {
            return Ok(None);
        }
        let project = tenancy.create_project("default").await?;
        let key = tenancy.create_key(&project.id).await?;
        let account = tenancy
            .create_linked_account(&project.id, tenancy::LOCAL_PROVIDER, "local")
            .await?;
        Ok(Some(Bootstrap {
            project,
            key: key.key,
            account,
        }))
    }
    .await;
    lock.release().await?;
    first
}
