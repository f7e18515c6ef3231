package grpctest

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"testing"

	"github.com/berth-dev/berth/internal/pki"
)

// NodeCert is a node's certificate, issued by the deployment's CA core, and
// its key.
type NodeCert struct {
	ID  string
	Key *ecdsa.PrivateKey
	// TLS is the chain (leaf, intermediate) with the key.
	TLS tls.Certificate
	// Leaf is the parsed leaf; its serial is what the CA's issued log holds.
	Leaf *x509.Certificate
}

// Serial is the certificate's serial as the CA's issued log writes it.
func (n NodeCert) Serial() string { return n.Leaf.SerialNumber.Text(16) }

// NodeCert issues a certificate for node id (its hostname, too) to a new
// P-256 key with Signer, as the CA service does; it is not recorded in any
// issued log.
func (s *Server) NodeCert(t testing.TB, id string) NodeCert {
	t.Helper()
	key := NewKey(t)
	signed, err := s.Signer.Sign(context.Background(), pki.SignRequest{NodeID: id, Hostname: id, CSR: CSR(t, key, nil)})
	if err != nil {
		t.Fatal(err)
	}
	return NodeCert{ID: id, Key: key, TLS: tls.Certificate{Certificate: signed.Chain, PrivateKey: key, Leaf: signed.Leaf}, Leaf: signed.Leaf}
}

// NewKey makes a P-256 key, the kind berth-agent makes.
func NewKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// CSR makes a DER certificate request signed by key; tmpl may ask for any
// names (nil asks for none).
func CSR(t testing.TB, key crypto.Signer, tmpl *x509.CertificateRequest) []byte {
	t.Helper()
	if tmpl == nil {
		tmpl = &x509.CertificateRequest{}
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// Chain parses cert's chain, leaf first.
func Chain(t testing.TB, cert tls.Certificate) []*x509.Certificate {
	t.Helper()
	var chain []*x509.Certificate
	for _, der := range cert.Certificate {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		chain = append(chain, c)
	}
	return chain
}
