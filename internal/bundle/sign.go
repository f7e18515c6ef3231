package bundle

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/berth-dev/berth/internal/mtls"
)

// SignerKind says what signed a bundle.
type SignerKind uint8

// Signer kinds, as the signature block encodes them.
const (
	// SignerAdmin is an admin credential of the trust domain: a certificate
	// chain to the deployment's root with a spiffe://<td>/admin/<name> SAN.
	SignerAdmin SignerKind = 1
	// SignerNode is the node's own identity key, for bundles it writes
	// itself.
	SignerNode SignerKind = 2
)

// Signature schemes, as TLS 1.3 numbers them (RFC 8446 section 4.2.3).
const (
	// SchemeECDSAP256SHA256 is ECDSA over P-256 with SHA-256, the signature
	// ASN.1 DER encoded: the only scheme of format version 2.
	SchemeECDSAP256SHA256 = 0x0403
)

// Limits of the signature block.
const (
	// MaxChainCerts is the most certificates an admin signer's chain holds.
	MaxChainCerts = 4
	// MaxCertSize is the largest certificate of a chain, in bytes.
	MaxCertSize = 8192
	// maxSigSize is the largest DER ECDSA P-256 signature.
	maxSigSize = 72
	// maxNameLen bounds the trust domain and the node ID.
	maxNameLen = 253
)

// sigLabel starts the signed message: it keeps a bundle signature from
// meaning anything else to anyone holding the same key.
const sigLabel = "berth bundle signature v1\x00"

// Signature is the signature block of a sealed bundle, as parsed: nothing
// in it is verified yet.
type Signature struct {
	Kind        SignerKind
	Scheme      uint16
	Version     int64
	TrustDomain string
	NodeID      string
	// Chain is the admin signer's certificate chain, DER, leaf first.
	Chain [][]byte
	// Sig is the ASN.1 DER ECDSA signature.
	Sig []byte
}

// SignedBy is who signed a bundle.
type SignedBy struct {
	Kind SignerKind
	// URI is an admin signer's SPIFFE ID; empty for a node.
	URI string
}

// String is what berthctl shows as signed_by: the admin's SPIFFE ID, or
// "node" for the node's own key.
func (s SignedBy) String() string {
	switch s.Kind {
	case SignerAdmin:
		return s.URI
	case SignerNode:
		return "node"
	}
	return "unknown"
}

// Signer signs bundles: an admin credential or a node's identity key.
type Signer struct {
	kind        SignerKind
	trustDomain string
	key         crypto.Signer
	chain       [][]byte
}

// NewAdminSigner makes a signer of an admin credential: its certificate
// chain (leaf first, intermediates after; a root is left out) and the
// leaf's private key, which must be ECDSA P-256. The trust domain is the
// leaf's: its one URI SAN must be spiffe://<td>/admin/<name>.
func NewAdminSigner(chain []*x509.Certificate, key crypto.Signer) (*Signer, error) {
	if len(chain) == 0 {
		return nil, fmt.Errorf("%w: no certificate", ErrSigner)
	}
	leaf := chain[0]
	td, _, err := adminURI(leaf)
	if err != nil {
		return nil, err
	}
	if !p256(key.Public()) {
		return nil, fmt.Errorf("%w: the key is not ECDSA P-256", ErrSigner)
	}
	if pub, ok := leaf.PublicKey.(*ecdsa.PublicKey); !ok || !pub.Equal(key.Public()) {
		return nil, fmt.Errorf("%w: the key does not belong to the certificate", ErrSigner)
	}
	s := &Signer{kind: SignerAdmin, trustDomain: td, key: key}
	for _, c := range chain {
		// A self-signed root adds nothing: the verifier has it pinned.
		if c != leaf && c.CheckSignatureFrom(c) == nil {
			continue
		}
		if len(c.Raw) > MaxCertSize {
			return nil, fmt.Errorf("%w: a certificate of the chain is larger than %d bytes", ErrTooLarge, MaxCertSize)
		}
		s.chain = append(s.chain, c.Raw)
	}
	if len(s.chain) > MaxChainCerts {
		return nil, fmt.Errorf("%w: chain of %d certificates; the limit is %d", ErrTooLarge, len(s.chain), MaxChainCerts)
	}
	return s, nil
}

// NewNodeSigner makes a signer of a node's identity key, which must be
// ECDSA P-256, in trust domain td.
func NewNodeSigner(td string, key crypto.Signer) (*Signer, error) {
	if td == "" || len(td) > maxNameLen {
		return nil, fmt.Errorf("%w: invalid trust domain", ErrSigner)
	}
	if !p256(key.Public()) {
		return nil, fmt.Errorf("%w: the identity key is not ECDSA P-256", ErrSigner)
	}
	return &Signer{kind: SignerNode, trustDomain: td, key: key}, nil
}

// TrustDomain is the trust domain the signer signs in.
func (s *Signer) TrustDomain() string { return s.trustDomain }

// SignedBy describes the signer as a verifier will.
func (s *Signer) SignedBy() SignedBy {
	if s.kind == SignerAdmin {
		leaf, _ := x509.ParseCertificate(s.chain[0])
		return SignedBy{Kind: SignerAdmin, URI: leaf.URIs[0].String()}
	}
	return SignedBy{Kind: SignerNode}
}

func checkTarget(s *Signer, t Target) error {
	switch {
	case s == nil:
		return fmt.Errorf("%w: no signer", ErrSigner)
	case t.NodeID == "" || len(t.NodeID) > maxNameLen:
		return fmt.Errorf("invalid node ID %q", t.NodeID)
	case t.Version < 1:
		return fmt.Errorf("%w: version %d; versions start at 1", ErrWrongVersion, t.Version)
	}
	return nil
}

// sign returns the signature block of sealed for node and version.
func (s *Signer) sign(node string, version int64, sealed []byte) ([]byte, error) {
	digest := sha256.Sum256(message(s.trustDomain, node, version, sealed))
	sig, err := s.key.Sign(rand.Reader, digest[:], crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	if len(sig) > maxSigSize {
		return nil, fmt.Errorf("sign: the key made a %d-byte signature, not ECDSA P-256", len(sig))
	}
	return encodeSignature(&Signature{Kind: s.kind, Scheme: SchemeECDSAP256SHA256, Version: version,
		TrustDomain: s.trustDomain, NodeID: node, Chain: s.chain, Sig: sig}), nil
}

// Encode writes the signature block s, as Parse would read it.
func (s *Signature) Encode() []byte { return encodeSignature(s) }

// encodeSignature writes a signature block; see the package documentation.
func encodeSignature(s *Signature) []byte {
	b := []byte{byte(s.Kind)}
	b = binary.BigEndian.AppendUint16(b, s.Scheme)
	b = binary.BigEndian.AppendUint64(b, uint64(s.Version))
	b = append(b, byte(len(s.TrustDomain)))
	b = append(b, s.TrustDomain...)
	b = append(b, byte(len(s.NodeID)))
	b = append(b, s.NodeID...)
	b = append(b, byte(len(s.Chain)))
	for _, c := range s.Chain {
		b = binary.BigEndian.AppendUint16(b, uint16(len(c)))
		b = append(b, c...)
	}
	b = append(b, byte(len(s.Sig)))
	return append(b, s.Sig...)
}

// message is what a bundle signature signs; see the package documentation.
func message(td, node string, version int64, sealed []byte) []byte {
	sum := sha256.Sum256(sealed)
	b := make([]byte, 0, len(sigLabel)+2+len(td)+len(node)+8+len(sum))
	b = append(b, sigLabel...)
	b = append(b, byte(len(td)))
	b = append(b, td...)
	b = append(b, byte(len(node)))
	b = append(b, node...)
	b = binary.BigEndian.AppendUint64(b, uint64(version))
	return append(b, sum[:]...)
}

// parseSignature reads a signature block that must fill b exactly.
func parseSignature(b []byte) (*Signature, error) {
	d := &decoder{b: b, what: "signature block"}
	s := &Signature{Kind: SignerKind(d.u8())}
	s.Scheme = uint16(d.u16())
	v := d.u64()
	s.TrustDomain = string(d.take(d.u8()))
	s.NodeID = string(d.take(d.u8()))
	n := d.u8()
	if d.err == nil && n > MaxChainCerts {
		return nil, fmt.Errorf("%w: signature block: %d certificates, the limit is %d", ErrFormat, n, MaxChainCerts)
	}
	for range n {
		c := d.take(d.u16())
		if d.err == nil && (len(c) == 0 || len(c) > MaxCertSize) {
			return nil, fmt.Errorf("%w: signature block: certificate of %d bytes", ErrFormat, len(c))
		}
		s.Chain = append(s.Chain, c)
	}
	s.Sig = d.take(d.u8())
	if d.err != nil {
		return nil, d.err
	}
	switch {
	case len(d.b) != 0:
		return nil, fmt.Errorf("%w: %d bytes after the signature block", ErrFormat, len(d.b))
	case s.Kind != SignerAdmin && s.Kind != SignerNode:
		return nil, fmt.Errorf("%w: signature block: unknown signer kind %d", ErrFormat, s.Kind)
	case s.Scheme != SchemeECDSAP256SHA256:
		return nil, fmt.Errorf("%w: signature block: unknown signature scheme 0x%04x", ErrFormat, s.Scheme)
	case v < 1 || v > 1<<63-1:
		return nil, fmt.Errorf("%w: signature block: version %d out of range", ErrFormat, v)
	case s.TrustDomain == "" || s.NodeID == "":
		return nil, fmt.Errorf("%w: signature block: empty trust domain or node ID", ErrFormat)
	case s.Kind == SignerAdmin && len(s.Chain) == 0:
		return nil, fmt.Errorf("%w: signature block: an admin signature without a certificate", ErrFormat)
	case s.Kind == SignerNode && len(s.Chain) != 0:
		return nil, fmt.Errorf("%w: signature block: a node self-signature with certificates", ErrFormat)
	case len(s.Sig) == 0 || len(s.Sig) > maxSigSize:
		return nil, fmt.Errorf("%w: signature block: signature of %d bytes", ErrFormat, len(s.Sig))
	}
	s.Version = int64(v)
	return s, nil
}

// Verifier is what a bundle's signature must match.
type Verifier struct {
	// TrustDomain and NodeID are the node's. Required.
	TrustDomain string
	NodeID      string
	// Version is the version the bundle was served or stored as; the
	// signature must be for it. Required.
	Version int64
	// Roots are the deployment's pinned roots, which admin signers chain
	// to; nil trusts no admin signer.
	Roots *x509.CertPool
	// Anchor, if set, is an intermediate already verified under Roots that
	// may stand in for its root (mtls.StandIn): an admin signer's chain
	// issued under it is checked from it, one ECDSA verification less,
	// with the same outcome.
	Anchor *x509.Certificate
	// NodeKey is the node's identity public key, which its own bundles are
	// signed with; nil trusts no self-signature.
	NodeKey crypto.PublicKey
	// Time is when an admin signer's chain must be valid. Zero checks it at
	// its own issue time (the latest NotBefore), for nodes whose clock is
	// not to be trusted this early in a boot, and so that a bundle outlives
	// the admin certificate that signed it.
	Time time.Time
}

// Verify checks the signature of a parsed bundle against v and returns
// who signed it. It checks, in order: that the bundle is signed at all
// (ErrUnsigned), the trust domain and node ID (ErrWrongTarget), the version
// (ErrWrongVersion), the signer (ErrSigner), and the signature over the
// sealed part (ErrSignature).
func (p *Parsed) Verify(v Verifier) (SignedBy, error) {
	s := p.Signature
	if s == nil {
		return SignedBy{}, ErrUnsigned
	}
	if s.TrustDomain != v.TrustDomain {
		return SignedBy{}, fmt.Errorf("%w: signed in trust domain %q, not %q", ErrWrongTarget, s.TrustDomain, v.TrustDomain)
	}
	if s.NodeID != v.NodeID {
		return SignedBy{}, fmt.Errorf("%w: signed for node %s, not %s", ErrWrongTarget, s.NodeID, v.NodeID)
	}
	if s.Version != v.Version {
		return SignedBy{}, fmt.Errorf("%w: signed for version %d, served as version %d", ErrWrongVersion, s.Version, v.Version)
	}
	var (
		pub *ecdsa.PublicKey
		by  SignedBy
		err error
	)
	switch s.Kind {
	case SignerAdmin:
		pub, by, err = verifyAdmin(s, v)
	case SignerNode:
		pub, err = verifyNode(v)
		by = SignedBy{Kind: SignerNode}
	}
	if err != nil {
		return SignedBy{}, err
	}
	digest := sha256.Sum256(message(s.TrustDomain, s.NodeID, s.Version, p.Sealed))
	if !ecdsa.VerifyASN1(pub, digest[:], s.Sig) {
		if s.Kind == SignerNode {
			return SignedBy{}, fmt.Errorf("%w: a node self-signature that this node's identity key did not make", ErrSignature)
		}
		return SignedBy{}, fmt.Errorf("%w: signed by %s", ErrSignature, by)
	}
	return by, nil
}

// verifyAdmin checks an admin signer's chain and returns its key.
func verifyAdmin(s *Signature, v Verifier) (*ecdsa.PublicKey, SignedBy, error) {
	if v.Roots == nil {
		return nil, SignedBy{}, fmt.Errorf("%w: signed by an admin certificate, but no root is pinned", ErrSigner)
	}
	certs := make([]*x509.Certificate, len(s.Chain))
	for i, der := range s.Chain {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, SignedBy{}, fmt.Errorf("%w: certificate %d of the signer's chain does not parse", ErrSigner, i)
		}
		certs[i] = c
	}
	leaf := certs[0]
	td, _, err := adminURI(leaf)
	if err != nil {
		return nil, SignedBy{}, err
	}
	by := SignedBy{Kind: SignerAdmin, URI: leaf.URIs[0].String()}
	if td != v.TrustDomain {
		return nil, SignedBy{}, fmt.Errorf("%w: %s is outside trust domain %q", ErrSigner, by.URI, v.TrustDomain)
	}
	pub, ok := leaf.PublicKey.(*ecdsa.PublicKey)
	if !ok || !p256(pub) {
		return nil, SignedBy{}, fmt.Errorf("%w: %s has no ECDSA P-256 key", ErrSigner, by.URI)
	}
	if leaf.KeyUsage != 0 && leaf.KeyUsage&x509.KeyUsageDigitalSignature == 0 {
		return nil, SignedBy{}, fmt.Errorf("%w: %s may not sign (no digitalSignature key usage)", ErrSigner, by.URI)
	}
	inter := x509.NewCertPool()
	at := leaf.NotBefore
	for _, c := range certs[1:] {
		inter.AddCert(c)
		if c.NotBefore.After(at) {
			at = c.NotBefore
		}
	}
	if !v.Time.IsZero() {
		at = v.Time
	} else {
		at = at.Add(time.Second)
	}
	var anchor *x509.Certificate
	if v.Anchor != nil && len(certs) == 2 && certs[1].Equal(v.Anchor) {
		anchor = v.Anchor
	}
	if _, err := mtls.VerifyFrom(leaf, anchor, x509.VerifyOptions{
		Roots: v.Roots, Intermediates: inter, CurrentTime: at,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	}); err != nil {
		return nil, SignedBy{}, fmt.Errorf("%w: %s does not chain to the pinned root: %v", ErrSigner, by.URI, err)
	}
	return pub, by, nil
}

func verifyNode(v Verifier) (*ecdsa.PublicKey, error) {
	pub, ok := v.NodeKey.(*ecdsa.PublicKey)
	if !ok || !p256(pub) {
		return nil, fmt.Errorf("%w: self-signed by a node, but the node's identity key is not ECDSA P-256", ErrSigner)
	}
	return pub, nil
}

// SignedBy describes the signer from the signature block alone, without
// verifying anything: for a store's listing of what it holds. It is
// "unsigned" for format version 1.
func (p *Parsed) SignedBy() string {
	s := p.Signature
	switch {
	case s == nil:
		return "unsigned"
	case s.Kind == SignerNode:
		return SignedBy{Kind: SignerNode}.String()
	}
	leaf, err := x509.ParseCertificate(s.Chain[0])
	if err != nil || len(leaf.URIs) != 1 {
		return "unknown"
	}
	return leaf.URIs[0].String()
}

// adminURI checks that a certificate names exactly one admin identity,
// spiffe://<td>/admin/<name>, and returns td and name.
func adminURI(c *x509.Certificate) (td, name string, err error) {
	if len(c.URIs) != 1 {
		return "", "", fmt.Errorf("%w: the certificate has %d URI SANs; an admin certificate has one", ErrSigner, len(c.URIs))
	}
	u := c.URIs[0]
	rest, ok := strings.CutPrefix(u.Path, "/admin/")
	if u.Scheme != "spiffe" || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" ||
		!ok || rest == "" || strings.Contains(rest, "/") || u.Port() != "" {
		return "", "", fmt.Errorf("%w: %s is not an admin identity (spiffe://<trust domain>/admin/<name>)", ErrSigner, redact(u))
	}
	return u.Host, rest, nil
}

// redact renders a URI for a message without anything but scheme, host
// and path.
func redact(u *url.URL) string {
	return (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}).String()
}

func p256(pub crypto.PublicKey) bool {
	k, ok := pub.(*ecdsa.PublicKey)
	return ok && k.Curve == elliptic.P256()
}
