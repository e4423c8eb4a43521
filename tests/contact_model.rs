//! The contact model beyond StackOne's: the seeds' fields, validation, etags, update by
//! external id, custom fields, field exclusion and idempotent POSTs — through the generated
//! client where it can say it, by hand where it cannot.

use std::collections::HashMap;

use conformance::{TestServer, failure, field_of};
use crm_client::Error;
use crm_client::types;
use serde_json::{Value, json};

fn full_contact() -> types::CrmCreateContactRequestDto {
    serde_json::from_value(json!({
        "first_name": "Steve",
        "last_name": "Wozniak",
        "name": "Steve Wozniak",
        "title": "Co-founder",
        "salutation": "Mr.",
        "department": "Engineering",
        "description": "Designed the Apple I.",
        "birthday": "1950-08-11",
        "lead_source": "Trade show",
        "photo_url": "https://example.com/woz.png",
        "account": {"id": "acc-1", "name": "Apple Inc."},
        "owner": {"id": "user-7"},
        "tags": [{"id": "t1", "name": "VIP"}],
        "urls": [{"url": "https://woz.org", "type": "website"}],
        "email_addresses": [{"email": "steve@apple.com", "type": "work"}, {"email": "woz@woz.org", "type": "personal"}],
        "typed_phone_numbers": [{"number": "123-456-7890", "extension": "42", "type": "work"}, {"number": "555-0100", "type": "assistant"}],
        "addresses": [{"street_1": "1 Infinite Loop", "city": "Cupertino", "state": "CA", "postal_code": "95014",
                       "country_subdivision": "US-CA", "country": "US", "type": "mailing"}],
        "external_id": "ext-woz",
        "last_activity_at": "2024-01-02T03:04:05Z",
        "remote_fields": {"Assistant_Name__c": "Jane Doe", "HasOptedOutOfEmail": true},
        "deal_ids": ["deal-001"],
        "passthrough": {"other_known_names": "Woz"}
    }))
    .expect("the generated model takes every field")
}

#[tokio::test]
async fn every_seed_field_round_trips_and_the_lists_stay_in_step() {
    let server = TestServer::start().await;
    let client = server.client();
    let account = server.account_id.as_str();
    let created = client
        .crm_create_contact()
        .x_account_id(account)
        .body(full_contact())
        .send()
        .await
        .unwrap();
    let etag_header = created
        .headers()
        .get("etag")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let created = created.into_inner().data;
    let stored = serde_json::to_value(&created).unwrap();
    let sent = serde_json::to_value(full_contact()).unwrap();
    for (field, value) in sent.as_object().unwrap() {
        if field == "passthrough" {
            continue;
        }
        let got = &stored[field];
        // Timestamps come back in their canonical form; compare them as instants.
        if field == "last_activity_at" {
            let a = chrono::DateTime::parse_from_rfc3339(got.as_str().unwrap()).unwrap();
            let b = chrono::DateTime::parse_from_rfc3339(value.as_str().unwrap()).unwrap();
            assert_eq!(a, b);
            continue;
        }
        assert_eq!(got, value, "{field}");
    }
    // The plain lists follow the typed ones.
    assert_eq!(stored["emails"], json!(["steve@apple.com", "woz@woz.org"]));
    assert_eq!(stored["phone_numbers"], json!(["123-456-7890", "555-0100"]));
    // Provider facts of the local provider, and the version.
    assert_eq!(stored["remote_deleted"], json!(false));
    assert_eq!(stored["remote_created_at"], stored["created_at"]);
    let etag = created.etag.clone().unwrap();
    assert_eq!(etag_header, format!("\"{etag}\""));

    // A write to the plain list shows in the typed one, keeping the types it had.
    let id = created.id.clone().unwrap();
    let updated = client
        .crm_update_contact()
        .x_account_id(account)
        .id(&id)
        .body(types::CrmCreateContactRequestDto {
            emails: Some(vec![
                "woz@woz.org".parse().unwrap(),
                "new@apple.com".parse().unwrap(),
            ]),
            ..Default::default()
        })
        .send()
        .await
        .unwrap()
        .into_inner()
        .data;
    let typed: Vec<Value> = updated
        .email_addresses
        .unwrap()
        .iter()
        .map(|e| serde_json::to_value(e).unwrap())
        .collect();
    assert_eq!(
        typed,
        vec![
            json!({"email": "woz@woz.org", "type": "personal"}),
            json!({"email": "new@apple.com"})
        ]
    );
    assert_ne!(updated.etag.unwrap(), etag, "every write changes the etag");
    server.stop().await;
}

#[tokio::test]
async fn bodies_are_validated() {
    let server = TestServer::start().await;
    let client = server.client();
    let account = server.account_id.as_str();

    let missing = failure(
        client
            .crm_create_contact()
            .x_account_id(account)
            .body(types::CrmCreateContactRequestDto {
                first_name: Some("No".into()),
                ..Default::default()
            })
            .send()
            .await,
        422,
    );
    assert_eq!(field_of(&missing), "last_name");
    // The spec's pattern makes the client refuse a malformed address before sending; the
    // server refuses it all the same, naming the entry.
    assert!(
        "not-an-email"
            .parse::<types::CrmCreateContactRequestDtoEmailsItem>()
            .is_err()
    );
    let bad_email = reqwest::Client::new()
        .post(format!("{}/unified/crm/contacts", server.base_url))
        .basic_auth(&server.key, Some(""))
        .header("x-account-id", account)
        .json(&json!({"last_name": "X", "emails": ["ok@example.com", "not-an-email"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad_email.status(), 422);
    let bad_email: serde_json::Value = bad_email.json().await.unwrap();
    assert_eq!(bad_email["data"]["field"], "emails[1]", "{bad_email}");

    // Unknown fields, at the top and nested, are refused, naming the field; nothing is created.
    let http = reqwest::Client::new();
    for (body, field) in [
        (json!({"last_name": "X", "lastName": "Y"}), "lastName"),
        (
            json!({"last_name": "X", "tags": [{"name": "a", "colour": "red"}]}),
            "tags[0].colour",
        ),
        (
            json!({"last_name": "X", "typed_phone_numbers": [{"number": "1", "type": "pager"}]}),
            "typed_phone_numbers[0].type",
        ),
        (
            json!({"last_name": "X", "birthday": "11/08/1950"}),
            "birthday",
        ),
    ] {
        let response = http
            .post(format!("{}/unified/crm/contacts", server.base_url))
            .basic_auth(&server.key, Some(""))
            .header("x-account-id", account)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 422, "{body}");
        let error: Value = response.json().await.unwrap();
        assert!(
            error["data"]["field"].as_str().unwrap().contains(field),
            "{body}: {error}"
        );
    }
    let page = client
        .crm_list_contacts()
        .x_account_id(account)
        .send()
        .await
        .unwrap()
        .into_inner();
    assert!(page.data.is_empty());

    // exclude_fields leaves fields out; with fields it is 400.
    let c = client
        .crm_create_contact()
        .x_account_id(account)
        .body(full_contact())
        .send()
        .await
        .unwrap()
        .into_inner()
        .data;
    let got = client
        .crm_get_contact()
        .x_account_id(account)
        .id(c.id.as_deref().unwrap())
        .exclude_fields("remote_fields,emails")
        .send()
        .await
        .unwrap()
        .into_inner()
        .data;
    assert!(got.remote_fields.is_none() && got.emails.is_none());
    assert!(got.last_name.is_some() && got.email_addresses.is_some());
    failure(
        client
            .crm_list_contacts()
            .x_account_id(account)
            .fields("id")
            .exclude_fields("name")
            .send()
            .await,
        400,
    );
    server.stop().await;
}

#[tokio::test]
async fn if_match_guards_updates_and_no_update_is_lost() {
    let server = TestServer::start().await;
    let client = server.client();
    let account = server.account_id.clone();
    let created = client
        .crm_create_contact()
        .x_account_id(&account)
        .body(full_contact())
        .send()
        .await
        .unwrap()
        .into_inner()
        .data;
    let id = created.id.clone().unwrap();
    let etag = created.etag.clone().unwrap();

    // A stale etag is 412 and changes nothing.
    client
        .crm_update_contact()
        .x_account_id(&account)
        .id(&id)
        .body(types::CrmCreateContactRequestDto {
            title: Some("CEO".into()),
            ..Default::default()
        })
        .send()
        .await
        .unwrap();
    let stale = failure(
        client
            .crm_update_contact()
            .x_account_id(&account)
            .id(&id)
            .if_match(format!("\"{etag}\""))
            .body(types::CrmCreateContactRequestDto {
                title: Some("Intern".into()),
                ..Default::default()
            })
            .send()
            .await,
        412,
    );
    assert!(stale.message.contains("changed"));
    let now = client
        .crm_get_contact()
        .x_account_id(&account)
        .id(&id)
        .send()
        .await
        .unwrap()
        .into_inner()
        .data;
    assert_eq!(now.title.as_deref(), Some("CEO"));
    // The etag in the body (Truto's way) is checked the same way.
    let body_etag: types::CrmCreateContactRequestDto =
        serde_json::from_value(json!({"title": "Intern", "etag": etag})).unwrap();
    failure(
        client
            .crm_update_contact()
            .x_account_id(&account)
            .id(&id)
            .body(body_etag)
            .send()
            .await,
        412,
    );

    // Many writers, each read-modify-write with If-Match and a retry on 412: every tag lands.
    let writers = 12;
    let mut tasks = Vec::new();
    for w in 0..writers {
        let client = server.client();
        let (account, id) = (account.clone(), id.clone());
        tasks.push(tokio::spawn(async move {
            let mut conflicts = 0;
            loop {
                let current = client
                    .crm_get_contact()
                    .x_account_id(&account)
                    .id(&id)
                    .send()
                    .await
                    .unwrap()
                    .into_inner()
                    .data;
                let mut tags = current.tags.clone().unwrap_or_default();
                tags.push(types::ContactTag {
                    id: Some(format!("w{w}")),
                    name: Some(format!("writer {w}")),
                });
                let reply = client
                    .crm_update_contact()
                    .x_account_id(&account)
                    .id(&id)
                    .if_match(format!("\"{}\"", current.etag.unwrap()))
                    .body(types::CrmCreateContactRequestDto {
                        tags: Some(tags),
                        ..Default::default()
                    })
                    .send()
                    .await;
                match reply {
                    Ok(_) => return conflicts,
                    Err(Error::ErrorResponse(e)) if e.status().as_u16() == 412 => conflicts += 1,
                    Err(other) => panic!("{other:?}"),
                }
            }
        }));
    }
    let mut conflicts = 0;
    for task in tasks {
        conflicts += task.await.unwrap();
    }
    let last = client
        .crm_get_contact()
        .x_account_id(&account)
        .id(&id)
        .send()
        .await
        .unwrap()
        .into_inner()
        .data;
    let mut tags: Vec<String> = last
        .tags
        .unwrap()
        .into_iter()
        .filter_map(|t| t.id)
        .filter(|t| t.starts_with('w'))
        .collect();
    tags.sort();
    let mut expected: Vec<String> = (0..writers).map(|w| format!("w{w}")).collect();
    expected.sort();
    assert_eq!(tags, expected, "no update is lost");
    println!("{writers} concurrent writers, {conflicts} conflicts answered 412 and retried");
    server.stop().await;
}

#[tokio::test]
async fn updates_by_external_id_never_change_an_id() {
    let server = TestServer::start().await;
    let client = server.client();
    let account = server.account_id.as_str();
    let created = client
        .crm_create_contact()
        .x_account_id(account)
        .body(full_contact())
        .send()
        .await
        .unwrap()
        .into_inner()
        .data;
    let id = created.id.clone().unwrap();

    let updated = client
        .crm_update_contact_by_external_id()
        .x_account_id(account)
        .external_id("ext-woz")
        .body(types::CrmCreateContactRequestDto {
            department: Some("R&D".into()),
            ..Default::default()
        })
        .send()
        .await
        .unwrap()
        .into_inner()
        .data;
    assert_eq!(updated.id.as_deref(), Some(id.as_str()));
    assert_eq!(updated.department.as_deref(), Some("R&D"));

    // The payload's id must be the record's: another id is 422, the same id is fine.
    let other: types::CrmCreateContactRequestDto =
        serde_json::from_value(json!({"id": "someone-else", "title": "X"})).unwrap();
    let err = failure(
        client
            .crm_update_contact_by_external_id()
            .x_account_id(account)
            .external_id("ext-woz")
            .body(other)
            .send()
            .await,
        422,
    );
    assert_eq!(field_of(&err), "id");
    assert!(err.message.contains("never changes an id"));
    let other: types::CrmCreateContactRequestDto =
        serde_json::from_value(json!({"id": "someone-else"})).unwrap();
    failure(
        client
            .crm_update_contact()
            .x_account_id(account)
            .id(&id)
            .body(other)
            .send()
            .await,
        422,
    );
    let same: types::CrmCreateContactRequestDto =
        serde_json::from_value(json!({"id": id, "title": "Same"})).unwrap();
    client
        .crm_update_contact()
        .x_account_id(account)
        .id(&id)
        .body(same)
        .send()
        .await
        .unwrap();
    let on_create: types::CrmCreateContactRequestDto =
        serde_json::from_value(json!({"id": "mine", "last_name": "X"})).unwrap();
    failure(
        client
            .crm_create_contact()
            .x_account_id(account)
            .body(on_create)
            .send()
            .await,
        422,
    );
    failure(
        client
            .crm_update_contact_by_external_id()
            .x_account_id(account)
            .external_id("nobody")
            .body(types::CrmCreateContactRequestDto::default())
            .send()
            .await,
        404,
    );

    // External ids are unique within the linked account.
    let mut twin = full_contact();
    twin.last_name = Some("Twin".parse().unwrap());
    let dup = failure(
        client
            .crm_create_contact()
            .x_account_id(account)
            .body(twin)
            .send()
            .await,
        409,
    );
    assert_eq!(field_of(&dup), "external_id");

    // Prefer: return=minimal answers 204 with no body, on both PATCHes, with the new ETag.
    let http = reqwest::Client::new();
    for url in [
        format!("/unified/crm/contacts/{id}"),
        "/unified/crm/contacts/external_id/ext-woz".to_owned(),
    ] {
        let response = http
            .patch(format!("{}{url}", server.base_url))
            .basic_auth(&server.key, Some(""))
            .header("x-account-id", account)
            .header("prefer", "return=minimal")
            .json(&json!({"title": "Minimal"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 204, "{url}");
        assert!(response.headers().contains_key("etag"));
        assert!(response.bytes().await.unwrap().is_empty());
    }
    let got = client
        .crm_get_contact()
        .x_account_id(account)
        .id(&id)
        .send()
        .await
        .unwrap()
        .into_inner()
        .data;
    assert_eq!(got.title.as_deref(), Some("Minimal"));
    server.stop().await;
}

#[tokio::test]
async fn custom_field_values_follow_their_definitions() {
    let server = TestServer::start().await;
    let client = server.client();
    let account = server.account_id.as_str();
    let define = |name: &str, field_type: &str, options: Value| {
        serde_json::from_value::<types::CrmCreateCustomFieldDefinitionRequestDto>(
            json!({"name": name, "type": {"value": field_type}, "options": options}),
        )
        .unwrap()
    };
    let status = client
        .crm_create_contact_custom_field_definition()
        .x_account_id(account)
        .body(define(
            "Training Status",
            "single_select",
            json!([{"id": "s", "value": "Started"}, {"id": "c", "value": "Completed"}]),
        ))
        .send()
        .await
        .unwrap()
        .into_inner()
        .data;
    client
        .crm_create_contact_custom_field_definition()
        .x_account_id(account)
        .body(define("Seats", "integer", Value::Null))
        .send()
        .await
        .unwrap();

    let with = |fields: Value| -> types::CrmCreateContactRequestDto {
        serde_json::from_value(json!({"last_name": "Custom", "custom_fields": fields})).unwrap()
    };
    // Resolved by name or id, to the definition's id and the option's value and id.
    let contact = client
        .crm_create_contact()
        .x_account_id(account)
        .body(with(json!([{"name": "Training Status", "value": "c"}, {"id": status.id.clone().unwrap(), "value": "Completed"}])))
        .send()
        .await;
    assert!(failure(contact, 422).message.contains("more than once"));
    let contact = client
        .crm_create_contact()
        .x_account_id(account)
        .body(with(
            json!([{"name": "Training Status", "value": "c"}, {"name": "Seats", "value": 12}]),
        ))
        .send()
        .await
        .unwrap()
        .into_inner()
        .data;
    let fields = serde_json::to_value(contact.custom_fields.unwrap()).unwrap();
    assert_eq!(fields[0]["id"], json!(status.id.clone().unwrap()));
    assert_eq!(fields[0]["value"], json!("Completed"));
    assert_eq!(fields[0]["value_id"], json!("c"));

    // Wrong type, unknown option, an entry naming nothing: 422 naming the entry.
    for (fields, field) in [
        (
            json!([{"name": "Seats", "value": "twelve"}]),
            "custom_fields[0].value",
        ),
        (
            json!([{"name": "Training Status", "value": "Abandoned"}]),
            "custom_fields[0].value",
        ),
        (
            json!([{"name": "Seats", "value": 1}, {"value": 42}]),
            "custom_fields[1]",
        ),
    ] {
        let err = failure(
            client
                .crm_create_contact()
                .x_account_id(account)
                .body(with(fields.clone()))
                .send()
                .await,
            422,
        );
        assert_eq!(field_of(&err), field, "{fields}");
    }

    // A field no definition describes is kept as sent (StackOne's examples send such fields).
    let free = client
        .crm_create_contact()
        .x_account_id(account)
        .body(with(json!([{"name": "Shoe size", "value": "42"}])))
        .send()
        .await
        .unwrap()
        .into_inner()
        .data;
    assert_eq!(
        serde_json::to_value(free.custom_fields.unwrap()).unwrap(),
        json!([{"name": "Shoe size", "value": "42"}])
    );

    // unified_custom_fields come from the project's mapping.
    let mapping = types::UnifiedCustomFields {
        mappings: HashMap::from([
            ("training".to_owned(), "Training Status".parse().unwrap()),
            ("seats".to_owned(), "Seats".parse().unwrap()),
        ]),
    };
    let stored = client
        .crm_set_contact_unified_custom_fields()
        .x_account_id(account)
        .body(mapping)
        .send()
        .await
        .unwrap()
        .into_inner()
        .data;
    assert_eq!(stored.mappings.len(), 2);
    let got = client
        .crm_get_contact_unified_custom_fields()
        .x_account_id(account)
        .send()
        .await
        .unwrap()
        .into_inner()
        .data;
    assert_eq!(got.mappings["seats"].as_str(), "Seats");
    let read = client
        .crm_get_contact()
        .x_account_id(account)
        .id(contact.id.as_deref().unwrap())
        .send()
        .await
        .unwrap()
        .into_inner()
        .data;
    assert_eq!(
        Value::Object(read.unified_custom_fields.unwrap()),
        json!({"training": "Completed", "seats": 12})
    );
    // A write answers the record as a read does: with them when it has custom fields, and
    // without when it has none.
    let patched = client
        .crm_update_contact()
        .x_account_id(account)
        .id(contact.id.as_deref().unwrap())
        .body(types::CrmCreateContactRequestDto {
            first_name: Some("Patched".into()),
            ..Default::default()
        })
        .send()
        .await
        .unwrap()
        .into_inner()
        .data;
    assert_eq!(
        patched.unified_custom_fields.map(Value::Object),
        Some(json!({"training": "Completed", "seats": 12}))
    );
    let plain = client
        .crm_create_contact()
        .x_account_id(account)
        .body(types::CrmCreateContactRequestDto {
            last_name: Some("Plain".parse().unwrap()),
            ..Default::default()
        })
        .send()
        .await
        .unwrap()
        .into_inner()
        .data;
    assert_eq!(plain.unified_custom_fields, None);
    server.stop().await;
}

#[tokio::test]
async fn posts_with_an_idempotency_key_happen_once() {
    let server = TestServer::start().await;
    let client = server.client();
    let account = server.account_id.as_str();
    let body = || types::CrmCreateContactRequestDto {
        last_name: Some("Once".parse().unwrap()),
        ..Default::default()
    };
    let first = client
        .crm_create_contact()
        .x_account_id(account)
        .idempotency_key("k-1")
        .body(body())
        .send()
        .await
        .unwrap();
    let first_etag = first.headers().get("etag").cloned();
    let first = first.into_inner().data;
    let again = client
        .crm_create_contact()
        .x_account_id(account)
        .idempotency_key("k-1")
        .body(body())
        .send()
        .await
        .unwrap();
    assert!(replayed(&again));
    assert_eq!(again.headers().get("etag").cloned(), first_etag);
    assert_eq!(
        again.into_inner().data.id,
        first.id,
        "the retry answers the first response"
    );
    assert_eq!(
        contact_count(&client, account).await,
        1,
        "and creates nothing"
    );

    let other = types::CrmCreateContactRequestDto {
        last_name: Some("Other".parse().unwrap()),
        ..Default::default()
    };
    let err = failure(
        client
            .crm_create_contact()
            .x_account_id(account)
            .idempotency_key("k-1")
            .body(other)
            .send()
            .await,
        422,
    );
    assert!(err.message.contains("another request"));

    // After 24 hours the key is forgotten.
    server.clock.advance(chrono::Duration::hours(25));
    let later = client
        .crm_create_contact()
        .x_account_id(account)
        .idempotency_key("k-1")
        .body(body())
        .send()
        .await
        .unwrap();
    assert!(!replayed(&later));
    assert_ne!(later.into_inner().data.id, first.id);

    // Failures are replayed too, and a key is per project.
    let bad = types::CrmCreateContactRequestDto::default();
    failure(
        client
            .crm_create_contact()
            .x_account_id(account)
            .idempotency_key("k-2")
            .body(bad.clone())
            .send()
            .await,
        422,
    );
    failure(
        client
            .crm_create_contact()
            .x_account_id(account)
            .idempotency_key("k-2")
            .body(bad)
            .send()
            .await,
        422,
    );
    let other = server.other_tenant().await;
    let other_client = crm_client::with_api_key(&server.base_url, &other.key);
    other_client
        .crm_create_contact()
        .x_account_id(&other.account_id)
        .idempotency_key("k-1")
        .body(body())
        .send()
        .await
        .unwrap();
    server.stop().await;
}

/// How many contacts the linked account holds (fewer than a page in these tests).
async fn contact_count(client: &crm_client::Client, account: &str) -> usize {
    client
        .crm_list_contacts()
        .x_account_id(account)
        .send()
        .await
        .unwrap()
        .into_inner()
        .data
        .len()
}

/// Whether an answer repeats the first answer to its idempotency key.
fn replayed<T>(reply: &crm_client::ResponseValue<T>) -> bool {
    reply
        .headers()
        .get("idempotent-replayed")
        .is_some_and(|v| v == "true")
}

/// The state a crash leaves when it strikes after a create committed and before its answer
/// was recorded under the key: the claim, the record it links, no answer.
async fn lose_the_answer(server: &TestServer, key: &str, claimed_at: &str) {
    sqlx::query(
        "UPDATE idempotency_keys SET status = NULL, headers = NULL, body = NULL, claimed_at = $1
         WHERE key = $2",
    )
    .bind(claimed_at)
    .bind(key)
    .execute(server.db.pool())
    .await
    .unwrap();
}

#[tokio::test]
async fn a_retry_after_a_crash_finds_the_record_the_first_request_made() {
    let server = TestServer::start().await;
    let client = server.client();
    let account = server.account_id.as_str();
    let create = |key: &'static str| {
        client
            .crm_create_contact()
            .x_account_id(account)
            .idempotency_key(key)
            .body(types::CrmCreateContactRequestDto {
                last_name: Some("Crash".parse().unwrap()),
                ..Default::default()
            })
    };
    let first = create("k-crash").send().await.unwrap().into_inner().data;

    // Just after the crash the claim still looks live: the retry is told to wait.
    let now = crm_server::db::timestamp(crm_server::Clock::now(&*server.clock));
    lose_the_answer(&server, "k-crash", &now).await;
    let err = failure(create("k-crash").send().await, 409);
    assert!(err.message.contains("still running"), "{}", err.message);

    // Once the claim is abandoned, the retry answers the record the first request made.
    let abandon = || {
        server
            .clock
            .advance(crm_server::idempotency::ABANDONED_CLAIM_AFTER + chrono::Duration::minutes(1))
    };
    abandon();
    let retry = create("k-crash").send().await.unwrap();
    assert!(!replayed(&retry));
    let retry = retry.into_inner();
    assert_eq!(retry.data.id, first.id, "the same record, not a second one");
    assert_eq!(retry.data.last_name.as_deref(), Some("Crash"));
    // And from then on its answer is recorded and replayed.
    let again = create("k-crash").send().await.unwrap();
    assert!(replayed(&again));
    assert_eq!(again.into_inner().data.id, first.id);
    assert_eq!(
        contact_count(&client, account).await,
        1,
        "one contact for one key"
    );

    // A crash before the write landed leaves no record: the retry creates it.
    let now = crm_server::db::timestamp(crm_server::Clock::now(&*server.clock));
    sqlx::query(
        "INSERT INTO idempotency_keys (project_id, key, fingerprint, created_at, claimed_at)
         SELECT project_id, 'k-early', fingerprint, $1, $1
         FROM idempotency_keys WHERE key = 'k-crash'",
    )
    .bind(&now)
    .execute(server.db.pool())
    .await
    .unwrap();
    abandon();
    let early = create("k-early").send().await.unwrap().into_inner().data;
    assert_ne!(early.id, first.id);

    // If the record the key made was deleted since, the retry says so and creates nothing.
    let now = crm_server::db::timestamp(crm_server::Clock::now(&*server.clock));
    lose_the_answer(&server, "k-crash", &now).await;
    abandon();
    client
        .crm_delete_contact()
        .x_account_id(account)
        .id(first.id.clone().unwrap())
        .send()
        .await
        .unwrap();
    let err = failure(create("k-crash").send().await, 409);
    assert!(
        err.message.contains("since been deleted"),
        "{}",
        err.message
    );
    assert_eq!(
        contact_count(&client, account).await,
        1,
        "only the k-early contact is left"
    );
    server.stop().await;
}

#[tokio::test]
async fn export_streams_every_contact_through_the_client() {
    let server = TestServer::start().await;
    let client = server.client();
    let account = server.account_id.as_str();
    let mut ids = Vec::new();
    for i in 0..30 {
        let body = types::CrmCreateContactRequestDto {
            last_name: Some(format!("Export{i}").parse().unwrap()),
            custom_fields: Some(vec![types::CustomFields {
                name: Some("Loose".into()),
                value: Some(types::CustomFieldsValue::String("x".into())),
                ..Default::default()
            }]),
            ..Default::default()
        };
        ids.push(
            client
                .crm_create_contact()
                .x_account_id(account)
                .body(body)
                .send()
                .await
                .unwrap()
                .into_inner()
                .data
                .id
                .unwrap(),
        );
    }
    let exported: Vec<types::Contact> =
        futures::TryStreamExt::try_collect(crm_client::export_contacts(&client, account))
            .await
            .unwrap();
    assert_eq!(
        exported
            .iter()
            .map(|c| c.id.clone().unwrap())
            .collect::<Vec<_>>(),
        ids
    );
    assert!(
        exported.iter().all(|c| c.custom_fields.is_none()),
        "custom fields only with include"
    );

    // include=custom_fields and the updated_after filter apply to the export as to the list.
    let http = reqwest::Client::new();
    let later = (chrono::Utc::now() + chrono::Duration::hours(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    for (query, lines, with_fields) in [
        ("include=custom_fields", 30, true),
        (
            format!("filter%5Bupdated_after%5D={later}").as_str(),
            0,
            false,
        ),
    ] {
        let text = http
            .get(format!(
                "{}/unified/crm/export/contacts?{query}",
                server.base_url
            ))
            .basic_auth(&server.key, Some(""))
            .header("x-account-id", account)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let parsed: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(parsed.len(), lines, "{query}");
        assert!(
            parsed
                .iter()
                .all(|c| c.get("custom_fields").is_some() == with_fields),
            "{query}"
        );
    }
    // Another project's key sees nothing of this account.
    let other = server.other_tenant().await;
    let other_client = crm_client::with_api_key(&server.base_url, &other.key);
    let denied: Result<Vec<types::Contact>, _> =
        futures::TryStreamExt::try_collect(crm_client::export_contacts(&other_client, account))
            .await;
    assert!(
        matches!(denied, Err(crm_client::ExportError::Api(e)) if matches!(*e, Error::ErrorResponse(ref body) if body.status().as_u16() == 404))
    );
    server.stop().await;
}
