package liveness

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/liveness/livenesstest"
	"github.com/berth-dev/berth/internal/store/heartbeatstore"
)

func TestBeatRules(t *testing.T) {
	clock := livenesstest.NewClock(t0)
	store := newSQLiteStore(t)
	c := newCore(t, store, clock, "a")
	s := connect(t, c, "n1")
	beat := func(seq int64, boot string) error {
		_, err := s.Beat(context.Background(), Beat{Sequence: seq, BootID: boot, Status: heartbeatstore.StatusUp})
		return err
	}
	tests := []struct {
		name string
		seq  int64
		boot string
		want error
	}{
		{"first beat may start anywhere", 5, "b1", nil},
		{"next", 6, "b1", nil},
		{"gaps are fine", 9, "b1", nil},
		{"repeated sequence", 9, "b1", ErrSequence},
		{"sequence going back", 3, "b1", ErrSequence},
		{"boot ID changing", 10, "b2", ErrBootChanged},
		{"still fine after refusals", 10, "b1", nil},
	}
	for _, tt := range tests {
		if err := beat(tt.seq, tt.boot); !errors.Is(err, tt.want) {
			t.Errorf("%s: err = %v, want %v", tt.name, err, tt.want)
		}
	}
	// Refused beats changed nothing.
	mustFlush(t, c)
	if l, err := store.GetLiveness(context.Background(), "n1"); err != nil || l.Sequence != 10 || l.BootID != "b1" {
		t.Errorf("liveness = %+v, %v", l, err)
	}

	// A burst of ten, then five per interval.
	f := connect(t, c, "flood")
	var seq int64
	flood := func() error {
		seq++
		_, err := f.Beat(context.Background(), Beat{Sequence: seq, BootID: "b", Status: heartbeatstore.StatusUp})
		return err
	}
	for i := range beatBurst {
		if err := flood(); err != nil {
			t.Fatalf("beat %d of the burst: %v", i, err)
		}
	}
	if err := flood(); !errors.Is(err, ErrTooFast) {
		t.Fatalf("beat past the burst: %v, want ErrTooFast", err)
	}
	clock.Advance(f.Interval() / beatsPerInterval)
	if err := flood(); err != nil {
		t.Fatalf("beat after a fifth of an interval: %v", err)
	}
}

func TestSupersededStream(t *testing.T) {
	c := newCore(t, newSQLiteStore(t), livenesstest.NewClock(t0), "a")
	first := newBeater(t, c, "n1", "b")
	first.beat()
	second := newBeater(t, c, "n1", "b")
	select {
	case <-first.s.Done():
	default:
		t.Fatal("first stream still open")
	}
	if err := first.s.Err(); !errors.Is(err, ErrSuperseded) {
		t.Fatalf("first stream: %v, want ErrSuperseded", err)
	}
	if _, err := first.s.Beat(context.Background(), Beat{Sequence: 9, BootID: "b", Status: heartbeatstore.StatusUp}); !errors.Is(err, ErrSuperseded) {
		t.Fatalf("beat on the first stream: %v", err)
	}
	// Closing the old stream late does not disturb the new one.
	first.s.Close()
	second.beat()
	mustFlush(t, c)
	if s := c.Stats(); s.Sessions != 1 {
		t.Errorf("%d sessions, want 1", s.Sessions)
	}
}

func TestRevocation(t *testing.T) {
	var revoked atomic.Value
	revoked.Store("")
	hook := func(_ context.Context, id string) bool { return id == revoked.Load().(string) }
	clock := livenesstest.NewClock(t0)
	c := newCore(t, newSQLiteStore(t), clock, "a", func(c *Config) { c.IsRevoked = hook })

	// Pushed by Revoke: the stream ends and the node cannot come back.
	n1 := newBeater(t, c, "n1", "b")
	c.Revoke("n1")
	<-n1.s.Done()
	if err := n1.s.Err(); !errors.Is(err, ErrRevoked) {
		t.Fatalf("stream of a revoked node: %v", err)
	}
	if _, err := c.Connect(context.Background(), "n1"); !errors.Is(err, ErrRevoked) {
		t.Fatalf("Connect(revoked) = %v", err)
	}

	// Found by the periodic check through the hook.
	n2 := newBeater(t, c, "n2", "b")
	n3 := newBeater(t, c, "n3", "b")
	revoked.Store("n2")
	c.CheckRevocations(context.Background())
	<-n2.s.Done()
	if err := n2.s.Err(); !errors.Is(err, ErrRevoked) {
		t.Fatalf("stream of n2: %v", err)
	}
	if err := n3.s.Err(); err != nil {
		t.Fatalf("stream of n3: %v", err)
	}
	if _, err := c.Connect(context.Background(), "n2"); !errors.Is(err, ErrRevoked) {
		t.Fatalf("Connect(n2) = %v", err)
	}
	// Run checks on its own period.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- c.Run(ctx) }()
	defer func() { cancel(); <-done }()
	revoked.Store("n3")
	clock.BlockUntil(3) // Run's three timers
	clock.Advance(DefaultRevocationCheck)
	<-n3.s.Done()
	if err := n3.s.Err(); !errors.Is(err, ErrRevoked) {
		t.Fatalf("stream of n3: %v", err)
	}
}

func TestSettings(t *testing.T) {
	clock := livenesstest.NewClock(t0)
	store := newSQLiteStore(t)
	c := newCore(t, store, clock, "a")
	other := newCore(t, store, clock, "b")
	s := connect(t, c, "n1")
	onOther := connect(t, other, "n2")
	if iv := s.Interval(); iv > 10*time.Second || iv < 9*time.Second {
		t.Fatalf("interval %v, want within a tenth below 10s", iv)
	}
	ctx := context.Background()
	tests := []struct {
		name string
		in   Timings
		want Timings
		err  error
	}{
		{"slower, grace scales", Timings{Interval: 30 * time.Second}, Timings{Interval: 30 * time.Second, Grace: 120 * time.Second}, nil},
		{"both", Timings{Interval: 20 * time.Second, Grace: 45 * time.Second}, Timings{Interval: 20 * time.Second, Grace: 45 * time.Second}, nil},
		{"defaults", Timings{}, Timings{Interval: 10 * time.Second, Grace: 40 * time.Second}, nil},
		{"grace with the default interval", Timings{Grace: time.Minute}, Timings{Interval: 10 * time.Second, Grace: time.Minute}, nil},
		{"interval below twice the flush period", Timings{Interval: 3 * time.Second}, Timings{}, ErrInterval},
		{"interval above an hour", Timings{Interval: 2 * time.Hour}, Timings{}, ErrInterval},
		{"grace not above two intervals", Timings{Interval: 10 * time.Second, Grace: 20 * time.Second}, Timings{}, ErrGrace},
		{"grace above a day", Timings{Interval: 10 * time.Second, Grace: 25 * time.Hour}, Timings{}, ErrGrace},
	}
	for _, tt := range tests {
		got, err := c.SetSettings(ctx, tt.in, "admin:admin")
		if !errors.Is(err, tt.err) {
			t.Fatalf("%s: err = %v, want %v", tt.name, err, tt.err)
		}
		if err == nil && got.Current != tt.want {
			t.Errorf("%s: settings %+v, want %+v", tt.name, got.Current, tt.want)
		}
	}
	// Drain, then change: the local stream learns at once, the other
	// replica's at its next refresh.
	for _, ch := range []<-chan struct{}{s.Changed(), onOther.Changed()} {
		select {
		case <-ch:
		default:
		}
	}
	if _, err := c.SetSettings(ctx, Timings{Interval: time.Minute}, "admin:admin"); err != nil {
		t.Fatal(err)
	}
	<-s.Changed()
	if iv := s.Interval(); iv > time.Minute || iv < 54*time.Second {
		t.Errorf("interval %v after the change", iv)
	}
	if err := other.RefreshSettings(ctx); err != nil {
		t.Fatal(err)
	}
	<-onOther.Changed()
	if got := other.Settings().Current; got.Interval != time.Minute {
		t.Errorf("other replica: %+v", got)
	}
	// While nodes learn a shorter interval, decisions use the longer one.
	if _, err := c.SetSettings(ctx, Timings{Interval: 5 * time.Second}, "admin:admin"); err != nil {
		t.Fatal(err)
	}
	if got := c.decisionTimings(clock.Now()); got.Interval != time.Minute || got.Grace != 4*time.Minute {
		t.Errorf("decision timings right after the change: %+v", got)
	}
	clock.Advance(4 * time.Minute)
	if got := c.decisionTimings(clock.Now()); got.Interval != 5*time.Second || got.Grace != 20*time.Second {
		t.Errorf("decision timings later: %+v", got)
	}
}

func TestJitter(t *testing.T) {
	seen := map[time.Duration]bool{}
	for _, id := range []string{"a", "b", "c", "d", "node-1", "node-2", "node-3", "node-4"} {
		iv := jittered(id, 10*time.Second)
		if iv > 10*time.Second || iv <= 9*time.Second || iv%time.Millisecond != 0 {
			t.Errorf("jittered(%s) = %v", id, iv)
		}
		if jittered(id, 10*time.Second) != iv {
			t.Errorf("jittered(%s) is not stable", id)
		}
		seen[iv] = true
	}
	if len(seen) < 6 {
		t.Errorf("only %d distinct intervals for 8 nodes", len(seen))
	}
}

// TestFlushRetry: beats survive a failed flush. A beat that raises events
// is refused while the store is down and changes nothing, so no event is
// ever dropped; its events are written once the node sends it again.
func TestFlushRetry(t *testing.T) {
	ctx := context.Background()
	clock := livenesstest.NewClock(t0)
	store := &flakyStore{Store: newSQLiteStore(t)}
	c := newCore(t, store, clock, "a")
	n := newBeater(t, c, "n1", "b")
	n.beat()
	store.fail(true)
	clock.Advance(time.Second)
	n.beat()
	if err := c.Flush(ctx); err == nil {
		t.Fatal("Flush succeeded")
	}
	n.seq++
	events := []NodeEvent{{Kind: "1"}, {Kind: "2"}}
	if _, err := n.s.Beat(ctx, Beat{Sequence: n.seq, BootID: "b", Status: heartbeatstore.StatusUp, Events: events}); !errors.Is(err, errStoreDown) {
		t.Fatalf("Beat with events while the store is down: %v, want %v", err, errStoreDown)
	}
	if err := c.Flush(ctx); err == nil {
		t.Fatal("Flush succeeded")
	}
	store.fail(false)
	n.beat(events...)
	mustFlush(t, c)
	diff(t, "events", []string{"+0s n1 healthy from new", "+1s n1 node_event 1: ", "+1s n1 node_event 2: "},
		timeline(logOf(t, store)))
	if l, err := store.GetLiveness(ctx, "n1"); err != nil || l.Sequence != 4 {
		t.Errorf("liveness = %+v, %v", l, err)
	}
	if s := c.Stats(); s.FlushErrors != 2 || s.EventsWritten != 3 {
		t.Errorf("stats = %+v", s)
	}
}
