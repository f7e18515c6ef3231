package storetest

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/store/heartbeatstore"
)

func record(t *testing.T, s heartbeatstore.Store, o heartbeatstore.Observation, given ...heartbeatstore.Event) []string {
	t.Helper()
	evs, err := s.Record(t.Context(), o, given)
	if err != nil {
		t.Fatalf("Record(%s #%d): %v", o.NodeID, o.Sequence, err)
	}
	return summary(evs)
}

// testRecord: a beat that changes what the store knows is written with its
// events, each transition once, whatever retries and flushes follow.
func testRecord(t *testing.T, s heartbeatstore.Store) {
	var want []string
	step := func(what string, got, expect []string) {
		t.Helper()
		diff(t, what, expect, got)
		want = append(want, expect...)
	}
	disk := heartbeatstore.Event{Time: at(2 * time.Second), NodeID: "n", Type: heartbeatstore.EventNode, Kind: "disk.failed", Message: "sda"}
	first := obs("n", at(0), 1)
	step("first beat", record(t, s, first), []string{"n healthy healthy<-"})
	step("the same beat retried", record(t, s, first, disk), nil)
	step("a later beat that changes nothing", record(t, s, obs("n", at(time.Second), 2)), nil)

	rebooted := obs("n", at(2*time.Second), 1)
	rebooted.BootID, rebooted.Status = "boot-2", heartbeatstore.StatusDegraded
	step("reboot with a new status and an event", record(t, s, rebooted, disk),
		[]string{"n rebooted", "n status_changed", "n node_event disk.failed"})
	step("the reboot retried", record(t, s, rebooted, disk), nil)
	// A late flush of an older beat does not undo what Record wrote.
	mustFlush(t, s, []heartbeatstore.Observation{obs("n", at(time.Second), 2)}, nil)
	got := mustGet(t, s, "n")
	if got.BootID != "boot-2" || got.Status != heartbeatstore.StatusDegraded || got.Sequence != 1 {
		t.Fatalf("after a late flush: %+v", got)
	}

	leaseAndMark(t, s, heartbeatstore.Silence{Now: at(time.Minute), UnreachableBefore: at(30 * time.Second)})
	want = append(want, "n unreachable unreachable<-healthy")
	back := rebooted
	back.LastSeen, back.Sequence = at(61*time.Second), 2
	step("back from unreachable", record(t, s, back), []string{"n healthy healthy<-unreachable"})
	got = mustGet(t, s, "n")
	if got.State != heartbeatstore.StateHealthy || !got.StateSince.Equal(stored(at(61*time.Second))) || got.Sequence != 2 {
		t.Errorf("after recovery: %+v", got)
	}
	evs := allEvents(t, s)
	checkCursors(t, evs)
	diff(t, "log", want, summary(evs))
	diff(t, "reboot event", heartbeatstore.Event{Cursor: evs[1].Cursor, Time: stored(at(2 * time.Second)), NodeID: "n",
		Type: heartbeatstore.EventRebooted, BootID: "boot-2", PrevBootID: "boot-n", Status: heartbeatstore.StatusDegraded}, evs[1])
	diff(t, "node event", heartbeatstore.Event{Cursor: evs[3].Cursor, Time: stored(at(2 * time.Second)), NodeID: "n",
		Type: heartbeatstore.EventNode, Kind: "disk.failed", Message: "sda"}, evs[3])
}

// testRecordConcurrent: replicas that receive beats of one reboot at once
// (the node reconnected while a beat was in flight) raise it once.
func testRecordConcurrent(t *testing.T, s heartbeatstore.Store) {
	record(t, s, obs("n", at(0), 1))
	const replicas = 8
	var wg sync.WaitGroup
	errs := make(chan error, replicas)
	for i := range replicas {
		wg.Go(func() {
			o := obs("n", at(time.Second+time.Duration(i)*time.Millisecond), int64(1+i%2))
			o.BootID = "boot-2"
			if _, err := s.Record(t.Context(), o, nil); err != nil {
				errs <- fmt.Errorf("replica %d: %w", i, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	diff(t, "log", []string{"n healthy healthy<-", "n rebooted"}, summary(allEvents(t, s)))
}
