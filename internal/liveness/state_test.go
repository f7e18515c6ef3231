package liveness

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/liveness/livenesstest"
	"github.com/berth-dev/berth/internal/store/heartbeatstore"
)

// tick advances the clock one second at a time until it reaches t0+at,
// flushing and deciding every second, as Run would, and calling beat (if
// set) at each second first.
func tick(t *testing.T, clock *livenesstest.Clock, c *Core, at time.Duration, beat func(now time.Duration)) {
	t.Helper()
	for clock.Now().Before(t0.Add(at)) {
		clock.Advance(time.Second)
		if beat != nil {
			beat(clock.Now().Sub(t0))
		}
		mustFlush(t, c)
		mustDecide(t, c)
	}
}

func TestStateMachine(t *testing.T) {
	clock := livenesstest.NewClock(t0)
	store := newSQLiteStore(t)
	c := newCore(t, store, clock, "replica-a")
	mustDecide(t, c) // takes the lease at t0: nobody is declared silent before t0+40s

	n1 := newBeater(t, c, "n1", "boot-1")
	n2 := newBeater(t, c, "n2", "boot-1")
	n1.beat()
	n2.beat()
	mustFlush(t, c)
	// n1 beats every 10 s throughout; n2 stops after its beat at +30s.
	every10s := func(now time.Duration) {
		if now%(10*time.Second) == 0 {
			n1.beat()
			if now <= 30*time.Second {
				n2.beat()
			}
		}
	}
	tick(t, clock, c, 75*time.Second, every10s)
	want := []string{
		"+0s n1 healthy from new",
		"+0s n2 healthy from new",
		// Silent for more than two intervals (20 s) after +30s.
		"+51s n2 suspect from healthy",
		// Silent for more than the grace period (40 s).
		"+71s n2 unreachable from suspect",
	}
	diff(t, "events", want, timeline(logOf(t, store)))
	if got := stateOf(t, store, "n2"); got != heartbeatstore.StateUnreachable {
		t.Errorf("n2 is %s, want unreachable", got)
	}

	// A beat brings it back at once, with the next flush.
	n2.beat()
	tick(t, clock, c, 76*time.Second, nil)
	want = append(want, "+75s n2 healthy from unreachable")
	diff(t, "events", want, timeline(logOf(t, store)))

	// Status changes, the agent's events and a reboot.
	n1.status = heartbeatstore.StatusDegraded
	n1.beat(NodeEvent{Kind: "disk.failed", Message: "sda"})
	n1.status = heartbeatstore.StatusUp
	n1.beat()
	n2.s.Close()
	rebooted := newBeater(t, c, "n2", "boot-2")
	rebooted.seq = 100 // a new stream may start anywhere
	rebooted.beat()
	tick(t, clock, c, 77*time.Second, nil)
	want = append(want,
		"+76s n1 status_changed up->degraded",
		"+76s n1 node_event disk.failed: sda",
		"+76s n1 status_changed degraded->up",
		"+76s n2 rebooted boot-1->boot-2",
	)
	diff(t, "events", want, timeline(logOf(t, store)))

	l, err := store.GetLiveness(context.Background(), "n2")
	if err != nil {
		t.Fatal(err)
	}
	if l.BootID != "boot-2" || l.Sequence != 101 || l.State != heartbeatstore.StateHealthy || !l.StateSince.Equal(t0.Add(75*time.Second)) {
		t.Errorf("n2 liveness = %+v", l)
	}
	if s := c.Stats(); !s.Decider || s.Silenced != 2 || s.Sessions != 2 || s.Beats == 0 {
		t.Errorf("stats = %+v", s)
	}
}

// TestGraceAfterTakingOver: a decider declares nobody silent for a full
// grace period after taking the role, however old the stored last-seen
// times are.
func TestGraceAfterTakingOver(t *testing.T) {
	clock := livenesstest.NewClock(t0)
	store := newSQLiteStore(t)
	c := newCore(t, store, clock, "replica-a")
	n1 := newBeater(t, c, "n1", "b")
	n1.beat()
	mustFlush(t, c)
	clock.Advance(5 * time.Minute) // long silent, but the decider just started
	mustDecide(t, c)
	tick(t, clock, c, 5*time.Minute+39*time.Second, nil)
	diff(t, "events during the grace period", []string{"+0s n1 healthy from new"}, timeline(logOf(t, store)))
	tick(t, clock, c, 5*time.Minute+40*time.Second, nil)
	// Past it, straight to unreachable, without a suspect event first.
	diff(t, "events", []string{"+0s n1 healthy from new", "+340s n1 unreachable from healthy"}, timeline(logOf(t, store)))
}

// TestRestartWithoutFalseEvents restarts the heartbeat service: the old
// replica stops (flushing and giving up the lease), 30 s pass, a new one
// starts. Nodes that reconnect within the grace period raise no events;
// the one that does not becomes unreachable, once.
func TestRestartWithoutFalseEvents(t *testing.T) {
	clock := livenesstest.NewClock(t0)
	store := newSQLiteStore(t)
	old := newCore(t, store, clock, "old")
	mustDecide(t, old)
	nodes := []string{"n1", "n2", "n3"}
	beaters := map[string]*beater{}
	for _, n := range nodes {
		beaters[n] = newBeater(t, old, n, "b")
		beaters[n].beat()
	}
	tick(t, clock, old, 60*time.Second, func(now time.Duration) {
		if now%(10*time.Second) == 0 {
			for _, b := range beaters {
				b.beat()
			}
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- old.Run(ctx) }()
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if err := beaters["n1"].s.Err(); !errors.Is(err, ErrClosing) {
		t.Fatalf("stream after shutdown: %v, want ErrClosing", err)
	}

	clock.Advance(30 * time.Second) // the restart
	c := newCore(t, store, clock, "new")
	mustDecide(t, c)
	if !c.Stats().Decider {
		t.Fatal("new replica did not take the released lease at once")
	}
	// n1 reconnects at once, n2 just before the grace period ends, n3 never.
	var n1, n2 *beater
	tick(t, clock, c, 200*time.Second, func(now time.Duration) {
		switch {
		case now == 91*time.Second:
			n1 = newBeater(t, c, "n1", "b")
		case now == 129*time.Second:
			n2 = newBeater(t, c, "n2", "b")
		}
		for _, b := range []*beater{n1, n2} {
			if b != nil && now%(10*time.Second) == 9*time.Second {
				b.beat()
			}
		}
	})
	diff(t, "events", []string{
		"+0s n1 healthy from new", "+0s n2 healthy from new", "+0s n3 healthy from new",
		// The new decider took over at +90s and waited until +130s.
		"+130s n3 unreachable from healthy",
	}, timeline(logOf(t, store)))
}

// TestCrashedDeciderReplaced: a decider that stops without giving up the
// lease is replaced once the lease expires, and the new one waits a grace
// period too.
func TestCrashedDeciderReplaced(t *testing.T) {
	clock := livenesstest.NewClock(t0)
	store := newSQLiteStore(t)
	a := newCore(t, store, clock, "a")
	b := newCore(t, store, clock, "b")
	mustDecide(t, a)
	mustDecide(t, b)
	if !a.Stats().Decider || b.Stats().Decider {
		t.Fatalf("deciders: a %v, b %v", a.Stats().Decider, b.Stats().Decider)
	}
	nb := newBeater(t, b, "n1", "x")
	nb.beat()
	mustFlush(t, b)
	// a crashes; b keeps trying every second and gets the lease after the
	// TTL (10 s).
	var tookAt time.Duration
	for i := range 12 {
		clock.Advance(time.Second)
		mustDecide(t, b)
		if b.Stats().Decider && tookAt == 0 {
			tookAt = time.Duration(i+1) * time.Second
		}
	}
	if tookAt != 10*time.Second {
		t.Fatalf("b took over after %v, want 10s", tookAt)
	}
	// n1 stays silent: unreachable 40 s after the takeover, not 40 s after
	// its last beat.
	tick(t, clock, b, 49*time.Second, nil)
	diff(t, "events", []string{"+0s n1 healthy from new"}, timeline(logOf(t, store)))
	tick(t, clock, b, 50*time.Second, nil)
	diff(t, "events", []string{"+0s n1 healthy from new", "+50s n1 unreachable from healthy"}, timeline(logOf(t, store)))
	// The old decider, back from a pause, is fenced off.
	mustDecide(t, a)
	if a.Stats().Decider {
		t.Error("crashed decider still thinks it holds the lease")
	}
}

// TestStoreOutage: after failing to reach the store, the decider waits two
// flush periods, so that every replica writes the beats it held meanwhile
// before anyone is judged by stale times. Here the store is away for 24 s,
// less than the lease (30 s), and the node streams to another replica that
// flushes only after the decider's first look.
func TestStoreOutage(t *testing.T) {
	clock := livenesstest.NewClock(t0)
	store := &flakyStore{Store: newSQLiteStore(t)}
	ttl := func(c *Config) { c.LeaseTTL = 30 * time.Second }
	decider := newCore(t, store, clock, "decider", ttl)
	other := newCore(t, store, clock, "other", ttl)
	mustDecide(t, decider)
	n := newBeater(t, other, "n1", "b")
	step := func(now time.Duration) error {
		if now%(10*time.Second) == 0 {
			n.beat()
		}
		// The decider looks before the other replica flushes.
		err := decider.Decide(context.Background())
		if ferr := other.Flush(context.Background()); err == nil {
			err = ferr
		}
		return err
	}
	for clock.Now().Before(t0.Add(120 * time.Second)) {
		clock.Advance(time.Second)
		now := clock.Now().Sub(t0)
		down := now > 60*time.Second && now <= 84*time.Second
		store.fail(down)
		if err := step(now); (err != nil) != down {
			t.Fatalf("+%v: err = %v, store down: %v", now, err, down)
		}
	}
	diff(t, "events", []string{"+10s n1 healthy from new"}, timeline(logOf(t, store)))
	// Every flush failed from the first beat held (+70s) to the end (+84s).
	if s := other.Stats(); s.FlushErrors != 15 {
		t.Errorf("stats = %+v", s)
	}
}

// flakyStore fails every call while told to.
type flakyStore struct {
	heartbeatstore.Store
	failing bool
}

var errStoreDown = errors.New("store down")

func (f *flakyStore) fail(on bool) { f.failing = on }

func (f *flakyStore) Flush(ctx context.Context, o []heartbeatstore.Observation, e []heartbeatstore.Event) (heartbeatstore.FlushResult, error) {
	if f.failing {
		return heartbeatstore.FlushResult{}, errStoreDown
	}
	return f.Store.Flush(ctx, o, e)
}

func (f *flakyStore) Record(ctx context.Context, o heartbeatstore.Observation, e []heartbeatstore.Event) ([]heartbeatstore.Event, error) {
	if f.failing {
		return nil, errStoreDown
	}
	return f.Store.Record(ctx, o, e)
}

func (f *flakyStore) AcquireLease(ctx context.Context, h string, now, until time.Time) (bool, time.Time, error) {
	if f.failing {
		return false, time.Time{}, errStoreDown
	}
	return f.Store.AcquireLease(ctx, h, now, until)
}
