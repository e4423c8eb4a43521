-- Tenancy: projects own API keys and linked accounts.
CREATE TABLE projects (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    created_at TEXT NOT NULL
);

-- An API key is `crm_<id>_<secret>`; only the SHA-256 of the secret is kept.
CREATE TABLE api_keys (
    id          TEXT PRIMARY KEY,
    project_id  TEXT NOT NULL REFERENCES projects (id),
    secret_hash BLOB NOT NULL,
    created_at  TEXT NOT NULL,
    revoked_at  TEXT
);
CREATE INDEX api_keys_project ON api_keys (project_id);

-- One connected CRM of a project.
CREATE TABLE linked_accounts (
    id         TEXT PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES projects (id),
    provider   TEXT NOT NULL,
    name       TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX linked_accounts_project ON linked_accounts (project_id);

-- The records of the built-in `local` provider, one table for every kind.
-- `seq` only grows, so paging by it is stable under concurrent inserts.
CREATE TABLE records (
    seq               INTEGER PRIMARY KEY AUTOINCREMENT,
    linked_account_id TEXT NOT NULL REFERENCES linked_accounts (id),
    kind              TEXT NOT NULL,
    id                TEXT NOT NULL,
    body              TEXT NOT NULL,
    passthrough       TEXT,
    created_at        TEXT NOT NULL,
    updated_at        TEXT NOT NULL,
    UNIQUE (linked_account_id, kind, id)
);
CREATE INDEX records_page ON records (linked_account_id, kind, seq);

-- The records on a list, in the order they were added.
CREATE TABLE list_items (
    list_seq INTEGER NOT NULL REFERENCES records (seq) ON DELETE CASCADE,
    item_id  TEXT NOT NULL,
    added    INTEGER NOT NULL,
    PRIMARY KEY (list_seq, item_id)
);
CREATE INDEX list_items_item ON list_items (item_id);
