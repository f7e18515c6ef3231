package ident

import (
	"crypto/rand"
	"errors"
	"strings"
	"testing"
)

func TestNodeID(t *testing.T) {
	tests := []struct {
		name string
		id   string
		ok   bool
	}{
		{"server generated", strings.ToLower(rand.Text()), true},
		{"one character", "a", true},
		{"one digit", "7", true},
		{"hyphenated", "node-a", true},
		{"short", "n1", true},
		{"hex suffix", "n-7f3a9c", true},
		{"trailing hyphen", "n-", true},
		{"double hyphen", "n--1", true},
		{"63 characters", strings.Repeat("a", 63), true},
		{"64 characters", strings.Repeat("a", 64), false},
		{"empty", "", false},
		{"leading hyphen", "-n", false},
		{"upper case", "Node-a", false},
		{"underscore", "n_1", false},
		{"dot", "n.1", false},
		{"slash", "n/1", false},
		{"path traversal", "N1/..", false},
		{"space", "n 1", false},
		{"non-ASCII", "nöde", false},
		{"NUL", "n\x00", false},
		{"newline", "n\n", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := NodeID(tt.id)
			if (err == nil) != tt.ok {
				t.Fatalf("NodeID(%q) = %v, want ok %v", tt.id, err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrNodeID) {
				t.Fatalf("NodeID(%q) = %v, want ErrNodeID", tt.id, err)
			}
		})
	}
}

// TestNewNodeID: the IDs the server makes pass the rule every service
// applies, are the 26 characters the rule's comment promises, and do not
// repeat.
func TestNewNodeID(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		id := NewNodeID()
		if err := NodeID(id); err != nil || len(id) != 26 {
			t.Fatalf("NewNodeID() = %q (%d characters): %v", id, len(id), err)
		}
		if seen[id] {
			t.Fatalf("NewNodeID() repeated %q", id)
		}
		seen[id] = true
	}
}

func TestHostname(t *testing.T) {
	tests := []struct {
		name, in, want string
		ok             bool
	}{
		{"single label", "node-07", "node-07", true},
		{"FQDN", "node-0001.rack1.example.com", "node-0001.rack1.example.com", true},
		{"upper case is folded", "Node-01.Example", "node-01.example", true},
		{"trailing dot is dropped", "node-01.example.", "node-01.example", true},
		{"digits in a label", "0abc.example", "0abc.example", true},
		{"numeric inner label", "10.rack.example", "10.rack.example", true},
		{"63-character label", strings.Repeat("a", 63) + ".example", strings.Repeat("a", 63) + ".example", true},
		{"253 characters", long(253), long(253), true},
		{"254 characters", long(254), "", false},
		{"64-character label", strings.Repeat("a", 64) + ".example", "", false},
		{"empty", "", "", false},
		{"only a dot", ".", "", false},
		{"empty label", "a..example", "", false},
		{"leading dot", ".example", "", false},
		{"leading hyphen", "-node.example", "", false},
		{"trailing hyphen", "node-.example", "", false},
		{"underscore", "node_1", "", false},
		{"space", "bad host", "", false},
		{"bang", "bad host!", "", false},
		{"wildcard", "*.example", "", false},
		{"IPv4", "10.0.0.1", "", false},
		{"IPv6", "::1", "", false},
		{"numeric last label", "node.123", "", false},
		{"localhost", "localhost", "", false},
		{"LOCALHOST.", "LOCALHOST.", "", false},
		{"under localhost", "node.localhost", "", false},
		{"localhost as a prefix is fine", "localhost.example", "localhost.example", true},
		{"non-ASCII", "nöde.example", "", false},
		{"Kelvin sign folds to k", "\u212aode", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Hostname(tt.in)
			if (err == nil) != tt.ok || got != tt.want {
				t.Fatalf("Hostname(%q) = %q, %v; want %q, ok %v", tt.in, got, err, tt.want, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrHostname) {
				t.Fatalf("Hostname(%q) = %v, want ErrHostname", tt.in, err)
			}
		})
	}
}

// TestDNSNameAllowsLocalhost: server certificates name localhost; only a
// node may not.
func TestDNSNameAllowsLocalhost(t *testing.T) {
	for _, h := range []string{"localhost", "ca.localhost"} {
		if got, err := DNSName(h); err != nil || got != h {
			t.Errorf("DNSName(%q) = %q, %v", h, got, err)
		}
	}
	if _, err := DNSName("10.0.0.1"); !errors.Is(err, ErrDNSName) {
		t.Errorf("DNSName(IP) = %v, want ErrDNSName", err)
	}
}

// TestErrorsHoldNoValue: the messages become public, so they must not echo
// what the caller sent.
func TestErrorsHoldNoValue(t *testing.T) {
	const secret = "SECRET-VALUE"
	_, herr := Hostname(secret + " x")
	for _, err := range []error{NodeID(secret), herr} {
		if err == nil || strings.Contains(err.Error(), secret) {
			t.Errorf("error %v echoes the value", err)
		}
	}
}

// long returns a valid host name of exactly n characters.
func long(n int) string {
	var b strings.Builder
	for b.Len() < n {
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(strings.Repeat("a", min(63, n-b.Len())))
	}
	s := b.String()
	if strings.HasSuffix(s, ".") || len(s) != n {
		panic("long: bad length")
	}
	return s
}
