-- Identity assurance (issue 12): how each node holds its identity key, and
-- what a token demands of it before auto-approval. Empty identity_source:
-- a node registered before it was recorded.
ALTER TABLE reg_nodes ADD COLUMN identity_source TEXT NOT NULL DEFAULT '';
ALTER TABLE reg_tokens ADD COLUMN min_identity TEXT NOT NULL DEFAULT '';
ALTER TABLE reg_tokens ADD COLUMN allow_site_secret BOOLEAN NOT NULL DEFAULT false;
-- Serves the duplicate-MAC lookups (macs && ...).
CREATE INDEX reg_nodes_macs ON reg_nodes USING GIN (macs);
