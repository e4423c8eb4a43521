//! Client–server round trips: the real server on an ephemeral port with a temporary
//! database, driven through the generated client. Every operation of `openapi/crm.yaml`
//! is called, with its success and its typed error bodies.

use std::collections::HashSet;

use conformance::{TestServer, failure, json};
use crm_client::types;
use futures::TryStreamExt;

fn contact(first: &str, last: &str) -> types::CrmCreateContactRequestDto {
    types::CrmCreateContactRequestDto {
        first_name: Some(first.into()),
        last_name: Some(last.parse().unwrap()),
        company_name: Some("Apple Inc.".into()),
        emails: Some(vec![
            format!("{}@example.com", first.to_lowercase())
                .parse()
                .unwrap(),
        ]),
        phone_numbers: Some(vec!["123-456-7890".into()]),
        deal_ids: Some(vec!["deal-001".into()]),
        account_ids: Some(vec!["account-123".into()]),
        custom_fields: Some(vec![types::CustomFields {
            name: Some("Training Completion Status".into()),
            value: Some(types::CustomFieldsValue::String("Completed".into())),
            ..Default::default()
        }]),
        passthrough: Some(serde_json::Map::from_iter([(
            "other_known_names".to_owned(),
            serde_json::Value::from("John Doe"),
        )])),
        ..Default::default()
    }
}

#[tokio::test]
async fn contacts_every_operation() {
    let server = TestServer::start().await;
    let client = server.client();
    let account = server.account_id.as_str();

    // Create answers 200 with the contact; remote ids equal ours for the local provider.
    let created = client
        .crm_create_contact()
        .x_account_id(account)
        .body(contact("Steve", "Wozniak"))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status().as_u16(), 200);
    let created = created.into_inner().data;
    let id = created.id.clone().unwrap();
    assert_eq!(created.remote_id.as_deref(), Some(id.as_str()));
    assert_eq!(created.first_name.as_deref(), Some("Steve"));
    assert_eq!(created.remote_deal_ids, Some(vec!["deal-001".to_owned()]));
    assert_eq!(
        created.remote_account_ids,
        Some(vec!["account-123".to_owned()])
    );
    assert!(created.created_at.is_some() && created.updated_at.is_some());

    // Get: custom fields only with include=custom_fields; raw only with raw=true.
    let plain = client
        .crm_get_contact()
        .x_account_id(account)
        .id(&id)
        .send()
        .await
        .unwrap()
        .into_inner();
    assert!(plain.data.custom_fields.is_none());
    assert!(plain.raw.is_none());
    let full = client
        .crm_get_contact()
        .x_account_id(account)
        .id(&id)
        .include("custom_fields")
        .raw(true)
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(full.data.custom_fields.as_ref().map(Vec::len), Some(1));
    let raw = full.raw.expect("raw=true returns the provider calls");
    assert_eq!(raw.len(), 1);
    assert_eq!(raw[0].method, "GET");
    assert!(raw[0].url.contains(&id));

    // fields keeps only what is asked for.
    let projected = client
        .crm_get_contact()
        .x_account_id(account)
        .id(&id)
        .fields("id,last_name")
        .send()
        .await
        .unwrap()
        .into_inner()
        .data;
    assert_eq!(projected.id.as_deref(), Some(id.as_str()));
    assert_eq!(projected.last_name.as_deref(), Some("Wozniak"));
    assert!(projected.first_name.is_none() && projected.emails.is_none());

    // Update changes only the fields sent.
    let updated = client
        .crm_update_contact()
        .x_account_id(account)
        .id(&id)
        .body(types::CrmCreateContactRequestDto {
            company_name: Some("Apple".into()),
            ..Default::default()
        })
        .send()
        .await
        .unwrap();
    assert_eq!(updated.status().as_u16(), 200);
    let updated = updated.into_inner().data;
    assert_eq!(updated.company_name.as_deref(), Some("Apple"));
    assert_eq!(updated.first_name.as_deref(), Some("Steve"));
    assert_eq!(updated.emails, created.emails);
    assert_eq!(updated.created_at, created.created_at);
    assert!(updated.updated_at >= created.updated_at);

    // List, with and without the filter.
    let page = client
        .crm_list_contacts()
        .x_account_id(account)
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.data.len(), 1);
    assert!(page.next.is_none());
    let later = chrono::Utc::now() + chrono::Duration::hours(1);
    let none = client
        .crm_list_contacts()
        .x_account_id(account)
        .filter_updated_after(later)
        .send()
        .await
        .unwrap()
        .into_inner();
    assert!(none.data.is_empty());

    // Delete answers 204; the contact is gone after.
    let deleted = client
        .crm_delete_contact()
        .x_account_id(account)
        .id(&id)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status().as_u16(), 204);
    let gone = failure(
        client
            .crm_get_contact()
            .x_account_id(account)
            .id(&id)
            .send()
            .await,
        404,
    );
    assert!(gone.message.contains(&id), "{}", gone.message);
    failure(
        client
            .crm_delete_contact()
            .x_account_id(account)
            .id(&id)
            .send()
            .await,
        404,
    );
    failure(
        client
            .crm_update_contact()
            .x_account_id(account)
            .id(&id)
            .body(types::CrmCreateContactRequestDto::default())
            .send()
            .await,
        404,
    );
    server.stop().await;
}

/// Lists every contact by hand, page after page, following `next`: the ids in order and
/// the size of each page.
async fn walk_pages(
    client: &crm_client::Client,
    account: &str,
    page_size: &str,
) -> (Vec<String>, Vec<usize>) {
    let (mut seen, mut sizes) = (Vec::new(), Vec::new());
    let mut next: Option<String> = None;
    loop {
        let mut call = client
            .crm_list_contacts()
            .x_account_id(account)
            .page_size(page_size);
        if let Some(cursor) = &next {
            call = call.next(cursor);
        }
        let page = call.send().await.unwrap().into_inner();
        sizes.push(page.data.len());
        seen.extend(page.data.into_iter().map(|c| c.id.unwrap()));
        next = page.next;
        if next.is_none() {
            return (seen, sizes);
        }
    }
}

#[tokio::test]
async fn pages_follow_next_to_the_end() {
    let server = TestServer::start().await;
    let client = server.client();
    let account = server.account_id.as_str();
    let mut ids = Vec::new();
    for i in 0..23 {
        let c = client
            .crm_create_contact()
            .x_account_id(account)
            .body(contact(&format!("P{i}"), "Page"))
            .send()
            .await
            .unwrap();
        ids.push(c.into_inner().data.id.unwrap());
    }
    // By hand: pages of 10, 10 and 3, then no next.
    let (seen, sizes) = walk_pages(&client, account, "10").await;
    assert_eq!(sizes, vec![10, 10, 3]);
    assert_eq!(seen, ids, "oldest first, each once");

    // The deprecated `page` alias is the same cursor.
    let first = client
        .crm_list_contacts()
        .x_account_id(account)
        .page_size("20")
        .send()
        .await
        .unwrap()
        .into_inner();
    let via_page = client
        .crm_list_contacts()
        .x_account_id(account)
        .page(first.next.clone().unwrap())
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(via_page.data.len(), 3);

    // The client's stream walks every page.
    let streamed: Vec<types::Contact> = crm_client::all_contacts(&client, account)
        .try_collect()
        .await
        .unwrap();
    assert_eq!(
        streamed
            .into_iter()
            .map(|c| c.id.unwrap())
            .collect::<Vec<_>>(),
        ids
    );

    // A cursor this server did not issue, and bad page sizes, are 400.
    failure(
        client
            .crm_list_contacts()
            .x_account_id(account)
            .next("not-a-cursor")
            .send()
            .await,
        400,
    );
    // The spec's pattern for page_size makes the client refuse these before sending; the
    // server refuses them all the same.
    for size in ["0", "101", "ten"] {
        let reply = client
            .crm_list_contacts()
            .x_account_id(account)
            .page_size(size)
            .send()
            .await;
        assert!(
            matches!(reply, Err(crm_client::Error::InvalidRequest(_))),
            "{size}: {reply:?}"
        );
        let raw = reqwest::Client::new()
            .get(format!("{}/unified/crm/contacts", server.base_url))
            .query(&[("page_size", size)])
            .basic_auth(&server.key, Some(""))
            .header("x-account-id", account)
            .send()
            .await
            .unwrap();
        assert_eq!(raw.status(), 400, "{size}");
    }
    server.stop().await;
}

#[tokio::test]
async fn paging_is_stable_under_concurrent_inserts() {
    let server = TestServer::start().await;
    let client = server.client();
    let account = server.account_id.clone();
    let mut before = HashSet::new();
    for i in 0..40 {
        let c = client
            .crm_create_contact()
            .x_account_id(&account)
            .body(contact(&format!("S{i}"), "Stable"))
            .send()
            .await
            .unwrap();
        before.insert(c.into_inner().data.id.unwrap());
    }
    let writer = {
        let client = server.client();
        let account = account.clone();
        tokio::spawn(async move {
            for i in 0..40 {
                client
                    .crm_create_contact()
                    .x_account_id(&account)
                    .body(contact(&format!("N{i}"), "New"))
                    .send()
                    .await
                    .unwrap();
            }
        })
    };
    let (seen, _) = walk_pages(&client, &account, "7").await;
    writer.await.unwrap();
    let unique: HashSet<_> = seen.iter().cloned().collect();
    assert_eq!(unique.len(), seen.len(), "no record is served twice");
    assert!(
        before.is_subset(&unique),
        "no record that existed before paging is skipped"
    );
    server.stop().await;
}

/// Updates of one contact at the same time, each to another field: none is lost. The
/// server works an update out before its transaction, from the record it read, and must
/// notice when another write changed the record in between.
#[tokio::test]
async fn concurrent_updates_of_one_record_lose_none() {
    let server = TestServer::start().await;
    let client = server.client();
    let account = server.account_id.clone();
    let id = client
        .crm_create_contact()
        .x_account_id(&account)
        // No custom field values: the update is worked out before its transaction.
        .body(types::CrmCreateContactRequestDto {
            last_name: Some("Writes".parse().unwrap()),
            ..Default::default()
        })
        .send()
        .await
        .unwrap()
        .into_inner()
        .data
        .id
        .unwrap();
    type Set = fn(&mut types::CrmCreateContactRequestDto, String);
    let fields: [(&str, Set); 6] = [
        ("first_name", |b, v| b.first_name = Some(v)),
        ("company_name", |b, v| b.company_name = Some(v)),
        ("title", |b, v| b.title = Some(v)),
        ("salutation", |b, v| b.salutation = Some(v)),
        ("department", |b, v| b.department = Some(v)),
        ("lead_source", |b, v| b.lead_source = Some(v)),
    ];
    for round in 0..20 {
        // Each field three times over, so that reads and writes of the record overlap.
        let updates = fields
            .iter()
            .cycle()
            .take(3 * fields.len())
            .map(|(name, set)| {
                let client = server.client();
                let (account, id) = (account.clone(), id.clone());
                let mut body = types::CrmCreateContactRequestDto::default();
                set(&mut body, format!("{name}-{round}"));
                async move {
                    client
                        .crm_update_contact()
                        .x_account_id(&account)
                        .id(&id)
                        .body(body)
                        .send()
                        .await
                        .unwrap();
                }
            });
        futures::future::join_all(updates).await;
        let stored = json(
            &client
                .crm_get_contact()
                .x_account_id(&account)
                .id(&id)
                .send()
                .await
                .unwrap()
                .into_inner(),
        );
        for (name, _) in &fields {
            assert_eq!(
                stored["data"][name],
                format!("{name}-{round}"),
                "round {round}: the update of {name} was lost"
            );
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn accounts_every_operation() {
    let server = TestServer::start().await;
    let client = server.client();
    let account = server.account_id.as_str();
    let body = types::CrmCreateAccountRequestDto {
        name: Some("Apple Inc.".into()),
        description: Some("Consumer electronics".into()),
        owner_id: Some("owner-1".into()),
        industries: Some(vec!["Technology".into()]),
        annual_revenue: Some("394328000000".into()),
        website: Some("https://www.apple.com".into()),
        phone_numbers: Some(vec!["+1 408-996-1010".into()]),
        addresses: Some(vec![types::AccountAddress {
            street_1: Some("1 Apple Park Way".into()),
            city: Some("Cupertino".into()),
            state: Some("CA".into()),
            zip_code: Some("95014".into()),
            country: Some(types::CountryCodeEnum {
                value: Some(types::CountryCodeEnumValue::Us),
                source_value: None,
            }),
            location_type: Some(types::LocationTypeEnum {
                value: Some(types::LocationTypeEnumValue::Work),
                source_value: None,
            }),
            ..Default::default()
        }]),
        passthrough: None,
    };
    let created = client
        .crm_create_account()
        .x_account_id(account)
        .body(body)
        .send()
        .await
        .unwrap()
        .into_inner()
        .data;
    let id = created.id.clone().unwrap();
    assert_eq!(created.remote_owner_id.as_deref(), Some("owner-1"));
    let address = &created.addresses.as_ref().unwrap()[0];
    assert_eq!(
        address.country.as_ref().unwrap().value,
        Some(types::CountryCodeEnumValue::Us)
    );

    let got = client
        .crm_get_account()
        .x_account_id(account)
        .id(&id)
        .raw(true)
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(json(&got.data), json(&created));
    assert_eq!(got.raw.unwrap()[0].method, "GET");

    let updated = client
        .crm_update_account()
        .x_account_id(account)
        .id(&id)
        .body(types::CrmCreateAccountRequestDto {
            website: Some("https://apple.com".into()),
            ..Default::default()
        })
        .send()
        .await
        .unwrap()
        .into_inner()
        .data;
    assert_eq!(updated.website.as_deref(), Some("https://apple.com"));
    assert_eq!(updated.name, created.name);

    let listed = client
        .crm_list_accounts()
        .x_account_id(account)
        .fields("id,name")
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.data.len(), 1);
    assert_eq!(listed.data[0].name.as_deref(), Some("Apple Inc."));
    assert!(
        listed.data[0].website.is_none(),
        "fields keeps only id and name"
    );

    assert_eq!(
        client
            .crm_delete_account()
            .x_account_id(account)
            .id(&id)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        204
    );
    failure(
        client
            .crm_get_account()
            .x_account_id(account)
            .id(&id)
            .send()
            .await,
        404,
    );
    server.stop().await;
}

#[tokio::test]
async fn lists_every_operation() {
    let server = TestServer::start().await;
    let client = server.client();
    let account = server.account_id.as_str();
    let a = client
        .crm_create_contact()
        .x_account_id(account)
        .body(contact("Ada", "Lovelace"))
        .send()
        .await
        .unwrap()
        .into_inner()
        .data
        .id
        .unwrap();
    let b = client
        .crm_create_contact()
        .x_account_id(account)
        .body(contact("Alan", "Turing"))
        .send()
        .await
        .unwrap()
        .into_inner()
        .data
        .id
        .unwrap();

    let list = client
        .crm_create_list()
        .x_account_id(account)
        .body(types::CrmCreateListRequestDto {
            name: Some("Pioneers".parse().unwrap()),
            type_: None,
            passthrough: None,
        })
        .send()
        .await
        .unwrap()
        .into_inner()
        .data;
    let id = list.id.clone().unwrap();
    assert_eq!(
        list.type_.unwrap().value,
        Some(types::ListTypeEnumValue::Contacts),
        "contacts by default"
    );
    assert_eq!(list.items.map(|i| i.len()), Some(0));

    let with_items = client
        .crm_add_list_items()
        .x_account_id(account)
        .id(&id)
        .body(types::CrmListItemsRequestDto {
            item_ids: vec![a.clone(), b.clone(), a.clone()],
        })
        .send()
        .await
        .unwrap()
        .into_inner()
        .data;
    let item_ids: Vec<_> = with_items
        .items
        .unwrap()
        .into_iter()
        .map(|i| i.id.unwrap())
        .collect();
    assert_eq!(item_ids, vec![a.clone(), b.clone()]);

    // An unknown id adds nothing and names the culprit.
    let err = failure(
        client
            .crm_add_list_items()
            .x_account_id(account)
            .id(&id)
            .body(types::CrmListItemsRequestDto {
                item_ids: vec![a.clone(), "missing".into()],
            })
            .send()
            .await,
        422,
    );
    assert!(err.message.contains("missing"));

    // A list with items keeps its type.
    failure(
        client
            .crm_update_list()
            .x_account_id(account)
            .id(&id)
            .body(types::CrmCreateListRequestDto {
                name: None,
                type_: Some(types::ListTypeEnum {
                    value: Some(types::ListTypeEnumValue::Companies),
                    source_value: None,
                }),
                passthrough: None,
            })
            .send()
            .await,
        409,
    );
    let renamed = client
        .crm_update_list()
        .x_account_id(account)
        .id(&id)
        .body(types::CrmCreateListRequestDto {
            name: Some("Computing pioneers".parse().unwrap()),
            type_: None,
            passthrough: None,
        })
        .send()
        .await
        .unwrap()
        .into_inner()
        .data;
    assert_eq!(renamed.name.as_deref(), Some("Computing pioneers"));
    assert_eq!(renamed.items.as_ref().map(Vec::len), Some(2));

    let removed = client
        .crm_remove_list_item()
        .x_account_id(account)
        .id(&id)
        .item_id(&a)
        .send()
        .await
        .unwrap()
        .into_inner()
        .data;
    assert_eq!(
        removed
            .items
            .unwrap()
            .into_iter()
            .map(|i| i.id.unwrap())
            .collect::<Vec<_>>(),
        vec![b.clone()]
    );
    failure(
        client
            .crm_remove_list_item()
            .x_account_id(account)
            .id(&id)
            .item_id(&a)
            .send()
            .await,
        404,
    );

    // Deleting a contact takes it off its lists.
    client
        .crm_delete_contact()
        .x_account_id(account)
        .id(&b)
        .send()
        .await
        .unwrap();
    let got = client
        .crm_get_list()
        .x_account_id(account)
        .id(&id)
        .send()
        .await
        .unwrap()
        .into_inner()
        .data;
    assert_eq!(got.items.map(|i| i.len()), Some(0));

    let lists = client
        .crm_list_lists()
        .x_account_id(account)
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(lists.data.len(), 1);
    failure(
        client
            .crm_create_list()
            .x_account_id(account)
            .body(types::CrmCreateListRequestDto {
                name: None,
                type_: None,
                passthrough: None,
            })
            .send()
            .await,
        422,
    );
    failure(
        client
            .crm_get_list()
            .x_account_id(account)
            .id("nope")
            .send()
            .await,
        404,
    );
    server.stop().await;
}

#[tokio::test]
async fn custom_field_definitions_every_operation() {
    let server = TestServer::start().await;
    let client = server.client();
    let account = server.account_id.as_str();
    let option = |id: &str, value: &str| types::CustomFieldOption {
        id: id.into(),
        value: types::CustomFieldOptionValue::String(value.into()),
    };
    let select = types::CustomFieldTypeEnum {
        value: Some(types::CustomFieldTypeEnumValue::SingleSelect),
        source_value: None,
    };
    let created = client
        .crm_create_contact_custom_field_definition()
        .x_account_id(account)
        .body(types::CrmCreateCustomFieldDefinitionRequestDto {
            name: Some("Training Completion Status".parse().unwrap()),
            description: Some("Where the contact is in training".into()),
            type_: Some(select.clone()),
            options: Some(vec![option("1", "Started"), option("2", "Completed")]),
            passthrough: None,
        })
        .send()
        .await
        .unwrap()
        .into_inner()
        .data;
    let id = created.id.clone().unwrap();
    assert_eq!(created.options.as_ref().map(Vec::len), Some(2));

    let got = client
        .crm_get_contact_custom_field_definition()
        .x_account_id(account)
        .id(&id)
        .send()
        .await
        .unwrap()
        .into_inner()
        .data;
    assert_eq!(json(&got), json(&created));
    let updated = client
        .crm_update_contact_custom_field_definition()
        .x_account_id(account)
        .id(&id)
        .body(types::CrmCreateCustomFieldDefinitionRequestDto {
            options: Some(vec![option("1", "Started")]),
            ..Default::default()
        })
        .send()
        .await
        .unwrap()
        .into_inner()
        .data;
    assert_eq!(updated.options.map(|o| o.len()), Some(1));
    assert_eq!(updated.name, created.name);

    let listed = client
        .crm_list_contact_custom_field_definitions()
        .x_account_id(account)
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.data.len(), 1);

    // A select without options, duplicate option ids, and a missing name are 422.
    for body in [
        types::CrmCreateCustomFieldDefinitionRequestDto {
            name: Some("x".parse().unwrap()),
            type_: Some(select.clone()),
            ..Default::default()
        },
        types::CrmCreateCustomFieldDefinitionRequestDto {
            name: Some("x".parse().unwrap()),
            options: Some(vec![option("1", "a"), option("1", "b")]),
            ..Default::default()
        },
        types::CrmCreateCustomFieldDefinitionRequestDto::default(),
    ] {
        failure(
            client
                .crm_create_contact_custom_field_definition()
                .x_account_id(account)
                .body(body)
                .send()
                .await,
            422,
        );
    }
    failure(
        client
            .crm_get_contact_custom_field_definition()
            .x_account_id(account)
            .id("nope")
            .send()
            .await,
        404,
    );
    server.stop().await;
}

#[tokio::test]
async fn credentials_and_accounts_are_checked() {
    let server = TestServer::start().await;
    let account = server.account_id.as_str();

    // 401: no key, a wrong key, a revoked key.
    let anonymous = crm_client::Client::new(&server.base_url);
    failure(
        anonymous
            .crm_list_contacts()
            .x_account_id(account)
            .send()
            .await,
        401,
    );
    let wrong = crm_client::with_api_key(&server.base_url, "crm_0000_wrong");
    failure(
        wrong.crm_list_contacts().x_account_id(account).send().await,
        401,
    );
    let other = server.other_tenant().await;
    let other_client = crm_client::with_api_key(&server.base_url, &other.key);
    other_client
        .crm_list_contacts()
        .x_account_id(&other.account_id)
        .send()
        .await
        .unwrap();
    server.tenancy.revoke_key(&other.key_id).await.unwrap();
    let revoked = failure(
        other_client
            .crm_list_contacts()
            .x_account_id(&other.account_id)
            .send()
            .await,
        401,
    );
    assert!(revoked.message.contains("revoked"));

    // 404: an account of another project, or none at all; the data never leaks.
    let client = server.client();
    client
        .crm_create_contact()
        .x_account_id(account)
        .body(contact("Grace", "Hopper"))
        .send()
        .await
        .unwrap();
    let third = server.other_tenant().await;
    let third_client = crm_client::with_api_key(&server.base_url, &third.key);
    failure(
        third_client
            .crm_list_contacts()
            .x_account_id(account)
            .send()
            .await,
        404,
    );
    failure(
        client
            .crm_list_contacts()
            .x_account_id(&third.account_id)
            .send()
            .await,
        404,
    );
    failure(
        client
            .crm_list_contacts()
            .x_account_id("no-such-account")
            .send()
            .await,
        404,
    );
    let theirs = third_client
        .crm_list_contacts()
        .x_account_id(&third.account_id)
        .send()
        .await
        .unwrap()
        .into_inner();
    assert!(
        theirs.data.is_empty(),
        "another project's contacts are never visible"
    );

    // Bearer works as well as Basic.
    let bearer = reqwest::Client::new()
        .get(format!("{}/unified/crm/contacts", server.base_url))
        .bearer_auth(&server.key)
        .header("x-account-id", account)
        .send()
        .await
        .unwrap();
    assert_eq!(bearer.status(), 200);
    server.stop().await;
}

/// Failures the generated client cannot produce, sent by hand: each must still answer the
/// contract's error body.
#[tokio::test]
async fn every_failure_has_the_error_shape() {
    let server = TestServer::start().await;
    let http = reqwest::Client::new();
    let url = |path: &str| format!("{}{path}", server.base_url);
    let auth = |r: reqwest::RequestBuilder| {
        r.basic_auth(&server.key, Some(""))
            .header("x-account-id", &server.account_id)
    };
    let post_json = |body: String| {
        auth(http.post(url("/unified/crm/contacts")))
            .header("content-type", "application/json")
            .body(body)
    };
    let cases: Vec<(&str, reqwest::RequestBuilder, u16)> = vec![
        (
            "missing x-account-id",
            http.get(url("/unified/crm/contacts"))
                .basic_auth(&server.key, Some("")),
            400,
        ),
        ("malformed JSON", post_json("{\"first_name\": ".into()), 400),
        (
            "wrong type",
            post_json("{\"emails\": \"a@b.c\"}".into()),
            422,
        ),
        ("not an object", post_json("[]".into()), 422),
        (
            "not JSON",
            auth(http.post(url("/unified/crm/contacts")))
                .header("content-type", "text/plain")
                .body("hi"),
            415,
        ),
        (
            "oversized body",
            post_json(format!(
                "{{\"first_name\": \"{}\"}}",
                "x".repeat(2 * 1024 * 1024)
            )),
            413,
        ),
        (
            "unknown route",
            auth(http.get(url("/unified/crm/deals"))),
            404,
        ),
        (
            "unknown id",
            auth(http.get(url("/unified/crm/accounts/nope"))),
            404,
        ),
        (
            "wrong method",
            auth(http.put(url("/unified/crm/contacts"))),
            405,
        ),
        (
            "bad raw",
            auth(http.get(url("/unified/crm/contacts?raw=maybe"))),
            400,
        ),
        (
            "bad filter",
            auth(http.get(url(
                "/unified/crm/contacts?filter%5Bupdated_after%5D=yesterday",
            ))),
            400,
        ),
        (
            "bad scheme",
            http.get(url("/unified/crm/contacts"))
                .header("authorization", "Digest abc")
                .header("x-account-id", &server.account_id),
            401,
        ),
    ];
    for (what, request, status) in cases {
        let response = request.send().await.unwrap();
        assert_eq!(response.status().as_u16(), status, "{what}");
        assert_eq!(
            response
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some("application/json"),
            "{what}"
        );
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["statusCode"], status, "{what}: {body}");
        assert!(
            body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{what}: {body}"
        );
        assert!(
            body["timestamp"]
                .as_str()
                .is_some_and(|t| chrono::DateTime::parse_from_rfc3339(t).is_ok()),
            "{what}: {body}"
        );
    }
    // Nothing was created by the failed writes.
    let page = server
        .client()
        .crm_list_contacts()
        .x_account_id(&server.account_id)
        .send()
        .await
        .unwrap()
        .into_inner();
    assert!(page.data.is_empty());
    server.stop().await;
}

/// A page answers the same bytes whether its records are presented from their stored JSON
/// or handed over as that JSON (the server learns, on the first page, which bodies present
/// as themselves): with and without custom fields, after a write, and under `fields`,
/// `exclude_fields` and `include`.
#[tokio::test]
async fn a_page_reads_the_same_whether_its_records_are_presented_or_handed_over() {
    let server = TestServer::start().await;
    let client = server.client();
    let mut plain = contact("Plain", "Record");
    plain.custom_fields = None;
    plain.passthrough = None;
    for created in [contact("With", "Fields"), plain.clone(), plain] {
        client
            .crm_create_contact()
            .x_account_id(&server.account_id)
            .body(created)
            .send()
            .await
            .unwrap();
    }
    let http = reqwest::Client::new();
    let get = |query: &'static str| {
        let request = http
            .get(format!("{}/unified/crm/contacts{query}", server.base_url))
            .bearer_auth(&server.key)
            .header("x-account-id", &server.account_id);
        async move {
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 200);
            response.text().await.unwrap()
        }
    };
    let queries = [
        "",
        "?page_size=2",
        "?include=custom_fields",
        "?fields=id,first_name",
        "?exclude_fields=emails",
    ];
    let mut first = Vec::new();
    for query in queries {
        first.push(get(query).await);
    }
    for (query, before) in queries.iter().zip(&first) {
        assert_eq!(&get(query).await, before, "{query:?}");
    }
    // A write gives a record a new body, presented afresh.
    let page: serde_json::Value = serde_json::from_str(&first[0]).unwrap();
    let id = page["data"][1]["id"].as_str().unwrap().to_owned();
    client
        .crm_update_contact()
        .id(&id)
        .x_account_id(&server.account_id)
        .body(types::CrmCreateContactRequestDto {
            first_name: Some("Renamed".into()),
            ..Default::default()
        })
        .send()
        .await
        .unwrap();
    let after = get("").await;
    assert!(after.contains("\"first_name\":\"Renamed\""), "{after}");
    assert_eq!(get("").await, after);
    server.stop().await;
}

/// A write answers with the record as a read of it gives it, byte for byte: creates and
/// updates of contacts, accounts and lists, with and without custom fields and passthrough
/// (the answer to a write without custom fields is the model it stored, not a fresh read).
#[tokio::test]
async fn a_write_answers_as_a_read_of_its_record_does() {
    let server = TestServer::start().await;
    let http = reqwest::Client::new();
    let send = |method: reqwest::Method, path: String, body: Option<serde_json::Value>| {
        let mut request = http
            .request(method, format!("{}/unified/crm/{path}", server.base_url))
            .bearer_auth(&server.key)
            .header("x-account-id", &server.account_id);
        if let Some(body) = body {
            request = request.json(&body);
        }
        async move {
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 200);
            response.text().await.unwrap()
        }
    };
    // The project names a custom field, so a contact holding it presents it as
    // `unified_custom_fields` too.
    server
        .client()
        .crm_set_contact_unified_custom_fields()
        .x_account_id(&server.account_id)
        .body(types::UnifiedCustomFields {
            mappings: std::collections::HashMap::from([(
                "training".to_owned(),
                "Training Completion Status".parse().unwrap(),
            )]),
        })
        .send()
        .await
        .unwrap();
    let mut plain = json(&contact("Plain", "Record"));
    plain.as_object_mut().unwrap().remove("custom_fields");
    plain.as_object_mut().unwrap().remove("passthrough");
    let cases = [
        ("contacts", json(&contact("With", "Fields"))),
        ("contacts", plain),
        ("contacts", serde_json::json!({"last_name": "Only"})),
        (
            "accounts",
            serde_json::json!({"name": "Acme", "industries": ["Retail"], "annual_revenue": "1200",
                "addresses": [{"street_1": "1 Main St", "city": "Springfield",
                    "country": {"value": "US"}}],
                "phone_numbers": ["+1 555 0100"], "passthrough": {"tier": "gold"}}),
        ),
        (
            "lists",
            serde_json::json!({"name": "Leads", "type": {"value": "contacts"}}),
        ),
    ];
    for (kind, body) in cases {
        let created = send(reqwest::Method::POST, kind.to_owned(), Some(body.clone())).await;
        let record: serde_json::Value = serde_json::from_str(&created).unwrap();
        let id = record["data"]["id"].as_str().unwrap().to_owned();
        if body.get("custom_fields").is_some() {
            assert_eq!(
                record["data"]["unified_custom_fields"]["training"], "Completed",
                "{created}"
            );
        }
        // A read leaves `custom_fields` out unless asked to include them; a write answers
        // with them.
        let whole = match kind {
            "contacts" => "?include=custom_fields",
            _ => "",
        };
        let read = send(reqwest::Method::GET, format!("{kind}/{id}{whole}"), None).await;
        assert_eq!(created, read, "create of {kind} {body}");
        let change = match kind {
            "contacts" => serde_json::json!({"first_name": "Renamed", "passthrough": null}),
            _ => serde_json::json!({"name": "Renamed"}),
        };
        let updated = send(reqwest::Method::PATCH, format!("{kind}/{id}"), Some(change)).await;
        let read = send(reqwest::Method::GET, format!("{kind}/{id}{whole}"), None).await;
        assert_eq!(updated, read, "update of {kind} {body}");
        assert!(updated.contains("\"Renamed\""), "{updated}");
    }
    server.stop().await;
}

/// A contact read again is handed over as the text it was stored as (once that text is known
/// to present as itself): the same body and `ETag` as the first read, and still shaped by
/// `fields`, `raw` and `include` as any read is.
#[tokio::test]
async fn a_contact_read_again_is_the_same_answer() {
    let server = TestServer::start().await;
    let http = reqwest::Client::new();
    let get = |query: &'static str, id: String| {
        let request = http
            .get(format!(
                "{}/unified/crm/contacts/{id}{query}",
                server.base_url
            ))
            .bearer_auth(&server.key)
            .header("x-account-id", &server.account_id);
        async move {
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 200);
            let etag = response.headers()["etag"].to_str().unwrap().to_owned();
            (etag, response.text().await.unwrap())
        }
    };
    let mut plain = json(&contact("Plain", "Record"));
    plain.as_object_mut().unwrap().remove("custom_fields");
    for body in [plain, json(&contact("With", "Fields"))] {
        // A write's answer carries the `ETag` of the record it answers with.
        let write = |method: reqwest::Method, path: String, body: serde_json::Value| {
            let request = http
                .request(
                    method,
                    format!("{}/unified/crm/contacts{path}", server.base_url),
                )
                .bearer_auth(&server.key)
                .header("x-account-id", &server.account_id)
                .json(&body);
            async move {
                let response = request.send().await.unwrap();
                assert_eq!(response.status(), 200);
                let header = response.headers()["etag"].to_str().unwrap().to_owned();
                let answer: serde_json::Value = response.json().await.unwrap();
                let etag = answer["data"]["etag"].as_str().unwrap().to_owned();
                assert_eq!(header, format!("\"{etag}\""), "{answer}");
                answer
            }
        };
        let created = write(reqwest::Method::POST, String::new(), body.clone()).await;
        let id = created["data"]["id"].as_str().unwrap().to_owned();
        let updated = write(
            reqwest::Method::PATCH,
            format!("/{id}"),
            serde_json::json!({"title": "Again"}),
        )
        .await;
        assert_ne!(updated["data"]["etag"], created["data"]["etag"]);
        let etag = updated["data"]["etag"].as_str().unwrap();
        let first = get("", id.clone()).await;
        assert_eq!(first.0, format!("\"{etag}\""));
        for _ in 0..2 {
            assert_eq!(get("", id.clone()).await, first, "{body}");
        }
        let (_, shaped) = get("?fields=id,last_name", id.clone()).await;
        let shaped: serde_json::Value = serde_json::from_str(&shaped).unwrap();
        assert_eq!(
            shaped["data"],
            serde_json::json!({"id": id, "last_name": body["last_name"]})
        );
        let (_, with_raw) = get("?raw=true", id.clone()).await;
        let with_raw: serde_json::Value = serde_json::from_str(&with_raw).unwrap();
        assert!(with_raw["raw"].is_array(), "{with_raw}");
        let read: serde_json::Value = serde_json::from_str(&first.1).unwrap();
        assert_eq!(with_raw["data"], read["data"]);
        assert!(read["data"].get("custom_fields").is_none(), "{read}");
    }
    server.stop().await;
}
