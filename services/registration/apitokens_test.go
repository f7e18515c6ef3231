package registration

import (
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/berth-dev/berth/internal/apitoken"
	"github.com/berth-dev/berth/internal/mtls"
	"github.com/berth-dev/berth/internal/pki"
	"github.com/berth-dev/berth/internal/testutil/grpctest"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

func TestAPITokens(t *testing.T) {
	for _, b := range []backend{sqliteBackend, postgresBackend} {
		t.Run(b, func(t *testing.T) { testAPITokens(t, b) })
	}
}

func testAPITokens(t *testing.T, b backend) {
	e := newEnv(t, b)
	ctx := t.Context()
	admin := berthv1.NewAPITokenServiceClient(e.admin)
	created, err := admin.CreateAPIToken(ctx, &berthv1.CreateAPITokenRequest{Role: "operator", Name: "ci-bot", TtlSeconds: 3600})
	if err != nil {
		t.Fatalf("CreateAPIToken: %v", err)
	}
	tok := created.GetToken()
	if tok.GetRole() != "operator" || tok.GetName() != "ci-bot" || tok.GetCreatedBy() != "admin:admin" ||
		!tok.GetExpiresAt().AsTime().Equal(e.clock.Now().Add(time.Hour)) || tok.GetLastUsedAt() != nil || tok.GetRevoked() {
		t.Errorf("created token = %v", tok)
	}
	if !strings.HasPrefix(created.GetSecretToken(), apitoken.Prefix+tok.GetId()+"_") {
		t.Errorf("secret token %q does not carry ID %s", created.GetSecretToken(), tok.GetId())
	}
	stored, err := e.reg.GetAPIToken(ctx, tok.GetId())
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(stored.SecretHash), created.GetSecretToken()[len(apitoken.Prefix)+17:]) {
		t.Error("the store holds the secret itself")
	}
	forever, err := admin.CreateAPIToken(ctx, &berthv1.CreateAPITokenRequest{Role: "viewer"})
	if err != nil || forever.GetToken().GetExpiresAt() != nil {
		t.Fatalf("CreateAPIToken without TTL = %v, %v; want no expiry", forever.GetToken(), err)
	}

	// The front door asks who a token is; only the api identity may.
	front := apitoken.NewClient(e.srv.Service(t, pki.ServiceAPI))
	bearer := apitoken.BearerAuth(front, nil) // as the front door's interceptor takes it
	p, err := front.Authenticate(ctx, created.GetSecretToken())
	if err != nil || p != (apitoken.Principal{ID: tok.GetId(), Name: "ci-bot", Role: mtls.RoleOperator}) {
		t.Fatalf("Authenticate = %+v, %v", p, err)
	}
	id, err := bearer(ctx, created.GetSecretToken())
	if err != nil || id.String() != "token:"+tok.GetId()+"/ci-bot" {
		t.Errorf("AuthenticateBearer = %v, %v", id, err)
	}
	_, err = berthv1.NewAPITokenServiceClient(e.admin).AuthenticateAPIToken(ctx, &berthv1.AuthenticateAPITokenRequest{Token: created.GetSecretToken()})
	grpctest.WantCode(t, err, codes.PermissionDenied)
	_, err = berthv1.NewAPITokenServiceClient(e.srv.Node(t, "n1")).ListAPITokens(ctx, &berthv1.ListAPITokensRequest{})
	grpctest.WantCode(t, err, codes.PermissionDenied)

	// The use shows in the list before it is written.
	list, err := admin.ListAPITokens(ctx, &berthv1.ListAPITokensRequest{})
	if err != nil || len(list.GetTokens()) != 2 {
		t.Fatalf("ListAPITokens = %v, %v", list, err)
	}
	for _, got := range list.GetTokens() {
		used := got.GetId() == tok.GetId()
		if used != (got.GetLastUsedAt() != nil) || (used && !got.GetLastUsedAt().AsTime().Equal(e.clock.Now())) {
			t.Errorf("listed token = %v; want only %s, last used now", got, tok.GetId())
		}
	}

	revoked, err := admin.RevokeAPIToken(ctx, &berthv1.RevokeAPITokenRequest{Id: tok.GetId()})
	if err != nil || !revoked.GetToken().GetRevoked() || revoked.GetToken().GetRevokedAt() == nil {
		t.Fatalf("RevokeAPIToken = %v, %v", revoked, err)
	}
	if _, err := front.Authenticate(ctx, created.GetSecretToken()); !errors.Is(err, apitoken.ErrRevoked) {
		t.Errorf("Authenticate(revoked) = %v, want ErrRevoked", err)
	}
	_, err = bearer(ctx, created.GetSecretToken())
	grpctest.WantStatus(t, err, codes.Unauthenticated, apitoken.MsgRevoked)
	if list, _ := admin.ListAPITokens(ctx, &berthv1.ListAPITokensRequest{}); len(list.GetTokens()) != 1 {
		t.Errorf("active tokens after a revocation: %v", list.GetTokens())
	}
	if list, _ := admin.ListAPITokens(ctx, &berthv1.ListAPITokensRequest{IncludeInactive: true}); len(list.GetTokens()) != 2 {
		t.Errorf("all tokens after a revocation: %v", list.GetTokens())
	}

	// Refusals, each with its own message.
	for name, tc := range map[string]struct {
		bearer string
		want   error
		msg    string
	}{
		"malformed": {"Bearer xyz", apitoken.ErrMalformed, apitoken.MsgMalformed},
		"unknown":   {func() string { _, s, _ := apitoken.Generate(); return s }(), apitoken.ErrUnknown, apitoken.MsgUnknown},
	} {
		if _, err := front.Authenticate(ctx, tc.bearer); !errors.Is(err, tc.want) {
			t.Errorf("%s: Authenticate = %v, want %v", name, err, tc.want)
		}
		_, err := bearer(ctx, tc.bearer)
		grpctest.WantStatus(t, err, codes.Unauthenticated, tc.msg)
	}
	short, err := admin.CreateAPIToken(ctx, &berthv1.CreateAPITokenRequest{Role: "admin", TtlSeconds: 60})
	if err != nil {
		t.Fatal(err)
	}
	e.clock.Set(e.clock.Now().Add(time.Minute))
	if _, err := front.Authenticate(ctx, short.GetSecretToken()); !errors.Is(err, apitoken.ErrExpired) {
		t.Errorf("Authenticate(expired) = %v, want ErrExpired", err)
	}
}

func TestAPITokenRequestsRefused(t *testing.T) {
	e := newEnv(t, sqliteBackend)
	admin := berthv1.NewAPITokenServiceClient(e.admin)
	for _, tt := range []struct {
		name string
		req  *berthv1.CreateAPITokenRequest
		msg  string
	}{
		{"no role", &berthv1.CreateAPITokenRequest{}, "role " + ruleRole},
		{"unknown role", &berthv1.CreateAPITokenRequest{Role: "root"}, "role " + ruleRole},
		{"role in capitals", &berthv1.CreateAPITokenRequest{Role: "Admin"}, "role " + ruleRole},
		{"name with a space", &berthv1.CreateAPITokenRequest{Role: "viewer", Name: "ci bot"}, "name " + ruleAPITokenName},
		{"name with a slash", &berthv1.CreateAPITokenRequest{Role: "viewer", Name: "a/b"}, "name " + ruleAPITokenName},
		{"long name", &berthv1.CreateAPITokenRequest{Role: "viewer", Name: strings.Repeat("a", 65)}, "name " + ruleAPITokenName},
		{"negative TTL", &berthv1.CreateAPITokenRequest{Role: "viewer", TtlSeconds: -1}, "ttl_seconds " + ruleAPITokenTTL},
		{"TTL over ten years", &berthv1.CreateAPITokenRequest{Role: "viewer", TtlSeconds: 11 * 365 * 24 * 3600}, "ttl_seconds " + ruleAPITokenTTL},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := admin.CreateAPIToken(t.Context(), tt.req)
			grpctest.WantStatus(t, err, codes.InvalidArgument, tt.msg)
		})
	}
	_, err := admin.RevokeAPIToken(t.Context(), &berthv1.RevokeAPITokenRequest{Id: "nope"})
	grpctest.WantStatus(t, err, codes.InvalidArgument, "id "+ruleAPITokenID)
	_, err = admin.RevokeAPIToken(t.Context(), &berthv1.RevokeAPITokenRequest{Id: "0123456789abcdef"})
	grpctest.WantStatus(t, err, codes.NotFound, msgAPITokenNotFound)
	if list, err := admin.ListAPITokens(t.Context(), &berthv1.ListAPITokensRequest{IncludeInactive: true}); err != nil || len(list.GetTokens()) != 0 {
		t.Errorf("refused requests left tokens: %v, %v", list, err)
	}
}
