//! Backups. `admin backup` writes a consistent copy of a SQLite store while servers run on
//! it, with SQLite's `VACUUM INTO`; restoring is starting a server on the copy. A PostgreSQL
//! store is backed up with `pg_dump` and restored with `pg_restore` (the README's
//! Operations section); [`adopt_restored_positions`] makes a database restored on another
//! PostgreSQL server page correctly there.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::db::{Database, StoreKind};

/// A backup that was written.
#[derive(Debug, Clone)]
pub struct Backup {
    /// The new file, as an absolute path.
    pub path: PathBuf,
    /// Its size in bytes.
    pub bytes: u64,
    /// How long writing it (and syncing it to disk) took.
    pub took: Duration,
}

impl fmt::Display for Backup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "wrote {} ({} bytes) in {:.2} s",
            self.path.display(),
            self.bytes,
            self.took.as_secs_f64()
        )
    }
}

/// Why a backup was not written. No message holds a password.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(
        "admin backup copies SQLite stores only: back up a PostgreSQL database with pg_dump \
         and restore it with pg_restore, as the README's Operations section (Backups) shows"
    )]
    Postgres,
    #[error("{} already exists: a backup never overwrites a file, name a new one", .0.display())]
    Exists(PathBuf),
    #[error("could not create {}: {source}", path.display())]
    Create { path: PathBuf, source: io::Error },
    #[error("could not write the backup {}: {source}", path.display())]
    Copy { path: PathBuf, source: sqlx::Error },
    #[error("could not sync the backup {} to disk: {source}", path.display())]
    Sync { path: PathBuf, source: io::Error },
}

/// Writes a consistent copy of the SQLite store `db` to the new file `to`, while other
/// processes keep reading and writing it.
///
/// `VACUUM INTO` copies the store as one read transaction sees it, so the copy holds every
/// write committed before it started and none half; in WAL mode writers go on meanwhile.
/// The file is created first (refused if anything is there, so nothing is ever
/// overwritten), readable by its owner only, and synced to disk, with its directory, before
/// this returns. On failure the partial file is removed.
pub async fn sqlite(db: &Database, to: &Path) -> Result<Backup, BackupError> {
    if db.kind() != StoreKind::Sqlite {
        return Err(BackupError::Postgres);
    }
    let started = Instant::now();
    let path = std::path::absolute(to).map_err(|source| BackupError::Create {
        path: to.to_owned(),
        source,
    })?;
    create_empty(&path)?;
    let written = async {
        let Some(name) = path.to_str() else {
            return Err(BackupError::Create {
                path: path.clone(),
                source: io::Error::new(io::ErrorKind::InvalidInput, "the path is not UTF-8"),
            });
        };
        // An empty file is a valid target of VACUUM INTO.
        sqlx::query("VACUUM INTO $1")
            .bind(name)
            .execute(db.pool())
            .await
            .map_err(|source| BackupError::Copy {
                path: path.clone(),
                source,
            })?;
        // SQLite does not sync the file VACUUM INTO writes.
        sync(&path).map_err(|source| BackupError::Sync {
            path: path.clone(),
            source,
        })
    }
    .await;
    if let Err(e) = written {
        let _ = std::fs::remove_file(&path);
        return Err(e);
    }
    let bytes = std::fs::metadata(&path)
        .map(|m| m.len())
        .map_err(|source| BackupError::Sync {
            path: path.clone(),
            source,
        })?;
    let backup = Backup {
        path,
        bytes,
        took: started.elapsed(),
    };
    tracing::info!(path = %backup.path.display(), bytes, took_ms = backup.took.as_millis() as u64, "backup written");
    Ok(backup)
}

/// Creates `path` as a new empty file, readable and writable by its owner only.
fn create_empty(path: &Path) -> Result<(), BackupError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
        .open(path)
        .map(drop)
        .map_err(|source| match source.kind() {
            io::ErrorKind::AlreadyExists => BackupError::Exists(path.to_owned()),
            _ => BackupError::Create {
                path: path.to_owned(),
                source,
            },
        })
}

/// Syncs the file at `path`, then its directory (which holds its name).
fn sync(path: &Path) -> io::Result<()> {
    std::fs::File::open(path)?.sync_all()?;
    #[cfg(unix)]
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// The highest paging position any record holds, found through the position indexes (one
/// step per linked account and kind), never by reading the table; NULL without records.
const HIGHEST_POSITION: &str = "
    WITH RECURSIVE pairs (linked_account_id, kind) AS (
        (SELECT linked_account_id, kind FROM records ORDER BY linked_account_id, kind LIMIT 1)
        UNION ALL
        SELECT after.linked_account_id, after.kind FROM pairs p CROSS JOIN LATERAL (
            SELECT r.linked_account_id, r.kind FROM records r
            WHERE (r.linked_account_id, r.kind) > (p.linked_account_id, p.kind)
            ORDER BY r.linked_account_id, r.kind LIMIT 1
        ) after
    )
    SELECT MAX(GREATEST(
        (SELECT MAX(r.created_pos) FROM records r
         WHERE r.linked_account_id = p.linked_account_id AND r.kind = p.kind),
        (SELECT MAX(r.updated_pos) FROM records r
         WHERE r.linked_account_id = p.linked_account_id AND r.kind = p.kind)
    )) AS highest
    FROM pairs p";

/// Makes a PostgreSQL database restored from another server's `pg_dump` page correctly on
/// this one; run at start-up, before anything is served. Returns the records it moved.
///
/// Paging positions are transaction ids of the server that wrote them (see
/// [`Database::next_position`]), and a page serves only positions below the oldest
/// transaction still running. A fresh server's transaction ids start low, so the positions
/// of a restored database can be ahead of them: its records would be held back from every
/// listing until the new server's ids caught up. When any position is at or past the next
/// transaction id this server will assign (which no position it issued itself can be), every
/// position is moved down by the same amount, below zero: the order of the records is kept,
/// and each write from now on comes after them. `next` cursors issued before are not valid
/// across a restore. On SQLite, and on a database that never moved, it does nothing.
pub async fn adopt_restored_positions(db: &Database) -> Result<u64, sqlx::Error> {
    if db.kind() != StoreKind::Postgres {
        return Ok(0);
    }
    // One transaction on one connection: replicas started at once queue on the lock, one
    // moves the positions, and the others then find nothing to do.
    let mut tx = db.pool().begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))::text")
        .bind("crm-adopt-positions")
        .execute(&mut *tx)
        .await?;
    let highest: Option<i64> = sqlx::query_scalar(HIGHEST_POSITION)
        .fetch_one(&mut *tx)
        .await?;
    let next_xid: i64 =
        sqlx::query_scalar("SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint")
            .fetch_one(&mut *tx)
            .await?;
    let Some(highest) = highest.filter(|h| *h >= next_xid) else {
        return Ok(0);
    };
    let moved = sqlx::query(
        "UPDATE records SET created_pos = created_pos - $1, updated_pos = updated_pos - $1",
    )
    .bind(highest + 1)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    tx.commit().await?;
    tracing::warn!(
        records = moved,
        highest_position = highest,
        next_transaction_id = next_xid,
        "the database holds positions of another PostgreSQL server (restored from a dump): \
         moved them below this server's transaction ids, in the same order"
    );
    Ok(moved)
}
