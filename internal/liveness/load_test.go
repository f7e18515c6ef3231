package liveness

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/liveness/livenesstest"
	"github.com/berth-dev/berth/internal/store/heartbeatstore"
	"github.com/berth-dev/berth/internal/testutil/pgtest"
)

// forBackends runs fn on SQLite and on PostgreSQL; open returns another
// store on the same database each time it is called, as replicas have.
func forBackends(t *testing.T, fn func(t *testing.T, open func() heartbeatstore.Store)) {
	t.Run("SQLite", func(t *testing.T) {
		fn(t, sqliteOpener(t))
	})
	t.Run("PostgreSQL", func(t *testing.T) {
		dsn := pgtest.NewDatabase(t)
		fn(t, func() heartbeatstore.Store { return newPostgresStore(t, dsn) })
	})
}

func withMaxBeatRate(r float64) func(*Config) {
	return func(c *Config) { c.MaxBeatRate = r }
}

// simNode is an agent that beats at the interval of its last reply, as a
// node that missed the pushed change would: the worst case for deciding
// while the interval shrinks.
type simNode struct {
	b    *beater
	next time.Time
	gone bool
}

// TestLoadFactor: 60 nodes at 10 s offer 6 beats/s to a fleet limited to
// 2, so the decider stretches the timings threefold; both replicas tell
// their nodes. Losing 10 nodes is within the hysteresis; losing 35 more
// brings the timings back. The kept nodes are never declared silent, and
// the base settings never change.
func TestLoadFactor(t *testing.T) {
	forBackends(t, func(t *testing.T, open func() heartbeatstore.Store) {
		ctx := context.Background()
		clock := livenesstest.NewClock(t0)
		store := open()
		a := newCore(t, store, clock, "a", withMaxBeatRate(2))
		b := newCore(t, open(), clock, "b", withMaxBeatRate(2))
		var nodes []*simNode
		for i := range 60 {
			c := a
			if i%2 == 1 {
				c = b
			}
			n := &simNode{b: newBeater(t, c, fmt.Sprintf("n%02d", i), "x")}
			n.next = t0.Add(n.b.beat())
			nodes = append(nodes, n)
		}
		base := Timings{Interval: 10 * time.Second, Grace: 40 * time.Second}
		check := func(what string, factor float64) {
			t.Helper()
			want := Settings{Current: base, Defaults: base, LoadFactor: factor, Effective: stretch(base, factor)}
			diff(t, what+": replica a", want, a.Settings())
			diff(t, what+": replica b", want, b.Settings())
			if s, err := store.GetSettings(ctx); err != nil || s.Interval != 0 || s.Grace != 0 || stretchOf(&s) != factor {
				t.Errorf("%s: stored settings %+v, %v; want the defaults stretched by %v", what, s, err, factor)
			}
		}
		step := func() {
			t.Helper()
			clock.Advance(time.Second)
			now := clock.Now()
			for _, n := range nodes {
				if !n.gone && !now.Before(n.next) {
					n.next = now.Add(n.b.beat())
				}
			}
			for _, c := range []*Core{a, b} {
				if err := c.RefreshSettings(ctx); err != nil {
					t.Fatal(err)
				}
				mustFlush(t, c)
				mustDecide(t, c)
			}
		}
		drain := func() {
			for _, n := range nodes {
				select {
				case <-n.b.s.Changed():
				default:
				}
			}
		}
		run := func(d time.Duration) {
			t.Helper()
			for end := clock.Now().Add(d); clock.Now().Before(end); {
				step()
			}
		}
		leave := func(from, to int) {
			for _, n := range nodes[from:to] {
				n.gone = true
				n.b.s.Close()
			}
		}
		drain()
		for _, c := range []*Core{a, b} {
			mustFlush(t, c)
		}
		mustDecide(t, a)
		mustDecide(t, b)
		if err := b.RefreshSettings(ctx); err != nil {
			t.Fatal(err)
		}
		check("overloaded", 3)
		// Both replicas push the longer interval to their streams.
		for _, n := range nodes {
			select {
			case <-n.b.s.Changed():
			default:
				t.Fatalf("%s was not told the new interval", n.b.s.NodeID())
			}
			if iv := n.b.s.Interval(); iv > 30*time.Second || iv <= 27*time.Second {
				t.Fatalf("%s: interval %v, want within a tenth below 30s", n.b.s.NodeID(), iv)
			}
		}

		run(3 * time.Minute)
		check("still overloaded", 3)
		leave(0, 10) // 50 live nodes need 2.5: within the hysteresis
		run(4 * time.Minute)
		check("within the hysteresis", 3)
		leave(10, 45) // 15 live nodes need no stretch
		run(4 * time.Minute)
		check("load fell", 1)
		run(2 * time.Minute)
		for _, n := range nodes[45:] {
			if iv := n.b.s.Interval(); iv > 10*time.Second {
				t.Errorf("%s: interval %v after the load fell", n.b.s.NodeID(), iv)
			}
		}

		silent := map[string]int{}
		for _, e := range logOf(t, store) {
			if e.Type == heartbeatstore.EventSuspect || e.Type == heartbeatstore.EventUnreachable {
				silent[e.NodeID]++
			}
		}
		for i, n := range nodes {
			want := 0
			if n.gone {
				want = 2 // suspect, then unreachable
			}
			if got := silent[n.b.s.NodeID()]; got != want {
				t.Errorf("node %d: %d silence events, want %d", i, got, want)
			}
		}
		if a.Stats().Silenced != 90 || b.Stats().Silenced != 0 {
			t.Errorf("silenced: a %d, b %d; want 90 by a alone", a.Stats().Silenced, b.Stats().Silenced)
		}
	})
}

// TestLoadFactorUnchanged: a replica that is not the decider, and a
// decider without a limit, leave the timings alone however many nodes
// live.
func TestLoadFactorUnchanged(t *testing.T) {
	forBackends(t, func(t *testing.T, open func() heartbeatstore.Store) {
		ctx := context.Background()
		clock := livenesstest.NewClock(t0)
		store := open()
		other := newCore(t, store, clock, "other") // MaxBeatRate 0
		limited := newCore(t, open(), clock, "limited", withMaxBeatRate(1))
		for i := range 50 {
			newBeater(t, other, fmt.Sprintf("n%02d", i), "x").beat()
		}
		mustFlush(t, other)
		for range 5 {
			mustDecide(t, other)
			mustDecide(t, limited)
			clock.Advance(time.Second)
		}
		if !other.Stats().Decider || limited.Stats().Decider {
			t.Fatalf("deciders: other %v, limited %v", other.Stats().Decider, limited.Stats().Decider)
		}
		if s, err := store.GetSettings(ctx); err != nil || s != (heartbeatstore.Settings{}) {
			t.Errorf("stored settings %+v, %v; want none", s, err)
		}
		for _, c := range []*Core{other, limited} {
			if err := c.RefreshSettings(ctx); err != nil {
				t.Fatal(err)
			}
			if f := c.Settings().LoadFactor; f != 1 {
				t.Errorf("%s: load factor %v", c.ReplicaID(), f)
			}
		}
	})
}

func TestNeededStretch(t *testing.T) {
	base := Timings{Interval: 10 * time.Second, Grace: 40 * time.Second}
	tests := []struct {
		name string
		live int
		base Timings
		rate float64
		want float64
	}{
		{"under the limit", 50_000, base, 10_000, 1},
		{"at the limit", 100_000, base, 10_000, 1},
		{"just over rounds up a step", 100_001, base, 10_000, 1.25},
		{"23k/s", 230_000, base, 10_000, 2.5},
		{"capped", 10_000_000, base, 10_000, 30},
		{"capped at an hour", 10_000_000, Timings{Interval: 10 * time.Minute, Grace: time.Hour}, 1, 6},
		{"capped at a day of grace", 10_000_000, Timings{Interval: 10 * time.Second, Grace: 2 * time.Hour}, 1, 12},
	}
	for _, tt := range tests {
		if got := neededStretch(tt.live, tt.base, tt.rate); got != tt.want {
			t.Errorf("%s: neededStretch = %v, want %v", tt.name, got, tt.want)
		}
	}
	for f, want := range map[float64]string{23_000: "23,000", 1_234_567.4: "1,234,567", 100: "100", 0.25: "0.25", 12.5: "12.5"} {
		if got := thousands(f); got != want {
			t.Errorf("thousands(%v) = %q, want %q", f, got, want)
		}
	}
}
