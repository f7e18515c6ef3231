package bundles

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"

	"github.com/berth-dev/berth/internal/store/bundlestore"
	"github.com/berth-dev/berth/internal/testutil/grpctest"
	"github.com/berth-dev/berth/internal/testutil/pgtest"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// TestApprovalSetting: the stored approval policy overrides the
// configured default, for the next node upload, and "default" goes back
// to it; bad values change nothing.
func TestApprovalSetting(t *testing.T) {
	pgtest.OnEngines(t, func(t *testing.T, engine string) {
		e := newEnv(t, engine, nil) // default: auto
		a := e.newNode(t, "node-a", p256)
		c, admin := e.nodeClient(t, a), e.admin(t)
		ctx := t.Context()

		got, err := admin.GetBundleSettings(ctx, &berthv1.GetBundleSettingsRequest{})
		if s := got.GetSettings(); err != nil || s.GetApproval() != "auto" || s.GetDefaultApproval() != "auto" || s.GetApprovalSet() {
			t.Fatalf("GetBundleSettings = %v, %v; want the default, auto", s, err)
		}
		if info := putNode(t, c, 0, e.config(t, a, "v1")); info.GetState() != approved {
			t.Fatalf("upload under auto = %v", info.GetState())
		}

		set, err := admin.SetBundleSettings(ctx, &berthv1.SetBundleSettingsRequest{Approval: "required"})
		if s := set.GetSettings(); err != nil || s.GetApproval() != "required" || !s.GetApprovalSet() || s.GetUpdatedBy() != "admin:admin" ||
			!s.GetUpdatedAt().AsTime().Equal(e.clock.Now()) || s.GetDefaultApproval() != "auto" {
			t.Fatalf("SetBundleSettings(required) = %v, %v", s, err)
		}
		if info := putNode(t, c, 1, e.config(t, a, "v2")); info.GetState() != pending {
			t.Fatalf("upload after setting required = %v, want pending", info.GetState())
		}
		if _, err := admin.ApproveBundle(ctx, &berthv1.ApproveBundleRequest{NodeId: "node-a", Version: 2}); err != nil {
			t.Fatal(err)
		}

		for _, bad := range []string{"", "Required", "never", "auto "} {
			_, err := admin.SetBundleSettings(ctx, &berthv1.SetBundleSettingsRequest{Approval: bad})
			wantStatus(t, err, codes.InvalidArgument, "approval "+ruleApproval)
		}
		if got, _ := admin.GetBundleSettings(ctx, &berthv1.GetBundleSettingsRequest{}); got.GetSettings().GetApproval() != "required" {
			t.Errorf("refused values changed the policy: %v", got.GetSettings())
		}

		if _, err := admin.SetBundleSettings(ctx, &berthv1.SetBundleSettingsRequest{Approval: "default"}); err != nil {
			t.Fatal(err)
		}
		if info := putNode(t, c, 2, e.config(t, a, "v3")); info.GetState() != approved {
			t.Errorf("upload after going back to the default = %v, want approved", info.GetState())
		}
		// A node's own request for a hold still holds under auto.
		if _, err := admin.SetBundleSettings(ctx, &berthv1.SetBundleSettingsRequest{Approval: "auto"}); err != nil {
			t.Fatal(err)
		}
		resp, err := c.PutBundle(ctx, &berthv1.PutBundleRequest{ExpectedVersion: 3, Sealed: e.config(t, a, "v4"), RequireApproval: true})
		if err != nil || resp.GetInfo().GetState() != pending {
			t.Errorf("a node's hold under auto = %v, %v; want pending", resp.GetInfo(), err)
		}

		// Each change is an event naming the admin; the refused ones are not.
		evs := watchEvents(t, admin, &berthv1.LifecycleFilter{Types: []string{bundlestore.EventSettingsChanged}}).next(t, 3)
		var changes []string
		for _, ev := range evs {
			changes = append(changes, ev.GetNodeId()+"|"+ev.GetDetails()["approval"]+"|"+ev.GetDetails()["actor"])
		}
		if d := cmp.Diff([]string{"|required|admin:admin", "|default|admin:admin", "|auto|admin:admin"}, changes); d != "" {
			t.Errorf("settings events (-want +got):\n%s", d)
		}
	})
}

// TestApprovalSettingOverridesRequired: auto, stored, lifts the configured
// --bundle-require-approval for every node.
func TestApprovalSettingOverridesRequired(t *testing.T) {
	e := newEnv(t, pgtest.SQLite, func(c *Config) { c.RequireApproval = true })
	a := e.newNode(t, "node-a", p256)
	c, admin := e.nodeClient(t, a), e.admin(t)
	if got, _ := admin.GetBundleSettings(t.Context(), &berthv1.GetBundleSettingsRequest{}); got.GetSettings().GetApproval() != "required" {
		t.Fatalf("default = %v, want required", got.GetSettings())
	}
	if _, err := admin.SetBundleSettings(t.Context(), &berthv1.SetBundleSettingsRequest{Approval: "auto"}); err != nil {
		t.Fatal(err)
	}
	if info := putNode(t, c, 0, e.config(t, a, "v1")); info.GetState() != approved {
		t.Errorf("upload under a stored auto with --bundle-require-approval = %v, want approved", info.GetState())
	}
}

// policyDown is a store whose approval policy cannot be read: its
// database is not there.
type policyDown struct {
	bundlestore.Store
	err error
}

func (p policyDown) ApprovalPolicy(context.Context) (bundlestore.Policy, error) {
	return bundlestore.Policy{}, p.err
}

// TestApprovalSettingStoreDown: an upload whose policy cannot be read is
// refused as Unavailable (retried), never let through unheld; so is a
// read of the settings.
func TestApprovalSettingStoreDown(t *testing.T) {
	down := grpctest.DatabaseDown(t)
	e := newEnv(t, pgtest.SQLite, func(c *Config) { c.Store = policyDown{Store: c.Store, err: down} })
	a := e.newNode(t, "node-a", p256)
	_, err := e.nodeClient(t, a).PutBundle(t.Context(), &berthv1.PutBundleRequest{Sealed: e.config(t, a, "v1")})
	wantStatus(t, err, codes.Unavailable, msgPolicyUnavailable)
	if h := e.history(t, "node-a"); len(h) != 0 {
		t.Errorf("a refused upload was stored: %v", h)
	}
	_, err = e.admin(t).GetBundleSettings(t.Context(), &berthv1.GetBundleSettingsRequest{})
	wantCode(t, err, codes.Unavailable)
}
