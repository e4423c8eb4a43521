//! The HTTP side both doubles share: accepting connections, reading a request, latency,
//! injected failures, in-flight accounting, the call record, and closing a connection
//! without an answer.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::Body;
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use hyper::{HeaderMap, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};

use crate::{Failure, RecordedCall};

/// Locks a mutex, carrying on past a poisoned lock (a panicking test must not wedge the
/// double for the others).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A request as the doubles see it: fully read.
pub(crate) struct Req {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Req {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The decoded query pairs, in order.
    pub fn query_pairs(&self) -> Vec<(String, String)> {
        form_urlencoded::parse(self.query.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }

    /// The first value of a query parameter.
    pub fn query_param(&self, name: &str) -> Option<String> {
        form_urlencoded::parse(self.query.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }

    /// Path segments without the leading slash; a trailing slash is ignored.
    pub fn segments(&self) -> Vec<&str> {
        let p = self.path.trim_start_matches('/');
        let p = p.strip_suffix('/').unwrap_or(p);
        p.split('/').collect()
    }
}

/// An answer before it is put on the wire.
pub(crate) struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Option<serde_json::Value>,
}

impl Reply {
    pub fn json(status: u16, body: serde_json::Value) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: Some(body),
        }
    }

    pub fn empty(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: None,
        }
    }

    pub fn header(mut self, name: &'static str, value: impl ToString) -> Reply {
        self.headers.push((name, value.to_string()));
        self
    }

    fn into_response(self) -> Response<Body> {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = match &self.body {
            Some(v) => Body::from(serde_json::to_vec(v).unwrap_or_default()),
            None => Body::empty(),
        };
        let mut resp = Response::new(body);
        *resp.status_mut() = status;
        let h = resp.headers_mut();
        if self.body.is_some() {
            h.insert(
                CONTENT_TYPE,
                HeaderValue::from_static("application/json;charset=utf-8"),
            );
        }
        for (name, value) in self.headers {
            if let Ok(v) = HeaderValue::from_str(&value) {
                h.append(HeaderName::from_static(name), v);
            }
        }
        resp
    }
}

/// What a vendor's double supplies to the shared server.
pub(crate) trait Api: Send + Sync + 'static {
    fn common(&self) -> &Common;
    /// The normal answer.
    fn handle(&self, req: &Req) -> Reply;
    /// The answer for an injected `Status429` or `Status` failure.
    fn injected(&self, req: &Req, failure: &Failure) -> Reply;
    /// The body to record, secrets replaced (the query is redacted by [`redact_query`]).
    fn recorded_body(&self, req: &Req) -> String {
        String::from_utf8_lossy(&req.body).into_owned()
    }
}

struct FailRule {
    path_contains: Option<String>,
    remaining: usize,
    failure: Failure,
}

/// State every double has, whatever the vendor.
#[derive(Default)]
pub(crate) struct Common {
    failures: Mutex<Vec<FailRule>>,
    latency: Mutex<Duration>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    calls: Mutex<Vec<RecordedCall>>,
}

impl Common {
    pub fn fail_next(&self, path_contains: Option<&str>, n: usize, failure: Failure) {
        if n == 0 {
            return;
        }
        lock(&self.failures).push(FailRule {
            path_contains: path_contains.map(str::to_owned),
            remaining: n,
            failure,
        });
    }

    fn take_failure(&self, path: &str) -> Option<Failure> {
        let mut rules = lock(&self.failures);
        let i = rules.iter().position(|r| {
            r.remaining > 0 && r.path_contains.as_deref().is_none_or(|p| path.contains(p))
        })?;
        rules[i].remaining -= 1;
        let failure = rules[i].failure.clone();
        if rules[i].remaining == 0 {
            rules.remove(i);
        }
        Some(failure)
    }

    pub fn set_latency(&self, d: Duration) {
        *lock(&self.latency) = d;
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    pub fn max_in_flight(&self) -> usize {
        self.max_in_flight.load(Ordering::SeqCst)
    }

    pub fn calls(&self) -> Vec<RecordedCall> {
        lock(&self.calls).clone()
    }

    fn enter(&self) -> InFlight<'_> {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
        InFlight(self)
    }

    fn record(&self, call: RecordedCall) {
        lock(&self.calls).push(call);
    }
}

/// Counts a request in flight from when it arrives until its task ends, however it ends.
struct InFlight<'a>(&'a Common);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Replaces the value of a legacy `api_token` query parameter.
fn redact_query(query: &str) -> String {
    if !query
        .split('&')
        .any(|kv| kv.split('=').next() == Some("api_token"))
    {
        return query.to_owned();
    }
    query
        .split('&')
        .map(|kv| {
            if kv.split('=').next() == Some("api_token") {
                "api_token=REDACTED".to_owned()
            } else {
                kv.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// Replaces the secret values of a form body (OAuth token requests).
pub(crate) fn redact_form(body: &[u8]) -> String {
    let mut out = form_urlencoded::Serializer::new(String::new());
    for (k, v) in form_urlencoded::parse(body) {
        if matches!(k.as_ref(), "client_secret" | "refresh_token" | "code") {
            out.append_pair(&k, "REDACTED");
        } else {
            out.append_pair(&k, &v);
        }
    }
    out.finish()
}

enum Outcome {
    Answer(Response<Body>),
    Disconnect,
}

/// Stops the server when the last handle goes.
pub(crate) struct Server {
    pub addr: SocketAddr,
    shutdown: watch::Sender<bool>,
}

impl Server {
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn shutdown(&self) {
        let _ = self.shutdown.send(true);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Binds 127.0.0.1 on a free port.
pub(crate) async fn bind() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind(("127.0.0.1", 0))
        .await
        .expect("bind a loopback port for a provider double");
    let addr = listener
        .local_addr()
        .expect("local address of a bound listener");
    (listener, addr)
}

/// Serves `api` on `listener` until the returned [`Server`] is dropped or shut down.
pub(crate) fn serve<A: Api>(listener: TcpListener, addr: SocketAddr, api: Arc<A>) -> Server {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(accept_loop(listener, api, rx));
    Server { addr, shutdown: tx }
}

async fn stopped(rx: &mut watch::Receiver<bool>) {
    // An error means the sender is gone: stop as well.
    let _ = rx.wait_for(|stop| *stop).await;
}

async fn accept_loop<A: Api>(listener: TcpListener, api: Arc<A>, mut rx: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = stopped(&mut rx) => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(serve_connection(stream, api.clone(), rx.clone()));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
        }
    }
}

async fn serve_connection<A: Api>(
    stream: tokio::net::TcpStream,
    api: Arc<A>,
    mut rx: watch::Receiver<bool>,
) {
    let kill = Arc::new(Notify::new());
    let kill_signal = kill.clone();
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let api = api.clone();
        let kill = kill_signal.clone();
        async move {
            // The request is handled in its own task, so it completes (and changes state)
            // even when the client goes away before the answer.
            match tokio::spawn(process(api, req)).await {
                Ok(Outcome::Answer(resp)) => Ok::<_, Infallible>(resp),
                Ok(Outcome::Disconnect) | Err(_) => {
                    kill.notify_one();
                    std::future::pending().await
                }
            }
        }
    });
    let conn =
        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        _ = conn => {}
        _ = kill.notified() => {}
        _ = stopped(&mut rx) => {}
    }
}

async fn process<A: Api>(api: Arc<A>, req: Request<Incoming>) -> Outcome {
    let common = api.common();
    let _in_flight = common.enter();
    let (parts, body) = req.into_parts();
    let Ok(body) = axum::body::to_bytes(Body::new(body), 64 << 20).await else {
        return Outcome::Disconnect;
    };
    let req = Req {
        method: parts.method.as_str().to_owned(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().unwrap_or("").to_owned(),
        headers: parts.headers,
        body: body.to_vec(),
    };
    let latency = *lock(&common.latency);
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let injected = common.take_failure(&req.path);
    let mut hold = None;
    let reply = match &injected {
        Some(Failure::Disconnect) => None,
        Some(Failure::Timeout(d)) => {
            hold = Some(*d);
            Some(api.handle(&req))
        }
        Some(f) => Some(api.injected(&req, f)),
        None => Some(api.handle(&req)),
    };
    common.record(RecordedCall {
        method: req.method.clone(),
        path: req.path.clone(),
        query: redact_query(&req.query),
        body: api.recorded_body(&req),
        status: reply.as_ref().map_or(0, |r| r.status),
    });
    let Some(reply) = reply else {
        return Outcome::Disconnect;
    };
    if let Some(d) = hold {
        tokio::time::sleep(d).await;
    }
    Outcome::Answer(reply.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_token_is_redacted_from_the_query() {
        assert_eq!(
            redact_query("limit=5&api_token=secret&x=1"),
            "limit=5&api_token=REDACTED&x=1"
        );
        assert_eq!(redact_query("limit=5"), "limit=5");
    }

    #[test]
    fn secrets_are_redacted_from_a_form() {
        let s =
            redact_form(b"grant_type=refresh_token&client_id=c&client_secret=s3&refresh_token=r1");
        assert_eq!(
            s,
            "grant_type=refresh_token&client_id=c&client_secret=REDACTED&refresh_token=REDACTED"
        );
    }

    #[test]
    fn failures_are_taken_in_order_and_by_path() {
        let c = Common::default();
        c.fail_next(Some("/search"), 1, Failure::Status(500));
        c.fail_next(None, 2, Failure::Disconnect);
        assert_eq!(c.take_failure("/a"), Some(Failure::Disconnect));
        assert_eq!(c.take_failure("/x/search"), Some(Failure::Status(500)));
        assert_eq!(c.take_failure("/x/search"), Some(Failure::Disconnect));
        assert_eq!(c.take_failure("/x/search"), None);
    }
}
