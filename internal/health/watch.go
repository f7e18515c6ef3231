package health

import (
	"context"
	"fmt"

	"github.com/berth-dev/berth/internal/store/hbstore"
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
	Types   []hbstore.EventType
}

// Watch sends the events after the request's cursor, in cursor order, then
// follows the log until ctx ends or send fails: it wakes when this replica
// appends and polls the store every PollPeriod for the other replicas'
// events. Every event is sent once, so a caller that watches again after
// the last cursor it received misses nothing and sees nothing twice.
//
// A cursor whose following events retention deleted, or one ahead of the
// log, fails with a *CursorError, at the start or, for a watcher that falls
// behind retention, later. When Run returns, Watch returns ErrClosing.
func (c *Core) Watch(ctx context.Context, r WatchRequest, send func(hbstore.Event) error) error {
	deleted, head, err := c.store.EventBounds(ctx)
	if err != nil {
		return fmt.Errorf("watch: %w", err)
	}
	after := r.After
	switch {
	case r.FromNow:
		after = head
	case after == 0:
		after = deleted
	case after < deleted:
		return &CursorError{Cursor: after, Oldest: deleted, Newest: head}
	case after > head:
		return &CursorError{Cursor: after, Oldest: deleted, Newest: head, Ahead: true}
	}
	q := hbstore.EventQuery{NodeIDs: r.NodeIDs, Types: r.Types, Limit: watchPage}
	for {
		// Taken before reading, so an append during the read is not missed.
		wake := c.appendedChan()
		q.After = after
		page, err := c.store.ReadEvents(ctx, q)
		if err != nil {
			return fmt.Errorf("watch: %w", err)
		}
		if after < page.DeletedThrough {
			return &CursorError{Cursor: after, Oldest: page.DeletedThrough, Newest: page.Next}
		}
		for _, e := range page.Events {
			if err := send(e); err != nil {
				return err
			}
		}
		after = page.Next
		if len(page.Events) == watchPage {
			continue
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-c.closed:
			return ErrClosing
		case <-wake:
		case <-c.clock.After(c.cfg.PollPeriod):
		}
	}
}
