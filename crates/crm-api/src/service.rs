//! The services the handlers call: what an implementation (the server) provides.
//!
//! The API crate owns no storage. What it needs from the outside world comes through three
//! separate concerns: who the caller is ([`Authorizer`]), which `Idempotency-Key`s were seen
//! ([`IdempotencyStore`]), and the records of a linked account ([`CrmProvider`], one per
//! provider, picked from the provider [`Authorizer::authorize`] names).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::error::ApiError;
use crate::models::{
    Account, Contact, CrmCreateAccountRequestDto, CrmCreateContactRequestDto,
    CrmCreateCustomFieldDefinitionRequestDto, CrmCreateListRequestDto, CustomFieldDefinition,
    JsonObject, List, RawResponse, UnifiedCustomFields,
};

/// An API key as the caller sent it. Its `Debug` never prints the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(pub String);

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// The linked account a request acts on, once the caller has been authorised for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountScope {
    pub project_id: String,
    pub account_id: String,
    /// The provider of the linked account (`local`, ...): it picks the [`CrmProvider`].
    pub provider: String,
}

/// Which page of a list to read.
#[derive(Debug, Clone, PartialEq)]
pub struct PageRequest {
    pub page_size: u32,
    /// The opaque cursor returned as `next` by the previous page.
    pub cursor: Option<String>,
    pub updated_after: Option<DateTime<Utc>>,
    /// Query parameters for the provider.
    pub proxy: JsonObject,
    /// Whether the caller asked for the provider calls (`raw=true`). When `false` the
    /// answer's `raw` is not shown, so a provider may leave it empty.
    pub raw: bool,
}

/// What a read needs besides the record id.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReadRequest {
    /// Query parameters for the provider.
    pub proxy: JsonObject,
    /// Whether the caller asked for the provider calls (`raw=true`). When `false` the
    /// answer's `raw` is not shown, so a provider may leave it empty.
    pub raw: bool,
}

/// A write body: the typed model and the JSON object exactly as sent, so an update can
/// tell a field that was sent as `null` from one that was not sent.
#[derive(Debug, Clone, PartialEq)]
pub struct Write<T> {
    pub body: T,
    pub sent: JsonObject,
    /// The `If-Match` header: the etag the update applies to (`*` for any).
    pub if_match: Option<String>,
    /// The `Idempotency-Key` this request holds the claim of, if any. A create records the
    /// id it creates under the key in its own transaction.
    pub idempotency_key: Option<String>,
}

/// The outcome of claiming an idempotency key.
#[derive(Debug, Clone, PartialEq)]
pub enum IdempotencyClaim {
    /// The key is new (or expired): run the request, then record its response.
    Proceed,
    /// The key was used with the same request: answer what was answered then.
    Replay(StoredResponse),
}

/// A response kept for an idempotency key.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// A stream of records, read in batches so it runs in constant memory.
pub type RecordStream<T> = futures::stream::BoxStream<'static, ServiceResult<T>>;

/// A result with the provider calls made to produce it.
#[derive(Debug, Clone, PartialEq)]
pub struct Served<T> {
    pub data: T,
    pub raw: Vec<RawResponse>,
}

impl<T> Served<T> {
    /// The same calls, with `f` of the result.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Served<U> {
        Served {
            data: f(self.data),
            raw: self.raw,
        }
    }
}

/// A page of results with the provider calls made to produce it.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub data: Vec<T>,
    /// The cursor of the next page; `None` on the last page.
    pub next: Option<String>,
    pub raw: Vec<RawResponse>,
}

/// A record of a page as a provider hands it over: typed, or the JSON text that presenting
/// it would write, byte for byte, to be written out as it is.
#[derive(Debug, Clone)]
pub enum Listed<T> {
    Typed(T),
    /// Never holds `custom_fields`, so no mapping or `include` changes it.
    Presented(Box<serde_json::value::RawValue>),
}

impl<T: serde::Serialize> serde::Serialize for Listed<T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Listed::Typed(record) => record.serialize(serializer),
            Listed::Presented(json) => json.serialize(serializer),
        }
    }
}

impl<T: serde::de::DeserializeOwned> Listed<T> {
    /// The record typed, read from its JSON when it came presented.
    pub fn into_typed(self) -> Result<T, serde_json::Error> {
        match self {
            Listed::Typed(record) => Ok(record),
            Listed::Presented(json) => serde_json::from_str(json.get()),
        }
    }
}

/// A single record as a provider hands it over: typed, or, like [`Listed::Presented`], the
/// JSON text that presenting it would write, byte for byte, with its `etag`.
#[derive(Debug, Clone)]
pub enum Single<T> {
    Typed(T),
    /// Never holds `custom_fields`, so no mapping or `include` changes it.
    Presented {
        json: String,
        etag: Option<String>,
    },
}

/// A [`Page`] whose records may come presented (see [`Listed`]).
#[derive(Debug, Clone)]
pub struct ListedPage<T> {
    pub data: Vec<Listed<T>>,
    pub next: Option<String>,
    pub raw: Vec<RawResponse>,
}

impl<T> From<Page<T>> for ListedPage<T> {
    fn from(page: Page<T>) -> Self {
        ListedPage {
            data: page.data.into_iter().map(Listed::Typed).collect(),
            next: page.next,
            raw: page.raw,
        }
    }
}

pub type ServiceResult<T> = Result<T, ApiError>;

/// Who the caller is.
#[async_trait]
pub trait Authorizer: Send + Sync + 'static {
    /// Checks the API key and that `account_id` names a linked account of the key's project.
    /// An unknown or revoked key is 401; an account the project does not have is 404.
    async fn authorize(&self, key: &ApiKey, account_id: &str) -> ServiceResult<AccountScope>;
}

/// The `Idempotency-Key`s of POST requests, kept per project.
#[async_trait]
pub trait IdempotencyStore: Send + Sync + 'static {
    /// Claims `key` for a POST whose request is summarised by `fingerprint`. The same key
    /// with another fingerprint is 422; a key whose first request is still running is 409.
    async fn claim_idempotency_key(
        &self,
        scope: &AccountScope,
        key: &str,
        fingerprint: &str,
    ) -> ServiceResult<IdempotencyClaim>;
    /// Records the response of a request that claimed `key`.
    async fn complete_idempotency_key(
        &self,
        scope: &AccountScope,
        key: &str,
        response: &StoredResponse,
    ) -> ServiceResult<()>;
    /// Releases `key` after a failure that must not be replayed (a server error).
    async fn release_idempotency_key(&self, scope: &AccountScope, key: &str) -> ServiceResult<()>;
}

/// The records of the linked accounts of one provider.
///
/// Every operation takes the [`AccountScope`] returned by [`Authorizer::authorize`]; an
/// implementation must never return or change a record outside that linked account.
#[async_trait]
pub trait CrmProvider: Send + Sync + 'static {
    async fn list_contacts(
        &self,
        scope: &AccountScope,
        page: &PageRequest,
    ) -> ServiceResult<Page<Contact>>;
    /// [`CrmProvider::list_contacts`], with the records a provider holds already in their
    /// presented form handed over as that text. The handler of the listing calls this one.
    async fn list_contacts_listed(
        &self,
        scope: &AccountScope,
        page: &PageRequest,
    ) -> ServiceResult<ListedPage<Contact>> {
        self.list_contacts(scope, page).await.map(ListedPage::from)
    }
    async fn get_contact(
        &self,
        scope: &AccountScope,
        id: &str,
        read: &ReadRequest,
    ) -> ServiceResult<Served<Contact>>;
    /// [`CrmProvider::get_contact`], with a record the provider holds already in its
    /// presented form handed over as that text. The handler of the read calls this one.
    async fn get_contact_single(
        &self,
        scope: &AccountScope,
        id: &str,
        read: &ReadRequest,
    ) -> ServiceResult<Served<Single<Contact>>> {
        Ok(self.get_contact(scope, id, read).await?.map(Single::Typed))
    }
    async fn create_contact(
        &self,
        scope: &AccountScope,
        write: Write<CrmCreateContactRequestDto>,
    ) -> ServiceResult<Served<Contact>>;
    /// [`CrmProvider::create_contact`], with the record handed over as the text it was
    /// stored as when that is its presentation. The handler of the create calls this one.
    async fn create_contact_single(
        &self,
        scope: &AccountScope,
        write: Write<CrmCreateContactRequestDto>,
    ) -> ServiceResult<Served<Single<Contact>>> {
        Ok(self.create_contact(scope, write).await?.map(Single::Typed))
    }
    async fn update_contact(
        &self,
        scope: &AccountScope,
        id: &str,
        write: Write<CrmCreateContactRequestDto>,
    ) -> ServiceResult<Served<Contact>>;
    /// [`CrmProvider::update_contact`], with the record handed over as the text it was
    /// stored as when that is its presentation. The handler of the update calls this one.
    async fn update_contact_single(
        &self,
        scope: &AccountScope,
        id: &str,
        write: Write<CrmCreateContactRequestDto>,
    ) -> ServiceResult<Served<Single<Contact>>> {
        Ok(self
            .update_contact(scope, id, write)
            .await?
            .map(Single::Typed))
    }
    async fn delete_contact(&self, scope: &AccountScope, id: &str) -> ServiceResult<()>;
    async fn update_contact_by_external_id(
        &self,
        scope: &AccountScope,
        external_id: &str,
        write: Write<CrmCreateContactRequestDto>,
    ) -> ServiceResult<Served<Contact>>;
    /// Every contact of the linked account, oldest first.
    async fn export_contacts(
        &self,
        scope: &AccountScope,
        updated_after: Option<DateTime<Utc>>,
    ) -> ServiceResult<RecordStream<Contact>>;

    async fn get_contact_unified_custom_fields(
        &self,
        scope: &AccountScope,
    ) -> ServiceResult<UnifiedCustomFields>;
    async fn set_contact_unified_custom_fields(
        &self,
        scope: &AccountScope,
        mapping: UnifiedCustomFields,
    ) -> ServiceResult<UnifiedCustomFields>;

    async fn list_accounts(
        &self,
        scope: &AccountScope,
        page: &PageRequest,
    ) -> ServiceResult<Page<Account>>;
    async fn get_account(
        &self,
        scope: &AccountScope,
        id: &str,
        read: &ReadRequest,
    ) -> ServiceResult<Served<Account>>;
    async fn create_account(
        &self,
        scope: &AccountScope,
        write: Write<CrmCreateAccountRequestDto>,
    ) -> ServiceResult<Served<Account>>;
    async fn update_account(
        &self,
        scope: &AccountScope,
        id: &str,
        write: Write<CrmCreateAccountRequestDto>,
    ) -> ServiceResult<Served<Account>>;
    async fn delete_account(&self, scope: &AccountScope, id: &str) -> ServiceResult<()>;

    async fn list_lists(
        &self,
        scope: &AccountScope,
        page: &PageRequest,
    ) -> ServiceResult<Page<List>>;
    async fn get_list(
        &self,
        scope: &AccountScope,
        id: &str,
        read: &ReadRequest,
    ) -> ServiceResult<Served<List>>;
    async fn create_list(
        &self,
        scope: &AccountScope,
        write: Write<CrmCreateListRequestDto>,
    ) -> ServiceResult<Served<List>>;
    async fn update_list(
        &self,
        scope: &AccountScope,
        id: &str,
        write: Write<CrmCreateListRequestDto>,
    ) -> ServiceResult<Served<List>>;
    async fn add_list_items(
        &self,
        scope: &AccountScope,
        id: &str,
        item_ids: &[String],
    ) -> ServiceResult<Served<List>>;
    async fn remove_list_item(
        &self,
        scope: &AccountScope,
        id: &str,
        item_id: &str,
    ) -> ServiceResult<Served<List>>;

    async fn list_contact_custom_field_definitions(
        &self,
        scope: &AccountScope,
        page: &PageRequest,
    ) -> ServiceResult<Page<CustomFieldDefinition>>;
    async fn get_contact_custom_field_definition(
        &self,
        scope: &AccountScope,
        id: &str,
        read: &ReadRequest,
    ) -> ServiceResult<Served<CustomFieldDefinition>>;
    async fn create_contact_custom_field_definition(
        &self,
        scope: &AccountScope,
        write: Write<CrmCreateCustomFieldDefinitionRequestDto>,
    ) -> ServiceResult<Served<CustomFieldDefinition>>;
    async fn update_contact_custom_field_definition(
        &self,
        scope: &AccountScope,
        id: &str,
        write: Write<CrmCreateCustomFieldDefinitionRequestDto>,
    ) -> ServiceResult<Served<CustomFieldDefinition>>;
}

/// The state every handler receives. One shared allocation: axum clones the state for
/// every request (and twice in the handler's service), so each field behind an `Arc` of
/// its own would be one more reference count that every core updates per request.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

#[derive(Clone)]
struct Shared {
    authorizer: Arc<dyn Authorizer>,
    idempotency: Arc<dyn IdempotencyStore>,
    providers: BTreeMap<String, Arc<dyn CrmProvider>>,
}

impl AppState {
    pub fn new(authorizer: Arc<dyn Authorizer>, idempotency: Arc<dyn IdempotencyStore>) -> Self {
        Self(Arc::new(Shared {
            authorizer,
            idempotency,
            providers: BTreeMap::new(),
        }))
    }

    /// Serves the linked accounts of `provider` with `implementation`.
    pub fn with_provider(mut self, provider: &str, implementation: Arc<dyn CrmProvider>) -> Self {
        Arc::make_mut(&mut self.0)
            .providers
            .insert(provider.to_owned(), implementation);
        self
    }

    /// Who may reach which linked account.
    pub fn authorizer(&self) -> &dyn Authorizer {
        self.0.authorizer.as_ref()
    }

    /// Where idempotency keys are claimed and their answers kept.
    pub fn idempotency(&self) -> &dyn IdempotencyStore {
        self.0.idempotency.as_ref()
    }

    /// The implementation that serves the linked account of `scope`.
    pub fn provider(&self, scope: &AccountScope) -> Result<&dyn CrmProvider, ApiError> {
        self.0
            .providers
            .get(&scope.provider)
            .map(|p| p.as_ref())
            .ok_or_else(|| {
                ApiError::new(
                    axum::http::StatusCode::NOT_IMPLEMENTED,
                    format!(
                        "linked account {} is of provider {:?}, which this server does not serve",
                        scope.account_id, scope.provider
                    ),
                )
            })
    }
}
