package cli_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

func createdToken(r *berthv1.CreateTokenRequest) *berthv1.CreateTokenResponse {
	return &berthv1.CreateTokenResponse{
		Token: &berthv1.Token{
			Id:          "tok-5e6f",
			ExpiresAt:   ts(testNow.Add(time.Duration(r.GetTtlSeconds()) * time.Second)),
			UsesLeft:    max(r.GetUses(), 1),
			AutoApprove: r.GetAutoApprove(),
			Labels:      r.GetLabels(),
			CreatedAt:   ts(testNow),
			Description: r.GetDescription(),

			MinIdentity:     r.GetMinIdentity(),
			AllowSiteSecret: r.GetAllowSiteSecret(),
		},
		SecretToken: "tok-5e6f.Zm9vYmFyYmF6cXV4cXV1eA",
	}
}

func TestTokensCreate(t *testing.T) {
	pki := newTestPKI(t)
	full := []string{"tokens", "create", "--auto-approve", "--uses", "5", "--ttl", "90m",
		"--label", "rack=r1", "--label", "env=prod", "--description", "rack 1 hypervisors"}
	fullReq := &berthv1.CreateTokenRequest{
		TtlSeconds: 5400, Uses: 5, AutoApprove: true,
		Labels:      map[string]string{"rack": "r1", "env": "prod"},
		Description: "rack 1 hypervisors",
	}
	for _, tc := range []struct {
		name    string
		args    []string
		wantReq *berthv1.CreateTokenRequest
		golden  string
	}{
		{"defaults", []string{"tokens", "create"}, &berthv1.CreateTokenRequest{TtlSeconds: 86400, Uses: 1}, "tokens_create_default_table"},
		{"table", full, fullReq, "tokens_create_table"},
		{"json", append([]string{"-o", "json"}, full...), fullReq, "tokens_create_json"},
		{"ttl rounded up to seconds", []string{"tokens", "create", "--ttl", "1500ms", "-o", "json"},
			&berthv1.CreateTokenRequest{TtlSeconds: 2, Uses: 1}, ""},
		{"identity policy", []string{"tokens", "create", "--auto-approve", "--min-identity", "site-secret", "--allow-site-secret"},
			&berthv1.CreateTokenRequest{TtlSeconds: 86400, Uses: 1, AutoApprove: true, MinIdentity: "site-secret", AllowSiteSecret: true},
			"tokens_create_identity_table"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake := &fakeAdmin{createToken: func(_ context.Context, r *berthv1.CreateTokenRequest) (*berthv1.CreateTokenResponse, error) {
				return createdToken(r), nil
			}}
			r := start(t, pki, fake).run(tc.args...)
			checkOK(t, r)
			checkRequests(t, fake, tc.wantReq)
			if tc.golden != "" {
				checkGolden(t, tc.golden, r.stdout)
			}
		})
	}
}

func TestTokensCreateJSONContract(t *testing.T) {
	fake := &fakeAdmin{createToken: func(_ context.Context, r *berthv1.CreateTokenRequest) (*berthv1.CreateTokenResponse, error) {
		return createdToken(r), nil
	}}
	r := start(t, newTestPKI(t), fake).run("tokens", "create", "--uses", "3", "--auto-approve", "-o", "json")
	checkOK(t, r)
	var got map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"id":           "tok-5e6f",
		"token":        "tok-5e6f.Zm9vYmFyYmF6cXV4cXV1eA",
		"expires_at":   "2026-11-22T12:00:00Z",
		"uses_left":    float64(3),
		"auto_approve": true,
		"labels":       map[string]any{},
		"description":  "",
	}
	for k, v := range want {
		if diff := cmp.Diff(v, got[k]); diff != "" {
			t.Errorf("field %q (-want +got):\n%s", k, diff)
		}
	}
}

func sampleTokens() []*berthv1.Token {
	return []*berthv1.Token{
		{Id: "tok-a1", ExpiresAt: ts(testNow.Add(20 * time.Hour)), UsesLeft: 9, AutoApprove: true,
			Labels: map[string]string{"rack": "r1"}, CreatedAt: ts(testNow.Add(-4 * time.Hour)), Description: "rack 1",
			MinIdentity: "seed-file"},
		{Id: "tok-b2", ExpiresAt: ts(testNow.Add(-1 * time.Hour)), UsesLeft: 1, CreatedAt: ts(testNow.Add(-25 * time.Hour))},
		{Id: "tok-c3", ExpiresAt: ts(testNow.Add(6 * 24 * time.Hour)), UsesLeft: 0, CreatedAt: ts(testNow.Add(-24 * time.Hour))},
		{Id: "tok-d4", ExpiresAt: ts(testNow.Add(3 * time.Hour)), UsesLeft: 2, Revoked: true, CreatedAt: ts(testNow.Add(-time.Hour))},
	}
}

func TestTokensList(t *testing.T) {
	pki := newTestPKI(t)
	for _, tc := range []struct {
		name    string
		args    []string
		tokens  []*berthv1.Token
		wantReq *berthv1.ListTokensRequest
		golden  string
		want    string
	}{
		{"table", []string{"tokens", "list", "--all"}, sampleTokens(), &berthv1.ListTokensRequest{IncludeInactive: true}, "tokens_list_table", ""},
		{"json", []string{"tokens", "list", "-o", "json", "--all"}, sampleTokens(), &berthv1.ListTokensRequest{IncludeInactive: true}, "tokens_list_json", ""},
		{"active only", []string{"tokens", "list"}, sampleTokens()[:1], &berthv1.ListTokensRequest{}, "tokens_list_active_table", ""},
		{"empty json", []string{"tokens", "list", "-o", "json"}, nil, &berthv1.ListTokensRequest{}, "", "[]\n"},
		{"empty table", []string{"tokens", "list"}, nil, &berthv1.ListTokensRequest{}, "",
			"No usable tokens found (--all also lists expired, used-up and revoked ones).\n"},
		{"empty table all", []string{"tokens", "list", "--all"}, nil, &berthv1.ListTokensRequest{IncludeInactive: true}, "", "No tokens found.\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake := &fakeAdmin{listTokens: func(context.Context, *berthv1.ListTokensRequest) (*berthv1.ListTokensResponse, error) {
				return &berthv1.ListTokensResponse{Tokens: tc.tokens}, nil
			}}
			r := start(t, pki, fake).run(tc.args...)
			checkOK(t, r)
			checkRequests(t, fake, tc.wantReq)
			if tc.golden != "" {
				checkGolden(t, tc.golden, r.stdout)
			} else if r.stdout != tc.want {
				t.Errorf("stdout %q, want %q", r.stdout, tc.want)
			}
			if strings.Contains(r.stdout, `"token"`) {
				t.Errorf("tokens list printed a secret field:\n%s", r.stdout)
			}
		})
	}
}

func TestTokensRevoke(t *testing.T) {
	pki := newTestPKI(t)
	for _, tc := range []struct {
		name, format, want string
	}{
		{"table", "table", "Revoked token tok-a1.\n"},
		{"json", "json", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake := &fakeAdmin{revokeToken: func(_ context.Context, r *berthv1.RevokeTokenRequest) (*berthv1.RevokeTokenResponse, error) {
				tok := sampleTokens()[0]
				tok.Revoked = true
				return &berthv1.RevokeTokenResponse{Token: tok}, nil
			}}
			r := start(t, pki, fake).run("tokens", "revoke", "tok-a1", "-o", tc.format)
			checkOK(t, r)
			checkRequests(t, fake, &berthv1.RevokeTokenRequest{Id: "tok-a1"})
			if tc.format == "table" {
				if r.stdout != tc.want {
					t.Errorf("stdout %q, want %q", r.stdout, tc.want)
				}
				return
			}
			var got map[string]any
			if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
				t.Fatal(err)
			}
			if got["id"] != "tok-a1" || got["revoked"] != true || got["state"] != "revoked" {
				t.Errorf("got %v", got)
			}
		})
	}
}
