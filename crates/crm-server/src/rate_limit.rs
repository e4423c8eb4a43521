//! The per-key rate limit: one token bucket for every API key presented, kept in this
//! process ([`RateLimiter`], for a single server on SQLite) or in PostgreSQL, shared by
//! every replica ([`SharedRateLimiter`]).
//!
//! A bucket holds at most `per_minute` tokens and refills at `per_minute` tokens a minute;
//! every request takes one. Buckets are keyed by the SHA-256 of the key text as presented, so
//! a caller who knows another key's id but not its secret cannot spend that key's budget, and
//! no key text is kept in memory. The clock is an argument, so the arithmetic is tested
//! without waiting.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// Buckets kept before idle ones are dropped.
const PRUNE_ABOVE: usize = 10_000;

/// One token, in the unit buckets count in: a bucket refilling at `per_minute` tokens a
/// minute gains exactly `per_minute` units a nanosecond, so the arithmetic stays exact.
const TOKEN: u128 = 60 * 1_000_000_000;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    units: u128,
    at: Instant,
}

/// Token buckets for every key seen.
#[derive(Debug)]
pub struct RateLimiter {
    per_minute: u32,
    buckets: Mutex<HashMap<[u8; 32], Bucket>>,
}

impl RateLimiter {
    /// A limiter allowing `per_minute` requests a minute per key, in bursts of as many.
    ///
    /// # Panics
    /// When `per_minute` is 0: a limit of nothing is no limit, and is not built.
    pub fn new(per_minute: u32) -> Self {
        assert!(
            per_minute > 0,
            "a rate limit must allow at least one request"
        );
        Self {
            per_minute,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    pub fn per_minute(&self) -> u32 {
        self.per_minute
    }

    fn capacity(&self) -> u128 {
        u128::from(self.per_minute) * TOKEN
    }

    fn refilled(&self, bucket: Bucket, now: Instant) -> u128 {
        let elapsed = now.saturating_duration_since(bucket.at).as_nanos();
        let gained = elapsed.saturating_mul(u128::from(self.per_minute));
        bucket.units.saturating_add(gained).min(self.capacity())
    }

    /// Takes one token from `key`'s bucket at `now`. When it is empty, answers how long
    /// until a token is available, and takes nothing.
    pub fn check(&self, key: &str, now: Instant) -> Result<(), Duration> {
        let id: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if buckets.len() > PRUNE_ABOVE {
            let full = self.capacity();
            buckets.retain(|_, b| self.refilled(*b, now) < full);
        }
        let bucket = buckets.entry(id).or_insert(Bucket {
            units: self.capacity(),
            at: now,
        });
        let units = self.refilled(*bucket, now);
        if units >= TOKEN {
            *bucket = Bucket {
                units: units - TOKEN,
                at: now,
            };
            Ok(())
        } else {
            *bucket = Bucket { units, at: now };
            let per_minute = u128::from(self.per_minute);
            let nanos = (TOKEN - units).div_ceil(per_minute);
            Err(Duration::from_nanos(
                u64::try_from(nanos).unwrap_or(u64::MAX),
            ))
        }
    }

    /// The number of keys with a bucket.
    pub fn tracked_keys(&self) -> usize {
        self.buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }
}

/// Token buckets in the PostgreSQL database, so that replicas together admit what one
/// server would. The arithmetic runs in the database on the database's clock, so replicas
/// whose clocks differ still agree; one statement per request, on an unlogged table.
#[derive(Debug, Clone)]
pub struct SharedRateLimiter {
    db: crate::db::Database,
    per_minute: u32,
}

impl SharedRateLimiter {
    /// # Panics
    /// When `per_minute` is 0, as [`RateLimiter::new`].
    pub fn new(db: crate::db::Database, per_minute: u32) -> Self {
        assert!(
            per_minute > 0,
            "a rate limit must allow at least one request"
        );
        Self { db, per_minute }
    }

    /// Takes one token from `key`'s bucket, as [`RateLimiter::check`].
    pub async fn check(&self, key: &str) -> Result<Result<(), Duration>, sqlx::Error> {
        let id = Sha256::digest(key.as_bytes()).to_vec();
        let per_minute = f64::from(self.per_minute);
        let mut conn = self.db.acquire().await?;
        let row = sqlx::query(
            "INSERT INTO rate_limits AS b (key_hash, tokens, at, admitted)
             VALUES ($1, $2 - 1, now(), TRUE)
             ON CONFLICT (key_hash) DO UPDATE SET
                 admitted = LEAST($2, b.tokens + GREATEST(0, EXTRACT(EPOCH FROM now() - b.at)::double precision) * $2 / 60) >= 1,
                 tokens = LEAST($2, b.tokens + GREATEST(0, EXTRACT(EPOCH FROM now() - b.at)::double precision) * $2 / 60)
                          - CASE WHEN LEAST($2, b.tokens + GREATEST(0, EXTRACT(EPOCH FROM now() - b.at)::double precision) * $2 / 60) >= 1
                                 THEN 1 ELSE 0 END,
                 at = GREATEST(b.at, now())
             RETURNING admitted, tokens",
        )
        .bind(id)
        .bind(per_minute)
        .fetch_one(&mut *conn)
        .await?;
        conn.release();
        let admitted: bool = sqlx::Row::get(&row, "admitted");
        if admitted {
            return Ok(Ok(()));
        }
        let tokens: f64 = sqlx::Row::get(&row, "tokens");
        let wait = (1.0 - tokens).max(0.0) * 60.0 / per_minute;
        Ok(Err(Duration::from_secs_f64(wait.max(0.001))))
    }

    pub fn per_minute(&self) -> u32 {
        self.per_minute
    }
}

/// The `Retry-After` value for a wait: whole seconds, rounded up, at least 1.
pub fn retry_after_secs(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_of_the_limit_passes_then_the_next_waits() {
        let limiter = RateLimiter::new(3);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(limiter.check("crm_a_secret", t0), Ok(()));
        }
        let wait = limiter.check("crm_a_secret", t0).unwrap_err();
        // Three a minute: one token every 20 seconds.
        assert_eq!(retry_after_secs(wait), 20);
        // Another key has its own bucket.
        assert_eq!(limiter.check("crm_b_secret", t0), Ok(()));
    }

    #[test]
    fn tokens_come_back_at_the_configured_rate() {
        let limiter = RateLimiter::new(60);
        let t0 = Instant::now();
        for _ in 0..60 {
            limiter.check("k", t0).unwrap();
        }
        assert!(limiter.check("k", t0).is_err());
        assert!(limiter.check("k", t0 + Duration::from_millis(500)).is_err());
        assert_eq!(limiter.check("k", t0 + Duration::from_secs(1)), Ok(()));
        assert!(limiter.check("k", t0 + Duration::from_secs(1)).is_err());
        // A long pause refills to the burst size, no more.
        let later = t0 + Duration::from_secs(3600);
        for _ in 0..60 {
            limiter.check("k", later).unwrap();
        }
        assert!(limiter.check("k", later).is_err());
    }

    #[test]
    fn a_refused_request_spends_nothing() {
        let limiter = RateLimiter::new(1);
        let t0 = Instant::now();
        limiter.check("k", t0).unwrap();
        let first = limiter
            .check("k", t0 + Duration::from_secs(30))
            .unwrap_err();
        let second = limiter
            .check("k", t0 + Duration::from_secs(30))
            .unwrap_err();
        assert_eq!(first, second);
        assert_eq!(retry_after_secs(first), 30);
        assert_eq!(limiter.check("k", t0 + Duration::from_secs(60)), Ok(()));
    }

    #[test]
    fn idle_buckets_are_dropped_when_there_are_many() {
        let limiter = RateLimiter::new(10);
        let t0 = Instant::now();
        for i in 0..=PRUNE_ABOVE {
            limiter.check(&format!("key-{i}"), t0).unwrap();
        }
        assert_eq!(limiter.tracked_keys(), PRUNE_ABOVE + 1);
        // A minute later every bucket is full again, so all of them go but the new one.
        limiter
            .check("fresh", t0 + Duration::from_secs(60))
            .unwrap();
        assert_eq!(limiter.tracked_keys(), 1);
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1001)), 2);
        assert_eq!(retry_after_secs(Duration::from_secs(5)), 5);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
    }
}
