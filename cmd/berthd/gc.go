package main

import (
	"runtime/debug"

	"github.com/berth-dev/berth/internal/config"
	"github.com/berth-dev/berth/internal/daemon"
)

// gcPercent is the garbage collector's target (GOGC) berthd serve sets for
// role when GOGC is not in its environment. The roles that answer calls
// allocate per call and keep little heap alive between them: at 200 the
// registration service spent less CPU per first registration in make
// bench, for more resident memory (issue 17). The heartbeat service keeps
// every connected node's stream, where the collector's headroom would be
// memory per node, so it (and role all, which holds it) keeps Go's 100.
func gcPercent(role string) int {
	switch role {
	case daemon.RoleHeartbeat, daemon.RoleAll:
		return 100
	}
	return 200
}

// setGCPercent applies gcPercent unless GOGC says otherwise.
func setGCPercent(role string, lookup config.Env) {
	if _, set := lookup("GOGC"); !set {
		debug.SetGCPercent(gcPercent(role))
	}
}
