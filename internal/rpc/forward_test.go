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
	}
	for _, tt := range tests {
		got, ok := parseForwarded(tt.in)
		if ok != tt.ok || got != tt.want {
			t.Errorf("parseForwarded(%q) = %v, %v; want %v, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}
