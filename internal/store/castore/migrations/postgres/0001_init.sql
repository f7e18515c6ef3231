-- Serials use the "C" collation so ties sort bytewise, as on SQLite.
CREATE TABLE ca_issued (
	serial     TEXT COLLATE "C" NOT NULL PRIMARY KEY,
	node_id    TEXT        NOT NULL,
	not_before TIMESTAMPTZ NOT NULL,
	not_after  TIMESTAMPTZ NOT NULL,
	issued_at  TIMESTAMPTZ NOT NULL,
	der        BYTEA       NOT NULL
);

CREATE INDEX ca_issued_node_issued_at ON ca_issued (node_id, issued_at);
CREATE INDEX ca_issued_issued_at ON ca_issued (issued_at);

CREATE TABLE ca_revocations (
	serial     TEXT COLLATE "C" NOT NULL PRIMARY KEY REFERENCES ca_issued (serial),
	node_id    TEXT        NOT NULL,
	reason     TEXT        NOT NULL,
	revoked_at TIMESTAMPTZ NOT NULL
);

CREATE INDEX ca_revocations_revoked_at ON ca_revocations (revoked_at);
