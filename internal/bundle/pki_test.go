package bundle

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net/url"
	"testing"
	"time"
)

// testPKI is a deployment's CA made at run time: a root, an intermediate,
// and leaves under it, as berthd init makes them.
type testPKI struct {
	root, inter       *x509.Certificate
	rootKey, interKey crypto.Signer
	pool              *x509.CertPool
}

const testTD = "berth.test"

var testEpoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func newKeyP256(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newTestPKI(t testing.TB) *testPKI {
	t.Helper()
	p := &testPKI{rootKey: newKeyP256(t), interKey: newKeyP256(t)}
	p.root = makeCert(t, &x509.Certificate{
		Subject: pkix.Name{CommonName: "test root"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign,
	}, nil, p.rootKey, p.rootKey.Public())
	p.inter = makeCert(t, &x509.Certificate{
		Subject: pkix.Name{CommonName: "test intermediate"}, IsCA: true, BasicConstraintsValid: true,
		MaxPathLenZero: true, KeyUsage: x509.KeyUsageCertSign,
	}, p.root, p.rootKey, p.interKey.Public())
	p.pool = x509.NewCertPool()
	p.pool.AddCert(p.root)
	return p
}

// leaf issues a leaf with one URI SAN under the intermediate.
func (p *testPKI) leaf(t testing.TB, uri string, key crypto.Signer, edit ...func(*x509.Certificate)) *x509.Certificate {
	t.Helper()
	u, err := url.Parse(uri)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		Subject: pkix.Name{CommonName: "leaf"}, URIs: []*url.URL{u},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	for _, e := range edit {
		e(tmpl)
	}
	return makeCert(t, tmpl, p.inter, p.interKey, key.Public())
}

// admin is an admin signer of the PKI.
func (p *testPKI) admin(t testing.TB, name string) *Signer {
	t.Helper()
	key := newKeyP256(t)
	s, err := NewAdminSigner([]*x509.Certificate{p.leaf(t, "spiffe://"+testTD+"/admin/"+name, key), p.inter}, key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func makeCert(t testing.TB, tmpl, parent *x509.Certificate, parentKey crypto.Signer, pub crypto.PublicKey) *x509.Certificate {
	t.Helper()
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		t.Fatal(err)
	}
	tmpl.SerialNumber = serial
	if tmpl.NotBefore.IsZero() {
		tmpl.NotBefore = testEpoch
		tmpl.NotAfter = testEpoch.Add(365 * 24 * time.Hour)
	}
	if parent == nil {
		parent = tmpl
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func nodeSigner(t testing.TB, key crypto.Signer) *Signer {
	t.Helper()
	s, err := NewNodeSigner(testTD, key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
