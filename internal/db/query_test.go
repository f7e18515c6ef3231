package db_test

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"os"
	"reflect"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/db"
	"github.com/berth-dev/berth/internal/testutil/pgtest"
)

type jrow struct {
	ID     string
	Labels map[string]string
	MACs   []string
	Blob   []byte
}

func scanJRow(r db.Scanner) (jrow, error) {
	var j jrow
	err := r.Scan(&j.ID, db.ScanJSON(&j.Labels), db.ScanJSON(&j.MACs), db.ScanBytes(&j.Blob))
	return j, err
}

// TestQueryHelpers: what the stores read and write through db's helpers
// round-trips alike on both engines, with "none" read back as nil.
func TestQueryHelpers(t *testing.T) {
	eachDialect(t, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		typ, blob := "TEXT", "BLOB"
		if d.Dialect == db.Postgres {
			typ, blob = "JSONB", "BYTEA"
		}
		mustExec(t, d, `CREATE TABLE j (id TEXT PRIMARY KEY, labels `+typ+` NOT NULL, macs `+typ+`, b `+blob+` NOT NULL)`)
		rows := []jrow{
			{ID: "a", Labels: map[string]string{"rack": "r1"}, MACs: []string{"aa:bb"}, Blob: []byte{1, 2}},
			{ID: "b"}, // nil everywhere: stored as {}, [] and empty bytes
		}
		for _, r := range rows {
			mustExec(t, d, `INSERT INTO j (id, labels, macs, b) VALUES ($1, $2, $3, $4)`, r.ID, db.JSON(r.Labels), db.JSON(r.MACs), db.Bytes(r.Blob))
		}
		mustExec(t, d, `INSERT INTO j (id, labels, macs, b) VALUES ('c', '{}', NULL, $1)`, []byte{})
		want := append(rows, jrow{ID: "c"})

		var p db.Params
		q := `SELECT id, labels, macs, b FROM j WHERE ` + p.In("id", []string{"a", "b", "c"}) + ` ORDER BY id`
		got, err := db.Collect(ctx, d, scanJRow, q, p...)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("Collect = %#v, want %#v", got, want)
		}
		p = nil
		q = `SELECT id, labels, macs, b FROM j WHERE ` + p.In("id", nil)
		if got, err := db.Collect(ctx, d, scanJRow, q, p...); err != nil || got != nil {
			t.Errorf("Collect with an empty IN = %v, %v; want nil, nil", got, err)
		}
		if _, err := db.Collect(ctx, d, scanJRow, `SELECT nope FROM j`); err == nil {
			t.Error("Collect of a bad query: no error")
		}

		notFound := errors.New("not found")
		r, err := scanJRow(d.QueryRowContext(ctx, `SELECT id, labels, macs, b FROM j WHERE id = 'zz'`))
		r, err = db.Result(r, db.Found(err, notFound), "get %s", "zz")
		if !errors.Is(err, notFound) || err.Error() != "get zz: not found" || r.ID != "" {
			t.Errorf("Result(Found(no rows)) = %v, %v; want zero, \"get zz: not found\"", r, err)
		}
	})
}

func TestResultAndWrap(t *testing.T) {
	boom := errors.New("boom")
	if v, err := db.Result(7, nil, "x"); v != 7 || err != nil {
		t.Errorf("Result(7, nil) = %v, %v", v, err)
	}
	if v, err := db.Result(7, boom, "op %d", 3); v != 0 || !errors.Is(err, boom) || err.Error() != "op 3: boom" {
		t.Errorf("Result(7, boom) = %v, %v; want 0, op 3: boom", v, err)
	}
	if err := db.Wrap(nil, "x"); err != nil {
		t.Errorf("Wrap(nil) = %v", err)
	}
	if err := db.Wrap(sql.ErrNoRows, "get %s", "n"); !errors.Is(err, sql.ErrNoRows) || err.Error() != "get n: sql: no rows in result set" {
		t.Errorf("Wrap = %v", err)
	}
	if err := db.Found(boom, sql.ErrConnDone); err != boom {
		t.Errorf("Found(boom) = %v, want boom itself", err)
	}
}

func TestScanJSONRefusesBadInput(t *testing.T) {
	var m map[string]string
	if err := db.ScanJSON(&m).Scan(`{"a":`); err == nil {
		t.Error("ScanJSON of truncated JSON: no error")
	}
	if err := db.ScanJSON(&m).Scan(int64(3)); err == nil {
		t.Error("ScanJSON of an integer: no error")
	}
	var b []byte
	if err := db.ScanBytes(&b).Scan(int64(3)); err == nil {
		t.Error("ScanBytes of an integer: no error")
	}
}

// TestCheck: the health check answers on both engines and fails once the
// database cannot serve; on SQLite it reads the file, which a ping does
// not.
func TestCheck(t *testing.T) {
	eachDialect(t, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		if err := d.Check(ctx); err != nil {
			t.Fatalf("Check: %v", err)
		}
		if d.Dialect == db.SQLite {
			var file string
			if err := d.QueryRowContext(ctx, `SELECT file FROM pragma_database_list WHERE name = 'main'`).Scan(&file); err != nil {
				t.Fatal(err)
			}
			for _, f := range []string{file, file + "-wal", file + "-shm"} {
				if err := os.WriteFile(f, bytes.Repeat([]byte("not a database "), 1024), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			if err := d.PingContext(ctx); err != nil {
				t.Fatalf("Ping of a clobbered SQLite file: %v (the point of Check is that it passes)", err)
			}
			if err := d.Check(ctx); err == nil {
				t.Error("Check of a clobbered SQLite file: no error")
			}
		}
		d.Close()
		if err := d.Check(ctx); err == nil {
			t.Error("Check after Close: no error")
		}
	})
}

// TestReadActivity: PostgreSQL's counters of a database grow with the
// writes made to it. The server publishes them shortly after each
// transaction, so the test waits for them.
func TestReadActivity(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.NewDatabase(t)
	before, err := db.ReadActivity(ctx, dsn)
	if err != nil {
		t.Fatalf("ReadActivity: %v", err)
	}
	d := openPostgres(t, dsn)
	mustExec(t, d, `CREATE TABLE a (x INTEGER)`)
	mustExec(t, d, `INSERT INTO a SELECT generate_series(1, 100)`)
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(100 * time.Millisecond) {
		now, err := db.ReadActivity(ctx, dsn)
		if err != nil {
			t.Fatalf("ReadActivity: %v", err)
		}
		if now.Xacts > before.Xacts && now.Rows >= before.Rows+100 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("activity %+v a minute after 100 rows were written, was %+v", now, before)
		}
	}
	if _, err := db.ReadActivity(ctx, "postgres://berth@127.0.0.1:1/berth?connect_timeout=5"); err == nil {
		t.Error("ReadActivity of a closed port: no error")
	}
}
