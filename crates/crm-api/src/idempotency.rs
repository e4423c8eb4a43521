//! Idempotent POSTs: a request that carries `Idempotency-Key` is answered once; a retry
//! with the same key and the same request gets the first answer again and changes nothing.
//!
//! The key is claimed through the service before the handler runs and completed with the
//! response after it; a server error releases the key so that a retry runs again. The
//! handler's write sees the key (`ClaimedKey`, carried into `Write::idempotency_key`), so a
//! create links its record to the key in its own transaction: a retry after a crash between
//! the write and the recording of its answer finds that record instead of making another.

use std::convert::Infallible;
use std::future::Future;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes, to_bytes};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::future::{BoxFuture, Either};
use sha2::{Digest, Sha256};
use tower::{Layer, Service};

use crate::error::ApiError;
use crate::service::{AccountScope, AppState, IdempotencyClaim, StoredResponse};

/// The request header that carries the key.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// Marks an answer that repeats the first answer to a key.
pub const REPLAYED: &str = "idempotent-replayed";
/// The longest key accepted.
pub const MAX_KEY_LEN: usize = 255;

/// A request extension: the key this request holds the claim of, for the handler's write.
#[derive(Debug, Clone)]
pub struct ClaimedKey(pub String);

const KEPT_HEADERS: [&str; 3] = ["content-type", "etag", "preference-applied"];

/// Applies `Idempotency-Key` to POSTs that carry one (see the module's documentation).
/// A layer rather than a `from_fn` middleware: every other request goes to its route as it
/// is, without a boxed service and future of its own.
#[derive(Clone)]
pub struct IdempotencyLayer(pub AppState);

impl<S> Layer<S> for IdempotencyLayer {
    type Service = Idempotency<S>;

    fn layer(&self, inner: S) -> Idempotency<S> {
        Idempotency {
            state: self.0.clone(),
            inner,
        }
    }
}

/// The service of [`IdempotencyLayer`] around a route.
#[derive(Clone)]
pub struct Idempotency<S> {
    state: AppState,
    inner: S,
}

impl<S> Service<Request> for Idempotency<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<S::Future, BoxFuture<'static, Result<Response, Infallible>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        if request.method() != Method::POST || !request.headers().contains_key(IDEMPOTENCY_KEY) {
            return Either::Left(self.inner.call(request));
        }
        // The clone that was polled ready serves this request.
        let ready = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, ready);
        let state = self.state.clone();
        Either::Right(Box::pin(async move {
            let next = move |request| async move {
                match inner.call(request).await {
                    Ok(response) => response,
                    Err(never) => match never {},
                }
            };
            match idempotent(state, request, next).await {
                Ok(response) | Err(response) => Ok(response),
            }
        }))
    }
}

async fn idempotent<F, Fut>(
    state: AppState,
    request: Request,
    next: F,
) -> Result<Response, Response>
where
    F: FnOnce(Request) -> Fut,
    Fut: Future<Output = Response>,
{
    let key = request
        .headers()
        .get(IDEMPOTENCY_KEY)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|k| !k.is_empty() && k.len() <= MAX_KEY_LEN)
        .map(str::to_owned)
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "Idempotency-Key must be 1 to {MAX_KEY_LEN} visible ASCII characters"
            ))
            .with("parameter", "Idempotency-Key")
            .into_response()
        })?;
    let (mut parts, body) = request.into_parts();
    let scope = AccountScope::from_request_parts(&mut parts, &state)
        .await
        .map_err(IntoResponse::into_response)?;
    // Read the body under the same size limit the handler would apply.
    let mut probe = Request::new(body);
    *probe.extensions_mut() = parts.extensions.clone();
    let bytes = Bytes::from_request(probe, &()).await.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            crate::metrics::rejection(crate::metrics::Rejection::BodyTooLarge);
        }
        ApiError::new(rejection.status(), "the request body could not be read").into_response()
    })?;
    let fingerprint = fingerprint(&scope, &parts.method, parts.uri.path(), &bytes);
    let claim = state
        .idempotency()
        .claim_idempotency_key(&scope, &key, &fingerprint)
        .await
        .map_err(IntoResponse::into_response)?;
    if let IdempotencyClaim::Replay(stored) = claim {
        crate::metrics::idempotency_replay();
        return Ok(rebuild(stored, true));
    }
    parts.extensions.insert(ClaimedKey(key.clone()));
    let response = next(Request::from_parts(parts, Body::from(bytes))).await;
    if response.status().is_server_error() {
        if let Err(e) = state
            .idempotency()
            .release_idempotency_key(&scope, &key)
            .await
        {
            tracing::error!(error = %e, "could not release an idempotency key");
        }
        return Ok(response);
    }
    let (head, body) = response.into_parts();
    let body = to_bytes(body, usize::MAX).await.map_err(|e| {
        ApiError::internal(format!("could not buffer the response: {e}")).into_response()
    })?;
    let stored = StoredResponse {
        status: head.status.as_u16(),
        headers: KEPT_HEADERS
            .iter()
            .filter_map(|name| {
                let value = head.headers.get(*name)?.to_str().ok()?;
                Some(((*name).to_owned(), value.to_owned()))
            })
            .collect(),
        body: body.to_vec(),
    };
    state
        .idempotency()
        .complete_idempotency_key(&scope, &key, &stored)
        .await
        .map_err(IntoResponse::into_response)?;
    Ok(Response::from_parts(head, Body::from(body)))
}

/// What makes two requests "the same": the linked account, the method, the path and the body.
fn fingerprint(scope: &AccountScope, method: &Method, path: &str, body: &[u8]) -> String {
    let mut hash = Sha256::new();
    for part in [
        scope.account_id.as_bytes(),
        method.as_str().as_bytes(),
        path.as_bytes(),
    ] {
        hash.update((part.len() as u64).to_be_bytes());
        hash.update(part);
    }
    hash.update(body);
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

fn rebuild(stored: StoredResponse, replayed: bool) -> Response {
    let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
    let mut response = (status, stored.body).into_response();
    for (name, value) in stored.headers {
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(name), HeaderValue::try_from(value)) {
            response.headers_mut().insert(name, value);
        }
    }
    if replayed {
        response
            .headers_mut()
            .insert(REPLAYED, HeaderValue::from_static("true"));
    }
    response
}
