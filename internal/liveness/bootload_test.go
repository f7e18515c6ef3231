package liveness

import (
	"context"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/liveness/livenesstest"
	"github.com/berth-dev/berth/internal/store/heartbeatstore"
)

func withMaxConnectRate(r float64) func(*Config) {
	return func(c *Config) { c.MaxConnectRate = r }
}

// TestMassBootStretch: 30 boots would open 6 streams/s within the second
// half of the 10 s interval, against a limit of 2, so the decider stretches
// the timings fourfold (the next power of two) as it records them, and
// these booting nodes are told 40 s. Each
// opens its stream late in that window and is never declared silent, as
// it would be at the base interval. The one node that never opens its
// stream is declared suspect only after two stretched intervals: the
// price of the stretch. A minute after the boots the stretch is undone.
func TestMassBootStretch(t *testing.T) {
	forBackends(t, func(t *testing.T, open func() heartbeatstore.Store) {
		ctx := context.Background()
		clock := livenesstest.NewClock(t0)
		store := open()
		c := newCore(t, store, clock, "a", withMaxConnectRate(2))
		// The decider holds its lease from long before the boots, past
		// the hold that follows taking it (stretched with the timings).
		for range 200 {
			mustDecide(t, c)
			clock.Advance(time.Second)
		}
		tb := clock.Now()
		const n = 30
		boots := make([]Boot, n)
		for i := range boots {
			boots[i] = Boot{NodeID: fmt.Sprintf("n%02d", i), BootID: "boot", Sequence: 1, Status: heartbeatstore.StatusUp}
		}
		res, err := c.RecordBoots(ctx, boots)
		if err != nil || res.Recorded != n || res.Interval != 40*time.Second {
			t.Fatalf("RecordBoots: %+v, %v; want %d recorded and told 40s", res, err, n)
		}
		mustDecide(t, c)
		if f := c.Settings().LoadFactor; f != 4 {
			t.Fatalf("load factor after %d boots and a decision: %v, want 4", n, f)
		}
		res, err = c.RecordBoots(ctx, nil)
		if err != nil || res.Interval != 40*time.Second {
			t.Fatalf("interval told to booting nodes: %v, %v; want 40s", res.Interval, err)
		}

		// Node i opens its stream at 39 s less i/3 s; n29 never does.
		type node struct {
			b    *beater
			next time.Time
		}
		nodes := make([]*node, n-1)
		for i := range nodes {
			nodes[i] = &node{next: tb.Add(39*time.Second - time.Duration(i)*time.Second/3).Truncate(time.Second)}
		}
		for end := tb.Add(4 * time.Minute); clock.Now().Before(end); {
			clock.Advance(time.Second)
			now := clock.Now()
			for i, nd := range nodes {
				if now.Before(nd.next) {
					continue
				}
				if nd.b == nil {
					nd.b = newBeater(t, c, boots[i].NodeID, "boot")
					nd.b.seq = 1
				}
				nd.next = now.Add(nd.b.beat())
			}
			mustFlush(t, c)
			mustDecide(t, c)
		}
		if f := c.Settings().LoadFactor; f != 1 {
			t.Errorf("load factor minutes after the boots: %v, want 1", f)
		}
		var silent []string
		for _, e := range logOf(t, store) {
			if e.Type == heartbeatstore.EventSuspect || e.Type == heartbeatstore.EventUnreachable {
				silent = append(silent, timeline([]heartbeatstore.Event{e})...)
			}
		}
		// Suspect once last seen two stretched intervals ago (80 s after
		// the boot at +200s), unreachable a stretched grace (160 s) after.
		diff(t, "silence events", []string{"+281s n29 suspect from healthy", "+361s n29 unreachable from suspect"}, silent)
	})
}

// TestMassBootStretchSteps: boots arriving over 20 s raise the stretch as
// they add up, and it is undone in one step once the boots left in the
// window call for none, not halved as each batch ages out.
func TestMassBootStretchSteps(t *testing.T) {
	clock := livenesstest.NewClock(t0)
	c := newCore(t, newSQLiteStore(t), clock, "a", withMaxConnectRate(2))
	var factors []float64
	for s := range 100 {
		if s%10 == 0 && s < 30 {
			boots := make([]Boot, 10)
			for i := range boots {
				boots[i] = Boot{NodeID: fmt.Sprintf("n%02d", s+i), BootID: "boot", Sequence: 1, Status: heartbeatstore.StatusUp}
			}
			if _, err := c.RecordBoots(context.Background(), boots); err != nil {
				t.Fatal(err)
			}
		}
		mustDecide(t, c)
		if f := c.Settings().LoadFactor; len(factors) == 0 || f != factors[len(factors)-1] {
			factors = append(factors, f)
		}
		clock.Advance(time.Second)
	}
	// Against 2 streams/s over the second half of the 10 s interval, 10
	// boots need no stretch, 20 need 2, 30 need 3, doubled to 4; at +60 s
	// 20 remain, at +70 s 10.
	diff(t, "load factors", []float64{1, 2, 4, 1}, factors)
}

// TestMassBootStretchAcrossReplicas: a mass boot spread over two replicas
// is stretched for as a whole. The decider a records 15 boots (twofold),
// then b 15 more 20 s later: together they need fourfold, which a sets
// once b has stored its count. b dies at once. Its boots keep counting for
// as long as they would have had it lived, a minute after it said them:
// a's own age out at +60 s, and the stretch is undone only once b's have
// too, after +80 s; a's retention pass then deletes b's count.
func TestMassBootStretchAcrossReplicas(t *testing.T) {
	forBackends(t, func(t *testing.T, open func() heartbeatstore.Store) {
		ctx := context.Background()
		clock := livenesstest.NewClock(t0)
		a := newCore(t, open(), clock, "a", withMaxConnectRate(2))
		b := newCore(t, open(), clock, "b", withMaxConnectRate(2))
		// a holds its lease from long before the boots, past the hold
		// that follows taking it.
		for range 200 {
			mustDecide(t, a)
			mustDecide(t, b)
			clock.Advance(time.Second)
		}
		record := func(c *Core, first int) {
			t.Helper()
			boots := make([]Boot, 15)
			for i := range boots {
				boots[i] = Boot{NodeID: fmt.Sprintf("n%02d", first+i), BootID: "boot", Sequence: 1, Status: heartbeatstore.StatusUp}
			}
			if _, err := c.RecordBoots(ctx, boots); err != nil {
				t.Fatal(err)
			}
		}
		tb := clock.Now()
		last := a.Settings().LoadFactor
		changes := []string{fmt.Sprintf("+0s ×%v", last)}
		for clock.Now().Before(tb.Add(2 * time.Minute)) {
			switch clock.Now().Sub(tb) {
			case 0:
				record(a, 0)
			case 20 * time.Second:
				record(b, 15)
				mustDecide(t, b) // its last: it dies
			}
			mustDecide(t, a)
			if f := a.Settings().LoadFactor; f != last {
				last = f
				changes = append(changes, fmt.Sprintf("+%v ×%v", clock.Now().Sub(tb), f))
			}
			clock.Advance(time.Second)
		}
		diff(t, "load factor changes", []string{"+0s ×1", "+0s ×2", "+20s ×4", "+1m21s ×1"}, changes)
		// The decider's next retention pass forgets b's count, which no
		// sum takes any more.
		clock.Advance(10 * time.Minute)
		mustDecide(t, a)
		if n, err := open().SumBoots(ctx, "", time.Time{}); err != nil || n != 0 {
			t.Errorf("boot counts stored after the retention pass: %d, %v; want none", n, err)
		}
	})
}

// stretchUnwritable is a store that refuses the load factor.
type stretchUnwritable struct{ heartbeatstore.Store }

func (stretchUnwritable) PutStretch(context.Context, heartbeatstore.Settings) error {
	return errStoreDown
}

// TestRaiseForBoots: the decider raises the stretch as it records the boots
// that call for it, so that these very nodes are told the longer interval;
// nothing else does. Against 2 streams/s over the second half of the 10 s
// interval, 20 boots call for twofold, 30 and 40 for fourfold.
func TestRaiseForBoots(t *testing.T) {
	for _, tt := range []struct {
		name string
		rate float64
		// decide: the core decides first (takes the lease); lapse: then
		// the lease lapses without another decision.
		decide, lapse bool
		// others: another replica's boots, which the decider has summed.
		others, boots int
		store         func(heartbeatstore.Store) heartbeatstore.Store
		told          time.Duration
		stored        float64
	}{
		{name: "decider", rate: 2, decide: true, boots: 30, told: 40 * time.Second, stored: 4},
		{name: "decider, boots calling for no more", rate: 2, decide: true, boots: 10, told: 10 * time.Second, stored: 1},
		{name: "decider counting another replica's boots", rate: 2, decide: true, others: 20, boots: 20, told: 40 * time.Second, stored: 4},
		{name: "not the decider", rate: 2, boots: 30, told: 10 * time.Second, stored: 1},
		{name: "lease lapsed", rate: 2, decide: true, lapse: true, boots: 30, told: 10 * time.Second, stored: 1},
		{name: "no connect limit", decide: true, boots: 30, told: 10 * time.Second, stored: 1},
		{name: "store refusing the stretch", rate: 2, decide: true, boots: 30,
			store: func(s heartbeatstore.Store) heartbeatstore.Store { return stretchUnwritable{s} }, told: 10 * time.Second, stored: 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			clock := livenesstest.NewClock(t0)
			open := sqliteOpener(t)
			var store heartbeatstore.Store = open()
			if tt.store != nil {
				store = tt.store(store)
			}
			c := newCore(t, store, clock, "a", withMaxConnectRate(tt.rate))
			if tt.decide {
				mustDecide(t, c)
			}
			if tt.others > 0 {
				b := newCore(t, open(), clock, "b", withMaxConnectRate(tt.rate))
				if _, err := b.RecordBoots(ctx, nodeBoots("b", tt.others)); err != nil {
					t.Fatal(err)
				}
				mustDecide(t, b) // stores its count
				mustDecide(t, c) // adds it up
			}
			if tt.lapse {
				clock.Advance(DefaultLeaseTTL)
			}
			res, err := c.RecordBoots(ctx, nodeBoots("a", tt.boots))
			if err != nil || res.Recorded != tt.boots || res.Interval != tt.told {
				t.Fatalf("RecordBoots: %+v, %v; want %d recorded and told %v", res, err, tt.boots, tt.told)
			}
			// What another replica reads: the stretch stored, or none.
			other := newCore(t, open(), clock, "reader")
			if err := other.RefreshSettings(ctx); err != nil {
				t.Fatal(err)
			}
			if f := other.Settings().LoadFactor; f != tt.stored {
				t.Errorf("load factor stored: %v, want %v", f, tt.stored)
			}
		})
	}
}

// nodeBoots returns n boots of nodes named prefix-i.
func nodeBoots(prefix string, n int) []Boot {
	boots := make([]Boot, n)
	for i := range boots {
		boots[i] = Boot{NodeID: fmt.Sprintf("%s-%02d", prefix, i), BootID: "boot", Sequence: 1, Status: heartbeatstore.StatusUp}
	}
	return boots
}

// bootsUnwritable is a store that refuses boot counts while told to.
type bootsUnwritable struct {
	heartbeatstore.Store
	failing bool
}

func (b *bootsUnwritable) PutBoots(ctx context.Context, replica string, boots int, at time.Time) error {
	if b.failing {
		return errStoreDown
	}
	return b.Store.PutBoots(ctx, replica, boots, at)
}

// TestBootSharingStoreTrouble: a replica whose boot count the store
// refuses still decides (its Decide succeeds), and the decider stretches
// for its boots at the first period the store takes the count again.
func TestBootSharingStoreTrouble(t *testing.T) {
	forBackends(t, func(t *testing.T, open func() heartbeatstore.Store) {
		ctx := context.Background()
		clock := livenesstest.NewClock(t0)
		a := newCore(t, open(), clock, "a", withMaxConnectRate(2))
		bs := &bootsUnwritable{Store: open()}
		b := newCore(t, bs, clock, "b", withMaxConnectRate(2))
		for range 200 {
			mustDecide(t, a)
			mustDecide(t, b)
			clock.Advance(time.Second)
		}
		boots := make([]Boot, 30)
		for i := range boots {
			boots[i] = Boot{NodeID: fmt.Sprintf("n%02d", i), BootID: "boot", Sequence: 1, Status: heartbeatstore.StatusUp}
		}
		if _, err := b.RecordBoots(ctx, boots); err != nil {
			t.Fatal(err)
		}
		bs.failing = true
		mustDecide(t, b)
		mustDecide(t, a)
		if f := a.Settings().LoadFactor; f != 1 {
			t.Fatalf("load factor while b's count is refused: %v, want 1", f)
		}
		clock.Advance(time.Second)
		bs.failing = false
		mustDecide(t, b)
		mustDecide(t, a)
		if f := a.Settings().LoadFactor; f != 4 {
			t.Fatalf("load factor once b's count is stored: %v, want 4", f)
		}
	})
}

func TestBootStretch(t *testing.T) {
	base := Timings{Interval: 10 * time.Second, Grace: 40 * time.Second}
	for _, tt := range []struct {
		name   string
		booted int
		rate   float64
		limit  float64
		want   float64
	}{
		// The streams of the boots spread over the second half of the
		// 10 s interval: 1,000 of them make 200 a second.
		{"none", 0, 200, 30, 1},
		{"at the limit", 1000, 200, 30, 1},
		{"just over doubles", 1001, 200, 30, 2},
		{"the limit halved doubles", 1000, 100, 30, 2},
		{"10,000 boots", 10_000, 200, 30, 16},
		{"10,000 boots at the default rate (README)", 10_000, DefaultMaxConnectRate, 30, 30},
		{"capped", 1_000_000, 200, 30, 30},
		{"capped below a power of two", 5000, 200, 2.5, 2.5},
	} {
		if got := bootStretch(tt.booted, base, tt.rate, tt.limit); got != tt.want {
			t.Errorf("%s: bootStretch = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// TestBootCount: boots count for a minute after they were recorded.
func TestBootCount(t *testing.T) {
	var b bootCount
	b.add(t0, 5)
	b.add(t0.Add(500*time.Millisecond), 2)
	b.add(t0.Add(30*time.Second), 10)
	b.add(t0.Add(time.Second), 0)
	for _, tt := range []struct {
		at   time.Duration
		want int
	}{
		{0, 7},
		{30 * time.Second, 17},
		{59 * time.Second, 17},
		{60 * time.Second, 10},
		{89 * time.Second, 10},
		{90 * time.Second, 0},
	} {
		if got := b.total(t0.Add(tt.at)); got != tt.want {
			t.Errorf("total at +%v = %d, want %d", tt.at, got, tt.want)
		}
	}
	// A bucket reused a minute later counts afresh.
	b.add(t0.Add(60*time.Second), 3)
	if got := b.total(t0.Add(60 * time.Second)); got != 13 {
		t.Errorf("total after reusing a bucket = %d, want 13", got)
	}
}

// TestNewRejectsBadRates: a NaN limit would be stored as the load factor,
// a negative one would turn the limit off unannounced.
func TestNewRejectsBadRates(t *testing.T) {
	for _, tt := range []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"negative connect rate", withMaxConnectRate(-1), "liveness: MaxConnectRate must be a finite number of at least 0 (0 turns the limit off), not -1"},
		{"NaN connect rate", withMaxConnectRate(math.NaN()), "liveness: MaxConnectRate must be a finite number of at least 0 (0 turns the limit off), not NaN"},
		{"infinite beat rate", withMaxBeatRate(math.Inf(1)), "liveness: MaxBeatRate must be a finite number of at least 0 (0 turns the limit off), not +Inf"},
	} {
		cfg := Config{Store: newSQLiteStore(t)}
		tt.mod(&cfg)
		if _, err := New(cfg); err == nil || err.Error() != tt.want {
			t.Errorf("%s: New = %v, want %q", tt.name, err, tt.want)
		}
	}
}
