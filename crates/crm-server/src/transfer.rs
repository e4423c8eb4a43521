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

// ---------------------------------------------------------------------------------------
// Copy

/// Copies the store at `from` into the empty store at `to`, then verifies it: the
/// command `admin copy`. Both are opened with [`Database::open`], so each gets its
/// store's migrations (a source with an older schema is brought up to date, as a server
/// start would). A target that is not empty is refused before anything is written to
/// it, migrations included. No other process should write to the source meanwhile.
pub async fn copy_between(
    from: &DatabaseUrl,
    to: &DatabaseUrl,
    progress: &mut Progress,
) -> Result<Vec<TableChecksum>, TransferError> {
    if from.to_string() == to.to_string() {
        return Err(TransferError::SameDatabase(from.to_string()));
    }
    // Opening a SQLite file creates it: a mistyped --from must not become an empty store.
    if let Some(path) = sqlite_file(from)
        && !path.exists()
    {
        return Err(TransferError::MissingSource(from.to_string()));
    }
    let settings = PoolSettings {
        max_connections: 2,
        ..PoolSettings::default()
    };
    // Before the target's migrations run: a store in use is refused untouched.
    let target = Database::connect(to, settings).await?;
    let in_use = has_projects(&target).await;
    target.close().await;
    if in_use.map_err(failed("reading the target database"))? {
        return Err(TransferError::TargetNotEmpty(PROJECTS.name));
    }
    let source = Database::open(from, settings).await?;
    let target = Database::open(to, settings).await?;
    progress.line(format_args!("copying {from} to {to}"));
    let copied = copy(&source, &target, progress).await;
    source.close().await;
    target.close().await;
    copied
}

/// Whether a database, migrated or not, holds a project.
async fn has_projects(db: &Database) -> Result<bool, sqlx::Error> {
    let tables: i64 = sqlx::query_scalar(db.pick(
        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'projects'",
        "SELECT COUNT(*) FROM information_schema.tables
         WHERE table_schema = current_schema() AND table_name = 'projects'",
    ))
    .fetch_one(db.pool())
    .await?;
    if tables == 0 {
        return Ok(false);
    }
    let any: Option<i64> = sqlx::query_scalar("SELECT 1 FROM projects LIMIT 1")
        .fetch_optional(db.pool())
        .await?;
    Ok(any.is_some())
}

/// The file of a SQLite database, when the URL names one.
fn sqlite_file(url: &DatabaseUrl) -> Option<std::path::PathBuf> {
    if url.kind() != StoreKind::Sqlite {
        return None;
    }
    // The form `DatabaseUrl` writes: `sqlite://<absolute path, % ? # escaped>?mode=rwc`.
    let shown = url.to_string();
    let path = shown.strip_prefix("sqlite://")?.strip_suffix("?mode=rwc")?;
    let path = path
        .replace("%3F", "?")
        .replace("%23", "#")
        .replace("%25", "%");
    Some(path.into())
}

/// Copies every table of `from` into `to`, which must be empty, then verifies the copy
/// (see [`verify`]) and answers the target's checksums.
pub async fn copy(
    from: &Database,
    to: &Database,
    progress: &mut Progress,
) -> Result<Vec<TableChecksum>, TransferError> {
    for table in TABLES {
        let any: Option<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT 1 FROM {} LIMIT 1",
            table.name
        )))
        .fetch_optional(to.pool())
        .await
        .map_err(failed("reading the target database"))?;
        if any.is_some() {
            return Err(TransferError::TargetNotEmpty(table.name));
        }
    }
    if !has_projects(from)
        .await
        .map_err(failed("reading the source database"))?
    {
        return Err(TransferError::EmptySource);
    }
    let started = Instant::now();
    for table in [&PROJECTS, &API_KEYS, &LINKED_ACCOUNTS] {
        copy_table(from, to, table, progress).await?;
    }
    copy_records(from, to, progress)
        .await
        .map_err(failed("copying records"))?;
    reorder_updates(from, to, progress)
        .await
        .map_err(failed("copying the update order of records"))?;
    for table in [&LIST_ITEMS, &UNIFIED_CUSTOM_FIELDS, &IDEMPOTENCY_KEYS] {
        copy_table(from, to, table, progress).await?;
    }
    if to.kind() == StoreKind::Postgres {
        // Explicit values do not move the identity: new records must start after them.
        sqlx::query(
            "SELECT setval(pg_get_serial_sequence('records', 'seq'), (SELECT MAX(seq) FROM records))",
        )
        .execute(to.pool())
        .await
        .map_err(failed("advancing records.seq"))?;
    }
    progress.line(format_args!(
        "copied in {:.1?}; verifying",
        started.elapsed()
    ));
    verify(from, to).await
}

/// Copies a table as it is, one transaction per batch.
async fn copy_table(
    from: &Database,
    to: &Database,
    table: &Table,
    progress: &mut Progress,
) -> Result<(), TransferError> {
    let total = count(from, table.name)
        .await
        .map_err(failed(format!("counting {}", table.name)))?;
    let columns: Vec<&str> = table.columns.iter().map(|(n, _)| *n).collect();
    let mut scan = Scan::new(table.name, table.columns, table.key(from.kind()));
    let mut copied = 0;
    let write = failed(format!("copying {}", table.name));
    let result: Result<(), sqlx::Error> = async {
        while let Some(rows) = scan.next(from).await? {
            let mut tx = to.begin_write().await?;
            insert_rows(&mut tx, to.kind(), table.name, &columns, &rows).await?;
            tx.commit().await?;
            copied += rows.len() as u64;
            progress.tick(|| format!("{}: {copied} of {total} rows copied", table.name));
        }
        Ok(())
    }
    .await;
    result.map_err(write)?;
    progress.line(format_args!("{}: {copied} rows copied", table.name));
    Ok(())
}

/// The columns of a record row in [`copy_records`]' scan: the record's, then its
/// source position.
fn records_with_position() -> Vec<(&'static str, Type)> {
    let mut columns = RECORDS.columns.to_vec();
    columns.push(("created_pos", Type::Int));
    columns
}

const SEQ: usize = 0;
const ACCOUNT: usize = 1;
const KIND: usize = 2;

/// Whether `row` follows `previous` in the same listing (linked account and kind) with a
/// lower `seq`, so the two cannot share a position.
fn needs_new_position(previous: &[Cell], row: &[Cell], seq: usize) -> bool {
    previous[ACCOUNT] == row[ACCOUNT]
        && previous[KIND] == row[KIND]
        && row[seq].int() < previous[seq].int()
}

/// Copies the records in creation order (per linked account and kind, the order of plain
/// listings), giving each batch fresh positions of the target.
async fn copy_records(
    from: &Database,
    to: &Database,
    progress: &mut Progress,
) -> Result<(), sqlx::Error> {
    let total = count(from, RECORDS.name).await?;
    let mut columns: Vec<&str> = RECORDS.columns.iter().map(|(n, _)| *n).collect();
    columns.extend(["created_pos", "updated_pos"]);
    let mut scan = Scan::new(
        RECORDS.name,
        &records_with_position(),
        &["linked_account_id", "kind", "created_pos", "seq"],
    );
    let mut copied = 0;
    while let Some(rows) = scan.next(from).await? {
        let mut start = 0;
        while start < rows.len() {
            let mut tx = to.begin_write().await?;
            let mut position = to.next_position(&mut tx).await?;
            let mut batch = Vec::with_capacity(rows.len() - start);
            let mut end = start;
            while end < rows.len() {
                if end > start && needs_new_position(&rows[end - 1], &rows[end], SEQ) {
                    match to.kind() {
                        StoreKind::Sqlite => position = to.next_position(&mut tx).await?,
                        // One position per transaction: the rest go in the next one.
                        StoreKind::Postgres => break,
                    }
                }
                let mut row = rows[end][..RECORDS.columns.len()].to_vec();
                row.extend([Cell::Int(Some(position)), Cell::Int(Some(position))]);
                batch.push(row);
                end += 1;
            }
            insert_rows(&mut tx, to.kind(), RECORDS.name, &columns, &batch).await?;
            tx.commit().await?;
            copied += (end - start) as u64;
            start = end;
            progress.tick(|| format!("records: {copied} of {total} rows copied"));
        }
    }
    progress.line(format_args!("records: {copied} rows copied"));
    Ok(())
}

/// Gives the copied records `updated_pos` values in the source's order of last writes
/// (per linked account and kind, the order of incremental listings).
async fn reorder_updates(
    from: &Database,
    to: &Database,
    progress: &mut Progress,
) -> Result<(), sqlx::Error> {
    let total = count(from, RECORDS.name).await?;
    let mut scan = Scan::new(
        RECORDS.name,
        &[
            ("seq", Type::Int),
            ("linked_account_id", Type::Text),
            ("kind", Type::Text),
            ("updated_pos", Type::Int),
        ],
        &["linked_account_id", "kind", "updated_pos", "seq"],
    );
    let mut done = 0;
    while let Some(rows) = scan.next(from).await? {
        let mut start = 0;
        while start < rows.len() {
            let mut tx = to.begin_write().await?;
            let mut position = to.next_position(&mut tx).await?;
            // (linked account, position, seqs) of the rows given that position.
            let mut groups: Vec<(Cell, i64, Vec<i64>)> = Vec::new();
            let mut end = start;
            while end < rows.len() {
                let row = &rows[end];
                if end > start && needs_new_position(&rows[end - 1], row, SEQ) {
                    match to.kind() {
                        StoreKind::Sqlite => position = to.next_position(&mut tx).await?,
                        StoreKind::Postgres => break,
                    }
                }
                let seq = row[SEQ].int().unwrap_or_default();
                match groups.last_mut() {
                    Some((account, at, seqs))
                        if *account == row[ACCOUNT] && *at == position && seqs.len() < 500 =>
                    {
                        seqs.push(seq)
                    }
                    _ => groups.push((row[ACCOUNT].clone(), position, vec![seq])),
                }
                end += 1;
            }
            for (account, position, seqs) in &groups {
                let sql = format!(
                    "UPDATE records SET updated_pos = $1 WHERE linked_account_id = $2 AND seq IN ({})",
                    placeholders(3, seqs.len())
                );
                let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(*position);
                query = account.bind(query);
                for seq in seqs {
                    query = query.bind(*seq);
                }
                query.execute(&mut *tx).await?;
            }
            tx.commit().await?;
            done += (end - start) as u64;
            start = end;
            progress.tick(|| format!("records: update order of {done} of {total} rows copied"));
        }
    }
    progress.line(format_args!("records: update order of {done} rows copied"));
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Verify

/// What one table of a store holds, summed up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableChecksum {
    pub table: &'static str,
    pub rows: u64,
    /// The sum modulo 2^256 of the SHA-256 of every row, in hex: the same whatever order
    /// the rows are read in. Positions are left out.
    pub checksum: String,
    /// For records: a digest of the order of both listings of every linked account.
    pub order: Option<String>,
}

impl std::fmt::Display for TableChecksum {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} rows, checksum {}",
            self.table, self.rows, self.checksum
        )
    }
}

/// A checksum that ignores order: row digests added modulo 2^256.
#[derive(Default)]
struct Sum([u8; 32]);

impl Sum {
    fn add(&mut self, digest: &[u8]) {
        let mut carry = 0u16;
        for i in (0..32).rev() {
            let s = u16::from(self.0[i]) + u16::from(digest[i]) + carry;
            self.0[i] = s as u8;
            carry = s >> 8;
        }
    }
}

fn row_digest(row: &[Cell]) -> impl AsRef<[u8]> {
    let rendered = Value::Array(row.iter().map(Cell::render).collect()).to_string();
    Sha256::digest(rendered.as_bytes())
}

/// The row count, checksum and (for records) order digest of every table of `db`.
pub async fn checksums(db: &Database) -> Result<Vec<TableChecksum>, TransferError> {
    let mut out = Vec::with_capacity(TABLES.len());
    for table in TABLES {
        let reading = failed(format!("reading {}", table.name));
        let result: Result<(u64, Sum), sqlx::Error> = async {
            let mut scan = Scan::new(table.name, table.columns, table.key(db.kind()));
            let mut sum = Sum::default();
            let mut rows = 0;
            while let Some(batch) = scan.next(db).await? {
                for row in &batch {
                    sum.add(row_digest(row).as_ref());
                    rows += 1;
                }
            }
            Ok((rows, sum))
        }
        .await;
        let (rows, sum) = result.map_err(reading)?;
        let counted = count(db, table.name)
            .await
            .map_err(failed(format!("counting {}", table.name)))?;
        if counted != rows {
            return Err(TransferError::Changed {
                table: table.name,
                counted,
                read: rows,
            });
        }
        let order = if table.name == RECORDS.name {
            Some(
                order_digest(db)
                    .await
                    .map_err(failed("reading the order of records"))?,
            )
        } else {
            None
        };
        out.push(TableChecksum {
            table: table.name,
            rows,
            checksum: hex(&sum.0),
            order,
        });
    }
    Ok(out)
}

/// A digest of the order records are listed in: per linked account and kind, the `seq`s in
/// creation order, then in the order of last writes.
async fn order_digest(db: &Database) -> Result<String, sqlx::Error> {
    let mut hasher = Sha256::new();
    for position in ["created_pos", "updated_pos"] {
        hasher.update(position.as_bytes());
        let mut scan = Scan::new(
            RECORDS.name,
            &[
                ("seq", Type::Int),
                ("linked_account_id", Type::Text),
                ("kind", Type::Text),
                (position, Type::Int),
            ],
            &["linked_account_id", "kind", position, "seq"],
        );
        while let Some(rows) = scan.next(db).await? {
            for row in rows {
                let rendered = Value::Array(row[..3].iter().map(Cell::render).collect());
                hasher.update(rendered.to_string().as_bytes());
                hasher.update(b"\n");
            }
        }
    }
    Ok(hex(&hasher.finalize()))
}

/// Checks that `to` holds what `from` holds: per table the same row count and checksum,
/// and records listed in the same orders. Answers the checksums, or every difference.
pub async fn verify(from: &Database, to: &Database) -> Result<Vec<TableChecksum>, TransferError> {
    let source = checksums(from).await?;
    let target = checksums(to).await?;
    let mut differences = Vec::new();
    for (s, t) in source.iter().zip(&target) {
        if s.rows != t.rows {
            differences.push(format!(
                "{}: {} rows in the source, {} in the target",
                s.table, s.rows, t.rows
            ));
        } else if s.checksum != t.checksum {
            differences.push(format!(
                "{}: {} rows, checksum mismatch (source {}, target {})",
                s.table, s.rows, s.checksum, t.checksum
            ));
        } else if s.order != t.order {
            differences.push(format!(
                "{}: {} rows, the same rows listed in a different order",
                s.table, s.rows
            ));
        }
    }
    if differences.is_empty() {
        Ok(target)
    } else {
        Err(TransferError::Mismatch(differences))
    }
}

// ---------------------------------------------------------------------------------------
// Import

/// What an import did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ImportReport {
    /// Lines read, blank ones included.
    pub lines: u64,
    pub imported: u64,
    /// Lines whose contact was already there, by id or external id.
    pub skipped: u64,
}

impl std::fmt::Display for ImportReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "imported {}, skipped {}", self.imported, self.skipped)
    }
}

/// Why an import stopped. Every line before the one named was committed.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("no linked account {0}")]
    UnknownAccount(String),
    #[error(
        "linked account {account} is served by the {provider:?} provider: only \"local\" \
         accounts keep their contacts in this database"
    )]
    NotLocal { account: String, provider: String },
    #[error(
        "line {line}: {reason}\n(the lines before it are committed: imported {}, skipped {}; \
         fix the line and run the import again: what is already there is skipped)",
        .done.imported, .done.skipped
    )]
    Line {
        line: u64,
        reason: String,
        done: ImportReport,
    },
    #[error(
        "lines {first} to {last} could not be written: {source}\n(the lines before them are \
         committed: imported {}, skipped {}; run the import again: what is already there is \
         skipped)",
        .done.imported, .done.skipped
    )]
    Write {
        first: u64,
        last: u64,
        done: ImportReport,
        #[source]
        source: sqlx::Error,
    },
    #[error("reading the linked account: {0}")]
    Database(#[from] sqlx::Error),
}

impl ImportError {
    /// The line that stopped the import, if one did.
    pub fn line(&self) -> Option<u64> {
        match self {
            ImportError::Line { line, .. } => Some(*line),
            ImportError::Write { first, .. } => Some(*first),
            _ => None,
        }
    }
}

/// A contact ready to be stored.
struct Prepared {
    line: u64,
    id: String,
    external_id: Option<String>,
    body: String,
    created_at: String,
    updated_at: String,
}

/// Fields of an exported contact that the server assigns or derives; a create never takes
/// them. `id`, `created_at` and `updated_at` are read apart and kept.
const ASSIGNED: [&str; 11] = [
    "id",
    "remote_id",
    "etag",
    "created_at",
    "updated_at",
    "unified_custom_fields",
    "remote_deal_ids",
    "remote_account_ids",
    "remote_created_at",
    "remote_updated_at",
    "remote_deleted",
];

/// Imports the contacts of `input` (the NDJSON of Export Contacts: one contact per line)
/// into the linked account `account_id`: the command `admin import`. Reads and writes
/// [`BATCH`] lines at a time, one transaction each. Stops at the first line that is not a
/// valid contact, after committing the lines before it.
pub async fn import(
    db: &Database,
    clock: &dyn Clock,
    account_id: &str,
    mut input: impl BufRead,
    progress: &mut Progress,
) -> Result<ImportReport, ImportError> {
    let provider: Option<String> =
        sqlx::query_scalar("SELECT provider FROM linked_accounts WHERE id = $1")
            .bind(account_id)
            .fetch_optional(db.pool())
            .await?;
    match provider {
        None => return Err(ImportError::UnknownAccount(account_id.to_owned())),
        Some(p) if p != crate::tenancy::LOCAL_PROVIDER => {
            return Err(ImportError::NotLocal {
                account: account_id.to_owned(),
                provider: p,
            });
        }
        Some(_) => {}
    }
    let definitions = definitions(db, account_id).await?;
    let mut report = ImportReport::default();
    let mut batch: Vec<Prepared> = Vec::with_capacity(BATCH);
    let mut buffer = Vec::new();
    loop {
        buffer.clear();
        let read = (&mut input)
            .take(MAX_LINE_BYTES as u64 + 1)
            .read_until(b'\n', &mut buffer);
        let line = report.lines + 1;
        let outcome = match read {
            Ok(0) => None,
            Ok(_) if buffer.len() > MAX_LINE_BYTES => Some(Err(format!(
                "the line is longer than {MAX_LINE_BYTES} bytes"
            ))),
            Ok(_) => Some(Ok(())),
            Err(e) => Some(Err(format!("could not read the file: {e}"))),
        };
        let Some(outcome) = outcome else { break };
        report.lines = line;
        let prepared = outcome.and_then(|()| {
            let text = std::str::from_utf8(&buffer)
                .map_err(|e| format!("the line is not UTF-8 text: {e}"))?;
            let text = text.trim_end_matches(['\n', '\r']);
            if text.trim().is_empty() {
                return Ok(None);
            }
            prepare(line, text, account_id, &definitions, clock.now()).map(Some)
        });
        match prepared {
            Ok(None) => {}
            Ok(Some(p)) => {
                batch.push(p);
                if batch.len() == BATCH {
                    write_batch(db, account_id, &mut batch, &mut report).await?;
                    progress.tick(|| {
                        format!(
                            "import: {} lines read, {} imported, {} skipped",
                            report.lines, report.imported, report.skipped
                        )
                    });
                }
            }
            Err(reason) => {
                // The lines before this one are kept.
                write_batch(db, account_id, &mut batch, &mut report).await?;
                return Err(ImportError::Line {
                    line,
                    reason,
                    done: report,
                });
            }
        }
    }
    write_batch(db, account_id, &mut batch, &mut report).await?;
    progress.line(format_args!(
        "import: {} lines read, {} imported, {} skipped",
        report.lines, report.imported, report.skipped
    ));
    Ok(report)
}

/// The custom field definitions of a linked account, to check custom field values by.
async fn definitions(
    db: &Database,
    account_id: &str,
) -> Result<Vec<CustomFieldDefinition>, ImportError> {
    let bodies: Vec<String> =
        sqlx::query_scalar("SELECT body FROM records WHERE linked_account_id = $1 AND kind = $2")
            .bind(account_id)
            .bind(CustomFieldDefinition::KIND)
            .fetch_all(db.pool())
            .await?;
    // A stored definition that does not read is left out, as a field it cannot check.
    Ok(bodies
        .iter()
        .filter_map(|b| serde_json::from_str(b).ok())
        .collect())
}

/// Writes the contacts of `batch` in one transaction, skipping those whose id or external
/// id is already in the account, and empties it.
async fn write_batch(
    db: &Database,
    account_id: &str,
    batch: &mut Vec<Prepared>,
    report: &mut ImportReport,
) -> Result<(), ImportError> {
    let (Some(first), Some(last)) = (batch.first(), batch.last()) else {
        return Ok(());
    };
    let (first, last) = (first.line, last.line);
    let written: Result<(u64, u64), sqlx::Error> = async {
        let mut tx = db.begin_write().await?;
        let position = db.next_position(&mut tx).await?;
        let (mut imported, mut skipped) = (0, 0);
        for contact in batch.iter() {
            // Either unique index (id, or external id) turns the insert into a skip.
            let done = sqlx::query(
                "INSERT INTO records (linked_account_id, kind, id, body, passthrough, created_at, updated_at, external_id, created_pos, updated_pos)
                 VALUES ($1, $2, $3, $4, NULL, $5, $6, $7, $8, $8)
                 ON CONFLICT DO NOTHING",
            )
            .bind(account_id)
            .bind(Contact::KIND)
            .bind(&contact.id)
            .bind(&contact.body)
            .bind(&contact.created_at)
            .bind(&contact.updated_at)
            .bind(contact.external_id.as_deref())
            .bind(position)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 0 {
                skipped += 1;
            } else {
                imported += 1;
            }
        }
        tx.commit().await?;
        Ok((imported, skipped))
    }
    .await;
    batch.clear();
    match written {
        Ok((imported, skipped)) => {
            report.imported += imported;
            report.skipped += skipped;
            Ok(())
        }
        Err(source) => Err(ImportError::Write {
            first,
            last,
            done: *report,
            source,
        }),
    }
}

/// Reads one line as a contact and applies the record rules of a create to it, keeping
/// its id, external id and times.
fn prepare(
    line: u64,
    text: &str,
    account_id: &str,
    definitions: &[CustomFieldDefinition],
    now: DateTime<Utc>,
) -> Result<Prepared, String> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| format!("the line is not JSON: {e}"))?;
    let Value::Object(sent) = value else {
        return Err("the line is not a JSON object: each line must be one contact".into());
    };
    let contact: Contact = serde_json::from_value(Value::Object(sent.clone()))
        .map_err(|e| format!("the line is not a contact: {e}"))?;
    let known = rules::to_object(&contact).map_err(|e| e.message)?;
    if let Some((field, _)) = sent
        .iter()
        .find(|(k, v)| !v.is_null() && !known.contains_key(k.as_str()))
    {
        return Err(format!(
            "the line is not a contact: unknown field {field:?}"
        ));
    }
    let id = match sent.get("id") {
        None | Some(Value::Null) => derived_id(account_id, &sent),
        Some(Value::String(id)) if !id.trim().is_empty() && id.trim() == id => id.clone(),
        Some(other) => return Err(format!("id must be a non-empty string, not {other}")),
    };
    let created = contact.created_at.or(contact.updated_at).unwrap_or(now);
    let updated = contact.updated_at.or(contact.created_at).unwrap_or(now);
    let mut body = sent;
    for field in ASSIGNED {
        body.shift_remove(field);
    }
    let mut record = rules::new_record::<Contact>(&body, &id, updated).map_err(|e| e.message)?;
    let created_value = serde_json::to_value(created).unwrap_or_default();
    record.insert("created_at".into(), created_value.clone());
    record.insert("remote_created_at".into(), created_value);
    if let Some(entries) = record.get("custom_fields").and_then(Value::as_array) {
        let resolved = custom_fields::resolve(entries, definitions).map_err(|e| e.message)?;
        record.insert("custom_fields".into(), Value::Array(resolved));
    }
    let data: Contact = rules::typed(&record).map_err(|e| e.message)?;
    let stored: JsonObject = rules::to_object(&data).map_err(|e| e.message)?;
    Ok(Prepared {
        line,
        id,
        external_id: rules::external_id(&stored),
        body: Value::Object(stored).to_string(),
        created_at: timestamp(created),
        updated_at: timestamp(updated),
    })
}

/// The id of a line that has none: derived from the account and the line's content, so
/// the same line imported again is found, not duplicated.
fn derived_id(account_id: &str, line: &JsonObject) -> String {
    let digest = Sha256::new()
        .chain_update(b"crm-import\0")
        .chain_update(account_id.as_bytes())
        .chain_update(b"\0")
        .chain_update(Value::Object(line.clone()).to_string().as_bytes())
        .finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes)
        .into_uuid()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_checksum_ignores_order_but_not_content() {
        let rows: Vec<Vec<Cell>> = (0..5)
            .map(|i| {
                vec![
                    Cell::Int(Some(i)),
                    Cell::Text(Some(format!("r{i}"))),
                    Cell::Blob(None),
                ]
            })
            .collect();
        let sum = |rows: &[Vec<Cell>]| {
            let mut s = Sum::default();
            for r in rows {
                s.add(row_digest(r).as_ref());
            }
            hex(&s.0)
        };
        let mut reversed = rows.clone();
        reversed.reverse();
        assert_eq!(sum(&rows), sum(&reversed));
        let mut changed = rows.clone();
        changed[2][1] = Cell::Text(Some("r2 ".into()));
        assert_ne!(sum(&rows), sum(&changed));
        // A row twice is not the same as the row once.
        let mut doubled = rows.clone();
        doubled.push(rows[0].clone());
        assert_ne!(sum(&rows), sum(&doubled));
        // NULL is not the empty string.
        let null = vec![vec![Cell::Text(None)]];
        let empty = vec![vec![Cell::Text(Some(String::new()))]];
        assert_ne!(sum(&null), sum(&empty));
    }

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

    #[test]
    fn a_line_keeps_its_id_and_times_and_follows_the_rules() {
        let line = json!({
            "id": "c-1", "remote_id": "c-1", "etag": "abc", "last_name": "Lovelace",
            "emails": ["ada@example.com"],
            "email_addresses": [{"email": "ada@example.com", "type": "work"}],
            "external_id": "ext-1",
            "created_at": "2020-01-02T03:04:05.123456Z",
            "updated_at": "2021-01-02T03:04:05Z",
            "remote_created_at": "2020-01-02T03:04:05.123456Z",
            "unified_custom_fields": {"x": 1},
        });
        let p = prepare(1, &line.to_string(), "a", &[], Utc::now()).unwrap();
        assert_eq!(p.id, "c-1");
        assert_eq!(p.external_id.as_deref(), Some("ext-1"));
        assert_eq!(p.created_at, "2020-01-02T03:04:05.123456Z");
        assert_eq!(p.updated_at, "2021-01-02T03:04:05.000000Z");
        let body: Value = serde_json::from_str(&p.body).unwrap();
        assert_eq!(body["created_at"], "2020-01-02T03:04:05.123456Z");
        assert_eq!(body["remote_updated_at"], "2021-01-02T03:04:05Z");
        assert_eq!(body["email_addresses"][0]["type"], "work");
        assert!(body.get("unified_custom_fields").is_none());
        assert_ne!(body["etag"], "abc");

        for (bad, why) in [
            (json!({"first_name": "No last name"}), "last_name"),
            (
                json!({"last_name": "X", "emails": ["nope"]}),
                "not an email",
            ),
            (
                json!({"last_name": "X", "shoe_size": 42}),
                "unknown field \"shoe_size\"",
            ),
            (json!({"last_name": "X", "id": " "}), "id must be"),
            (json!({"last_name": "X", "id": 7}), "invalid type"),
            (json!(["not", "an", "object"]), "not a JSON object"),
        ] {
            let err = prepare(1, &bad.to_string(), "a", &[], Utc::now())
                .err()
                .unwrap_or_else(|| panic!("{bad} was accepted"));
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn a_line_without_id_gets_the_same_id_every_time() {
        let line = json!({"last_name": "Anon"});
        let a = prepare(1, &line.to_string(), "acc", &[], Utc::now()).unwrap();
        let b = prepare(9, &line.to_string(), "acc", &[], Utc::now()).unwrap();
        let other = prepare(1, &line.to_string(), "other", &[], Utc::now()).unwrap();
        assert_eq!(a.id, b.id);
        assert_ne!(a.id, other.id);
        assert!(uuid::Uuid::parse_str(&a.id).is_ok());
    }
}
