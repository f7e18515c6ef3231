// Package watch follows berth's event logs for a management engine: node
// lifecycle events of the registration service, bundle events of the
// bundles service and health events of the heartbeat service, merged into
// one stream of Events.
//
// Every service keeps its own log, ordered by its own cursor. A Watcher
// opens one stream per service: it replays the events after the cursor it
// starts from, then follows new ones as they happen. When a stream breaks
// it reconnects, with capped and jittered exponential backoff, after the
// last event it received from that service, so the handler sees every
// event once: no gap and no repeat.
//
// Ordering is per service. The events of one service reach the handler in
// that service's cursor order; events of different services are
// interleaved as they arrive, so neither their cursors nor their times
// order them against each other.
//
// A typical engine persists Cursors after handling events and passes them
// back in Config.After when it starts again:
//
//	w, err := watch.New(watch.Config{
//		Registration: regConn, Bundles: bundlesConn, Heartbeat: hbConn,
//		After: saved,
//	})
//	...
//	err = w.Run(ctx, func(e watch.Event) error {
//		if err := apply(e); err != nil {
//			return err // Run stops; e is not counted as delivered
//		}
//		saved.Advance(e) // or persist w.Cursors() now and then
//		return nil
//	})
//
// A service that has dropped the events after a cursor makes Run fail with
// a *CursorError; an engine then resynchronises its state and starts again.
package watch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// MaxNodeIDs is the most node IDs a watch may select.
const MaxNodeIDs = 100

// StableAfter is how long a stream must stay up, when it delivers no
// event, for its end to count as a break rather than a failed attempt.
const StableAfter = 10 * time.Second

// Defaults of Backoff.
const (
	DefaultInitialBackoff = 500 * time.Millisecond
	DefaultMaxBackoff     = 30 * time.Second
)

// Config says what to watch and from where.
type Config struct {
	// Registration, Bundles and Heartbeat are connections to the services
	// whose logs to watch, authenticated as an admin (for example a
	// *grpc.ClientConn with the admin certificate). A nil connection is a
	// service not watched. One connection may serve several services.
	Registration grpc.ClientConnInterface
	Bundles      grpc.ClientConnInterface
	Heartbeat    grpc.ClientConnInterface

	// After are the cursors to resume after, usually those persisted from
	// an earlier watch. A watched service without a cursor starts at the
	// oldest event its log keeps, or with FromNow after its newest event.
	// Cursors of services not watched are kept in Cursors untouched.
	After Cursors
	// FromNow starts the services without a cursor in After after their
	// newest event instead of at their oldest. Until such a service has
	// delivered an event there is no cursor to resume from, so a stream
	// that breaks before then reconnects from now again, and events in
	// between are not delivered.
	FromNow bool

	// NodeIDs, when set, keeps only events of these nodes (at most
	// MaxNodeIDs).
	NodeIDs []string
	// Types, when set, keeps only events of these types (see EventTypes).
	// A service sending none of them is not watched at all.
	Types []string

	// Backoff spaces out reconnections.
	Backoff Backoff
	// MaxFailures is how many attempts of one service may fail in a row
	// before Run gives up with a *ServiceError; 0 retries for ever. An
	// attempt that delivers an event, or that stays up for StableAfter,
	// ends the run of failures.
	MaxFailures int
	// OnRetry, when set, is told about every reconnection before its
	// delay, and may refuse it: an error it returns ends Run with that
	// error. It is called from the service's own goroutine and must not
	// block.
	OnRetry func(Retry) error
}

// Backoff is a capped, jittered exponential backoff: the delay after the
// n-th failure in a row is drawn from [d/2, d] where d = Initial·2^n,
// capped at Max. A stream that broke after working reconnects after a
// delay drawn from [Initial/2, Initial].
type Backoff struct {
	// Initial is the first delay; 0 means DefaultInitialBackoff.
	Initial time.Duration
	// Max caps the delay; 0 means DefaultMaxBackoff.
	Max time.Duration
}

// delay is the jittered delay after failures failed attempts in a row.
func (b Backoff) delay(failures int) time.Duration {
	d := b.Initial
	for range failures {
		if d >= b.Max/2 {
			d = b.Max
			break
		}
		d *= 2
	}
	d = min(d, b.Max)
	half := d / 2
	return half + rand.N(d-half+1)
}

// Retry describes a reconnection, for Config.OnRetry.
type Retry struct {
	Service Service
	// Err is why the stream ended.
	Err error
	// Failures is how many attempts in a row have failed; 0 when a stream
	// that worked broke.
	Failures int
	// Connected says a stream of the service has worked during this Run:
	// it delivered an event or stayed up for StableAfter.
	Connected bool
	// Delay is how long the watcher waits before reconnecting.
	Delay time.Duration
	// After is the cursor it reconnects after; FromNow says it reconnects
	// from now, having no cursor yet.
	After   int64
	FromNow bool
}

// Watcher follows the event logs of the services of its Config.
type Watcher struct {
	sources     []source
	fromNow     bool
	backoff     Backoff
	maxFailures int
	onRetry     func(Retry) error

	mu      sync.Mutex
	cursors Cursors // of delivered events
	running bool
}

// New checks c and returns a Watcher. It does not contact any service.
func New(c Config) (*Watcher, error) {
	if len(c.NodeIDs) > MaxNodeIDs {
		return nil, fmt.Errorf("watch: %d node IDs; at most %d may be watched", len(c.NodeIDs), MaxNodeIDs)
	}
	for _, id := range c.NodeIDs {
		if strings.TrimSpace(id) == "" {
			return nil, errors.New("watch: empty node ID")
		}
	}
	for s, cur := range c.After {
		if _, err := ParseService(string(s)); err != nil {
			return nil, fmt.Errorf("watch: cursor of %w", err)
		}
		if cur < 0 {
			return nil, fmt.Errorf("watch: negative cursor %d of %s", cur, s)
		}
	}
	types := map[Service][]string{}
	for _, t := range c.Types {
		s, ok := ServiceOf(t)
		if !ok {
			return nil, fmt.Errorf("watch: unknown event type %q", t)
		}
		if !slices.Contains(types[s], t) {
			types[s] = append(types[s], t)
		}
	}
	w := &Watcher{
		fromNow:     c.FromNow,
		backoff:     c.Backoff,
		maxFailures: max(c.MaxFailures, 0),
		onRetry:     c.OnRetry,
		cursors:     c.After.Clone(),
	}
	if w.cursors == nil {
		w.cursors = Cursors{}
	}
	if w.backoff.Initial <= 0 {
		w.backoff.Initial = DefaultInitialBackoff
	}
	if w.backoff.Max <= 0 {
		w.backoff.Max = DefaultMaxBackoff
	}
	w.backoff.Max = max(w.backoff.Max, w.backoff.Initial)
	conns := map[Service]grpc.ClientConnInterface{Registration: c.Registration, Bundles: c.Bundles, Heartbeat: c.Heartbeat}
	for _, s := range Services() {
		if conns[s] == nil || (len(c.Types) > 0 && len(types[s]) == 0) {
			continue
		}
		w.sources = append(w.sources, newSource(s, conns[s], filter{nodeIDs: slices.Clone(c.NodeIDs), types: types[s]}))
	}
	if len(w.sources) == 0 {
		return nil, ErrNoServices
	}
	return w, nil
}

// Services returns the services w watches.
func (w *Watcher) Services() []Service {
	out := make([]Service, len(w.sources))
	for i, src := range w.sources {
		out[i] = src.service
	}
	return out
}

// Cursors returns the cursors of the events delivered so far (those the
// handler accepted), with the starting cursors of Config.After for the
// services that delivered nothing yet. It may be called at any time, from
// any goroutine, including the handler.
func (w *Watcher) Cursors() Cursors {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.cursors.Clone()
}

// Run watches until ctx ends, handle returns an error, or a service fails
// for good. It calls handle for each event, from one goroutine, one event
// at a time; an event is delivered (counted in Cursors) once handle
// returns nil. Run returns ctx.Err(), handle's error, a *CursorError or a
// *ServiceError. A Watcher may Run again: it resumes after the events
// delivered so far. It may not Run twice at once.
func (w *Watcher) Run(ctx context.Context, handle func(Event) error) error {
	w.mu.Lock()
	if w.running {
		w.mu.Unlock()
		return errors.New("watch: Run called while running")
	}
	w.running = true
	start := w.cursors.Clone()
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		w.running = false
		w.mu.Unlock()
	}()

	ctx, cancel := context.WithCancel(ctx)
	events := make(chan Event) // unbuffered: a stream reads no further than the handler
	errs := make(chan error, len(w.sources))
	var wg sync.WaitGroup
	for _, src := range w.sources {
		after, ok := start[src.service]
		p := position{after: after, fromNow: !ok && w.fromNow}
		wg.Go(func() { errs <- w.follow(ctx, src, p, events) })
	}
	err := w.deliver(ctx, events, errs, handle)
	cancel()
	wg.Wait()
	return err
}

// deliver hands events to handle until something ends the run.
func (w *Watcher) deliver(ctx context.Context, events <-chan Event, errs <-chan error, handle func(Event) error) error {
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-errs:
			if err != nil {
				return err
			}
		case e := <-events:
			if ctx.Err() != nil {
				return ctx.Err() // stop promptly once ended, even with events ready
			}
			if err := handle(e); err != nil {
				return err
			}
			w.mu.Lock()
			w.cursors.Advance(e)
			w.mu.Unlock()
		}
	}
}

// position is where a service's stream resumes.
type position struct {
	after   int64
	fromNow bool // no cursor yet: start after the newest event
}

// follow keeps one service's stream going until ctx ends (nil) or it fails
// for good.
func (w *Watcher) follow(ctx context.Context, src source, p position, out chan<- Event) error {
	failures, connected := 0, false
	for {
		began := time.Now()
		delivered, err := w.attempt(ctx, src, &p, out)
		if ctx.Err() != nil || deadlineReached(ctx, err) {
			return nil
		}
		if err == nil || errors.Is(err, io.EOF) {
			err = errStreamEnded
		}
		if cerr := cursorErr(src.service, p, err); cerr != nil {
			return cerr
		}
		if delivered || time.Since(began) >= StableAfter {
			failures, connected = 0, true
		} else {
			failures++
		}
		if permanent(err) || (w.maxFailures > 0 && failures >= w.maxFailures) {
			return &ServiceError{Service: src.service, Failures: max(failures, 1), Err: err}
		}
		delay := w.backoff.delay(failures)
		if w.onRetry != nil {
			r := Retry{Service: src.service, Err: err, Failures: failures, Connected: connected,
				Delay: delay, After: p.after, FromNow: p.fromNow}
			if err := w.onRetry(r); err != nil {
				return err
			}
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// deadlineReached says err is ctx's deadline, enforced by the server (which
// learns it from the request) a moment before ctx itself expires; it then
// waits for ctx to end.
func deadlineReached(ctx context.Context, err error) bool {
	dl, ok := ctx.Deadline()
	if !ok || status.Code(err) != codes.DeadlineExceeded || time.Until(dl) > time.Second {
		return false
	}
	<-ctx.Done()
	return true
}

// errStreamEnded is a stream the server closed without an error, which a
// watch never does on its own (it follows for ever); reconnect.
var errStreamEnded = errors.New("the server ended the stream")

// cursorErr is the CursorError of an OutOfRange err, or nil.
func cursorErr(s Service, p position, err error) error {
	if !isOutOfRange(err) {
		return nil
	}
	return cursorError(s, p.after, err)
}

// attempt opens one stream at p and forwards its events to out until it
// ends, moving p past every event handed over. It returns whether it
// handed over any event, and why the stream ended.
func (w *Watcher) attempt(ctx context.Context, src source, p *position, out chan<- Event) (bool, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	recv, err := src.open(ctx, p.after, p.fromNow)
	if err != nil {
		return false, err
	}
	delivered := false
	for {
		e, err := recv()
		if err != nil {
			return delivered, err
		}
		// A service sends each event once and in cursor order; anything at
		// or before the position was delivered already.
		if e == nil || (!p.fromNow && e.Cursor <= p.after) {
			continue
		}
		select {
		case out <- *e:
		case <-ctx.Done():
			return delivered, ctx.Err()
		}
		p.after, p.fromNow, delivered = e.Cursor, false, true
	}
}
