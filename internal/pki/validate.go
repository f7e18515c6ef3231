package pki

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"fmt"
	"net"
	"strings"
)

// Limits on what a node may present.
const (
	maxNodeIDLen   = 63
	maxHostnameLen = 253
	maxLabelLen    = 63
	// maxCSRSize bounds the request before it is parsed; a P-256 CSR is
	// about 250 bytes and an RSA-8192 one about 1.3 KiB.
	maxCSRSize   = 16 << 10
	minRSABits   = 2048
	maxRSABits   = 8192
	maxCommonLen = 64 // RFC 5280 ub-common-name
)

// ValidateNodeID checks a node ID against ^[a-z0-9][a-z0-9-]{0,62}$, the
// form that becomes the last segment of spiffe://<trust-domain>/node/<id>.
func ValidateNodeID(id string) error {
	if id == "" || len(id) > maxNodeIDLen {
		return fmt.Errorf("%w: node ID must be 1 to %d characters", ErrPolicy, maxNodeIDLen)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case isLowerAlnum(c):
		case c == '-' && i > 0:
		default:
			return fmt.Errorf("%w: node ID must match ^[a-z0-9][a-z0-9-]{0,62}$", ErrPolicy)
		}
	}
	return nil
}

// NormalizeHostname checks that h is a DNS name fit for a certificate and
// returns it in canonical form: lower case, without a trailing dot.
// Single-label names ("node-07") are allowed; IP addresses and wildcards are not.
func NormalizeHostname(h string) (string, error) {
	h = strings.ToLower(strings.TrimSuffix(h, "."))
	if h == "" || len(h) > maxHostnameLen {
		return "", fmt.Errorf("%w: hostname must be 1 to %d characters", ErrPolicy, maxHostnameLen)
	}
	if net.ParseIP(h) != nil {
		return "", fmt.Errorf("%w: hostname must be a DNS name, not an IP address", ErrPolicy)
	}
	labels := strings.Split(h, ".")
	for _, l := range labels {
		if err := validLabel(l); err != nil {
			return "", fmt.Errorf("%w: hostname %w", ErrPolicy, err)
		}
	}
	if allDigits(labels[len(labels)-1]) {
		return "", fmt.Errorf("%w: hostname's last label must not be numeric", ErrPolicy)
	}
	return h, nil
}

// ValidateTrustDomain checks a trust domain: a lower-case DNS name.
func ValidateTrustDomain(td string) error {
	if td == "" || td != strings.ToLower(td) || strings.HasSuffix(td, ".") {
		return fmt.Errorf("trust domain %q must be a lower-case DNS name", td)
	}
	if _, err := NormalizeHostname(td); err != nil {
		return fmt.Errorf("trust domain %q must be a lower-case DNS name", td)
	}
	return nil
}

func validLabel(l string) error {
	if l == "" || len(l) > maxLabelLen {
		return fmt.Errorf("labels must be 1 to %d characters", maxLabelLen)
	}
	if l[0] == '-' || l[len(l)-1] == '-' {
		return fmt.Errorf("labels must not start or end with '-'")
	}
	for i := 0; i < len(l); i++ {
		if !isLowerAlnum(l[i]) && l[i] != '-' {
			return fmt.Errorf("labels may hold only letters, digits and '-'")
		}
	}
	return nil
}

func isLowerAlnum(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
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
