//! Custom field values checked against their definitions, and the contact rules that keep
//! the plain and typed lists of emails and phone numbers in step.

use crm_api::ApiError;
use crm_api::models::{CustomFieldDefinition, CustomFieldType, JsonObject};
use serde_json::Value;

/// Resolves and checks every entry of a contact's `custom_fields` against the definitions
/// of its linked account, rewriting each entry in its canonical form: the definition's id
/// and name, the option's value and id for select fields. An entry that names no known
/// definition is kept as sent.
pub fn resolve(
    entries: &[Value],
    definitions: &[CustomFieldDefinition],
) -> Result<Vec<Value>, ApiError> {
    let mut resolved = Vec::with_capacity(entries.len());
    let mut used: Vec<&str> = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let field = format!("custom_fields[{i}]");
        let Value::Object(entry) = entry else {
            return Err(ApiError::unprocessable(
                &field,
                format!("{field} must be an object"),
            ));
        };
        let by_id = entry.get("id").and_then(Value::as_str);
        let by_name = entry.get("name").and_then(Value::as_str);
        if by_id.is_none() && by_name.is_none() {
            return Err(ApiError::unprocessable(
                &field,
                format!("{field} needs an id or a name"),
            ));
        }
        let found = definitions
            .iter()
            .find(|d| by_id.is_some() && d.id.as_deref() == by_id)
            .or_else(|| {
                definitions
                    .iter()
                    .find(|d| by_name.is_some() && d.name.as_deref() == by_name)
            });
        // A field no definition describes is kept as sent, unchecked: StackOne's own
        // examples write custom fields the provider defines, which this server may not know.
        let Some(definition) = found else {
            resolved.push(Value::Object(entry.clone()));
            continue;
        };
        let id = definition.id.as_deref().unwrap_or_default();
        if used.contains(&id) {
            return Err(ApiError::unprocessable(
                &field,
                format!("{field}: the custom field {id} is given more than once"),
            ));
        }
        used.push(id);
        let value = entry.get("value").cloned().unwrap_or(Value::Null);
        let (value, value_id) = check_value(definition, value).map_err(|why| {
            ApiError::unprocessable(&format!("{field}.value"), format!("{field}.value: {why}"))
        })?;
        let mut canonical = JsonObject::new();
        canonical.insert("id".into(), id.into());
        canonical.insert("remote_id".into(), id.into());
        if let Some(name) = &definition.name {
            canonical.insert("name".into(), name.clone().into());
        }
        if !value.is_null() {
            canonical.insert("value".into(), value);
        }
        if let Some(value_id) = value_id {
            canonical.insert("value_id".into(), value_id.clone().into());
            canonical.insert("remote_value_id".into(), value_id.into());
        }
        resolved.push(Value::Object(canonical));
    }
    Ok(resolved)
}

/// Checks `value` against the definition's type; answers the value to store and, for a
/// single select, the id of the chosen option. `null` clears a value of any type.
fn check_value(
    definition: &CustomFieldDefinition,
    value: Value,
) -> Result<(Value, Option<String>), String> {
    if value.is_null() {
        return Ok((value, None));
    }
    let field_type = definition.field_type.as_ref().and_then(|t| t.value);
    let ok = |v: Value| Ok((v, None));
    match field_type {
        None | Some(CustomFieldType::Other | CustomFieldType::UnmappedValue) => ok(value),
        Some(CustomFieldType::Text) => match value {
            Value::String(_) => ok(value),
            _ => Err("a text field takes a string".into()),
        },
        Some(CustomFieldType::Url) => match value.as_str() {
            Some(url) if is_url(url) => ok(value),
            _ => Err("a url field takes an absolute http(s) URL".into()),
        },
        Some(CustomFieldType::Integer) => {
            // JSON does not tell 12 from 12.0 (some clients send every number as a float):
            // a whole number is an integer, kept in its integer form.
            if value.is_i64() || value.is_u64() {
                ok(value)
            } else {
                match value.as_f64() {
                    Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => ok(Value::from(f as i64)),
                    _ => Err("an integer field takes a whole number".into()),
                }
            }
        }
        Some(CustomFieldType::Float) => match value {
            Value::Number(_) => ok(value),
            _ => Err("a float field takes a number".into()),
        },
        Some(CustomFieldType::Boolean | CustomFieldType::Checkbox) => match value {
            Value::Bool(_) => ok(value),
            _ => Err("a boolean or checkbox field takes true or false".into()),
        },
        Some(CustomFieldType::Date) => match value.as_str() {
            Some(s) if is_date(s) => ok(value),
            _ => Err("a date field takes a date (2024-01-31) or an RFC 3339 date-time".into()),
        },
        Some(CustomFieldType::List) => match value {
            Value::Array(_) => ok(value),
            _ => Err("a list field takes an array".into()),
        },
        Some(CustomFieldType::SingleSelect) => {
            let (value, id) = option(definition, &value)?;
            Ok((value, Some(id)))
        }
        Some(CustomFieldType::MultiSelect) => {
            let Value::Array(chosen) = value else {
                return Err("a multi_select field takes an array of options".into());
            };
            let values = chosen
                .iter()
                .map(|v| option(definition, v).map(|(value, _)| value))
                .collect::<Result<Vec<_>, _>>()?;
            ok(Value::Array(values))
        }
    }
}

/// Finds the option `chosen` names, by id or by value.
fn option(definition: &CustomFieldDefinition, chosen: &Value) -> Result<(Value, String), String> {
    let options = definition.options.as_deref().unwrap_or_default();
    options
        .iter()
        .find(|o| &o.value == chosen || chosen.as_str() == Some(o.id.as_str()))
        .map(|o| (o.value.clone(), o.id.clone()))
        .ok_or_else(|| {
            let known: Vec<String> = options.iter().map(|o| o.value.to_string()).collect();
            format!(
                "{chosen} is not an option; the options are {}",
                known.join(", ")
            )
        })
}

fn is_url(s: &str) -> bool {
    let rest = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"));
    rest.is_some_and(|r| {
        let host = r.split(['/', '?', '#']).next().unwrap_or_default();
        !host.is_empty() && !s.contains(char::is_whitespace)
    })
}

fn is_date(s: &str) -> bool {
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok()
        || chrono::DateTime::parse_from_rfc3339(s).is_ok()
}

/// A plausible email address: one `@`, a non-empty local part, a dotted domain, no spaces.
pub fn is_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains("..")
        && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// Keeps a plain list (`emails`) and a typed list (`email_addresses`) describing the same
/// values in step, after `sent` was merged into `record`:
/// - the typed list was sent: the plain list is derived from it; if the plain list was
///   sent too, it must hold the same values in the same order;
/// - only the plain list was sent: the typed list is rebuilt from it, keeping the type of
///   every value it already had;
/// - either was cleared with `null`: both are cleared.
pub fn sync_lists(
    record: &mut JsonObject,
    sent: &JsonObject,
    plain: &str,
    typed: &str,
    key: &str,
) -> Result<(), ApiError> {
    let sent_plain = sent.get(plain);
    let sent_typed = sent.get(typed);
    if sent_plain.is_some_and(Value::is_null) || sent_typed.is_some_and(Value::is_null) {
        record.remove(plain);
        record.remove(typed);
        return Ok(());
    }
    let values_of = |typed_list: &Value| -> Vec<Value> {
        typed_list
            .as_array()
            .map(|items| items.iter().filter_map(|i| i.get(key).cloned()).collect())
            .unwrap_or_default()
    };
    match (sent_plain, sent_typed) {
        (_, Some(typed_list)) => {
            let derived = values_of(typed_list);
            if let Some(plain_list) = sent_plain
                && plain_list.as_array() != Some(&derived)
            {
                return Err(ApiError::unprocessable(
                    plain,
                    format!(
                        "{plain} and {typed} were both sent but list different values; send one, or the same values in the same order"
                    ),
                ));
            }
            record.insert(plain.to_owned(), Value::Array(derived));
        }
        (Some(Value::Array(values)), None) => {
            let previous = record
                .get(typed)
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let rebuilt = values
                .iter()
                .map(|v| {
                    previous
                        .iter()
                        .find(|p| p.get(key) == Some(v))
                        .cloned()
                        .unwrap_or_else(|| serde_json::json!({ key: v }))
                })
                .collect();
            record.insert(typed.to_owned(), Value::Array(rebuilt));
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crm_api::models::{CustomFieldOption, CustomFieldTypeEnum};
    use serde_json::json;

    fn definition(id: &str, name: &str, field_type: CustomFieldType) -> CustomFieldDefinition {
        CustomFieldDefinition {
            id: Some(id.into()),
            name: Some(name.into()),
            field_type: Some(CustomFieldTypeEnum {
                value: Some(field_type),
                source_value: None,
            }),
            options: Some(vec![
                CustomFieldOption {
                    id: "1".into(),
                    value: json!("Started"),
                },
                CustomFieldOption {
                    id: "2".into(),
                    value: json!("Completed"),
                },
            ]),
            ..Default::default()
        }
    }

    #[test]
    fn values_must_fit_their_type() {
        let cases = [
            (CustomFieldType::Text, json!("x"), json!(3)),
            (CustomFieldType::Integer, json!(3), json!(3.5)),
            (CustomFieldType::Integer, json!(3.0), json!("3")),
            (CustomFieldType::Float, json!(3.5), json!("3.5")),
            (CustomFieldType::Boolean, json!(true), json!("yes")),
            (CustomFieldType::Checkbox, json!(false), json!(0)),
            (
                CustomFieldType::Date,
                json!("2024-01-31"),
                json!("31/01/2024"),
            ),
            (
                CustomFieldType::Url,
                json!("https://example.com/a"),
                json!("example.com"),
            ),
            (CustomFieldType::List, json!([1, "a"]), json!("a")),
            (
                CustomFieldType::SingleSelect,
                json!("Completed"),
                json!("Unknown"),
            ),
            (
                CustomFieldType::MultiSelect,
                json!(["1", "Completed"]),
                json!(["Started", "Nope"]),
            ),
        ];
        for (field_type, good, bad) in cases {
            let defs = [definition("d1", "F", field_type)];
            assert!(
                resolve(&[json!({"id": "d1", "value": good})], &defs).is_ok(),
                "{field_type:?} {good}"
            );
            let err = resolve(&[json!({"name": "F", "value": bad})], &defs).unwrap_err();
            assert_eq!(err.status, 422, "{field_type:?} {bad}");
            assert_eq!(err.data.unwrap()["field"], "custom_fields[0].value");
        }
    }

    #[test]
    fn entries_are_resolved_by_id_or_name_to_canonical_form() {
        let defs = [definition("d1", "Status", CustomFieldType::SingleSelect)];
        let out = resolve(&[json!({"name": "Status", "value": "2"})], &defs).unwrap();
        assert_eq!(
            out[0],
            json!({"id": "d1", "remote_id": "d1", "name": "Status", "value": "Completed", "value_id": "2", "remote_value_id": "2"})
        );
        let unknown = json!({"id": "nope", "name": "Elsewhere", "value": 1});
        assert_eq!(
            resolve(std::slice::from_ref(&unknown), &defs).unwrap(),
            vec![unknown]
        );
        assert_eq!(
            resolve(&[json!({"value": 1})], &defs).unwrap_err().status,
            422
        );
        assert_eq!(
            resolve(
                &[
                    json!({"id": "d1", "value": "1"}),
                    json!({"name": "Status", "value": "2"})
                ],
                &defs
            )
            .unwrap_err()
            .status,
            422
        );
    }

    #[test]
    fn emails() {
        for good in ["a@b.co", "first.last+tag@sub.example.org"] {
            assert!(is_email(good), "{good}");
        }
        for bad in [
            "", "a", "a@", "@b.co", "a@b", "a@@b.co", "a b@c.de", "a@.b.co", "a@b.co.",
        ] {
            assert!(!is_email(bad), "{bad}");
        }
    }

    #[test]
    fn plain_and_typed_lists_stay_in_step() {
        let mut record =
            json!({"emails": ["a@x.io"], "email_addresses": [{"email": "a@x.io", "type": "work"}]})
                .as_object()
                .unwrap()
                .clone();
        // Only the plain list: types are kept for values that stay.
        let sent = json!({"emails": ["a@x.io", "b@x.io"]})
            .as_object()
            .unwrap()
            .clone();
        record.insert("emails".into(), sent["emails"].clone());
        sync_lists(&mut record, &sent, "emails", "email_addresses", "email").unwrap();
        assert_eq!(
            record["email_addresses"],
            json!([{"email": "a@x.io", "type": "work"}, {"email": "b@x.io"}])
        );
        // Only the typed list: the plain list follows.
        let sent = json!({"email_addresses": [{"email": "c@x.io", "type": "home"}]})
            .as_object()
            .unwrap()
            .clone();
        record.insert("email_addresses".into(), sent["email_addresses"].clone());
        sync_lists(&mut record, &sent, "emails", "email_addresses", "email").unwrap();
        assert_eq!(record["emails"], json!(["c@x.io"]));
        // Both, disagreeing: 422.
        let sent = json!({"emails": ["d@x.io"], "email_addresses": [{"email": "c@x.io"}]})
            .as_object()
            .unwrap()
            .clone();
        assert_eq!(
            sync_lists(&mut record, &sent, "emails", "email_addresses", "email")
                .unwrap_err()
                .status,
            422
        );
        // Clearing either clears both.
        let sent = json!({"emails": null}).as_object().unwrap().clone();
        sync_lists(&mut record, &sent, "emails", "email_addresses", "email").unwrap();
        assert!(!record.contains_key("emails") && !record.contains_key("email_addresses"));
    }
}
