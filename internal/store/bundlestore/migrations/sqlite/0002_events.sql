-- The bundle event log: eventlog.Schema for prefix "bundle", copied
-- literally so that this migration never changes once applied.

-- Times are Unix microseconds (UTC); details are a JSON object.
-- AUTOINCREMENT: a cursor is never handed out twice, even after retention
-- deleted the newest events.
CREATE TABLE bundle_events (
	cursor  INTEGER PRIMARY KEY AUTOINCREMENT,
	at      INTEGER NOT NULL,
	node_id TEXT    NOT NULL,
	type    TEXT    NOT NULL,
	details TEXT    NOT NULL DEFAULT '{}'
) STRICT;

CREATE INDEX bundle_events_node ON bundle_events (node_id, cursor);

-- deleted_through is the newest cursor retention deleted.
CREATE TABLE bundle_events_watermark (
	id              INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
	deleted_through INTEGER NOT NULL
) STRICT;

INSERT INTO bundle_events_watermark (id, deleted_through) VALUES (1, 0);
