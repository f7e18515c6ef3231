package db

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"regexp"
	"runtime"
	"strconv"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
)

// Open opens the database at where: a file path for SQLite, a DSN (URL or
// keyword/value) for PostgreSQL. Errors never carry a PostgreSQL password.
func Open(ctx context.Context, d Dialect, where string) (*DB, error) {
	switch d {
	case SQLite:
		s, err := OpenSQLite(ctx, where)
		if err != nil {
			return nil, err
		}
		return &DB{DB: s, Dialect: SQLite}, nil
	case Postgres:
		return openPostgresSQL(ctx, where)
	}
	return nil, fmt.Errorf("open database: unknown %v", d)
}

// Check asks the database itself whether it answers, for health checks:
// a ping on PostgreSQL; on SQLite, where a ping touches no file, a read
// of the schema.
func (d *DB) Check(ctx context.Context) error {
	if d.Dialect != SQLite {
		return d.PingContext(ctx)
	}
	var n int
	return d.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master`).Scan(&n)
}

// Activity is what PostgreSQL counted of one database's writes
// (pg_stat_database), every service on it together: load reports turn two
// readings into rates.
type Activity struct {
	Xacts int64 // committed transactions
	Rows  int64 // rows inserted, updated or deleted
}

// ReadActivity reads the Activity of the database dsn names, on a
// connection of its own: the statistics a backend sees are a snapshot
// taken at its first read, so each reading needs a fresh one.
func ReadActivity(ctx context.Context, dsn string) (Activity, error) {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return Activity{}, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var a Activity
	err = conn.QueryRow(ctx, `SELECT xact_commit, tup_inserted + tup_updated + tup_deleted
		FROM pg_stat_database WHERE datname = current_database()`).Scan(&a.Xacts, &a.Rows)
	return a, err
}

// OpenSchema opens the database at where and brings the store's tables up to
// date; on failure nothing stays open.
func OpenSchema(ctx context.Context, d Dialect, where string, s Schema) (*DB, error) {
	migrations, err := s.dialect(d.String())
	if err != nil {
		return nil, err
	}
	h, err := Open(ctx, d, where)
	if err != nil {
		return nil, err
	}
	if err := h.Migrate(ctx, s.Service, migrations); err != nil {
		h.Close()
		return nil, err
	}
	return h, nil
}

// openPostgresSQL opens PostgreSQL through pgx's database/sql adapter, so
// stores run the same code on both engines. pool_max_conns and the other
// pool_* DSN settings keep their pgxpool meaning.
func openPostgresSQL(ctx context.Context, dsn string) (*DB, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// pgx already redacts the password from parse errors.
		return nil, fmt.Errorf("open postgres: %w", err)
	}
	where := fmt.Sprintf("%s:%d/%s", cfg.ConnConfig.Host, cfg.ConnConfig.Port, cfg.ConnConfig.Database)
	cc := *cfg.ConnConfig
	rec := recoverSQL(&cc)
	s := stdlib.OpenDB(cc, rec)
	n := int(cfg.MaxConns)
	if n <= 0 {
		n = max(4, runtime.GOMAXPROCS(0))
	}
	s.SetMaxOpenConns(n)
	s.SetMaxIdleConns(n)
	s.SetConnMaxLifetime(cfg.MaxConnLifetime)
	s.SetConnMaxIdleTime(cfg.MaxConnIdleTime)
	if err := s.PingContext(ctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("open postgres %s: %w", where, err)
	}
	return &DB{DB: s, Dialect: Postgres}, nil
}

// Migrate applies the migrations in fsys that service has not applied yet,
// each in its own transaction together with its schema_migrations row, so a
// crash leaves the schema at a recorded version. Replicas that start together
// serialise per service (PostgreSQL: an advisory lock; SQLite: BEGIN
// IMMEDIATE), so each migration runs exactly once.
func (d *DB) Migrate(ctx context.Context, service string, fsys fs.FS) error {
	ms, err := LoadMigrations(fsys)
	if err != nil {
		return fmt.Errorf("migrate %s: %w", service, err)
	}
	appliedAt := `TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))`
	if d.Dialect == Postgres {
		appliedAt = `TIMESTAMPTZ NOT NULL DEFAULT now()`
	}
	// Concurrent CREATE TABLE IF NOT EXISTS can still fail on PostgreSQL's
	// catalog indexes, so creating the shared table takes a lock of its own.
	err = d.Tx(ctx, func(tx *sql.Tx) error {
		if err := d.Dialect.Lock(ctx, tx, "schema_migrations"); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
			service    TEXT    NOT NULL,
			version    INTEGER NOT NULL,
			name       TEXT    NOT NULL,
			applied_at `+appliedAt+`,
			PRIMARY KEY (service, version)
		)`)
		return err
	})
	if err != nil {
		return fmt.Errorf("migrate %s: create schema_migrations: %w", service, err)
	}
	for {
		done, err := d.migrateStep(ctx, service, ms)
		if err != nil {
			return fmt.Errorf("migrate %s: %w", service, err)
		}
		if done {
			return nil
		}
	}
}

// migrateStep applies the next pending migration, reading the current version
// inside the transaction so that a concurrent migrator's work is seen.
func (d *DB) migrateStep(ctx context.Context, service string, ms []Migration) (done bool, err error) {
	err = d.Tx(ctx, func(tx *sql.Tx) error {
		if err := d.Dialect.Lock(ctx, tx, "schema_migrations "+service); err != nil {
			return err
		}
		var cur int
		if err := tx.QueryRowContext(ctx,
			`SELECT COALESCE(MAX(version), 0) FROM schema_migrations WHERE service = $1`, service).Scan(&cur); err != nil {
			return fmt.Errorf("read version: %w", err)
		}
		if cur > len(ms) {
			return tooNew(service, cur, len(ms))
		}
		if cur == len(ms) {
			done = true
			return nil
		}
		m := ms[cur]
		// Without arguments both drivers accept a file of several
		// statements (pgx uses the simple protocol).
		if _, err := tx.ExecContext(ctx, m.SQL); err != nil {
			return fmt.Errorf("apply %04d_%s: %w", m.Version, m.Name, err)
		}
		if _, err := tx.ExecContext(ctx,
			`INSERT INTO schema_migrations (service, version, name) VALUES ($1, $2, $3)`, service, m.Version, m.Name); err != nil {
			return fmt.Errorf("record %04d_%s: %w", m.Version, m.Name, err)
		}
		return nil
	})
	return done, err
}

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
