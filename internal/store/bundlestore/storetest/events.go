package storetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/eventlog"
	"github.com/berth-dev/berth/internal/store/bundlestore"
)

// logOf reads the whole event log; cursors must increase.
func logOf(t *testing.T, s bundlestore.Store) []eventlog.Event {
	t.Helper()
	var (
		out   []eventlog.Event
		after int64
	)
	for {
		p, err := s.Events().Read(t.Context(), eventlog.Query{After: after, Limit: 1000})
		if err != nil {
			t.Fatalf("read events: %v", err)
		}
		for _, e := range p.Events {
			if e.Cursor <= after {
				t.Fatalf("cursor %d follows %d", e.Cursor, after)
			}
			after = e.Cursor
		}
		out = append(out, p.Events...)
		if len(p.Events) < 1000 {
			return out
		}
	}
}

// eventSummary renders events as "type version".
func eventSummary(evs []eventlog.Event) []string {
	var out []string
	for _, e := range evs {
		out = append(out, e.Type+" "+e.Details[bundlestore.DetailVersion])
	}
	return out
}

func event(typ, nodeID string, tm time.Time, kv ...string) eventlog.Event {
	e := eventlog.Event{Type: typ, NodeID: nodeID, Time: stored(tm), Details: map[string]string{}}
	for i := 0; i+1 < len(kv); i += 2 {
		e.Details[kv[i]] = kv[i+1]
	}
	return e
}

// newEvents runs fn and returns the events it appended, without cursors.
func newEvents(t *testing.T, s bundlestore.Store, fn func()) []eventlog.Event {
	t.Helper()
	before := len(logOf(t, s))
	fn()
	evs := logOf(t, s)[before:]
	for i := range evs {
		checkUTC(t, evs[i].Time)
		evs[i].Cursor = 0
	}
	return evs
}

// testEventsWithChanges: each write appends its event, with its details;
// a write that changes nothing appends nothing.
func testEventsWithChanges(t *testing.T, s bundlestore.Store) {
	node := func(author string, n int) bundlestore.Bundle {
		b := bundle(n)
		b.Author = author
		return b
	}
	approve := func(v int64, d time.Duration) func() {
		return func() {
			if _, err := s.Approve(t.Context(), "node-a", v, "admin:ops", at(d)); err != nil {
				t.Fatalf("Approve(%d): %v", v, err)
			}
		}
	}
	put := func(expected int64, b bundlestore.Bundle, opts bundlestore.PutOptions) func() {
		return func() { mustPut(t, s, "node-a", expected, b, opts) }
	}
	steps := []struct {
		name string
		do   func()
		want []eventlog.Event
	}{
		{"node's first upload", put(0, node("node:node-a", 1), approvedOnly), []eventlog.Event{
			event(bundlestore.EventUpdated, "node-a", at(time.Minute), "version", "1", "state", "approved", "author", "node:node-a", "actor", "node:node-a")}},
		{"held upload", put(1, node("node:node-a", 2), held), []eventlog.Event{
			event(bundlestore.EventUpdated, "node-a", at(2*time.Minute), "version", "2", "state", "pending", "author", "node:node-a", "actor", "node:node-a")}},
		{"approve it", approve(2, time.Hour), []eventlog.Event{
			event(bundlestore.EventApproved, "node-a", at(time.Hour), "version", "2", "author", "admin:ops", "previous_version", "1", "actor", "admin:ops")}},
		{"approve the current version again", approve(2, 2*time.Hour), nil},
		{"held upload", put(2, node("node:node-a", 3), held), []eventlog.Event{
			event(bundlestore.EventUpdated, "node-a", at(3*time.Minute), "version", "3", "state", "pending", "author", "node:node-a", "actor", "node:node-a")}},
		{"admin write over it", put(2, node("admin:ops", 4), admin), []eventlog.Event{
			event(bundlestore.EventUpdated, "node-a", at(4*time.Minute), "version", "4", "state", "approved", "author", "admin:ops", "dropped_pending", "3", "actor", "admin:ops")}},
		{"reset", func() {
			if _, err := s.Reset(t.Context(), "node-a", "admin:ops", at(3*time.Hour), 0); err != nil {
				t.Fatal(err)
			}
		}, []eventlog.Event{event(bundlestore.EventReset, "node-a", at(3*time.Hour), "version", "5", "author", "admin:ops", "actor", "admin:ops")}},
		{"held first upload after the reset", put(0, node("node:node-a", 6), held), []eventlog.Event{
			event(bundlestore.EventUpdated, "node-a", at(6*time.Minute), "version", "6", "state", "pending", "author", "node:node-a", "actor", "node:node-a")}},
		{"approve it, nothing superseded", approve(6, 4*time.Hour), []eventlog.Event{
			event(bundlestore.EventApproved, "node-a", at(4*time.Hour), "version", "6", "author", "admin:ops", "actor", "admin:ops")}},
		{"delete", func() {
			if err := s.Delete(t.Context(), "node-a", "token:0123456789abcdef/ops", at(5*time.Hour)); err != nil {
				t.Fatal(err)
			}
		}, []eventlog.Event{event(bundlestore.EventDeleted, "node-a", at(5*time.Hour), "actor", "token:0123456789abcdef/ops")}},
		{"delete again: nothing to forget", func() {
			if err := s.Delete(t.Context(), "node-a", "admin:ops", at(6*time.Hour)); err != nil {
				t.Fatal(err)
			}
		}, nil},
	}
	for _, step := range steps {
		diff(t, step.name, step.want, newEvents(t, s, step.do))
	}
	for _, e := range logOf(t, s) {
		known := false
		for _, typ := range bundlestore.EventTypes() {
			known = known || typ == e.Type
		}
		if !known || e.NodeID != "node-a" {
			t.Errorf("event %+v: unknown type or wrong node", e)
		}
	}
}

// testEventsNotOnErrors makes every refused write and checks that none of
// them appended an event.
func testEventsNotOnErrors(t *testing.T, s bundlestore.Store) {
	mustPut(t, s, "node-a", 0, bundle(1), approvedOnly)
	mustPut(t, s, "node-a", 1, bundle(2), held)
	mustPut(t, s, "node-b", 0, bundle(3), approvedOnly)
	if _, err := s.Reset(t.Context(), "node-b", "admin:ops", t0, 0); err != nil {
		t.Fatal(err)
	}
	before := logOf(t, s)
	noAuthor := bundle(9)
	noAuthor.Author = ""
	fails := map[string]func() error{
		"upload while pending": func() error { _, err := s.Put(t.Context(), "node-a", 1, bundle(4), held); return err },
		"stale admin write":    func() error { _, err := s.Put(t.Context(), "node-a", 2, bundle(4), admin); return err },
		"stale write":          func() error { _, err := s.Put(t.Context(), "node-b", 1, bundle(4), approvedOnly); return err },
		"malformed":            func() error { _, err := s.Put(t.Context(), "node-c", 0, noAuthor, approvedOnly); return err },
		"approve unknown":      func() error { _, err := s.Approve(t.Context(), "node-a", 7, "admin:ops", t0); return err },
		"approve superseded":   func() error { _, err := s.Approve(t.Context(), "node-b", 1, "admin:ops", t0); return err },
		"approve without time": func() error { _, err := s.Approve(t.Context(), "node-a", 2, "admin:ops", time.Time{}); return err },
		"reset nothing":        func() error { _, err := s.Reset(t.Context(), "node-b", "admin:ops", t0, 0); return err },
		"reset unknown":        func() error { _, err := s.Reset(t.Context(), "node-z", "admin:ops", t0, 0); return err },
		"reset without author": func() error { _, err := s.Reset(t.Context(), "node-a", "", t0, 0); return err },
	}
	for name, fn := range fails {
		if err := fn(); err == nil {
			t.Errorf("%s: succeeded", name)
		}
	}
	diff(t, "log after refused writes", before, logOf(t, s))
	// The failed approval without a time changed nothing either.
	if _, err := s.Pending(t.Context(), "node-a"); err != nil {
		t.Errorf("pending version lost: %v", err)
	}
}

// testEventsConcurrentNodes writes to many nodes at once: every write that
// succeeds has exactly one event, in its node's order.
func testEventsConcurrentNodes(t *testing.T, s bundlestore.Store) {
	const nodes, writes = 6, 5
	errs := race(nodes, func(i int) error {
		id := fmt.Sprintf("node-%d", i)
		for v := range int64(writes) {
			if _, err := s.Put(t.Context(), id, v, bundle(i*writes+int(v)), approvedOnly); err != nil {
				return err
			}
		}
		return nil
	})
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	perNode := map[string][]string{}
	for _, e := range logOf(t, s) {
		perNode[e.NodeID] = append(perNode[e.NodeID], e.Details[bundlestore.DetailVersion])
	}
	for i := range nodes {
		diff(t, fmt.Sprintf("versions of node-%d", i), []string{"1", "2", "3", "4", "5"}, perNode[fmt.Sprintf("node-%d", i)])
	}
}

func testEventsRetention(t *testing.T, s bundlestore.Store) {
	for v := range int64(4) {
		mustPut(t, s, "node-a", v, bundle(int(v)+1), approvedOnly) // at 1..4 minutes
	}
	all := logOf(t, s)
	n, err := s.Events().DeleteBefore(t.Context(), at(3*time.Minute))
	if err != nil || n != 2 {
		t.Fatalf("DeleteBefore = %d, %v; want 2", n, err)
	}
	b, err := s.Events().Bounds(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	diff(t, "bounds", eventlog.Bounds{DeletedThrough: all[1].Cursor, Oldest: all[2].Cursor, Head: all[3].Cursor}, b)
	woken := s.Events().Appended()
	mustPut(t, s, "node-a", 4, bundle(5), approvedOnly)
	select {
	case <-woken:
	default:
		t.Error("Put did not wake watchers")
	}
}
