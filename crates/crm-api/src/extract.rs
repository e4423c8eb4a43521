//! Extractors that turn a request into typed input, answering every failure in the
//! contract's error shape (never axum's plain-text rejections).

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, IF_MATCH};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::ApiError;
use crate::idempotency::ClaimedKey;
use crate::metrics;
use crate::service::{AccountScope, ApiKey, AppState, Write};

/// The header naming the linked account a call acts on.
pub const ACCOUNT_HEADER: &str = "x-account-id";

/// Reads the API key from `Authorization`: HTTP Basic with the key as user name (the
/// password is ignored and normally empty), or a bearer token.
pub fn api_key(headers: &HeaderMap) -> Result<ApiKey, ApiError> {
    let value = headers.get(AUTHORIZATION).ok_or_else(|| {
        ApiError::unauthorized(
            "missing credentials: send the API key as the HTTP Basic user name or as a bearer token",
        )
    })?;
    let malformed = || ApiError::unauthorized("malformed Authorization header");
    let value = value.to_str().map_err(|_| malformed())?.trim();
    let (scheme, rest) = value.split_once(' ').ok_or_else(malformed)?;
    let key = if scheme.eq_ignore_ascii_case("basic") {
        let decoded = STANDARD.decode(rest.trim()).map_err(|_| malformed())?;
        let decoded = String::from_utf8(decoded).map_err(|_| malformed())?;
        let (user, _password) = decoded.split_once(':').unwrap_or((&decoded, ""));
        user.to_owned()
    } else if scheme.eq_ignore_ascii_case("bearer") {
        rest.trim().to_owned()
    } else {
        return Err(ApiError::unauthorized(
            "unsupported authorization scheme: use Basic or Bearer",
        ));
    };
    if key.is_empty() {
        return Err(malformed());
    }
    Ok(ApiKey(key))
}

/// The authorised linked account of a request: the credentials are checked first (401),
/// then the `x-account-id` header must be present (400) and name a linked account of the
/// caller's project (404).
impl FromRequestParts<AppState> for AccountScope {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let key = api_key(&parts.headers)
            .inspect_err(|_| metrics::rejection(metrics::Rejection::Unauthorized))?;
        let account_id = parts
            .headers
            .get(ACCOUNT_HEADER)
            .ok_or_else(|| {
                ApiError::bad_request("missing required header x-account-id")
                    .with("parameter", ACCOUNT_HEADER)
            })?
            .to_str()
            .ok()
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| {
                ApiError::bad_request("x-account-id must be a non-empty linked account id")
                    .with("parameter", ACCOUNT_HEADER)
            })?
            .to_owned();
        state
            .authorizer()
            .authorize(&key, &account_id)
            .await
            .inspect_err(|e| match e.status {
                StatusCode::UNAUTHORIZED => metrics::rejection(metrics::Rejection::Unauthorized),
                StatusCode::NOT_FOUND => metrics::rejection(metrics::Rejection::AccountNotFound),
                _ => {}
            })
    }
}

/// Reads the path parameter `name` of the matched route.
async fn path_param<S: Send + Sync>(
    parts: &mut Parts,
    state: &S,
    name: &str,
) -> Result<String, ApiError> {
    let Path(params) = Path::<Vec<(String, String)>>::from_request_parts(parts, state)
        .await
        .map_err(|e| ApiError::bad_request(format!("bad path: {e}")))?;
    params
        .into_iter()
        .find(|(param, _)| param == name)
        .map(|(_, v)| v)
        .ok_or_else(|| ApiError::internal(format!("route has no {name} parameter")))
}

/// The `{id}` path parameter: the record an operation addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordId(pub String);

impl<S: Send + Sync> FromRequestParts<S> for RecordId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        path_param(parts, state, "id").await.map(RecordId)
    }
}

/// The `{item_id}` path parameter: a record on a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemId(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ItemId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        path_param(parts, state, "item_id").await.map(ItemId)
    }
}

/// The `{external_id}` path parameter: a contact's external id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalId(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ExternalId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        path_param(parts, state, "external_id")
            .await
            .map(ExternalId)
    }
}

/// A JSON request body checked against its model. Malformed JSON is 400; JSON that does not
/// fit the model is 422 naming the field; a body over the size limit is 413.
pub struct JsonBody<T>(pub Write<T>);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let is_json = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|mime| {
                let mime = mime.trim();
                mime.eq_ignore_ascii_case("application/json")
                    || (mime.starts_with("application/") && mime.ends_with("+json"))
            })
            .unwrap_or(false);
        if !is_json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "the request body must be JSON, sent with Content-Type: application/json",
            ));
        }
        let if_match = req
            .headers()
            .get(IF_MATCH)
            .map(|v| {
                v.to_str()
                    .map(str::to_owned)
                    .map_err(|_| ApiError::bad_request("If-Match must be an ASCII etag"))
            })
            .transpose()?;
        let idempotency_key = req
            .extensions()
            .get::<ClaimedKey>()
            .map(|claimed| claimed.0.clone());
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            let status = rejection.status();
            if status == StatusCode::PAYLOAD_TOO_LARGE {
                metrics::rejection(metrics::Rejection::BodyTooLarge);
                ApiError::new(status, "the request body is too large")
            } else {
                ApiError::bad_request(format!("could not read the request body: {rejection}"))
            }
        })?;
        let mut write = parse_body(&bytes)?;
        write.if_match = if_match;
        write.idempotency_key = idempotency_key;
        Ok(JsonBody(write))
    }
}

/// Parses and checks a JSON body; shared by the extractor and the tests.
pub fn parse_body<T: DeserializeOwned>(bytes: &[u8]) -> Result<Write<T>, ApiError> {
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request(format!("malformed JSON body: {e}")))?;
    if !value.is_object() {
        return Err(ApiError::unprocessable(
            "",
            "the request body must be a JSON object",
        ));
    }
    // Read from the value in place: the object is kept as sent, not copied.
    let body = serde_path_to_error::deserialize(&value).map_err(
        |e: serde_path_to_error::Error<serde_json::Error>| {
            let field = e.path().to_string();
            ApiError::unprocessable(&field, format!("{field}: {}", e.inner()))
        },
    )?;
    let Value::Object(sent) = value else {
        unreachable!("checked to be an object above")
    };
    Ok(Write {
        body,
        sent,
        if_match: None,
        idempotency_key: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::CrmCreateContactRequestDto;
    use axum::http::HeaderValue;

    fn headers(auth: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, HeaderValue::from_str(auth).unwrap());
        h
    }

    #[test]
    fn basic_and_bearer_carry_the_same_key() {
        let basic = format!("Basic {}", STANDARD.encode("crm_key:"));
        assert_eq!(api_key(&headers(&basic)).unwrap().0, "crm_key");
        assert_eq!(api_key(&headers("Bearer crm_key")).unwrap().0, "crm_key");
        assert_eq!(api_key(&headers("bearer  crm_key ")).unwrap().0, "crm_key");
    }

    #[test]
    fn missing_or_malformed_credentials_are_401() {
        assert_eq!(api_key(&HeaderMap::new()).unwrap_err().status, 401);
        for bad in ["Basic !!!", "Token abc", "Basic", "Bearer ", "Basic Og=="] {
            assert_eq!(api_key(&headers(bad)).unwrap_err().status, 401, "{bad}");
        }
    }

    #[test]
    fn bodies_report_the_failing_field() {
        let err = parse_body::<CrmCreateContactRequestDto>(b"{\"emails\": [1]}").unwrap_err();
        assert_eq!(err.status, 422);
        assert_eq!(err.data.unwrap()["field"], "emails[0]");
        let err = parse_body::<CrmCreateContactRequestDto>(b"{\"first_name\": ").unwrap_err();
        assert_eq!(err.status, 400);
        let err = parse_body::<CrmCreateContactRequestDto>(b"[1]").unwrap_err();
        assert_eq!(err.status, 422);
        let ok = parse_body::<CrmCreateContactRequestDto>(b"{\"first_name\": null}").unwrap();
        assert_eq!(ok.body.first_name, None);
        assert!(ok.sent.contains_key("first_name"));
    }
}
