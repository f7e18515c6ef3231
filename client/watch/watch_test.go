package watch_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/berth-dev/berth/client/watch"
	"github.com/berth-dev/berth/internal/eventlog"
	"github.com/berth-dev/berth/internal/rpc/rpcerr"
	"github.com/berth-dev/berth/internal/store/bundlestore"
	"github.com/berth-dev/berth/internal/store/regstore"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// fast keeps reconnections quick in tests.
var fast = watch.Backoff{Initial: time.Millisecond, Max: 5 * time.Millisecond}

// collect runs w until it delivered n events, then cancels it, and returns
// the events and what Run returned. more, when set, is called after each
// event with the events so far (from the handler's goroutine).
func collect(t *testing.T, w *watch.Watcher, n int, more func([]watch.Event)) ([]watch.Event, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second) // a safety net, not a wait
	defer cancel()
	var got []watch.Event
	err := w.Run(ctx, func(e watch.Event) error {
		got = append(got, e)
		if more != nil {
			more(got)
		}
		if len(got) == n {
			cancel()
		}
		return nil
	})
	if errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("watch did not deliver %d events; got %v", n, got)
	}
	return got, err
}

func cursorsOf(events []watch.Event, s watch.Service) []int64 {
	var out []int64
	for _, e := range events {
		if e.Service == s {
			out = append(out, e.Cursor)
		}
	}
	return out
}

func TestMergeKeepsEachServiceInOrder(t *testing.T) {
	p := newTestTLS(t)
	reg := newLog(
		lifecycle(1, "registered", "n-1"),
		lifecycle(2, "approved", "n-1", "actor", "admin"),
		lifecycle(3, "certificate_renewed", "n-1", "serial", "0a1b"),
	)
	bun := newLog(lifecycle(1, "bundle_updated", "n-1", "version", "1"), lifecycle(2, "bundle_approved", "n-1", "version", "1"))
	rebooted := &berthv1.HealthEvent{
		Cursor: 3, Type: berthv1.HealthEventType_HEALTH_EVENT_TYPE_REBOOTED, NodeId: "n-1",
		BootId: "boot-2", PreviousBootId: "boot-1", State: berthv1.LivenessState_LIVENESS_STATE_HEALTHY,
		Status: berthv1.ReportedStatus_REPORTED_STATUS_DEGRADED, PreviousStatus: berthv1.ReportedStatus_REPORTED_STATUS_UP,
	}
	hb := newLog(beat(1, "n-1"), beat(2, "n-2"), rebooted)
	conn := serve(t, p, servers{registration: reg, bundles: bun, heartbeat: hb})

	w, err := watch.New(watch.Config{Registration: conn, Bundles: conn, Heartbeat: conn, Backoff: fast})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := w.Services(), watch.Services(); !slices.Equal(got, want) {
		t.Errorf("Services() = %v, want %v", got, want)
	}
	// After the eight logged events, one more happens live on each service.
	got, err := collect(t, w, 11, func(got []watch.Event) {
		if len(got) == 8 {
			reg.add(lifecycle(4, "revoked", "n-1"))
			bun.add(lifecycle(3, "bundle_reset", "n-1"))
			hb.add(&berthv1.HealthEvent{Cursor: 4, Type: berthv1.HealthEventType_HEALTH_EVENT_TYPE_NODE_EVENT, NodeId: "n-2",
				Kind: "disk.failed", Message: "sda: I/O error"})
		}
	})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Run returned %v, want context.Canceled", err)
	}
	for s, want := range map[watch.Service][]int64{watch.Registration: {1, 2, 3, 4}, watch.Bundles: {1, 2, 3}, watch.Heartbeat: {1, 2, 3, 4}} {
		if got := cursorsOf(got, s); !slices.Equal(got, want) {
			t.Errorf("%s cursors %v, want %v in order", s, got, want)
		}
	}
	byKey := map[string]watch.Event{}
	for _, e := range got {
		byKey[fmt.Sprintf("%s/%d", e.Service, e.Cursor)] = e
	}
	for key, want := range map[string]watch.Event{
		"registration/2": {Service: watch.Registration, Cursor: 2, Type: "approved", NodeID: "n-1", Time: eventTime(2),
			Details: map[string]string{"actor": "admin"}},
		"registration/4": {Service: watch.Registration, Cursor: 4, Type: "revoked", NodeID: "n-1", Time: eventTime(4),
			Details: map[string]string{}},
		"bundles/1": {Service: watch.Bundles, Cursor: 1, Type: "bundle_updated", NodeID: "n-1", Time: eventTime(1),
			Details: map[string]string{"version": "1"}},
		"heartbeat/1": {Service: watch.Heartbeat, Cursor: 1, Type: "healthy", NodeID: "n-1", Time: eventTime(1),
			Details: map[string]string{"state": "healthy", "boot_id": "boot-1", "status": "up"}},
		"heartbeat/3": {Service: watch.Heartbeat, Cursor: 3, Type: "rebooted", NodeID: "n-1",
			Details: map[string]string{"state": "healthy", "boot_id": "boot-2", "previous_boot_id": "boot-1",
				"status": "degraded", "previous_status": "up"}},
		"heartbeat/4": {Service: watch.Heartbeat, Cursor: 4, Type: "node_event", NodeID: "n-2",
			Details: map[string]string{"kind": "disk.failed", "message": "sda: I/O error"}},
	} {
		if diff := cmp.Diff(want, byKey[key]); diff != "" {
			t.Errorf("event %s (-want +got):\n%s", key, diff)
		}
	}
	want := watch.Cursors{watch.Registration: 4, watch.Bundles: 3, watch.Heartbeat: 4}
	if diff := cmp.Diff(want, w.Cursors()); diff != "" {
		t.Errorf("Cursors (-want +got):\n%s", diff)
	}
	for name, l := range map[string][]logRequest{"registration": reg.received(), "bundles": bun.received(), "heartbeat": hb.received()} {
		if diff := cmp.Diff([]logRequest{{}}, l); diff != "" {
			t.Errorf("%s requests (-want +got):\n%s", name, diff)
		}
	}
}

func TestReconnectResumesAfterLastCursor(t *testing.T) {
	p := newTestTLS(t)
	hb := newLog(beats(1, 5)...)
	hb.breaks = map[int]int{0: 2, 1: 2}
	conn := serve(t, p, servers{heartbeat: hb})
	var mu sync.Mutex
	var retries []watch.Retry
	w, err := watch.New(watch.Config{Heartbeat: conn, Backoff: fast, MaxFailures: 1, OnRetry: func(r watch.Retry) error {
		mu.Lock()
		defer mu.Unlock()
		retries = append(retries, r)
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	got, err := collect(t, w, 5, nil)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Run returned %v", err)
	}
	if c := cursorsOf(got, watch.Heartbeat); !slices.Equal(c, []int64{1, 2, 3, 4, 5}) {
		t.Errorf("cursors %v, want 1 to 5 once each", c)
	}
	if diff := cmp.Diff([]logRequest{{}, {After: 2}, {After: 4}}, hb.received()); diff != "" {
		t.Errorf("requests (-want +got):\n%s", diff)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(retries) != 2 {
		t.Fatalf("retries %+v, want 2", retries)
	}
	for i, r := range retries {
		// A stream that delivered events and broke is no failure, so
		// MaxFailures 1 does not stop the watch.
		if r.Service != watch.Heartbeat || r.Failures != 0 || !r.Connected || r.After != int64(2*(i+1)) || r.FromNow ||
			status.Code(r.Err) != codes.Unavailable || r.Delay <= 0 || r.Delay > fast.Initial {
			t.Errorf("retry %d: %+v", i, r)
		}
	}
}

func TestReconnectAfterFailedAttempts(t *testing.T) {
	p := newTestTLS(t)
	hb := newLog(beats(1, 2)...)
	hb.fail = func(n int) error {
		if n < 2 {
			return status.Error(codes.Unavailable, "fake: heartbeat service is shutting down; reconnect")
		}
		return nil
	}
	conn := serve(t, p, servers{heartbeat: hb})
	var failures []int
	w, err := watch.New(watch.Config{Heartbeat: conn, Backoff: fast, MaxFailures: 3, OnRetry: func(r watch.Retry) error {
		if r.Connected {
			t.Errorf("retry %+v: connected before any stream worked", r)
		}
		failures = append(failures, r.Failures) // one service: one goroutine
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := collect(t, w, 2, nil)
	if c := cursorsOf(got, watch.Heartbeat); !slices.Equal(c, []int64{1, 2}) {
		t.Errorf("cursors %v", c)
	}
	if !slices.Equal(failures, []int{1, 2}) {
		t.Errorf("failures %v, want [1 2]", failures)
	}
}

func TestOnRetryMayGiveUp(t *testing.T) {
	p := newTestTLS(t)
	hb := newLog(beats(1, 3)...)
	hb.breaks = map[int]int{0: 2}
	conn := serve(t, p, servers{heartbeat: hb})
	errGiveUp := errors.New("give up")
	w, err := watch.New(watch.Config{Heartbeat: conn, Backoff: fast, OnRetry: func(watch.Retry) error { return errGiveUp }})
	if err != nil {
		t.Fatal(err)
	}
	var got []int64
	err = w.Run(t.Context(), func(e watch.Event) error {
		got = append(got, e.Cursor)
		return nil
	})
	if !errors.Is(err, errGiveUp) || !slices.Equal(got, []int64{1, 2}) {
		t.Errorf("Run returned %v after %v; want the OnRetry error after 1, 2", err, got)
	}
	if n := len(hb.received()); n != 1 {
		t.Errorf("%d requests, want 1", n)
	}
}

func TestDuplicatesAreDropped(t *testing.T) {
	p := newTestTLS(t)
	hb := newLog(beats(1, 3)...)
	hb.breaks = map[int]int{0: 2}
	hb.replayAll = true // the second stream starts again at 1
	conn := serve(t, p, servers{heartbeat: hb})
	w, err := watch.New(watch.Config{Heartbeat: conn, Backoff: fast})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := collect(t, w, 3, nil)
	if c := cursorsOf(got, watch.Heartbeat); !slices.Equal(c, []int64{1, 2, 3}) {
		t.Errorf("cursors %v, want 1, 2, 3", c)
	}
}

func TestResumeFromCursors(t *testing.T) {
	p := newTestTLS(t)
	hb := newLog(beats(1, 4)...)
	conn := serve(t, p, servers{heartbeat: hb})
	saved, err := watch.ParseCursors("heartbeat=2,registration=9")
	if err != nil {
		t.Fatal(err)
	}
	w, err := watch.New(watch.Config{Heartbeat: conn, After: saved, Backoff: fast})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := collect(t, w, 2, nil)
	if c := cursorsOf(got, watch.Heartbeat); !slices.Equal(c, []int64{3, 4}) {
		t.Errorf("cursors %v, want 3, 4", c)
	}
	if diff := cmp.Diff([]logRequest{{After: 2}}, hb.received()); diff != "" {
		t.Errorf("requests (-want +got):\n%s", diff)
	}
	// The registration cursor is kept, though not watched.
	if got := w.Cursors().String(); got != "heartbeat=4,registration=9" {
		t.Errorf("Cursors %q", got)
	}
	if saved[watch.Heartbeat] != 2 {
		t.Error("New kept a reference to Config.After")
	}
}

func TestHandlerErrorLeavesEventUndelivered(t *testing.T) {
	p := newTestTLS(t)
	hb := newLog(beats(1, 3)...)
	conn := serve(t, p, servers{heartbeat: hb})
	w, err := watch.New(watch.Config{Heartbeat: conn, Backoff: fast})
	if err != nil {
		t.Fatal(err)
	}
	errFull := errors.New("engine queue full")
	err = w.Run(t.Context(), func(e watch.Event) error {
		if e.Cursor == 2 {
			return errFull
		}
		return nil
	})
	if !errors.Is(err, errFull) {
		t.Fatalf("Run returned %v, want the handler's error", err)
	}
	if got := w.Cursors(); got[watch.Heartbeat] != 1 {
		t.Errorf("Cursors %v, want heartbeat=1", got)
	}
	// Running again resumes with the event the handler refused.
	got, _ := collect(t, w, 2, nil)
	if c := cursorsOf(got, watch.Heartbeat); !slices.Equal(c, []int64{2, 3}) {
		t.Errorf("second run cursors %v, want 2, 3", c)
	}
	if diff := cmp.Diff([]logRequest{{}, {After: 1}}, hb.received()); diff != "" {
		t.Errorf("requests (-want +got):\n%s", diff)
	}
}

func TestFromNow(t *testing.T) {
	p := newTestTLS(t)
	hb := newLog(beats(1, 3)...)
	hb.opened = make(chan int, 4)
	hb.breaks = map[int]int{0: 1}
	conn := serve(t, p, servers{heartbeat: hb})
	w, err := watch.New(watch.Config{Heartbeat: conn, FromNow: true, Backoff: fast})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		<-hb.opened // the stream started after cursor 3
		hb.add(beat(4, "n-1"), beat(5, "n-1"))
	}()
	got, _ := collect(t, w, 2, nil)
	if c := cursorsOf(got, watch.Heartbeat); !slices.Equal(c, []int64{4, 5}) {
		t.Errorf("cursors %v, want 4, 5", c)
	}
	// Once it has a cursor, the watch resumes after it, not from now.
	if diff := cmp.Diff([]logRequest{{FromNow: true}, {After: 4}}, hb.received()); diff != "" {
		t.Errorf("requests (-want +got):\n%s", diff)
	}
}

func TestOutOfRange(t *testing.T) {
	p := newTestTLS(t)
	for _, tc := range []struct {
		name  string
		after watch.Cursors
		err   error
		// breakAfter, when > 0, fails only the second stream, after the
		// first delivered this many events.
		breakAfter int
		want       watch.CursorError
		wantMsg    string
	}{
		{"behind retention", watch.Cursors{watch.Heartbeat: 3},
			rpcerr.CursorStatus(&eventlog.CursorError{Cursor: 3, Oldest: 7, DeletedThrough: 6, Newest: 8}).Err(), 0,
			watch.CursorError{Service: watch.Heartbeat, After: 3, Oldest: 7, Newest: 8},
			"watch heartbeat: events after cursor 3 are no longer kept; the oldest cursor available is 7"},
		{"ahead of the log", watch.Cursors{watch.Heartbeat: 30},
			rpcerr.CursorStatus(&eventlog.CursorError{Cursor: 30, Ahead: true, Oldest: 1, Newest: 12}).Err(), 0,
			watch.CursorError{Service: watch.Heartbeat, After: 30, Ahead: true, Oldest: 1, Newest: 12},
			"watch heartbeat: cursor 30 is ahead of the event log, whose newest cursor is 12"},
		{"no detail", nil,
			status.Error(codes.OutOfRange, "gone"), 0,
			watch.CursorError{Service: watch.Heartbeat, Oldest: -1, Newest: -1},
			"watch heartbeat: events after cursor 0 are no longer kept"},
		{"fell behind while reconnecting", nil,
			rpcerr.CursorStatus(&eventlog.CursorError{Cursor: 2, Oldest: 9, DeletedThrough: 8, Newest: 9}).Err(), 2,
			watch.CursorError{Service: watch.Heartbeat, After: 2, Oldest: 9, Newest: 9},
			"watch heartbeat: events after cursor 2 are no longer kept; the oldest cursor available is 9"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hb := newLog(beats(1, 3)...)
			hb.fail = func(n int) error {
				if tc.breakAfter > 0 && n == 0 {
					return nil
				}
				return tc.err
			}
			if tc.breakAfter > 0 {
				hb.breaks = map[int]int{0: tc.breakAfter}
			}
			conn := serve(t, p, servers{heartbeat: hb})
			w, err := watch.New(watch.Config{Heartbeat: conn, After: tc.after, Backoff: fast})
			if err != nil {
				t.Fatal(err)
			}
			err = w.Run(t.Context(), func(watch.Event) error { return nil })
			var ce *watch.CursorError
			if !errors.As(err, &ce) {
				t.Fatalf("Run returned %v, want a *CursorError", err)
			}
			if diff := cmp.Diff(tc.want, *ce, cmp.FilterPath(func(p cmp.Path) bool { return p.Last().String() == ".Err" }, cmp.Ignore())); diff != "" {
				t.Errorf("CursorError (-want +got):\n%s", diff)
			}
			if ce.Error() != tc.wantMsg {
				t.Errorf("message %q, want %q", ce.Error(), tc.wantMsg)
			}
			if status.Code(err) != codes.OutOfRange {
				t.Errorf("status code %v", status.Code(err))
			}
		})
	}
}

func TestServiceErrors(t *testing.T) {
	p := newTestTLS(t)
	denied := newLog[*berthv1.HealthEvent]()
	denied.fail = func(int) error {
		return status.Error(codes.PermissionDenied, "caller is not permitted to call this method")
	}
	// registration is not served at all: Unimplemented.
	conn := serve(t, p, servers{heartbeat: denied, bundles: newLog[*berthv1.LifecycleEvent]()})
	dead := dial(t, p, deadAddr(t))
	for _, tc := range []struct {
		name         string
		cfg          watch.Config
		wantService  watch.Service
		wantCode     codes.Code
		wantFailures int
	}{
		{"unimplemented", watch.Config{Registration: conn, Bundles: conn}, watch.Registration, codes.Unimplemented, 1},
		{"permission denied", watch.Config{Heartbeat: conn}, watch.Heartbeat, codes.PermissionDenied, 1},
		{"unreachable", watch.Config{Bundles: dead, MaxFailures: 3}, watch.Bundles, codes.Unavailable, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.Backoff = fast
			w, err := watch.New(tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			err = w.Run(t.Context(), func(watch.Event) error { return nil })
			var se *watch.ServiceError
			if !errors.As(err, &se) {
				t.Fatalf("Run returned %v, want a *ServiceError", err)
			}
			if se.Service != tc.wantService || status.Code(err) != tc.wantCode || se.Failures != tc.wantFailures {
				t.Errorf("got %s, %v, %d failures; want %s, %v, %d", se.Service, status.Code(err), se.Failures,
					tc.wantService, tc.wantCode, tc.wantFailures)
			}
			if !strings.HasPrefix(err.Error(), "watch "+string(tc.wantService)+": ") {
				t.Errorf("message %q does not name the service", err)
			}
		})
	}
	if n := len(denied.received()); n != 1 {
		t.Errorf("PermissionDenied was retried: %d requests", n)
	}
}

func TestFilters(t *testing.T) {
	p := newTestTLS(t)
	reg, bun, hb := newLog[*berthv1.LifecycleEvent](), newLog[*berthv1.LifecycleEvent](), newLog[*berthv1.HealthEvent]()
	reg.opened, hb.opened = make(chan int, 1), make(chan int, 1)
	conn := serve(t, p, servers{registration: reg, bundles: bun, heartbeat: hb})
	w, err := watch.New(watch.Config{
		Registration: conn, Bundles: conn, Heartbeat: conn, Backoff: fast,
		NodeIDs: []string{"n-1", "n-2"},
		Types:   []string{"suspect", "approved", "unreachable", "revoked", "approved"},
	})
	if err != nil {
		t.Fatal(err)
	}
	// No bundle event type is selected: the bundles log is not watched.
	if got := w.Services(); !slices.Equal(got, []watch.Service{watch.Registration, watch.Heartbeat}) {
		t.Errorf("Services() = %v", got)
	}
	ctx, cancel := context.WithCancel(t.Context())
	go func() {
		<-reg.opened
		<-hb.opened
		cancel()
	}()
	if err := w.Run(ctx, func(watch.Event) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Errorf("Run returned %v", err)
	}
	nodes := []string{"n-1", "n-2"}
	if diff := cmp.Diff([]logRequest{{NodeIDs: nodes, Types: []string{"approved", "revoked"}}}, reg.received()); diff != "" {
		t.Errorf("registration requests (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]logRequest{{NodeIDs: nodes, Types: []string{"HEALTH_EVENT_TYPE_SUSPECT", "HEALTH_EVENT_TYPE_UNREACHABLE"}}}, hb.received()); diff != "" {
		t.Errorf("heartbeat requests (-want +got):\n%s", diff)
	}
	if n := len(bun.received()); n != 0 {
		t.Errorf("bundles got %d requests", n)
	}
}

func TestNewRejects(t *testing.T) {
	p := newTestTLS(t)
	conn := dial(t, p, deadAddr(t))
	many := make([]string, watch.MaxNodeIDs+1)
	for i := range many {
		many[i] = fmt.Sprintf("n-%d", i)
	}
	for _, tc := range []struct {
		name string
		cfg  watch.Config
		want string
	}{
		{"no connection", watch.Config{}, watch.ErrNoServices.Error()},
		{"types of no connected service", watch.Config{Heartbeat: conn, Types: []string{"approved"}}, watch.ErrNoServices.Error()},
		{"unknown type", watch.Config{Heartbeat: conn, Types: []string{"healty"}}, `watch: unknown event type "healty"`},
		{"too many nodes", watch.Config{Heartbeat: conn, NodeIDs: many}, "watch: 101 node IDs; at most 100 may be watched"},
		{"empty node", watch.Config{Heartbeat: conn, NodeIDs: []string{""}}, "watch: empty node ID"},
		{"negative cursor", watch.Config{Heartbeat: conn, After: watch.Cursors{watch.Heartbeat: -1}}, "watch: negative cursor -1 of heartbeat"},
		{"unknown service cursor", watch.Config{Heartbeat: conn, After: watch.Cursors{"ca": 1}}, `watch: cursor of unknown service "ca" (want registration, bundles or heartbeat)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := watch.New(tc.cfg)
			if err == nil || err.Error() != tc.want {
				t.Errorf("New: %v, want %q", err, tc.want)
			}
		})
	}
}

func TestEventTypes(t *testing.T) {
	want := map[watch.Service][]string{
		// What the registration store appends (its conformance suite checks
		// every event it writes is in this list).
		watch.Registration: regstore.EventTypes(),
		watch.Bundles:      bundlestore.EventTypes(),
		watch.Heartbeat:    {"healthy", "suspect", "unreachable", "rebooted", "status_changed", "node_event", "settings_changed"},
	}
	for s, types := range want {
		if diff := cmp.Diff(types, watch.EventTypes(s), cmpopts.SortSlices(func(a, b string) bool { return a < b })); diff != "" {
			t.Errorf("EventTypes(%s) (-want +got):\n%s", s, diff)
		}
		for _, typ := range types {
			if got, ok := watch.ServiceOf(typ); !ok || got != s {
				t.Errorf("ServiceOf(%q) = %q, %v", typ, got, ok)
			}
		}
	}
}

func TestCursors(t *testing.T) {
	c := watch.Cursors{}
	c.Advance(watch.Event{Service: watch.Heartbeat, Cursor: 5})
	c.Advance(watch.Event{Service: watch.Heartbeat, Cursor: 3}) // never back
	c.Advance(watch.Event{Service: watch.Registration, Cursor: 12})
	if got := c.String(); got != "heartbeat=5,registration=12" {
		t.Errorf("String() = %q", got)
	}
	back, err := watch.ParseCursors(c.String())
	if err != nil || !cmp.Equal(c, back) {
		t.Errorf("ParseCursors(String()) = %v, %v", back, err)
	}
	js, err := json.Marshal(c)
	if err != nil || string(js) != `{"heartbeat":5,"registration":12}` {
		t.Errorf("JSON %s, %v", js, err)
	}
	var fromJSON watch.Cursors
	if err := json.Unmarshal(js, &fromJSON); err != nil || !cmp.Equal(c, fromJSON) {
		t.Errorf("from JSON %v, %v", fromJSON, err)
	}
	for _, bad := range []string{"heartbeat", "heartbeat=x", "heartbeat=-1", "ca=1", "heartbeat=1,heartbeat=2"} {
		if _, err := watch.ParseCursors(bad); err == nil {
			t.Errorf("ParseCursors(%q) accepted", bad)
		}
	}
}
