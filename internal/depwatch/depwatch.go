// Package depwatch keeps a process's gRPC health truthful: each service is
// SERVING only while every dependency it cannot work without (its store,
// the CA, the revocation list) answers, and NOT_SERVING while one does not,
// without restarting anything. Orchestrators and `berthd health` read it,
// so traffic goes to replicas that can serve it.
//
// A Watch probes every dependency every Period, each probe bounded by
// Timeout, and sets the status of each gRPC service name and of the whole
// server (""), which is SERVING only while every dependency answers. Kick
// probes at once, for a service that has just seen a dependency fail.
package depwatch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/berth-dev/berth/internal/clock"
)

// Defaults of Config.
const (
	// DefaultPeriod is the time between probes: how long a dependency can
	// be down before health says so, when no call noticed it first.
	DefaultPeriod = 2 * time.Second
	// DefaultTimeout bounds one probe. A dependency that cannot answer a
	// ping within it cannot serve nodes either.
	DefaultTimeout = 2 * time.Second
)

// Dependency is something services cannot work without.
type Dependency struct {
	// Name says what it is in logs: "registration store", "CA", ...
	Name string
	// Check returns nil while the dependency can serve. It must give up
	// when ctx ends.
	Check func(ctx context.Context) error
}

// Setter is where statuses go: a grpc health.Server.
type Setter interface {
	SetServingStatus(service string, status healthpb.HealthCheckResponse_ServingStatus)
}

// Config describes a Watch.
type Config struct {
	// Health receives the statuses. Required.
	Health Setter
	// Period between probes (DefaultPeriod) and Timeout of one probe
	// (DefaultTimeout).
	Period, Timeout time.Duration
	// Logger defaults to a logger that discards everything.
	Logger *slog.Logger
	// Clock paces the probes; the system clock when nil.
	Clock clock.Clock
}

// Watch probes dependencies and sets health from what it finds.
type Watch struct {
	c    Config
	kick chan struct{}

	mu       sync.Mutex
	services map[string][]int // gRPC service name → indexes into deps
	deps     []Dependency
	down     []error   // per dependency: nil while it answers
	up       []bool    // per dependency: it has answered a probe
	warned   []bool    // per dependency: its outage is logged as one
	probed   bool      // at least one probe has run
	start    time.Time // of the first probe
	changed  chan struct{}
}

// New returns a Watch that has probed nothing yet; until Run's first probe
// every service is NOT_SERVING.
func New(c Config) (*Watch, error) {
	if c.Health == nil {
		return nil, errors.New("depwatch: Config.Health is required")
	}
	if c.Period <= 0 {
		c.Period = DefaultPeriod
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	c.Clock = clock.Or(c.Clock)
	return &Watch{c: c, kick: make(chan struct{}, 1), services: map[string][]int{}, changed: make(chan struct{})}, nil
}

// Add declares that the gRPC services named need deps (and nothing else
// but what other calls of Add name). A service named with no dependency
// is SERVING once the first probe has run. Call Add before Run.
func (w *Watch) Add(services []string, deps ...Dependency) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var idx []int
	for _, d := range deps {
		idx = append(idx, len(w.deps))
		w.deps = append(w.deps, d)
		w.down = append(w.down, errors.New("not probed yet"))
		w.up = append(w.up, false)
		w.warned = append(w.warned, false)
	}
	for _, s := range services {
		w.services[s] = append(w.services[s], idx...)
	}
	w.publishLocked()
}

// Kick probes at once rather than at the next period: a caller that saw
// a dependency fail uses it so that health follows within one probe.
func (w *Watch) Kick() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// Run probes now and then every Period, or at once after Kick, until ctx
// ends.
func (w *Watch) Run(ctx context.Context) {
	again := false
	for {
		// A change is probed once more at once: a dependency that depends
		// on this process (the CA, in a process with every role) has just
		// changed too, and health should not lag it by a period.
		if w.probe(ctx) && !again {
			again = true
			continue
		}
		again = false
		select {
		case <-ctx.Done():
			return
		case <-w.kick:
		case <-w.c.Clock.After(w.c.Period):
		}
	}
}

// Down returns the dependencies that did not answer the last probe, as
// "name: error" strings; empty when all answered.
func (w *Watch) Down() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for i, err := range w.down {
		if err != nil {
			out = append(out, fmt.Sprintf("%s: %v", w.deps[i].Name, err))
		}
	}
	return out
}

// Changed returns a channel closed at the next probe that changes what is
// down, for tests and for callers that wait on health.
func (w *Watch) Changed() <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.changed
}

// probe checks every dependency at once, each bounded by Timeout, and
// publishes the result. It reports whether anything changed.
func (w *Watch) probe(ctx context.Context) bool {
	w.mu.Lock()
	deps := append([]Dependency(nil), w.deps...)
	w.mu.Unlock()
	errs := make([]error, len(deps))
	var wg sync.WaitGroup
	for i, d := range deps {
		wg.Go(func() {
			pctx, cancel := context.WithTimeout(ctx, w.c.Timeout)
			defer cancel()
			errs[i] = d.Check(pctx)
		})
	}
	wg.Wait()
	if ctx.Err() != nil {
		return false // shutting down: what failed is the probe, not the dependency
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	now := w.c.Clock.Now()
	if !w.probed {
		w.start = now
	}
	changed := !w.probed
	for i, err := range errs {
		was := w.down[i]
		w.down[i] = err
		changed = changed || (err == nil) != (was == nil)
		w.logChange(deps[i].Name, i, err, now)
		w.up[i] = w.up[i] || err == nil
	}
	w.probed = true
	if changed {
		w.publishLocked()
		close(w.changed)
		w.changed = make(chan struct{})
	}
	return changed
}

// logChange logs what probing dependency i found, if it is news. Within
// the first Period a dependency that has not answered yet is not an
// outage: services start together and load what they need meanwhile (a
// process with every role starts its CA with the others), so it is
// waited for at Info, and only a dependency still missing after that, or
// one that answered and then stopped, is a warning. w.mu is held.
func (w *Watch) logChange(name string, i int, err error, now time.Time) {
	starting := now.Sub(w.start) < w.c.Period
	switch {
	case err != nil && !w.warned[i] && (w.up[i] || !starting):
		w.warned[i] = true
		w.c.Logger.Warn("dependency unavailable; reporting NOT_SERVING until it returns", "dependency", name, "error", err)
	case err != nil && !w.probed:
		w.c.Logger.Info("waiting for a dependency; reporting NOT_SERVING until it answers", "dependency", name, "error", err)
	case err == nil && w.warned[i]:
		w.warned[i] = false
		w.c.Logger.Info("dependency available again", "dependency", name)
	case err == nil && !w.up[i] && w.probed:
		w.c.Logger.Info("dependency available", "dependency", name)
	}
}

// publishLocked sets every service's status from the dependencies' state.
func (w *Watch) publishLocked() {
	all := w.probed
	for name, idx := range w.services {
		ok := w.probed
		for _, i := range idx {
			if w.down[i] != nil {
				ok = false
			}
		}
		all = all && ok
		w.c.Health.SetServingStatus(name, status(ok))
	}
	for _, err := range w.down {
		if err != nil {
			all = false
		}
	}
	w.c.Health.SetServingStatus("", status(all))
}

func status(ok bool) healthpb.HealthCheckResponse_ServingStatus {
	if ok {
		return healthpb.HealthCheckResponse_SERVING
	}
	return healthpb.HealthCheckResponse_NOT_SERVING
}

// HealthClient is the part of a gRPC health client a check needs.
type HealthClient interface {
	Check(ctx context.Context, in *healthpb.HealthCheckRequest, opts ...grpc.CallOption) (*healthpb.HealthCheckResponse, error)
}

// Serving is a Check that asks another berth service's gRPC health for
// service: it passes only while that service says SERVING, so a service
// that depends on the CA reports the CA's own dependencies too.
func Serving(c HealthClient, service string) func(context.Context) error {
	return func(ctx context.Context) error {
		resp, err := c.Check(ctx, &healthpb.HealthCheckRequest{Service: service})
		if err != nil {
			return err
		}
		if s := resp.GetStatus(); s != healthpb.HealthCheckResponse_SERVING {
			return fmt.Errorf("%s is %s", service, s)
		}
		return nil
	}
}
