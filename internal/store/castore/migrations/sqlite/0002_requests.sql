-- Issuance is idempotent on the registration service's request ID: the
-- partial unique index lets two CA replicas race on one request and record
-- only one certificate. Rows from before 0002 have no request ID.
ALTER TABLE ca_issued ADD COLUMN request_id TEXT NOT NULL DEFAULT '';
ALTER TABLE ca_issued ADD COLUMN key_sha256 BLOB NOT NULL DEFAULT x'';

CREATE UNIQUE INDEX ca_issued_request_id ON ca_issued (request_id) WHERE request_id <> '';

-- node_revoked (0/1): the node itself was revoked (or deleted), not only
-- this certificate as when a board is replaced. Before 0002 the reason
-- "superseded" said the same.
ALTER TABLE ca_revocations ADD COLUMN node_revoked INTEGER NOT NULL DEFAULT 0;

UPDATE ca_revocations SET node_revoked = (reason <> 'superseded');
