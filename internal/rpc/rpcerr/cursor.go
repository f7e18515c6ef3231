package rpcerr

import (
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/berth-dev/berth/internal/eventlog"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// Public messages of a watch's OutOfRange, the same for every service. The
// cursors travel as a berth.v1.CursorOutOfRange detail; the numbers in the
// message are for people.
const (
	MsgCursorGone  = "after_cursor %d is older than the oldest event kept; the oldest cursor available is %d"
	MsgCursorAhead = "after_cursor %d is ahead of the event log, whose newest cursor is %d"
)

// CursorStatus is the OutOfRange status of a watch that cannot resume
// after a cursor, with the cursors as a typed detail.
func CursorStatus(e *eventlog.CursorError) *status.Status {
	msg := fmt.Sprintf(MsgCursorGone, e.Cursor, e.Oldest)
	if e.Ahead {
		msg = fmt.Sprintf(MsgCursorAhead, e.Cursor, e.Newest)
	}
	st := status.New(codes.OutOfRange, msg)
	withDetail, err := st.WithDetails(&berthv1.CursorOutOfRange{
		AfterCursor: e.Cursor, Ahead: e.Ahead, OldestCursor: e.Oldest, DeletedThrough: e.DeletedThrough, NewestCursor: e.Newest,
	})
	if err != nil {
		return st // only a message that cannot be marshalled fails
	}
	return withDetail
}
