package liveness

import (
	"context"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/liveness/livenesstest"
)

// TestDeferStream: new streams are deferred while the boots recorded in
// the current and the previous second outnumber the streams allowed in
// one, and let in again once they do not, or once a deferral has lasted
// half the interval in force, after which they are let in for as long.
func TestDeferStream(t *testing.T) {
	ctx := context.Background()
	type step struct {
		advance time.Duration // before the step
		boots   int           // recorded at the step
		want    bool          // DeferStream then
	}
	for _, tt := range []struct {
		name  string
		rate  float64
		steps []step
		// deferred is Stats().Deferred at the end.
		deferred int64
	}{
		{name: "no boots", rate: 2, steps: []step{{want: false}}},
		{name: "boots within the rate", rate: 2, steps: []step{{boots: 2, want: false}}},
		{name: "no connect limit", rate: 0, steps: []step{{boots: 30, want: false}}},
		{name: "a burst, then quiet", rate: 2, deferred: 3, steps: []step{
			{boots: 3, want: true},
			{advance: 999 * time.Millisecond, want: true},
			{advance: time.Second, want: true},  // the previous second still counts
			{advance: time.Second, want: false}, // two seconds on, it does not
		}},
		{name: "boots going on past the bound (5 s: half the 10 s interval)", rate: 2, deferred: 7, steps: []step{
			{boots: 3, want: true},
			{advance: time.Second, boots: 3, want: true},
			{advance: time.Second, boots: 3, want: true},
			{advance: time.Second, boots: 3, want: true},
			{advance: time.Second, boots: 3, want: true},
			{advance: 999 * time.Millisecond, boots: 3, want: true},
			{advance: time.Millisecond, boots: 3, want: false}, // 5 s deferred: let in for 5 s
			{advance: 4999 * time.Millisecond, boots: 3, want: false},
			{advance: time.Millisecond, boots: 3, want: true}, // a new deferral
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			clock := livenesstest.NewClock(t0)
			c := newCore(t, newSQLiteStore(t), clock, "a", withMaxConnectRate(tt.rate))
			n := 0
			for i, s := range tt.steps {
				clock.Advance(s.advance)
				if s.boots > 0 {
					if _, err := c.RecordBoots(ctx, nodeBoots(string(rune('a'+n)), s.boots)); err != nil {
						t.Fatal(err)
					}
					n++
				}
				if got := c.DeferStream(); got != s.want {
					t.Fatalf("step %d (%v after the start): DeferStream %v, want %v", i, clock.Now().Sub(t0), got, s.want)
				}
			}
			if got := c.Stats().Deferred; got != tt.deferred {
				t.Errorf("Stats().Deferred = %d, want %d", got, tt.deferred)
			}
		})
	}
}

// TestDeferStreamBoundStretched: the decider's stretch for boots
// lengthens the interval in force, and the bound with it: 30 boots at a
// limit of 2 stretch the 10 s interval at least fourfold, so boots that go
// on are still deferred past the base bound of 5 s.
func TestDeferStreamBoundStretched(t *testing.T) {
	ctx := context.Background()
	clock := livenesstest.NewClock(t0)
	c := newCore(t, newSQLiteStore(t), clock, "a", withMaxConnectRate(2))
	mustDecide(t, c)
	for i := range 8 {
		n := 3
		if i == 0 {
			n = 30
		}
		res, err := c.RecordBoots(ctx, nodeBoots(string(rune('a'+i)), n))
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 && res.Interval < 40*time.Second {
			t.Fatalf("told %v after 30 boots, want a stretch to at least 40 s", res.Interval)
		}
		if !c.DeferStream() {
			t.Fatalf("%d s into the boots: not deferring", i)
		}
		clock.Advance(time.Second)
	}
}
