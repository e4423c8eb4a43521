//! The metrics the API reports, through the `metrics` facade: whoever runs the API installs a
//! recorder (the server exports them as Prometheus text at `/metrics`); without one, reporting
//! costs next to nothing.
//!
//! Every label value is bounded by construction: names of routes, providers and operations are
//! `&'static str` chosen by the code, statuses are numbers, methods outside the standard ones
//! are counted as `other`. No label ever carries an id (of a record, key, project or account).
//!
//! Connectors report their calls with [`provider_call`], [`provider_retry`] and
//! [`token_refresh`]; the HTTP edge reports requests and rejections.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::http::Method;

mod tally;
pub use tally::{DURATION_BUCKETS, render as render_requests};

/// Requests answered, by route template, method and status.
pub const REQUESTS: &str = "crm_http_requests_total";
/// Seconds from a request's first byte to its answer, by route template and method.
pub const REQUEST_DURATION: &str = "crm_http_request_duration_seconds";
/// Requests refused before they reached the CRM, by reason.
pub const REJECTIONS: &str = "crm_http_rejections_total";
/// Answers repeated from an earlier request with the same `Idempotency-Key`.
pub const IDEMPOTENCY_REPLAYS: &str = "crm_idempotency_replays_total";
/// Calls to a provider's API, by provider, operation and status (0: no answer).
pub const PROVIDER_CALLS: &str = "crm_provider_calls_total";
/// Seconds a provider took to answer, by provider and operation.
pub const PROVIDER_CALL_DURATION: &str = "crm_provider_call_duration_seconds";
/// Provider calls retried, by provider and reason.
pub const PROVIDER_RETRIES: &str = "crm_provider_retries_total";
/// Provider answers of 429 (rate limited), by provider.
pub const PROVIDER_RATE_LIMITED: &str = "crm_provider_rate_limited_total";
/// OAuth token refreshes, by provider and outcome.
pub const TOKEN_REFRESHES: &str = "crm_provider_token_refreshes_total";

/// Why the edge refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// 401: no API key, a malformed one, an unknown or revoked one.
    Unauthorized,
    /// 404: the `x-account-id` names no linked account of the key's project.
    AccountNotFound,
    /// 408: the request took longer than the request timeout.
    Timeout,
    /// 413: the body is larger than the limit.
    BodyTooLarge,
    /// 429: the key's rate limit is spent.
    RateLimited,
    /// 431: the request head is too large or has too many fields.
    HeadersTooLarge,
}

impl Rejection {
    /// Every reason, for readers of the metrics and for tests.
    pub const ALL: [Rejection; 6] = [
        Rejection::Unauthorized,
        Rejection::AccountNotFound,
        Rejection::Timeout,
        Rejection::BodyTooLarge,
        Rejection::RateLimited,
        Rejection::HeadersTooLarge,
    ];

    /// The value of the `reason` label.
    pub fn label(self) -> &'static str {
        match self {
            Rejection::Unauthorized => "unauthorized",
            Rejection::AccountNotFound => "account_not_found",
            Rejection::Timeout => "timeout",
            Rejection::BodyTooLarge => "body_too_large",
            Rejection::RateLimited => "rate_limited",
            Rejection::HeadersTooLarge => "headers_too_large",
        }
    }
}

/// The value of a `method` label: the standard methods by name, anything else as `other`.
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::CONNECT => "CONNECT",
        _ => "other",
    }
}

/// Counts one answered request and its latency. `route` is the route template
/// (`/unified/crm/contacts/{id}`), never the path itself.
///
/// Once [`tally_requests`] has been called, the process counts them itself.
pub fn request(route: &str, method: &Method, status: u16, elapsed: Duration) {
    let method = method_label(method);
    if TALLY.load(Ordering::Relaxed) {
        tally::add(route, method, status, elapsed);
        return;
    }
    if !KEEP_HANDLES.load(Ordering::Relaxed) {
        let (counter, histogram) = request_handles(route, method, status);
        counter.increment(1);
        histogram.record(elapsed.as_secs_f64());
        return;
    }
    // Registering a labelled metric builds and hashes its key and takes the recorder's
    // locks; each thread keeps the handles of the (route, method, status) it has seen.
    REQUEST_HANDLES.with(|kept| {
        let mut kept = kept.borrow_mut();
        let for_route = match kept.get_mut(route) {
            Some(for_route) => for_route,
            None => kept.entry(route.into()).or_default(),
        };
        let at = match for_route
            .iter()
            .position(|h| h.method == method && h.status == status)
        {
            Some(at) => at,
            None => {
                let (counter, histogram) = request_handles(route, method, status);
                for_route.push(RequestHandles {
                    method,
                    status,
                    counter,
                    histogram,
                });
                for_route.len() - 1
            }
        };
        let handles = &for_route[at];
        handles.counter.increment(1);
        handles.histogram.record(elapsed.as_secs_f64());
    });
}

fn request_handles(
    route: &str,
    method: &'static str,
    status: u16,
) -> (metrics::Counter, metrics::Histogram) {
    (
        metrics::counter!(REQUESTS, "route" => route.to_owned(), "method" => method, "status" => status.to_string()),
        metrics::histogram!(REQUEST_DURATION, "route" => route.to_owned(), "method" => method),
    )
}

/// Whether [`request`] counts in the process's own tallies (see [`tally_requests`]).
static TALLY: AtomicBool = AtomicBool::new(false);

/// From now on [`request`] counts requests ([`REQUESTS`]) and their latencies
/// ([`REQUEST_DURATION`], in [`DURATION_BUCKETS`]) itself, each thread in a tally of its
/// own, instead of reporting them to the recorder; [`render_requests`] writes them out, so
/// whoever calls this renders them beside the recorder's. The recorder's histogram stores
/// each sample with a clock read until it is folded into buckets, and its counter is one
/// memory location every thread writes: on a request that does little else (`/healthz`)
/// they were a few percent of its cost.
pub fn tally_requests() {
    TALLY.store(true, Ordering::Relaxed);
}

/// Whether [`request`] keeps the handles it registers (see [`keep_request_handles`]).
static KEEP_HANDLES: AtomicBool = AtomicBool::new(false);

/// Lets [`request`] keep, per thread, the handles it registers. Call it once the process's
/// recorder is installed and will stay: handles taken earlier report to no recorder, and a
/// recorder set later would not see what kept handles report. The labels are bounded (route
/// templates, standard methods, statuses), so what is kept is too.
pub fn keep_request_handles() {
    KEEP_HANDLES.store(true, Ordering::Relaxed);
}

struct RequestHandles {
    method: &'static str,
    status: u16,
    counter: metrics::Counter,
    histogram: metrics::Histogram,
}

thread_local! {
    static REQUEST_HANDLES: RefCell<HashMap<Box<str>, Vec<RequestHandles>>> =
        RefCell::new(HashMap::new());
}

/// Counts one request refused at the edge.
pub fn rejection(reason: Rejection) {
    metrics::counter!(REJECTIONS, "reason" => reason.label()).increment(1);
}

/// Counts one answer replayed for an `Idempotency-Key`.
pub fn idempotency_replay() {
    metrics::counter!(IDEMPOTENCY_REPLAYS).increment(1);
}

/// Counts one call to a provider's API and its latency. `status` is the HTTP status of the
/// answer, or `None` when none came (connection refused, timeout). A 429 also counts in
/// [`PROVIDER_RATE_LIMITED`].
pub fn provider_call(
    provider: &'static str,
    operation: &'static str,
    status: Option<u16>,
    elapsed: Duration,
) {
    let status = status.unwrap_or(0);
    metrics::counter!(PROVIDER_CALLS, "provider" => provider, "operation" => operation, "status" => status.to_string())
        .increment(1);
    metrics::histogram!(PROVIDER_CALL_DURATION, "provider" => provider, "operation" => operation)
        .record(elapsed.as_secs_f64());
    if status == 429 {
        metrics::counter!(PROVIDER_RATE_LIMITED, "provider" => provider).increment(1);
    }
}

/// Why a provider call was made again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// The provider answered 429.
    RateLimited,
    /// The provider answered 5xx.
    ServerError,
    /// No answer came.
    Network,
    /// The access token was refused (401) and was refreshed.
    Unauthorized,
}

impl Retry {
    pub fn label(self) -> &'static str {
        match self {
            Retry::RateLimited => "rate_limited",
            Retry::ServerError => "server_error",
            Retry::Network => "network",
            Retry::Unauthorized => "unauthorized",
        }
    }
}

/// Counts one retried provider call.
pub fn provider_retry(provider: &'static str, reason: Retry) {
    metrics::counter!(PROVIDER_RETRIES, "provider" => provider, "reason" => reason.label())
        .increment(1);
}

/// Counts one OAuth token refresh: `ok` when the provider issued new tokens.
pub fn token_refresh(provider: &'static str, ok: bool) {
    let outcome = if ok { "ok" } else { "failed" };
    metrics::counter!(TOKEN_REFRESHES, "provider" => provider, "outcome" => outcome).increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_outside_the_standard_ones_share_one_label() {
        assert_eq!(method_label(&Method::PATCH), "PATCH");
        for odd in ["FOO", "PROPFIND", "X-ANY"] {
            assert_eq!(
                method_label(&Method::from_bytes(odd.as_bytes()).unwrap()),
                "other"
            );
        }
    }

    #[test]
    fn every_rejection_has_its_own_label() {
        let labels: std::collections::BTreeSet<_> =
            Rejection::ALL.iter().map(|r| r.label()).collect();
        assert_eq!(labels.len(), Rejection::ALL.len());
    }
}
