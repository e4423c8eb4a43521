//! The database: which store a `--database` names, opening it with its durability settings,
//! its own migrations, and the few statements that differ between the stores.
//!
//! Both stores are reached through sqlx's `Any` driver with `$N` placeholders, which SQLite
//! and PostgreSQL both read, so every query is written once. What differs is here:
//! [`Database::begin_write`], [`Database::pick`] for statements with a per-store spelling
//! (row locks, the paging horizon), and [`Database::next_position`].

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, ConnectOptions, Executor};

pub use crate::serving_conns::Conn;
pub use crate::txn::{Txn, TxnError};

/// On PostgreSQL, the connections sqlx's pool may open for the work off the serving path.
const OFF_PATH_CONNECTIONS: u32 = 2;

/// Makes ring the process's TLS provider, once, before anything builds a TLS configuration.
///
/// Two providers are compiled in: ring, which sqlx's PostgreSQL TLS uses, and aws-lc-rs,
/// which reqwest brings for HTTPS to HubSpot and Pipedrive. With both, rustls cannot pick
/// one by itself, and sqlx's certificate verifier asks rustls for the process's. Both
/// libraries take the process's provider when one is set.
pub fn install_tls_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Refused only when a provider is already set, which is as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// The migrations of each store, run at start-up.
pub static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
pub static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The kind of store a database is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    Sqlite,
    Postgres,
}

/// Where the data lives: a SQLite file (a path or a `sqlite:` URL) or a PostgreSQL
/// database (a `postgres://` or `postgresql://` URL, which may carry a password).
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl {
    kind: StoreKind,
    url: String,
}

impl DatabaseUrl {
    pub fn kind(&self) -> StoreKind {
        self.kind
    }

    /// The URL with its password, for connecting. Never log it: log the `Display` form.
    fn secret_url(&self) -> &str {
        &self.url
    }

    /// The file of a SQLite store; `None` for PostgreSQL.
    pub fn sqlite_path(&self) -> Option<std::path::PathBuf> {
        if self.kind != StoreKind::Sqlite {
            return None;
        }
        let encoded = self.url.strip_prefix("sqlite://")?;
        let encoded = encoded.rsplit_once('?').map_or(encoded, |(path, _)| path);
        let path = encoded
            .replace("%3F", "?")
            .replace("%23", "#")
            .replace("%25", "%");
        Some(path.into())
    }

    /// Fails when the URL verifies certificates against a CA file (`sslrootcert`) that
    /// cannot be read, which sqlx would report as a failure to talk to the database.
    fn check_ssl_root_cert(&self) -> Result<(), sqlx::Error> {
        if self.kind != StoreKind::Postgres {
            return Ok(());
        }
        let Ok(url) = url::Url::parse(&self.url) else {
            return Ok(());
        };
        let verifies = url.query_pairs().any(|(key, value)| {
            matches!(&*key, "sslmode" | "ssl-mode")
                && matches!(&*value.to_ascii_lowercase(), "verify-ca" | "verify-full")
        });
        if !verifies {
            return Ok(());
        }
        for (key, value) in url.query_pairs() {
            let names_a_file = matches!(&*key, "sslrootcert" | "ssl-root-cert" | "ssl-ca")
                && !value.trim_start().starts_with("-----BEGIN");
            if names_a_file && let Err(e) = std::fs::File::open(&*value) {
                return Err(sqlx::Error::Tls(
                    format!("cannot read the CA file sslrootcert={value}: {e}").into(),
                ));
            }
        }
        Ok(())
    }
}

/// Connects once to `url` and closes the connection: whether the database can be reached
/// with these credentials (and, on PostgreSQL, this TLS setting). Creates and changes nothing
/// on PostgreSQL; do not use it on a SQLite file that should not be created.
pub async fn probe(url: &DatabaseUrl) -> Result<(), sqlx::Error> {
    use sqlx::Connection as _;
    install_tls_provider();
    sqlx::any::install_default_drivers();
    let conn = sqlx::AnyConnection::connect(url.secret_url()).await?;
    conn.close().await
}

impl FromStr for DatabaseUrl {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.is_empty() {
            return Err(
                "the database must be a file path, a sqlite: URL or a postgres:// URL".into(),
            );
        }
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            let parsed =
                url::Url::parse(s).map_err(|e| format!("the PostgreSQL URL is not valid: {e}"))?;
            if parsed.host_str().is_none_or(str::is_empty)
                && !parsed.query().is_some_and(|q| q.contains("host="))
            {
                return Err("the PostgreSQL URL names no host".into());
            }
            return Ok(DatabaseUrl {
                kind: StoreKind::Postgres,
                url: s.to_owned(),
            });
        }
        if let Some(rest) = s.strip_prefix("sqlite:") {
            let path = rest.strip_prefix("//").unwrap_or(rest);
            let path = path.split('?').next().unwrap_or_default();
            if path.is_empty() {
                return Err("the sqlite: URL names no file".into());
            }
            return Ok(Self::sqlite_file(path));
        }
        if s.contains("://") {
            return Err(format!(
                "unknown database scheme in {:?}: use a file path, sqlite: or postgres://",
                s.split("://").next().unwrap_or_default()
            ));
        }
        Ok(Self::sqlite_file(s))
    }
}

impl DatabaseUrl {
    fn sqlite_file(path: &str) -> DatabaseUrl {
        // An absolute path, so no part of it can be read as a URL's host.
        let path = std::path::absolute(path)
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_else(|_| path.to_owned());
        // Percent-encode what a URL would otherwise read as its query or fragment.
        let encoded: String = path
            .chars()
            .map(|c| match c {
                '%' => "%25".to_owned(),
                '?' => "%3F".to_owned(),
                '#' => "%23".to_owned(),
                c => c.to_string(),
            })
            .collect();
        DatabaseUrl {
            kind: StoreKind::Sqlite,
            url: format!("sqlite://{encoded}?mode=rwc"),
        }
    }
}

/// The URL without its password: the only form that reaches logs and messages.
impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match url::Url::parse(&self.url) {
            Ok(mut url) if self.kind == StoreKind::Postgres => {
                if url.password().is_some() {
                    let _ = url.set_password(Some("********"));
                }
                let pairs: Vec<(String, String)> = url
                    .query_pairs()
                    .map(|(k, v)| {
                        let v = if k == "password" {
                            "********".into()
                        } else {
                            v.into_owned()
                        };
                        (k.into_owned(), v)
                    })
                    .collect();
                if !pairs.is_empty() {
                    url.query_pairs_mut().clear().extend_pairs(pairs);
                }
                f.write_str(url.as_str())
            }
            _ => f.write_str(&self.url),
        }
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({self})")
    }
}

/// Settings of the connection pool.
#[derive(Debug, Clone, Copy)]
pub struct PoolSettings {
    /// The most connections one process opens for its requests (on PostgreSQL, sqlx's pool
    /// may open up to `OFF_PATH_CONNECTIONS` more for the work beside them).
    pub max_connections: u32,
    /// How long a request waits for a free connection (or a reachable server) before it
    /// fails with 503.
    pub acquire_timeout: Duration,
}

impl Default for PoolSettings {
    fn default() -> Self {
        PoolSettings {
            max_connections: 8,
            acquire_timeout: Duration::from_secs(5),
        }
    }
}

/// An open database: its pool and its kind.
#[derive(Clone)]
pub struct Database {
    pool: AnyPool,
    kind: StoreKind,
    /// SQLite only: the hot reads, run in place (see `sqlite_reads`).
    reads: Option<std::sync::Arc<crate::sqlite_reads::SqliteReads>>,
    /// SQLite only: the writer whose transactions this process's writes share (see
    /// `group_commit`).
    writer: Option<std::sync::Arc<crate::group_commit::GroupWriter>>,
    /// PostgreSQL only: the key checks this process trusts for a moment (see `tenancy`).
    key_checks: Option<std::sync::Arc<crate::tenancy::KeyChecks>>,
    /// PostgreSQL only: the connections of the serving path, given back without sqlx's
    /// round trip on release (see `serving_conns`). sqlx's pool keeps the rest.
    serving: Option<std::sync::Arc<crate::serving_conns::ServingConns>>,
    /// PostgreSQL only: the record reads of GET requests, batched (see `record_reads`).
    record_reads: Option<std::sync::Arc<crate::record_reads::RecordReads>>,
}

impl fmt::Debug for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Database")
            .field("kind", &self.kind)
            .finish()
    }
}

/// Opening a database failed. The message never holds a password.
#[derive(Debug, thiserror::Error)]
#[error("{what} ({database}): {source}")]
pub struct OpenError {
    what: &'static str,
    database: String,
    #[source]
    source: sqlx::Error,
}

impl OpenError {
    /// `what` failed; a failure of TLS says so, and why, in place of `what`.
    fn new(what: &'static str, url: &DatabaseUrl, source: sqlx::Error) -> OpenError {
        OpenError {
            what: tls_failure(&source).unwrap_or(what),
            database: url.to_string(),
            source,
        }
    }
}

/// What went wrong, when `error` is a failure of TLS to the database: sqlx reports a
/// certificate the client refused as an I/O error wrapping rustls' reason, somewhere down
/// the chain of sources (inside a migration error, say).
pub fn tls_failure(error: &sqlx::Error) -> Option<&'static str> {
    use rustls::CertificateError as Cert;
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(error) = next {
        if let Some(sqlx::Error::Tls(_)) = error.downcast_ref::<sqlx::Error>() {
            return Some("TLS to the database failed");
        }
        let refused = error
            .downcast_ref::<std::io::Error>()
            .and_then(|e| e.get_ref())
            .and_then(|e| e.downcast_ref::<rustls::Error>());
        if let Some(refused) = refused {
            return Some(match refused {
                rustls::Error::InvalidCertificate(Cert::UnknownIssuer | Cert::BadSignature) => {
                    "TLS to the database failed: certificate verification refused the server's \
                     certificate, which no trusted CA signed (sslrootcert must name the file of \
                     the CA that signed it)"
                }
                rustls::Error::InvalidCertificate(
                    Cert::NotValidForName | Cert::NotValidForNameContext { .. },
                ) => {
                    "TLS to the database failed: certificate verification refused the server's \
                     certificate, which does not name the host of the database URL"
                }
                rustls::Error::InvalidCertificate(
                    Cert::Expired
                    | Cert::ExpiredContext { .. }
                    | Cert::NotValidYet
                    | Cert::NotValidYetContext { .. },
                ) => {
                    "TLS to the database failed: certificate verification refused the server's \
                     certificate, which is expired or not valid yet"
                }
                rustls::Error::InvalidCertificate(_) => {
                    "TLS to the database failed: certificate verification refused the server's \
                     certificate"
                }
                _ => "TLS to the database failed",
            });
        }
        next = error.source();
    }
    None
}

impl Database {
    /// Opens the database (creating a SQLite file if missing) and runs the migrations this
    /// binary carries for its store. On PostgreSQL the migrator holds an advisory lock, so
    /// replicas started at once apply each migration exactly once.
    ///
    /// SQLite runs in WAL with `synchronous = FULL`, so every acknowledged write survives a
    /// crash of the process or the machine; PostgreSQL is trusted to run with `fsync`,
    /// `synchronous_commit` and `full_page_writes` on (a test checks the live settings).
    pub async fn open(url: &DatabaseUrl, settings: PoolSettings) -> Result<Database, OpenError> {
        let db = Self::connect(url, settings).await?;
        db.migrate().await.map_err(|source| {
            OpenError::new("could not run the database migrations", url, source)
        })?;
        crate::backup::adopt_restored_positions(&db)
            .await
            .map_err(|source| OpenError::new("could not adopt a restored database", url, source))?;
        match db.durability_problems().await {
            Ok(problems) => {
                for problem in problems {
                    tracing::warn!(
                        database = %url,
                        problem,
                        "acknowledged writes may be lost in a crash of the machine"
                    );
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not read the durability settings"),
        }
        Ok(db)
    }

    /// Connects without running migrations.
    pub async fn connect(url: &DatabaseUrl, settings: PoolSettings) -> Result<Database, OpenError> {
        install_tls_provider();
        sqlx::any::install_default_drivers();
        let failed = |source| OpenError::new("could not open the database", url, source);
        url.check_ssl_root_cert().map_err(failed)?;
        let options = AnyConnectOptions::from_str(url.secret_url())
            .map_err(failed)?
            // Statements are logged by our own request logs; sqlx's would repeat them.
            .disable_statement_logging();
        let kind = url.kind;
        // On PostgreSQL the requests' statements run on `serving`; sqlx's pool is left the
        // work off that path (migrations, sealed credentials), which needs few connections.
        let pool_max = match kind {
            StoreKind::Sqlite => settings.max_connections,
            StoreKind::Postgres => settings.max_connections.min(OFF_PATH_CONNECTIONS),
        };
        let serving = (kind == StoreKind::Postgres).then(|| {
            crate::serving_conns::ServingConns::new(
                options.clone(),
                settings.max_connections,
                settings.acquire_timeout,
            )
        });
        let pool = AnyPoolOptions::new()
            .max_connections(pool_max)
            .acquire_timeout(settings.acquire_timeout)
            // No ping before every acquire: on SQLite it is a round trip to the connection's
            // worker thread, on PostgreSQL one over the network, and it doubled the cost of
            // a read. A connection that died fails its next query, answered 503 (see
            // `tenancy::internal`), and the pool drops it.
            .test_before_acquire(false)
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if kind == StoreKind::Sqlite {
                        conn.execute(
                            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                             PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000;",
                        )
                        .await?;
                    }
                    Ok(())
                })
            });
        let pool = if kind == StoreKind::Sqlite {
            // Open one connection now, so a file that cannot be opened fails at start-up.
            pool.connect_with(options).await
        } else {
            // A PostgreSQL server may come and go: connect lazily, and let requests answer
            // 503 until it is back.
            Ok(pool.connect_lazy_with(options))
        }
        .map_err(failed)?;
        let reads = url
            .sqlite_path()
            .map(|path| std::sync::Arc::new(crate::sqlite_reads::SqliteReads::new(&path)));
        let writer = match url.sqlite_path() {
            Some(path) => Some(
                crate::group_commit::GroupWriter::start(&path, reads.clone())
                    .map_err(|e| failed(sqlx::Error::Protocol(e.to_string())))?,
            ),
            None => None,
        };
        let key_checks = (kind == StoreKind::Postgres).then(Default::default);
        let record_reads = serving
            .as_ref()
            .map(|s| crate::record_reads::RecordReads::new(std::sync::Arc::clone(s)));
        Ok(Database {
            pool,
            kind,
            reads,
            writer,
            key_checks,
            serving,
            record_reads,
        })
    }

    async fn migrate(&self) -> Result<(), sqlx::Error> {
        self.migrator().run(&self.pool).await?;
        Ok(())
    }

    pub fn migrator(&self) -> &'static sqlx::migrate::Migrator {
        match self.kind {
            StoreKind::Sqlite => &SQLITE_MIGRATIONS,
            StoreKind::Postgres => &POSTGRES_MIGRATIONS,
        }
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// After a bulk load (`admin import`, `admin copy`) on PostgreSQL: `ANALYZE`, so the
    /// planner's statistics count the rows just written. Until autovacuum gets to it, a
    /// plan made from the statistics of a nearly empty table can scan a whole index for a
    /// GET by id. SQLite keeps no statistics here (see `.cargo/config.toml`): nothing to do.
    /// What was loaded is committed already, so a failure here is only logged.
    pub async fn refresh_statistics(&self) {
        if self.kind == StoreKind::Postgres
            && let Err(e) = self.pool.execute("ANALYZE").await
        {
            tracing::warn!(
                error = %e,
                "could not update PostgreSQL's statistics (ANALYZE); autovacuum will in time"
            );
        }
    }

    fn serving(&self) -> &std::sync::Arc<crate::serving_conns::ServingConns> {
        self.serving
            .as_ref()
            .expect("PostgreSQL has its serving connections")
    }

    /// A connection for the serving path. While it is awaited it counts in
    /// `crm_db_pool_waiting`. Give it back with [`Conn::release`] once its statements have
    /// finished: on PostgreSQL that spares a round trip.
    pub async fn acquire(&self) -> Result<Conn, sqlx::Error> {
        let _waiting = crate::metrics::PoolWaiting::start();
        match &self.serving {
            Some(serving) => serving.acquire().await.map(Conn::Serving),
            None => self.pool.acquire().await.map(Conn::Pooled),
        }
    }

    /// The connections open for this process, how many of them are idle, and the most it
    /// opens for requests (`--database-pool-size`).
    pub fn pool_counts(&self) -> (u32, u32, u32) {
        let size = self.pool.size();
        // The pool's idle count can run ahead of its size for a moment while a connection
        // closes.
        let idle = (self.pool.num_idle() as u32).min(size);
        match &self.serving {
            Some(serving) => {
                let (open, serving_idle) = serving.counts();
                (size + open, idle + serving_idle, serving.max())
            }
            None => (size, idle, self.pool.options().get_max_connections()),
        }
    }

    pub fn kind(&self) -> StoreKind {
        self.kind
    }

    /// On SQLite, the read-only connections the hot reads run on in place; `None` on
    /// PostgreSQL, where they go through the pool like everything else.
    pub fn sqlite_reads(&self) -> Option<&crate::sqlite_reads::SqliteReads> {
        self.reads.as_deref()
    }

    /// PostgreSQL only: the record reads of GET requests, batched.
    pub fn record_reads(&self) -> Option<&std::sync::Arc<crate::record_reads::RecordReads>> {
        self.record_reads.as_ref()
    }

    /// PostgreSQL only: the key checks this process trusts for a moment.
    pub(crate) fn key_checks(&self) -> Option<&crate::tenancy::KeyChecks> {
        self.key_checks.as_deref()
    }

    /// Closes every connection.
    pub async fn close(&self) {
        if let Some(serving) = &self.serving {
            serving.close().await;
        }
        self.pool.close().await;
    }

    /// The transaction of a write on the serving path. On SQLite it is one write in a
    /// transaction shared with the writes running at the same time, committed once for all
    /// of them (see `group_commit`): it is answered only after that commit. On PostgreSQL
    /// it is a transaction of its own, and the rows a write reads are locked with
    /// `FOR UPDATE`.
    pub async fn begin(&self) -> Result<Txn, TxnError> {
        crate::sqlite_reads::release_held();
        let started = std::time::Instant::now();
        let _waiting = crate::metrics::PoolWaiting::start();
        match &self.writer {
            Some(writer) => Ok(Txn::sqlite(
                crate::group_commit::GroupWrite::begin(writer).await?,
                started,
            )),
            None => {
                let mut conn = self.serving().acquire().await?;
                conn.begin().await?;
                Ok(Txn::postgres(conn, started))
            }
        }
    }

    /// [`Database::begin`] for a write of exactly one statement: on PostgreSQL the
    /// statement runs as its own transaction, without the `BEGIN` and `COMMIT` round trips.
    pub async fn begin_alone(&self) -> Result<Txn, TxnError> {
        match self.kind {
            StoreKind::Sqlite => self.begin().await,
            StoreKind::Postgres => {
                let started = std::time::Instant::now();
                let conn = {
                    let _waiting = crate::metrics::PoolWaiting::start();
                    self.serving().acquire().await?
                };
                Ok(Txn::postgres_alone(conn, started))
            }
        }
    }

    /// The position a write gets: on SQLite, from [`Database::position_in`]; on PostgreSQL
    /// `None`, and the statement that writes it takes its transaction id in place
    /// (`COALESCE($n, pg_current_xact_id()::text::bigint)`), which spares a round trip.
    pub async fn position_for(&self, tx: &mut Txn) -> Result<Option<i64>, TxnError> {
        match self.kind {
            StoreKind::Sqlite => self.position_in(tx).await.map(Some),
            StoreKind::Postgres => Ok(None),
        }
    }

    /// A sqlx transaction of its own, for the writes off the serving path (`admin`
    /// commands, linked accounts' credentials). On SQLite it takes the writer's slot
    /// first, after the shared transaction is committed, and `BEGIN IMMEDIATE` takes the
    /// write lock up front; on PostgreSQL the rows a write reads are locked with
    /// `FOR UPDATE`.
    pub async fn begin_write(&self) -> Result<WriteTransaction, sqlx::Error> {
        crate::sqlite_reads::release_held();
        let started = std::time::Instant::now();
        let (tx, slot) = {
            let _waiting = crate::metrics::PoolWaiting::start();
            match &self.writer {
                Some(writer) => {
                    let slot = crate::group_commit::Slot::take(writer, true).await;
                    (self.pool.begin_with("BEGIN IMMEDIATE").await?, Some(slot))
                }
                None => (self.pool.begin().await?, None),
            }
        };
        Ok(WriteTransaction {
            tx: Some(tx),
            started,
            _slot: slot,
        })
    }

    /// Holds a lock that one process at a time may hold across every replica, until the
    /// returned guard is released: on PostgreSQL a session advisory lock (released also
    /// when the process dies), on SQLite nothing (its writers are serialised already).
    pub async fn exclusive(&self, name: &str) -> Result<Exclusive, sqlx::Error> {
        if self.kind == StoreKind::Sqlite {
            return Ok(Exclusive { conn: None });
        }
        let mut conn = self.pool.acquire().await?;
        sqlx::query("SELECT pg_advisory_lock(hashtext($1))::text")
            .bind(name)
            .execute(&mut *conn)
            .await?;
        Ok(Exclusive {
            conn: Some((conn, name.to_owned())),
        })
    }

    /// The spelling of a statement for this store.
    pub fn pick(&self, sqlite: &'static str, postgres: &'static str) -> &'static str {
        match self.kind {
            StoreKind::Sqlite => sqlite,
            StoreKind::Postgres => postgres,
        }
    }

    /// The position of the write transaction `tx` in commit order, for paging: every
    /// write that commits after a reader's horizon has a larger position than anything the
    /// reader was served.
    ///
    /// SQLite has one writer at a time, so a counter is commit order. On PostgreSQL it is
    /// the transaction id; readers only serve positions below the oldest transaction still
    /// running (see the `HORIZON` of the page queries), so a write that commits late is
    /// never passed over.
    pub async fn next_position(&self, tx: &mut sqlx::AnyConnection) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar(self.position_sql()).fetch_one(tx).await
    }

    /// The statement that gives a write its position (see [`Database::next_position`]).
    fn position_sql(&self) -> &'static str {
        self.pick(
            "UPDATE positions SET next = next + 1 RETURNING next",
            "SELECT pg_current_xact_id()::text::bigint",
        )
    }

    /// [`Database::next_position`] in a [`Txn`]; on SQLite counted by the transaction its
    /// writes share ([`crate::group_commit::GroupWrite::next_position`]).
    pub async fn position_in(&self, tx: &mut Txn) -> Result<i64, TxnError> {
        if let Some(counted) = tx.counted_position() {
            return counted;
        }
        let row = tx.fetch_optional(self.position_sql(), &[]).await?;
        row.map(|r| r.int(0))
            .ok_or(TxnError::Sqlx(sqlx::Error::RowNotFound))
    }
}

impl Database {
    /// What in the live settings of this database would let an acknowledged write be lost
    /// in a crash of the machine: empty when every commit is on disk before it is answered.
    /// Read on a connection of the pool, so it sees what the server's own sessions run with.
    pub async fn durability_problems(&self) -> Result<Vec<String>, sqlx::Error> {
        let mut conn = self.pool.acquire().await?;
        durability_problems(&mut conn, self.kind).await
    }
}

/// [`Database::durability_problems`] on one connection.
pub async fn durability_problems(
    conn: &mut sqlx::AnyConnection,
    kind: StoreKind,
) -> Result<Vec<String>, sqlx::Error> {
    let mut problems = Vec::new();
    match kind {
        StoreKind::Sqlite => {
            // 2 is FULL, 3 is EXTRA; both sync the WAL on every commit.
            let synchronous: i64 = sqlx::query_scalar("PRAGMA synchronous")
                .fetch_one(&mut *conn)
                .await?;
            if synchronous < 2 {
                problems.push(format!("synchronous is {synchronous}, not FULL (2)"));
            }
            let journal: String = sqlx::query_scalar("PRAGMA journal_mode")
                .fetch_one(&mut *conn)
                .await?;
            if journal != "wal" {
                problems.push(format!("journal_mode is {journal}, not wal"));
            }
        }
        StoreKind::Postgres => {
            for setting in ["fsync", "synchronous_commit", "full_page_writes"] {
                let value: String = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                    "SELECT current_setting('{setting}')"
                )))
                .fetch_one(&mut *conn)
                .await?;
                if value != "on" {
                    problems.push(format!("{setting} is {value}, not on"));
                }
            }
        }
    }
    Ok(problems)
}

/// A lock taken with [`Database::exclusive`].
pub struct Exclusive {
    conn: Option<(sqlx::pool::PoolConnection<sqlx::Any>, String)>,
}

impl Exclusive {
    pub async fn release(mut self) -> Result<(), sqlx::Error> {
        if let Some((mut conn, name)) = self.conn.take() {
            sqlx::query("SELECT pg_advisory_unlock(hashtext($1))::text")
                .bind(name)
                .execute(&mut *conn)
                .await?;
        }
        Ok(())
    }
}

impl Drop for Exclusive {
    fn drop(&mut self) {
        // Not released: close the session, which releases the lock with it.
        if let Some((mut conn, _)) = self.conn.take() {
            conn.close_on_drop();
        }
    }
}

/// The text form of a timestamp in the database: fixed width, so text order is time order.
/// A write transaction from [`Database::begin_write`]: its connection (through `Deref`), and
/// [`WriteTransaction::commit`]. Dropped uncommitted, it rolls back. Its duration, from the
/// wait for `BEGIN` to the end of `COMMIT` or the rollback, goes to
/// `crm_db_write_transaction_duration_seconds`.
pub struct WriteTransaction {
    tx: Option<sqlx::Transaction<'static, sqlx::Any>>,
    started: std::time::Instant,
    /// SQLite: the writer's slot, held until the transaction ends (declared after `tx`, so
    /// a rollback on drop is under way before the next writer goes).
    _slot: Option<crate::group_commit::Slot>,
}

impl WriteTransaction {
    /// Commits: once this returns `Ok`, the write is durable.
    pub async fn commit(mut self) -> Result<(), sqlx::Error> {
        let tx = self.tx.take().expect("a transaction is committed once");
        let result = tx.commit().await;
        let outcome = if result.is_ok() { "commit" } else { "failed" };
        crate::metrics::write_transaction(self.started.elapsed(), outcome);
        result
    }
}

impl std::ops::Deref for WriteTransaction {
    type Target = sqlx::AnyConnection;

    fn deref(&self) -> &sqlx::AnyConnection {
        self.tx.as_ref().expect("not yet committed")
    }
}

impl std::ops::DerefMut for WriteTransaction {
    fn deref_mut(&mut self) -> &mut sqlx::AnyConnection {
        self.tx.as_mut().expect("not yet committed")
    }
}

impl Drop for WriteTransaction {
    fn drop(&mut self) {
        if self.tx.is_some() {
            crate::metrics::write_transaction(self.started.elapsed(), "rollback");
        }
    }
}

/// A stored timestamp: RFC 3339 in UTC with microseconds, `2026-11-23T17:22:53.592583Z`.
pub fn timestamp(t: chrono::DateTime<chrono::Utc>) -> String {
    // Written directly, not through a format string parsed on every call.
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_keep_their_stored_spelling() {
        for (secs, nanos, stored) in [
            (0, 0, "1970-01-01T00:00:00.000000Z"),
            (1_795_454_573, 592_583_849, "2026-11-23T17:22:53.592583Z"),
            (4_102_444_799, 999_999_999, "2099-12-31T23:59:59.999999Z"),
        ] {
            let t = chrono::DateTime::from_timestamp(secs, nanos).unwrap();
            assert_eq!(timestamp(t), stored);
        }
    }

    #[test]
    fn paths_and_urls_name_their_store() {
        for (given, kind) in [
            ("crm.db", StoreKind::Sqlite),
            ("/var/lib/crm/crm.db", StoreKind::Sqlite),
            ("sqlite:crm.db", StoreKind::Sqlite),
            ("sqlite:///tmp/crm.db", StoreKind::Sqlite),
            ("postgres://crm@localhost/crm", StoreKind::Postgres),
            (
                "postgresql://crm:pw@db.example:5433/crm",
                StoreKind::Postgres,
            ),
        ] {
            assert_eq!(
                given.parse::<DatabaseUrl>().unwrap().kind(),
                kind,
                "{given}"
            );
        }
        for bad in ["", "mysql://x/y", "sqlite:", "postgres://"] {
            assert!(bad.parse::<DatabaseUrl>().is_err(), "{bad}");
        }
    }

    #[test]
    fn passwords_never_show() {
        for given in [
            "postgres://crm:hunter2secret@localhost:5432/crm",
            "postgres://crm@localhost/crm?password=hunter2secret&sslmode=disable",
        ] {
            let url: DatabaseUrl = given.parse().unwrap();
            for shown in [url.to_string(), format!("{url:?}")] {
                assert!(!shown.contains("hunter2secret"), "{shown}");
                assert!(shown.contains("localhost"), "{shown}");
            }
        }
    }

    #[test]
    fn odd_file_names_stay_file_names() {
        let url: DatabaseUrl = "/tmp/a?b#c%d.db".parse().unwrap();
        assert_eq!(url.secret_url(), "sqlite:///tmp/a%3Fb%23c%25d.db?mode=rwc");
    }
}
