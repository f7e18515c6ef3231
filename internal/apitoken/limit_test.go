package apitoken

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/berth-dev/berth/internal/mtls"
	"github.com/berth-dev/berth/internal/ratelimit"
)

// fakeAuth knows one token; other answers come from err.
type fakeAuth struct {
	calls int
	err   error // answered for every other token
}

func (f *fakeAuth) Authenticate(_ context.Context, bearer string) (Principal, error) {
	f.calls++
	if bearer == "good" {
		return Principal{ID: "0123456789abcdef", Name: "ci", Role: mtls.RoleViewer}, nil
	}
	return Principal{}, f.err
}

func from(addr string) context.Context {
	return peer.NewContext(context.Background(), &peer.Peer{Addr: &net.TCPAddr{IP: net.ParseIP(addr), Port: 40000}})
}

// TestLimited: a source whose tokens were refused too often is refused
// before its token is looked at, good or not, until it earns an attempt
// back; good tokens and failures to check cost nothing; other sources
// (an IPv6 address outside the /64) are not slowed.
func TestLimited(t *testing.T) {
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	f := &fakeAuth{err: ErrUnknown}
	l := Limit(f, ratelimit.New(ratelimit.Config{Burst: 3, Interval: time.Hour, Now: func() time.Time { return now }}))
	guesser := from("2001:db8:1:1::7")
	for range 5 {
		if _, err := l.Authenticate(guesser, "good"); err != nil {
			t.Fatalf("good token: %v", err)
		}
	}
	f.err = errors.New("database down")
	for range 5 {
		if _, err := l.Authenticate(guesser, "x"); Refused(err) {
			t.Fatalf("a failure to check counted as a refusal: %v", err)
		}
	}
	f.err = ErrRevoked
	for i := range 3 {
		if _, err := l.Authenticate(guesser, "revoked"); !errors.Is(err, ErrRevoked) {
			t.Fatalf("refusal %d: %v, want ErrRevoked", i, err)
		}
	}
	before := f.calls
	_, err := l.Authenticate(from("2001:db8:1:1::8"), "good") // the same /64
	var limited *LimitError
	if !errors.As(err, &limited) || limited.RetryAfter <= 0 || limited.RetryAfter > time.Hour {
		t.Fatalf("after three refusals: %v, want a LimitError with a delay of at most the interval", err)
	}
	if f.calls != before {
		t.Error("a limited source's token was looked at")
	}
	if _, err := l.Authenticate(from("2001:db8:1:2::7"), "good"); err != nil {
		t.Errorf("another /64: %v", err)
	}
	now = now.Add(time.Hour)
	if _, err := l.Authenticate(guesser, "good"); err != nil {
		t.Errorf("after the interval: %v", err)
	}
}

// TestBearerAuth: what the interceptor and REST make of each answer.
func TestBearerAuth(t *testing.T) {
	mapped := status.Error(codes.Unavailable, "the database cannot serve now; retry later")
	for _, tt := range []struct {
		name     string
		err      error
		fail     func(context.Context, error) error
		code     codes.Code
		msg      string
		retryFor time.Duration
	}{
		{"good", nil, nil, codes.OK, "", 0},
		{"malformed", ErrMalformed, nil, codes.Unauthenticated, MsgMalformed, 0},
		{"expired, wrapped", errors.Join(errors.New("token 1"), ErrExpired), nil, codes.Unauthenticated, MsgExpired, 0},
		{"limited", &LimitError{RetryAfter: 42 * time.Second}, nil, codes.ResourceExhausted, MsgTooManyFailures, 42 * time.Second},
		{"a status passes", status.Error(codes.Unavailable, "down"), nil, codes.Unavailable, "down", 0},
		{"a bare error is hidden", errors.New("secret detail"), nil, codes.Internal, "internal error", 0},
		{"fail maps the rest", errors.New("db"), func(context.Context, error) error { return mapped }, codes.Unavailable, status.Convert(mapped).Message(), 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tok := "other"
			if tt.err == nil {
				tok = "good"
			}
			id, err := BearerAuth(&fakeAuth{err: tt.err}, tt.fail)(context.Background(), tok)
			st := status.Convert(err)
			if st.Code() != tt.code || st.Message() != tt.msg {
				t.Fatalf("got %v %q, want %v %q", st.Code(), st.Message(), tt.code, tt.msg)
			}
			if err == nil && id.String() != "token:0123456789abcdef/ci" {
				t.Errorf("identity %v", id)
			}
			var retry time.Duration
			for _, d := range st.Details() {
				if r, ok := d.(*errdetails.RetryInfo); ok {
					retry = r.GetRetryDelay().AsDuration()
				}
			}
			if retry != tt.retryFor {
				t.Errorf("RetryInfo %v, want %v", retry, tt.retryFor)
			}
		})
	}
}
