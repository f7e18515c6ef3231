-- An open issuance: the registration service records it before it asks the
-- CA to sign, and deletes it in the transaction that stores the answer.
-- node_id is unique, so the row is also the claim on a node's renewal: one
-- per node, whatever the number of replicas. No foreign key: an intent
-- outlives a deleted node so that its certificate is still revoked.
CREATE TABLE reg_intents (
	request_id  TEXT COLLATE "C" NOT NULL PRIMARY KEY,
	node_id     TEXT COLLATE "C" NOT NULL UNIQUE,
	key_sha256  BYTEA       NOT NULL,
	prev_serial TEXT        NOT NULL,
	hostname    TEXT        NOT NULL,
	csr         BYTEA       NOT NULL,
	created_at  TIMESTAMPTZ NOT NULL
);

CREATE INDEX reg_intents_created_at ON reg_intents (created_at);
