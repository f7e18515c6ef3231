package heartbeatstore_test

import (
	"context"
	"fmt"
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

// TestRecordBootsOutlastsRowRaces: in a storm, the nodes of a boot batch
// open their streams while the batch is written, and each stream's first
// beat may create the node's row between the batch's read and its write.
// Here that happens on five reruns in a row, more than any fixed number of
// reruns allowed before: the batch is still recorded, the raced nodes'
// newer beats are kept, and every node gets exactly one healthy event.
// PostgreSQL only: SQLite's single writer makes the race impossible.
func TestRecordBootsOutlastsRowRaces(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.NewDatabase(t)
	s, err := heartbeatstore.Open(ctx, db.Postgres, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	other, err := heartbeatstore.Open(ctx, db.Postgres, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	const racers = 5
	at := time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC)
	var boots []heartbeatstore.Observation
	for i := range racers + 1 {
		boots = append(boots, heartbeatstore.Observation{NodeID: fmt.Sprintf("node-%d", i), LastSeen: at, Sequence: 1,
			BootID: "boot-1", Status: heartbeatstore.StatusUp})
	}
	reads := 0
	heartbeatstore.SetAfterBootsRead(s, func() {
		if reads < racers {
			beat := boots[reads]
			beat.LastSeen, beat.Sequence = at.Add(time.Second), 2
			if _, err := other.Record(ctx, beat, nil); err != nil {
				t.Errorf("racing beat of %s: %v", beat.NodeID, err)
			}
		}
		reads++
	})
	res, err := s.RecordBoots(ctx, boots)
	if err != nil {
		t.Fatalf("RecordBoots after %d races: %v", racers, err)
	}
	if reads != racers+1 || res.Recorded != 1 || res.Skipped != racers {
		t.Errorf("reads %d, result %+v; want %d reads, 1 recorded, %d skipped", reads, res, racers+1, racers)
	}
	page, err := s.Events().Read(ctx, eventlog.Query{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	healthy := map[string]int{}
	for _, e := range page.Events {
		if e.Type == string(heartbeatstore.EventHealthy) {
			healthy[e.NodeID]++
		}
	}
	for i, b := range boots {
		if healthy[b.NodeID] != 1 {
			t.Errorf("%s: %d healthy events, want 1", b.NodeID, healthy[b.NodeID])
		}
		l, err := s.GetLiveness(ctx, b.NodeID)
		wantSeq := int64(2)
		if i == racers {
			wantSeq = 1
		}
		if err != nil || l.Sequence != wantSeq {
			t.Errorf("%s: liveness %+v, %v; want sequence %d", b.NodeID, l, err, wantSeq)
		}
	}
}
