package db

import (
	"context"
	"database/sql"
	"fmt"
	"io/fs"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Schema is a store's embedded migrations: FS holds migrations/sqlite and
// migrations/postgres, and Service names the store in schema_migrations.
type Schema struct {
	Service string
	FS      fs.FS
}

func (s Schema) dialect(name string) (fs.FS, error) {
	sub, err := fs.Sub(s.FS, "migrations/"+name)
	if err != nil {
		return nil, fmt.Errorf("%s migrations for %s: %w", s.Service, name, err)
	}
	return sub, nil
}

// OpenSQLiteSchema opens the SQLite database at path and brings the store's
// tables up to date; on failure nothing stays open.
func OpenSQLiteSchema(ctx context.Context, path string, s Schema) (*sql.DB, error) {
	migrations, err := s.dialect("sqlite")
	if err != nil {
		return nil, err
	}
	d, err := OpenSQLite(ctx, path)
	if err != nil {
		return nil, err
	}
	if err := MigrateSQLite(ctx, d, s.Service, migrations); err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

// OpenPostgresSchema connects to PostgreSQL and brings the store's tables up
// to date; on failure nothing stays open.
func OpenPostgresSchema(ctx context.Context, dsn string, s Schema) (*pgxpool.Pool, error) {
	migrations, err := s.dialect("postgres")
	if err != nil {
		return nil, err
	}
	pool, err := OpenPostgres(ctx, dsn)
	if err != nil {
		return nil, err
	}
	if err := MigratePostgres(ctx, pool, s.Service, migrations); err != nil {
		pool.Close()
		return nil, err
	}
	return pool, nil
}
