package bundles

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/berth-dev/berth/internal/lifecycle"
	"github.com/berth-dev/berth/internal/testutil/pgtest"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// eventStream is an open WatchBundleEvents call.
type eventStream struct {
	s      berthv1.BundleAdminService_WatchBundleEventsClient
	cancel context.CancelFunc
}

// watchEvents opens a watch; the timeout only bounds a failing test.
func watchEvents(t *testing.T, c berthv1.BundleAdminServiceClient, f *berthv1.LifecycleFilter) *eventStream {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	s, err := c.WatchBundleEvents(ctx, &berthv1.WatchBundleEventsRequest{Filter: f})
	if err != nil {
		cancel()
		t.Fatalf("WatchBundleEvents: %v", err)
	}
	t.Cleanup(cancel)
	return &eventStream{s: s, cancel: cancel}
}

func (w *eventStream) next(t *testing.T, n int) []*berthv1.LifecycleEvent {
	t.Helper()
	var out []*berthv1.LifecycleEvent
	for len(out) < n {
		resp, err := w.s.Recv()
		if err != nil {
			t.Fatalf("Recv after %d of %d events: %v", len(out), n, err)
		}
		out = append(out, resp.GetEvent())
	}
	return out
}

func (w *eventStream) err(t *testing.T) error {
	t.Helper()
	for {
		if _, err := w.s.Recv(); err != nil {
			return err
		}
	}
}

// summary renders events as "type node version state author".
func summary(evs []*berthv1.LifecycleEvent) []string {
	var out []string
	for _, e := range evs {
		d := e.GetDetails()
		out = append(out, strings.TrimSpace(fmt.Sprintf("%s %s %s %s %s", e.GetType(), e.GetNodeId(), d["version"], d["state"], d["author"])))
	}
	return out
}

// bundleLife uploads, approves, overwrites, uploads again and resets
// node-a's bundle, with approval required for node uploads.
func bundleLife(t *testing.T, e *env) {
	t.Helper()
	a := e.newNode(t, "node-a", xwing)
	c, admin := e.nodeClient(t, a), e.admin(t)
	ctx := context.Background()
	putNode(t, c, 0, e.config(t, a, "v1"))
	e.clock.Advance(time.Minute)
	if _, err := admin.ApproveBundle(ctx, &berthv1.ApproveBundleRequest{NodeId: "node-a", Version: 1}); err != nil {
		t.Fatal(err)
	}
	// Approving again changes nothing, and records nothing.
	if _, err := admin.ApproveBundle(ctx, &berthv1.ApproveBundleRequest{NodeId: "node-a", Version: 1}); err != nil {
		t.Fatal(err)
	}
	putAdmin(t, admin, "node-a", 1, e.adminConfig(t, a, "v2"))
	putNode(t, c, 2, e.config(t, a, "v3"))
	// A refused upload records nothing.
	_, err := c.PutBundle(ctx, &berthv1.PutBundleRequest{ExpectedVersion: 2, Sealed: e.config(t, a, "v4")})
	wantCode(t, err, codes.FailedPrecondition)
	if _, err := admin.ResetBundle(ctx, &berthv1.ResetBundleRequest{NodeId: "node-a"}); err != nil {
		t.Fatal(err)
	}
}

var lifeSummary = []string{
	"bundle_updated node-a 1 pending node:node-a",
	"bundle_approved node-a 1  admin:admin",
	"bundle_updated node-a 2 approved admin:admin",
	"bundle_updated node-a 3 pending node:node-a",
	"bundle_reset node-a 4  admin:admin",
}

func TestWatchBundleEvents(t *testing.T) {
	pgtest.OnEngines(t, func(t *testing.T, engine string) {
		e := newEnv(t, engine, func(c *Config) { c.RequireApproval = true })
		admin := e.admin(t)
		live := watchEvents(t, admin, nil)
		bundleLife(t, e)
		evs := live.next(t, len(lifeSummary))
		if d := cmp.Diff(lifeSummary, summary(evs)); d != "" {
			t.Fatalf("events (-want +got):\n%s", d)
		}
		for i, ev := range evs {
			if i > 0 && ev.GetCursor() <= evs[i-1].GetCursor() {
				t.Errorf("cursor %d follows %d", ev.GetCursor(), evs[i-1].GetCursor())
			}
		}
		if got := evs[1].GetTime().AsTime(); !got.Equal(e.clock.Now()) {
			t.Errorf("approval time %v, want %v", got, e.clock.Now())
		}
		if evs[2].GetDetails()["dropped_pending"] != "" || evs[1].GetDetails()["previous_version"] != "" {
			t.Errorf("details of a first approval and a plain write: %v, %v", evs[1].GetDetails(), evs[2].GetDetails())
		}

		// Replay after a cursor.
		replay := watchEvents(t, admin, &berthv1.LifecycleFilter{AfterCursor: evs[2].GetCursor()}).next(t, 2)
		if d := cmp.Diff(evs[3:], replay, protocmp.Transform()); d != "" {
			t.Errorf("replay (-want +got):\n%s", d)
		}
		// Hang up, then watch again after the last cursor received.
		first := watchEvents(t, admin, nil)
		got := first.next(t, 2)
		first.cancel()
		again := watchEvents(t, admin, &berthv1.LifecycleFilter{AfterCursor: got[1].GetCursor()})
		got = append(got, again.next(t, 3)...)
		if d := cmp.Diff(evs, got, protocmp.Transform()); d != "" {
			t.Errorf("across a reconnect (-want +got):\n%s", d)
		}
		// Live again, and filtered.
		b := e.newNode(t, "node-b", xwing)
		filtered := watchEvents(t, admin, &berthv1.LifecycleFilter{NodeIds: []string{"node-b"}, Types: []string{"bundle_updated"}})
		putNode(t, e.nodeClient(t, b), 0, e.config(t, b, "b1"))
		want := []string{"bundle_updated node-b 1 pending node:node-b"}
		if d := cmp.Diff(want, summary(again.next(t, 1))); d != "" {
			t.Errorf("live after reconnecting (-want +got):\n%s", d)
		}
		if d := cmp.Diff(want, summary(filtered.next(t, 1))); d != "" {
			t.Errorf("filtered (-want +got):\n%s", d)
		}
	})
}

func TestWatchBundleEventsAuthorization(t *testing.T) {
	pgtest.OnEngines(t, func(t *testing.T, engine string) {
		e := newEnv(t, engine, nil)
		a := e.newNode(t, "node-a", xwing)
		putNode(t, e.nodeClient(t, a), 0, e.config(t, a, "v1"))
		for name, cert := range e.identities(t) {
			t.Run(name, func(t *testing.T) {
				w := watchEvents(t, e.adminClient(t, cert), nil)
				// The heartbeat service follows bundle events to tell
				// nodes of their new bundles, registration to drop the
				// bundles it keeps for Resume (rpc.Matrix).
				if name == "admin" || name == "heartbeat" || name == "registration" {
					w.next(t, 1)
					return
				}
				if err := w.err(t); status.Code(err) != codes.PermissionDenied && status.Code(err) != codes.Unauthenticated {
					t.Errorf("watch as %s: %v, want PermissionDenied", name, err)
				}
			})
		}
		t.Run("node", func(t *testing.T) {
			if err := watchEvents(t, e.adminClient(t, a.cert), nil).err(t); status.Code(err) != codes.PermissionDenied {
				t.Errorf("watch as a node: %v, want PermissionDenied", err)
			}
		})
	})
}

func TestWatchBundleEventsBadFilters(t *testing.T) {
	pgtest.OnEngines(t, func(t *testing.T, engine string) {
		e := newEnv(t, engine, nil)
		admin := e.admin(t)
		many := make([]string, 101)
		for i := range many {
			many[i] = fmt.Sprintf("node-%d", i)
		}
		tests := []struct {
			name string
			f    *berthv1.LifecycleFilter
		}{
			{"negative cursor", &berthv1.LifecycleFilter{AfterCursor: -5}},
			{"cursor and from_now", &berthv1.LifecycleFilter{AfterCursor: 3, FromNow: true}},
			{"bad node ID", &berthv1.LifecycleFilter{NodeIds: []string{"node_A"}}},
			{"too many nodes", &berthv1.LifecycleFilter{NodeIds: many}},
			{"unknown type", &berthv1.LifecycleFilter{Types: []string{"bundle_exploded"}}},
			{"another service's type", &berthv1.LifecycleFilter{Types: []string{"registered"}}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				if err := watchEvents(t, admin, tt.f).err(t); status.Code(err) != codes.InvalidArgument {
					t.Errorf("%v, want InvalidArgument", err)
				}
			})
		}
		a := e.newNode(t, "node-0", xwing)
		putNode(t, e.nodeClient(t, a), 0, e.config(t, a, "v1"))
		if got := watchEvents(t, admin, &berthv1.LifecycleFilter{NodeIds: many[:100]}).next(t, 1); got[0].GetNodeId() != "node-0" {
			t.Errorf("watch of 100 nodes: %v", got)
		}
	})
}

func TestWatchBundleEventsRetention(t *testing.T) {
	pgtest.OnEngines(t, func(t *testing.T, engine string) {
		e := newEnv(t, engine, func(c *Config) { c.EventRetention = time.Hour })
		admin := e.admin(t)
		a := e.newNode(t, "node-a", xwing)
		c := e.nodeClient(t, a)
		for v := range int64(3) {
			putNode(t, c, v, e.config(t, a, fmt.Sprint(v)))
		}
		if n, err := e.svc.PruneEvents(context.Background()); err != nil || n != 0 {
			t.Fatalf("PruneEvents within retention = %d, %v", n, err)
		}
		evs := watchEvents(t, admin, nil).next(t, 3)
		e.clock.Advance(2 * time.Hour)
		putNode(t, c, 3, e.config(t, a, "kept"))
		if n, err := e.svc.PruneEvents(context.Background()); err != nil || n != 3 {
			t.Fatalf("PruneEvents = %d, %v; want 3", n, err)
		}
		kept := watchEvents(t, admin, nil).next(t, 1)[0]
		err := watchEvents(t, admin, &berthv1.LifecycleFilter{AfterCursor: evs[0].GetCursor()}).err(t)
		wantStatus(t, err, codes.OutOfRange, fmt.Sprintf("after_cursor %d is older than the oldest event kept; the oldest cursor available is %d", evs[0].GetCursor(), kept.GetCursor()))
		err = watchEvents(t, admin, &berthv1.LifecycleFilter{AfterCursor: kept.GetCursor() + 1}).err(t)
		wantCode(t, err, codes.OutOfRange)
	})
}

func TestRunEndsWatches(t *testing.T) {
	pgtest.OnEngines(t, func(t *testing.T, engine string) {
		e := newEnv(t, engine, nil)
		a := e.newNode(t, "node-a", xwing)
		putNode(t, e.nodeClient(t, a), 0, e.config(t, a, "v1"))
		w := watchEvents(t, e.admin(t), nil)
		w.next(t, 1)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- e.svc.Run(ctx) }()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v", err)
		}
		if err := w.err(t); status.Code(err) != codes.Unavailable {
			t.Errorf("watch after Run ended: %v, want Unavailable", err)
		}
		if strings.Contains(e.logs.String(), "level=ERROR") {
			t.Errorf("a watch ended by shutdown logged an error:\n%s", e.logs.String())
		}
	})
}

// TestWatchBundleEventsStartHeader: the header says, before any event,
// after which cursor the watch sends events, so a cache that waits for it
// misses no change made afterwards.
func TestWatchBundleEventsStartHeader(t *testing.T) {
	pgtest.OnEngines(t, func(t *testing.T, engine string) {
		e := newEnv(t, engine, nil)
		admin := e.admin(t)
		a := e.newNode(t, "node-a", xwing)
		putNode(t, e.nodeClient(t, a), 0, e.config(t, a, "v1"))
		first := watchEvents(t, admin, nil).next(t, 1)[0]

		tests := []struct {
			name   string
			filter *berthv1.LifecycleFilter
			want   int64
		}{
			{"from now", &berthv1.LifecycleFilter{FromNow: true}, first.GetCursor()},
			{"after a cursor", &berthv1.LifecycleFilter{AfterCursor: first.GetCursor()}, first.GetCursor()},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				w := watchEvents(t, admin, tt.filter)
				md, err := w.s.Header()
				if err != nil {
					t.Fatalf("Header: %v", err)
				}
				if got := md.Get(lifecycle.StartHeader); len(got) != 1 || got[0] != strconv.FormatInt(tt.want, 10) {
					t.Fatalf("%s = %q, want [%d]", lifecycle.StartHeader, got, tt.want)
				}
			})
		}
	})
}
