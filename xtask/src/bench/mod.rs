//! `cargo xtask bench`: figures of the release server on both stores, side by side
//! (`http`: the server under load beside its ceiling; `listing`: the listing at a million
//! contacts).
//!
//! A benchmark builds the release server, gives it each store in turn (a SQLite file in a
//! temporary directory; a PostgreSQL server of its own from `crm-testkit`, with `fsync` and
//! `synchronous_commit` on), seeds the store directly, starts the server on it, measures
//! over HTTP and writes `<target>/bench/<name>.md` and `.json`. Machines are shared and
//! noisy, so a figure is the median (and 90th percentile) of many sequential requests, the
//! scenarios being compared run in interleaved rounds, and targets are ratios between them.
//! These are measurements, not tests: a missed target is reported, not failed.
//!
//! A new benchmark is a variant of [`Bench`] with its own run function, reusing
//! [`build_server`], [`StoreInstance`], [`Server`], [`Api`], [`Stats`] and [`write_report`].

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, ensure};
use chrono::{DateTime, SecondsFormat, Utc};
use clap::{Args, Subcommand, ValueEnum};
use crm_api::models::Contact;
use crm_server::db::timestamp;
use crm_server::local::{self, Order, Position};
use crm_server::rules::{self, Resource as _};
use crm_server::{Database, PoolSettings, StoreKind};
use serde_json::{Value, json};
use sqlx::{AssertSqlSafe, Row as _};

use xtask::workspace_root;

mod http;

#[derive(Subcommand)]
pub enum Bench {
    /// The server under load (wrk) beside its ceiling, a minimal axum route, per store:
    /// health, GET, lists, a filtered page, create, PATCH, export, peak RSS; writes
    /// `<target>/bench/report.md` and `.json`.
    Http(http::HttpArgs),
    /// The contacts listing of one linked account: the first page, a page of
    /// `filter[updated_after]` where 10 contacts match, and a deep page by cursor.
    Listing(ListingArgs),
}

#[derive(Args)]
pub struct ListingArgs {
    #[command(flatten)]
    seeding: SeedArgs,
    /// Timed requests per scenario, after the warm-up rounds.
    #[arg(long, default_value_t = 200)]
    repetitions: usize,
}

/// What every benchmark measures on: the stores, one after the other, each seeded fresh.
#[derive(Args)]
pub struct SeedArgs {
    /// The stores to measure, one after the other.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "sqlite,postgres"
    )]
    stores: Vec<Store>,
    /// How many contacts to seed in each.
    #[arg(long, default_value_t = 1_000_000)]
    contacts: u64,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Store {
    Sqlite,
    Postgres,
}

impl Store {
    fn title(self) -> &'static str {
        match self {
            Store::Sqlite => "SQLite",
            Store::Postgres => "PostgreSQL",
        }
    }
}

pub fn run(bench: Bench) -> Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    match bench {
        Bench::Http(args) => runtime.block_on(http::run(args)),
        Bench::Listing(args) => runtime.block_on(listing(args)),
    }
}

// ---------------------------------------------------------------------------------------
// What every benchmark uses.

/// Builds the release server (with the cargo, and so the target directory, running this
/// command) and returns the executable's path.
fn build_server() -> Result<PathBuf> {
    println!("building the release server: cargo build --release -p crm-server");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(workspace_root())
        .args(["build", "--release", "-p", "crm-server"])
        .arg("--message-format=json-render-diagnostics")
        .stderr(Stdio::inherit())
        .output()
        .context("running cargo")?;
    ensure!(
        out.status.success(),
        "cargo build --release -p crm-server failed"
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|message| message["target"]["name"] == "crm-server")
        .find_map(|message| message["executable"].as_str().map(PathBuf::from))
        .context("cargo reported no crm-server executable")
}

/// A fresh store, alive as long as this value: its `--database`.
struct StoreInstance {
    url: String,
    _dir: tempfile::TempDir,
    _cluster: Option<crm_testkit::PgCluster>,
}

impl StoreInstance {
    async fn new(store: Store) -> Result<StoreInstance> {
        let dir = tempfile::Builder::new().prefix("crm-bench-").tempdir()?;
        let (url, cluster) = match store {
            Store::Sqlite => (dir.path().join("crm.db").display().to_string(), None),
            Store::Postgres => {
                let cluster = crm_testkit::PgCluster::start_new();
                // A PostgreSQL on the same machine is reached through its Unix socket.
                let over_tcp = cluster.create_database().await;
                let name = over_tcp.rsplit('/').next().context("a database URL")?;
                (cluster.socket_url_for(name), Some(cluster))
            }
        };
        Ok(StoreInstance {
            url,
            _dir: dir,
            _cluster: cluster,
        })
    }
}

/// The release server running on a store; killed on drop.
struct Server {
    child: Child,
    base: String,
}

impl Server {
    fn start(exe: &Path, database: &str) -> Result<Server> {
        let mut child = Command::new(exe)
            .env("CRM_DATABASE", database)
            // Warnings only, and the start-up line that names the address.
            .args(["--log-level", "warn,crm_server=info,crm_server::http=warn"])
            .args(["--log-format", "json", "serve", "--listen", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", exe.display()))?;
        let stderr = child.stderr.take().expect("stderr is piped");
        let mut server = Server {
            child,
            base: String::new(),
        };
        let (found, address) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let log: Value = serde_json::from_str(&line).unwrap_or_default();
                match log["fields"]["address"].as_str() {
                    Some(a) if log["fields"]["message"] == "listening" => {
                        let _ = found.send(a.to_owned());
                    }
                    _ => eprintln!("server: {line}"),
                }
            }
        });
        let address = address
            .recv_timeout(Duration::from_secs(60))
            .context("the server did not log the address it listens on")?;
        server.base = format!("http://{address}");
        Ok(server)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Calls to the API as one linked account, over one keep-alive connection.
struct Api {
    client: reqwest::Client,
    base: String,
    key: String,
    account: String,
}

impl Api {
    async fn wait_ready(&self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ready = self
                .client
                .get(format!("{}/readyz", self.base))
                .send()
                .await;
            if ready.is_ok_and(|r| r.status().is_success()) {
                return Ok(());
            }
            ensure!(
                Instant::now() < deadline,
                "the server was not ready within 60 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.key)
            .header("x-account-id", &self.account)
    }

    async fn json(&self, request: reqwest::RequestBuilder) -> Result<Value> {
        let response = request.send().await?;
        let status = response.status();
        let body = response.text().await?;
        ensure!(status.is_success(), "{status}: {body}");
        Ok(serde_json::from_str(&body)?)
    }

    /// The time of one GET, from sending it to having read the whole body, in ms.
    async fn time_get(&self, path: &str) -> Result<f64> {
        let started = Instant::now();
        let response = self.request(reqwest::Method::GET, path).send().await?;
        let status = response.status();
        response.bytes().await?;
        let ms = started.elapsed().as_secs_f64() * 1e3;
        ensure!(status.is_success(), "GET {path}: {status}");
        Ok(ms)
    }
}

/// Median and 90th percentile (nearest rank) of a sample, in ms.
#[derive(Clone, Copy)]
struct Stats {
    median: f64,
    p90: f64,
}

impl Stats {
    fn of(mut sample: Vec<f64>) -> Stats {
        sample.sort_by(f64::total_cmp);
        let n = sample.len();
        Stats {
            median: (sample[(n - 1) / 2] + sample[n / 2]) / 2.0,
            p90: sample[(n * 9).div_ceil(10) - 1],
        }
    }
}

/// Times `paths` in `rounds` interleaved rounds (the order turning each round, so load
/// that comes and goes falls on every scenario alike), after `warm_up` untimed rounds.
async fn measure(api: &Api, paths: &[String], warm_up: usize, rounds: usize) -> Result<Vec<Stats>> {
    let mut samples = vec![Vec::with_capacity(rounds); paths.len()];
    for round in 0..warm_up + rounds {
        for k in 0..paths.len() {
            let i = (round + k) % paths.len();
            let ms = api.time_get(&paths[i]).await?;
            if round >= warm_up {
                samples[i].push(ms);
            }
        }
    }
    Ok(samples.into_iter().map(Stats::of).collect())
}

/// The machine the figures come from.
fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name")?.split_once(':'))
        .map_or("unknown CPU", |(_, m)| m.trim());
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load = load
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ");
    format!("{cpus} CPUs, {model}; load average at the end {load}")
}

/// Writes `<target>/bench/<name>.md` and `.json`; the target directory is the one the
/// server was built in.
fn write_report(exe: &Path, name: &str, markdown: &str, json: &Value) -> Result<()> {
    let target = exe
        .parent()
        .and_then(Path::parent)
        .context("the server is not in <target>/release")?;
    let dir = target.join("bench");
    std::fs::create_dir_all(&dir)?;
    for (path, text) in [
        (dir.join(format!("{name}.md")), markdown.to_owned()),
        (
            dir.join(format!("{name}.json")),
            serde_json::to_string_pretty(json)? + "\n",
        ),
    ] {
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// `bench listing`.

const PAGE_SIZE: usize = 100;
/// How many contacts are updated after the filter's time.
const MATCHING: usize = 10;
/// Where the deep page starts, as a share of the listing.
const DEPTH: f64 = 0.9;
const WARM_UP_ROUNDS: usize = 20;
/// Rows per INSERT and INSERTs per transaction while seeding.
const SEED_ROWS: u64 = 1000;
const SEED_STATEMENTS: usize = 10;

/// The scenarios, in the order of their figures: key, title.
const SCENARIOS: [(&str, &str); 3] = [
    ("first", "first page, unfiltered"),
    ("filtered", "`filter[updated_after]` page, 10 match"),
    ("deep", "deep page by cursor"),
];
/// Ratios of medians with their targets: (key, numerator, target).
const TARGETS: [(&str, usize, f64); 2] = [("filtered / first", 1, 1.5), ("deep / first", 2, 1.2)];

struct ListingRun {
    store: Store,
    seeding: Duration,
    stats: Vec<Stats>,
    plans: Vec<(String, String)>,
}

async fn listing(args: ListingArgs) -> Result<()> {
    ensure!(
        args.seeding.contacts >= 10 * PAGE_SIZE as u64 && args.repetitions > 0,
        "--contacts must be at least {} and --repetitions at least 1",
        10 * PAGE_SIZE
    );
    let exe = build_server()?;
    let mut runs = Vec::new();
    for &store in &args.seeding.stores {
        println!("\n== {} ==", store.title());
        let run = listing_on(store, &exe, &args).await;
        runs.push(run.with_context(|| format!("bench listing on {}", store.title()))?);
    }
    let (markdown, json) = listing_report(&args, &runs);
    println!("\n{markdown}");
    write_report(&exe, "listing", &markdown, &json)
}

/// A fresh store seeded straight into the database with contacts of one linked account,
/// updated a minute apart up to 10 minutes ago, and analysed.
struct Seeded {
    instance: StoreInstance,
    db: Database,
    key: String,
    account: String,
    /// [`MATCHING`] contacts spread over the listing, for [`Seeded::update_matching`].
    to_update: Vec<String>,
    /// Every seeded contact was updated before this time.
    cutoff: DateTime<Utc>,
    seeding: Duration,
}

impl Seeded {
    async fn new(store: Store, contacts: u64) -> Result<Seeded> {
        let instance = StoreInstance::new(store).await?;
        let url = instance.url.parse().map_err(anyhow::Error::msg)?;
        let db = Database::open(&url, PoolSettings::default()).await?;
        let tenancy = crm_server::Tenancy::new(db.clone(), Arc::new(crm_server::SystemClock));
        let first = crm_server::bootstrap_if_empty(&tenancy)
            .await?
            .context("the new store already has a project")?;
        let account = first.account.id;
        let latest = Utc::now() - chrono::Duration::minutes(10);
        let started = Instant::now();
        let to_update = seed(&db, &account, contacts, latest).await?;
        let statement = db.pick("ANALYZE", "VACUUM (ANALYZE) records");
        sqlx::raw_sql(statement).execute(db.pool()).await?;
        let seeding = started.elapsed();
        println!("seeded and analysed in {:.1} s", seeding.as_secs_f64());
        Ok(Seeded {
            instance,
            db,
            key: first.key,
            account,
            to_update,
            cutoff: latest + chrono::Duration::minutes(1),
            seeding,
        })
    }

    /// Updates the [`MATCHING`] contacts through the API, after the cutoff: the filtered
    /// page finds exactly them.
    async fn update_matching(&self, api: &Api) -> Result<()> {
        for id in &self.to_update {
            let update = api.request(
                reqwest::Method::PATCH,
                &format!("/unified/crm/contacts/{id}"),
            );
            api.json(update.json(&json!({ "last_name": "Updated" })))
                .await?;
        }
        Ok(())
    }
}

async fn listing_on(store: Store, exe: &Path, args: &ListingArgs) -> Result<ListingRun> {
    let seeded = Seeded::new(store, args.seeding.contacts).await?;
    let (db, account, cutoff, seeding) =
        (&seeded.db, &seeded.account, seeded.cutoff, seeded.seeding);
    let server = Server::start(exe, &seeded.instance.url)?;
    let api = Api {
        client: reqwest::Client::new(),
        base: server.base.clone(),
        key: seeded.key.clone(),
        account: account.clone(),
    };
    api.wait_ready().await?;
    seeded.update_matching(&api).await?;

    // The deep page starts after the record at DEPTH of the listing.
    let depth = (args.seeding.contacts as f64 * DEPTH) as i64;
    let around = sqlx::query(
        "SELECT created_pos, seq, id FROM records WHERE linked_account_id = $1 AND kind = $2
         ORDER BY created_pos, seq LIMIT 2 OFFSET $3",
    )
    .bind(account)
    .bind(Contact::KIND)
    .bind(depth - 1)
    .fetch_all(db.pool())
    .await?;
    let after = Position {
        order: Order::Created,
        pos: around[0].get("created_pos"),
        seq: around[0].get("seq"),
    };
    let expected_first: String = around[1].get("id");

    let list = format!("/unified/crm/contacts?page_size={PAGE_SIZE}");
    let filter = cutoff.to_rfc3339_opts(SecondsFormat::Micros, true);
    let paths = vec![
        list.clone(),
        format!("{list}&filter[updated_after]={filter}"),
        format!("{list}&next={}", after.cursor()),
    ];
    // A benchmark of the wrong thing is worse than none: check what each page serves.
    let page = |i: usize| api.json(api.request(reqwest::Method::GET, &paths[i]));
    let (plain, filtered, deep) = (page(0).await?, page(1).await?, page(2).await?);
    let served = |page: &Value| page["data"].as_array().map_or(0, Vec::len);
    ensure!(served(&plain) == PAGE_SIZE, "the first page is not full");
    ensure!(
        served(&filtered) == MATCHING && filtered["next"].is_null(),
        "the filtered listing serves {} contacts, not {MATCHING}",
        served(&filtered)
    );
    ensure!(
        served(&deep) == PAGE_SIZE && deep["data"][0]["id"] == expected_first.as_str(),
        "the deep page is not the {PAGE_SIZE} contacts after position {depth}"
    );

    println!(
        "measuring: {WARM_UP_ROUNDS} warm-up and {} timed rounds of {} pages",
        args.repetitions,
        paths.len()
    );
    let stats = measure(&api, &paths, WARM_UP_ROUNDS, args.repetitions).await?;
    let plans = plans(db, account, &cutoff, after).await?;
    drop(server);
    db.close().await;
    Ok(ListingRun {
        store,
        seeding,
        stats,
        plans,
    })
}

/// Writes `n` contacts into `account` directly, oldest first, the last one updated at
/// `latest`; returns the ids of MATCHING of them spread over the listing. A thread makes
/// the rows while the store inserts the previous batch.
async fn seed(db: &Database, account: &str, n: u64, latest: DateTime<Utc>) -> Result<Vec<String>> {
    // One position per contact, as the server gives, all below zero: below every position
    // a write takes on either store, and below every PostgreSQL reader's horizon.
    let insert = |rows: usize| {
        let values: Vec<String> = (0..rows)
            .map(|r| {
                let (id, body, at, pos) = (4 * r + 3, 4 * r + 4, 4 * r + 5, 4 * r + 6);
                format!("($1, $2, ${id}, ${body}, ${at}, ${at}, ${pos}, ${pos})")
            })
            .collect();
        format!(
            "INSERT INTO records (linked_account_id, kind, id, body, created_at, updated_at, \
             created_pos, updated_pos) VALUES {}",
            values.join(", ")
        )
    };
    let (batches, mut ready) = tokio::sync::mpsc::channel::<Vec<(String, String, String, i64)>>(4);
    let maker = std::thread::spawn(move || -> Result<Vec<String>> {
        let every = n / MATCHING as u64;
        let mut chosen = Vec::with_capacity(MATCHING);
        for start in (0..n).step_by(SEED_ROWS as usize) {
            let batch = (start..n.min(start + SEED_ROWS))
                .map(|i| {
                    let id = uuid::Uuid::new_v4().to_string();
                    let at = latest - chrono::Duration::minutes((n - 1 - i) as i64);
                    if i % every == every / 2 && chosen.len() < MATCHING {
                        chosen.push(id.clone());
                    }
                    let body = contact(i, &id, at)?;
                    Ok((id, body, timestamp(at), i as i64 - n as i64))
                })
                .collect::<Result<_>>()?;
            if batches.blocking_send(batch).is_err() {
                break; // the inserts failed
            }
        }
        Ok(chosen)
    });
    let started = Instant::now();
    let (mut done, mut statements, mut shown) = (0, 0, 0);
    let mut tx = db.begin_write().await?;
    while let Some(batch) = ready.recv().await {
        done += batch.len() as u64;
        let mut query = sqlx::query(AssertSqlSafe(insert(batch.len())))
            .bind(account)
            .bind(Contact::KIND);
        for (id, body, at, position) in batch {
            query = query.bind(id).bind(body).bind(at).bind(position);
        }
        query.execute(&mut *tx).await?;
        statements += 1;
        if statements % SEED_STATEMENTS == 0 {
            tx.commit().await?;
            tx = db.begin_write().await?;
        }
        if done * 10 / n > shown {
            shown = done * 10 / n;
            let secs = started.elapsed().as_secs_f64();
            let rate = done as f64 / secs;
            println!("seeded {done:>9} / {n} contacts in {secs:6.1} s ({rate:.0} a second)");
        }
    }
    tx.commit().await?;
    let chosen = maker
        .join()
        .map_err(|_| anyhow::anyhow!("making the rows panicked"))??;
    ensure!(done == n, "seeded {done} contacts, not {n}");
    Ok(chosen)
}

/// A contact as the server stores it, created at `at`.
fn contact(i: u64, id: &str, at: DateTime<Utc>) -> Result<String> {
    let Value::Object(sent) = json!({
        "first_name": format!("First{i}"),
        "last_name": format!("Last{i}"),
        "emails": [format!("contact{i}@example.com")],
    }) else {
        unreachable!("an object")
    };
    let record = rules::new_record::<Contact>(&sent, id, at)?;
    let stored = rules::to_object(&rules::typed::<Contact>(&record)?)?;
    Ok(Value::Object(stored).to_string())
}

/// The plans of the page queries as the server runs them (`crm_server::local`'s own
/// statements), on the values of this run.
async fn plans(
    db: &Database,
    account: &str,
    cutoff: &DateTime<Utc>,
    deep: Position,
) -> Result<Vec<(String, String)>> {
    let cutoff = timestamp(*cutoff);
    let start: Option<i64> = sqlx::query(local::incremental_start_query(db))
        .bind(account)
        .bind(Contact::KIND)
        .bind(&cutoff)
        .fetch_one(db.pool())
        .await?
        .get("first");
    let start = start.context("no contact matches the filter")?;
    let limit = Arg::Int(PAGE_SIZE as i64 + 1);
    let queries = [
        (
            "first page",
            local::page_query(db, Order::Created),
            vec![Arg::Int(i64::MIN), Arg::Int(i64::MIN), limit.clone()],
        ),
        (
            "filtered: where it starts",
            local::incremental_start_query(db),
            vec![Arg::Text(cutoff.clone())],
        ),
        (
            "filtered: the page",
            local::page_query(db, Order::Updated),
            vec![
                Arg::Int(start - 1),
                Arg::Int(i64::MAX),
                limit.clone(),
                Arg::Text(cutoff),
            ],
        ),
        (
            "deep page",
            local::page_query(db, Order::Created),
            vec![Arg::Int(deep.pos), Arg::Int(deep.seq), limit],
        ),
    ];
    let mut plans = Vec::new();
    let mut conn = db.pool().acquire().await?;
    for (name, sql, rest) in queries {
        let args: Vec<Arg> = [Arg::Text(account.into()), Arg::Text(Contact::KIND.into())]
            .into_iter()
            .chain(rest)
            .collect();
        let lines: Vec<String> = match db.kind() {
            StoreKind::Sqlite => {
                let explain = format!("EXPLAIN QUERY PLAN {sql}");
                let mut query = sqlx::query(AssertSqlSafe(explain));
                for arg in args {
                    query = match arg {
                        Arg::Int(n) => query.bind(n),
                        Arg::Text(s) => query.bind(s),
                    };
                }
                let rows = query.fetch_all(&mut *conn).await?;
                rows.iter().map(|r| r.get("detail")).collect()
            }
            StoreKind::Postgres => {
                // A prepared statement, as the server's: after five runs PostgreSQL may
                // switch to a generic plan, so the sixth run shows the plan it keeps.
                let values: Vec<String> = args
                    .iter()
                    .map(|arg| match arg {
                        Arg::Int(n) => format!("'{n}'"),
                        Arg::Text(s) => format!("'{}'", s.replace('\'', "''")),
                    })
                    .collect();
                let execute = format!("EXECUTE bench_plan({})", values.join(", "));
                let script =
                    format!("PREPARE bench_plan AS {sql};") + &format!("{execute};").repeat(5);
                sqlx::raw_sql(AssertSqlSafe(script))
                    .execute(&mut *conn)
                    .await?;
                let explain = format!("EXPLAIN (ANALYZE, BUFFERS) {execute}");
                let rows = sqlx::query(AssertSqlSafe(explain))
                    .fetch_all(&mut *conn)
                    .await?;
                sqlx::raw_sql("DEALLOCATE bench_plan")
                    .execute(&mut *conn)
                    .await?;
                rows.iter().map(|r| r.get(0)).collect()
            }
        };
        plans.push((name.to_owned(), lines.join("\n")));
    }
    Ok(plans)
}

#[derive(Clone)]
enum Arg {
    Int(i64),
    Text(String),
}

fn listing_report(args: &ListingArgs, runs: &[ListingRun]) -> (String, Value) {
    let machine = machine();
    let mut md = format!(
        "# cargo xtask bench listing\n\n\
         {} contacts in one linked account, `page_size={PAGE_SIZE}`; {} timed requests per \
         scenario after {WARM_UP_ROUNDS} warm-up rounds, sequential over one keep-alive \
         connection, from sending to the whole body read; the deep page starts after {:.0}% \
         of the listing. Times in ms.\n\nMachine: {machine}.\n\n",
        args.seeding.contacts,
        args.repetitions,
        DEPTH * 100.0,
    );
    let columns: String = runs
        .iter()
        .map(|r| format!(" {0} median | {0} p90 |", r.store.title()))
        .collect();
    md += &format!(
        "| scenario |{columns}\n|---|{}\n",
        "---:|---:|".repeat(runs.len())
    );
    for (i, (_, title)) in SCENARIOS.iter().enumerate() {
        let cells: String = runs
            .iter()
            .map(|r| format!(" {:.2} | {:.2} |", r.stats[i].median, r.stats[i].p90))
            .collect();
        md += &format!("| {title} |{cells}\n");
    }
    let columns: String = runs
        .iter()
        .map(|r| format!(" {} |", r.store.title()))
        .collect();
    md += &format!(
        "\n| ratio of medians | target |{columns}\n|---|---:|{}\n",
        "---|".repeat(runs.len())
    );
    let ratio =
        |run: &ListingRun, numerator: usize| run.stats[numerator].median / run.stats[0].median;
    for (name, numerator, target) in TARGETS {
        let cells: String = runs
            .iter()
            .map(|r| {
                let ratio = ratio(r, numerator);
                format!(
                    " {ratio:.2} {} |",
                    if ratio <= target {
                        "met"
                    } else {
                        "**NOT MET**"
                    }
                )
            })
            .collect();
        md += &format!("| {name} | ≤ {target} |{cells}\n");
    }
    md += "\nSeeding (direct inserts, then ANALYZE; VACUUM ANALYZE on PostgreSQL): ";
    let seeding: Vec<String> = runs
        .iter()
        .map(|r| format!("{} {:.1} s", r.store.title(), r.seeding.as_secs_f64()))
        .collect();
    md += &(seeding.join(", ") + ".\n");
    for run in runs {
        md += &format!("\n## Plans on {}\n", run.store.title());
        for (name, plan) in &run.plans {
            md += &format!("\n{name}:\n\n```\n{plan}\n```\n");
        }
    }
    let json = json!({
        "contacts": args.seeding.contacts,
        "page_size": PAGE_SIZE,
        "repetitions": args.repetitions,
        "warm_up_rounds": WARM_UP_ROUNDS,
        "machine": machine,
        "stores": runs.iter().map(|r| json!({
            "store": r.store.title(),
            "seeding_secs": r.seeding.as_secs_f64(),
            "scenarios": SCENARIOS.iter().zip(&r.stats).map(|((key, _), s)| {
                json!({ "scenario": key, "median_ms": s.median, "p90_ms": s.p90 })
            }).collect::<Vec<_>>(),
            "ratios": TARGETS.iter().map(|&(name, numerator, target)| {
                let ratio = ratio(r, numerator);
                json!({ "ratio": name, "value": ratio, "target": target, "met": ratio <= target })
            }).collect::<Vec<_>>(),
            "plans": r.plans.iter().map(|(name, plan)| json!({ "query": name, "plan": plan })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    });
    (md, json)
}
