package grpctest

import (
	"bytes"
	"log/slog"
	"sync"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// WantCode fails the test unless err carries the code.
func WantCode(t testing.TB, err error, want codes.Code) {
	t.Helper()
	if got := status.Code(err); got != want {
		t.Fatalf("code = %v (%v), want %v", got, err, want)
	}
}

// WantStatus fails the test unless err carries the code and the message.
func WantStatus(t testing.TB, err error, code codes.Code, msg string) {
	t.Helper()
	WantCode(t, err, code)
	if got := status.Convert(err).Message(); got != msg {
		t.Fatalf("message = %q, want %q", got, msg)
	}
}

// Logs collects the log output of concurrent handlers.
type Logs struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// NewLogger returns a debug-level text logger writing to a new Logs.
func NewLogger() (*slog.Logger, *Logs) {
	l := &Logs{}
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug})), l
}

func (l *Logs) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String returns everything written so far.
func (l *Logs) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
