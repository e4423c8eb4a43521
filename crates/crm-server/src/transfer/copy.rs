//! `admin copy`: a whole store into an empty one, in batches, positions issued anew.

use super::*;

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
pub(super) async fn has_projects(db: &Database) -> Result<bool, sqlx::Error> {
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
pub(super) fn sqlite_file(url: &DatabaseUrl) -> Option<std::path::PathBuf> {
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
    to.refresh_statistics().await;
    progress.line(format_args!(
        "copied in {:.1?}; verifying",
        started.elapsed()
    ));
    verify(from, to).await
}

/// Copies a table as it is, one transaction per batch.
pub(super) async fn copy_table(
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
pub(super) fn records_with_position() -> Vec<(&'static str, Type)> {
    let mut columns = RECORDS.columns.to_vec();
    columns.push(("created_pos", Type::Int));
    columns
}

pub(super) const SEQ: usize = 0;
pub(super) const ACCOUNT: usize = 1;
pub(super) const KIND: usize = 2;

/// Whether `row` follows `previous` in the same listing (linked account and kind) with a
/// lower `seq`, so the two cannot share a position.
pub(super) fn needs_new_position(previous: &[Cell], row: &[Cell], seq: usize) -> bool {
    previous[ACCOUNT] == row[ACCOUNT]
        && previous[KIND] == row[KIND]
        && row[seq].int() < previous[seq].int()
}

/// Copies the records in creation order (per linked account and kind, the order of plain
/// listings), giving each batch fresh positions of the target.
pub(super) async fn copy_records(
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
pub(super) async fn reorder_updates(
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
