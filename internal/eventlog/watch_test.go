package eventlog_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/eventlog"
	"github.com/berth-dev/berth/internal/liveness/livenesstest"
)

// watch is a Watch running in the background.
type watch struct {
	events chan eventlog.Event
	done   chan error
	cancel context.CancelFunc
}

func startWatch(t *testing.T, fl *eventlog.Follower, r eventlog.WatchRequest) *watch {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w := &watch{events: make(chan eventlog.Event, 100_000), done: make(chan error, 1), cancel: cancel}
	go func() {
		w.done <- fl.Watch(ctx, r, func(e eventlog.Event) error {
			w.events <- e
			return nil
		})
	}()
	t.Cleanup(w.stop)
	return w
}

func (w *watch) stop() {
	w.cancel()
	err := <-w.done
	w.done <- err // for a second stop
}

// next waits for n events; the deadline only bounds a failing test.
func (w *watch) next(t *testing.T, n int) []eventlog.Event {
	t.Helper()
	var out []eventlog.Event
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

// ended waits for the watch to end and returns its error.
func (w *watch) ended(t *testing.T) error {
	t.Helper()
	select {
	case err := <-w.done:
		w.done <- err
		return err
	case <-time.After(time.Minute):
		t.Fatal("watch did not end")
		return nil
	}
}

// follower returns a follower on l whose polls wait for clock.
func follower(t *testing.T, l eventlog.Source, clock *livenesstest.Clock, edit func(*eventlog.FollowerConfig)) *eventlog.Follower {
	t.Helper()
	c := eventlog.FollowerConfig{Source: l, After: clock.After}
	if edit != nil {
		edit(&c)
	}
	fl, err := eventlog.NewFollower(c)
	if err != nil {
		t.Fatal(err)
	}
	return fl
}

func TestNewFollower(t *testing.T) {
	if _, err := eventlog.NewFollower(eventlog.FollowerConfig{}); err == nil {
		t.Error("NewFollower without a source succeeded")
	}
}

// TestWatchReplayAndFollow replays and then follows. The clock never moves,
// so live events arrive through the append notification alone.
func TestWatchReplayAndFollow(t *testing.T) {
	backends(t, func(t *testing.T, f *fixture) {
		fl := follower(t, f.log, livenesstest.NewClock(t0), nil)
		f.append(t, numbered("n1", 0, 3)...)
		c := cursors(readAll(t, f.log))

		w := startWatch(t, fl, eventlog.WatchRequest{After: c[0]})
		diff(t, "replay", []string{"e1", "e2"}, types(w.next(t, 2)))
		f.append(t, ev("n1", "live", at(time.Minute)))
		diff(t, "live", []string{"live"}, types(w.next(t, 1)))

		diff(t, "from 0", []string{"e0", "e1", "e2", "live"}, types(startWatch(t, fl, eventlog.WatchRequest{}).next(t, 4)))

		// Filters apply to replay and to live events alike.
		f.append(t, ev("n2", "m1", at(time.Minute)))
		filtered := startWatch(t, fl, eventlog.WatchRequest{NodeIDs: []string{"n2"}, Types: []string{"m1", "m2"}})
		f.append(t, ev("n1", "m2", at(time.Minute)), ev("n2", "other", at(time.Minute)))
		f.append(t, ev("n2", "m2", at(time.Minute)))
		got := filtered.next(t, 2)
		diff(t, "filtered", []string{"m1", "m2"}, types(got))
		for _, e := range got {
			if e.NodeID != "n2" {
				t.Errorf("filtered watch sent an event of %s", e.NodeID)
			}
		}
	})
}

func TestWatchFromNow(t *testing.T) {
	backends(t, func(t *testing.T, f *fixture) {
		clock := livenesstest.NewClock(t0)
		fl := follower(t, f.log, clock, nil)
		f.append(t, ev("n1", "before", t0))
		w := startWatch(t, fl, eventlog.WatchRequest{FromNow: true})
		clock.BlockUntil(1) // the watch has read the log and waits
		f.append(t, ev("n1", "after", t0))
		diff(t, "from now", []string{"after"}, types(w.next(t, 1)))
	})
}

// TestWatchPollsOtherProcesses follows events appended through another
// handle (another replica), whose appends do not notify this one: they
// arrive with the next poll.
func TestWatchPollsOtherProcesses(t *testing.T) {
	backends(t, func(t *testing.T, f *fixture) {
		other := f.replica(t)
		clock := livenesstest.NewClock(t0)
		fl := follower(t, f.log, clock, nil)
		w := startWatch(t, fl, eventlog.WatchRequest{})
		for i := range 3 {
			clock.BlockUntil(1)
			other.append(t, ev("n1", fmt.Sprintf("r%d", i), t0))
			clock.Advance(eventlog.DefaultPollPeriod)
			diff(t, "polled", []string{fmt.Sprintf("r%d", i)}, types(w.next(t, 1)))
		}
	})
}

// TestWatchPages replays a log longer than a page.
func TestWatchPages(t *testing.T) {
	backends(t, func(t *testing.T, f *fixture) {
		fl := follower(t, f.log, livenesstest.NewClock(t0), func(c *eventlog.FollowerConfig) { c.PageSize = 7 })
		f.append(t, numbered("n1", 0, 50)...)
		f.append(t, numbered("n2", 0, 50)...)
		got := startWatch(t, fl, eventlog.WatchRequest{NodeIDs: []string{"n2"}}).next(t, 50)
		checkIncreasing(t, "paged watch", got)
		diff(t, "types", types(numbered("n2", 0, 50)), types(got))
	})
}

func TestWatchCursorErrors(t *testing.T) {
	backends(t, func(t *testing.T, f *fixture) {
		clock := livenesstest.NewClock(t0)
		fl := follower(t, f.log, clock, nil)
		f.append(t, numbered("n1", 0, 6)...)
		c := cursors(readAll(t, f.log))
		// e0..e2 go.
		if n, err := f.log.DeleteBefore(t.Context(), at(3*time.Second)); err != nil || n != 3 {
			t.Fatalf("DeleteBefore = %d, %v", n, err)
		}
		var ce *eventlog.CursorError

		err := fl.Watch(t.Context(), eventlog.WatchRequest{After: c[1]}, func(eventlog.Event) error { return nil })
		if !errors.As(err, &ce) || ce.Ahead || ce.Cursor != c[1] || ce.Oldest != c[3] || ce.DeletedThrough != c[2] {
			t.Fatalf("watch after a deleted cursor: %v (%+v)", err, ce)
		}
		if want := fmt.Sprintf("cursor %d is older than the oldest kept event %d", c[1], c[3]); err.Error() != want {
			t.Errorf("message %q, want %q", err, want)
		}
		err = fl.Watch(t.Context(), eventlog.WatchRequest{After: c[5] + 1}, func(eventlog.Event) error { return nil })
		if !errors.As(err, &ce) || !ce.Ahead || ce.Newest != c[5] {
			t.Fatalf("watch after a cursor ahead of the log: %v", err)
		}

		// The watermark itself is a valid cursor, and 0 starts there.
		diff(t, "after the watermark", []string{"e3", "e4", "e5"}, types(startWatch(t, fl, eventlog.WatchRequest{After: c[2]}).next(t, 3)))
		diff(t, "from 0", []string{"e3", "e4", "e5"}, types(startWatch(t, fl, eventlog.WatchRequest{}).next(t, 3)))

		// A watcher that falls behind retention learns it on its next read.
		slow := follower(t, f.log, clock, func(c *eventlog.FollowerConfig) { c.PageSize = 1 })
		var sent []string
		err = slow.Watch(t.Context(), eventlog.WatchRequest{After: c[2]}, func(e eventlog.Event) error {
			sent = append(sent, e.Type)
			// Retention runs while the first event is being sent.
			_, err := f.log.DeleteBefore(context.Background(), at(5*time.Second))
			return err
		})
		if !errors.As(err, &ce) || ce.Cursor != c[3] || ce.Oldest != c[5] {
			t.Fatalf("watch that fell behind: %v (%+v)", err, ce)
		}
		diff(t, "sent before falling behind", []string{"e3"}, sent)

		// With every event deleted the oldest cursor is the next to come.
		if _, err := f.log.DeleteBefore(t.Context(), at(time.Hour)); err != nil {
			t.Fatal(err)
		}
		err = fl.Watch(t.Context(), eventlog.WatchRequest{After: c[4]}, func(eventlog.Event) error { return nil })
		if !errors.As(err, &ce) || ce.Oldest != c[5]+1 {
			t.Fatalf("watch of an emptied log: %v (%+v)", err, ce)
		}
		err = fl.Watch(t.Context(), eventlog.WatchRequest{After: -1}, func(eventlog.Event) error { return nil })
		if err == nil || errors.As(err, &ce) {
			t.Errorf("negative cursor: %v", err)
		}
	})
}

func TestWatchEnds(t *testing.T) {
	f := newSQLite(t)
	done := make(chan struct{})
	fl := follower(t, f.log, livenesstest.NewClock(t0), func(c *eventlog.FollowerConfig) { c.Done = done })
	f.append(t, ev("n1", "a", t0), ev("n1", "b", t0))

	w := startWatch(t, fl, eventlog.WatchRequest{})
	w.next(t, 2)
	close(done)
	if err := w.ended(t); !errors.Is(err, eventlog.ErrClosed) {
		t.Errorf("watch after Done = %v, want ErrClosed", err)
	}

	stop := errors.New("stop")
	err := follower(t, f.log, livenesstest.NewClock(t0), nil).Watch(t.Context(), eventlog.WatchRequest{}, func(eventlog.Event) error { return stop })
	if !errors.Is(err, stop) {
		t.Errorf("watch whose send failed = %v, want the send error", err)
	}

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := follower(t, f.log, livenesstest.NewClock(t0), nil).Watch(ctx, eventlog.WatchRequest{}, func(eventlog.Event) error { return nil }); err == nil {
		t.Error("watch with a canceled context succeeded")
	}
}

// TestReconnect watches, hangs up every few events and watches again after
// the last cursor received: the pieces add up to the log, once each.
func TestReconnect(t *testing.T) {
	backends(t, func(t *testing.T, f *fixture) {
		fl := follower(t, f.log, livenesstest.NewClock(t0), func(c *eventlog.FollowerConfig) { c.PageSize = 4 })
		f.append(t, numbered("n1", 0, 30)...)
		got := reconnecting(t, fl, 30, 7, nil)
		diff(t, "reconnecting watch", readAll(t, f.log), got)
	})
}

// reconnecting collects n events, hanging up after every k and resuming
// after the last cursor it got; connected, if set, runs before each
// connection.
func reconnecting(t *testing.T, fl *eventlog.Follower, n, k int, connected func()) []eventlog.Event {
	t.Helper()
	errHangUp := errors.New("hang up")
	var (
		got   []eventlog.Event
		after int64
	)
	deadline := time.Now().Add(time.Minute)
	for len(got) < n {
		if time.Now().After(deadline) {
			t.Fatalf("got %d of %d events", len(got), n)
		}
		if connected != nil {
			connected()
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		var this int
		err := fl.Watch(ctx, eventlog.WatchRequest{After: after}, func(e eventlog.Event) error {
			got = append(got, e)
			after = e.Cursor
			if this++; this == k || len(got) == n {
				return errHangUp
			}
			return nil
		})
		cancel()
		if !errors.Is(err, errHangUp) {
			t.Fatalf("watch: %v", err)
		}
	}
	return got
}

// TestConcurrentAppendersAndFollowers appends from many transactions at
// once, through two handles (replicas), while one follower follows
// throughout and another hangs up and reconnects all the time. Each must
// see exactly the log: no event skipped, none twice, in cursor order. On
// PostgreSQL this is what the advisory lock is for: without it a follower
// would skip the cursors of transactions that commit late.
func TestConcurrentAppendersAndFollowers(t *testing.T) {
	backends(t, func(t *testing.T, f *fixture) {
		other := f.replica(t)
		const (
			appenders = 8
			txs       = 40
		)
		total := 0
		for i := range appenders * txs {
			total += 1 + i%3
		}
		// Real time: the appends through the other handle arrive by polling.
		fl, err := eventlog.NewFollower(eventlog.FollowerConfig{Source: f.log, PollPeriod: 5 * time.Millisecond, PageSize: 16})
		if err != nil {
			t.Fatal(err)
		}
		steady := startWatch(t, fl, eventlog.WatchRequest{})

		var wg sync.WaitGroup
		errs := make(chan error, appenders)
		for a := range appenders {
			via := f
			if a%2 == 1 {
				via = other
			}
			wg.Go(func() {
				for i := range txs {
					n := 1 + (a*txs+i)%3
					evs := make([]eventlog.Event, n)
					for j := range evs {
						evs[j] = ev(fmt.Sprintf("n%d", a), fmt.Sprintf("a%d-t%d-e%d", a, i, j), t0)
					}
					if err := via.appendTx(context.Background(), evs...); err != nil {
						errs <- err
						return
					}
					via.log.Notify()
					runtime.Gosched()
				}
			})
		}
		reconnected := reconnecting(t, fl, total, 13, nil)
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		followed := steady.next(t, total)
		all := readAll(t, f.log)
		if len(all) != total {
			t.Fatalf("log holds %d events, want %d", len(all), total)
		}
		diff(t, "steady follower", all, followed)
		diff(t, "reconnecting follower", all, reconnected)
		// Each appender's events are in its own order.
		last := map[string]int64{}
		for _, e := range all {
			if e.Cursor <= last[e.NodeID] {
				t.Fatalf("events of %s out of order", e.NodeID)
			}
			last[e.NodeID] = e.Cursor
		}
		select {
		case e := <-steady.events:
			t.Fatalf("steady follower sent an extra event %+v", e)
		default:
		}
	})
}

// TestPostgresCommitOrder shows the lock at work: while one transaction
// that appended is open, another appender waits, and a reader sees neither;
// cursors come out in commit order.
func TestPostgresCommitOrder(t *testing.T) {
	f := newPostgresFixture(t)
	ctx := t.Context()
	l := f.log.(*eventlog.SQLLog)
	tx1, err := f.db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx1.Rollback()
	if err := l.Append(ctx, tx1, ev("n1", "first", t0)); err != nil {
		t.Fatal(err)
	}
	second := make(chan error, 1)
	go func() {
		second <- f.db.Tx(ctx, func(tx *sql.Tx) error {
			return l.Append(ctx, tx, ev("n2", "second", t0))
		})
	}()
	// Wait until the second appender waits for the lock.
	deadline := time.Now().Add(time.Minute)
	for {
		var waiting int
		if err := f.db.QueryRowContext(ctx, `SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted`).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		if waiting == 1 {
			break
		}
		select {
		case err := <-second:
			t.Fatalf("second appender finished while the first was open: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("second appender never waited for the lock")
		}
		runtime.Gosched()
	}
	p, err := f.log.Read(ctx, eventlog.Query{})
	if err != nil {
		t.Fatal(err)
	}
	diff(t, "page while both are open", eventlog.Page{}, p)
	if err := tx1.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := <-second; err != nil {
		t.Fatal(err)
	}
	all := readAll(t, f.log)
	checkIncreasing(t, "log", all)
	diff(t, "commit order", []string{"first", "second"}, types(all))
}
