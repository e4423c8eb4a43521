-- Linked accounts of real CRMs (HubSpot, Pipedrive). `credentials` is sealed with AES-256-GCM
-- under the server's secret key (see providers::credentials); `credentials_version` grows on
-- every change of them, so a replica that refreshes an OAuth token can tell whether another
-- one already did. `status` is `active`, or `needs_reauth` after the provider refused a
-- refresh. `base_url` points the account at a sandbox or a test double.
ALTER TABLE linked_accounts ADD COLUMN base_url TEXT;
ALTER TABLE linked_accounts ADD COLUMN credentials TEXT;
ALTER TABLE linked_accounts ADD COLUMN credentials_version BIGINT NOT NULL DEFAULT 0;
ALTER TABLE linked_accounts ADD COLUMN status TEXT NOT NULL DEFAULT 'active';
