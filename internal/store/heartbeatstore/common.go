package heartbeatstore

import (
	"cmp"
	"slices"
	"time"

	"github.com/berth-dev/berth/internal/eventlog"
)

// leaseName names the one lease in hb_lease.
const leaseName = "decider"

// events is the health event log's table.
var events = eventlog.NewTable("hb")

// utc normalises a time for storage: UTC, microsecond precision, which both
// backends can hold exactly.
func utc(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

func durationMicros(d time.Duration) int64 { return d.Microseconds() }

func fromDurationMicros(us int64) time.Duration { return time.Duration(us) * time.Microsecond }

// latestPerNode keeps the newest observation of each node (the last given
// wins a tie) and sorts them by node ID, so that concurrent writers lock
// rows in the same order.
func latestPerNode(obs []Observation) []Observation {
	byNode := make(map[string]int, len(obs))
	out := make([]Observation, 0, len(obs))
	for _, o := range obs {
		o.LastSeen = utc(o.LastSeen)
		if i, ok := byNode[o.NodeID]; ok {
			if !o.LastSeen.Before(out[i].LastSeen) {
				out[i] = o
			}
			continue
		}
		byNode[o.NodeID] = len(out)
		out = append(out, o)
	}
	slices.SortFunc(out, func(a, b Observation) int { return cmp.Compare(a.NodeID, b.NodeID) })
	return out
}

// healthyEvent is the event of a node found new (prior "") or not healthy.
func healthyEvent(nodeID string, at time.Time, bootID string, status Status, prior State) Event {
	return Event{Time: at, NodeID: nodeID, Type: EventHealthy, State: StateHealthy, PrevState: prior, BootID: bootID, Status: status}
}

func sortEventsByNode(evs []Event) {
	slices.SortStableFunc(evs, func(a, b Event) int { return cmp.Compare(a.NodeID, b.NodeID) })
}

// The details keys of a health event in the log.
const (
	keyState      = "state"
	keyPrevState  = "prev_state"
	keyBootID     = "boot_id"
	keyPrevBootID = "prev_boot_id"
	keyStatus     = "status"
	keyPrevStatus = "prev_status"
	keyKind       = "kind"
	keyMessage    = "message"
	keySeverity   = "severity"
	keyEventTime  = "event_time"
)

// entry is e as the log holds it; empty fields are left out.
func (e Event) entry() eventlog.Event {
	d := map[string]string{}
	for k, v := range map[string]string{
		keyState: string(e.State), keyPrevState: string(e.PrevState), keyBootID: e.BootID, keyPrevBootID: e.PrevBootID,
		keyStatus: string(e.Status), keyPrevStatus: string(e.PrevStatus), keyKind: e.Kind, keyMessage: e.Message,
		keySeverity: e.Severity, keyEventTime: formatEventTime(e.EventTime),
	} {
		if v != "" {
			d[k] = v
		}
	}
	return eventlog.Event{Type: string(e.Type), NodeID: e.NodeID, Time: e.Time, Details: d}
}

// EventOf reads a health event out of an entry of the log.
func EventOf(e eventlog.Event) Event {
	d := e.Details
	return Event{
		Cursor: e.Cursor, Time: e.Time, NodeID: e.NodeID, Type: EventType(e.Type),
		State: State(d[keyState]), PrevState: State(d[keyPrevState]),
		BootID: d[keyBootID], PrevBootID: d[keyPrevBootID],
		Status: Status(d[keyStatus]), PrevStatus: Status(d[keyPrevStatus]),
		Kind: d[keyKind], Message: d[keyMessage], Severity: d[keySeverity], EventTime: parseEventTime(d[keyEventTime]),
	}
}

func formatEventTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

func parseEventTime(s string) time.Time {
	t, _ := time.Parse(time.RFC3339Nano, s)
	return t
}

func entries(evs []Event) []eventlog.Event {
	out := make([]eventlog.Event, len(evs))
	for i, e := range evs {
		out[i] = e.entry()
	}
	return out
}
