package cli_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/berth-dev/berth/internal/cli"
	"github.com/berth-dev/berth/internal/eventlog"
	"github.com/berth-dev/berth/internal/rpc/rpcerr"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// cursored is an event of a log.
type cursored interface {
	proto.Message
	GetCursor() int64
}

// eventQuery is what a watch request asks of a log.
type eventQuery struct {
	After   int64
	FromNow bool
	NodeIDs []string
	Types   []string
}

func lifecycleQuery(f *berthv1.LifecycleFilter) eventQuery {
	return eventQuery{After: f.GetAfterCursor(), FromNow: f.GetFromNow(), NodeIDs: f.GetNodeIds(), Types: f.GetTypes()}
}

// eventLog is a service's event log: a stream replays the events after the
// request's cursor, then follows appends, as the real services do. Set the
// behaviour fields before start.
type eventLog[E cursored] struct {
	// breaks ends stream n (0-based) with Unavailable once it sent
	// breaks[n] events.
	breaks map[int]int
	// fail, when it returns an error for stream n, ends it at once with it.
	fail func(n int) error
	// opened, when set, is sent to once a stream has read the log's head.
	opened chan struct{}

	mu     sync.Mutex
	events []E
	wake   chan struct{}
	n      int
}

func newEventLog[E cursored](events ...E) *eventLog[E] {
	return &eventLog[E]{events: events, wake: make(chan struct{})}
}

func (l *eventLog[E]) serve(ctx context.Context, q eventQuery, send func(E) error) error {
	l.mu.Lock()
	n := l.n
	l.n++
	var head int64
	if len(l.events) > 0 {
		head = l.events[len(l.events)-1].GetCursor()
	}
	l.mu.Unlock()
	if l.fail != nil {
		if err := l.fail(n); err != nil {
			return err
		}
	}
	after := q.After
	if q.FromNow {
		after = head
	}
	if l.opened != nil {
		l.opened <- struct{}{}
	}
	limit, breaks := l.breaks[n]
	sent := 0
	for {
		l.mu.Lock()
		var pending []E
		for _, e := range l.events {
			if e.GetCursor() > after {
				pending = append(pending, e)
			}
		}
		wake := l.wake
		l.mu.Unlock()
		for _, e := range pending {
			if breaks && sent == limit {
				return status.Error(codes.Unavailable, "fake: stream broken")
			}
			if err := send(e); err != nil {
				return err
			}
			sent++
			after = e.GetCursor()
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// eventAt is the time of the event with cursor c of any sample log.
func eventAt(c int64) *timestamppb.Timestamp {
	return ts(testNow.Add(time.Duration(c) * 1250 * time.Millisecond))
}

func lifecycleEvent(c int64, typ, node string, kv ...string) *berthv1.LifecycleEvent {
	e := &berthv1.LifecycleEvent{Cursor: c, Type: typ, NodeId: node, Time: eventAt(c), Details: map[string]string{}}
	for i := 0; i+1 < len(kv); i += 2 {
		e.Details[kv[i]] = kv[i+1]
	}
	return e
}

func registrationEvents() []*berthv1.LifecycleEvent {
	return []*berthv1.LifecycleEvent{
		lifecycleEvent(1, "registered", "n-7f3a9c", "token", "tok-a1"),
		lifecycleEvent(2, "approved", "n-7f3a9c", "actor", "admin"),
		lifecycleEvent(3, "certificate_renewed", "n-7f3a9c", "serial", "5f3a2c1b0e9d8c7b"),
	}
}

func bundleEvents() []*berthv1.LifecycleEvent {
	return []*berthv1.LifecycleEvent{
		lifecycleEvent(1, "bundle_updated", "n-7f3a9c", "version", "1"),
		lifecycleEvent(2, "bundle_approved", "n-7f3a9c", "version", "1", "actor", "admin"),
	}
}

func healthEvents() []*berthv1.HealthEvent {
	return []*berthv1.HealthEvent{
		{Cursor: 1, Type: berthv1.HealthEventType_HEALTH_EVENT_TYPE_HEALTHY, NodeId: "n-7f3a9c", Time: eventAt(1),
			State: berthv1.LivenessState_LIVENESS_STATE_HEALTHY, BootId: "b7e1", Status: berthv1.ReportedStatus_REPORTED_STATUS_UP},
		{Cursor: 2, Type: berthv1.HealthEventType_HEALTH_EVENT_TYPE_NODE_EVENT, NodeId: "n-7f3a9c", Time: eventAt(2),
			BootId: "b7e1", Kind: "disk.failed", Message: `sda: I/O error "sector 42"`},
		{Cursor: 3, Type: berthv1.HealthEventType_HEALTH_EVENT_TYPE_SUSPECT, NodeId: "n-7f3a9c", Time: eventAt(3),
			State: berthv1.LivenessState_LIVENESS_STATE_SUSPECT, PreviousState: berthv1.LivenessState_LIVENESS_STATE_HEALTHY, BootId: "b7e1"},
		{Cursor: 4, Type: berthv1.HealthEventType_HEALTH_EVENT_TYPE_REBOOTED, NodeId: "n-2b4d6f", Time: eventAt(4),
			State: berthv1.LivenessState_LIVENESS_STATE_HEALTHY, BootId: "c001", PreviousBootId: "b7e1",
			Status: berthv1.ReportedStatus_REPORTED_STATUS_DEGRADED, PreviousStatus: berthv1.ReportedStatus_REPORTED_STATUS_UP},
	}
}

// watchFakes serves the three sample logs.
func watchFakes() (*fakeAdmin, *fakeBundles, *fakeHeartbeat) {
	return &fakeAdmin{events: newEventLog(registrationEvents()...)},
		&fakeBundles{events: newEventLog(bundleEvents()...)},
		&fakeHeartbeat{events: newEventLog(healthEvents()...)}
}

// sortedLines sorts the event lines of out by service, then cursor, keeping
// a header first: services interleave by arrival.
func sortedLines(t *testing.T, out string, header bool, key func(line string) (string, int64)) string {
	t.Helper()
	lines := strings.SplitAfter(out, "\n")
	if lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	first := 0
	if header {
		first = 1
	}
	body := slices.Clone(lines[first:])
	slices.SortStableFunc(body, func(a, b string) int {
		sa, ca := key(a)
		sb, cb := key(b)
		if c := strings.Compare(sa, sb); c != 0 {
			return c
		}
		return int(ca - cb)
	})
	return strings.Join(append(lines[:first:first], body...), "")
}

// checkPerServiceOrder checks that each service's cursors only grow.
func checkPerServiceOrder(t *testing.T, events []map[string]any, want map[string][]int64) {
	t.Helper()
	got := map[string][]int64{}
	for _, e := range events {
		s, _ := e["service"].(string)
		c, _ := e["cursor"].(float64)
		got[s] = append(got[s], int64(c))
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("cursors per service, in output order (-want +got):\n%s", diff)
	}
}

func parseJSONLines(t *testing.T, out string) []map[string]any {
	t.Helper()
	var events []map[string]any
	for line := range strings.SplitSeq(strings.TrimSuffix(out, "\n"), "\n") {
		var e map[string]any
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("line %q is not a JSON object: %v", line, err)
		}
		events = append(events, e)
	}
	return events
}

func TestWatchOutput(t *testing.T) {
	pki := newTestPKI(t)
	allCursors := map[string][]int64{"registration": {1, 2, 3}, "bundles": {1, 2}, "heartbeat": {1, 2, 3, 4}}
	t.Run("json", func(t *testing.T) {
		admin, bundles, hb := watchFakes()
		h := startServers(t, pki, admin, bundles, hb)
		r := h.run("watch", "-o", "json", "--count", "9")
		checkOK(t, r)
		events := parseJSONLines(t, r.stdout)
		checkPerServiceOrder(t, events, allCursors)
		checkGolden(t, "watch_json", sortedLines(t, r.stdout, false, func(l string) (string, int64) {
			var e struct {
				Service string `json:"service"`
				Cursor  int64  `json:"cursor"`
			}
			_ = json.Unmarshal([]byte(l), &e)
			return e.Service, e.Cursor
		}))
		checkRequests(t, admin, &berthv1.WatchNodeEventsRequest{Filter: &berthv1.LifecycleFilter{}})
		checkRequests(t, bundles, &berthv1.WatchBundleEventsRequest{Filter: &berthv1.LifecycleFilter{}})
		checkRequests(t, hb, &berthv1.WatchHealthRequest{})
	})
	t.Run("table", func(t *testing.T) {
		admin, bundles, hb := watchFakes()
		r := startServers(t, pki, admin, bundles, hb).run("watch", "--count", "9")
		checkOK(t, r)
		checkGolden(t, "watch_table", sortedLines(t, r.stdout, true, func(l string) (string, int64) {
			f := strings.Fields(l)
			var c int64
			_, _ = fmt.Sscan(f[3], &c)
			return f[2], c
		}))
	})
	t.Run("contract", func(t *testing.T) {
		r := startServers(t, pki, nil, nil, &fakeHeartbeat{events: newEventLog(healthEvents()...)}).
			run("watch", "--service", "heartbeat", "-o", "json", "--count", "1")
		checkOK(t, r)
		want := "{\"cursor\":1,\"service\":\"heartbeat\",\"type\":\"healthy\",\"node_id\":\"n-7f3a9c\"," +
			"\"time\":\"2026-11-21T12:00:01.250000000Z\",\"details\":{\"boot_id\":\"b7e1\",\"state\":\"healthy\",\"status\":\"up\"}}\n"
		if r.stdout != want {
			t.Errorf("stdout %q, want %q", r.stdout, want)
		}
	})
}

func TestWatchFilters(t *testing.T) {
	pki := newTestPKI(t)
	for _, tc := range []struct {
		name      string
		args      []string
		wantAdmin []proto.Message
		wantHB    []proto.Message
	}{
		{"one service from a cursor",
			[]string{"--service", "heartbeat", "--after", "heartbeat=2", "--node", "n-7f3a9c", "--node", "n-2b4d6f"},
			nil,
			[]proto.Message{&berthv1.WatchHealthRequest{AfterCursor: 2, NodeIds: []string{"n-7f3a9c", "n-2b4d6f"}}}},
		{"types pick the services",
			[]string{"--type", "suspect,rebooted", "--type", "registered", "--from-now", "--after", "registration=0"},
			[]proto.Message{&berthv1.WatchNodeEventsRequest{Filter: &berthv1.LifecycleFilter{Types: []string{"registered"}}}},
			[]proto.Message{&berthv1.WatchHealthRequest{FromNow: true, Types: []berthv1.HealthEventType{
				berthv1.HealthEventType_HEALTH_EVENT_TYPE_SUSPECT, berthv1.HealthEventType_HEALTH_EVENT_TYPE_REBOOTED}}}},
		{"services listed with commas",
			[]string{"--service", "registration,heartbeat", "--from-now", "--after", "heartbeat=4"},
			[]proto.Message{&berthv1.WatchNodeEventsRequest{Filter: &berthv1.LifecycleFilter{FromNow: true}}},
			[]proto.Message{&berthv1.WatchHealthRequest{AfterCursor: 4}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opened := make(chan struct{}, 3)
			logs := func() *eventLog[*berthv1.LifecycleEvent] {
				l := newEventLog[*berthv1.LifecycleEvent]()
				l.opened = opened
				return l
			}
			admin, bundles := &fakeAdmin{events: logs()}, &fakeBundles{events: logs()}
			hb := &fakeHeartbeat{events: newEventLog[*berthv1.HealthEvent]()}
			hb.events.opened = opened
			h := startServers(t, pki, admin, bundles, hb)
			// The logs are empty: interrupt the watch once its streams are
			// open.
			ctx, cancel := context.WithCancel(t.Context())
			go func() {
				for range len(tc.wantAdmin) + len(tc.wantHB) {
					<-opened
				}
				cancel()
			}()
			var stdout, stderr strings.Builder
			code := testConfig(h.env, &stdout, &stderr).Run(ctx, append([]string{"watch"}, tc.args...))
			checkOK(t, result{code: code, stdout: stdout.String(), stderr: stderr.String()})
			if stdout.String() != "" {
				t.Errorf("stdout %q", stdout.String())
			}
			checkRequests(t, admin, tc.wantAdmin...)
			checkRequests(t, hb, tc.wantHB...)
			checkRequests(t, bundles)
		})
	}
}

func TestWatchReconnects(t *testing.T) {
	hb := &fakeHeartbeat{events: newEventLog(healthEvents()...)}
	// The first stream breaks after two events, the next attempts fail
	// (more often than watch tolerates before a stream worked), the fifth
	// goes on.
	hb.events.breaks = map[int]int{0: 2}
	hb.events.fail = func(n int) error {
		if n >= 1 && n <= 3 {
			return status.Error(codes.Unavailable, "heartbeat service is shutting down; reconnect")
		}
		return nil
	}
	h := startServers(t, newTestPKI(t), nil, nil, hb)
	r := h.run("watch", "--service", "heartbeat", "-o", "json", "--count", "4")
	if r.code != cli.ExitOK {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
	checkPerServiceOrder(t, parseJSONLines(t, r.stdout), map[string][]int64{"heartbeat": {1, 2, 3, 4}})
	want := "berthctl: watch heartbeat: stream broken (fake: stream broken); reconnecting after cursor 2\n"
	for i := 1; i <= 3; i++ {
		want += fmt.Sprintf("berthctl: watch heartbeat: attempt %d failed (heartbeat service is shutting down; reconnect); reconnecting after cursor 2\n", i)
	}
	if r.stderr != want {
		t.Errorf("stderr:\n%s\nwant:\n%s", r.stderr, want)
	}
	after2 := &berthv1.WatchHealthRequest{AfterCursor: 2}
	checkRequests(t, hb, &berthv1.WatchHealthRequest{}, after2, after2, after2, after2)
}

// cancelWriter cancels a context once something was written.
type cancelWriter struct {
	strings.Builder
	cancel context.CancelFunc
}

func (w *cancelWriter) Write(p []byte) (int, error) {
	defer w.cancel()
	return w.Builder.Write(p)
}

func TestWatchInterrupted(t *testing.T) {
	h := startServers(t, newTestPKI(t), nil, nil, &fakeHeartbeat{events: newEventLog(healthEvents()...)})
	ctx, cancel := context.WithCancel(t.Context())
	stdout := &cancelWriter{cancel: cancel} // Ctrl-C after the first event
	var stderr strings.Builder
	code := testConfig(h.env, stdout, &stderr).Run(ctx, []string{"watch", "--service", "heartbeat", "-o", "json"})
	if code != cli.ExitOK || stderr.String() != "" {
		t.Errorf("exit %d, stderr %q; want 0 and nothing", code, stderr.String())
	}
	if n := strings.Count(stdout.String(), "\n"); n != 1 || !strings.HasPrefix(stdout.String(), `{"cursor":1,`) {
		t.Errorf("stdout %q, want the first event", stdout.String())
	}
}

// expiring is a context whose deadline passes when expire is called, so
// that a test reaches the deadline on an event (what was printed) rather
// than by racing a short timer.
type expiring struct {
	context.Context
	done chan struct{}
	once sync.Once
}

func newExpiring(parent context.Context) *expiring {
	return &expiring{Context: parent, done: make(chan struct{})}
}

func (c *expiring) Done() <-chan struct{} { return c.done }

func (c *expiring) Err() error {
	select {
	case <-c.done:
		return context.DeadlineExceeded
	default:
		return nil
	}
}

func (c *expiring) expire() { c.once.Do(func() { close(c.done) }) }

// expireAfterLines expires ctx once n lines were written.
type expireAfterLines struct {
	strings.Builder
	n   int
	ctx *expiring
}

func (w *expireAfterLines) Write(p []byte) (int, error) {
	n, err := w.Builder.Write(p)
	if strings.Count(w.String(), "\n") >= w.n {
		w.ctx.expire()
	}
	return n, err
}

func TestWatchTimeout(t *testing.T) {
	hb := &fakeHeartbeat{events: newEventLog(healthEvents()[:2]...)}
	h := startServers(t, newTestPKI(t), nil, nil, hb)
	// The deadline passes once the only two events were printed (or, if
	// they never come, after two minutes, and the test fails).
	ctx := newExpiring(t.Context())
	stdout := &expireAfterLines{n: 2, ctx: ctx}
	backstop := time.AfterFunc(2*time.Minute, ctx.expire)
	defer backstop.Stop()
	var stderr strings.Builder
	code := testConfig(h.env, stdout, &stderr).Run(ctx, []string{"watch", "--service", "heartbeat", "--count", "5", "--timeout", "10m", "-o", "json"})
	want := "berthctl: watch: 2 of 5 events within 10m0s (--timeout)\n"
	if code != cli.ExitError || stderr.String() != want || strings.Count(stdout.String(), "\n") != 2 {
		t.Errorf("exit %d, stdout %q, stderr %q; want exit 1, two events, stderr %q", code, stdout.String(), stderr.String(), want)
	}
}

// TestWatchTimeoutBoundsTheWatch: --timeout really ends a watch that
// would otherwise follow forever. The log is empty, so the outcome does
// not depend on how fast the machine is, only the test's duration does.
func TestWatchTimeoutBoundsTheWatch(t *testing.T) {
	hb := &fakeHeartbeat{events: newEventLog[*berthv1.HealthEvent]()}
	h := startServers(t, newTestPKI(t), nil, nil, hb)
	r := h.run("watch", "--service", "heartbeat", "--count", "5", "--timeout", "2s", "-o", "json")
	want := "berthctl: watch: 0 of 5 events within 2s (--timeout)\n"
	if r.code != cli.ExitError || r.stderr != want || r.stdout != "" {
		t.Errorf("exit %d, stdout %q, stderr %q; want exit 1, no events, stderr %q", r.code, r.stdout, r.stderr, want)
	}
}

func TestWatchErrors(t *testing.T) {
	pki := newTestPKI(t)
	dead := deadAddr(t)
	// outOfRange answers as every service does (rpcerr.CursorStatus).
	outOfRange := func(ce *eventlog.CursorError) *fakeHeartbeat {
		l := newEventLog[*berthv1.HealthEvent]()
		l.fail = func(int) error { return rpcerr.CursorStatus(ce).Err() }
		return &fakeHeartbeat{events: l}
	}
	empty := func() (*fakeAdmin, *fakeBundles, *fakeHeartbeat) {
		return &fakeAdmin{events: newEventLog[*berthv1.LifecycleEvent]()},
			&fakeBundles{events: newEventLog[*berthv1.LifecycleEvent]()},
			&fakeHeartbeat{events: newEventLog[*berthv1.HealthEvent]()}
	}
	for _, tc := range []struct {
		name    string
		servers func() (*fakeAdmin, *fakeBundles, *fakeHeartbeat)
		env     map[string]string
		args    []string
		want    string // stderr, with ADDR for the server's address
	}{
		{"registration watch not implemented",
			func() (*fakeAdmin, *fakeBundles, *fakeHeartbeat) {
				_, b, hb := empty()
				return &fakeAdmin{}, b, hb
			}, nil, nil,
			"berthctl: watch registration: ADDR does not support watching registration events yet (leave registration out with --service)"},
		{"no heartbeat service at the default address",
			func() (*fakeAdmin, *fakeBundles, *fakeHeartbeat) {
				a, b, _ := empty()
				return a, b, nil
			}, nil, []string{"--service", "heartbeat"},
			"berthctl: watch heartbeat: ADDR is not the heartbeat service: expected spiffe://berth.local/service/heartbeat or spiffe://berth.local/service/api, " +
				"found spiffe://berth.local/service/registration, spiffe://berth.local/service/bundles " +
				"(the address comes from BERTH_SERVER; set --heartbeat-server or BERTH_HEARTBEAT_SERVER, or leave heartbeat out with --service)"},
		{"no bundles service at --bundles-server",
			func() (*fakeAdmin, *fakeBundles, *fakeHeartbeat) {
				a, _, hb := empty()
				return a, nil, hb
			}, nil, []string{"--bundles-server", "OTHER"},
			"berthctl: watch bundles: OTHER is not the bundles service: expected spiffe://berth.local/service/bundles or spiffe://berth.local/service/api, " +
				"found spiffe://berth.local/service/registration (check --bundles-server, or leave bundles out with --service)"},
		{"unreachable heartbeat service",
			empty, map[string]string{"BERTH_HEARTBEAT_SERVER": dead}, nil,
			"berthctl: watch heartbeat: cannot reach server " + dead + ": dial tcp " + dead + ": connect: connection refused"},
		{"cursor behind retention",
			func() (*fakeAdmin, *fakeBundles, *fakeHeartbeat) {
				return nil, nil, outOfRange(&eventlog.CursorError{Cursor: 3, Oldest: 7, DeletedThrough: 6, Newest: 9})
			}, nil, []string{"--service", "heartbeat", "--after", "heartbeat=3"},
			"berthctl: watch heartbeat: events after cursor 3 are no longer kept; the oldest cursor available is 7; events were missed: start again with --after heartbeat=0 for the oldest event kept, or with --from-now"},
		{"cursor ahead of the log",
			func() (*fakeAdmin, *fakeBundles, *fakeHeartbeat) {
				return nil, nil, outOfRange(&eventlog.CursorError{Cursor: 30, Ahead: true, Oldest: 1, Newest: 12})
			}, nil, []string{"--service", "heartbeat", "--after", "heartbeat=30"},
			"berthctl: watch heartbeat: cursor 30 is ahead of the event log, whose newest cursor is 12; was the service's database replaced? Start again with --after heartbeat=0 for the oldest event kept, or with --from-now"},
		{"not an admin",
			empty, map[string]string{"BERTH_CERT": pki.nodeCert, "BERTH_KEY": pki.nodeKey}, []string{"--service", "bundles"},
			"berthctl: watch bundles: caller is not permitted to call this method (the certificate from BERTH_CERT is spiffe://berth.local/node/n-1, not an admin identity)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b, hb := tc.servers()
			h := startServers(t, pki, a, b, hb)
			other := startServers(t, pki, &fakeAdmin{}, nil, nil) // no bundles service
			subst := strings.NewReplacer("ADDR", h.addr, "OTHER", other.addr).Replace
			args := []string{"watch", "-o", "json"}
			for _, a := range tc.args {
				args = append(args, subst(a))
			}
			want := subst(tc.want)
			r := runEnv(t, h.withEnv(tc.env), args...)
			if r.code != cli.ExitError || r.stderr != want+"\n" || r.stdout != "" {
				t.Errorf("exit %d, stdout %q, stderr:\n%s\nwant exit 1, stderr:\n%s", r.code, r.stdout, r.stderr, want)
			}
		})
	}
}

// TestWatchSelectsServices checks that leaving a service out avoids its
// failure: registration does not serve watches yet.
func TestWatchSelectsServices(t *testing.T) {
	_, bundles, hb := watchFakes()
	h := startServers(t, newTestPKI(t), &fakeAdmin{}, bundles, hb)
	r := h.run("watch", "--service", "bundles", "--service", "heartbeat", "--count", "6", "-o", "json")
	checkOK(t, r)
	checkPerServiceOrder(t, parseJSONLines(t, r.stdout), map[string][]int64{"bundles": {1, 2}, "heartbeat": {1, 2, 3, 4}})
	if calls := h.fake.received(); len(calls) != 0 {
		t.Errorf("registration was called: %v", calls)
	}
}

func TestWatchAddresses(t *testing.T) {
	pki := newTestPKI(t)
	hb := &fakeHeartbeat{events: newEventLog(healthEvents()...)}
	reg := startServers(t, pki, &fakeAdmin{events: newEventLog(registrationEvents()...)}, nil, nil)
	beats := startServers(t, pki, nil, nil, hb)
	both := []string{"--service", "registration,heartbeat", "--count", "7"}
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		want int // events
	}{
		{"env", map[string]string{"BERTH_HEARTBEAT_SERVER": beats.addr}, both, 7},
		{"flag", nil, append([]string{"--heartbeat-server", beats.addr}, both...), 7},
		{"flag beats env", map[string]string{"BERTH_HEARTBEAT_SERVER": deadAddr(t)},
			append([]string{"--heartbeat-server", beats.addr}, both...), 7},
		{"only the heartbeat address", map[string]string{"BERTH_SERVER": "", "BERTH_HEARTBEAT_SERVER": beats.addr},
			[]string{"--service", "heartbeat", "--count", "4"}, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runEnv(t, reg.withEnv(tc.env), append([]string{"watch", "-o", "json"}, tc.args...)...)
			checkOK(t, r)
			if got := len(parseJSONLines(t, r.stdout)); got != tc.want {
				t.Errorf("%d events, want %d", got, tc.want)
			}
		})
	}
}

func TestWatchMissingSettings(t *testing.T) {
	h := start(t, newTestPKI(t), &fakeAdmin{})
	for _, tc := range []struct {
		name  string
		unset []string
		args  []string
		want  string
	}{
		{"all services", []string{"BERTH_SERVER"}, nil, "set --server or BERTH_SERVER"},
		{"heartbeat only", []string{"BERTH_SERVER"}, []string{"--service", "heartbeat"},
			"set --heartbeat-server or BERTH_HEARTBEAT_SERVER (or --server or BERTH_SERVER)"},
		{"bundles and heartbeat", []string{"BERTH_SERVER"}, []string{"--type", "suspect,bundle_reset"}, "set --server or BERTH_SERVER"},
		{"key", []string{"BERTH_KEY"}, []string{"--service", "heartbeat"}, "set --key or BERTH_KEY"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			changes := map[string]string{}
			for _, k := range tc.unset {
				changes[k] = ""
			}
			r := runEnv(t, h.withEnv(changes), append([]string{"watch"}, tc.args...)...)
			want := "berthctl: missing connection settings: " + tc.want + "\nRun 'berthctl watch -h' for usage.\n"
			if r.code != cli.ExitUsage || r.stderr != want {
				t.Errorf("exit %d, stderr:\n%s\nwant exit 2, stderr:\n%s", r.code, r.stderr, want)
			}
		})
	}
}
