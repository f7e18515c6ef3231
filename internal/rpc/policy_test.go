package rpc

import (
	"testing"

	"github.com/berth-dev/berth/internal/mtls"
)

func TestRules(t *testing.T) {
	ids := map[string]mtls.Identity{
		"bootstrap":    {Kind: mtls.KindBootstrap},
		"node":         {Kind: mtls.KindNode, Name: "n1"},
		"registration": {Kind: mtls.KindService, Name: "registration"},
		"bundles":      {Kind: mtls.KindService, Name: "bundles"},
		"admin":        {Kind: mtls.KindAdmin, Name: "admin"},
	}
	tests := []struct {
		rule  string
		r     Rule
		allow []string
	}{
		{"Admin", Admin, []string{"admin"}},
		{"NodeKey", NodeKey, []string{"bootstrap", "node"}},
		{"Node", Node, []string{"node"}},
		{"Anyone", Anyone, []string{"bootstrap", "node", "registration", "bundles", "admin"}},
		{"Service(registration)", Service("registration"), []string{"registration"}},
		{"AnyOf(Admin, Service(bundles))", AnyOf(Admin, Service("bundles")), []string{"admin", "bundles"}},
	}
	for _, tt := range tests {
		allowed := map[string]bool{}
		for _, a := range tt.allow {
			allowed[a] = true
		}
		for name, id := range ids {
			if got := tt.r(id); got != allowed[name] {
				t.Errorf("%s(%s) = %v, want %v", tt.rule, name, got, allowed[name])
			}
		}
	}
	if !allowsBootstrap(NodeKey) || allowsBootstrap(Admin) {
		t.Error("allowsBootstrap is wrong")
	}
}

func TestMergeKeepsEveryMethod(t *testing.T) {
	p := Merge(Policy{"/a/A": Admin}, Policy{"/b/B": Node})
	if len(p) != 2 || p["/a/A"] == nil || p["/b/B"] == nil {
		t.Fatalf("Merge = %v", p)
	}
}
