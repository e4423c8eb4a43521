//! The `Idempotency-Key`s of POST requests, kept per project in the server's database.
//!
//! A key is claimed before its request runs and completed with the answer after. A create
//! also links the record it made to the key in its own transaction (see
//! [`crate::local`]), so that a retry after a crash finds that record instead of making
//! another.

use std::sync::Arc;

use crate::txn::args;
use async_trait::async_trait;
use crm_api::ApiError;
use crm_api::service::{
    AccountScope, IdempotencyClaim, IdempotencyStore, ServiceResult, StoredResponse,
};

use crate::clock::Clock;
use crate::db::{Database, timestamp};
use crate::tenancy::internal;

/// How long an idempotency key is remembered.
pub const IDEMPOTENCY_KEY_LIFETIME: chrono::Duration = chrono::Duration::hours(24);
/// After how long an unfinished claim of a key is given up.
pub const ABANDONED_CLAIM_AFTER: chrono::Duration = chrono::Duration::minutes(5);

/// The idempotency keys of every project.
#[derive(Clone)]
pub struct IdempotencyKeys {
    db: Database,
    clock: Arc<dyn Clock>,
}

impl IdempotencyKeys {
    pub fn new(db: Database, clock: Arc<dyn Clock>) -> Self {
        Self { db, clock }
    }
}

#[async_trait]
impl IdempotencyStore for IdempotencyKeys {
    async fn claim_idempotency_key(
        &self,
        scope: &AccountScope,
        key: &str,
        fingerprint: &str,
    ) -> ServiceResult<IdempotencyClaim> {
        let now = self.clock.now();
        let abandoned_before = timestamp(now - ABANDONED_CLAIM_AFTER);
        let mut tx = self.db.begin().await.map_err(internal)?;
        let expired_before = timestamp(now - IDEMPOTENCY_KEY_LIFETIME);
        let claimed_at = timestamp(now);
        // Keys live 24 hours. A claim whose request never finished (the server stopped
        // mid-way) is given up after a few minutes so that a retry can run; if its write
        // had landed (`record_id`), the key is kept so that the retry finds that record.
        tx.execute(
            "DELETE FROM idempotency_keys WHERE project_id = $1 AND (created_at < $2
             OR (status IS NULL AND record_id IS NULL AND (claimed_at IS NULL OR claimed_at < $3)))",
            args![&scope.project_id, &expired_before, &abandoned_before],
        )
        .await
        .map_err(internal)?;
        // Concurrent first claims of one key: one inserts, the others find its row (locked
        // until the first commits, on PostgreSQL) and answer 409. A row found taken by the
        // insert may be gone by the time it is read (another replica's sweep expired it):
        // then the key is free, and the insert is tried again.
        let mut attempts = 0;
        let row = loop {
            attempts += 1;
            let inserted = tx
                .execute(
                    "INSERT INTO idempotency_keys (project_id, key, fingerprint, created_at, claimed_at)
                     VALUES ($1, $2, $3, $4, $4) ON CONFLICT (project_id, key) DO NOTHING",
                    args![&scope.project_id, key, fingerprint, &claimed_at],
                )
                .await
                .map_err(internal)?;
            if inserted == 1 {
                tx.commit().await.map_err(internal)?;
                return Ok(IdempotencyClaim::Proceed);
            }
            let found = tx
                .fetch_optional(
                    self.db.pick(
                        "SELECT fingerprint, status, headers, body, claimed_at FROM idempotency_keys
                         WHERE project_id = $1 AND key = $2",
                        "SELECT fingerprint, status, headers, body, claimed_at FROM idempotency_keys
                         WHERE project_id = $1 AND key = $2 FOR UPDATE",
                    ),
                    args![&scope.project_id, key],
                )
                .await
                .map_err(internal)?;
            match found {
                Some(row) => break row,
                None if attempts < 3 => continue,
                None => {
                    return Err(ApiError::conflict(
                        "this Idempotency-Key is being claimed and released by other requests; retry later",
                    ));
                }
            }
        };
        if row.text(0) != fingerprint {
            return Err(ApiError::unprocessable(
                "Idempotency-Key",
                "this Idempotency-Key was used with another request; use a new key for a new request",
            ));
        }
        let claim = match row.opt_int(1) {
            None if row.opt_text(4).is_some_and(|at| at >= abandoned_before) => {
                return Err(ApiError::conflict(
                    "the first request with this Idempotency-Key is still running; retry later",
                ));
            }
            None => {
                // Abandoned after its write landed: claim it again; the create finds the
                // record it made.
                tx.execute(
                    "UPDATE idempotency_keys SET claimed_at = $1 WHERE project_id = $2 AND key = $3",
                    args![&claimed_at, &scope.project_id, key],
                )
                .await
                .map_err(internal)?;
                IdempotencyClaim::Proceed
            }
            Some(status) => IdempotencyClaim::Replay(StoredResponse {
                status: u16::try_from(status).unwrap_or(200),
                headers: serde_json::from_str(row.opt_text(2).as_deref().unwrap_or("[]"))
                    .unwrap_or_default(),
                body: row.opt_blob(3).unwrap_or_default(),
            }),
        };
        tx.commit().await.map_err(internal)?;
        Ok(claim)
    }

    async fn complete_idempotency_key(
        &self,
        scope: &AccountScope,
        key: &str,
        response: &StoredResponse,
    ) -> ServiceResult<()> {
        let headers = serde_json::to_string(&response.headers).unwrap_or_default();
        let mut tx = self.db.begin().await.map_err(internal)?;
        tx.execute(
            "UPDATE idempotency_keys SET status = $1, headers = $2, body = $3
             WHERE project_id = $4 AND key = $5",
            args![
                i64::from(response.status),
                &headers,
                response.body.as_slice(),
                &scope.project_id,
                key
            ],
        )
        .await
        .map_err(internal)?;
        tx.commit().await.map_err(internal)?;
        Ok(())
    }

    async fn release_idempotency_key(&self, scope: &AccountScope, key: &str) -> ServiceResult<()> {
        // A key whose write landed stays, given up at once, so that a retry finds the
        // record; any other unfinished claim goes.
        let mut tx = self.db.begin().await.map_err(internal)?;
        tx.execute(
            "DELETE FROM idempotency_keys
             WHERE project_id = $1 AND key = $2 AND status IS NULL AND record_id IS NULL",
            args![&scope.project_id, key],
        )
        .await
        .map_err(internal)?;
        tx.execute(
            "UPDATE idempotency_keys SET claimed_at = NULL
             WHERE project_id = $1 AND key = $2 AND status IS NULL",
            args![&scope.project_id, key],
        )
        .await
        .map_err(internal)?;
        tx.commit().await.map_err(internal)?;
        Ok(())
    }
}
