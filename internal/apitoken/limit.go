package apitoken

import (
	"context"
	"errors"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/berth-dev/berth/internal/mtls"
	"github.com/berth-dev/berth/internal/ratelimit"
	"github.com/berth-dev/berth/internal/rpc"
)

// MsgTooManyFailures answers a source whose tokens were refused too often.
const MsgTooManyFailures = "too many refused API tokens from this address; retry after the delay given"

// Defaults of the front door's limit: ten refusals in a row, then one a
// minute, as for bootstrap tokens: plenty for a mistyped token, nothing
// for a guesser or a client hammering the store with a revoked one.
const (
	DefaultFailureBurst    = 10
	DefaultFailureInterval = time.Minute
)

// LimitError refuses a source that presented too many refused tokens,
// before its token is looked at; RetryAfter is when it has earned another
// attempt.
type LimitError struct{ RetryAfter time.Duration }

func (e *LimitError) Error() string { return MsgTooManyFailures }

// Refused reports whether err is a token refusal (ErrMalformed,
// ErrUnknown, ErrRevoked, ErrExpired), whose message is public, rather
// than a failure to check.
func Refused(err error) bool { return refusal(err) != nil }

// refusal is the refusal in err's chain, nil if none.
func refusal(err error) error {
	for _, r := range []error{ErrMalformed, ErrUnknown, ErrRevoked, ErrExpired} {
		if errors.Is(err, r) {
			return r
		}
	}
	return nil
}

// Limited is an Authenticator under a per-source limit on refused tokens:
// a source (rpc.Source of the context's peer: the caller's IPv4 address
// or IPv6 /64) whose tokens were refused more often than its limiter
// allows gets a *LimitError, before its token is looked at, until it has
// earned another attempt. Good tokens cost nothing, so engines behind one
// address never slow each other down. The front door wraps its one check
// with one Limited and hands it to every entry point: the gRPC
// interceptor, REST (whose gateway puts the HTTP client's address in the
// context as its peer) and the web console's sign-in, so that a guesser
// gains nothing by switching between them.
type Limited struct {
	a Authenticator
	l *ratelimit.Limiter
}

var _ Authenticator = (*Limited)(nil)

// Limit wraps a with l's limit.
func Limit(a Authenticator, l *ratelimit.Limiter) *Limited { return &Limited{a: a, l: l} }

// NewLimited wraps a with the default limit (DefaultFailureBurst refusals,
// then one every DefaultFailureInterval).
func NewLimited(a Authenticator) *Limited {
	return Limit(a, ratelimit.New(ratelimit.Config{Burst: DefaultFailureBurst, Interval: DefaultFailureInterval}))
}

// Authenticate checks bearer unless its source is over the limit.
func (x *Limited) Authenticate(ctx context.Context, bearer string) (Principal, error) {
	src := rpc.Source(ctx)
	if ok, wait := x.l.Allow(src); !ok {
		return Principal{}, &LimitError{RetryAfter: wait}
	}
	p, err := x.a.Authenticate(ctx, bearer)
	if Refused(err) {
		x.l.Charge(src)
	}
	return p, err
}

// BearerAuth is a as the gRPC interceptor and the REST front door take it
// (rpc.BearerAuth): a refusal is Unauthenticated with its public message,
// the limit ResourceExhausted with a google.rpc.RetryInfo detail, and any
// other failure is fail's status (the registration service's error table
// where the store is in this process; a Client's errors already are the
// service's status, which nil passes on).
func BearerAuth(a Authenticator, fail func(context.Context, error) error) rpc.BearerAuth {
	return func(ctx context.Context, bearer string) (mtls.Identity, error) {
		p, err := a.Authenticate(ctx, bearer)
		var limited *LimitError
		switch {
		case err == nil:
			return p.Identity(), nil
		case errors.As(err, &limited):
			st := status.New(codes.ResourceExhausted, MsgTooManyFailures)
			if d, derr := st.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(limited.RetryAfter)}); derr == nil {
				st = d
			}
			return mtls.Identity{}, st.Err()
		case Refused(err):
			return mtls.Identity{}, status.Error(codes.Unauthenticated, refusal(err).Error())
		case fail != nil:
			return mtls.Identity{}, fail(ctx, err)
		}
		if _, ok := status.FromError(err); ok {
			return mtls.Identity{}, err
		}
		return mtls.Identity{}, status.Error(codes.Internal, "internal error")
	}
}
