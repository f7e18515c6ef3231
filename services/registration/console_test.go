package registration

import (
	"crypto/sha256"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/berth-dev/berth/internal/pki"
	"github.com/berth-dev/berth/internal/rpc/rpcerr"
	"github.com/berth-dev/berth/internal/testutil/grpctest"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

func sum(s string) []byte { h := sha256.Sum256([]byte(s)); return h[:] }

// TestConsoleSessions: the front door records sessions and links for the
// principals it names; a link becomes a session once; a token's sessions
// end with its revocation; every bad request is InvalidArgument naming
// its field, and nobody but the front door may call.
func TestConsoleSessions(t *testing.T) {
	for _, b := range []backend{sqliteBackend, postgresBackend} {
		t.Run(b, func(t *testing.T) { testConsoleSessions(t, b) })
	}
}

func testConsoleSessions(t *testing.T, b backend) {
	e := newEnv(t, b)
	ctx := t.Context()
	front := berthv1.NewConsoleSessionServiceClient(e.srv.Service(t, pki.ServiceAPI))
	hour := durationpb.New(time.Hour)
	tok, err := berthv1.NewAPITokenServiceClient(e.admin).CreateAPIToken(ctx, &berthv1.CreateAPITokenRequest{Role: "operator", Name: "ci"})
	if err != nil {
		t.Fatal(err)
	}
	tokPrincipal := "token:" + tok.GetToken().GetId() + ";role=operator;name=ci"

	made, err := front.CreateConsoleSession(ctx, &berthv1.CreateConsoleSessionRequest{SecretSha256: sum("s1"), Principal: "admin:ops", Ttl: hour})
	if err != nil || made.GetSession().GetPrincipal() != "admin:ops" || !made.GetSession().GetExpiresAt().AsTime().Equal(e.clock.Now().Add(time.Hour)) {
		t.Fatalf("CreateConsoleSession = %v, %v", made, err)
	}
	got, err := front.GetConsoleSession(ctx, &berthv1.GetConsoleSessionRequest{SecretSha256: sum("s1")})
	if err != nil || got.GetSession().GetPrincipal() != "admin:ops" {
		t.Fatalf("GetConsoleSession = %v, %v", got, err)
	}
	if _, err := front.CreateConsoleSession(ctx, &berthv1.CreateConsoleSessionRequest{SecretSha256: sum("l1"), Link: true, Principal: tokPrincipal, Ttl: durationpb.New(5 * time.Minute)}); err != nil {
		t.Fatal(err)
	}
	_, err = front.GetConsoleSession(ctx, &berthv1.GetConsoleSessionRequest{SecretSha256: sum("l1")})
	grpctest.WantStatus(t, err, codes.NotFound, msgNoConsoleSession)
	used, err := front.UseSignInLink(ctx, &berthv1.UseSignInLinkRequest{LinkSha256: sum("l1"), SessionSha256: sum("s2"), Ttl: hour})
	if err != nil || used.GetSession().GetPrincipal() != tokPrincipal {
		t.Fatalf("UseSignInLink = %v, %v", used, err)
	}
	_, err = front.UseSignInLink(ctx, &berthv1.UseSignInLinkRequest{LinkSha256: sum("l1"), SessionSha256: sum("s3"), Ttl: hour})
	grpctest.WantStatus(t, err, codes.NotFound, msgNoSignInLink)

	// The token's revocation ends its session; it can start no other.
	if _, err := berthv1.NewAPITokenServiceClient(e.admin).RevokeAPIToken(ctx, &berthv1.RevokeAPITokenRequest{Id: tok.GetToken().GetId()}); err != nil {
		t.Fatal(err)
	}
	_, err = front.GetConsoleSession(ctx, &berthv1.GetConsoleSessionRequest{SecretSha256: sum("s2")})
	grpctest.WantStatus(t, err, codes.NotFound, msgNoConsoleSession)
	_, err = front.CreateConsoleSession(ctx, &berthv1.CreateConsoleSessionRequest{SecretSha256: sum("s4"), Principal: tokPrincipal, Ttl: hour})
	grpctest.WantStatus(t, err, codes.FailedPrecondition, msgTokenNotLive)

	// Sign-out, then expiry.
	if _, err := front.EndConsoleSession(ctx, &berthv1.EndConsoleSessionRequest{SecretSha256: sum("s1")}); err != nil {
		t.Fatal(err)
	}
	_, err = front.GetConsoleSession(ctx, &berthv1.GetConsoleSessionRequest{SecretSha256: sum("s1")})
	grpctest.WantStatus(t, err, codes.NotFound, msgNoConsoleSession)
	if _, err := front.CreateConsoleSession(ctx, &berthv1.CreateConsoleSessionRequest{SecretSha256: sum("s5"), Principal: "admin:ops", Ttl: hour}); err != nil {
		t.Fatal(err)
	}
	e.clock.Set(e.clock.Now().Add(time.Hour))
	_, err = front.GetConsoleSession(ctx, &berthv1.GetConsoleSessionRequest{SecretSha256: sum("s5")})
	grpctest.WantStatus(t, err, codes.NotFound, msgNoConsoleSession)

	invalid := func(field, rule string) string { return rpcerr.Invalid(field, rule).Error() }
	for _, tt := range []struct {
		name string
		call func() error
		msg  string
	}{
		{"short hash", func() error {
			_, err := front.CreateConsoleSession(ctx, &berthv1.CreateConsoleSessionRequest{SecretSha256: []byte("x"), Principal: "admin:ops", Ttl: hour})
			return err
		}, invalid("secret_sha256", ruleSHA256)},
		{"no ttl", func() error {
			_, err := front.CreateConsoleSession(ctx, &berthv1.CreateConsoleSessionRequest{SecretSha256: sum("b1"), Principal: "admin:ops"})
			return err
		}, invalid("ttl", ruleConsoleTTL)},
		{"ttl over a day", func() error {
			_, err := front.CreateConsoleSession(ctx, &berthv1.CreateConsoleSessionRequest{SecretSha256: sum("b2"), Principal: "admin:ops", Ttl: durationpb.New(25 * time.Hour)})
			return err
		}, invalid("ttl", ruleConsoleTTL)},
		{"a node as principal", func() error {
			_, err := front.CreateConsoleSession(ctx, &berthv1.CreateConsoleSessionRequest{SecretSha256: sum("b3"), Principal: "node:n1", Ttl: hour})
			return err
		}, invalid("principal", rulePrincipal)},
		{"a token with another role", func() error {
			_, err := front.CreateConsoleSession(ctx, &berthv1.CreateConsoleSessionRequest{SecretSha256: sum("b4"),
				Principal: "token:" + tok.GetToken().GetId() + ";role=admin;name=ci", Ttl: hour})
			return err
		}, ""},
		{"get with a short hash", func() error {
			_, err := front.GetConsoleSession(ctx, &berthv1.GetConsoleSessionRequest{SecretSha256: sum("x")[:31]})
			return err
		}, invalid("secret_sha256", ruleSHA256)},
		{"link without a session hash", func() error {
			_, err := front.UseSignInLink(ctx, &berthv1.UseSignInLinkRequest{LinkSha256: sum("l9"), Ttl: hour})
			return err
		}, invalid("session_sha256", ruleSHA256)},
		{"end with no hash", func() error {
			_, err := front.EndConsoleSession(ctx, &berthv1.EndConsoleSessionRequest{})
			return err
		}, invalid("secret_sha256", ruleSHA256)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			if tt.msg == "" {
				grpctest.WantStatus(t, err, codes.FailedPrecondition, msgTokenNotLive)
				return
			}
			grpctest.WantStatus(t, err, codes.InvalidArgument, tt.msg)
		})
	}
	// Only the front door keeps sessions: an admin may not.
	_, err = berthv1.NewConsoleSessionServiceClient(e.admin).GetConsoleSession(ctx, &berthv1.GetConsoleSessionRequest{SecretSha256: sum("s5")})
	grpctest.WantCode(t, err, codes.PermissionDenied)
}
