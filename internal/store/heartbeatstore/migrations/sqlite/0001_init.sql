-- Times are Unix microseconds (UTC); durations are microseconds.

-- One row per node that ever sent a beat. prior_state is the state before
-- the last write, so that the upsert of a flush can tell from RETURNING
-- which nodes it brought back to healthy.
CREATE TABLE hb_liveness (
	node_id     TEXT    NOT NULL PRIMARY KEY,
	last_seen   INTEGER NOT NULL,
	sequence    INTEGER NOT NULL,
	boot_id     TEXT    NOT NULL,
	status      TEXT    NOT NULL,
	uptime_us   INTEGER NOT NULL,
	state       TEXT    NOT NULL,
	state_since INTEGER NOT NULL,
	prior_state TEXT
) STRICT;

-- AUTOINCREMENT: a cursor is never handed out twice, even after retention
-- deleted the newest events.
CREATE TABLE hb_events (
	id           INTEGER PRIMARY KEY AUTOINCREMENT,
	at           INTEGER NOT NULL,
	node_id      TEXT    NOT NULL,
	type         TEXT    NOT NULL,
	state        TEXT    NOT NULL DEFAULT '',
	prev_state   TEXT    NOT NULL DEFAULT '',
	boot_id      TEXT    NOT NULL DEFAULT '',
	prev_boot_id TEXT    NOT NULL DEFAULT '',
	status       TEXT    NOT NULL DEFAULT '',
	prev_status  TEXT    NOT NULL DEFAULT '',
	kind         TEXT    NOT NULL DEFAULT '',
	message      TEXT    NOT NULL DEFAULT ''
) STRICT;

CREATE INDEX hb_events_node ON hb_events (node_id, id);
CREATE INDEX hb_events_at ON hb_events (at);

-- deleted_through is the newest cursor retention deleted.
CREATE TABLE hb_event_log (
	id              INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
	deleted_through INTEGER NOT NULL
) STRICT;

INSERT INTO hb_event_log (id, deleted_through) VALUES (1, 0);

-- The decider lease: one row, held by one replica at a time.
CREATE TABLE hb_lease (
	name        TEXT    NOT NULL PRIMARY KEY,
	holder      TEXT    NOT NULL,
	acquired_at INTEGER NOT NULL,
	expires_at  INTEGER NOT NULL
) STRICT;

CREATE TABLE hb_settings (
	id                INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
	interval_us       INTEGER NOT NULL,
	grace_us          INTEGER NOT NULL,
	prev_interval_us  INTEGER NOT NULL,
	prev_grace_us     INTEGER NOT NULL,
	changed_at        INTEGER NOT NULL
) STRICT;
