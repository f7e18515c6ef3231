package bundlestore

import (
	"embed"

	"github.com/berth-dev/berth/internal/db"
)

// service is this store's name in the shared schema_migrations table.
const service = "bundles"

// Schema changelog. Each version exists once per dialect, in
// migrations/sqlite and migrations/postgres, and both must say the same thing:
//
//	0001 bundle_nodes (one row per node: the highest version number used, and
//	     the row every write locks) and bundle_versions (by node and
//	     version; at most one approved and one pending version per node,
//	     enforced by partial unique indexes).
//	0002 bundle_events and bundle_events_watermark: the bundle event log
//	     (eventlog.Schema for prefix "bundle").
//
//go:embed migrations
var migrations embed.FS

// schema is this store's embedded migrations.
var schema = db.Schema{Service: service, FS: migrations}
