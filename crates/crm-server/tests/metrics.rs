//! `GET /metrics` of the real binary: every metric the README lists shows after a varied run,
//! each rejection is counted under its reason, and label values stay bounded: no id of a
//! record, key or account ever becomes a label. Also `--metrics-listen`, and the settings
//! checks of `serve --check-config` with secrets read from files.

mod server_process;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::Duration;

use serde_json::json;
use server_process::{ServerProcess, binary, database};
use tokio::io::AsyncWriteExt;

/// One sample of the Prometheus text format: name, labels, value.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses the samples of a Prometheus text exposition (comments skipped).
fn samples(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let (series, value) = line.rsplit_once(' ').expect("a sample has a value");
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => (name, rest.strip_suffix('}').expect("labels close")),
            None => (series, ""),
        };
        let mut parsed = BTreeMap::new();
        let mut rest = labels;
        while !rest.is_empty() {
            let (key, after) = rest.split_once("=\"").expect("label=\"value\"");
            let end = after.find('"').expect("a closing quote");
            parsed.insert(key.to_owned(), after[..end].to_owned());
            rest = after[end + 1..].trim_start_matches(',');
        }
        out.push(Sample {
            name: name.to_owned(),
            labels: parsed,
            value: value.parse().expect("a number"),
        });
    }
    out
}

/// The route templates a `route` label may take: every path of the spec, the routes the
/// server adds beside it, and the one for requests that match none.
fn known_routes() -> BTreeSet<String> {
    let spec: serde_json::Value = serde_yaml::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../openapi/crm.yaml"
        ))
        .unwrap(),
    )
    .unwrap();
    let mut routes: BTreeSet<String> = spec["paths"].as_object().unwrap().keys().cloned().collect();
    for extra in [
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
        "/openapi.yaml",
        "/docs",
        "<unmatched>",
    ] {
        routes.insert(extra.to_owned());
    }
    routes
}

/// Every label value that is out of bounds in `text`: a route that is no template, a method
/// or status or reason outside its set, or anything that carries one of the `secrets` (ids
/// of records, keys, accounts).
fn unbounded_labels(text: &str, secrets: &[String]) -> Vec<String> {
    let routes = known_routes();
    let methods = [
        "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "TRACE", "CONNECT", "other",
    ];
    let reasons = crm_api::metrics::Rejection::ALL.map(|r| r.label());
    let mut found = Vec::new();
    for sample in samples(text) {
        for (key, value) in &sample.labels {
            let ok = match key.as_str() {
                "route" => routes.contains(value),
                "method" => methods.contains(&value.as_str()),
                "status" => value.len() == 3 && value.bytes().all(|b| b.is_ascii_digit()),
                "reason" => reasons.contains(&value.as_str()),
                "state" => ["in_use", "idle"].contains(&value.as_str()),
                "outcome" => ["commit", "rollback", "failed"].contains(&value.as_str()),
                "le" | "quantile" => value.parse::<f64>().is_ok() || value == "+Inf",
                _ => false,
            };
            if !ok || secrets.iter().any(|s| value.contains(s.as_str())) {
                found.push(format!("{}: {key}={value:?}", sample.name));
            }
        }
    }
    found
}

fn total(text: &str, name: &str, label: Option<(&str, &str)>) -> f64 {
    samples(text)
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| label.is_none_or(|(k, v)| s.labels.get(k).map(String::as_str) == Some(v)))
        .map(|s| s.value)
        .sum()
}

#[tokio::test]
async fn a_varied_run_shows_every_metric_with_bounded_labels() {
    let database = database().await;
    let server = ServerProcess::start(
        database.url(),
        true,
        "info",
        &[
            "--rate-limit-per-minute",
            "30",
            "--max-body-bytes",
            "4096",
            "--max-headers",
            "40",
            "--request-timeout-secs",
            "1",
        ],
    );
    let (key, account) = server.bootstrap.clone().unwrap();
    let http = reqwest::Client::new();
    server.ready(&http).await;
    let base = &server.base_url;
    let crm = |method: reqwest::Method, path: &str| {
        http.request(method, format!("{base}{path}"))
            .basic_auth(&key, Some(""))
            .header("x-account-id", &account)
    };

    // Records created, read, listed, updated; one create replayed by its Idempotency-Key.
    let mut ids = Vec::new();
    for i in 0..3 {
        let created: serde_json::Value = crm(reqwest::Method::POST, "/unified/crm/contacts")
            .header("Idempotency-Key", format!("metrics-{i}"))
            .json(&json!({"last_name": format!("Metrics {i}")}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        ids.push(created["data"]["id"].as_str().unwrap().to_owned());
    }
    let replayed = crm(reqwest::Method::POST, "/unified/crm/contacts")
        .header("Idempotency-Key", "metrics-0")
        .json(&json!({"last_name": "Metrics 0"}))
        .send()
        .await
        .unwrap();
    assert_eq!(replayed.headers()["idempotent-replayed"], "true");
    for id in &ids {
        let path = format!("/unified/crm/contacts/{id}");
        assert_eq!(
            crm(reqwest::Method::GET, &path)
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
        let patched = crm(reqwest::Method::PATCH, &path)
            .json(&json!({"first_name": "Ada"}))
            .send()
            .await
            .unwrap();
        assert_eq!(patched.status(), 200);
    }
    let listed = crm(reqwest::Method::GET, "/unified/crm/contacts?page_size=2")
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), 200);
    let missing = crm(
        reqwest::Method::GET,
        "/unified/crm/contacts/no-such-contact",
    )
    .send()
    .await
    .unwrap();
    assert_eq!(missing.status(), 404);
    let odd_method = crm(
        reqwest::Method::from_bytes(b"BREW").unwrap(),
        "/unified/crm/contacts",
    )
    .send()
    .await
    .unwrap();
    assert_eq!(odd_method.status(), 405);
    let nowhere = http
        .get(format!("{base}/nowhere/{}", ids[0]))
        .send()
        .await
        .unwrap();
    assert_eq!(nowhere.status(), 404);

    // Each kind of rejection once.
    let unauthorized = http
        .get(format!("{base}/unified/crm/contacts"))
        .basic_auth("not-a-key", Some(""))
        .header("x-account-id", &account)
        .send()
        .await
        .unwrap();
    assert_eq!(unauthorized.status(), 401);
    let no_account = http
        .get(format!("{base}/unified/crm/contacts"))
        .basic_auth(&key, Some(""))
        .header("x-account-id", "00000000-0000-0000-0000-00000000dead")
        .send()
        .await
        .unwrap();
    assert_eq!(no_account.status(), 404);
    let too_large = crm(reqwest::Method::POST, "/unified/crm/contacts")
        .json(&json!({"last_name": "x".repeat(8192)}))
        .send()
        .await
        .unwrap();
    assert_eq!(too_large.status(), 413);
    let mut headers = crm(reqwest::Method::GET, "/unified/crm/contacts");
    for i in 0..50 {
        headers = headers.header(format!("x-filler-{i}"), "1");
    }
    assert_eq!(headers.send().await.unwrap().status(), 431);
    // A body announced but never sent: the request times out.
    let mut stream = tokio::net::TcpStream::connect(&server.addr).await.unwrap();
    stream
        .write_all(
            format!(
                "POST /unified/crm/contacts HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {key}\r\n\
                 x-account-id: {account}\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{{"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        use tokio::io::AsyncReadExt;
        let _ = stream.read_to_end(&mut answer).await;
    })
    .await;
    assert!(
        String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 408"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    // Spend the rate limit.
    let mut limited = false;
    for _ in 0..40 {
        if crm(reqwest::Method::GET, "/unified/crm/contacts")
            .send()
            .await
            .unwrap()
            .status()
            == 429
        {
            limited = true;
            break;
        }
    }
    assert!(limited, "the rate limit answered 429");

    // The scrape needs no key.
    let scraped = http.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(scraped.status(), 200);
    assert!(
        scraped.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = scraped.text().await.unwrap();

    let requests = "crm_http_requests_total";
    assert!(
        total(
            &text,
            requests,
            Some(("route", "/unified/crm/contacts/{id}"))
        ) >= 6.0,
        "{text}"
    );
    assert!(
        total(&text, requests, Some(("method", "other"))) >= 1.0,
        "{text}"
    );
    assert!(
        total(
            &text,
            "crm_http_request_duration_seconds_count",
            Some(("route", "/unified/crm/contacts"))
        ) >= 1.0
    );
    for reason in crm_api::metrics::Rejection::ALL {
        assert!(
            total(
                &text,
                "crm_http_rejections_total",
                Some(("reason", reason.label()))
            ) >= 1.0,
            "no rejection counted as {}:\n{text}",
            reason.label()
        );
    }
    assert_eq!(
        total(&text, "crm_idempotency_replays_total", None),
        1.0,
        "{text}"
    );
    assert!(
        total(
            &text,
            "crm_db_write_transaction_duration_seconds_count",
            Some(("outcome", "commit"))
        ) >= 6.0
    );
    // On PostgreSQL a GET of a record by id that passed its checks is read by a batched
    // statement.
    if database.store() == crm_testkit::Store::Postgres {
        assert!(
            total(&text, "crm_db_batched_reads_sum", None) >= 1.0,
            "{text}"
        );
    }
    for gauge in ["crm_db_pool_waiting", "crm_db_pool_max_connections"] {
        assert!(
            samples(&text).iter().any(|s| s.name == gauge),
            "{gauge} missing:\n{text}"
        );
    }
    assert!(
        samples(&text)
            .iter()
            .any(|s| s.name == "crm_db_pool_connections" && s.labels["state"] == "in_use")
    );

    let key_id = key
        .strip_prefix("crm_")
        .and_then(|rest| rest.split_once('_'))
        .map(|(id, _)| id.to_owned())
        .expect("keys are crm_<id>_<secret>");
    let mut secrets = ids.clone();
    secrets.extend([account.clone(), key_id, key.clone()]);
    let unbounded = unbounded_labels(&text, &secrets);
    assert!(
        unbounded.is_empty(),
        "labels out of bounds:\n{}",
        unbounded.join("\n")
    );
    let series = samples(&text).len();
    println!("metrics: {series} samples after the varied run");
    assert!(series < 1000, "{series} samples");

    server.terminate();
}

#[test]
fn the_label_check_catches_an_id_or_an_unknown_value() {
    let id = "8187e5da-dc77-475e-9949-af0f1fa4e4e3";
    let good = "crm_http_requests_total{route=\"/unified/crm/contacts/{id}\",method=\"GET\",status=\"200\"} 3\n";
    assert!(unbounded_labels(good, &[id.to_owned()]).is_empty());
    for bad in [
        format!("crm_http_requests_total{{route=\"/unified/crm/contacts/{id}\",method=\"GET\",status=\"200\"}} 1\n"),
        "crm_http_requests_total{route=\"/unified/crm/contacts/{id}\",method=\"BREW\",status=\"200\"} 1\n".to_owned(),
        format!("crm_http_rejections_total{{reason=\"account {id}\"}} 1\n"),
        format!("crm_provider_calls_total{{account=\"{id}\"}} 1\n"),
    ] {
        assert!(!unbounded_labels(&bad, &[id.to_owned()]).is_empty(), "not caught: {bad}");
    }
}

#[tokio::test]
async fn metrics_listen_serves_metrics_on_their_own_address_only() {
    let database = database().await;
    let server = ServerProcess::start(
        database.url(),
        true,
        "info",
        &["--metrics-listen", "127.0.0.1:0"],
    );
    let http = reqwest::Client::new();
    server.ready(&http).await;
    let event = server
        .wait_for_log(|e| e["fields"]["message"] == "serving /metrics")
        .await;
    let address = event["fields"]["address"].as_str().unwrap();
    let scraped = http
        .get(format!("http://{address}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(scraped.status(), 200);
    assert!(
        scraped
            .text()
            .await
            .unwrap()
            .contains("crm_db_pool_connections")
    );
    let beside = http
        .get(format!("{}/metrics", server.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(beside.status(), 404, "not served beside the API as well");
    server.terminate();
}

fn check_config(args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let mut command = Command::new(binary());
    command
        .args(args)
        .env_remove("CRM_DATABASE")
        .env_remove("CRM_DATABASE_FILE");
    for (name, value) in env {
        command.env(name, value);
    }
    let output = command.output().unwrap();
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

#[tokio::test]
async fn check_config_names_every_problem_and_never_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("crm.db");
    let db = db.to_str().unwrap();
    let (ok, out) = check_config(&["--database", db, "serve", "--check-config"], &[]);
    assert!(ok, "{out}");
    assert!(out.contains("the configuration is valid"), "{out}");
    assert!(
        !std::path::Path::new(db).exists(),
        "--check-config creates nothing"
    );

    // Several problems at once, one line each; the exit code is 1.
    let (ok, out) = check_config(
        &[
            "--log-format",
            "xml",
            "--database",
            db,
            "serve",
            "--check-config",
            "--listen",
            "nope",
            "--public-url",
            "ftp://x",
        ],
        &[("CRM_MAX_HEADERS", "-1")],
    );
    assert!(!ok);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    for setting in ["--log-format", "--listen", "--public-url", "--max-headers"] {
        assert!(
            lines.iter().any(|l| l.starts_with(setting)),
            "{setting}: {out}"
        );
    }

    // A secret from a file works; given twice, it is refused; neither shows the password.
    let secret_url = "postgres://crm:s3cret-pw@127.0.0.1:1/crm?connect_timeout=2";
    let file = dir.path().join("database-url");
    std::fs::write(&file, format!("{secret_url}\n")).unwrap();
    let file = file.to_str().unwrap();
    let (ok, out) = check_config(&["serve", "--check-config"], &[("CRM_DATABASE_FILE", file)]);
    assert!(!ok, "nothing listens on port 1: {out}");
    assert!(
        out.contains("cannot connect to postgres://crm:********@127.0.0.1:1/crm"),
        "{out}"
    );
    let (ok, out) = check_config(
        &["serve", "--check-config"],
        &[("CRM_DATABASE_FILE", file), ("CRM_DATABASE", secret_url)],
    );
    assert!(!ok);
    assert!(out.contains("given twice"), "{out}");
    // The same refusal stops a real start, before anything is opened.
    let (ok, out) = check_config(&["--database", db, "serve"], &[("CRM_DATABASE_FILE", file)]);
    assert!(!ok);
    assert!(out.contains("given twice"), "{out}");
    assert!(!std::path::Path::new(db).exists());
    for (_, out) in [
        check_config(&["serve", "--check-config"], &[("CRM_DATABASE_FILE", file)]),
        check_config(&["--database", secret_url, "serve", "--check-config"], &[]),
    ] {
        assert!(!out.contains("s3cret-pw"), "{out}");
    }

    // A reachable database from a file passes.
    let database = database().await;
    let reachable = dir.path().join("reachable");
    std::fs::write(&reachable, database.url()).unwrap();
    let (ok, out) = check_config(
        &["serve", "--check-config"],
        &[("CRM_DATABASE_FILE", reachable.to_str().unwrap())],
    );
    assert!(ok, "{out}");
}
