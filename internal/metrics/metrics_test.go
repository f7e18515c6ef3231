package metrics

import (
	"errors"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestWatcherLag: the lag is that of the slowest open watch; a closed one
// no longer counts.
func TestWatcherLag(t *testing.T) {
	m, err := New(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	set := m.Watchers("registration")
	if set != m.Watchers("registration") {
		t.Fatal("a service's watches are not kept in one set")
	}
	a, b := set.Open(10), set.Open(3)
	if n, lag := set.Stats(12); n != 2 || lag != 9 {
		t.Errorf("Stats = %d, %d; want 2 watches, lag 9 (the slowest)", n, lag)
	}
	b.Read(12)
	if n, lag := set.Stats(12); n != 2 || lag != 2 {
		t.Errorf("after the slowest caught up: %d, %d; want 2, 2", n, lag)
	}
	a.Close()
	b.Close()
	if n, lag := set.Stats(12); n != 0 || lag != 0 {
		t.Errorf("after both closed: %d, %d; want 0, 0", n, lag)
	}
	var none *Metrics // a service built without metrics
	none.Watchers("x").Open(1).Read(2)
	none.Registration(ResultApproved)
	if _, err := New(prometheus.NewRegistry()); err != nil {
		t.Errorf("a second process's metrics on another registry: %v", err)
	}
}

func TestResult(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want string
	}{
		{nil, ResultOK},
		{status.Error(codes.NotFound, "x"), ResultNotFound},
		{status.Error(codes.InvalidArgument, "x"), ResultRefused},
		{status.Error(codes.PermissionDenied, "x"), ResultRefused},
		{status.Error(codes.FailedPrecondition, "x"), ResultRefused},
		{status.Error(codes.Unavailable, "x"), ResultError},
		{status.Error(codes.Internal, "x"), ResultError},
		{errors.New("plain"), ResultError},
	} {
		if got := Result(tt.err); got != tt.want {
			t.Errorf("Result(%v) = %s, want %s", tt.err, got, tt.want)
		}
	}
}
