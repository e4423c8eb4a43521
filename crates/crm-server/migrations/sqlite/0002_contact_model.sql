-- External ids: unique within a linked account and kind, so a record can be addressed by one.
ALTER TABLE records ADD COLUMN external_id TEXT;
CREATE UNIQUE INDEX records_external_id ON records (linked_account_id, kind, external_id)
    WHERE external_id IS NOT NULL;

-- A project's names for custom fields: unified name -> definition name, per record kind.
CREATE TABLE unified_custom_fields (
    project_id TEXT NOT NULL REFERENCES projects (id),
    kind       TEXT NOT NULL,
    mappings   TEXT NOT NULL,
    PRIMARY KEY (project_id, kind)
);

-- Idempotency keys of POST requests. `status` is NULL while the first request runs.
CREATE TABLE idempotency_keys (
    project_id  TEXT NOT NULL REFERENCES projects (id),
    key         TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    status      INTEGER,
    headers     TEXT,
    body        BLOB,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (project_id, key)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);
