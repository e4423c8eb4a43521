//! The request metrics counted by the process itself, per thread, and rendered in the
//! Prometheus text format beside the recorder's (see [`super::tally_requests`]).
//!
//! A recorder of the `metrics` facade stores every histogram sample (the Prometheus one with
//! a clock read) until it is folded into buckets, and keeps each counter in one memory
//! location that every thread writes. Here a request is a count and a bucket bumped in its
//! thread's own tally, behind a lock only a scrape ever contends for; a scrape sums the
//! threads' tallies.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use super::{REQUEST_DURATION, REQUESTS};

/// The upper bounds, in seconds, of the buckets of every `*_duration_seconds` histogram:
/// 0.5 ms to 30 s.
pub const DURATION_BUCKETS: [f64; 15] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Requests of one route, method and status.
#[derive(Debug, Clone)]
struct Kind {
    method: &'static str,
    status: u16,
    count: u64,
    /// Requests by the first bucket whose bound is at least their latency; the last one
    /// holds those slower than every bound.
    buckets: [u64; DURATION_BUCKETS.len() + 1],
    /// Seconds, summed.
    sum: f64,
}

/// What one thread has counted, by route template.
#[derive(Debug, Default)]
struct Tally {
    routes: HashMap<Box<str>, Vec<Kind>>,
}

impl Tally {
    fn add(&mut self, route: &str, method: &'static str, status: u16, seconds: f64) {
        let kinds = match self.routes.get_mut(route) {
            Some(kinds) => kinds,
            None => self.routes.entry(route.into()).or_default(),
        };
        let at = match kinds
            .iter()
            .position(|k| k.method == method && k.status == status)
        {
            Some(at) => at,
            None => {
                kinds.push(Kind {
                    method,
                    status,
                    count: 0,
                    buckets: [0; DURATION_BUCKETS.len() + 1],
                    sum: 0.0,
                });
                kinds.len() - 1
            }
        };
        let kind = &mut kinds[at];
        kind.count += 1;
        kind.buckets[DURATION_BUCKETS.partition_point(|bound| *bound < seconds)] += 1;
        kind.sum += seconds;
    }

    fn absorb(&mut self, other: &Tally) {
        for (route, kinds) in &other.routes {
            let mine = self.routes.entry(route.clone()).or_default();
            for kind in kinds {
                match mine
                    .iter_mut()
                    .find(|k| k.method == kind.method && k.status == kind.status)
                {
                    Some(k) => {
                        k.count += kind.count;
                        for (b, n) in k.buckets.iter_mut().zip(kind.buckets) {
                            *b += n;
                        }
                        k.sum += kind.sum;
                    }
                    None => mine.push(kind.clone()),
                }
            }
        }
    }
}

type Shared = Arc<Mutex<Tally>>;

/// Every thread's tally, and what the threads that have ended counted.
struct Tallies {
    live: Vec<Shared>,
    ended: Tally,
}

static TALLIES: LazyLock<Mutex<Tallies>> = LazyLock::new(|| {
    Mutex::new(Tallies {
        live: Vec::new(),
        ended: Tally::default(),
    })
});

fn locked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

thread_local! {
    static MINE: Shared = {
        let tally = Shared::default();
        locked(&TALLIES).live.push(Arc::clone(&tally));
        tally
    };
}

/// Counts one request in this thread's tally.
pub(super) fn add(route: &str, method: &'static str, status: u16, elapsed: Duration) {
    let seconds = elapsed.as_secs_f64();
    // A thread being torn down counts nowhere; it answers no requests by then.
    let _ = MINE.try_with(|tally| locked(tally).add(route, method, status, seconds));
}

/// Appends the request metrics, summed over every thread, to `text` in the Prometheus text
/// format.
pub fn render(text: &mut String) {
    let sum = {
        let mut tallies = locked(&TALLIES);
        let Tallies { live, ended } = &mut *tallies;
        // A tally only the list holds is an ended thread's: folded in once, then dropped.
        live.retain(|tally| {
            if Arc::strong_count(tally) > 1 {
                return true;
            }
            ended.absorb(&locked(tally));
            false
        });
        let mut sum = Tally::default();
        sum.absorb(ended);
        for tally in live.iter() {
            sum.absorb(&locked(tally));
        }
        sum
    };
    // In a stable order: by route, then method, then status.
    let routes: BTreeMap<&str, &Vec<Kind>> = sum.routes.iter().map(|(r, k)| (&**r, k)).collect();
    if routes.is_empty() {
        return;
    }
    let _ = writeln!(text, "# TYPE {REQUESTS} counter");
    for (route, kinds) in &routes {
        let mut kinds: Vec<&Kind> = kinds.iter().collect();
        kinds.sort_by_key(|k| (k.method, k.status));
        for kind in kinds {
            let _ = writeln!(
                text,
                "{REQUESTS}{{route=\"{}\",method=\"{}\",status=\"{}\"}} {}",
                escaped(route),
                kind.method,
                kind.status,
                kind.count
            );
        }
    }
    text.push('\n');
    let _ = writeln!(text, "# TYPE {REQUEST_DURATION} histogram");
    for (route, kinds) in &routes {
        // The histogram is by route and method, over every status.
        let mut by_method: BTreeMap<&str, (u64, [u64; DURATION_BUCKETS.len() + 1], f64)> =
            BTreeMap::new();
        for kind in kinds.iter() {
            let (count, buckets, sum) =
                by_method
                    .entry(kind.method)
                    .or_insert((0, [0; DURATION_BUCKETS.len() + 1], 0.0));
            *count += kind.count;
            for (b, n) in buckets.iter_mut().zip(kind.buckets) {
                *b += n;
            }
            *sum += kind.sum;
        }
        let route = escaped(route);
        for (method, (count, buckets, sum)) in by_method {
            let labels = format!("route=\"{route}\",method=\"{method}\"");
            let mut cumulative = 0;
            for (bound, n) in DURATION_BUCKETS.iter().zip(buckets) {
                cumulative += n;
                let _ = writeln!(
                    text,
                    "{REQUEST_DURATION}_bucket{{{labels},le=\"{bound}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                text,
                "{REQUEST_DURATION}_bucket{{{labels},le=\"+Inf\"}} {count}"
            );
            let _ = writeln!(text, "{REQUEST_DURATION}_sum{{{labels}}} {sum}");
            let _ = writeln!(text, "{REQUEST_DURATION}_count{{{labels}}} {count}");
        }
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
