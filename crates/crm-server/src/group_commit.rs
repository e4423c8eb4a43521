//! Group commit on a SQLite store: the concurrent writes of one process share a
//! transaction, and one `COMMIT` (one sync of the WAL) makes them all durable.
//!
//! Every write on SQLite is serialised anyway (one writer at a time), and with
//! `synchronous = FULL` most of a lone write's time was its own `COMMIT` and the sqlx round
//! trips around it. Here the writes run in place on one read-write connection:
//! - a write takes the writer's slot (in the order writers asked for it), opens the shared
//!   transaction if none is open (`BEGIN IMMEDIATE`), and runs inside a savepoint of its own,
//!   so a write that fails rolls back alone;
//! - when it is done it hands the slot to the next writer waiting, and the transaction stays
//!   open for it; the last writer of a burst (nobody waiting, or [`MAX_BATCH`] writes in the
//!   transaction) commits. While the WAL is being synced the
//!   transaction stays open even then, and the thread that syncs commits it after the sync
//!   (see [`State::syncing`]): its writes would wait for the next sync anyway, and the
//!   writes that come meanwhile join one `COMMIT` instead of several;
//! - every write waits for the `COMMIT` of its transaction before it is answered, so what is
//!   acknowledged is on disk. When that `COMMIT` fails, every write of the transaction fails.
//!
//! Writers that need a transaction of their own on sqlx (`admin` work, the connectors' account
//! updates) take the slot [`Slot::exclusive`]ly: the open transaction is committed first.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags};

#[cfg(test)]
use crate::sqlite_reads::QUIET_BEFORE_ANCHOR;
use crate::sqlite_reads::SqliteReads;
use tokio::sync::{oneshot, watch};

/// The most writes one transaction holds; then it is committed even while writers wait, so a
/// steady stream of writes still sees its commits.
pub const MAX_BATCH: usize = 128;

/// How long a write waits for another process (an `admin` command) to finish its own write.
const BUSY_FOR: Duration = Duration::from_secs(10);

/// How a transaction ended: committed, or the reason it did not.
type Outcome = Result<(), Arc<str>>;

/// A write failed; the message is SQLite's (it never holds a value of the write).
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("SQLite write: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("the transaction shared with other writes failed: {0}")]
    Batch(Arc<str>),
    #[error("another process held the database's write lock for {0:?}")]
    Busy(Duration),
    #[error("cannot start the checkpoint thread: {0}")]
    Thread(std::io::Error),
}

/// The one read-write connection of a SQLite store, and who holds it.
pub struct GroupWriter {
    conn: Mutex<Connection>,
    state: Mutex<State>,
    /// Syncs the WAL after the commits (see [`Syncer`]); `None` when the WAL file could not
    /// be opened, and then every `COMMIT` syncs it itself (`synchronous = FULL`).
    syncer: Option<Arc<Syncer>>,
    /// Transactions committed, for tests and logs.
    commits: std::sync::atomic::AtomicU64,
    /// The store's in-place reads, whose anchor a write drops (see `sqlite_reads`).
    reads: Option<Arc<SqliteReads>>,
}

impl std::fmt::Debug for GroupWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupWriter").finish_non_exhaustive()
    }
}

#[derive(Default)]
struct State {
    /// A writer holds the slot.
    busy: bool,
    /// Writers waiting for the slot, in order.
    waiters: VecDeque<Waiter>,
    /// The open transaction, if any.
    batch: Option<OpenBatch>,
    /// The syncer is syncing the WAL. A transaction that would commit now is left open
    /// instead, for the writes that come meanwhile to join: its commit would only wait for
    /// the next sync anyway. The syncer commits it when its sync is done, unless a writer
    /// holds the slot (and then that writer does).
    syncing: bool,
}

struct Waiter {
    wake: oneshot::Sender<()>,
    exclusive: bool,
}

struct OpenBatch {
    /// Writes done (savepoint released) in this transaction.
    writes: usize,
    done: Done,
    /// The last paging position given to a write of this transaction, once one was (see
    /// [`GroupWrite::next_position`]); stored in `positions` just before the `COMMIT`.
    position: Option<i64>,
}

impl GroupWriter {
    /// Opens the store's file for writing, with the durability settings of the store.
    pub fn open(path: &Path) -> rusqlite::Result<GroupWriter> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        // No busy handler: `BEGIN IMMEDIATE` is retried without blocking the runtime.
        conn.busy_timeout(Duration::ZERO)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;",
        )?;
        // Checkpoints run on a thread of their own (see `checkpoints`), not inside a COMMIT
        // that writes wait for.
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        // Each write is a savepoint of the shared transaction; the pages it changes are
        // copied to a statement journal, kept in memory rather than spilled to a temporary
        // file (created, written and deleted) when a write touches many pages.
        conn.pragma_update(None, "temp_store", "MEMORY")?;
        conn.set_prepared_statement_cache_capacity(64);
        // The WAL file exists once a connection has read the database in WAL mode.
        conn.query_row("SELECT count(*) FROM sqlite_master", [], |_| Ok(()))?;
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        let syncer = match std::fs::File::open(&wal) {
            Ok(wal) => {
                // Commits write the WAL without syncing it; the syncer syncs it before any
                // write of theirs is answered.
                conn.pragma_update(None, "synchronous", "NORMAL")?;
                Some(Arc::new(Syncer {
                    wal,
                    pending: Mutex::new(Vec::new()),
                    wake: std::sync::Condvar::new(),
                    closed: Default::default(),
                    syncs: Default::default(),
                }))
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot open the WAL file to sync it; every commit syncs it");
                None
            }
        };
        let writer = GroupWriter {
            conn: Mutex::new(conn),
            state: Mutex::new(State::default()),
            syncer,
            commits: Default::default(),
            reads: None,
        };
        Ok(writer)
    }

    /// Opens the writer and starts its checkpoints (see [`checkpoints`]). Each write, and
    /// each checkpoint that copies the whole WAL, drops the read anchor of `reads`.
    pub fn start(
        path: &Path,
        reads: Option<Arc<SqliteReads>>,
    ) -> Result<Arc<GroupWriter>, WriteError> {
        let mut writer = GroupWriter::open(path)?;
        writer.reads = reads;
        let writer = Arc::new(writer);
        let checkpointer = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        checkpointer.busy_timeout(Duration::ZERO)?;
        let watched = Arc::downgrade(&writer);
        std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || checkpoints(&checkpointer, &watched))
            .map_err(WriteError::Thread)?;
        if let Some(syncer) = writer.syncer.clone() {
            let watched = Arc::downgrade(&writer);
            std::thread::Builder::new()
                .name("sqlite-sync".into())
                .spawn(move || syncer.run(&watched))
                .map_err(WriteError::Thread)?;
        }
        Ok(writer)
    }

    /// Drops the read anchor, so it neither holds the WAL back nor sits on an older slot.
    fn unanchor(&self) {
        if let Some(reads) = &self.reads {
            reads.unanchor();
        }
    }

    /// How many transactions this writer committed (or tried to).
    pub fn commits(&self) -> u64 {
        self.commits.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on the connection. Only the holder of the slot calls it.
    pub(crate) fn with_conn<T>(&self, f: impl FnOnce(&Connection) -> T) -> T {
        f(&self.conn())
    }

    /// Commits the open transaction, if any, and tells its writes how it went.
    fn commit_open(&self) {
        let Some(batch) = self.state().batch.take() else {
            return;
        };
        let outcome = {
            let conn = self.conn();
            batch
                .position
                .map_or(Ok(0), |last| {
                    conn.prepare_cached("UPDATE positions SET next = ?1")
                        .and_then(|mut s| s.execute([last]))
                })
                .and_then(|_| {
                    conn.prepare_cached("COMMIT")
                        .and_then(|mut s| s.execute([]))
                })
                .map(drop)
                .map_err(|e| Arc::<str>::from(e.to_string()))
        };
        if let Err(e) = &outcome {
            tracing::error!(error = %e, writes = batch.writes, "a group commit failed");
            let conn = self.conn();
            if !conn.is_autocommit() {
                let _ = conn.execute_batch("ROLLBACK");
            }
        }
        self.commits
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        crate::metrics::group_commit(batch.writes);
        match (&self.syncer, outcome) {
            (Some(syncer), Ok(())) => syncer.after_next_sync(batch.done),
            (_, outcome) => {
                batch.done.send_replace(Some(outcome));
            }
        }
    }

    /// How many times the WAL was synced after commits (0 when every commit syncs it).
    pub fn syncs(&self) -> u64 {
        self.syncer
            .as_ref()
            .map_or(0, |s| s.syncs.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Gives the slot up: to the next writer waiting, or, when nobody waits (or the
    /// transaction is full, or the next writer wants a transaction of its own), after
    /// committing the open transaction. Blocks for the `COMMIT`: call it where that is fine.
    fn release_blocking(&self) {
        loop {
            let mut state = self.state();
            // Writers that gave up waiting are passed over.
            while state.waiters.front().is_some_and(|w| w.wake.is_closed()) {
                state.waiters.pop_front();
            }
            if needs_commit(&state) {
                drop(state);
                self.commit_open();
                continue;
            }
            match state.waiters.pop_front() {
                Some(waiter) => {
                    if waiter.wake.send(()).is_ok() {
                        return;
                    }
                    // It gave up just now: decide again.
                }
                None => {
                    state.busy = false;
                    return;
                }
            }
        }
    }

    /// Gives the slot up without blocking the caller: a `COMMIT` it needs runs on a
    /// blocking thread.
    fn release(self: &Arc<Self>) {
        // A `COMMIT` that does not sync only hands pages to the kernel: it runs in place.
        if needs_commit(&self.state()) && self.syncer.is_none() {
            let writer = self.clone();
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => {
                    runtime.spawn_blocking(move || writer.release_blocking());
                }
                Err(_) => writer.release_blocking(),
            }
        } else {
            self.release_blocking();
        }
    }
}

/// Whether the slot can only be given up after a `COMMIT`: a transaction is open and nobody
/// waits to join it (or it is full, or the next writer wants a transaction of its own).
/// Nobody waiting while the WAL is being synced leaves the transaction open (see
/// [`State::syncing`]).
fn needs_commit(state: &State) -> bool {
    state.batch.as_ref().is_some_and(|b| {
        b.writes >= MAX_BATCH
            || match state.waiters.iter().find(|w| !w.wake.is_closed()) {
                Some(next) => next.exclusive,
                None => !state.syncing,
            }
    })
}

impl Drop for GroupWriter {
    fn drop(&mut self) {
        if let Some(syncer) = &self.syncer {
            syncer
                .closed
                .store(true, std::sync::atomic::Ordering::Relaxed);
            syncer.wake.notify_all();
        }
    }
}

type Done = Arc<watch::Sender<Option<Outcome>>>;

/// Durability after the commit: the writer commits with `synchronous = NORMAL`, so a
/// `COMMIT` writes the WAL without waiting for the disk, and the slot passes on at once;
/// this thread then syncs the WAL file once for every commit made since its last sync,
/// and only after that sync are the writes of those commits answered. What is answered is
/// on disk, as with `synchronous = FULL`, while the next writes already run. (A reader may
/// see a write in the moment between its commit and the sync; its writer is not answered
/// before the sync, and a write that depends on what was read is synced with it, since the
/// WAL is one file written in order.)
struct Syncer {
    wal: std::fs::File,
    /// Commits waiting for a sync.
    pending: Mutex<Vec<Done>>,
    wake: std::sync::Condvar,
    closed: std::sync::atomic::AtomicBool,
    syncs: std::sync::atomic::AtomicU64,
}

impl Syncer {
    fn after_next_sync(&self, done: Done) {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(done);
        self.wake.notify_one();
    }

    fn run(&self, watched: &std::sync::Weak<GroupWriter>) {
        loop {
            let waiting = {
                let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
                while pending.is_empty() {
                    if self.closed.load(std::sync::atomic::Ordering::Relaxed) {
                        return;
                    }
                    pending = self
                        .wake
                        .wait_timeout(pending, Duration::from_millis(100))
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
                std::mem::take(&mut *pending)
            };
            let writer = watched.upgrade();
            if let Some(writer) = &writer {
                writer.state().syncing = true;
            }
            // Every commit taken above returned before this sync starts.
            let outcome = self.wal.sync_data().map_err(|e| {
                tracing::error!(error = %e, "syncing the WAL failed: writes are not answered");
                Arc::<str>::from(format!("could not sync the WAL: {e}"))
            });
            self.syncs
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            for done in waiting {
                done.send_replace(Some(outcome.clone()));
            }
            // A transaction left open during the sync, with its slot free, is committed
            // here; one whose writer still holds the slot is committed by that writer.
            if let Some(writer) = writer {
                let left_open = {
                    let mut state = writer.state();
                    state.syncing = false;
                    let left_open = state.batch.is_some() && !state.busy;
                    state.busy |= left_open;
                    left_open
                };
                if left_open {
                    writer.commit_open();
                    writer.release_blocking();
                }
            }
        }
    }
}

/// The writer's slot, held until dropped. Dropping it releases it (see
/// [`GroupWriter::release`]).
pub struct Slot {
    writer: Arc<GroupWriter>,
}

impl Slot {
    /// Waits for the slot. `exclusive`: the caller writes through its own connection, so
    /// the shared transaction is committed before it gets the slot.
    pub async fn take(writer: &Arc<GroupWriter>, exclusive: bool) -> Slot {
        writer.unanchor();
        let wake = {
            let mut state = writer.state();
            if !state.busy {
                state.busy = true;
                // A free slot may have a transaction left open while the WAL is synced;
                // an exclusive writer needs it committed.
                if exclusive && state.batch.is_some() {
                    drop(state);
                    writer.commit_open();
                }
                None
            } else {
                let (wake, woken) = oneshot::channel();
                state.waiters.push_back(Waiter { wake, exclusive });
                Some(woken)
            }
        };
        if let Some(woken) = wake {
            let mut waiting = Waiting {
                woken: Some(woken),
                writer: writer.clone(),
            };
            if let Some(woken) = waiting.woken.as_mut() {
                // The sender is only dropped after a send or once it saw this side closed.
                let _ = woken.await;
            }
            waiting.woken = None;
        }
        // Handed over by `release_blocking`, which commits before it hands the slot to an
        // exclusive writer, or free, and then committed above for an exclusive writer.
        Slot {
            writer: writer.clone(),
        }
    }

    pub fn writer(&self) -> &GroupWriter {
        &self.writer
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.writer.release();
    }
}

/// A writer waiting for the slot. Dropped while waiting (its request was given up), it
/// passes on a slot that was handed to it meanwhile.
struct Waiting {
    /// `None` once the slot was received.
    woken: Option<oneshot::Receiver<()>>,
    writer: Arc<GroupWriter>,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if let Some(mut woken) = self.woken.take() {
            woken.close();
            if woken.try_recv().is_ok() {
                self.writer.release();
            }
        }
    }
}

/// One write inside the shared transaction: its savepoint, and the transaction it joined.
pub struct GroupWrite {
    slot: Option<Slot>,
    done: Arc<watch::Sender<Option<Outcome>>>,
}

impl GroupWrite {
    /// Takes the slot, joins (or opens) the shared transaction and opens this write's
    /// savepoint.
    pub async fn begin(writer: &Arc<GroupWriter>) -> Result<GroupWrite, WriteError> {
        let slot = Slot::take(writer, false).await;
        let open = writer.state().batch.as_ref().map(|b| b.done.clone());
        let done = match open {
            Some(done) => done,
            None => {
                begin_immediate(writer).await?;
                let done = Arc::new(watch::Sender::new(None));
                writer.state().batch = Some(OpenBatch {
                    writes: 0,
                    done: done.clone(),
                    position: None,
                });
                done
            }
        };
        writer.with_conn(|c| run(c, "SAVEPOINT w"))?;
        Ok(GroupWrite {
            slot: Some(slot),
            done,
        })
    }

    pub fn writer(&self) -> &GroupWriter {
        self.slot
            .as_ref()
            .expect("held until the write ends")
            .writer()
    }

    /// The next paging position, in commit order. The shared transaction holds the
    /// database's write lock from its `BEGIN IMMEDIATE` to its `COMMIT`, so `positions` is
    /// read once per transaction, counted on in memory, and written back once before the
    /// `COMMIT`. A write that rolls back alone leaves a gap, which paging does not mind.
    pub fn next_position(&self) -> rusqlite::Result<i64> {
        let writer = self.writer();
        let last = writer.state().batch.as_ref().and_then(|b| b.position);
        let last = match last {
            Some(last) => last,
            None => writer.with_conn(|c| {
                c.prepare_cached("SELECT next FROM positions")?
                    .query_row([], |r| r.get::<_, i64>(0))
            })?,
        };
        let next = last + 1;
        if let Some(batch) = writer.state().batch.as_mut() {
            batch.position = Some(next);
        }
        Ok(next)
    }

    /// Ends the write and waits until its transaction is committed: once this returns `Ok`,
    /// the write is durable.
    pub async fn commit(mut self) -> Result<(), WriteError> {
        let slot = self.slot.take().expect("committed once");
        let released = slot.writer().with_conn(|c| run(c, "RELEASE w"));
        if let Err(e) = released {
            self.slot = Some(slot);
            return Err(e.into());
        }
        if let Some(batch) = slot.writer().state().batch.as_mut() {
            batch.writes += 1;
        }
        let mut done = self.done.subscribe();
        drop(slot);
        let outcome = done
            .wait_for(Option::is_some)
            .await
            .map(|o| o.clone().unwrap_or(Ok(())))
            .unwrap_or_else(|_| Err("the writer stopped".into()));
        outcome.map_err(WriteError::Batch)
    }
}

impl Drop for GroupWrite {
    /// Not committed: only this write's savepoint rolls back. When the failure took the
    /// whole transaction with it (SQLite rolls back on some errors), the other writes of
    /// the transaction are told.
    fn drop(&mut self) {
        let Some(slot) = self.slot.take() else {
            return;
        };
        let writer = slot.writer();
        let gone = writer.with_conn(|c| {
            if c.is_autocommit() {
                return true;
            }
            c.execute_batch("ROLLBACK TO w; RELEASE w").is_err()
        });
        if gone {
            let batch = writer.state().batch.take();
            if let Some(batch) = batch {
                writer.with_conn(|c| {
                    if !c.is_autocommit() {
                        let _ = c.execute_batch("ROLLBACK");
                    }
                });
                batch
                    .done
                    .send_replace(Some(Err("the transaction was rolled back".into())));
            }
        }
    }
}

/// How often the checkpoint thread copies what was committed since its last turn.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);

/// Copies the WAL into the database file while writes go on (a passive checkpoint never
/// waits for, nor stops, a writer or a reader), until the writer is gone. On the commit
/// path instead (SQLite's automatic checkpoints), a checkpoint's writes and sync would hold
/// up every write waiting for that commit.
fn checkpoints(conn: &Connection, writer: &std::sync::Weak<GroupWriter>) {
    let mut copied_after = 0;
    loop {
        std::thread::sleep(CHECKPOINT_EVERY);
        let Some((commits, reads)) = writer.upgrade().map(|w| (w.commits(), w.reads.clone()))
        else {
            return;
        };
        if commits == copied_after {
            continue;
        }
        match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
            Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
        }) {
            Ok((in_wal, copied)) => {
                if copied < in_wal {
                    // Readers still use the older pages; the next turn copies them.
                    tracing::trace!(in_wal, copied, "the WAL was copied in part");
                } else {
                    copied_after = commits;
                    // New readers read the database file now (another slot).
                    if let Some(reads) = &reads {
                        reads.unanchor();
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "a WAL checkpoint failed"),
        }
    }
}

/// Runs one statement without results from the connection's cache of prepared statements.
fn run(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(drop)
}

/// `BEGIN IMMEDIATE`, waiting (without blocking the runtime) while another process writes.
async fn begin_immediate(writer: &GroupWriter) -> Result<(), WriteError> {
    let started = Instant::now();
    loop {
        match writer.with_conn(|c| run(c, "BEGIN IMMEDIATE")) {
            Ok(()) => return Ok(()),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy
                    || e.code == rusqlite::ErrorCode::DatabaseLocked =>
            {
                if started.elapsed() > BUSY_FOR {
                    return Err(WriteError::Busy(BUSY_FOR));
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Arc<GroupWriter>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        Connection::open(&path)
            .unwrap()
            .execute_batch(
                "PRAGMA journal_mode = WAL;
                 CREATE TABLE parent (id INTEGER PRIMARY KEY);
                 CREATE TABLE t (v INTEGER NOT NULL UNIQUE,
                     parent INTEGER REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED);",
            )
            .unwrap();
        let writer = GroupWriter::start(&path, None).unwrap();
        (dir, writer)
    }

    fn insert(write: &GroupWrite, v: i64, parent: Option<i64>) -> rusqlite::Result<usize> {
        write
            .writer()
            .with_conn(|c| c.execute("INSERT INTO t (v, parent) VALUES (?1, ?2)", (v, parent)))
    }

    /// What another connection sees: only what was committed.
    fn committed(dir: &tempfile::TempDir) -> Vec<i64> {
        committed_in(dir, "v")
    }

    /// [`committed`], in the order `order_by` gives.
    fn committed_in(dir: &tempfile::TempDir, order_by: &str) -> Vec<i64> {
        let conn = Connection::open(dir.path().join("t.db")).unwrap();
        let mut s = conn
            .prepare(&format!("SELECT v FROM t ORDER BY {order_by}"))
            .unwrap();
        s.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writes_share_commits_and_all_land() {
        let (dir, writer) = store();
        let tasks: Vec<_> = (0..200)
            .map(|v| {
                let writer = writer.clone();
                tokio::spawn(async move {
                    let write = GroupWrite::begin(&writer).await.unwrap();
                    insert(&write, v, None).unwrap();
                    write.commit().await.unwrap();
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(committed(&dir), (0..200).collect::<Vec<_>>());
        let (commits, syncs) = (writer.commits(), writer.syncs());
        assert!(
            (1..200).contains(&commits),
            "200 concurrent writes took {commits} commits"
        );
        // Every write was answered after a sync of the WAL, and a sync serves many commits.
        assert!(
            (1..=commits).contains(&syncs),
            "{syncs} syncs, {commits} commits"
        );
    }

    #[tokio::test]
    async fn an_acknowledged_write_is_committed_and_a_failed_one_rolls_back_alone() {
        let (dir, writer) = store();
        let first = GroupWrite::begin(&writer).await.unwrap();
        insert(&first, 1, None).unwrap();
        // Two more writers wait while the first holds the slot.
        let failing = tokio::spawn({
            let writer = writer.clone();
            async move {
                let write = GroupWrite::begin(&writer).await.unwrap();
                insert(&write, 2, None).unwrap();
                // The same value again: refused by the unique index; the write is dropped.
                assert!(insert(&write, 1, None).is_err());
            }
        });
        let third = tokio::spawn({
            let writer = writer.clone();
            async move {
                let write = GroupWrite::begin(&writer).await.unwrap();
                insert(&write, 3, None).unwrap();
                write.commit().await
            }
        });
        tokio::task::yield_now().await;
        first.commit().await.unwrap();
        failing.await.unwrap();
        third.await.unwrap().unwrap();
        assert_eq!(committed(&dir), vec![1, 3]);
    }

    #[tokio::test]
    async fn when_the_commit_fails_every_write_of_the_transaction_fails() {
        let (dir, writer) = store();
        let first = GroupWrite::begin(&writer).await.unwrap();
        insert(&first, 1, None).unwrap();
        let second = tokio::spawn({
            let writer = writer.clone();
            async move {
                let write = GroupWrite::begin(&writer).await.unwrap();
                // A parent that does not exist: the deferred key fails the COMMIT.
                insert(&write, 2, Some(99)).unwrap();
                write.commit().await
            }
        });
        tokio::task::yield_now().await;
        assert!(matches!(first.commit().await, Err(WriteError::Batch(_))));
        assert!(matches!(second.await.unwrap(), Err(WriteError::Batch(_))));
        assert!(committed(&dir).is_empty());
        // The writer goes on.
        let next = GroupWrite::begin(&writer).await.unwrap();
        insert(&next, 4, None).unwrap();
        next.commit().await.unwrap();
        assert_eq!(committed(&dir), vec![4]);
    }

    #[tokio::test]
    async fn a_writer_that_gives_up_waiting_does_not_stall_the_others() {
        let (dir, writer) = store();
        let first = GroupWrite::begin(&writer).await.unwrap();
        insert(&first, 1, None).unwrap();
        let given_up = tokio::spawn({
            let writer = writer.clone();
            async move {
                let _ = GroupWrite::begin(&writer).await;
            }
        });
        tokio::task::yield_now().await;
        given_up.abort();
        let _ = given_up.await;
        first.commit().await.unwrap();
        let next = tokio::time::timeout(Duration::from_secs(5), GroupWrite::begin(&writer))
            .await
            .expect("the slot is free")
            .unwrap();
        insert(&next, 2, None).unwrap();
        next.commit().await.unwrap();
        assert_eq!(committed(&dir), vec![1, 2]);
    }

    fn big_write_sql(rows: usize) -> String {
        format!(
            "CREATE TABLE IF NOT EXISTS big (b BLOB);
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {rows})
             INSERT INTO big SELECT zeroblob(4000) FROM n;"
        )
    }

    /// The read anchor (see `sqlite_reads`) is dropped by each write and by a checkpoint that
    /// copied the whole WAL, so it never keeps the WAL from starting over.
    #[tokio::test]
    async fn the_read_anchor_never_keeps_the_wal_from_starting_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        Connection::open(&path)
            .unwrap()
            .execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t (v INTEGER);")
            .unwrap();
        let reads = Arc::new(SqliteReads::new(&path));
        let writer = GroupWriter::start(&path, Some(reads.clone())).unwrap();
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        let read = || {
            reads
                .read(|c| c.query_row("SELECT count(*) FROM t", [], |r| r.get::<_, i64>(0)))
                .unwrap()
        };
        let write_big = || async {
            let write = GroupWrite::begin(&writer).await.unwrap();
            assert!(!reads.anchored(), "a write drops the anchor");
            write
                .writer()
                .with_conn(|c| c.execute_batch(&big_write_sql(100)))
                .unwrap();
            write.commit().await.unwrap();
        };
        write_big().await;
        let wal_after_one = std::fs::metadata(&wal).unwrap().len();
        // The anchor, taken while the WAL holds pages not yet copied.
        tokio::time::sleep(QUIET_BEFORE_ANCHOR + Duration::from_millis(5)).await;
        read();
        assert!(
            reads.anchored(),
            "a read after a quiet spell takes the anchor"
        );
        // Until the whole WAL is copied (by the checkpoint thread, or here).
        let checker = Connection::open(&path).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let (busy, in_wal, copied): (i64, i64, i64) = checker
                .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
                .unwrap();
            if busy == 0 && in_wal == copied {
                break;
            }
            assert!(Instant::now() < deadline, "the WAL was never copied whole");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        drop(checker);
        read();
        write_big().await;
        let wal_after_two = std::fs::metadata(&wal).unwrap().len();
        assert!(
            wal_after_two <= wal_after_one + 64 * 1024,
            "the WAL grew from {wal_after_one} to {wal_after_two} bytes: it did not start over"
        );
    }

    #[tokio::test]
    async fn committed_pages_reach_the_database_file_without_a_commit_doing_it() {
        let (dir, writer) = store();
        let file = dir.path().join("t.db");
        let before = std::fs::metadata(&file).unwrap().len();
        let write = GroupWrite::begin(&writer).await.unwrap();
        write
            .writer()
            .with_conn(|c| {
                c.execute_batch(
                    "CREATE TABLE big (b BLOB);
                     WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200)
                     INSERT INTO big SELECT zeroblob(4000) FROM n;",
                )
            })
            .unwrap();
        write.commit().await.unwrap();
        // The writer's own commits never checkpoint.
        let automatic: i64 = writer.with_conn(|c| {
            c.query_row("PRAGMA wal_autocheckpoint", [], |r| r.get(0))
                .unwrap()
        });
        assert_eq!(automatic, 0);
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::fs::metadata(&file).unwrap().len() < before + 200 * 4000 {
            assert!(Instant::now() < deadline, "no checkpoint copied the WAL");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    #[tokio::test]
    async fn an_exclusive_writer_gets_the_slot_only_after_the_commit() {
        let (dir, writer) = store();
        let first = GroupWrite::begin(&writer).await.unwrap();
        insert(&first, 1, None).unwrap();
        let exclusive = tokio::spawn({
            let writer = writer.clone();
            let path = dir.path().join("t.db");
            async move {
                let _slot = Slot::take(&writer, true).await;
                // Another connection sees the first write committed, and can write.
                let conn = Connection::open(path).unwrap();
                conn.execute("INSERT INTO t (v) VALUES (2)", ()).unwrap();
            }
        });
        tokio::task::yield_now().await;
        first.commit().await.unwrap();
        exclusive.await.unwrap();
        assert_eq!(committed(&dir), vec![1, 2]);
    }

    /// What `positions` holds, as another connection sees it.
    fn stored_position(dir: &tempfile::TempDir) -> i64 {
        Connection::open(dir.path().join("t.db"))
            .unwrap()
            .query_row("SELECT next FROM positions", [], |r| r.get(0))
            .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn positions_rise_in_commit_order_and_are_stored_with_the_commit() {
        let (dir, writer) = store();
        Connection::open(dir.path().join("t.db"))
            .unwrap()
            .execute_batch("CREATE TABLE positions (next INTEGER NOT NULL); INSERT INTO positions VALUES (41);")
            .unwrap();
        // A write that rolls back leaves a gap; the next one still rises.
        let first = GroupWrite::begin(&writer).await.unwrap();
        assert_eq!(first.next_position().unwrap(), 42);
        drop(first);
        let second = GroupWrite::begin(&writer).await.unwrap();
        let given = second.next_position().unwrap();
        assert!(given > 42, "{given}");
        insert(&second, given, None).unwrap();
        second.commit().await.unwrap();
        assert_eq!(stored_position(&dir), given);
        // Concurrent writes, many per transaction: each position once, in the order the
        // writes ran (their rows' order of insertion), and the last one stored.
        let tasks: Vec<_> = (0..100)
            .map(|_| {
                let writer = writer.clone();
                tokio::spawn(async move {
                    let write = GroupWrite::begin(&writer).await.unwrap();
                    let position = write.next_position().unwrap();
                    insert(&write, position, None).unwrap();
                    write.commit().await.unwrap();
                    position
                })
            })
            .collect();
        let mut positions = Vec::new();
        for task in tasks {
            positions.push(task.await.unwrap());
        }
        positions.sort();
        positions.dedup();
        assert_eq!(positions.len(), 100);
        assert!(positions[0] > given);
        let in_insertion_order = committed_in(&dir, "rowid");
        assert!(in_insertion_order.is_sorted(), "{in_insertion_order:?}");
        assert_eq!(stored_position(&dir), *positions.last().unwrap());
        assert!(writer.commits() < 100, "{} commits", writer.commits());
    }

    /// A write released while the WAL is being synced, its transaction left open.
    async fn left_open_during_a_sync(
        dir: &tempfile::TempDir,
        writer: &Arc<GroupWriter>,
    ) -> tokio::task::JoinHandle<Result<(), WriteError>> {
        writer.state().syncing = true;
        let first = GroupWrite::begin(writer).await.unwrap();
        insert(&first, 1, None).unwrap();
        let answered = tokio::spawn(first.commit());
        let deadline = Instant::now() + Duration::from_secs(5);
        while writer.state().busy {
            assert!(Instant::now() < deadline, "the slot was not given up");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(
            writer.state().batch.is_some(),
            "the transaction was committed"
        );
        assert_eq!(writer.commits(), 0);
        assert!(committed(dir).is_empty());
        answered
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_transaction_left_open_during_a_sync_is_committed_by_the_syncer() {
        let (dir, writer) = store();
        let answered = left_open_during_a_sync(&dir, &writer).await;
        // The syncer's next sync ends with the commit of what was left open.
        let nudge = Arc::new(watch::Sender::new(None));
        writer.syncer.as_ref().unwrap().after_next_sync(nudge);
        answered.await.unwrap().unwrap();
        assert_eq!(committed(&dir), vec![1]);
        // The commit's own sync answers the write a moment before the syncer marks the
        // sync over: it must be marked over soon, not at once.
        let deadline = Instant::now() + Duration::from_secs(5);
        while writer.state().syncing {
            assert!(Instant::now() < deadline, "the sync was never marked over");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_exclusive_writer_commits_a_transaction_left_open_first() {
        let (dir, writer) = store();
        let answered = left_open_during_a_sync(&dir, &writer).await;
        let slot = Slot::take(&writer, true).await;
        assert_eq!(committed(&dir), vec![1]);
        assert!(writer.state().batch.is_none());
        drop(slot);
        writer.state().syncing = false;
        answered.await.unwrap().unwrap();
    }
}
