package pki

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.step.sm/crypto/x509util"

	"github.com/berth-dev/berth/internal/mtls"
)

// keys are made once: RSA generation is slow under -race.
var keys = sync.OnceValue(func() map[string]crypto.Signer {
	m := map[string]crypto.Signer{}
	must := func(k crypto.Signer, err error) crypto.Signer {
		if err != nil {
			panic(err)
		}
		return k
	}
	m["p256"] = must(ecdsa.GenerateKey(elliptic.P256(), rand.Reader))
	m["p384"] = must(ecdsa.GenerateKey(elliptic.P384(), rand.Reader))
	m["p224"] = must(ecdsa.GenerateKey(elliptic.P224(), rand.Reader))
	m["p521"] = must(ecdsa.GenerateKey(elliptic.P521(), rand.Reader))
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	m["ed25519"] = must(ed, err)
	m["rsa1024"] = must(rsa.GenerateKey(rand.Reader, 1024))
	m["rsa2048"] = must(rsa.GenerateKey(rand.Reader, 2048))
	return m
})

func TestSign(t *testing.T) {
	l := initPKI(t, InitConfig{})
	s := newSigner(t, l, func(c *SignerConfig) { c.Lifetime = 48 * time.Hour })
	k := keys()
	other, _ := url.Parse("spiffe://" + mtls.DefaultTrustDomain + "/node/other")
	admin := mtls.AdminURI(mtls.DefaultTrustDomain, "admin")

	badSig := csrFor(t, k["p256"], nil)
	badSig[len(badSig)-1] ^= 0xff
	otherKeyCSR := swapKey(t, csrFor(t, k["p256"], nil), p256(t))

	tests := []struct {
		name     string
		nodeID   string
		hostname string
		csr      []byte
		wantErr  error
		wantHost string
	}{
		{name: "P-256", nodeID: "n1", hostname: "node-01.example.com", csr: csrFor(t, k["p256"], nil)},
		{name: "P-384", nodeID: "n1", hostname: "node-01", csr: csrFor(t, k["p384"], nil)},
		{name: "Ed25519", nodeID: "n1", hostname: "node-01", csr: csrFor(t, k["ed25519"], nil)},
		{name: "RSA-2048", nodeID: "n1", hostname: "node-01", csr: csrFor(t, k["rsa2048"], nil)},
		{name: "hostname is normalised", nodeID: "0abc-def", hostname: "Node-01.Example.COM.", csr: csrFor(t, k["p256"], nil), wantHost: "node-01.example.com"},
		{name: "63-character node ID", nodeID: "a" + strings.Repeat("b-", 31), hostname: "h", csr: csrFor(t, k["p256"], nil)},
		{
			name: "CSR names are ignored", nodeID: "n1", hostname: "node-01",
			csr: csrFor(t, k["p256"], &x509.CertificateRequest{
				Subject:        pkix.Name{CommonName: "other", Organization: []string{"evil"}},
				DNSNames:       []string{"evil.example.com", "registration"},
				IPAddresses:    []net.IP{net.ParseIP("10.1.2.3")},
				EmailAddresses: []string{"root@example.com"},
				URIs:           []*url.URL{other, admin},
			}),
		},

		{name: "garbage CSR", nodeID: "n1", hostname: "h", csr: []byte("not a csr"), wantErr: ErrBadCSR},
		{name: "empty CSR", nodeID: "n1", hostname: "h", wantErr: ErrBadCSR},
		{name: "oversized CSR", nodeID: "n1", hostname: "h", csr: make([]byte, maxCSRSize+1), wantErr: ErrBadCSR},
		{name: "PEM instead of DER", nodeID: "n1", hostname: "h", csr: []byte("-----BEGIN CERTIFICATE REQUEST-----\n"), wantErr: ErrBadCSR},
		{name: "corrupted signature", nodeID: "n1", hostname: "h", csr: badSig, wantErr: ErrBadCSR},
		{name: "signed by another key", nodeID: "n1", hostname: "h", csr: otherKeyCSR, wantErr: ErrBadCSR},
		{name: "RSA-1024", nodeID: "n1", hostname: "h", csr: csrFor(t, k["rsa1024"], nil), wantErr: ErrPolicy},
		{name: "P-224", nodeID: "n1", hostname: "h", csr: csrFor(t, k["p224"], nil), wantErr: ErrPolicy},
		{name: "P-521", nodeID: "n1", hostname: "h", csr: csrFor(t, k["p521"], nil), wantErr: ErrPolicy},
		{name: "empty node ID", hostname: "h", csr: csrFor(t, k["p256"], nil), wantErr: ErrPolicy},
		{name: "upper-case node ID", nodeID: "Node1", hostname: "h", csr: csrFor(t, k["p256"], nil), wantErr: ErrPolicy},
		{name: "node ID starting with -", nodeID: "-n1", hostname: "h", csr: csrFor(t, k["p256"], nil), wantErr: ErrPolicy},
		{name: "node ID with a slash", nodeID: "n1/../admin", hostname: "h", csr: csrFor(t, k["p256"], nil), wantErr: ErrPolicy},
		{name: "node ID with underscore", nodeID: "n_1", hostname: "h", csr: csrFor(t, k["p256"], nil), wantErr: ErrPolicy},
		{name: "64-character node ID", nodeID: strings.Repeat("a", 64), hostname: "h", csr: csrFor(t, k["p256"], nil), wantErr: ErrPolicy},
		{name: "empty hostname", nodeID: "n1", csr: csrFor(t, k["p256"], nil), wantErr: ErrPolicy},
		{name: "hostname with underscore", nodeID: "n1", hostname: "bad_host", csr: csrFor(t, k["p256"], nil), wantErr: ErrPolicy},
		{name: "hostname with empty label", nodeID: "n1", hostname: "a..example", csr: csrFor(t, k["p256"], nil), wantErr: ErrPolicy},
		{name: "hostname label starting with -", nodeID: "n1", hostname: "-a.example", csr: csrFor(t, k["p256"], nil), wantErr: ErrPolicy},
		{name: "wildcard hostname", nodeID: "n1", hostname: "*.example.com", csr: csrFor(t, k["p256"], nil), wantErr: ErrPolicy},
		{name: "IP as hostname", nodeID: "n1", hostname: "10.0.0.1", csr: csrFor(t, k["p256"], nil), wantErr: ErrPolicy},
		{name: "hostname with space", nodeID: "n1", hostname: "a b", csr: csrFor(t, k["p256"], nil), wantErr: ErrPolicy},
		{name: "64-character label", nodeID: "n1", hostname: strings.Repeat("a", 64) + ".example", csr: csrFor(t, k["p256"], nil), wantErr: ErrPolicy},
		{name: "localhost", nodeID: "n1", hostname: "localhost", csr: csrFor(t, k["p256"], nil), wantErr: ErrPolicy},
		{name: "under localhost", nodeID: "n1", hostname: "a.localhost", csr: csrFor(t, k["p256"], nil), wantErr: ErrPolicy},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.Sign(context.Background(), SignRequest{NodeID: tt.nodeID, Hostname: tt.hostname, CSR: tt.csr})
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Sign error = %v, want %v", err, tt.wantErr)
				}
				t.Logf("refused: %v", err)
				return
			}
			if err != nil {
				t.Fatalf("Sign: %v", err)
			}
			host := tt.hostname
			if tt.wantHost != "" {
				host = tt.wantHost
			}
			checkNodeCert(t, l, got, tt.nodeID, host, 48*time.Hour)
		})
	}
}

// swapKey returns der with its public key replaced by that of key: a CSR
// that parses but whose signature was made by another key.
func swapKey(t *testing.T, der []byte, key crypto.Signer) []byte {
	t.Helper()
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		t.Fatal(err)
	}
	spki, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	if len(spki) != len(csr.RawSubjectPublicKeyInfo) {
		t.Fatal("keys of different sizes")
	}
	out := bytes.Replace(der, csr.RawSubjectPublicKeyInfo, spki, 1)
	if _, err := x509.ParseCertificateRequest(out); err != nil {
		t.Fatal(err)
	}
	return out
}

// checkNodeCert checks everything berth promises about a node certificate.
func checkNodeCert(t *testing.T, l *Layout, got Signed, nodeID, host string, life time.Duration) {
	t.Helper()
	leaf := got.Leaf
	if len(got.Chain) != 2 || string(got.Chain[0]) != string(leaf.Raw) || string(got.Chain[1]) != string(l.Intermediate.Raw) {
		t.Fatal("chain is not leaf, intermediate")
	}
	parsed, err := x509.ParseCertificate(got.Chain[0])
	if err != nil {
		t.Fatal(err)
	}
	if got.Serial != parsed.SerialNumber.Text(16) || got.Serial != strings.ToLower(got.Serial) {
		t.Errorf("Serial = %q, certificate has %x", got.Serial, parsed.SerialNumber)
	}
	if parsed.SerialNumber.BitLen() < 100 {
		t.Errorf("serial %x is short", parsed.SerialNumber)
	}
	wantURI := mtls.NodeURI(l.TrustDomain, nodeID).String()
	if len(parsed.URIs) != 1 || parsed.URIs[0].String() != wantURI {
		t.Errorf("URI SANs = %v, want [%s]", parsed.URIs, wantURI)
	}
	if diff := cmp.Diff([]string{host}, parsed.DNSNames); diff != "" {
		t.Errorf("DNS SANs (-want +got):\n%s", diff)
	}
	if len(parsed.IPAddresses)+len(parsed.EmailAddresses) != 0 {
		t.Errorf("unexpected SANs: %v %v", parsed.IPAddresses, parsed.EmailAddresses)
	}
	wantCN := host
	if len(host) > maxCommonLen {
		wantCN = ""
	}
	if parsed.Subject.String() != "" && parsed.Subject.String() != "CN="+wantCN || parsed.Subject.CommonName != wantCN {
		t.Errorf("subject = %q, want CN=%s only", parsed.Subject, wantCN)
	}
	if parsed.IsCA || parsed.KeyUsage != x509.KeyUsageDigitalSignature {
		t.Errorf("IsCA=%v KeyUsage=%v", parsed.IsCA, parsed.KeyUsage)
	}
	if diff := cmp.Diff([]x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, parsed.ExtKeyUsage); diff != "" || len(parsed.UnknownExtKeyUsage) != 0 {
		t.Errorf("extended key usage (-want +got):\n%s", diff)
	}
	if !got.NotBefore.Equal(parsed.NotBefore) || !got.NotAfter.Equal(parsed.NotAfter) {
		t.Error("Signed validity differs from the certificate's")
	}
	// Node certificates are backdated further than service ones, for
	// nodes that boot with their clock behind.
	if want := testNow.Add(-mtls.NodeBackdate); !parsed.NotBefore.Equal(want) {
		t.Errorf("NotBefore = %v, want %v", parsed.NotBefore, want)
	}
	if want := testNow.Add(life); !parsed.NotAfter.Equal(want) {
		t.Errorf("NotAfter = %v, want %v", parsed.NotAfter, want)
	}
	_, err = parsed.Verify(x509.VerifyOptions{
		Roots: l.RootPool(), Intermediates: pool(l.Intermediate), CurrentTime: testNow,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		t.Errorf("chain does not verify: %v", err)
	}
	id, err := mtls.IdentityOf(l.TrustDomain, parsed)
	if err != nil || id.Kind != mtls.KindNode || id.Name != nodeID {
		t.Errorf("identity = %v, %v", id, err)
	}
}

func TestSignLongHostnameHasNoCommonName(t *testing.T) {
	l := initPKI(t, InitConfig{})
	s := newSigner(t, l, nil)
	host := strings.Repeat("a", 60) + "." + strings.Repeat("b", 60) + ".example"
	got, err := s.Sign(context.Background(), SignRequest{NodeID: "n1", Hostname: host, CSR: csrFor(t, p256(t), nil)})
	if err != nil {
		t.Fatal(err)
	}
	checkNodeCert(t, l, got, "n1", host, DefaultNodeLifetime)
}

func TestSignAllowedHostDomains(t *testing.T) {
	l := initPKI(t, InitConfig{})
	s := newSigner(t, l, func(c *SignerConfig) { c.AllowedHostDomains = []string{"*.rack.example", "gw.example"} })
	csr := csrFor(t, p256(t), nil)
	tests := []struct {
		hostname string
		wantErr  error
	}{
		{"n1.rack.example", nil},
		{"gw.example", nil},
		{"rack.example", ErrPolicy},
		{"n1.other.example", ErrPolicy},
		{"n1", ErrPolicy},
	}
	for _, tt := range tests {
		t.Run(tt.hostname, func(t *testing.T) {
			_, err := s.Sign(context.Background(), SignRequest{NodeID: "n1", Hostname: tt.hostname, CSR: csr})
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("Sign(%q) error = %v, want %v", tt.hostname, err, tt.wantErr)
			}
		})
	}
}

func TestSignCapsAtIntermediateExpiry(t *testing.T) {
	l := initPKI(t, InitConfig{})
	now := l.Intermediate.NotAfter.Add(-24 * time.Hour)
	s := newSigner(t, l, func(c *SignerConfig) { c.Clock = fixedClock(now) })
	got, err := s.Sign(context.Background(), SignRequest{NodeID: "n1", Hostname: "h", CSR: csrFor(t, p256(t), nil)})
	if err != nil {
		t.Fatal(err)
	}
	if !got.NotAfter.Equal(l.Intermediate.NotAfter) {
		t.Errorf("NotAfter = %v, want the intermediate's %v", got.NotAfter, l.Intermediate.NotAfter)
	}
}

func TestSignSerialsAreUnique(t *testing.T) {
	l := initPKI(t, InitConfig{})
	s := newSigner(t, l, nil)
	csr := csrFor(t, p256(t), nil)
	seen := map[string]bool{}
	for range 50 {
		got, err := s.Sign(context.Background(), SignRequest{NodeID: "n1", Hostname: "h", CSR: csr})
		if err != nil {
			t.Fatal(err)
		}
		if seen[got.Serial] {
			t.Fatalf("serial %s issued twice", got.Serial)
		}
		seen[got.Serial] = true
	}
}

func TestSignCanceled(t *testing.T) {
	s := newSigner(t, initPKI(t, InitConfig{}), nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Sign(ctx, SignRequest{NodeID: "n1", Hostname: "h", CSR: csrFor(t, p256(t), nil)}); !errors.Is(err, context.Canceled) {
		t.Errorf("Sign error = %v, want context.Canceled", err)
	}
}

func TestNewSignerRefuses(t *testing.T) {
	l := initPKI(t, InitConfig{})
	other := initPKI(t, InitConfig{})
	otherCfg, err := other.SignerConfig()
	if err != nil {
		t.Fatal(err)
	}
	leaf := readChain(t, l.ServiceCertPath(ServiceCA))[0]
	tests := []struct {
		name string
		edit func(*SignerConfig)
	}{
		{"no key", func(c *SignerConfig) { c.Key = nil }},
		{"no root", func(c *SignerConfig) { c.Root = nil }},
		{"no intermediate", func(c *SignerConfig) { c.Intermediate = nil }},
		{"key of another CA", func(c *SignerConfig) { c.Key = otherCfg.Key }},
		{"root of another CA", func(c *SignerConfig) { c.Root = other.Root }},
		{"leaf as intermediate", func(c *SignerConfig) { c.Intermediate = leaf }},
		{"bad trust domain", func(c *SignerConfig) { c.TrustDomain = "Not A Domain" }},
		{"tiny lifetime", func(c *SignerConfig) { c.Lifetime = time.Second }},
		{"bad host domain", func(c *SignerConfig) { c.AllowedHostDomains = []string{"a..b"} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := l.SignerConfig()
			if err != nil {
				t.Fatal(err)
			}
			tt.edit(&c)
			if _, err := NewSigner(c); err == nil {
				t.Error("NewSigner succeeded")
			}
		})
	}
}

// TestNodeCertificateIsTheLeafTemplates: the node certificate Signer
// builds is, byte for byte, the one berth's X.509 JSON leaf template
// renders for the same names, key, serial and validity, with a host name
// that fits the common name and one that does not.
func TestNodeCertificateIsTheLeafTemplates(t *testing.T) {
	l := initPKI(t, InitConfig{})
	s := newSigner(t, l, nil)
	key := p256(t)
	sign := func(tmpl *x509.Certificate) []byte {
		t.Helper()
		c, err := x509util.CreateCertificate(tmpl, s.inter, key.Public(), s.key)
		if err != nil {
			t.Fatal(err)
		}
		return c.RawTBSCertificate
	}
	for _, host := range []string{"node-0001.rack1.example.com", strings.Repeat("a", 60) + ".rack1.example.com"} {
		got, err := s.template("node-0001", host, key.Public())
		if err != nil {
			t.Fatal(err)
		}
		data := x509util.NewTemplateData()
		if len(host) <= maxCommonLen {
			data.SetCommonName(host)
		}
		data.SetSubjectAlternativeNames(
			x509util.SubjectAlternativeName{Type: x509util.URIType, Value: mtls.NodeURI(s.td, "node-0001").String()},
			x509util.SubjectAlternativeName{Type: x509util.DNSType, Value: host},
		)
		data.Set(extKeyUsageKey, []string{"clientAuth"})
		want, err := fromTemplate(key.Public(), x509util.WithTemplate(leafTemplate, data))
		if err != nil {
			t.Fatal(err)
		}
		want.SerialNumber, want.NotBefore, want.NotAfter = got.SerialNumber, got.NotBefore, got.NotAfter
		if g, w := sign(got), sign(want); !bytes.Equal(g, w) {
			t.Errorf("host %q: the node certificate differs from the leaf template's:\n got %x\nwant %x", host, g, w)
		}
	}
}

func BenchmarkSign(b *testing.B) {
	l := initPKI(b, InitConfig{})
	s := newSigner(b, l, nil)
	req := SignRequest{NodeID: "node-0001", Hostname: "node-0001.rack1.example.com", CSR: csrFor(b, p256(b), nil)}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Sign(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSignParallel(b *testing.B) {
	l := initPKI(b, InitConfig{})
	s := newSigner(b, l, nil)
	req := SignRequest{NodeID: "node-0001", Hostname: "node-0001.rack1.example.com", CSR: csrFor(b, p256(b), nil)}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.Sign(context.Background(), req); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
