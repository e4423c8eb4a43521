//! The operational routes `/healthz` and `/readyz`. They are not part of the CRM contract, so
//! they live outside `crm_api`'s router and never appear in its OpenAPI document.

use crate::http::Routes;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::{Value, json};

use crate::db::{Database, StoreKind};

/// The path answering whether the process is up.
pub const HEALTH_PATH: &str = "/healthz";
/// The path answering whether the server can serve the API.
pub const READY_PATH: &str = "/readyz";

/// The health routes over the server's database. Only `/readyz` holds the database: axum
/// clones a route's state for every request, which `/healthz` need not pay.
pub fn router(db: Database) -> Routes {
    Routes::new()
        .route(HEALTH_PATH, get(healthz))
        .route(READY_PATH, get(readyz).with_state(db))
}

/// Alive: the process answers. It touches nothing, so it stays cheap under load.
/// Always the same answer, so it is written once, not serialised per request.
async fn healthz() -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        r#"{"status":"ok"}"#,
    )
}

/// Ready: the database answers and every migration this binary carries has been applied.
async fn readyz(State(db): State<Database>) -> Result<Json<Value>, crm_api::ApiError> {
    match pending_migrations(&db).await {
        Ok(0) => Ok(Json(json!({ "status": "ready" }))),
        Ok(n) => Err(not_ready(format!(
            "{n} database migrations have not run yet"
        ))),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            Err(not_ready("the database cannot be reached".to_owned()))
        }
    }
}

fn not_ready(message: String) -> crm_api::ApiError {
    crm_api::ApiError::new(StatusCode::SERVICE_UNAVAILABLE, message)
}

/// How many of this binary's migrations the database has not applied successfully.
pub async fn pending_migrations(db: &Database) -> Result<usize, sqlx::Error> {
    let mut conn = db.acquire().await?;
    let has_table: Option<i64> = sqlx::query_scalar(db.pick(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
        "SELECT 1 FROM pg_catalog.pg_tables
         WHERE schemaname = current_schema() AND tablename = '_sqlx_migrations'",
    ))
    .fetch_optional(&mut *conn)
    .await?;
    let applied: Vec<i64> = if has_table.is_some() {
        sqlx::query_scalar(match db.kind() {
            StoreKind::Sqlite => "SELECT version FROM _sqlx_migrations WHERE success = 1",
            StoreKind::Postgres => "SELECT version FROM _sqlx_migrations WHERE success",
        })
        .fetch_all(&mut *conn)
        .await?
    } else {
        Vec::new()
    };
    conn.release();
    Ok(db
        .migrator()
        .iter()
        .filter(|m| !m.migration_type.is_down_migration() && !applied.contains(&m.version))
        .count())
}
