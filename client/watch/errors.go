package watch

import (
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// ErrNoServices is returned by New when Config names no service to watch.
var ErrNoServices = errors.New("watch: no service to watch: set a connection of at least one service whose events Types selects")

// ServiceError is a service's watch failing in a way that reconnecting does
// not cure (Unimplemented, PermissionDenied, InvalidArgument, ...), or
// failing Config.MaxFailures times in a row. Err is the last gRPC error;
// status.Code(err) sees through a ServiceError.
type ServiceError struct {
	Service Service
	// Failures is how many attempts in a row failed: 1 for an error that
	// is not retried.
	Failures int
	Err      error
}

func (e *ServiceError) Error() string {
	if e.Failures > 1 {
		return fmt.Sprintf("watch %s: %d attempts failed, the last with: %v", e.Service, e.Failures, e.Err)
	}
	return fmt.Sprintf("watch %s: %v", e.Service, e.Err)
}

func (e *ServiceError) Unwrap() error { return e.Err }

// CursorError is a service refusing to resume a watch after a cursor
// (gRPC OutOfRange), either because retention deleted events after it, or
// because the cursor is ahead of the log (the service's database was
// replaced). Events were lost for this watcher: resynchronise the state
// the events feed (ListNodes, ListNodeHealth) and watch again, dropping
// the service's cursor (which starts at the oldest event kept) or with
// FromNow.
type CursorError struct {
	Service Service
	// After is the cursor the watch asked to resume after.
	After int64
	// Ahead says After is ahead of the log rather than behind it.
	Ahead bool
	// Oldest is the oldest cursor the service still keeps (a watch after
	// Oldest-1 starts there); Newest is the newest cursor of its log. Both
	// come from the status's berth.v1.CursorOutOfRange detail, and are -1
	// when the service sent none.
	Oldest, Newest int64
	// Err is the gRPC error; status.Code(err) sees through a CursorError.
	Err error
}

func (e *CursorError) Error() string {
	if e.Ahead {
		s := fmt.Sprintf("watch %s: cursor %d is ahead of the event log", e.Service, e.After)
		if e.Newest >= 0 {
			s += fmt.Sprintf(", whose newest cursor is %d", e.Newest)
		}
		return s
	}
	s := fmt.Sprintf("watch %s: events after cursor %d are no longer kept", e.Service, e.After)
	if e.Oldest >= 0 {
		s += fmt.Sprintf("; the oldest cursor available is %d", e.Oldest)
	}
	return s
}

func (e *CursorError) Unwrap() error { return e.Err }

// cursorError reads an OutOfRange status into a CursorError, from the
// CursorOutOfRange detail every service attaches.
func cursorError(s Service, after int64, err error) *CursorError {
	ce := &CursorError{Service: s, After: after, Oldest: -1, Newest: -1, Err: err}
	for _, d := range status.Convert(err).Details() {
		if c, ok := d.(*berthv1.CursorOutOfRange); ok {
			ce.Ahead, ce.Oldest, ce.Newest = c.GetAhead(), c.GetOldestCursor(), c.GetNewestCursor()
		}
	}
	return ce
}

// permanent says whether a stream that ended with err cannot succeed by
// reconnecting with the same request. Everything else (Unavailable,
// Aborted, Internal, a stream the server ended, ...) is retried.
func permanent(err error) bool {
	switch status.Code(err) {
	case codes.InvalidArgument, codes.NotFound, codes.AlreadyExists, codes.PermissionDenied,
		codes.FailedPrecondition, codes.OutOfRange, codes.Unimplemented, codes.Unauthenticated:
		return true
	}
	return false
}

func isOutOfRange(err error) bool { return status.Code(err) == codes.OutOfRange }
