package mtls

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"net/url"
	"strings"
	"testing"
)

func TestParseCAHash(t *testing.T) {
	good := "sha256:" + strings.Repeat("ab", 32)
	tests := []struct {
		in      string
		wantErr bool
	}{
		{good, false},
		{"  " + good + "\n", false},
		{"sha1:" + strings.Repeat("ab", 32), true},
		{strings.Repeat("ab", 32), true},
		{"sha256:" + strings.Repeat("ab", 31), true},
		{"sha256:" + strings.Repeat("zz", 32), true},
		{"", true},
	}
	for _, tt := range tests {
		got, err := ParseCAHash(tt.in)
		if (err != nil) != tt.wantErr {
			t.Errorf("ParseCAHash(%q) err = %v, wantErr %v", tt.in, err, tt.wantErr)
		}
		if err != nil && !errors.Is(err, ErrBadCAHash) {
			t.Errorf("ParseCAHash(%q) err = %v, want ErrBadCAHash", tt.in, err)
		}
		if err == nil && got[0] != 0xab {
			t.Errorf("ParseCAHash(%q) = %x", tt.in, got)
		}
	}
}

func TestParseURI(t *testing.T) {
	tests := []struct {
		uri      string
		wantKind Kind
		wantName string
		wantErr  bool
	}{
		{"spiffe://berth.local/node/abc", KindNode, "abc", false},
		{"spiffe://berth.local/service/ca", KindService, "ca", false},
		{"spiffe://berth.local/admin/admin", KindAdmin, "admin", false},
		{"spiffe://other.domain/node/abc", KindUnknown, "", true},
		{"https://berth.local/node/abc", KindUnknown, "", true},
		{"spiffe://berth.local/node/", KindUnknown, "", true},
		{"spiffe://berth.local/node/a/b", KindUnknown, "", true},
		{"spiffe://berth.local/robot/x", KindUnknown, "", true},
	}
	for _, tt := range tests {
		u, err := url.Parse(tt.uri)
		if err != nil {
			t.Fatal(err)
		}
		kind, name, err := ParseURI("berth.local", u)
		if (err != nil) != tt.wantErr || kind != tt.wantKind || name != tt.wantName {
			t.Errorf("ParseURI(%s) = %v %q %v", tt.uri, kind, name, err)
		}
	}
}

// TestURIsRoundTrip: each URI a certificate is issued with parses back,
// through its text form as a certificate carries it, to the same kind and
// name, and only in its own trust domain.
func TestURIsRoundTrip(t *testing.T) {
	for _, tt := range []struct {
		uri      *url.URL
		wantKind Kind
		wantName string
	}{
		{NodeURI("td", "n1"), KindNode, "n1"},
		{ServiceURI("td", "ca"), KindService, "ca"},
		{AdminURI("td", "ops"), KindAdmin, "ops"},
	} {
		u, err := url.Parse(tt.uri.String())
		if err != nil {
			t.Fatalf("%s: %v", tt.uri, err)
		}
		kind, name, err := ParseURI("td", u)
		if err != nil || kind != tt.wantKind || name != tt.wantName {
			t.Errorf("ParseURI(%s) = %v %q %v, want %v %q", u, kind, name, err, tt.wantKind, tt.wantName)
		}
		if kind, name, err := ParseURI("other", u); err == nil || kind != KindUnknown || name != "" {
			t.Errorf("ParseURI(other, %s) = %v %q %v, want an error", u, kind, name, err)
		}
	}
}

func TestSelfSignedAndKeyHash(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	cert, err := SelfSigned(key)
	if err != nil {
		t.Fatal(err)
	}
	h1, _ := KeyHash(cert.Leaf.PublicKey)
	h2, _ := KeyHash(key.Public())
	h3, _ := KeyHash(other.Public())
	if h1 != h2 || h1 == h3 {
		t.Fatal("key hash does not identify the key")
	}
	if !SameKey(cert.Leaf.PublicKey, key.Public()) || SameKey(key.Public(), other.Public()) {
		t.Fatal("SameKey is wrong")
	}
}
