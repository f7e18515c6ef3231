package pki

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	zx509 "github.com/zmap/zcrypto/x509"
	"github.com/zmap/zlint/v3"
	"github.com/zmap/zlint/v3/lint"
)

// TestZlintRFC5280 runs zlint's RFC 5280 lints over every kind of
// certificate berth makes. The CA/Browser Forum lints are left out: they
// are meant for the Web PKI, and berth's is private.
func TestZlintRFC5280(t *testing.T) {
	registry, err := lint.GlobalRegistry().Filter(lint.FilterOptions{IncludeSources: lint.SourceList{lint.RFC5280}})
	if err != nil {
		t.Fatal(err)
	}
	if len(registry.Names()) < 50 {
		t.Fatalf("only %d RFC 5280 lints registered", len(registry.Names()))
	}

	l := initPKI(t, InitConfig{SANs: []string{"ca.fleet.example", "192.0.2.10", "2001:db8::1"}})
	s := newSigner(t, l, nil)
	ders := map[string][]byte{
		"root":         l.Root.Raw,
		"intermediate": l.Intermediate.Raw,
		"admin":        readChain(t, l.AdminCertPath())[0].Raw,
	}
	for _, svc := range ServiceNames() {
		ders["service "+svc] = readChain(t, l.ServiceCertPath(svc))[0].Raw
	}
	ders["listener of several services"] = listenerCert(t, l).Leaf.Raw
	rot, err := RotateIntermediate(context.Background(), l.Dir, l.RootKeyPath(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ders["rotated intermediate"] = rot.New.Raw
	nodes := []struct{ name, host string }{
		{"node", "node-01.rack1.example.com"},
		{"node, single-label hostname", "node-01"},
		{"node, hostname too long for a CN", strings.Repeat("a", 60) + "." + strings.Repeat("b", 60) + ".example"},
	}
	for _, n := range nodes {
		got, err := s.Sign(context.Background(), SignRequest{NodeID: "n1", Hostname: n.host, CSR: csrFor(t, p256(t), nil)})
		if err != nil {
			t.Fatal(err)
		}
		ders[n.name] = got.Chain[0]
	}
	got, err := s.Sign(context.Background(), SignRequest{NodeID: "n2", Hostname: "node-02", CSR: csrFor(t, keys()["rsa2048"], nil)})
	if err != nil {
		t.Fatal(err)
	}
	ders["node, RSA key"] = got.Chain[0]

	for name, der := range ders {
		t.Run(name, func(t *testing.T) {
			failed, warned := lintRFC5280(t, registry, der)
			if len(warned) > 0 {
				t.Logf("warnings: %s", strings.Join(warned, ", "))
			}
			if len(failed) > 0 {
				t.Errorf("%d RFC 5280 lints fail:\n  %s", len(failed), strings.Join(failed, "\n  "))
			}
		})
	}

	// A control: a leaf claiming certSign and a common name over RFC 5280's
	// 64 characters must be caught, or the lints above ran vacuously.
	t.Run("control", func(t *testing.T) {
		key := p256(t)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: strings.Repeat("a", 65)},
			NotBefore: testNow, NotAfter: testNow.Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, l.Intermediate, key.Public(), s.key)
		if err != nil {
			t.Fatal(err)
		}
		failed, _ := lintRFC5280(t, registry, der)
		for _, want := range []string{"e_ext_key_usage_cert_sign_without_ca", "e_subject_common_name_max_length"} {
			if !slices.ContainsFunc(failed, func(f string) bool { return strings.HasPrefix(f, want+" ") }) {
				t.Errorf("%s not reported; failures: %v", want, failed)
			}
		}
	})
}

// lintRFC5280 returns the failing (error or fatal) and warning lints, by name.
func lintRFC5280(t *testing.T, registry lint.Registry, der []byte) (failed, warned []string) {
	t.Helper()
	c, err := zx509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("zcrypto cannot parse the certificate: %v", err)
	}
	for name, r := range zlint.LintCertificateEx(c, registry).Results {
		switch r.Status {
		case lint.Error, lint.Fatal:
			failed = append(failed, name+" ("+r.Status.String()+": "+r.Details+")")
		case lint.Warn:
			warned = append(warned, name)
		}
	}
	sort.Strings(failed)
	sort.Strings(warned)
	return failed, warned
}
