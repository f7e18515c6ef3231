-- Times are Unix microseconds (UTC).
CREATE TABLE bundle_nodes (
	node_id      TEXT    NOT NULL PRIMARY KEY,
	last_version INTEGER NOT NULL CHECK (last_version >= 0)
) STRICT;

CREATE TABLE bundle_versions (
	node_id    TEXT    NOT NULL REFERENCES bundle_nodes (node_id) ON DELETE CASCADE,
	version    INTEGER NOT NULL CHECK (version > 0),
	state      TEXT    NOT NULL CHECK (state IN ('approved', 'pending', 'superseded', 'reset')),
	size       INTEGER NOT NULL,
	digest     TEXT    NOT NULL,
	kem_id     INTEGER NOT NULL,
	author     TEXT    NOT NULL,
	created_at INTEGER NOT NULL,
	sealed     BLOB    NOT NULL,
	PRIMARY KEY (node_id, version)
) STRICT;

CREATE UNIQUE INDEX bundle_versions_approved ON bundle_versions (node_id) WHERE state = 'approved';
CREATE UNIQUE INDEX bundle_versions_pending ON bundle_versions (node_id) WHERE state = 'pending';
