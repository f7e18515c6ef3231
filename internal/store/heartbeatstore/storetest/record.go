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

// testRecordReports: what a node reports is stored with the beat and read
// back with its liveness; a node event is recorded once per agent instance
// and sequence, however often the agent sends it, and a new instance
// counts afresh.
func testRecordReports(t *testing.T, s heartbeatstore.Store) {
	ev := func(instance string, seq int64, kind string) heartbeatstore.Event {
		return heartbeatstore.Event{Time: at(time.Second), NodeID: "n", Type: heartbeatstore.EventNode, Kind: kind, Message: "m",
			Severity: "critical", EventTime: at(500 * time.Millisecond), Instance: instance, Seq: seq}
	}
	o := obs("n", at(0), 1)
	o.Reported = &heartbeatstore.Reported{Values: map[string]string{"maintenance": "true"}, At: at(0)}
	record(t, s, o, ev("a", 1, "mce"), ev("a", 2, "vm.state"))
	got := mustGet(t, s, "n")
	if got.Reported == nil || got.Reported.Values["maintenance"] != "true" || !got.Reported.At.Equal(at(0)) || got.BundleApplied != nil {
		t.Fatalf("after the first report: %+v %+v", got.Reported, got.BundleApplied)
	}

	// The agent did not hear the acknowledgement and sends both again, on a
	// new beat, with one more and what it applied.
	o2 := obs("n", at(time.Second), 2)
	o2.BundleApplied = &heartbeatstore.BundleApplied{Version: 3, At: at(time.Second), Hooks: []heartbeatstore.HookResult{
		{Command: "/bin/false", ExitCode: 1, Error: "exit status 1", Duration: time.Millisecond}}}
	diff(t, "events of the resent beat", []string{"n node_event disk.failed"},
		record(t, s, o2, ev("a", 1, "mce"), ev("a", 2, "vm.state"), ev("a", 3, "disk.failed")))
	got = mustGet(t, s, "n")
	if got.Reported == nil || got.Reported.Values["maintenance"] != "true" {
		t.Errorf("a beat without a report changed the stored one: %+v", got.Reported)
	}
	if a := got.BundleApplied; a == nil || a.Version != 3 || len(a.Hooks) != 1 || a.Hooks[0].ExitCode != 1 || a.Hooks[0].Error == "" {
		t.Errorf("applied bundle = %+v", a)
	}

	// A restarted agent numbers its events from 1 again.
	o3 := obs("n", at(2*time.Second), 3)
	o3.Reported = &heartbeatstore.Reported{Values: map[string]string{}, At: at(2 * time.Second)}
	diff(t, "events of a new instance", []string{"n node_event mce"}, record(t, s, o3, ev("b", 1, "mce")))
	if got := mustGet(t, s, "n"); got.Reported == nil || len(got.Reported.Values) != 0 {
		t.Errorf("an emptied report: %+v", got.Reported)
	}
	evs := allEvents(t, s)
	diff(t, "log", []string{"n healthy healthy<-", "n node_event mce", "n node_event vm.state", "n node_event disk.failed", "n node_event mce"}, summary(evs))
	if e := evs[1]; e.Severity != "critical" || !e.EventTime.Equal(at(500*time.Millisecond)) {
		t.Errorf("stored node event = %+v", e)
	}
	list, err := s.ListLiveness(t.Context(), heartbeatstore.LivenessFilter{})
	if err != nil || len(list) != 1 || list[0].BundleApplied == nil || list[0].BundleApplied.Version != 3 {
		t.Errorf("ListLiveness = %+v, %v", list, err)
	}
}
