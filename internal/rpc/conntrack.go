package rpc

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"

	"github.com/berth-dev/berth/internal/mtls"
)

// msgTooManyCalls is the public message of a call refused because its
// unauthenticated connection already has MaxUnauthenticatedStreams calls
// in flight.
const msgTooManyCalls = "too many calls in flight on a connection that has not authenticated; make them one at a time"

type connKey struct{}

// MarkAuthenticated tells the server that the caller of this RPC is known:
// a bare node key that the registration service found registered and
// approved. Its connection then stops counting against the
// unauthenticated limits, so that a fleet booting from behind one address
// is not throttled. Connections that present a certificate issued by
// berth need no such call: they are known from their handshake.
func MarkAuthenticated(ctx context.Context) {
	if tc, ok := ctx.Value(connKey{}).(*trackedConn); ok {
		tc.authenticate()
	}
}

// connStats links each gRPC connection to its tracked connection once its
// handshake is done: a peer with a certificate issued by berth is known
// from then on, and every call's context leads back to the connection.
// It observes nothing else.
type connStats struct{ lim *connLimiter }

var _ stats.Handler = connStats{}

func (h connStats) TagConn(ctx context.Context, info *stats.ConnTagInfo) context.Context {
	tc := h.lim.lookup(info.RemoteAddr)
	if tc == nil {
		return ctx
	}
	if id, verifyErr, ok := mtls.PeerIdentity(ctx); ok && verifyErr == nil && Authenticated(id) {
		tc.authenticate()
	}
	return context.WithValue(ctx, connKey{}, tc)
}

func (connStats) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context { return ctx }
func (connStats) HandleRPC(context.Context, stats.RPCStats)                       {}
func (connStats) HandleConn(context.Context, stats.ConnStats)                     {}

// tap screens each new call of an unauthenticated connection before gRPC
// starts a handler for it or reads a byte of its message: a method the
// caller may not call is refused at once, and so is a call beyond
// MaxUnauthenticatedStreams in flight.
//
// gRPC does not cancel the context of a call its tap refuses, so a refused
// call that carries a deadline would keep its timer until that deadline,
// which the peer chooses (measured: 100,000 such refusals kept 27 MiB after
// their connection closed). Calls with a deadline are therefore never
// refused here: they are left to the authorisation interceptor (and still
// count against the stream limit), and a peer that exceeds the stream
// limit with one loses its connection, whose teardown cancels every call.
//
// On a front door (bearer), a call that presents a token is not screened
// either: the interceptor authenticates the token, and a good one marks
// the connection authenticated. Such a call still counts against the
// stream limit.
func (c *connLimiter) tap(p Policy, bearer bool) tap.ServerInHandle {
	return func(ctx context.Context, info *tap.Info) (context.Context, error) {
		tc, _ := ctx.Value(connKey{}).(*trackedConn)
		if tc == nil || tc.authenticated() {
			return ctx, nil
		}
		_, hasDeadline := ctx.Deadline()
		if !hasDeadline && !(bearer && hasBearer(info.Header)) {
			if err := authorize(ctx, p, info.FullMethodName); err != nil {
				c.metrics.refused(reasonDenied)
				return ctx, c.refuse(tc, err)
			}
		}
		if max := c.limits.MaxUnauthenticatedStreams; on(max) {
			if int(tc.streams.Add(1)) > max {
				tc.streams.Add(-1)
				c.metrics.refused(reasonStreams)
				if hasDeadline {
					tc.Close()
					return ctx, nil
				}
				return ctx, c.refuse(tc, status.Error(codes.ResourceExhausted, msgTooManyCalls))
			}
			context.AfterFunc(ctx, func() { tc.streams.Add(-1) })
		}
		return ctx, nil
	}
}

// maxRefusals is how many calls an unauthenticated connection may have
// refused before it is closed. An agent makes its bootstrap calls one at a
// time and is refused a handful at most; a flood opening call after call
// beyond its limit would otherwise have the server write a refusal for
// each, as fast as it can send headers.
const maxRefusals = 128

// refuse returns err for a refused call, closing the connection once it
// had maxRefusals of them. gRPC answers the call with err either way.
func (c *connLimiter) refuse(tc *trackedConn, err error) error {
	if tc.refusals.Add(1) >= maxRefusals {
		c.metrics.refused(reasonRefusals)
		tc.Close()
	}
	return err
}

// Reasons a connection or call was refused, as the "reason" attribute of
// berth.rpc.refused.
const (
	reasonPerSource = "per_source"
	reasonBytes     = "bytes"
	reasonStreams   = "streams"
	reasonDenied    = "denied"
	reasonAge       = "age"
	reasonRefusals  = "refusals"
)

// limitMetrics counts refusals and reports the unauthenticated connections.
type limitMetrics struct {
	counter metric.Int64Counter
	sets    map[string]metric.AddOption
}

func newLimitMetrics(mp metric.MeterProvider, server string) *limitMetrics {
	if mp == nil {
		mp = noop.NewMeterProvider()
	}
	meter := mp.Meter("github.com/berth-dev/berth/internal/rpc")
	counter, err := meter.Int64Counter("berth.rpc.refused",
		metric.WithDescription("Connections and calls refused by the limits on unauthenticated peers, by reason"))
	if err != nil {
		counter, _ = noop.NewMeterProvider().Meter("").Int64Counter("")
	}
	m := &limitMetrics{counter: counter, sets: map[string]metric.AddOption{}}
	for _, r := range []string{reasonPerSource, reasonBytes, reasonStreams, reasonDenied, reasonAge, reasonRefusals} {
		m.sets[r] = metric.WithAttributeSet(attribute.NewSet(attribute.String("reason", r), attribute.String("server", server)))
	}
	return m
}

func (m *limitMetrics) refused(reason string) {
	if m != nil {
		m.counter.Add(context.Background(), 1, m.sets[reason])
	}
}

// observeUnauthenticated publishes the limiter's unauthenticated
// connection count as a gauge.
func observeUnauthenticated(mp metric.MeterProvider, server string, lim *connLimiter) {
	if mp == nil {
		return
	}
	attrs := metric.WithAttributeSet(attribute.NewSet(attribute.String("server", server)))
	_, _ = mp.Meter("github.com/berth-dev/berth/internal/rpc").Int64ObservableGauge("berth.rpc.unauthenticated_connections",
		metric.WithDescription("Connections that have not authenticated as a node, a service or an admin"),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			o.Observe(lim.unauthenticated(), attrs)
			return nil
		}))
}
