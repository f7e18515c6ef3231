-- The bundle event log: eventlog.Schema for prefix "bundle", copied
-- literally so that this migration never changes once applied.

-- Cursors come from the identity column; appends take an advisory
-- lock so that they are handed out in commit order (package eventlog).
CREATE TABLE bundle_events (
	cursor  BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	at      TIMESTAMPTZ      NOT NULL,
	node_id TEXT COLLATE "C" NOT NULL,
	type    TEXT             NOT NULL,
	details JSONB            NOT NULL DEFAULT '{}'
);

CREATE INDEX bundle_events_node ON bundle_events (node_id, cursor);

-- deleted_through is the newest cursor retention deleted.
CREATE TABLE bundle_events_watermark (
	id              INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
	deleted_through BIGINT  NOT NULL
);

INSERT INTO bundle_events_watermark (id, deleted_through) VALUES (1, 0);
