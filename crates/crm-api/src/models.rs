//! The wire models: every request and response body, with its OpenAPI schema.
//!
//! Field names and shapes follow `openapi/crm.yaml`; the conformance diff proves they agree.
//! Optional fields are skipped when absent rather than sent as `null`.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;
use utoipa::openapi::schema::{
    AdditionalProperties, ArrayBuilder, KnownFormat, ObjectBuilder, OneOfBuilder, Schema,
    SchemaFormat, SchemaType, Type,
};

mod timestamps;

/// A JSON object of free-form values.
pub type JsonObject = Map<String, Value>;

fn any() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(SchemaType::AnyValue)
}

fn free_form_object() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .additional_properties(Some(AdditionalProperties::FreeForm(true)))
}

/// The pattern of a name that must not be empty or only white space: one character that
/// Rust's `str::trim` keeps (the server refuses a name that trims to nothing).
pub const NOT_BLANK: &str = r"[^\t-\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]";

/// The schema of a mapping of unified names to definition names, neither of them blank
/// (OpenAPI 3.0 cannot constrain the keys; the values are written down).
fn mappings_schema() -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .additional_properties(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .pattern(Some(NOT_BLANK)),
        ))
        .into()
}

/// The pattern of an email address the server takes: one `@`, something before it, a dot
/// inside the part after it (neither first nor last, never two in a row), and no white
/// space or control character anywhere (crm-server's `custom_fields::is_email`; a
/// conformance test holds the two together).
pub const EMAIL: &str = r"^[^@\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+@[^@.\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+(\.[^@.\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+)+$";

/// The schema of a list of email addresses, each matching [`EMAIL`].
fn emails_schema() -> Schema {
    ArrayBuilder::new()
        .schema_type(SchemaType::from_iter([Type::Array, Type::Null]))
        .items(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(EMAIL)),
        )
        .into()
}

/// The schema of a free-form object.
pub fn free_form_object_schema() -> Schema {
    free_form_object().into()
}

/// The schema of a value that may be a string, number, boolean, object or array.
pub fn any_value_schema() -> Schema {
    OneOfBuilder::new()
        .item(ObjectBuilder::new().schema_type(Type::String))
        .item(ObjectBuilder::new().schema_type(Type::Number))
        .item(ObjectBuilder::new().schema_type(Type::Boolean))
        .item(free_form_object())
        .item(ArrayBuilder::new().items(any()))
        .into()
}

/// Reads a field whose schema is [`any_value_schema`]: absent is `None`, `null` is refused,
/// because the schema offers no null branch.
fn some_value<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    present_value(d).map(Some)
}

/// Reads a required field whose schema is [`any_value_schema`]; `null` is refused.
fn present_value<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Err(serde::de::Error::custom(
            "null is not allowed here: send a string, number, boolean, object or array, or leave the field out",
        )),
        value => Ok(value),
    }
}

/// A request value that must be a JSON object. A derived `Deserialize` would also take a
/// struct from a JSON array of its fields in order; the schemas say object, so an array is
/// refused. Nested fields keep their error paths, because the map is read in place.
struct ObjectOnly<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for ObjectOnly<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Only<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for Only<T> {
            type Value = ObjectOnly<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<Self::Value, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(ObjectOnly)
            }
        }
        d.deserialize_map(Only(std::marker::PhantomData))
    }
}

/// Reads an optional nested object; see [`ObjectOnly`].
fn object<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<T>, D::Error> {
    Ok(Option::<ObjectOnly<T>>::deserialize(d)?.map(|o| o.0))
}

/// Reads an optional list of nested objects; see [`ObjectOnly`].
fn objects<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Vec<T>>, D::Error> {
    Ok(Option::<Vec<ObjectOnly<T>>>::deserialize(d)?.map(|v| v.into_iter().map(|o| o.0).collect()))
}

/// The schema of an optional free-form object (`passthrough`, `unified_custom_fields`, ...).
pub fn nullable_object_schema() -> Schema {
    free_form_object()
        .schema_type(SchemaType::from_iter([Type::Object, Type::Null]))
        .into()
}

fn raw_body_schema() -> Schema {
    OneOfBuilder::new()
        .item(ObjectBuilder::new().schema_type(Type::String))
        .item(free_form_object())
        .item(
            ArrayBuilder::new().items(
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int32))),
            ),
        )
        .into()
}

fn raw_response_schema() -> Schema {
    OneOfBuilder::new()
        .item(free_form_object())
        .item(ArrayBuilder::new().items(any()))
        .item(ObjectBuilder::new().schema_type(Type::String))
        .into()
}

/// One provider call made to serve a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RawResponse {
    /// The provider-level operation.
    #[schema(example = "GET")]
    pub method: String,
    /// The provider resource the operation addressed.
    #[schema(example = "local://contacts/8187e5da-dc77-475e-9949-af0f1fa4e4e3")]
    pub url: String,
    /// The request body sent to the provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = raw_body_schema)]
    pub body: Option<Value>,
    /// The provider's answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = raw_response_schema)]
    pub response: Option<Value>,
}

/// A custom field value on a record.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CustomFields {
    /// Unique identifier
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "8187e5da-dc77-475e-9949-af0f1fa4e4e3")]
    pub id: Option<String>,
    /// Provider's unique identifier
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "8187e5da-dc77-475e-9949-af0f1fa4e4e3")]
    pub remote_id: Option<String>,
    /// The name of the custom field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "Training Completion Status")]
    pub name: Option<String>,
    /// The value associated with the custom field.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "some_value"
    )]
    #[schema(schema_with = any_value_schema, example = "Completed")]
    pub value: Option<Value>,
    /// The unique identifier for the value of the custom field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "value_456")]
    pub value_id: Option<String>,
    /// Provider's unique identifier for the value of the custom field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "e3cb75bf-aa84-466e-a6c1-b8322b257a48")]
    pub remote_value_id: Option<String>,
}

/// The body of every error response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ErrorResponse {
    /// The HTTP status code.
    #[serde(rename = "statusCode")]
    #[schema(example = 400)]
    pub status_code: i32,
    /// What went wrong, for a person.
    #[schema(example = "page_size must be a whole number from 1 to 100")]
    pub message: String,
    /// When the error happened.
    #[schema(example = "2024-01-01T00:00:00.000Z")]
    pub timestamp: DateTime<Utc>,
    /// Details of the error, such as the field that failed validation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = nullable_object_schema)]
    pub data: Option<JsonObject>,
    /// The errors the provider of the linked account returned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_errors: Option<Vec<ProviderError>>,
}

/// One error returned by the provider of the linked account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ProviderError {
    /// The HTTP status the provider answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = 400)]
    pub status: Option<i32>,
    /// The provider URL that was called.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The provider's error body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = nullable_object_schema)]
    pub raw: Option<JsonObject>,
    /// The provider's response headers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = nullable_object_schema)]
    pub headers: Option<JsonObject>,
}

/// A person in the connected CRM.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Contact {
    /// Unique identifier
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "8187e5da-dc77-475e-9949-af0f1fa4e4e3")]
    pub id: Option<String>,
    /// Provider's unique identifier
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "8187e5da-dc77-475e-9949-af0f1fa4e4e3")]
    pub remote_id: Option<String>,
    /// Custom Unified Fields configured in your project
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = nullable_object_schema)]
    pub unified_custom_fields: Option<JsonObject>,
    /// The contact first name
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "Steve")]
    pub first_name: Option<String>,
    /// The contact last name
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "Wozniak")]
    pub last_name: Option<String>,
    /// The contact company name
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "Apple Inc.")]
    pub company_name: Option<String>,
    /// List of contact email addresses; each has one `@`, a dot inside the part after it, and no white space or control characters
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = emails_schema, example = json!(["steve@apple.com"]))]
    pub emails: Option<Vec<String>>,
    /// List of contact phone numbers
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = json!(["123-456-7890"]))]
    pub phone_numbers: Option<Vec<String>>,
    /// List of associated deal IDs
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = json!(["deal-001", "deal-002"]))]
    pub deal_ids: Option<Vec<String>>,
    /// Provider's list of associated deal IDs
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = json!(["deal-001", "deal-002"]))]
    pub remote_deal_ids: Option<Vec<String>>,
    /// List of associated account IDs
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = json!(["account-123", "account-456"]))]
    pub account_ids: Option<Vec<String>>,
    /// Provider's list of associated account IDs
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = json!(["account-123", "account-456"]))]
    pub remote_account_ids: Option<Vec<String>>,
    /// Contact custom fields
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_fields: Option<Vec<CustomFields>>,
    /// The contact's job title
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "Co-founder")]
    pub title: Option<String>,
    /// The contact's full name
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "Steve Wozniak")]
    pub name: Option<String>,
    /// How to address the contact
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "Mr.")]
    pub salutation: Option<String>,
    /// The contact's department
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "Engineering")]
    pub department: Option<String>,
    /// A description of the contact
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "Designed the Apple I.")]
    pub description: Option<String>,
    /// The contact's date of birth
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "1950-08-11")]
    pub birthday: Option<NaiveDate>,
    /// Where the contact came from
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "Trade show")]
    pub lead_source: Option<String>,
    /// The URL of the contact's photo
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "https://example.com/woz.png")]
    pub photo_url: Option<String>,
    /// The account (company) the contact belongs to
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<ContactAccountRef>,
    /// The user who owns the contact
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<ContactOwnerRef>,
    /// The contact's tags
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<ContactTag>>,
    /// The contact's URLs
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<ContactUrl>>,
    /// The contact's email addresses with their types; kept consistent with `emails`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_addresses: Option<Vec<ContactEmailAddress>>,
    /// The contact's phone numbers with extension and type; kept consistent with `phone_numbers`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub typed_phone_numbers: Option<Vec<ContactPhoneNumber>>,
    /// The contact's postal addresses
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addresses: Option<Vec<ContactAddress>>,
    /// An id of the contact in another system, unique within the linked account; the contact can be updated by it
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "ext-2614d72c")]
    pub external_id: Option<String>,
    /// When the contact was last active
    #[serde(default, skip_serializing_if = "Option::is_none", with = "timestamps")]
    #[schema(example = "2024-01-01T00:00:00.000Z")]
    pub last_activity_at: Option<DateTime<Utc>>,
    /// Provider fields outside the unified model, set on write and returned on read
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = nullable_object_schema)]
    pub remote_fields: Option<JsonObject>,
    /// When the provider created the contact
    #[serde(default, skip_serializing_if = "Option::is_none", with = "timestamps")]
    #[schema(example = "2021-01-01T01:01:01.000Z")]
    pub remote_created_at: Option<DateTime<Utc>>,
    /// When the provider last updated the contact
    #[serde(default, skip_serializing_if = "Option::is_none", with = "timestamps")]
    #[schema(example = "2021-01-01T01:01:01.000Z")]
    pub remote_updated_at: Option<DateTime<Utc>>,
    /// Whether the provider has deleted the contact
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = false)]
    pub remote_deleted: Option<bool>,
    /// The version of the contact; changes on every write. Send it back in `If-Match` to update only this version
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// Timestamp when the contact was created
    #[serde(default, skip_serializing_if = "Option::is_none", with = "timestamps")]
    #[schema(example = "2021-01-01T01:01:01.000Z")]
    pub created_at: Option<DateTime<Utc>>,
    /// Timestamp when the contact was last updated
    #[serde(default, skip_serializing_if = "Option::is_none", with = "timestamps")]
    #[schema(example = "2021-01-01T01:01:01.000Z")]
    pub updated_at: Option<DateTime<Utc>>,
}

/// The fields of a contact to create or update.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CrmCreateContactRequestDto {
    /// The contact first name
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "Steve")]
    pub first_name: Option<String>,
    /// The contact last name; required on create, and never empty or only white space
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(
        example = "Wozniak",
        min_length = 1,
        pattern = r"[^\t-\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
    )]
    pub last_name: Option<String>,
    /// The contact company name
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "Apple Inc.")]
    pub company_name: Option<String>,
    /// List of contact email addresses; each has one `@`, a dot inside the part after it, and no white space or control characters
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = emails_schema, example = json!(["steve@apple.com"]))]
    pub emails: Option<Vec<String>>,
    /// List of contact phone numbers
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = json!(["123-456-7890"]))]
    pub phone_numbers: Option<Vec<String>>,
    /// List of associated deal IDs
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = json!(["deal-001", "deal-002"]))]
    pub deal_ids: Option<Vec<String>>,
    /// List of associated account IDs
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = json!(["account-123", "account-456"]))]
    pub account_ids: Option<Vec<String>>,
    /// Contact custom fields
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "objects"
    )]
    pub custom_fields: Option<Vec<CustomFields>>,
    /// Value to pass through to the provider
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = nullable_object_schema, example = json!({"other_known_names": "John Doe"}))]
    pub passthrough: Option<JsonObject>,
    /// The contact's job title
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "Co-founder")]
    pub title: Option<String>,
    /// The contact's full name
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "Steve Wozniak")]
    pub name: Option<String>,
    /// How to address the contact
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "Mr.")]
    pub salutation: Option<String>,
    /// The contact's department
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "Engineering")]
    pub department: Option<String>,
    /// A description of the contact
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "Designed the Apple I.")]
    pub description: Option<String>,
    /// The contact's date of birth
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "1950-08-11")]
    pub birthday: Option<NaiveDate>,
    /// Where the contact came from
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "Trade show")]
    pub lead_source: Option<String>,
    /// The URL of the contact's photo
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "https://example.com/woz.png")]
    pub photo_url: Option<String>,
    /// The account (company) the contact belongs to
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "object"
    )]
    pub account: Option<ContactAccountRef>,
    /// The user who owns the contact
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "object"
    )]
    pub owner: Option<ContactOwnerRef>,
    /// The contact's tags
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "objects"
    )]
    pub tags: Option<Vec<ContactTag>>,
    /// The contact's URLs
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "objects"
    )]
    pub urls: Option<Vec<ContactUrl>>,
    /// The contact's email addresses with their types; kept consistent with `emails`
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "objects"
    )]
    pub email_addresses: Option<Vec<ContactEmailAddress>>,
    /// The contact's phone numbers with extension and type; kept consistent with `phone_numbers`
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "objects"
    )]
    pub typed_phone_numbers: Option<Vec<ContactPhoneNumber>>,
    /// The contact's postal addresses
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "objects"
    )]
    pub addresses: Option<Vec<ContactAddress>>,
    /// An id of the contact in another system, unique within the linked account; the contact can be updated by it
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "ext-2614d72c")]
    pub external_id: Option<String>,
    /// When the contact was last active
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "2024-01-01T00:00:00.000Z")]
    pub last_activity_at: Option<DateTime<Utc>>,
    /// Provider fields outside the unified model, set on write and returned on read
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = nullable_object_schema)]
    pub remote_fields: Option<JsonObject>,
    /// The contact's id. Optional on update, where it must equal the id of the record being updated (an update never changes an id); not accepted on create
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The version the update applies to, like `If-Match`; when it differs from the current etag the update fails with 412
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
}

/// A reference to the account (company) of a contact.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContactAccountRef {
    /// The account's id
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The account's name
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "Apple Inc.")]
    pub name: Option<String>,
}

/// A reference to the user who owns a record.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContactOwnerRef {
    /// The owner's id
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// A tag on a contact.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContactTag {
    /// The tag's id
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The tag's name
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "VIP")]
    pub name: Option<String>,
}

/// A URL of a contact.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContactUrl {
    /// The URL
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "https://woz.org")]
    pub url: Option<String>,
    /// The kind of URL (website, linkedin, ...)
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    #[schema(example = "website")]
    pub url_type: Option<String>,
}

/// An email address of a contact with its type.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContactEmailAddress {
    /// The email address, with one `@`, a dot inside the part after it, and no white space or control characters
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(
        example = "steve@apple.com",
        nullable = false,
        pattern = r"^[^@\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+@[^@.\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+(\.[^@.\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+)+$"
    )]
    pub email: Option<String>,
    /// The kind of address (work, personal, ...)
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    #[schema(example = "work")]
    pub email_type: Option<String>,
}

/// The kind of a phone number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PhoneType {
    Phone,
    Mobile,
    Fax,
    Work,
    Home,
    Other,
    Assistant,
}

/// A phone number of a contact with its extension and type.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContactPhoneNumber {
    /// The phone number
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "123-456-7890", nullable = false)]
    pub number: Option<String>,
    /// The extension
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "42")]
    pub extension: Option<String>,
    /// The kind of phone number
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    #[schema(inline, example = "mobile")]
    pub phone_type: Option<PhoneType>,
}

/// A postal address of a contact.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContactAddress {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "123 Main Street")]
    pub street_1: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "Apt 1")]
    pub street_2: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "Cupertino")]
    pub city: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "CA")]
    pub state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "95014")]
    pub postal_code: Option<String>,
    /// The country subdivision (ISO 3166-2 code or the provider's name)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "US-CA")]
    pub country_subdivision: Option<String>,
    /// The country
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "US")]
    pub country: Option<String>,
    /// The kind of address (mailing, other, billing, shipping, ...)
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    #[schema(example = "mailing")]
    pub address_type: Option<String>,
}

/// A mapping of unified custom field names to custom field definition names.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UnifiedCustomFields {
    /// Unified name → the `name` of a contact custom field definition. Neither may be empty or only white space.
    #[schema(schema_with = mappings_schema, example = json!({"my_project_custom_field_1": "Training Completion Status"}))]
    pub mappings: std::collections::BTreeMap<String, String>,
}

/// The unified custom field mapping of the project.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct UnifiedCustomFieldsResult {
    pub data: UnifiedCustomFields,
}

/// Every ISO 3166-1 alpha-2 country code.
pub const COUNTRY_CODES: [&str; 249] = [
    "AD", "AE", "AF", "AG", "AI", "AL", "AM", "AO", "AQ", "AR", "AS", "AT", "AU", "AW", "AX", "AZ",
    "BA", "BB", "BD", "BE", "BF", "BG", "BH", "BI", "BJ", "BL", "BM", "BN", "BO", "BQ", "BR", "BS",
    "BT", "BV", "BW", "BY", "BZ", "CA", "CC", "CD", "CF", "CG", "CH", "CI", "CK", "CL", "CM", "CN",
    "CO", "CR", "CU", "CV", "CW", "CX", "CY", "CZ", "DE", "DJ", "DK", "DM", "DO", "DZ", "EC", "EE",
    "EG", "EH", "ER", "ES", "ET", "FI", "FJ", "FK", "FM", "FO", "FR", "GA", "GB", "GD", "GE", "GF",
    "GG", "GH", "GI", "GL", "GM", "GN", "GP", "GQ", "GR", "GS", "GT", "GU", "GW", "GY", "HK", "HM",
    "HN", "HR", "HT", "HU", "ID", "IE", "IL", "IM", "IN", "IO", "IQ", "IR", "IS", "IT", "JE", "JM",
    "JO", "JP", "KE", "KG", "KH", "KI", "KM", "KN", "KP", "KR", "KW", "KY", "KZ", "LA", "LB", "LC",
    "LI", "LK", "LR", "LS", "LT", "LU", "LV", "LY", "MA", "MC", "MD", "ME", "MF", "MG", "MH", "MK",
    "ML", "MM", "MN", "MO", "MP", "MQ", "MR", "MS", "MT", "MU", "MV", "MW", "MX", "MY", "MZ", "NA",
    "NC", "NE", "NF", "NG", "NI", "NL", "NO", "NP", "NR", "NU", "NZ", "OM", "PA", "PE", "PF", "PG",
    "PH", "PK", "PL", "PM", "PN", "PR", "PS", "PT", "PW", "PY", "QA", "RE", "RO", "RS", "RU", "RW",
    "SA", "SB", "SC", "SD", "SE", "SG", "SH", "SI", "SJ", "SK", "SL", "SM", "SN", "SO", "SR", "SS",
    "ST", "SV", "SX", "SY", "SZ", "TC", "TD", "TF", "TG", "TH", "TJ", "TK", "TL", "TM", "TN", "TO",
    "TR", "TT", "TV", "TW", "TZ", "UA", "UG", "UM", "US", "UY", "UZ", "VA", "VC", "VE", "VG", "VI",
    "VN", "VU", "WF", "WS", "YE", "YT", "ZA", "ZM", "ZW",
];

fn country_code_schema() -> Schema {
    let mut values: Vec<&str> = COUNTRY_CODES.to_vec();
    values.push("unmapped_value");
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
        .description(Some("The ISO 3166-1 alpha-2 code of the country."))
        .enum_values(Some(values))
        .examples([Value::from("US")])
        .into()
}

/// A country as an ISO 3166-1 alpha-2 code, with the provider's own value.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CountryCodeEnum {
    /// The ISO 3166-1 alpha-2 code of the country, or `unmapped_value`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "country_code"
    )]
    #[schema(schema_with = country_code_schema)]
    pub value: Option<String>,
    /// The provider's own value.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "some_value"
    )]
    #[schema(schema_with = any_value_schema)]
    pub source_value: Option<Value>,
}

fn country_code<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let value = Option::<String>::deserialize(d)?;
    match value {
        Some(code) if code != "unmapped_value" && !COUNTRY_CODES.contains(&code.as_str()) => {
            Err(serde::de::Error::custom(format!(
                "{code:?} is not an ISO 3166-1 alpha-2 country code"
            )))
        }
        other => Ok(other),
    }
}

/// The kind of place an address is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LocationType {
    Home,
    Work,
    UnmappedValue,
}

/// The kind of place an address is.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LocationTypeEnum {
    /// The type of the location.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(inline, example = "work")]
    pub value: Option<LocationType>,
    /// The provider's own value.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "some_value"
    )]
    #[schema(schema_with = any_value_schema)]
    pub source_value: Option<Value>,
}

/// A postal address of an account.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AccountAddress {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "123 Main Street")]
    pub street_1: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "Apt 1")]
    pub street_2: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "Cupertino")]
    pub city: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "CA")]
    pub state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "95014")]
    pub zip_code: Option<String>,
    /// The country of the address.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "object"
    )]
    pub country: Option<CountryCodeEnum>,
    /// The type of the location.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "object"
    )]
    pub location_type: Option<LocationTypeEnum>,
}

/// A company or organisation in the connected CRM.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Account {
    /// Unique identifier
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "8187e5da-dc77-475e-9949-af0f1fa4e4e3")]
    pub id: Option<String>,
    /// Provider's unique identifier
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "8187e5da-dc77-475e-9949-af0f1fa4e4e3")]
    pub remote_id: Option<String>,
    /// Custom Unified Fields configured in your project
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = nullable_object_schema)]
    pub unified_custom_fields: Option<JsonObject>,
    /// The id of the account's owner
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_id: Option<String>,
    /// Provider's id of the account's owner
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_owner_id: Option<String>,
    /// The account name
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "Apple Inc.")]
    pub name: Option<String>,
    /// The account description
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "Consumer electronics and software.")]
    pub description: Option<String>,
    /// The account's industries
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = json!(["Technology"]))]
    pub industries: Option<Vec<String>>,
    /// The annual revenue of the account
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "394328000000")]
    pub annual_revenue: Option<String>,
    /// The account's website
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "https://www.apple.com")]
    pub website: Option<String>,
    /// The account's addresses
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addresses: Option<Vec<AccountAddress>>,
    /// The account's phone numbers
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = json!(["+1 408-996-1010"]))]
    pub phone_numbers: Option<Vec<String>>,
    /// The version of the account; changes on every write. Send it back in `If-Match` to update only this version
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// Timestamp when the account was created
    #[serde(default, skip_serializing_if = "Option::is_none", with = "timestamps")]
    #[schema(example = "2021-01-01T01:01:01.000Z")]
    pub created_at: Option<DateTime<Utc>>,
    /// Timestamp when the account was last updated
    #[serde(default, skip_serializing_if = "Option::is_none", with = "timestamps")]
    #[schema(example = "2021-01-01T01:01:01.000Z")]
    pub updated_at: Option<DateTime<Utc>>,
}

/// The fields of an account to create or update.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CrmCreateAccountRequestDto {
    /// The account name
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "Apple Inc.")]
    pub name: Option<String>,
    /// The account description
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The id of the account's owner
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_id: Option<String>,
    /// The account's industries
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub industries: Option<Vec<String>>,
    /// The annual revenue of the account
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annual_revenue: Option<String>,
    /// The account's website
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub website: Option<String>,
    /// The account's addresses
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "objects"
    )]
    pub addresses: Option<Vec<AccountAddress>>,
    /// The account's phone numbers
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone_numbers: Option<Vec<String>>,
    /// Value to pass through to the provider
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = nullable_object_schema)]
    pub passthrough: Option<JsonObject>,
}

/// What kind of records a list holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ListType {
    Candidates,
    Contacts,
    Companies,
    UnmappedValue,
}

/// What kind of records a list holds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ListTypeEnum {
    /// The type of the list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(inline, example = "contacts")]
    pub value: Option<ListType>,
    /// The provider's own value.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "some_value"
    )]
    #[schema(schema_with = any_value_schema)]
    pub source_value: Option<Value>,
}

/// One record on a list.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ListItem {
    /// Unique identifier
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Provider's unique identifier
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_id: Option<String>,
}

/// A named list of contacts or companies.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct List {
    /// Unique identifier
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Provider's unique identifier
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_id: Option<String>,
    /// Custom Unified Fields configured in your project
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = nullable_object_schema)]
    pub unified_custom_fields: Option<JsonObject>,
    /// The list name
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "Key customers")]
    pub name: Option<String>,
    /// The records on the list
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items: Option<Vec<ListItem>>,
    /// The version of the list; changes on every write. Send it back in `If-Match` to update only this version
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// Timestamp when the list was created
    #[serde(default, skip_serializing_if = "Option::is_none", with = "timestamps")]
    pub created_at: Option<DateTime<Utc>>,
    /// Timestamp when the list was last updated
    #[serde(default, skip_serializing_if = "Option::is_none", with = "timestamps")]
    pub updated_at: Option<DateTime<Utc>>,
    /// The type of the list
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub list_type: Option<ListTypeEnum>,
}

/// The fields of a list to create or update.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CrmCreateListRequestDto {
    /// The list name; required on create, and never empty or only white space
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(
        example = "Key customers",
        nullable = false,
        min_length = 1,
        pattern = r"[^\t-\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
    )]
    pub name: Option<String>,
    /// The type of the list; `contacts` when not given on create.
    #[serde(
        default,
        rename = "type",
        skip_serializing_if = "Option::is_none",
        deserialize_with = "object"
    )]
    pub list_type: Option<ListTypeEnum>,
    /// Value to pass through to the provider
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = nullable_object_schema)]
    pub passthrough: Option<JsonObject>,
}

/// Records to add to a list.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CrmListItemsRequestDto {
    /// The ids of the contacts (or, on a companies list, accounts) to add, at most 1000.
    #[schema(max_items = 1000, example = json!(["8187e5da-dc77-475e-9949-af0f1fa4e4e3"]))]
    pub item_ids: Vec<String>,
}

/// The type of a custom field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CustomFieldType {
    Date,
    Float,
    Integer,
    List,
    Checkbox,
    Text,
    Boolean,
    SingleSelect,
    MultiSelect,
    Url,
    Other,
    UnmappedValue,
}

/// The type of a custom field.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CustomFieldTypeEnum {
    /// The type of the custom field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(inline, example = "text")]
    pub value: Option<CustomFieldType>,
    /// The provider's own value.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "some_value"
    )]
    #[schema(schema_with = any_value_schema)]
    pub source_value: Option<Value>,
}

/// One option of a select custom field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CustomFieldOption {
    /// The option's identifier
    #[schema(example = "1")]
    pub id: String,
    /// The option's value
    #[serde(deserialize_with = "present_value")]
    #[schema(schema_with = any_value_schema, example = "Completed")]
    pub value: Value,
}

/// The definition of a custom field.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CustomFieldDefinition {
    /// Unique identifier
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Provider's unique identifier
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_id: Option<String>,
    /// The name of the custom field
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "Training Completion Status")]
    pub name: Option<String>,
    /// What the custom field holds
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The type of the custom field
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub field_type: Option<CustomFieldTypeEnum>,
    /// The options of a select field
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<Vec<CustomFieldOption>>,
}

/// The fields of a custom field definition to create or update.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CrmCreateCustomFieldDefinitionRequestDto {
    /// The name of the custom field; required on create, and never empty or only white space.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(
        example = "Training Completion Status",
        nullable = false,
        min_length = 1,
        pattern = r"[^\t-\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
    )]
    pub name: Option<String>,
    /// What the custom field holds
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The type of the custom field; `text` when not given on create.
    #[serde(
        default,
        rename = "type",
        skip_serializing_if = "Option::is_none",
        deserialize_with = "object"
    )]
    pub field_type: Option<CustomFieldTypeEnum>,
    /// The options of a select field
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "objects"
    )]
    pub options: Option<Vec<CustomFieldOption>>,
    /// Value to pass through to the provider
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = nullable_object_schema)]
    pub passthrough: Option<JsonObject>,
}

/// Declares the single-record and page envelopes of a resource.
macro_rules! envelopes {
    ($($resource:ident => $single:ident, $page:ident, $what:literal;)*) => {$(
        #[doc = concat!("One ", $what, ".")]
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
        pub struct $single {
            pub data: $resource,
            /// The provider calls made to serve the request, when `raw=true`.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub raw: Option<Vec<RawResponse>>,
        }

        #[doc = concat!("A page of ", $what, "s.")]
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
        pub struct $page {
            /// The cursor of the next page; absent on the last page.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub next: Option<String>,
            pub data: Vec<$resource>,
            /// The provider calls made to serve the request, when `raw=true`.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub raw: Option<Vec<RawResponse>>,
        }
    )*};
}

envelopes! {
    Contact => ContactResult, ContactsPaginated, "contact";
    Account => AccountResult, AccountsPaginated, "account";
    List => ListResult, ListsPaginated, "list";
    CustomFieldDefinition => CustomFieldDefinitionResultApiModel, CustomFieldDefinitionsPaginated, "custom field definition";
}
