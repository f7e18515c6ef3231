package mtls_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"testing"

	"google.golang.org/grpc/credentials"

	"github.com/berth-dev/berth/internal/mtls"
	"github.com/berth-dev/berth/internal/testutil/grpctest"
)

// TestServerAnchors: a server learns the intermediate of a client chain
// that verified in full, checks later chains from it, and decides them as
// the full check would: a certificate forged in the intermediate's name
// is refused after the intermediate was learned, and a chain of another
// deployment teaches it nothing.
func TestServerAnchors(t *testing.T) {
	l, other := grpctest.NewPKIOf(t, ""), grpctest.NewPKIOf(t, "")
	admin, err := l.AdminCertificate()
	if err != nil {
		t.Fatal(err)
	}
	otherAdmin, err := other.AdminCertificate()
	if err != nil {
		t.Fatal(err)
	}
	adminChain := grpctest.Chain(t, admin)
	if len(adminChain) != 2 || !adminChain[1].Equal(l.Intermediate) {
		t.Fatalf("the admin chain is not leaf and intermediate: %d certificates", len(adminChain))
	}
	// The admin's certificate again, signed by another key in the
	// intermediate's name.
	forger, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	fakeInter := *l.Intermediate
	fakeInter.PublicKey = forger.Public()
	der, err := x509.CreateCertificate(rand.Reader, adminChain[0], &fakeInter, adminChain[0].PublicKey, forger)
	if err != nil {
		t.Fatal(err)
	}
	forged, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}

	c := mtls.NewServerCredentials(credentials.NewTLS(&tls.Config{}), l.TrustDomain, l.RootPool())
	steps := []struct {
		name        string
		chain       []*x509.Certificate
		wantErr     bool
		wantAnchors int
	}{
		{name: "another deployment's admin", chain: grpctest.Chain(t, otherAdmin), wantErr: true, wantAnchors: 0},
		{name: "the admin, in full", chain: adminChain, wantAnchors: 1},
		{name: "the admin, from the intermediate", chain: adminChain, wantAnchors: 1},
		{name: "forged in the intermediate's name", chain: []*x509.Certificate{forged, l.Intermediate}, wantErr: true, wantAnchors: 1},
		{name: "the admin's chain with the root sent too", chain: []*x509.Certificate{adminChain[0], l.Intermediate, l.Root}, wantAnchors: 1},
	}
	for _, s := range steps {
		id, err := c.Classify(s.chain)
		if s.wantErr {
			if err == nil || id.Kind != mtls.KindBootstrap {
				t.Errorf("%s: classified as %v, %v; want a bootstrap key and an error", s.name, id.Kind, err)
			}
		} else if err != nil || id.Kind != mtls.KindAdmin {
			t.Errorf("%s: classified as %v, %v; want the admin", s.name, id.Kind, err)
		}
		if got := c.Anchors(); got != s.wantAnchors {
			t.Errorf("%s: %d anchors learned, want %d", s.name, got, s.wantAnchors)
		}
	}
}

// BenchmarkClassify is a server working out a client's identity from its
// chain (leaf and intermediate): in full under the roots, and from the
// intermediate once learned.
func BenchmarkClassify(b *testing.B) {
	l := grpctest.NewPKIOf(b, "")
	admin, err := l.AdminCertificate()
	if err != nil {
		b.Fatal(err)
	}
	chain := grpctest.Chain(b, admin)
	b.Run("full", func(b *testing.B) {
		roots := l.RootPool()
		for b.Loop() {
			if _, err := mtls.VerifyPeer(l.TrustDomain, roots, chain); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("anchored", func(b *testing.B) {
		c := mtls.NewServerCredentials(credentials.NewTLS(&tls.Config{}), l.TrustDomain, l.RootPool())
		for b.Loop() {
			if _, err := c.Classify(chain); err != nil {
				b.Fatal(err)
			}
		}
	})
}
