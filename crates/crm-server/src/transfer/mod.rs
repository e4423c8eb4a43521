//! Moving data in bulk: [`copy`] moves a whole store into an empty one (SQLite to
//! PostgreSQL, or any other pair), [`verify`] proves two stores hold the same data, and
//! [`import`] reads the NDJSON of Export Contacts into a linked account.
//!
//! **Copy.** Every table is read in batches of [`BATCH`] rows in key order (keyset paging,
//! so memory stays constant), and each batch is written in one transaction on the target,
//! parents before children: projects, API keys (their hashes; a key's text is never
//! stored), linked accounts, records, list items, unified custom field mappings and
//! idempotency keys (copied too, so a client retrying a request across the move gets the
//! first answer, not a second record). Records keep their `seq`, so list items and every
//! id stay valid. Their paging positions are not copied (a position only means something
//! in the store that issued it): each batch takes fresh positions from the target, in two
//! passes, one in creation order and one in the order of last writes, so both listings
//! serve the records in the same order as before. A position is shared by the rows of a
//! batch, which it orders by `seq`; where the source's order is not `seq` order, the batch
//! takes a new position (SQLite) or ends (PostgreSQL, where a position is a transaction).
//! The counter of SQLite's `positions` table is the target's own, advanced by the copy.
//!
//! **Verify.** Per table: the rows counted, and a checksum that does not depend on the
//! order rows are read in (the sum, modulo 2^256, of the SHA-256 of every row rendered
//! canonically), streamed in each store's key order; positions are left out, since they
//! are re-issued, and for records an ordered digest of both listings (creation order and
//! last-write order, per linked account and kind) proves the order was kept instead.
//!
//! **Import.** One unified Contact per line, checked by the same record rules as a create
//! ([`rules::new_record`], custom field values against the account's definitions). A
//! line's `id`, `external_id`, `created_at` and `updated_at` are kept; a line whose id or
//! external id is already in the account is skipped, so a rerun after a crash does not
//! duplicate anything. A line without an id gets one derived from the account and the
//! line's content, so such lines are found again on a rerun too.

use std::fmt::Write as _;
use std::io::{BufRead, Read as _, Write};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use crm_api::models::{Contact, CustomFieldDefinition, JsonObject};
use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::Row;
use sqlx::any::{AnyArguments, AnyRow};

use crate::clock::Clock;
use crate::custom_fields;
use crate::db::{Database, DatabaseUrl, OpenError, PoolSettings, StoreKind, timestamp};
use crate::rules::{self, Resource};

mod copy;
mod import;
mod verify;

pub use copy::*;
pub use import::*;
pub use verify::*;

/// Rows read and written at a time: the most a copy or an import holds in memory.
pub const BATCH: usize = 1000;

/// Rows in one INSERT statement of a copy.
const INSERT_ROWS: usize = 100;

/// The longest line an import reads, in bytes.
pub const MAX_LINE_BYTES: usize = 16 * 1024 * 1024;

/// How often a long copy or import reports how far it got.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

// ---------------------------------------------------------------------------------------
// Progress

/// Where progress lines go (standard error for the admin commands), at most one a second
/// while a table is being copied or a file imported, and one at the end of each step.
pub struct Progress {
    sink: Option<Box<dyn Write + Send>>,
    last: Instant,
}

impl Progress {
    pub fn stderr() -> Progress {
        Progress::to(std::io::stderr())
    }

    pub fn to(sink: impl Write + Send + 'static) -> Progress {
        Progress {
            sink: Some(Box::new(sink)),
            last: Instant::now(),
        }
    }

    pub fn quiet() -> Progress {
        Progress {
            sink: None,
            last: Instant::now(),
        }
    }

    /// Reports a step that finished.
    fn line(&mut self, text: impl std::fmt::Display) {
        if let Some(sink) = &mut self.sink {
            let _ = writeln!(sink, "{text}");
            let _ = sink.flush();
        }
        self.last = Instant::now();
    }

    /// Reports how far a step got, if a second has passed since the last line.
    fn tick(&mut self, text: impl FnOnce() -> String) {
        if self.last.elapsed() >= PROGRESS_EVERY {
            self.line(text());
        }
    }
}

// ---------------------------------------------------------------------------------------
// Errors

/// Why a copy or a verification failed. No message holds a database password.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error(transparent)]
    Open(#[from] OpenError),
    #[error("the source and the target are the same database ({0})")]
    SameDatabase(String),
    #[error("the source database {0} does not exist")]
    MissingSource(String),
    #[error(
        "the source database has no projects: there is nothing to copy (is --from the right database?)"
    )]
    EmptySource,
    #[error(
        "the target database is not empty (its table {0} has rows): copy only into an empty \
         database; nothing was written"
    )]
    TargetNotEmpty(&'static str),
    #[error(
        "{table} changed while it was read ({counted} rows counted, {read} read): stop every \
         server that uses the database, then try again"
    )]
    Changed {
        table: &'static str,
        counted: u64,
        read: u64,
    },
    #[error("verification failed: the target differs from the source\n  {}", .0.join("\n  "))]
    Mismatch(Vec<String>),
    #[error("{what}: {source}")]
    Database {
        what: String,
        #[source]
        source: sqlx::Error,
    },
}

/// Wraps a database error with what was being done.
fn failed(what: impl Into<String>) -> impl FnOnce(sqlx::Error) -> TransferError {
    let what = what.into();
    move |source| TransferError::Database { what, source }
}

// ---------------------------------------------------------------------------------------
// Tables

/// The type of a column, as both stores read and write it through the `Any` driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Type {
    Text,
    Int,
    Blob,
}

/// A table as the copy sees it: its columns (positions apart) and its primary key in
/// each store, the order it is read in.
struct Table {
    name: &'static str,
    columns: &'static [(&'static str, Type)],
    sqlite_key: &'static [&'static str],
    postgres_key: &'static [&'static str],
}

impl Table {
    fn key(&self, kind: StoreKind) -> &'static [&'static str] {
        match kind {
            StoreKind::Sqlite => self.sqlite_key,
            StoreKind::Postgres => self.postgres_key,
        }
    }
}

const PROJECTS: Table = Table {
    name: "projects",
    columns: &[
        ("id", Type::Text),
        ("name", Type::Text),
        ("created_at", Type::Text),
    ],
    sqlite_key: &["id"],
    postgres_key: &["id"],
};

const API_KEYS: Table = Table {
    name: "api_keys",
    columns: &[
        ("id", Type::Text),
        ("project_id", Type::Text),
        ("secret_hash", Type::Blob),
        ("created_at", Type::Text),
        ("revoked_at", Type::Text),
    ],
    sqlite_key: &["id"],
    postgres_key: &["id"],
};

const LINKED_ACCOUNTS: Table = Table {
    name: "linked_accounts",
    columns: &[
        ("id", Type::Text),
        ("project_id", Type::Text),
        ("provider", Type::Text),
        ("name", Type::Text),
        ("created_at", Type::Text),
        ("base_url", Type::Text),
        // Sealed: copied as stored, so it opens on the target under the same secret key.
        ("credentials", Type::Text),
        ("credentials_version", Type::Int),
        ("status", Type::Text),
    ],
    sqlite_key: &["id"],
    postgres_key: &["id"],
};

/// Without `created_pos` and `updated_pos`, which the copy issues anew.
const RECORDS: Table = Table {
    name: "records",
    columns: &[
        ("seq", Type::Int),
        ("linked_account_id", Type::Text),
        ("kind", Type::Text),
        ("id", Type::Text),
        ("body", Type::Text),
        ("passthrough", Type::Text),
        ("created_at", Type::Text),
        ("updated_at", Type::Text),
        ("external_id", Type::Text),
    ],
    sqlite_key: &["seq"],
    postgres_key: &["linked_account_id", "seq"],
};

const LIST_ITEMS: Table = Table {
    name: "list_items",
    columns: &[
        ("linked_account_id", Type::Text),
        ("list_seq", Type::Int),
        ("item_id", Type::Text),
        ("added", Type::Int),
    ],
    sqlite_key: &["list_seq", "item_id"],
    postgres_key: &["linked_account_id", "list_seq", "item_id"],
};

const UNIFIED_CUSTOM_FIELDS: Table = Table {
    name: "unified_custom_fields",
    columns: &[
        ("project_id", Type::Text),
        ("kind", Type::Text),
        ("mappings", Type::Text),
    ],
    sqlite_key: &["project_id", "kind"],
    postgres_key: &["project_id", "kind"],
};

const IDEMPOTENCY_KEYS: Table = Table {
    name: "idempotency_keys",
    columns: &[
        ("project_id", Type::Text),
        ("key", Type::Text),
        ("fingerprint", Type::Text),
        ("status", Type::Int),
        ("headers", Type::Text),
        ("body", Type::Blob),
        ("created_at", Type::Text),
        ("record_id", Type::Text),
        ("claimed_at", Type::Text),
    ],
    sqlite_key: &["project_id", "key"],
    postgres_key: &["project_id", "key"],
};

/// Every table of a store, parents first.
const TABLES: [&Table; 7] = [
    &PROJECTS,
    &API_KEYS,
    &LINKED_ACCOUNTS,
    &RECORDS,
    &LIST_ITEMS,
    &UNIFIED_CUSTOM_FIELDS,
    &IDEMPOTENCY_KEYS,
];

// ---------------------------------------------------------------------------------------
// Rows

type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, AnyArguments>;

/// One value of a row.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Cell {
    Text(Option<String>),
    Int(Option<i64>),
    Blob(Option<Vec<u8>>),
}

impl Cell {
    fn read(row: &AnyRow, index: usize, ty: Type) -> Result<Cell, sqlx::Error> {
        Ok(match ty {
            Type::Text => Cell::Text(row.try_get(index)?),
            Type::Int => Cell::Int(row.try_get(index)?),
            Type::Blob => Cell::Blob(row.try_get(index)?),
        })
    }

    fn bind<'q>(&self, query: AnyQuery<'q>) -> AnyQuery<'q> {
        match self {
            Cell::Text(v) => query.bind(v.clone()),
            Cell::Int(v) => query.bind(*v),
            Cell::Blob(v) => query.bind(v.clone()),
        }
    }

    fn int(&self) -> Option<i64> {
        match self {
            Cell::Int(v) => *v,
            _ => None,
        }
    }

    /// The canonical form of the value, for checksums.
    fn render(&self) -> Value {
        match self {
            Cell::Text(v) => v.clone().map_or(Value::Null, Value::String),
            Cell::Int(v) => v.map_or(Value::Null, Value::from),
            Cell::Blob(v) => v.as_ref().map_or(Value::Null, |b| Value::String(hex(b))),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// `$from, $from+1, ...`, `count` of them.
fn placeholders(from: usize, count: usize) -> String {
    (from..from + count)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Reads a table in batches, in the order of `key`, after the last row it served.
struct Scan {
    select: String,
    key: String,
    key_at: Vec<usize>,
    types: Vec<Type>,
    after: Option<Vec<Cell>>,
    done: bool,
}

impl Scan {
    /// `key` must be among `columns`.
    fn new(table: &str, columns: &[(&'static str, Type)], key: &[&'static str]) -> Scan {
        let names: Vec<&str> = columns.iter().map(|(n, _)| *n).collect();
        let key_at = key
            .iter()
            .map(|k| {
                names
                    .iter()
                    .position(|n| n == k)
                    .expect("the key columns are selected")
            })
            .collect();
        Scan {
            select: format!("SELECT {} FROM {table}", names.join(", ")),
            key: key.join(", "),
            key_at,
            types: columns.iter().map(|(_, t)| *t).collect(),
            after: None,
            done: false,
        }
    }

    async fn next(&mut self, db: &Database) -> Result<Option<Vec<Vec<Cell>>>, sqlx::Error> {
        if self.done {
            return Ok(None);
        }
        let key = &self.key;
        let sql = match &self.after {
            None => format!("{} ORDER BY {key} LIMIT {BATCH}", self.select),
            Some(after) => format!(
                "{} WHERE ({key}) > ({}) ORDER BY {key} LIMIT {BATCH}",
                self.select,
                placeholders(1, after.len())
            ),
        };
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for cell in self.after.iter().flatten() {
            query = cell.bind(query);
        }
        let rows = query.fetch_all(db.pool()).await?;
        self.done = rows.len() < BATCH;
        let Some(last) = rows.last() else {
            return Ok(None);
        };
        self.after = Some(
            self.key_at
                .iter()
                .map(|&i| Cell::read(last, i, self.types[i]))
                .collect::<Result<_, _>>()?,
        );
        let cells = rows
            .iter()
            .map(|row| {
                self.types
                    .iter()
                    .enumerate()
                    .map(|(i, t)| Cell::read(row, i, *t))
                    .collect::<Result<Vec<_>, _>>()
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(cells))
    }
}

async fn count(db: &Database, table: &str) -> Result<u64, sqlx::Error> {
    let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
        .fetch_one(db.pool())
        .await?;
    Ok(n.max(0) as u64)
}

/// Inserts `rows` (values of `columns`, in order) in statements of [`INSERT_ROWS`] rows.
async fn insert_rows(
    conn: &mut sqlx::AnyConnection,
    kind: StoreKind,
    table: &str,
    columns: &[&str],
    rows: &[Vec<Cell>],
) -> Result<(), sqlx::Error> {
    // PostgreSQL generates `records.seq` unless told to take the value given.
    let overriding = if kind == StoreKind::Postgres && columns.contains(&"seq") {
        " OVERRIDING SYSTEM VALUE"
    } else {
        ""
    };
    for chunk in rows.chunks(INSERT_ROWS) {
        let mut sql = format!(
            "INSERT INTO {table} ({}){overriding} VALUES ",
            columns.join(", ")
        );
        for i in 0..chunk.len() {
            if i > 0 {
                sql.push_str(", ");
            }
            let _ = write!(
                sql,
                "({})",
                placeholders(i * columns.len() + 1, columns.len())
            );
        }
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for row in chunk {
            for cell in row {
                query = cell.bind(query);
            }
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_files_are_found_from_their_url() {
        let url: DatabaseUrl = "/tmp/a?b#c%d.db".parse().unwrap();
        assert_eq!(
            sqlite_file(&url).unwrap(),
            std::path::Path::new("/tmp/a?b#c%d.db")
        );
        let pg: DatabaseUrl = "postgres://u:p@localhost/db".parse().unwrap();
        assert_eq!(sqlite_file(&pg), None);
    }
}
