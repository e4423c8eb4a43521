-- The per-key rate limit, shared by every replica: one token bucket per presented key,
-- keyed by the SHA-256 of the key text. UNLOGGED: a bucket is not worth a disk write per
-- request, and after a crash every bucket starts full again.
CREATE UNLOGGED TABLE rate_limits (
    key_hash BYTEA PRIMARY KEY,
    tokens   DOUBLE PRECISION NOT NULL,
    at       TIMESTAMPTZ NOT NULL,
    admitted BOOLEAN NOT NULL
);
