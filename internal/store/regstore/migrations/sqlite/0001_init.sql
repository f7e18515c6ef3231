-- Times are Unix microseconds (UTC); booleans are 0/1; labels, MACs and
-- certificate chains are JSON.
CREATE TABLE reg_tokens (
	id           TEXT    NOT NULL PRIMARY KEY,
	secret_hash  BLOB    NOT NULL,
	expires_at   INTEGER NOT NULL,
	uses_left    INTEGER NOT NULL,
	auto_approve INTEGER NOT NULL,
	labels       TEXT    NOT NULL,
	description  TEXT    NOT NULL,
	revoked      INTEGER NOT NULL,
	created_at   INTEGER NOT NULL
) STRICT;

CREATE TABLE reg_nodes (
	id                  TEXT    NOT NULL PRIMARY KEY,
	status              TEXT    NOT NULL CHECK (status IN ('pending', 'approved', 'rejected', 'revoked')),
	key_sha256          BLOB    NOT NULL UNIQUE CHECK (length(key_sha256) = 32),
	hardware_uuid       TEXT    NOT NULL,
	macs                TEXT    NOT NULL,
	hostname            TEXT    NOT NULL,
	serial              TEXT    NOT NULL,
	labels              TEXT    NOT NULL,
	bundle_kem          INTEGER NOT NULL,
	bundle_key          BLOB    NOT NULL,
	csr                 BLOB    NOT NULL,
	token_id            TEXT    NOT NULL,
	replacement_allowed INTEGER NOT NULL,
	cert_serial         TEXT,
	cert_not_before     INTEGER,
	cert_not_after      INTEGER,
	cert_chain          TEXT,
	certificates_issued INTEGER NOT NULL,
	created_at          INTEGER NOT NULL,
	updated_at          INTEGER NOT NULL
) STRICT;

CREATE INDEX reg_nodes_hardware_uuid ON reg_nodes (hardware_uuid);
CREATE INDEX reg_nodes_status_id ON reg_nodes (status, id);
