// Package eventlog is the event log a service keeps next to its own tables,
// so that the management engine can follow what changed by cursor: replay
// the events after the last cursor it saw, then follow new ones live, and
// after a reconnect resume where it left off, missing nothing and seeing
// nothing twice.
//
// A log is two tables in the service's database, named after a prefix (see
// Table): <prefix>_events, one row per event keyed by its cursor, and
// <prefix>_events_watermark, one row holding the newest cursor that
// retention deleted. A store creates them in one of its own numbered
// migrations, copying literally the output of Schema (schema_test.go: only
// this package's tests run it), and appends events with
// SQLLog.Append in the same transaction as the change they record, so that
// a change and its event commit together or not at all. One implementation
// serves both engines through internal/db.
//
// # Cursor order
//
// A follower reads the events after the last cursor it saw and must never
// skip one. On PostgreSQL an identity column alone does not give that:
// values are handed out when rows are inserted, not when they commit, so a
// transaction that takes cursor 10 may commit after one that takes cursor
// 11, and a reader that already saw 11 would never read 10. Append
// therefore takes a transaction-scoped advisory lock, one per log, before it
// inserts, which is held until the transaction ends. Cursors are then handed
// out in commit order, and every snapshot sees a prefix of the log: all
// events up to the newest one it sees. SQLite has one writer at a time,
// which gives the same order by itself.
//
// The lock is taken by the append, so the append must be the transaction's
// last write: a transaction that holds the lock must not wait for a row lock
// too, or every appender queues behind that row (and two such transactions
// can deadlock). Taken last, it is held only from the insert to the commit.
//
// # Retention
//
// DeleteBefore deletes a prefix of the log, never a hole, and raises the
// watermark in the same transaction. A reader therefore knows exactly
// whether events after its cursor are gone: they are if its cursor is below
// the watermark (a *CursorError), and otherwise it has missed nothing.
//
// Node lifecycle (registration), bundle and health (heartbeat) events all
// live in logs of this one shape, read and followed by this one package.
package eventlog

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"sync"
	"time"
)

// Event is one entry of a log.
type Event struct {
	// Cursor orders the log; assigned by the database on append.
	Cursor int64
	// Type says what happened, in the owning service's vocabulary.
	Type string
	// NodeID is the node the event is about.
	NodeID string
	// Time is when it happened, stored in UTC at microsecond precision.
	Time time.Time
	// Details carry what the type needs; nil when there are none.
	Details map[string]string
}

// Query selects events for Read.
type Query struct {
	// After: only cursors greater than After.
	After int64
	// NodeIDs and Types, when not empty, keep only matching events.
	NodeIDs []string
	Types   []string
	// Limit bounds the page; <= 0 means DefaultPageSize.
	Limit int
}

// DefaultPageSize bounds a Read whose query does not say.
const DefaultPageSize = 500

// Page is the answer to Read, read from one snapshot.
type Page struct {
	// Events match the query, in cursor order.
	Events []Event
	// Next is where the following read should start: the last event's
	// cursor when the page is full, else the newest cursor of the log (or
	// the query's After, if larger), so that a filtered reader moves past
	// the events it does not want.
	Next int64
	// DeletedThrough is the newest cursor retention has deleted; a read
	// after an older cursor has missed events.
	DeletedThrough int64
}

// Bounds describe a log at one snapshot.
type Bounds struct {
	// DeletedThrough is the newest cursor retention deleted (0 if none).
	DeletedThrough int64
	// Oldest is the cursor of the oldest event kept; 0 when none is.
	Oldest int64
	// Head is the newest cursor, kept or deleted: at least DeletedThrough.
	Head int64
}

// tableName is what a prefix may look like: it becomes part of SQL
// identifiers, so nothing that needs quoting.
var tableName = regexp.MustCompile(`^[a-z][a-z0-9_]{0,31}$`)

// Table names one log: the tables <prefix>_events and
// <prefix>_events_watermark. Appends lock "<prefix>_events append" on
// PostgreSQL (db.Dialect.Lock).
type Table struct {
	events    string
	watermark string
}

// NewTable returns the log named by prefix ("reg" for reg_events). The
// prefix is a constant of the owning store; NewTable panics on one that is
// not a plain lower-case identifier.
func NewTable(prefix string) Table {
	if !tableName.MatchString(prefix) {
		panic(fmt.Sprintf("eventlog: table prefix %q is not a lower-case identifier", prefix))
	}
	events := prefix + "_events"
	return Table{events: events, watermark: events + "_watermark"}
}

// ErrClosed ends a watch because its Follower is shutting down.
var ErrClosed = errors.New("event log follower is shutting down")

// CursorError says a watch cannot start or continue after a cursor: the
// events after it were deleted by retention, or the cursor is ahead of the
// log (which happens when a database was replaced).
type CursorError struct {
	// Cursor is the one asked for.
	Cursor int64
	// Oldest is the lowest cursor an event kept may have: the oldest kept
	// event's, or DeletedThrough+1 when none is kept. Watching after
	// Oldest-1 (or after 0) starts at the oldest event kept.
	Oldest int64
	// DeletedThrough is the retention watermark.
	DeletedThrough int64
	// Newest is the newest cursor of the log.
	Newest int64
	// Ahead is set when Cursor is beyond Newest.
	Ahead bool
}

func (e *CursorError) Error() string {
	if e.Ahead {
		return fmt.Sprintf("cursor %d is ahead of the newest event %d", e.Cursor, e.Newest)
	}
	return fmt.Sprintf("cursor %d is older than the oldest kept event %d", e.Cursor, e.Oldest)
}

// staleCursor builds the error for a cursor below the watermark.
func staleCursor(cursor int64, b Bounds) *CursorError {
	oldest := b.Oldest
	if oldest == 0 || oldest <= b.DeletedThrough {
		oldest = b.DeletedThrough + 1
	}
	return &CursorError{Cursor: cursor, Oldest: oldest, DeletedThrough: b.DeletedThrough, Newest: b.Head}
}

// checkEvents refuses events that could not be read back meaningfully.
func checkEvents(events []Event) error {
	for i, e := range events {
		switch {
		case e.Type == "":
			return fmt.Errorf("event %d has no type", i)
		case e.Time.IsZero():
			return fmt.Errorf("event %d (%s) has no time", i, e.Type)
		}
	}
	return nil
}

// deleteBatch is how many events one retention transaction deletes at most,
// so that a large backlog does not hold one long transaction.
const deleteBatch = 5000

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

// Appended returns a channel closed at the next Notify. Take it before
// reading the log, so that an append during the read is not missed.
func (n *Notifier) Appended() <-chan struct{} {
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
