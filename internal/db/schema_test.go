package db

import (
	"context"
	"path/filepath"
	"testing"
	"testing/fstest"

	"github.com/berth-dev/berth/internal/testutil/pgtest"
)

func TestOpenSchema(t *testing.T) {
	ctx := context.Background()
	good := Schema{Service: "demo", FS: fstest.MapFS{
		"migrations/sqlite/0001_init.sql":   {Data: []byte("CREATE TABLE demo (id INTEGER PRIMARY KEY);")},
		"migrations/postgres/0001_init.sql": {Data: []byte("CREATE TABLE demo (id BIGINT PRIMARY KEY);")},
	}}
	broken := Schema{Service: "broken", FS: fstest.MapFS{
		"migrations/sqlite/0001_init.sql":   {Data: []byte("CREATE TABLE (;")},
		"migrations/postgres/0001_init.sql": {Data: []byte("CREATE TABLE (;")},
	}}
	empty := Schema{Service: "empty", FS: fstest.MapFS{}}

	d, err := OpenSchema(ctx, SQLite, filepath.Join(t.TempDir(), "a.db"), good)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.ExecContext(ctx, "INSERT INTO demo (id) VALUES (1)"); err != nil {
		t.Fatalf("the migration did not create the table: %v", err)
	}
	d.Close()
	dsn := pgtest.NewDatabase(t)
	pool, err := OpenSchema(ctx, Postgres, dsn, good)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pool.ExecContext(ctx, "INSERT INTO demo (id) VALUES (1)"); err != nil {
		t.Fatalf("the migration did not create the table: %v", err)
	}
	pool.Close()

	for _, s := range []Schema{broken, empty} {
		if _, err := OpenSchema(ctx, SQLite, filepath.Join(t.TempDir(), "b.db"), s); err == nil {
			t.Errorf("SQLite schema %s opened", s.Service)
		}
		if _, err := OpenSchema(ctx, Postgres, pgtest.NewDatabase(t), s); err == nil {
			t.Errorf("PostgreSQL schema %s opened", s.Service)
		}
	}
}
