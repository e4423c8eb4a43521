//! The request metrics counted by the process itself, per thread, and rendered in the
//! Prometheus text format beside the recorder's (see [`super::tally_requests`]).
//!
//! A recorder of the `metrics` facade stores every histogram sample (the Prometheus one with
//! a clock read) until it is folded into buckets, and keeps each counter in one memory
//! location that every thread writes. Here a request bumps a bucket in counters only its
//! own thread writes: a load and a store, no lock and no read-modify-write. A scrape reads
//! every thread's counters and sums them.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use super::{REQUEST_DURATION, REQUESTS};

/// The upper bounds, in seconds, of the buckets of every `*_duration_seconds` histogram:
/// 0.5 ms to 30 s.
pub const DURATION_BUCKETS: [f64; 15] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// One bucket per bound, and one for latencies above every bound.
const SLOTS: usize = DURATION_BUCKETS.len() + 1;

/// The requests of one route, method and status answered on one thread.
///
/// Only that thread writes them, so a bump is a load and a store (a scrape may read a value
/// one request old, never a torn one). Every figure rendered is derived from the buckets,
/// so the counter, the histogram's count and its `+Inf` bucket always agree.
struct Counters {
    route: Box<str>,
    method: &'static str,
    status: u16,
    /// Requests by the first bucket whose bound is at least their latency.
    buckets: [AtomicU64; SLOTS],
    /// Seconds, summed: the bits of an `f64`.
    sum: AtomicU64,
}

impl Counters {
    fn new(route: &str, method: &'static str, status: u16) -> Self {
        Self {
            route: route.into(),
            method,
            status,
            buckets: Default::default(),
            sum: AtomicU64::new(0f64.to_bits()),
        }
    }

    fn is(&self, route: &str, method: &'static str, status: u16) -> bool {
        self.status == status && self.method == method && *self.route == *route
    }

    /// Only ever called on the thread that owns these counters.
    fn add(&self, seconds: f64) {
        let bucket = &self.buckets[DURATION_BUCKETS.partition_point(|bound| *bound < seconds)];
        bucket.store(bucket.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        let sum = f64::from_bits(self.sum.load(Ordering::Relaxed)) + seconds;
        self.sum.store(sum.to_bits(), Ordering::Relaxed);
    }

    fn read(&self) -> Figures {
        Figures {
            buckets: std::array::from_fn(|i| self.buckets[i].load(Ordering::Relaxed)),
            sum: f64::from_bits(self.sum.load(Ordering::Relaxed)),
        }
    }
}

/// What counters held when read, or several counters' figures added up.
#[derive(Clone, Copy)]
struct Figures {
    buckets: [u64; SLOTS],
    sum: f64,
}

impl Figures {
    const ZERO: Figures = Figures {
        buckets: [0; SLOTS],
        sum: 0.0,
    };

    fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    fn add(&mut self, other: &Figures) {
        for (mine, theirs) in self.buckets.iter_mut().zip(other.buckets) {
            *mine += theirs;
        }
        self.sum += other.sum;
    }
}

/// Every thread's counters, and the figures of threads that have ended, by kind.
struct Registry {
    live: Vec<Arc<Counters>>,
    ended: Vec<(Box<str>, &'static str, u16, Figures)>,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    live: Vec::new(),
    ended: Vec::new(),
});

fn registry() -> MutexGuard<'static, Registry> {
    REGISTRY.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A thread's own counters: the last kind it counted, and every kind by route.
#[derive(Default)]
struct Mine {
    last: Option<Arc<Counters>>,
    by_route: HashMap<Box<str>, Vec<Arc<Counters>>>,
}

impl Mine {
    fn counters(&mut self, route: &str, method: &'static str, status: u16) -> &Counters {
        if !self
            .last
            .as_ref()
            .is_some_and(|last| last.is(route, method, status))
        {
            let kinds = match self.by_route.get_mut(route) {
                Some(kinds) => kinds,
                None => self.by_route.entry(route.into()).or_default(),
            };
            let found = match kinds.iter().find(|c| c.is(route, method, status)) {
                Some(found) => Arc::clone(found),
                None => {
                    let made = Arc::new(Counters::new(route, method, status));
                    registry().live.push(Arc::clone(&made));
                    kinds.push(Arc::clone(&made));
                    made
                }
            };
            self.last = Some(found);
        }
        self.last.as_deref().expect("set above")
    }
}

thread_local! {
    static MINE: RefCell<Mine> = RefCell::new(Mine::default());
}

/// Counts one request in this thread's counters.
pub(super) fn add(route: &str, method: &'static str, status: u16, elapsed: Duration) {
    // A thread being torn down counts nowhere; it answers no requests by then.
    let _ = MINE.try_with(|mine| {
        mine.borrow_mut()
            .counters(route, method, status)
            .add(elapsed.as_secs_f64());
    });
}

/// Every kind of request counted so far, each summed over every thread.
fn summed() -> BTreeMap<(Box<str>, &'static str, u16), Figures> {
    let mut registry = registry();
    let Registry { live, ended } = &mut *registry;
    // Counters only the registry holds are an ended thread's: folded in once, then dropped.
    live.retain(|counters| {
        if Arc::strong_count(counters) > 1 {
            return true;
        }
        let figures = counters.read();
        match ended
            .iter_mut()
            .find(|(route, method, status, _)| counters.is(route, method, *status))
        {
            Some((.., sum)) => sum.add(&figures),
            None => ended.push((
                counters.route.clone(),
                counters.method,
                counters.status,
                figures,
            )),
        }
        false
    });
    let mut sums = BTreeMap::new();
    let all = ended
        .iter()
        .map(|(route, method, status, figures)| ((route, *method, *status), *figures))
        .chain(
            live.iter()
                .map(|c| ((&c.route, c.method, c.status), c.read())),
        );
    for ((route, method, status), figures) in all {
        sums.entry((route.clone(), method, status))
            .or_insert(Figures::ZERO)
            .add(&figures);
    }
    sums
}

/// Appends the request metrics, summed over every thread, to `text` in the Prometheus text
/// format: by route, then method, then status.
pub fn render(text: &mut String) {
    let sums = summed();
    if sums.is_empty() {
        return;
    }
    let _ = writeln!(text, "# TYPE {REQUESTS} counter");
    for ((route, method, status), figures) in &sums {
        let _ = writeln!(
            text,
            "{REQUESTS}{{route=\"{}\",method=\"{method}\",status=\"{status}\"}} {}",
            escaped(route),
            figures.count()
        );
    }
    text.push('\n');
    // The histogram is by route and method, over every status.
    let mut by_method: BTreeMap<(&str, &str), Figures> = BTreeMap::new();
    for ((route, method, _), figures) in &sums {
        by_method
            .entry((route, method))
            .or_insert(Figures::ZERO)
            .add(figures);
    }
    let _ = writeln!(text, "# TYPE {REQUEST_DURATION} histogram");
    for ((route, method), figures) in by_method {
        let labels = format!("route=\"{}\",method=\"{method}\"", escaped(route));
        let mut cumulative = 0;
        for (bound, n) in DURATION_BUCKETS.iter().zip(figures.buckets) {
            cumulative += n;
            let _ = writeln!(
                text,
                "{REQUEST_DURATION}_bucket{{{labels},le=\"{bound}\"}} {cumulative}"
            );
        }
        let count = figures.count();
        let _ = writeln!(
            text,
            "{REQUEST_DURATION}_bucket{{{labels},le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(text, "{REQUEST_DURATION}_sum{{{labels}}} {}", figures.sum);
        let _ = writeln!(text, "{REQUEST_DURATION}_count{{{labels}}} {count}");
    }
    text.push('\n');
}

/// A label value as the text format writes it.
fn escaped(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}
