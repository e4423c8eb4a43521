//! Calling a provider well: one place for what every connector call needs.
//!
//! - **Credentials**: an OAuth access token is renewed before it expires, and once more
//!   when the provider answers 401; a renewal happens once per account however many
//!   requests need it (see [`Vault::refresh`]).
//! - **Concurrency**: at most [`Limits::per_account`] calls per linked account are in
//!   flight from this replica; the next one waits for a slot. One busy tenant cannot use up
//!   a portal's rate budget for the others.
//! - **Retries**: a 429 means the provider did nothing, so reads and writes alike wait and
//!   try again (honouring `Retry-After` and the rate-limit headers, else backoff with
//!   jitter); a 5xx or a broken connection is retried for reads only. Every wait fits in
//!   [`Limits::budget`], which leaves the server's own request timeout room to answer.
//! - **Failures** become the contract's error shape with `provider_errors`; a timeout is
//!   504, an unreachable provider 502, a provider 5xx 502, a 429 past the budget 429 with
//!   `Retry-After`.
//! - **Exchanges** are kept for `raw=true`, with every secret of the account redacted.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use chrono::Utc;
use crm_api::ApiError;
use crm_api::metrics::Retry;
use crm_api::models::{JsonObject, ProviderError, RawResponse};
use progenitor_client::{Error as ClientError, ResponseValue};
use rand::Rng;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde::Serialize;
use serde_json::Value;
use tokio::sync::Semaphore;

use super::accounts::{NEEDS_REAUTH, RemoteAccount, Vault, VaultError};
use super::credentials::{Credentials, OAuthTokens};

/// How hard a connector tries, and how much it may spend.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Calls in flight per linked account from this replica.
    pub per_account: usize,
    /// One provider call, connection included.
    pub call_timeout: Duration,
    /// Everything one operation may spend on its provider calls, waits included.
    pub budget: Duration,
    /// Attempts of one call (the first included).
    pub max_attempts: u32,
}

impl Limits {
    /// The default concurrency per account (4), overridable with `--provider-concurrency`.
    pub const DEFAULT_PER_ACCOUNT: usize = 4;

    /// Limits that fit inside a server request timeout of `request_timeout` (none: 30 s):
    /// the provider work gets 70% of it, so there is room to answer.
    pub fn within(request_timeout: Option<Duration>, per_account: usize) -> Limits {
        let timeout = request_timeout.unwrap_or(Duration::from_secs(30));
        let budget = timeout.mul_f64(0.7);
        Limits {
            per_account: per_account.max(1),
            call_timeout: budget.min(Duration::from_secs(10)),
            budget,
            max_attempts: 5,
        }
    }
}

/// How a connector reaches and authenticates to its provider.
pub trait Provider: Send + Sync + 'static {
    /// The provider's name, as linked accounts name it (`hubspot`).
    const NAME: &'static str;
    /// The generated client.
    type Client: Clone + Send + Sync + 'static;
    /// Where the account's API is.
    fn api_base(account: &RemoteAccount) -> String;
    /// The generated client for one call: `auth` is the header that authenticates it (added
    /// by the client's hook, marked sensitive), `query` the caller's `proxy[...]` parameters.
    fn client(
        base: &str,
        http: reqwest::Client,
        auth: (HeaderName, HeaderValue),
        query: Vec<(String, String)>,
    ) -> Self::Client;
    /// The header that authenticates a call.
    fn auth_header(credentials: &Credentials) -> (HeaderName, String);
    /// The OAuth token endpoint of the account.
    fn token_url(account: &RemoteAccount) -> String;
    /// The token request: the form fields and whether the client goes in Basic auth.
    fn token_form(tokens: &OAuthTokens) -> (Vec<(&'static str, String)>, bool);
    /// The rate-limit headers worth reporting.
    fn reported_headers() -> &'static [&'static str];
    /// When a 429 without `Retry-After` may be retried: the wait the headers imply.
    fn rate_limit_wait(headers: &HeaderMap) -> Option<Duration>;
}

/// A provider's connector state shared by every request: the HTTP client, the vault, the
/// per-account concurrency gates and the authenticated clients.
pub struct Connection<P: Provider> {
    http: reqwest::Client,
    vault: Vault,
    limits: Limits,
    gates: Mutex<HashMap<String, Arc<Semaphore>>>,
    _provider: std::marker::PhantomData<P>,
}

/// One operation's work with its provider: the account, the budget, the exchanges made.
pub struct Session<'a, P: Provider> {
    connection: &'a Connection<P>,
    pub account: RemoteAccount,
    started: Instant,
    pub raw: Vec<RawResponse>,
    refreshed: bool,
    /// The caller's `proxy[...]` parameters, added to every call's query.
    proxy: Vec<(String, String)>,
}

/// What a call is, for `raw`, for errors, for metrics, and for whether it may be retried
/// after a 5xx.
pub struct Call {
    /// The provider operation, a metric label (`contacts.list`).
    pub operation: &'static str,
    pub method: &'static str,
    /// The provider path with its query, as sent (no credentials are ever in it).
    pub path: String,
    pub body: Option<Value>,
    /// Reads may be retried after a 5xx or a broken connection; writes may not.
    pub read: bool,
}

impl Call {
    /// A call that changes nothing at the provider (searches are POSTs that only read).
    pub fn read(operation: &'static str, method: &'static str, path: impl Into<String>) -> Call {
        Call {
            operation,
            method,
            path: path.into(),
            body: None,
            read: true,
        }
    }

    /// A call that changes the provider's records.
    pub fn write(operation: &'static str, method: &'static str, path: impl Into<String>) -> Call {
        Call {
            read: false,
            ..Call::read(operation, method, path)
        }
    }

    /// The request body, as sent.
    pub fn body(mut self, body: &impl Serialize) -> Call {
        self.body = serde_json::to_value(body).ok();
        self
    }
}

/// What went wrong in one attempt.
enum Attempt {
    Status {
        status: u16,
        headers: HeaderMap,
        body: Value,
    },
    Timeout,
    Unreachable(String),
    Unreadable(String),
}

impl<P: Provider> Connection<P> {
    pub fn new(vault: Vault, limits: Limits) -> Connection<P> {
        crate::db::install_tls_provider();
        let http = reqwest::Client::builder()
            .timeout(limits.call_timeout)
            .connect_timeout(limits.call_timeout.min(Duration::from_secs(5)))
            .build()
            .expect("the HTTP client builds");
        Connection {
            http,
            vault,
            limits,
            gates: Mutex::default(),
            _provider: std::marker::PhantomData,
        }
    }

    pub fn vault(&self) -> &Vault {
        &self.vault
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Starts an operation on linked account `account_id`.
    pub async fn session(&self, account_id: &str) -> Result<Session<'_, P>, ApiError> {
        let account = self.vault.load(account_id).await.map_err(vault_failure)?;
        if account.status == NEEDS_REAUTH {
            return Err(needs_reauth(&account.id, P::NAME));
        }
        Ok(Session {
            connection: self,
            account,
            started: Instant::now(),
            raw: Vec::new(),
            refreshed: false,
            proxy: Vec::new(),
        })
    }

    fn gate(&self, account_id: &str) -> Arc<Semaphore> {
        self.gates
            .lock()
            .expect("not poisoned")
            .entry(account_id.to_owned())
            .or_insert_with(|| Arc::new(Semaphore::new(self.limits.per_account)))
            .clone()
    }
}

impl<P: Provider> Session<'_, P> {
    /// Passes the caller's `proxy[...]` parameters to every call of this session.
    pub fn with_proxy(mut self, proxy: &JsonObject) -> Self {
        self.proxy = proxy
            .iter()
            .map(|(k, v)| {
                let text = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (k.clone(), text)
            })
            .collect();
        self
    }

    fn client(&self) -> Result<P::Client, ApiError> {
        let (name, value) = P::auth_header(&self.account.credentials);
        let mut value = HeaderValue::from_str(&value)
            .map_err(|_| ApiError::internal("the account's credentials are not a valid header"))?;
        value.set_sensitive(true);
        Ok(P::client(
            &P::api_base(&self.account),
            self.connection.http.clone(),
            (name, value),
            self.proxy.clone(),
        ))
    }

    fn remaining(&self) -> Duration {
        self.connection
            .limits
            .budget
            .saturating_sub(self.started.elapsed())
    }

    fn url(&self, path: &str) -> String {
        let mut url = format!("{}{}", P::api_base(&self.account), path);
        for (k, v) in &self.proxy {
            url.push(if url.contains('?') { '&' } else { '?' });
            url.push_str(&form_urlencoded::byte_serialize(k.as_bytes()).collect::<String>());
            url.push('=');
            url.push_str(&form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>());
        }
        url
    }

    /// Makes `call` through the generated client (`send` makes the request), with renewal,
    /// the concurrency gate, retries and the error shape. The answer is kept for `raw`.
    pub async fn call<T, E, F, Fut>(&mut self, call: Call, send: F) -> Result<T, ApiError>
    where
        T: Serialize,
        E: Serialize,
        F: Fn(P::Client) -> Fut,
        Fut: Future<Output = Result<ResponseValue<T>, ClientError<E>>>,
    {
        let url = self.url(&call.path);
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            self.renew_if_expiring().await?;
            let client = self.client()?;
            let gate = self.connection.gate(&self.account.id);
            let permit = tokio::time::timeout(self.remaining(), gate.acquire_owned())
                .await
                .map_err(|_| {
                    timed_out(P::NAME, &url, "waiting for a free slot toward the provider")
                })?
                .expect("the gate is never closed");
            let sent = Instant::now();
            let outcome =
                tokio::time::timeout(self.connection.limits.call_timeout, send(client)).await;
            drop(permit);
            let answered = match &outcome {
                Ok(Ok(value)) => Some(value.status().as_u16()),
                Ok(Err(e)) => e.status().map(|s| s.as_u16()),
                Err(_) => None,
            };
            crm_api::metrics::provider_call(P::NAME, call.operation, answered, sent.elapsed());
            let failure = match outcome {
                Err(_) => Attempt::Timeout,
                Ok(Ok(value)) => {
                    let response = value.into_inner();
                    self.keep(&call, &url, serde_json::to_value(&response).ok());
                    return Ok(response);
                }
                Ok(Err(e)) => attempt_failure(e).await,
            };
            if let Attempt::Status { status, body, .. } = &failure {
                self.keep(&call, &url, Some(body.clone()));
                if *status == 401
                    && !self.refreshed
                    && matches!(self.account.credentials, Credentials::OAuth(_))
                {
                    crm_api::metrics::provider_retry(P::NAME, Retry::Unauthorized);
                    self.renew().await?;
                    continue;
                }
            }
            let wait = self.retry_wait(&call, &failure, attempt);
            match wait {
                Some(wait)
                    if attempt < self.connection.limits.max_attempts && wait < self.remaining() =>
                {
                    crm_api::metrics::provider_retry(
                        P::NAME,
                        match &failure {
                            Attempt::Status { status: 429, .. } => Retry::RateLimited,
                            Attempt::Status { .. } => Retry::ServerError,
                            _ => Retry::Network,
                        },
                    );
                    tracing::debug!(
                        provider = P::NAME,
                        attempt,
                        wait_ms = wait.as_millis() as u64,
                        "retrying a provider call"
                    );
                    tokio::time::sleep(wait).await;
                }
                _ => return Err(self.failure(&url, failure)),
            }
        }
    }

    /// How long to wait before the next attempt, if the failure may be retried at all.
    fn retry_wait(&self, call: &Call, failure: &Attempt, attempt: u32) -> Option<Duration> {
        let backoff = || {
            let base = Duration::from_millis(200) * 2u32.pow(attempt.saturating_sub(1).min(5));
            let jitter = rand::rng().random_range(0.5..1.0);
            base.mul_f64(jitter).min(Duration::from_secs(5))
        };
        match failure {
            Attempt::Status {
                status: 429,
                headers,
                ..
            } => Some(
                retry_after(headers)
                    .map(Duration::from_secs)
                    .or_else(|| P::rate_limit_wait(headers))
                    .unwrap_or_else(backoff),
            ),
            Attempt::Status { status, .. } if *status >= 500 && call.read => Some(backoff()),
            Attempt::Unreachable(_) | Attempt::Unreadable(_) if call.read => Some(backoff()),
            _ => None,
        }
    }

    fn keep(&mut self, call: &Call, url: &str, response: Option<Value>) {
        let secrets = self.account.credentials.secrets();
        self.raw.push(RawResponse {
            method: call.method.to_owned(),
            url: redact_str(url, &secrets),
            body: call.body.clone().map(|b| redact(b, &secrets)),
            response: response.map(|r| redact(r, &secrets)),
        });
    }

    /// The error the caller gets for a failed call.
    fn failure(&self, url: &str, failure: Attempt) -> ApiError {
        let secrets = self.account.credentials.secrets();
        let url = redact_str(url, &secrets);
        match failure {
            Attempt::Timeout => timed_out(P::NAME, &url, "waiting for its answer"),
            Attempt::Unreachable(why) => ApiError::new(
                StatusCode::BAD_GATEWAY,
                format!("{} could not be reached: {why}", P::NAME),
            )
            .with_provider_error(ProviderError {
                status: None,
                url: Some(url),
                raw: None,
                headers: None,
            }),
            Attempt::Unreadable(why) => ApiError::new(
                StatusCode::BAD_GATEWAY,
                format!("{}'s answer could not be read: {why}", P::NAME),
            )
            .with_provider_error(ProviderError {
                status: None,
                url: Some(url),
                raw: None,
                headers: None,
            }),
            Attempt::Status {
                status,
                headers,
                body,
            } => {
                let body = redact(body, &secrets);
                let message = provider_message(&body)
                    .map(|m| format!("{}: {m}", P::NAME))
                    .unwrap_or_else(|| format!("{} answered {status}", P::NAME));
                let ours = match status {
                    400 | 422 => StatusCode::UNPROCESSABLE_ENTITY,
                    401 => StatusCode::UNAUTHORIZED,
                    403 => StatusCode::FORBIDDEN,
                    404 => StatusCode::NOT_FOUND,
                    409 => StatusCode::CONFLICT,
                    429 => StatusCode::TOO_MANY_REQUESTS,
                    _ => StatusCode::BAD_GATEWAY,
                };
                let message = match status {
                    401 => format!(
                        "{} refused the credentials of linked account {} ({message})",
                        P::NAME,
                        self.account.id
                    ),
                    _ => message,
                };
                let mut error = ApiError::new(ours, message).with_provider_error(ProviderError {
                    status: Some(i32::from(status)),
                    url: Some(url),
                    raw: Some(match body {
                        Value::Object(map) => map,
                        other => JsonObject::from_iter([("body".to_owned(), other)]),
                    }),
                    headers: Some(reported(&headers, P::reported_headers())),
                });
                if status == 429 {
                    let wait = retry_after(&headers)
                        .or_else(|| P::rate_limit_wait(&headers).map(|d| d.as_secs().max(1)))
                        .unwrap_or(1);
                    error = error.with_retry_after(wait);
                }
                if status == 401 {
                    error = error.with("account", self.account.id.clone());
                }
                error
            }
        }
    }

    async fn renew_if_expiring(&mut self) -> Result<(), ApiError> {
        if let Credentials::OAuth(tokens) = &self.account.credentials
            && tokens.expires_at <= Utc::now() + chrono::Duration::seconds(60)
        {
            return self.renew().await;
        }
        Ok(())
    }

    /// Renews the account's OAuth tokens (once across requests and replicas).
    async fn renew(&mut self) -> Result<(), ApiError> {
        self.refreshed = true;
        let connection = self.connection;
        let account = self.account.clone();
        let deadline = self.started + connection.limits.budget;
        let outcome = connection
            .vault
            .refresh(
                &self.account.id,
                self.account.version,
                |tokens| async move {
                    renew_tokens::<P>(connection.http(), &account, tokens, deadline).await
                },
            )
            .await
            .map_err(vault_failure)?;
        match outcome {
            Ok(renewed) => {
                self.account = renewed;
                Ok(())
            }
            Err(Renewal::Refused(status)) => {
                connection
                    .vault
                    .mark_needs_reauth(&self.account.id)
                    .await
                    .map_err(vault_failure)?;
                Err(
                    needs_reauth(&self.account.id, P::NAME).with_provider_error(ProviderError {
                        status: Some(i32::from(status)),
                        url: Some(P::token_url(&self.account)),
                        raw: None,
                        headers: None,
                    }),
                )
            }
            Err(Renewal::Failed(error)) => Err(error),
        }
    }
}

/// Why a renewal did not give new tokens.
enum Renewal {
    /// The provider refused the refresh token or the client: nobody can fix that but an
    /// operator with new credentials.
    Refused(u16),
    /// Anything else (a 429 past the budget, the provider down): try again later.
    Failed(ApiError),
}

/// Asks the provider for new tokens, retrying 429s and 5xx with backoff until `deadline`.
async fn renew_tokens<P: Provider>(
    http: &reqwest::Client,
    account: &RemoteAccount,
    tokens: OAuthTokens,
    deadline: Instant,
) -> Result<OAuthTokens, Renewal> {
    let url = P::token_url(account);
    let (form, basic) = P::token_form(&tokens);
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let mut request = http
            .post(&url)
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(
                form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(form.iter().map(|(k, v)| (*k, v.as_str())))
                    .finish(),
            );
        if basic {
            use base64::Engine;
            let pair = format!("{}:{}", tokens.client_id, tokens.client_secret);
            let mut value = HeaderValue::from_str(&format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(pair)
            ))
            .map_err(|_| Renewal::Refused(400))?;
            value.set_sensitive(true);
            request = request.header(reqwest::header::AUTHORIZATION, value);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let answer = tokio::time::timeout(left, request.send()).await;
        let (status, headers, body) = match answer {
            Err(_) => {
                return Err(Renewal::Failed(timed_out(
                    P::NAME,
                    &url,
                    "renewing the account's OAuth token",
                )));
            }
            Ok(Err(e)) => {
                let why = if e.is_timeout() {
                    "timed out"
                } else {
                    "unreachable"
                };
                if attempt < 4 && Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
                    continue;
                }
                return Err(Renewal::Failed(ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    format!("{}'s token endpoint is {why}", P::NAME),
                )));
            }
            Ok(Ok(response)) => {
                let status = response.status().as_u16();
                let headers = response.headers().clone();
                let body = response.bytes().await.unwrap_or_default();
                (status, headers, body)
            }
        };
        crm_api::metrics::token_refresh(P::NAME, status == 200);
        if status == 200 {
            let answer: TokenAnswer = serde_json::from_slice(&body).map_err(|_| {
                Renewal::Failed(ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    format!("{}'s token endpoint answered something unreadable", P::NAME),
                ))
            })?;
            return Ok(OAuthTokens {
                access_token: answer.access_token,
                refresh_token: answer.refresh_token.unwrap_or(tokens.refresh_token),
                expires_at: Utc::now() + chrono::Duration::seconds(answer.expires_in.max(0)),
                client_id: tokens.client_id,
                client_secret: tokens.client_secret,
                api_domain: answer.api_domain.or(tokens.api_domain),
            });
        }
        let retryable = status == 429 || status >= 500;
        if retryable && attempt < 6 {
            let wait = retry_after(&headers)
                .map(Duration::from_secs)
                .or_else(|| P::rate_limit_wait(&headers))
                .unwrap_or_else(|| Duration::from_millis(250) * 2u32.pow(attempt - 1))
                .mul_f64(rand::rng().random_range(1.0..1.25));
            if Instant::now() + wait < deadline {
                tracing::info!(
                    provider = P::NAME,
                    attempt,
                    status,
                    "token renewal deferred; retrying"
                );
                tokio::time::sleep(wait).await;
                continue;
            }
        }
        if retryable {
            let mut error = ApiError::new(
                if status == 429 {
                    StatusCode::TOO_MANY_REQUESTS
                } else {
                    StatusCode::BAD_GATEWAY
                },
                format!(
                    "{} did not renew the account's OAuth token (it answered {status}); retry later",
                    P::NAME
                ),
            );
            if status == 429 {
                error = error.with_retry_after(retry_after(&headers).unwrap_or(1));
            }
            return Err(Renewal::Failed(error));
        }
        return Err(Renewal::Refused(status));
    }
}

#[derive(serde::Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    expires_in: i64,
    #[serde(default)]
    api_domain: Option<String>,
}

async fn attempt_failure<E: Serialize>(error: ClientError<E>) -> Attempt {
    match error {
        ClientError::ErrorResponse(value) => {
            let status = value.status().as_u16();
            let headers = value.headers().clone();
            let body = serde_json::to_value(value.into_inner()).unwrap_or(Value::Null);
            Attempt::Status {
                status,
                headers,
                body,
            }
        }
        ClientError::UnexpectedResponse(response) => {
            let status = response.status().as_u16();
            let headers = response.headers().clone();
            let bytes = response.bytes().await.unwrap_or_default();
            let body = serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
            Attempt::Status {
                status,
                headers,
                body,
            }
        }
        ClientError::CommunicationError(e) | ClientError::ResponseBodyError(e)
            if e.is_timeout() =>
        {
            Attempt::Timeout
        }
        ClientError::CommunicationError(e) => Attempt::Unreachable(if e.is_connect() {
            "the connection was refused or could not be made".to_owned()
        } else {
            "the connection failed".to_owned()
        }),
        ClientError::ResponseBodyError(_) => {
            Attempt::Unreadable("the answer was cut off".to_owned())
        }
        ClientError::InvalidResponsePayload(_, e) => {
            Attempt::Unreadable(format!("unexpected JSON ({e})"))
        }
        ClientError::InvalidRequest(why) | ClientError::Custom(why) => {
            Attempt::Unreadable(format!("the request could not be made: {why}"))
        }
        ClientError::InvalidUpgrade(_) => Attempt::Unreadable("an unexpected upgrade".to_owned()),
    }
}

fn timed_out(provider: &str, url: &str, while_: &str) -> ApiError {
    ApiError::new(
        StatusCode::GATEWAY_TIMEOUT,
        format!("{provider} took too long ({while_})"),
    )
    .with_provider_error(ProviderError {
        status: None,
        url: Some(url.to_owned()),
        raw: None,
        headers: None,
    })
}

fn needs_reauth(account_id: &str, provider: &str) -> ApiError {
    ApiError::unauthorized(format!(
        "linked account {account_id} needs new credentials: {provider} refused to renew its token (admin update-credentials)"
    ))
    .with("account", account_id)
}

fn vault_failure(error: VaultError) -> ApiError {
    match error {
        VaultError::Database(e) => crate::tenancy::internal(e),
        VaultError::Write(e) => crate::tenancy::internal(e),
        other => {
            tracing::error!(error = %other, "linked account credentials");
            ApiError::internal(other.to_string())
        }
    }
}

/// `Retry-After` in seconds (the delta form; a date is read as "soon").
pub fn retry_after(headers: &HeaderMap) -> Option<u64> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse::<u64>().ok().or(Some(1))
}

fn reported(headers: &HeaderMap, names: &[&str]) -> JsonObject {
    let mut out = JsonObject::new();
    for (name, value) in headers {
        let name = name.as_str();
        if names.iter().any(|n| name.eq_ignore_ascii_case(n))
            && let Ok(value) = value.to_str()
        {
            out.insert(name.to_owned(), Value::String(value.to_owned()));
        }
    }
    out
}

/// The provider's own message in its error body (`message` on HubSpot, `error` on
/// Pipedrive), with its details.
fn provider_message(body: &Value) -> Option<String> {
    let object = body.as_object()?;
    let main = object
        .get("message")
        .or_else(|| object.get("error"))
        .and_then(Value::as_str)?;
    let details: Vec<&str> = object
        .get("errors")
        .and_then(Value::as_array)
        .map(|errors| {
            errors
                .iter()
                .filter_map(|e| e.get("message").and_then(Value::as_str))
                .filter(|m| *m != main)
                .collect()
        })
        .unwrap_or_default();
    Some(if details.is_empty() {
        main.to_owned()
    } else {
        format!("{main} ({})", details.join("; "))
    })
}

/// `value` with every occurrence of a secret replaced.
pub fn redact(value: Value, secrets: &[&str]) -> Value {
    match value {
        Value::String(s) => Value::String(redact_str(&s, secrets)),
        Value::Array(items) => {
            Value::Array(items.into_iter().map(|v| redact(v, secrets)).collect())
        }
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (redact_str(&k, secrets), redact(v, secrets)))
                .collect(),
        ),
        other => other,
    }
}

fn redact_str(text: &str, secrets: &[&str]) -> String {
    let mut out = text.to_owned();
    for secret in secrets.iter().filter(|s| s.len() >= 4) {
        if out.contains(secret) {
            out = out.replace(secret, "<redacted>");
        }
    }
    out
}
