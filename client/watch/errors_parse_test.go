package watch

import (
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestCursorErrorParsesEveryService: the three services word OutOfRange the
// same way, so the oldest and newest cursors reach the engine as numbers.
func TestCursorErrorParsesEveryService(t *testing.T) {
	tests := []struct {
		msg            string
		ahead          bool
		oldest, newest int64
	}{
		{"after_cursor is older than the oldest event kept; the oldest cursor available is 7", false, 7, -1},
		{"after_cursor 3 is older than the oldest event kept; the oldest cursor available is 41", false, 41, -1},
		{"after_cursor is ahead of the event log, whose newest cursor is 12", true, -1, 12},
		{"after_cursor 99 is ahead of the event log, whose newest cursor is 15", true, -1, 15},
	}
	for _, tt := range tests {
		ce := cursorError(Registration, 3, status.Error(codes.OutOfRange, tt.msg))
		if ce.Ahead != tt.ahead || ce.Oldest != tt.oldest || ce.Newest != tt.newest {
			t.Errorf("%q: ahead %v oldest %d newest %d, want %v %d %d", tt.msg, ce.Ahead, ce.Oldest, ce.Newest, tt.ahead, tt.oldest, tt.newest)
		}
	}
}
