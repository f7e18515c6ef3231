package liveness

import (
	"context"
	"errors"

	"github.com/berth-dev/berth/internal/eventlog"
	"github.com/berth-dev/berth/internal/store/heartbeatstore"
)

// watchPage is how many events a watch reads at a time.
const watchPage = 500

// WatchRequest says where a watch starts and what it sends.
type WatchRequest struct {
	// After is the cursor of the last event the caller has; 0 starts at the
	// oldest event kept.
	After int64
	// FromNow starts after the newest event instead of After.
	FromNow bool
	// NodeIDs and Types, when not empty, keep only matching events.
	NodeIDs []string
	Types   []heartbeatstore.EventType
	// Started, when set, is called once the watch's start is fixed, before
	// any event (eventlog.WatchRequest.Started).
	Started func(after int64) error
}

// Watch sends the events after the request's cursor, in cursor order, then
// follows the log (eventlog.Follower) until ctx ends or send fails: it
// wakes when this replica appends and polls the store every PollPeriod for
// the other replicas' events. Every event is sent once, so a caller that
// watches again after the last cursor it received misses nothing and sees
// nothing twice.
//
// A cursor whose following events retention deleted, or one ahead of the
// log, fails with an *eventlog.CursorError, at the start or, for a watcher
// that falls behind retention, later. When Run returns, Watch returns
// ErrClosing.
func (c *Core) Watch(ctx context.Context, r WatchRequest, send func(heartbeatstore.Event) error) error {
	w := eventlog.WatchRequest{After: r.After, FromNow: r.FromNow, NodeIDs: r.NodeIDs, Started: r.Started}
	for _, t := range r.Types {
		w.Types = append(w.Types, string(t))
	}
	err := c.follower.Watch(ctx, w, func(e eventlog.Event) error { return send(heartbeatstore.EventOf(e)) })
	if errors.Is(err, eventlog.ErrClosed) {
		return ErrClosing
	}
	return err
}
