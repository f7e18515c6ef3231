// Package mtls holds berth's identity scheme and the TLS plumbing shared by
// every service and client: SPIFFE-style URIs, key hashes, CA pinning, and
// the per-connection identity that the authorisation interceptor reads.
package mtls

import (
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// DefaultTrustDomain is used when berthd init is not given one.
const DefaultTrustDomain = "berth.local"

// Kind says what sort of peer is on the other end of a connection.
type Kind int

// Peer kinds. KindBootstrap is a node proving possession of its identity key
// with a self-signed certificate, before (or instead of) holding an issued one.
const (
	KindUnknown Kind = iota
	KindBootstrap
	KindNode
	KindService
	KindAdmin
	// KindToken is a caller that presented an API token (a bearer token)
	// rather than a certificate: Name is the token's ID, TokenName its
	// name, Role what it may do. No certificate makes a caller a token.
	KindToken
)

func (k Kind) String() string {
	switch k {
	case KindBootstrap:
		return "bootstrap"
	case KindNode:
		return "node"
	case KindService:
		return "service"
	case KindAdmin:
		return "admin"
	case KindToken:
		return "token"
	}
	return "unknown"
}

// Identity is the verified identity of a peer.
type Identity struct {
	Kind Kind
	// Name is the node ID, service name or admin name; empty for bootstrap.
	Name string
	// KeySHA256 is the SHA-256 of the leaf's SubjectPublicKeyInfo.
	KeySHA256 [32]byte
	// Leaf is the peer's leaf certificate.
	Leaf *x509.Certificate
	// TokenName and Role describe a KindToken caller: the API token's name
	// (may be empty) and its role. Role is zero for every other kind; an
	// admin certificate's role is RoleAdmin (see RoleOf).
	TokenName string
	Role      Role
}

// String renders the identity for logs without anything secret in it.
func (id Identity) String() string {
	if id.Kind == KindBootstrap {
		return "bootstrap:" + hex.EncodeToString(id.KeySHA256[:8])
	}
	if id.Kind == KindToken && id.TokenName != "" {
		// Token names never hold "/", so the ID stays readable first.
		return "token:" + id.Name + "/" + id.TokenName
	}
	return id.Kind.String() + ":" + id.Name
}

// KeyHash returns the SHA-256 of a public key's SubjectPublicKeyInfo.
func KeyHash(pub crypto.PublicKey) ([32]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return [32]byte{}, fmt.Errorf("marshal public key: %w", err)
	}
	return sha256.Sum256(der), nil
}

// CAHash renders the pin of a root certificate as "sha256:HEX" over its
// SubjectPublicKeyInfo, the form berth-agent takes with --ca-hash.
func CAHash(root *x509.Certificate) string {
	sum := sha256.Sum256(root.RawSubjectPublicKeyInfo)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// ErrBadCAHash is returned for a --ca-hash that is not "sha256:" and 64 hex digits.
var ErrBadCAHash = errors.New(`CA hash must be "sha256:" followed by 64 hex digits`)

// ParseCAHash parses "sha256:HEX".
func ParseCAHash(s string) ([32]byte, error) {
	var out [32]byte
	h, ok := strings.CutPrefix(strings.TrimSpace(s), "sha256:")
	if !ok || len(h) != 64 {
		return out, ErrBadCAHash
	}
	b, err := hex.DecodeString(h)
	if err != nil {
		return out, ErrBadCAHash
	}
	copy(out[:], b)
	return out, nil
}

// NodeURI is the URI SAN of a node certificate.
func NodeURI(trustDomain, nodeID string) *url.URL {
	return &url.URL{Scheme: "spiffe", Host: trustDomain, Path: "/node/" + nodeID}
}

// ServiceURI is the URI SAN of a service certificate.
func ServiceURI(trustDomain, service string) *url.URL {
	return &url.URL{Scheme: "spiffe", Host: trustDomain, Path: "/service/" + service}
}

// AdminURI is the URI SAN of an admin client certificate.
func AdminURI(trustDomain, name string) *url.URL {
	return &url.URL{Scheme: "spiffe", Host: trustDomain, Path: "/admin/" + name}
}

// ParseURI maps a berth URI SAN in trustDomain to a kind and a name.
func ParseURI(trustDomain string, u *url.URL) (Kind, string, error) {
	if u.Scheme != "spiffe" || u.Host != trustDomain {
		return KindUnknown, "", fmt.Errorf("URI %q is not in trust domain %q", u, trustDomain)
	}
	parts := strings.Split(strings.TrimPrefix(u.Path, "/"), "/")
	if len(parts) != 2 || parts[1] == "" {
		return KindUnknown, "", fmt.Errorf("URI %q has no berth identity path", u)
	}
	switch parts[0] {
	case "node":
		return KindNode, parts[1], nil
	case "service":
		return KindService, parts[1], nil
	case "admin":
		return KindAdmin, parts[1], nil
	}
	return KindUnknown, "", fmt.Errorf("URI %q has an unknown identity kind", u)
}

// IdentityOf classifies a verified certificate chain's leaf by its berth URI
// SAN. The caller has already verified the chain against berth's roots.
func IdentityOf(trustDomain string, leaf *x509.Certificate) (Identity, error) {
	sum, err := KeyHash(leaf.PublicKey)
	if err != nil {
		return Identity{}, err
	}
	if len(leaf.URIs) != 1 {
		return Identity{}, fmt.Errorf("certificate has %d URI SANs, want 1", len(leaf.URIs))
	}
	kind, name, err := ParseURI(trustDomain, leaf.URIs[0])
	if err != nil {
		return Identity{}, err
	}
	return Identity{Kind: kind, Name: name, KeySHA256: sum, Leaf: leaf}, nil
}
