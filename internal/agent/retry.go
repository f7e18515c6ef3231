package agent

import (
	"context"
	"errors"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// maxServerDelay bounds the wait a server may ask for in a RetryInfo, so
// that a bad value cannot park a node for hours: --wait still decides when
// the agent gives up.
const maxServerDelay = time.Minute

// retryable says whether waiting can change the answer err: the server or
// a service it needs is down, overloaded or busy. It also returns the
// least wait the server asked for (a RetryInfo detail), 0 when it asked
// for none.
//
// Retried: a failed connection or DNS lookup, Unavailable, a call that
// timed out (DeadlineExceeded), Aborted (a conflict with a concurrent
// request, which a retry resolves), and ResourceExhausted that carries a
// retry delay (an overloaded or rate-limited server). Everything else is
// final, and the agent stops at once with the reason: PermissionDenied,
// Unauthenticated, InvalidArgument, FailedPrecondition, NotFound,
// AlreadyExists, Internal, Unimplemented, and ResourceExhausted without a
// retry delay, which is a limit that waiting does not lift (a token with
// no uses left, a bundle over the size limit).
func retryable(err error) (bool, time.Duration) {
	var tr *transientError
	switch {
	case err == nil:
		return false, 0
	case errors.As(err, &tr):
		return true, 0
	case errors.Is(err, ErrUntrusted), errors.Is(err, errBundleStoreUntrusted), errors.Is(err, errHeartbeatUntrusted),
		errors.Is(err, context.Canceled):
		return false, 0
	}
	st, ok := status.FromError(err)
	if !ok {
		return false, 0
	}
	delay := retryDelay(st)
	switch st.Code() {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Aborted:
		return true, delay
	case codes.ResourceExhausted:
		return delay > 0, delay
	}
	return false, 0
}

// isTransient reports whether err is worth retrying; see retryable.
func isTransient(err error) bool {
	ok, _ := retryable(err)
	return ok
}

// retryDelay is the delay of a RetryInfo detail of st, capped at
// maxServerDelay; 0 when there is none.
func retryDelay(st *status.Status) time.Duration {
	for _, d := range st.Details() {
		ri, ok := d.(*errdetails.RetryInfo)
		if !ok || ri.GetRetryDelay() == nil || ri.GetRetryDelay().CheckValid() != nil {
			continue
		}
		return min(max(ri.GetRetryDelay().AsDuration(), 0), maxServerDelay)
	}
	return 0
}
