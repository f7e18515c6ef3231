package rpc

import (
	"context"
	"crypto/tls"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/berth-dev/berth/internal/mtls"
)

// fakeTokens is a BearerAuth that knows two tokens. The real check
// (apitoken.Checker on the registration store) has its own tests; here
// only what the interceptor makes of the answer matters.
func fakeTokens(_ context.Context, tok string) (mtls.Identity, error) {
	switch tok {
	case "admin-token":
		return mtls.Identity{Kind: mtls.KindToken, Name: "0123456789abcdef", TokenName: "root", Role: mtls.RoleAdmin}, nil
	case "viewer-token":
		return mtls.Identity{Kind: mtls.KindToken, Name: "fedcba9876543210", Role: mtls.RoleViewer}, nil
	}
	return mtls.Identity{}, status.Error(codes.Unauthenticated, "API token is unknown")
}

// rolePolicy is the test service's rows as the matrix writes admin rows.
func rolePolicy() Policy {
	return Policy{
		methodMark:  NodeKey,
		methodEcho:  Viewers.Rule(),
		methodAdmin: FromAdmin.Rule(),
	}
}

func callWith(ctx context.Context, conn *grpc.ClientConn, method, auth string) error {
	if auth != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, AuthorizationKey, auth)
	}
	return conn.Invoke(ctx, method, &wrapperspb.BytesValue{}, &emptypb.Empty{})
}

// dialAs dials the env with cert (none when empty).
func (e *limitsEnv) dialAs(t *testing.T, cert tls.Certificate) *grpc.ClientConn {
	t.Helper()
	cfg := &tls.Config{RootCAs: e.layout.RootPool(), ServerName: "127.0.0.1", MinVersion: tls.VersionTLS13}
	if len(cert.Certificate) > 0 {
		cfg.Certificates = []tls.Certificate{cert}
	}
	conn, err := Dial(ClientConfig{Addr: e.addr, TLS: cfg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// TestBearerFrontDoor: on a server that takes API tokens, a call may
// present one instead of a certificate; the token's role decides, and
// every other credential problem is Unauthenticated with its message.
func TestBearerFrontDoor(t *testing.T) {
	e := newLimitsEnvWith(t, Limits{}, rolePolicy(), fakeTokens)
	none, admin, bare := e.dialAs(t, tls.Certificate{}), e.dialAs(t, e.admin), e.dialAs(t, bareKey(t))
	for _, tt := range []struct {
		name    string
		conn    *grpc.ClientConn
		method  string
		auth    string
		code    codes.Code
		message string
	}{
		{"no credentials", none, methodEcho, "", codes.Unauthenticated, msgNoCert},
		{"admin token", none, methodAdmin, "Bearer admin-token", codes.OK, ""},
		{"viewer token reads", none, methodEcho, "Bearer viewer-token", codes.OK, ""},
		{"viewer token acts", none, methodAdmin, "Bearer viewer-token", codes.PermissionDenied, msgNotPermitted},
		{"scheme in lower case", none, methodAdmin, "bearer admin-token", codes.OK, ""},
		{"unknown token", none, methodEcho, "Bearer nope", codes.Unauthenticated, "API token is unknown"},
		{"another scheme", none, methodEcho, "Basic YWRtaW4=", codes.Unauthenticated, msgBadAuthorization},
		{"empty bearer", none, methodEcho, "Bearer ", codes.Unauthenticated, msgBadAuthorization},
		{"admin certificate", admin, methodAdmin, "", codes.OK, ""},
		// The token is the credential the client chose for the call.
		{"admin certificate, viewer token", admin, methodAdmin, "Bearer viewer-token", codes.PermissionDenied, msgNotPermitted},
		{"bare key, admin token", bare, methodAdmin, "Bearer admin-token", codes.OK, ""},
		{"bare key, no token", bare, methodAdmin, "", codes.Unauthenticated, msgUnverified},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := callWith(t.Context(), tt.conn, tt.method, tt.auth)
			if st := status.Convert(err); st.Code() != tt.code || st.Message() != tt.message {
				t.Errorf("%s: %v, want %v %q", tt.method, err, tt.code, tt.message)
			}
		})
	}
	// Two authorization values: refused, not one of them picked.
	ctx := metadata.AppendToOutgoingContext(t.Context(), AuthorizationKey, "Bearer admin-token", AuthorizationKey, "Bearer viewer-token")
	err := none.Invoke(ctx, methodAdmin, &wrapperspb.BytesValue{}, &emptypb.Empty{})
	if st := status.Convert(err); st.Code() != codes.Unauthenticated || st.Message() != msgBadAuthorization {
		t.Errorf("two authorization values: %v", err)
	}
}

// TestBearerMarksConnection: a connection without a certificate counts
// as unauthenticated until a call presents a good token.
func TestBearerMarksConnection(t *testing.T) {
	e := newLimitsEnvWith(t, Limits{}, rolePolicy(), fakeTokens)
	conn := e.dialAs(t, tls.Certificate{})
	if err := callWith(t.Context(), conn, methodEcho, "Bearer nope"); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("unknown token: %v", err)
	}
	if n := e.srv.limits.unauthenticated(); n != 1 {
		t.Fatalf("unauthenticated connections after a refused token: %d, want 1", n)
	}
	if err := callWith(t.Context(), conn, methodEcho, "Bearer viewer-token"); err != nil {
		t.Fatal(err)
	}
	if n := e.srv.limits.unauthenticated(); n != 0 {
		t.Errorf("unauthenticated connections after a good token: %d, want 0", n)
	}
}

// TestNoBearerWithoutAuth: a server that does not take tokens requires a
// certificate at the handshake and refuses a token presented with one.
func TestNoBearerWithoutAuth(t *testing.T) {
	e := newLimitsEnvWith(t, Limits{}, rolePolicy(), nil)
	err := callWith(t.Context(), e.dialAs(t, tls.Certificate{}), methodEcho, "Bearer admin-token")
	if status.Code(err) != codes.Unavailable {
		t.Errorf("no certificate on a server without tokens: %v, want the handshake to fail (Unavailable)", err)
	}
	err = callWith(t.Context(), e.dialAs(t, e.admin), methodAdmin, "Bearer admin-token")
	if st := status.Convert(err); st.Code() != codes.Unauthenticated || st.Message() != msgNoBearer {
		t.Errorf("token on a server without tokens: %v, want Unauthenticated %q", err, msgNoBearer)
	}
	if !Denied(err) {
		t.Error("Denied does not report the refusal of a token")
	}
}
