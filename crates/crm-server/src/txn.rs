//! The write transaction of the serving path, on either store: [`Txn`].
//!
//! On PostgreSQL it is a sqlx transaction of its own. On SQLite it is one write inside the
//! shared transaction of [`crate::group_commit`], run in place on the writer's connection.
//! Both run the same `$N` statement texts; values are passed as [`Arg`]s and read back from
//! a [`Row`] by column index.

use std::time::Instant;

use rusqlite::types::{ToSqlOutput, Value as SqliteValue, ValueRef};
use sqlx::Row as _;

use crate::group_commit::{GroupWrite, WriteError};
use crate::serving_conns::ServingConn;
use crate::sqlite_reads::bind_numbered;

/// A value bound to a statement's `$N`. A `None` is a NULL of that type.
#[derive(Debug, Clone, Copy)]
pub enum Arg<'a> {
    Text(Option<&'a str>),
    Int(Option<i64>),
    Blob(Option<&'a [u8]>),
}

impl<'a> From<&'a str> for Arg<'a> {
    fn from(v: &'a str) -> Self {
        Arg::Text(Some(v))
    }
}

impl<'a> From<&'a String> for Arg<'a> {
    fn from(v: &'a String) -> Self {
        Arg::Text(Some(v))
    }
}

impl<'a> From<Option<&'a str>> for Arg<'a> {
    fn from(v: Option<&'a str>) -> Self {
        Arg::Text(v)
    }
}

impl<'a> From<&'a Option<String>> for Arg<'a> {
    fn from(v: &'a Option<String>) -> Self {
        Arg::Text(v.as_deref())
    }
}

impl From<i64> for Arg<'_> {
    fn from(v: i64) -> Self {
        Arg::Int(Some(v))
    }
}

impl From<Option<i64>> for Arg<'_> {
    fn from(v: Option<i64>) -> Self {
        Arg::Int(v)
    }
}

impl<'a> From<&'a [u8]> for Arg<'a> {
    fn from(v: &'a [u8]) -> Self {
        Arg::Blob(Some(v))
    }
}

impl rusqlite::ToSql for Arg<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match *self {
            Arg::Text(Some(v)) => ValueRef::Text(v.as_bytes()),
            Arg::Int(Some(v)) => ValueRef::Integer(v),
            Arg::Blob(Some(v)) => ValueRef::Blob(v),
            Arg::Text(None) | Arg::Int(None) | Arg::Blob(None) => ValueRef::Null,
        }))
    }
}

/// The arguments of a statement, in `$N` order: `args![a, b, c]`.
macro_rules! args {
    ($($arg:expr),* $(,)?) => {
        &[$($crate::txn::Arg::from($arg)),*]
    };
}
pub(crate) use args;

/// A failed statement of a [`Txn`].
#[derive(Debug, thiserror::Error)]
pub enum TxnError {
    #[error(transparent)]
    Sqlx(#[from] sqlx::Error),
    #[error(transparent)]
    Sqlite(#[from] WriteError),
}

impl From<rusqlite::Error> for TxnError {
    fn from(e: rusqlite::Error) -> Self {
        TxnError::Sqlite(WriteError::Sqlite(e))
    }
}

impl TxnError {
    /// A unique index refused the write.
    pub fn is_unique_violation(&self) -> bool {
        match self {
            TxnError::Sqlx(sqlx::Error::Database(db)) => db.is_unique_violation(),
            TxnError::Sqlite(WriteError::Sqlite(rusqlite::Error::SqliteFailure(e, _))) => {
                e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                    || e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
            }
            _ => false,
        }
    }
}

/// A row read in a [`Txn`]. Its getters panic when a column is not of the type asked for,
/// as sqlx's do: the statements are ours, so that is a bug, not bad input.
pub enum Row {
    Postgres(sqlx::any::AnyRow),
    Sqlite(Vec<SqliteValue>),
}

impl Row {
    pub fn opt_text(&self, i: usize) -> Option<String> {
        match self {
            Row::Postgres(row) => row.get(i),
            Row::Sqlite(values) => match &values[i] {
                SqliteValue::Null => None,
                SqliteValue::Text(v) => Some(v.clone()),
                other => panic!("column {i} is {other:?}, not text"),
            },
        }
    }

    pub fn text(&self, i: usize) -> String {
        self.opt_text(i)
            .unwrap_or_else(|| panic!("column {i} is NULL"))
    }

    pub fn opt_int(&self, i: usize) -> Option<i64> {
        match self {
            Row::Postgres(row) => row.get(i),
            Row::Sqlite(values) => match &values[i] {
                SqliteValue::Null => None,
                SqliteValue::Integer(v) => Some(*v),
                other => panic!("column {i} is {other:?}, not an integer"),
            },
        }
    }

    pub fn int(&self, i: usize) -> i64 {
        self.opt_int(i)
            .unwrap_or_else(|| panic!("column {i} is NULL"))
    }

    pub fn opt_blob(&self, i: usize) -> Option<Vec<u8>> {
        match self {
            Row::Postgres(row) => row.get(i),
            Row::Sqlite(values) => match &values[i] {
                SqliteValue::Null => None,
                SqliteValue::Blob(v) => Some(v.clone()),
                SqliteValue::Text(v) => Some(v.clone().into_bytes()),
                other => panic!("column {i} is {other:?}, not a blob"),
            },
        }
    }
}

enum Inner {
    /// PostgreSQL: a connection with a transaction begun on it.
    Postgres(ServingConn),
    /// PostgreSQL, a write of one statement: no `BEGIN` and `COMMIT` round trips, the
    /// statement is its own transaction.
    PostgresAlone(ServingConn),
    Sqlite(GroupWrite),
}

/// A write transaction: every statement of one write, landing whole or not at all. Dropped
/// uncommitted, it rolls back. Its duration, from the wait for its start to the end of its
/// commit or rollback, goes to `crm_db_write_transaction_duration_seconds`.
pub struct Txn {
    inner: Option<Inner>,
    started: Instant,
}

impl Txn {
    pub(crate) fn postgres(conn: ServingConn, started: Instant) -> Txn {
        Txn {
            inner: Some(Inner::Postgres(conn)),
            started,
        }
    }

    pub(crate) fn postgres_alone(conn: ServingConn, started: Instant) -> Txn {
        Txn {
            inner: Some(Inner::PostgresAlone(conn)),
            started,
        }
    }

    pub(crate) fn sqlite(write: GroupWrite, started: Instant) -> Txn {
        Txn {
            inner: Some(Inner::Sqlite(write)),
            started,
        }
    }

    fn inner(&mut self) -> &mut Inner {
        self.inner.as_mut().expect("not yet committed")
    }

    /// Runs a statement; the number of rows it changed.
    pub async fn execute(&mut self, sql: &'static str, args: &[Arg<'_>]) -> Result<u64, TxnError> {
        match self.inner() {
            Inner::Postgres(conn) | Inner::PostgresAlone(conn) => Ok(bind(sqlx::query(sql), args)
                .execute(&mut **conn)
                .await?
                .rows_affected()),
            Inner::Sqlite(write) => write.writer().with_conn(|c| {
                let mut statement = c.prepare_cached(sql)?;
                bind_numbered(&mut statement, &as_sql(args))?;
                Ok(statement.raw_execute()? as u64)
            }),
        }
    }

    /// Runs a query; every row it answers.
    pub async fn fetch_all(
        &mut self,
        sql: &'static str,
        args: &[Arg<'_>],
    ) -> Result<Vec<Row>, TxnError> {
        match self.inner() {
            Inner::Postgres(conn) | Inner::PostgresAlone(conn) => Ok(bind(sqlx::query(sql), args)
                .fetch_all(&mut **conn)
                .await?
                .into_iter()
                .map(Row::Postgres)
                .collect()),
            Inner::Sqlite(write) => write.writer().with_conn(|c| {
                let mut statement = c.prepare_cached(sql)?;
                bind_numbered(&mut statement, &as_sql(args))?;
                let columns = statement.column_count();
                let mut rows = statement.raw_query();
                let mut found = Vec::new();
                while let Some(row) = rows.next()? {
                    let values = (0..columns)
                        .map(|i| row.get::<_, SqliteValue>(i))
                        .collect::<rusqlite::Result<Vec<_>>>()?;
                    found.push(Row::Sqlite(values));
                }
                Ok(found)
            }),
        }
    }

    /// Runs a query; its first row, if any.
    pub async fn fetch_optional(
        &mut self,
        sql: &'static str,
        args: &[Arg<'_>],
    ) -> Result<Option<Row>, TxnError> {
        Ok(self.fetch_all(sql, args).await?.into_iter().next())
    }

    /// The next paging position, when the store counts them in the shared transaction of
    /// its writes (SQLite); `None` on PostgreSQL.
    pub fn counted_position(&mut self) -> Option<Result<i64, TxnError>> {
        match self.inner() {
            Inner::Sqlite(write) => Some(write.next_position().map_err(TxnError::from)),
            Inner::Postgres(_) | Inner::PostgresAlone(_) => None,
        }
    }

    /// Commits: once this returns `Ok`, the write is durable.
    pub async fn commit(mut self) -> Result<(), TxnError> {
        let result = match self.inner.take().expect("a transaction is committed once") {
            Inner::Postgres(conn) => conn.commit().await.map_err(TxnError::from),
            Inner::PostgresAlone(conn) => {
                conn.release();
                Ok(())
            }
            Inner::Sqlite(write) => write.commit().await.map_err(TxnError::from),
        };
        let outcome = if result.is_ok() { "commit" } else { "failed" };
        crate::metrics::write_transaction(self.started.elapsed(), outcome);
        result
    }
}

impl Drop for Txn {
    fn drop(&mut self) {
        if self.inner.is_some() {
            crate::metrics::write_transaction(self.started.elapsed(), "rollback");
        }
    }
}

fn as_sql<'a>(args: &'a [Arg<'a>]) -> Vec<&'a dyn rusqlite::ToSql> {
    args.iter().map(|a| a as &dyn rusqlite::ToSql).collect()
}

fn bind<'q>(
    mut query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
    args: &[Arg<'q>],
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
    for arg in args {
        query = match *arg {
            Arg::Text(v) => query.bind(v),
            Arg::Int(v) => query.bind(v),
            Arg::Blob(v) => query.bind(v),
        };
    }
    query
}
