package watch

import (
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/berth-dev/berth/internal/eventlog"
	"github.com/berth-dev/berth/internal/rpc/rpcerr"
)

// TestCursorErrorParsesEveryService: every service answers a cursor it
// cannot resume after with rpcerr.CursorStatus, whose typed detail brings
// the oldest and newest cursors to the engine as numbers, whatever the
// message says.
func TestCursorErrorParsesEveryService(t *testing.T) {
	tests := []struct {
		name           string
		err            error
		ahead          bool
		oldest, newest int64
	}{
		{"behind retention", rpcerr.CursorStatus(&eventlog.CursorError{Cursor: 3, Oldest: 7, DeletedThrough: 6, Newest: 9}).Err(), false, 7, 9},
		{"behind retention, log emptied", rpcerr.CursorStatus(&eventlog.CursorError{Cursor: 3, Oldest: 41, DeletedThrough: 40, Newest: 40}).Err(), false, 41, 40},
		{"ahead of the log", rpcerr.CursorStatus(&eventlog.CursorError{Cursor: 30, Ahead: true, Oldest: 1, Newest: 12}).Err(), true, 1, 12},
		// The cursors are read from the detail, never from the text.
		{"message without a detail", status.Error(codes.OutOfRange, "after_cursor 99 is ahead of the event log, whose newest cursor is 15"), false, -1, -1},
	}
	for _, tt := range tests {
		ce := cursorError(Registration, 3, tt.err)
		if ce.Ahead != tt.ahead || ce.Oldest != tt.oldest || ce.Newest != tt.newest {
			t.Errorf("%s: ahead %v oldest %d newest %d, want %v %d %d", tt.name, ce.Ahead, ce.Oldest, ce.Newest, tt.ahead, tt.oldest, tt.newest)
		}
	}
}
