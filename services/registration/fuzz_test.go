package registration

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"net/url"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/berth-dev/berth/internal/mtls"
)

// FuzzValidateCSR feeds arbitrary bytes as a node's CSR. Whatever comes in,
// the answer is a refusal with a client-side code, or an acceptance that
// really holds: the CSR is signed by the caller's own key and asks for no
// identity beyond the host name.
func FuzzValidateCSR(f *testing.F) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	self, err := mtls.SelfSigned(key)
	if err != nil {
		f.Fatal(err)
	}
	caller := mtls.Identity{Leaf: self.Leaf}
	const host = "node-a.example"
	for _, tmpl := range []*x509.CertificateRequest{
		{Subject: pkix.Name{CommonName: host}},
		{Subject: pkix.Name{CommonName: host}, DNSNames: []string{host}},
		{DNSNames: []string{"other.example"}},
		{URIs: []*url.URL{{Scheme: "spiffe", Host: "berth.local", Path: "/node/x"}}},
	} {
		der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(der, host)
		f.Add(der[:len(der)/2], host)
	}
	f.Add([]byte{}, host)
	f.Fuzz(func(t *testing.T, der []byte, hostname string) {
		err := validateCSR(der, hostname, caller)
		if err != nil {
			if c := codeOf(err); c != codes.InvalidArgument && c != codes.PermissionDenied {
				t.Fatalf("refusal mapped to %v (%v), want InvalidArgument or PermissionDenied", c, err)
			}
			return
		}
		csr, perr := x509.ParseCertificateRequest(der)
		if perr != nil {
			t.Fatalf("accepted a CSR that does not parse: %v", perr)
		}
		if csr.CheckSignature() != nil {
			t.Fatal("accepted a CSR whose signature does not verify")
		}
		if !mtls.SameKey(csr.PublicKey, &key.PublicKey) {
			t.Fatal("accepted a CSR for a key other than the caller's")
		}
		if len(csr.URIs) > 0 {
			t.Fatalf("accepted a CSR asking for URIs %v", csr.URIs)
		}
		for _, d := range csr.DNSNames {
			if !strings.EqualFold(d, hostname) {
				t.Fatalf("accepted DNS name %q for host %q", d, hostname)
			}
		}
	})
}

// FuzzParseToken checks the bootstrap token reader: what it accepts splits
// into a well-formed ID and secret that read back the same, and everything
// else is InvalidArgument.
func FuzzParseToken(f *testing.F) {
	for _, s := range []string{
		"abcd1234.abcdefghijklmnopqrstuvwxyz",
		" abcd1234.abcdefghijklmnopqrstuvwxyz\n",
		"abcd1234", ".", "ABCD1234.abcdefghijklmnopqrstuvwxyz",
		"abcd1234.abcdefghijklmnopqrstuvwxyz.extra", "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, secret, err := parseToken(s)
		if err != nil {
			if c := codeOf(err); c != codes.InvalidArgument {
				t.Fatalf("parseToken(%q) refused with %v, want InvalidArgument", s, c)
			}
			if id != "" || secret != "" {
				t.Fatalf("parseToken(%q) refused but returned %q, %q", s, id, secret)
			}
			return
		}
		if len(id) != 8 || len(secret) != 26 || !lowerAlnum(id) || !lowerAlnum(secret) {
			t.Fatalf("parseToken(%q) accepted id %q secret %q", s, id, secret)
		}
		if strings.TrimSpace(s) != id+"."+secret {
			t.Fatalf("parseToken(%q) = %q.%q, not what was given", s, id, secret)
		}
	})
}

func lowerAlnum(s string) bool {
	return strings.Trim(s, "abcdefghijklmnopqrstuvwxyz0123456789") == ""
}

// codeOf is the code the service would answer for err.
func codeOf(err error) codes.Code {
	c, _ := errorTable.Classify(context.Background(), err)
	return c
}
