package db

import (
	"errors"
	"fmt"
	"io/fs"
	"regexp"
	"strconv"
)

// ErrSchemaTooNew reports a database whose schema was migrated by a newer
// binary. Running an older binary against it could misread or damage data it
// does not understand, so the migration refuses to start instead.
var ErrSchemaTooNew = errors.New("database schema is newer than this binary")

// Migration is one numbered schema change, read from a file named
// NNNN_name.sql.
type Migration struct {
	Version int
	Name    string
	SQL     string
}

var migrationName = regexp.MustCompile(`^([0-9]{4})_([a-z0-9_]+)\.sql$`)

// LoadMigrations reads the migrations at the root of fsys in version order.
// Versions must run 1, 2, 3… without gaps or repeats: a gap usually means a
// file was lost in a merge, and applying around it would record a schema that
// never existed. Files not ending in .sql are ignored so a directory can carry
// a README.
func LoadMigrations(fsys fs.FS) ([]Migration, error) {
	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil, fmt.Errorf("read migrations: %w", err)
	}
	var ms []Migration
	for _, e := range entries { // ReadDir sorts by name, hence by version.
		name := e.Name()
		if e.IsDir() || len(name) < 4 || name[len(name)-4:] != ".sql" {
			continue
		}
		parts := migrationName.FindStringSubmatch(name)
		if parts == nil {
			return nil, fmt.Errorf("migration %s: name is not NNNN_name.sql", name)
		}
		v, _ := strconv.Atoi(parts[1])
		if want := len(ms) + 1; v != want {
			return nil, fmt.Errorf("migration %s: version %d, want %d (versions start at 1 with no gaps or repeats)", name, v, want)
		}
		body, err := fs.ReadFile(fsys, name)
		if err != nil {
			return nil, fmt.Errorf("read migration %s: %w", name, err)
		}
		ms = append(ms, Migration{Version: v, Name: parts[2], SQL: string(body)})
	}
	return ms, nil
}

func tooNew(service string, have, known int) error {
	return fmt.Errorf("%w: %s schema is at version %d but this binary knows only up to %d; run a newer binary",
		ErrSchemaTooNew, service, have, known)
}

const sqliteMigrationsTable = `CREATE TABLE IF NOT EXISTS schema_migrations (
	service    TEXT    NOT NULL,
	version    INTEGER NOT NULL,
	name       TEXT    NOT NULL,
	applied_at TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
	PRIMARY KEY (service, version)
)`

const pgMigrationsTable = `CREATE TABLE IF NOT EXISTS schema_migrations (
	service    TEXT        NOT NULL,
	version    INTEGER     NOT NULL,
	name       TEXT        NOT NULL,
	applied_at TIMESTAMPTZ NOT NULL DEFAULT now(),
	PRIMARY KEY (service, version)
)`
