package mtls

import (
	"crypto/x509"
	"slices"
	"sync"
)

// StandIn returns the intermediate of chain, a chain x509 verified (leaf,
// intermediate, root), when it may stand in for the root as the trust
// anchor of later verifications; else nil.
//
// A node checks berth's one intermediate against the root in the boot
// handshake, again in its own certificate's chain and again in its bundle
// signer's; a server checks it in every client's chain: an ECDSA
// verification each time. Anchoring the later checks at the intermediate
// the first one verified decides exactly what the full check would when
// the root adds nothing beyond its key and validity: no name, usage or
// policy constraints, and a validity that covers the intermediate's (so
// that whenever the intermediate is valid, the root is too). A root that
// constrains its chains gets no stand-in, and is checked in full.
func StandIn(chain []*x509.Certificate) *x509.Certificate {
	if len(chain) != 3 {
		return nil
	}
	inter, root := chain[1], chain[2]
	if inter.NotBefore.Before(root.NotBefore) || inter.NotAfter.After(root.NotAfter) {
		return nil
	}
	if constrains(root) {
		return nil
	}
	return inter
}

// constrains reports whether c restricts the chains below it by anything
// but its validity: names, extended key usages or certificate policies.
func constrains(c *x509.Certificate) bool {
	names := len(c.PermittedDNSDomains) + len(c.ExcludedDNSDomains) + len(c.PermittedIPRanges) + len(c.ExcludedIPRanges) +
		len(c.PermittedEmailAddresses) + len(c.ExcludedEmailAddresses) + len(c.PermittedURIDomains) + len(c.ExcludedURIDomains)
	usages := len(c.ExtKeyUsage) + len(c.UnknownExtKeyUsage)
	policies := len(c.Policies) + len(c.PolicyIdentifiers) + len(c.PolicyMappings) +
		c.RequireExplicitPolicy + c.InhibitPolicyMapping + c.InhibitAnyPolicy
	return names+usages+policies > 0 || c.PermittedDNSDomainsCritical ||
		c.RequireExplicitPolicyZero || c.InhibitPolicyMappingZero || c.InhibitAnyPolicyZero
}

// VerifyFrom verifies leaf as opts says, but first from anchor alone, when
// anchor is set (an intermediate StandIn gave, known to have verified under
// opts.Roots). What the anchored check accepts, the full check would accept
// too; what it refuses goes to the full check, which decides. So the outcome
// is the full check's, and an accepted chain costs one verification less.
// It returns the chain found, leaf first.
func VerifyFrom(leaf, anchor *x509.Certificate, opts x509.VerifyOptions) ([]*x509.Certificate, error) {
	if anchor != nil {
		anchored := opts
		anchored.Roots, anchored.Intermediates = x509.NewCertPool(), nil
		anchored.Roots.AddCert(anchor)
		if chains, err := leaf.Verify(anchored); err == nil {
			return chains[0], nil
		}
	}
	chains, err := leaf.Verify(opts)
	if err != nil {
		return nil, err
	}
	return chains[0], nil
}

// anchorSet is the intermediates a server's client chains verified
// through in full, each of which may stand in for its root (StandIn):
// later chains issued under one are checked from it (VerifyFrom), one
// ECDSA verification less per handshake. Only a chain that verified under
// the server's own roots adds to it, so a client cannot choose what it
// holds: a deployment's intermediate, two during a rotation, and never
// more than maxAnchors.
type anchorSet struct {
	mu    sync.RWMutex
	certs []*x509.Certificate
}

const maxAnchors = 8

// find returns the anchor equal to c, or nil. A nil set has none.
func (s *anchorSet) find(c *x509.Certificate) *x509.Certificate {
	if s == nil {
		return nil
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, a := range s.certs {
		if a.Equal(c) {
			return a
		}
	}
	return nil
}

// learn adds the intermediate of chain, one that verified in full, if it
// may stand in for its root.
func (s *anchorSet) learn(chain []*x509.Certificate) {
	if s == nil {
		return
	}
	a := StandIn(chain)
	if a == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.certs) < maxAnchors && !slices.ContainsFunc(s.certs, a.Equal) {
		s.certs = append(s.certs, a)
	}
}
