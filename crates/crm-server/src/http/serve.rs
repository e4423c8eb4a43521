//! The connection loop: accepts connections, serves each with hyper, closes connections
//! that send no request head in time, and shuts down gracefully.
//!
//! Per request, a connection counts the request open and closed on memory of its own. The
//! head timeout is one timer per connection, armed when the connection opens and moved only
//! when it fires, where hyper's own sets and clears a timer around every head it reads.
//! Shutdown is one flag read per poll, where a channel's receiver takes a lock shared by
//! every connection.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, Response};
use axum::response::Response as AxumResponse;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::{App, HYPER_STACK_HEADERS, HttpSettings};

/// How often the clock the connections read is advanced.
const TICK: Duration = Duration::from_millis(100);

/// Serves `app` on `listener` until `shutdown` completes. From then on no connection is
/// accepted (the listener is closed, so a new one is refused), idle connections are closed,
/// and the requests in flight are finished before this returns.
///
/// A connection that sends no complete request head within the request timeout of
/// `settings`, counted from when it opened or its last answer was sent, is closed.
pub async fn serve(
    listener: TcpListener,
    app: App,
    settings: &HttpSettings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let mut http1 = hyper::server::conn::http1::Builder::new();
    // Heads up to four times the limit reach `header_limits`, which answers in the
    // contract's shape; hyper refuses larger ones itself.
    let hard_header_bytes = settings.max_header_bytes.saturating_mul(4).max(8192);
    // No timer: the head timeout is the watchdog's (see `Watchdog`), so hyper keeps none.
    http1.keep_alive(true).header_read_timeout(None);
    // Under hyper's own count, heads with a few fields too many reach `header_limits`, and
    // hyper keeps its array on the stack; a count it is given is an array allocated and
    // cleared for every request, paid only where the limit is set that high.
    if settings.max_headers >= HYPER_STACK_HEADERS {
        http1.max_headers(settings.max_headers.saturating_mul(4));
    }
    http1
        .max_header_size(hard_header_bytes)
        .max_buf_size(hard_header_bytes.saturating_add(8192).max(400 * 1024));
    let head_timeout = settings.request_timeout.filter(|t| !t.is_zero());
    let clock = Arc::new(Clock::new());
    let ticking = head_timeout.map(|_| tokio::spawn(Arc::clone(&clock).tick()));
    let stop = Arc::new(Stop::default());
    let mut connections = JoinSet::new();
    let mut next_id: u64 = 0;
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let stream = match accepted {
            Ok((stream, _peer)) => stream,
            Err(e) => {
                // Out of file descriptors and the like: wait a little rather than spin.
                tracing::warn!(error = %e, "could not accept a connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let activity = Arc::new(Activity {
            open: AtomicUsize::new(0),
            idle_since: AtomicU64::new(clock.now()),
            clock: Arc::clone(&clock),
        });
        let service = Watched {
            app: app.clone(),
            activity: Arc::clone(&activity),
        };
        let connection = http1.serve_connection(TokioIo::new(stream), service);
        let watchdog = head_timeout.map(|limit| Watchdog::new(limit, activity));
        let stop = Arc::clone(&stop);
        let id = next_id;
        next_id += 1;
        connections.spawn(async move {
            tokio::pin!(connection);
            let mut watchdog = watchdog;
            let mut registered = false;
            let mut closing = false;
            let ended = std::future::poll_fn(|cx| {
                if !registered {
                    // The task's waker wakes this task whichever poll it came from. It is
                    // registered before the flag is read, so a stop that sets the flag
                    // after this read still finds it.
                    stop.register(id, cx.waker());
                    registered = true;
                }
                if !closing && stop.stopping.load(Ordering::Acquire) {
                    closing = true;
                    connection.as_mut().graceful_shutdown();
                }
                if let Poll::Ready(result) = connection.as_mut().poll(cx) {
                    return Poll::Ready(Some(result));
                }
                match watchdog.as_mut() {
                    Some(watchdog) => watchdog.poll_expired(cx).map(|()| None),
                    None => Poll::Pending,
                }
            })
            .await;
            stop.forget(id);
            match ended {
                Some(Ok(())) => {}
                Some(Err(e)) => tracing::debug!(error = %e, "connection ended with an error"),
                // Dropping the connection closes it: it is between requests, so no answer
                // is cut off.
                None => tracing::debug!("closed a connection that sent no request head in time"),
            }
        });
    }
    drop(listener);
    tracing::info!(
        connections = connections.len(),
        "shutting down: no new connections; finishing the requests in flight"
    );
    stop.stop();
    while connections.join_next().await.is_some() {}
    if let Some(ticking) = ticking {
        ticking.abort();
    }
    Ok(())
}

/// How [`serve`] tells its connections to close once idle: a flag each reads when polled,
/// and their wakers, touched only when a connection opens or ends, and on shutdown.
#[derive(Default)]
struct Stop {
    stopping: AtomicBool,
    wakers: Mutex<HashMap<u64, Waker>>,
}

impl Stop {
    fn register(&self, id: u64, waker: &Waker) {
        self.wakers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, waker.clone());
    }

    fn forget(&self, id: u64) {
        self.wakers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id);
    }

    /// Sets the flag, then wakes every connection so it reads it.
    fn stop(&self) {
        self.stopping.store(true, Ordering::Release);
        let wakers = self.wakers.lock().unwrap_or_else(PoisonError::into_inner);
        for waker in wakers.values() {
            waker.wake_by_ref();
        }
    }
}

/// Milliseconds since [`serve`] began, advanced every [`TICK`]: read with one atomic load,
/// where the system clock is a call per read.
struct Clock {
    start: Instant,
    millis: AtomicU64,
}

impl Clock {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            millis: AtomicU64::new(0),
        }
    }

    /// Never ahead of the time, and at most [`TICK`] behind.
    fn now(&self) -> u64 {
        self.millis.load(Ordering::Relaxed)
    }

    fn instant(&self, millis: u64) -> Instant {
        self.start + Duration::from_millis(millis)
    }

    async fn tick(self: Arc<Self>) {
        let mut every = tokio::time::interval(TICK);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            let millis = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
            self.millis.store(millis, Ordering::Relaxed);
        }
    }
}

/// What a connection's watchdog knows of its requests.
struct Activity {
    /// Requests begun whose answer has not been sent whole.
    open: AtomicUsize,
    /// When the connection opened or last had no request open, on `clock`.
    idle_since: AtomicU64,
    clock: Arc<Clock>,
}

/// Counts a request open until dropped: with its answer's body once that has been sent,
/// or with the answer's future when the connection ends first.
struct OpenRequest(Arc<Activity>);

impl OpenRequest {
    fn new(activity: &Arc<Activity>) -> Self {
        bump(&activity.open, 1);
        Self(Arc::clone(activity))
    }
}

/// Adds `by` (wrapping) to a count only the connection's task writes: its service opens a
/// request and its answer's body closes it, both polled by that task, and a task moves to
/// another thread only through the runtime's own synchronisation. So a load and a store
/// serve, where a read-modify-write would lock the memory bus.
fn bump(count: &AtomicUsize, by: usize) {
    count.store(
        count.load(Ordering::Relaxed).wrapping_add(by),
        Ordering::Relaxed,
    );
}

impl Drop for OpenRequest {
    fn drop(&mut self) {
        // The time first: a watchdog that then sees no request open reads a fresh one.
        let activity = &self.0;
        activity
            .idle_since
            .store(activity.clock.now(), Ordering::Relaxed);
        bump(&activity.open, usize::MAX);
    }
}

/// The application as hyper calls it on one connection: each request counted open until
/// its answer has been sent.
struct Watched {
    app: App,
    activity: Arc<Activity>,
}

impl hyper::service::Service<Request<Incoming>> for Watched {
    type Response = Response<Sent>;
    type Error = Infallible;
    type Future = Answer;

    fn call(&self, req: Request<Incoming>) -> Answer {
        let open = OpenRequest::new(&self.activity);
        Answer {
            future: self.app.answer(req.map(Body::new)),
            open: Some(open),
        }
    }
}

/// The application's answer to one request, its body counted as [`Sent`].
struct Answer {
    future: super::Answering,
    open: Option<OpenRequest>,
}

impl Future for Answer {
    type Output = Result<Response<Sent>, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let answered = std::task::ready!(Pin::new(&mut this.future).poll(cx));
        let response: AxumResponse = match answered {
            Ok(response) => response,
            Err(never) => match never {},
        };
        let open = this.open.take();
        Poll::Ready(Ok(response.map(|body| Sent { body, open })))
    }
}

/// An answer's body, which closes its request's count once it has been sent whole.
struct Sent {
    body: Body,
    open: Option<OpenRequest>,
}

impl hyper::body::Body for Sent {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        let frame = std::task::ready!(Pin::new(&mut this.body).poll_frame(cx));
        if frame.is_none() {
            this.open = None;
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// Closes a connection once it has had no request open for its limit: hyper has been
/// waiting that long for a request head, whole or in part. A request open is the edge's
/// to time out.
struct Watchdog {
    limit: Duration,
    activity: Arc<Activity>,
    timer: Pin<Box<tokio::time::Sleep>>,
    /// Whether the timer has been polled since it was set, so it holds the task's waker.
    polled: bool,
}

impl Watchdog {
    fn new(limit: Duration, activity: Arc<Activity>) -> Self {
        let deadline = Self::deadline(limit, &activity);
        Self {
            limit,
            activity,
            timer: Box::pin(tokio::time::sleep_until(deadline)),
            polled: false,
        }
    }

    /// When the connection's time for a head is up if no request opens before. The clock
    /// may be a tick behind, so a tick is added: never early, at most a tick late.
    fn deadline(limit: Duration, activity: &Activity) -> Instant {
        let idle_since = activity.idle_since.load(Ordering::Relaxed);
        activity.clock.instant(idle_since) + limit + TICK
    }

    /// Ready once the connection's time for a head is up.
    fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        // The connection's task is woken by every request; its waker stays the same, so a
        // timer that holds it need not be polled again before it fires.
        if self.polled && !self.timer.is_elapsed() {
            return Poll::Pending;
        }
        self.polled = true;
        loop {
            std::task::ready!(self.timer.as_mut().poll(cx));
            let now = Instant::now();
            let next = if self.activity.open.load(Ordering::Relaxed) > 0 {
                now + self.limit
            } else {
                let deadline = Self::deadline(self.limit, &self.activity);
                if deadline <= now {
                    return Poll::Ready(());
                }
                deadline
            };
            self.timer.as_mut().reset(next);
        }
    }
}
