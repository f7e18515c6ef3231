package rpc

import (
	"context"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/berth-dev/berth/internal/mtls"
)

// BearerAuth checks an API token that a caller presents as gRPC metadata
// (or HTTP header) "authorization: Bearer TOKEN": it returns the caller
// identity the token names (mtls.KindToken, with its role), or a gRPC
// status, Unauthenticated with a constant message for a refused token.
// The registration service's (in the process that holds the store) and
// apitoken.Client's (in a front door without it) are the two; both run
// the one check, apitoken.Checker.
type BearerAuth func(ctx context.Context, token string) (mtls.Identity, error)

// AuthorizationKey is the metadata key of a bearer token.
const AuthorizationKey = "authorization"

// Public messages of a bearer token the interceptor cannot take.
const (
	msgBadAuthorization = `the authorization metadata must be one "Bearer TOKEN"`
	msgNoBearer         = "this server does not accept API tokens: call the front door (berthd dev, or berthd serve --role all or api)"
)

// BearerToken reads an authorization value: the token of "Bearer TOKEN"
// (the scheme in any case, as HTTP allows).
func BearerToken(v string) (string, bool) {
	scheme, tok, ok := strings.Cut(strings.TrimSpace(v), " ")
	tok = strings.TrimSpace(tok)
	return tok, ok && strings.EqualFold(scheme, "Bearer") && tok != ""
}

// hasBearer reports whether a call's metadata carries authorization.
func hasBearer(md metadata.MD) bool { return len(md.Get(AuthorizationKey)) > 0 }

// bearerCaller authenticates the call's bearer token, if it has one, and
// returns the context with the token's principal as the caller. found is
// false when the call presents no token. A presented token decides the
// caller whatever certificate the connection has: it is the credential
// the client chose for this call.
func bearerCaller(ctx context.Context, auth BearerAuth) (_ context.Context, id mtls.Identity, found bool, err error) {
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get(AuthorizationKey)
	if len(vals) == 0 {
		return ctx, mtls.Identity{}, false, nil
	}
	tok, ok := BearerToken(vals[0])
	switch {
	case len(vals) != 1 || !ok:
		return ctx, mtls.Identity{}, true, status.Error(codes.Unauthenticated, msgBadAuthorization)
	case auth == nil:
		return ctx, mtls.Identity{}, true, status.Error(codes.Unauthenticated, msgNoBearer)
	}
	id, err = auth(ctx, tok)
	if err != nil {
		return ctx, mtls.Identity{}, true, err
	}
	// A connection that presented a good token is known: it no longer
	// counts against the unauthenticated limits.
	MarkAuthenticated(ctx)
	return withCaller(ctx, id), id, true, nil
}

// withCaller returns ctx with id as the verified identity of its peer,
// whatever certificate (or none) the connection had.
func withCaller(ctx context.Context, id mtls.Identity) context.Context {
	np := &peer.Peer{}
	if p, ok := peer.FromContext(ctx); ok {
		*np = *p
	}
	ai := mtls.AuthInfo{Identity: id}
	switch prev := np.AuthInfo.(type) {
	case mtls.AuthInfo:
		ai.TLSInfo = prev.TLSInfo
	case credentials.TLSInfo:
		ai.TLSInfo = prev
	}
	np.AuthInfo = ai
	return peer.NewContext(ctx, np)
}
