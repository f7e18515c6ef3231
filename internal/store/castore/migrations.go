package castore

import (
	"embed"
	"io/fs"
)

// service is this store's name in the shared schema_migrations table.
const service = "ca"

// Schema changelog. Each version exists once per dialect, in
// migrations/sqlite and migrations/postgres, and both must say the same thing:
//
//	0001 ca_issued (by serial, indexed by node and issue time) and
//	     ca_revocations (one per issued serial, indexed by time).
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
