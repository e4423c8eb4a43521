//! PostgreSQL only: the record reads of `GET` requests, answered together.
//!
//! A read of one record by id is a round trip to the server, and on a machine that serves
//! many small reads the round trip, not the lookup, is most of the work on both sides: the
//! statement's set-up, the wake-ups and the socket calls. So the reads that arrive while
//! others are on their way to the server wait for them, and then go together as one
//! statement that looks every one of them up ([`BATCH`]). Under load a statement carries
//! tens of reads; a read that arrives alone goes at once, as a batch of one.
//!
//! At most [`MAX_IN_FLIGHT`] statements are on their way at once, each on a serving
//! connection (see `serving_conns`) and run by a task of its own, so a request that is
//! cancelled never cancels the reads of others. A task that has answered its batch takes
//! the reads that queued up meanwhile, until none is left; then the next read to arrive
//! starts a task again.
//!
//! Each read still sees every write acknowledged before its request arrived: the statement
//! that answers it starts after the read was queued, so its snapshot is taken later.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use sqlx::Row;
use tokio::sync::oneshot;

use crate::rules::Resource;
use crate::serving_conns::ServingConns;
use crm_api::models::Contact;

/// The most reads one statement carries.
pub const MAX_BATCH: usize = 64;
/// The most statements on their way to the server at once. One makes the largest batches:
/// on 2 cores, `wrk -t1 -c32` GETs of one contact answered 39,300 a second with one,
/// 34,400 with two and 29,000 with four (p99 1.73, 1.84 ms and more).
pub const MAX_IN_FLIGHT: usize = 1;

/// Every read of a batch, and the project's custom field mapping of each, in one
/// statement. `$1` is a JSON array of `[linked account, kind, id, project]`; the rows come
/// back numbered by their place in it (from 1). A read whose record is not there has no row.
///
/// Each lookup is a `LATERAL` subquery with `LIMIT 1` (the keys are unique), which the
/// planner cannot turn into a join of its choosing: as a plain join, a table of a thousand
/// records was read whole into a hash for every batch.
pub const BATCH: &str = "SELECT q.n, r.seq, r.body, m.mappings \
     FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS q(k, n) \
     CROSS JOIN LATERAL (SELECT seq, body FROM records \
         WHERE linked_account_id = q.k->>0 AND kind = q.k->>1 AND id = q.k->>2 LIMIT 1) r \
     LEFT JOIN LATERAL (SELECT mappings FROM unified_custom_fields \
         WHERE project_id = q.k->>3 AND kind = $2 LIMIT 1) m ON true";

/// A record: its `seq`, its stored body, and its project's mapping when there is one.
pub type Found = Option<(i64, String, Option<String>)>;

/// What a read gets back. The error is shared by every read of the failed statement.
pub type Answer = Result<Found, Arc<sqlx::Error>>;

/// One record to read.
pub struct RecordKey {
    pub account_id: String,
    pub kind: &'static str,
    pub id: String,
    pub project_id: String,
}

type Waiting = (RecordKey, oneshot::Sender<Answer>);

/// The reads of one database, batched.
pub struct RecordReads {
    conns: Arc<ServingConns>,
    state: Mutex<State>,
    statements: AtomicU64,
}

#[derive(Default)]
struct State {
    queued: Vec<Waiting>,
    in_flight: usize,
}

impl RecordReads {
    pub fn new(conns: Arc<ServingConns>) -> Arc<Self> {
        Arc::new(RecordReads {
            conns,
            state: Mutex::default(),
            statements: AtomicU64::new(0),
        })
    }

    /// How many statements have answered reads so far.
    pub fn statements(&self) -> u64 {
        self.statements.load(Ordering::Relaxed)
    }

    /// Reads `key`, with the reads queued beside it.
    pub async fn read(self: &Arc<Self>, key: RecordKey) -> Answer {
        // PostgreSQL's text holds no NUL, so no record has such an id; and in the batch's
        // JSON it would fail the statement, and with it every other read of the batch.
        if key.id.contains('\0') {
            return Ok(None);
        }
        let (answer, answered) = oneshot::channel();
        let batch = {
            let mut state = self.lock();
            state.queued.push((key, answer));
            if state.in_flight < MAX_IN_FLIGHT {
                state.in_flight += 1;
                Some(state.take())
            } else {
                None
            }
        };
        if let Some(batch) = batch {
            tokio::spawn(Arc::clone(self).run(batch));
        }
        // The task that took this read ended without answering: the runtime is stopping.
        answered
            .await
            .unwrap_or_else(|_| Err(Arc::new(sqlx::Error::PoolClosed)))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Answers `batch`, then whatever queued up meanwhile, until nothing is left. The place
    /// is given back under the same lock that saw the queue empty, so a read queued after
    /// that starts a task of its own.
    async fn run(self: Arc<Self>, mut batch: Vec<Waiting>) {
        let mut running = Running {
            reads: &self,
            ended: false,
        };
        loop {
            self.answer(batch).await;
            let mut state = self.lock();
            if state.queued.is_empty() {
                state.in_flight -= 1;
                running.ended = true;
                return;
            }
            batch = state.take();
        }
    }

    async fn answer(&self, batch: Vec<Waiting>) {
        crate::metrics::batched_reads(batch.len());
        match self.fetch(&batch).await {
            Ok(mut found) => {
                for ((_, answer), found) in batch.into_iter().zip(found.drain(..)) {
                    let _ = answer.send(Ok(found));
                }
            }
            Err(e) => {
                let e = Arc::new(e);
                for (_, answer) in batch {
                    let _ = answer.send(Err(Arc::clone(&e)));
                }
            }
        }
    }

    /// What the server has for each read of `batch`, in its order.
    async fn fetch(&self, batch: &[Waiting]) -> Result<Vec<Found>, sqlx::Error> {
        let keys: Vec<[&str; 4]> = batch
            .iter()
            .map(|(k, _)| [&k.account_id, k.kind, &k.id, &k.project_id])
            .collect();
        let keys = serde_json::to_string(&keys).expect("strings serialise");
        let mut conn = self.conns.acquire().await?;
        self.statements.fetch_add(1, Ordering::Relaxed);
        let rows = sqlx::query(BATCH)
            .bind(keys)
            // Custom field mappings are kept for contacts (see `custom_fields`).
            .bind(<Contact as Resource>::KIND)
            .fetch_all(&mut *conn)
            .await?;
        conn.release();
        let mut found: Vec<Found> = vec![None; batch.len()];
        for row in rows {
            let n: i64 = row.try_get(0)?;
            let slot = usize::try_from(n - 1)
                .ok()
                .and_then(|i| found.get_mut(i))
                .ok_or_else(|| sqlx::Error::Protocol(format!("a batched read numbered {n}")))?;
            *slot = Some((row.try_get(1)?, row.try_get(2)?, row.try_get(3)?));
        }
        Ok(found)
    }
}

impl State {
    fn take(&mut self) -> Vec<Waiting> {
        let n = self.queued.len().min(MAX_BATCH);
        self.queued.drain(..n).collect()
    }
}

/// A running batch task's place, given back however the task ends: a runtime that stops
/// drops it half-way. Reads queued then are taken by the next read that arrives.
struct Running<'a> {
    reads: &'a RecordReads,
    ended: bool,
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        if !self.ended {
            self.reads.lock().in_flight -= 1;
        }
    }
}
