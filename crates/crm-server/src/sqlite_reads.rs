//! The hot reads of a SQLite store, run in place on the calling thread.
//!
//! sqlx runs every SQLite statement on a worker thread of its connection and hands each
//! command and each row across threads: a profile of `GET /unified/crm/contacts/{id}` under
//! load spent about 40% of the server's time switching threads (futex waits and wake-ups),
//! and a page of 100 contacts crossed threads for every row. The few reads on the hot path
//! (the API key with its linked account, one record, a page of records, the mapping) go
//! through here instead: read-only connections of the same file, each used by one caller at
//! a time, with their statements cached. A read in WAL mode never waits for a writer, so it
//! takes microseconds and does not hold up the runtime; writes stay on sqlx.
//!
//! The statements are the same `$N` texts the PostgreSQL side runs through sqlx; SQLite
//! reads `$1` as a parameter named `$1`, and [`bind_numbered`] binds each by that name, so
//! the order they appear in the text does not matter.
//!
//! Each read transaction of a WAL database takes and releases a read lock in the shared
//! memory index (a `fcntl` lock and a mutex, about a sixth of a GET's server time when every
//! read was its own transaction). A GET's key check and its first record read share one:
//! inside [`holding`] (which the HTTP edge wraps around each GET), [`SqliteReads::read_and_hold`]
//! leaves its read transaction open, and the next [`SqliteReads::read`] of the same request
//! runs in it and ends it. The held transaction also ends when the request ends or a write
//! begins ([`release_held`]), so it lasts microseconds, never across a wait for a body or a
//! write, and a read after a write sees it.
//!
//! That lock is a `fcntl` only for the first connection of the process to take it: SQLite
//! counts the shared locks its connections hold on each slot, and a second one costs no
//! system call. So while nothing is being written, one connection (the [`Anchor`]) stays in
//! a read transaction, holding the slot every new reader of the same snapshot takes, and a
//! GET's read transaction begins and ends without a system call. The anchor never decides
//! what a read sees: every read transaction still reads the newest commit, whoever wrote it.
//! It is dropped when a write begins in this process ([`SqliteReads::unanchor`]), so it never
//! stops the WAL from being restarted or copied, and taken again by a read once no write has
//! begun for [`QUIET_BEFORE_ANCHOR`]; after [`ANCHOR_FOR`] a read takes a fresh one, so a
//! write by another process (the `admin` command) does not leave it on an older slot.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags, Statement, ToSql};

/// How many idle read connections are kept; more are opened when more callers read at once.
const KEPT: usize = 16;

/// How long after a write began in this process a read may take the anchor again.
pub const QUIET_BEFORE_ANCHOR: Duration = Duration::from_millis(20);

/// How long one anchor is kept before a read replaces it with a fresh one.
pub const ANCHOR_FOR: Duration = Duration::from_millis(500);

/// Read-only connections to one SQLite file.
pub struct SqliteReads {
    path: PathBuf,
    idle: Idle,
    anchor: Mutex<Anchor>,
}

/// A connection kept in a read transaction while nothing is written (see the module docs).
struct Anchor {
    conn: Option<Connection>,
    /// When it was taken, or when a write last dropped it (or found none to drop).
    at: Instant,
}

/// The idle connections, shared with a [`Held`] read so it can give its connection back.
type Idle = Arc<Mutex<Vec<Connection>>>;

tokio::task_local! {
    /// The read transaction a request keeps open between two reads (see the module docs).
    static HELD: RefCell<Option<Held>>;
}

/// Runs `request` with room for one held read transaction, ended when `request` ends.
pub async fn holding<F: std::future::Future>(request: F) -> F::Output {
    hold(request).await
}

/// [`holding`] as a future with a name.
pub(crate) type Holding<F> = tokio::task::futures::TaskLocalFuture<RefCell<Option<Held>>, F>;

/// Runs `request` with room for one held read transaction, ended when `request` ends.
pub(crate) fn hold<F: std::future::Future>(request: F) -> Holding<F> {
    HELD.scope(RefCell::new(None), request)
}

/// Ends the read transaction the current request holds, if any: a write is about to begin,
/// and the request's reads after it must see it.
pub fn release_held() {
    let _ = HELD.try_with(|held| drop(held.borrow_mut().take()));
}

/// A connection in an open read transaction, kept for the next read of the same request.
pub(crate) struct Held {
    conn: Option<Connection>,
    idle: Idle,
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            give_back(&self.idle, end_read(conn));
        }
    }
}

/// Opens a (deferred) transaction on `conn`, for reads that share one snapshot.
fn begin_read(conn: &Connection) -> rusqlite::Result<()> {
    conn.prepare_cached("BEGIN")?.execute([]).map(drop)
}

/// Ends `conn`'s read transaction; a connection that cannot end it is closed.
fn end_read(conn: Connection) -> Option<Connection> {
    let ended = conn
        .prepare_cached("COMMIT")
        .and_then(|mut commit| commit.execute([]));
    ended.ok().map(|_| conn)
}

fn give_back(idle: &Idle, conn: Option<Connection>) {
    if let Some(conn) = conn {
        let mut idle = idle.lock().expect("not poisoned");
        if idle.len() < KEPT {
            idle.push(conn);
        }
    }
}

impl std::fmt::Debug for SqliteReads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteReads")
            .field("path", &self.path)
            .finish()
    }
}

/// A read failed; the message is SQLite's (it never holds a value of the query).
#[derive(Debug, thiserror::Error)]
#[error("SQLite read: {0}")]
pub struct ReadError(#[from] rusqlite::Error);

impl SqliteReads {
    pub fn new(path: &Path) -> SqliteReads {
        SqliteReads {
            path: path.to_owned(),
            idle: Arc::new(Mutex::new(Vec::new())),
            anchor: Mutex::new(Anchor {
                conn: None,
                at: Instant::now(),
            }),
        }
    }

    /// Ends the anchor's read transaction, if there is one: a write begins in this process
    /// (or a checkpoint copied the whole WAL, and new readers take another slot). No read
    /// takes it again for [`QUIET_BEFORE_ANCHOR`].
    pub fn unanchor(&self) {
        let dropped = {
            let mut anchor = self.anchor.lock().expect("not poisoned");
            anchor.at = Instant::now();
            anchor.conn.take()
        };
        if let Some(conn) = dropped {
            give_back(&self.idle, end_read(conn));
        }
    }

    /// Whether the anchor is held, in its read transaction.
    #[cfg(test)]
    pub(crate) fn anchored(&self) -> bool {
        let anchor = self.anchor.lock().expect("not poisoned");
        anchor.conn.as_ref().is_some_and(|c| !c.is_autocommit())
    }

    /// Takes (or renews) the anchor when it is due. A read that finds another thread doing
    /// this goes on without waiting; one that cannot begin the anchor's transaction goes on
    /// too, as every read did before there was an anchor.
    fn keep_anchored(&self) {
        let Ok(mut anchor) = self.anchor.try_lock() else {
            return;
        };
        let since = anchor.at.elapsed();
        let stale = match anchor.conn {
            Some(_) if since < ANCHOR_FOR => return,
            Some(_) => anchor.conn.take(),
            None if since < QUIET_BEFORE_ANCHOR => return,
            None => None,
        };
        if let Some(conn) = stale {
            give_back(&self.idle, end_read(conn));
        }
        anchor.at = Instant::now();
        let Ok(conn) = self.take() else {
            return;
        };
        // `BEGIN` is deferred: the transaction (and its slot) starts with the first read.
        let begun = begin_read(&conn)
            .and_then(|()| conn.query_row("PRAGMA schema_version", [], |_| Ok(())));
        match begun {
            Ok(()) => anchor.conn = Some(conn),
            Err(e) => {
                tracing::debug!(error = %e, "could not take the read anchor");
                give_back(&self.idle, end_read(conn));
            }
        }
    }

    fn open(&self) -> rusqlite::Result<Connection> {
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.set_prepared_statement_cache_capacity(32);
        Ok(conn)
    }

    fn take(&self) -> rusqlite::Result<Connection> {
        let taken = self.idle.lock().expect("not poisoned").pop();
        match taken {
            Some(conn) => Ok(conn),
            None => self.open(),
        }
    }

    /// The read transaction the current request holds on this file, if any.
    fn take_held(&self) -> Option<Held> {
        HELD.try_with(|held| {
            let mut held = held.borrow_mut();
            match held.as_ref() {
                Some(h) if Arc::ptr_eq(&h.idle, &self.idle) => held.take(),
                _ => None,
            }
        })
        .ok()
        .flatten()
    }

    /// Runs `read` on an idle connection (opening one if none is idle), or in the read
    /// transaction the request holds, which then ends.
    pub fn read<T>(
        &self,
        read: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, ReadError> {
        if let Some(held) = self.take_held() {
            let conn = held.conn.as_ref().expect("a held read has its connection");
            return Ok(read(conn)?);
        }
        self.keep_anchored();
        let conn = self.take()?;
        let result = read(&conn);
        give_back(&self.idle, Some(conn));
        Ok(result?)
    }

    /// Like [`read`](Self::read), but when the request can hold a read (see [`holding`])
    /// and `keep` says so of the result, the read transaction stays open for the request's
    /// next read, which then sees the same snapshot.
    pub fn read_and_hold<T>(
        &self,
        read: impl FnOnce(&Connection) -> rusqlite::Result<T>,
        keep: impl FnOnce(&T) -> bool,
    ) -> Result<T, ReadError> {
        if HELD.try_with(|_| ()).is_err() {
            return self.read(read);
        }
        release_held();
        self.keep_anchored();
        let conn = self.take()?;
        if let Err(e) = begin_read(&conn) {
            give_back(&self.idle, Some(conn));
            return Err(e.into());
        }
        let result = read(&conn);
        match &result {
            Ok(value) if keep(value) => {
                let held = Held {
                    conn: Some(conn),
                    idle: Arc::clone(&self.idle),
                };
                let _ = HELD.try_with(|slot| *slot.borrow_mut() = Some(held));
            }
            _ => give_back(&self.idle, end_read(conn)),
        }
        Ok(result?)
    }
}

/// Binds `values` to the parameters `$1`, `$2`, ... of `statement`, each by its name.
/// SQLite numbers named parameters in the order they first appear; each is bound to the
/// value its name's number picks.
pub fn bind_numbered(statement: &mut Statement<'_>, values: &[&dyn ToSql]) -> rusqlite::Result<()> {
    for index in 1..=statement.parameter_count() {
        let name = statement.parameter_name(index).unwrap_or_default();
        let value = name
            .strip_prefix('$')
            .and_then(|n| n.parse::<usize>().ok())
            .and_then(|n| n.checked_sub(1))
            .and_then(|n| values.get(n))
            .ok_or_else(|| rusqlite::Error::InvalidParameterName(name.to_owned()))?;
        statement.raw_bind_parameter(index, value)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// STAT4 makes SQLite prepare a statement again each time a parameter its plan depends
    /// on is bound, once `ANALYZE` has run: every read would pay a parse and a plan.
    /// `.cargo/config.toml` builds SQLite without it.
    #[test]
    fn sqlite_is_built_without_stat4() {
        let conn = Connection::open_in_memory().unwrap();
        let stat4: i64 = conn
            .query_row(
                "SELECT sqlite_compileoption_used('ENABLE_STAT4')",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(
            stat4, 0,
            "SQLite is built with STAT4 (see .cargo/config.toml)"
        );
    }

    fn store_with_one_row() -> (tempfile::TempDir, PathBuf, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let writer = Connection::open(&path).unwrap();
        writer
            .execute_batch(
                "PRAGMA journal_mode = WAL; CREATE TABLE t (n INTEGER); INSERT INTO t VALUES (1);",
            )
            .unwrap();
        (dir, path, writer)
    }

    fn count(reads: &SqliteReads) -> i64 {
        reads
            .read(|c| c.query_row("SELECT count(*) FROM t", [], |r| r.get(0)))
            .unwrap()
    }

    fn count_and_hold(reads: &SqliteReads, keep: bool) -> i64 {
        reads
            .read_and_hold(
                |c| c.query_row("SELECT count(*) FROM t", [], |r| r.get(0)),
                |_| keep,
            )
            .unwrap()
    }

    fn all_idle_out_of_transactions(reads: &SqliteReads) -> bool {
        let idle = reads.idle.lock().unwrap();
        !idle.is_empty() && idle.iter().all(|c| c.is_autocommit())
    }

    #[tokio::test]
    async fn a_held_read_serves_the_next_read_of_its_request_then_ends() {
        let (_dir, path, writer) = store_with_one_row();
        let reads = SqliteReads::new(&path);
        holding(async {
            assert_eq!(count_and_hold(&reads, true), 1);
            writer.execute("INSERT INTO t VALUES (2)", []).unwrap();
            // The next read runs in the held transaction: the snapshot of the first.
            assert_eq!(count(&reads), 1);
            // That ended it: the read after sees the write.
            assert_eq!(count(&reads), 2);
        })
        .await;
        assert!(all_idle_out_of_transactions(&reads));
    }

    #[tokio::test]
    async fn a_held_read_ends_before_a_write_and_with_its_request() {
        let (_dir, path, writer) = store_with_one_row();
        let reads = SqliteReads::new(&path);
        holding(async {
            assert_eq!(count_and_hold(&reads, true), 1);
            writer.execute("INSERT INTO t VALUES (2)", []).unwrap();
            release_held();
            assert_eq!(count(&reads), 2);
            // Not kept when `keep` says no.
            assert_eq!(count_and_hold(&reads, false), 2);
            writer.execute("INSERT INTO t VALUES (3)", []).unwrap();
            assert_eq!(count(&reads), 3);
            // Held, and the request ends without another read.
            assert_eq!(count_and_hold(&reads, true), 3);
        })
        .await;
        assert!(all_idle_out_of_transactions(&reads));
        // No reader is left in the WAL: a truncating checkpoint completes.
        let busy: i64 = writer
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))
            .unwrap();
        assert_eq!(busy, 0);
    }

    #[test]
    fn the_anchor_is_taken_once_quiet_and_never_decides_what_a_read_sees() {
        let (_dir, path, writer) = store_with_one_row();
        let reads = SqliteReads::new(&path);
        reads.unanchor();
        assert_eq!(count(&reads), 1);
        assert!(
            !reads.anchored(),
            "a read just after a write takes no anchor"
        );
        std::thread::sleep(QUIET_BEFORE_ANCHOR + Duration::from_millis(5));
        assert_eq!(count(&reads), 1);
        assert!(
            reads.anchored(),
            "a read after a quiet spell takes the anchor"
        );
        // Another process writes: the anchor's snapshot is older, the next read's is not.
        writer.execute("INSERT INTO t VALUES (2)", []).unwrap();
        assert_eq!(count(&reads), 2);
        assert!(reads.anchored());
        reads.unanchor();
        assert!(!reads.anchored());
        assert!(all_idle_out_of_transactions(&reads));
    }

    #[test]
    fn an_anchor_older_than_its_time_is_replaced_by_one_of_the_newest_snapshot() {
        let (_dir, path, writer) = store_with_one_row();
        let reads = SqliteReads::new(&path);
        std::thread::sleep(QUIET_BEFORE_ANCHOR + Duration::from_millis(5));
        count(&reads);
        let anchor_sees = |reads: &SqliteReads| -> i64 {
            let anchor = reads.anchor.lock().unwrap();
            let conn = anchor.conn.as_ref().expect("anchored");
            conn.query_row("SELECT count(*) FROM t", [], |r| r.get(0))
                .unwrap()
        };
        assert_eq!(anchor_sees(&reads), 1);
        writer.execute("INSERT INTO t VALUES (2)", []).unwrap();
        count(&reads);
        assert_eq!(anchor_sees(&reads), 1, "kept until its time is up");
        std::thread::sleep(ANCHOR_FOR);
        count(&reads);
        assert_eq!(anchor_sees(&reads), 2);
    }

    #[test]
    fn outside_a_request_nothing_is_held() {
        let (_dir, path, writer) = store_with_one_row();
        let reads = SqliteReads::new(&path);
        assert_eq!(count_and_hold(&reads, true), 1);
        writer.execute("INSERT INTO t VALUES (2)", []).unwrap();
        assert_eq!(count(&reads), 2);
        assert!(all_idle_out_of_transactions(&reads));
    }

    #[test]
    fn parameters_bind_by_number_whatever_their_order_in_the_text() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        Connection::open(&path)
            .unwrap()
            .execute_batch("CREATE TABLE t (a TEXT, b INTEGER); INSERT INTO t VALUES ('x', 2);")
            .unwrap();
        let reads = SqliteReads::new(&path);
        let found: Option<String> = reads
            .read(|c| {
                let mut s = c.prepare_cached("SELECT a FROM t WHERE b = $2 AND a = $1")?;
                bind_numbered(&mut s, &[&"x", &2i64])?;
                let mut rows = s.raw_query();
                rows.next()?.map(|r| r.get(0)).transpose()
            })
            .unwrap();
        assert_eq!(found.as_deref(), Some("x"));
        // Read-only: a write through it fails.
        let err = reads.read(|c| c.execute("DELETE FROM t", [])).unwrap_err();
        assert!(err.to_string().contains("readonly"), "{err}");
    }
}
