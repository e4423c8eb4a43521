//! The `crm-server` binary: `serve` runs the API; `admin` manages projects, keys and
//! linked accounts.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use crm_server::providers::{Credentials, SecretKey, Vault};
use crm_server::{Clock, Database, DatabaseUrl, PoolSettings, SystemClock, Tenancy, tenancy};
use tracing_subscriber::EnvFilter;

/// mimalloc instead of the C library's allocator: a request allocates and frees many small
/// objects across two threads, and glibc's malloc took about 12% of the server's time in a
/// profile of `GET /healthz` under load (see docs/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "crm-server", version, about = "The unified CRM API server")]
struct Cli {
    /// The database: a SQLite file path (created if missing) or `sqlite:` URL, or a
    /// `postgres://user:password@host/db` URL [default: crm.db]. As a secret it may instead
    /// be read from the file named by CRM_DATABASE_FILE.
    #[arg(long, env = "CRM_DATABASE", global = true, hide_env_values = true)]
    database: Option<String>,
    /// The most database connections this process opens.
    #[arg(long, env = "CRM_DATABASE_POOL_SIZE", default_value_t = PoolSettings::default().max_connections.to_string(), global = true)]
    database_pool_size: String,
    /// Log filter: a level (error, warn, info, debug, trace) or a tracing directive list.
    #[arg(long, env = "CRM_LOG", default_value = "info", global = true)]
    log_level: String,
    /// Log format: text or json.
    #[arg(long, env = "CRM_LOG_FORMAT", default_value = "text", global = true)]
    log_format: String,
    /// The secret key that seals the credentials of linked HubSpot and Pipedrive accounts:
    /// 32 random bytes, base64 (`admin generate-secret-key` prints one). Best given in the
    /// environment, not on a command line.
    #[arg(
        long,
        env = "CRM_SECRET_KEY",
        global = true,
        hide = true,
        hide_env_values = true
    )]
    secret_key: Option<String>,
    /// A file holding the secret key instead of CRM_SECRET_KEY.
    #[arg(long, env = "CRM_SECRET_KEY_FILE", global = true)]
    secret_key_file: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the API server.
    Serve {
        /// The address to listen on.
        #[arg(long, env = "CRM_LISTEN", default_value = "127.0.0.1:8080")]
        listen: String,
        /// The largest request body accepted, in bytes (larger: 413).
        #[arg(long, env = "CRM_MAX_BODY_BYTES", default_value_t = crm_server::DEFAULT_MAX_BODY_BYTES.to_string())]
        max_body_bytes: String,
        /// The largest request line and headers accepted, in bytes (larger: 431).
        #[arg(long, env = "CRM_MAX_HEADER_BYTES", default_value_t = crm_server::http::DEFAULT_MAX_HEADER_BYTES.to_string())]
        max_header_bytes: String,
        /// The most header fields a request may carry (more: 431).
        #[arg(long, env = "CRM_MAX_HEADERS", default_value_t = crm_server::http::DEFAULT_MAX_HEADERS.to_string())]
        max_headers: String,
        /// Seconds a request may take before it is answered 408; 0 waits forever.
        #[arg(long, env = "CRM_REQUEST_TIMEOUT_SECS", default_value_t = crm_server::http::DEFAULT_REQUEST_TIMEOUT.as_secs().to_string())]
        request_timeout_secs: String,
        /// Requests a minute allowed per API key, answered 429 with Retry-After beyond;
        /// 0 (the default) is no limit.
        #[arg(long, env = "CRM_RATE_LIMIT_PER_MINUTE", default_value = "0")]
        rate_limit_per_minute: String,
        /// The origin clients reach the server at (e.g. `https://crm.example.com` behind a
        /// load balancer), named as the server in `/openapi.json` and `/docs`; without it
        /// they name the relative URL `/`, the origin they were fetched from.
        #[arg(long, env = "CRM_PUBLIC_URL")]
        public_url: Option<String>,
        /// Serve `GET /metrics` (Prometheus) on this address of its own instead of beside the
        /// API on --listen.
        #[arg(long, env = "CRM_METRICS_LISTEN")]
        metrics_listen: Option<String>,
        /// Calls in flight to its provider per linked HubSpot or Pipedrive account, from
        /// this server; more wait for a slot, so one busy tenant cannot spend a portal's
        /// rate budget for the others.
        #[arg(long, env = "CRM_PROVIDER_CONCURRENCY", default_value = "4")]
        provider_concurrency: String,
        /// Check every setting (and that the database can be reached), print one line per
        /// problem, and exit: 0 when there is none, 1 otherwise. Starts nothing and changes
        /// nothing.
        #[arg(long)]
        check_config: bool,
    },
    /// Manages projects, API keys and linked accounts.
    Admin {
        #[command(subcommand)]
        command: Admin,
    },
}

#[derive(Subcommand)]
enum Admin {
    /// Creates a project.
    CreateProject {
        #[arg(long)]
        name: String,
    },
    /// Lists the projects.
    ListProjects,
    /// Creates an API key for a project and prints it (the only time it is shown).
    CreateKey {
        #[arg(long)]
        project: String,
    },
    /// Lists API keys (never their secrets).
    ListKeys {
        #[arg(long)]
        project: Option<String>,
    },
    /// Revokes an API key by its id; it is refused from the next request on.
    RevokeKey {
        #[arg(long)]
        key_id: String,
    },
    /// Links an account (a connected CRM) to a project and prints it.
    ///
    /// `local` keeps its records in this server's database. `hubspot` and `pipedrive` read
    /// and write the CRM live and need --credentials: a JSON file with
    /// `{"access_token"}` (HubSpot service key or private app token) or `{"api_token"}`
    /// (Pipedrive), or OAuth `{"access_token", "refresh_token", "expires_at", "client_id",
    /// "client_secret"}`. They are sealed with the secret key (CRM_SECRET_KEY) before they
    /// are stored, and never printed.
    CreateAccount {
        #[arg(long)]
        project: String,
        #[arg(long)]
        name: String,
        /// local, hubspot or pipedrive.
        #[arg(long, default_value = tenancy::LOCAL_PROVIDER)]
        provider: String,
        /// The credentials file (hubspot, pipedrive).
        #[arg(long)]
        credentials: Option<std::path::PathBuf>,
        /// The provider's API at another address than its public host (a sandbox, a test double).
        #[arg(long)]
        base_url: Option<String>,
    },
    /// Lists linked accounts with their provider and status (`active`, or `needs_reauth`
    /// when the provider refused to renew a token); never their credentials.
    ListAccounts {
        #[arg(long)]
        project: Option<String>,
    },
    /// Replaces the credentials of a linked HubSpot or Pipedrive account (and makes it
    /// active again).
    UpdateCredentials {
        #[arg(long)]
        account: String,
        #[arg(long)]
        credentials: std::path::PathBuf,
    },
    /// Prints a new secret key (32 random bytes, base64) for CRM_SECRET_KEY.
    GenerateSecretKey,
    /// Re-seals every stored credential under a new secret key, in one transaction.
    ///
    /// The current key comes from CRM_SECRET_KEY (or its file); the new one from
    /// --new-key-file. Stop the servers, rotate, then start them with the new key.
    RotateSecretKey {
        #[arg(long)]
        new_key_file: std::path::PathBuf,
    },
    /// Copies a whole store into an empty database, then verifies the copy.
    ///
    /// Copies projects, API key hashes, linked accounts, records (contacts, accounts, lists,
    /// custom field definitions), list items, unified custom field mappings and idempotency
    /// keys, in batches of 1000 rows, one transaction per batch, so keys, ids and etags work
    /// unchanged on the target. Records keep their order in every listing; paging positions
    /// are issued anew by the target, so `next` cursors from the source are not carried
    /// over. Both databases get their migrations. The global --database is not used.
    ///
    /// The target must be empty (no projects): anything else is refused before a row is
    /// written. Stop every server on the source first. Progress goes to standard error.
    /// Afterwards every table is verified, its rows counted and checksummed on both sides,
    /// and a line `<table>: <n> rows, checksum ok` is printed for each; a difference exits
    /// non-zero. If a copy is interrupted, drop and recreate the target before running it
    /// again.
    Copy {
        /// The database to copy from: a SQLite file path or `sqlite:` URL, or a
        /// `postgres://user:password@host/db` URL. A SQLite file must exist.
        #[arg(long, value_name = "DATABASE")]
        from: String,
        /// The empty database to copy into, in the same forms (a SQLite file is created).
        #[arg(long, value_name = "DATABASE")]
        to: String,
    },
    /// Imports contacts from NDJSON (the format of Export Contacts) into a linked account.
    ///
    /// Reads one unified Contact JSON object per line, in constant memory, and creates the
    /// contacts in batches of 1000 lines, one transaction per batch. Every line is checked
    /// by the rules of a create (last_name required, valid emails, custom field values
    /// against the account's definitions). A line's `id`, `external_id`, `created_at` and
    /// `updated_at` are kept; a line without an id gets one derived from its content.
    ///
    /// A line whose contact is already in the account, by id or external_id, is skipped, so
    /// running the same import again (after a crash, or after fixing a line) creates no
    /// duplicates. The first line that is not a valid contact stops the import with its
    /// line number and the reason, and a non-zero exit; the lines before it are committed.
    /// Progress goes to standard error; `imported N, skipped M` to standard output at the
    /// end.
    Import {
        /// The linked account to create the contacts in (a `local` one).
        #[arg(long)]
        account: String,
        /// The NDJSON file; `-` reads standard input.
        #[arg(value_name = "FILE.ndjson")]
        file: std::path::PathBuf,
    },
    /// Writes a consistent copy of a SQLite store to a new file, while servers run on it.
    ///
    /// Uses SQLite's VACUUM INTO: the copy holds every write committed before the backup
    /// started, compacted, and is synced to disk before the command returns; servers keep
    /// reading and writing meanwhile. A file already at --to is refused, never overwritten.
    /// Prints the file written, its size and the time taken. To restore, start a server on
    /// the copy (--database <FILE>). A PostgreSQL store is refused: back it up with pg_dump
    /// (see the README's Operations section).
    Backup {
        /// The new file to write the copy to.
        #[arg(long, value_name = "FILE")]
        to: std::path::PathBuf,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<std::process::ExitCode> {
    let cli = Cli::parse();
    let mut problems = Vec::new();
    let global = GlobalConfig::read(&cli, &mut problems);
    let serve_config = match &cli.command {
        Command::Serve {
            listen,
            max_body_bytes,
            max_header_bytes,
            max_headers,
            request_timeout_secs,
            rate_limit_per_minute,
            public_url,
            metrics_listen,
            provider_concurrency,
            check_config,
        } => Some((
            ServeConfig::read(
                &ServeArgs {
                    listen,
                    max_body_bytes,
                    max_header_bytes,
                    max_headers,
                    request_timeout_secs,
                    rate_limit_per_minute,
                    public_url: public_url.as_deref(),
                    metrics_listen: metrics_listen.as_deref(),
                    provider_concurrency,
                },
                &mut problems,
            ),
            *check_config,
        )),
        Command::Admin { .. } => None,
    };
    if let Some((_, true)) = serve_config {
        if problems.is_empty()
            && let Some(database) = &global.database
            && let Err(problem) = reachable(database).await
        {
            problems.push(problem);
        }
        for problem in &problems {
            println!("{problem}");
        }
        if problems.is_empty() {
            println!("the configuration is valid");
            return Ok(std::process::ExitCode::SUCCESS);
        }
        return Ok(std::process::ExitCode::FAILURE);
    }
    if !problems.is_empty() {
        for problem in &problems {
            eprintln!("error: {problem}");
        }
        eprintln!("(crm-server serve --check-config checks every setting without starting)");
        return Ok(std::process::ExitCode::FAILURE);
    }
    let GlobalConfig {
        database,
        pool,
        log_filter,
        json_logs,
        secret_key,
    } = global;
    // A key is made without a database.
    if let Command::Admin {
        command: Admin::GenerateSecretKey,
    } = &cli.command
    {
        println!("{}", SecretKey::generate().to_base64());
        return Ok(std::process::ExitCode::SUCCESS);
    }
    let logs = tracing_subscriber::fmt()
        .with_env_filter(log_filter.expect("checked above"))
        .with_writer(std::io::stderr);
    if json_logs {
        logs.json().init();
    } else {
        logs.init();
    }
    // `admin copy` names both of its databases (--from, --to), so the global --database is
    // not opened for it: that would create a stray crm.db.
    if let Command::Admin {
        command: Admin::Copy { from, to },
    } = &cli.command
    {
        admin_copy(&database_url("--from", from)?, &database_url("--to", to)?).await?;
        return Ok(std::process::ExitCode::SUCCESS);
    }
    // The error names the database without its password.
    let database = database.expect("checked above");
    // Opening creates a missing SQLite file: a backup of nothing would be an empty store.
    if let Command::Admin {
        command: Admin::Backup { .. },
    } = &cli.command
        && let Some(path) = database.sqlite_path()
        && !path.exists()
    {
        anyhow::bail!("there is no SQLite store at {} to back up", path.display());
    }
    let db = Database::open(&database, pool).await?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let tenancy = Tenancy::new(db.clone(), clock.clone());
    let vault = Vault::new(db.clone(), secret_key);
    match (cli.command, serve_config) {
        (Command::Serve { .. }, Some((config, _))) => {
            // Refuse to start rather than fail every request of a linked CRM later.
            vault
                .check_key()
                .await
                .context("the server cannot open the credentials of its linked accounts")?;
            serve(db, clock, tenancy, vault, config).await?;
        }
        (Command::Admin { command }, _) => admin(&db, &tenancy, &vault, command).await?,
        (Command::Serve { .. }, None) => unreachable!("serve settings are read for serve"),
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// The settings every command reads, each `None` where it has a problem.
struct GlobalConfig {
    database: Option<DatabaseUrl>,
    pool: PoolSettings,
    log_filter: Option<EnvFilter>,
    json_logs: bool,
    secret_key: Option<SecretKey>,
}

impl GlobalConfig {
    fn read(cli: &Cli, problems: &mut Vec<crm_server::settings::Problem>) -> GlobalConfig {
        use crm_server::settings::{DATABASE, Setting};
        let database = match crm_server::settings::secret(DATABASE, cli.database.clone()) {
            Ok(value) => {
                // The parse error never repeats the value: it may hold a password.
                match value.as_deref().unwrap_or("crm.db").parse::<DatabaseUrl>() {
                    Ok(url) => Some(url),
                    Err(why) => {
                        problems.push(
                            DATABASE.problem(format!("not a database this server can use: {why}")),
                        );
                        None
                    }
                }
            }
            Err(problem) => {
                problems.push(problem);
                None
            }
        };
        let pool_size = Setting::new("--database-pool-size", "CRM_DATABASE_POOL_SIZE");
        let max_connections = pool_size
            .parse::<u32>(&cli.database_pool_size, "a number of connections from 1")
            .and_then(|n| {
                (n >= 1)
                    .then_some(n)
                    .ok_or_else(|| pool_size.problem("must be at least 1"))
            })
            .unwrap_or_else(|p| {
                problems.push(p);
                1
            });
        // PostgreSQL's notices ("relation already exists, skipping" on every start) are not news.
        let log_filter = match EnvFilter::try_new(format!(
            "sqlx::postgres::notice=warn,{}",
            cli.log_level
        )) {
            Ok(filter) => Some(filter),
            Err(e) => {
                problems.push(Setting::new("--log-level", "CRM_LOG").problem(format!(
                        "{:?} is not a level (error, warn, info, debug, trace) or a directive list: {e}",
                        cli.log_level
                    )));
                None
            }
        };
        let json_logs = match cli.log_format.as_str() {
            "json" => true,
            "text" => false,
            other => {
                problems.push(
                    Setting::new("--log-format", "CRM_LOG_FORMAT")
                        .problem(format!("{other:?} is not text or json")),
                );
                false
            }
        };
        let secret_key = match crm_server::settings::secret_from(
            crm_server::settings::SECRET_KEY,
            cli.secret_key.clone(),
            cli.secret_key_file.as_deref(),
        ) {
            Ok(Some(text)) => match SecretKey::parse(&text) {
                Ok(key) => Some(key),
                Err(why) => {
                    problems.push(crm_server::settings::SECRET_KEY.problem(why.to_string()));
                    None
                }
            },
            Ok(None) => None,
            Err(problem) => {
                problems.push(problem);
                None
            }
        };
        GlobalConfig {
            database,
            pool: PoolSettings {
                max_connections,
                ..PoolSettings::default()
            },
            log_filter,
            json_logs,
            secret_key,
        }
    }
}

/// The raw values of `serve`'s own settings.
struct ServeArgs<'a> {
    listen: &'a str,
    max_body_bytes: &'a str,
    max_header_bytes: &'a str,
    max_headers: &'a str,
    request_timeout_secs: &'a str,
    rate_limit_per_minute: &'a str,
    public_url: Option<&'a str>,
    metrics_listen: Option<&'a str>,
    provider_concurrency: &'a str,
}

/// `serve`'s settings, read.
struct ServeConfig {
    listen: SocketAddr,
    metrics_listen: Option<SocketAddr>,
    http: crm_server::HttpSettings,
}

impl ServeConfig {
    fn read(
        args: &ServeArgs<'_>,
        problems: &mut Vec<crm_server::settings::Problem>,
    ) -> ServeConfig {
        use crm_server::settings::{Problem, Setting};
        fn kept<T>(problems: &mut Vec<Problem>, result: Result<T, Problem>, fallback: T) -> T {
            result.unwrap_or_else(|p| {
                problems.push(p);
                fallback
            })
        }
        let listen_setting = Setting::new("--listen", "CRM_LISTEN");
        let listen = kept(
            problems,
            listen_setting.address(args.listen),
            SocketAddr::from(([127, 0, 0, 1], 0)),
        );
        let metrics_setting = Setting::new("--metrics-listen", "CRM_METRICS_LISTEN");
        let metrics_listen = args.metrics_listen.map(|value| {
            kept(
                problems,
                metrics_setting.address(value).and_then(|addr| {
                    (addr != listen || addr.port() == 0)
                        .then_some(addr)
                        .ok_or_else(|| {
                            metrics_setting.problem(
                                "must differ from --listen (leave it out to serve /metrics there)",
                            )
                        })
                }),
                SocketAddr::from(([127, 0, 0, 1], 0)),
            )
        });
        let positive = |setting: Setting, value: &str, what: &str| {
            setting.parse::<usize>(value, what).and_then(|n| {
                (n > 0)
                    .then_some(n)
                    .ok_or_else(|| setting.problem("must be more than 0"))
            })
        };
        let max_body_bytes = kept(
            problems,
            positive(
                Setting::new("--max-body-bytes", "CRM_MAX_BODY_BYTES"),
                args.max_body_bytes,
                "a number of bytes",
            ),
            crm_server::DEFAULT_MAX_BODY_BYTES,
        );
        let max_header_bytes = kept(
            problems,
            positive(
                Setting::new("--max-header-bytes", "CRM_MAX_HEADER_BYTES"),
                args.max_header_bytes,
                "a number of bytes",
            ),
            crm_server::http::DEFAULT_MAX_HEADER_BYTES,
        );
        let max_headers = kept(
            problems,
            positive(
                Setting::new("--max-headers", "CRM_MAX_HEADERS"),
                args.max_headers,
                "a number of header fields",
            ),
            crm_server::http::DEFAULT_MAX_HEADERS,
        );
        let request_timeout_secs = kept(
            problems,
            Setting::new("--request-timeout-secs", "CRM_REQUEST_TIMEOUT_SECS").parse::<u64>(
                args.request_timeout_secs,
                "a number of seconds (0: no timeout)",
            ),
            0,
        );
        let rate_limit_per_minute = kept(
            problems,
            Setting::new("--rate-limit-per-minute", "CRM_RATE_LIMIT_PER_MINUTE").parse::<u32>(
                args.rate_limit_per_minute,
                "a number of requests a minute (0: no limit)",
            ),
            0,
        );
        let provider_concurrency = kept(
            problems,
            positive(
                Setting::new("--provider-concurrency", "CRM_PROVIDER_CONCURRENCY"),
                args.provider_concurrency,
                "a number of calls",
            ),
            crm_server::providers::call::Limits::DEFAULT_PER_ACCOUNT,
        );
        let public_url = args.public_url.and_then(|value| {
            let parsed = crm_server::docs::public_url(value).ok_or_else(|| {
                Setting::new("--public-url", "CRM_PUBLIC_URL").problem(format!(
                    "{value:?} is not an absolute http:// or https:// URL such as https://crm.example.com"
                ))
            });
            kept(problems, parsed.map(Some), None)
        });
        ServeConfig {
            listen,
            http: crm_server::HttpSettings {
                max_body_bytes,
                max_header_bytes,
                max_headers,
                request_timeout: (request_timeout_secs > 0)
                    .then(|| Duration::from_secs(request_timeout_secs)),
                rate_limit_per_minute: (rate_limit_per_minute > 0).then_some(rate_limit_per_minute),
                public_url,
                metrics: metrics_listen.is_none(),
                provider_concurrency,
            },
            metrics_listen,
        }
    }
}

/// For `--check-config`: whether the database can be reached, without creating, migrating
/// or changing anything. A SQLite file's directory must exist (the file is created on first
/// start); a PostgreSQL server must accept a connection within 10 s.
async fn reachable(database: &DatabaseUrl) -> Result<(), crm_server::settings::Problem> {
    use crm_server::settings::DATABASE;
    match database.kind() {
        crm_server::StoreKind::Sqlite => {
            let path = database.sqlite_path().unwrap_or_default();
            let dir = path
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(std::path::Path::new("."));
            if !dir.is_dir() {
                return Err(DATABASE.problem(format!(
                    "the directory of the SQLite file {} does not exist",
                    path.display()
                )));
            }
            if path.exists() && !path.is_file() {
                return Err(DATABASE.problem(format!("{} is not a file", path.display())));
            }
            Ok(())
        }
        crm_server::StoreKind::Postgres => {
            let attempt =
                tokio::time::timeout(Duration::from_secs(10), crm_server::db::probe(database))
                    .await;
            match attempt {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(DATABASE.problem(match crm_server::db::tls_failure(&e) {
                    Some(tls) => format!("cannot connect to {database}: {tls}: {e}"),
                    None => format!("cannot connect to {database}: {e}"),
                })),
                Err(_) => Err(DATABASE.problem(format!(
                    "cannot connect to {database}: no answer within 10 s"
                ))),
            }
        }
    }
}

async fn serve(
    db: Database,
    clock: Arc<dyn Clock>,
    tenancy: Tenancy,
    vault: Vault,
    config: ServeConfig,
) -> anyhow::Result<()> {
    let ServeConfig {
        listen,
        metrics_listen,
        http: settings,
    } = config;
    if let Some(first) = crm_server::bootstrap_if_empty(&tenancy).await? {
        println!(
            "The database was empty, so a project, an API key and a linked account were created.\n\
             Keep the key now: it is not shown again.\n\n\
             \x20 project:        {project}\n\
             \x20 API key:        {key}\n\
             \x20 linked account: {account}\n\n\
             In another shell:\n\n\
             \x20 export CRM_KEY='{key}' CRM_ACCOUNT='{account}'\n\
             \x20 curl -u \"$CRM_KEY:\" -H \"x-account-id: $CRM_ACCOUNT\" http://{listen}/unified/crm/contacts\n",
            project = first.project.id,
            key = first.key,
            account = first.account.id,
        );
    }
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("could not listen on {listen}"))?;
    tracing::info!(
        address = %listener.local_addr()?,
        max_body_bytes = settings.max_body_bytes,
        max_header_bytes = settings.max_header_bytes,
        max_headers = settings.max_headers,
        request_timeout_secs = settings.request_timeout.map_or(0, |t| t.as_secs()),
        rate_limit_per_minute = settings.rate_limit_per_minute.unwrap_or(0),
        "listening"
    );
    if let Some(address) = metrics_listen {
        let metrics = tokio::net::TcpListener::bind(address)
            .await
            .with_context(|| format!("could not listen on {address} for /metrics"))?;
        tracing::info!(address = %metrics.local_addr()?, "serving /metrics");
        let router = crm_server::metrics::router(db.clone()).into_router();
        tokio::spawn(async move {
            if let Err(e) = axum::serve(metrics, router).await {
                tracing::error!(error = %e, "the /metrics listener stopped");
            }
        });
    }
    let app = crm_server::app_with_vault(db, clock, &settings, vault);
    crm_server::serve_with(listener, app, &settings, shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutdown signal received");
}

async fn admin(
    db: &Database,
    tenancy: &Tenancy,
    vault: &Vault,
    command: Admin,
) -> anyhow::Result<()> {
    match command {
        Admin::CreateProject { name } => {
            let p = tenancy.create_project(&name).await?;
            println!("{}", serde_json::to_string_pretty(&p)?);
        }
        Admin::ListProjects => println!(
            "{}",
            serde_json::to_string_pretty(&tenancy.list_projects().await?)?
        ),
        Admin::CreateKey { project } => {
            let key = tenancy.create_key(&project).await?;
            println!(
                "key id:  {}\nAPI key: {}\n(the key is not shown again)",
                key.info.id, key.key
            );
        }
        Admin::ListKeys { project } => {
            println!(
                "{}",
                serde_json::to_string_pretty(&tenancy.list_keys(project.as_deref()).await?)?
            )
        }
        Admin::RevokeKey { key_id } => {
            tenancy.revoke_key(&key_id).await?;
            println!("revoked {key_id}");
        }
        Admin::CreateAccount {
            project,
            name,
            provider,
            credentials,
            base_url,
        } => {
            let a = match credentials {
                None if base_url.is_some() && provider == tenancy::LOCAL_PROVIDER => {
                    return Err(tenancy::TenancyError::LocalTakesNoCredentials.into());
                }
                None => {
                    tenancy
                        .create_linked_account(&project, &provider, &name)
                        .await?
                }
                Some(file) => {
                    let credentials = read_credentials(&provider, &file)?;
                    vault.check_key().await?;
                    tenancy
                        .create_remote_account(
                            vault,
                            &project,
                            &provider,
                            &name,
                            base_url.as_deref(),
                            &credentials,
                        )
                        .await?
                }
            };
            println!("{}", serde_json::to_string_pretty(&a)?);
        }
        Admin::UpdateCredentials {
            account,
            credentials,
        } => {
            let provider: Option<String> =
                sqlx::query_scalar("SELECT provider FROM linked_accounts WHERE id = $1")
                    .bind(&account)
                    .fetch_optional(db.pool())
                    .await?;
            let provider = provider.with_context(|| format!("no linked account {account}"))?;
            let credentials = read_credentials(&provider, &credentials)?;
            vault.check_key().await?;
            vault.update_credentials(&account, &credentials).await?;
            println!("updated the credentials of {account}; it is active");
        }
        Admin::GenerateSecretKey => unreachable!("handled before the database is opened"),
        Admin::RotateSecretKey { new_key_file } => {
            let text = std::fs::read_to_string(&new_key_file)
                .with_context(|| format!("could not read {}", new_key_file.display()))?;
            let new = SecretKey::parse(&text)
                .with_context(|| format!("{} holds no secret key", new_key_file.display()))?;
            let rotation = vault.rotate(&new).await?;
            println!("{}", serde_json::to_string_pretty(&rotation)?);
            eprintln!("now give the servers the new key (CRM_SECRET_KEY) and start them");
        }
        Admin::ListAccounts { project } => println!(
            "{}",
            serde_json::to_string_pretty(&tenancy.list_linked_accounts(project.as_deref()).await?)?
        ),
        Admin::Copy { from, to } => {
            admin_copy(&database_url("--from", &from)?, &database_url("--to", &to)?).await?
        }
        Admin::Import { account, file } => {
            let input: Box<dyn std::io::BufRead> = if file.as_os_str() == "-" {
                Box::new(std::io::stdin().lock())
            } else {
                let opened = std::fs::File::open(&file)
                    .with_context(|| format!("could not open {}", file.display()))?;
                Box::new(std::io::BufReader::with_capacity(1 << 16, opened))
            };
            let mut progress = crm_server::transfer::Progress::stderr();
            let report =
                crm_server::transfer::import(db, &SystemClock, &account, input, &mut progress)
                    .await
                    .with_context(|| {
                        format!("could not import {} into {account}", file.display())
                    })?;
            println!("{report}");
        }
        Admin::Backup { to } => println!("{}", crm_server::backup::sqlite(db, &to).await?),
    }
    Ok(())
}

/// Reads a credentials file for `provider`. The error names the file and the fields,
/// never a value from it.
fn read_credentials(provider: &str, file: &std::path::Path) -> anyhow::Result<Credentials> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("could not read the credentials file {}", file.display()))?;
    Credentials::from_file_json(provider, &text)
        .with_context(|| format!("the credentials file {} cannot be used", file.display()))
}

/// Reads a database flag. The flags are taken as plain text and read here, not by clap,
/// whose errors would repeat the value, password included.
fn database_url(flag: &str, value: &str) -> anyhow::Result<DatabaseUrl> {
    value
        .parse()
        .map_err(|why| anyhow::anyhow!("{flag} is not a database this server can use: {why}"))
}

/// `admin copy`: copies, verifies, and prints one line per table.
async fn admin_copy(from: &DatabaseUrl, to: &DatabaseUrl) -> anyhow::Result<()> {
    let mut progress = crm_server::transfer::Progress::stderr();
    // Both URLs are shown without their passwords.
    let tables = crm_server::transfer::copy_between(from, to, &mut progress)
        .await
        .with_context(|| format!("could not copy {from} to {to}"))?;
    for table in tables {
        let order = if table.order.is_some() {
            ", order ok"
        } else {
            ""
        };
        println!("{}: {} rows, checksum ok{order}", table.table, table.rows);
    }
    println!("copied {from} to {to}");
    Ok(())
}
