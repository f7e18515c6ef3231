package heartbeatstore

import (
	"embed"

	"github.com/berth-dev/berth/internal/db"
)

// service is this store's name in the shared schema_migrations table.
const service = "heartbeat"

// Schema changelog. Each version exists once per dialect, in
// migrations/sqlite and migrations/postgres, and both must say the same thing:
//
//	0001 hb_liveness (by node), hb_events (by cursor, indexed by node and
//	     time), hb_event_log (retention watermark), hb_lease (decider lease)
//	     and hb_settings (fleet heartbeat timings).
//	0002 hb_settings.stretch: the load factor the decider applies to the
//	     timings under overload (default 1).
//	0003 hb_events takes the shape of every event log (eventlog.Schema for
//	     "hb": the typed columns become details) and hb_event_log becomes
//	     hb_events_watermark; cursors and watermark carry over.
//	0004 hb_liveness.reported and bundle_applied (JSON: what a running
//	     node reports), event_instance and event_seq (node events recorded
//	     once per agent instance and sequence).
//
//go:embed migrations
var migrations embed.FS

// schema is this store's embedded migrations.
var schema = db.Schema{Service: service, FS: migrations}
