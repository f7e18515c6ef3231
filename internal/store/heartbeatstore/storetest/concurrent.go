package storetest

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/store/heartbeatstore"
)

// testConcurrentAppends appends events from several writers at once (as
// several replicas flush) while a reader follows the log by cursor, as an
// engine does. The reader must end up with exactly the log: no event
// skipped because it committed after a later cursor, none twice.
func testConcurrentAppends(t *testing.T, s heartbeatstore.Store) {
	const (
		writers = 6
		flushes = 25
		perEach = 4
	)
	ctx := t.Context()
	var (
		wg      sync.WaitGroup
		done    atomic.Bool
		errs    = make(chan error, writers)
		seen    []heartbeatstore.Event
		readErr error
	)
	for w := range writers {
		wg.Go(func() {
			for f := range flushes {
				var evs []heartbeatstore.Event
				for i := range perEach {
					evs = append(evs, heartbeatstore.Event{Time: at(time.Duration(f) * time.Second), NodeID: fmt.Sprintf("w%d", w),
						Type: heartbeatstore.EventNode, Kind: fmt.Sprintf("%d.%d", f, i)})
				}
				// Each writer has a node of its own: flushes that shared a row
				// would queue on its lock and hide the race this test is for.
				o := []heartbeatstore.Observation{obs(fmt.Sprintf("w%d", w), at(time.Duration(f)*time.Second), 1)}
				if _, err := s.Flush(ctx, o, evs); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	reader := make(chan struct{})
	go func() {
		defer close(reader)
		var after int64
		for {
			finished := done.Load()
			p, err := readEvents(ctx, s, eventQuery{After: after, Limit: 7})
			if err != nil {
				readErr = err
				return
			}
			seen = append(seen, p.Events...)
			after = p.Next
			if finished && len(p.Events) < 7 {
				return
			}
		}
	}()
	wg.Wait()
	done.Store(true)
	<-reader
	close(errs)
	for err := range errs {
		t.Fatalf("Flush: %v", err)
	}
	if readErr != nil {
		t.Fatalf("ReadEvents: %v", readErr)
	}
	all := allEvents(t, s)
	// Every writer's events, and a healthy event for each node.
	if want := writers*flushes*perEach + writers; len(all) != want {
		t.Fatalf("%d events in the log, want %d", len(all), want)
	}
	checkCursors(t, seen)
	got := make([]int64, len(seen))
	for i, e := range seen {
		got[i] = e.Cursor
	}
	want := make([]int64, len(all))
	for i, e := range all {
		want[i] = e.Cursor
	}
	diff(t, "cursors the follower saw", want, got)
}
