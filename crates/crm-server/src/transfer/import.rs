//! `admin import`: the NDJSON of Export Contacts into a linked account.

use super::*;

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
pub(super) struct Prepared {
    line: u64,
    id: String,
    external_id: Option<String>,
    body: String,
    created_at: String,
    updated_at: String,
}

/// Fields of an exported contact that the server assigns or derives; a create never takes
/// them. `id`, `created_at` and `updated_at` are read apart and kept.
pub(super) const ASSIGNED: [&str; 11] = [
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
    if report.imported > 0 {
        db.refresh_statistics().await;
    }
    progress.line(format_args!(
        "import: {} lines read, {} imported, {} skipped",
        report.lines, report.imported, report.skipped
    ));
    Ok(report)
}

/// The custom field definitions of a linked account, to check custom field values by.
pub(super) async fn definitions(
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
pub(super) async fn write_batch(
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
pub(super) fn prepare(
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
pub(super) fn derived_id(account_id: &str, line: &JsonObject) -> String {
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
