package pki

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/clock"
)

// testNow is the fixed time of signer tests; it is close to the real time
// so that certificates made by Init (with the real clock) are valid at it.
var testNow = time.Now().UTC().Truncate(time.Second)

func fixedClock(t time.Time) clock.Clock { return clock.NewFake(t) }

// initPKI creates a PKI in a fresh temporary directory.
func initPKI(t testing.TB, c InitConfig) *Layout {
	t.Helper()
	if c.Dir == "" {
		c.Dir = t.TempDir() + "/pki"
	}
	l, err := Init(context.Background(), c)
	if err != nil {
		t.Fatalf("Init: %v", err)
	}
	return l
}

// newSigner makes a Signer for l with a fixed clock, after edit.
func newSigner(t testing.TB, l *Layout, edit func(*SignerConfig)) *Signer {
	t.Helper()
	c, err := l.SignerConfig()
	if err != nil {
		t.Fatalf("SignerConfig: %v", err)
	}
	c.Clock = fixedClock(testNow)
	if edit != nil {
		edit(&c)
	}
	s, err := NewSigner(c)
	if err != nil {
		t.Fatalf("NewSigner: %v", err)
	}
	return s
}

func p256(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// csrFor makes a DER CSR signed by key; tmpl may ask for any names.
func csrFor(t testing.TB, key crypto.Signer, tmpl *x509.CertificateRequest) []byte {
	t.Helper()
	if tmpl == nil {
		tmpl = &x509.CertificateRequest{}
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatalf("CreateCertificateRequest: %v", err)
	}
	return der
}
