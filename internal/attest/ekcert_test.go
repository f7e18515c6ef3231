package attest_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"math/big"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/attest"
)

type ca struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newCA(t *testing.T, name string, parent *ca) ca {
	t.Helper()
	k := newECDSA(t, elliptic.P256())
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	issuer, signer := tmpl, k
	if parent != nil {
		issuer, signer = parent.cert, parent.key
	}
	return ca{cert: mustCert(t, tmpl, issuer, &k.PublicKey, signer), key: k}
}

func mustCert(t *testing.T, tmpl, issuer *x509.Certificate, pub any, signer *ecdsa.PrivateKey) *x509.Certificate {
	t.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, issuer, pub, signer)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// tpmSAN is the critical subjectAltName an EK certificate names its TPM
// with: one directoryName of TCG attributes.
func tpmSAN(t *testing.T) pkix.Extension {
	t.Helper()
	name, err := asn1.Marshal(pkix.RDNSequence{{
		{Type: asn1.ObjectIdentifier{2, 23, 133, 2, 1}, Value: "id:414D4400"},
		{Type: asn1.ObjectIdentifier{2, 23, 133, 2, 2}, Value: "AMD fTPM"},
		{Type: asn1.ObjectIdentifier{2, 23, 133, 2, 3}, Value: "id:00030005"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	san, err := asn1.Marshal([]asn1.RawValue{{Class: asn1.ClassContextSpecific, Tag: 4, IsCompound: true, Bytes: name}})
	if err != nil {
		t.Fatal(err)
	}
	return pkix.Extension{Id: asn1.ObjectIdentifier{2, 5, 29, 17}, Critical: true, Value: san}
}

func ekCert(t *testing.T, issuer ca, pub any, extra ...pkix.Extension) *x509.Certificate {
	t.Helper()
	return mustCert(t, &x509.Certificate{
		SerialNumber:    big.NewInt(2),
		NotBefore:       time.Now().Add(-time.Hour),
		NotAfter:        time.Now().Add(time.Hour),
		KeyUsage:        x509.KeyUsageKeyEncipherment,
		ExtraExtensions: append([]pkix.Extension{tpmSAN(t)}, extra...),
		UnknownExtKeyUsage: []asn1.ObjectIdentifier{
			{2, 23, 133, 8, 1}, // tcg-kp-EKCertificate
		},
	}, issuer.cert, pub, issuer.key)
}

func pemOf(certs ...*x509.Certificate) []byte {
	var b []byte
	for _, c := range certs {
		b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return b
}

func TestEKCertChain(t *testing.T) {
	root := newCA(t, "Vendor Root", nil)
	issuing := newCA(t, "Vendor EK Issuing CA", &root)
	other := newCA(t, "Other Root", nil)
	ekKey := newECDSA(t, elliptic.P256())
	ek, err := attest.ParseEK(marshal(eccEKArea(&ekKey.PublicKey)))
	if err != nil {
		t.Fatal(err)
	}
	cert := ekCert(t, issuing, &ekKey.PublicKey)
	roots, err := attest.ParseEKRoots(pemOf(root.cert, issuing.cert))
	if err != nil {
		t.Fatal(err)
	}
	if err := roots.Verify(cert, time.Now()); err != nil {
		t.Fatalf("verify an EK certificate from the manufacturer: %v", err)
	}
	if err := ek.CheckCert(cert); err != nil {
		t.Fatalf("the certificate is for the EK: %v", err)
	}
	info, err := attest.ReadTPMInfo(cert)
	if err != nil || info != (attest.TPMInfo{Manufacturer: "id:414D4400", Model: "AMD fTPM", Version: "id:00030005"}) {
		t.Fatalf("TPM info = %+v, %v", info, err)
	}
	// The leniency is for the SAN alone: Go's verifier refuses the cert.
	if _, err := cert.Verify(x509.VerifyOptions{Roots: poolOf(root.cert), Intermediates: poolOf(issuing.cert), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err == nil {
		t.Fatal("Go verified an EK certificate with a critical directoryName SAN; the leniency is needless")
	}

	onlyRoot, err := attest.ParseEKRoots(pemOf(root.cert))
	if err != nil {
		t.Fatal(err)
	}
	otherRoots, err := attest.ParseEKRoots(pemOf(other.cert))
	if err != nil {
		t.Fatal(err)
	}
	unknownCritical := ekCert(t, issuing, &ekKey.PublicKey, pkix.Extension{Id: asn1.ObjectIdentifier{1, 2, 3, 4}, Critical: true, Value: []byte{5, 0}})
	// A certificate naming the manufacturer as issuer, signed by someone else.
	impostor := *issuing.cert
	impostor.PublicKey = &ekKey.PublicKey
	forged := ekCert(t, ca{cert: &impostor, key: ekKey}, &ekKey.PublicKey)
	for _, c := range []struct {
		name  string
		roots *attest.EKRoots
		cert  *x509.Certificate
		now   time.Time
	}{
		{"another manufacturer", otherRoots, cert, time.Now()},
		{"the intermediate missing", onlyRoot, cert, time.Now()},
		{"expired", roots, cert, time.Now().Add(2 * time.Hour)},
		{"another unknown critical extension", roots, unknownCritical, time.Now()},
		{"no CAs configured", nil, cert, time.Now()},
		{"issuer's name, another key's signature", roots, forged, time.Now()},
	} {
		t.Run(c.name, func(t *testing.T) {
			if err := c.roots.Verify(c.cert, c.now); !errors.Is(err, attest.ErrUntrustedEK) {
				t.Fatalf("Verify = %v, want ErrUntrustedEK", err)
			}
		})
	}
	if err := ek.CheckCert(ekCert(t, issuing, &newECDSA(t, elliptic.P256()).PublicKey)); !errors.Is(err, attest.ErrKeyMismatch) {
		t.Fatalf("a certificate for another key = %v, want ErrKeyMismatch", err)
	}
}

func poolOf(certs ...*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c)
	}
	return p
}

func TestParseEKCert(t *testing.T) {
	root := newCA(t, "Vendor Root", nil)
	cert := ekCert(t, root, &newECDSA(t, elliptic.P256()).PublicKey)
	if _, err := attest.ParseEKCert(cert.Raw); err != nil {
		t.Fatalf("parse: %v", err)
	}
	// NV indices are often larger than the certificate and zero-filled.
	padded := append(bytes.Clone(cert.Raw), make([]byte, 300)...)
	if c, err := attest.ParseEKCert(padded); err != nil || !bytes.Equal(c.Raw, cert.Raw) {
		t.Fatalf("parse a zero-padded certificate: %v", err)
	}
	for _, c := range []struct {
		name string
		der  []byte
	}{
		{"empty", nil},
		{"garbage", []byte("-----BEGIN CERTIFICATE-----")},
		{"truncated", cert.Raw[:len(cert.Raw)-10]},
		{"trailing data", append(bytes.Clone(cert.Raw), 1, 2, 3)},
		{"huge", make([]byte, 1<<20)},
		{"a DER SEQUENCE that is not a certificate", []byte{0x30, 0x03, 0x02, 0x01, 0x01}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if _, err := attest.ParseEKCert(c.der); !errors.Is(err, attest.ErrMalformed) {
				t.Fatalf("ParseEKCert = %v, want ErrMalformed", err)
			}
		})
	}
}

func TestParseEKRoots(t *testing.T) {
	root := newCA(t, "Vendor Root", nil)
	issuing := newCA(t, "Vendor EK Issuing CA", &root)
	leaf := ekCert(t, issuing, &newECDSA(t, elliptic.P256()).PublicKey)
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: []byte{1}})
	for _, c := range []struct {
		name string
		pem  []byte
	}{
		{"empty", nil},
		{"not PEM", []byte("hello")},
		{"only an intermediate", pemOf(issuing.cert)},
		{"a leaf", pemOf(root.cert, leaf)},
		{"a private key", append(pemOf(root.cert), keyPEM...)},
		{"garbage after the certificates", append(pemOf(root.cert), "trailing"...)},
		{"a broken certificate", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{0x30, 0}})},
	} {
		t.Run(c.name, func(t *testing.T) {
			if _, err := attest.ParseEKRoots(c.pem); !errors.Is(err, attest.ErrMalformed) {
				t.Fatalf("ParseEKRoots = %v, want ErrMalformed", err)
			}
		})
	}
}
