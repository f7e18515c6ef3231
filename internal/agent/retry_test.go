package agent

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// withRetryDelay is st with a RetryInfo detail asking for d.
func withRetryDelay(t *testing.T, c codes.Code, msg string, d time.Duration) error {
	t.Helper()
	st, err := status.New(c, msg).WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(d)})
	if err != nil {
		t.Fatal(err)
	}
	return st.Err()
}

func TestRetryable(t *testing.T) {
	tests := []struct {
		name      string
		err       error
		wantRetry bool
		wantDelay time.Duration
	}{
		{"nil", nil, false, 0},
		{"connection refused", &transientError{errors.New("connect: connection refused")}, true, 0},
		{"unavailable", status.Error(codes.Unavailable, "database is unavailable; retry later"), true, 0},
		{"unavailable with delay", withRetryDelay(t, codes.Unavailable, "busy", 3*time.Second), true, 3 * time.Second},
		{"deadline exceeded", status.Error(codes.DeadlineExceeded, "deadline exceeded"), true, 0},
		{"aborted", status.Error(codes.Aborted, "concurrent renewal"), true, 0},
		{"resource exhausted with delay", withRetryDelay(t, codes.ResourceExhausted, "overloaded", 2*time.Second), true, 2 * time.Second},
		{"resource exhausted, delay capped", withRetryDelay(t, codes.ResourceExhausted, "overloaded", time.Hour), true, maxServerDelay},
		{"resource exhausted without delay", status.Error(codes.ResourceExhausted, "bootstrap token has no uses left"), false, 0},
		{"wrapped unavailable", fmt.Errorf("resume: %w", status.Error(codes.Unavailable, "x")), true, 0},
		{"permission denied", status.Error(codes.PermissionDenied, "node is revoked"), false, 0},
		{"unauthenticated", status.Error(codes.Unauthenticated, "no certificate"), false, 0},
		{"invalid argument", status.Error(codes.InvalidArgument, "csr must be ..."), false, 0},
		{"failed precondition", status.Error(codes.FailedPrecondition, "hardware conflict"), false, 0},
		{"not found", status.Error(codes.NotFound, "no node is registered with this key"), false, 0},
		{"already exists", status.Error(codes.AlreadyExists, "key conflict"), false, 0},
		{"internal", status.Error(codes.Internal, "internal error"), false, 0},
		{"unimplemented", status.Error(codes.Unimplemented, "unknown method"), false, 0},
		{"unknown", status.Error(codes.Unknown, "?"), false, 0},
		{"untrusted", fmt.Errorf("%w: 127.0.0.1:1: pin", ErrUntrusted), false, 0},
		{"bundle store untrusted", fmt.Errorf("%w: x", errBundleStoreUntrusted), false, 0},
		{"canceled", context.Canceled, false, 0},
		{"plain error", errors.New("disk full on the node"), false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			retry, delay := retryable(tt.err)
			if retry != tt.wantRetry || delay != tt.wantDelay {
				t.Errorf("retryable = %v, %v; want %v, %v", retry, delay, tt.wantRetry, tt.wantDelay)
			}
			if isTransient(tt.err) != tt.wantRetry {
				t.Errorf("isTransient = %v", !tt.wantRetry)
			}
		})
	}
}

// TestBootRetriesTransientAnswers: every answer waiting can change is
// retried, and a server's RetryInfo delay is waited at least.
func TestBootRetriesTransientAnswers(t *testing.T) {
	fake := &fakeRegistration{}
	h := newHarness(t, fake)
	answers := []error{
		status.Error(codes.Unavailable, "database is unavailable; retry later"),
		status.Error(codes.Aborted, "concurrent request"),
		withRetryDelay(t, codes.ResourceExhausted, "too many registrations; retry later", 7*time.Second),
		status.Error(codes.DeadlineExceeded, "deadline exceeded"),
	}
	var n atomic.Int32
	fake.resume = func(context.Context, *berthv1.ResumeRequest) (*berthv1.ResumeResponse, error) {
		if i := int(n.Add(1)) - 1; i < len(answers) {
			return nil, answers[i]
		}
		return &berthv1.ResumeResponse{Credentials: approved(t, h.pki, pubOf(h.cfg.Keys), time.Hour)}, nil
	}
	// Full jitter draws nothing: the waits are MinDelay unless the server
	// asked for more.
	h.cfg.Backoff.Rand = func(int64) int64 { return 0 }
	if err := h.run(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	want := []time.Duration{MinDelay, MinDelay, 7 * time.Second, MinDelay}
	if got := h.clock.Sleeps(); !slices.Equal(got, want) {
		t.Errorf("sleeps = %v, want %v", got, want)
	}
	if r := h.result(t); r.Action != ActionResumed || r.Status != "approved" {
		t.Errorf("result = %+v", r)
	}
}

// TestBootStopsOnFinalAnswers: an answer waiting cannot change ends the
// boot at once, with the reason on the error and, in JSON, action
// "refused" with a reason.
func TestBootStopsOnFinalAnswers(t *testing.T) {
	tests := []struct {
		name     string
		resume   error
		register error // nil: Register is not reached
		wantMsg  string
		wantExit int
	}{
		{"invalid argument", status.Error(codes.InvalidArgument, "csr must be a DER PKCS#10 certificate request"), nil,
			"resume: csr must be a DER PKCS#10 certificate request (InvalidArgument)", ExitFailure},
		{"unauthenticated", status.Error(codes.Unauthenticated, "no client certificate"), nil,
			"resume: no client certificate (Unauthenticated)", ExitFailure},
		{"internal", status.Error(codes.Internal, "internal error"), nil, "resume: internal error (Internal)", ExitFailure},
		{"token used up", status.Error(codes.NotFound, "no node is registered with this key"),
			status.Error(codes.ResourceExhausted, "bootstrap token has no uses left"),
			"register: bootstrap token has no uses left (ResourceExhausted)", ExitFailure},
		{"not found after registering", status.Error(codes.NotFound, "no node is registered with this key"),
			status.Error(codes.NotFound, "node not found"), "register: node not found (NotFound)", ExitFailure},
		{"hardware conflict", status.Error(codes.NotFound, "no node is registered with this key"),
			status.Error(codes.FailedPrecondition, "another node with this hardware UUID is registered"),
			"register: another node with this hardware UUID is registered (FailedPrecondition)", ExitFailure},
		{"bad token", status.Error(codes.NotFound, "no node is registered with this key"),
			status.Error(codes.PermissionDenied, "bootstrap token is invalid"),
			"registration denied: bootstrap token is invalid", ExitDenied},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake := &fakeRegistration{}
			fake.resume = func(context.Context, *berthv1.ResumeRequest) (*berthv1.ResumeResponse, error) { return nil, tt.resume }
			fake.register = func(context.Context, *berthv1.RegisterRequest) (*berthv1.RegisterResponse, error) {
				return nil, tt.register
			}
			h := newHarness(t, fake)
			err := h.run(t)
			if err == nil || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Fatalf("err = %v, want one containing %q", err, tt.wantMsg)
			}
			if got := ExitCode(err); got != tt.wantExit {
				t.Errorf("exit = %d, want %d", got, tt.wantExit)
			}
			if n, _ := h.clock.Slept(); n != 0 {
				t.Errorf("waited %d times before giving up", n)
			}
			if r := h.result(t); r.Action != ActionRefused || r.Reason != err.Error() {
				t.Errorf("result = %+v, want action refused with reason %q", r, err.Error())
			}
		})
	}
}

// TestBootGivesUpOnLastingUnavailable: a server that answers Unavailable
// for all of --wait is given up on with its last answer as the reason.
func TestBootGivesUpOnLastingUnavailable(t *testing.T) {
	fake := &fakeRegistration{}
	h := newHarness(t, fake)
	h.cfg.Wait = 30 * time.Second
	fake.resume = func(context.Context, *berthv1.ResumeRequest) (*berthv1.ResumeResponse, error) {
		return nil, status.Error(codes.Unavailable, "database is unavailable; retry later")
	}
	err := h.run(t)
	want := "could not serve for 30s: resume: database is unavailable; retry later (Unavailable)"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("err = %v, want one containing %q", err, want)
	}
	if n, total := h.clock.Slept(); total != 30*time.Second || n < 3 {
		t.Errorf("waited %s in %d sleeps, want all of --wait", total, n)
	}
	if h.stdout.Len() != 0 {
		t.Errorf("stdout = %q: a boot that gave up waiting was not refused", h.stdout.String())
	}
}
