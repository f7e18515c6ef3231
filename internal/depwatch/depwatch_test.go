package depwatch

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/berth-dev/berth/internal/clock"
)

// switchable is a dependency a test turns off and on.
type switchable struct {
	mu  sync.Mutex
	err error
}

func (s *switchable) set(err error) { s.mu.Lock(); s.err = err; s.mu.Unlock() }
func (s *switchable) check(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

func statusOf(t *testing.T, h *health.Server, service string) healthpb.HealthCheckResponse_ServingStatus {
	t.Helper()
	resp, err := h.Check(context.Background(), &healthpb.HealthCheckRequest{Service: service})
	if err != nil {
		t.Fatalf("Check(%q): %v", service, err)
	}
	return resp.GetStatus()
}

// wantStatuses checks several services at once.
func wantStatuses(t *testing.T, h *health.Server, want map[string]healthpb.HealthCheckResponse_ServingStatus) {
	t.Helper()
	for svc, w := range want {
		if got := statusOf(t, h, svc); got != w {
			t.Errorf("status of %q = %v, want %v", svc, got, w)
		}
	}
}

// waitChange kicks a probe and waits until it changed something.
func waitChange(t *testing.T, w *Watch) {
	t.Helper()
	ch := w.Changed()
	w.Kick()
	select {
	case <-ch:
	case <-time.After(30 * time.Second):
		t.Fatal("no probe changed anything within 30 s")
	}
}

const (
	serving    = healthpb.HealthCheckResponse_SERVING
	notServing = healthpb.HealthCheckResponse_NOT_SERVING
)

func TestWatchFollowsDependencies(t *testing.T) {
	h := health.NewServer()
	// A fake clock that is never moved: only Kick probes after the first.
	w, err := New(Config{Health: h, Clock: clock.NewFake(time.Unix(0, 0))})
	if err != nil {
		t.Fatal(err)
	}
	store, ca := &switchable{}, &switchable{}
	revs := &switchable{err: errors.New("revocation state not yet known")}
	w.Add([]string{"reg.A", "reg.B"}, Dependency{Name: "registration store", Check: store.check}, Dependency{Name: "CA", Check: ca.check})
	w.Add([]string{"bundles"}, Dependency{Name: "revocations", Check: revs.check})
	w.Add([]string{"plain"})

	// Before the first probe nothing is SERVING.
	wantStatuses(t, h, map[string]healthpb.HealthCheckResponse_ServingStatus{
		"reg.A": notServing, "bundles": notServing, "plain": notServing, "": notServing,
	})

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	ch := w.Changed()
	go func() { defer close(done); w.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	<-ch // the first probe
	wantStatuses(t, h, map[string]healthpb.HealthCheckResponse_ServingStatus{
		"reg.A": serving, "reg.B": serving, "bundles": notServing, "plain": serving, "": notServing,
	})
	if down := w.Down(); len(down) != 1 || !strings.Contains(down[0], "revocations: revocation state not yet known") {
		t.Errorf("Down = %q", down)
	}

	revs.set(nil)
	waitChange(t, w)
	wantStatuses(t, h, map[string]healthpb.HealthCheckResponse_ServingStatus{
		"reg.A": serving, "bundles": serving, "plain": serving, "": serving,
	})

	ca.set(errors.New("berth.v1.CertificateAuthorityService is NOT_SERVING"))
	waitChange(t, w)
	wantStatuses(t, h, map[string]healthpb.HealthCheckResponse_ServingStatus{
		"reg.A": notServing, "reg.B": notServing, "bundles": serving, "plain": serving, "": notServing,
	})

	ca.set(nil)
	waitChange(t, w)
	wantStatuses(t, h, map[string]healthpb.HealthCheckResponse_ServingStatus{
		"reg.A": serving, "reg.B": serving, "": serving,
	})
	if down := w.Down(); len(down) != 0 {
		t.Errorf("Down = %q, want nothing", down)
	}
}

// TestWatchProbeTimeout: a dependency that does not answer within Timeout
// is down; the probe does not hang on it.
func TestWatchProbeTimeout(t *testing.T) {
	h := health.NewServer()
	w, err := New(Config{Health: h, Timeout: 50 * time.Millisecond, Clock: clock.NewFake(time.Unix(0, 0))})
	if err != nil {
		t.Fatal(err)
	}
	w.Add([]string{"svc"}, Dependency{Name: "black hole", Check: func(ctx context.Context) error {
		<-ctx.Done()
		return ctx.Err()
	}})
	w.probe(context.Background())
	if got := statusOf(t, h, "svc"); got != notServing {
		t.Errorf("status = %v, want NOT_SERVING", got)
	}
	if down := w.Down(); len(down) != 1 || !strings.Contains(down[0], "deadline exceeded") {
		t.Errorf("Down = %q", down)
	}
}

func TestNewNeedsHealth(t *testing.T) {
	if _, err := New(Config{}); err == nil {
		t.Fatal("New without Health succeeded")
	}
}

// logged records what a Watch logs, as "LEVEL message: dependency".
type logged struct {
	mu    sync.Mutex
	lines []string
}

func (l *logged) Enabled(context.Context, slog.Level) bool { return true }
func (l *logged) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *logged) WithGroup(string) slog.Handler            { return l }
func (l *logged) Handle(_ context.Context, r slog.Record) error {
	dep := ""
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "dependency" {
			dep = a.Value.String()
		}
		return true
	})
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, r.Level.String()+" "+r.Message+": "+dep)
	return nil
}

// take returns what was logged since the last call.
func (l *logged) take() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := l.lines
	l.lines = nil
	return out
}

// TestWatchLogsOutagesNotStarts: a dependency that has not answered yet
// when the services start together is waited for at Info, and is a
// warning only if it is still missing a period later; one that answered
// and then stopped is a warning at once, and its return is logged once.
func TestWatchLogsOutagesNotStarts(t *testing.T) {
	const period = 2 * time.Second
	clk := clock.NewFake(time.Unix(0, 0))
	log := &logged{}
	w, err := New(Config{Health: health.NewServer(), Period: period, Clock: clk, Logger: slog.New(log)})
	if err != nil {
		t.Fatal(err)
	}
	late, missing := &switchable{err: errors.New("not loaded")}, &switchable{err: errors.New("refused")}
	flaky := &switchable{}
	w.Add([]string{"svc"}, Dependency{Name: "late", Check: late.check}, Dependency{Name: "missing", Check: missing.check},
		Dependency{Name: "flaky", Check: flaky.check})
	ctx := context.Background()
	steps := []struct {
		name    string
		advance time.Duration
		before  func()
		want    []string
	}{
		{"first probe", 0, nil, []string{
			"INFO waiting for a dependency; reporting NOT_SERVING until it answers: late",
			"INFO waiting for a dependency; reporting NOT_SERVING until it answers: missing",
		}},
		{"still starting", period / 2, nil, nil},
		{"up while starting", 0, func() { late.set(nil) }, []string{"INFO dependency available: late"}},
		{"down after being up, while starting", 0, func() { flaky.set(errors.New("gone")) },
			[]string{"WARN dependency unavailable; reporting NOT_SERVING until it returns: flaky"}},
		{"a period on", period / 2, nil, []string{"WARN dependency unavailable; reporting NOT_SERVING until it returns: missing"}},
		{"still down", period, nil, nil},
		{"both back", 0, func() { missing.set(nil); flaky.set(nil) }, []string{
			"INFO dependency available again: missing",
			"INFO dependency available again: flaky",
		}},
		{"all up", period, nil, nil},
	}
	for _, s := range steps {
		clk.Advance(s.advance)
		if s.before != nil {
			s.before()
		}
		w.probe(ctx)
		if got := log.take(); strings.Join(got, "\n") != strings.Join(s.want, "\n") {
			t.Errorf("%s: logged\n%s\nwant\n%s", s.name, strings.Join(got, "\n"), strings.Join(s.want, "\n"))
		}
	}
}
