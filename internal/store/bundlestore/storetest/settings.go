package storetest

import (
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/eventlog"
	"github.com/berth-dev/berth/internal/store/bundlestore"
)

func testApprovalPolicy(t *testing.T, s bundlestore.Store) {
	ctx := t.Context()
	got, err := s.ApprovalPolicy(ctx)
	if err != nil || got != (bundlestore.Policy{}) {
		t.Fatalf("ApprovalPolicy of a new store = %+v, %v; want none", got, err)
	}
	for i, tt := range []struct {
		approval, actor string
	}{
		{"required", "admin:admin"},
		{"auto", "token:0123456789abcdef/ops"},
		{"required", "admin:other"},
	} {
		now := at(time.Duration(i) * time.Minute)
		var set bundlestore.Policy
		evs := newEvents(t, s, func() {
			var err error
			if set, err = s.SetApprovalPolicy(ctx, tt.approval, tt.actor, now); err != nil {
				t.Fatalf("SetApprovalPolicy(%s): %v", tt.approval, err)
			}
		})
		diff(t, "events of SetApprovalPolicy", []eventlog.Event{
			event(bundlestore.EventSettingsChanged, "", now, "approval", tt.approval, "actor", tt.actor)}, evs)
		want := bundlestore.Policy{Approval: tt.approval, UpdatedBy: tt.actor, UpdatedAt: stored(now)}
		diff(t, "SetApprovalPolicy", want, set)
		got, err := s.ApprovalPolicy(ctx)
		if err != nil {
			t.Fatal(err)
		}
		diff(t, "ApprovalPolicy", want, got)
	}
	before := logOf(t, s)
	for _, bad := range []string{"REQUIRED", "maybe", "default", " auto"} {
		if _, err := s.SetApprovalPolicy(ctx, bad, "admin:admin", t0); err == nil {
			t.Errorf("SetApprovalPolicy(%q) succeeded", bad)
		}
	}
	diff(t, "log after refused policies", before, logOf(t, s))
	if got, _ := s.ApprovalPolicy(ctx); got.Approval != "required" || got.UpdatedBy != "admin:other" {
		t.Errorf("refused values changed the policy: %+v", got)
	}
	evs := newEvents(t, s, func() {
		if _, err := s.SetApprovalPolicy(ctx, "", "admin:admin", at(time.Hour)); err != nil {
			t.Fatalf("clear: %v", err)
		}
	})
	diff(t, "events of clearing", []eventlog.Event{
		event(bundlestore.EventSettingsChanged, "", at(time.Hour), "approval", "default", "actor", "admin:admin")}, evs)
	if got, err := s.ApprovalPolicy(ctx); err != nil || got != (bundlestore.Policy{}) {
		t.Errorf("ApprovalPolicy after clearing = %+v, %v", got, err)
	}
	// Clearing what is not set is no error, and no change: no event.
	evs = newEvents(t, s, func() {
		if _, err := s.SetApprovalPolicy(ctx, "", "admin:admin", t0); err != nil {
			t.Errorf("clear twice: %v", err)
		}
	})
	diff(t, "events of clearing twice", []eventlog.Event(nil), evs)
}
