CREATE TABLE bundle_nodes (
	node_id      TEXT   NOT NULL PRIMARY KEY,
	last_version BIGINT NOT NULL CHECK (last_version >= 0)
);

CREATE TABLE bundle_versions (
	node_id    TEXT        NOT NULL REFERENCES bundle_nodes (node_id) ON DELETE CASCADE,
	version    BIGINT      NOT NULL CHECK (version > 0),
	state      TEXT        NOT NULL CHECK (state IN ('approved', 'pending', 'superseded', 'reset')),
	size       BIGINT      NOT NULL,
	digest     TEXT        NOT NULL,
	kem_id     INTEGER     NOT NULL,
	author     TEXT        NOT NULL,
	created_at TIMESTAMPTZ NOT NULL,
	sealed     BYTEA       NOT NULL,
	PRIMARY KEY (node_id, version)
);

CREATE UNIQUE INDEX bundle_versions_approved ON bundle_versions (node_id) WHERE state = 'approved';
CREATE UNIQUE INDEX bundle_versions_pending ON bundle_versions (node_id) WHERE state = 'pending';

-- Sealed bundles are ciphertext, which does not compress: store them out of
-- line without trying.
ALTER TABLE bundle_versions ALTER COLUMN sealed SET STORAGE EXTERNAL;
