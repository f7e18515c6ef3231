package chaos

import (
	"testing"

	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// TestLogChecks: the matrix's event log checks find what they are for,
// and nothing in a log that is right, holes included.
func TestLogChecks(t *testing.T) {
	const (
		healthy     = berthv1.LivenessState_LIVENESS_STATE_HEALTHY
		suspect     = berthv1.LivenessState_LIVENESS_STATE_SUSPECT
		unreachable = berthv1.LivenessState_LIVENESS_STATE_UNREACHABLE
		none        = berthv1.LivenessState_LIVENESS_STATE_UNSPECIFIED
	)
	typ := func(s berthv1.LivenessState) string {
		return map[berthv1.LivenessState]string{
			healthy:     berthv1.HealthEventType_HEALTH_EVENT_TYPE_HEALTHY.String(),
			suspect:     berthv1.HealthEventType_HEALTH_EVENT_TYPE_SUSPECT.String(),
			unreachable: berthv1.HealthEventType_HEALTH_EVENT_TYPE_UNREACHABLE.String(),
		}[s]
	}
	state := func(c int64, node string, from, to berthv1.LivenessState, boot string) entry {
		return entry{cursor: c, node: node, typ: typ(to), state: to, prevState: from, bootID: boot}
	}
	reboot := func(c int64, node, from, to string) entry {
		return entry{cursor: c, node: node, typ: berthv1.HealthEventType_HEALTH_EVENT_TYPE_REBOOTED.String(), bootID: to, prevBootID: from}
	}
	fl := &fleet{nodes: map[string]*berthv1.Node{"a": {Id: "a"}, "b": {Id: "b"}}}
	tests := []struct {
		name      string
		storm     string
		earlier   []int64 // holes an earlier replay saw
		since     int64
		replayed  []entry
		followed  []entry // nil: the replay
		lost, dup int
		holes     int
	}{
		{name: "first beats, with a hole", storm: "register", replayed: []entry{
			state(1, "a", none, healthy, "a1"), state(3, "b", none, healthy, "b1"),
		}, holes: 1},
		{name: "silence and a resume", storm: "storm", since: 2, replayed: []entry{
			state(1, "a", none, healthy, "a1"), state(2, "b", none, healthy, "b1"),
			state(3, "a", healthy, suspect, ""), state(4, "a", suspect, unreachable, ""),
			state(5, "a", unreachable, healthy, "a2"), reboot(6, "a", "a1", "a2"), reboot(7, "b", "b1", "b2"),
		}},
		{name: "a transition recorded twice", storm: "register", replayed: []entry{
			state(1, "a", none, healthy, "a1"), state(2, "b", none, healthy, "b1"),
			state(3, "a", healthy, suspect, ""), state(4, "a", healthy, suspect, ""),
		}, dup: 1},
		{name: "a transition lost", storm: "register", replayed: []entry{
			state(1, "a", none, healthy, "a1"), state(2, "b", none, healthy, "b1"),
			state(3, "a", suspect, unreachable, ""),
		}, lost: 1},
		{name: "a first beat twice", storm: "register", replayed: []entry{
			state(1, "a", none, healthy, "a1"), state(2, "b", none, healthy, "b1"), state(3, "a", none, healthy, "a1"),
		}, dup: 2}, // again in the log, and twice in the storm
		{name: "a first beat missing", storm: "register", replayed: []entry{state(1, "a", none, healthy, "a1")}, lost: 1},
		{name: "a reboot twice", storm: "storm", since: 2, replayed: []entry{
			state(1, "a", none, healthy, "a1"), state(2, "b", none, healthy, "b1"),
			reboot(3, "a", "a1", "a2"), reboot(4, "b", "b1", "b2"), reboot(5, "a", "a1", "a2"),
		}, dup: 2},
		{name: "a reboot missing", storm: "storm", since: 2, replayed: []entry{
			state(1, "a", none, healthy, "a1"), state(2, "b", none, healthy, "b1"), reboot(3, "a", "a1", "a2"),
		}, lost: 1},
		{name: "a cursor twice", storm: "register", replayed: []entry{
			state(1, "a", none, healthy, "a1"), state(2, "b", none, healthy, "b1"), {cursor: 2, node: "x", typ: "other"},
		}, followed: []entry{{cursor: 1}, {cursor: 2}}, dup: 1},
		{name: "a hole filled later", storm: "register", earlier: []int64{2}, replayed: []entry{
			state(1, "a", none, healthy, "a1"), {cursor: 2, node: "x", typ: "other"}, state(3, "b", none, healthy, "b1"),
		}, lost: 1},
		{name: "the follower missed one", storm: "register", replayed: []entry{
			state(1, "a", none, healthy, "a1"), state(2, "b", none, healthy, "b1"), {cursor: 3, node: "x", typ: "other"},
		}, followed: []entry{{cursor: 1}, {cursor: 3}}, lost: 1},
		{name: "the follower got one twice", storm: "register", replayed: []entry{
			state(1, "a", none, healthy, "a1"), state(2, "b", none, healthy, "b1"),
		}, followed: []entry{{cursor: 1}, {cursor: 2}, {cursor: 2}}, dup: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := &watchedLog{eventLog: eventLog{name: healthLog}, holes: map[int64]bool{}}
			for _, h := range tt.earlier {
				w.holes[h] = true
			}
			o := &outcome{storm: tt.storm, lostByLog: map[string]int{}, dupByLog: map[string]int{}, holesByLog: map[string]int{}}
			r := &logRow{log: w, since: tt.since, replayed: tt.replayed}
			followed := tt.followed
			if followed == nil {
				followed = tt.replayed
			}
			o.checkCursors(r, followed)
			o.checkHealthEvents(fl, r)
			if o.lostEvents != tt.lost || o.dupEvents != tt.dup || o.holes != tt.holes {
				t.Errorf("lost %d, duplicated %d, holes %d; want %d, %d, %d (%v)", o.lostEvents, o.dupEvents, o.holes, tt.lost, tt.dup, tt.holes, o.problems)
			}
		})
	}
}

// TestNodeLogChecks: each node registered once, its first certificate
// recorded as certificate_issued once.
func TestNodeLogChecks(t *testing.T) {
	fl := &fleet{nodes: map[string]*berthv1.Node{"a": {Id: "a", CertificatesIssued: 1}}}
	ev := func(typ string) entry { return entry{node: "a", typ: typ} }
	tests := []struct {
		name      string
		replayed  []entry
		lost, dup int
	}{
		{"once each", []entry{ev("registered"), ev("certificate_issued")}, 0, 0},
		{"registered twice", []entry{ev("registered"), ev("registered"), ev("certificate_issued")}, 0, 1},
		{"first certificate as a renewal", []entry{ev("registered"), ev("certificate_renewed")}, 1, 1},
		{"no certificate event", []entry{ev("registered")}, 1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := &outcome{lostByLog: map[string]int{}, dupByLog: map[string]int{}}
			o.checkNodeEvents(fl, tt.replayed)
			if o.lostEvents != tt.lost || o.dupEvents != tt.dup {
				t.Errorf("lost %d, duplicated %d; want %d, %d (%v)", o.lostEvents, o.dupEvents, tt.lost, tt.dup, o.problems)
			}
		})
	}
}
