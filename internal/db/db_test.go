package db_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/fstest"

	"github.com/berth-dev/berth/internal/db"
	"github.com/berth-dev/berth/internal/testutil/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Run(m)) }

func openSQLite(t *testing.T) *sql.DB {
	t.Helper()
	d, err := db.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "test.db"))
	if err != nil {
		t.Fatalf("OpenSQLite: %v", err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func openPostgres(t *testing.T, dsn string) *db.DB {
	t.Helper()
	p, err := db.Open(context.Background(), db.Postgres, dsn)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func TestOpenSQLite(t *testing.T) {
	ctx := context.Background()
	// A parent that does not exist yet, and characters a plain DSN would
	// misread as the start of the query string or a fragment.
	path := filepath.Join(t.TempDir(), "a?b#c", "nested", "berth.db")
	d, err := db.OpenSQLite(ctx, path)
	if err != nil {
		t.Fatalf("OpenSQLite: %v", err)
	}
	defer d.Close()
	if _, err := d.ExecContext(ctx, `CREATE TABLE t (x INTEGER)`); err != nil {
		t.Fatalf("create table: %v", err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("database file not at %s: %v", path, err)
	}
	pragmas := map[string]string{
		"journal_mode": "wal",
		"foreign_keys": "1",
		"busy_timeout": "10000",
		"synchronous":  "2", // FULL: an acknowledged commit survives power loss
		"temp_store":   "2", // MEMORY: statement journals are not written to a file
	}
	// Check several pooled connections, not just the first.
	conns := make([]*sql.Conn, 3)
	for i := range conns {
		c, err := d.Conn(ctx)
		if err != nil {
			t.Fatalf("conn: %v", err)
		}
		defer c.Close()
		conns[i] = c
	}
	for i, c := range conns {
		for name, want := range pragmas {
			var got string
			if err := c.QueryRowContext(ctx, "PRAGMA "+name).Scan(&got); err != nil {
				t.Fatalf("PRAGMA %s: %v", name, err)
			}
			if got != want {
				t.Errorf("conn %d: PRAGMA %s = %q, want %q", i, name, got, want)
			}
		}
	}
}

func TestOpenSQLiteTransactionsAreImmediate(t *testing.T) {
	ctx := context.Background()
	d := openSQLite(t)
	if _, err := d.ExecContext(ctx, `CREATE TABLE t (x INTEGER)`); err != nil {
		t.Fatal(err)
	}
	tx, err := d.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	// An IMMEDIATE transaction holds the write lock from BEGIN, so another
	// connection cannot begin one; a deferred BEGIN would succeed and fail
	// later, at the first write, where busy_timeout cannot help.
	c, err := d.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.ExecContext(ctx, "PRAGMA busy_timeout = 50"); err != nil {
		t.Fatal(err)
	}
	tx2, err := c.BeginTx(ctx, nil)
	if err == nil {
		tx2.Rollback()
		t.Fatal("second transaction began while the first held the write lock")
	}
	if !strings.Contains(err.Error(), "locked") && !strings.Contains(err.Error(), "busy") {
		t.Fatalf("BeginTx: %v, want SQLITE_BUSY", err)
	}
}

func TestOpenPostgresErrorNamesHostNotPassword(t *testing.T) {
	_, err := db.Open(context.Background(), db.Postgres, "postgres://berth:s3cr3t-pw@127.0.0.1:1/berth?connect_timeout=5")
	if err == nil {
		t.Fatal("Open succeeded against a closed port")
	}
	if !strings.Contains(err.Error(), "127.0.0.1") {
		t.Errorf("error does not name the host: %v", err)
	}
	if strings.Contains(err.Error(), "s3cr3t-pw") {
		t.Errorf("error leaks the password: %v", err)
	}
	_, err = db.Open(context.Background(), db.Postgres, "postgres://berth:s3cr3t-pw@127.0.0.1:notaport/berth")
	if err == nil || strings.Contains(err.Error(), "s3cr3t-pw") {
		t.Errorf("bad DSN: err = %v, want an error without the password", err)
	}
}

func TestLoadMigrations(t *testing.T) {
	sql := &fstest.MapFile{Data: []byte("SELECT 1;")}
	tests := []struct {
		name    string
		fsys    fstest.MapFS
		want    []string
		wantErr string
	}{
		{"empty", fstest.MapFS{}, nil, ""},
		{"ordered", fstest.MapFS{"0002_b.sql": sql, "0001_a.sql": sql, "README.md": sql}, []string{"1:a", "2:b"}, ""},
		{"gap", fstest.MapFS{"0001_a.sql": sql, "0003_c.sql": sql}, nil, "want 2"},
		{"repeat", fstest.MapFS{"0001_a.sql": sql, "0001_b.sql": sql}, nil, "want 2"},
		{"starts at 0", fstest.MapFS{"0000_a.sql": sql}, nil, "want 1"},
		{"bad name", fstest.MapFS{"1_a.sql": sql}, nil, "NNNN_name.sql"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ms, err := db.LoadMigrations(tt.fsys)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, m := range ms {
				got = append(got, fmt.Sprintf("%d:%s", m.Version, m.Name))
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

// backend runs the migration tests against one dialect.
type backend struct {
	name string
	// open returns a migrate function and a query function on one fresh
	// database; calling open again with the same t returns new handles on
	// the same database, like a second replica.
	open func(t *testing.T) (migrate func(service string, fsys fstest.MapFS) error, count func(table string) (int, error), versions func(service string) ([]int, error))
}

func backends() []backend {
	return []backend{
		{"sqlite", func(t *testing.T) (func(string, fstest.MapFS) error, func(string) (int, error), func(string) ([]int, error)) {
			path := filepath.Join(t.TempDir(), "m.db")
			return sqliteFuncs(t, path)
		}},
		{"postgres", func(t *testing.T) (func(string, fstest.MapFS) error, func(string) (int, error), func(string) ([]int, error)) {
			return postgresFuncs(t, pgtest.NewDatabase(t))
		}},
	}
}

func sqliteFuncs(t *testing.T, path string) (func(string, fstest.MapFS) error, func(string) (int, error), func(string) ([]int, error)) {
	d, err := db.Open(context.Background(), db.SQLite, path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	ctx := context.Background()
	migrate := func(service string, fsys fstest.MapFS) error { return d.Migrate(ctx, service, fsys) }
	count := func(table string) (n int, err error) {
		err = d.QueryRowContext(ctx, "SELECT count(*) FROM "+table).Scan(&n)
		return n, err
	}
	versions := func(service string) ([]int, error) {
		rows, err := d.QueryContext(ctx, `SELECT version FROM schema_migrations WHERE service = ? ORDER BY version`, service)
		if err != nil {
			return nil, err
		}
		defer rows.Close()
		var vs []int
		for rows.Next() {
			var v int
			if err := rows.Scan(&v); err != nil {
				return nil, err
			}
			vs = append(vs, v)
		}
		return vs, rows.Err()
	}
	return migrate, count, versions
}

func postgresFuncs(t *testing.T, dsn string) (func(string, fstest.MapFS) error, func(string) (int, error), func(string) ([]int, error)) {
	p, err := db.Open(context.Background(), db.Postgres, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	ctx := context.Background()
	migrate := func(service string, fsys fstest.MapFS) error { return p.Migrate(ctx, service, fsys) }
	count := func(table string) (n int, err error) {
		err = p.QueryRowContext(ctx, "SELECT count(*) FROM "+table).Scan(&n)
		return n, err
	}
	versions := func(service string) ([]int, error) {
		rows, err := p.QueryContext(ctx, `SELECT version FROM schema_migrations WHERE service = $1 ORDER BY version`, service)
		if err != nil {
			return nil, err
		}
		defer rows.Close()
		var vs []int
		for rows.Next() {
			var v int
			if err := rows.Scan(&v); err != nil {
				return nil, err
			}
			vs = append(vs, v)
		}
		return vs, rows.Err()
	}
	return migrate, count, versions
}

var (
	v1 = fstest.MapFS{
		"0001_init.sql": {Data: []byte(`CREATE TABLE a_items (id INTEGER PRIMARY KEY, name TEXT NOT NULL);
INSERT INTO a_items (id, name) VALUES (1, 'one');`)},
	}
	v2 = fstest.MapFS{
		"0001_init.sql":  v1["0001_init.sql"],
		"0002_more.sql":  {Data: []byte(`CREATE TABLE a_more (id INTEGER PRIMARY KEY);`)},
		"0003_index.sql": {Data: []byte(`CREATE INDEX a_items_name ON a_items (name);`)},
	}
	broken = fstest.MapFS{
		"0001_init.sql": v1["0001_init.sql"],
		// The first statement succeeds; the second fails, and must take the
		// first down with it.
		"0002_broken.sql": {Data: []byte(`CREATE TABLE a_half (id INTEGER); INSERT INTO no_such_table VALUES (1);`)},
	}
	otherService = fstest.MapFS{
		"0001_init.sql": {Data: []byte(`CREATE TABLE b_items (id INTEGER PRIMARY KEY);`)},
	}
)

func TestMigrate(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			t.Run("applies in order and records versions", func(t *testing.T) {
				migrate, count, versions := b.open(t)
				if err := migrate("a", v1); err != nil {
					t.Fatalf("migrate v1: %v", err)
				}
				if err := migrate("a", v2); err != nil {
					t.Fatalf("migrate v2: %v", err)
				}
				if vs, err := versions("a"); err != nil || fmt.Sprint(vs) != "[1 2 3]" {
					t.Fatalf("versions = %v, %v; want [1 2 3]", vs, err)
				}
				if n, err := count("a_more"); err != nil || n != 0 {
					t.Fatalf("a_more: %d rows, %v", n, err)
				}
				// Re-running is a no-op: the INSERT in 0001 must not run twice.
				if err := migrate("a", v2); err != nil {
					t.Fatalf("migrate v2 again: %v", err)
				}
				if n, err := count("a_items"); err != nil || n != 1 {
					t.Fatalf("a_items: %d rows, %v; want 1", n, err)
				}
			})
			t.Run("refuses a newer schema", func(t *testing.T) {
				migrate, _, _ := b.open(t)
				if err := migrate("a", v2); err != nil {
					t.Fatal(err)
				}
				err := migrate("a", v1)
				if !errors.Is(err, db.ErrSchemaTooNew) {
					t.Fatalf("err = %v, want ErrSchemaTooNew", err)
				}
				if !strings.Contains(err.Error(), "version 3") || !strings.Contains(err.Error(), "up to 1") {
					t.Errorf("error does not give both versions: %v", err)
				}
			})
			t.Run("failed migration changes nothing", func(t *testing.T) {
				migrate, count, versions := b.open(t)
				if err := migrate("a", broken); err == nil || !strings.Contains(err.Error(), "0002_broken") {
					t.Fatalf("err = %v, want a failure naming 0002_broken", err)
				}
				if vs, _ := versions("a"); fmt.Sprint(vs) != "[1]" {
					t.Errorf("versions = %v, want [1]", vs)
				}
				if _, err := count("a_half"); err == nil {
					t.Error("a_half exists after its migration failed")
				}
			})
			t.Run("services share the database", func(t *testing.T) {
				migrate, count, versions := b.open(t)
				if err := migrate("a", v2); err != nil {
					t.Fatal(err)
				}
				if err := migrate("b", otherService); err != nil {
					t.Fatal(err)
				}
				if vs, _ := versions("b"); fmt.Sprint(vs) != "[1]" {
					t.Errorf("b versions = %v, want [1]", vs)
				}
				if vs, _ := versions("a"); fmt.Sprint(vs) != "[1 2 3]" {
					t.Errorf("a versions = %v, want [1 2 3]", vs)
				}
				if _, err := count("b_items"); err != nil {
					t.Error(err)
				}
			})
		})
	}
}

// TestMigrateConcurrentReplicas starts several "replicas", each with its own
// pool, migrating one database at once. Every migration must run exactly once;
// the INSERT in 0001 would otherwise fail on its primary key or leave two rows.
func TestMigrateConcurrentReplicas(t *testing.T) {
	type opener func(t *testing.T) func(string, fstest.MapFS) error
	tests := []struct {
		name string
		open func(t *testing.T) (opener, func(string) (int, error))
	}{
		{"sqlite", func(t *testing.T) (opener, func(string) (int, error)) {
			path := filepath.Join(t.TempDir(), "m.db")
			_, count, _ := sqliteFuncs(t, path)
			return func(t *testing.T) func(string, fstest.MapFS) error {
				m, _, _ := sqliteFuncs(t, path)
				return m
			}, count
		}},
		{"postgres", func(t *testing.T) (opener, func(string) (int, error)) {
			dsn := pgtest.NewDatabase(t)
			_, count, _ := postgresFuncs(t, dsn)
			return func(t *testing.T) func(string, fstest.MapFS) error {
				m, _, _ := postgresFuncs(t, dsn)
				return m
			}, count
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			open, count := tt.open(t)
			const replicas = 6
			migrates := make([]func(string, fstest.MapFS) error, replicas)
			for i := range migrates {
				migrates[i] = open(t)
			}
			var wg sync.WaitGroup
			errs := make([]error, replicas)
			for i, m := range migrates {
				// Half migrate service a, half service b, all at once.
				service, fsys := "a", v2
				if i%2 == 1 {
					service, fsys = "b", otherService
				}
				wg.Go(func() { errs[i] = m(service, fsys) })
			}
			wg.Wait()
			for i, err := range errs {
				if err != nil {
					t.Errorf("replica %d: %v", i, err)
				}
			}
			if n, err := count("a_items"); err != nil || n != 1 {
				t.Errorf("a_items: %d rows, %v; want 1", n, err)
			}
			if n, err := count("schema_migrations"); err != nil || n != 4 {
				t.Errorf("schema_migrations: %d rows, %v; want 4", n, err)
			}
		})
	}
}

func TestIsUniqueViolation(t *testing.T) {
	ctx := context.Background()
	s := openSQLite(t)
	p := openPostgres(t, pgtest.NewDatabase(t))
	for _, q := range []string{
		`CREATE TABLE u (id INTEGER PRIMARY KEY, k TEXT UNIQUE, n INTEGER NOT NULL)`,
		`INSERT INTO u (id, k, n) VALUES (1, 'x', 0)`,
	} {
		if _, err := s.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
		if _, err := p.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name string
		q    string
		want bool
	}{
		{"primary key", `INSERT INTO u (id, k, n) VALUES (1, 'y', 0)`, true},
		{"unique", `INSERT INTO u (id, k, n) VALUES (2, 'x', 0)`, true},
		{"not null", `INSERT INTO u (id, k, n) VALUES (3, 'z', NULL)`, false},
		{"syntax", `INSERT INTO`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.ExecContext(ctx, tt.q)
			if got := db.IsUniqueViolation(fmt.Errorf("wrapped: %w", err)); got != tt.want {
				t.Errorf("sqlite: IsUniqueViolation(%v) = %v, want %v", err, got, tt.want)
			}
			_, err = p.ExecContext(ctx, tt.q)
			if got := db.IsUniqueViolation(fmt.Errorf("wrapped: %w", err)); got != tt.want {
				t.Errorf("postgres: IsUniqueViolation(%v) = %v, want %v", err, got, tt.want)
			}
		})
	}
	if db.IsUniqueViolation(nil) || db.IsUniqueViolation(errors.New("x")) {
		t.Error("IsUniqueViolation true for a non-database error")
	}
}
