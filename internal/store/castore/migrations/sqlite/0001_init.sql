-- Times are Unix microseconds (UTC).
CREATE TABLE ca_issued (
	serial     TEXT    NOT NULL PRIMARY KEY,
	node_id    TEXT    NOT NULL,
	not_before INTEGER NOT NULL,
	not_after  INTEGER NOT NULL,
	issued_at  INTEGER NOT NULL,
	der        BLOB    NOT NULL
) STRICT;

CREATE INDEX ca_issued_node_issued_at ON ca_issued (node_id, issued_at);
CREATE INDEX ca_issued_issued_at ON ca_issued (issued_at);

CREATE TABLE ca_revocations (
	serial     TEXT    NOT NULL PRIMARY KEY REFERENCES ca_issued (serial),
	node_id    TEXT    NOT NULL,
	reason     TEXT    NOT NULL,
	revoked_at INTEGER NOT NULL
) STRICT;

CREATE INDEX ca_revocations_revoked_at ON ca_revocations (revoked_at);
