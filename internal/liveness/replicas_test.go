package liveness

import (
	"context"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/liveness/livenesstest"
	"github.com/berth-dev/berth/internal/store/heartbeatstore"
	"github.com/berth-dev/berth/internal/testutil/pgtest"
)

// TestTwoReplicasOnePostgres runs two replicas on one PostgreSQL database,
// with nodes streaming to both. Only one of them declares nodes silent,
// whichever replica the silent node streamed to. When it stops, the other
// takes over without false events: the nodes that streamed to the stopped
// replica reconnect to the survivor within the grace period.
func TestTwoReplicasOnePostgres(t *testing.T) {
	clock := livenesstest.NewClock(t0)
	dsn := pgtest.NewDatabase(t)
	storeA, storeB := newPostgresStore(t, dsn), newPostgresStore(t, dsn)
	a := newCore(t, storeA, clock, "a")
	b := newCore(t, storeB, clock, "b")
	replicas := []*Core{a, b}
	step := func(beat func(now time.Duration)) {
		t.Helper()
		clock.Advance(time.Second)
		if beat != nil {
			beat(clock.Now().Sub(t0))
		}
		for _, c := range replicas {
			mustFlush(t, c)
			mustDecide(t, c)
		}
	}
	for _, c := range replicas {
		mustDecide(t, c)
	}
	if !a.Stats().Decider || b.Stats().Decider {
		t.Fatalf("deciders: a %v, b %v; want a alone", a.Stats().Decider, b.Stats().Decider)
	}
	// a1 and a2 stream to a, b1 and b2 to b. b2 (on the non-decider) stops
	// after +30s.
	on := map[string]*beater{
		"a1": newBeater(t, a, "a1", "x"), "a2": newBeater(t, a, "a2", "x"),
		"b1": newBeater(t, b, "b1", "x"), "b2": newBeater(t, b, "b2", "x"),
	}
	beatAll := func(now time.Duration) {
		if now%(10*time.Second) != 0 {
			return
		}
		// In name order: a beat that raises an event appends it at once.
		for _, name := range slices.Sorted(maps.Keys(on)) {
			if name == "b2" && now > 30*time.Second {
				continue
			}
			on[name].beat()
		}
	}
	for clock.Now().Before(t0.Add(80 * time.Second)) {
		step(beatAll)
		if b.Stats().Decider {
			t.Fatal("both replicas hold the decider role")
		}
	}
	want := []string{
		"+10s a1 healthy from new", "+10s a2 healthy from new",
		"+10s b1 healthy from new", "+10s b2 healthy from new",
		"+51s b2 suspect from healthy", "+71s b2 unreachable from suspect",
	}
	diff(t, "events", want, timeline(logOf(t, storeA)))
	if a.Stats().Silenced != 2 || b.Stats().Silenced != 0 {
		t.Errorf("silenced: a %d, b %d; want 2, 0", a.Stats().Silenced, b.Stats().Silenced)
	}

	// a stops at +80s (its streams end, it flushes and gives up the lease);
	// a1 reconnects to b within 3 s, a2 after 35 s, both inside the grace
	// period that b waits after taking over.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- a.Run(ctx) }()
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	replicas = []*Core{b}
	delete(on, "a1")
	delete(on, "a2")
	for clock.Now().Before(t0.Add(200 * time.Second)) {
		step(func(now time.Duration) {
			switch now {
			case 83 * time.Second:
				on["a1"] = newBeater(t, b, "a1", "x")
			case 115 * time.Second:
				on["a2"] = newBeater(t, b, "a2", "x")
			}
			beatAll(now)
		})
	}
	if !b.Stats().Decider {
		t.Fatal("b did not take over")
	}
	diff(t, "events after the takeover", want, timeline(logOf(t, storeB)))
	for _, n := range []string{"a1", "a2", "b1"} {
		if got := stateOf(t, storeB, n); got != heartbeatstore.StateHealthy {
			t.Errorf("%s is %s, want healthy", n, got)
		}
	}
}

// TestWatchAcrossReplicas: a watch on one replica sees what another
// replica appends, by polling the store.
func TestWatchAcrossReplicas(t *testing.T) {
	clock := livenesstest.NewClock(t0)
	dsn := pgtest.NewDatabase(t)
	a := newCore(t, newPostgresStore(t, dsn), clock, "a")
	b := newCore(t, newPostgresStore(t, dsn), clock, "b")
	w := startWatch(t, b, WatchRequest{FromNow: true})
	clock.BlockUntil(1) // b's watcher has read the log and sleeps until its poll
	n := newBeater(t, a, "n1", "x")
	n.beat(NodeEvent{Kind: "k", Message: "on a"})
	mustFlush(t, a)
	clock.Advance(DefaultPollPeriod)
	got := w.next(t, 2)
	diff(t, "events seen on b", []string{"+0s n1 healthy from new", "+0s n1 node_event k: on a"}, timeline(got))
}
