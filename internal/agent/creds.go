package agent

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/berth-dev/berth/internal/keys"
	"github.com/berth-dev/berth/internal/mtls"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// Credentials is what the registration service told the node about itself.
type Credentials struct {
	NodeID string
	Status berthv1.NodeStatus
	// Chain is the certificate chain, leaf first; empty unless approved.
	Chain []*x509.Certificate
	// Trust is the deployment's root certificates.
	Trust []*x509.Certificate
	// Renewed is true when the call made the CA issue a new certificate.
	Renewed   bool
	Endpoints *berthv1.Endpoints
	// BundleChecked is true when the registration service asked the
	// bundle store on the node's behalf; Bundle is then the node's current
	// sealed bundle, or nil when it has none. When false the agent asks
	// the bundle store (Endpoints.Bundles) itself.
	BundleChecked bool
	Bundle        *berthv1.SealedBundle
	// HeartbeatInterval, when not 0, says the registration service took
	// this boot as the node's first heartbeat: the stream may open at any
	// moment within it. 0: beat at once.
	HeartbeatInterval time.Duration

	// anchor is the intermediate of the node's chain once it verified
	// under the trust bundle, when it may stand in for the root
	// (mtls.StandIn): bundle signers' chains are checked from it.
	anchor *x509.Certificate
}

// Leaf returns the node certificate, or nil.
func (c *Credentials) Leaf() *x509.Certificate {
	if c == nil || len(c.Chain) == 0 {
		return nil
	}
	return c.Chain[0]
}

// parseCredentials checks what the server sent. Every root of the trust
// bundle must be the root pinned by --ca-hash (the root of server, the
// chain the handshake verified against the pin): the node writes the
// trust bundle out for local consumers, dials the other services with it
// and checks bundle signers against it, so a registration service must not
// be able to widen it. An approved node's chain must be for our own
// identity key and must chain to the trust bundle (or, when the server
// sent none, to the pinned root). Validity is checked at the chain's own
// issue time rather than by the node's clock, which is often wrong this
// early in a boot.
func parseCredentials(nc *berthv1.NodeCredentials, identity crypto.PublicKey, server []*x509.Certificate) (*Credentials, error) {
	var pinnedRoot *x509.Certificate
	if len(server) > 0 {
		pinnedRoot = server[len(server)-1]
	}
	if nc == nil {
		return nil, errors.New("server sent no credentials")
	}
	c := &Credentials{
		NodeID:        nc.GetNodeId(),
		Status:        nc.GetStatus(),
		Renewed:       nc.GetRenewed(),
		Endpoints:     nc.GetEndpoints(),
		BundleChecked: nc.GetBundleChecked(),
		Bundle:        nc.GetBundle(),
	}
	if iv := nc.GetHeartbeatInterval(); iv != nil && iv.CheckValid() == nil && iv.AsDuration() > 0 {
		// As for an interval on the stream: a server cannot make the node
		// wait longer than the longest interval.
		c.HeartbeatInterval = min(max(iv.AsDuration(), minInterval), maxInterval)
	}
	for i, der := range nc.GetCertificateChain() {
		cert, err := parseKnown(der, server)
		if err != nil {
			return nil, fmt.Errorf("server sent a bad certificate (chain[%d]): %w", i, err)
		}
		c.Chain = append(c.Chain, cert)
	}
	for i, der := range nc.GetTrustBundle() {
		cert, err := parseKnown(der, server)
		if err != nil {
			return nil, fmt.Errorf("server sent a bad trust bundle (root[%d]): %w", i, err)
		}
		c.Trust = append(c.Trust, cert)
	}
	if err := checkTrustBundle(c.Trust, pinnedRoot); err != nil {
		return nil, err
	}
	if c.Status != berthv1.NodeStatus_NODE_STATUS_APPROVED {
		return c, nil
	}
	if len(c.Chain) == 0 {
		return nil, errors.New("server approved the node but sent no certificate")
	}
	if len(c.Trust) == 0 {
		if pinnedRoot == nil {
			return nil, errors.New("server sent no trust bundle")
		}
		c.Trust = []*x509.Certificate{pinnedRoot}
	}
	leaf := c.Chain[0]
	if !mtls.SameKey(leaf.PublicKey, identity) {
		return nil, errors.New("server sent a certificate for another key")
	}
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	for _, r := range c.Trust {
		roots.AddCert(r)
	}
	at := leaf.NotBefore
	for _, ic := range c.Chain[1:] {
		inter.AddCert(ic)
		if ic.NotBefore.After(at) {
			at = ic.NotBefore
		}
	}
	opts := x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inter,
		CurrentTime:   at.Add(time.Second),
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	}
	a := anchorFor(server, c)
	chain, err := mtls.VerifyFrom(leaf, a, opts)
	if err != nil {
		return nil, fmt.Errorf("server's certificate does not chain to its trust bundle: %w", err)
	}
	// Anchored, the chain ends in a itself; in full, in a root, and its
	// intermediate may become the anchor.
	if len(chain) == 2 && chain[1] == a {
		c.anchor = a
	} else {
		c.anchor = mtls.StandIn(chain)
	}
	return c, nil
}

// parseKnown parses der, or returns the certificate of known with the
// same bytes: the handshake parsed the intermediate and the root already,
// and they come again in the node's chain and trust bundle on every boot.
func parseKnown(der []byte, known []*x509.Certificate) (*x509.Certificate, error) {
	for _, c := range known {
		if bytes.Equal(c.Raw, der) {
			return c, nil
		}
	}
	return x509.ParseCertificate(der)
}

// anchorFor returns the intermediate of server, the chain the handshake
// verified, when the node's own chain is issued under that same
// intermediate and the handshake's root is in the node's trust bundle: the
// node's chain is then checked from it, one ECDSA verification less a
// boot, and decided as the full check would decide it (mtls.StandIn).
// Else nil.
func anchorFor(server []*x509.Certificate, c *Credentials) *x509.Certificate {
	a := mtls.StandIn(server)
	if a == nil || len(c.Chain) != 2 || !c.Chain[1].Equal(a) {
		return nil
	}
	root := server[len(server)-1]
	for _, r := range c.Trust {
		if r.Equal(root) {
			return a
		}
	}
	return nil
}

// errTrustBundle wraps a trust bundle that holds a root other than the
// pinned one. Like ErrUntrusted it is never retried.
var errTrustBundle = fmt.Errorf("%w: its trust bundle does not match the pinned --ca-hash", ErrUntrusted)

// checkTrustBundle refuses a trust bundle with any root whose key is not
// the pinned root's.
func checkTrustBundle(trust []*x509.Certificate, pinnedRoot *x509.Certificate) error {
	if len(trust) == 0 {
		return nil
	}
	if pinnedRoot == nil {
		return fmt.Errorf("%w: no pinned root to compare it with", errTrustBundle)
	}
	pin := mtls.CAHash(pinnedRoot)
	for i, r := range trust {
		if got := mtls.CAHash(r); got != pin {
			return fmt.Errorf("%w: root[%d] is %s, the pin is %s", errTrustBundle, i, got, pin)
		}
	}
	return nil
}

// TrustDomain is the trust domain of the node's certificate, from its
// SPIFFE ID; empty without a certificate.
func (c *Credentials) TrustDomain() string {
	leaf := c.Leaf()
	if leaf == nil || len(leaf.URIs) != 1 {
		return ""
	}
	return leaf.URIs[0].Host
}

// Credential file names in the cert directory.
const (
	CertFile = "node.crt"
	KeyFile  = "node.key"
	CAFile   = "ca.crt"
)

// WriteCredentials writes node.crt (leaf, then intermediates), node.key
// (PKCS#8, mode 0600; removed for keys that cannot leave their device) and
// ca.crt (the trust bundle) into dir, each atomically, creating dir with
// mode 0755. Consumers never see a half-written file. The directory is
// synced once, after the last: a crash before it may keep any of the
// three renames, each file whole; the agent writes all three again on
// the next boot.
func WriteCredentials(dir string, c *Credentials, key crypto.Signer) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create cert directory: %w", err)
	}
	t, err := openTree(dir)
	if err != nil {
		return fmt.Errorf("write credentials: %w", err)
	}
	defer t.close()
	defer t.sync()
	write := func(name string, data []byte, mode fs.FileMode) error {
		if err := t.writeFile(name, data, mode, -1, -1); err != nil {
			return fmt.Errorf("write %s: %w", filepath.Join(dir, name), err)
		}
		return nil
	}
	if err := write(CAFile, certsPEM(c.Trust), 0o644); err != nil {
		return err
	}
	keyPEM, err := keys.IdentityPEM(key)
	switch {
	case errors.Is(err, keys.ErrNotExportable):
		// A stale key file would not match the certificate.
		if err := t.remove(KeyFile); err != nil {
			return fmt.Errorf("remove stale %s: %w", KeyFile, err)
		}
	case err != nil:
		return err
	default:
		if err := write(KeyFile, keyPEM, 0o600); err != nil {
			return err
		}
	}
	// The certificate goes last: whoever sees the new one finds its key and
	// trust bundle already in place.
	return write(CertFile, certsPEM(c.Chain), 0o644)
}

func certsPEM(certs []*x509.Certificate) []byte {
	var b bytes.Buffer
	for _, c := range certs {
		_ = pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return b.Bytes()
}

// WriteFileAtomic replaces path with data of the given mode: it writes a
// temporary file in the same directory, syncs it, renames it over path and
// syncs the directory.
func WriteFileAtomic(path string, data []byte, mode fs.FileMode) error {
	t, err := openTree(filepath.Dir(path))
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer t.close()
	if err := t.writeFile(filepath.Base(path), data, mode, -1, -1); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	t.sync()
	return nil
}
