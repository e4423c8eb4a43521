-- Paging in commit order. Every write takes the next position from `positions` (SQLite has
-- one writer at a time, so the counter is commit order): `created_pos` orders the plain
-- listing, `updated_pos` the incremental one (`filter[updated_after]`), each with `seq` as
-- the tie-break. Existing rows keep their order: both positions start as their `seq`.
CREATE TABLE positions (next INTEGER NOT NULL);
INSERT INTO positions (next) SELECT COALESCE(MAX(seq), 0) FROM records;

ALTER TABLE records ADD COLUMN created_pos INTEGER NOT NULL DEFAULT 0;
ALTER TABLE records ADD COLUMN updated_pos INTEGER NOT NULL DEFAULT 0;
UPDATE records SET created_pos = seq, updated_pos = seq;

DROP INDEX records_page;
CREATE INDEX records_created ON records (linked_account_id, kind, created_pos, seq);
CREATE INDEX records_updated ON records (linked_account_id, kind, updated_pos, seq);
-- Where an incremental listing starts: the first position holding a record updated after
-- the filter's time.
CREATE INDEX records_updated_at ON records (linked_account_id, kind, updated_at, updated_pos);

-- Every table of tenant data carries its linked account or project, the key a sharded
-- store would distribute it by.
ALTER TABLE list_items ADD COLUMN linked_account_id TEXT NOT NULL DEFAULT '';
UPDATE list_items SET linked_account_id =
    (SELECT linked_account_id FROM records WHERE records.seq = list_items.list_seq);
DROP INDEX list_items_item;
CREATE INDEX list_items_item ON list_items (linked_account_id, item_id);
