package rpc

import (
	"strings"
	"testing"

	"github.com/berth-dev/berth/internal/mtls"
)

func TestParseForwarded(t *testing.T) {
	tests := []struct {
		in   string
		want mtls.Identity
		ok   bool
	}{
		{"admin:alice", mtls.Identity{Kind: mtls.KindAdmin, Name: "alice"}, true},
		{"admin:" + strings.Repeat("a", maxForwardedName), mtls.Identity{Kind: mtls.KindAdmin, Name: strings.Repeat("a", maxForwardedName)}, true},
		{"admin:" + strings.Repeat("a", maxForwardedName+1), mtls.Identity{}, false},
		{"admin:", mtls.Identity{}, false},
		{"admin", mtls.Identity{}, false},
		{"node:node-1", mtls.Identity{}, false},
		{"service:registration", mtls.Identity{}, false},
		{"bootstrap:00", mtls.Identity{}, false},
		{"admin:al\nice", mtls.Identity{}, false},
		{"admin:élise", mtls.Identity{}, false},
		// API tokens: ID, role and name, strictly.
		{"token:0123456789abcdef;role=viewer;name=dashboard", mtls.Identity{Kind: mtls.KindToken, Name: "0123456789abcdef", TokenName: "dashboard", Role: mtls.RoleViewer}, true},
		{"token:0123456789abcdef;role=admin;name=", mtls.Identity{Kind: mtls.KindToken, Name: "0123456789abcdef", Role: mtls.RoleAdmin}, true},
		{"token:0123456789abcdef;role=operator;name=ci.bot@example-1_2", mtls.Identity{Kind: mtls.KindToken, Name: "0123456789abcdef", TokenName: "ci.bot@example-1_2", Role: mtls.RoleOperator}, true},
		{"token:0123456789abcdef;role=root;name=x", mtls.Identity{}, false},
		{"token:0123456789abcdef;role=;name=x", mtls.Identity{}, false},
		{"token:0123456789abcdef;role=admin", mtls.Identity{}, false},
		{"token:0123456789abcdef;name=x;role=admin", mtls.Identity{}, false},
		{"token:0123456789abcdef;role=admin;name=x;role=viewer", mtls.Identity{}, false},
		{"token:0123456789ABCDEF;role=admin;name=x", mtls.Identity{}, false},
		{"token:0123;role=admin;name=x", mtls.Identity{}, false},
		{"token:0123456789abcdef;role=admin;name=a b", mtls.Identity{}, false},
		{"token:0123456789abcdef;role=admin;name=a/b", mtls.Identity{}, false},
		{"token:0123456789abcdef;role=admin;name=" + strings.Repeat("a", 65), mtls.Identity{}, false},
		{"token:0123456789abcdef", mtls.Identity{}, false},
		// The form logs and events show is not the forwarded one.
		{"token:0123456789abcdef/dashboard", mtls.Identity{}, false},
	}
	for _, tt := range tests {
		got, ok := parseForwarded(tt.in)
		if ok != tt.ok || got != tt.want {
			t.Errorf("parseForwarded(%q) = %v, %v; want %v, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

// TestForwardedCallerRoundTrip: what the front door writes, the services
// read back as the same caller, role included.
func TestForwardedCallerRoundTrip(t *testing.T) {
	for _, id := range []mtls.Identity{
		{Kind: mtls.KindAdmin, Name: "admin"},
		{Kind: mtls.KindToken, Name: "0123456789abcdef", TokenName: "ci-bot", Role: mtls.RoleOperator},
		{Kind: mtls.KindToken, Name: "fedcba9876543210", Role: mtls.RoleViewer},
		{Kind: mtls.KindToken, Name: "fedcba9876543210", TokenName: "root", Role: mtls.RoleAdmin},
	} {
		got, ok := parseForwarded(ForwardedCaller(id))
		if !ok || got != id {
			t.Errorf("parseForwarded(ForwardedCaller(%v)) = %+v, %v", id, got, ok)
		}
	}
}

func TestBearerToken(t *testing.T) {
	for in, want := range map[string]string{
		"Bearer abc": "abc", "bearer abc": "abc", "BEARER  abc ": "abc", " Bearer abc": "abc",
		"Basic abc": "", "Bearer": "", "Bearer ": "", "abc": "", "": "", "Bearerabc": "",
	} {
		got, ok := BearerToken(in)
		if got != want && ok || ok != (want != "") {
			t.Errorf("BearerToken(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
}
