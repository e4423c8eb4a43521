//! The one error type of the HTTP edge: every failure becomes the contract's error body.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde_json::Value;

use crate::models::{ErrorResponse, JsonObject, ProviderError};

/// A failure answered to the caller with a status and the contract's error body.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{status}: {message}")]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub data: Option<JsonObject>,
    /// What rarer failures carry besides (boxed: most errors have none).
    pub details: Option<Box<Details>>,
}

/// What an error may carry besides its status, message and data.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Details {
    /// What the linked account's provider answered, when the failure is its.
    pub provider_errors: Vec<ProviderError>,
    /// Seconds to wait before retrying: the `Retry-After` header of a 429.
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            data: None,
            details: None,
        }
    }

    /// Adds what the provider answered.
    pub fn with_provider_error(mut self, error: ProviderError) -> Self {
        self.details
            .get_or_insert_with(Box::default)
            .provider_errors
            .push(error);
        self
    }

    /// Asks the caller to wait `seconds` before retrying (`Retry-After`).
    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.details.get_or_insert_with(Box::default).retry_after = Some(seconds);
        self
    }

    /// What the provider answered, if the failure is its.
    pub fn provider_errors(&self) -> &[ProviderError] {
        self.details
            .as_ref()
            .map(|d| d.provider_errors.as_slice())
            .unwrap_or_default()
    }

    /// Adds one detail to the body's `data` object.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.data
            .get_or_insert_with(JsonObject::new)
            .insert(key.to_owned(), value.into());
        self
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, message)
    }

    pub fn precondition_failed(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PRECONDITION_FAILED, message)
    }

    /// A body that is well-formed but whose values are not acceptable; `field` names the culprit.
    pub fn unprocessable(field: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, message).with("field", field)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    /// The body the caller receives.
    pub fn body(&self) -> ErrorResponse {
        ErrorResponse {
            status_code: i32::from(self.status.as_u16()),
            message: self.message.clone(),
            timestamp: Utc::now(),
            data: self.data.clone(),
            provider_errors: self
                .details
                .as_ref()
                .filter(|d| !d.provider_errors.is_empty())
                .map(|d| d.provider_errors.clone()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(status = %self.status, message = %self.message, "request failed");
        }
        let body = serde_json::to_vec(&self.body()).unwrap_or_else(|_| b"{}".to_vec());
        let mut response = (self.status, body).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(seconds) = self.details.as_ref().and_then(|d| d.retry_after) {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"crm\", Bearer"),
            );
        }
        response
    }
}
