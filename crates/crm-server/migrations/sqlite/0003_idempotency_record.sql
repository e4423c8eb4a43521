-- A create that carries an Idempotency-Key records the id it created in the same
-- transaction, so that a retry after a crash (the write landed, its answer was never
-- recorded) finds the record instead of creating a second one.
ALTER TABLE idempotency_keys ADD COLUMN record_id TEXT;
-- When the running request claimed the key; NULL once it gave the key up. A claim older
-- than a few minutes is abandoned (the server stopped mid-way) and may be claimed again.
ALTER TABLE idempotency_keys ADD COLUMN claimed_at TEXT;
UPDATE idempotency_keys SET claimed_at = created_at WHERE status IS NULL;
