package heartbeatstore_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"testing/fstest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/berth-dev/berth/internal/db"
	"github.com/berth-dev/berth/internal/eventlog"
	"github.com/berth-dev/berth/internal/store/castore"
	"github.com/berth-dev/berth/internal/store/heartbeatstore"
	"github.com/berth-dev/berth/internal/store/heartbeatstore/storetest"
	"github.com/berth-dev/berth/internal/testutil/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Run(m)) }

func TestSQLite(t *testing.T) {
	storetest.Run(t, func(t *testing.T) heartbeatstore.Store {
		s, err := heartbeatstore.Open(context.Background(), db.SQLite, filepath.Join(t.TempDir(), "heartbeat.db"))
		if err != nil {
			t.Fatalf("Open sqlite: %v", err)
		}
		t.Cleanup(s.Close)
		return s
	})
}

func TestPostgres(t *testing.T) {
	storetest.Run(t, func(t *testing.T) heartbeatstore.Store {
		s, err := heartbeatstore.Open(context.Background(), db.Postgres, pgtest.NewDatabase(t))
		if err != nil {
			t.Fatalf("Open postgres: %v", err)
		}
		t.Cleanup(s.Close)
		return s
	})
}

// TestSharedDatabase runs two heartbeat replicas' stores next to another
// service's on one PostgreSQL database, as a production deployment does.
func TestSharedDatabase(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.NewDatabase(t)
	for range 2 {
		hb, err := heartbeatstore.Open(ctx, db.Postgres, dsn)
		if err != nil {
			t.Fatalf("heartbeat store: %v", err)
		}
		defer hb.Close()
		ca, err := castore.Open(ctx, db.Postgres, dsn)
		if err != nil {
			t.Fatalf("ca store: %v", err)
		}
		defer ca.Close()
		if _, err := hb.Events().Bounds(ctx); err != nil {
			t.Errorf("heartbeat store: %v", err)
		}
	}
}

// TestMigrationMovesEventsIntoLog: a database written before health events
// moved into the shared event log shape keeps its events, cursors and
// watermark, and new cursors follow every cursor handed out before.
func TestMigrationMovesEventsIntoLog(t *testing.T) {
	pgtest.OnEngines(t, func(t *testing.T, engine string) {
		ctx := t.Context()
		d, where := db.SQLite, filepath.Join(t.TempDir(), "hb.db")
		if engine == pgtest.Postgres {
			d, where = db.Postgres, pgtest.NewDatabase(t)
		}
		old := fstest.MapFS{}
		for _, name := range []string{"0001_init.sql", "0002_load_factor.sql"} {
			body, err := os.ReadFile(filepath.Join("migrations", d.String(), name))
			if err != nil {
				t.Fatal(err)
			}
			old["migrations/"+d.String()+"/"+name] = &fstest.MapFile{Data: body}
		}
		h, err := db.OpenSchema(ctx, d, where, db.Schema{Service: "heartbeat", FS: old})
		if err != nil {
			t.Fatal(err)
		}
		t0 := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
		for i, typ := range []string{"healthy", "rebooted", "node_event", "status_changed"} {
			if _, err := h.ExecContext(ctx, `INSERT INTO hb_events (at, node_id, type, state, prev_boot_id, boot_id, kind, message)
				VALUES ($1, 'n1', $2, $3, $4, 'b2', $5, $6)`, d.Time(t0.Add(time.Duration(i)*time.Second)), typ,
				map[bool]string{true: "healthy"}[typ == "healthy"], map[bool]string{true: "b1"}[typ == "rebooted"],
				map[bool]string{true: "disk"}[typ == "node_event"], map[bool]string{true: "sda ✗"}[typ == "node_event"]); err != nil {
				t.Fatal(err)
			}
		}
		// Retention deleted the first event.
		if _, err := h.ExecContext(ctx, `DELETE FROM hb_events WHERE type = 'healthy'`); err != nil {
			t.Fatal(err)
		}
		if _, err := h.ExecContext(ctx, `UPDATE hb_event_log SET deleted_through = 1`); err != nil {
			t.Fatal(err)
		}
		h.Close()

		s, err := heartbeatstore.Open(ctx, d, where)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		defer s.Close()
		b, err := s.Events().Bounds(ctx)
		if err != nil || b != (eventlog.Bounds{DeletedThrough: 1, Oldest: 2, Head: 4}) {
			t.Fatalf("Bounds = %+v, %v", b, err)
		}
		p, err := s.Events().Read(ctx, eventlog.Query{})
		if err != nil {
			t.Fatal(err)
		}
		var got []heartbeatstore.Event
		for _, e := range p.Events {
			got = append(got, heartbeatstore.EventOf(e))
		}
		want := []heartbeatstore.Event{
			{Cursor: 2, Time: t0.Add(time.Second), NodeID: "n1", Type: heartbeatstore.EventRebooted, BootID: "b2", PrevBootID: "b1"},
			{Cursor: 3, Time: t0.Add(2 * time.Second), NodeID: "n1", Type: heartbeatstore.EventNode, BootID: "b2", Kind: "disk", Message: "sda ✗"},
			{Cursor: 4, Time: t0.Add(3 * time.Second), NodeID: "n1", Type: heartbeatstore.EventStatusChanged, BootID: "b2"},
		}
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("events (-want +got):\n%s", d)
		}
		if _, err := s.Record(ctx, heartbeatstore.Observation{NodeID: "n2", LastSeen: t0, Sequence: 1, BootID: "b", Status: heartbeatstore.StatusUp}, nil); err != nil {
			t.Fatal(err)
		}
		if b, _ := s.Events().Bounds(ctx); b.Head != 5 {
			t.Errorf("new event's cursor %d, want 5", b.Head)
		}
	})
}
