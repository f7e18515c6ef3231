package bundles

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/berth-dev/berth/internal/revocation"
	"github.com/berth-dev/berth/internal/store/bundlestore"
	"github.com/berth-dev/berth/internal/testutil/pgtest"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

const (
	approved   = berthv1.BundleState_BUNDLE_STATE_APPROVED
	pending    = berthv1.BundleState_BUNDLE_STATE_PENDING
	superseded = berthv1.BundleState_BUNDLE_STATE_SUPERSEDED
	reset      = berthv1.BundleState_BUNDLE_STATE_RESET
)

func TestApprovalHold(t *testing.T) {
	pgtest.OnEngines(t, func(t *testing.T, engine string) {
		e := newEnv(t, engine, func(c *Config) { c.RequireApproval = true })
		a := e.newNode(t, "node-a", xwing)
		c, admin := e.nodeClient(t, a), e.admin(t)
		ctx := context.Background()

		v1 := e.adminConfig(t, a, "v1")
		if info := putAdmin(t, admin, "node-a", 0, v1); info.GetState() != approved {
			t.Fatalf("an administrator's write is %v, want approved at once", info.GetState())
		}
		v2 := e.config(t, a, "v2")
		info := putNode(t, c, 1, v2)
		if info.GetState() != pending || info.GetVersion() != 2 {
			t.Fatalf("node upload = %v, want version 2 pending", info)
		}
		// The node keeps getting the approved version while its upload waits.
		if got := getNode(t, c); !bytes.Equal(got.GetSealed(), v1) || got.GetInfo().GetVersion() != 1 {
			t.Errorf("GetBundle while pending = version %d", got.GetInfo().GetVersion())
		}
		// A second upload is refused, and changes nothing.
		before := e.history(t, "node-a")
		for _, expected := range []int64{1, 2} {
			_, err := c.PutBundle(ctx, &berthv1.PutBundleRequest{ExpectedVersion: expected, Sealed: e.config(t, a, "v3")})
			wantStatus(t, err, codes.FailedPrecondition, msgPendingExists)
		}
		if d := cmp.Diff(before, e.history(t, "node-a")); d != "" {
			t.Errorf("a refused upload changed the history (-before +after):\n%s", d)
		}
		gi, err := admin.GetBundleInfo(ctx, &berthv1.GetBundleInfoRequest{NodeId: "node-a"})
		if err != nil {
			t.Fatal(err)
		}
		if gi.GetCurrent().GetVersion() != 1 || gi.GetPending().GetVersion() != 2 || gi.GetPending().GetAuthor() != "node:node-a" {
			t.Errorf("GetBundleInfo = %v", gi)
		}

		// Approval errors.
		for _, tt := range []struct {
			version int64
			code    codes.Code
			msg     string
		}{
			{1, codes.OK, ""}, // the current version: a no-op
			{9, codes.NotFound, msgNoVersion},
			{0, codes.InvalidArgument, "version " + ruleVersion},
			{-2, codes.InvalidArgument, "version " + ruleVersion},
		} {
			_, err := admin.ApproveBundle(ctx, &berthv1.ApproveBundleRequest{NodeId: "node-a", Version: tt.version})
			if tt.code == codes.OK {
				wantCode(t, err, codes.OK)
				continue
			}
			wantStatus(t, err, tt.code, tt.msg)
		}
		if got := getNode(t, c); got.GetInfo().GetVersion() != 1 {
			t.Fatalf("approval errors changed the current version to %d", got.GetInfo().GetVersion())
		}

		ap, err := admin.ApproveBundle(ctx, &berthv1.ApproveBundleRequest{NodeId: "node-a", Version: 2})
		if err != nil {
			t.Fatalf("ApproveBundle: %v", err)
		}
		if ap.GetInfo().GetState() != approved || ap.GetInfo().GetVersion() != 2 {
			t.Errorf("ApproveBundle = %v", ap.GetInfo())
		}
		if got := getNode(t, c); !bytes.Equal(got.GetSealed(), v2) {
			t.Error("the node does not get the approved upload")
		}
		_, err = admin.ApproveBundle(ctx, &berthv1.ApproveBundleRequest{NodeId: "node-a", Version: 1})
		wantStatus(t, err, codes.FailedPrecondition, msgNotPending)
		// Uploads are accepted again.
		if info := putNode(t, c, 2, e.config(t, a, "v3")); info.GetVersion() != 3 || info.GetState() != pending {
			t.Errorf("next upload = %v", info)
		}
		// An administrator's write replaces the waiting upload.
		if info := putAdmin(t, admin, "node-a", 2, e.adminConfig(t, a, "v4")); info.GetVersion() != 4 || info.GetState() != approved {
			t.Errorf("admin write over a pending upload = %v", info)
		}
		want := []string{"4:approved:admin:admin", "3:superseded:node:node-a", "2:superseded:node:node-a", "1:superseded:admin:admin"}
		if d := cmp.Diff(want, e.history(t, "node-a")); d != "" {
			t.Errorf("history (-want +got):\n%s", d)
		}
	})
}

func TestFirstUploadHeld(t *testing.T) {
	pgtest.OnEngines(t, func(t *testing.T, engine string) {
		e := newEnv(t, engine, func(c *Config) { c.RequireApproval = true })
		a := e.newNode(t, "node-a", p256)
		c, admin := e.nodeClient(t, a), e.admin(t)
		putNode(t, c, 0, e.config(t, a, "v1"))
		_, err := c.GetBundle(context.Background(), &berthv1.GetBundleRequest{})
		wantStatus(t, err, codes.NotFound, msgNoBundle)
		_, err = admin.GetSealedBundle(context.Background(), &berthv1.GetSealedBundleRequest{NodeId: "node-a"})
		wantStatus(t, err, codes.NotFound, msgNoBundle)
		gi, err := admin.GetBundleInfo(context.Background(), &berthv1.GetBundleInfoRequest{NodeId: "node-a"})
		if err != nil || gi.GetCurrent() != nil || gi.GetPending().GetVersion() != 1 {
			t.Fatalf("GetBundleInfo = %v, %v; want only a pending version 1", gi, err)
		}
	})
}

func TestNodeAsksForApproval(t *testing.T) {
	pgtest.OnEngines(t, func(t *testing.T, engine string) {
		e := newEnv(t, engine, nil)
		a := e.newNode(t, "node-a", xwing)
		c := e.nodeClient(t, a)
		if info := putNode(t, c, 0, e.config(t, a, "v1")); info.GetState() != approved {
			t.Fatalf("upload = %v, want approved", info.GetState())
		}
		resp, err := c.PutBundle(context.Background(), &berthv1.PutBundleRequest{ExpectedVersion: 1, Sealed: e.config(t, a, "v2"), RequireApproval: true})
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetInfo().GetState() != pending {
			t.Errorf("upload asking for approval = %v, want pending", resp.GetInfo().GetState())
		}
	})
}

func TestApprovalPolicy(t *testing.T) {
	pgtest.OnEngines(t, func(t *testing.T, engine string) {
		var (
			mu    sync.Mutex
			asked []string
		)
		policyDown := errors.New("registration service unreachable")
		e := newEnv(t, engine, func(c *Config) {
			c.ApprovalRequired = func(_ context.Context, nodeID string) (bool, error) {
				mu.Lock()
				defer mu.Unlock()
				asked = append(asked, nodeID)
				switch nodeID {
				case "node-a":
					return true, nil
				case "node-c":
					return false, policyDown
				}
				return false, nil
			}
		})
		tests := []struct {
			node  string
			state berthv1.BundleState
			code  codes.Code
		}{
			{"node-a", pending, codes.OK},
			{"node-b", approved, codes.OK},
			{"node-c", 0, codes.Unavailable},
		}
		for _, tt := range tests {
			t.Run(tt.node, func(t *testing.T) {
				n := e.newNode(t, tt.node, p256)
				resp, err := e.nodeClient(t, n).PutBundle(context.Background(), &berthv1.PutBundleRequest{Sealed: e.config(t, n, "x")})
				if tt.code != codes.OK {
					wantStatus(t, err, tt.code, msgPolicyUnavailable)
					if h := e.history(t, tt.node); len(h) != 0 {
						t.Errorf("stored %v", h)
					}
					return
				}
				if err != nil || resp.GetInfo().GetState() != tt.state {
					t.Errorf("PutBundle = %v, %v; want %v", resp.GetInfo(), err, tt.state)
				}
			})
		}
		if d := cmp.Diff([]string{"node-a", "node-b", "node-c"}, asked); d != "" {
			t.Errorf("policy asked about (-want +got):\n%s", d)
		}
		if logs := e.logs.String(); !strings.Contains(logs, "registration service unreachable") || !strings.Contains(logs, "level=ERROR") {
			t.Error("the policy failure is not logged as an error")
		}
	})
}

func TestReset(t *testing.T) {
	pgtest.OnEngines(t, func(t *testing.T, engine string) {
		e := newEnv(t, engine, nil)
		a := e.newNode(t, "node-a", xwing)
		c, admin := e.nodeClient(t, a), e.admin(t)
		ctx := context.Background()
		putNode(t, c, 0, e.config(t, a, "v1"))
		e.clock.Advance(time.Minute)
		resp, err := admin.ResetBundle(ctx, &berthv1.ResetBundleRequest{NodeId: "node-a"})
		if err != nil {
			t.Fatalf("ResetBundle: %v", err)
		}
		want := &berthv1.BundleInfo{NodeId: "node-a", Version: 2, State: reset, Author: "admin:admin", CreatedAt: resp.GetInfo().GetCreatedAt()}
		if d := cmp.Diff(want, resp.GetInfo(), protocmp.Transform()); d != "" || !resp.GetInfo().GetCreatedAt().AsTime().Equal(e.clock.Now()) {
			t.Errorf("ResetBundle (-want +got):\n%s\ncreated at %v", d, resp.GetInfo().GetCreatedAt().AsTime())
		}
		// The node finds no bundle and configures itself again.
		_, err = c.GetBundle(ctx, &berthv1.GetBundleRequest{})
		wantStatus(t, err, codes.NotFound, msgNoBundle)
		_, err = admin.GetBundleInfo(ctx, &berthv1.GetBundleInfoRequest{NodeId: "node-a"})
		wantStatus(t, err, codes.NotFound, msgNoBundle)
		_, err = admin.ResetBundle(ctx, &berthv1.ResetBundleRequest{NodeId: "node-a"})
		wantStatus(t, err, codes.NotFound, msgNoBundle)
		_, err = c.PutBundle(ctx, &berthv1.PutBundleRequest{ExpectedVersion: 1, Sealed: e.config(t, a, "v3")})
		wantStatus(t, err, codes.FailedPrecondition, msgStale)
		if info := putNode(t, c, 0, e.config(t, a, "v3")); info.GetVersion() != 3 {
			t.Errorf("upload after reset = version %d, want 3", info.GetVersion())
		}

		h, err := admin.ListBundleHistory(ctx, &berthv1.ListBundleHistoryRequest{NodeId: "node-a"})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, v := range h.GetVersions() {
			got = append(got, v.GetState().String()+" by "+v.GetAuthor())
		}
		wantH := []string{"BUNDLE_STATE_APPROVED by node:node-a", "BUNDLE_STATE_RESET by admin:admin", "BUNDLE_STATE_SUPERSEDED by node:node-a"}
		if d := cmp.Diff(wantH, got); d != "" {
			t.Errorf("history (-want +got):\n%s", d)
		}
	})
}

func TestHistoryKeep(t *testing.T) {
	pgtest.OnEngines(t, func(t *testing.T, engine string) {
		e := newEnv(t, engine, func(c *Config) { c.Keep = 3 })
		a := e.newNode(t, "node-a", p256)
		c := e.nodeClient(t, a)
		for v := range int64(5) {
			putNode(t, c, v, e.config(t, a, "v"))
		}
		resp, err := e.admin(t).ListBundleHistory(context.Background(), &berthv1.ListBundleHistoryRequest{NodeId: "node-a"})
		if err != nil {
			t.Fatal(err)
		}
		var got []int64
		for _, v := range resp.GetVersions() {
			got = append(got, v.GetVersion())
			if v.GetSha256() == "" || v.GetSize() == 0 || v.GetKemId() != 0x0010 {
				t.Errorf("history entry %v lacks metadata", v)
			}
		}
		if d := cmp.Diff([]int64{5, 4, 3}, got); d != "" {
			t.Errorf("history versions (-want +got):\n%s", d)
		}
		if resp.GetVersions()[0].GetState() != approved || resp.GetVersions()[1].GetState() != superseded {
			t.Errorf("states = %v, %v", resp.GetVersions()[0].GetState(), resp.GetVersions()[1].GetState())
		}
		// A node without bundles has an empty history, not an error.
		resp, err = e.admin(t).ListBundleHistory(context.Background(), &berthv1.ListBundleHistoryRequest{NodeId: "node-z"})
		if err != nil || len(resp.GetVersions()) != 0 {
			t.Errorf("history of node-z = %v, %v", resp, err)
		}
	})
}

func TestRevoked(t *testing.T) {
	pgtest.OnEngines(t, func(t *testing.T, engine string) {
		var (
			mu     sync.Mutex
			serial = map[string]string{}
		)
		e := newEnv(t, engine, func(c *Config) {
			c.Revoked = func(_ context.Context, nodeID, s string) bool {
				mu.Lock()
				defer mu.Unlock()
				serial[nodeID] = s
				return nodeID == "node-a"
			}
		})
		a, b := e.newNode(t, "node-a", xwing), e.newNode(t, "node-b", xwing)
		putAdmin(t, e.admin(t), "node-a", 0, e.adminConfig(t, a, "v1"))
		ca := e.nodeClient(t, a)
		_, err := ca.GetBundle(context.Background(), &berthv1.GetBundleRequest{})
		wantStatus(t, err, codes.PermissionDenied, msgRevoked)
		_, err = ca.PutBundle(context.Background(), &berthv1.PutBundleRequest{ExpectedVersion: 1, Sealed: e.config(t, a, "v2")})
		wantStatus(t, err, codes.PermissionDenied, msgRevoked)
		if h := e.history(t, "node-a"); len(h) != 1 {
			t.Errorf("a revoked node changed its bundle: %v", h)
		}
		putNode(t, e.nodeClient(t, b), 0, e.config(t, b, "v1"))
		if serial["node-a"] != a.serial || serial["node-b"] != b.serial {
			t.Errorf("revocation hook saw serials %v, want node-a %s and node-b %s", serial, a.serial, b.serial)
		}
	})
}

func TestAdminValidation(t *testing.T) {
	pgtest.OnEngines(t, func(t *testing.T, engine string) {
		e := newEnv(t, engine, nil)
		admin := e.admin(t)
		ctx := context.Background()
		a := e.newNode(t, "node-a", p256)
		good := e.config(t, a, "x")
		for _, id := range []string{"", "Node-A", "node_a", "-a", "a/../b", strings.Repeat("a", 64), "node a"} {
			t.Run(id, func(t *testing.T) {
				calls := map[string]error{}
				_, calls["PutBundle"] = admin.PutBundle(ctx, &berthv1.BundleAdminServicePutBundleRequest{NodeId: id, Sealed: good})
				_, calls["GetBundleInfo"] = admin.GetBundleInfo(ctx, &berthv1.GetBundleInfoRequest{NodeId: id})
				_, calls["ListBundleHistory"] = admin.ListBundleHistory(ctx, &berthv1.ListBundleHistoryRequest{NodeId: id})
				_, calls["ApproveBundle"] = admin.ApproveBundle(ctx, &berthv1.ApproveBundleRequest{NodeId: id, Version: 1})
				_, calls["ResetBundle"] = admin.ResetBundle(ctx, &berthv1.ResetBundleRequest{NodeId: id})
				_, calls["GetSealedBundle"] = admin.GetSealedBundle(ctx, &berthv1.GetSealedBundleRequest{NodeId: id})
				_, calls["DeleteBundles"] = admin.DeleteBundles(ctx, &berthv1.DeleteBundlesRequest{NodeId: id})
				for name, err := range calls {
					t.Run(name, func(t *testing.T) { wantStatus(t, err, codes.InvalidArgument, "node_id "+ruleNodeID) })
				}
			})
		}
	})
}

func TestDeleteBundles(t *testing.T) {
	pgtest.OnEngines(t, func(t *testing.T, engine string) {
		e := newEnv(t, engine, nil)
		a, b := e.newNode(t, "node-a", xwing), e.newNode(t, "node-b", xwing)
		putNode(t, e.nodeClient(t, a), 0, e.config(t, a, "a"))
		putNode(t, e.nodeClient(t, b), 0, e.config(t, b, "b"))
		reg := e.adminClient(t, e.identities(t)["registration"])
		for range 2 {
			if _, err := reg.DeleteBundles(context.Background(), &berthv1.DeleteBundlesRequest{NodeId: "node-a"}); err != nil {
				t.Fatalf("DeleteBundles: %v", err)
			}
		}
		_, err := reg.GetSealedBundle(context.Background(), &berthv1.GetSealedBundleRequest{NodeId: "node-a"})
		wantStatus(t, err, codes.NotFound, msgNoBundle)
		if h := e.history(t, "node-a"); len(h) != 0 {
			t.Errorf("node-a history after delete = %v", h)
		}
		if h := e.history(t, "node-b"); len(h) != 1 {
			t.Errorf("node-b history after deleting node-a = %v", h)
		}
		// One event, by the caller; the second delete forgot nothing.
		evs := watchEvents(t, e.admin(t), &berthv1.LifecycleFilter{Types: []string{bundlestore.EventDeleted}}).next(t, 1)
		if evs[0].GetNodeId() != "node-a" || evs[0].GetDetails()["actor"] != "service:registration" {
			t.Errorf("deletion event %v, want node-a's by service:registration", evs[0])
		}
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		w, err := e.admin(t).WatchBundleEvents(ctx, &berthv1.WatchBundleEventsRequest{Filter: &berthv1.LifecycleFilter{AfterCursor: evs[0].GetCursor()}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.admin(t).ResetBundle(ctx, &berthv1.ResetBundleRequest{NodeId: "node-b"}); err != nil {
			t.Fatal(err)
		}
		if next, err := w.Recv(); err != nil || next.GetEvent().GetType() != bundlestore.EventReset {
			t.Errorf("the event after the deletion: %v, %v; want node-b's reset (no second deletion)", next, err)
		}
	})
}

// TestPutForRevokedNode: an administrator's bundle for a revoked node is
// refused with FailedPrecondition and stores nothing; while revocations are
// unknown it is Unavailable.
func TestPutForRevokedNode(t *testing.T) {
	pgtest.OnEngines(t, func(t *testing.T, engine string) {
		var known error
		e := newEnv(t, engine, func(c *Config) {
			c.NodeRevoked = func(_ context.Context, nodeID string) bool { return nodeID == "node-a" }
			c.RevocationsKnown = func() error { return known }
		})
		a, b := e.newNode(t, "node-a", xwing), e.newNode(t, "node-b", xwing)
		admin := e.admin(t)
		_, err := admin.PutBundle(context.Background(), &berthv1.BundleAdminServicePutBundleRequest{NodeId: "node-a", Sealed: e.adminConfig(t, a, "v1")})
		wantStatus(t, err, codes.FailedPrecondition, msgNodeRevoked)
		if h := e.history(t, "node-a"); len(h) != 0 {
			t.Errorf("a bundle for a revoked node was stored: %v", h)
		}
		putAdmin(t, admin, "node-b", 0, e.adminConfig(t, b, "v1"))
		known = revocation.ErrUnknown
		_, err = admin.PutBundle(context.Background(), &berthv1.BundleAdminServicePutBundleRequest{NodeId: "node-b", ExpectedVersion: 1, Sealed: e.adminConfig(t, b, "v2")})
		wantStatus(t, err, codes.Unavailable, msgRevocationUnknown)
	})
}
