package registration

import (
	"context"
	"crypto/tls"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/berth-dev/berth/internal/pki"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

const uuidW = "4c4c4544-0042-3510-8051-b2c04f4e4d99"

// eventStream is an open WatchNodeEvents call.
type eventStream struct {
	s      berthv1.NodeAdminService_WatchNodeEventsClient
	cancel context.CancelFunc
}

// watchEvents opens a watch as conn's identity; the timeout only bounds a
// failing test.
func watchEvents(t *testing.T, conn *grpc.ClientConn, f *berthv1.LifecycleFilter) *eventStream {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	s, err := berthv1.NewNodeAdminServiceClient(conn).WatchNodeEvents(ctx, &berthv1.WatchNodeEventsRequest{Filter: f})
	if err != nil {
		cancel()
		t.Fatalf("WatchNodeEvents: %v", err)
	}
	w := &eventStream{s: s, cancel: cancel}
	t.Cleanup(cancel)
	return w
}

// next receives n events about nodes, skipping administrators' events of
// no node (the token_created of the token each registration here makes).
func (w *eventStream) next(t *testing.T, n int) []*berthv1.LifecycleEvent {
	t.Helper()
	var out []*berthv1.LifecycleEvent
	for len(out) < n {
		if e := w.nextAny(t); e.GetNodeId() != "" {
			out = append(out, e)
		}
	}
	return out
}

// nextAny receives the next event, whatever it is about.
func (w *eventStream) nextAny(t *testing.T) *berthv1.LifecycleEvent {
	t.Helper()
	resp, err := w.s.Recv()
	if err != nil {
		t.Fatalf("Recv: %v", err)
	}
	return resp.GetEvent()
}

// err receives until the stream fails and returns the error.
func (w *eventStream) err(t *testing.T) error {
	t.Helper()
	for {
		if _, err := w.s.Recv(); err != nil {
			return err
		}
	}
}

func eventTypes(evs []*berthv1.LifecycleEvent) []string {
	var out []string
	for _, e := range evs {
		out = append(out, e.GetType())
	}
	return out
}

// walkLifecycle walks one node through registration, approval, its first
// certificate, a renewal, revocation and deletion, and returns its ID and
// the serials of its two certificates.
func walkLifecycle(t *testing.T, e *env) (id string, serials [2]string) {
	t.Helper()
	ctx := context.Background()
	admin := e.adminClient()
	n := e.newNode(uuidW)
	creds := e.register(t, n, false)
	id = creds.GetNodeId()
	if _, err := admin.ApproveNode(ctx, &berthv1.ApproveNodeRequest{Id: id}); err != nil {
		t.Fatal(err)
	}
	res, err := n.client().Resume(ctx, &berthv1.ResumeRequest{})
	if err != nil {
		t.Fatal(err)
	}
	first := leafOf(t, res.GetCredentials())
	e.clock.Advance(first.NotAfter.Sub(first.NotBefore) * 3 / 4) // inside the renewal window
	renewed, err := n.client().Renew(ctx, &berthv1.RenewRequest{})
	if err != nil || !renewed.GetCredentials().GetRenewed() {
		t.Fatalf("Renew: renewed %v, %v", renewed.GetCredentials().GetRenewed(), err)
	}
	second := leafOf(t, renewed.GetCredentials())
	if _, err := admin.RevokeNode(ctx, &berthv1.RevokeNodeRequest{Id: id, Reason: "test"}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.DeleteNode(ctx, &berthv1.DeleteNodeRequest{Id: id}); err != nil {
		t.Fatal(err)
	}
	return id, [2]string{first.SerialNumber.Text(16), second.SerialNumber.Text(16)}
}

var lifecycleTypes = []string{"registered", "approved", "certificate_issued", "certificate_renewed", "revoked", "deleted"}

// TestWatchNodeEvents follows a node's whole life live, then replays it
// from a cursor, across a reconnect, and filtered.
func TestWatchNodeEvents(t *testing.T) {
	backends(t, func(t *testing.T, e *env) {
		live := watchEvents(t, e.admin, nil)
		id, serials := walkLifecycle(t, e)
		evs := live.next(t, len(lifecycleTypes))
		if d := cmp.Diff(lifecycleTypes, eventTypes(evs)); d != "" {
			t.Fatalf("event types (-want +got):\n%s", d)
		}
		for i, ev := range evs {
			if ev.GetNodeId() != id {
				t.Errorf("event %d is about %q, want %q", i, ev.GetNodeId(), id)
			}
			if i > 0 && ev.GetCursor() <= evs[i-1].GetCursor() {
				t.Errorf("cursor %d follows %d", ev.GetCursor(), evs[i-1].GetCursor())
			}
			if ev.GetTime() == nil || ev.GetTime().AsTime().After(e.clock.Now()) {
				t.Errorf("event %d time %v", i, ev.GetTime())
			}
		}
		checkDetails(t, evs, serials)

		// Replay after a cursor: the same events, byte for byte.
		replay := watchEvents(t, e.admin, &berthv1.LifecycleFilter{AfterCursor: evs[1].GetCursor()}).next(t, 4)
		if d := cmp.Diff(evs[2:], replay, protocmp.Transform()); d != "" {
			t.Errorf("replay (-want +got):\n%s", d)
		}

		// Hang up after three events and watch again after the last cursor
		// received: the rest, nothing twice, then new events live.
		first := watchEvents(t, e.admin, nil)
		got := first.next(t, 3)
		first.cancel()
		again := watchEvents(t, e.admin, &berthv1.LifecycleFilter{AfterCursor: got[2].GetCursor()})
		got = append(got, again.next(t, 3)...)
		if d := cmp.Diff(evs, got, protocmp.Transform()); d != "" {
			t.Errorf("across a reconnect (-want +got):\n%s", d)
		}
		other := e.register(t, e.newNode(uuidA), true)
		next := again.next(t, 2)
		if d := cmp.Diff([]string{"registered", "certificate_issued"}, eventTypes(next)); d != "" || next[0].GetNodeId() != other.GetNodeId() {
			t.Errorf("live after reconnecting: %v (-want +got):\n%s", next, d)
		}

		// Filters, on replay and live alike.
		byNode := watchEvents(t, e.admin, &berthv1.LifecycleFilter{NodeIds: []string{id}, Types: []string{"revoked", "deleted"}})
		if d := cmp.Diff([]string{"revoked", "deleted"}, eventTypes(byNode.next(t, 2))); d != "" {
			t.Errorf("filtered (-want +got):\n%s", d)
		}
		byType := watchEvents(t, e.admin, &berthv1.LifecycleFilter{Types: []string{"registered"}})
		if got := byType.next(t, 2); got[0].GetNodeId() != id || got[1].GetNodeId() != other.GetNodeId() {
			t.Errorf("registered events: %v", got)
		}
		if _, err := e.adminClient().RejectNode(context.Background(), &berthv1.RejectNodeRequest{Id: other.GetNodeId()}); status.Code(err) != codes.FailedPrecondition {
			t.Fatalf("reject approved node: %v", err)
		}
		if _, err := e.adminClient().RevokeNode(context.Background(), &berthv1.RevokeNodeRequest{Id: other.GetNodeId()}); err != nil {
			t.Fatal(err)
		}
		if got := again.next(t, 1); got[0].GetType() != "revoked" || got[0].GetNodeId() != other.GetNodeId() {
			t.Errorf("after a refused change, next event = %v, want the revocation", got[0])
		}
	})
}

func checkDetails(t *testing.T, evs []*berthv1.LifecycleEvent, serials [2]string) {
	t.Helper()
	d := func(i int) map[string]string { return evs[i].GetDetails() }
	if d(0)["status"] != "pending" || d(0)["token"] == "" || d(0)["hostname"] == "" {
		t.Errorf("registered details %v", d(0))
	}
	if d(1)["previous_status"] != "pending" || !strings.HasPrefix(d(1)["actor"], "admin:") {
		t.Errorf("approved details %v", d(1))
	}
	if d(2)["serial"] != serials[0] || d(2)["not_after"] == "" || d(2)["previous_serial"] != "" {
		t.Errorf("first certificate details %v, want serial %s", d(2), serials[0])
	}
	if _, err := time.Parse(time.RFC3339, d(2)["not_after"]); err != nil {
		t.Errorf("not_after: %v", err)
	}
	if d(3)["serial"] != serials[1] || d(3)["previous_serial"] != serials[0] {
		t.Errorf("renewal details %v, want serial %s after %s", d(3), serials[1], serials[0])
	}
	if d(4)["previous_status"] != "approved" || !strings.HasPrefix(d(4)["actor"], "admin:") {
		t.Errorf("revoked details %v", d(4))
	}
	if !strings.HasPrefix(d(5)["actor"], "admin:") {
		t.Errorf("deleted details %v", d(5))
	}
}

func TestWatchNodeEventsAuthorization(t *testing.T) {
	e := newEnv(t, sqliteBackend)
	n := e.newNode(uuidA)
	creds := e.register(t, n, true)
	nodeConn := e.dial(tls.Certificate{Certificate: creds.GetCertificateChain(), PrivateKey: n.key})
	bundlesCert, err := e.layout.ServiceCertificate(pki.ServiceBundles)
	if err != nil {
		t.Fatal(err)
	}
	for name, conn := range map[string]*grpc.ClientConn{
		"node":            nodeConn,
		"bundles service": e.dial(bundlesCert),
	} {
		t.Run(name, func(t *testing.T) {
			if err := watchEvents(t, conn, nil).err(t); status.Code(err) != codes.PermissionDenied {
				t.Errorf("watch as %s: %v, want PermissionDenied", name, err)
			}
		})
	}
	if got := watchEvents(t, e.admin, nil).next(t, 1); got[0].GetType() != "registered" {
		t.Errorf("admin watch: %v", got)
	}
}

func TestWatchNodeEventsBadFilters(t *testing.T) {
	e := newEnv(t, sqliteBackend)
	many := make([]string, 101)
	for i := range many {
		many[i] = fmt.Sprintf("n%d", i)
	}
	tests := []struct {
		name string
		f    *berthv1.LifecycleFilter
	}{
		{"negative cursor", &berthv1.LifecycleFilter{AfterCursor: -1}},
		{"cursor and from_now", &berthv1.LifecycleFilter{AfterCursor: 1, FromNow: true}},
		{"bad node ID", &berthv1.LifecycleFilter{NodeIds: []string{"Not/A-Node"}}},
		{"empty node ID", &berthv1.LifecycleFilter{NodeIds: []string{""}}},
		{"too many nodes", &berthv1.LifecycleFilter{NodeIds: many}},
		{"unknown type", &berthv1.LifecycleFilter{Types: []string{"registered", "exploded"}}},
		{"another service's type", &berthv1.LifecycleFilter{Types: []string{"bundle_updated"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := watchEvents(t, e.admin, tt.f).err(t); status.Code(err) != codes.InvalidArgument {
				t.Errorf("%v, want InvalidArgument", err)
			}
		})
	}
	// At the limit is fine.
	id := e.register(t, e.newNode(uuidA), false).GetNodeId()
	got := watchEvents(t, e.admin, &berthv1.LifecycleFilter{NodeIds: append(many[:99:99], id)}).next(t, 1)
	if got[0].GetNodeId() != id {
		t.Errorf("watch of 100 nodes: %v", got)
	}
}

// TestWatchNodeEventsRetention prunes with the service's retention period:
// a cursor before the oldest event kept is OutOfRange, naming it.
func TestWatchNodeEventsRetention(t *testing.T) {
	backends(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		walkLifecycle(t, e)
		evs := watchEvents(t, e.admin, nil).next(t, len(lifecycleTypes))
		// Every event is now past retention (the renewal alone may have
		// moved the clock further).
		e.clock.Advance(DefaultEventRetention + time.Hour)
		kept := e.register(t, e.newNode(uuidA), false) // two new events, kept: its token's and its registration
		// Pruned: the node's life and the token_created of its token.
		if n, err := e.svc.PruneEvents(ctx); err != nil || n != int64(len(evs)+1) {
			t.Fatalf("PruneEvents = %d, %v; want %d", n, err, len(evs)+1)
		}
		w := watchEvents(t, e.admin, nil)
		newest, registered := w.nextAny(t), w.nextAny(t)
		if newest.GetType() != "token_created" || registered.GetType() != "registered" || registered.GetNodeId() != kept.GetNodeId() {
			t.Fatalf("events kept: %v, %v", newest, registered)
		}

		err := watchEvents(t, e.admin, &berthv1.LifecycleFilter{AfterCursor: evs[2].GetCursor()}).err(t)
		want := fmt.Sprintf("after_cursor %d is older than the oldest event kept; the oldest cursor available is %d", evs[2].GetCursor(), newest.GetCursor())
		if status.Code(err) != codes.OutOfRange || status.Convert(err).Message() != want {
			t.Errorf("stale cursor: %v, want OutOfRange %q", err, want)
		}
		err = watchEvents(t, e.admin, &berthv1.LifecycleFilter{AfterCursor: newest.GetCursor() + 100}).err(t)
		if status.Code(err) != codes.OutOfRange {
			t.Errorf("cursor ahead of the log: %v, want OutOfRange", err)
		}
		// The newest cursor deleted is still a valid place to resume.
		got := watchEvents(t, e.admin, &berthv1.LifecycleFilter{AfterCursor: evs[len(evs)-1].GetCursor()}).nextAny(t)
		if got.GetCursor() != newest.GetCursor() {
			t.Errorf("resume at the watermark: %v", got)
		}
	})
}

// TestRunEndsWatches: when Run's context ends, watches end Unavailable and
// Run returns.
func TestRunEndsWatches(t *testing.T) {
	e := newEnv(t, sqliteBackend)
	e.register(t, e.newNode(uuidA), false)
	if n, err := e.svc.PruneEvents(context.Background()); err != nil || n != 0 {
		t.Fatalf("PruneEvents of a fresh event = %d, %v; want 0", n, err)
	}
	w := watchEvents(t, e.admin, nil)
	w.next(t, 1) // the watch is running
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
	if err := watchEvents(t, e.admin, nil).err(t); status.Code(err) != codes.Unavailable {
		t.Errorf("new watch after Run ended: %v, want Unavailable", err)
	}
}
