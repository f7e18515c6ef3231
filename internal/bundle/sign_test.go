package bundle

import (
	"crypto/ecdh"
	"crypto/hpke"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"strings"
	"testing"
	"time"
)

// rawSigner builds a signer without the constructor's checks, as a forger
// would, to see that the verifier makes them again.
func rawSigner(kind SignerKind, td string, key *Signer, chain ...*x509.Certificate) *Signer {
	s := &Signer{kind: kind, trustDomain: td, key: key.key}
	for _, c := range chain {
		s.chain = append(s.chain, c.Raw)
	}
	return s
}

func TestVerify(t *testing.T) {
	f := newFixture(t, hpke.DHKEM(ecdh.P256()))
	other := newTestPKI(t)
	key := newKeyP256(t)
	keySigner := nodeSigner(t, key) // a bare key to build forged signers from
	leaf := func(p *testPKI, uri string, edit ...func(*x509.Certificate)) *x509.Certificate {
		return p.leaf(t, uri, key, edit...)
	}
	adminURI := "spiffe://" + testTD + "/admin/eve"
	otherTD, err := NewAdminSigner([]*x509.Certificate{leaf(f.pki, "spiffe://other.test/admin/ops"), f.pki.inter}, key)
	if err != nil {
		t.Fatal(err)
	}
	otherRoot, err := NewAdminSigner([]*x509.Certificate{leaf(other, adminURI), other.inter}, key)
	if err != nil {
		t.Fatal(err)
	}
	expired := rawSigner(SignerAdmin, testTD, keySigner, leaf(f.pki, adminURI, func(c *x509.Certificate) {
		c.NotBefore, c.NotAfter = testEpoch, testEpoch.Add(time.Hour)
	}), f.pki.inter)
	mismatched := rawSigner(SignerAdmin, testTD, f.admin, leaf(f.pki, adminURI), f.pki.inter)
	// forged names the intermediate as its issuer but is signed by key.
	fakeInter := *f.pki.inter
	fakeInter.PublicKey = key.Public()
	der, err := x509.CreateCertificate(rand.Reader, leaf(f.pki, adminURI), &fakeInter, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	forged, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		signer  *Signer
		node    string // signed for; default n1
		version int64  // signed for; default 5
		edit    func(v *Verifier)
		want    error
		msg     string
	}{
		{name: "admin", signer: f.admin},
		{name: "node itself", signer: nodeSigner(t, f.nodeKey)},
		{name: "admin, its certificate expired since (node clock not trusted)", signer: expired},
		{name: "admin, with a root in the chain", signer: func() *Signer {
			s, err := NewAdminSigner([]*x509.Certificate{leaf(f.pki, adminURI), f.pki.inter, f.pki.root}, key)
			if err != nil {
				t.Fatal(err)
			}
			return s
		}()},
		{name: "another node", signer: f.admin, node: "n2", want: ErrWrongTarget, msg: "signed for node n2, not n1"},
		{name: "another version", signer: f.admin, version: 4, want: ErrWrongVersion, msg: "signed for version 4, served as version 5"},
		{name: "another trust domain", signer: otherTD, want: ErrWrongTarget, msg: `trust domain "other.test"`},
		{name: "admin outside the trust domain, claiming it", signer: rawSigner(SignerAdmin, testTD, keySigner, leaf(f.pki, "spiffe://other.test/admin/ops"), f.pki.inter), want: ErrSigner, msg: "outside trust domain"},
		{name: "admin of another deployment", signer: otherRoot, want: ErrSigner, msg: "does not chain to the pinned root"},
		{name: "admin forged in the intermediate's name", signer: rawSigner(SignerAdmin, testTD, keySigner, forged, f.pki.inter), want: ErrSigner, msg: "does not chain to the pinned root"},
		{name: "a node certificate", signer: rawSigner(SignerAdmin, testTD, keySigner, leaf(f.pki, "spiffe://"+testTD+"/node/n1"), f.pki.inter), want: ErrSigner, msg: "not an admin identity"},
		{name: "a service certificate", signer: rawSigner(SignerAdmin, testTD, keySigner, leaf(f.pki, "spiffe://"+testTD+"/service/bundles"), f.pki.inter), want: ErrSigner, msg: "not an admin identity"},
		{name: "admin path with more elements", signer: rawSigner(SignerAdmin, testTD, keySigner, leaf(f.pki, adminURI+"/x"), f.pki.inter), want: ErrSigner},
		{name: "the intermediate itself", signer: rawSigner(SignerAdmin, testTD, &Signer{key: f.pki.interKey}, f.pki.inter), want: ErrSigner},
		{name: "admin without its intermediate", signer: rawSigner(SignerAdmin, testTD, keySigner, leaf(f.pki, adminURI)), want: ErrSigner, msg: "does not chain"},
		{name: "admin certificate that may not sign", signer: rawSigner(SignerAdmin, testTD, keySigner, leaf(f.pki, adminURI, func(c *x509.Certificate) {
			c.KeyUsage = x509.KeyUsageKeyEncipherment
		}), f.pki.inter), want: ErrSigner, msg: "digitalSignature"},
		{name: "admin certificate, signed by another key", signer: mismatched, want: ErrSignature},
		{name: "admin, expired at the time checked", signer: expired, edit: func(v *Verifier) { v.Time = testEpoch.Add(2 * time.Hour) }, want: ErrSigner},
		{name: "admin, no root pinned", signer: f.admin, edit: func(v *Verifier) { v.Roots = nil }, want: ErrSigner, msg: "no root is pinned"},
		{name: "self-signature by another key", signer: nodeSigner(t, key), want: ErrSignature, msg: "identity key did not make"},
		{name: "self-signature, no node key known", signer: nodeSigner(t, f.nodeKey), edit: func(v *Verifier) { v.NodeKey = nil }, want: ErrSigner},
		{name: "self-signature, node key not P-256", signer: nodeSigner(t, f.nodeKey), edit: func(v *Verifier) { v.NodeKey = f.priv.PublicKey() }, want: ErrSigner},
	}
	// Every case again with the intermediate as the anchor, as a node has
	// it once its own chain verified: the outcome must not change.
	for _, tt := range tests {
		for _, anchored := range []bool{false, true} {
			name := tt.name
			if anchored {
				name += ", from the anchor"
			}
			t.Run(name, func(t *testing.T) {
				verifyCase(t, f, tt.signer, tt.node, tt.version, func(v *Verifier) {
					if anchored {
						v.Anchor = f.pki.inter
					}
					if tt.edit != nil {
						tt.edit(v)
					}
				}, tt.want, tt.msg)
			})
		}
	}
}

// verifyCase seals a bundle for node and version (defaults n1 and 5) with
// signer and opens it as n1's version 5 with the verifier edit makes; want
// is the error expected (nil: success), msg a part of its text.
func verifyCase(t *testing.T, f *fixture, signer *Signer, node string, version int64, edit func(*Verifier), want error, msg string) {
	t.Helper()
	if node == "" {
		node = "n1"
	}
	if version == 0 {
		version = 5
	}
	sealed := f.seal(t, node, version, sampleContents(), signer)
	v := f.verifier("n1", 5)
	edit(&v)
	// Sealed for the node's real ID, so only the signature differs.
	if node != "n1" {
		sealed = f.seal(t, "n1", version, sampleContents(), signer)
		p, _ := Parse(sealed)
		p.Signature.NodeID = node
		sealed = append(p.Sealed, encodeSignature(p.Signature)...)
	}
	got, err := Open(f.priv, sealed, v)
	if want == nil {
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		return
	}
	if !errors.Is(err, want) || got != nil {
		t.Fatalf("Open = %v, %v; want %v", got, err, want)
	}
	if !strings.Contains(err.Error(), msg) {
		t.Errorf("error %q does not say %q", err, msg)
	}
}

// TestSignatureTransplant moves a valid signature block onto another
// sealed part for the same node and version: it must not verify.
func TestSignatureTransplant(t *testing.T) {
	f := newFixture(t, hpke.DHKEM(ecdh.P256()))
	a, err := Parse(f.seal(t, "n1", 2, sampleContents(), f.admin))
	if err != nil {
		t.Fatal(err)
	}
	b, err := Parse(f.seal(t, "n1", 2, Contents{}, f.admin))
	if err != nil {
		t.Fatal(err)
	}
	forged := append(b.Sealed, encodeSignature(a.Signature)...)
	if got, err := f.open("n1", 2, forged); !errors.Is(err, ErrSignature) || got != nil {
		t.Fatalf("Open = %v, %v; want ErrSignature", got, err)
	}
}

func TestSignerConstructors(t *testing.T) {
	f := newFixture(t, hpke.DHKEM(ecdh.P256()))
	key := newKeyP256(t)
	admin := f.pki.leaf(t, "spiffe://"+testTD+"/admin/ops", key)
	tests := []struct {
		name string
		make func() (*Signer, error)
	}{
		{"admin without a certificate", func() (*Signer, error) { return NewAdminSigner(nil, key) }},
		{"admin with another key", func() (*Signer, error) { return NewAdminSigner([]*x509.Certificate{admin}, newKeyP256(t)) }},
		{"a node certificate", func() (*Signer, error) {
			return NewAdminSigner([]*x509.Certificate{f.pki.leaf(t, "spiffe://"+testTD+"/node/n1", key)}, key)
		}},
		{"too long a chain", func() (*Signer, error) {
			return NewAdminSigner([]*x509.Certificate{admin, f.pki.inter, f.pki.inter, f.pki.inter, f.pki.inter}, key)
		}},
		{"node in no trust domain", func() (*Signer, error) { return NewNodeSigner("", key) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if s, err := tt.make(); !errors.Is(err, ErrSigner) && !errors.Is(err, ErrTooLarge) || s != nil {
				t.Fatalf("= %v, %v; want ErrSigner", s, err)
			}
		})
	}
	s, err := NewAdminSigner([]*x509.Certificate{admin, f.pki.inter}, key)
	if err != nil {
		t.Fatal(err)
	}
	if s.TrustDomain() != testTD || s.SignedBy().String() != "spiffe://"+testTD+"/admin/ops" {
		t.Errorf("signer in %q signs as %v", s.TrustDomain(), s.SignedBy())
	}
}

func TestParseSignatureBlock(t *testing.T) {
	f := newFixture(t, hpke.DHKEM(ecdh.P256()))
	p, err := Parse(f.seal(t, "n1", 2, Contents{}, f.admin))
	if err != nil {
		t.Fatal(err)
	}
	good := *p.Signature
	with := func(e func(s *Signature)) []byte {
		s := good
		s.Chain = append([][]byte(nil), good.Chain...)
		e(&s)
		return encodeSignature(&s)
	}
	big := make([]byte, MaxCertSize+1)
	tests := []struct {
		name  string
		block []byte
	}{
		{"empty", nil},
		{"kind 0", with(func(s *Signature) { s.Kind = 0 })},
		{"kind 3", with(func(s *Signature) { s.Kind = 3 })},
		{"other scheme", with(func(s *Signature) { s.Scheme = 0x0804 })},
		{"version 0", with(func(s *Signature) { s.Version = 0 })},
		{"version over 2^63-1", with(func(s *Signature) { s.Version = -1 })},
		{"no trust domain", with(func(s *Signature) { s.TrustDomain = "" })},
		{"no node ID", with(func(s *Signature) { s.NodeID = "" })},
		{"admin without a certificate", with(func(s *Signature) { s.Chain = nil })},
		{"node with a certificate", with(func(s *Signature) { s.Kind = SignerNode })},
		{"five certificates", with(func(s *Signature) { s.Chain = append(s.Chain, s.Chain[0], s.Chain[0], s.Chain[0]) })},
		{"an empty certificate", with(func(s *Signature) { s.Chain = append(s.Chain, nil) })},
		{"a certificate over the limit", with(func(s *Signature) { s.Chain = [][]byte{big} })},
		{"no signature", with(func(s *Signature) { s.Sig = nil })},
		{"signature over 72 bytes", with(func(s *Signature) { s.Sig = make([]byte, 73) })},
		{"cut", with(func(*Signature) {})[:40]},
		{"trailing byte", append(with(func(*Signature) {}), 0)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if s, err := parseSignature(tt.block); !errors.Is(err, ErrFormat) || s != nil {
				t.Fatalf("parseSignature = %+v, %v; want ErrFormat", s, err)
			}
		})
	}
	if _, err := parseSignature(with(func(*Signature) {})); err != nil {
		t.Fatalf("the block re-encoded does not parse: %v", err)
	}
}
