//! Proving two stores hold the same data: counts, order-independent checksums, and the
//! order of both listings.

use super::*;

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
pub(super) struct Sum([u8; 32]);

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

pub(super) fn row_digest(row: &[Cell]) -> impl AsRef<[u8]> {
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
pub(super) async fn order_digest(db: &Database) -> Result<String, sqlx::Error> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
