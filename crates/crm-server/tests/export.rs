//! Export Contacts streams every contact of a linked account as NDJSON in constant memory:
//! 100,000 contacts, each arriving once, while the server's resident memory is sampled.

use std::collections::HashSet;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crm_api::models::{Contact, ContactEmailAddress};
use futures::StreamExt;

const CONTACTS: usize = 100_000;

fn id_of(i: usize) -> String {
    format!("00000000-0000-4000-8000-{i:012}")
}

/// Writes `CONTACTS` contacts straight into the store, in one transaction.
async fn seed(db: &crm_server::Database, account_id: &str) {
    let now = chrono::Utc::now();
    let stamp = now.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
    let mut tx = db.pool().begin().await.unwrap();
    for i in 0..CONTACTS {
        let id = id_of(i);
        let email = format!("person{i}@example.com");
        let contact = Contact {
            id: Some(id.clone()),
            remote_id: Some(id.clone()),
            first_name: Some(format!("First{i}")),
            last_name: Some(format!("Last{i}")),
            company_name: Some("Example Ltd".into()),
            title: Some("Buyer".into()),
            emails: Some(vec![email.clone()]),
            email_addresses: Some(vec![ContactEmailAddress {
                email: Some(email),
                email_type: Some("work".into()),
            }]),
            phone_numbers: Some(vec![format!("+1 555 {i:07}")]),
            created_at: Some(now),
            updated_at: Some(now),
            etag: Some(format!("{i:016x}")),
            ..Default::default()
        };
        sqlx::query(
            "INSERT INTO records (linked_account_id, kind, id, body, created_at, updated_at, created_pos, updated_pos)
             VALUES ($1, 'contacts', $2, $3, $4, $4, 0, 0)",
        )
        .bind(account_id)
        .bind(&id)
        .bind(serde_json::to_string(&contact).unwrap())
        .bind(&stamp)
        .execute(&mut *tx)
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
}

/// The resident set size of a process, in KiB.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn export_streams_every_contact_once_in_constant_memory() {
    let database = crm_testkit::TestDatabase::new(crm_testkit::Store::from_env()).await;
    let url: crm_server::DatabaseUrl = database.url().parse().unwrap();
    let db = crm_server::Database::open(&url, crm_server::PoolSettings::default())
        .await
        .unwrap();
    let tenancy = crm_server::Tenancy::new(db.clone(), Arc::new(crm_server::SystemClock));
    let first = crm_server::bootstrap_if_empty(&tenancy)
        .await
        .unwrap()
        .unwrap();
    let started = Instant::now();
    seed(&db, &first.account.id).await;
    println!("seeded {CONTACTS} contacts in {:.1?}", started.elapsed());
    db.close().await;

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server = Server(
        Command::new(env!("CARGO_BIN_EXE_crm-server"))
            .args([
                "--database",
                database.url(),
                "--log-level",
                "warn",
                "serve",
                "--listen",
            ])
            .arg(format!("127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let pid = server.0.id();
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while http
        .get(format!("{base}/unified/crm/contacts"))
        .send()
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "the server did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let baseline = rss_kib(pid).unwrap();

    let sampling = Arc::new(AtomicBool::new(true));
    let peak = Arc::new(AtomicU64::new(baseline));
    let sampler = {
        let (sampling, peak) = (sampling.clone(), peak.clone());
        tokio::spawn(async move {
            while sampling.load(Ordering::Relaxed) {
                peak.fetch_max(rss_kib(pid).unwrap_or(0), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    let mut peak_at_quarter = None;

    let started = Instant::now();
    let response = http
        .get(format!("{base}/unified/crm/export/contacts"))
        .bearer_auth(&first.key)
        .header("x-account-id", &first.account.id)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/x-ndjson");
    let mut seen = HashSet::with_capacity(CONTACTS);
    let mut lines = 0usize;
    let mut bytes = 0usize;
    let mut pending: Vec<u8> = Vec::new();
    let mut body = response.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.unwrap();
        bytes += chunk.len();
        pending.extend_from_slice(&chunk);
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let contact: Contact = serde_json::from_slice(&line[..line.len() - 1]).unwrap();
            lines += 1;
            assert!(seen.insert(contact.id.unwrap()), "a contact arrived twice");
            if lines == CONTACTS / 4 {
                peak_at_quarter = Some((peak.load(Ordering::Relaxed), bytes));
            }
        }
    }
    let elapsed = started.elapsed();
    sampling.store(false, Ordering::Relaxed);
    sampler.await.unwrap();
    let peak = peak.load(Ordering::Relaxed);
    let (peak_at_quarter, bytes_at_quarter) = peak_at_quarter.unwrap();
    assert!(pending.is_empty(), "the stream ends with a whole line");
    assert_eq!(lines, CONTACTS);
    assert!(
        (0..CONTACTS).all(|i| seen.contains(&id_of(i))),
        "every contact arrived"
    );

    let mib = |kib: u64| kib as f64 / 1024.0;
    let growth = peak.saturating_sub(baseline);
    let late_growth = peak.saturating_sub(peak_at_quarter);
    let late_bytes = bytes - bytes_at_quarter;
    println!(
        "exported {lines} contacts ({:.1} MiB) in {elapsed:.1?}; server RSS {:.1} MiB before, \
         {:.1} MiB peak after the first quarter, {:.1} MiB peak at the end (+{:.1} MiB in all, \
         +{:.1} MiB over the last {:.1} MiB streamed)",
        bytes as f64 / 1048576.0,
        mib(baseline),
        mib(peak_at_quarter),
        mib(peak),
        mib(growth),
        mib(late_growth),
        late_bytes as f64 / 1048576.0,
    );
    // Flat: once the first batches are read, streaming three times as much again adds
    // (almost) nothing; and the server never holds more than a fraction of what it sent.
    assert!(
        (late_growth as usize) * 1024 < late_bytes / 8,
        "server memory kept growing: +{late_growth} KiB over the last {late_bytes} bytes"
    );
    assert!(
        (growth as usize) * 1024 < bytes / 2,
        "server memory grew by {growth} KiB while streaming {bytes} bytes"
    );
}
