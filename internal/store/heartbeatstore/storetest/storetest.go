// Package storetest is the conformance suite every heartbeatstore.Store
// implementation must pass. Run it from each backend's tests:
//
//	storetest.Run(t, func(t *testing.T) heartbeatstore.Store { ... })
package storetest

import (
	"errors"
	"fmt"
	"maps"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/berth-dev/berth/internal/store/heartbeatstore"
)

// Run runs every test against stores made by newStore. Each call to newStore
// must return a store on a fresh, empty database, closed when t ends.
func Run(t *testing.T, newStore func(t *testing.T) heartbeatstore.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s heartbeatstore.Store)
	}{
		{"FlushCreatesAndUpdates", testFlushCreatesAndUpdates},
		{"FlushIgnoresOlderObservations", testFlushIgnoresOlder},
		{"FlushKeepsNewestDuplicate", testFlushDuplicates},
		{"FlushAppendsEventsInOrder", testFlushEventsInOrder},
		{"FlushLargeBatch", testFlushLargeBatch},
		{"ListLiveness", testListLiveness},
		{"Lease", testLease},
		{"MarkSilent", testMarkSilent},
		{"MarkSilentFencedOff", testMarkSilentFenced},
		{"BackToHealthy", testBackToHealthy},
		{"ReadEventsPagesAndFilters", testReadEvents},
		{"Retention", testRetention},
		{"Settings", testSettings},
		{"StretchKeepsBaseSettings", testStretch},
		{"CountLive", testCountLive},
		{"ReplicaBoots", testReplicaBoots},
		{"ConcurrentAppendsFollowedByCursor", testConcurrentAppends},
		{"RecordRaisesEachTransitionOnce", testRecord},
		{"RecordConcurrentReplicas", testRecordConcurrent},
		{"RecordReports", testRecordReports},
		{"RecordBoots", testRecordBoots},
		{"RecordBootsRacesBeats", testRecordBootsRacesBeats},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, newStore(t)) })
	}
}

// t0 has nanoseconds and a non-UTC zone on purpose: stores must return the
// same instant in UTC, truncated to microseconds.
var t0 = time.Date(2026, 11, 21, 10, 0, 0, 123456789, time.FixedZone("CET", 3600))

func at(d time.Duration) time.Time { return t0.Add(d) }

func stored(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

func obs(node string, seen time.Time, seq int64) heartbeatstore.Observation {
	return heartbeatstore.Observation{
		NodeID: node, LastSeen: seen, Sequence: seq, BootID: "boot-" + node,
		Status: heartbeatstore.StatusUp, Uptime: 90*time.Second + 1500*time.Nanosecond,
	}
}

func mustFlush(t *testing.T, s heartbeatstore.Store, o []heartbeatstore.Observation, e []heartbeatstore.Event) heartbeatstore.FlushResult {
	t.Helper()
	r, err := s.Flush(t.Context(), o, e)
	if err != nil {
		t.Fatalf("Flush: %v", err)
	}
	return r
}

func mustGet(t *testing.T, s heartbeatstore.Store, node string) heartbeatstore.Liveness {
	t.Helper()
	l, err := s.GetLiveness(t.Context(), node)
	if err != nil {
		t.Fatalf("GetLiveness(%s): %v", node, err)
	}
	return l
}

// allEvents reads the whole log.
func allEvents(t *testing.T, s heartbeatstore.Store) []heartbeatstore.Event {
	t.Helper()
	var out []heartbeatstore.Event
	var after int64
	for {
		p, err := readEvents(t.Context(), s, eventQuery{After: after, Limit: 100})
		if err != nil {
			t.Fatalf("ReadEvents: %v", err)
		}
		out = append(out, p.Events...)
		if len(p.Events) < 100 {
			return out
		}
		after = p.Next
	}
}

// summary renders events without cursors and times, for comparisons.
func summary(evs []heartbeatstore.Event) []string {
	var out []string
	for _, e := range evs {
		s := fmt.Sprintf("%s %s", e.NodeID, e.Type)
		if e.State != "" || e.PrevState != "" {
			s += fmt.Sprintf(" %s<-%s", e.State, e.PrevState)
		}
		if e.Kind != "" {
			s += " " + e.Kind
		}
		out = append(out, s)
	}
	return out
}

func diff(t *testing.T, what string, want, got any) {
	t.Helper()
	if d := cmp.Diff(want, got, cmpopts.EquateEmpty()); d != "" {
		t.Errorf("%s mismatch (-want +got):\n%s", what, d)
	}
}

func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: err = %v, want %v", what, err, want)
	}
}

func checkCursors(t *testing.T, evs []heartbeatstore.Event) {
	t.Helper()
	for i := 1; i < len(evs); i++ {
		if evs[i].Cursor <= evs[i-1].Cursor {
			t.Fatalf("cursor %d follows %d", evs[i].Cursor, evs[i-1].Cursor)
		}
	}
}

func testFlushCreatesAndUpdates(t *testing.T, s heartbeatstore.Store) {
	r := mustFlush(t, s, []heartbeatstore.Observation{obs("n2", at(0), 1), obs("n1", at(time.Second), 7)}, nil)
	diff(t, "first flush", heartbeatstore.FlushResult{Rows: 2, Events: 2}, r)
	want := heartbeatstore.Liveness{
		Observation: heartbeatstore.Observation{NodeID: "n1", LastSeen: stored(at(time.Second)), Sequence: 7, BootID: "boot-n1",
			Status: heartbeatstore.StatusUp, Uptime: 90*time.Second + time.Microsecond},
		State: heartbeatstore.StateHealthy, StateSince: stored(at(time.Second)),
	}
	got := mustGet(t, s, "n1")
	diff(t, "GetLiveness", want, got)
	if got.LastSeen.Location() != time.UTC || got.StateSince.Location() != time.UTC {
		t.Errorf("times not in UTC: %v %v", got.LastSeen, got.StateSince)
	}
	evs := allEvents(t, s)
	diff(t, "events", []string{"n1 healthy healthy<-", "n2 healthy healthy<-"}, summary(evs))
	diff(t, "first event", heartbeatstore.Event{
		Cursor: evs[0].Cursor, Time: stored(at(time.Second)), NodeID: "n1", Type: heartbeatstore.EventHealthy,
		State: heartbeatstore.StateHealthy, BootID: "boot-n1", Status: heartbeatstore.StatusUp,
	}, evs[0])

	// A later beat updates the row; a healthy node raises no event.
	later := obs("n1", at(10*time.Second), 8)
	later.Status, later.BootID = heartbeatstore.StatusDegraded, "boot-2"
	r = mustFlush(t, s, []heartbeatstore.Observation{later}, nil)
	diff(t, "second flush", heartbeatstore.FlushResult{Rows: 1}, r)
	want.LastSeen, want.Sequence, want.Status, want.BootID = stored(at(10*time.Second)), 8, heartbeatstore.StatusDegraded, "boot-2"
	diff(t, "GetLiveness after update", want, mustGet(t, s, "n1"))
	if n := len(allEvents(t, s)); n != 2 {
		t.Errorf("%d events, want 2", n)
	}
	_, err := s.GetLiveness(t.Context(), "nobody")
	wantErr(t, "GetLiveness(unknown)", err, heartbeatstore.ErrNotFound)
	diff(t, "empty flush", heartbeatstore.FlushResult{}, mustFlush(t, s, nil, nil))
}

func testFlushIgnoresOlder(t *testing.T, s heartbeatstore.Store) {
	mustFlush(t, s, []heartbeatstore.Observation{obs("n1", at(10*time.Second), 5)}, nil)
	// A replica that flushes late must not move the node back in time.
	r := mustFlush(t, s, []heartbeatstore.Observation{obs("n1", at(5*time.Second), 4), obs("n2", at(0), 1)}, nil)
	diff(t, "stale flush", heartbeatstore.FlushResult{Rows: 1, Events: 1}, r)
	got := mustGet(t, s, "n1")
	if got.Sequence != 5 || !got.LastSeen.Equal(at(10*time.Second).Truncate(time.Microsecond)) {
		t.Errorf("stale observation applied: %+v", got)
	}
}

func testFlushDuplicates(t *testing.T, s heartbeatstore.Store) {
	r := mustFlush(t, s, []heartbeatstore.Observation{obs("n1", at(2*time.Second), 2), obs("n1", at(3*time.Second), 3), obs("n1", at(time.Second), 1)}, nil)
	diff(t, "flush", heartbeatstore.FlushResult{Rows: 1, Events: 1}, r)
	if got := mustGet(t, s, "n1"); got.Sequence != 3 {
		t.Errorf("sequence = %d, want the newest, 3", got.Sequence)
	}
}

func testFlushEventsInOrder(t *testing.T, s heartbeatstore.Store) {
	given := []heartbeatstore.Event{
		{Time: at(time.Second), NodeID: "zz", Type: heartbeatstore.EventRebooted, BootID: "b2", PrevBootID: "b1", Status: heartbeatstore.StatusUp},
		{Time: at(time.Second), NodeID: "aa", Type: heartbeatstore.EventStatusChanged, Status: heartbeatstore.StatusDegraded, PrevStatus: heartbeatstore.StatusUp},
		{Time: at(2 * time.Second), NodeID: "zz", Type: heartbeatstore.EventNode, Kind: "disk.failed", Message: "sda: I/O error ✗"},
	}
	mustFlush(t, s, []heartbeatstore.Observation{obs("mm", at(0), 1)}, given)
	evs := allEvents(t, s)
	checkCursors(t, evs)
	// The flush's own healthy events come first, then those given, in order.
	diff(t, "events", []string{"mm healthy healthy<-", "zz rebooted", "aa status_changed", "zz node_event disk.failed"}, summary(evs))
	for i, e := range given {
		e.Cursor, e.Time = evs[i+1].Cursor, stored(e.Time)
		diff(t, fmt.Sprintf("event %d", i), e, evs[i+1])
	}
	// Events alone, without observations.
	mustFlush(t, s, nil, []heartbeatstore.Event{{Time: at(3 * time.Second), NodeID: "aa", Type: heartbeatstore.EventNode, Kind: "k"}})
	if n := len(allEvents(t, s)); n != 5 {
		t.Errorf("%d events, want 5", n)
	}
}

func testFlushLargeBatch(t *testing.T, s heartbeatstore.Store) {
	const n = 2500 // several SQLite chunks
	var o []heartbeatstore.Observation
	var e []heartbeatstore.Event
	for i := range n {
		node := fmt.Sprintf("n%05d", i)
		o = append(o, obs(node, at(time.Duration(i)*time.Millisecond), 1))
		e = append(e, heartbeatstore.Event{Time: at(0), NodeID: node, Type: heartbeatstore.EventNode, Kind: "k"})
	}
	r := mustFlush(t, s, o, e)
	diff(t, "flush", heartbeatstore.FlushResult{Rows: n, Events: 2 * n}, r)
	evs := allEvents(t, s)
	if len(evs) != 2*n {
		t.Fatalf("%d events, want %d", len(evs), 2*n)
	}
	checkCursors(t, evs)
	for i := range n {
		if evs[i].Type != heartbeatstore.EventHealthy || evs[n+i].NodeID != fmt.Sprintf("n%05d", i) {
			t.Fatalf("event order broken at %d: %+v / %+v", i, evs[i], evs[n+i])
		}
	}
}

func testListLiveness(t *testing.T, s heartbeatstore.Store) {
	mustFlush(t, s, []heartbeatstore.Observation{
		obs("a", at(0), 1), obs("b", at(0), 1), obs("c", at(time.Minute), 1), obs("d", at(0), 1),
	}, nil)
	leaseAndMark(t, s, heartbeatstore.Silence{Now: at(time.Minute), SuspectBefore: at(time.Second)})
	ids := func(ls []heartbeatstore.Liveness) []string {
		var out []string
		for _, l := range ls {
			out = append(out, l.NodeID)
		}
		return out
	}
	tests := []struct {
		name string
		f    heartbeatstore.LivenessFilter
		want []string
	}{
		{"all", heartbeatstore.LivenessFilter{}, []string{"a", "b", "c", "d"}},
		{"state", heartbeatstore.LivenessFilter{State: heartbeatstore.StateSuspect}, []string{"a", "b", "d"}},
		{"healthy", heartbeatstore.LivenessFilter{State: heartbeatstore.StateHealthy}, []string{"c"}},
		{"page", heartbeatstore.LivenessFilter{AfterID: "a", Limit: 2}, []string{"b", "c"}},
		{"node IDs", heartbeatstore.LivenessFilter{NodeIDs: []string{"d", "a", "zz"}}, []string{"a", "d"}},
		{"node IDs and state", heartbeatstore.LivenessFilter{NodeIDs: []string{"c", "d"}, State: heartbeatstore.StateSuspect}, []string{"d"}},
		{"none", heartbeatstore.LivenessFilter{State: heartbeatstore.StateUnreachable}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.ListLiveness(t.Context(), tt.f)
			if err != nil {
				t.Fatalf("ListLiveness: %v", err)
			}
			diff(t, "ListLiveness", tt.want, ids(got))
		})
	}
}

// leaseAndMark takes the lease for "decider" and marks silent nodes.
func leaseAndMark(t *testing.T, s heartbeatstore.Store, sl heartbeatstore.Silence) heartbeatstore.SilenceResult {
	t.Helper()
	sl.Holder = "decider"
	if held, _, err := s.AcquireLease(t.Context(), sl.Holder, sl.Now, sl.Now.Add(10*time.Second)); err != nil || !held {
		t.Fatalf("AcquireLease = %v, %v", held, err)
	}
	sl.LeaseUntil = sl.Now.Add(10 * time.Second)
	r, err := s.MarkSilent(t.Context(), sl)
	if err != nil {
		t.Fatalf("MarkSilent: %v", err)
	}
	return r
}

func testLease(t *testing.T, s heartbeatstore.Store) {
	ctx := t.Context()
	type step struct {
		name      string
		holder    string
		now       time.Duration
		wantHeld  bool
		wantSince time.Duration
	}
	// Each acquisition asks for ten seconds.
	steps := []step{
		{"free lease is taken", "a", 0, true, 0},
		{"held lease is refused", "b", 5 * time.Second, false, 0},
		{"holder renews, keeping since", "a", 8 * time.Second, true, 0},
		{"still refused before the renewed expiry", "b", 17 * time.Second, false, 0},
		{"expired lease is taken over", "b", 18 * time.Second, true, 18 * time.Second},
		{"old holder is refused", "a", 19 * time.Second, false, 0},
		{"new holder renews", "b", 20 * time.Second, true, 18 * time.Second},
		{"a holder whose lease lapsed starts over", "b", 31 * time.Second, true, 31 * time.Second},
	}
	for _, st := range steps {
		held, since, err := s.AcquireLease(ctx, st.holder, at(st.now), at(st.now+10*time.Second))
		if err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if held != st.wantHeld {
			t.Fatalf("%s: held = %v, want %v", st.name, held, st.wantHeld)
		}
		if held && !since.Equal(stored(at(st.wantSince))) {
			t.Errorf("%s: since = %v, want %v", st.name, since, stored(at(st.wantSince)))
		}
	}
	// Releasing by someone else does nothing; by the holder frees it at once.
	if err := s.ReleaseLease(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if held, _, _ := s.AcquireLease(ctx, "a", at(32*time.Second), at(42*time.Second)); held {
		t.Fatal("lease taken while held")
	}
	if err := s.ReleaseLease(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	if held, since, _ := s.AcquireLease(ctx, "a", at(33*time.Second), at(43*time.Second)); !held || !since.Equal(stored(at(33*time.Second))) {
		t.Fatalf("released lease: held = %v since %v", held, since)
	}
}

func testMarkSilent(t *testing.T, s heartbeatstore.Store) {
	// Last seen: a at 0 (silent 60s), b at 25s (silent 35s), c at 50s (10s),
	// d at 0 but already suspect before.
	mustFlush(t, s, []heartbeatstore.Observation{obs("a", at(0), 1), obs("b", at(25*time.Second), 1), obs("d", at(0), 1)}, nil)
	leaseAndMark(t, s, heartbeatstore.Silence{Now: at(30 * time.Second), SuspectBefore: at(10 * time.Second)}) // d (and a) suspect
	mustFlush(t, s, []heartbeatstore.Observation{obs("c", at(50*time.Second), 1)}, nil)
	before := len(allEvents(t, s))

	now := at(60 * time.Second)
	r := leaseAndMark(t, s, heartbeatstore.Silence{Now: now, SuspectBefore: at(40 * time.Second), UnreachableBefore: at(20 * time.Second)})
	diff(t, "result", heartbeatstore.SilenceResult{Suspect: 1, Unreachable: 2}, r)
	evs := allEvents(t, s)[before:]
	diff(t, "events", []string{"a unreachable unreachable<-suspect", "d unreachable unreachable<-suspect", "b suspect suspect<-healthy"}, summary(evs))
	diff(t, "event", heartbeatstore.Event{
		Cursor: evs[2].Cursor, Time: stored(now), NodeID: "b", Type: heartbeatstore.EventSuspect,
		State: heartbeatstore.StateSuspect, PrevState: heartbeatstore.StateHealthy, BootID: "boot-b", Status: heartbeatstore.StatusUp,
	}, evs[2])
	for node, want := range map[string]heartbeatstore.State{"a": heartbeatstore.StateUnreachable, "b": heartbeatstore.StateSuspect, "c": heartbeatstore.StateHealthy} {
		got := mustGet(t, s, node)
		if got.State != want {
			t.Errorf("%s: state %s, want %s", node, got.State, want)
		}
		if want != heartbeatstore.StateHealthy && !got.StateSince.Equal(stored(now)) {
			t.Errorf("%s: state since %v, want %v", node, got.StateSince, stored(now))
		}
	}
	// Nothing changes twice; zero cutoffs skip a transition.
	r = leaseAndMark(t, s, heartbeatstore.Silence{Now: now, SuspectBefore: at(40 * time.Second), UnreachableBefore: at(20 * time.Second)})
	diff(t, "again", heartbeatstore.SilenceResult{}, r)
	r = leaseAndMark(t, s, heartbeatstore.Silence{Now: at(2 * time.Minute), UnreachableBefore: at(40 * time.Second)})
	diff(t, "unreachable only", heartbeatstore.SilenceResult{Unreachable: 1}, r)
	if got := mustGet(t, s, "c"); got.State != heartbeatstore.StateHealthy {
		t.Errorf("c: state %s without a suspect cutoff", got.State)
	}
}

func testMarkSilentFenced(t *testing.T, s heartbeatstore.Store) {
	ctx := t.Context()
	mustFlush(t, s, []heartbeatstore.Observation{obs("a", at(0), 1)}, nil)
	if held, _, _ := s.AcquireLease(ctx, "old", at(0), at(10*time.Second)); !held {
		t.Fatal("lease not taken")
	}
	if held, _, _ := s.AcquireLease(ctx, "new", at(11*time.Second), at(21*time.Second)); !held {
		t.Fatal("expired lease not taken over")
	}
	before := len(allEvents(t, s))
	_, err := s.MarkSilent(ctx, heartbeatstore.Silence{Holder: "old", Now: at(12 * time.Second), LeaseUntil: at(22 * time.Second),
		SuspectBefore: at(time.Minute), UnreachableBefore: at(time.Minute)})
	wantErr(t, "MarkSilent by the old holder", err, heartbeatstore.ErrLeaseLost)
	if got := mustGet(t, s, "a"); got.State != heartbeatstore.StateHealthy {
		t.Errorf("state %s after a fenced-off MarkSilent", got.State)
	}
	if n := len(allEvents(t, s)); n != before {
		t.Errorf("%d events after a fenced-off MarkSilent, want %d", n, before)
	}
	// The rejected renewal did not extend anything: the new holder keeps it.
	if held, _, _ := s.AcquireLease(ctx, "old", at(20*time.Second), at(30*time.Second)); held {
		t.Error("old holder took the lease back while the new one held it")
	}
}

func testBackToHealthy(t *testing.T, s heartbeatstore.Store) {
	mustFlush(t, s, []heartbeatstore.Observation{obs("a", at(0), 1), obs("b", at(0), 1)}, nil)
	leaseAndMark(t, s, heartbeatstore.Silence{Now: at(30 * time.Second), SuspectBefore: at(20 * time.Second)})
	leaseAndMark(t, s, heartbeatstore.Silence{Now: at(50 * time.Second), UnreachableBefore: at(40 * time.Second)})
	before := len(allEvents(t, s))
	r := mustFlush(t, s, []heartbeatstore.Observation{obs("b", at(55*time.Second), 2)}, nil)
	diff(t, "flush", heartbeatstore.FlushResult{Rows: 1, Events: 1}, r)
	evs := allEvents(t, s)[before:]
	diff(t, "events", []string{"b healthy healthy<-unreachable"}, summary(evs))
	got := mustGet(t, s, "b")
	if got.State != heartbeatstore.StateHealthy || !got.StateSince.Equal(stored(at(55*time.Second))) {
		t.Errorf("b: %s since %v, want healthy since %v", got.State, got.StateSince, stored(at(55*time.Second)))
	}
}

func testReadEvents(t *testing.T, s heartbeatstore.Store) {
	var given []heartbeatstore.Event
	for i := range 10 {
		typ := heartbeatstore.EventNode
		if i%3 == 0 {
			typ = heartbeatstore.EventRebooted
		}
		given = append(given, heartbeatstore.Event{Time: at(time.Duration(i) * time.Second), NodeID: fmt.Sprintf("n%d", i%2), Type: typ, Kind: fmt.Sprint(i)})
	}
	mustFlush(t, s, nil, given)
	all := allEvents(t, s)
	if len(all) != 10 {
		t.Fatalf("%d events, want 10", len(all))
	}
	c := func(i int) int64 { return all[i].Cursor }
	head := c(9)
	kinds := func(evs []heartbeatstore.Event) []string {
		var out []string
		for _, e := range evs {
			out = append(out, e.Kind)
		}
		return out
	}
	tests := []struct {
		name     string
		q        eventQuery
		want     []string
		wantNext int64
	}{
		{"first page", eventQuery{Limit: 4}, []string{"0", "1", "2", "3"}, c(3)},
		{"next page", eventQuery{After: c(3), Limit: 4}, []string{"4", "5", "6", "7"}, c(7)},
		{"last page moves to the head", eventQuery{After: c(7), Limit: 4}, []string{"8", "9"}, head},
		{"nothing after the head", eventQuery{After: head}, nil, head},
		{"node filter", eventQuery{NodeIDs: []string{"n1"}}, []string{"1", "3", "5", "7", "9"}, head},
		{"type filter", eventQuery{Types: []heartbeatstore.EventType{heartbeatstore.EventRebooted}}, []string{"0", "3", "6", "9"}, head},
		{"both", eventQuery{NodeIDs: []string{"n0"}, Types: []heartbeatstore.EventType{heartbeatstore.EventRebooted}}, []string{"0", "6"}, head},
		{"filtered full page", eventQuery{NodeIDs: []string{"n0"}, Limit: 2}, []string{"0", "2"}, c(2)},
		// A reader whose filter matches nothing still moves to the head.
		{"no match", eventQuery{NodeIDs: []string{"zz"}}, nil, head},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := readEvents(t.Context(), s, tt.q)
			if err != nil {
				t.Fatalf("ReadEvents: %v", err)
			}
			diff(t, "kinds", tt.want, kinds(p.Events))
			if p.Next != tt.wantNext {
				t.Errorf("Next = %d, want %d", p.Next, tt.wantNext)
			}
			if p.DeletedThrough != 0 {
				t.Errorf("DeletedThrough = %d, want 0", p.DeletedThrough)
			}
		})
	}
	deleted, gotHead, err := eventBounds(t.Context(), s)
	if err != nil || deleted != 0 || gotHead != head {
		t.Errorf("EventBounds = %d, %d, %v; want 0, %d", deleted, gotHead, err, head)
	}
}

func testRetention(t *testing.T, s heartbeatstore.Store) {
	ctx := t.Context()
	if d, h, err := eventBounds(ctx, s); err != nil || d != 0 || h != 0 {
		t.Fatalf("EventBounds of an empty log = %d, %d, %v", d, h, err)
	}
	if n, err := deleteEventsBefore(ctx, s, at(time.Hour)); err != nil || n != 0 {
		t.Fatalf("DeleteEventsBefore on an empty log = %d, %v", n, err)
	}
	// Times are not in cursor order: retention deletes only a prefix, up to
	// the first event that is new enough.
	var given []heartbeatstore.Event
	for i, sec := range []int{1, 2, 5, 3, 6, 7} {
		given = append(given, heartbeatstore.Event{Time: at(time.Duration(sec) * time.Second), NodeID: "n", Type: heartbeatstore.EventNode, Kind: fmt.Sprint(i)})
	}
	mustFlush(t, s, nil, given)
	all := allEvents(t, s)
	n, err := deleteEventsBefore(ctx, s, at(4*time.Second))
	if err != nil || n != 2 {
		t.Fatalf("DeleteEventsBefore = %d, %v; want 2", n, err)
	}
	d, h, err := eventBounds(ctx, s)
	if err != nil || d != all[1].Cursor || h != all[5].Cursor {
		t.Fatalf("EventBounds = %d, %d, %v; want %d, %d", d, h, err, all[1].Cursor, all[5].Cursor)
	}
	p, err := readEvents(ctx, s, eventQuery{})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Events) != 4 || p.Events[0].Cursor != all[2].Cursor || p.DeletedThrough != all[1].Cursor {
		t.Fatalf("after retention: %d events from %d, deleted through %d", len(p.Events), p.Events[0].Cursor, p.DeletedThrough)
	}
	// Deleting everything keeps the watermark and the head, and cursors are
	// never handed out again.
	if n, err := deleteEventsBefore(ctx, s, at(time.Hour)); err != nil || n != 4 {
		t.Fatalf("DeleteEventsBefore(all) = %d, %v; want 4", n, err)
	}
	d, h, err = eventBounds(ctx, s)
	if err != nil || d != all[5].Cursor || h != all[5].Cursor {
		t.Fatalf("EventBounds after deleting all = %d, %d, %v; want %d twice", d, h, err, all[5].Cursor)
	}
	p, err = readEvents(ctx, s, eventQuery{After: d})
	if err != nil || len(p.Events) != 0 || p.Next != d || p.DeletedThrough != d {
		t.Fatalf("ReadEvents of an emptied log = %+v, %v", p, err)
	}
	mustFlush(t, s, nil, []heartbeatstore.Event{{Time: at(2 * time.Hour), NodeID: "n", Type: heartbeatstore.EventNode, Kind: "new"}})
	evs := allEvents(t, s)
	if len(evs) != 1 || evs[0].Cursor <= d {
		t.Fatalf("new event %+v, want a cursor above %d", evs, d)
	}
	// The watermark never goes back.
	if n, err := deleteEventsBefore(ctx, s, at(0)); err != nil || n != 0 {
		t.Fatalf("DeleteEventsBefore(old) = %d, %v", n, err)
	}
	if d2, _, _ := eventBounds(ctx, s); d2 != d {
		t.Errorf("watermark moved from %d to %d", d, d2)
	}
}

func testSettings(t *testing.T, s heartbeatstore.Store) {
	got, err := s.GetSettings(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	diff(t, "unset", heartbeatstore.Settings{}, got)
	want := heartbeatstore.Settings{
		Interval: 30 * time.Second, Grace: 2 * time.Minute,
		Previous:  heartbeatstore.Timings{Interval: 10 * time.Second, Grace: 40 * time.Second},
		ChangedAt: stored(t0),
		Stretch:   1,
	}
	var wantEvents []heartbeatstore.Event
	for i, actor := range []string{"admin:admin", "token:0123456789abcdef/ops"} {
		in := want
		in.ChangedAt = at(time.Duration(i) * time.Minute)
		// The event carries the timings the change resolved to, which
		// the caller gives (stored ones may be 0, "the defaults").
		ev := heartbeatstore.Event{Type: heartbeatstore.EventNode, Time: in.ChangedAt, Interval: in.Interval, Grace: in.Grace, Actor: actor}
		if err := s.PutSettings(t.Context(), in, ev); err != nil {
			t.Fatal(err)
		}
		got, err := s.GetSettings(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		want.ChangedAt = stored(in.ChangedAt)
		diff(t, "settings", want, got)
		// Whatever type the caller gave, the store records a settings change.
		ev.Type, ev.Time = heartbeatstore.EventSettingsChanged, stored(ev.Time)
		wantEvents = append(wantEvents, ev)
		want.Interval = 20 * time.Second
	}
	evs := allEvents(t, s)
	for i := range evs {
		evs[i].Cursor = 0
	}
	diff(t, "settings events", wantEvents, evs)
}

func testStretch(t *testing.T, s heartbeatstore.Store) {
	ctx := t.Context()
	// A stretch stored first leaves the base timings at the defaults.
	first := heartbeatstore.Settings{
		Previous:  heartbeatstore.Timings{Interval: 10 * time.Second, Grace: 40 * time.Second},
		ChangedAt: t0, Stretch: 2.5,
	}
	if err := s.PutStretch(ctx, first); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetSettings(ctx)
	if err != nil {
		t.Fatal(err)
	}
	first.ChangedAt = stored(t0)
	diff(t, "stretch only", first, got)

	// The admin's settings keep the stretch; the decider's stretch keeps the
	// admin's timings.
	base := heartbeatstore.Settings{
		Interval: 30 * time.Second, Grace: 2 * time.Minute,
		Previous:  heartbeatstore.Timings{Interval: 25 * time.Second, Grace: 100 * time.Second},
		ChangedAt: at(time.Minute),
	}
	if err := s.PutSettings(ctx, base, heartbeatstore.Event{Time: base.ChangedAt, Interval: base.Interval, Grace: base.Grace, Actor: "admin:admin"}); err != nil {
		t.Fatal(err)
	}
	want := base
	want.ChangedAt, want.Stretch = stored(base.ChangedAt), 2.5
	got, err = s.GetSettings(ctx)
	if err != nil {
		t.Fatal(err)
	}
	diff(t, "settings after stretch", want, got)

	lower := heartbeatstore.Settings{
		Interval: time.Hour, Grace: time.Hour, // ignored
		Previous:  heartbeatstore.Timings{Interval: 75 * time.Second, Grace: 5 * time.Minute},
		ChangedAt: at(2 * time.Minute), Stretch: 1.25,
	}
	if err := s.PutStretch(ctx, lower); err != nil {
		t.Fatal(err)
	}
	want.Previous, want.ChangedAt, want.Stretch = lower.Previous, stored(lower.ChangedAt), 1.25
	got, err = s.GetSettings(ctx)
	if err != nil {
		t.Fatal(err)
	}
	diff(t, "stretch after settings", want, got)
}

func testCountLive(t *testing.T, s heartbeatstore.Store) {
	ctx := t.Context()
	if n, err := s.CountLive(ctx); err != nil || n != 0 {
		t.Fatalf("CountLive(empty) = %d, %v; want 0", n, err)
	}
	// a is healthy, b suspect, c unreachable.
	mustFlush(t, s, []heartbeatstore.Observation{obs("a", at(30*time.Second), 1), obs("b", at(15*time.Second), 1), obs("c", at(0), 1)}, nil)
	leaseAndMark(t, s, heartbeatstore.Silence{Now: at(30 * time.Second), SuspectBefore: at(20 * time.Second), UnreachableBefore: at(10 * time.Second)})
	if n, err := s.CountLive(ctx); err != nil || n != 2 {
		t.Fatalf("CountLive = %d, %v; want 2", n, err)
	}
	got, err := s.CountByState(ctx)
	want := map[heartbeatstore.State]int64{heartbeatstore.StateHealthy: 1, heartbeatstore.StateSuspect: 1, heartbeatstore.StateUnreachable: 1}
	if err != nil || !maps.Equal(got, want) {
		t.Fatalf("CountByState = %v, %v; want %v", got, err, want)
	}
}

// testReplicaBoots: each replica's count of recent boots replaces its last
// one; the sum leaves out the asking replica, counts said before since and
// removed ones; a negative count is refused and changes nothing.
func testReplicaBoots(t *testing.T, s heartbeatstore.Store) {
	ctx := t.Context()
	sum := func(what, except string, since time.Time, want int) {
		t.Helper()
		if n, err := s.SumBoots(ctx, except, since); err != nil || n != want {
			t.Errorf("%s: SumBoots(%q, %v) = %d, %v; want %d", what, except, since, n, err, want)
		}
	}
	put := func(replica string, boots int, when time.Time) {
		t.Helper()
		if err := s.PutBoots(ctx, replica, boots, when); err != nil {
			t.Fatalf("PutBoots(%s, %d): %v", replica, boots, err)
		}
	}
	sum("none said", "a", at(0), 0)
	put("a", 100, at(0))
	put("b", 40, at(0))
	put("b", 70, at(2*time.Second))
	put("c", 5, at(3*time.Second))
	sum("all but a", "a", at(0), 75)
	sum("all", "", at(0), 175)
	sum("said since 1s", "", at(time.Second), 75)
	put("c", 0, at(4*time.Second))
	sum("after c's went", "", at(0), 170)
	put("c", 0, at(5*time.Second)) // none to remove: no error
	if err := s.PutBoots(ctx, "b", -1, at(6*time.Second)); err == nil {
		t.Error("PutBoots(-1) = nil; want an error")
	}
	sum("after a refused count", "", at(0), 170)
	if n, err := s.ForgetBoots(ctx, at(time.Second)); err != nil || n != 1 {
		t.Errorf("ForgetBoots(1s) = %d, %v; want a's count removed", n, err)
	}
	sum("after forgetting", "", time.Time{}, 70)
}
