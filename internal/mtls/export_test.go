package mtls

import "crypto/x509"

// Classify is classify, for the external tests.
func (c *Credentials) Classify(certs []*x509.Certificate) (Identity, error) { return c.classify(certs) }

// Anchors is how many intermediates c has learned to check chains from.
func (c *Credentials) Anchors() int {
	c.anchors.mu.RLock()
	defer c.anchors.mu.RUnlock()
	return len(c.anchors.certs)
}
