//! Stateful test doubles of HubSpot's and Pipedrive's APIs.
//!
//! Each double is a small HTTP/1 server on a loopback port that keeps its data in memory
//! and answers the paths, bodies, errors, headers and limits of the agreed wire format
//! (the vendors' public documentation in our own words). Tests point a connector at
//! [`HubSpotDouble::base_url`] or [`PipedriveDouble::base_url`] and then inspect the
//! double's state and the calls it received.
//!
//! A double serves until [`HubSpotDouble::shutdown`] / [`PipedriveDouble::shutdown`] is
//! called or its last handle is dropped. It must be started inside a Tokio runtime.

mod hubspot;
mod pipedrive;
mod server;
mod util;

use std::time::Duration;

pub use hubspot::{HUBSPOT_VERSION, HubSpotDouble};
pub use pipedrive::PipedriveDouble;

/// An answer a double gives instead of the normal one, set with `fail_next` or
/// `fail_next_matching`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// 429 in the vendor's rate-limit shape; `Retry-After: <n>` when `retry_after` is set.
    Status429 { retry_after: Option<u64> },
    /// This status with a body in the vendor's error shape.
    Status(u16),
    /// Handle the request as usual, then hold the answer this long before sending it.
    Timeout(Duration),
    /// Close the connection without answering (the request is not handled).
    Disconnect,
}

/// One request a double received. Credentials are never kept: the `Authorization` and
/// `x-api-token` headers are not recorded, and a legacy `api_token` query parameter and the
/// secrets in an OAuth token request body (`client_secret`, `refresh_token`, `code`) are
/// replaced by `REDACTED`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedCall {
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The raw query string without `?`; empty when there was none.
    pub query: String,
    /// The request body as text (lossy UTF-8); empty when there was none.
    pub body: String,
    /// The status answered; 0 when the connection was closed without an answer.
    pub status: u16,
}

/// Tokens issued by a double's `issue_oauth`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OAuthGrant {
    pub access_token: String,
    pub refresh_token: String,
    pub expires_at: chrono::DateTime<chrono::Utc>,
    /// Pipedrive only: the `api_domain` to call with this token (the double's base URL).
    pub api_domain: Option<String>,
}
