-- Health events move into the event log shape every service shares
-- (eventlog.Schema for prefix "hb", copied literally below): the typed
-- columns become the details object, and hb_event_log becomes
-- hb_events_watermark. Cursors and the retention watermark carry over, so
-- a watcher resumes where it was.
ALTER TABLE hb_events RENAME TO hb_events_old;
DROP INDEX hb_events_node;
DROP INDEX hb_events_at;

-- Times are Unix microseconds (UTC); details are a JSON object.
-- AUTOINCREMENT: a cursor is never handed out twice, even after retention
-- deleted the newest events.
CREATE TABLE hb_events (
	cursor  INTEGER PRIMARY KEY AUTOINCREMENT,
	at      INTEGER NOT NULL,
	node_id TEXT    NOT NULL,
	type    TEXT    NOT NULL,
	details TEXT    NOT NULL DEFAULT '{}'
) STRICT;

CREATE INDEX hb_events_node ON hb_events (node_id, cursor);

-- deleted_through is the newest cursor retention deleted.
CREATE TABLE hb_events_watermark (
	id              INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
	deleted_through INTEGER NOT NULL
) STRICT;

INSERT INTO hb_events_watermark (id, deleted_through)
SELECT 1, deleted_through FROM hb_event_log WHERE id = 1;

INSERT INTO hb_events (cursor, at, node_id, type, details)
SELECT o.id, o.at, o.node_id, o.type, (
	SELECT json_group_object(k, v) FROM (
		SELECT 'state' AS k, o.state AS v UNION ALL SELECT 'prev_state', o.prev_state
		UNION ALL SELECT 'boot_id', o.boot_id UNION ALL SELECT 'prev_boot_id', o.prev_boot_id
		UNION ALL SELECT 'status', o.status UNION ALL SELECT 'prev_status', o.prev_status
		UNION ALL SELECT 'kind', o.kind UNION ALL SELECT 'message', o.message
	) WHERE v <> '')
FROM hb_events_old o ORDER BY o.id;

-- New cursors continue after every cursor ever handed out.
DELETE FROM sqlite_sequence WHERE name = 'hb_events';
INSERT INTO sqlite_sequence (name, seq) SELECT 'hb_events', MAX(
	COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'hb_events_old'), 0),
	(SELECT deleted_through FROM hb_events_watermark WHERE id = 1));

DROP TABLE hb_events_old;
DROP TABLE hb_event_log;
