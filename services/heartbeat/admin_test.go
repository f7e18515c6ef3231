package heartbeat

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	grpcstatus "google.golang.org/grpc/status"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/berth-dev/berth/internal/rpc/rpcerr"
	"github.com/berth-dev/berth/internal/testutil/grpctest"
	"github.com/berth-dev/berth/internal/testutil/pgtest"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

func (e *env) flush(t *testing.T) {
	t.Helper()
	if err := e.svc.core.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestListNodeHealth(t *testing.T) {
	pgtest.OnEngines(t, func(t *testing.T, engine string) {
		e := newEnv(t, engine)
		ctx := context.Background()
		for i := range 5 {
			s, _ := open(t, e.node(t, fmt.Sprintf("node-%d", i)))
			s.beat()
		}
		e.flush(t)
		admin := e.admin(t)
		var ids []string
		var token string
		for page := 0; ; page++ {
			resp, err := admin.ListNodeHealth(ctx, &berthv1.ListNodeHealthRequest{PageSize: 2, PageToken: token})
			if err != nil {
				t.Fatal(err)
			}
			if resp.GetCursor() != 5 {
				t.Errorf("page %d: cursor %d, want 5 (the five healthy events)", page, resp.GetCursor())
			}
			for _, n := range resp.GetNodes() {
				ids = append(ids, n.GetNodeId())
			}
			if token = resp.GetNextPageToken(); token == "" {
				break
			}
		}
		diff := func(what string, want, got []string) {
			t.Helper()
			if strings.Join(want, ",") != strings.Join(got, ",") {
				t.Errorf("%s = %v, want %v", what, got, want)
			}
		}
		diff("pages", []string{"node-0", "node-1", "node-2", "node-3", "node-4"}, ids)

		resp, err := admin.ListNodeHealth(ctx, &berthv1.ListNodeHealthRequest{NodeIds: []string{"node-3", "node-1", "nobody"}})
		if err != nil {
			t.Fatal(err)
		}
		ids = nil
		for _, n := range resp.GetNodes() {
			ids = append(ids, n.GetNodeId())
		}
		diff("by node IDs", []string{"node-1", "node-3"}, ids)
		resp, err = admin.ListNodeHealth(ctx, &berthv1.ListNodeHealthRequest{State: berthv1.LivenessState_LIVENESS_STATE_SUSPECT})
		if err != nil || len(resp.GetNodes()) != 0 {
			t.Errorf("suspect nodes = %v, %v; want none", resp.GetNodes(), err)
		}

		for name, req := range map[string]*berthv1.ListNodeHealthRequest{
			"page size":  {PageSize: 1001},
			"negative":   {PageSize: -1},
			"state":      {State: 9},
			"node ID":    {NodeIds: []string{"Not_An_ID"}},
			"page token": {PageToken: "!!"},
		} {
			_, err := admin.ListNodeHealth(ctx, req)
			if grpcstatus.Code(err) != codes.InvalidArgument {
				t.Errorf("%s: %v, want InvalidArgument", name, err)
			}
		}
		for id, want := range map[string]codes.Code{"": codes.InvalidArgument, "UPPER": codes.InvalidArgument, "node-9": codes.NotFound} {
			_, err := admin.GetNodeHealth(ctx, &berthv1.GetNodeHealthRequest{NodeId: id})
			if grpcstatus.Code(err) != want {
				t.Errorf("GetNodeHealth(%q) = %v, want %v", id, err, want)
			}
		}
	})
}

// watcher reads a WatchHealth stream.
type watcher struct {
	t      *testing.T
	s      berthv1.HeartbeatAdminService_WatchHealthClient
	cancel context.CancelFunc
}

func (e *env) watch(t *testing.T, req *berthv1.WatchHealthRequest) *watcher {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	s, err := e.admin(t).WatchHealth(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	return &watcher{t: t, s: s, cancel: cancel}
}

func (w *watcher) next(n int) []*berthv1.HealthEvent {
	w.t.Helper()
	var out []*berthv1.HealthEvent
	for range n {
		resp, err := w.s.Recv()
		if err != nil {
			w.t.Fatalf("Recv after %d events: %v", len(out), err)
		}
		out = append(out, resp.GetEvent())
	}
	return out
}

func summary(evs []*berthv1.HealthEvent) []string {
	var out []string
	for _, e := range evs {
		s := fmt.Sprintf("%d %s %s", e.GetCursor(), e.GetNodeId(), strings.TrimPrefix(e.GetType().String(), "HEALTH_EVENT_TYPE_"))
		if e.GetKind() != "" {
			s += " " + e.GetKind()
		}
		out = append(out, s)
	}
	return out
}

func TestWatchHealth(t *testing.T) {
	pgtest.OnEngines(t, func(t *testing.T, engine string) {
		e := newEnv(t, engine)
		s, _ := open(t, e.node(t, "node-1"))
		s.beat(&berthv1.StatusEvent{Kind: "a"})
		e.flush(t)
		// Replay from the start, then follow a live event.
		w := e.watch(t, &berthv1.WatchHealthRequest{})
		got := summary(w.next(2))
		e.clock.Advance(2 * time.Second)
		s.beat(&berthv1.StatusEvent{Kind: "b", Message: "live"})
		e.flush(t)
		live := w.next(1)
		got = append(got, summary(live)...)
		want := []string{"1 node-1 HEALTHY", "2 node-1 NODE_EVENT a", "3 node-1 NODE_EVENT b"}
		if strings.Join(got, "|") != strings.Join(want, "|") {
			t.Fatalf("events = %q, want %q", got, want)
		}
		if ev := live[0]; ev.GetMessage() != "live" || ev.GetBootId() != "boot-1" || ev.GetStatus() != berthv1.ReportedStatus_REPORTED_STATUS_UP ||
			!ev.GetTime().AsTime().Equal(t0.Add(2*time.Second)) {
			t.Errorf("live event = %v", ev)
		}
		// Reconnect after the last cursor: only what came since.
		w.cancel()
		e.clock.Advance(2 * time.Second)
		s.beat(&berthv1.StatusEvent{Kind: "c"})
		e.flush(t)
		again := e.watch(t, &berthv1.WatchHealthRequest{AfterCursor: 3})
		if got := summary(again.next(1)); got[0] != "4 node-1 NODE_EVENT c" {
			t.Errorf("after reconnecting: %q", got)
		}
		// Filters.
		only := e.watch(t, &berthv1.WatchHealthRequest{Types: []berthv1.HealthEventType{berthv1.HealthEventType_HEALTH_EVENT_TYPE_HEALTHY}})
		if got := summary(only.next(1)); got[0] != "1 node-1 HEALTHY" {
			t.Errorf("filtered: %q", got)
		}

		for name, req := range map[string]*berthv1.WatchHealthRequest{
			"negative cursor":   {AfterCursor: -1},
			"cursor and now":    {AfterCursor: 1, FromNow: true},
			"node ID":           {NodeIds: []string{"-x"}},
			"unspecified type":  {Types: []berthv1.HealthEventType{0}},
			"unknown type":      {Types: []berthv1.HealthEventType{99}},
			"too many node IDs": {NodeIds: strings.Split(strings.Repeat("n,", 101), ",")[:101]},
		} {
			_, err := e.watch(t, req).s.Recv()
			if grpcstatus.Code(err) != codes.InvalidArgument {
				t.Errorf("%s: %v, want InvalidArgument", name, err)
			}
		}
	})
}

// TestWatchRetention: a cursor older than the oldest event kept is
// OutOfRange, and the message names the cursor to resume after.
func TestWatchRetention(t *testing.T) {
	pgtest.OnEngines(t, func(t *testing.T, engine string) {
		e := newEnv(t, engine)
		s, _ := open(t, e.node(t, "node-1"))
		s.beat(&berthv1.StatusEvent{Kind: "old"})
		e.flush(t)
		ctx := context.Background()
		if err := e.svc.core.Decide(ctx); err != nil {
			t.Fatal(err)
		}
		e.clock.Advance(8 * 24 * time.Hour) // past the default retention of 7 days
		s.beat(&berthv1.StatusEvent{Kind: "new"})
		e.flush(t)
		if err := e.svc.core.Decide(ctx); err != nil {
			t.Fatal(err)
		}
		_, err := e.watch(t, &berthv1.WatchHealthRequest{AfterCursor: 1}).s.Recv()
		if grpcstatus.Code(err) != codes.OutOfRange || !strings.Contains(err.Error(), "the oldest cursor available is 3") {
			t.Fatalf("watch after a deleted cursor: %v, want OutOfRange naming cursor 3", err)
		}
		wantCursorDetail(t, err, &berthv1.CursorOutOfRange{AfterCursor: 1, OldestCursor: 3, DeletedThrough: 2, NewestCursor: 3})
		if got := summary(e.watch(t, &berthv1.WatchHealthRequest{AfterCursor: 2}).next(1)); got[0] != "3 node-1 NODE_EVENT new" {
			t.Errorf("watch from the oldest cursor: %q", got)
		}
		_, err = e.watch(t, &berthv1.WatchHealthRequest{AfterCursor: 99}).s.Recv()
		if grpcstatus.Code(err) != codes.OutOfRange || !strings.Contains(err.Error(), "newest cursor is 3") {
			t.Fatalf("watch after a cursor ahead of the log: %v", err)
		}
		wantCursorDetail(t, err, &berthv1.CursorOutOfRange{AfterCursor: 99, Ahead: true, OldestCursor: 3, DeletedThrough: 2, NewestCursor: 3})
	})
}

// wantCursorDetail checks the typed detail that tells a client where it
// may resume.
func wantCursorDetail(t *testing.T, err error, want *berthv1.CursorOutOfRange) {
	t.Helper()
	for _, d := range grpcstatus.Convert(err).Details() {
		if got, ok := d.(*berthv1.CursorOutOfRange); ok {
			if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
				t.Errorf("CursorOutOfRange (-want +got):\n%s", diff)
			}
			return
		}
	}
	t.Errorf("%v carries no CursorOutOfRange detail", err)
}

// TestStoreUnavailable: when the database cannot serve, the admin reads
// say Unavailable, to be retried, never Internal.
func TestStoreUnavailable(t *testing.T) {
	down := grpctest.DatabaseDown(t)
	e := newEnvOn(t, pgtest.SQLite, false, func(c *Config) { c.Store = readsDown{Store: c.Store, err: down} })
	admin := e.admin(t)
	ctx := context.Background()
	_, err := admin.GetNodeHealth(ctx, &berthv1.GetNodeHealthRequest{NodeId: "node-1"})
	grpctest.WantStatus(t, err, codes.Unavailable, rpcerr.MsgDatabaseUnavailable)
	_, err = admin.ListNodeHealth(ctx, &berthv1.ListNodeHealthRequest{})
	grpctest.WantStatus(t, err, codes.Unavailable, rpcerr.MsgDatabaseUnavailable)
}
