package mtls

import "crypto/x509"

// StandIn returns the intermediate of chain, a chain x509 verified (leaf,
// intermediate, root), when it may stand in for the root as the trust
// anchor of later verifications; else nil.
//
// A node checks berth's one intermediate against the root in the boot
// handshake and again in its own certificate's chain, an ECDSA
// verification each time. Anchoring the second check at the intermediate
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
