//! Prometheus metrics: the recorder the `metrics` facade reports into (installed once per
//! process), `GET /metrics` in the Prometheus text format, and the metrics of the database.
//!
//! The HTTP and provider metrics are named and reported in [`crm_api::metrics`]; this module
//! adds the database's: the pool's connections (in use, idle, and requests waiting for one),
//! the duration of write transactions, and how many writes (SQLite) or reads (PostgreSQL)
//! share one transaction or statement. Every metric is listed in the README's Operations
//! section.

use std::sync::OnceLock;
use std::time::Duration;

use crate::http::Routes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::db::Database;

/// Connections of the pool, by state (`in_use`, `idle`), read when scraped.
pub const POOL_CONNECTIONS: &str = "crm_db_pool_connections";
/// The most connections the pool opens.
pub const POOL_MAX_CONNECTIONS: &str = "crm_db_pool_max_connections";
/// Requests waiting for a connection of the pool right now.
pub const POOL_WAITING: &str = "crm_db_pool_waiting";
/// Seconds a write transaction took, from the wait for `BEGIN` to the end of `COMMIT`, by
/// outcome (`commit`, `rollback`, `failed`).
pub const WRITE_TRANSACTION_DURATION: &str = "crm_db_write_transaction_duration_seconds";
/// SQLite: writes made durable by one group commit (see `group_commit`).
pub const GROUP_COMMIT_WRITES: &str = "crm_db_group_commit_writes";
/// PostgreSQL: GET reads answered by one statement (see `record_reads`).
pub const BATCHED_READS: &str = "crm_db_batched_reads";

/// Histogram buckets of every `*_duration_seconds` metric: 0.5 ms to 30 s.
const BUCKETS: [f64; 15] = crm_api::metrics::DURATION_BUCKETS;

/// How often the samples the recorder holds are folded into its histograms.
const UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// The process's recorder, installed on first use. When another recorder was installed
/// first (a program embedding the server with its own), this one still renders, but only
/// what was reported to it: nothing.
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_duration_seconds".to_owned()), &BUCKETS)
            .expect("the buckets are not empty")
            .set_buckets_for_metric(
                Matcher::Full(GROUP_COMMIT_WRITES.to_owned()),
                &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0],
            )
            .expect("the buckets are not empty")
            .set_buckets_for_metric(
                Matcher::Full(BATCHED_READS.to_owned()),
                &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0],
            )
            .expect("the buckets are not empty")
            .build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!(
                "a metrics recorder was installed already; /metrics shows none of its metrics"
            );
        } else {
            // The requests are counted beside the recorder and rendered with it (`text`).
            crm_api::metrics::tally_requests();
        }
        // A global recorder stays for the life of the process: handles may be kept.
        crm_api::metrics::keep_request_handles();
        // The recorder holds every histogram sample until an upkeep folds them into its
        // buckets: without one, a server nobody scrapes grows by every request it answers.
        // It runs on the runtime that asked first (the server's), not on a thread of its own:
        // a thread costs the allocator about 2 MB of resident memory.
        let upkept = handle.clone();
        let upkeep = move || upkept.run_upkeep();
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    let mut every = tokio::time::interval(UPKEEP_EVERY);
                    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    loop {
                        every.tick().await;
                        upkeep();
                    }
                });
            }
            Err(_) => {
                let started = std::thread::Builder::new()
                    .name("metrics-upkeep".into())
                    .spawn(move || {
                        loop {
                            std::thread::sleep(UPKEEP_EVERY);
                            upkeep();
                        }
                    });
                if let Err(e) = started {
                    tracing::warn!("could not start the metrics upkeep thread: {e}");
                }
            }
        }
        handle
    })
}

/// `GET /metrics`: every metric in the Prometheus text format, with the pool's gauges read
/// from `db` at that moment. Needs no API key.
pub fn router(db: Database) -> Routes {
    handle();
    Routes::new().route("/metrics", get(render).with_state(db))
}

async fn render(State(db): State<Database>) -> Response {
    let (size, idle, max) = db.pool_counts();
    metrics::gauge!(POOL_CONNECTIONS, "state" => "in_use").set(f64::from(size - idle));
    metrics::gauge!(POOL_CONNECTIONS, "state" => "idle").set(f64::from(idle));
    metrics::gauge!(POOL_MAX_CONNECTIONS).set(f64::from(max));
    let handle = handle();
    handle.run_upkeep();
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text(handle),
    )
        .into_response()
}

/// Every metric in the Prometheus text format: the recorder's, then the requests' (counted
/// apart, see [`crm_api::metrics::tally_requests`]).
fn text(handle: &PrometheusHandle) -> String {
    let mut text = handle.render();
    crm_api::metrics::render_requests(&mut text);
    text
}

/// Counts a request waiting for a connection of the pool while it lives.
pub struct PoolWaiting(());

impl PoolWaiting {
    pub fn start() -> PoolWaiting {
        metrics::gauge!(POOL_WAITING).increment(1.0);
        PoolWaiting(())
    }
}

impl Drop for PoolWaiting {
    fn drop(&mut self) {
        metrics::gauge!(POOL_WAITING).decrement(1.0);
    }
}

/// Records the duration of one write transaction.
pub fn write_transaction(elapsed: Duration, outcome: &'static str) {
    metrics::histogram!(WRITE_TRANSACTION_DURATION, "outcome" => outcome)
        .record(elapsed.as_secs_f64());
}

/// Records how many writes one SQLite group commit carried.
pub fn group_commit(writes: usize) {
    metrics::histogram!(GROUP_COMMIT_WRITES).record(writes as f64);
}

/// Records how many reads one PostgreSQL statement answered.
pub fn batched_reads(reads: usize) {
    metrics::histogram!(BATCHED_READS).record(reads as f64);
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crm_api::metrics::{Retry, provider_call, provider_retry, token_refresh};

    use super::*;

    #[test]
    fn what_a_connector_reports_is_rendered_with_its_labels() {
        let handle = handle();
        provider_call(
            "hubspot",
            "list_contacts",
            Some(200),
            Duration::from_millis(40),
        );
        provider_call(
            "hubspot",
            "list_contacts",
            Some(429),
            Duration::from_millis(5),
        );
        provider_call("pipedrive", "get_contact", None, Duration::from_secs(2));
        provider_retry("hubspot", Retry::RateLimited);
        token_refresh("hubspot", true);
        token_refresh("pipedrive", false);
        write_transaction(Duration::from_millis(3), "commit");
        let text = handle.render();
        for line in [
            r#"crm_provider_calls_total{provider="hubspot",operation="list_contacts",status="200"} 1"#,
            r#"crm_provider_calls_total{provider="hubspot",operation="list_contacts",status="429"} 1"#,
            r#"crm_provider_calls_total{provider="pipedrive",operation="get_contact",status="0"} 1"#,
            r#"crm_provider_rate_limited_total{provider="hubspot"} 1"#,
            r#"crm_provider_retries_total{provider="hubspot",reason="rate_limited"} 1"#,
            r#"crm_provider_token_refreshes_total{provider="hubspot",outcome="ok"} 1"#,
            r#"crm_provider_token_refreshes_total{provider="pipedrive",outcome="failed"} 1"#,
            r#"crm_provider_call_duration_seconds_bucket{provider="hubspot",operation="list_contacts",le="0.05"} 2"#,
            r#"crm_db_write_transaction_duration_seconds_count{outcome="commit"}"#,
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
    }

    #[test]
    fn requests_counted_on_every_thread_are_rendered_summed() {
        let handle = handle();
        let route = "/tally-test/{id}";
        let get = axum::http::Method::GET;
        crm_api::metrics::request(route, &get, 200, Duration::from_micros(300));
        // Another thread, which has ended by the time of the scrape.
        std::thread::scope(|s| {
            s.spawn(|| {
                crm_api::metrics::request(route, &get, 200, Duration::from_millis(2));
                crm_api::metrics::request(route, &get, 404, Duration::from_secs(40));
            });
        });
        let text = text(handle);
        let labels = r#"route="/tally-test/{id}",method="GET""#;
        for line in [
            format!(r#"crm_http_requests_total{{{labels},status="200"}} 2"#),
            format!(r#"crm_http_requests_total{{{labels},status="404"}} 1"#),
            format!(r#"crm_http_request_duration_seconds_bucket{{{labels},le="0.0005"}} 1"#),
            format!(r#"crm_http_request_duration_seconds_bucket{{{labels},le="0.001"}} 1"#),
            format!(r#"crm_http_request_duration_seconds_bucket{{{labels},le="0.0025"}} 2"#),
            format!(r#"crm_http_request_duration_seconds_bucket{{{labels},le="30"}} 2"#),
            format!(r#"crm_http_request_duration_seconds_bucket{{{labels},le="+Inf"}} 3"#),
            format!(r#"crm_http_request_duration_seconds_count{{{labels}}} 3"#),
        ] {
            assert!(
                text.contains(&format!("{line}\n")),
                "{line} missing from:\n{text}"
            );
        }
        let sum: f64 = text
            .lines()
            .find_map(|l| {
                l.strip_prefix(&format!(
                    "crm_http_request_duration_seconds_sum{{{labels}}} "
                ))
            })
            .expect("a sum")
            .parse()
            .unwrap();
        assert!((sum - 40.0023).abs() < 1e-9, "{sum}");
        // One family each, not one from the recorder beside the tallies.
        assert_eq!(
            text.matches("# TYPE crm_http_requests_total ").count(),
            1,
            "{text}"
        );
        assert_eq!(
            text.matches("# TYPE crm_http_request_duration_seconds ")
                .count(),
            1,
            "{text}"
        );
    }
}
