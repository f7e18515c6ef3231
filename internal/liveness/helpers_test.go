package liveness

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/berth-dev/berth/internal/db"
	"github.com/berth-dev/berth/internal/eventlog"
	"github.com/berth-dev/berth/internal/liveness/livenesstest"
	"github.com/berth-dev/berth/internal/store/heartbeatstore"
	"github.com/berth-dev/berth/internal/testutil/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Run(m)) }

var t0 = time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)

func newSQLiteStore(t testing.TB) heartbeatstore.Store {
	return sqliteOpener(t)()
}

// sqliteOpener returns a function that opens the same SQLite store again,
// as another replica would.
func sqliteOpener(t testing.TB) func() heartbeatstore.Store {
	path := filepath.Join(t.TempDir(), "heartbeat.db")
	return func() heartbeatstore.Store {
		t.Helper()
		s, err := heartbeatstore.Open(context.Background(), db.SQLite, path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		return s
	}
}

func newPostgresStore(t testing.TB, dsn string) heartbeatstore.Store {
	t.Helper()
	s, err := heartbeatstore.Open(context.Background(), db.Postgres, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// newCore returns a core with the default timings on store, driven by clock.
func newCore(t testing.TB, store heartbeatstore.Store, clock *livenesstest.Clock, name string, mod ...func(*Config)) *Core {
	t.Helper()
	cfg := Config{Store: store, Clock: clock, ReplicaID: name}
	for _, m := range mod {
		m(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func connect(t testing.TB, c *Core, node string) *Session {
	t.Helper()
	s, err := c.Connect(context.Background(), node)
	if err != nil {
		t.Fatalf("Connect(%s): %v", node, err)
	}
	t.Cleanup(s.Close)
	return s
}

// beater sends beats for one node with increasing sequence numbers.
type beater struct {
	t      testing.TB
	s      *Session
	seq    int64
	boot   string
	status heartbeatstore.Status
}

func newBeater(t testing.TB, c *Core, node, boot string) *beater {
	return &beater{t: t, s: connect(t, c, node), boot: boot, status: heartbeatstore.StatusUp}
}

func (b *beater) beat(events ...NodeEvent) time.Duration {
	b.t.Helper()
	b.seq++
	iv, err := b.s.Beat(context.Background(), Beat{Sequence: b.seq, BootID: b.boot, Uptime: time.Duration(b.seq) * time.Second, Status: b.status, Events: events})
	if err != nil {
		b.t.Fatalf("Beat(%s #%d): %v", b.s.NodeID(), b.seq, err)
	}
	return iv
}

func mustFlush(t testing.TB, c *Core) {
	t.Helper()
	if err := c.Flush(context.Background()); err != nil {
		t.Fatalf("Flush: %v", err)
	}
}

func mustDecide(t testing.TB, c *Core) {
	t.Helper()
	if err := c.Decide(context.Background()); err != nil {
		t.Fatalf("Decide: %v", err)
	}
}

// logOf reads the whole event log.
func logOf(t testing.TB, s heartbeatstore.Store) []heartbeatstore.Event {
	t.Helper()
	var out []heartbeatstore.Event
	var after int64
	for {
		p, err := s.Events().Read(context.Background(), eventlog.Query{After: after})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range p.Events {
			out = append(out, heartbeatstore.EventOf(e))
		}
		if len(p.Events) == 0 {
			return out
		}
		after = p.Next
	}
}

// timeline renders events as "+SECONDS node type detail", with times
// relative to t0.
func timeline(evs []heartbeatstore.Event) []string {
	var out []string
	for _, e := range evs {
		s := fmt.Sprintf("+%ds %s %s", int(e.Time.Sub(t0)/time.Second), e.NodeID, e.Type)
		switch e.Type {
		case heartbeatstore.EventHealthy, heartbeatstore.EventSuspect, heartbeatstore.EventUnreachable:
			s += " from " + string(e.PrevState)
			if e.PrevState == "" {
				s += "new"
			}
		case heartbeatstore.EventRebooted:
			s += " " + e.PrevBootID + "->" + e.BootID
		case heartbeatstore.EventStatusChanged:
			s += " " + string(e.PrevStatus) + "->" + string(e.Status)
		case heartbeatstore.EventNode:
			s += " " + e.Kind + ": " + e.Message
		}
		out = append(out, s)
	}
	return out
}

func diff(t testing.TB, what string, want, got any) {
	t.Helper()
	if d := cmp.Diff(want, got, cmpopts.EquateEmpty()); d != "" {
		t.Errorf("%s mismatch (-want +got):\n%s", what, d)
	}
}

func stateOf(t testing.TB, s heartbeatstore.Store, node string) heartbeatstore.State {
	t.Helper()
	l, err := s.GetLiveness(context.Background(), node)
	if err != nil {
		t.Fatalf("GetLiveness(%s): %v", node, err)
	}
	return l.State
}
