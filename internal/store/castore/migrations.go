package castore

import (
	"embed"

	"github.com/berth-dev/berth/internal/db"
)

// service is this store's name in the shared schema_migrations table.
const service = "ca"

// Schema changelog. Each version exists once per dialect, in
// migrations/sqlite and migrations/postgres, and both must say the same thing:
//
//	0001 ca_issued (by serial, indexed by node and issue time) and
//	     ca_revocations (one per issued serial, indexed by time).
//	0002 ca_issued.request_id (unique when set) and key_sha256;
//	     ca_revocations.node_revoked.
//
//go:embed migrations
var migrations embed.FS

// schema is this store's embedded migrations.
var schema = db.Schema{Service: service, FS: migrations}
