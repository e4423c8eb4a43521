//! PostgreSQL only: the connections the serving path runs its statements on, kept by this
//! process instead of sqlx's pool. [`ServingConns`] hands out a [`ServingConn`].
//!
//! sqlx's pool sends a `Sync` message and waits for the server's answer every time a
//! connection goes back to it, so that a connection left in the middle of its work is
//! ready again. That makes a read of one statement two round trips to the server, and the
//! server's half of each round trip (waking up, reading, answering) costs about as much
//! CPU as the statement itself.
//!
//! Here a connection whose statements all finished goes back as it is
//! ([`ServingConn::release`]). One dropped without that, by a request cancelled half-way,
//! a statement that failed, or a transaction left open, is made ready first, as sqlx's pool
//! would: a task rolls back what is open or sends the `Sync`, and only then puts it back.
//! A connection that does not answer within the acquire timeout is closed, and its place
//! freed. A connection idle for
//! [`CHECK_AFTER_IDLE`] is checked the same way before it is handed out, so a server
//! that restarted in between costs no failed request.
//!
//! At most `max` connections are open at once: a request holds a permit while it holds a
//! connection, and a new connection is opened only when none is idle.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::any::AnyConnectOptions;
use sqlx::{AnyConnection, Connection, Executor};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How long a connection may sit idle before it is checked with a round trip when handed
/// out again.
pub const CHECK_AFTER_IDLE: Duration = Duration::from_secs(30);

/// The serving path's connections to one PostgreSQL database.
pub struct ServingConns {
    options: AnyConnectOptions,
    idle: Mutex<Vec<Idle>>,
    permits: Arc<Semaphore>,
    max: u32,
    open: AtomicU32,
    acquire_timeout: Duration,
    check_after_idle: Duration,
}

struct Idle {
    conn: AnyConnection,
    since: Instant,
}

impl ServingConns {
    pub fn new(options: AnyConnectOptions, max: u32, acquire_timeout: Duration) -> Arc<Self> {
        Self::with_idle_check(options, max, acquire_timeout, CHECK_AFTER_IDLE)
    }

    /// [`ServingConns::new`] with another time than [`CHECK_AFTER_IDLE`] after which an
    /// idle connection is checked before it is handed out.
    pub fn with_idle_check(
        options: AnyConnectOptions,
        max: u32,
        acquire_timeout: Duration,
        check_after_idle: Duration,
    ) -> Arc<Self> {
        Arc::new(ServingConns {
            options,
            idle: Mutex::new(Vec::new()),
            permits: Arc::new(Semaphore::new(max as usize)),
            max,
            open: AtomicU32::new(0),
            acquire_timeout,
            check_after_idle,
        })
    }

    /// A connection: an idle one, or a new one while fewer than `max` are open. Waits at
    /// most the acquire timeout, for a free connection and for the server together, and
    /// then fails with [`sqlx::Error::PoolTimedOut`].
    pub async fn acquire(self: &Arc<Self>) -> Result<ServingConn, sqlx::Error> {
        let deadline = tokio::time::Instant::now() + self.acquire_timeout;
        let permit = tokio::time::timeout_at(deadline, self.permits.clone().acquire_owned())
            .await
            .map_err(|_| sqlx::Error::PoolTimedOut)?
            .map_err(|_| sqlx::Error::PoolClosed)?;
        loop {
            let idle = self.lock_idle().pop();
            let Some(Idle { mut conn, since }) = idle else {
                break;
            };
            if since.elapsed() < self.check_after_idle {
                return Ok(self.hand_out(conn, permit));
            }
            match tokio::time::timeout_at(deadline, conn.ping()).await {
                Ok(Ok(())) => return Ok(self.hand_out(conn, permit)),
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "an idle database connection stopped answering");
                    self.closed_one();
                }
                Err(_) => {
                    self.closed_one();
                    return Err(sqlx::Error::PoolTimedOut);
                }
            }
        }
        let conn = tokio::time::timeout_at(deadline, AnyConnection::connect_with(&self.options))
            .await
            .map_err(|_| sqlx::Error::PoolTimedOut)??;
        self.open.fetch_add(1, Ordering::Relaxed);
        Ok(self.hand_out(conn, permit))
    }

    fn hand_out(
        self: &Arc<Self>,
        conn: AnyConnection,
        permit: OwnedSemaphorePermit,
    ) -> ServingConn {
        ServingConn {
            conn: Some(conn),
            permit: Some(permit),
            conns: Arc::clone(self),
            in_transaction: false,
        }
    }

    fn lock_idle(&self) -> std::sync::MutexGuard<'_, Vec<Idle>> {
        // The list stays whole even if a holder panicked: pushes and pops are single steps.
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn put_back(&self, conn: AnyConnection) {
        if self.permits.is_closed() {
            self.closed_one();
            return;
        }
        self.lock_idle().push(Idle {
            conn,
            since: Instant::now(),
        });
    }

    fn closed_one(&self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
    }

    /// The connections open now, and how many of them are idle.
    pub fn counts(&self) -> (u32, u32) {
        let idle = self.lock_idle().len() as u32;
        let open = self.open.load(Ordering::Relaxed);
        (open.max(idle), idle)
    }

    pub fn max(&self) -> u32 {
        self.max
    }

    /// Refuses further acquires and closes the idle connections; one in use is closed when
    /// its holder lets it go.
    pub async fn close(&self) {
        self.permits.close();
        let idle = std::mem::take(&mut *self.lock_idle());
        for Idle { conn, .. } in idle {
            self.closed_one();
            let _ = conn.close().await;
        }
    }
}

/// A connection of [`ServingConns`], used through `&mut *conn` as sqlx's
/// `&mut AnyConnection`. [`ServingConn::release`] gives it back once its statements have
/// finished; dropped without that, it is made ready again first (see the module).
pub struct ServingConn {
    conn: Option<AnyConnection>,
    permit: Option<OwnedSemaphorePermit>,
    conns: Arc<ServingConns>,
    in_transaction: bool,
}

impl ServingConn {
    /// Starts a transaction: until [`ServingConn::commit`], a drop rolls it back.
    pub async fn begin(&mut self) -> Result<(), sqlx::Error> {
        self.in_transaction = true;
        (&mut **self).execute("BEGIN").await?;
        Ok(())
    }

    /// Commits the transaction [`ServingConn::begin`] started, and gives the connection
    /// back.
    pub async fn commit(mut self) -> Result<(), sqlx::Error> {
        (&mut *self).execute("COMMIT").await?;
        self.in_transaction = false;
        self.release();
        Ok(())
    }

    /// Gives the connection back as it is: every statement run on it has finished.
    pub fn release(mut self) {
        if self.in_transaction {
            // Dropped instead: the transaction is rolled back first.
            return;
        }
        if let Some(conn) = self.conn.take() {
            self.conns.put_back(conn);
        }
    }
}

impl std::ops::Deref for ServingConn {
    type Target = AnyConnection;

    fn deref(&self) -> &AnyConnection {
        self.conn.as_ref().expect("held until released")
    }
}

impl std::ops::DerefMut for ServingConn {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        self.conn.as_mut().expect("held until released")
    }
}

impl Drop for ServingConn {
    fn drop(&mut self) {
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        let conns = Arc::clone(&self.conns);
        // The permit goes with the connection, so no new one is opened in its place while
        // this one is made ready.
        let permit = self.permit.take();
        let in_transaction = self.in_transaction;
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            conns.closed_one();
            return;
        };
        runtime.spawn(async move {
            let ready = async {
                if in_transaction {
                    conn.execute("ROLLBACK").await.map(drop)
                } else {
                    conn.ping().await
                }
            };
            // A server that stopped answering without closing the socket must not keep the
            // permit: after the acquire timeout the connection is closed instead.
            let ready = tokio::time::timeout(conns.acquire_timeout, ready)
                .await
                .unwrap_or(Err(sqlx::Error::PoolTimedOut));
            match ready {
                Ok(()) => conns.put_back(conn),
                Err(e) => {
                    tracing::debug!(error = %e, "closed a database connection that was left mid-work");
                    conns.closed_one();
                }
            }
            drop(permit);
        });
    }
}

/// A connection for a read of the serving path: on PostgreSQL one of [`ServingConns`], on
/// SQLite one of sqlx's pool.
pub enum Conn {
    Serving(ServingConn),
    Pooled(sqlx::pool::PoolConnection<sqlx::Any>),
}

impl Conn {
    /// Gives the connection back once every statement run on it has finished. Dropping it
    /// instead is always safe, and costs a round trip on PostgreSQL.
    pub fn release(self) {
        match self {
            Conn::Serving(conn) => conn.release(),
            Conn::Pooled(conn) => drop(conn),
        }
    }
}

impl std::ops::Deref for Conn {
    type Target = AnyConnection;

    fn deref(&self) -> &AnyConnection {
        match self {
            Conn::Serving(conn) => conn,
            Conn::Pooled(conn) => conn,
        }
    }
}

impl std::ops::DerefMut for Conn {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        match self {
            Conn::Serving(conn) => conn,
            Conn::Pooled(conn) => conn,
        }
    }
}
