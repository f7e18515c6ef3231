package hbstore

import (
	"cmp"
	"hash/fnv"
	"slices"
	"time"
)

// leaseName names the one lease in hb_lease.
const leaseName = "decider"

// defaultEventLimit bounds a ReadEvents page when the query does not.
const defaultEventLimit = 1000

// utc normalises a time for storage: UTC, microsecond precision, which both
// backends can hold exactly.
func utc(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

// micros and fromMicros are the SQLite time encoding.
func micros(t time.Time) int64 { return t.UnixMicro() }

func fromMicros(us int64) time.Time { return time.UnixMicro(us).UTC() }

func durationMicros(d time.Duration) int64 { return d.Microseconds() }

func fromDurationMicros(us int64) time.Duration { return time.Duration(us) * time.Microsecond }

// latestPerNode keeps the newest observation of each node (the last given
// wins a tie) and sorts them by node ID, so that concurrent flushes lock
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

// healthyEvent is the event of a flush that found a node new, suspect or
// unreachable.
func healthyEvent(nodeID string, at time.Time, bootID string, status Status, prior *string) Event {
	e := Event{Time: at, NodeID: nodeID, Type: EventHealthy, State: StateHealthy, BootID: bootID, Status: status}
	if prior != nil {
		e.PrevState = State(*prior)
	}
	return e
}

// silentEvent is the event of a node the decider found silent.
func silentEvent(nodeID string, at time.Time, to, from State, bootID string, status Status) Event {
	typ := EventSuspect
	if to == StateUnreachable {
		typ = EventUnreachable
	}
	return Event{Time: at, NodeID: nodeID, Type: typ, State: to, PrevState: from, BootID: bootID, Status: status}
}

func sortEventsByNode(evs []Event) {
	slices.SortStableFunc(evs, func(a, b Event) int { return cmp.Compare(a.NodeID, b.NodeID) })
}

// pageNext is where the read after a page starts; see EventPage.Next.
func pageNext(q EventQuery, limit int, evs []Event, head int64) int64 {
	if len(evs) == limit {
		return evs[len(evs)-1].Cursor
	}
	return max(q.After, head)
}

func eventLimit(q EventQuery) int {
	if q.Limit <= 0 {
		return defaultEventLimit
	}
	return q.Limit
}

// eventsLockKey is the pg_advisory_xact_lock key that serialises event
// appends. Keys live in one 64-bit space shared by every application on the
// server, so the name carries a berth prefix.
var eventsLockKey = func() int64 {
	h := fnv.New64a()
	h.Write([]byte("berth hb_events append"))
	return int64(h.Sum64())
}()

func nilIfEmpty[T any](s []T) []T {
	if len(s) == 0 {
		return nil
	}
	return s
}
