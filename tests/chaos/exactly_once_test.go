package chaos

import "testing"

// TestChaosExactlyOnce checks issuance exactly once under every fault,
// those that strike between the CA's Sign and the registry's write
// included: each node has exactly one certificate, the one the registry
// and the CA's log agree on, nothing orphaned, nothing issued twice for
// one request, and every certificate carries its request ID.
func TestChaosExactlyOnce(t *testing.T) {
	for _, o := range faultMatrix(t) {
		o.checkIssuance(t)
	}
	if n := matrix.withoutRequestID; n != 0 {
		t.Errorf("%d certificates in the CA's log carry no request ID", n)
	}
}
