package regstore

import (
	"embed"

	"github.com/berth-dev/berth/internal/db"
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
//	0003 reg_intents: open certificate issuances, one per node, by request
//	     ID, indexed by creation time for the reconciler.
//	0004 reg_nodes.identity_source; reg_tokens.min_identity and
//	     allow_site_secret; on PostgreSQL a GIN index on macs.
//	0005 PostgreSQL only: reg_nodes.macs and cert_chain become JSONB (JSON
//	     text as on SQLite), so one implementation serves both engines; the
//	     GIN index on macs is rebuilt for JSONB.
//	0006 reg_nodes.ek_hash and ek_certificate; reg_eks, the enrolled
//	     endorsement keys.
//
//go:embed migrations
var migrations embed.FS

// schema is this store's embedded migrations.
var schema = db.Schema{Service: service, FS: migrations}
