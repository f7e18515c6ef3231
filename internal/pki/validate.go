package pki

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"fmt"
	"strings"

	"github.com/berth-dev/berth/internal/ident"
)

// Limits on what a node may present.
const (
	// maxCSRSize bounds the request before it is parsed; a P-256 CSR is
	// about 250 bytes and an RSA-8192 one about 1.3 KiB.
	maxCSRSize   = 16 << 10
	minRSABits   = 2048
	maxRSABits   = 8192
	maxCommonLen = 64 // RFC 5280 ub-common-name
)

// ValidateTrustDomain checks a trust domain: a lower-case DNS name.
func ValidateTrustDomain(td string) error {
	if td == "" || td != strings.ToLower(td) || strings.HasSuffix(td, ".") {
		return fmt.Errorf("trust domain %q must be a lower-case DNS name", td)
	}
	if _, err := ident.DNSName(td); err != nil {
		return fmt.Errorf("trust domain %q must be a lower-case DNS name", td)
	}
	return nil
}

// checkPublicKey accepts the keys a node's TLS client certificate may hold:
// ECDSA P-256 (what berth-agent makes) or P-384, Ed25519, and RSA of 2048 to
// 8192 bits. Anything else is refused rather than guessed at.
func checkPublicKey(pub any) error {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() && k.Curve != elliptic.P384() {
			return fmt.Errorf("%w: ECDSA keys must use P-256 or P-384", ErrPolicy)
		}
	case ed25519.PublicKey:
	case *rsa.PublicKey:
		if b := k.N.BitLen(); b < minRSABits || b > maxRSABits {
			return fmt.Errorf("%w: RSA keys must be %d to %d bits, got %d", ErrPolicy, minRSABits, maxRSABits, b)
		}
	default:
		return fmt.Errorf("%w: unsupported public key type %T", ErrPolicy, pub)
	}
	return nil
}
