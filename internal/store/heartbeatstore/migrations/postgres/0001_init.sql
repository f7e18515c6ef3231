-- One row per node that ever sent a beat. prior_state is the state before
-- the last write, so that the upsert of a flush can tell from RETURNING
-- which nodes it brought back to healthy. Nothing but the primary key is
-- indexed and the fill factor leaves room, so that the updates of every
-- flush stay HOT; the decider's scans read the whole table, which is small.
-- Node IDs use the "C" collation so that pages sort bytewise, as on SQLite.
CREATE TABLE hb_liveness (
	node_id     TEXT COLLATE "C" NOT NULL PRIMARY KEY,
	last_seen   TIMESTAMPTZ NOT NULL,
	sequence    BIGINT      NOT NULL,
	boot_id     TEXT        NOT NULL,
	status      TEXT        NOT NULL,
	uptime_us   BIGINT      NOT NULL,
	state       TEXT        NOT NULL,
	state_since TIMESTAMPTZ NOT NULL,
	prior_state TEXT
) WITH (fillfactor = 70);

-- Cursors come from the identity column; see the package documentation for
-- why appends are serialised.
CREATE TABLE hb_events (
	id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	at           TIMESTAMPTZ NOT NULL,
	node_id      TEXT        NOT NULL,
	type         TEXT        NOT NULL,
	state        TEXT        NOT NULL DEFAULT '',
	prev_state   TEXT        NOT NULL DEFAULT '',
	boot_id      TEXT        NOT NULL DEFAULT '',
	prev_boot_id TEXT        NOT NULL DEFAULT '',
	status       TEXT        NOT NULL DEFAULT '',
	prev_status  TEXT        NOT NULL DEFAULT '',
	kind         TEXT        NOT NULL DEFAULT '',
	message      TEXT        NOT NULL DEFAULT ''
);

CREATE INDEX hb_events_node ON hb_events (node_id, id);
CREATE INDEX hb_events_at ON hb_events (at);

-- deleted_through is the newest cursor retention deleted.
CREATE TABLE hb_event_log (
	id              INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
	deleted_through BIGINT  NOT NULL
);

INSERT INTO hb_event_log (id, deleted_through) VALUES (1, 0);

-- The decider lease: one row, held by one replica at a time.
CREATE TABLE hb_lease (
	name        TEXT        NOT NULL PRIMARY KEY,
	holder      TEXT        NOT NULL,
	acquired_at TIMESTAMPTZ NOT NULL,
	expires_at  TIMESTAMPTZ NOT NULL
);

CREATE TABLE hb_settings (
	id               INTEGER     NOT NULL PRIMARY KEY CHECK (id = 1),
	interval_us      BIGINT      NOT NULL,
	grace_us         BIGINT      NOT NULL,
	prev_interval_us BIGINT      NOT NULL,
	prev_grace_us    BIGINT      NOT NULL,
	changed_at       TIMESTAMPTZ NOT NULL
);
