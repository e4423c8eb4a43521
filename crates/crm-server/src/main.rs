//! The `crm-server` binary: `serve` runs the API; `admin` manages projects, keys and
//! linked accounts.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use crm_server::{Clock, Database, DatabaseUrl, PoolSettings, SystemClock, Tenancy, tenancy};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(name = "crm-server", version, about = "The unified CRM API server")]
struct Cli {
    /// The database: a SQLite file path (created if missing) or `sqlite:` URL, or a
    /// `postgres://user:password@host/db` URL.
    #[arg(
        long,
        env = "CRM_DATABASE",
        default_value = "crm.db",
        global = true,
        hide_env_values = true
    )]
    database: String,
    /// The most database connections this process opens.
    #[arg(long, env = "CRM_DATABASE_POOL_SIZE", default_value_t = PoolSettings::default().max_connections, global = true)]
    database_pool_size: u32,
    /// Log filter: a level (error, warn, info, debug, trace) or a tracing directive list.
    #[arg(long, env = "CRM_LOG", default_value = "info", global = true)]
    log_level: String,
    /// Log format.
    #[arg(long, env = "CRM_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"], global = true)]
    log_format: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the API server.
    Serve {
        /// The address to listen on.
        #[arg(long, env = "CRM_LISTEN", default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// The largest request body accepted, in bytes (larger: 413).
        #[arg(long, env = "CRM_MAX_BODY_BYTES", default_value_t = crm_server::DEFAULT_MAX_BODY_BYTES)]
        max_body_bytes: usize,
        /// The largest request line and headers accepted, in bytes (larger: 431).
        #[arg(long, env = "CRM_MAX_HEADER_BYTES", default_value_t = crm_server::http::DEFAULT_MAX_HEADER_BYTES)]
        max_header_bytes: usize,
        /// The most header fields a request may carry (more: 431).
        #[arg(long, env = "CRM_MAX_HEADERS", default_value_t = crm_server::http::DEFAULT_MAX_HEADERS)]
        max_headers: usize,
        /// Seconds a request may take before it is answered 408; 0 waits forever.
        #[arg(long, env = "CRM_REQUEST_TIMEOUT_SECS", default_value_t = crm_server::http::DEFAULT_REQUEST_TIMEOUT.as_secs())]
        request_timeout_secs: u64,
        /// Requests a minute allowed per API key, answered 429 with Retry-After beyond;
        /// 0 (the default) is no limit.
        #[arg(long, env = "CRM_RATE_LIMIT_PER_MINUTE", default_value_t = 0)]
        rate_limit_per_minute: u32,
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
    /// Links an account (a connected CRM) to a project.
    CreateAccount {
        #[arg(long)]
        project: String,
        #[arg(long)]
        name: String,
        #[arg(long, default_value = tenancy::LOCAL_PROVIDER)]
        provider: String,
    },
    /// Lists linked accounts.
    ListAccounts {
        #[arg(long)]
        project: Option<String>,
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
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // PostgreSQL's notices ("relation already exists, skipping" on every start) are not news.
    let filter = EnvFilter::try_new(format!("sqlx::postgres::notice=warn,{}", cli.log_level))
        .with_context(|| format!("bad --log-level {:?}", cli.log_level))?;
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if cli.log_format == "json" {
        logs.json().init();
    } else {
        logs.init();
    }
    let settings = PoolSettings {
        max_connections: cli.database_pool_size.max(1),
        ..PoolSettings::default()
    };
    // `admin copy` names both of its databases (--from, --to), so the global --database is
    // not opened for it: that would create a stray crm.db.
    if let Command::Admin {
        command: Admin::Copy { from, to },
    } = &cli.command
    {
        return admin_copy(&database_url("--from", from)?, &database_url("--to", to)?).await;
    }
    // The error names the database without its password.
    let db = Database::open(&database_url("--database", &cli.database)?, settings).await?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let tenancy = Tenancy::new(db.clone(), clock.clone());
    match cli.command {
        Command::Serve {
            listen,
            max_body_bytes,
            max_header_bytes,
            max_headers,
            request_timeout_secs,
            rate_limit_per_minute,
        } => {
            let settings = crm_server::HttpSettings {
                max_body_bytes,
                max_header_bytes,
                max_headers,
                request_timeout: (request_timeout_secs > 0)
                    .then(|| Duration::from_secs(request_timeout_secs)),
                rate_limit_per_minute: (rate_limit_per_minute > 0).then_some(rate_limit_per_minute),
            };
            serve(db, clock, tenancy, listen, settings).await
        }
        Command::Admin { command } => admin(&db, &tenancy, command).await,
    }
}

async fn serve(
    db: Database,
    clock: Arc<dyn Clock>,
    tenancy: Tenancy,
    listen: SocketAddr,
    settings: crm_server::HttpSettings,
) -> anyhow::Result<()> {
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
    let app = crm_server::app(db, clock, &settings);
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

async fn admin(db: &Database, tenancy: &Tenancy, command: Admin) -> anyhow::Result<()> {
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
        } => {
            let a = tenancy
                .create_linked_account(&project, &provider, &name)
                .await?;
            println!("{}", serde_json::to_string_pretty(&a)?);
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
    }
    Ok(())
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
