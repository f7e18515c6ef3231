package mtls_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"path/filepath"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/mtls"
	"github.com/berth-dev/berth/internal/pki"
)

// TestStandIn: berth's own intermediate may stand in for its root; a root
// that constrains its chains, or an intermediate that outlives it, may not.
func TestStandIn(t *testing.T) {
	l, err := pki.Init(context.Background(), pki.InitConfig{Dir: filepath.Join(t.TempDir(), "pki")})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := l.ServiceCertificate(pki.ServiceRegistration)
	if err != nil {
		t.Fatal(err)
	}
	if got := mtls.StandIn([]*x509.Certificate{svc.Leaf, l.Intermediate, l.Root}); got == nil || !got.Equal(l.Intermediate) {
		t.Fatalf("berth's chain: StandIn = %v, want its intermediate", got)
	}

	now := time.Now().Truncate(time.Second)
	tests := []struct {
		name      string
		root      func(*x509.Certificate)
		interFrom time.Time
		interTo   time.Time
		want      bool
	}{
		{name: "plain root", want: true},
		{name: "intermediate outlives the root", interTo: now.Add(48 * time.Hour)},
		{name: "intermediate valid before the root", interFrom: now.Add(-48 * time.Hour)},
		{name: "root limits key usages", root: func(c *x509.Certificate) { c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth} }},
		{name: "root limits names", root: func(c *x509.Certificate) { c.PermittedDNSDomains = []string{"example.com"} }},
		{name: "root limits URIs", root: func(c *x509.Certificate) { c.ExcludedURIDomains = []string{"evil.example"} }},
		{name: "root requires a policy", root: func(c *x509.Certificate) {
			c.Policies = []x509.OID{mustOID(t, "1.3.6.1.4.1.99999.1")}
			c.RequireExplicitPolicyZero = true
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rootKey, interKey, leafKey := ecKey(t), ecKey(t), ecKey(t)
			rootTmpl := &x509.Certificate{
				SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "root"},
				NotBefore: now.Add(-24 * time.Hour), NotAfter: now.Add(24 * time.Hour),
				IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
			}
			if tt.root != nil {
				tt.root(rootTmpl)
			}
			root := certOf(t, rootTmpl, rootTmpl, rootKey.Public(), rootKey)
			interTmpl := &x509.Certificate{
				SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "intermediate"},
				NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
				IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
			}
			if !tt.interFrom.IsZero() {
				interTmpl.NotBefore = tt.interFrom
			}
			if !tt.interTo.IsZero() {
				interTmpl.NotAfter = tt.interTo
			}
			inter := certOf(t, interTmpl, root, interKey.Public(), rootKey)
			leaf := certOf(t, &x509.Certificate{
				SerialNumber: big.NewInt(3), Subject: pkix.Name{CommonName: "leaf"},
				NotBefore: now.Add(-time.Minute), NotAfter: now.Add(time.Minute),
			}, inter, leafKey.Public(), interKey)

			got := mtls.StandIn([]*x509.Certificate{leaf, inter, root})
			if tt.want != (got != nil) {
				t.Fatalf("StandIn = %v, want a stand-in: %v", got, tt.want)
			}
			if got != nil && !got.Equal(inter) {
				t.Fatalf("StandIn = %v, want the intermediate", got.Subject)
			}
			if mtls.StandIn([]*x509.Certificate{leaf, inter}) != nil {
				t.Error("a chain without its root got a stand-in")
			}
		})
	}
}

func ecKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func certOf(t *testing.T, tmpl, parent *x509.Certificate, pub any, key *ecdsa.PrivateKey) *x509.Certificate {
	t.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func mustOID(t *testing.T, s string) x509.OID {
	t.Helper()
	o, err := x509.ParseOID(s)
	if err != nil {
		t.Fatal(err)
	}
	return o
}
