package mtls_test

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/mtls"
	"github.com/berth-dev/berth/internal/pki"
	"github.com/berth-dev/berth/internal/testutil/grpctest"
)

// TestStandIn: berth's own intermediate may stand in for its root; a root
// that constrains its chains, or an intermediate that outlives it, may not.
func TestStandIn(t *testing.T) {
	l := grpctest.NewPKIOf(t, "")
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
		{name: "root names a policy", root: func(c *x509.Certificate) { c.Policies = []x509.OID{mustOID(t, "1.3.6.1.4.1.99999.1")} }},
		{name: "root requires an explicit policy", root: func(c *x509.Certificate) { c.RequireExplicitPolicyZero = true }},
	}
	// StandIn reads the certificates' fields only (the chain was verified
	// before it is asked), so these need no keys or signatures.
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := &x509.Certificate{
				Subject: pkix.Name{CommonName: "root"}, NotBefore: now.Add(-24 * time.Hour), NotAfter: now.Add(24 * time.Hour),
				IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
			}
			if tt.root != nil {
				tt.root(root)
			}
			inter := &x509.Certificate{
				Subject: pkix.Name{CommonName: "intermediate"}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
				IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
			}
			if !tt.interFrom.IsZero() {
				inter.NotBefore = tt.interFrom
			}
			if !tt.interTo.IsZero() {
				inter.NotAfter = tt.interTo
			}
			leaf := &x509.Certificate{Subject: pkix.Name{CommonName: "leaf"}, NotBefore: now.Add(-time.Minute), NotAfter: now.Add(time.Minute)}

			got := mtls.StandIn([]*x509.Certificate{leaf, inter, root})
			if (got != nil) != tt.want || got != nil && got != inter {
				t.Fatalf("StandIn = %v, want the intermediate: %v", got, tt.want)
			}
			if mtls.StandIn([]*x509.Certificate{leaf, inter}) != nil {
				t.Error("a chain without its root got a stand-in")
			}
		})
	}
}

func mustOID(t *testing.T, s string) x509.OID {
	t.Helper()
	o, err := x509.ParseOID(s)
	if err != nil {
		t.Fatal(err)
	}
	return o
}
