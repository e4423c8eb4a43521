//! `cargo xtask bench http`: the server under load beside its ceiling, per store.
//!
//! The ceiling is `crates/crm-server/examples/ceiling.rs`, built in the same release
//! profile: one axum route answering a contact's JSON (fetched from the server under test)
//! from memory. wrk (Debian's package) drives both with one thread and `--connections`
//! keep-alive connections, each row `--runs` times, a ceiling run and a server run in turn,
//! so load that comes and goes falls on both. A row's figures are the medians of its runs;
//! its share is the median of the per-run ratios of the server's requests a second to the
//! ceiling's. Export is timed on its own (one request streaming every contact). Every row
//! sends the API's headers (`Authorization`, `x-account-id`) except `/healthz`, which is
//! asked as a liveness probe asks it, with none: the same request as the ceiling's.
//!
//! Writes `<target>/bench/report.md` and `.json`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;

use super::*;

#[derive(Args)]
pub struct HttpArgs {
    /// The stores, and the contacts seeded in each (the filtered page is measured at this size).
    #[command(flatten)]
    seeding: SeedArgs,
    /// Seconds per wrk run.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Runs per row, each beside a ceiling run; the median counts.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Keep-alive connections wrk holds open.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Only these rows (by key: healthz, get, list25, list100, filtered, create, patch,
    /// patch_if_match), in the bench's order; all of them when not given. Export is timed
    /// only when every row runs.
    #[arg(long, value_delimiter = ',')]
    rows: Vec<String>,
}

/// What one wrk run measured.
#[derive(Debug, Clone, Copy)]
struct Load {
    per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
}

/// A row of the report: a request the server answers, measured against the ceiling.
struct Row {
    key: &'static str,
    title: String,
    /// wrk's Lua script for the server run; `None` sends a plain GET, as the ceiling gets.
    script: Option<String>,
    path: String,
}

/// The figures of a row on one store.
struct RowFigures {
    key: &'static str,
    title: String,
    server: Vec<Load>,
    ceiling: Vec<Load>,
}

impl RowFigures {
    fn median(values: impl Iterator<Item = f64>) -> f64 {
        let mut v: Vec<f64> = values.collect();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        if n == 0 {
            return f64::NAN;
        }
        (v[(n - 1) / 2] + v[n / 2]) / 2.0
    }

    fn per_sec(&self) -> f64 {
        Self::median(self.server.iter().map(|l| l.per_sec))
    }

    fn p50(&self) -> f64 {
        Self::median(self.server.iter().map(|l| l.p50_ms))
    }

    fn p99(&self) -> f64 {
        Self::median(self.server.iter().map(|l| l.p99_ms))
    }

    fn ceiling(&self) -> f64 {
        Self::median(self.ceiling.iter().map(|l| l.per_sec))
    }

    fn share(&self) -> f64 {
        Self::median(
            self.server
                .iter()
                .zip(&self.ceiling)
                .map(|(s, c)| s.per_sec / c.per_sec),
        )
    }
}

struct StoreFigures {
    store: Store,
    rows: Vec<RowFigures>,
    export_per_sec: Vec<f64>,
    peak_rss_mb: f64,
    seeding: Duration,
}

pub async fn run(args: HttpArgs) -> Result<()> {
    ensure!(
        args.seeding.contacts >= 1000 && args.runs > 0 && args.seconds > 0,
        "--contacts must be at least 1000, --runs and --seconds at least 1"
    );
    let wrk = which("wrk").context(
        "wrk is not installed: apt-get install wrk (the load generator of this benchmark)",
    )?;
    let exe = build_server()?;
    let ceiling = build_ceiling()?;
    let mut figures = Vec::new();
    for &store in &args.seeding.stores {
        println!("\n== {} ==", store.title());
        let run = on_store(store, &exe, &ceiling, &wrk, &args).await;
        figures.push(run.with_context(|| format!("bench http on {}", store.title()))?);
    }
    let (markdown, json) = report(&args, &figures);
    println!("\n{markdown}");
    write_report(&exe, "report", &markdown, &json)
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| Path::new(dir).join(name))
        .find(|p| p.is_file())
}

/// Builds the ceiling example in the release profile and returns its path.
fn build_ceiling() -> Result<PathBuf> {
    println!("building the ceiling: cargo build --release -p crm-server --example ceiling");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(workspace_root())
        .args([
            "build",
            "--release",
            "-p",
            "crm-server",
            "--example",
            "ceiling",
        ])
        .arg("--message-format=json-render-diagnostics")
        .stderr(Stdio::inherit())
        .output()
        .context("running cargo")?;
    ensure!(out.status.success(), "building the ceiling failed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|message| message["target"]["name"] == "ceiling")
        .find_map(|message| message["executable"].as_str().map(PathBuf::from))
        .context("cargo reported no ceiling executable")
}

/// The ceiling process; killed on drop.
struct Ceiling {
    child: Child,
    url: String,
}

impl Ceiling {
    fn start(exe: &Path, body_file: &Path) -> Result<Ceiling> {
        let mut child = Command::new(exe)
            .arg(body_file)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting the ceiling")?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped")).read_line(&mut line)?;
        Ok(Ceiling {
            child,
            url: format!("http://{}/ceiling", line.trim()),
        })
    }
}

impl Drop for Ceiling {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs wrk once against `url` (with `script` when given) and reads its figures; a run in
/// which any answer was not 2xx/3xx, or any socket error happened, is an error: it would
/// measure the wrong thing.
fn wrk(wrk: &Path, url: &str, script: Option<&Path>, args: &HttpArgs) -> Result<Load> {
    let mut command = Command::new(wrk);
    command
        .args(["-t1", "--latency"])
        .arg(format!("-c{}", args.connections))
        .arg(format!("-d{}s", args.seconds));
    if let Some(script) = script {
        command.arg("-s").arg(script);
    }
    let out = command.arg(url).output().context("running wrk")?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    ensure!(
        out.status.success(),
        "wrk failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in text.lines() {
        let line = line.trim();
        ensure!(
            !line.starts_with("Non-2xx or 3xx responses"),
            "{url}: {line}\n{text}"
        );
        ensure!(!line.starts_with("Socket errors"), "{url}: {line}\n{text}");
    }
    let per_sec = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .with_context(|| format!("no Requests/sec in wrk's output:\n{text}"))?;
    let percentile = |p: &str| -> Result<f64> {
        let value = text
            .lines()
            .find_map(|l| l.trim().strip_prefix(p))
            .map(str::trim)
            .with_context(|| format!("no {p} latency in wrk's output:\n{text}"))?;
        duration_ms(value).with_context(|| format!("wrk latency {value:?}"))
    };
    Ok(Load {
        per_sec,
        p50_ms: percentile("50%")?,
        p99_ms: percentile("99%")?,
    })
}

/// wrk's durations (`812.00us`, `1.23ms`, `2.10s`) in ms.
fn duration_ms(value: &str) -> Option<f64> {
    let split = value.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = value.split_at(split);
    let number: f64 = number.parse().ok()?;
    Some(match unit {
        "us" => number / 1e3,
        "ms" => number,
        "s" => number * 1e3,
        "m" => number * 60e3,
        _ => return None,
    })
}

/// A Lua string literal.
fn lua(text: &str) -> String {
    format!("{text:?}")
}

/// The Lua script of a server run: the request's method, headers and body, and with
/// several `paths` a different one for each request in turn.
fn script(
    api: &Api,
    method: &str,
    paths: &[String],
    body: Option<&Value>,
    extra: &[(&str, &str)],
) -> String {
    let mut s = format!(
        "wrk.method = {}\nwrk.headers[\"Authorization\"] = {}\nwrk.headers[\"x-account-id\"] = {}\n",
        lua(method),
        lua(&format!("Bearer {}", api.key)),
        lua(&api.account)
    );
    for (name, value) in extra {
        let _ = writeln!(s, "wrk.headers[{}] = {}", lua(name), lua(value));
    }
    if let Some(body) = body {
        let _ = writeln!(
            s,
            "wrk.headers[\"Content-Type\"] = \"application/json\"\nwrk.body = {}",
            lua(&body.to_string())
        );
    }
    if paths.len() > 1 {
        let list: Vec<String> = paths.iter().map(|p| lua(p)).collect();
        let _ = write!(
            s,
            "local paths = {{{}}}\nlocal i = 0\nrequest = function()\n  i = i % #paths + 1\n  return wrk.format(nil, paths[i])\nend\n",
            list.join(", ")
        );
    }
    s
}

async fn on_store(
    store: Store,
    exe: &Path,
    ceiling_exe: &Path,
    wrk_exe: &Path,
    args: &HttpArgs,
) -> Result<StoreFigures> {
    let seeded = Seeded::new(store, args.seeding.contacts).await?;
    let (db, account, cutoff) = (&seeded.db, &seeded.account, seeded.cutoff);
    // Contacts to read and update: the first thousand created.
    let ids: Vec<String> = sqlx::query_scalar(
        "SELECT id FROM records WHERE linked_account_id = $1 AND kind = $2 ORDER BY seq LIMIT 1000",
    )
    .bind(account)
    .bind(Contact::KIND)
    .fetch_all(db.pool())
    .await?;
    db.close().await;

    let server = Server::start(exe, &seeded.instance.url)?;
    let api = Api {
        client: reqwest::Client::new(),
        base: server.base.clone(),
        key: seeded.key.clone(),
        account: account.clone(),
    };
    api.wait_ready().await?;
    seeded.update_matching(&api).await?;

    // The ceiling serves the contact exactly as the server does.
    let contact = api
        .client
        .get(format!("{}/unified/crm/contacts/{}", api.base, ids[0]))
        .bearer_auth(&api.key)
        .header("x-account-id", &api.account)
        .send()
        .await?
        .bytes()
        .await?;
    let work = tempfile::tempdir()?;
    let body_file = work.path().join("contact.json");
    std::fs::write(&body_file, &contact)?;
    println!("the contact is {} bytes", contact.len());
    let ceiling = Ceiling::start(ceiling_exe, &body_file)?;

    let filter = cutoff.to_rfc3339_opts(SecondsFormat::Micros, true);
    let patches: Vec<String> = ids
        .iter()
        .map(|id| format!("/unified/crm/contacts/{id}"))
        .collect();
    let row = |key,
               title: String,
               method,
               paths: Vec<String>,
               body: Option<Value>,
               extra: &[(&str, &str)]| Row {
        key,
        title,
        script: Some(script(&api, method, &paths, body.as_ref(), extra)),
        path: paths[0].clone(),
    };
    let get =
        |key, title: &str, path: String| row(key, title.to_owned(), "GET", vec![path], None, &[]);
    let rows = [
        // As a liveness probe asks, without credentials: the same request as the ceiling's,
        // so the row measures the edge alone (the "no auth, no database").
        Row {
            key: "healthz",
            title: "`GET /healthz`".to_owned(),
            script: None,
            path: "/healthz".to_owned(),
        },
        get(
            "get",
            "GET contact",
            format!("/unified/crm/contacts/{}", ids[1]),
        ),
        get(
            "list25",
            "list, `page_size=25`",
            "/unified/crm/contacts?page_size=25".into(),
        ),
        get(
            "list100",
            "list, `page_size=100`",
            "/unified/crm/contacts?page_size=100".into(),
        ),
        get(
            "filtered",
            &format!(
                "filtered page (`filter[updated_after]`, 10 of {} match)",
                args.seeding.contacts
            ),
            format!("/unified/crm/contacts?page_size=100&filter[updated_after]={filter}"),
        ),
        row(
            "create",
            "create".into(),
            "POST",
            vec!["/unified/crm/contacts".into()],
            Some(
                json!({"first_name": "Bench", "last_name": "Mark", "emails": ["bench@example.com"]}),
            ),
            &[],
        ),
        row(
            "patch",
            "PATCH".into(),
            "PATCH",
            patches.clone(),
            Some(json!({"first_name": "Patched"})),
            &[],
        ),
        row(
            "patch_if_match",
            "PATCH with `If-Match: *`".into(),
            "PATCH",
            patches,
            Some(json!({"first_name": "Matched"})),
            &[("If-Match", "*")],
        ),
    ];

    if let Some(unknown) = args
        .rows
        .iter()
        .find(|key| !rows.iter().any(|r| r.key == key.as_str()))
    {
        anyhow::bail!("--rows: no row named {unknown:?}");
    }
    let mut figures = Vec::new();
    for row in rows
        .iter()
        .filter(|r| args.rows.is_empty() || args.rows.iter().any(|k| k == r.key))
    {
        let script_path = work.path().join(format!("{}.lua", row.key));
        if let Some(script) = &row.script {
            std::fs::File::create(&script_path)?.write_all(script.as_bytes())?;
        }
        let script_path = row.script.as_ref().map(|_| script_path.as_path());
        let target = format!("{}{}", api.base, row.path);
        let mut measured = RowFigures {
            key: row.key,
            title: row.title.clone(),
            server: Vec::new(),
            ceiling: Vec::new(),
        };
        for run in 0..args.runs {
            // The ceiling first on even runs, the server first on odd ones.
            let mut pair = [None, None];
            for turn in 0..2 {
                let server_turn = (turn + run) % 2 == 1;
                let load = if server_turn {
                    wrk(wrk_exe, &target, script_path, args)?
                } else {
                    wrk(wrk_exe, &ceiling.url, None, args)?
                };
                pair[usize::from(server_turn)] = Some(load);
            }
            let [Some(c), Some(s)] = pair else {
                unreachable!("both ran")
            };
            println!(
                "{:<16} run {}: {:>9.0} req/s (p50 {:.2} ms, p99 {:.2} ms); ceiling {:>9.0} req/s; share {:.1}%",
                row.key,
                run + 1,
                s.per_sec,
                s.p50_ms,
                s.p99_ms,
                c.per_sec,
                100.0 * s.per_sec / c.per_sec
            );
            measured.server.push(s);
            measured.ceiling.push(c);
        }
        figures.push(measured);
    }

    let mut export_per_sec = Vec::new();
    for run in 0..if args.rows.is_empty() { args.runs } else { 0 } {
        let started = Instant::now();
        let mut response = api
            .request(reqwest::Method::GET, "/unified/crm/export/contacts")
            .send()
            .await?;
        ensure!(
            response.status().is_success(),
            "export: {}",
            response.status()
        );
        let mut lines = 0u64;
        while let Some(chunk) = response.chunk().await? {
            lines += chunk.iter().filter(|&&b| b == b'\n').count() as u64;
        }
        let rate = lines as f64 / started.elapsed().as_secs_f64();
        println!(
            "export           run {}: {lines} contacts, {rate:.0} contacts/s",
            run + 1
        );
        export_per_sec.push(rate);
    }
    let peak_rss_mb = peak_rss_mb(server.child.id())?;
    println!("server peak RSS: {peak_rss_mb:.1} MB");
    drop(ceiling);
    drop(server);
    Ok(StoreFigures {
        store,
        rows: figures,
        export_per_sec,
        peak_rss_mb,
        seeding: seeded.seeding,
    })
}

/// The peak resident set of a process (`VmHWM`), in MB.
fn peak_rss_mb(pid: u32) -> Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmHWM in /proc/<pid>/status")?;
    Ok(kb / 1024.0)
}

/// A target of the speed issue: a row's figure against a bound.
struct Target {
    store: Store,
    what: &'static str,
    key: &'static str,
    /// `share` (of the ceiling), `per_sec`, `p99` (ms, at most) or `rss` (MB, at most).
    measure: &'static str,
    bound: f64,
}

const TARGETS: &[Target] = &[
    Target {
        store: Store::Sqlite,
        what: "`GET /healthz` ≥ 85% of the ceiling",
        key: "healthz",
        measure: "share",
        bound: 0.85,
    },
    Target {
        store: Store::Sqlite,
        what: "GET contact ≥ 50% of the ceiling",
        key: "get",
        measure: "share",
        bound: 0.50,
    },
    Target {
        store: Store::Sqlite,
        what: "list, `page_size=100` ≥ 10% of the ceiling",
        key: "list100",
        measure: "share",
        bound: 0.10,
    },
    Target {
        store: Store::Sqlite,
        what: "create ≥ 10,000 a second",
        key: "create",
        measure: "per_sec",
        bound: 10_000.0,
    },
    Target {
        store: Store::Sqlite,
        what: "create p99 ≤ 25 ms",
        key: "create",
        measure: "p99",
        bound: 25.0,
    },
    Target {
        store: Store::Sqlite,
        what: "PATCH ≥ 10,000 a second",
        key: "patch",
        measure: "per_sec",
        bound: 10_000.0,
    },
    Target {
        store: Store::Sqlite,
        what: "PATCH p99 ≤ 25 ms",
        key: "patch",
        measure: "p99",
        bound: 25.0,
    },
    Target {
        store: Store::Sqlite,
        what: "server peak RSS ≤ 64 MB",
        key: "",
        measure: "rss",
        bound: 64.0,
    },
    Target {
        store: Store::Postgres,
        what: "GET contact ≥ 30% of the ceiling",
        key: "get",
        measure: "share",
        bound: 0.30,
    },
    Target {
        store: Store::Postgres,
        what: "create ≥ 5,000 a second",
        key: "create",
        measure: "per_sec",
        bound: 5_000.0,
    },
];

fn report(args: &HttpArgs, figures: &[StoreFigures]) -> (String, Value) {
    let mut md = String::new();
    let _ = writeln!(md, "# cargo xtask bench http\n");
    let _ = writeln!(
        md,
        "wrk -t1 -c{} -d{}s, {} runs per row, each beside a ceiling run (one axum route serving \
         the same contact's JSON from memory); medians. {} contacts seeded per store. Machine: {}.\n",
        args.connections,
        args.seconds,
        args.runs,
        args.seeding.contacts,
        machine()
    );
    let mut json_stores = Vec::new();
    for store in figures {
        let _ = writeln!(md, "## {}\n", store.store.title());
        let _ = writeln!(
            md,
            "| row | req/s | p50 ms | p99 ms | ceiling req/s | share of the ceiling |"
        );
        let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|");
        let mut json_rows = BTreeMap::new();
        for row in &store.rows {
            let _ = writeln!(
                md,
                "| {} | {:.0} | {:.2} | {:.2} | {:.0} | {:.1}% |",
                row.title,
                row.per_sec(),
                row.p50(),
                row.p99(),
                row.ceiling(),
                100.0 * row.share()
            );
            json_rows.insert(
                row.key,
                json!({
                    "title": row.title,
                    "per_sec": row.per_sec(),
                    "p50_ms": row.p50(),
                    "p99_ms": row.p99(),
                    "ceiling_per_sec": row.ceiling(),
                    "share": row.share(),
                    "runs": row.server.iter().zip(&row.ceiling).map(|(s, c)| json!({
                        "per_sec": s.per_sec, "p50_ms": s.p50_ms, "p99_ms": s.p99_ms,
                        "ceiling_per_sec": c.per_sec,
                    })).collect::<Vec<_>>(),
                }),
            );
        }
        let export = RowFigures::median(store.export_per_sec.iter().copied());
        let export_shown = if store.export_per_sec.is_empty() {
            "not measured".to_owned()
        } else {
            format!("{export:.0} contacts/s")
        };
        let _ = writeln!(
            md,
            "\nExport: {export_shown}. Server peak RSS: {:.1} MB. Seeding took {:.0} s.\n",
            store.peak_rss_mb,
            store.seeding.as_secs_f64()
        );
        let mut json_targets = Vec::new();
        let targets: Vec<&Target> = TARGETS.iter().filter(|t| t.store == store.store).collect();
        if !targets.is_empty() {
            let _ = writeln!(md, "| target | measured | met |\n|---|---:|---|");
        }
        for target in targets {
            let row = store.rows.iter().find(|r| r.key == target.key);
            let (value, shown, met) = match (target.measure, row) {
                ("share", Some(r)) => (
                    r.share(),
                    format!("{:.1}%", 100.0 * r.share()),
                    r.share() >= target.bound,
                ),
                ("per_sec", Some(r)) => (
                    r.per_sec(),
                    format!("{:.0}/s", r.per_sec()),
                    r.per_sec() >= target.bound,
                ),
                ("p99", Some(r)) => (
                    r.p99(),
                    format!("{:.1} ms", r.p99()),
                    r.p99() <= target.bound,
                ),
                ("rss", _) => (
                    store.peak_rss_mb,
                    format!("{:.1} MB", store.peak_rss_mb),
                    store.peak_rss_mb <= target.bound,
                ),
                _ => (f64::NAN, "not measured".into(), false),
            };
            let _ = writeln!(
                md,
                "| {} | {shown} | {} |",
                target.what,
                if met { "yes" } else { "**no**" }
            );
            json_targets.push(json!({"target": target.what, "value": value, "met": met}));
        }
        md.push('\n');
        json_stores.push(json!({
            "store": store.store.title(),
            "rows": json_rows,
            "export_contacts_per_sec": export,
            "export_runs": store.export_per_sec,
            "peak_rss_mb": store.peak_rss_mb,
            "seeding_secs": store.seeding.as_secs_f64(),
            "targets": json_targets,
        }));
    }
    let json = json!({
        "benchmark": "http",
        "machine": machine(),
        "wrk": {"threads": 1, "connections": args.connections, "seconds": args.seconds},
        "runs": args.runs,
        "contacts": args.seeding.contacts,
        "stores": json_stores,
    });
    (md, json)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrk_durations_read_in_ms() {
        assert_eq!(duration_ms("812.00us"), Some(0.812));
        assert_eq!(duration_ms("1.50ms"), Some(1.5));
        assert_eq!(duration_ms("2.00s"), Some(2000.0));
        assert_eq!(duration_ms("fast"), None);
    }

    #[test]
    fn a_share_is_the_median_of_per_run_ratios() {
        let load = |per_sec| Load {
            per_sec,
            p50_ms: 1.0,
            p99_ms: 2.0,
        };
        let row = RowFigures {
            key: "get",
            title: "GET".into(),
            server: vec![load(10.0), load(30.0), load(20.0)],
            ceiling: vec![load(100.0), load(60.0), load(100.0)],
        };
        assert_eq!(row.per_sec(), 20.0);
        assert_eq!(row.share(), 0.2);
    }
}
