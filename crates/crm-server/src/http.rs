//! The HTTP edge around the CRM router: request ids, request logs, header and rate limits,
//! timeouts, and the connection loop that shuts down gracefully.
//!
//! Every answer given here is an [`ApiError`] in the contract's shape and carries the
//! request's `x-request-id`. The only exception is a request whose head is more than four
//! times the header limit, or has more header fields than hyper parses (100, or four times
//! `--max-headers` when that is 100 or more): hyper refuses it with a bare 431 and closes the
//! connection before any of this code runs, so such a head is never held in memory.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use crm_api::ApiError;
use crm_api::metrics::{Rejection, rejection};
use tower::{Layer, Service};

use crate::rate_limit::{RateLimiter, SharedRateLimiter, retry_after_secs};

mod serve;
pub use serve::serve;

/// The largest request body accepted, in bytes, unless configured otherwise.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;
/// The largest request head (request line and headers) accepted, in bytes.
pub const DEFAULT_MAX_HEADER_BYTES: usize = 16 * 1024;
/// The most header fields a request may carry.
pub const DEFAULT_MAX_HEADERS: usize = 64;
/// The header fields hyper parses into an array on the stack when it is given no count of
/// its own; past this many it refuses the head itself (a bare 431).
const HYPER_STACK_HEADERS: usize = 100;
/// How long a request may take, from its first byte to its answer.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The header carrying the id of a request, taken from the caller or generated.
pub static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The longest caller-chosen request id kept; a longer or odd one is replaced.
const MAX_REQUEST_ID_LEN: usize = 128;

/// How the HTTP side of the server behaves.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// Larger bodies are refused with 413.
    pub max_body_bytes: usize,
    /// Larger request heads are refused with 431.
    pub max_header_bytes: usize,
    /// Requests with more header fields are refused with 431.
    pub max_headers: usize,
    /// A request still unanswered after this long is answered 408; `None` waits forever.
    /// It also bounds how long a connection may take to send a request head.
    pub request_timeout: Option<Duration>,
    /// Requests a minute allowed per API key, answered 429 beyond; `None` is no limit.
    pub rate_limit_per_minute: Option<u32>,
    /// The origin clients reach the server at (`--public-url`), named as the server in the
    /// documents served at `/openapi.json` and `/docs`; `None` names the relative URL `/`.
    pub public_url: Option<String>,
    /// Serve `GET /metrics` beside the API; `false` when it has a listener of its own
    /// (`--metrics-listen`).
    pub metrics: bool,
    /// Calls in flight to its provider per linked HubSpot or Pipedrive account, from this
    /// replica; the next one waits for a slot.
    pub provider_concurrency: usize,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            max_headers: DEFAULT_MAX_HEADERS,
            request_timeout: Some(DEFAULT_REQUEST_TIMEOUT),
            rate_limit_per_minute: None,
            public_url: None,
            metrics: true,
            provider_concurrency: crate::providers::call::Limits::DEFAULT_PER_ACCOUNT,
        }
    }
}

/// What the edge checks and how it names routes.
struct Edge {
    max_header_bytes: usize,
    max_headers: usize,
    request_timeout: Option<Duration>,
    limiter: Option<Limiter>,
    /// SQLite: a GET of the API may keep its key check's read transaction for its record
    /// read (see `sqlite_reads`).
    hold_reads: bool,
    /// The router's path templates, each naming its place in `paths`.
    routes: matchit::Router<usize>,
    /// The same templates, in the order they were added.
    paths: Vec<String>,
}

impl Edge {
    /// The place in `paths` of the template that matches `path`.
    fn route_index(&self, path: &str) -> Option<usize> {
        self.routes.at(path).ok().map(|found| *found.value)
    }

    fn route_of(&self, path: &str) -> Option<&str> {
        self.route_index(path).map(|at| self.paths[at].as_str())
    }

    /// The name of a route in logs and metrics.
    fn label(&self, route: Option<usize>) -> &str {
        route.map_or("<unmatched>", |at| self.paths[at].as_str())
    }
}

/// Where the rate limit is counted.
enum Limiter {
    /// In this process.
    Local(RateLimiter),
    /// In the database, for every replica.
    Shared(SharedRateLimiter),
}

impl Limiter {
    fn per_minute(&self) -> u32 {
        match self {
            Limiter::Local(l) => l.per_minute(),
            Limiter::Shared(l) => l.per_minute(),
        }
    }

    /// Spends one token of the bucket of the key `headers` present. Requests without a
    /// readable key are not counted: they are refused with 401 before they reach any data.
    fn check(&self, headers: &HeaderMap) -> Check {
        let Ok(key) = crm_api::extract::api_key(headers) else {
            return Check::Passed;
        };
        let per_minute = self.per_minute();
        match self {
            Limiter::Local(l) => match l.check(&key.0, Instant::now()) {
                Ok(()) => Check::Passed,
                Err(wait) => Check::Refused(rate_limited(per_minute, wait)),
            },
            Limiter::Shared(l) => {
                let l = l.clone();
                Check::Pending(Box::pin(async move {
                    let counted = l.check(&key.0).await.unwrap_or_else(|e| {
                        // The request will meet the same database and answer for itself.
                        tracing::warn!(error = %e, "the shared rate limit could not be read");
                        Ok(())
                    });
                    counted.err().map(|wait| rate_limited(per_minute, wait))
                }))
            }
        }
    }
}

/// What the rate limit says of a request.
enum Check {
    Passed,
    /// Spent: the answer (429).
    Refused(Response),
    /// Counted in the database: the answer, if refused, once it answers.
    Pending(Pin<Box<dyn Future<Output = Option<Response>> + Send>>),
}

/// A router and the path template of each of its routes, gathered as the routes are added,
/// so the edge can name every route the router serves.
#[derive(Default)]
pub struct Routes {
    router: Router,
    paths: Vec<String>,
}

impl Routes {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a route at `path` (axum's syntax: `{name}` for a segment).
    pub fn route(mut self, path: &str, method_router: MethodRouter) -> Self {
        self.router = self.router.route(path, method_router);
        self.paths.push(path.to_owned());
        self
    }

    /// Adds every route of `router`, whose path templates are `paths`.
    pub fn merge(mut self, router: Router, paths: impl IntoIterator<Item = String>) -> Self {
        self.router = self.router.merge(router);
        self.paths.extend(paths);
        self
    }

    /// Adds every route of `other`.
    pub fn and(self, other: Routes) -> Self {
        self.merge(other.router, other.paths)
    }

    /// The router alone, to serve without the edge.
    pub fn into_router(self) -> Router {
        self.router
    }
}

/// The whole application as served: the routes behind the edge.
///
/// The edge wraps the router once, not each of its routes, so a request pays for no clone
/// of its route, and its answer ([`Answering`]) is one future, not boxed. Its route label (logs, metrics) comes from a table of
/// the router's path templates ([`App::route_of`]), since axum names the matched route only
/// inside the router.
#[derive(Clone)]
pub struct App {
    edge: Arc<Edge>,
    /// The router, for a request without a body: nothing for a body limit to bound.
    router: Router,
    /// The router with the body limit set, for a request with a body.
    limited: <DefaultBodyLimit as Layer<Router>>::Service,
}

/// Wraps `routes` in what every request passes, outermost first: request id and request
/// log, header limits, rate limit, timeout, body limit. On PostgreSQL the rate limit is
/// counted in `db`, shared by every replica; on SQLite in this process.
///
/// # Panics
///
/// When two routes conflict, which axum refuses too.
pub fn layered(routes: Routes, settings: &HttpSettings, db: &crate::db::Database) -> App {
    let Routes { router, paths } = routes;
    let mut table = matchit::Router::new();
    for (at, path) in paths.iter().enumerate() {
        table
            .insert(path.as_str(), at)
            .unwrap_or_else(|e| panic!("route {path}: {e}"));
    }
    let edge = Edge {
        max_header_bytes: settings.max_header_bytes,
        max_headers: settings.max_headers,
        request_timeout: settings.request_timeout.filter(|t| !t.is_zero()),
        limiter: settings
            .rate_limit_per_minute
            .filter(|n| *n > 0)
            .map(|n| match db.kind() {
                crate::db::StoreKind::Sqlite => Limiter::Local(RateLimiter::new(n)),
                crate::db::StoreKind::Postgres => {
                    Limiter::Shared(SharedRateLimiter::new(db.clone(), n))
                }
            }),
        hold_reads: db.sqlite_reads().is_some(),
        routes: table,
        paths,
    };
    App {
        edge: Arc::new(edge),
        limited: DefaultBodyLimit::max(settings.max_body_bytes).layer(router.clone()),
        router,
    }
}

impl App {
    /// The path template of the route that serves `path`, as logs and metrics name it;
    /// `None` when no route does.
    pub fn route_of(&self, path: &str) -> Option<&str> {
        self.edge.route_of(path)
    }

    /// The path template of every route, in the order the routes were added.
    pub fn routes(&self) -> impl Iterator<Item = &str> {
        self.edge.paths.iter().map(String::as_str)
    }

    fn answer(&self, req: Request) -> Answering {
        Answering::new(self, req)
    }

    /// Hands `req` to the router.
    fn route(&self, req: Request) -> Stage {
        let hold = self.edge.hold_reads
            && req.method() == axum::http::Method::GET
            && req.uri().path().starts_with(crm_api::API_PREFIX);
        // The limit travels in the request's extensions, a map allocated for it: a request
        // whose body is known to be empty (a GET, mostly) goes without.
        let routed = if axum::body::HttpBody::is_end_stream(req.body()) {
            self.router.clone().call(req)
        } else {
            self.limited.clone().call(req)
        };
        // A GET of the API may keep its key check's read transaction for its record read
        // (see `sqlite_reads`); other requests may wait for a body or write between their
        // reads, and the routes outside the API read no records.
        if hold {
            Stage::Holding(Box::pin(crate::sqlite_reads::hold(routed)))
        } else {
            Stage::Routing(routed)
        }
    }
}

/// The future of the router's answer.
type Routed = axum::routing::future::RouteFuture<Infallible>;

/// The answer to one request, the edge's work around the router's, in one future.
///
/// Written out by hand: as nested `async fn`s it had to be boxed to be named, and each
/// level moved the request into a state of its own.
pub struct Answering {
    edge: Arc<Edge>,
    /// When the request's head had been read: its latency and its timeout count from here.
    started: Instant,
    id: Option<HeaderValue>,
    method: axum::http::Method,
    /// The route's place in the edge's table; `None` when no route matches.
    route: Option<usize>,
    /// Disabled unless request spans are recorded.
    span: tracing::Span,
    stage: Stage,
    /// Set once the router's answer has had to wait: one answered in its first poll
    /// (`/healthz`, most reads on SQLite) never touches the runtime's timers.
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

/// Where an [`Answering`] stands.
enum Stage {
    /// Waiting for the rate limit counted in the database, the request in hand.
    Limiting {
        check: Pin<Box<dyn Future<Output = Option<Response>> + Send>>,
        then: Option<(Request, App)>,
    },
    /// The router answers.
    Routing(Routed),
    /// The router answers, with room for a held read transaction (see `sqlite_reads`).
    Holding(Pin<Box<crate::sqlite_reads::Holding<Routed>>>),
    /// The edge answered itself, or the answer has been given (`None`).
    Answered(Option<Response>),
}

impl Answering {
    /// Takes or makes the request id and names the route, then checks the header limits
    /// and the rate limit, in this order, and hands the request to the router.
    fn new(app: &App, req: Request) -> Self {
        let started = Instant::now();
        let edge = Arc::clone(&app.edge);
        let id = request_id(&req);
        let method = req.method().clone();
        let route = edge.route_index(req.uri().path());
        // The id is only ever an acceptable one (plain ASCII), as `request_id` checked or
        // made it; read as text only when the span is recorded.
        let span = tracing::info_span!(
            "request",
            request_id = %id.to_str().unwrap_or_default(),
            %method,
            route = %edge.label(route)
        );
        let stage = span.in_scope(|| {
            tracing::debug!("request received");
            if let Some(refused) = header_limits(&edge, &req) {
                return Stage::Answered(Some(refused));
            }
            match edge.limiter.as_ref() {
                None => app.route(req),
                Some(limiter) => match limiter.check(req.headers()) {
                    Check::Passed => app.route(req),
                    Check::Refused(answer) => Stage::Answered(Some(answer)),
                    Check::Pending(check) => Stage::Limiting {
                        check,
                        then: Some((req, app.clone())),
                    },
                },
            }
        });
        Self {
            edge,
            started,
            id: Some(id),
            method,
            route,
            span,
            stage,
            timer: None,
        }
    }

    /// The router's answer, or the timeout's.
    fn poll_routed(&mut self, cx: &mut Context<'_>) -> Poll<Response> {
        let answered = match &mut self.stage {
            Stage::Routing(routed) => Pin::new(routed).poll(cx),
            Stage::Holding(routed) => routed.as_mut().poll(cx),
            _ => unreachable!("only called while routing"),
        };
        if let Poll::Ready(answered) = answered {
            return Poll::Ready(answered.unwrap_or_else(|never| match never {}));
        }
        let Some(limit) = self.edge.request_timeout else {
            return Poll::Pending;
        };
        let started = self.started;
        let timer = self.timer.get_or_insert_with(|| {
            Box::pin(tokio::time::sleep_until(
                tokio::time::Instant::from_std(started) + limit,
            ))
        });
        timer.as_mut().poll(cx).map(|()| timed_out(limit))
    }

    /// Logs and counts the answer, and gives it the request id.
    fn finish(&mut self, mut response: Response) -> Response {
        let elapsed = self.started.elapsed();
        let status = response.status().as_u16();
        let route = self.edge.label(self.route);
        crm_api::metrics::request(route, &self.method, status, elapsed);
        let latency_ms = elapsed.as_secs_f64() * 1000.0;
        self.span
            .in_scope(|| tracing::info!(status, latency_ms, "request answered"));
        if let Some(id) = self.id.take() {
            response.headers_mut().insert(REQUEST_ID.clone(), id);
        }
        response
    }
}

impl Future for Answering {
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let response = loop {
            match &mut this.stage {
                Stage::Answered(answer) => {
                    break answer.take().expect("an answer is polled once it is given");
                }
                Stage::Limiting { check, then } => {
                    let refused = {
                        let _entered = this.span.enter();
                        std::task::ready!(check.as_mut().poll(cx))
                    };
                    let (req, app) = then.take().expect("the check is polled till it passes");
                    this.stage = match refused {
                        Some(answer) => Stage::Answered(Some(answer)),
                        None => this.span.in_scope(|| app.route(req)),
                    };
                }
                Stage::Routing(_) | Stage::Holding(_) => {
                    let response = if this.span.is_disabled() {
                        std::task::ready!(this.poll_routed(cx))
                    } else {
                        let span = this.span.clone();
                        let _entered = span.enter();
                        std::task::ready!(this.poll_routed(cx))
                    };
                    // The router's future ends here: with it, a held read transaction.
                    this.stage = Stage::Answered(None);
                    break response;
                }
            }
        };
        Poll::Ready(Ok(this.finish(response)))
    }
}

impl<B> Service<axum::http::Request<B>> for App
where
    B: axum::body::HttpBody<Data = axum::body::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Answering;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // The router is always ready, and a clone of it serves each request.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: axum::http::Request<B>) -> Self::Future {
        self.answer(req.map(axum::body::Body::new))
    }
}

fn acceptable_request_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_REQUEST_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:/+=@".contains(&b))
}

/// A new version-4 UUID as a header value, from the thread's [`IdSequence`].
fn fresh_request_id() -> HeaderValue {
    let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
    let bytes = ID_SEQUENCE.with(|ids| ids.next());
    let id = uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .hyphenated()
        .encode_lower(&mut text);
    HeaderValue::from_bytes(id.as_bytes()).expect("a UUID is a header value")
}

/// Request ids: a SplitMix64 sequence per thread, started at a random point (from the OS,
/// through `rand`). An id names a request in logs and guards nothing, so it needs to be
/// unique, not unpredictable: a sequence repeats no value within 2^64 steps, and two
/// threads' sequences share a value within their first n steps only if they started fewer
/// than n steps apart, a chance of about 2n in 2^64. A cryptographic generator's block
/// cost more than the rest of the id.
struct IdSequence(std::cell::Cell<u64>);

impl IdSequence {
    fn next_u64(&self) -> u64 {
        let state = self.0.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
        self.0.set(state);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn next(&self) -> [u8; 16] {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&self.next_u64().to_le_bytes());
        bytes[8..].copy_from_slice(&self.next_u64().to_le_bytes());
        bytes
    }
}

thread_local! {
    static ID_SEQUENCE: IdSequence = IdSequence(std::cell::Cell::new(rand::random()));
}

/// The caller's request id when it is acceptable, else a fresh one.
fn request_id(req: &Request) -> HeaderValue {
    match req.headers().get(&REQUEST_ID) {
        Some(value) if value.to_str().is_ok_and(acceptable_request_id) => value.clone(),
        _ => fresh_request_id(),
    }
}

/// The size of a request head as it came over the wire: the request line and every header
/// line with its separators.
fn head_bytes(req: &Request) -> usize {
    let target = req.uri().path_and_query().map_or(1, |p| p.as_str().len());
    let line = req.method().as_str().len() + 1 + target + " HTTP/1.1\r\n".len();
    let headers: usize = req
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + 2 + value.len() + 2)
        .sum();
    line + headers + 2
}

fn header_limits(edge: &Edge, req: &Request) -> Option<Response> {
    let count = req.headers().len();
    if count > edge.max_headers {
        rejection(Rejection::HeadersTooLarge);
        return Some(
            ApiError::new(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                format!(
                    "the request has {count} header fields; at most {} are accepted",
                    edge.max_headers
                ),
            )
            .into_response(),
        );
    }
    let size = head_bytes(req);
    if size > edge.max_header_bytes {
        rejection(Rejection::HeadersTooLarge);
        return Some(
            ApiError::new(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                format!(
                    "the request line and headers take {size} bytes; at most {} are accepted",
                    edge.max_header_bytes
                ),
            )
            .into_response(),
        );
    }
    None
}

/// The answer to a key whose rate limit of `per_minute` is spent, for `wait` more.
fn rate_limited(per_minute: u32, wait: Duration) -> Response {
    rejection(Rejection::RateLimited);
    let secs = retry_after_secs(wait);
    let mut response = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        format!(
            "rate limit of {per_minute} requests a minute for this API key exceeded; retry after {secs} s"
        ),
    )
    .with("retry_after", secs)
    .into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    response
}

/// The answer when the request (reading its body included) takes longer than allowed.
///
/// A write whose answer is 408 was cut off at an unknown point: its transaction either
/// committed whole or not at all, so the caller reads before retrying.
fn timed_out(limit: Duration) -> Response {
    rejection(Rejection::Timeout);
    let mut response = ApiError::new(
        StatusCode::REQUEST_TIMEOUT,
        format!(
            "the request was not completed within {} ms",
            limit.as_millis()
        ),
    )
    .into_response();
    // The body may be half read: this connection cannot carry another request.
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_from_callers_are_kept_only_when_plain() {
        for good in ["abc", "3f2a-77", "req_1.2:3/4+5=6@x", &"a".repeat(128)] {
            assert!(acceptable_request_id(good), "{good}");
        }
        for bad in ["", "a b", "é", "a\u{7f}", "<script>", &"a".repeat(129)] {
            assert!(!acceptable_request_id(bad), "{bad}");
        }
    }

    #[test]
    fn fresh_request_ids_are_uuids_and_differ() {
        let ids: std::collections::HashSet<HeaderValue> =
            (0..10_000).map(|_| fresh_request_id()).collect();
        assert_eq!(ids.len(), 10_000);
        for id in ids.iter().take(100) {
            let id = uuid::Uuid::parse_str(id.to_str().unwrap()).unwrap();
            assert_eq!(id.get_version_num(), 4);
        }
    }

    #[test]
    fn the_head_is_measured_as_sent() {
        let req = Request::builder()
            .method("GET")
            .uri("/a?b=c")
            .header("x-k", "vv")
            .body(axum::body::Body::empty())
            .unwrap();
        // "GET /a?b=c HTTP/1.1\r\n" + "x-k: vv\r\n" + "\r\n"
        assert_eq!(head_bytes(&req), 21 + 9 + 2);
    }
}
