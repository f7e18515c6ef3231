package eventlog

import (
	"strings"

	"github.com/berth-dev/berth/internal/db"
)

// Schema returns the DDL that creates t's tables on engine d: postgresSchema
// or sqliteSchema with t's names. No production code runs it: a store's
// migration holds a literal copy of it (so that a later change here never
// rewrites a migration that databases already applied), and the tests of
// this package run against it.
func Schema(d db.Dialect, t Table) string {
	tmpl := sqliteSchema
	if d == db.Postgres {
		tmpl = postgresSchema
	}
	return strings.NewReplacer("{events}", t.events, "{watermark}", t.watermark).Replace(tmpl)
}

// On PostgreSQL cursors come from an identity column and times are
// TIMESTAMPTZ. On SQLite the cursor is an INTEGER PRIMARY KEY AUTOINCREMENT
// (never handed out twice, even after retention deleted the newest
// events), times are Unix microseconds and details are JSON text; the
// tables are STRICT.
const postgresSchema = `-- Cursors come from the identity column; appends take an advisory
-- lock so that they are handed out in commit order (package eventlog).
CREATE TABLE {events} (
	cursor  BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	at      TIMESTAMPTZ      NOT NULL,
	node_id TEXT COLLATE "C" NOT NULL,
	type    TEXT             NOT NULL,
	details JSONB            NOT NULL DEFAULT '{}'
);

CREATE INDEX {events}_node ON {events} (node_id, cursor);

-- deleted_through is the newest cursor retention deleted.
CREATE TABLE {watermark} (
	id              INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
	deleted_through BIGINT  NOT NULL
);

INSERT INTO {watermark} (id, deleted_through) VALUES (1, 0);
`

const sqliteSchema = `-- Times are Unix microseconds (UTC); details are a JSON object.
-- AUTOINCREMENT: a cursor is never handed out twice, even after retention
-- deleted the newest events.
CREATE TABLE {events} (
	cursor  INTEGER PRIMARY KEY AUTOINCREMENT,
	at      INTEGER NOT NULL,
	node_id TEXT    NOT NULL,
	type    TEXT    NOT NULL,
	details TEXT    NOT NULL DEFAULT '{}'
) STRICT;

CREATE INDEX {events}_node ON {events} (node_id, cursor);

-- deleted_through is the newest cursor retention deleted.
CREATE TABLE {watermark} (
	id              INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
	deleted_through INTEGER NOT NULL
) STRICT;

INSERT INTO {watermark} (id, deleted_through) VALUES (1, 0);
`
