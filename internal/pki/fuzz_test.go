package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"testing"
)

// FuzzParseCSR feeds arbitrary DER to the CA's request parser: it either
// refuses with ErrBadCSR or ErrPolicy, or returns a request whose signature
// verifies and whose key the policy allows.
func FuzzParseCSR(f *testing.F) {
	for _, curve := range []elliptic.Curve{elliptic.P256(), elliptic.P224()} {
		key, err := ecdsa.GenerateKey(curve, rand.Reader)
		if err != nil {
			f.Fatal(err)
		}
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "n"}}, key)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(der)
		broken := append([]byte(nil), der...)
		broken[len(broken)-1] ^= 1
		f.Add(broken)
	}
	f.Add([]byte{0x30, 0x00})
	f.Fuzz(func(t *testing.T, der []byte) {
		csr, err := parseCSR(der)
		if err != nil {
			if !errors.Is(err, ErrBadCSR) && !errors.Is(err, ErrPolicy) {
				t.Fatalf("parseCSR refused with %v, want ErrBadCSR or ErrPolicy", err)
			}
			return
		}
		if csr.CheckSignature() != nil {
			t.Fatal("accepted a CSR whose signature does not verify")
		}
		if checkPublicKey(csr.PublicKey) != nil {
			t.Fatalf("accepted a %T key the policy refuses", csr.PublicKey)
		}
	})
}
