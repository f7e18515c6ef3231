package rpc

import (
	"context"
	"strings"
	"unicode"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/berth-dev/berth/internal/mtls"
)

// ForwardedCallerKey is the metadata key under which the front door (the
// api service identity) names the caller it authenticated and calls on
// behalf of: "admin:NAME". Only a peer holding the api service's own
// certificate may set it; anyone else's is ignored, so a client cannot
// claim an identity by sending the header itself.
const ForwardedCallerKey = "berth-on-behalf-of"

// maxForwardedName bounds the name in a forwarded caller.
const maxForwardedName = 128

// msgBadForwarded answers a front door that names a caller it may not
// forward, or names none in a form berth knows.
const msgBadForwarded = "the front door forwarded a caller it may not act for"

// ForwardedCaller renders id as the value of ForwardedCallerKey.
func ForwardedCaller(id mtls.Identity) string { return id.String() }

// parseForwarded reads the caller a front door forwards. Only admin
// callers are forwarded: nodes and services speak to the services
// themselves, with their own keys.
func parseForwarded(v string) (mtls.Identity, bool) {
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

// resolveCaller returns the caller a call is authorised and logged as: the
// peer itself, or, for the front door, the caller it forwards. The
// returned context then carries that caller as the peer identity, so that
// handlers record who acted (for example as an event's actor).
func resolveCaller(ctx context.Context) (context.Context, string, error) {
	id, verifyErr, ok := mtls.PeerIdentity(ctx)
	if !ok || verifyErr != nil || id.Kind != mtls.KindService || id.Name != mtls.ServiceAPI {
		return ctx, peerName(ctx), nil
	}
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get(ForwardedCallerKey)
	if len(vals) == 0 {
		return ctx, peerName(ctx), nil
	}
	via := id.String()
	if len(vals) != 1 {
		return ctx, via, status.Error(codes.PermissionDenied, msgBadForwarded)
	}
	fwd, ok := parseForwarded(vals[0])
	if !ok {
		return ctx, via, status.Error(codes.PermissionDenied, msgBadForwarded)
	}
	p, _ := peer.FromContext(ctx)
	ai, _ := p.AuthInfo.(mtls.AuthInfo)
	ai.Identity = fwd
	np := *p
	np.AuthInfo = ai
	return peer.NewContext(ctx, &np), fwd.String() + " via " + via, nil
}
