package chaos

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/pki"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// entry is one event of any of berth's event logs (node lifecycle,
// bundles, health), with what the checks read.
type entry struct {
	cursor    int64
	node, typ string
	details   map[string]string
	// Health events: the liveness state after and before, and the boot
	// IDs (previous one for reboots only).
	state, prevState   berthv1.LivenessState
	bootID, prevBootID string
}

// eventLog is one service's event log, read as an engine does: a watch
// from a cursor, replaying then following.
type eventLog struct {
	name  string
	watch func(ctx context.Context, after int64) (recv func() (entry, error), err error)
}

func lifecycleEntry(ev *berthv1.LifecycleEvent) entry {
	return entry{cursor: ev.GetCursor(), node: ev.GetNodeId(), typ: ev.GetType(), details: ev.GetDetails()}
}

// The logs by name.
const (
	nodeLog   = "node"
	bundleLog = "bundle"
	healthLog = "health"
)

func (d *deployment) eventLogs() []eventLog {
	return []eventLog{
		{name: nodeLog, watch: func(ctx context.Context, after int64) (func() (entry, error), error) {
			s, err := d.nodesAdmin().WatchNodeEvents(ctx, &berthv1.WatchNodeEventsRequest{Filter: &berthv1.LifecycleFilter{AfterCursor: after}})
			if err != nil {
				return nil, err
			}
			return func() (entry, error) {
				r, err := s.Recv()
				return lifecycleEntry(r.GetEvent()), err
			}, nil
		}},
		{name: bundleLog, watch: func(ctx context.Context, after int64) (func() (entry, error), error) {
			c := berthv1.NewBundleAdminServiceClient(d.admin[pki.ServiceBundles])
			s, err := c.WatchBundleEvents(ctx, &berthv1.WatchBundleEventsRequest{Filter: &berthv1.LifecycleFilter{AfterCursor: after}})
			if err != nil {
				return nil, err
			}
			return func() (entry, error) {
				r, err := s.Recv()
				return lifecycleEntry(r.GetEvent()), err
			}, nil
		}},
		{name: healthLog, watch: func(ctx context.Context, after int64) (func() (entry, error), error) {
			c := berthv1.NewHeartbeatAdminServiceClient(d.admin[pki.ServiceHeartbeat])
			s, err := c.WatchHealth(ctx, &berthv1.WatchHealthRequest{AfterCursor: after})
			if err != nil {
				return nil, err
			}
			return func() (entry, error) {
				r, err := s.Recv()
				ev := r.GetEvent()
				return entry{cursor: ev.GetCursor(), node: ev.GetNodeId(), typ: ev.GetType().String(),
					state: ev.GetState(), prevState: ev.GetPreviousState(), bootID: ev.GetBootId(), prevBootID: ev.GetPreviousBootId()}, err
			}, nil
		}},
	}
}

// follower follows one log as an engine does: replay from the start,
// then live, resuming after its last cursor whenever the stream breaks (a
// replica killed, the database gone).
type follower struct {
	mu     sync.Mutex
	events []entry
	cancel context.CancelFunc
	done   chan struct{}
}

func follow(l eventLog) *follower {
	ctx, cancel := context.WithCancel(context.Background())
	f := &follower{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(f.done)
		for ctx.Err() == nil {
			recv, err := l.watch(ctx, f.last())
			if err != nil {
				time.Sleep(200 * time.Millisecond)
				continue
			}
			for {
				ev, err := recv()
				if err != nil {
					break
				}
				f.mu.Lock()
				f.events = append(f.events, ev)
				f.mu.Unlock()
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	return f
}

func (f *follower) stop() { f.cancel(); <-f.done }

// last is the cursor of the newest event received (0: none).
func (f *follower) last() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	if n := len(f.events); n > 0 {
		return f.events[n-1].cursor
	}
	return 0
}

func (f *follower) snapshot() []entry {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]entry(nil), f.events...)
}

// waitCaughtUp waits until the follower has every event the replay has.
func (f *follower) waitCaughtUp(replayed []entry) []entry {
	var newest int64
	for _, ev := range replayed {
		newest = max(newest, ev.cursor)
	}
	deadline := time.Now().Add(time.Minute)
	for f.last() < newest && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	return f.snapshot()
}

// replay reads a whole log afresh, at least through cursor atLeast (one
// the follower has seen, so it exists), and then until it has been quiet
// for a second: the health log never ends (the decider keeps finding
// silent nodes), and a loaded replica may pause for a second mid-log.
func replay(t *testing.T, l eventLog, atLeast int64) []entry {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	recv, err := l.watch(ctx, 0)
	if err != nil {
		t.Fatalf("replay the %s event log: %v", l.name, err)
	}
	got := make(chan entry)
	errc := make(chan error, 1)
	go func() {
		for {
			ev, err := recv()
			if err != nil {
				errc <- err
				return
			}
			select {
			case got <- ev:
			case <-ctx.Done():
				return
			}
		}
	}()
	var out []entry
	for {
		select {
		case ev := <-got:
			out = append(out, ev)
			if ev.cursor >= atLeast {
				atLeast = 0 // reached: quiet may end it now
			}
		case err := <-errc:
			if !errors.Is(err, io.EOF) && ctx.Err() == nil {
				t.Fatalf("replay the %s event log: %v", l.name, err)
			}
			return out
		case <-time.After(time.Second):
			if atLeast == 0 {
				return out
			}
		}
	}
}

// watchedLog is one log as the fault matrix follows it across faults.
type watchedLog struct {
	eventLog
	fol *follower
	// holes are the cursors a replay lacked below its newest one. On
	// PostgreSQL a cursor is an identity column: an append whose
	// transaction rolled back (the database went away, the disk filled,
	// a conflict) used its value, and a restart after a crash skips up to
	// the sequence's logged-ahead values, so holes are expected. What the
	// log guarantees (eventlog: appends hold the log's lock until commit,
	// so cursors are handed out in commit order) is that a hole is never
	// filled: an event appearing later in one would be lost to every
	// follower already past it.
	holes map[int64]bool
	// checked is the newest cursor an earlier row checked: each row
	// counts the problems of the events after it.
	checked int64
}

func (d *deployment) watchLogs() []*watchedLog {
	var ws []*watchedLog
	for _, l := range d.eventLogs() {
		ws = append(ws, &watchedLog{eventLog: l, fol: follow(l), holes: map[int64]bool{}})
	}
	return ws
}

func stopLogs(ws []*watchedLog) {
	for _, w := range ws {
		w.fol.stop()
	}
}

// logRow is what one row checks of one log: the events after since are
// the row's storm's (and whatever else happened meanwhile).
type logRow struct {
	log      *watchedLog
	since    int64
	replayed []entry
}

// startRow notes where each log stands before a row's storm.
func startRow(ws []*watchedLog) []*logRow {
	var rows []*logRow
	for _, w := range ws {
		rows = append(rows, &logRow{log: w, since: w.fol.last()})
	}
	return rows
}

// checkLogs replays every log after a row's storm and checks it: cursor
// order, holes never filled, the follower's view, and what each node's
// events must say.
func (o *outcome) checkLogs(t *testing.T, rows []*logRow, f *fleet) {
	t.Helper()
	for _, r := range rows {
		r.replayed = replay(t, r.log.eventLog, r.log.fol.last())
		followed := r.log.fol.waitCaughtUp(r.replayed)
		o.checkCursors(r, followed)
		switch r.log.name {
		case nodeLog:
			o.checkNodeEvents(f, r.replayed)
		case bundleLog:
			o.checkBundleEvents(r)
		case healthLog:
			o.checkHealthEvents(f, r)
		}
		for _, ev := range r.replayed {
			r.log.checked = max(r.log.checked, ev.cursor)
		}
	}
}

// lost and dup count a log's problems in the row.
func (o *outcome) lost(log string, n int, format string, args ...any) {
	o.lostEvents += n
	o.lostByLog[log] += n
	o.problem(log+" log: "+format, args...)
}

func (o *outcome) dup(log string, n int, format string, args ...any) {
	o.dupEvents += n
	o.dupByLog[log] += n
	o.problem(log+" log: "+format, args...)
}

// checkCursors: the replay is in strictly increasing cursor order, each
// cursor once; no event sits in a hole an earlier replay saw; the
// follower, resuming through every fault, got each cursor once, in order,
// and none the replay has below its newest is missing from it. New holes
// are counted (expected on PostgreSQL, see watchedLog) and remembered.
func (o *outcome) checkCursors(r *logRow, followed []entry) {
	w, name := r.log, r.log.name
	var prev int64
	seen := map[int64]bool{}
	for _, ev := range r.replayed {
		c := ev.cursor
		switch {
		case seen[c]:
			o.dup(name, 1, "cursor %d twice in the replayed log", c)
		case c <= prev:
			o.dup(name, 1, "cursor %d after %d in the replayed log", c, prev)
		case w.holes[c]:
			o.lost(name, 1, "cursor %d appeared in a hole an earlier replay saw: followers past it never get it", c)
		}
		if c > prev+1 && prev > 0 {
			for h := prev + 1; h < c; h++ {
				if !w.holes[h] && h > w.checked {
					w.holes[h] = true
					o.holes++
					o.holesByLog[name]++
				}
			}
		}
		seen[c] = true
		prev = max(prev, c)
	}
	got := map[int64]bool{}
	last := r.since
	for _, ev := range followed {
		c := ev.cursor
		if c <= r.since && !got[c] {
			continue
		}
		if got[c] || c <= last {
			o.dup(name, 1, "the follower got cursor %d again (after %d)", c, last)
		}
		got[c] = true
		last = max(last, c)
	}
	for c := range seen {
		if c > r.since && c <= last && !got[c] {
			o.lost(name, 1, "the follower never got cursor %d", c)
		}
	}
}

// sortedIDs returns the fleet's node IDs in order, for stable reports.
func (f *fleet) sortedIDs() []string {
	ids := make([]string, 0, len(f.nodes))
	for id := range f.nodes {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// checkNodeEvents: each of the row's nodes registered once, had its first
// certificate recorded once (certificate_issued) and each other one once
// (certificate_renewed), as its certificates_issued counts them.
func (o *outcome) checkNodeEvents(f *fleet, replayed []entry) {
	byNode := map[string]map[string]int{}
	for _, ev := range replayed {
		if f.nodes[ev.node] == nil {
			continue
		}
		if byNode[ev.node] == nil {
			byNode[ev.node] = map[string]int{}
		}
		byNode[ev.node][ev.typ]++
	}
	for _, id := range f.sortedIDs() {
		issued := int(f.nodes[id].GetCertificatesIssued())
		types := byNode[id]
		for _, c := range []struct {
			typ  string
			want int
		}{
			{"registered", 1},
			{"certificate_issued", min(issued, 1)},
			{"certificate_renewed", max(issued-1, 0)},
		} {
			switch got := types[c.typ]; {
			case got < c.want:
				o.lost(nodeLog, c.want-got, "node %s: %d %s events, want %d", id, got, c.typ, c.want)
			case got > c.want:
				o.dup(nodeLog, got-c.want, "node %s: %d %s events, want %d", id, got, c.typ, c.want)
			}
		}
	}
}

// checkBundleEvents: no node has one bundle version recorded twice.
func (o *outcome) checkBundleEvents(r *logRow) {
	type key struct{ node, typ, version string }
	first := map[key]int64{}
	for _, ev := range r.replayed {
		k := key{ev.node, ev.typ, ev.details["version"]}
		if at, ok := first[k]; ok && ev.cursor > r.log.checked {
			o.dup(bundleLog, 1, "node %s: %s of version %s at cursors %d and %d", ev.node, ev.typ, k.version, at, ev.cursor)
			continue
		}
		first[k] = ev.cursor
	}
}

// checkHealthEvents follows each node's transitions through the whole
// health log: each state event must leave the state the previous one
// entered (none before the first beat), and each reboot the boot the
// previous one entered. One that enters the state (or boot) the node was
// already in is a duplicate; one that starts from another is a sign of a
// lost one between. Only the events after the last row's are counted.
// Then the row's storm: a registration storm's nodes beat for the first
// time, once each; a resume storm's reboot once each, into this run's
// boot (every berth-loadgen run has boot IDs of its own).
func (o *outcome) checkHealthEvents(f *fleet, r *logRow) {
	type node struct {
		state           berthv1.LivenessState
		boot            string
		firstBeats      int
		rebootsInRow    int
		firstBeatsInRow int
	}
	nodes := map[string]*node{}
	for _, ev := range r.replayed {
		n := nodes[ev.node]
		if n == nil {
			n = &node{}
			nodes[ev.node] = n
		}
		counted := ev.cursor > r.log.checked
		inRow := ev.cursor > r.since
		switch ev.typ {
		case berthv1.HealthEventType_HEALTH_EVENT_TYPE_HEALTHY.String(),
			berthv1.HealthEventType_HEALTH_EVENT_TYPE_SUSPECT.String(),
			berthv1.HealthEventType_HEALTH_EVENT_TYPE_UNREACHABLE.String():
			switch {
			case !counted:
			case ev.prevState == berthv1.LivenessState_LIVENESS_STATE_UNSPECIFIED && n.firstBeats > 0:
				o.dup(healthLog, 1, "node %s: a first beat again at cursor %d", ev.node, ev.cursor)
			case ev.state == n.state:
				o.dup(healthLog, 1, "node %s: %s at cursor %d, already %s", ev.node, ev.typ, ev.cursor, n.state)
			case ev.prevState != n.state:
				o.lost(healthLog, 1, "node %s: %s at cursor %d from %s, but the log left it %s", ev.node, ev.typ, ev.cursor, ev.prevState, n.state)
			}
			n.state = ev.state
			if ev.prevState == berthv1.LivenessState_LIVENESS_STATE_UNSPECIFIED {
				n.firstBeats++
				n.boot = ev.bootID
				if inRow {
					n.firstBeatsInRow++
				}
			}
		case berthv1.HealthEventType_HEALTH_EVENT_TYPE_REBOOTED.String():
			switch {
			case !counted:
			case ev.bootID == n.boot:
				o.dup(healthLog, 1, "node %s: rebooted into %s at cursor %d, its boot already", ev.node, ev.bootID, ev.cursor)
			case ev.prevBootID != n.boot:
				o.lost(healthLog, 1, "node %s: rebooted from %s at cursor %d, but the log left it in %s", ev.node, ev.prevBootID, ev.cursor, n.boot)
			}
			n.boot = ev.bootID
			if inRow {
				n.rebootsInRow++
			}
		}
	}
	for _, id := range f.sortedIDs() {
		n := nodes[id]
		if n == nil {
			n = &node{}
		}
		got, want, what := n.rebootsInRow, 1, "reboots in the resume storm"
		if o.storm == "register" {
			got, what = n.firstBeatsInRow, "first beats in the registration storm"
		}
		switch {
		case got > want:
			o.dup(healthLog, got-want, "node %s: %d %s, want %d", id, got, what, want)
		case got < want && o.gaveUp == 0:
			// Every boot ends with an acknowledged beat, committed
			// with its transition before the acknowledgement.
			o.lost(healthLog, want-got, "node %s: %d %s, want %d", id, got, what, want)
		}
		if o.storm == "register" && n.rebootsInRow > 0 {
			o.dup(healthLog, n.rebootsInRow, "node %s: %d reboots in its registration storm, want none", id, n.rebootsInRow)
		}
	}
}

// logSummary is the row's lost and duplicated events by log, for the
// matrix ("node 0/0 health 1/0").
func (o *outcome) logSummary() string { return o.byLog(o.lostByLog, o.dupByLog) }

// holeSummary is the row's new cursor holes by log ("node 0 health 12").
func (o *outcome) holeSummary() string { return o.byLog(o.holesByLog) }

func (o *outcome) byLog(counts ...map[string]int) string {
	s := ""
	for _, l := range []string{nodeLog, bundleLog, healthLog} {
		if s != "" {
			s += " "
		}
		s += l
		for i, c := range counts {
			sep := " "
			if i > 0 {
				sep = "/"
			}
			s += fmt.Sprintf("%s%d", sep, c[l])
		}
	}
	return s
}
