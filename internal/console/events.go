package console

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/berth-dev/berth/client/watch"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// The three event logs the console follows, each with its own cursor.
const (
	logNode   = "node"   // registration's lifecycle log
	logHealth = "health" // the heartbeat service's health log
	logBundle = "bundle" // the bundle store's lifecycle log
)

var allLogs = []string{logNode, logHealth, logBundle}

// Event types by log, as the Events page's filter offers them: every type
// each service sends, so that a new one needs no change here.
var (
	nodeTypes   = watch.EventTypes(watch.Registration)
	healthTypes = watch.EventTypes(watch.Heartbeat)
	bundleTypes = watch.EventTypes(watch.Bundles)
)

// logOf returns the log an event type belongs to.
func logOf(typ string) string {
	switch {
	case slices.Contains(nodeTypes, typ):
		return logNode
	case slices.Contains(healthTypes, typ):
		return logHealth
	case slices.Contains(bundleTypes, typ):
		return logBundle
	}
	return ""
}

// event is one event of any log, as pages and the stream show it.
type event struct {
	Log     string            `json:"log"`
	Cursor  int64             `json:"cursor"`
	Type    string            `json:"type"`
	NodeID  string            `json:"node_id"`
	Time    time.Time         `json:"time"`
	State   string            `json:"state,omitempty"`
	Prev    string            `json:"previous_state,omitempty"`
	Status  string            `json:"status,omitempty"`
	Text    string            `json:"text"`
	Details map[string]string `json:"details,omitempty"`
}

func lifecycleEvent(log string, e *berthv1.LifecycleEvent) event {
	ev := event{Log: log, Cursor: e.GetCursor(), Type: e.GetType(), NodeID: e.GetNodeId(), Time: e.GetTime().AsTime(), Details: e.GetDetails()}
	var parts []string
	for _, k := range slices.Sorted(mapsKeys(e.GetDetails())) {
		parts = append(parts, k+"="+e.GetDetails()[k])
	}
	ev.Text = strings.Join(parts, " ")
	return ev
}

func healthEvent(e *berthv1.HealthEvent) event {
	typ := strings.ToLower(strings.TrimPrefix(e.GetType().String(), "HEALTH_EVENT_TYPE_"))
	ev := event{Log: logHealth, Cursor: e.GetCursor(), Type: typ, NodeID: e.GetNodeId(), Time: e.GetTime().AsTime(),
		State: liveness(e.GetState()), Status: reportedStatus(e.GetStatus())}
	if e.GetPreviousState() != berthv1.LivenessState_LIVENESS_STATE_UNSPECIFIED {
		ev.Prev = liveness(e.GetPreviousState())
	}
	switch e.GetType() {
	case berthv1.HealthEventType_HEALTH_EVENT_TYPE_NODE_EVENT:
		ev.Text = fmt.Sprintf("%s [%s] %s", e.GetKind(), e.GetSeverity(), e.GetMessage())
	case berthv1.HealthEventType_HEALTH_EVENT_TYPE_STATUS_CHANGED:
		ev.Text = fmt.Sprintf("reported %s (was %s)", reportedStatus(e.GetStatus()), reportedStatus(e.GetPreviousStatus()))
	case berthv1.HealthEventType_HEALTH_EVENT_TYPE_REBOOTED:
		ev.Text = fmt.Sprintf("boot %s (was %s)", e.GetBootId(), e.GetPreviousBootId())
	default:
		ev.Text = "now " + ev.State
		if ev.Prev != "" {
			ev.Text += " (was " + ev.Prev + ")"
		}
	}
	return ev
}

func mapsKeys(m map[string]string) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// eventFilter selects events: of some nodes, of some types, after
// cursors.
type eventFilter struct {
	Node  string
	Type  string
	After map[string]int64 // per log; absent: from now
}

// logs are the logs the filter needs.
func (f eventFilter) logs() []string {
	if f.Type != "" {
		return []string{logOf(f.Type)}
	}
	return allLogs
}

// watcher is one open watch of one log.
type watcher interface {
	recv() (event, error)
}

type lifecycleWatcher struct {
	log string
	rx  interface {
		Recv() (*berthv1.LifecycleEvent, error)
	}
}

func (w lifecycleWatcher) recv() (event, error) {
	e, err := w.rx.Recv()
	if err != nil {
		return event{}, err
	}
	return lifecycleEvent(w.log, e), nil
}

type nodeRx struct {
	berthv1.NodeAdminService_WatchNodeEventsClient
}

func (r nodeRx) Recv() (*berthv1.LifecycleEvent, error) {
	m, err := r.NodeAdminService_WatchNodeEventsClient.Recv()
	return m.GetEvent(), err
}

type bundleRx struct {
	berthv1.BundleAdminService_WatchBundleEventsClient
}

func (r bundleRx) Recv() (*berthv1.LifecycleEvent, error) {
	m, err := r.BundleAdminService_WatchBundleEventsClient.Recv()
	return m.GetEvent(), err
}

type healthWatcher struct {
	rx berthv1.HeartbeatAdminService_WatchHealthClient
}

func (w healthWatcher) recv() (event, error) {
	m, err := w.rx.Recv()
	if err != nil {
		return event{}, err
	}
	return healthEvent(m.GetEvent()), nil
}

// watch opens one log's watch; ctx must carry the principal.
func (a api) watch(ctx context.Context, log string, f eventFilter) (watcher, error) {
	after, ok := f.After[log]
	var nodes, types []string
	if f.Node != "" {
		nodes = []string{f.Node}
	}
	if f.Type != "" {
		types = []string{f.Type}
	}
	lf := &berthv1.LifecycleFilter{AfterCursor: after, FromNow: !ok, NodeIds: nodes, Types: types}
	switch log {
	case logNode:
		rx, err := a.nodes.WatchNodeEvents(ctx, &berthv1.WatchNodeEventsRequest{Filter: lf})
		return lifecycleWatcher{log: logNode, rx: nodeRx{rx}}, err
	case logBundle:
		rx, err := a.bundles.WatchBundleEvents(ctx, &berthv1.WatchBundleEventsRequest{Filter: lf})
		return lifecycleWatcher{log: logBundle, rx: bundleRx{rx}}, err
	}
	req := &berthv1.WatchHealthRequest{AfterCursor: after, FromNow: !ok, NodeIds: nodes}
	if f.Type != "" {
		req.Types = []berthv1.HealthEventType{berthv1.HealthEventType(berthv1.HealthEventType_value["HEALTH_EVENT_TYPE_"+strings.ToUpper(f.Type)])}
	}
	rx, err := a.health.WatchHealth(ctx, req)
	return healthWatcher{rx: rx}, err
}

// newest returns a log's newest cursor: a watch after the largest cursor
// is refused with OutOfRange naming it (berth.v1.CursorOutOfRange).
func (a api) newest(ctx context.Context, log string) (int64, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w, err := a.watch(ctx, log, eventFilter{After: map[string]int64{log: math.MaxInt64}})
	if err == nil {
		_, err = w.recv()
	}
	st := status.Convert(err)
	if st.Code() == codes.OutOfRange {
		for _, d := range st.Details() {
			if c, ok := d.(*berthv1.CursorOutOfRange); ok {
				return c.GetNewestCursor(), nil
			}
		}
	}
	if err == nil {
		err = errors.New("watch after the largest cursor returned an event")
	}
	return 0, err
}

// Bounds of a page's replay of past events.
const (
	replayMax   = 100
	replayIdle  = 300 * time.Millisecond
	replayTotal = 3 * time.Second
)

// recent returns a log's latest events matching f (at most replayMax,
// newest last) and the cursor to follow on from. Without a node filter it
// starts replayMax events before the newest; with one, from the start,
// since that node's events may be anywhere. The replay ends at the newest
// cursor, or when the log has been quiet for replayIdle (a filtered
// replay sends nothing for the events it skips).
func (a api) recent(ctx context.Context, log string, f eventFilter) ([]event, int64, error) {
	newest, err := a.newest(ctx, log)
	if err != nil {
		return nil, 0, err
	}
	start := int64(0)
	if f.Node == "" && f.Type == "" {
		start = max(0, newest-replayMax)
	}
	if newest == 0 {
		return nil, 0, nil
	}
	ctx, cancel := context.WithTimeout(ctx, replayTotal)
	defer cancel()
	f.After = map[string]int64{log: start}
	w, err := a.watch(ctx, log, f)
	if err != nil {
		return nil, 0, err
	}
	var out []event
	got := make(chan event)
	fail := make(chan error, 1)
	go func() {
		for {
			ev, err := w.recv()
			if err != nil {
				fail <- err
				return
			}
			select {
			case got <- ev:
			case <-ctx.Done():
				return
			}
		}
	}()
	last := start
	idle := time.NewTimer(replayIdle)
	defer idle.Stop()
	for last < newest {
		select {
		case ev := <-got:
			out = append(out, ev)
			if len(out) > replayMax {
				out = out[1:]
			}
			last = ev.Cursor
			idle.Reset(replayIdle)
		case err := <-fail:
			if status.Code(err) == codes.DeadlineExceeded || errors.Is(err, io.EOF) {
				return out, last, nil
			}
			return nil, 0, err
		case <-idle.C:
			return out, last, nil
		case <-ctx.Done():
			return out, last, nil
		}
	}
	return out, last, nil
}

// cursorsParam renders per-log cursors as "node:12,health:40".
func cursorsParam(c map[string]int64) string {
	var parts []string
	for _, l := range allLogs {
		if v, ok := c[l]; ok {
			parts = append(parts, l+":"+strconv.FormatInt(v, 10))
		}
	}
	return strings.Join(parts, ",")
}

func parseCursors(s string) map[string]int64 {
	out := map[string]int64{}
	for _, p := range strings.Split(s, ",") {
		l, v, ok := strings.Cut(p, ":")
		n, err := strconv.ParseInt(v, 10, 64)
		if ok && err == nil && n >= 0 && slices.Contains(allLogs, l) {
			out[l] = n
		}
	}
	return out
}
