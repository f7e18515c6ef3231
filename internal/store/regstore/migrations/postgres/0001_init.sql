-- IDs use the "C" collation so that ordering and paging by ID are bytewise,
-- the same as on SQLite, whatever the database's locale.
CREATE TABLE reg_tokens (
	id           TEXT COLLATE "C" NOT NULL PRIMARY KEY,
	secret_hash  BYTEA       NOT NULL,
	expires_at   TIMESTAMPTZ NOT NULL,
	uses_left    INTEGER     NOT NULL,
	auto_approve BOOLEAN     NOT NULL,
	labels       JSONB       NOT NULL,
	description  TEXT        NOT NULL,
	revoked      BOOLEAN     NOT NULL,
	created_at   TIMESTAMPTZ NOT NULL
);

CREATE TABLE reg_nodes (
	id                  TEXT COLLATE "C" NOT NULL PRIMARY KEY,
	status              TEXT        NOT NULL CHECK (status IN ('pending', 'approved', 'rejected', 'revoked')),
	key_sha256          BYTEA       NOT NULL UNIQUE CHECK (octet_length(key_sha256) = 32),
	hardware_uuid       TEXT        NOT NULL,
	macs                TEXT[]      NOT NULL,
	hostname            TEXT        NOT NULL,
	serial              TEXT        NOT NULL,
	labels              JSONB       NOT NULL,
	bundle_kem          INTEGER     NOT NULL CHECK (bundle_kem BETWEEN 0 AND 65535),
	bundle_key          BYTEA       NOT NULL,
	csr                 BYTEA       NOT NULL,
	token_id            TEXT        NOT NULL,
	replacement_allowed BOOLEAN     NOT NULL,
	cert_serial         TEXT,
	cert_not_before     TIMESTAMPTZ,
	cert_not_after      TIMESTAMPTZ,
	cert_chain          BYTEA[],
	certificates_issued BIGINT      NOT NULL,
	created_at          TIMESTAMPTZ NOT NULL,
	updated_at          TIMESTAMPTZ NOT NULL
);

CREATE INDEX reg_nodes_hardware_uuid ON reg_nodes (hardware_uuid);
CREATE INDEX reg_nodes_status_id ON reg_nodes (status, id);
-- Serves ListNodes label filters (labels @> ...).
CREATE INDEX reg_nodes_labels ON reg_nodes USING GIN (labels jsonb_path_ops);
