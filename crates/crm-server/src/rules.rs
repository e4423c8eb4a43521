//! The record rules of the unified model, written once and free of I/O: what every
//! provider (our own store, and the connectors to other CRMs) applies to a record before
//! it is stored or sent, and after it is read.
//!
//! A record is its unified JSON object. [`Resource`] says, per kind, what a new record gets
//! by default, which fields are derived from others (the plain and typed email and phone
//! lists kept in step, the `remote_*` twins), and what makes it valid (custom field values
//! are checked against their definitions in [`crate::custom_fields`]). [`merge`] applies a
//! PATCH, [`stamp`] marks a write with its time and a new etag, [`etag_matches`] reads
//! `If-Match`, and [`present`] gives the unified form a caller sees.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use crm_api::ApiError;
use crm_api::models::{Account, Contact, CustomFieldDefinition, CustomFieldType, JsonObject, List};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::custom_fields;

/// A kind of record of the unified model.
pub trait Resource: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The kind column, also the resource name in `raw` URLs.
    const KIND: &'static str;
    /// The name of one record, for messages.
    const NOUN: &'static str;

    /// Whether records of this kind carry custom fields checked against definitions and
    /// `unified_custom_fields` from the project's mapping.
    const CUSTOM_FIELDS: bool = false;

    /// Whether a record of this kind that holds items (a list) keeps its `type`.
    const TYPE_FIXED_BY_ITEMS: bool = false;

    /// Fills in what a new record gets when the body leaves it out.
    fn defaults(_record: &mut JsonObject) {}

    /// Recomputes the fields derived from others, given what the write sent.
    fn derive(_record: &mut JsonObject, _sent: &JsonObject) -> Result<(), ApiError> {
        Ok(())
    }

    /// Checks the record as it would be stored.
    fn check(_record: &JsonObject) -> Result<(), ApiError> {
        Ok(())
    }

    /// Sets `unified_custom_fields` from the record's custom fields and a non-empty
    /// `mapping`, as [`present`] does on the JSON object (only kinds with
    /// [`Resource::CUSTOM_FIELDS`] are asked).
    fn unify(&mut self, _mapping: &BTreeMap<String, String>) {}

    /// The record's `external_id`, as its JSON holds it.
    fn external_id(&self) -> Option<&str> {
        None
    }

    /// The record's `etag`.
    fn etag(&self) -> Option<&str> {
        None
    }

    /// Whether the record holds custom field values (which presenting it names by the
    /// project's mapping).
    fn has_custom_fields(&self) -> bool {
        false
    }
}

impl Resource for Contact {
    const KIND: &'static str = "contacts";
    const NOUN: &'static str = "contact";
    const CUSTOM_FIELDS: bool = true;

    fn derive(record: &mut JsonObject, sent: &JsonObject) -> Result<(), ApiError> {
        // The local provider's ids and times are ours.
        for (field, remote) in [
            ("deal_ids", "remote_deal_ids"),
            ("account_ids", "remote_account_ids"),
            ("created_at", "remote_created_at"),
            ("updated_at", "remote_updated_at"),
        ] {
            match record.get(field).cloned() {
                Some(value) => record.insert(remote.to_owned(), value),
                None => record.remove(remote),
            };
        }
        record.insert("remote_deleted".into(), false.into());
        custom_fields::sync_lists(record, sent, "emails", "email_addresses", "email")?;
        custom_fields::sync_lists(
            record,
            sent,
            "phone_numbers",
            "typed_phone_numbers",
            "number",
        )
    }

    fn external_id(&self) -> Option<&str> {
        self.external_id.as_deref()
    }

    fn etag(&self) -> Option<&str> {
        self.etag.as_deref()
    }

    fn has_custom_fields(&self) -> bool {
        self.custom_fields.as_ref().is_some_and(|c| !c.is_empty())
    }

    fn unify(&mut self, mapping: &BTreeMap<String, String>) {
        let entries = self.custom_fields.as_deref().unwrap_or_default();
        let mut unified = JsonObject::new();
        for (unified_name, definition_name) in mapping {
            if let Some(value) = entries
                .iter()
                .find(|e| e.name.as_deref() == Some(definition_name.as_str()))
                .and_then(|e| e.value.as_ref())
            {
                unified.insert(unified_name.clone(), value.clone());
            }
        }
        if !unified.is_empty() {
            self.unified_custom_fields = Some(unified);
        }
    }

    fn check(record: &JsonObject) -> Result<(), ApiError> {
        match record.get("last_name").and_then(Value::as_str) {
            Some(name) if !is_blank(name) => {}
            _ => {
                return Err(ApiError::unprocessable(
                    "last_name",
                    "last_name is required and must not be empty",
                ));
            }
        }
        let emails = record
            .get("emails")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for (i, email) in emails.iter().enumerate() {
            if !email.as_str().is_some_and(custom_fields::is_email) {
                return Err(ApiError::unprocessable(
                    &format!("emails[{i}]"),
                    format!("emails[{i}]: {email} is not an email address"),
                ));
            }
        }
        Ok(())
    }
}

impl Resource for Account {
    fn etag(&self) -> Option<&str> {
        self.etag.as_deref()
    }

    const KIND: &'static str = "accounts";
    const NOUN: &'static str = "account";

    fn derive(record: &mut JsonObject, _sent: &JsonObject) -> Result<(), ApiError> {
        match record.get("owner_id").cloned() {
            Some(owner) => record.insert("remote_owner_id".to_owned(), owner),
            None => record.remove("remote_owner_id"),
        };
        Ok(())
    }
}

impl Resource for List {
    fn etag(&self) -> Option<&str> {
        self.etag.as_deref()
    }

    const KIND: &'static str = "lists";
    const NOUN: &'static str = "list";
    const TYPE_FIXED_BY_ITEMS: bool = true;

    fn defaults(record: &mut JsonObject) {
        record
            .entry("type")
            .or_insert_with(|| serde_json::json!({ "value": "contacts" }));
    }

    fn check(record: &JsonObject) -> Result<(), ApiError> {
        require_name(record)
    }
}

impl Resource for CustomFieldDefinition {
    const KIND: &'static str = "custom_field_definitions/contacts";
    const NOUN: &'static str = "custom field definition";

    fn defaults(record: &mut JsonObject) {
        record
            .entry("type")
            .or_insert_with(|| serde_json::json!({ "value": "text" }));
    }

    fn check(record: &JsonObject) -> Result<(), ApiError> {
        require_name(record)?;
        let definition: CustomFieldDefinition = typed(record)?;
        let options = definition.options.unwrap_or_default();
        let field_type = definition.field_type.and_then(|t| t.value);
        if matches!(
            field_type,
            Some(CustomFieldType::SingleSelect | CustomFieldType::MultiSelect)
        ) && options.is_empty()
        {
            return Err(ApiError::unprocessable(
                "options",
                "a single_select or multi_select field needs at least one option",
            ));
        }
        let mut ids: Vec<&str> = options.iter().map(|o| o.id.as_str()).collect();
        ids.sort_unstable();
        if let Some(pair) = ids.windows(2).find(|w| w[0] == w[1]) {
            return Err(ApiError::unprocessable(
                "options",
                format!("option id {:?} appears more than once", pair[0]),
            ));
        }
        Ok(())
    }
}

/// A name the server refuses: empty, or only white space (the spec's `NOT_BLANK` pattern
/// states the same rule; a conformance test holds the two together).
pub fn is_blank(name: &str) -> bool {
    name.trim().is_empty()
}

pub fn require_name(record: &JsonObject) -> Result<(), ApiError> {
    match record.get("name").and_then(Value::as_str) {
        Some(name) if !is_blank(name) => Ok(()),
        _ => Err(ApiError::unprocessable(
            "name",
            "name is required and must not be empty",
        )),
    }
}

pub fn typed<R: DeserializeOwned>(record: &JsonObject) -> Result<R, ApiError> {
    typed_owned(record.clone())
}

/// [`typed`] for a record the caller no longer needs: its values are moved, not copied.
pub fn typed_owned<R: DeserializeOwned>(record: JsonObject) -> Result<R, ApiError> {
    serde_json::from_value(Value::Object(record))
        .map_err(|e| ApiError::unprocessable("", format!("the record is not valid: {e}")))
}

pub fn to_object<T: Serialize>(value: &T) -> Result<JsonObject, ApiError> {
    match serde_json::to_value(value) {
        Ok(Value::Object(o)) => Ok(o),
        _ => Err(ApiError::internal(
            "a record did not serialise to an object",
        )),
    }
}

pub fn parse_body(body: &str) -> Result<JsonObject, ApiError> {
    serde_json::from_str(body)
        .map_err(|e| ApiError::internal(format!("a stored record is corrupt: {e}")))
}

/// Applies the fields that were sent: a value replaces, `null` clears. `passthrough` is
/// for the provider and does not become part of the unified record; `id` and `etag` are
/// checks, never values to store.
pub fn merge(record: &mut JsonObject, sent: &JsonObject) {
    for (field, value) in sent {
        if matches!(field.as_str(), "passthrough" | "id" | "etag") {
            continue;
        }
        if value.is_null() {
            record.remove(field);
        } else {
            record.insert(field.clone(), value.clone());
        }
    }
}

/// Marks a record as written now: a new `updated_at` and a new `etag`.
pub fn stamp(record: &mut JsonObject, now: DateTime<Utc>) {
    record.insert(
        "updated_at".into(),
        serde_json::to_value(now).unwrap_or_default(),
    );
    let etag: String = uuid::Uuid::new_v4()
        .simple()
        .to_string()
        .chars()
        .take(16)
        .collect();
    record.insert("etag".into(), etag.into());
}

/// Whether an `If-Match` value names the current etag: `*`, or the etag quoted, weak or bare.
pub fn etag_matches(wanted: &str, current: &str) -> bool {
    wanted
        .split(',')
        .map(str::trim)
        .any(|w| w == "*" || w.trim_start_matches("W/").trim_matches('"') == current)
}

pub fn external_id(record: &JsonObject) -> Option<String> {
    record
        .get("external_id")
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// Fills `unified_custom_fields` from the project's mapping and types the record.
pub fn present<R: Resource>(
    mut record: JsonObject,
    mapping: &BTreeMap<String, String>,
) -> Result<R, ApiError> {
    if R::CUSTOM_FIELDS && !mapping.is_empty() {
        let entries = record
            .get("custom_fields")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let mut unified = JsonObject::new();
        for (unified_name, definition_name) in mapping {
            if let Some(value) = entries
                .iter()
                .find(|e| e.get("name").and_then(Value::as_str) == Some(definition_name.as_str()))
                .and_then(|e| e.get("value"))
            {
                unified.insert(unified_name.clone(), value.clone());
            }
        }
        if !unified.is_empty() {
            record.insert("unified_custom_fields".into(), Value::Object(unified));
        }
    }
    typed_owned(record)
}

/// [`present`] of a stored record's JSON text, read straight into `R` without the JSON
/// object in between. Text that does not read so (a corrupt record, one `R` refuses)
/// goes through [`parse_body`] and [`present`], which give the same answer and error as
/// before.
pub fn present_stored<R: Resource>(
    body: &str,
    mapping: &BTreeMap<String, String>,
) -> Result<R, ApiError> {
    // A derived struct also reads a JSON array, which a record never is.
    let object = body.trim_start().starts_with('{');
    match serde_json::from_str::<R>(body) {
        Ok(mut record) if object => {
            if R::CUSTOM_FIELDS && !mapping.is_empty() {
                record.unify(mapping);
            }
            Ok(record)
        }
        _ => present(parse_body(body)?, mapping),
    }
}

/// A new record of kind `R` from a create's body: `id` and `etag` are the server's to
/// assign, so a body that sends them is refused; `remote_id` is `id` until a provider says
/// otherwise.
pub fn new_record<R: Resource>(
    sent: &JsonObject,
    id: &str,
    now: DateTime<Utc>,
) -> Result<JsonObject, ApiError> {
    if sent.contains_key("id") {
        return Err(ApiError::unprocessable(
            "id",
            "id is assigned by the server; leave it out on create",
        ));
    }
    if sent.contains_key("etag") {
        return Err(ApiError::unprocessable(
            "etag",
            "etag applies to updates; leave it out on create",
        ));
    }
    let mut record = JsonObject::new();
    merge(&mut record, sent);
    R::defaults(&mut record);
    record.insert("id".into(), id.into());
    record.insert("remote_id".into(), id.into());
    record.insert(
        "created_at".into(),
        serde_json::to_value(now).unwrap_or_default(),
    );
    stamp(&mut record, now);
    R::derive(&mut record, sent)?;
    R::check(&record)?;
    Ok(record)
}

/// Applies an update's body to `record`: the body's `id` must be the record's, the etag
/// named by `If-Match` (or the body's `etag`) must be the current one (else 412), and the
/// result must pass the rules of its kind.
pub fn apply_update<R: Resource>(
    record: &mut JsonObject,
    sent: &JsonObject,
    if_match: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(), ApiError> {
    let id = record
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    if let Some(sent_id) = sent.get("id").filter(|v| !v.is_null())
        && sent_id.as_str() != Some(id.as_str())
    {
        return Err(ApiError::unprocessable(
            "id",
            format!(
                "the body's id {sent_id} is not the id of the {} being updated ({id}); an update never changes an id",
                R::NOUN
            ),
        ));
    }
    let current = record
        .get("etag")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let wanted = if_match.or_else(|| sent.get("etag").and_then(Value::as_str));
    if let Some(wanted) = wanted
        && !etag_matches(wanted, &current)
    {
        return Err(ApiError::precondition_failed(format!(
            "the {} has changed: its etag is \"{current}\", not {wanted}; read it again and retry",
            R::NOUN
        ))
        .with("etag", current));
    }
    merge(record, sent);
    stamp(record, now);
    R::derive(record, sent)?;
    R::check(record)
}

/// The `type.value` of a record, which a list that holds items keeps.
pub fn type_of(record: &JsonObject) -> Option<Value> {
    record.get("type").and_then(|t| t.get("value")).cloned()
}

/// A record of kind `R` that is not there.
pub fn not_found<R: Resource>(id: &str) -> ApiError {
    ApiError::not_found(format!("{} {id} not found", R::NOUN))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(value: Value) -> JsonObject {
        match value {
            Value::Object(o) => o,
            _ => unreachable!(),
        }
    }

    #[test]
    fn a_new_contact_keeps_its_lists_in_step() {
        let sent = object(json!({ "last_name": "Lovelace", "emails": ["ada@example.com"] }));
        let record = new_record::<Contact>(&sent, "c-1", Utc::now()).unwrap();
        assert_eq!(record["id"], "c-1");
        assert_eq!(record["remote_id"], "c-1");
        assert_eq!(record["email_addresses"][0]["email"], "ada@example.com");
        assert!(record["etag"].as_str().is_some_and(|e| !e.is_empty()));
    }

    #[test]
    fn an_update_checks_id_and_etag_and_changes_the_etag() {
        let sent = object(json!({ "last_name": "Lovelace" }));
        let mut record = new_record::<Contact>(&sent, "c-1", Utc::now()).unwrap();
        let etag = record["etag"].as_str().unwrap().to_owned();
        let stale =
            apply_update::<Contact>(&mut record.clone(), &sent, Some("\"nope\""), Utc::now());
        assert_eq!(stale.unwrap_err().status, 412);
        let other_id = object(json!({ "id": "c-2" }));
        let moved = apply_update::<Contact>(&mut record.clone(), &other_id, None, Utc::now());
        assert_eq!(moved.unwrap_err().status, 422);
        let rename = object(json!({ "first_name": "Ada" }));
        apply_update::<Contact>(
            &mut record,
            &rename,
            Some(&format!("\"{etag}\"")),
            Utc::now(),
        )
        .unwrap();
        assert_eq!(record["first_name"], "Ada");
        assert_ne!(record["etag"], etag.as_str());
    }

    #[test]
    fn null_clears_and_passthrough_stays_out() {
        let mut record = object(json!({ "a": 1, "b": 2 }));
        merge(
            &mut record,
            &object(json!({ "a": null, "passthrough": { "x": 1 }, "c": 3 })),
        );
        assert_eq!(Value::Object(record), json!({ "b": 2, "c": 3 }));
    }
}
