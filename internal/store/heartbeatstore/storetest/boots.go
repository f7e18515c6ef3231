package storetest

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/store/heartbeatstore"
)

func recordBoots(t *testing.T, s heartbeatstore.Store, obs ...heartbeatstore.Observation) heartbeatstore.BootsResult {
	t.Helper()
	r, err := s.RecordBoots(t.Context(), obs)
	if err != nil {
		t.Fatalf("RecordBoots: %v", err)
	}
	return r
}

// testRecordBoots: boots served by registration are recorded as beats of
// many nodes at once, each transition once, never over a newer beat.
func testRecordBoots(t *testing.T, s heartbeatstore.Store) {
	// "old" was unreachable before the power cut, "same" is healthy with
	// the boot it reports again, "fresh" never beat, "newer" beat after
	// the boot was served.
	record(t, s, obs("old", at(0), 7))
	leaseAndMark(t, s, heartbeatstore.Silence{Now: at(time.Minute), UnreachableBefore: at(30 * time.Second)})
	record(t, s, obs("same", at(time.Minute), 3))
	newer := obs("newer", at(3*time.Minute), 9)
	newer.BootID = "boot-2"
	record(t, s, newer)
	before := len(allEvents(t, s))

	old := obs("old", at(2*time.Minute), 1)
	old.BootID, old.Status = "boot-2", heartbeatstore.StatusDegraded
	same := obs("same", at(2*time.Minute), 4)
	stale := obs("newer", at(2*time.Minute), 1) // served before its beat
	stale.BootID = "boot-2"
	fresh := obs("fresh", at(2*time.Minute), 1)
	got := recordBoots(t, s, same, fresh, stale, old)
	diff(t, "result", heartbeatstore.BootsResult{Recorded: 3, Skipped: 1, Events: 4}, got)
	diff(t, "events", []string{
		"fresh healthy healthy<-",
		"old healthy healthy<-unreachable", "old rebooted", "old status_changed",
	}, summary(allEvents(t, s)[before:]))
	for _, o := range []heartbeatstore.Observation{old, same, fresh} {
		l := mustGet(t, s, o.NodeID)
		if l.State != heartbeatstore.StateHealthy || l.BootID != o.BootID || l.Sequence != o.Sequence || l.Status != o.Status ||
			!l.LastSeen.Equal(stored(o.LastSeen)) || l.Uptime != o.Uptime.Truncate(time.Microsecond) {
			t.Errorf("%s after RecordBoots: %+v, want %+v", o.NodeID, l, o)
		}
	}
	if l := mustGet(t, s, "old"); !l.StateSince.Equal(stored(at(2 * time.Minute))) {
		t.Errorf("old's state_since %v, want the boot's time", l.StateSince)
	}
	if l := mustGet(t, s, "same"); !l.StateSince.Equal(stored(at(time.Minute))) {
		t.Errorf("same's state_since %v moved, though it stayed healthy", l.StateSince)
	}
	if l := mustGet(t, s, "newer"); l.Sequence != 9 || !l.LastSeen.Equal(stored(at(3*time.Minute))) {
		t.Errorf("an older boot overwrote a newer beat: %+v", l)
	}

	// Retried, nothing changes; the node's first beat on its stream goes on
	// with the next sequence of the same boot and raises nothing either.
	after := len(allEvents(t, s))
	diff(t, "retry", heartbeatstore.BootsResult{Skipped: 4}, recordBoots(t, s, same, fresh, stale, old))
	next := old
	next.LastSeen, next.Sequence = at(2*time.Minute+5*time.Second), 2
	diff(t, "first beat after the boot", []string(nil), record(t, s, next))
	// A boot of the node's previous life, delivered late, is older than
	// the row and skipped.
	late := obs("old", at(90*time.Second), 8)
	diff(t, "late boot", heartbeatstore.BootsResult{Skipped: 1}, recordBoots(t, s, late))
	if evs := allEvents(t, s); len(evs) != after {
		t.Errorf("retries appended %v", summary(evs[after:]))
	}
	checkCursors(t, allEvents(t, s))
	diff(t, "empty call", heartbeatstore.BootsResult{}, recordBoots(t, s))
}

// testRecordBootsRacesBeats: a node's boot, recorded by one replica, and
// its first beats, recorded by others, raise the node's healthy event once,
// whichever comes first.
func testRecordBootsRacesBeats(t *testing.T, s heartbeatstore.Store) {
	const nodes = 40
	var wg sync.WaitGroup
	errs := make(chan error, 2*nodes)
	var boots []heartbeatstore.Observation
	for i := range nodes {
		id := fmt.Sprintf("n%02d", i)
		boots = append(boots, obs(id, at(0), 1))
		wg.Go(func() {
			if _, err := s.Record(t.Context(), obs(id, at(time.Millisecond), 2), nil); err != nil {
				errs <- err
			}
		})
	}
	for i := 0; i < nodes; i += 10 {
		wg.Go(func() {
			if _, err := s.RecordBoots(t.Context(), boots[i:i+10]); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	healthy := map[string]int{}
	for _, e := range allEvents(t, s) {
		if e.Type != heartbeatstore.EventHealthy {
			t.Errorf("unexpected event %+v", e)
		}
		healthy[e.NodeID]++
	}
	for _, b := range boots {
		if healthy[b.NodeID] != 1 {
			t.Errorf("%s: %d healthy events, want 1", b.NodeID, healthy[b.NodeID])
		}
		if l := mustGet(t, s, b.NodeID); l.Sequence != 2 {
			t.Errorf("%s: the boot overwrote the later beat: %+v", b.NodeID, l)
		}
	}
}
