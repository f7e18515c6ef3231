package mtls

import (
	"context"
	"crypto/x509"
	"net"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

// AuthInfo is the gRPC auth info of a berth server connection: the TLS
// state plus the identity worked out once, at handshake time.
type AuthInfo struct {
	credentials.TLSInfo
	// Identity is the verified peer identity.
	Identity Identity
	// Err is why the peer's certificate did not verify against berth's roots;
	// the peer is then treated as a bootstrap key and only methods that
	// accept bootstrap keys let it through.
	Err error
}

// Credentials wraps TLS server credentials so that every connection gets its
// identity verified once rather than on every call.
type Credentials struct {
	credentials.TransportCredentials
	trustDomain string
	roots       *x509.CertPool
	anchors     *anchorSet // shared by clones
}

// NewServerCredentials returns server credentials that verify client chains
// against roots and classify them within trustDomain.
func NewServerCredentials(base credentials.TransportCredentials, trustDomain string, roots *x509.CertPool) *Credentials {
	return &Credentials{TransportCredentials: base, trustDomain: trustDomain, roots: roots, anchors: &anchorSet{}}
}

// ServerHandshake runs the TLS handshake and attaches the peer identity.
func (c *Credentials) ServerHandshake(raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	conn, info, err := c.TransportCredentials.ServerHandshake(raw)
	if err != nil {
		return conn, info, err
	}
	tlsInfo, ok := info.(credentials.TLSInfo)
	if !ok || len(tlsInfo.State.PeerCertificates) == 0 {
		return conn, info, nil
	}
	id, verr := c.classify(tlsInfo.State.PeerCertificates)
	return conn, AuthInfo{TLSInfo: tlsInfo, Identity: id, Err: verr}, nil
}

// Clone keeps the wrapper when gRPC clones credentials.
func (c *Credentials) Clone() credentials.TransportCredentials {
	return &Credentials{TransportCredentials: c.TransportCredentials.Clone(), trustDomain: c.trustDomain, roots: c.roots, anchors: c.anchors}
}

func (c *Credentials) classify(certs []*x509.Certificate) (Identity, error) {
	return verifyPeer(c.trustDomain, c.roots, c.anchors, certs)
}

// VerifyPeer verifies a client's certificate chain (leaf first) against
// roots and classifies the leaf within trustDomain. On failure it returns
// the leaf as a bare key (KindBootstrap) with the reason: the key is
// proven by the handshake, the identity is not.
func VerifyPeer(trustDomain string, roots *x509.CertPool, certs []*x509.Certificate) (Identity, error) {
	return verifyPeer(trustDomain, roots, nil, certs)
}

// verifyPeer is VerifyPeer, checking a chain issued under one of anchors'
// intermediates from it (VerifyFrom), and adding to anchors the
// intermediate of a chain that verified in full.
func verifyPeer(trustDomain string, roots *x509.CertPool, anchors *anchorSet, certs []*x509.Certificate) (Identity, error) {
	leaf := certs[0]
	sum, err := KeyHash(leaf.PublicKey)
	if err != nil {
		return Identity{}, err
	}
	bootstrap := Identity{Kind: KindBootstrap, KeySHA256: sum, Leaf: leaf}
	inter := x509.NewCertPool()
	for _, ic := range certs[1:] {
		inter.AddCert(ic)
	}
	var anchor *x509.Certificate
	if len(certs) > 1 {
		anchor = anchors.find(certs[1])
	}
	chain, err := VerifyFrom(leaf, anchor, x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inter,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		return bootstrap, err
	}
	if anchor == nil {
		anchors.learn(chain)
	}
	id, err := IdentityOf(trustDomain, leaf)
	if err != nil {
		return bootstrap, err
	}
	return id, nil
}

// PeerIdentity returns the identity of the caller of an RPC. ok is false
// when the connection carried no client certificate at all.
func PeerIdentity(ctx context.Context) (id Identity, verifyErr error, ok bool) {
	p, found := peer.FromContext(ctx)
	if !found {
		return Identity{}, nil, false
	}
	ai, found := p.AuthInfo.(AuthInfo)
	if !found {
		return Identity{}, nil, false
	}
	return ai.Identity, ai.Err, true
}
