package rpc

import (
	"context"
	"strings"
	"unicode"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/berth-dev/berth/internal/mtls"
)

// ForwardedCallerKey is the metadata key under which the front door (the
// api service identity) names the caller it authenticated and calls on
// behalf of: "admin:NAME" for the admin certificate (role admin), or
// "token:ID;role=ROLE;name=NAME" for an API token (ID 16 lower-case hex
// digits, ROLE viewer, operator or admin, NAME possibly empty). Only a
// peer holding the api service's own certificate may set it; anyone
// else's is ignored, so a client cannot claim an identity, or a role, by
// sending the header itself.
const ForwardedCallerKey = "berth-on-behalf-of"

// maxForwardedName bounds the name in a forwarded caller.
const maxForwardedName = 128

// msgBadForwarded answers a front door that names a caller it may not
// forward, or names none in a form berth knows.
const msgBadForwarded = "the front door forwarded a caller it may not act for"

// ForwardedCaller renders id as the value of ForwardedCallerKey.
func ForwardedCaller(id mtls.Identity) string {
	if id.Kind == mtls.KindToken {
		return "token:" + id.Name + ";role=" + id.Role.String() + ";name=" + id.TokenName
	}
	return id.String()
}

// ParseForwardedCaller reads a value of ForwardedCallerKey, as the
// services do: the inverse of ForwardedCaller.
func ParseForwardedCaller(v string) (mtls.Identity, bool) { return parseForwarded(v) }

// parseForwarded reads the caller a front door forwards. Only the admin
// API's callers are forwarded: nodes and services speak to the services
// themselves, with their own keys.
func parseForwarded(v string) (mtls.Identity, bool) {
	if rest, ok := strings.CutPrefix(v, mtls.KindToken.String()+":"); ok {
		return parseForwardedToken(rest)
	}
	kind, name, ok := strings.Cut(v, ":")
	if !ok || name == "" || len(name) > maxForwardedName {
		return mtls.Identity{}, false
	}
	for _, r := range name {
		if r > unicode.MaxASCII || !unicode.IsPrint(r) {
			return mtls.Identity{}, false
		}
	}
	if kind != mtls.KindAdmin.String() {
		return mtls.Identity{}, false
	}
	return mtls.Identity{Kind: mtls.KindAdmin, Name: name}, true
}

// parseForwardedToken reads "ID;role=ROLE;name=NAME", strictly: the
// services trust the role it names.
func parseForwardedToken(v string) (mtls.Identity, bool) {
	parts := strings.Split(v, ";")
	if len(parts) != 3 || !isTokenID(parts[0]) {
		return mtls.Identity{}, false
	}
	roleName, okRole := strings.CutPrefix(parts[1], "role=")
	name, okName := strings.CutPrefix(parts[2], "name=")
	role, known := mtls.ParseRole(roleName)
	if !okRole || !okName || !known || !tokenName(name) {
		return mtls.Identity{}, false
	}
	return mtls.Identity{Kind: mtls.KindToken, Name: parts[0], TokenName: name, Role: role}, true
}

// isTokenID reports whether s is an API token ID: 16 lower-case hex digits
// (apitoken.IsID, which this package does not import).
func isTokenID(s string) bool {
	if len(s) != 16 {
		return false
	}
	for i := range len(s) {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// tokenName reports whether s is an API token name the registration
// service accepts: at most 64 letters, digits and . _ @ -.
func tokenName(s string) bool {
	if len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("._@-", c)) {
			return false
		}
	}
	return true
}

// resolveCaller returns the caller a call is authorised and logged as: the
// caller the front door forwards (to the api identity alone), else the
// principal of the call's bearer token (when auth is set: the front
// door's port), else the peer itself. The returned context then carries
// that caller as the peer identity, so that handlers record who acted
// (for example as an event's actor).
func resolveCaller(ctx context.Context, auth BearerAuth) (context.Context, string, error) {
	id, verifyErr, ok := mtls.PeerIdentity(ctx)
	if ok && verifyErr == nil && id.Kind == mtls.KindService && id.Name == mtls.ServiceAPI {
		md, _ := metadata.FromIncomingContext(ctx)
		if vals := md.Get(ForwardedCallerKey); len(vals) > 0 {
			via := id.String()
			if len(vals) != 1 {
				return ctx, via, status.Error(codes.PermissionDenied, msgBadForwarded)
			}
			fwd, ok := parseForwarded(vals[0])
			if !ok {
				return ctx, via, status.Error(codes.PermissionDenied, msgBadForwarded)
			}
			return withCaller(ctx, fwd), fwd.String() + " via " + via, nil
		}
	}
	ctx, tok, found, err := bearerCaller(ctx, auth)
	switch {
	case err != nil:
		return ctx, peerName(ctx), err
	case found:
		return ctx, tok.String(), nil
	}
	return ctx, peerName(ctx), nil
}
