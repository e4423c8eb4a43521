-- The PostgreSQL store: the same tables as the SQLite store, in one migration.
-- Text keys and timestamps compare bytewise (COLLATE "C"): timestamps are fixed-width
-- text, so text order is time order whatever the database's locale.
--
-- Distribution keys, for a tenant-sharded PostgreSQL (Citus): `projects`, `api_keys` and
-- `linked_accounts` are small reference tables; `records` and `list_items` are distributed
-- by `linked_account_id`, `idempotency_keys` and `unified_custom_fields` by `project_id`.
-- Every primary and unique key of a distributed table holds its distribution key.

CREATE TABLE projects (
    id         TEXT COLLATE "C" PRIMARY KEY,
    name       TEXT NOT NULL,
    created_at TEXT COLLATE "C" NOT NULL
);

-- An API key is `crm_<id>_<secret>`; only the SHA-256 of the secret is kept.
CREATE TABLE api_keys (
    id          TEXT COLLATE "C" PRIMARY KEY,
    project_id  TEXT COLLATE "C" NOT NULL REFERENCES projects (id),
    secret_hash BYTEA NOT NULL,
    created_at  TEXT COLLATE "C" NOT NULL,
    revoked_at  TEXT COLLATE "C"
);
CREATE INDEX api_keys_project ON api_keys (project_id);

CREATE TABLE linked_accounts (
    id         TEXT COLLATE "C" PRIMARY KEY,
    project_id TEXT COLLATE "C" NOT NULL REFERENCES projects (id),
    provider   TEXT NOT NULL,
    name       TEXT NOT NULL,
    created_at TEXT COLLATE "C" NOT NULL
);
CREATE INDEX linked_accounts_project ON linked_accounts (project_id);

-- The records of the built-in `local` provider, one table for every kind. `created_pos`
-- and `updated_pos` are the ids of the transactions that created and last wrote a row:
-- readers serve only positions below the oldest transaction still running, so paging
-- follows commit order (see db::Database::next_position).
CREATE TABLE records (
    linked_account_id TEXT COLLATE "C" NOT NULL REFERENCES linked_accounts (id),
    seq               BIGINT GENERATED ALWAYS AS IDENTITY,
    kind              TEXT COLLATE "C" NOT NULL,
    id                TEXT COLLATE "C" NOT NULL,
    body              TEXT NOT NULL,
    passthrough       TEXT,
    created_at        TEXT COLLATE "C" NOT NULL,
    updated_at        TEXT COLLATE "C" NOT NULL,
    external_id       TEXT COLLATE "C",
    created_pos       BIGINT NOT NULL,
    updated_pos       BIGINT NOT NULL,
    PRIMARY KEY (linked_account_id, seq),
    UNIQUE (linked_account_id, kind, id)
);
CREATE UNIQUE INDEX records_external_id ON records (linked_account_id, kind, external_id)
    WHERE external_id IS NOT NULL;
CREATE INDEX records_created ON records (linked_account_id, kind, created_pos, seq);
CREATE INDEX records_updated ON records (linked_account_id, kind, updated_pos, seq);
CREATE INDEX records_updated_at ON records (linked_account_id, kind, updated_at, updated_pos);

-- The records on a list, in the order they were added.
CREATE TABLE list_items (
    linked_account_id TEXT COLLATE "C" NOT NULL,
    list_seq          BIGINT NOT NULL,
    item_id           TEXT COLLATE "C" NOT NULL,
    added             BIGINT NOT NULL,
    PRIMARY KEY (linked_account_id, list_seq, item_id),
    FOREIGN KEY (linked_account_id, list_seq) REFERENCES records (linked_account_id, seq)
        ON DELETE CASCADE
);
CREATE INDEX list_items_item ON list_items (linked_account_id, item_id);

-- A project's names for custom fields: unified name -> definition name, per record kind.
CREATE TABLE unified_custom_fields (
    project_id TEXT COLLATE "C" NOT NULL REFERENCES projects (id),
    kind       TEXT COLLATE "C" NOT NULL,
    mappings   TEXT NOT NULL,
    PRIMARY KEY (project_id, kind)
);

-- Idempotency keys of POST requests. `status` is NULL while the first request runs;
-- `record_id` is the record a create made under the key, written in the create's own
-- transaction; `claimed_at` is NULL once the running request gave the key up.
CREATE TABLE idempotency_keys (
    project_id  TEXT COLLATE "C" NOT NULL REFERENCES projects (id),
    key         TEXT COLLATE "C" NOT NULL,
    fingerprint TEXT NOT NULL,
    status      BIGINT,
    headers     TEXT,
    body        BYTEA,
    created_at  TEXT COLLATE "C" NOT NULL,
    record_id   TEXT COLLATE "C",
    claimed_at  TEXT COLLATE "C",
    PRIMARY KEY (project_id, key)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (project_id, created_at);
