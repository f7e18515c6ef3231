package eventlog

import (
	"context"
	"sync"
	"time"
)

// Source is a log as a follower reads it.
type Source interface {
	// Read returns the events after q.After that match q, in cursor order,
	// from one snapshot.
	Read(ctx context.Context, q Query) (Page, error)
	// Bounds returns the log's watermark, oldest and newest cursor.
	Bounds(ctx context.Context) (Bounds, error)
	// Appended returns a channel that is closed the next time this process
	// commits an append to the log. Other processes' appends do not close
	// it; followers poll for those.
	Appended() <-chan struct{}
}

// Log is a Source that retention can trim.
type Log interface {
	Source
	// DeleteBefore deletes the oldest events, up to but not including the
	// first one (in cursor order) at or after t, raises the watermark to the
	// newest cursor deleted, and returns how many it deleted.
	DeleteBefore(ctx context.Context, t time.Time) (int64, error)
}

// Notifier wakes the followers of one process when it appended events. Its
// zero value is ready to use.
type Notifier struct {
	mu sync.Mutex
	ch chan struct{}
}

// C returns a channel closed at the next Notify. Take it before reading the
// log, so that an append during the read is not missed.
func (n *Notifier) C() <-chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.ch == nil {
		n.ch = make(chan struct{})
	}
	return n.ch
}

// Notify wakes everyone waiting on a channel from C. Call it after the
// transaction that appended has committed.
func (n *Notifier) Notify() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.ch != nil {
		close(n.ch)
		n.ch = nil
	}
}
