//! The linked accounts of real CRMs as the connectors need them: where the provider is,
//! the credentials (sealed in the database, opened here with the server's secret key),
//! their version and the account's status.
//!
//! Credentials change in three ways: `admin update-credentials`, `admin rotate-secret-key`,
//! and an OAuth refresh. Each bumps `credentials_version`. A refresh runs under a lock
//! across replicas (see [`Vault::refresh`]) and first re-reads the row, so however many
//! requests on however many replicas find a token expired at once, the provider sees one
//! refresh.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use sqlx::Row;

use super::credentials::{Credentials, CredentialsError, OAuthTokens, SecretKey, sealed_key_id};
use crate::db::{Database, timestamp};
use crate::txn::args;

/// The providers a linked account may be of, besides `local`.
pub const REMOTE_PROVIDERS: [&str; 2] = ["hubspot", "pipedrive"];

/// An account's status: it works, or its provider refused to renew its token and an
/// operator must give it new credentials (`admin update-credentials`).
pub const ACTIVE: &str = "active";
pub const NEEDS_REAUTH: &str = "needs_reauth";

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
    #[error("no linked account {0}")]
    UnknownAccount(String),
    #[error(
        "linked account {0} is of the local provider, which keeps its records in this database and has no credentials"
    )]
    Local(String),
    #[error(
        "linked accounts of real CRMs exist ({0}), and their credentials are sealed: give the secret key in CRM_SECRET_KEY, CRM_SECRET_KEY_FILE or --secret-key-file"
    )]
    NoKey(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Write(#[from] crate::txn::TxnError),
}

/// A linked account of a real CRM, with its credentials opened.
#[derive(Debug, Clone)]
pub struct RemoteAccount {
    pub id: String,
    pub project_id: String,
    pub provider: String,
    pub base_url: Option<String>,
    pub status: String,
    pub credentials: Credentials,
    pub version: i64,
}

/// What `admin rotate-secret-key` did.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Rotation {
    pub accounts: usize,
    pub old_key: String,
    pub new_key: String,
}

/// The credentials of linked accounts, sealed at rest.
#[derive(Clone)]
pub struct Vault {
    db: Database,
    key: Option<SecretKey>,
    /// One lock per account inside this process, so concurrent requests that need a refresh
    /// wait for the first one instead of queueing on the database lock.
    refreshing: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
}

impl Vault {
    pub fn new(db: Database, key: Option<SecretKey>) -> Vault {
        Vault {
            db,
            key,
            refreshing: Arc::default(),
        }
    }

    pub fn db(&self) -> &Database {
        &self.db
    }

    fn key(&self) -> Result<&SecretKey, VaultError> {
        self.key
            .as_ref()
            .ok_or_else(|| VaultError::NoKey("the secret key is needed to use them".into()))
    }

    /// Whether this server can open every stored credential: refused without a key when
    /// accounts of real CRMs exist, and with a key that is not the one they were sealed under.
    pub async fn check_key(&self) -> Result<(), VaultError> {
        let rows = sqlx::query(
            "SELECT id, provider, credentials FROM linked_accounts WHERE credentials IS NOT NULL ORDER BY id",
        )
        .fetch_all(self.db.pool())
        .await?;
        if rows.is_empty() {
            return Ok(());
        }
        let Some(key) = &self.key else {
            let mut providers: Vec<String> = rows.iter().map(|r| r.get("provider")).collect();
            providers.dedup();
            return Err(VaultError::NoKey(format!(
                "{} of {}",
                rows.len(),
                providers.join(", ")
            )));
        };
        for row in rows {
            let id: String = row.get("id");
            let stored: String = row.get("credentials");
            match sealed_key_id(&stored) {
                Some(stored_id) if stored_id == key.id() => {}
                Some(stored_id) => {
                    return Err(CredentialsError::WrongKey {
                        account: id,
                        stored: stored_id.to_owned(),
                        given: key.id(),
                    }
                    .into());
                }
                None => return Err(CredentialsError::Damaged(id).into()),
            }
        }
        Ok(())
    }

    /// Seals `credentials` onto a new account row's values: what `admin create-account`
    /// stores for an account of a real CRM.
    pub fn seal(&self, account_id: &str, credentials: &Credentials) -> Result<String, VaultError> {
        Ok(self.key()?.seal(account_id, credentials))
    }

    /// The account with its credentials opened.
    pub async fn load(&self, account_id: &str) -> Result<RemoteAccount, VaultError> {
        let mut conn = self.db.acquire().await?;
        let row = sqlx::query(
            "SELECT id, project_id, provider, base_url, status, credentials, credentials_version \
             FROM linked_accounts WHERE id = $1",
        )
        .bind(account_id)
        .fetch_optional(&mut *conn)
        .await?;
        conn.release();
        let row = row.ok_or_else(|| VaultError::UnknownAccount(account_id.to_owned()))?;
        let stored: Option<String> = row.get("credentials");
        let Some(stored) = stored else {
            return Err(VaultError::Local(account_id.to_owned()));
        };
        Ok(RemoteAccount {
            id: row.get("id"),
            project_id: row.get("project_id"),
            provider: row.get("provider"),
            base_url: row.get("base_url"),
            status: row.get("status"),
            credentials: self.key()?.open(account_id, &stored)?,
            version: row.get("credentials_version"),
        })
    }

    /// Replaces an account's credentials (and makes it `active` again).
    pub async fn update_credentials(
        &self,
        account_id: &str,
        credentials: &Credentials,
    ) -> Result<(), VaultError> {
        let current = self.load(account_id).await;
        match current {
            Ok(_) | Err(VaultError::Credentials(_)) => {}
            Err(other) => return Err(other),
        }
        self.store(account_id, credentials).await
    }

    /// Seals and stores an account's new credentials, bumps their version, and makes the
    /// account `active`.
    async fn store(&self, account_id: &str, credentials: &Credentials) -> Result<(), VaultError> {
        let sealed = self.seal(account_id, credentials)?;
        let mut tx = self.db.begin().await?;
        tx.execute(
            "UPDATE linked_accounts SET credentials = $1, credentials_version = credentials_version + 1, \
             status = $2 WHERE id = $3",
            args![&sealed, ACTIVE, account_id],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Re-seals every stored credential under `new`, in one transaction: all or none.
    pub async fn rotate(&self, new: &SecretKey) -> Result<Rotation, VaultError> {
        let old = self.key()?;
        let mut tx = self.db.begin_write().await?;
        let rows = sqlx::query(
            "SELECT id, credentials FROM linked_accounts WHERE credentials IS NOT NULL ORDER BY id",
        )
        .fetch_all(&mut *tx)
        .await?;
        let mut resealed = Vec::with_capacity(rows.len());
        for row in &rows {
            let id: String = row.get("id");
            let stored: String = row.get("credentials");
            let credentials = match old.open(&id, &stored) {
                Ok(c) => c,
                // Already under the new key: an earlier rotation that was interrupted cannot
                // leave this state (it is one transaction), but a re-run is harmless.
                Err(CredentialsError::WrongKey { .. }) if new.open(&id, &stored).is_ok() => {
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            resealed.push((id.clone(), new.seal(&id, &credentials)));
        }
        for (id, sealed) in &resealed {
            sqlx::query(
                "UPDATE linked_accounts SET credentials = $1, credentials_version = credentials_version + 1 WHERE id = $2",
            )
            .bind(sealed)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(Rotation {
            accounts: resealed.len(),
            old_key: old.id(),
            new_key: new.id(),
        })
    }

    /// Marks an account `needs_reauth`: its provider refused to renew its token.
    pub async fn mark_needs_reauth(&self, account_id: &str) -> Result<(), VaultError> {
        let mut tx = self.db.begin().await?;
        tx.execute(
            "UPDATE linked_accounts SET status = $1 WHERE id = $2",
            args![NEEDS_REAUTH, account_id],
        )
        .await?;
        tx.commit().await?;
        tracing::warn!(
            account = account_id,
            "the provider refused to renew the account's token; it needs new credentials"
        );
        Ok(())
    }

    /// Renews the OAuth tokens of `account`, once across every request and replica.
    ///
    /// `seen` is the version of the credentials the caller found wanting (expired, or
    /// refused with 401). Under a lock per account (in this process, then across replicas on
    /// PostgreSQL) the row is read again: when its version has moved past `seen`, someone
    /// else refreshed and those credentials are returned. Otherwise `renew` runs with the
    /// current tokens and what it returns is sealed and stored with the version bumped.
    /// When `renew` fails, nothing is stored and its error is returned.
    pub async fn refresh<F, Fut, E>(
        &self,
        account_id: &str,
        seen: i64,
        renew: F,
    ) -> Result<Result<RemoteAccount, E>, VaultError>
    where
        F: FnOnce(OAuthTokens) -> Fut,
        Fut: Future<Output = Result<OAuthTokens, E>>,
    {
        let local = {
            let mut map = self.refreshing.lock().expect("not poisoned");
            map.entry(account_id.to_owned()).or_default().clone()
        };
        let _in_process = local.lock().await;
        let across = self
            .db
            .exclusive(&format!("crm-refresh:{account_id}"))
            .await?;
        let outcome = async {
            let current = self.load(account_id).await?;
            if current.version != seen {
                return Ok(Ok(current));
            }
            let Credentials::OAuth(tokens) = current.credentials.clone() else {
                return Ok(Ok(current));
            };
            match renew(tokens).await {
                Ok(renewed) => {
                    let credentials = Credentials::OAuth(renewed);
                    self.store(account_id, &credentials).await?;
                    tracing::info!(account = account_id, at = %timestamp(chrono::Utc::now()), "renewed the account's OAuth token");
                    Ok(Ok(RemoteAccount {
                        credentials,
                        version: current.version + 1,
                        status: ACTIVE.to_owned(),
                        ..current
                    }))
                }
                Err(e) => Ok(Err(e)),
            }
        }
        .await;
        across.release().await?;
        outcome
    }
}
