package liveness

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/eventlog"
	"github.com/berth-dev/berth/internal/liveness/livenesstest"
	"github.com/berth-dev/berth/internal/store/heartbeatstore"
)

// watch is a Watch running in the background.
type watch struct {
	events chan heartbeatstore.Event
	done   chan error
	cancel context.CancelFunc
}

func startWatch(t *testing.T, c *Core, r WatchRequest) *watch {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w := &watch{events: make(chan heartbeatstore.Event, 10_000), done: make(chan error, 1), cancel: cancel}
	go func() {
		w.done <- c.Watch(ctx, r, func(e heartbeatstore.Event) error {
			w.events <- e
			return nil
		})
	}()
	t.Cleanup(w.stop)
	return w
}

func (w *watch) stop() {
	w.cancel()
	<-w.done
	w.done <- context.Canceled // for a second stop
}

// next waits for n events; the deadline only bounds a failing test.
func (w *watch) next(t *testing.T, n int) []heartbeatstore.Event {
	t.Helper()
	var out []heartbeatstore.Event
	timeout := time.After(time.Minute)
	for len(out) < n {
		select {
		case e := <-w.events:
			out = append(out, e)
		case err := <-w.done:
			w.done <- err
			t.Fatalf("watch ended after %d of %d events: %v", len(out), n, err)
		case <-timeout:
			t.Fatalf("got %d of %d events", len(out), n)
		}
	}
	return out
}

// nodeEvents flushes one node event for each kind, from node n, a beat
// every two seconds.
func nodeEvents(t *testing.T, c *Core, b *beater, kinds ...string) {
	t.Helper()
	for _, k := range kinds {
		c.clock.(*livenesstest.Clock).Advance(2 * time.Second)
		b.beat(NodeEvent{Kind: k})
	}
	mustFlush(t, c)
}

func kinds(evs []heartbeatstore.Event) []string {
	var out []string
	for _, e := range evs {
		if e.Type == heartbeatstore.EventNode {
			out = append(out, e.Kind)
		} else {
			out = append(out, string(e.Type))
		}
	}
	return out
}

func TestWatchReplayAndFollow(t *testing.T) {
	clock := livenesstest.NewClock(t0)
	store := newSQLiteStore(t)
	c := newCore(t, store, clock, "a")
	n := newBeater(t, c, "n1", "x")
	nodeEvents(t, c, n, "e1", "e2", "e3")
	all := logOf(t, store)
	diff(t, "log", []string{"healthy", "e1", "e2", "e3"}, kinds(all))

	// Replay from a cursor, then follow: an append wakes the watcher at once.
	w := startWatch(t, c, WatchRequest{After: all[1].Cursor})
	diff(t, "replay", []string{"e2", "e3"}, kinds(w.next(t, 2)))
	nodeEvents(t, c, n, "e4")
	diff(t, "live", []string{"e4"}, kinds(w.next(t, 1)))

	// From 0: everything kept. From now: only what comes next.
	// From 0: everything kept.
	diff(t, "from 0", []string{"healthy", "e1", "e2", "e3", "e4"}, kinds(startWatch(t, c, WatchRequest{}).next(t, 5)))
	// Filters apply to replay and to live events alike.
	m := newBeater(t, c, "n2", "x")
	nodeEvents(t, c, m, "m1")
	filtered := startWatch(t, c, WatchRequest{NodeIDs: []string{"n2"}, Types: []heartbeatstore.EventType{heartbeatstore.EventNode}})
	nodeEvents(t, c, n, "e5")
	nodeEvents(t, c, m, "m2")
	diff(t, "filtered", []string{"m1", "m2"}, kinds(filtered.next(t, 2)))
}

func TestWatchFromNow(t *testing.T) {
	clock := livenesstest.NewClock(t0)
	c := newCore(t, newSQLiteStore(t), clock, "a")
	n := newBeater(t, c, "n1", "x")
	nodeEvents(t, c, n, "before")
	w := startWatch(t, c, WatchRequest{FromNow: true})
	clock.BlockUntil(1) // the watcher has read the log and waits
	nodeEvents(t, c, n, "after")
	diff(t, "from now", []string{"after"}, kinds(w.next(t, 1)))
}

// TestWatchReconnect: an engine that watches again after the last cursor
// it received misses nothing and receives nothing twice, whatever happened
// while it was away, and however often it reconnects.
func TestWatchReconnect(t *testing.T) {
	clock := livenesstest.NewClock(t0)
	store := newSQLiteStore(t)
	c := newCore(t, store, clock, "a")
	n := newBeater(t, c, "n1", "x")
	var (
		received []heartbeatstore.Event
		after    int64
		k        int
	)
	for round := range 5 {
		w := startWatch(t, c, WatchRequest{After: after})
		for range round + 1 {
			k++
			nodeEvents(t, c, n, fmt.Sprint(k))
		}
		// This round's events, after the one appended while away (or, the
		// first time, the node's healthy event).
		want := round + 2
		got := w.next(t, want)
		w.stop()
		received = append(received, got...)
		after = got[len(got)-1].Cursor
		// Events appended while the engine is away.
		k++
		nodeEvents(t, c, n, fmt.Sprint(k))
	}
	received = append(received, startWatch(t, c, WatchRequest{After: after}).next(t, 1)...)
	all := logOf(t, store)
	diff(t, "received", kinds(all), kinds(received))
	for i := range min(len(all), len(received)) {
		if received[i].Cursor != all[i].Cursor {
			t.Fatalf("event %d: cursor %d, want %d", i, received[i].Cursor, all[i].Cursor)
		}
	}
}

func TestWatchRetentionBoundary(t *testing.T) {
	clock := livenesstest.NewClock(t0)
	store := newSQLiteStore(t)
	c := newCore(t, store, clock, "a", func(c *Config) { c.Retention = time.Hour })
	n := newBeater(t, c, "n1", "x")
	nodeEvents(t, c, n, "old1", "old2")
	old := logOf(t, store)
	mustDecide(t, c) // takes the lease
	clock.Advance(2 * time.Hour)
	n.beat(NodeEvent{Kind: "new"})
	mustFlush(t, c)
	mustDecide(t, c) // past the grace period: deletes what is older than an hour
	kept := logOf(t, store)
	diff(t, "kept", []string{"new"}, kinds(kept))
	oldest := old[len(old)-1].Cursor

	ctx := context.Background()
	none := func(heartbeatstore.Event) error { return errors.New("unexpected event") }
	for _, after := range []int64{old[0].Cursor, oldest - 1} {
		err := c.Watch(ctx, WatchRequest{After: after}, none)
		var ce *eventlog.CursorError
		if !errors.As(err, &ce) || ce.Ahead || ce.DeletedThrough != oldest {
			t.Fatalf("Watch(after %d) = %v, want a CursorError naming %d", after, err, oldest)
		}
	}
	// At the boundary nothing was lost: the watch starts.
	diff(t, "at the boundary", []string{"new"}, kinds(startWatch(t, c, WatchRequest{After: oldest}).next(t, 1)))
	diff(t, "from 0", []string{"new"}, kinds(startWatch(t, c, WatchRequest{}).next(t, 1)))
	// A cursor from the future (another database) is refused too.
	var ce *eventlog.CursorError
	if err := c.Watch(ctx, WatchRequest{After: kept[0].Cursor + 10}, none); !errors.As(err, &ce) || !ce.Ahead {
		t.Fatalf("Watch(ahead) = %v, want an ahead CursorError", err)
	}
}

func TestWatchEndsWithCore(t *testing.T) {
	clock := livenesstest.NewClock(t0)
	c := newCore(t, newSQLiteStore(t), clock, "a")
	w := startWatch(t, c, WatchRequest{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- c.Run(ctx) }()
	cancel()
	<-done
	if err := <-w.done; !errors.Is(err, ErrClosing) {
		t.Fatalf("watch ended with %v, want ErrClosing", err)
	}
	w.done <- nil
}
