package main

import (
	"runtime/debug"
	"testing"

	"github.com/berth-dev/berth/internal/daemon"
)

// TestSetGCPercent: berthd serve raises the collector's target for the
// roles that answer calls, keeps Go's for the ones holding the heartbeat
// streams, and leaves it alone when GOGC is set.
func TestSetGCPercent(t *testing.T) {
	prev := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(prev) })
	unset := func(string) (string, bool) { return "", false }
	gogc := func(name string) (string, bool) { return "50", name == "GOGC" }
	for _, tt := range []struct {
		name, role string
		lookup     func(string) (string, bool)
		want       int
	}{
		{"registration", daemon.RoleRegistration, unset, 200},
		{"ca", daemon.RoleCA, unset, 200},
		{"bundles", daemon.RoleBundles, unset, 200},
		{"api", daemon.RoleAPI, unset, 200},
		{"heartbeat", daemon.RoleHeartbeat, unset, 100},
		{"all", daemon.RoleAll, unset, 100},
		{"registration with GOGC set", daemon.RoleRegistration, gogc, 77},
	} {
		debug.SetGCPercent(77)
		setGCPercent(tt.role, tt.lookup)
		if got := debug.SetGCPercent(77); got != tt.want {
			t.Errorf("%s: GC percent %d, want %d", tt.name, got, tt.want)
		}
	}
}
