package db

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"regexp"
	"strconv"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
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

// MigrateSQLite applies the migrations in fsys that service has not applied to
// db yet, each in its own transaction together with its schema_migrations row,
// so a crash leaves the schema at a recorded version. db should come from
// OpenSQLite: its BEGIN IMMEDIATE transactions serialise processes migrating
// the same file.
func MigrateSQLite(ctx context.Context, db *sql.DB, service string, fsys fs.FS) error {
	ms, err := LoadMigrations(fsys)
	if err != nil {
		return fmt.Errorf("migrate %s: %w", service, err)
	}
	if _, err := db.ExecContext(ctx, sqliteMigrationsTable); err != nil {
		return fmt.Errorf("migrate %s: create schema_migrations: %w", service, err)
	}
	for {
		done, err := sqliteStep(ctx, db, service, ms)
		if err != nil {
			return fmt.Errorf("migrate %s: %w", service, err)
		}
		if done {
			return nil
		}
	}
}

// sqliteStep applies the next pending migration, reading the current version
// inside the transaction so that a concurrent migrator's work is seen.
func sqliteStep(ctx context.Context, db *sql.DB, service string, ms []Migration) (done bool, err error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return false, err
	}
	defer tx.Rollback()
	var cur int
	if err := tx.QueryRowContext(ctx,
		`SELECT COALESCE(MAX(version), 0) FROM schema_migrations WHERE service = ?`, service).Scan(&cur); err != nil {
		return false, fmt.Errorf("read version: %w", err)
	}
	if cur > len(ms) {
		return false, tooNew(service, cur, len(ms))
	}
	if cur == len(ms) {
		return true, nil
	}
	m := ms[cur]
	if _, err := tx.ExecContext(ctx, m.SQL); err != nil {
		return false, fmt.Errorf("apply %04d_%s: %w", m.Version, m.Name, err)
	}
	if _, err := tx.ExecContext(ctx,
		`INSERT INTO schema_migrations (service, version, name) VALUES (?, ?, ?)`, service, m.Version, m.Name); err != nil {
		return false, fmt.Errorf("record %04d_%s: %w", m.Version, m.Name, err)
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("commit %04d_%s: %w", m.Version, m.Name, err)
	}
	return false, nil
}

const pgMigrationsTable = `CREATE TABLE IF NOT EXISTS schema_migrations (
	service    TEXT        NOT NULL,
	version    INTEGER     NOT NULL,
	name       TEXT        NOT NULL,
	applied_at TIMESTAMPTZ NOT NULL DEFAULT now(),
	PRIMARY KEY (service, version)
)`

// MigratePostgres applies the migrations in fsys that service has not applied
// to the database yet, each in its own transaction together with its
// schema_migrations row. Replicas that start together serialise on a
// transaction-scoped advisory lock keyed by service, so each migration runs
// exactly once and services sharing the database do not wait for each other.
func MigratePostgres(ctx context.Context, pool *pgxpool.Pool, service string, fsys fs.FS) error {
	ms, err := LoadMigrations(fsys)
	if err != nil {
		return fmt.Errorf("migrate %s: %w", service, err)
	}
	// Concurrent CREATE TABLE IF NOT EXISTS can still fail on the catalog's
	// unique indexes, so creating the shared table takes a lock of its own.
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, advisoryKey("schema_migrations")); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, pgMigrationsTable)
		return err
	})
	if err != nil {
		return fmt.Errorf("migrate %s: create schema_migrations: %w", service, err)
	}
	for {
		done, err := postgresStep(ctx, pool, service, ms)
		if err != nil {
			return fmt.Errorf("migrate %s: %w", service, err)
		}
		if done {
			return nil
		}
	}
}

func postgresStep(ctx context.Context, pool *pgxpool.Pool, service string, ms []Migration) (done bool, err error) {
	tx, err := pool.Begin(ctx)
	if err != nil {
		return false, err
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, advisoryKey("schema_migrations "+service)); err != nil {
		return false, fmt.Errorf("lock: %w", err)
	}
	var cur int
	if err := tx.QueryRow(ctx,
		`SELECT COALESCE(MAX(version), 0) FROM schema_migrations WHERE service = $1`, service).Scan(&cur); err != nil {
		return false, fmt.Errorf("read version: %w", err)
	}
	if cur > len(ms) {
		return false, tooNew(service, cur, len(ms))
	}
	if cur == len(ms) {
		return true, nil
	}
	m := ms[cur]
	// Without arguments pgx uses the simple protocol, which accepts a file of
	// several statements.
	if _, err := tx.Exec(ctx, m.SQL); err != nil {
		return false, fmt.Errorf("apply %04d_%s: %w", m.Version, m.Name, err)
	}
	if _, err := tx.Exec(ctx,
		`INSERT INTO schema_migrations (service, version, name) VALUES ($1, $2, $3)`, service, m.Version, m.Name); err != nil {
		return false, fmt.Errorf("record %04d_%s: %w", m.Version, m.Name, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return false, fmt.Errorf("commit %04d_%s: %w", m.Version, m.Name, err)
	}
	return false, nil
}
