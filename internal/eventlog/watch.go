package eventlog

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/berth-dev/berth/internal/metrics"
)

// DefaultPollPeriod is how often a watch reads the log for events that
// other processes (replicas) appended; this process's appends wake it at
// once.
const DefaultPollPeriod = 500 * time.Millisecond

// FollowerConfig configures a Follower.
type FollowerConfig struct {
	// Source is the log followed. Required.
	Source Source
	// PollPeriod is how often an idle watch reads the log
	// (DefaultPollPeriod).
	PollPeriod time.Duration
	// PageSize is how many events a watch reads at a time
	// (DefaultPageSize).
	PageSize int
	// After is time.After unless set; tests drive it by hand.
	After func(time.Duration) <-chan time.Time
	// Done, when closed, ends every watch with ErrClosed: the owner is
	// shutting down, and the watchers should reconnect elsewhere.
	Done <-chan struct{}
	// Watchers, when set, keeps each open watch's position, for the
	// metrics of watcher lag.
	Watchers *metrics.WatcherSet
}

// Follower runs watches on one log. It is safe for concurrent use.
type Follower struct{ c FollowerConfig }

// NewFollower checks c and fills its defaults.
func NewFollower(c FollowerConfig) (*Follower, error) {
	if c.Source == nil {
		return nil, errors.New("eventlog: FollowerConfig.Source is required")
	}
	if c.PollPeriod <= 0 {
		c.PollPeriod = DefaultPollPeriod
	}
	if c.PageSize <= 0 {
		c.PageSize = DefaultPageSize
	}
	if c.After == nil {
		c.After = time.After
	}
	return &Follower{c}, nil
}

// WatchRequest says where a watch starts and what it sends.
type WatchRequest struct {
	// After is the cursor of the last event the caller has; 0 starts at the
	// oldest event kept. It must not be negative.
	After int64
	// FromNow starts after the newest event instead of After.
	FromNow bool
	// NodeIDs and Types, when not empty, keep only matching events.
	NodeIDs []string
	Types   []string
	// Started, when set, is called once the watch's start is fixed (the
	// cursor it sends events after), before any event is sent: a caller
	// that keeps a copy of what the log describes (a cache) knows that
	// every change from then on reaches it. Its error ends the watch.
	Started func(after int64) error
}

// Watch sends the events after the request's cursor, in cursor order, then
// follows the log until ctx ends, the follower is done (ErrClosed) or send
// fails (its error is returned): it wakes when this process appends and
// polls every PollPeriod for other processes' events. Every event is sent
// once, so a caller that watches again after the last cursor it received
// misses nothing and sees nothing twice.
//
// A cursor after which retention deleted events fails with a *CursorError,
// at the start or, for a watcher that falls behind retention, later; so does
// a cursor ahead of the log.
func (f *Follower) Watch(ctx context.Context, r WatchRequest, send func(Event) error) error {
	if r.After < 0 {
		return fmt.Errorf("watch: negative cursor %d", r.After)
	}
	b, err := f.c.Source.Bounds(ctx)
	if err != nil {
		return fmt.Errorf("watch: %w", err)
	}
	after := r.After
	// fromOldest: the caller asked for everything kept, so a retention run
	// that lands between the bounds and the first read moves the start on
	// rather than failing.
	fromOldest := false
	switch {
	case r.FromNow:
		after = b.Head
	case after == 0:
		after, fromOldest = b.DeletedThrough, true
	case after < b.DeletedThrough:
		return staleCursor(after, b)
	case after > b.Head:
		return &CursorError{Cursor: after, Oldest: max(b.Oldest, b.DeletedThrough+1), DeletedThrough: b.DeletedThrough, Newest: b.Head, Ahead: true}
	}
	if r.Started != nil {
		if err := r.Started(after); err != nil {
			return err
		}
	}
	q := Query{NodeIDs: r.NodeIDs, Types: r.Types, Limit: f.c.PageSize}
	w := f.c.Watchers.Open(after)
	defer w.Close()
	for {
		// Taken before reading, so that an append during the read is not
		// missed.
		wake := f.c.Source.Appended()
		q.After = after
		page, err := f.c.Source.Read(ctx, q)
		if err != nil {
			return fmt.Errorf("watch: %w", err)
		}
		if after < page.DeletedThrough {
			if fromOldest {
				after, fromOldest = page.DeletedThrough, false
				continue
			}
			return f.stale(ctx, after, page)
		}
		fromOldest = false
		for _, e := range page.Events {
			if err := send(e); err != nil {
				return err
			}
		}
		after = page.Next
		w.Read(after)
		if len(page.Events) == f.c.PageSize {
			continue
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-f.c.Done:
			return ErrClosed
		case <-wake:
		case <-f.c.After(f.c.PollPeriod):
		}
	}
}

// stale builds the CursorError of a watcher that fell behind retention,
// with the oldest cursor kept as of now.
func (f *Follower) stale(ctx context.Context, after int64, page Page) error {
	b, err := f.c.Source.Bounds(ctx)
	if err != nil || b.DeletedThrough < page.DeletedThrough {
		b = Bounds{DeletedThrough: page.DeletedThrough, Head: page.Next}
	}
	return staleCursor(after, b)
}
