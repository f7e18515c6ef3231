package regstore

import (
	"embed"
	"io/fs"
)

// service is this store's name in the shared schema_migrations table.
const service = "registration"

// Schema changelog. Each version exists once per dialect, in
// migrations/sqlite and migrations/postgres, and both must say the same thing:
//
//	0001 reg_tokens and reg_nodes; nodes unique on key_sha256, indexed by
//	     hardware_uuid and (status, id); on PostgreSQL a GIN index on labels.
//	0002 reg_events and reg_events_watermark: the node lifecycle event log
//	     (eventlog.Schema for prefix "reg").
//
//go:embed migrations
var migrations embed.FS

func migrationsFor(dialect string) fs.FS {
	sub, err := fs.Sub(migrations, "migrations/"+dialect)
	if err != nil {
		panic(err) // the directory is embedded at build time
	}
	return sub
}
