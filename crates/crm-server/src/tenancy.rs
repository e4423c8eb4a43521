//! Projects, API keys and linked accounts: who may call, and on which connected CRM.
//!
//! An API key reads `crm_<key id>_<secret>`. Only the SHA-256 of the secret is stored, and
//! it is compared in constant time, so neither the database nor response timing reveals a
//! key.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use crm_api::ApiError;
use crm_api::service::{AccountScope, ApiKey};
use rand::RngCore;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use crm_api::service::Authorizer;
use sqlx::Row;
use subtle::ConstantTimeEq;

use crate::clock::Clock;
use crate::db::{Database, timestamp};
use crate::sqlite_reads::bind_numbered;

/// The built-in provider: records live in this server's own database.
pub const LOCAL_PROVIDER: &str = "local";

#[derive(Debug, thiserror::Error)]
pub enum TenancyError {
    #[error("no project {0}")]
    UnknownProject(String),
    #[error("no API key {0}")]
    UnknownKey(String),
    #[error("unknown provider {0:?}: the providers are local, hubspot and pipedrive")]
    UnknownProvider(String),
    #[error("a linked account of {0} needs credentials (--credentials <file.json>)")]
    NeedsCredentials(String),
    #[error("a linked account of the local provider takes no credentials and no base URL")]
    LocalTakesNoCredentials,
    #[error("--base-url is not an http:// or https:// URL without a user name or password")]
    BadBaseUrl(String),
    #[error(transparent)]
    Vault(#[from] crate::providers::accounts::VaultError),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Project {
    pub id: String,
    pub name: String,
    pub created_at: String,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct KeyInfo {
    pub id: String,
    pub project_id: String,
    pub created_at: String,
    pub revoked_at: Option<String>,
}

/// A key just created: the only moment its full text exists.
#[derive(Debug, Clone)]
pub struct NewKey {
    pub info: KeyInfo,
    pub key: String,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LinkedAccount {
    pub id: String,
    pub project_id: String,
    pub provider: String,
    pub name: String,
    pub created_at: String,
    /// Where the provider's API is, when not at its public host (a sandbox, a test double).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// `active`, or `needs_reauth` once the provider refused to renew its token.
    pub status: String,
}

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn hash(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

/// Splits `crm_<id>_<secret>`; the id is hex, the secret URL-safe base64 (which may hold `_`).
fn split_key(key: &str) -> Option<(&str, &str)> {
    let rest = key.strip_prefix("crm_")?;
    let (id, secret) = rest.split_once('_')?;
    (!id.is_empty() && !secret.is_empty()).then_some((id, secret))
}

/// What a key check reads: the key's project, secret hash and revocation time, and the
/// provider of the linked account asked for (`None` when the project has no such account).
type Found = (String, Vec<u8>, Option<String>, Option<String>);

/// How long a process on PostgreSQL trusts a key check it made. Another replica (or the
/// `admin` command) may revoke the key meanwhile: the README states this bound.
pub const KEY_CHECK_TRUST: Duration = Duration::from_millis(250);

/// How many key checks are kept at most; when full, they are all dropped.
const KEY_CHECKS_KEPT: usize = 10_000;

/// Key checks a process on PostgreSQL trusts for [`KEY_CHECK_TRUST`], so most requests make
/// one round trip to the database instead of two. Only checks that pass are kept (a key
/// that is not revoked, with the account in its project); the secret is still compared with
/// the kept hash on every request. A key revoked through this process is dropped at once.
#[derive(Default)]
pub struct KeyChecks {
    kept: Mutex<HashMap<(String, String), (Instant, Found)>>,
}

impl KeyChecks {
    fn get(&self, key_id: &str, account_id: &str) -> Option<Found> {
        let kept = self.kept.lock().expect("not poisoned");
        let (at, found) = kept.get(&(key_id.to_owned(), account_id.to_owned()))?;
        (at.elapsed() < KEY_CHECK_TRUST).then(|| found.clone())
    }

    fn keep(&self, key_id: &str, account_id: &str, found: &Found) {
        if found.2.is_some() || found.3.is_none() {
            return;
        }
        let mut kept = self.kept.lock().expect("not poisoned");
        if kept.len() >= KEY_CHECKS_KEPT {
            kept.clear();
        }
        kept.insert(
            (key_id.to_owned(), account_id.to_owned()),
            (Instant::now(), found.clone()),
        );
    }

    fn forget_key(&self, key_id: &str) {
        self.kept
            .lock()
            .expect("not poisoned")
            .retain(|(kept, _), _| kept != key_id);
    }
}

/// Projects, keys and linked accounts in the server's database.
#[derive(Clone)]
pub struct Tenancy {
    db: Database,
    clock: Arc<dyn Clock>,
}

impl Tenancy {
    pub fn new(db: Database, clock: Arc<dyn Clock>) -> Self {
        Self { db, clock }
    }

    pub fn db(&self) -> &Database {
        &self.db
    }

    fn now(&self) -> String {
        timestamp(self.clock.now())
    }

    pub async fn create_project(&self, name: &str) -> Result<Project, TenancyError> {
        let project = Project {
            id: new_id(),
            name: name.to_owned(),
            created_at: self.now(),
        };
        sqlx::query("INSERT INTO projects (id, name, created_at) VALUES ($1, $2, $3)")
            .bind(&project.id)
            .bind(&project.name)
            .bind(&project.created_at)
            .execute(self.db.pool())
            .await?;
        Ok(project)
    }

    pub async fn list_projects(&self) -> Result<Vec<Project>, TenancyError> {
        let rows = sqlx::query("SELECT id, name, created_at FROM projects ORDER BY created_at, id")
            .fetch_all(self.db.pool())
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| Project {
                id: r.get("id"),
                name: r.get("name"),
                created_at: r.get("created_at"),
            })
            .collect())
    }

    async fn require_project(&self, project_id: &str) -> Result<(), TenancyError> {
        let found: Option<i64> = sqlx::query_scalar("SELECT 1 FROM projects WHERE id = $1")
            .bind(project_id)
            .fetch_optional(self.db.pool())
            .await?;
        found
            .map(|_| ())
            .ok_or_else(|| TenancyError::UnknownProject(project_id.to_owned()))
    }

    pub async fn create_key(&self, project_id: &str) -> Result<NewKey, TenancyError> {
        self.require_project(project_id).await?;
        let mut id = [0u8; 8];
        let mut secret = [0u8; 32];
        rand::rng().fill_bytes(&mut id);
        rand::rng().fill_bytes(&mut secret);
        let id: String = id.iter().map(|b| format!("{b:02x}")).collect();
        let secret = URL_SAFE_NO_PAD.encode(secret);
        let info = KeyInfo {
            id: id.clone(),
            project_id: project_id.to_owned(),
            created_at: self.now(),
            revoked_at: None,
        };
        sqlx::query(
            "INSERT INTO api_keys (id, project_id, secret_hash, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(&info.id)
        .bind(&info.project_id)
        .bind(hash(&secret))
        .bind(&info.created_at)
        .execute(self.db.pool())
        .await?;
        Ok(NewKey {
            info,
            key: format!("crm_{id}_{secret}"),
        })
    }

    pub async fn list_keys(&self, project_id: Option<&str>) -> Result<Vec<KeyInfo>, TenancyError> {
        let rows = sqlx::query(
            "SELECT id, project_id, created_at, revoked_at FROM api_keys
             WHERE $1 IS NULL OR project_id = $1 ORDER BY created_at, id",
        )
        .bind(project_id)
        .fetch_all(self.db.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| KeyInfo {
                id: r.get("id"),
                project_id: r.get("project_id"),
                created_at: r.get("created_at"),
                revoked_at: r.get("revoked_at"),
            })
            .collect())
    }

    /// Revokes a key; from the next request on, it is refused.
    pub async fn revoke_key(&self, key_id: &str) -> Result<(), TenancyError> {
        let done =
            sqlx::query("UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $1) WHERE id = $2")
                .bind(self.now())
                .bind(key_id)
                .execute(self.db.pool())
                .await?;
        if done.rows_affected() == 0 {
            return Err(TenancyError::UnknownKey(key_id.to_owned()));
        }
        if let Some(checks) = self.db.key_checks() {
            checks.forget_key(key_id);
        }
        Ok(())
    }

    pub async fn create_linked_account(
        &self,
        project_id: &str,
        provider: &str,
        name: &str,
    ) -> Result<LinkedAccount, TenancyError> {
        if provider != LOCAL_PROVIDER {
            if crate::providers::accounts::REMOTE_PROVIDERS.contains(&provider) {
                return Err(TenancyError::NeedsCredentials(provider.to_owned()));
            }
            return Err(TenancyError::UnknownProvider(provider.to_owned()));
        }
        self.insert_linked_account(project_id, provider, name, None, |_| Ok(None))
            .await
    }

    /// Links an account of a real CRM (HubSpot, Pipedrive): its credentials are sealed
    /// under the vault's secret key before they reach the database.
    pub async fn create_remote_account(
        &self,
        vault: &crate::providers::accounts::Vault,
        project_id: &str,
        provider: &str,
        name: &str,
        base_url: Option<&str>,
        credentials: &crate::providers::credentials::Credentials,
    ) -> Result<LinkedAccount, TenancyError> {
        if provider == LOCAL_PROVIDER {
            return Err(TenancyError::LocalTakesNoCredentials);
        }
        if !crate::providers::accounts::REMOTE_PROVIDERS.contains(&provider) {
            return Err(TenancyError::UnknownProvider(provider.to_owned()));
        }
        let base_url = base_url
            .map(|u| {
                let trimmed = u.trim_end_matches('/');
                match url::Url::parse(trimmed) {
                    // No user name or password in it: it is shown by `list-accounts`.
                    Ok(parsed)
                        if matches!(parsed.scheme(), "http" | "https")
                            && parsed.username().is_empty()
                            && parsed.password().is_none() =>
                    {
                        Ok(trimmed.to_owned())
                    }
                    _ => Err(TenancyError::BadBaseUrl(u.to_owned())),
                }
            })
            .transpose()?;
        self.insert_linked_account(project_id, provider, name, base_url, |id| {
            Ok(Some(vault.seal(id, credentials)?))
        })
        .await
    }

    async fn insert_linked_account(
        &self,
        project_id: &str,
        provider: &str,
        name: &str,
        base_url: Option<String>,
        seal: impl FnOnce(&str) -> Result<Option<String>, TenancyError>,
    ) -> Result<LinkedAccount, TenancyError> {
        self.require_project(project_id).await?;
        let account = LinkedAccount {
            id: new_id(),
            project_id: project_id.to_owned(),
            provider: provider.to_owned(),
            name: name.to_owned(),
            created_at: self.now(),
            base_url,
            status: crate::providers::accounts::ACTIVE.to_owned(),
        };
        let sealed = seal(&account.id)?;
        sqlx::query(
            "INSERT INTO linked_accounts (id, project_id, provider, name, created_at, base_url, credentials) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&account.id)
        .bind(&account.project_id)
        .bind(&account.provider)
        .bind(&account.name)
        .bind(&account.created_at)
        .bind(&account.base_url)
        .bind(sealed)
        .execute(self.db.pool())
        .await?;
        Ok(account)
    }

    pub async fn list_linked_accounts(
        &self,
        project_id: Option<&str>,
    ) -> Result<Vec<LinkedAccount>, TenancyError> {
        let rows = sqlx::query(
            "SELECT id, project_id, provider, name, created_at, base_url, status FROM linked_accounts
             WHERE $1 IS NULL OR project_id = $1 ORDER BY created_at, id",
        )
        .bind(project_id)
        .fetch_all(self.db.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| LinkedAccount {
                id: r.get("id"),
                project_id: r.get("project_id"),
                provider: r.get("provider"),
                name: r.get("name"),
                created_at: r.get("created_at"),
                base_url: r.get("base_url"),
                status: r.get("status"),
            })
            .collect())
    }
}

#[async_trait]
impl Authorizer for Tenancy {
    /// Checks `key` and that `account_id` is a linked account of the key's project.
    async fn authorize(&self, key: &ApiKey, account_id: &str) -> Result<AccountScope, ApiError> {
        let invalid = || ApiError::unauthorized("invalid API key");
        let (key_id, secret) = split_key(&key.0).ok_or_else(invalid)?;
        // The key and the linked account in one round trip: the account is looked up only
        // within the key's own project, and its provider is NULL when it is not there.
        const KEY_AND_ACCOUNT: &str = "SELECT k.project_id, k.secret_hash, k.revoked_at, a.provider \
             FROM api_keys k \
             LEFT JOIN linked_accounts a ON a.id = $2 AND a.project_id = k.project_id \
             WHERE k.id = $1";
        let trusted = self.db.key_checks().and_then(|c| c.get(key_id, account_id));
        let found: Option<Found> = match (trusted, self.db.sqlite_reads()) {
            (Some(found), _) => Some(found),
            // A GET of a local account reads its record next, in the same read transaction.
            (None, Some(reads)) => reads
                .read_and_hold(
                    |conn| {
                        let mut statement = conn.prepare_cached(KEY_AND_ACCOUNT)?;
                        bind_numbered(&mut statement, &[&key_id, &account_id])?;
                        let mut rows = statement.raw_query();
                        rows.next()?
                            .map(|r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
                            .transpose()
                    },
                    |found: &Option<Found>| {
                        found.as_ref().and_then(|f| f.3.as_deref()) == Some(LOCAL_PROVIDER)
                    },
                )
                .map_err(read_failed)?,
            (None, None) => {
                let mut conn = self.db.acquire().await.map_err(internal)?;
                let found: Option<Found> = sqlx::query(KEY_AND_ACCOUNT)
                    .bind(key_id)
                    .bind(account_id)
                    .fetch_optional(&mut *conn)
                    .await
                    .map_err(internal)?
                    .map(|row| {
                        (
                            row.get("project_id"),
                            row.get("secret_hash"),
                            row.get("revoked_at"),
                            row.get("provider"),
                        )
                    });
                conn.release();
                if let (Some(checks), Some(found)) = (self.db.key_checks(), &found) {
                    checks.keep(key_id, account_id, found);
                }
                found
            }
        };
        let presented = hash(secret);
        let Some((project_id, stored, revoked_at, provider)) = found else {
            // Compare anyway, so an unknown key id costs the same time as a wrong secret.
            let _ = presented.ct_eq(&[0u8; 32]);
            return Err(invalid());
        };
        if !bool::from(presented.ct_eq(&stored)) {
            return Err(invalid());
        }
        if revoked_at.is_some() {
            return Err(ApiError::unauthorized("this API key has been revoked"));
        }
        let Some(provider) = provider else {
            return Err(ApiError::not_found(format!(
                "linked account {account_id} not found for this API key's project"
            ))
            .with("parameter", "x-account-id"));
        };
        Ok(AccountScope {
            project_id,
            account_id: account_id.to_owned(),
            provider,
        })
    }
}

/// A failed in-place SQLite read (see `sqlite_reads`), as the caller sees it: 500, the
/// error itself in the log.
pub(crate) fn read_failed(e: crate::sqlite_reads::ReadError) -> ApiError {
    internal(sqlx::Error::Protocol(e.to_string()))
}

/// A database failure, as the caller sees it: 503 when the database cannot be reached (it
/// may come back; retry), 500 otherwise. The error itself goes to the log only.
pub(crate) fn internal(e: impl Into<crate::txn::TxnError>) -> ApiError {
    use crate::group_commit::WriteError;
    use crate::txn::TxnError;
    let e = e.into();
    let unreachable = match &e {
        TxnError::Sqlx(e) => unreachable(e),
        TxnError::Sqlite(WriteError::Busy(_)) => true,
        TxnError::Sqlite(_) => false,
    };
    database_error(&e, unreachable)
}

/// [`internal`] for an error that several requests share (see `record_reads`).
pub(crate) fn internal_shared(e: &sqlx::Error) -> ApiError {
    database_error(e, unreachable(e))
}

/// Whether `e` says the database cannot be reached now, rather than that a statement failed.
fn unreachable(e: &sqlx::Error) -> bool {
    matches!(
        e,
        sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed
    ) || matches!(e, sqlx::Error::Database(db) if db.code().is_some_and(|c| c.starts_with("57P") || c.starts_with("08")))
}

fn database_error(e: &dyn std::fmt::Display, unreachable: bool) -> ApiError {
    tracing::error!(error = %e, "database error");
    if unreachable {
        ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "the server cannot reach its database; retry later",
        )
    } else {
        ApiError::internal("the server could not reach its database")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(revoked: bool, provider: Option<&str>) -> Found {
        (
            "p".to_owned(),
            vec![1; 32],
            revoked.then(|| "2026-01-01T00:00:00Z".to_owned()),
            provider.map(str::to_owned),
        )
    }

    #[test]
    fn a_key_check_is_trusted_for_a_moment_only_when_it_passed() {
        let checks = KeyChecks::default();
        checks.keep("k", "a", &found(false, Some("local")));
        checks.keep("revoked", "a", &found(true, Some("local")));
        checks.keep("k", "elsewhere", &found(false, None));
        assert_eq!(checks.get("k", "a"), Some(found(false, Some("local"))));
        assert_eq!(checks.get("k", "b"), None);
        assert_eq!(checks.get("revoked", "a"), None);
        assert_eq!(checks.get("k", "elsewhere"), None);
        std::thread::sleep(KEY_CHECK_TRUST + Duration::from_millis(20));
        assert_eq!(checks.get("k", "a"), None, "trusted past its bound");
    }

    #[test]
    fn a_key_revoked_here_is_forgotten_at_once() {
        let checks = KeyChecks::default();
        checks.keep("k", "a", &found(false, Some("local")));
        checks.keep("k", "b", &found(false, Some("hubspot")));
        checks.keep("other", "a", &found(false, Some("local")));
        checks.forget_key("k");
        assert_eq!(checks.get("k", "a"), None);
        assert_eq!(checks.get("k", "b"), None);
        assert!(checks.get("other", "a").is_some());
    }

    #[test]
    fn keys_split_into_id_and_secret() {
        assert_eq!(split_key("crm_ab12_se_cr-et"), Some(("ab12", "se_cr-et")));
        for bad in ["", "crm_", "crm_ab12", "crm__x", "xyz_ab_cd", "crm_ab12_"] {
            assert_eq!(split_key(bad), None, "{bad}");
        }
    }
}
