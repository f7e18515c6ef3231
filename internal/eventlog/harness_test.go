package eventlog_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/berth-dev/berth/internal/db"
	"github.com/berth-dev/berth/internal/eventlog"
	"github.com/berth-dev/berth/internal/testutil/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Run(m)) }

var table = eventlog.NewTable("test")

// t0 has nanoseconds and a non-UTC zone on purpose: the log must return the
// same instant in UTC, truncated to microseconds.
var t0 = time.Date(2026, 11, 21, 10, 0, 0, 123456789, time.FixedZone("CET", 3600))

func at(d time.Duration) time.Time { return t0.Add(d) }

func stored(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

// testLog is a log handle with its Notify.
type testLog interface {
	eventlog.Log
	Notify()
}

// fixture is one database holding the test log, on one backend.
type fixture struct {
	name string
	log  testLog
	// appendTx appends events in one transaction and commits; it does not
	// notify.
	appendTx func(ctx context.Context, events ...eventlog.Event) error
	// replica opens another handle on the same database, as another
	// process would.
	replica func(t *testing.T) *fixture
}

// append appends in one transaction, commits and notifies.
func (f *fixture) append(t testing.TB, events ...eventlog.Event) {
	t.Helper()
	if err := f.appendTx(context.Background(), events...); err != nil {
		t.Fatalf("append: %v", err)
	}
	f.log.Notify()
}

func newSQLite(t *testing.T) *fixture {
	t.Helper()
	return newFixture(t, db.SQLite, filepath.Join(t.TempDir(), "events.db")).fixture
}

func newPostgres(t *testing.T) *fixture { return newPostgresFixture(t).fixture }

func newPostgresFixture(t *testing.T) dbFixture {
	t.Helper()
	return newFixture(t, db.Postgres, pgtest.NewDatabase(t))
}

// newFixture creates the test log's tables in a fresh database.
func newFixture(t *testing.T, d db.Dialect, where string) dbFixture {
	t.Helper()
	f := open(t, d, where)
	if _, err := f.db.ExecContext(t.Context(), eventlog.Schema(d, table)); err != nil {
		t.Fatalf("schema: %v", err)
	}
	return f
}

type dbFixture struct {
	*fixture
	db *db.DB
}

// open opens the log in an existing database, as another process would.
func open(t *testing.T, d db.Dialect, where string) dbFixture {
	t.Helper()
	h, err := db.Open(context.Background(), d, where)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	l := eventlog.NewLog(h, table)
	f := &fixture{name: d.String(), log: l}
	f.appendTx = func(ctx context.Context, events ...eventlog.Event) error {
		return h.Tx(ctx, func(tx *sql.Tx) error {
			if err := l.Append(ctx, tx, events...); err != nil {
				return err
			}
			_, err := tx.ExecContext(ctx, afterAppend)
			return err
		})
	}
	f.replica = func(t *testing.T) *fixture { return open(t, d, where).fixture }
	return dbFixture{fixture: f, db: h}
}

// afterAppend is a statement run between the append and the commit, so
// that concurrent transactions interleave there, where a late commit of a
// lower cursor would happen.
const afterAppend = `SELECT 1`

// backends runs fn on a fresh log on each backend.
func backends(t *testing.T, fn func(t *testing.T, f *fixture)) {
	for _, b := range []struct {
		name string
		open func(*testing.T) *fixture
	}{{"sqlite", newSQLite}, {"postgres", newPostgres}} {
		t.Run(b.name, func(t *testing.T) { fn(t, b.open(t)) })
	}
}

func ev(node, typ string, tm time.Time, kv ...string) eventlog.Event {
	e := eventlog.Event{NodeID: node, Type: typ, Time: tm}
	if len(kv) > 0 {
		e.Details = map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			e.Details[kv[i]] = kv[i+1]
		}
	}
	return e
}

// readAll reads the whole log kept, in pages.
func readAll(t testing.TB, l eventlog.Source) []eventlog.Event {
	t.Helper()
	var (
		out   []eventlog.Event
		after int64
	)
	for {
		p, err := l.Read(context.Background(), eventlog.Query{After: after, Limit: 1000})
		if err != nil {
			t.Fatalf("Read: %v", err)
		}
		out = append(out, p.Events...)
		if len(p.Events) < 1000 {
			return out
		}
		after = p.Next
	}
}

func bounds(t testing.TB, l eventlog.Source) eventlog.Bounds {
	t.Helper()
	b, err := l.Bounds(context.Background())
	if err != nil {
		t.Fatalf("Bounds: %v", err)
	}
	return b
}

func diff(t testing.TB, what string, want, got any) {
	t.Helper()
	if d := cmp.Diff(want, got, cmpopts.EquateEmpty()); d != "" {
		t.Errorf("%s mismatch (-want +got):\n%s", what, d)
	}
}

func cursors(evs []eventlog.Event) []int64 {
	out := make([]int64, 0, len(evs))
	for _, e := range evs {
		out = append(out, e.Cursor)
	}
	return out
}

func types(evs []eventlog.Event) []string {
	out := make([]string, 0, len(evs))
	for _, e := range evs {
		out = append(out, e.Type)
	}
	return out
}

// checkIncreasing fails unless cursors strictly increase.
func checkIncreasing(t testing.TB, what string, evs []eventlog.Event) {
	t.Helper()
	for i := 1; i < len(evs); i++ {
		if evs[i].Cursor <= evs[i-1].Cursor {
			t.Fatalf("%s: cursor %d follows %d", what, evs[i].Cursor, evs[i-1].Cursor)
		}
	}
}

// numbered returns n events e0…e(n-1) of node, one second apart from start.
func numbered(node string, start time.Duration, n int) []eventlog.Event {
	out := make([]eventlog.Event, n)
	for i := range out {
		out[i] = ev(node, fmt.Sprintf("e%d", i), at(start+time.Duration(i)*time.Second))
	}
	return out
}
