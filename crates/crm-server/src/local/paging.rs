//! Paging the local provider's records: the position it puts inside the cursor envelope,
//! the page queries of both orders, and the batched export reader.
//!
//! **The guarantee.** A plain listing is in creation order; an incremental one
//! (`filter[updated_after]`) is in the order of last writes. A page serves only positions
//! below the reader's horizon, which no write still running can fall under (see
//! [`crate::db::Database::next_position`]). So, paging with one filter from start to end:
//! every record that matched when paging started and was not written during it is served
//! exactly once, and a record written during it is served at least once (an update moves
//! the record to the end of an incremental listing, where it is served again).
//!
//! An incremental listing starts at the first position holding a record updated after the
//! filter's time, found through the `records_updated_at` index, and walks the
//! `records_updated` index from there, so its cost follows the records it serves, not the
//! size of the account.

use crm_api::cursor;
use crm_api::models::JsonObject;
use crm_api::service::{AccountScope, PageRequest, ServiceResult};
use sqlx::Row;

use crate::db::{Database, timestamp};
use crate::rules::parse_body;
use crate::sqlite_reads::bind_numbered;
use crate::tenancy::{internal, read_failed};

/// How long a page waits for writes still running below its positions to finish, before
/// it serves the records before them and leaves the rest to the next page.
const HORIZON_PATIENCE: std::time::Duration = std::time::Duration::from_secs(2);

/// How many records an export reads at a time; the most it holds in memory.
pub const EXPORT_BATCH: i64 = 500;

/// Which position a listing is ordered by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// `created_pos`: the plain listing.
    Created,
    /// `updated_pos`: the incremental listing.
    Updated,
}

/// Where a page starts: after the record at (`pos`, `seq`) in `order`. This is what the
/// local provider puts inside the cursor envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub order: Order,
    pub pos: i64,
    pub seq: i64,
}

impl Position {
    /// The `next` cursor for this position, in the envelope.
    pub fn cursor(self) -> String {
        cursor::encode(super::PROVIDER, &self.encode())
    }

    /// Reads a `next` cursor this provider issued; anything else is 400.
    pub fn from_cursor(token: &str) -> Result<Position, crm_api::ApiError> {
        Position::parse(&cursor::decode(token, super::PROVIDER)?).ok_or_else(cursor::invalid)
    }

    fn encode(self) -> String {
        let order = match self.order {
            Order::Created => 'c',
            Order::Updated => 'u',
        };
        format!("{order}:{}:{}", self.pos, self.seq)
    }

    /// Reads a position this provider wrote; one spelling per position, so `+5` or `05`,
    /// never written, are refused.
    fn parse(text: &str) -> Option<Position> {
        let mut parts = text.split(':');
        let order = match parts.next()? {
            "c" => Order::Created,
            "u" => Order::Updated,
            _ => return None,
        };
        let number = |s: &str| s.parse::<i64>().ok().filter(|n| n.to_string() == s);
        let pos = number(parts.next()?)?;
        let seq = number(parts.next()?)?;
        parts
            .next()
            .is_none()
            .then_some(Position { order, pos, seq })
    }
}

/// One page of rows, and the cursor after it.
pub struct PageRows {
    /// Each record's `seq` and its stored JSON text, read by the caller.
    pub rows: Vec<(i64, String)>,
    pub next: Option<String>,
    /// The position the page started after, for `raw`.
    pub from: String,
}

/// Reads one page of records of `kind`.
pub async fn read_page(
    db: &Database,
    scope: &AccountScope,
    kind: &str,
    request: &PageRequest,
) -> ServiceResult<PageRows> {
    let order = if request.updated_after.is_some() {
        Order::Updated
    } else {
        Order::Created
    };
    let updated_after = request.updated_after.map(timestamp);
    let start = match &request.cursor {
        Some(token) => Some(Position::from_cursor(token)?)
            .filter(|p| p.order == order)
            .ok_or_else(cursor::invalid)?,
        None => match order {
            Order::Created => Position {
                order,
                pos: i64::MIN,
                seq: i64::MIN,
            },
            Order::Updated => {
                let found = incremental_start(db, scope, kind, updated_after.as_deref()).await?;
                let Some(pos) = found else {
                    return Ok(PageRows {
                        rows: Vec::new(),
                        next: None,
                        from: "none".into(),
                    });
                };
                // Every record at the first position and after it; starting after the last
                // record of the position before would read that whole position.
                Position {
                    order,
                    pos,
                    seq: i64::MIN,
                }
            }
        },
    };
    let sql = page_query(db, order);
    let page_size = request.page_size as usize;
    // A write still running may land below a position this page would serve. Such writes
    // are short, so wait a moment for them before serving a shorter page.
    let patience = std::time::Instant::now() + HORIZON_PATIENCE;
    let (rows, last, total) = loop {
        let limit = i64::from(request.page_size) + 1;
        // (pos, horizon, seq, body) of each row.
        let found: Vec<(i64, i64, i64, String)> = match db.sqlite_reads() {
            Some(reads) => reads
                .read(|conn| {
                    let mut statement = conn.prepare_cached(sql)?;
                    let mut values: Vec<&dyn rusqlite::ToSql> =
                        vec![&scope.account_id, &kind, &start.pos, &start.seq, &limit];
                    if order == Order::Updated {
                        values.push(&updated_after);
                    }
                    bind_numbered(&mut statement, &values)?;
                    let mut rows = statement.raw_query();
                    let mut found = Vec::with_capacity(page_size + 1);
                    while let Some(row) = rows.next()? {
                        // By position (seq, pos, body, horizon): a name is looked up
                        // among the columns on every call.
                        found.push((row.get(1)?, row.get(3)?, row.get(0)?, row.get(2)?));
                    }
                    Ok(found)
                })
                .map_err(read_failed)?,
            None => {
                let mut query = sqlx::query(sql)
                    .bind(&scope.account_id)
                    .bind(kind)
                    .bind(start.pos)
                    .bind(start.seq)
                    .bind(limit);
                if order == Order::Updated {
                    query = query.bind(updated_after.as_deref());
                }
                let mut conn = db.acquire().await.map_err(internal)?;
                let rows = query.fetch_all(&mut *conn).await.map_err(internal)?;
                conn.release();
                rows.into_iter()
                    .map(|row| {
                        (
                            row.get("pos"),
                            row.get("horizon"),
                            row.get("seq"),
                            row.get("body"),
                        )
                    })
                    .collect()
            }
        };
        let total = found.len();
        let mut rows = Vec::with_capacity(page_size.min(total));
        let mut last = start;
        let mut held_back = false;
        for (pos, horizon, seq, body) in found {
            if rows.len() == page_size {
                break;
            }
            // At or past the horizon, a write still running may have a lower position:
            // stop here, and serve this row once everything before it has committed.
            if pos >= horizon {
                held_back = true;
                break;
            }
            last = Position { order, pos, seq };
            rows.push((last.seq, body));
        }
        if !held_back || std::time::Instant::now() >= patience {
            break (rows, last, total);
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    };
    let next = (total > rows.len()).then(|| last.cursor());
    Ok(PageRows {
        rows,
        next,
        from: format!("{}:{}", start.pos, start.seq),
    })
}

/// The page query of `order` on `db`'s store: $1 account, $2 kind, ($3, $4) the position
/// the page starts after, $5 the rows to read, and for [`Order::Updated`] $6 the filter's
/// time. Public so that a test can read its plan.
///
/// On SQLite the index is named (`INDEXED BY`): given few records updated after the
/// filter's time, its planner would rather collect them through `records_updated_at` and
/// sort them, which costs every match on every page; walking `records_updated` from the
/// start position costs only the page. Its limit is `$5 + 0`: SQLite reads the value bound
/// to a bare `LIMIT $5` while planning, and so prepares the statement again after every
/// bind (about a tenth of a page's time).
pub fn page_query(db: &Database, order: Order) -> &'static str {
    match order {
        Order::Created => db.pick(
            "SELECT seq, created_pos AS pos, body, 9223372036854775807 AS horizon
             FROM records INDEXED BY records_created
             WHERE linked_account_id = $1 AND kind = $2 AND (created_pos, seq) > ($3, $4)
             ORDER BY created_pos, seq LIMIT $5 + 0",
            "SELECT seq, created_pos AS pos, body,
                    pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS horizon FROM records
             WHERE linked_account_id = $1 AND kind = $2 AND (created_pos, seq) > ($3, $4)
             ORDER BY created_pos, seq LIMIT $5",
        ),
        Order::Updated => db.pick(
            "SELECT seq, updated_pos AS pos, body, 9223372036854775807 AS horizon
             FROM records INDEXED BY records_updated
             WHERE linked_account_id = $1 AND kind = $2 AND (updated_pos, seq) > ($3, $4)
               AND updated_at > $6
             ORDER BY updated_pos, seq LIMIT $5 + 0",
            "SELECT seq, updated_pos AS pos, body,
                    pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS horizon FROM records
             WHERE linked_account_id = $1 AND kind = $2 AND (updated_pos, seq) > ($3, $4)
               AND updated_at > $6
             ORDER BY updated_pos, seq LIMIT $5",
        ),
    }
}

/// The query of [`incremental_start`]: $1 account, $2 kind, $3 the filter's time.
///
/// `updated_pos + 0` keeps PostgreSQL from reading the MIN as the first row of
/// `records_updated` that matches, a walk over every record older than the filter; the
/// range of `records_updated_at` after the filter's time serves it instead.
pub fn incremental_start_query(db: &Database) -> &'static str {
    db.pick(
        "SELECT MIN(updated_pos + 0) AS first, 9223372036854775807 AS horizon FROM records
         WHERE linked_account_id = $1 AND kind = $2 AND updated_at > $3",
        "SELECT MIN(updated_pos + 0) AS first,
                pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS horizon FROM records
         WHERE linked_account_id = $1 AND kind = $2 AND updated_at > $3",
    )
}

/// The first position an incremental listing must read: the lowest position holding a
/// record updated after `updated_after`, or the horizon if that is lower (a write still
/// running may yet land there). `None` when no record matches.
async fn incremental_start(
    db: &Database,
    scope: &AccountScope,
    kind: &str,
    updated_after: Option<&str>,
) -> ServiceResult<Option<i64>> {
    let sql = incremental_start_query(db);
    let (first, horizon): (Option<i64>, i64) = match db.sqlite_reads() {
        Some(reads) => reads
            .read(|conn| {
                let mut statement = conn.prepare_cached(sql)?;
                bind_numbered(&mut statement, &[&scope.account_id, &kind, &updated_after])?;
                let mut rows = statement.raw_query();
                let row = rows.next()?.ok_or(rusqlite::Error::QueryReturnedNoRows)?;
                Ok((row.get("first")?, row.get("horizon")?))
            })
            .map_err(read_failed)?,
        None => {
            let mut conn = db.acquire().await.map_err(internal)?;
            let row = sqlx::query(sql)
                .bind(&scope.account_id)
                .bind(kind)
                .bind(updated_after)
                .fetch_one(&mut *conn)
                .await
                .map_err(internal)?;
            conn.release();
            (row.get("first"), row.get("horizon"))
        }
    };
    Ok(first.map(|f| f.min(horizon)))
}

/// Reads every record of a kind of a linked account in creation order, in batches of
/// [`EXPORT_BATCH`], on one pooled connection held for the whole export (so one cache
/// warms, not one per connection). It serves what has committed as it reads.
pub struct BatchReader {
    db: Database,
    connection: Option<crate::db::Conn>,
    account_id: String,
    kind: &'static str,
    updated_after: Option<String>,
    after: (i64, i64),
    buffered: std::collections::VecDeque<JsonObject>,
    done: bool,
}

impl BatchReader {
    pub fn new(
        db: Database,
        account_id: String,
        kind: &'static str,
        updated_after: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Self {
        BatchReader {
            db,
            connection: None,
            account_id,
            kind,
            updated_after: updated_after.map(timestamp),
            after: (i64::MIN, i64::MIN),
            buffered: std::collections::VecDeque::new(),
            done: false,
        }
    }

    pub async fn next(&mut self) -> ServiceResult<Option<JsonObject>> {
        if self.buffered.is_empty() && !self.done {
            if self.connection.is_none() {
                self.connection = Some(self.db.acquire().await.map_err(internal)?);
            }
            let connection = self.connection.as_mut().expect("acquired above");
            let rows = sqlx::query(
                "SELECT seq, created_pos, body FROM records
                 WHERE linked_account_id = $1 AND kind = $2 AND (created_pos, seq) > ($3, $4)
                   AND ($5 IS NULL OR updated_at > $5)
                 ORDER BY created_pos, seq LIMIT $6",
            )
            .bind(&self.account_id)
            .bind(self.kind)
            .bind(self.after.0)
            .bind(self.after.1)
            .bind(self.updated_after.as_deref())
            .bind(EXPORT_BATCH)
            .fetch_all(&mut **connection)
            .await
            .map_err(internal)?;
            self.done = (rows.len() as i64) < EXPORT_BATCH;
            for row in rows {
                self.after = (row.get("created_pos"), row.get("seq"));
                self.buffered.push_back(parse_body(row.get("body"))?);
            }
            if self.done {
                // Give the connection back as soon as the last batch is read.
                if let Some(connection) = self.connection.take() {
                    connection.release();
                }
            }
        }
        Ok(self.buffered.pop_front())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SQLite prepares a statement again after a bind when its plan read the bound value
    /// (a bare `LIMIT $5` does): every page would pay a parse and a plan.
    #[tokio::test]
    async fn the_page_queries_are_not_prepared_again_on_every_page() {
        let dir = tempfile::tempdir().unwrap();
        let url: crate::db::DatabaseUrl =
            dir.path().join("t.db").to_str().unwrap().parse().unwrap();
        let db = Database::open(&url, Default::default()).await.unwrap();
        let reads = db.sqlite_reads().expect("a SQLite store");
        for (order, extra) in [(Order::Created, None), (Order::Updated, Some("2020-01-01"))] {
            let reprepared = reads
                .read(|conn| {
                    let mut statement = conn.prepare(page_query(&db, order))?;
                    for limit in [26i64, 101, 2] {
                        let mut values: Vec<&dyn rusqlite::ToSql> =
                            vec![&"account", &"contacts", &0i64, &limit, &limit];
                        if let Some(after) = &extra {
                            values.push(after);
                        }
                        bind_numbered(&mut statement, &values)?;
                        let mut rows = statement.raw_query();
                        while rows.next()?.is_some() {}
                    }
                    Ok(statement.get_status(rusqlite::StatementStatus::RePrepare))
                })
                .unwrap();
            assert_eq!(reprepared, 0, "{order:?}: prepared again on a bind");
        }
        db.close().await;
    }

    #[test]
    fn positions_have_one_spelling() {
        for text in [
            "c:1:2",
            "u:-5:9223372036854775807",
            "c:-9223372036854775808:0",
        ] {
            assert_eq!(Position::parse(text).unwrap().encode(), text);
        }
        for bad in [
            "", "c", "c:1", "x:1:2", "c:01:2", "c:+1:2", "c:1:2:3", "c:1: 2",
        ] {
            assert_eq!(Position::parse(bad), None, "{bad}");
        }
    }
}
