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

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{Connection, OpenFlags, Statement, ToSql};

/// How many idle read connections are kept; more are opened when more callers read at once.
const KEPT: usize = 16;

/// Read-only connections to one SQLite file.
pub struct SqliteReads {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
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
            idle: Mutex::new(Vec::new()),
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

    /// Runs `read` on an idle connection (opening one if none is idle).
    pub fn read<T>(
        &self,
        read: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, ReadError> {
        let taken = self.idle.lock().expect("not poisoned").pop();
        let conn = match taken {
            Some(conn) => conn,
            None => self.open()?,
        };
        let result = read(&conn);
        let mut idle = self.idle.lock().expect("not poisoned");
        if idle.len() < KEPT {
            idle.push(conn);
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
