package db_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/berth-dev/berth/internal/db"
	"github.com/berth-dev/berth/internal/testutil/pgtest"
)

// eachDialect runs f against a fresh database of each engine.
func eachDialect(t *testing.T, f func(t *testing.T, d *db.DB)) {
	t.Helper()
	for _, tc := range []struct {
		dialect db.Dialect
		where   func(t *testing.T) string
	}{
		{db.SQLite, func(t *testing.T) string { return filepath.Join(t.TempDir(), "d.db") }},
		{db.Postgres, func(t *testing.T) string { return pgtest.NewDatabase(t) }},
	} {
		t.Run(tc.dialect.String(), func(t *testing.T) {
			d, err := db.Open(context.Background(), tc.dialect, tc.where(t))
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			t.Cleanup(func() { d.Close() })
			if d.Dialect != tc.dialect {
				t.Fatalf("Dialect = %v, want %v", d.Dialect, tc.dialect)
			}
			f(t, d)
		})
	}
}

func mustExec(t *testing.T, d *db.DB, q string, args ...any) {
	t.Helper()
	if _, err := d.ExecContext(context.Background(), q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

func TestDialectJSONContains(t *testing.T) {
	eachDialect(t, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		typ := "TEXT"
		if d.Dialect == db.Postgres {
			typ = "JSONB"
		}
		mustExec(t, d, `CREATE TABLE j (id INTEGER PRIMARY KEY, labels `+typ+` NOT NULL)`)
		mustExec(t, d, `INSERT INTO j (id, labels) VALUES (1, $1), (2, $2), (3, $3)`,
			`{"rack":"a","role":"hv"}`, `{"rack":"a"}`, `{}`)
		tests := []struct {
			want string
			ids  string
		}{
			{`{}`, "[1 2 3]"},
			{`{"rack":"a"}`, "[1 2]"},
			{`{"rack":"a","role":"hv"}`, "[1]"},
			{`{"rack":"b"}`, "[]"},
			{`{"role":"hv","zone":"x"}`, "[]"},
			{`{"we\"ird":"a"}`, "[]"},
		}
		for _, tt := range tests {
			rows, err := d.QueryContext(ctx, `SELECT id FROM j WHERE `+d.Dialect.JSONContains("labels", "$1")+` ORDER BY id`, tt.want)
			if err != nil {
				t.Fatalf("%s: %v", tt.want, err)
			}
			ids := scanIDs(t, rows)
			if got := fmt.Sprint(ids); got != tt.ids {
				t.Errorf("labels ⊇ %s: ids %s, want %s", tt.want, got, tt.ids)
			}
		}
	})
}

func TestDialectPortableSQL(t *testing.T) {
	eachDialect(t, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		mustExec(t, d, `CREATE TABLE kv (k TEXT PRIMARY KEY, v BIGINT NOT NULL, b BOOLEAN NOT NULL, raw BYTEA NOT NULL)`)
		// Upsert and RETURNING, with $N placeholders, the same text on both.
		const upsert = `INSERT INTO kv (k, v, b, raw) VALUES ($1, $2, $3, $4)
			ON CONFLICT (k) DO UPDATE SET v = kv.v + excluded.v RETURNING v, b, raw`
		var v int64
		var b bool
		var raw []byte
		for i := range 2 {
			if err := d.QueryRowContext(ctx, upsert, "x", int64(5), true, []byte{0, 1}).Scan(&v, &b, &raw); err != nil {
				t.Fatal(err)
			}
			if want := int64(5 * (i + 1)); v != want || !b || len(raw) != 2 {
				t.Fatalf("upsert %d: v=%d b=%v raw=%x, want v=%d", i, v, b, raw, want)
			}
		}
		err := d.QueryRowContext(ctx, `SELECT v FROM kv WHERE k = $1`, "absent").Scan(&v)
		if !db.IsNoRows(err) {
			t.Errorf("missing row: %v, want no rows", err)
		}
		_, err = d.ExecContext(ctx, `INSERT INTO kv (k, v, b, raw) VALUES ($1, 1, FALSE, $2)`, "x", []byte{})
		if !db.IsUniqueViolation(err) {
			t.Errorf("duplicate key: %v, want a unique violation", err)
		}
		if db.IsUnavailable(err) {
			t.Errorf("a unique violation counts as unavailable: %v", err)
		}
		// A multi-row VALUES list built with Params.Values.
		var p db.Params
		q := `INSERT INTO kv (k, v, b, raw) VALUES ` + p.Values("p", int64(1), false, []byte{1}) + `, ` + p.Values("q", int64(2), true, []byte{2})
		mustExec(t, d, q, p...)
		var n int
		if err := d.QueryRowContext(ctx, `SELECT COUNT(*) FROM kv WHERE b = TRUE`).Scan(&n); err != nil || n != 2 {
			t.Errorf("count of b = TRUE: %d, %v; want 2", n, err)
		}
	})
}

func TestDBTx(t *testing.T) {
	eachDialect(t, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		mustExec(t, d, `CREATE TABLE c (id INTEGER PRIMARY KEY, n BIGINT NOT NULL)`)
		mustExec(t, d, `INSERT INTO c (id, n) VALUES (1, 0)`)
		boom := errors.New("boom")
		err := d.Tx(ctx, func(tx *sql.Tx) error {
			if _, err := tx.ExecContext(ctx, `UPDATE c SET n = 99`); err != nil {
				return err
			}
			return boom
		})
		if !errors.Is(err, boom) {
			t.Fatalf("Tx = %v, want boom", err)
		}
		func() {
			defer func() { recover() }()
			d.Tx(ctx, func(tx *sql.Tx) error {
				tx.ExecContext(ctx, `UPDATE c SET n = 98`)
				panic("in tx")
			})
		}()
		var n int
		if err := d.QueryRowContext(ctx, `SELECT n FROM c`).Scan(&n); err != nil || n != 0 {
			t.Fatalf("after a failed and a panicking Tx: n=%d, %v; want 0 (rolled back)", n, err)
		}
		// Lock plus a read-then-write: concurrent increments lose nothing.
		var wg sync.WaitGroup
		errs := make(chan error, 20)
		for range 20 {
			wg.Go(func() {
				errs <- d.Tx(ctx, func(tx *sql.Tx) error {
					if err := d.Dialect.Lock(ctx, tx, "counter"); err != nil {
						return err
					}
					var cur int
					if err := tx.QueryRowContext(ctx, `SELECT n FROM c WHERE id = 1`+d.Dialect.ForUpdate()).Scan(&cur); err != nil {
						return err
					}
					_, err := tx.ExecContext(ctx, `UPDATE c SET n = $1 WHERE id = 1`, cur+1)
					return err
				})
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		if err := d.QueryRowContext(ctx, `SELECT n FROM c`).Scan(&n); err != nil || n != 20 {
			t.Fatalf("n = %d, %v; want 20", n, err)
		}
	})
}

func TestOpenSchemaBothDialects(t *testing.T) {
	s := db.Schema{Service: "demo", FS: fstest.MapFS{
		"migrations/sqlite/0001_init.sql":   {Data: []byte("CREATE TABLE demo (id INTEGER PRIMARY KEY);")},
		"migrations/postgres/0001_init.sql": {Data: []byte("CREATE TABLE demo (id BIGINT PRIMARY KEY);")},
	}}
	broken := db.Schema{Service: "broken", FS: fstest.MapFS{
		"migrations/sqlite/0001_init.sql":   {Data: []byte("CREATE TABLE (;")},
		"migrations/postgres/0001_init.sql": {Data: []byte("CREATE TABLE (;")},
	}}
	ctx := context.Background()
	for _, tc := range []struct {
		d     db.Dialect
		where func(t *testing.T) string
	}{
		{db.SQLite, func(t *testing.T) string { return filepath.Join(t.TempDir(), "s.db") }},
		{db.Postgres, func(t *testing.T) string { return pgtest.NewDatabase(t) }},
	} {
		t.Run(tc.d.String(), func(t *testing.T) {
			where := tc.where(t)
			for range 2 { // a second open finds the schema current
				h, err := db.OpenSchema(ctx, tc.d, where, s)
				if err != nil {
					t.Fatal(err)
				}
				mustExec(t, h, `INSERT INTO demo (id) VALUES ((SELECT COUNT(*) FROM demo))`)
				h.Close()
			}
			if _, err := db.OpenSchema(ctx, tc.d, tc.where(t), broken); err == nil {
				t.Error("a broken migration opened")
			}
		})
	}
}

func TestIsUnavailable(t *testing.T) {
	ctx := context.Background()
	// A server that is not there: refused at connect.
	_, err := db.Open(ctx, db.Postgres, "postgres://u@127.0.0.1:1/x?connect_timeout=2")
	if err == nil || !db.IsUnavailable(err) {
		t.Errorf("connect to a closed port: IsUnavailable(%v) = false", err)
	}
	// A server that goes away under an open pool.
	dsn := pgtest.NewDatabase(t)
	d, err := db.Open(ctx, db.Postgres, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	var pid int
	if err := d.QueryRowContext(ctx, `SELECT pg_backend_pid()`).Scan(&pid); err != nil {
		t.Fatal(err)
	}
	d.SetMaxOpenConns(1)
	other, err := db.Open(ctx, db.Postgres, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	mustExec(t, other, `SELECT pg_terminate_backend($1)`, pid)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		_, err = d.ExecContext(ctx, `SELECT 1`)
		if err != nil {
			break
		}
		// database/sql retried on a fresh connection: the terminated one
		// was noticed as bad before use. Terminate that one too.
		other.QueryRowContext(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND datname = current_database()`).Scan(new(any))
	}
	if err != nil && !db.IsUnavailable(err) {
		t.Errorf("query on a terminated connection: IsUnavailable(%v) = false", err)
	}
	for _, e := range []error{nil, errors.New("x"), context.Canceled, sql.ErrNoRows} {
		if db.IsUnavailable(e) {
			t.Errorf("IsUnavailable(%v) = true", e)
		}
	}
	// SQLite: another connection holding the write lock past busy_timeout.
	sq, err := db.Open(ctx, db.SQLite, filepath.Join(t.TempDir(), "busy.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer sq.Close()
	mustExec(t, sq, `CREATE TABLE t (x INTEGER)`)
	tx, err := sq.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	c, err := sq.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.ExecContext(ctx, `PRAGMA busy_timeout = 10`)
	_, err = c.ExecContext(ctx, `INSERT INTO t (x) VALUES (1)`)
	if err == nil || !db.IsUnavailable(err) {
		t.Errorf("SQLite busy: IsUnavailable(%v) = false", err)
	}
}

// TestDialectIn: the rows whose column is one of a bound list's strings,
// or whose JSON array shares one with it, on both engines. On PostgreSQL,
// ORed with another condition, the lookup still goes through the column's
// index (the "IN (sub-SELECT)" form made every registration scan all
// nodes), and the plan has no sub-plan to build on every run (unpacking a
// JSON array did).
func TestDialectIn(t *testing.T) {
	eachDialect(t, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		mustExec(t, d, `CREATE TABLE h (id INTEGER PRIMARY KEY, uuid TEXT NOT NULL, tags TEXT NOT NULL)`)
		mustExec(t, d, `CREATE INDEX h_uuid ON h (uuid)`)
		mustExec(t, d, `INSERT INTO h (id, uuid, tags) VALUES (1, 'a', '["x","y"]'), (2, 'b', '["y"]'), (3, 'c', '[]')`)
		for _, c := range []struct {
			list     []string
			in, over string
		}{
			{[]string{"a", "c"}, "[1 3]", "[]"},
			{[]string{"b", "x"}, "[2]", "[1]"},
			{[]string{"y"}, "[]", "[1 2]"},
			{[]string{}, "[]", "[]"},
			{nil, "[]", "[]"},
			// One string each, however it reads: not split at its comma,
			// not taken as an array literal or a quoted JSON string.
			{[]string{"a,c"}, "[]", "[]"},
			{[]string{"{b}", `"y"`, `["x"]`}, "[]", "[]"},
		} {
			for _, q := range []struct{ cond, want string }{
				{d.Dialect.In("uuid", "$1"), c.in},
				{d.Dialect.Overlaps(tagsColumn(d), "$1"), c.over},
			} {
				rows, err := d.QueryContext(ctx, `SELECT id FROM h WHERE `+q.cond+` ORDER BY id`, d.Dialect.Strings(c.list))
				if err != nil {
					t.Fatalf("%q: %v", c.list, err)
				}
				if got := fmt.Sprint(scanIDs(t, rows)); got != q.want {
					t.Errorf("%s with %q: ids %s, want %s", q.cond, c.list, got, q.want)
				}
			}
		}
		if d.Dialect != db.Postgres {
			return
		}
		// One transaction, so that the setting and the plan share a connection.
		tx, err := d.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback()
		if _, err := tx.ExecContext(ctx, `SET LOCAL enable_seqscan = off`); err != nil {
			t.Fatal(err)
		}
		var plan strings.Builder
		rows, err := tx.QueryContext(ctx, `EXPLAIN SELECT id FROM h WHERE `+d.Dialect.In("uuid", "$1")+` OR id = 7`, d.Dialect.Strings([]string{"a"}))
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var line string
			if err := rows.Scan(&line); err != nil {
				t.Fatal(err)
			}
			plan.WriteString(line + "\n")
		}
		rows.Close()
		if !strings.Contains(plan.String(), "h_uuid") {
			t.Errorf("In ORed with another condition does not use the column's index:\n%s", plan.String())
		}
		if strings.Contains(plan.String(), "InitPlan") || strings.Contains(plan.String(), "SubPlan") {
			t.Errorf("In is planned with a sub-plan:\n%s", plan.String())
		}
	})
}

// tagsColumn is h.tags as the JSON array Overlaps reads: JSONB on
// PostgreSQL, where the test table stores it as text.
func tagsColumn(d *db.DB) string {
	if d.Dialect == db.Postgres {
		return "tags::jsonb"
	}
	return "tags"
}

// scanIDs reads a one-column result of integer IDs and closes it; no rows
// is an empty, non-nil list, printed as "[]".
func scanIDs(t *testing.T, rows *sql.Rows) []int {
	t.Helper()
	defer rows.Close()
	ids := []int{}
	for rows.Next() {
		var id int
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return ids
}
