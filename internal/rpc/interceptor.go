package rpc

import (
	"cmp"
	"context"
	"log/slog"
	"runtime/debug"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/berth-dev/berth/internal/mtls"
)

// Log attribute keys, kept in one place so every service logs alike.
const (
	AttrService = "service"
	AttrMethod  = "method"
	AttrPeer    = "peer"
	AttrCode    = "code"
	AttrElapsed = "elapsed"
	AttrError   = "error"
)

// Public messages of the interceptors.
const (
	msgNoCert       = "a client certificate or an API token is required"
	msgUnverified   = "client certificate is not issued by this deployment's CA"
	msgNotPermitted = "caller is not permitted to call this method"
	msgInternal     = "internal error"
)

type loggerKey struct{}

// Logger returns the per-RPC logger, carrying service, method and peer.
func Logger(ctx context.Context, fallback *slog.Logger) *slog.Logger {
	if l, ok := ctx.Value(loggerKey{}).(*slog.Logger); ok {
		return l
	}
	return fallback
}

func withLogger(ctx context.Context, l *slog.Logger) context.Context {
	return context.WithValue(ctx, loggerKey{}, l)
}

// authorize applies the policy to the caller of method.
func authorize(ctx context.Context, p Policy, method string) error {
	id, verifyErr, ok := mtls.PeerIdentity(ctx)
	if !ok {
		return status.Error(codes.Unauthenticated, msgNoCert)
	}
	rule, found := p[method]
	if !found {
		return status.Error(codes.PermissionDenied, msgNotPermitted)
	}
	if verifyErr != nil && !allowsBootstrap(rule) {
		return status.Error(codes.Unauthenticated, msgUnverified)
	}
	if !rule(id) {
		return status.Error(codes.PermissionDenied, msgNotPermitted)
	}
	return nil
}

// Denied reports whether err is a caller's refusal by the authorisation
// matrix, PermissionDenied or Unauthenticated, rather than an error of the
// handler the call reached: a handler's PermissionDenied has its own message.
func Denied(err error) bool {
	st, ok := status.FromError(err)
	if !ok {
		return false
	}
	switch st.Code() {
	case codes.PermissionDenied:
		return st.Message() == msgNotPermitted
	case codes.Unauthenticated:
		return st.Message() == msgUnverified || st.Message() == msgNoCert || st.Message() == msgNoBearer
	}
	return false
}

func peerName(ctx context.Context) string {
	if id, _, ok := mtls.PeerIdentity(ctx); ok {
		return id.String()
	}
	return "anonymous"
}

// recovered turns a panic into Internal, logging the stack once.
func recovered(l *slog.Logger, err *error) {
	if r := recover(); r != nil {
		l.Error("panic in handler", "panic", r, "stack", string(debug.Stack()))
		*err = status.Error(codes.Internal, msgInternal)
	}
}

func logDone(l *slog.Logger, start time.Time, err error) {
	code := status.Code(err)
	level := slog.LevelDebug
	if code != codes.OK {
		level = slog.LevelInfo
	}
	if code == codes.Internal || code == codes.Unknown {
		level = slog.LevelWarn
	}
	l.Log(context.Background(), level, "rpc done", AttrCode, code.String(), AttrElapsed, time.Since(start))
}

// The chain resolves the caller first (the front door's forwarded caller,
// or a bearer token's principal; see resolveCaller), then runs recovery outermost (so a panic anywhere,
// auth included, is contained), then logging (so denied calls are logged
// too, with the caller), then auth.
func unaryChain(base *slog.Logger, p Policy, auth BearerAuth) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (resp any, err error) {
		ctx, who, fwdErr := resolveCaller(ctx, auth)
		l := base.With(AttrMethod, info.FullMethod, AttrPeer, who)
		defer recovered(l, &err)
		start := time.Now()
		defer func() { logDone(l, start, err) }()
		if err = cmp.Or(fwdErr, authorize(ctx, p, info.FullMethod)); err != nil {
			return nil, err
		}
		return h(withLogger(ctx, l), req)
	}
}

type loggedStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s loggedStream) Context() context.Context { return s.ctx }

func streamChain(base *slog.Logger, p Policy, auth BearerAuth) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) (err error) {
		ctx, who, fwdErr := resolveCaller(ss.Context(), auth)
		l := base.With(AttrMethod, info.FullMethod, AttrPeer, who)
		defer recovered(l, &err)
		start := time.Now()
		defer func() { logDone(l, start, err) }()
		if err = cmp.Or(fwdErr, authorize(ctx, p, info.FullMethod)); err != nil {
			return err
		}
		return h(srv, loggedStream{ServerStream: ss, ctx: withLogger(ctx, l)})
	}
}
