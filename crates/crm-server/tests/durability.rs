//! Durability under SIGKILL: writers create and update contacts as fast as the server
//! answers; the server is killed mid-stream, restarted on the same database, and every
//! acknowledged create and update must be there, and every record whole.
//!
//! Every write of a contact sets all its fields to one version, so a half-applied write
//! shows as a record whose fields disagree.

mod server_process;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use server_process::{PATIENCE, ServerProcess, database};
use tokio::sync::Mutex;

const ROUNDS: usize = 5;
const WRITERS: usize = 4;

/// What the test knows of one contact, named by its tag.
#[derive(Debug, Clone, Default)]
struct Known {
    id: Option<String>,
    /// The last version the server acknowledged.
    acked: Option<u64>,
    /// A version sent and not acknowledged: it may or may not have landed.
    in_flight: Option<u64>,
}

type Ledger = Arc<Mutex<BTreeMap<String, Known>>>;

fn body(tag: &str, version: u64) -> Value {
    let v = format!("{tag}~v{version}");
    json!({
        "first_name": v,
        "last_name": v,
        "company_name": v,
        "emails": [format!("{tag}.v{version}@example.com")],
        "phone_numbers": [v],
    })
}

/// The tag and version a stored contact carries, if all its fields agree on them.
fn whole(contact: &Value) -> Result<(String, u64), String> {
    let first = contact["first_name"].as_str().ok_or("no first_name")?;
    let (tag, version) = first
        .rsplit_once("~v")
        .ok_or("first_name is not a version")?;
    let version: u64 = version.parse().map_err(|_| "bad version")?;
    let expected = body(tag, version);
    for field in [
        "first_name",
        "last_name",
        "company_name",
        "emails",
        "phone_numbers",
    ] {
        if contact[field] != expected[field] {
            return Err(format!(
                "{field} is {} in a version {version} record",
                contact[field]
            ));
        }
    }
    Ok((tag.to_owned(), version))
}

struct Client {
    http: reqwest::Client,
    base: String,
    key: String,
    account: String,
}

impl Client {
    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .basic_auth(&self.key, Some(""))
            .header("x-account-id", &self.account)
    }
}

/// Writes until the server stops answering: a new contact, or the next version of one of
/// this writer's contacts, one request at a time.
async fn writer(
    client: Arc<Client>,
    ledger: Ledger,
    round: usize,
    writer: usize,
    acks: Arc<AtomicUsize>,
    killed: Arc<AtomicBool>,
) {
    let mut mine: Vec<String> = ledger
        .lock()
        .await
        .iter()
        .filter(|(tag, k)| tag.starts_with(&format!("w{writer}-")) && k.id.is_some())
        .map(|(tag, _)| tag.clone())
        .collect();
    let mut step = 0usize;
    while !killed.load(Ordering::SeqCst) {
        step += 1;
        // Two updates for every create, spread over the writer's contacts.
        let update = !mine.is_empty() && !step.is_multiple_of(3);
        let (tag, version, id) = if update {
            let tag = mine[(step * 7 + writer) % mine.len()].clone();
            let known = ledger.lock().await[&tag].clone();
            (tag, known.acked.unwrap() + 1, known.id)
        } else {
            (format!("w{writer}-r{round}-s{step}"), 0, None)
        };
        ledger
            .lock()
            .await
            .entry(tag.clone())
            .or_default()
            .in_flight = Some(version);
        let request = match &id {
            Some(id) => client.request(
                reqwest::Method::PATCH,
                &format!("/unified/crm/contacts/{id}"),
            ),
            None => client.request(reqwest::Method::POST, "/unified/crm/contacts"),
        };
        let Ok(response) = request.json(&body(&tag, version)).send().await else {
            break;
        };
        let status = response.status();
        let Ok(answer) = response.json::<Value>().await else {
            break;
        };
        assert_eq!(status, 200, "{answer}");
        let mut ledger = ledger.lock().await;
        let known = ledger.get_mut(&tag).unwrap();
        known.id = Some(answer["data"]["id"].as_str().unwrap().to_owned());
        known.acked = Some(version);
        known.in_flight = None;
        drop(ledger);
        if !update {
            mine.push(tag);
        }
        acks.fetch_add(1, Ordering::SeqCst);
    }
}

/// Every contact the server holds, following `next` to the end.
async fn all_contacts(client: &Client) -> Vec<Value> {
    let mut all = Vec::new();
    let mut next: Option<String> = None;
    loop {
        let mut request = client
            .request(reqwest::Method::GET, "/unified/crm/contacts")
            .query(&[("page_size", "100")]);
        if let Some(cursor) = &next {
            request = request.query(&[("next", cursor)]);
        }
        let page: Value = request.send().await.unwrap().json().await.unwrap();
        all.extend(page["data"].as_array().unwrap().iter().cloned());
        match page["next"].as_str() {
            Some(cursor) => next = Some(cursor.to_owned()),
            None => return all,
        }
    }
}

/// Checks the restarted server against the ledger, then folds what it found into the
/// ledger: a write in flight at the kill either landed whole or not at all.
async fn verify(client: &Client, ledger: &Ledger) -> usize {
    let stored = all_contacts(client).await;
    let mut by_tag: BTreeMap<String, (String, u64)> = BTreeMap::new();
    for contact in &stored {
        let (tag, version) =
            whole(contact).unwrap_or_else(|e| panic!("half-applied write: {e}: {contact}"));
        let id = contact["id"].as_str().unwrap().to_owned();
        assert!(
            by_tag.insert(tag.clone(), (id, version)).is_none(),
            "{tag} stored twice"
        );
    }
    let mut ledger = ledger.lock().await;
    for (tag, known) in ledger.iter_mut() {
        match (known.acked, by_tag.get(tag)) {
            (Some(acked), Some((id, version))) => {
                assert_eq!(Some(id), known.id.as_ref(), "{tag} changed id");
                let allowed = *version == acked
                    || (known.in_flight == Some(acked + 1) && *version == acked + 1);
                assert!(
                    allowed,
                    "{tag}: stored v{version}, acknowledged v{acked}, in flight {:?}",
                    known.in_flight
                );
                known.acked = Some(*version);
            }
            (Some(acked), None) => panic!("{tag}: acknowledged v{acked} is lost"),
            (None, Some((id, version))) => {
                // A create in flight at the kill that landed.
                assert_eq!(known.in_flight, Some(0), "{tag} was never sent");
                assert_eq!(*version, 0);
                known.id = Some(id.clone());
                known.acked = Some(0);
            }
            (None, None) => {}
        }
        known.in_flight = None;
    }
    for tag in by_tag.keys() {
        assert!(ledger.contains_key(tag), "{tag} was never written");
    }
    ledger.retain(|_, k| k.acked.is_some());
    stored.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_sigkill() {
    let database = database().await;
    let path = database.url();
    let http = reqwest::Client::builder()
        .timeout(PATIENCE)
        .build()
        .unwrap();
    let ledger: Ledger = Arc::default();
    let mut credentials = None;
    let mut records_checked = 0;
    let mut writes_in_flight_at_kill = 0;
    let mut acked_total = 0;
    for round in 0..ROUNDS {
        let server = ServerProcess::start(path, round == 0, "warn,crm_server=info", &[]);
        if let Some(bootstrap) = &server.bootstrap {
            credentials = Some(bootstrap.clone());
        }
        let (key, account) = credentials.clone().unwrap();
        server.ready(&http).await;
        let client = Arc::new(Client {
            http: http.clone(),
            base: server.base_url.clone(),
            key,
            account,
        });
        if round > 0 {
            records_checked += verify(&client, &ledger).await;
        }

        let acks = Arc::new(AtomicUsize::new(0));
        let killed = Arc::new(AtomicBool::new(false));
        let mut writers = Vec::new();
        for w in 0..WRITERS {
            writers.push(tokio::spawn(writer(
                Arc::clone(&client),
                Arc::clone(&ledger),
                round,
                w,
                Arc::clone(&acks),
                Arc::clone(&killed),
            )));
        }
        // Kill at a different point of the stream every round.
        let kill_after = 40 + 37 * round;
        let deadline = std::time::Instant::now() + PATIENCE;
        while acks.load(Ordering::SeqCst) < kill_after {
            assert!(std::time::Instant::now() < deadline, "the writers stalled");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        server.kill();
        killed.store(true, Ordering::SeqCst);
        for w in writers {
            w.await.unwrap();
        }
        acked_total += acks.load(Ordering::SeqCst);
        writes_in_flight_at_kill += ledger
            .lock()
            .await
            .values()
            .filter(|k| k.in_flight.is_some())
            .count();
    }
    // The last restart, and the final check.
    let server = ServerProcess::start(path, false, "warn,crm_server=info", &[]);
    server.ready(&http).await;
    let (key, account) = credentials.unwrap();
    let client = Client {
        http: http.clone(),
        base: server.base_url.clone(),
        key,
        account,
    };
    records_checked += verify(&client, &ledger).await;
    assert!(
        writes_in_flight_at_kill > 0,
        "no write was in flight at any kill: the test did not test"
    );
    println!(
        "durability: {ROUNDS} SIGKILL rounds, {acked_total} acknowledged writes, \
         {writes_in_flight_at_kill} writes in flight at the kills, {records_checked} records checked after restarts"
    );
}
