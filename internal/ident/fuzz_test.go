package ident

import (
	"net"
	"strings"
	"testing"
)

// FuzzNodeID checks NodeID against a second reading of its rule, written
// the other way round.
func FuzzNodeID(f *testing.F) {
	for _, s := range []string{"", "a", "node-a", "-a", "a-", "N1/..", strings.Repeat("a", 64), "n\x00", "nöde"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		want := len(id) >= 1 && len(id) <= 63 && id[0] != '-' &&
			strings.Trim(id, "abcdefghijklmnopqrstuvwxyz0123456789-") == ""
		if got := NodeID(id) == nil; got != want {
			t.Fatalf("NodeID(%q) ok = %v, want %v", id, got, want)
		}
	})
}

// FuzzHostname checks what every accepted name is: canonical, a fixed
// point, never an IP address or localhost, and within the limits.
func FuzzHostname(f *testing.F) {
	for _, s := range []string{"node-07", "Node.Example.", "localhost", "a.localhost", "10.0.0.1", "::1", "a..b", "-a", "a.123", "*.x", "x.y.z", "\u212a"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		got, err := Hostname(h)
		if err != nil {
			if got != "" {
				t.Fatalf("Hostname(%q) returned %q with an error", h, got)
			}
			return
		}
		if got != asciiLower(strings.TrimSuffix(h, ".")) {
			t.Fatalf("Hostname(%q) = %q, not the lower-case name", h, got)
		}
		if again, err := Hostname(got); err != nil || again != got {
			t.Fatalf("Hostname(%q) = %q, %v: not a fixed point", got, again, err)
		}
		if len(got) > MaxHostnameLen || net.ParseIP(got) != nil || got == "localhost" || strings.HasSuffix(got, ".localhost") {
			t.Fatalf("Hostname(%q) accepted %q", h, got)
		}
		for _, l := range strings.Split(got, ".") {
			if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' || strings.Trim(l, "abcdefghijklmnopqrstuvwxyz0123456789-") != "" {
				t.Fatalf("Hostname(%q) accepted label %q", h, l)
			}
		}
	})
}

// FuzzPageToken checks that a page token reads only as a valid node ID,
// and that every node ID survives the trip through a token.
func FuzzPageToken(f *testing.F) {
	for _, s := range []string{"", "bm9kZS1h", "!!", "AAAA", PageToken("node-a"), PageToken("Node/..")} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		id, ok := AfterPageToken(tok)
		if !ok {
			if id != "" {
				t.Fatalf("refused token %q read as %q", tok, id)
			}
			return
		}
		if tok == "" {
			if id != "" {
				t.Fatalf("empty token read as %q", id)
			}
			return
		}
		if NodeID(id) != nil {
			t.Fatalf("token %q read as invalid node ID %q", tok, id)
		}
		if back, ok := AfterPageToken(PageToken(id)); !ok || back != id {
			t.Fatalf("node ID %q did not survive a token: %q, %v", id, back, ok)
		}
	})
}
