-- Health events move into the event log shape every service shares
-- (eventlog.Schema for prefix "hb", copied literally below): the typed
-- columns become the details object, and hb_event_log becomes
-- hb_events_watermark. Cursors and the retention watermark carry over, so
-- a watcher resumes where it was.
ALTER TABLE hb_events RENAME TO hb_events_old;
ALTER INDEX hb_events_node RENAME TO hb_events_old_node;
ALTER INDEX hb_events_at RENAME TO hb_events_old_at;

-- Cursors come from the identity column; appends take an advisory
-- lock so that they are handed out in commit order (package eventlog).
CREATE TABLE hb_events (
	cursor  BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	at      TIMESTAMPTZ      NOT NULL,
	node_id TEXT COLLATE "C" NOT NULL,
	type    TEXT             NOT NULL,
	details JSONB            NOT NULL DEFAULT '{}'
);

CREATE INDEX hb_events_node ON hb_events (node_id, cursor);

-- deleted_through is the newest cursor retention deleted.
CREATE TABLE hb_events_watermark (
	id              INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
	deleted_through BIGINT  NOT NULL
);

INSERT INTO hb_events_watermark (id, deleted_through)
SELECT 1, deleted_through FROM hb_event_log WHERE id = 1;

INSERT INTO hb_events (cursor, at, node_id, type, details) OVERRIDING SYSTEM VALUE
SELECT id, at, node_id, type, jsonb_strip_nulls(jsonb_build_object(
	'state', NULLIF(state, ''), 'prev_state', NULLIF(prev_state, ''),
	'boot_id', NULLIF(boot_id, ''), 'prev_boot_id', NULLIF(prev_boot_id, ''),
	'status', NULLIF(status, ''), 'prev_status', NULLIF(prev_status, ''),
	'kind', NULLIF(kind, ''), 'message', NULLIF(message, '')))
FROM hb_events_old ORDER BY id;

-- New cursors continue after every cursor ever handed out.
SELECT setval(pg_get_serial_sequence('hb_events', 'cursor'), n)
FROM (SELECT GREATEST(
	COALESCE((SELECT MAX(id) FROM hb_events_old), 0),
	(SELECT deleted_through FROM hb_event_log WHERE id = 1)) AS n) s
WHERE n > 0;

DROP TABLE hb_events_old;
DROP TABLE hb_event_log;
