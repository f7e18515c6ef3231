// Package lifecycle serves a service's node lifecycle event log to the
// engine: it checks watch filters, replays the log after a cursor and then
// follows it, prunes events past their retention, and says which gRPC status
// each of its errors deserves. The registration service and the bundle
// store both serve their logs through it.
package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/berth-dev/berth/internal/eventlog"
	"github.com/berth-dev/berth/internal/ident"
	"github.com/berth-dev/berth/internal/metrics"
	"github.com/berth-dev/berth/internal/rpc/rpcerr"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// Defaults of a Feed.
const (
	DefaultRetention = 7 * 24 * time.Hour
	PrunePeriod      = 10 * time.Minute
	// MaxWatchNodes bounds the node IDs of one watch filter.
	MaxWatchNodes = 100
)

// Config describes one service's log.
type Config struct {
	// Log is the service's event log. Required.
	Log eventlog.Log
	// Service names the service in messages ("registration", "bundles").
	Service string
	// Types are the event types the log holds; filters may name only these.
	Types []string
	// Retention is how long events are kept (DefaultRetention).
	Retention time.Duration
	Now       func() time.Time
	Logger    *slog.Logger
	// Watchers, when set, keeps the positions of open watches (metrics).
	Watchers *metrics.WatcherSet
}

// Feed serves one log.
type Feed struct {
	cfg      Config
	follower *eventlog.Follower
	stop     chan struct{}
	stopOnce sync.Once
}

// New checks the configuration and fills defaults.
func New(c Config) (*Feed, error) {
	if c.Log == nil {
		return nil, errors.New("lifecycle: Config.Log is required")
	}
	if c.Retention <= 0 {
		c.Retention = DefaultRetention
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	stop := make(chan struct{})
	follower, err := eventlog.NewFollower(eventlog.FollowerConfig{Source: c.Log, Done: stop, Watchers: c.Watchers})
	if err != nil {
		return nil, err
	}
	return &Feed{cfg: c, follower: follower, stop: stop}, nil
}

// Watch replays the log after the filter's cursor and then follows it,
// sending each event, until ctx ends, the send fails, or Run ends. A send
// error is returned as a *SendError: the stream is broken and its own
// status says why.
func (f *Feed) Watch(ctx context.Context, filter *berthv1.LifecycleFilter, send func(*berthv1.LifecycleEvent) error) error {
	return f.WatchStarted(ctx, filter, nil, send)
}

// StartHeader is the response header of a watch stream that says the
// watch has started and after which cursor it sends events (see
// WatchStarted). A client that must not miss a change made after it
// began watching (the registration service's bundle cache) waits for it.
const StartHeader = "berth-watch-start"

// WatchStarted is Watch, calling started (when not nil) once the cursor
// it starts after is fixed, before any event is sent; an error of started
// is returned as a *SendError.
func (f *Feed) WatchStarted(ctx context.Context, filter *berthv1.LifecycleFilter, started func(after int64) error, send func(*berthv1.LifecycleEvent) error) error {
	w, err := f.parse(filter)
	if err != nil {
		return err
	}
	var sendErr error
	if started != nil {
		w.Started = func(after int64) error {
			sendErr = started(after)
			return sendErr
		}
	}
	err = f.follower.Watch(ctx, w, func(e eventlog.Event) error {
		sendErr = send(ToProto(e))
		return sendErr
	})
	if sendErr != nil {
		return &SendError{Err: sendErr}
	}
	return err
}

// Run prunes expired events now and every PrunePeriod until ctx ends; then
// it ends every watch (they get Unavailable) and returns nil. Call it once,
// in the background, while the service serves; every replica may.
func (f *Feed) Run(ctx context.Context) error {
	defer f.stopOnce.Do(func() { close(f.stop) })
	for {
		if n, err := f.Prune(ctx); err != nil && ctx.Err() == nil {
			f.cfg.Logger.Error("pruning events failed; will retry", "service", f.cfg.Service, "error", err)
		} else if n > 0 {
			f.cfg.Logger.Info("pruned events", "service", f.cfg.Service, "count", n)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(PrunePeriod):
		}
	}
}

// Prune deletes the events older than the retention period and returns how
// many it deleted.
func (f *Feed) Prune(ctx context.Context) (int64, error) {
	n, err := f.cfg.Log.DeleteBefore(ctx, f.cfg.Now().Add(-f.cfg.Retention))
	if err != nil {
		return n, fmt.Errorf("prune %s events: %w", f.cfg.Service, err)
	}
	return n, nil
}

// parse checks a filter; nil is the empty filter.
func (f *Feed) parse(flt *berthv1.LifecycleFilter) (eventlog.WatchRequest, error) {
	var w eventlog.WatchRequest
	switch {
	case flt.GetAfterCursor() < 0:
		return w, &FilterError{Field: "filter.after_cursor", Rule: "must not be negative"}
	case flt.GetFromNow() && flt.GetAfterCursor() != 0:
		return w, &FilterError{Field: "filter.after_cursor", Rule: "must be 0 with from_now"}
	case len(flt.GetNodeIds()) > MaxWatchNodes:
		return w, &FilterError{Field: "filter.node_ids", Rule: "must name at most 100 nodes"}
	}
	for _, id := range flt.GetNodeIds() {
		if ident.NodeID(id) != nil {
			return w, &FilterError{Field: "filter.node_ids", Rule: "must each be a node ID"}
		}
	}
	for _, t := range flt.GetTypes() {
		if !slices.Contains(f.cfg.Types, t) {
			return w, &FilterError{Field: "filter.types", Rule: "must each be one of " + strings.Join(f.cfg.Types, ", ")}
		}
	}
	w.After, w.FromNow = flt.GetAfterCursor(), flt.GetFromNow()
	w.NodeIDs, w.Types = flt.GetNodeIds(), flt.GetTypes()
	return w, nil
}

// ToProto converts a log event.
func ToProto(e eventlog.Event) *berthv1.LifecycleEvent {
	return &berthv1.LifecycleEvent{
		Cursor:  e.Cursor,
		Type:    e.Type,
		NodeId:  e.NodeID,
		Time:    timestamppb.New(e.Time),
		Details: e.Details,
	}
}

// FilterError is a bad watch filter. Its message names the field and a
// constant rule, never the value, so it is safe to show.
type FilterError struct{ Field, Rule string }

func (e *FilterError) Error() string { return e.Field + ": " + e.Rule }

// SendError is a watch whose stream broke while sending.
type SendError struct{ Err error }

func (e *SendError) Error() string { return "send event: " + e.Err.Error() }

func (e *SendError) Unwrap() error { return e.Err }

// Status says which gRPC code and public message an error of Watch
// deserves; ok is false for errors that are not Watch's own (the service
// maps those as usual). A *SendError is not mapped: return its Err as is.
func (f *Feed) Status(err error) (code codes.Code, msg string, ok bool) {
	var (
		fe *FilterError
		ce *eventlog.CursorError
	)
	switch {
	case errors.As(err, &fe):
		return codes.InvalidArgument, fe.Error(), true
	case errors.As(err, &ce):
		st := rpcerr.CursorStatus(ce)
		return st.Code(), st.Message(), true
	case errors.Is(err, eventlog.ErrClosed):
		return codes.Unavailable, f.cfg.Service + " service is shutting down; watch again after the last cursor received", true
	}
	return codes.OK, "", false
}

// GRPCError turns an error of Watch into what the RPC returns: the raw
// error of a broken stream, or a status with a public message. ok is false
// for other errors (a failing store, a canceled call), which the service
// maps as it maps every other error.
func (f *Feed) GRPCError(err error) (out error, ok bool) {
	var se *SendError
	if errors.As(err, &se) {
		return se.Err, true
	}
	var ce *eventlog.CursorError
	if errors.As(err, &ce) {
		return rpcerr.CursorStatus(ce).Err(), true
	}
	if code, msg, handled := f.Status(err); handled {
		return status.Error(code, msg), true
	}
	return err, false
}
