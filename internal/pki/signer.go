package pki

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/smallstep/certificates/policy"
	"go.step.sm/crypto/keyutil"
	"go.step.sm/crypto/x509util"

	"github.com/berth-dev/berth/internal/clock"
	"github.com/berth-dev/berth/internal/ident"
	"github.com/berth-dev/berth/internal/mtls"
)

// DefaultNodeLifetime is the lifetime of node certificates when SignerConfig
// does not set one. Agents renew at two thirds of it.
const DefaultNodeLifetime = 30 * 24 * time.Hour

// Why Signer does not run smallstep's embedded authority (authority.NewEmbedded
// with a JWK provisioner): the authority could issue these certificates with
// the names carried in a one-time token, but its JWK provisioner refuses any
// CSR whose CN or SANs differ from the token's instead of ignoring them,
// whereas berth takes the names from the registration service and uses
// nothing of the CSR but its public key. Every certificate would also cost a
// JWT sign, a JWT verify and a token-reuse check. Signer therefore builds
// each certificate itself, the very certificate berth's X.509 JSON leaf
// template (leafTemplate, which berthd init renders for the service
// certificates) makes of the node's names (TestNodeCertificateIsTheLeafTemplates
// holds them byte for byte alike), checks it with smallstep's X.509 name
// policy engine (the one the authority uses), and signs it with the
// intermediate key via x509util.CreateCertificate. Rendering the template
// for every node (text/template, then JSON both ways) cost a twelfth of a
// signature's CPU and decided nothing: every field it fills is fixed here.

// SignerConfig configures a Signer.
type SignerConfig struct {
	// Intermediate and Key sign node certificates.
	Intermediate *x509.Certificate
	Key          crypto.Signer
	// Root is the root Intermediate chains to.
	Root *x509.Certificate
	// TrustDomain defaults to mtls.DefaultTrustDomain.
	TrustDomain string
	// Lifetime of node certificates; defaults to DefaultNodeLifetime.
	Lifetime time.Duration
	// AllowedHostDomains, when set, restricts hostnames to these DNS domain
	// constraints in smallstep policy syntax ("example.com" for exactly that
	// name, "*.example.com" for names under it). Empty allows any hostname
	// except localhost.
	AllowedHostDomains []string
	// Clock dates the certificates; the system clock when nil.
	Clock clock.Clock
}

// Signer issues node certificates. It is safe for concurrent use.
type Signer struct {
	inter    *x509.Certificate
	key      crypto.Signer
	root     *x509.Certificate
	td       string
	lifetime time.Duration
	policy   *policy.NamePolicyEngine
	clock    clock.Clock
}

// SignRequest asks for a node certificate. The names come from the caller
// (the registration service); only the public key is taken from CSR.
type SignRequest struct {
	NodeID   string
	Hostname string
	// CSR is a DER PKCS#10 request; its signature proves possession of the key.
	CSR []byte
}

// Signed is an issued node certificate.
type Signed struct {
	// Chain is DER: the leaf, then the intermediate.
	Chain [][]byte
	// Serial is the serial number in lower-case hex, without leading zeros.
	Serial              string
	NotBefore, NotAfter time.Time
	// Leaf is the parsed leaf certificate.
	Leaf *x509.Certificate
}

// NewSigner checks the CA material and returns a Signer.
func NewSigner(c SignerConfig) (*Signer, error) {
	if c.Intermediate == nil || c.Key == nil || c.Root == nil {
		return nil, errors.New("new signer: intermediate certificate, key and root are required")
	}
	if !c.Intermediate.IsCA || c.Intermediate.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, errors.New("new signer: intermediate is not a CA certificate")
	}
	if err := keyutil.VerifyPair(c.Intermediate.PublicKey, c.Key); err != nil {
		return nil, fmt.Errorf("new signer: key does not match the intermediate: %w", err)
	}
	if err := c.Intermediate.CheckSignatureFrom(c.Root); err != nil {
		return nil, fmt.Errorf("new signer: intermediate is not signed by the root: %w", err)
	}
	if c.TrustDomain == "" {
		c.TrustDomain = mtls.DefaultTrustDomain
	}
	if err := ValidateTrustDomain(c.TrustDomain); err != nil {
		return nil, fmt.Errorf("new signer: %w", err)
	}
	if c.Lifetime == 0 {
		c.Lifetime = DefaultNodeLifetime
	}
	if c.Lifetime < time.Minute {
		return nil, fmt.Errorf("new signer: lifetime %v is too short", c.Lifetime)
	}
	engine, err := newPolicy(c.TrustDomain, c.AllowedHostDomains)
	if err != nil {
		return nil, fmt.Errorf("new signer: %w", err)
	}
	return &Signer{
		inter: c.Intermediate, key: c.Key, root: c.Root, td: c.TrustDomain,
		lifetime: c.Lifetime, policy: engine, clock: clock.Or(c.Clock),
	}, nil
}

// newPolicy builds the name policy every node certificate must pass: URIs
// only in the trust domain, DNS names only as allowed, no IP addresses or
// e-mail addresses (permitted constraints exist, none for those types), and
// the common name checked like a DNS name.
func newPolicy(td string, hostDomains []string) (*policy.NamePolicyEngine, error) {
	opts := []policy.NamePolicyOption{
		policy.WithSubjectCommonNameVerification(),
		policy.WithPermittedURIDomains(td),
		policy.WithExcludedDNSDomains("localhost", "*.localhost"),
	}
	if len(hostDomains) > 0 {
		opts = append(opts, policy.WithPermittedDNSDomains(hostDomains...))
	}
	e, err := policy.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("name policy: %w", err)
	}
	return e, nil
}

// TrustDomain is the trust domain of the certificates the Signer issues.
func (s *Signer) TrustDomain() string { return s.td }

// Intermediate is the certificate that signs node certificates, the second
// link of every chain Sign returns.
func (s *Signer) Intermediate() *x509.Certificate { return s.inter }

// Root is the root the issued chains lead to.
func (s *Signer) Root() *x509.Certificate { return s.root }

// Sign issues a certificate for r.NodeID with the URI SAN
// spiffe://<trust-domain>/node/<id>, the hostname as common name and DNS
// SAN, key usage digitalSignature and extended key usage clientAuth. It
// returns an error wrapping ErrBadCSR or ErrPolicy for bad input.
func (s *Signer) Sign(ctx context.Context, r SignRequest) (Signed, error) {
	if err := ctx.Err(); err != nil {
		return Signed{}, err
	}
	if err := ident.NodeID(r.NodeID); err != nil {
		return Signed{}, fmt.Errorf("%w: %w", ErrPolicy, err)
	}
	host, err := ident.Hostname(r.Hostname)
	if err != nil {
		return Signed{}, fmt.Errorf("%w: %w", ErrPolicy, err)
	}
	csr, err := parseCSR(r.CSR)
	if err != nil {
		return Signed{}, err
	}
	tmpl, err := s.template(r.NodeID, host, csr.PublicKey)
	if err != nil {
		return Signed{}, err
	}
	if err := s.policy.IsX509CertificateAllowed(tmpl); err != nil {
		return Signed{}, fmt.Errorf("%w: %w", ErrPolicy, err)
	}
	leaf, err := x509util.CreateCertificate(tmpl, s.inter, csr.PublicKey, s.key)
	if err != nil {
		return Signed{}, fmt.Errorf("sign node certificate: %w", err)
	}
	return Signed{
		Chain:     [][]byte{leaf.Raw, s.inter.Raw},
		Serial:    leaf.SerialNumber.Text(16),
		NotBefore: leaf.NotBefore,
		NotAfter:  leaf.NotAfter,
		Leaf:      leaf,
	}, nil
}

// parseCSR parses a DER request, checks its key against policy and then its
// signature (the key check first, so odd keys cost no verification).
func parseCSR(der []byte) (*x509.CertificateRequest, error) {
	if len(der) == 0 || len(der) > maxCSRSize {
		return nil, fmt.Errorf("%w: must be 1 to %d bytes of DER", ErrBadCSR, maxCSRSize)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadCSR, err)
	}
	if err := checkPublicKey(csr.PublicKey); err != nil {
		return nil, err
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("%w: signature does not verify: %w", ErrBadCSR, err)
	}
	return csr, nil
}

// template is the node certificate for pub: what leafTemplate renders for
// the host as common name (if it fits) and DNS SAN, the node's URI SAN, key
// usage digitalSignature and extended key usage clientAuth.
func (s *Signer) template(nodeID, host string, pub crypto.PublicKey) (*x509.Certificate, error) {
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	t := &x509.Certificate{
		SerialNumber: serial,
		PublicKey:    pub,
		DNSNames:     []string{host},
		URIs:         []*url.URL{mtls.NodeURI(s.td, nodeID)},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	// RFC 5280 caps the common name at 64 characters; a longer hostname is
	// still in the DNS SAN, which is what TLS checks.
	if len(host) <= maxCommonLen {
		t.Subject.CommonName = host
	}
	now := s.clock.Now()
	setValidity(t, now, s.lifetime)
	// Node certificates are backdated further than service ones: a
	// stateless node may boot with its clock minutes behind. Renewal is
	// counted from the real issuance (mtls.RenewalTime).
	t.NotBefore = now.Add(-mtls.NodeBackdate).UTC().Truncate(time.Second)
	if t.NotAfter.After(s.inter.NotAfter) {
		t.NotAfter = s.inter.NotAfter
	}
	return t, nil
}
