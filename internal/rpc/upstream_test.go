package rpc

import (
	"errors"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestUpstreamError: the front door names the service it could not reach
// and why, and passes every answer of a service unchanged.
func TestUpstreamError(t *testing.T) {
	const down = "the bundles service at b:8443 cannot be reached (%s); retry later"
	tests := []struct {
		name string
		err  error
		want error
	}{
		{"refused", status.Error(codes.Unavailable, `connection error: desc = "transport: Error while dialing: dial tcp 10.0.0.1:8443: connect: connection refused"`),
			status.Errorf(codes.Unavailable, down, "dial tcp 10.0.0.1:8443: connect: connection refused")},
		{"name not resolved", status.Error(codes.Unavailable, `name resolver error: produced zero addresses`),
			status.Errorf(codes.Unavailable, down, "name resolver error: produced zero addresses")},
		{"broken", status.Error(codes.Unavailable, "error reading from server: EOF"),
			status.Errorf(codes.Unavailable, down, "the connection broke")},
		{"the service's own Unavailable", status.Error(codes.Unavailable, "database unavailable; retry later"),
			status.Error(codes.Unavailable, "database unavailable; retry later")},
		{"another code", status.Error(codes.NotFound, "connection error: not found"), status.Error(codes.NotFound, "connection error: not found")},
		{"no status", errors.New("connection error"), errors.New("connection error")},
		{"nil", nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := upstreamError("bundles", "b:8443", tt.err)
			if (got == nil) != (tt.want == nil) || got != nil && (status.Code(got) != status.Code(tt.want) || got.Error() != tt.want.Error()) {
				t.Errorf("upstreamError(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}
